// Runs in headless Chromium (test/browser.test.ts bundles it with esbuild): the WebAssembly kernels
// with Web Workers on one shared memory, checked against the plain-TypeScript kernels in the same
// page. Reports through window.__result.
import { createWasmKernels } from '../../src/kernels/wasm/wasm.ts';
import { RefKernels } from '../../src/kernels/ref.ts';
import type { Kernels, Weight, WeightDType } from '../../src/kernels/types.ts';
import { f32ToF16Bits } from '../../src/kernels/half.ts';
import { blocksPerRow, quantizeRowQ4_0, quantizeRowQ8_0, QK } from '../../src/kernels/quant.ts';

interface Check { what: string; ok: boolean; detail: string }

let seed = 7;
const rand = (): number => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

function fillWeight(k: Kernels, w: Weight, src: Float32Array): void {
  const { rows, cols } = w, rowBytes = k.weightBytes(w.dtype, 1, cols);
  if (w.dtype === 'f32') (w.data as Float32Array).set(src);
  else if (w.dtype === 'bf16') { const d = w.data as Uint16Array, f = new Uint32Array(src.buffer); for (let i = 0; i < d.length; i++) d[i] = f[i] >>> 16; }
  else if (w.dtype === 'f16') { const d = w.data as Uint16Array; for (let i = 0; i < d.length; i++) d[i] = f32ToF16Bits(src[i]); }
  else for (let r = 0; r < rows; r++) (w.dtype === 'q8_0' ? quantizeRowQ8_0 : quantizeRowQ4_0)(src, r * cols, cols, w.data as Uint8Array, r * rowBytes);
}

/** wasm matmul vs ref within 1e-5 · Σ|w x| (+ the activation quantization error of q8_0/q4_0) */
function checkMatmul(k: Kernels, ref: RefKernels, dtype: WeightDType, rows: number, cols: number, n: number): Check {
  const src = Float32Array.from({ length: rows * cols }, () => rand() * 2 - 1);
  const w = k.weight(dtype, rows, cols), wr = ref.weight(dtype, rows, cols);
  fillWeight(k, w, src);
  new Uint8Array(wr.data.buffer, wr.data.byteOffset, wr.data.byteLength).set(new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength));
  const dense = new Float32Array(rows * cols), row = new Float32Array(cols);
  for (let r = 0; r < rows; r++) { ref.embed(row, wr, [r], 1); dense.set(row, r * cols); }
  const x = k.f32(n * cols);
  for (let i = 0; i < x.length; i++) x[i] = (rand() * 2 - 1) * 3;
  const out = k.f32(n * rows), expected = new Float32Array(n * rows);
  k.matmul(out, x, w, n);
  ref.matmul(expected, Float32Array.from(x), wr, n);
  let worst = 0;
  for (let t = 0; t < n; t++) {
    for (let r = 0; r < rows; r++) {
      let mag = 0, quantErr = 0;
      for (let b = 0; b < blocksPerRow(cols); b++) {
        let amax = 0;
        for (let j = b * QK; j < Math.min(cols, (b + 1) * QK); j++) amax = Math.max(amax, Math.abs(x[t * cols + j]));
        for (let j = b * QK; j < Math.min(cols, (b + 1) * QK); j++) {
          mag += Math.abs(dense[r * cols + j] * x[t * cols + j]);
          quantErr += Math.abs(dense[r * cols + j]) * amax / 127 / 2;
        }
      }
      const bound = 1e-5 * mag + 1e-6 + (dtype === 'q8_0' || dtype === 'q4_0' ? quantErr : 0);
      worst = Math.max(worst, Math.abs(out[t * rows + r] - expected[t * rows + r]) / bound);
    }
  }
  return { what: `matmul ${dtype} [${rows} x ${cols}] n=${n}`, ok: worst <= 1, detail: `worst error / bound = ${worst.toFixed(3)}` };
}

async function main(): Promise<unknown> {
  // every op split over both threads, as finely as it goes
  const k = await createWasmKernels({ threads: 2, minParallelWork: 0, chunkWork: 1 });
  const ref = new RefKernels();
  const checks: Check[] = [];
  for (const dtype of ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'] as WeightDType[]) {
    for (const n of [1, 3, 9]) checks.push(checkMatmul(k, ref, dtype, 37, 300, n));
  }
  const v = k.f32(1000);
  for (let i = 0; i < v.length; i++) v[i] = rand();
  v[613] = 2;
  checks.push({ what: 'argmax', ok: k.argmax(v, 1000) === 613, detail: `${k.argmax(v, 1000)}` });
  // a prefill-sized GEMM, timed: the browser runs the same binary as Node
  const rows = 2048, cols = 1280, n = 64, w = k.weight('q8_0', rows, cols);
  fillWeight(k, w, Float32Array.from({ length: rows * cols }, () => rand() * 2 - 1));
  const x = k.f32(n * cols).fill(0.5), out = k.f32(n * rows);
  for (let i = 0; i < 3; i++) k.matmul(out, x, w, n);
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) k.matmul(out, x, w, n);
  const gops = (2 * rows * cols * n * 10) / ((performance.now() - t0) / 1000) / 1e9;
  k.dispose();
  return { backend: k.name, relaxedSimd: k.relaxedSimd, threads: k.threads, crossOriginIsolated, q8Gemm: gops, checks };
}

const w = window as unknown as { __result?: unknown };
main().then((r) => { w.__result = r; }, (e: unknown) => { w.__result = { error: String((e as Error)?.stack ?? e) }; });
