// Runs in headless Chromium (test/webgpu.test.ts bundles it): the WGSL kernels against the
// plain-TypeScript kernels op by op, then the built-in model's greedy decoding on the GPU against
// the same model on the TS kernels. Reports through window.__result.

import { urlFiles } from '../../src/io/browser-files.ts';
import { RefKernels } from '../../src/kernels/ref.ts';
import type { Activation, AttentionShape, WeightDType } from '../../src/kernels/types.ts';
import { WebGpuKernels } from '../../src/kernels/webgpu/webgpu.ts';
import { GpuOpenELM } from '../../src/model/gpu.ts';
import { ropeTables } from '../../src/model/rope.ts';
import { loadBrowserModel } from '../../src/web/load.ts';
import { fillWeight } from '../helpers/kernel-check.ts';

interface Check {
  what: string;
  ok: boolean;
  detail: string;
}

let seed = 11;
const rand = (): number => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const randn = (n: number, s = 1) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * s);

/** max |a - b| / (tol · (1 + max |b|)) ≤ 1 */
function close(what: string, a: Float32Array, b: Float32Array, tol: number): Check {
  let worst = 0,
    scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) {
    const e = Math.abs(a[i] - b[i]);
    if (!(e <= worst)) worst = Number.isNaN(e) ? Infinity : e;
  }
  const ratio = tol === 0 ? (worst === 0 ? 0 : Infinity) : worst / (tol * (1 + scale));
  return { what, ok: ratio <= 1, detail: `max error ${worst.toExponential(2)} (scale ${scale.toFixed(3)}, ${ratio.toFixed(3)} of the bound)` };
}

async function main(): Promise<unknown> {
  const T0 = performance.now();
  const gpu = await WebGpuKernels.create();
  const ref = new RefKernels();
  const checks: Check[] = [];
  const shaderErrors = await gpu.validateShaders();
  const tShaders = performance.now() - T0;
  const readF32 = (b: GPUBuffer, n: number) => gpu.read(b, n);

  // matmul per weight dtype, a matrix-vector and a small GEMM; the same stored bytes on both sides
  for (const dtype of ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'] as WeightDType[]) {
    const rows = 37,
      cols = 300;
    const wr = ref.weight(dtype, rows, cols);
    fillWeight(ref, wr, randn(rows * cols));
    const gw = gpu.weight(wr);
    for (const n of [1, 3]) {
      const x = randn(n * cols),
        want = new Float32Array(n * rows);
      ref.matmul(want, x, wr, n);
      for (const row of [false, true]) {
        // both kernels: a workgroup per output (GPUs), an invocation per output (CPUs)
        gpu.rowMatmul = row;
        const out = gpu.f32(n * rows);
        gpu.matmul(out, gpu.upload(x), gw, n);
        checks.push(close(`matmul ${dtype} n=${n}${row ? ' (row kernel)' : ''}`, await readF32(out, n * rows), want, 1e-5));
      }
      gpu.rowMatmul = gpu.software;
    }
    const ids = [5, 0, 36];
    const want = new Float32Array(3 * cols);
    ref.embed(want, wr, ids, 3);
    const out = gpu.f32(3 * cols);
    gpu.embed(out, gw, ids, 3);
    checks.push(close(`embed ${dtype}`, await readF32(out, 3 * cols), want, 1e-6));
  }

  {
    // rmsnorm
    const n = 3,
      dim = 200,
      x = randn(n * dim, 3),
      w = randn(dim),
      want = new Float32Array(n * dim);
    ref.rmsnorm(want, x, w, n, dim, 1e-6);
    const out = gpu.f32(n * dim);
    gpu.rmsnorm(out, gpu.upload(x), gpu.upload(w), n, dim, 1e-6);
    checks.push(close('rmsnorm', await readF32(out, n * dim), want, 1e-5));
  }

  {
    // q/k norm + RoPE, then attention over a cache that already holds pos0 positions
    const nQ = 6,
      nKV = 2,
      hd = 32,
      pos0 = 5,
      n = 3,
      cap = 16,
      stride = (nQ + 2 * nKV) * hd;
    const rope = ropeTables(hd, 10000, cap);
    const s: AttentionShape = { n, pos0, nQ, nKV, headDim: hd };
    const qkv = randn(n * stride),
      qn = randn(hd),
      kn = randn(hd);
    const kc = randn(cap * nKV * hd),
      vc = randn(cap * nKV * hd);
    const gq = gpu.upload(qkv),
      gk = gpu.upload(kc),
      gv = gpu.upload(vc);
    ref.headNormRope(qkv, s, qn, kn, 1e-6, rope.cos, rope.sin);
    gpu.headNormRope(gq, s, gpu.upload(qn), gpu.upload(kn), 1e-6, gpu.upload(rope.cos), gpu.upload(rope.sin));
    checks.push(close('headNormRope (q/k norm + RoPE)', await readF32(gq, n * stride), qkv, 1e-5));
    const want = new Float32Array(n * nQ * hd);
    ref.attention(want, qkv, kc, vc, s, new Float32Array(cap));
    const out = gpu.f32(n * nQ * hd);
    gpu.attention(out, gq, gk, gv, s);
    checks.push(close('attention (GQA, causal, KV cache)', await readF32(out, n * nQ * hd), want, 1e-5));
    checks.push(close('attention: K cache rows written', await readF32(gk, cap * nKV * hd), kc, 1e-5));
    const noNorm = randn(n * stride),
      g2 = gpu.upload(noNorm);
    ref.headNormRope(noNorm, s, null, null, 1e-6, rope.cos, rope.sin);
    gpu.headNormRope(g2, s, null, null, 1e-6, gpu.upload(rope.cos), gpu.upload(rope.sin));
    checks.push(close('headNormRope without q/k norm', await readF32(g2, n * stride), noNorm, 1e-5));
  }

  for (const [act, glu] of [
    ['swish', true],
    ['gelu', false],
    ['gelu_pytorch_tanh', true],
    ['quick_gelu', false],
    ['relu', true],
    ['sigmoid', false],
    ['tanh', false],
  ] as [Activation, boolean][]) {
    const n = 2,
      dim = 130,
      x = randn(n * dim * (glu ? 2 : 1), 4),
      want = new Float32Array(n * dim);
    ref.ffnAct(want, x, n, dim, act, glu);
    const out = gpu.f32(n * dim);
    gpu.ffnAct(out, gpu.upload(x), n, dim, act, glu);
    checks.push(close(`ffnAct ${act}${glu ? ' GLU' : ''}`, await readF32(out, n * dim), want, 1e-5));
  }

  {
    // residual add, argmax (ties, NaN), softmax
    const a = randn(1000),
      b = randn(1000),
      ga = gpu.upload(a);
    gpu.addInPlace(ga, gpu.upload(b), 1000);
    ref.addInPlace(a, b, 1000);
    checks.push(close('addInPlace', await readF32(ga, 1000), a, 0));
    const r = gpu.f32(4);
    for (const [name, v] of [
      ['argmax', randn(32000)],
      ['argmax: first of ties', Float32Array.from({ length: 5000 }, (_, i) => (i === 77 || i === 4000 ? 3 : 0))],
      ['argmax: NaNs skipped', Float32Array.from({ length: 999 }, (_, i) => (i % 2 ? NaN : i === 500 ? 9 : 1))],
      ['argmax: all -Infinity', new Float32Array(300).fill(-Infinity)],
    ] as [string, Float32Array][]) {
      gpu.argmax(r, gpu.upload(v), v.length);
      const got = new Uint32Array(await gpu.readBytes(r, 4))[0],
        want = ref.argmax(v, v.length);
      checks.push({ what: name, ok: got === want, detail: `${got} vs ${want}` });
    }
    const x = randn(32000, 8),
      gx = gpu.upload(x);
    ref.softmax(x, 32000, 0.7);
    gpu.softmax(gx, 32000, 0.7);
    checks.push(close('softmax (temperature 0.7)', await readF32(gx, 32000), x, 1e-5));
  }

  const tOps = performance.now() - T0;
  // the built-in model: greedy decoding on the GPU vs the same weights on the TS kernels
  const cpu = await loadBrowserModel(urlFiles(new URL('/model/', location.href).href), { backend: 'ref' });
  const prompt = cpu.tokenizer.encode('The state of the Union is', { bos: true });
  const N = 16;
  const want: number[] = [];
  let logits = cpu.model.forward(prompt);
  const firstLogits = logits.slice();
  for (let i = 0; i < N; i++) {
    const t = ref.argmax(logits, logits.length);
    want.push(t);
    if (i + 1 < N) logits = cpu.model.step(t);
  }
  const gm = GpuOpenELM.fromWeights(gpu, cpu.config, cpu.model.weights);
  checks.push(close('model: prompt logits', await gm.forward(prompt), firstLogits, 1e-4));
  gm.reset();
  const before = gpu.dispatches;
  await gm.forwardArgmax(prompt);
  const perStep = gpu.dispatches - before;
  gm.reset();
  const t0 = performance.now();
  const got = await gm.greedy(prompt, N);
  const ms = performance.now() - t0;
  checks.push({ what: "model: greedy tokens equal the TS kernels'", ok: got.join() === want.join(), detail: `${got.join(',')} vs ${want.join(',')}` });
  const text = cpu.tokenizer.decode(got);
  gpu.dispose();
  return {
    adapter: gpu.adapterName,
    shaderErrors,
    shaders: Object.keys(shaderErrors).length,
    checks,
    tokensPerSecond: N / (ms / 1000),
    dispatchesPerStep: perStep,
    text,
    timings: { shaders: tShaders, ops: tOps, total: performance.now() - T0, decode: ms },
  };
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
