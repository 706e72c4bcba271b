// The arithmetic of an adapted linear layer, forward and backward, as kernel calls (the same on
// every backend), and of an adapted embedding. The base weight W is frozen (any dtype, quantized
// included); only A, B (and DoRA's m) get gradients.
//
//   forward   u = x_d Aᵀ                     [n, r]     x_d: x after dropout (x when p = 0)
//             z = x Wᵀ + s · u Bᵀ            [n, out]   (x Wᵀ is what the model's matmul wrote into y)
//             LoRA: y = z        DoRA: y = g ⊙ z,  g = m / c,  c = ‖W + s B A‖_row (a constant)
//
//   backward  given dy:  dz = dy (LoRA) or dy ⊙ g (DoRA; dm += Σ_t dy ⊙ z / c)
//             dB += s · dzᵀ u     du = s · dz B     dA += duᵀ x_d
//             dx  = dz W + mask ⊙ (du A)
//
// Dropout (training only) draws its mask from a counter-based hash of (seed, element), so the
// backward pass regenerates it instead of storing it, and a resumed run draws the same masks.
import type { Kernels, Weight } from '../kernels/types.ts';
import type { ModelWeights } from '../model/weights.ts';
import type { Adapter, AdapterTensors, EmbeddingAdapter, LinearAdapter } from './adapter.ts';
import { baseWeight, rowNorms } from './adapter.ts';
import type { LinearTarget } from './config.ts';

/** Buffers one adapted matmul needs, sized for n tokens of the widest layer. */
export interface LoraScratch {
  v: Float32Array; // [n, max out]
  xd: Float32Array; // [n, max in]   dropped-out input
  du: Float32Array; // [n, r]
  dxa: Float32Array; // [n, max in]
  dz: Float32Array; // [n, max out]
}

export function loraScratch(k: Kernels, adapter: Adapter, n: number): LoraScratch {
  const t = adapter.tensors();
  const maxIn = Math.max(1, ...t.linears.map((a) => a.in)),
    maxOut = Math.max(1, ...t.linears.map((a) => a.out));
  return { v: k.f32(n * maxOut), xd: k.f32(n * maxIn), du: k.f32(n * adapter.r), dxa: k.f32(n * maxIn), dz: k.f32(n * maxOut) };
}

/** DoRA's per-row constants of one adapted layer: c = ‖W + sBA‖ and g = m / c. */
export interface DoraGain {
  norm: Float32Array; // [out]
  gain: Float32Array; // [out]
}

/** Computes c and g for every DoRA layer of the adapter (after each change of A, B or m). */
export function doraGains(adapter: Adapter, t: AdapterTensors, base: ModelWeights, into?: Map<LinearAdapter, DoraGain>): Map<LinearAdapter, DoraGain> {
  const gains = into ?? new Map<LinearAdapter, DoraGain>();
  for (const a of t.linears) {
    if (!a.magnitude) continue;
    let g = gains.get(a);
    if (!g) gains.set(a, (g = { norm: new Float32Array(a.out), gain: new Float32Array(a.out) }));
    rowNorms(baseWeight(base, a), a.A, adapter.scale, a.B, g.norm);
    for (let o = 0; o < a.out; o++) g.gain[o] = a.magnitude[o] / g.norm[o];
  }
  return gains;
}

/** Dropout's keep/drop decision for element i of stream `seed`: a splitmix-style hash, uniform in [0, 1). */
function dropU(seed: number, i: number): number {
  let z = (seed ^ Math.imul(i, 0x9e3779b9)) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
  z = Math.imul(z ^ (z >>> 16), 0x27d4eb2f) >>> 0;
  return (z ^ (z >>> 15)) / 4294967296;
}

/** xd = dropout(x) with probability p (scaled by 1 / (1 − p)); returns xd (x itself when p = 0). */
export function dropout(x: Float32Array, len: number, p: number, seed: number, xd: Float32Array): Float32Array {
  if (p === 0) return x;
  const keep = Math.fround(1 / (1 - p));
  for (let i = 0; i < len; i++) xd[i] = dropU(seed, i) < p ? 0 : Math.fround(x[i] * keep);
  return xd;
}

/**
 * Adds the adapter to y (which holds x Wᵀ, [n, out]) in place. u [n, r] receives x_d Aᵀ (kept for
 * the backward); z, when given, receives the pre-gain output of a DoRA layer.
 */
export function linearForward(
  k: Kernels,
  a: LinearAdapter,
  s: number,
  gain: DoraGain | undefined,
  y: Float32Array,
  xd: Float32Array,
  n: number,
  u: Float32Array,
  v: Float32Array,
  z: Float32Array | null,
): void {
  const len = n * a.out;
  k.matmul(u, xd, a.A, n); // [n, r]
  k.matmul(v, u, a.B, n); // [n, out]
  k.scale(v, len, s);
  k.addInPlace(y, v, len);
  if (!gain) return;
  if (z) z.set(y.subarray(0, len));
  const g = gain.gain,
    out = a.out;
  for (let t = 0; t < n; t++) for (let o = 0, b = t * out; o < out; o++) y[b + o] = Math.fround(y[b + o] * g[o]);
}

/**
 * Backward of an adapted linear layer: dx = ∂loss/∂x [n, in] (overwritten); gradients of A, B (and m)
 * added into ga. dy is not modified. u is consumed (scaled in place). x_d must be the forward's
 * dropped-out input and p / seed its dropout.
 */
export function linearBackward(
  k: Kernels,
  a: LinearAdapter,
  ga: LinearAdapter,
  s: number,
  gain: DoraGain | undefined,
  W: Weight,
  dx: Float32Array,
  dy: Float32Array,
  xd: Float32Array,
  n: number,
  u: Float32Array,
  z: Float32Array | null,
  p: number,
  seed: number,
  sc: LoraScratch,
): void {
  const out = a.out,
    inF = a.in,
    r = a.A.rows;
  let dz = dy;
  if (gain) {
    const g = gain.gain,
      c = gain.norm,
      dm = ga.magnitude!;
    dz = sc.dz;
    for (let o = 0; o < out; o++) {
      let acc = 0;
      for (let t = 0; t < n; t++) acc += dy[t * out + o] * z![t * out + o];
      dm[o] += acc / c[o];
    }
    for (let t = 0; t < n; t++) for (let o = 0, b = t * out; o < out; o++) dz[b + o] = Math.fround(dy[b + o] * g[o]);
  }
  k.matmulGradInput(dx, dz, W, n); // the frozen base
  const du = sc.du;
  k.matmulGradInput(du, dz, a.B, n); // [n, r]
  k.scale(du, n * r, s);
  k.scale(u, n * r, s);
  k.matmulGradWeight(ga.B.data as Float32Array, dz, u, n, out, r); // dB += dzᵀ (s u)
  k.matmulGradWeight(ga.A.data as Float32Array, du, xd, n, r, inF); // dA += duᵀ x_d
  const dxa = sc.dxa;
  k.matmulGradInput(dxa, du, a.A, n); // [n, in]
  if (p > 0) {
    const keep = Math.fround(1 / (1 - p));
    for (let i = 0; i < n * inF; i++) dxa[i] = dropU(seed, i) < p ? 0 : Math.fround(dxa[i] * keep);
  }
  k.addInPlace(dx, dxa, n * inF);
}

let embedCol = new Float64Array(0); // A's column of one token (grown once, never per token)

/** x[t] += s · B · A[:, ids[t]] for the n tokens (x: [n, dim], the embedded rows). */
export function embeddingForward(e: EmbeddingAdapter, s: number, x: Float32Array, ids: ArrayLike<number>, n: number, r: number): void {
  const { A, B, vocab, dim } = e;
  if (embedCol.length < r) embedCol = new Float64Array(r);
  const col = embedCol;
  for (let t = 0; t < n; t++) {
    const id = ids[t];
    for (let k = 0; k < r; k++) col[k] = A[k * vocab + id];
    for (let j = 0; j < dim; j++) {
      let acc = 0;
      for (let k = 0; k < r; k++) acc += B[j * r + k] * col[k];
      x[t * dim + j] = Math.fround(x[t * dim + j] + Math.fround(s * acc));
    }
  }
}

/** Backward of embeddingForward: dA[:, id] += s Bᵀ dx_t, dB += s dx_t ⊗ A[:, id]. */
export function embeddingBackward(e: EmbeddingAdapter, ge: EmbeddingAdapter, s: number, dx: Float32Array, ids: ArrayLike<number>, n: number, r: number): void {
  const { A, B, vocab, dim } = e;
  for (let t = 0; t < n; t++) {
    const id = ids[t];
    for (let k = 0; k < r; k++) {
      let acc = 0;
      for (let j = 0; j < dim; j++) acc += B[j * r + k] * dx[t * dim + j];
      ge.A[k * vocab + id] += s * acc;
      const a = s * A[k * vocab + id];
      if (a !== 0) for (let j = 0; j < dim; j++) ge.B[j * r + k] += a * dx[t * dim + j];
    }
  }
}

/**
 * An adapter attached to a running model (inference): its tensors, DoRA's gains computed once,
 * and scratch for `chunk` tokens. The model calls linear() after each adapted matmul.
 */
export class AdapterRuntime {
  readonly tensors: AdapterTensors;
  private readonly gains: Map<LinearAdapter, DoraGain>;
  private readonly u: Float32Array;
  private readonly v: Float32Array;

  /** chunk: rows the scratch holds; longer calls run in blocks of that many rows */
  constructor(
    readonly kernels: Kernels,
    readonly adapter: Adapter,
    base: ModelWeights,
    readonly chunk: number,
  ) {
    if (adapter.kernels !== kernels) throw new Error("the adapter was loaded for other kernels than the model's");
    this.tensors = adapter.tensors();
    this.gains = doraGains(adapter, this.tensors, base);
    const maxOut = Math.max(1, ...this.tensors.linears.map((a) => a.out));
    this.u = kernels.f32(chunk * adapter.r);
    this.v = kernels.f32(chunk * maxOut);
  }

  /** y (= x Wᵀ for layer `layer`'s `target`) gets the adapter's contribution, in place. */
  linear(layer: number, target: LinearTarget, y: Float32Array, x: Float32Array, n: number): void {
    const a = this.tensors.byLayer[layer][target];
    if (!a) return;
    for (let t0 = 0; t0 < n; t0 += this.chunk) {
      const m = Math.min(this.chunk, n - t0);
      linearForward(this.kernels, a, this.adapter.scale, this.gains.get(a), y.subarray(t0 * a.out), x.subarray(t0 * a.in), m, this.u, this.v, null);
    }
  }

  embed(x: Float32Array, ids: ArrayLike<number>, n: number): void {
    if (this.tensors.embedding) embeddingForward(this.tensors.embedding, this.adapter.scale, x, ids, n, this.adapter.r);
  }
}
