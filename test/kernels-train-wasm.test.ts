/// <reference types="node" />
// The training ops of WasmKernels (matmul gradients, norm / rope / attention / activation /
// embedding backward, cross-entropy, gradient norm, clipping, AdamW) against the plain-TypeScript
// oracle (RefKernels), on odd shapes: sizes that are not multiples of the SIMD width or of the
// kernels' tiles (12 columns, 3 rows, 4 × 8, blocks of 128 rows and 256 / 512 columns), single
// tokens, GQA groups of 1, 2 and 3, head dims 32 and 64, every activation, ignored targets,
// repeated token ids, and "+=" outputs pre-filled with random values. Both builds (plain and
// relaxed SIMD) and 1 and 2 threads, every op split as finely as the pool allows.
//
// The reference is computed once per case (it accumulates in float64) and every backend variant
// is compared with it. Bounds (|wasm - ref| per element):
// - matmul gradients: 1e-5 · (Σ |products| of the element, from the reference run on absolute
//   values) + 1e-6: f32 sums in another order (the float matmul tests use the same bound);
// - norms, attention, activations: 3e-5 · |ref| + 3e-6 · max |ref| of the tensor: f32 arithmetic
//   and the degree-6 polynomial exp (~1e-7), with cancellation in sums like Σ dy·w·x and p (dp - D)
//   absorbed by the scale of the tensor;
// - cross-entropy: 2e-5 relative per probability (the f32 exponent x - lse carries ~|x - lse| · 6e-8),
//   plus 2e-5 · scale at the target (p - 1 cancels), the loss to 1e-6 relative;
// - sumSquares: 1e-12 relative (both f64); embedBackward, AdamW and scale by an f32 factor: exact
//   (the same f32 operations in the same order).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RefKernels } from '../src/kernels/ref.ts';
import type { Activation, AttentionShape, Weight, WeightDType } from '../src/kernels/types.ts';
import * as embedded from '../src/kernels/wasm/build/kernels-wasm.ts';
import { createWasmKernels, enableRelaxedSimd, type WasmKernels, wasmBinary } from '../src/kernels/wasm/wasm.ts';
import { ropeTables } from '../src/model/rope.ts';
import { fillWeight } from './helpers/kernel-check.ts';
import { rng } from './helpers/rng.ts';

const ref = new RefKernels();
await enableRelaxedSimd();
const variants = wasmBinary(true).relaxed ? [false, true] : [false];

const rand = rng(4321);
function random(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}
const abs = (a: Float32Array): Float32Array => a.map(Math.abs);

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** |a - e| ≤ bound(i) for every element; the first failure named */
function assertWithin(actual: ArrayLike<number>, expected: ArrayLike<number>, bound: (i: number) => number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i],
      e = expected[i],
      b = bound(i);
    if (!(Math.abs(a - e) <= b)) assert.fail(`${what}: element ${i}: wasm ${a} vs ref ${e} (bound ${b.toExponential(2)})`);
  }
}

/** the norm / attention / activation bound: 3e-5 relative plus 3e-6 of the tensor's largest value */
function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, rel = 3e-5, frac = 3e-6): void {
  const floor = frac * maxAbs(expected) + 1e-30;
  assertWithin(actual, expected, (i) => rel * Math.abs(expected[i]) + floor, what);
}

/** a copy of `src` in the backend's memory */
function put(k: WasmKernels, src: Float32Array): Float32Array {
  const a = k.f32(src.length);
  a.set(src);
  return a;
}

/** a case: the reference result once, then `run` against every backend variant */
interface Case {
  name: string;
  run(k: WasmKernels): void;
}
const cases: Record<string, Case[]> = {};
function addCase(group: string, name: string, run: (k: WasmKernels) => void): void {
  (cases[group] ??= []).push({ name, run });
}

// ---- matmul gradients ----

/** an f32 weight of the same values as w (for the magnitude bound) */
function denseWeight(w: Weight): Float32Array {
  const out = new Float32Array(w.rows * w.cols),
    row = new Float32Array(w.cols);
  for (let r = 0; r < w.rows; r++) {
    ref.embed(row, w, [r], 1);
    out.set(row, r * w.cols);
  }
  return out;
}

const GEMM_SHAPES: [number, number, number][] = [
  // [rows, cols, n]: 1s; not multiples of 3, 4 or 12; n > 128 (token blocks) and > 256 (the
  // transposed chunk); rows > 512 (input gradient's inner chunks); cols > 504 (column passes)
  [1, 1, 1],
  [7, 5, 3],
  [13, 33, 5],
  [37, 70, 17],
  [130, 96, 130],
  [12, 24, 1],
  [300, 13, 3],
  [19, 37, 260],
  [1100, 41, 4],
  [41, 1100, 9],
  [257, 129, 18],
];
for (const dtype of ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'] as WeightDType[]) {
  // quantized: rows dequantized in chunks of 2^20 floats, so [1100 x 1024] takes two
  for (const [rows, cols, n] of [...GEMM_SHAPES, [1100, 1024, 4]] as [number, number, number][]) {
    if (dtype !== 'f32' && rows * cols > 50000 && !(dtype.startsWith('q') && rows === 1100 && cols === 1024)) continue;
    if (dtype === 'f32' && cols === 1024) continue;
    const w = ref.weight(dtype, rows, cols);
    fillWeight(ref, w, random(rows * cols));
    const dy = random(n * rows, 2),
      expected = new Float32Array(n * cols).fill(NaN);
    ref.matmulGradInput(expected, dy, w, n);
    const mag = new Float32Array(n * cols);
    ref.matmulGradInput(mag, abs(dy), { dtype: 'f32', rows, cols, data: abs(denseWeight(w)) }, n);
    addCase('gemm', `matmulGradInput ${dtype} [${rows} x ${cols}] n=${n}`, (k) => {
      const wk = k.weight(dtype, rows, cols);
      new Uint8Array(wk.data.buffer, wk.data.byteOffset, wk.data.byteLength).set(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength));
      const dx = k.f32(n * cols + 5).fill(7); // overwritten; beyond n · cols untouched
      k.matmulGradInput(dx, put(k, dy), wk, n);
      assertWithin(dx.subarray(0, n * cols), expected, (i) => 1e-5 * mag[i] + 1e-6, `matmulGradInput ${dtype} [${rows} x ${cols}] n=${n}`);
      assert.deepEqual([...dx.subarray(n * cols)], [7, 7, 7, 7, 7]);
    });
  }
}
for (const [rows, cols, n] of GEMM_SHAPES) {
  const dy = random(n * rows, 2),
    x = random(n * cols, 3),
    before = random(rows * cols);
  const expected = Float32Array.from(before),
    mag = abs(before);
  ref.matmulGradWeight(expected, dy, x, n, rows, cols);
  ref.matmulGradWeight(mag, abs(dy), abs(x), n, rows, cols);
  addCase('gemm', `matmulGradWeight [${rows} x ${cols}] n=${n}`, (k) => {
    const dw = k.f32(rows * cols + 5).fill(7);
    dw.set(before);
    k.matmulGradWeight(dw, put(k, dy), put(k, x), n, rows, cols);
    assertWithin(dw.subarray(0, rows * cols), expected, (i) => 1e-5 * mag[i] + 1e-6, `matmulGradWeight [${rows} x ${cols}] n=${n} (added to random values)`);
    assert.deepEqual([...dw.subarray(rows * cols)], [7, 7, 7, 7, 7]);
  });
}

// ---- rmsnorm, head norm + rope, attention ----

for (const [n, dim] of [
  [1, 1],
  [3, 7],
  [5, 64],
  [17, 129],
  [130, 256],
]) {
  const x = random(n * dim, 3),
    w = random(dim),
    dy = random(n * dim),
    dx0 = random(n * dim),
    dw0 = random(dim);
  const dx = Float32Array.from(dx0),
    dw = Float32Array.from(dw0);
  ref.rmsnormBackward(dx, dw, dy, x, w, n, dim, 1e-6);
  addCase('norm', `rmsnormBackward [${n}, ${dim}]`, (k) => {
    const dxk = put(k, dx0),
      dwk = put(k, dw0);
    k.rmsnormBackward(dxk, dwk, put(k, dy), put(k, x), put(k, w), n, dim, 1e-6);
    assertClose(dxk, dx, `rmsnormBackward dx [${n}, ${dim}] (added to random values)`);
    assertClose(dwk, dw, `rmsnormBackward dweight [${n}, ${dim}] (added to random values)`);
  });
}

const HEADS: [number, number][] = [
  [1, 1],
  [4, 2],
  [6, 2],
  [3, 3],
  [6, 3],
  [12, 4],
  [9, 3],
]; // groups 1, 2, 3
for (const hd of [2, 6, 32, 64]) {
  const maxPos = 140;
  const { cos, sin } = ropeTables(hd, 10000, maxPos, (m) => new Float32Array(m));
  for (const [nQ, nKV] of HEADS) {
    for (const n of [1, 5, 17, 130]) {
      if ((hd < 32 && n > 17) || (n === 130 && nQ > 6)) continue;
      const qkvDim = (nQ + 2 * nKV) * hd;
      const pos0 = n === 5 ? 7 : 0;
      const s: AttentionShape = { n, pos0, nQ, nKV, headDim: hd };
      const qkvIn = random(n * qkvDim, 2),
        dqkv0 = random(n * qkvDim),
        qNorm = random(hd),
        kNorm = random(hd);
      const dqN0 = random(hd),
        dkN0 = random(hd);
      for (const norms of n === 17 ? [true, false] : [true]) {
        const d = Float32Array.from(dqkv0),
          dqN = Float32Array.from(dqN0),
          dkN = Float32Array.from(dkN0);
        ref.headNormRopeBackward(d, qkvIn, s, norms ? qNorm : null, norms ? kNorm : null, dqN, dkN, 1e-6, cos, sin);
        const what = `headNormRopeBackward hd=${hd} ${nQ}/${nKV} n=${n} pos0=${pos0}${norms ? '' : ' (no norms)'}`;
        addCase('norm', what, (k) => {
          const dk = put(k, dqkv0),
            dqNk = put(k, dqN0),
            dkNk = put(k, dkN0);
          k.headNormRopeBackward(dk, put(k, qkvIn), s, norms ? put(k, qNorm) : null, norms ? put(k, kNorm) : null, dqNk, dkNk, 1e-6, put(k, cos), put(k, sin));
          assertClose(dk, d, what);
          assertClose(dqNk, dqN, `${what}: dqNorm`);
          assertClose(dkNk, dkN, `${what}: dkNorm`);
        });
      }
      if (pos0 !== 0) continue;
      // attention backward on rope'd-like inputs of the size a trained model's q, k have
      const qkv = random(n * qkvDim, 1.5),
        out = new Float32Array(n * nQ * hd),
        dout = random(n * nQ * hd);
      ref.attention(out, qkv, new Float32Array(n * nKV * hd), new Float32Array(n * nKV * hd), s, new Float32Array(n));
      const expected = new Float32Array(n * qkvDim);
      ref.attentionBackward(expected, dout, qkv, out, s);
      const what = `attentionBackward hd=${hd} ${nQ}/${nKV} n=${n}`;
      addCase('attention', what, (k) => {
        const d = k.f32(n * qkvDim + 3).fill(NaN); // every element of dqkv written
        k.attentionBackward(d, put(k, dout), put(k, qkv), put(k, out), s);
        assertClose(d.subarray(0, n * qkvDim), expected, what);
        assert.ok(Number.isNaN(d[n * qkvDim]), `${what}: wrote past dqkv`);
      });
    }
  }
}

// a long sequence: several query chunks and blocks (reduce over chunks), group 4 as the benchmark model
{
  const n = 300,
    nQ = 8,
    nKV = 2,
    hd = 32,
    qkvDim = (nQ + 2 * nKV) * hd;
  const s: AttentionShape = { n, pos0: 0, nQ, nKV, headDim: hd };
  const qkv = random(n * qkvDim, 2),
    out = new Float32Array(n * nQ * hd),
    dout = random(n * nQ * hd);
  ref.attention(out, qkv, new Float32Array(n * nKV * hd), new Float32Array(n * nKV * hd), s, new Float32Array(n));
  const expected = new Float32Array(n * qkvDim);
  ref.attentionBackward(expected, dout, qkv, out, s);
  addCase('attention', `attentionBackward hd=32 8/2 n=300`, (k) => {
    const d = k.f32(n * qkvDim);
    k.attentionBackward(d, put(k, dout), put(k, qkv), put(k, out), s);
    assertClose(d, expected, 'attentionBackward hd=32 8/2 n=300');
    assert.throws(() => k.attentionBackward(d, put(k, dout), put(k, qkv), put(k, out), { ...s, pos0: 1 }), /position 0/);
  });
}

// ---- activations, embedding, cross-entropy ----

const ACTS: Activation[] = ['swish', 'silu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu', 'relu', 'sigmoid', 'tanh'];
for (const act of ACTS) {
  for (const glu of [true, false]) {
    for (const [n, dim] of [
      [1, 3],
      [3, 13],
      [5, 64],
      [17, 33],
    ]) {
      const x = random(n * dim * (glu ? 2 : 1), 6),
        dy = random(n * dim);
      x[0] = 30;
      x[1] = -30;
      x[2] = 1e-5;
      x[3] = 0;
      const expected = new Float32Array(x.length);
      ref.ffnActBackward(expected, dy, x, n, dim, act, glu);
      const what = `ffnActBackward ${act} glu=${glu} [${n}, ${dim}]`;
      addCase('elementwise', what, (k) => {
        const dx = k.f32(x.length).fill(NaN);
        k.ffnActBackward(dx, put(k, dy), put(k, x), n, dim, act, glu);
        assertClose(dx, expected, what);
      });
    }
  }
}

for (const [vocab, dim, ids] of [
  [11, 45, [3, 0, 10, 3, 3]],
  [5, 1, [4, 4]],
  [1000, 256, Array.from({ length: 130 }, (_, i) => (i * 37) % 17)],
] as [number, number, number[]][]) {
  const n = ids.length,
    dy = random(n * dim),
    before = random(vocab * dim);
  const expected = Float32Array.from(before);
  ref.embedBackward(expected, dy, ids, n, dim);
  addCase('elementwise', `embedBackward [${vocab}, ${dim}] n=${n} (repeated ids)`, (k) => {
    for (const asI32 of [false, true]) {
      const dt = put(k, before),
        ik = k.i32(n);
      ik.set(ids);
      k.embedBackward(dt, put(k, dy), asI32 ? ik : ids, n, dim);
      assert.deepEqual(dt, put(k, expected), `embedBackward [${vocab}, ${dim}] n=${n} ids ${asI32 ? 'in kernel memory' : 'as an array'}`);
    }
    assert.throws(() => k.embedBackward(put(k, before), put(k, dy), [vocab], 1, dim), /outside/);
  });
}

for (const [n, V, spread] of [
  [1, 1, 3],
  [3, 7, 3],
  [5, 33, 10],
  [17, 1000, 8],
  [4, 32000, 6],
  [9, 130, 20],
]) {
  for (const [zLoss, scale] of [
    [0, 1],
    [1e-4, 0.25],
    [0.01, 1 / 30],
  ]) {
    const logits = random(n * V, spread),
      targets = new Int32Array(n);
    for (let t = 0; t < n; t++) targets[t] = t % 4 === 2 ? -100 : Math.floor(rand() * V); // some ignored
    const g = Float32Array.from(logits),
      lse = new Float32Array(n).fill(NaN);
    const loss = ref.crossEntropy(g, targets, n, V, zLoss, scale, lse);
    const what = `crossEntropy n=${n} V=${V} zLoss=${zLoss} scale=${scale}`;
    addCase('elementwise', what, (k) => {
      const gk = put(k, logits),
        lk = k.f32(n).fill(NaN),
        tk = k.i32(n);
      tk.set(targets);
      const lossK = k.crossEntropy(gk, tk, n, V, zLoss, scale, lk);
      assert.ok(Math.abs(lossK - loss) <= 1e-6 * Math.max(1, Math.abs(loss)), `${what}: loss ${lossK} vs ${loss}`);
      assertWithin(lk, lse, (i) => 1e-6 * Math.max(1, Math.abs(lse[i])), `${what}: lse`);
      assertWithin(gk, g, (i) => 2e-5 * Math.abs(g[i]) + (targets[Math.floor(i / V)] === i % V ? 2e-5 * scale : 0) + 1e-30, `${what}: gradient`);
      const bad = Int32Array.from(targets);
      bad[0] = V;
      tk.set(bad);
      assert.throws(() => k.crossEntropy(put(k, logits), tk, n, V, zLoss, scale, lk), /outside the vocabulary/);
    });
  }
}

// ---- gradient norm, clipping, AdamW ----

for (const n of [1, 5, 17, 16384, 16389, 100000]) {
  const x = random(n, 2);
  const ss = ref.sumSquares(x, n);
  const s32 = Math.fround(0.37),
    s64 = 0.37;
  const scaled = Float32Array.from(x),
    scaled64 = Float32Array.from(x);
  ref.scale(scaled, n, s32);
  ref.scale(scaled64, n, s64);
  const p0 = random(n),
    g = random(n, 0.1),
    m0 = random(n, 0.01),
    v0 = abs(random(n, 1e-4));
  const steps: [number, number, number, number, number, number, number][] = [
    [1e-3, 0.9, 0.95, 1e-8, 0.1, 1, 0],
    [3e-4, 0.8, 0.999, 1e-6, 0, 7, 0],
  ];
  const expected = steps.map(([lr, b1, b2, eps, wd, step]) => {
    const p = Float32Array.from(p0),
      m = Float32Array.from(m0),
      v = Float32Array.from(v0);
    ref.adamw(p, g, m, v, n, lr, b1, b2, eps, wd, step);
    return { p, m, v };
  });
  addCase('elementwise', `sumSquares, scale, adamw n=${n}`, (k) => {
    const xk = put(k, x);
    const got = k.sumSquares(xk, n);
    assert.ok(Math.abs(got - ss) <= 1e-12 * ss, `sumSquares n=${n}: ${got} vs ${ss}`);
    k.scale(xk, n, s32);
    assert.deepEqual(xk, put(k, scaled), `scale n=${n} by an f32 factor`);
    const xk2 = put(k, x);
    k.scale(xk2, n, s64);
    assertWithin(xk2, scaled64, (i) => 1.2e-7 * Math.abs(scaled64[i]), `scale n=${n} by an f64 factor`);
    steps.forEach(([lr, b1, b2, eps, wd, step], i) => {
      const p = put(k, p0),
        m = put(k, m0),
        v = put(k, v0);
      k.adamw(p, put(k, g), m, v, n, lr, b1, b2, eps, wd, step);
      assert.deepEqual(m, put(k, expected[i].m), `adamw n=${n} step ${step}: exp_avg`);
      assert.deepEqual(v, put(k, expected[i].v), `adamw n=${n} step ${step}: exp_avg_sq`);
      assert.deepEqual(p, put(k, expected[i].p), `adamw n=${n} step ${step}: params`);
    });
  });
}

// ---- every variant ----

for (const relaxed of variants) {
  for (const threads of [1, 2]) {
    const tag = `${relaxed ? 'relaxed' : 'simd'}, ${threads} thread${threads > 1 ? 's' : ''}`;
    for (const [group, list] of Object.entries(cases)) {
      test(`training ops: ${group} (${list.length} cases, ${tag})`, async () => {
        // split even tiny ops, into as many chunks as they have items
        const k = await createWasmKernels({ threads, relaxedSimd: relaxed, minParallelWork: 0, chunkWork: 1 });
        try {
          if (relaxed) assert.ok(k.relaxedSimd);
          for (const c of list) c.run(k);
        } finally {
          k.dispose();
        }
      });
    }
  }
}

test('ops over more items than the pool has granules (32766): tokens of a 16 × 2048 micro-batch', async () => {
  const k = await createWasmKernels({ threads: 2, minParallelWork: 0, chunkWork: 1 });
  try {
    const n = 40000,
      dim = 3,
      x = random(n * 2 * dim, 4),
      dy = random(n * dim);
    const expected = new Float32Array(n * 2 * dim),
      out = new Float32Array(n * dim);
    ref.ffnActBackward(expected, dy, x, n, dim, 'silu', true);
    ref.ffnAct(out, x, n, dim, 'silu', true);
    const dx = k.f32(n * 2 * dim),
      outK = k.f32(n * dim);
    k.ffnActBackward(dx, put(k, dy), put(k, x), n, dim, 'silu', true);
    k.ffnAct(outK, put(k, x), n, dim, 'silu', true);
    assertClose(dx, expected, 'ffnActBackward n=40000');
    assertClose(outK, out, 'ffnAct n=40000');
    const V = 2,
      logits = random(n * V, 3),
      targets = new Int32Array(n).map((_, t) => (t % 3) - 1);
    const g = Float32Array.from(logits),
      lse = new Float32Array(n);
    const loss = ref.crossEntropy(g, targets, n, V, 0, 1, lse);
    const gk = put(k, logits),
      tk = k.i32(n),
      lk = k.f32(n);
    tk.set(targets);
    assert.ok(Math.abs(k.crossEntropy(gk, tk, n, V, 0, 1, lk) - loss) <= 1e-9 * loss, 'crossEntropy n=40000: loss');
    assertWithin(gk, g, (i) => 2e-5 * Math.abs(g[i]) + 2e-5, 'crossEntropy n=40000: gradient');
  } finally {
    k.dispose();
  }
});

test('a small per-thread scratch: the matmul gradients use the reference, attention backward smaller blocks', async () => {
  const k = await createWasmKernels({ threads: 2, threadScratch: 64 << 10 });
  try {
    assert.equal(k.trainGemm, false);
    const rows = 37,
      cols = 29,
      n = 9,
      dy = random(n * rows),
      x = random(n * cols),
      before = random(rows * cols);
    const dw = Float32Array.from(before);
    ref.matmulGradWeight(dw, dy, x, n, rows, cols);
    const dwk = put(k, before);
    k.matmulGradWeight(dwk, put(k, dy), put(k, x), n, rows, cols);
    assert.deepEqual(dwk, put(k, dw));
    const s = { n: 200, pos0: 0, nQ: 16, nKV: 1, headDim: 64 },
      qkvDim = 18 * 64;
    const qkv = random(s.n * qkvDim),
      out = random(s.n * 16 * 64),
      dout = random(s.n * 16 * 64),
      expected = new Float32Array(s.n * qkvDim);
    ref.attentionBackward(expected, dout, qkv, out, s);
    const d = k.f32(s.n * qkvDim);
    k.attentionBackward(d, put(k, dout), put(k, qkv), put(k, out), s);
    assertClose(d, expected, 'attentionBackward with a small scratch');
  } finally {
    k.dispose();
  }
  // the defaults leave room for them (a kernel change that outgrows the scratch would silently fall back)
  const kd = await createWasmKernels({ threads: 1 });
  try {
    assert.equal(kd.trainGemm, true);
  } finally {
    kd.dispose();
  }
});

/** the end of the highest active data segment of a wasm binary (its static data) */
function staticDataEnd(bytes: Uint8Array): number {
  let at = 8,
    end = 0;
  const leb = (signed = false): number => {
    let result = 0,
      shift = 0,
      b: number;
    do {
      b = bytes[at++];
      result |= (b & 0x7f) << shift;
      shift += 7;
    } while (b & 0x80);
    return signed && shift < 32 && b & 0x40 ? result | (-1 << shift) : result;
  };
  while (at < bytes.length) {
    const id = bytes[at++],
      size = leb(),
      next = at + size;
    if (id === 11) {
      for (let count = leb(); count > 0; count--) {
        const flags = leb();
        if (flags === 2) leb();
        let offset = 0;
        if (flags !== 1) {
          assert.equal(bytes[at++], 0x41, 'data segment offset: i32.const');
          offset = leb(true);
          assert.equal(bytes[at++], 0x0b);
        }
        const len = leb();
        at += len;
        if (flags !== 1) end = Math.max(end, offset + len);
      }
    }
    at = next;
  }
  return end;
}

test('static data of every build stays below the thread pool control block (4096, wasm.ts)', () => {
  // library math with tables (e.g. AssemblyScript's f64 Math.log: 4 KiB) would overlap it and be
  // overwritten; the three embedded builds, whichever this engine would load
  for (const [name, base64] of Object.entries(embedded)) {
    const end = staticDataEnd(Uint8Array.from(atob(base64), (c) => c.charCodeAt(0)));
    assert.ok(end > 0 && end <= 4096, `${name} build: static data ends at ${end}`);
  }
  assert.deepEqual(Object.keys(embedded).sort(), ['relaxed', 'simd', 'vnni']);
});

test('training ops allocate nothing per call after warm-up', async () => {
  const k = await createWasmKernels({ threads: 2, minParallelWork: 0, chunkWork: 1 });
  try {
    const n = 33,
      d = 40,
      F = 24,
      V = 300,
      nQ = 4,
      nKV = 2,
      hd = 32,
      qkvDim = (nQ + 2 * nKV) * hd;
    const x = put(k, random(n * d)),
      dy = put(k, random(n * d)),
      dx = k.f32(n * d),
      w = k.weight('f32', F, d),
      dw = k.f32(F * d);
    (w.data as Float32Array).set(random(F * d));
    const h = put(k, random(n * 2 * F)),
      dh = k.f32(n * 2 * F),
      da = put(k, random(n * F)),
      nw = put(k, random(d)),
      dnw = k.f32(d);
    const qkv = put(k, random(n * qkvDim)),
      att = k.f32(n * nQ * hd),
      datt = put(k, random(n * nQ * hd)),
      dqkv = k.f32(n * qkvDim);
    const logits = put(k, random(n * V)),
      targets = k.i32(n),
      lse = k.f32(n),
      ids = k.i32(n);
    const { cos, sin } = ropeTables(hd, 10000, n, (m) => k.f32(m));
    const s = { n, pos0: 0, nQ, nKV, headDim: hd };
    const round = (): void => {
      k.matmulGradInput(dx, dh.subarray(0, n * F), w, n);
      k.matmulGradWeight(dw, da, x, n, F, d);
      k.rmsnormBackward(dx, dnw, dy, x, nw, n, d, 1e-6);
      k.attentionBackward(dqkv, datt, qkv, att, s);
      k.headNormRopeBackward(dqkv, qkv, s, nw.subarray(0, hd), nw.subarray(0, hd), dnw.subarray(0, hd), dnw.subarray(0, hd), 1e-6, cos, sin);
      k.ffnActBackward(dh, da, h, n, F, 'silu', true);
      k.embedBackward(dw, dy.subarray(0, n * d), ids, n, d);
      k.crossEntropy(logits, targets, n, V, 1e-4, 1, lse);
      k.scale(dw, F * d, 0.5);
      k.adamw(x, dy, dx, h, n * d, 1e-3, 0.9, 0.95, 1e-8, 0.1, 3);
      k.sumSquares(dw, F * d);
      dw.fill(0);
      dx.fill(0);
      dqkv.fill(0);
      dnw.fill(0);
      (h as Float32Array).fill(0.5); // v of adamw must stay ≥ 0
    };
    round();
    const used = k.usedBytes,
      size = k.memory.buffer.byteLength;
    for (let i = 0; i < 20; i++) round();
    assert.equal(k.usedBytes, used);
    assert.equal(k.memory.buffer.byteLength, size);
  } finally {
    k.dispose();
  }
});
