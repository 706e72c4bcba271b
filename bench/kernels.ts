/// <reference types="node" />
// Micro-benchmark of the matmul kernels on OpenELM-270M shapes (model_dim 1280):
//   decode  (n = 1, matrix × vector, memory-bound): GB/s of weights streamed
//   prefill (n = 128): GFLOP/s (2 · rows · cols · n per call)
//   sampling: ms per token of the Sampler (top-p / top-k over 32000 tokens), wasm vs the TS reference
// Each figure is the median of 5 windows, with the range of the windows in parentheses.
// for every weight dtype and thread count, next to the plain-TypeScript reference.
//
//   npm run bench:kernels -- [--threads 1,2] [--seconds 0.5] [--plain]
//
// The relaxed-SIMD build is used where the engine has it (createWasmKernels switches it on in
// Node 20); --plain measures the plain-SIMD build instead.

import { availableParallelism } from 'node:os';
import { Sampler } from '../src/generate/sampler.ts';
import { f32ToF16Bits } from '../src/kernels/half.ts';
import { RefKernels } from '../src/kernels/ref.ts';
import type { Kernels, Weight, WeightDType } from '../src/kernels/types.ts';
import { createWasmKernels } from '../src/kernels/wasm/wasm.ts';
import { benchArgs } from './args.ts';
import { time } from './timing.ts';

const { values } = benchArgs(import.meta.url, {
  threads: { type: 'string', default: [...new Set([1, 2, availableParallelism()])].join(',') },
  seconds: { type: 'string', default: '0.5' },
  plain: { type: 'boolean', default: false },
  'no-ref': { type: 'boolean', default: false },
});
const threadCounts = values.threads.split(',').map(Number);
const seconds = Number(values.seconds);
const SHAPES: [number, number][] = [
  [5120, 1280],
  [32000, 1280],
];
const DTYPES: WeightDType[] = ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'];
const PREFILL = 128;

/** random but valid contents: finite halves, q blocks with small f16 scales */
function fill(w: Weight): void {
  const bytes = new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (Math.random() * 256) | 0;
  if (w.dtype === 'f32') {
    const d = w.data as Float32Array;
    for (let i = 0; i < d.length; i++) d[i] = Math.random() - 0.5;
  }
  if (w.dtype === 'bf16' || w.dtype === 'f16') {
    const d = w.data as Uint16Array,
      h = f32ToF16Bits(0.01);
    for (let i = 0; i < d.length; i++) d[i] = w.dtype === 'f16' ? h ^ (i & 0x83ff) : 0x3c00 ^ (i & 0x807f);
  }
  if (w.dtype === 'q8_0' || w.dtype === 'q4_0') {
    const bb = w.dtype === 'q8_0' ? 34 : 18,
      h = f32ToF16Bits(0.01);
    for (let o = 0; o < bytes.length; o += bb) {
      bytes[o] = h & 0xff;
      bytes[o + 1] = h >> 8;
    }
  }
}

/** seconds per call: the median (and range) of 5 windows of `budget / 5` seconds, after warm-up */

function row(label: string, rows: number, cols: number, dtype: WeightDType, k: Kernels, n: number, budget: number): void {
  const w = k.weight(dtype, rows, cols);
  fill(w);
  const x = k.f32(n * cols),
    out = k.f32(n * rows);
  for (let i = 0; i < x.length; i++) x[i] = Math.random() - 0.5;
  const { median, min, max } = time(() => k.matmul(out, x, w, n), budget);
  const rate = (s: number): number => (n === 1 ? k.weightBytes(dtype, rows, cols) : 2 * rows * cols * n) / s / 1e9;
  const unit = n === 1 ? 'GB/s' : 'GFLOP/s';
  console.log(
    `${label.padEnd(20)} ${`[${rows} x ${cols}]`.padEnd(14)} ${dtype.padEnd(5)} n=${String(n).padEnd(4)} ` +
      `${(median * 1e3).toFixed(3).padStart(9)} ms  ${rate(median).toFixed(2).padStart(7)} ${unit} (${rate(max).toFixed(1)}–${rate(min).toFixed(1)})`,
  );
}

console.log(`node ${process.version}, ${availableParallelism()} cores; ${seconds} s per measurement`);
for (const n of [1, PREFILL]) {
  console.log(n === 1 ? '\n# decode: matrix × vector' : `\n# prefill: ${PREFILL} tokens`);
  for (const [rows, cols] of SHAPES) {
    if (n > 1 && rows > 5120) continue; // the vocabulary projection runs once per chunk in prefill
    for (const dtype of DTYPES) {
      for (const threads of threadCounts) {
        const k = await createWasmKernels({ threads, relaxedSimd: !values.plain });
        row(k.name, rows, cols, dtype, k, n, seconds);
        k.dispose();
      }
      if (!values['no-ref'] && n === 1) row('ref', rows, cols, dtype, new RefKernels(), n, 0.05);
    }
  }
}

// sampling over a 32000-token vocabulary (Sampler: softmax, then the top-p / top-k candidates
// selected and sorted), on logits shaped like a trained model's (peaked) and like a random one's
console.log('\n# sampling: 32000-token vocabulary, ms per token');
{
  const V = 32000;
  const wasm = await createWasmKernels({ threads: 1, relaxedSimd: !values.plain });
  for (const [shape, std] of [
    ['peaked logits (std 3)', 3],
    ['flat logits (std 0.5)', 0.5],
  ] as const) {
    const logits = new Float32Array(V);
    for (let i = 0; i < V; i++) logits[i] = std * Math.sqrt(-2 * Math.log(Math.random() + 1e-12)) * Math.cos(2 * Math.PI * Math.random());
    for (const opts of [
      { temperature: 0.7, topP: 0.9 },
      { temperature: 0.7, topK: 40, topP: 1 },
    ]) {
      const cells = [];
      for (const [name, k] of [
        ['wasm', wasm],
        ['ref', undefined],
      ] as const) {
        const s = new Sampler(V, { ...opts, seed: 1 }, k);
        const { median } = time(() => s.sample(logits), name === 'ref' ? 0.1 : seconds);
        cells.push(`${name} ${(median * 1e3).toFixed(3)}`);
      }
      console.log(`${shape.padEnd(22)} ${JSON.stringify(opts).padEnd(36)} ${cells.join('   ')}`);
    }
  }
  wasm.dispose();
}
