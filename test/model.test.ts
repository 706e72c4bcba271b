// The OpenELM forward pass against the PyTorch golden vectors, through both kernel backends,
// and the invariants the KV cache must keep (chunked prefill = one pass = token by token).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type OpenELMConfig, parseConfig } from '../src/config/index.ts';
import { argmax } from '../src/generate/sampler.ts';
import { createKernels } from '../src/kernels/index.ts';
import type { Kernels } from '../src/kernels/types.ts';
import { checkpointSource } from '../src/load.ts';
import { initTensors } from '../src/model/init.ts';
import { ContextLengthError, OpenELM } from '../src/model/openelm.ts';
import type { TensorSource } from '../src/model/weights.ts';

const FIX = (f: string) => fileURLToPath(new URL(`./fixtures/openelm/${f}/`, import.meta.url));
const expected = (f: string) => JSON.parse(fs.readFileSync(FIX(f) + 'expected.json', 'utf8'));

function maxAbsDiff(a: Float32Array, rows: number[][]): number {
  const V = rows[0].length;
  let m = 0;
  rows.forEach((row, t) =>
    row.forEach((v, j) => {
      m = Math.max(m, Math.abs(v - a[t * V + j]));
    }),
  );
  return m;
}

function greedy(model: OpenELM, prompt: number[], n: number): number[] {
  model.reset();
  let logits = model.forward(prompt);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    out.push(argmax(logits));
    logits = model.step(out[i]);
  }
  return out;
}

/** An in-memory checkpoint of random weights for any config. */
function randomSource(config: OpenELMConfig, seed = 0): TensorSource {
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const t of initTensors(config, seed)) {
    // perturb norms so they matter
    if (t.shape.length === 1) for (let i = 0; i < t.data.length; i++) t.data[i] = 1 + 0.1 * Math.sin(i + seed);
    tensors.set(t.name, t);
  }
  return {
    config,
    info: (name) => {
      const t = tensors.get(name);
      return t && { dtype: 'F32', shape: t.shape };
    },
    readInto: (name, dest) => dest.set(new Uint8Array(tensors.get(name)!.data.buffer)),
  };
}

const backends: [string, () => Promise<Kernels>][] = [
  ['ref', () => createKernels('ref')],
  ['wasm-1', () => createKernels('wasm', { threads: 1 })],
  ['wasm-2', () => createKernels('wasm', { threads: 2 })],
];

for (const [name, make] of backends) {
  test(`golden logits and greedy tokens (${name})`, async () => {
    const kernels = await make();
    try {
      for (const f of ['tiny-f32', 'tiny-bf16-sharded']) {
        const e = expected(f);
        for (const chunkSize of [1, 5, 64]) {
          const m = OpenELM.load(checkpointSource(FIX(f)), { kernels, chunkSize });
          const d = maxAbsDiff(m.forwardAll(e.input_ids), e.logits);
          assert.ok(d <= 1e-3, `${f} chunk ${chunkSize}: max abs diff ${d}`);
          assert.deepEqual(greedy(m, e.greedy.prompt_ids, e.greedy.max_new_tokens), e.greedy.output_ids, `${f} greedy`);
        }
      }
      const e = expected('tiny-vocab32k-bf16');
      const m = OpenELM.load(checkpointSource(FIX('tiny-vocab32k-bf16')), { kernels });
      for (const g of e.generation) assert.deepEqual(greedy(m, g.prompt_ids, g.output_ids.length), g.output_ids);
    } finally {
      kernels.dispose?.();
    }
  });
}

test('KV cache: token-by-token logits equal one full pass, for config variants', async () => {
  const base = { num_transformer_layers: 3, model_dim: 64, head_dim: 16, vocab_size: 97, max_context_length: 40, ffn_dim_divisor: 16, rope_max_length: 64 };
  const variants = [
    { num_gqa_groups: 2 },
    { num_gqa_groups: 1, normalize_qk_projections: false }, // MHA, no q/k norm
    { num_gqa_groups: 2, share_input_output_layers: false, rope_freq_constant: 500000 }, // untied head
    { num_gqa_groups: 1, ffn_with_glu: false, activation_fn_name: 'gelu', qkv_multipliers: 1.0, ffn_multipliers: 2.0 },
    { num_gqa_groups: 4, activation_fn_name: 'relu', qkv_multipliers: [1.0, 2.0], ffn_multipliers: [1.0, 2.0, 3.0] },
  ];
  const ref = await createKernels('ref');
  const wasm = await createKernels('wasm', { threads: 2 });
  try {
    for (const v of variants) {
      const cfg = parseConfig({ ...base, ...v });
      const ids = Array.from({ length: 23 }, (_, i) => (i * 37 + 11) % cfg.vocab_size);
      const a = OpenELM.load(randomSource(cfg), { kernels: ref });
      const full = a.forwardAll(ids);
      a.reset();
      const V = cfg.vocab_size;
      for (let t = 0; t < ids.length; t++) {
        const step = a.step(ids[t]);
        for (let j = 0; j < V; j++) assert.ok(Math.abs(step[j] - full[t * V + j]) < 1e-4, `${JSON.stringify(v)} pos ${t}`);
      }
      const b = OpenELM.load(randomSource(cfg), { kernels: wasm, chunkSize: 7 });
      const fb = b.forwardAll(ids);
      let d = 0;
      for (let i = 0; i < full.length; i++) d = Math.max(d, Math.abs(full[i] - fb[i]));
      assert.ok(d < 1e-3, `${JSON.stringify(v)}: wasm vs ref ${d}`);
      if (!cfg.share_input_output_layers) assert.notStrictEqual(a.weights.lm_head, a.weights.token_embeddings);
    }
  } finally {
    wasm.dispose?.();
  }
});

test('context overflow and bad token ids are clear errors', () => {
  const m = OpenELM.load(checkpointSource(FIX('tiny-f32')), { contextLength: 10 });
  assert.throws(() => m.forward(Array(11).fill(3)), ContextLengthError);
  m.forward(Array(10).fill(3));
  assert.throws(() => m.step(3), /context holds 10/);
  m.reset();
  assert.throws(() => m.forward([1, 600]), /token id 600 at position 1 is outside the vocabulary \[0, 512\)/);
  assert.throws(() => m.forward([]), /at least one token/);
  assert.throws(() => OpenELM.load(checkpointSource(FIX('tiny-f32')), { contextLength: 65 }), /contextLength/);
});
