import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { ConfigError, expectedTensors, linspace, makeDivisible, numParameters, parseConfig, presetConfig, pyRound } from '../src/config/index.ts';

const FIX = new URL('./fixtures/openelm/', import.meta.url);
const readJson = (rel: string) => JSON.parse(fs.readFileSync(new URL(rel, FIX), 'utf8'));

test('Python round(x, 2) semantics: exact binary value, ties to even', () => {
  assert.equal(pyRound(0.125, 2), 0.12); // exact tie → even
  assert.equal(pyRound(0.375, 2), 0.38);
  assert.equal(pyRound(2.675, 2), 2.67); // 2.675 is really 2.67499999…
  assert.equal(pyRound(1.005, 2), 1); // 1.00499999…
  assert.equal(pyRound(0.5, 0), 0);
  assert.equal(pyRound(1.5, 0), 2);
  assert.equal(pyRound(2.5, 0), 2);
  assert.equal(pyRound(-0.125, 2), -0.12);
  assert.deepEqual(
    linspace(0.5, 4, 16)
      .map((v) => pyRound(v, 2))
      .slice(0, 4),
    [0.5, 0.73, 0.97, 1.2],
  );
});

test('make_divisible matches CoreNet', () => {
  assert.equal(makeDivisible(85.33, 64), 128); // rounds to 64 but that is < 0.9 v
  assert.equal(makeDivisible(640, 256), 768);
  assert.equal(makeDivisible(10, 8), 16);
  assert.equal(makeDivisible(3, 8), 8);
});

test('the four presets reproduce per-layer heads, FFN widths and parameter counts', () => {
  const presets = readJson('presets.json');
  for (const [name, p] of Object.entries<any>(presets)) {
    for (const cfg of [presetConfig(name), presetConfig(name + '-Instruct'), parseConfig(p.config)]) {
      assert.deepEqual(cfg.num_query_heads, p.num_query_heads, name);
      assert.deepEqual(cfg.num_kv_heads, p.num_kv_heads, name);
      assert.deepEqual(cfg.ffn_dims, p.ffn_dims, name);
      assert.deepEqual(cfg.ffn_multipliers, p.config.ffn_multipliers, name);
      assert.equal(numParameters(cfg), p.num_parameters, name);
    }
  }
  assert.equal(numParameters(presetConfig('apple/OpenELM-270M-Instruct')), 271_527_168);
});

test('tiny fixture configs expand as the reference does', () => {
  for (const f of ['tiny-f32', 'tiny-bf16-sharded']) {
    const cfg = parseConfig(readJson(`${f}/config.json`));
    const e = readJson(`${f}/expected.json`);
    assert.deepEqual(cfg.num_query_heads, e.expanded.num_query_heads);
    assert.deepEqual(cfg.num_kv_heads, e.expanded.num_kv_heads);
    assert.deepEqual(cfg.ffn_multipliers, e.expanded.ffn_multipliers);
    assert.deepEqual(cfg.ffn_dims, e.expanded.ffn_dims);
    assert.equal(numParameters(cfg), e.num_parameters);
  }
});

test('non-default variants: MHA, no q/k norm, untied head, scalar multipliers, no GLU', () => {
  const base = { num_transformer_layers: 3, model_dim: 64, head_dim: 16, ffn_dim_divisor: 16 };
  const mha = parseConfig({ ...base, num_gqa_groups: 1, qkv_multipliers: 1.0, ffn_multipliers: 2.0 });
  assert.deepEqual(mha.num_query_heads, [4, 4, 4]);
  assert.deepEqual(mha.num_kv_heads, [4, 4, 4]);
  assert.deepEqual(mha.ffn_dims, [128, 128, 128]);
  const plain = parseConfig({
    ...base,
    num_gqa_groups: 1,
    normalize_qk_projections: false,
    share_input_output_layers: false,
    ffn_with_glu: false,
    activation_fn_name: 'gelu',
    vocab_size: 100,
  });
  const t = expectedTensors(plain);
  assert.ok(t.has('lm_head.weight'));
  assert.ok(!t.has('transformer.layers.0.attn.q_norm.weight'));
  assert.deepEqual(t.get('transformer.layers.0.ffn.proj_1.weight'), [plain.ffn_dims[0], 64]);
});

test('invalid configs name the field at fault', () => {
  const base = { num_transformer_layers: 2, model_dim: 64, head_dim: 16 };
  const bad: [unknown, string][] = [
    [{ model_dim: 64, head_dim: 16 }, 'num_transformer_layers'],
    [{ ...base, model_dim: '64' }, 'model_dim'],
    [{ ...base, head_dim: 15 }, 'head_dim'],
    [{ ...base, num_gqa_groups: 0 }, 'num_gqa_groups'],
    [{ ...base, ffn_with_glu: 'yes' }, 'ffn_with_glu'],
    [{ ...base, activation_fn_name: 'mish' }, 'activation_fn_name'],
    [{ ...base, qkv_multipliers: [0.5, 1, 2] }, 'qkv_multipliers'],
    [{ ...base, ffn_multipliers: -1 }, 'ffn_multipliers'],
    [{ ...base, model_type: 'llama' }, 'model_type'],
    [{ ...base, num_query_heads: [9, 9] }, 'num_query_heads'],
    [{ ...base, rope_freq_constant: 0 }, 'rope_freq_constant'],
    [[1, 2], ''],
  ];
  for (const [raw, field] of bad) {
    assert.throws(
      () => parseConfig(raw, 'x/config.json'),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError);
        assert.match(e.message, /^x\/config\.json/);
        if (field) assert.ok(e.message.includes(`"${field}"`), `${e.message} should name ${field}`);
        return true;
      },
    );
  }
});
