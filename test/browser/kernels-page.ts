// Runs in headless Chromium (test/browser.test.ts bundles it with esbuild): the WebAssembly kernels
// with Web Workers on one shared memory, checked against the plain-TypeScript kernels in the same
// page (test/helpers/kernel-check.ts, as the Node kernel tests). Reports through window.__result.

import { RefKernels } from '../../src/kernels/ref.ts';
import type { WeightDType } from '../../src/kernels/types.ts';
import { createWasmKernels } from '../../src/kernels/wasm/wasm.ts';
import { checkMatmul, fillWeight } from '../helpers/kernel-check.ts';

interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

let seed = 7;
const rand = (): number => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

async function main(): Promise<unknown> {
  // every op split over both threads, as finely as it goes
  const k = await createWasmKernels({ threads: 2, minParallelWork: 0, chunkWork: 1 });
  const ref = new RefKernels();
  const checks: Check[] = [];
  for (const dtype of ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'] as WeightDType[]) {
    for (const c of checkMatmul(k, ref, dtype, 37, 300, [1, 3, 9], rand)) {
      checks.push({ what: c.what, ok: c.failure === null, detail: c.failure ?? `worst error / bound = ${c.worst.toFixed(3)}` });
    }
  }
  const v = k.f32(1000);
  for (let i = 0; i < v.length; i++) v[i] = rand();
  v[613] = 2;
  checks.push({ what: 'argmax', ok: k.argmax(v, 1000) === 613, detail: `${k.argmax(v, 1000)}` });
  // a prefill-sized GEMM, timed: the browser runs the same binary as Node
  const rows = 2048,
    cols = 1280,
    n = 64,
    w = k.weight('q8_0', rows, cols);
  fillWeight(
    k,
    w,
    Float32Array.from({ length: rows * cols }, () => rand() * 2 - 1),
  );
  const x = k.f32(n * cols).fill(0.5),
    out = k.f32(n * rows);
  for (let i = 0; i < 3; i++) k.matmul(out, x, w, n);
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) k.matmul(out, x, w, n);
  const gops = (2 * rows * cols * n * 10) / ((performance.now() - t0) / 1000) / 1e9;
  k.dispose();
  return { backend: k.name, relaxedSimd: k.relaxedSimd, threads: k.threads, crossOriginIsolated, q8Gemm: gops, checks };
}

const w = window as unknown as { __result?: unknown };
main().then(
  (r) => {
    w.__result = r;
  },
  (e: unknown) => {
    w.__result = { error: String((e as Error)?.stack ?? e) };
  },
);
