// Checks a Kernels backend's matmul against the plain-TypeScript kernels, shared by the Node
// kernel tests (test/kernels-wasm.test.ts) and the page that runs them in Chromium
// (test/browser/kernels-page.ts); no Node APIs, so it bundles for the browser.
// The per-element bound is explained at the top of test/kernels-wasm.test.ts.

import { f32ToF16Bits } from '../../src/kernels/half.ts';
import { blocksPerRow, QK, quantizeRowQ4_0, quantizeRowQ8_0 } from '../../src/kernels/quant.ts';
import type { RefKernels } from '../../src/kernels/ref.ts';
import type { Kernels, Weight, WeightDType } from '../../src/kernels/types.ts';

/** stores the f32 values `src` [rows, cols] into `w` in its dtype (rounded / quantized) */
export function fillWeight(k: Kernels, w: Weight, src: Float32Array): void {
  const { rows, cols } = w,
    rowBytes = k.weightBytes(w.dtype, 1, cols);
  switch (w.dtype) {
    case 'f32':
      (w.data as Float32Array).set(src);
      break;
    case 'bf16': {
      const d = w.data as Uint16Array,
        f = new Uint32Array(src.buffer, src.byteOffset, src.length);
      for (let i = 0; i < d.length; i++) d[i] = f[i] >>> 16;
      break;
    }
    case 'f16': {
      const d = w.data as Uint16Array;
      for (let i = 0; i < d.length; i++) d[i] = f32ToF16Bits(src[i]);
      break;
    }
    case 'q8_0':
      for (let r = 0; r < rows; r++) quantizeRowQ8_0(src, r * cols, cols, w.data as Uint8Array, r * rowBytes);
      break;
    case 'q4_0':
      for (let r = 0; r < rows; r++) quantizeRowQ4_0(src, r * cols, cols, w.data as Uint8Array, r * rowBytes);
      break;
  }
}

/** the same random weight in both backends (identical bytes) plus its exact f32 values */
export function sameWeights(
  k: Kernels,
  ref: RefKernels,
  dtype: WeightDType,
  rows: number,
  cols: number,
  rand: () => number,
): { w: Weight; wr: Weight; dense: Float32Array } {
  const w = k.weight(dtype, rows, cols),
    wr = ref.weight(dtype, rows, cols);
  fillWeight(
    k,
    w,
    Float32Array.from({ length: rows * cols }, () => rand() * 2 - 1),
  );
  new Uint8Array(wr.data.buffer, wr.data.byteOffset, wr.data.byteLength).set(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength));
  const dense = new Float32Array(rows * cols),
    row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    ref.embed(row, wr, [r], 1);
    dense.set(row, r * cols);
  }
  return { w, wr, dense };
}

/**
 * One random weight (sameWeights) in two backends, the same bytes in both; the function it returns
 * multiplies both by the same n tokens of activations and gives both outputs, for a comparison of
 * two kernel builds or paths bit for bit.
 */
export function pairedMatmul(
  a: Kernels,
  b: Kernels,
  ref: RefKernels,
  dtype: WeightDType,
  rows: number,
  cols: number,
  rand: () => number,
): ((xs: ArrayLike<number>, n: number) => [Float32Array, Float32Array]) & { w: Weight; w2: Weight } {
  const { w } = sameWeights(a, ref, dtype, rows, cols, rand);
  const w2 = b.weight(dtype, rows, cols);
  w2.data.set(w.data as never);
  const run = (xs: ArrayLike<number>, n: number): [Float32Array, Float32Array] => {
    const x = a.f32(n * cols),
      x2 = b.f32(n * cols);
    x.set(xs);
    x2.set(xs);
    const out = a.f32(n * rows),
      out2 = b.f32(n * rows);
    a.matmul(out, x, w, n);
    b.matmul(out2, x2, w2, n);
    return [out, out2];
  };
  // (the two weights, for what else a test compares on them)
  return Object.assign(run, { w, w2 });
}

export interface MatmulCheck {
  what: string;
  /** the largest |k - ref| / bound over the outputs (≤ 1 passes) */
  worst: number;
  /** the first element out of bounds, described, or null */
  failure: string | null;
}

/** k.matmul against ref.matmul for one random weight of this shape and each token count in ns */
export function checkMatmul(k: Kernels, ref: RefKernels, dtype: WeightDType, rows: number, cols: number, ns: number[], rand: () => number): MatmulCheck[] {
  const { w, wr, dense } = sameWeights(k, ref, dtype, rows, cols, rand);
  const quantized = dtype === 'q8_0' || dtype === 'q4_0';
  return ns.map((n) => {
    const x = k.f32(n * cols),
      out = k.f32(n * rows),
      expected = new Float32Array(n * rows);
    for (let i = 0; i < x.length; i++) x[i] = (rand() * 2 - 1) * 3;
    ref.matmul(expected, Float32Array.from(x), wr, n);
    k.matmul(out, x, w, n);
    const what = `matmul ${dtype} [${rows} x ${cols}] n=${n}`;
    let worst = 0,
      failure: string | null = null;
    for (let t = 0; t < n; t++) {
      for (let r = 0; r < rows; r++) {
        let mag = 0,
          quantErr = 0;
        for (let b = 0; b < blocksPerRow(cols); b++) {
          let amax = 0;
          for (let j = b * QK; j < Math.min(cols, (b + 1) * QK); j++) amax = Math.max(amax, Math.abs(x[t * cols + j]));
          for (let j = b * QK; j < Math.min(cols, (b + 1) * QK); j++) {
            const wj = dense[r * cols + j];
            mag += Math.abs(wj * x[t * cols + j]);
            quantErr += (Math.abs(wj) * amax) / 127 / 2;
          }
        }
        const bound = 1e-5 * mag + 1e-6 + (quantized ? quantErr : 0);
        const a = out[t * rows + r],
          e = expected[t * rows + r],
          err = Math.abs(a - e);
        worst = Math.max(worst, Number.isNaN(err) ? Infinity : err / bound);
        if (!(err <= bound) && failure === null) failure = `${what} out[${t}, ${r}]: ${k.name} ${a} vs ref ${e} (bound ${bound})`;
      }
    }
    return { what, worst, failure };
  });
}
