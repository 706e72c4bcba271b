/// <reference types="node" />
// Micro-benchmark of the training kernels on the benchmark model (vocab 32000, d 256, 8 layers,
// head_dim 32, GQA 4, seq 256, batch 8; bench/train-torch.py describes it):
//   gemm: GFLOP/s (2 · rows · cols · n per call) of the forward matmul, matmulGradInput and
//         matmulGradWeight at the model's shapes, n = 2048 tokens (the head: 128-token chunks)
//   step: one whole training step (Backprop.step: forward, loss, backward; then the gradient norm,
//         clipping and AdamW, as the trainer does) on random weights, tokens/s, and the time per
//         kernel op, measured by wrapping the kernels in a timing proxy
//
//   node --import tsx bench/train-kernels.ts [--threads 1,2] [--seconds 0.5] [--steps 3] [--only gemm|step] [--plain] [--chunk 128]
//   node --import tsx bench/train-kernels.ts --b /tmp/variant/kernels-relaxed.wasm [--a A.wasm] [--threads 1] [--rounds 9]
//
// Each GEMM figure is the median of 5 windows (range in parentheses); the step is the median of
// --steps steps after one warm-up step. With --b: an in-process A/B of two kernel builds (--a
// defaults to the committed relaxed build), alternating rounds of every GEMM cell, the attention
// backward, cross-entropy and AdamW, printing the median ratio of B's speed to A's (> 1: B faster).

import { availableParallelism } from 'node:os';
import { parseConfig } from '../src/config/index.ts';
import type { Kernels } from '../src/kernels/types.ts';
import { createWasmKernels, type WasmKernels } from '../src/kernels/wasm/wasm.ts';
import { Backprop } from '../src/train/backprop.ts';
import { clipGradNorm } from '../src/train/optim.ts';
import { ParamLayout } from '../src/train/params.ts';
import { benchArgs } from './args.ts';
import { time } from './timing.ts';

const { values } = benchArgs(import.meta.url, {
  threads: { type: 'string', default: '1,2' },
  seconds: { type: 'string', default: '0.5' },
  steps: { type: 'string', default: '3' },
  chunk: { type: 'string', default: '128' },
  only: { type: 'string' },
  plain: { type: 'boolean', default: false },
  a: { type: 'string' },
  b: { type: 'string' },
  rounds: { type: 'string', default: '9' },
});
const threadCounts = values.threads.split(',').map(Number);
const seconds = Number(values.seconds);

/** seconds per call: the median (and range) of 5 windows of `budget / 5` seconds, after warm-up */

function random(k: Kernels, n: number, scale: number): Float32Array {
  const a = k.f32(n);
  for (let i = 0; i < n; i++) a[i] = (Math.random() * 2 - 1) * scale;
  return a;
}

// ---- the matmul gradients next to the forward GEMM ----

const GEMM_SHAPES: [string, number, number, number][] = [
  // name, rows, cols (nn.Linear [out, in]), tokens per call
  // (the benchmark model's qkv_proj is 384 × 256 in layers 1-7; 512 × 256 as the brief's shape list)
  ['qkv_proj', 384, 256, 2048],
  ['qkv_proj', 512, 256, 2048],
  ['out_proj', 256, 256, 2048],
  ['proj_1', 2048, 256, 2048],
  ['proj_2', 256, 1024, 2048],
  ['lm_head (chunk)', 32000, 256, 128],
];

function gemmRows(k: WasmKernels): void {
  for (const [name, rows, cols, n] of GEMM_SHAPES) {
    const w = k.weight('f32', rows, cols);
    (w.data as Float32Array).set(random(k, rows * cols, 0.05));
    const x = random(k, n * cols, 1),
      y = k.f32(n * rows),
      dy = random(k, n * rows, 1),
      dx = k.f32(n * cols),
      dw = k.f32(rows * cols);
    const flops = 2 * rows * cols * n;
    const cells = [
      ['matmul', () => k.matmul(y, x, w, n)],
      ['gradInput', () => k.matmulGradInput(dx, dy, w, n)],
      ['gradWeight', () => k.matmulGradWeight(dw.subarray(0), dy, x, n, rows, cols)],
    ] as const;
    const out = cells.map(([label, fn]) => {
      const { median, min, max } = time(fn, seconds);
      return `${label} ${(flops / median / 1e9).toFixed(1).padStart(5)} (${(flops / max / 1e9).toFixed(0)}–${(flops / min / 1e9).toFixed(0)})`;
    });
    console.log(`${k.name.padEnd(20)} ${name.padEnd(16)} ${`[${rows} x ${cols}] n=${n}`.padEnd(22)} GFLOP/s: ${out.join('  ')}`);
  }
}

// ---- one training step ----

const CONFIG = parseConfig(
  {
    vocab_size: 32000,
    model_dim: 256,
    num_transformer_layers: 8,
    head_dim: 32,
    num_gqa_groups: 4,
    qkv_multipliers: [0.5, 1.0],
    ffn_multipliers: [0.5, 4.0],
    ffn_dim_divisor: 64,
    max_context_length: 256,
  },
  'bench config',
);
const B = 8,
  S = 256;

/** the kernels with every method call timed into `spent` (ms per op name) */
function timed(k: Kernels, spent: Map<string, { ms: number; calls: number }>): Kernels {
  return new Proxy(k, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || typeof prop !== 'string' || ['f32', 'i32', 'weight', 'weightBytes', 'dispose'].includes(prop)) {
        return typeof v === 'function' ? v.bind(target) : v;
      }
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const r = (v as (...a: unknown[]) => unknown).apply(target, args);
        const s = spent.get(prop) ?? { ms: 0, calls: 0 };
        s.ms += performance.now() - t0;
        s.calls++;
        spent.set(prop, s);
        return r;
      };
    },
  });
}

async function stepRows(threads: number): Promise<void> {
  const base = await createWasmKernels({ threads, relaxedSimd: !values.plain });
  const spent = new Map<string, { ms: number; calls: number }>();
  const k = timed(base, spent);
  const layout = new ParamLayout(CONFIG);
  const params = k.f32(layout.size),
    grads = k.f32(layout.size),
    m = k.f32(layout.size),
    v = k.f32(layout.size);
  layout.init(params, 0);
  const bp = new Backprop(CONFIG, k, { batchSize: B, seqLen: S, logitsChunk: Number(values.chunk) });
  const w = layout.weights(params),
    g = layout.weights(grads);
  const inputs = new Int32Array(B * S),
    targets = new Int32Array(B * S);
  const step = (i: number): { fwdBwd: number; optim: number; loss: number } => {
    for (let j = 0; j < B * S; j++) {
      inputs[j] = (Math.random() * CONFIG.vocab_size) | 0;
      targets[j] = (Math.random() * CONFIG.vocab_size) | 0;
    }
    const t0 = performance.now();
    grads.fill(0);
    const r = bp.step(w, g, { batchSize: B, seqLen: S, inputs, targets });
    const t1 = performance.now();
    clipGradNorm(k, grads, layout, 1.0);
    for (const t of layout.tensors) {
      const a = t.offset,
        b = a + t.size;
      k.adamw(params.subarray(a, b), grads.subarray(a, b), m.subarray(a, b), v.subarray(a, b), t.size, 1e-3, 0.9, 0.95, 1e-8, t.decay ? 0.1 : 0, i + 1);
    }
    return { fwdBwd: t1 - t0, optim: performance.now() - t1, loss: r.loss };
  };
  step(0); // warm-up
  spent.clear();
  const steps = Number(values.steps),
    runs: { fwdBwd: number; optim: number; loss: number }[] = [];
  for (let i = 1; i <= steps; i++) runs.push(step(i));
  const totals = runs.map((r) => r.fwdBwd + r.optim).sort((a, b) => a - b),
    median = totals[Math.floor(steps / 2)];
  const fb = runs.map((r) => r.fwdBwd).sort((a, b) => a - b)[Math.floor(steps / 2)];
  console.log(
    `\n${base.name}, logits chunk ${values.chunk}: step ${median.toFixed(0)} ms (forward+backward ${fb.toFixed(0)}, clip+AdamW ${(median - fb).toFixed(0)}) → ` +
      `${(((B * S) / median) * 1000).toFixed(0)} tokens/s (steps ${totals.map((t) => t.toFixed(0)).join(', ')} ms; loss ${runs.map((r) => r.loss.toFixed(3)).join(', ')})`,
  );
  const all = [...spent.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const sum = all.reduce((a, [, s]) => a + s.ms, 0);
  for (const [op, s] of all) {
    console.log(
      `  ${op.padEnd(22)} ${(s.ms / steps).toFixed(1).padStart(8)} ms/step ${((100 * s.ms) / sum).toFixed(1).padStart(5)} %  (${s.calls / steps} calls)`,
    );
  }
  console.log(`  ${'(outside the kernels)'.padEnd(22)} ${(median - sum / steps).toFixed(1).padStart(8)} ms/step`);
  base.dispose();
}

// ---- A/B of two builds ----

/** the measured units of work of the A/B: name → a closure per backend (same data in both) */
function abCells(k: WasmKernels): [string, () => void][] {
  const cells: [string, () => void][] = [];
  for (const [name, rows, cols, n] of GEMM_SHAPES) {
    const w = k.weight('f32', rows, cols);
    (w.data as Float32Array).set(random(k, rows * cols, 0.05));
    const x = random(k, n * cols, 1),
      y = k.f32(n * rows),
      dy = random(k, n * rows, 1),
      dx = k.f32(n * cols),
      dw = k.f32(rows * cols);
    cells.push([`${name} matmul`, () => k.matmul(y, x, w, n)]);
    cells.push([`${name} gradInput`, () => k.matmulGradInput(dx, dy, w, n)]);
    cells.push([`${name} gradWeight`, () => k.matmulGradWeight(dw, dy, x, n, rows, cols)]);
  }
  {
    const n = S,
      nQ = 8,
      nKV = 2,
      hd = 32,
      qkvDim = (nQ + 2 * nKV) * hd,
      s = { n, pos0: 0, nQ, nKV, headDim: hd };
    const qkv = random(k, n * qkvDim, 1),
      out = random(k, n * nQ * hd, 1),
      dout = random(k, n * nQ * hd, 1),
      d = k.f32(n * qkvDim);
    cells.push(['attentionBackward 8/2 hd 32 n 256', () => k.attentionBackward(d, dout, qkv, out, s)]);
  }
  {
    // (in place: the logits become their gradient, the next call's input; the work does not depend on the values)
    const n = 128,
      V = 32000,
      logits = random(k, n * V, 4),
      targets = k.i32(n),
      lse = k.f32(n);
    for (let t = 0; t < n; t++) targets[t] = t * 7;
    cells.push(['crossEntropy [128, 32000]', () => k.crossEntropy(logits, targets, n, V, 1e-4, 1 / 2048, lse)]);
  }
  {
    const n = 1 << 22,
      p = random(k, n, 1),
      g = random(k, n, 1),
      m = random(k, n, 1),
      v = k.f32(n);
    cells.push(['adamw 4M', () => k.adamw(p, g, m, v, n, 1e-3, 0.9, 0.95, 1e-8, 0.1, 5)]);
  }
  return cells;
}

async function ab(): Promise<void> {
  const { readFileSync } = await import('node:fs');
  const threads = threadCounts[0],
    rounds = Number(values.rounds);
  const load = (file: string | undefined) => createWasmKernels({ threads, binary: file ? new Uint8Array(readFileSync(file)) : undefined });
  const ka = await load(values.a),
    kb = await load(values.b);
  const ca = abCells(ka),
    cb = abCells(kb);
  console.log(`A/B, ${threads} thread(s): A = ${values.a ?? 'committed build'}, B = ${values.b}; B's speed / A's, median of ${rounds} rounds`);
  for (let c = 0; c < ca.length; c++) {
    const ratios: number[] = [];
    let bestA = Infinity,
      bestB = Infinity;
    for (let r = 0; r < rounds; r++) {
      const ta = time(ca[c][1], seconds / 5).median,
        tb = time(cb[c][1], seconds / 5).median;
      bestA = Math.min(bestA, ta);
      bestB = Math.min(bestB, tb);
      ratios.push(ta / tb);
    }
    ratios.sort((x, y) => x - y);
    console.log(
      `${ca[c][0].padEnd(36)} A ${(bestA * 1e3).toFixed(3).padStart(8)} ms  B ${(bestB * 1e3).toFixed(3).padStart(8)} ms  B/A ${ratios[rounds >> 1].toFixed(3)} (${ratios[0].toFixed(2)}–${ratios[rounds - 1].toFixed(2)})`,
    );
  }
  ka.dispose();
  kb.dispose();
}

console.log(`node ${process.version}, ${availableParallelism()} cores; ${values.plain ? 'plain' : 'relaxed'} SIMD build`);
if (values.b) {
  await ab();
  process.exit(0);
}
if (values.only !== 'step') {
  console.log('\n# matmul gradients vs the forward GEMM (f32 weights)');
  for (const threads of threadCounts) {
    const k = await createWasmKernels({ threads, relaxedSimd: !values.plain });
    gemmRows(k);
    k.dispose();
  }
}
if (values.only !== 'gemm') {
  console.log(`\n# one training step: batch ${B} × seq ${S}, ${layout()} parameters`);
  for (const threads of threadCounts) await stepRows(threads);
}

function layout(): string {
  return (new ParamLayout(CONFIG).count / 1e6).toFixed(2) + 'M';
}
