// Hugging Face checkpoint folders: the three tiny fixtures read (values checked against numpy),
// sharded == index, every broken-folder case rejected naming the file and tensor or field, and
// writeCheckpoint round trips (f32/bf16/f16, sharded) that are atomic when the input fails.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { expectedTensors } from '../src/config/config.ts';
import { CheckpointError, type CheckpointTensorInput, openCheckpoint, writeCheckpoint } from '../src/io/checkpoint.ts';
import { f32ToBf16, f32ToF16 } from '../src/io/dtype.ts';
import { openSafetensors, type SafetensorsTensorToWrite, writeSafetensors } from '../src/io/safetensors.ts';

const FIX = fileURLToPath(new URL('./fixtures/openelm/', import.meta.url));
const TINY_F32 = path.join(FIX, 'tiny-f32');
const SHARDED = path.join(FIX, 'tiny-bf16-sharded');
const VOCAB32K = path.join(FIX, 'tiny-vocab32k-bf16');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-checkpoint-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpDir = (name = 'ck') => path.join(tmp, `${counter++}-${name}`);
function copy(src: string, files?: string[]): string {
  const d = tmpDir(path.basename(src));
  fs.mkdirSync(d);
  for (const f of files ?? fs.readdirSync(src).filter((f) => f === 'config.json' || f.startsWith('model'))) fs.copyFileSync(path.join(src, f), path.join(d, f));
  return d;
}
const editJson = (file: string, edit: (j: any) => void) => {
  const j = JSON.parse(fs.readFileSync(file, 'utf8'));
  edit(j);
  fs.writeFileSync(file, JSON.stringify(j));
};
/** All tensors of a safetensors file, for rewriting with changes. */
function tensorsOf(file: string): SafetensorsTensorToWrite[] {
  const f = openSafetensors(file);
  return [...f.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: f.read(t.name) }));
}
function fails(dir: string, res: RegExp[], tensor?: string): Error {
  let err: unknown;
  assert.throws(
    () => openCheckpoint(dir),
    (e) => ((err = e), true),
  );
  const msg = (err as Error).message;
  for (const re of res) assert.match(msg, re);
  if (tensor) assert.equal((err as { tensor?: string }).tensor, tensor, msg);
  return err as Error;
}
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sumSq = (a: Float32Array) => {
  let s = 0;
  let q = 0;
  for (const x of a) (s += x), (q += x * x);
  return [s, q];
};
const close = (got: number, want: number, what: string) => assert.ok(Math.abs(got - want) <= 1e-9 * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);

describe('reading the fixtures', () => {
  // sum, sum of squares (f64) and last element, computed with numpy from the raw bytes
  const NUMPY: Record<string, Record<string, [number, number, number]>> = {
    'tiny-f32': {
      'transformer.token_embeddings.weight': [10.281225604813734, 509.06588532514945, -0.07250267267227173],
      'transformer.norm.weight': [128.24913835525513, 130.00987310968594, 0.7641831636428833],
      'transformer.layers.1.attn.qkv_proj.weight': [15.103365399119866, 255.22028184863223, -0.08929227292537689],
      'transformer.layers.0.ffn.proj_2.weight': [0.3964082847410282, 7.894419054244139, 0.0398506335914135],
    },
    'tiny-vocab32k-bf16': {
      'transformer.token_embeddings.weight': [-354.8723213253543, 32016.999779826478, -0.05810546875],
      'transformer.norm.weight': [128.81640625, 130.51441955566406, 0.9765625],
      'transformer.layers.1.attn.qkv_proj.weight': [18.185051679611206, 256.96945405474185, 0.11376953125],
      'transformer.layers.0.ffn.proj_2.weight': [0.6763039976358414, 10.707629621143756, -0.01324462890625],
    },
    'tiny-bf16-sharded': {
      'transformer.token_embeddings.weight': [18.901034131646156, 508.59593160887, 0.037109375],
      'transformer.norm.weight': [190.796875, 191.16851806640625, 1.015625],
      'transformer.layers.1.attn.qkv_proj.weight': [-0.3154093096527504, 315.75490653348754, -0.091796875],
      'transformer.layers.0.ffn.proj_2.weight': [3.122068786993623, 15.849075645305408, 0.0022125244140625],
    },
  };
  for (const [name, values] of Object.entries(NUMPY)) {
    test(`${name}: opens, validates, values match numpy`, () => {
      const ck = openCheckpoint(path.join(FIX, name));
      assert.equal(ck.tensors.size, expectedTensors(ck.config).size);
      for (const [t, [sum, sq, last]] of Object.entries(values)) {
        const a = ck.readAsF32(t);
        const [s, q] = sumSq(a);
        close(s, sum, `${t} sum`);
        close(q, sq, `${t} sum of squares`);
        assert.equal(a[a.length - 1], last);
      }
    });
  }

  test('sharded: every tensor comes from the shard the index names, and reads equal the shard', () => {
    const ck = openCheckpoint(SHARDED);
    const index = JSON.parse(fs.readFileSync(path.join(SHARDED, 'model.safetensors.index.json'), 'utf8'));
    assert.equal(ck.index, path.join(SHARDED, 'model.safetensors.index.json'));
    assert.deepEqual(
      ck.files.map((f) => path.basename(f)),
      ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'],
    );
    assert.deepEqual([...ck.tensors.keys()].sort(), Object.keys(index.weight_map).sort());
    let bytes = 0;
    for (const [name, shard] of Object.entries(index.weight_map) as [string, string][]) {
      const t = ck.tensors.get(name)!;
      assert.equal(t.file, path.join(SHARDED, shard));
      assert.deepEqual(ck.read(name), openSafetensors(t.file).read(name));
      bytes += t.byteLength;
    }
    assert.equal(bytes, index.metadata.total_size);
  });

  test('readInto fills a caller buffer; unknown names are named', () => {
    const ck = openCheckpoint(TINY_F32);
    const dest = new Float32Array(128);
    ck.readInto('transformer.norm.weight', dest);
    assert.deepEqual(dest, ck.read('transformer.norm.weight'));
    assert.throws(
      () => ck.read('lm_head.weight'),
      (e: Error) => e instanceof CheckpointError && /tiny-f32: checkpoint has no tensor "lm_head\.weight"/.test(e.message),
    );
  });
});

describe('broken folders', () => {
  test('folder missing, a file instead of a folder, no config.json, bad config.json', () => {
    fails(path.join(tmp, 'nope'), [/checkpoint folder .*nope does not exist/]);
    fails(path.join(TINY_F32, 'model.safetensors'), [/model\.safetensors is not a folder: give the checkpoint folder/]);
    const d = copy(TINY_F32, ['model.safetensors']);
    fails(d, [new RegExp(`${esc(d)}: no config\\.json \\(looked for ${esc(path.join(d, 'config.json'))}\\)`)]);
    fs.writeFileSync(path.join(d, 'config.json'), '{"model_dim": ');
    fails(d, [new RegExp(`${esc(path.join(d, 'config.json'))}: not valid JSON`)]);
  });

  test('no weights: says what was looked for and what was found', () => {
    const d = copy(TINY_F32, ['config.json']);
    fs.writeFileSync(path.join(d, 'pytorch_model.bin'), 'x');
    fails(d, [
      new RegExp(
        `${esc(d)}: no model weights: looked for model\\.safetensors and model\\.safetensors\\.index\\.json \\(found pytorch_model\\.bin; only safetensors weights are read\\)`,
      ),
    ]);
  });

  test('index points at a missing shard', () => {
    const d = copy(SHARDED);
    fs.rmSync(path.join(d, 'model-00002-of-00002.safetensors'));
    fails(
      d,
      [
        /model\.safetensors\.index\.json: maps 25 tensor\(s\) \(e\.g\. "transformer\.layers\.0\.attn\.out_proj\.weight"\) to shard model-00002-of-00002\.safetensors, which is missing from /,
      ],
      'transformer.layers.0.attn.out_proj.weight',
    );
  });

  test('index lists a tensor its shard does not have', () => {
    const d = copy(SHARDED);
    const t = 'transformer.norm.weight';
    editJson(
      path.join(d, 'model.safetensors.index.json'),
      (j) => (j.weight_map[t] = j.weight_map[t].includes('00001') ? 'model-00002-of-00002.safetensors' : 'model-00001-of-00002.safetensors'),
    );
    fails(
      d,
      [
        new RegExp(
          `index\\.json: lists tensor "${esc(t)}" in model-0000\\d-of-00002\\.safetensors, but .*model-0000\\d-of-00002\\.safetensors has no such tensor`,
        ),
      ],
      t,
    );
  });

  test('a tensor in two shards', () => {
    const d = copy(SHARDED);
    const s1 = path.join(d, 'model-00001-of-00002.safetensors');
    const s2 = path.join(d, 'model-00002-of-00002.safetensors');
    const t = 'transformer.token_embeddings.weight';
    const moved = tensorsOf(s2).find((x) => x.name === t)!;
    writeSafetensors(s1, [...tensorsOf(s1), moved], { format: 'pt' });
    fails(d, [new RegExp(`tensor "${esc(t)}" is in two shards: .*model-0000\\d-of-00002\\.safetensors and .*model-0000\\d-of-00002\\.safetensors`)], t);
  });

  test('a shard holds a tensor the index does not list', () => {
    const d = copy(SHARDED);
    const t = 'transformer.norm.weight';
    editJson(path.join(d, 'model.safetensors.index.json'), (j) => delete j.weight_map[t]);
    fails(d, [new RegExp(`index\\.json: does not list tensor "${esc(t)}", which .*model-0000\\d-of-00002\\.safetensors holds`)], t);
  });

  test('bad index JSON', () => {
    const d = copy(SHARDED);
    fs.writeFileSync(path.join(d, 'model.safetensors.index.json'), '{"weight_map": 3}');
    fails(d, [/model\.safetensors\.index\.json: needs a "weight_map" object/]);
    editJson(path.join(d, 'model.safetensors.index.json'), (j) => (j.weight_map = { 'transformer.norm.weight': '../elsewhere.safetensors' }));
    fails(d, [/weight_map\["transformer\.norm\.weight"\] = "\.\.\/elsewhere\.safetensors" points outside the checkpoint folder/], 'transformer.norm.weight');
  });

  test('a truncated shard: the safetensors error names shard and tensor', () => {
    const d = copy(SHARDED);
    const s2 = path.join(d, 'model-00002-of-00002.safetensors');
    fs.truncateSync(s2, fs.statSync(s2).size - 1000);
    fails(d, [new RegExp(`${esc(s2)}: tensor "[^"]+": truncated: tensor "[^"]+" needs bytes \\d+\\.\\.\\d+ but the file has only \\d+ data bytes`)]);
  });

  test('a missing tensor is named, with the file that should hold it', () => {
    const d = copy(TINY_F32);
    const file = path.join(d, 'model.safetensors');
    const t = 'transformer.layers.2.ffn.proj_1.weight';
    writeSafetensors(
      file,
      tensorsOf(file).filter((x) => x.name !== t),
      { format: 'pt' },
    );
    fails(d, [new RegExp(`1 missing tensor\\(s\\), which ${esc(file)} should hold:\\n\\s+${esc(t)} \\[704,128\\]`)], t);

    const s = copy(SHARDED);
    editJson(path.join(s, 'model.safetensors.index.json'), (j) => delete j.weight_map['transformer.norm.weight']);
    const shard = path.join(s, 'model-00001-of-00002.safetensors');
    writeSafetensors(
      shard,
      tensorsOf(shard).filter((x) => x.name !== 'transformer.norm.weight'),
      { format: 'pt' },
    );
    fails(s, [/missing tensor\(s\), which .*model\.safetensors\.index\.json does not list:\n\s+transformer\.norm\.weight \[192\]/], 'transformer.norm.weight');
  });

  test('unexpected tensors are errors with a hint; inv_freq buffers are ignored', () => {
    const d = copy(TINY_F32);
    const file = path.join(d, 'model.safetensors');
    const base = tensorsOf(file);
    const extra = (name: string, shape: number[]): SafetensorsTensorToWrite => ({
      name,
      dtype: 'F32',
      shape,
      data: new Float32Array(shape.reduce((a, b) => a * b, 1)),
    });
    writeSafetensors(file, [...base, extra('transformer.layers.0.attn.rotary_emb.inv_freq', [16])], { format: 'pt' });
    openCheckpoint(d);
    writeSafetensors(file, [...base, extra('lm_head.weight', [512, 128]), extra('transformer.layers.4.attn_norm.weight', [128])], { format: 'pt' });
    fails(
      d,
      [
        /2 unexpected tensor\(s\), not part of an OpenELM with this config/,
        /lm_head\.weight \[512,128\] in .*model\.safetensors \(share_input_output_layers = true ties the output head to the embedding\)/,
        /transformer\.layers\.4\.attn_norm\.weight \[128\] in .*model\.safetensors \(layer 4, but num_transformer_layers = 4\)/,
      ],
      'lm_head.weight',
    );
  });

  test('a config that does not match the weights: shapes named with the fields behind them', () => {
    const d = copy(TINY_F32);
    editJson(path.join(d, 'config.json'), (j) => (j.ffn_multipliers = [0.5, 1.67, 2.83, 3.5]));
    const e = fails(
      d,
      [
        /2 tensor\(s\) with the wrong shape for .*config\.json/,
        /transformer\.layers\.3\.ffn\.proj_1\.weight in .*model\.safetensors has shape \[1024,128\], expected \[896,128\] = \[2·ffn_dims\[3\], model_dim\] = \[2·448, 128\] \(ffn_with_glu\); ffn_dims come from ffn_multipliers, model_dim and ffn_dim_divisor/,
        /transformer\.layers\.3\.ffn\.proj_2\.weight .* has shape \[128,512\], expected \[128,448\]/,
      ],
      'transformer.layers.3.ffn.proj_1.weight',
    );
    assert.ok(e instanceof CheckpointError);

    const g = copy(TINY_F32);
    editJson(path.join(g, 'config.json'), (j) => {
      j.num_gqa_groups = 1;
      delete j.num_query_heads;
      delete j.num_kv_heads;
    });
    fails(g, [
      /transformer\.layers\.0\.attn\.qkv_proj\.weight in .* has shape \[128,128\], expected \[192,128\] = \[\(num_query_heads\[0\] \+ 2·num_kv_heads\[0\]\)·head_dim, model_dim\] = \[\(2 \+ 2·2\)·32, 128\]; num_query_heads\/num_kv_heads come from qkv_multipliers, model_dim, head_dim and num_gqa_groups/,
    ]);

    const l = copy(TINY_F32);
    editJson(path.join(l, 'config.json'), (j) => {
      j.num_transformer_layers = 5;
      j.ffn_multipliers = [0.5, 1, 1.67, 2.83, 4.0];
      j.num_query_heads = j.num_kv_heads = undefined;
    });
    fails(l, [/8 missing tensor\(s\), which .*model\.safetensors should hold:\n\s+transformer\.layers\.4\.attn_norm\.weight \[128\]/]);
  });

  test('a weight stored as an integer dtype', () => {
    const d = copy(TINY_F32);
    const file = path.join(d, 'model.safetensors');
    writeSafetensors(
      file,
      tensorsOf(file).map((t) => (t.name === 'transformer.norm.weight' ? { ...t, dtype: 'I32' as const } : t)),
      { format: 'pt' },
    );
    fails(d, [/1 tensor\(s\) not stored as F32, BF16 or F16:\n\s+transformer\.norm\.weight is I32 in .*model\.safetensors/], 'transformer.norm.weight');
    assert.equal(openCheckpoint(d, { validate: false }).tensors.get('transformer.norm.weight')!.dtype, 'I32');
  });
});

describe('writeCheckpoint', () => {
  const src = openCheckpoint(TINY_F32);
  const cfg = src.config;
  const inputs = (): CheckpointTensorInput[] => [...expectedTensors(cfg)].map(([name, shape]) => ({ name, shape, data: src.readAsF32(name) }));

  test('f32: model.safetensors is byte-identical to the reference-written fixture; config.json reparses', async () => {
    const out = tmpDir();
    await writeCheckpoint(out, cfg, inputs());
    assert.deepEqual(fs.readdirSync(out).sort(), ['config.json', 'model.safetensors']);
    assert.ok(fs.readFileSync(path.join(out, 'model.safetensors')).equals(fs.readFileSync(path.join(TINY_F32, 'model.safetensors'))));
    const back = openCheckpoint(out);
    assert.deepEqual(back.config, cfg);
    assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype, 'float32');
  });

  test('bf16 and f16: converted on the fly, equal to converting the f32 values', async () => {
    for (const [dtype, conv, torch] of [
      ['bf16', f32ToBf16, 'bfloat16'],
      ['f16', f32ToF16, 'float16'],
    ] as const) {
      const out = tmpDir(dtype);
      // an async iterable input, tensors in reverse order
      async function* gen() {
        for (const t of inputs().reverse()) yield t;
      }
      await writeCheckpoint(out, cfg, gen(), { dtype });
      const back = openCheckpoint(out);
      assert.equal(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).torch_dtype, torch);
      for (const [name] of expectedTensors(cfg)) {
        const f = src.readAsF32(name);
        const want = new Uint16Array(f.length);
        conv(f, want);
        assert.equal(back.tensors.get(name)!.dtype, dtype.toUpperCase());
        assert.deepEqual(back.read(name), want, name);
      }
    }
  });

  test('sharded: shards no larger than shardSize, index consistent, bf16 input copied bit-exactly', async () => {
    const sharded = openCheckpoint(SHARDED);
    const out = tmpDir('sharded');
    const shardSize = 1_000_000;
    const given = [...expectedTensors(sharded.config)].map(([name, shape]) => ({
      name,
      shape,
      data: sharded.read(name) as Uint16Array,
      dtype: 'BF16' as const,
    }));
    await writeCheckpoint(out, sharded.config, given, { dtype: 'bf16', shardSize });
    const files = fs.readdirSync(out).sort();
    const shards = files.filter((f) => f.endsWith('.safetensors'));
    assert.ok(shards.length >= 4, files.join());
    shards.forEach((f, i) => {
      assert.equal(f, `model-${String(i + 1).padStart(5, '0')}-of-${String(shards.length).padStart(5, '0')}.safetensors`);
      const sf = openSafetensors(path.join(out, f));
      assert.deepEqual(sf.metadata, { format: 'pt' });
      const bytes = [...sf.tensors.values()].reduce((a, t) => a + t.byteLength, 0);
      assert.ok(bytes <= shardSize || sf.tensors.size === 1, `${f}: ${bytes} bytes`);
    });
    const back = openCheckpoint(out);
    const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8'));
    assert.deepEqual(Object.keys(index.weight_map), Object.keys(index.weight_map).sort());
    assert.equal(
      index.metadata.total_size,
      [...back.tensors.values()].reduce((a, t) => a + t.byteLength, 0),
    );
    for (const [name] of expectedTensors(sharded.config)) assert.deepEqual(back.read(name), sharded.read(name), name);

    // bf16 → f32 widening on write
    const wide = tmpDir('wide');
    await writeCheckpoint(wide, sharded.config, given, { dtype: 'f32' });
    assert.deepEqual(openCheckpoint(wide).read('transformer.norm.weight'), sharded.readAsF32('transformer.norm.weight'));
  });

  test('atomic: an input that throws midway leaves no folder and no temp folder', async () => {
    const out = tmpDir('atomic');
    function* failing() {
      let n = 0;
      for (const t of inputs()) {
        if (n++ === 10) throw new Error('generator failed');
        yield t;
      }
    }
    await assert.rejects(writeCheckpoint(out, cfg, failing(), { shardSize: 500_000 }), /generator failed/);
    assert.ok(!fs.existsSync(out));
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('atomic')),
      [],
    );
  });

  test('bad input is named and leaves nothing behind', async () => {
    const cases: [CheckpointTensorInput[], RegExp][] = [
      [
        [...inputs(), { name: 'lm_head.weight', shape: [512, 128], data: new Float32Array(512 * 128) }],
        /tensor "lm_head\.weight" is not part of an OpenELM with this config/,
      ],
      [
        inputs().map((t) => (t.name === 'transformer.norm.weight' ? { ...t, shape: [64], data: t.data.subarray(0, 64) } : t)),
        /tensor "transformer\.norm\.weight" has shape \[64\] but the config implies \[128\]/,
      ],
      [
        inputs().filter((t) => !t.name.startsWith('transformer.layers.3.')),
        /8 tensor\(s\) the config needs were never given, e\.g\. "transformer\.layers\.3\.attn_norm\.weight"/,
      ],
      [[...inputs(), inputs()[0]], /tensor "transformer\.token_embeddings\.weight" is given twice/],
      [
        inputs().map((t) => (t.name === 'transformer.norm.weight' ? { ...t, data: new Uint16Array(128) } : t)),
        /tensor "transformer\.norm\.weight" data is a Uint16Array but dtype is F32/,
      ],
    ];
    for (const [given, re] of cases) {
      const out = tmpDir('bad');
      await assert.rejects(
        writeCheckpoint(out, cfg, given),
        (e: Error) => e instanceof CheckpointError && re.test(e.message) && !!e.tensor && e.message.includes(`"${e.tensor}"`),
      );
      assert.ok(!fs.existsSync(out));
    }
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('.tmp-')),
      [],
    );
  });

  test('an existing non-empty folder is refused; an empty one is filled', async () => {
    const full = tmpDir('full');
    fs.mkdirSync(full);
    fs.writeFileSync(path.join(full, 'keep.txt'), 'mine');
    await assert.rejects(writeCheckpoint(full, cfg, inputs()), /full already exists and is not an empty folder/);
    await assert.rejects(
      writeCheckpoint(tmpDir(), cfg, inputs(), { dtype: 'toString' as 'f32' }),
      /writeCheckpoint: dtype must be f32, bf16 or f16, got "toString"/,
    );
    assert.deepEqual(fs.readdirSync(full), ['keep.txt']);
    const empty = tmpDir('empty');
    fs.mkdirSync(empty);
    await writeCheckpoint(empty, cfg, inputs());
    openCheckpoint(empty);
  });
});

test('the vocab-32k fixture converts bf16 → f32 → bf16 exactly through a written checkpoint', async () => {
  const ck = openCheckpoint(VOCAB32K);
  const out = tmpDir('v32k');
  await writeCheckpoint(
    out,
    ck.config,
    [...expectedTensors(ck.config)].map(([name, shape]) => ({ name, shape, data: ck.readAsF32(name) })),
    { dtype: 'bf16' },
  );
  for (const name of ck.tensors.keys()) assert.deepEqual(openCheckpoint(out).read(name), ck.read(name), name);
});
