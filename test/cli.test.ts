// The `openelm` command end to end: real processes, real files, JSON outputs checked against
// the PyTorch golden vectors.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cpuHasAvxVnni } from './helpers/cpu.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = path.join(ROOT, 'test/fixtures/openelm');
const MAIN = path.join(ROOT, 'src/cli/main.ts');

function cli(args: string[], opts: { input?: string; env?: Record<string, string> } = {}) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    input: opts.input ?? '',
    env: { ...process.env, HF_HUB_OFFLINE: '1', ...opts.env },
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const json = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-cli-'));

test('logits --json matches the reference for every checkpoint (both backends)', () => {
  for (const f of ['tiny-f32', 'tiny-bf16-sharded']) {
    const e = JSON.parse(fs.readFileSync(path.join(FIX, f, 'expected.json'), 'utf8'));
    for (const backend of ['ref', 'wasm']) {
      const r = cli(['logits', '-m', path.join(FIX, f), '--ids', e.input_ids.join(','), '--json', '--backend', backend]);
      assert.equal(r.code, 0, r.err);
      const { logits } = json(r.out);
      assert.equal(logits.length, e.input_ids.length);
      let maxDiff = 0;
      e.logits.forEach((row: number[], t: number) =>
        row.forEach((v, j) => {
          maxDiff = Math.max(maxDiff, Math.abs(v - logits[t][j]));
        }),
      );
      assert.ok(maxDiff <= 1e-3, `${f} ${backend}: max abs diff ${maxDiff}`);
    }
  }
});

test('generate --temperature 0 --json gives the reference greedy tokens', () => {
  for (const f of ['tiny-f32', 'tiny-bf16-sharded']) {
    const g = JSON.parse(fs.readFileSync(path.join(FIX, f, 'expected.json'), 'utf8')).greedy;
    const r = cli([
      'generate',
      '-m',
      path.join(FIX, f),
      '--prompt-ids',
      g.prompt_ids.join(','),
      '-n',
      String(g.max_new_tokens),
      '--temperature',
      '0',
      '--ignore-eos',
      '--json',
    ]);
    assert.equal(r.code, 0, r.err);
    const out = json(r.out);
    assert.deepEqual(out.output_ids, g.output_ids, f);
    assert.deepEqual(out.prompt_ids, g.prompt_ids);
  }
  const e = JSON.parse(fs.readFileSync(path.join(FIX, 'tiny-vocab32k-bf16/expected.json'), 'utf8'));
  for (const g of e.generation) {
    const r = cli(['generate', '-m', path.join(FIX, 'tiny-vocab32k-bf16'), '-p', g.prompt, '-n', '16', '--temperature', '0', '--ignore-eos', '--json']);
    assert.equal(r.code, 0, r.err);
    const out = json(r.out);
    assert.deepEqual(out.prompt_ids, g.prompt_ids);
    assert.deepEqual(out.output_ids, g.output_ids);
    assert.equal(out.text, g.output_text);
  }
});

test('generate streams text to stdout', () => {
  const g = JSON.parse(fs.readFileSync(path.join(FIX, 'tiny-vocab32k-bf16/expected.json'), 'utf8')).generation[0];
  const r = cli(['generate', '-m', path.join(FIX, 'tiny-vocab32k-bf16'), '-p', g.prompt, '-n', '16', '--temperature', '0', '--ignore-eos']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, g.output_text + '\n');
});

test('tokenize / detokenize --json', () => {
  const cases = JSON.parse(fs.readFileSync(path.join(ROOT, 'test/fixtures/tokenizer/cases.json'), 'utf8')).cases.slice(0, 8);
  for (const c of cases) {
    if (!c.text) continue;
    const r = cli(['tokenize', c.text, '--json']);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(json(r.out).ids, c.ids, c.text);
    const d = cli(['detokenize', c.ids.join(','), '--json']);
    assert.equal(json(d.out).text, c.decoded);
  }
  const piped = cli(['tokenize', '--json'], { input: 'Hello world' });
  assert.deepEqual(json(piped.out).ids, [15043, 3186]);
  assert.deepEqual(json(cli(['tokenize', '--bos', '--json', 'Hello world']).out).ids, [1, 15043, 3186]);
});

test('inspect --json: presets, folders and config files', () => {
  const presets = JSON.parse(fs.readFileSync(path.join(FIX, 'presets.json'), 'utf8'));
  for (const [name, p] of Object.entries<any>(presets)) {
    const r = cli(['inspect', name, '--json']);
    assert.equal(r.code, 0, r.err);
    const c = json(r.out);
    assert.deepEqual(c.num_query_heads, p.num_query_heads);
    assert.deepEqual(c.num_kv_heads, p.num_kv_heads);
    assert.deepEqual(c.ffn_dims, p.ffn_dims);
    assert.equal(c.num_parameters, p.num_parameters);
  }
  const r = cli(['inspect', path.join(FIX, 'tiny-f32'), '--json']);
  assert.equal(json(r.out).num_parameters, 681344);
  const table = cli(['inspect', 'OpenELM-270M']);
  assert.match(table.out, /271,527,168/);
  assert.equal(table.out.split('\n').filter((l) => /^\s+\d+\s+\d+\s+\d+/.test(l)).length, 16);
});

test('init writes a loadable HF checkpoint, deterministic per seed', () => {
  const dir = tmp();
  const cfg = { num_transformer_layers: 2, model_dim: 64, head_dim: 16, vocab_size: 300, max_context_length: 32, ffn_dim_divisor: 16, num_gqa_groups: 2 };
  fs.writeFileSync(path.join(dir, 'small.json'), JSON.stringify(cfg));
  for (const [out, dtype, seed] of [
    ['a', 'f32', '3'],
    ['b', 'f32', '3'],
    ['c', 'bf16', '3'],
    ['d', 'f32', '4'],
  ]) {
    const r = cli(['init', '--config', path.join(dir, 'small.json'), '--out', path.join(dir, out), '--dtype', dtype, '--seed', seed, '--json']);
    assert.equal(r.code, 0, r.err);
  }
  const bytes = (d: string) => fs.readFileSync(path.join(dir, d, 'model.safetensors'));
  assert.ok(bytes('a').equals(bytes('b')));
  assert.ok(!bytes('a').equals(bytes('d')));
  assert.ok(bytes('c').length < bytes('a').length * 0.6);
  const gen = (d: string) =>
    json(cli(['generate', '-m', path.join(dir, d), '--prompt-ids', '1,2,3', '-n', '5', '--temperature', '0', '--json', '--ignore-eos']).out).output_ids;
  assert.equal(gen('a').length, 5);
  assert.deepEqual(gen('a'), gen('b'));
  const again = cli(['init', '--config', path.join(dir, 'small.json'), '--out', path.join(dir, 'a')]);
  assert.equal(again.code, 2, again.err); // --out is a flag error
  assert.match(again.err, /--out .* already exists and is not an empty folder/);
  const kept = cli(['init', '--config', path.join(dir, 'small.json'), '--out', path.join(dir, 'a'), '--exist-ok', '--json']);
  assert.equal(kept.code, 0, kept.err);
  assert.equal(json(kept.out).existed, true);
  assert.ok(bytes('a').equals(bytes('b')));
});

test('bench --json reports speeds, bandwidth and memory', () => {
  const r = cli(['bench', '-m', path.join(FIX, 'tiny-f32'), '--prompt-tokens', '8', '--gen-tokens', '8', '--repeat', '2', '--json']);
  assert.equal(r.code, 0, r.err);
  const b = json(r.out);
  assert.ok(b.prefill_tps > 0 && b.decode_tps > 0);
  assert.equal(b.runs.length, 2);
  assert.equal(b.weight_bytes, 681344 * 4);
  assert.ok(b.peak_rss_bytes > b.weight_bytes);
  // the VNNI hint: a CPU with AVX-VNNI under a Node that does not run the kernels' VNNI build (Node 20 does not)
  if (cpuHasAvxVnni() && !/vnni/.test(b.backend ?? '')) assert.match(b.hint ?? '', /AVX-VNNI.*Node 24 or later/);
  else assert.equal(b.hint, undefined);
  const tooLong = cli(['bench', '-m', path.join(FIX, 'tiny-f32'), '--prompt-tokens', '60', '--gen-tokens', '60', '--json']);
  assert.equal(tooLong.code, 2, tooLong.err); // a flag error
  assert.match(tooLong.err, /--prompt-tokens \+ --gen-tokens \+ --warmup = 124 tokens, more than the model's context: max_context_length \(64 in /);
});

test('bench --draft-model --json: acceptance, speed-up, identical output, and what a round costs', () => {
  const tiny = path.join(FIX, 'tiny-f32');
  const r = cli(['bench', '-m', tiny, '--draft-model', tiny, '--draft-dtype', 'q4', '--prompt-tokens', '8', '--gen-tokens', '12', '--repeat', '2', '--json']);
  assert.equal(r.code, 0, r.err);
  const s = json(r.out).speculative;
  assert.equal(s.identical, true);
  assert.equal(s.draft_tokens, 4);
  assert.ok(s.acceptance >= 0 && s.acceptance <= 1 && s.speedup > 0);
  const c = s.costs;
  assert.ok(c.draft_step_ms > 0 && c.verify_ms > 0 && c.plain_step_ms > 0, JSON.stringify(c));
  assert.ok(c.predicted_speedup > 0);
  for (const a of [c.acceptance_for_1_3x, c.acceptance_for_2x]) assert.ok(a === null || (a > 0 && a <= 1), JSON.stringify(c));
  // the passes over 1 .. 5 tokens, and the draft length 1.3× asks the least acceptance of
  assert.equal(c.pass_ms.length, 5);
  assert.equal(c.pass_ms[4], c.verify_ms);
  assert.ok(c.best_length_for_1_3x === null || (c.best_length_for_1_3x >= 1 && c.best_length_for_1_3x <= 4));
  // greedy rounds chose their length (the first drafts all 4); --draft-fixed always drafts 4
  assert.equal(s.adaptive, true);
  assert.ok(s.rounds >= 1 && s.drafts_per_round > 0 && s.drafts_per_round <= 4);
  const fixed = json(
    cli([
      'bench',
      '-m',
      tiny,
      '--draft-model',
      tiny,
      '--draft-dtype',
      'q4',
      '--draft-fixed',
      '--prompt-tokens',
      '8',
      '--gen-tokens',
      '12',
      '--repeat',
      '1',
      '--json',
    ]).out,
  ).speculative;
  assert.equal(fixed.adaptive, false);
  assert.equal(fixed.identical, true);
});

test('chat: piped multi-turn conversation', () => {
  const r = cli(['chat', '-m', path.join(FIX, 'tiny-vocab32k-bf16'), '--temperature', '0', '-n', '6', '--system', 'Be brief.'], {
    input: 'Hello\n/reset\nHow are you?\n',
  });
  assert.equal(r.code, 0, r.err);
  const lines = r.out.split('\n').filter(Boolean);
  assert.ok(lines.includes('(new conversation)'));
  assert.equal(lines.length, 3);
});

test('bad input: clear errors and exit codes', () => {
  // without --model the built-in model runs (test/builtin-model.test.ts checks what it writes)
  const noModel = cli(['generate', '-p', 'hi', '-n', '2', '--temperature', '0'], { env: { OPENELM_MODEL: '' } });
  assert.equal(noModel.code, 0, noModel.err);
  const badNum = cli(['generate', '-m', path.join(FIX, 'tiny-f32'), '-p', 'hi', '--temperature', 'hot']);
  assert.equal(badNum.code, 2);
  assert.match(badNum.err, /--temperature must be a number/);
  const unknown = cli(['generate', '--frobnicate']);
  assert.equal(unknown.code, 2);
  // a speculative flag without a drafter (serve checks them before it loads anything)
  for (const where of [[], ['--in-process']]) {
    const fixed = cli(['serve', '-m', path.join(FIX, 'tiny-f32'), '--draft-fixed', ...where]);
    assert.equal(fixed.code, 2);
    assert.match(fixed.err, /--draft-fixed needs --draft-model or --prompt-lookup/);
  }
  const missing = cli(['generate', '-m', path.join(os.tmpdir(), 'no-such-model-dir'), '-p', 'hi']);
  assert.equal(missing.code, 1);
  assert.match(missing.err, /no-such-model-dir/);
  // a truncated checkpoint names the file and the tensor
  const dir = tmp();
  fs.copyFileSync(path.join(FIX, 'tiny-f32/config.json'), path.join(dir, 'config.json'));
  const full = fs.readFileSync(path.join(FIX, 'tiny-f32/model.safetensors'));
  fs.writeFileSync(path.join(dir, 'model.safetensors'), full.subarray(0, full.length - 1000));
  const trunc = cli(['generate', '-m', dir, '--prompt-ids', '1', '--json']);
  assert.equal(trunc.code, 1);
  assert.match(trunc.err, /model\.safetensors/);
  assert.match(trunc.err, /truncated/i);
  assert.equal(json(trunc.out).error.type.length > 0, true);
  // a prompt longer than the context
  const long = cli(['generate', '-m', path.join(FIX, 'tiny-f32'), '--prompt-ids', Array(70).fill(5).join(','), '--json']);
  assert.equal(long.code, 1);
  assert.match(long.err, /context holds 64/);
  // every command has --help
  for (const c of ['generate', 'chat', 'logits', 'tokenize', 'detokenize', 'inspect', 'init', 'pull', 'quantize', 'export', 'bench', 'train', 'plot']) {
    const h = cli([c, '--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, new RegExp(`openelm ${c}`));
  }
});

test('generate ends with a speed summary on stderr (--quiet silences it, --json carries it)', () => {
  const m = path.join(FIX, 'tiny-f32');
  const r = cli(['generate', '-m', m, '--prompt-ids', '1,5,6', '-n', '4', '--temperature', '0']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /^prompt: 3 tokens, [\d.]+ tokens\/s · generation: 4 tokens, [\d.]+ tokens\/s$/m);
  const q = cli(['generate', '-m', m, '--prompt-ids', '1,5,6', '-n', '4', '--temperature', '0', '--quiet']);
  assert.equal(q.code, 0, q.err);
  assert.doesNotMatch(q.err, /tokens\/s/);
  const j = cli(['generate', '-m', m, '--prompt-ids', '1,5,6', '-n', '4', '--temperature', '0', '--json']);
  const s = json(j.out).speed;
  assert.equal(s.prompt_tokens, 3);
  assert.equal(s.generated_tokens, 4);
  assert.ok(s.generate_tokens_per_s > 0 && s.prompt_tokens_per_s > 0);
  // a sampling flag out of range names the flag
  const bad = cli(['generate', '-m', m, '--prompt-ids', '1', '--repetition-penalty', '0']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--repetition-penalty/);
});

test('list shows cached models, the built-in one and folders given; rm removes a cached repo', () => {
  const cache = tmp();
  try {
    // a cached repo in the hub cache's layout: blobs, a snapshot linking to them, refs/main
    const repo = path.join(cache, 'models--apple--OpenELM-tiny');
    const sha = 'a'.repeat(40);
    fs.mkdirSync(path.join(repo, 'snapshots', sha), { recursive: true });
    fs.mkdirSync(path.join(repo, 'blobs'));
    fs.mkdirSync(path.join(repo, 'refs'));
    fs.writeFileSync(path.join(repo, 'refs', 'main'), sha);
    for (const f of ['config.json', 'model.safetensors']) {
      fs.copyFileSync(path.join(FIX, 'tiny-f32', f), path.join(repo, 'blobs', f + '.blob'));
      fs.symlinkSync(path.join('..', '..', 'blobs', f + '.blob'), path.join(repo, 'snapshots', sha, f));
    }
    const env = { HF_HUB_CACHE: cache };
    const l = cli(['list', '--json'], { env });
    assert.equal(l.code, 0, l.err);
    const rows = json(l.out) as { name: string; parameters: number; dtype: string; bytes: number; refs: string[] }[];
    const tiny = rows.find((r) => r.name === 'apple/OpenELM-tiny')!;
    assert.deepEqual([tiny.parameters, tiny.dtype, tiny.refs], [681344, 'f32', ['main']]);
    assert.equal(tiny.bytes, fs.statSync(path.join(FIX, 'tiny-f32', 'config.json')).size + fs.statSync(path.join(FIX, 'tiny-f32', 'model.safetensors')).size);
    assert.ok(rows.some((r) => r.name === 'builtin' && r.dtype === 'bf16'));
    const table = cli(['list', path.join(FIX, 'tiny-bf16-sharded')], { env });
    assert.match(table.out, /^NAME +PARAMETERS +DTYPE +SIZE +MODIFIED$/m);
    assert.match(table.out, /apple\/OpenELM-tiny +681\.3K +f32 +[\d.]+ MB/);
    assert.match(table.out, /tiny-bf16-sharded .* bf16 /);
    const rm = cli(['rm', 'apple/OpenELM-tiny'], { env });
    assert.equal(rm.code, 0, rm.err);
    assert.match(rm.out, /removed apple\/OpenELM-tiny \([\d.]+ MB freed\)/);
    assert.ok(!fs.existsSync(repo));
    const again = cli(['rm', 'apple/OpenELM-tiny'], { env });
    assert.equal(again.code, 1);
    assert.match(again.err, /apple\/OpenELM-tiny is not in the Hugging Face cache/);
    assert.equal(cli(['rm', '../etc'], { env }).code, 1);
  } finally {
    fs.rmSync(cache, { recursive: true, force: true });
  }
});
