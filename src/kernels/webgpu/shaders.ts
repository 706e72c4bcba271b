// WGSL kernels: the GPU versions of the ops in src/kernels/types.ts, same shapes and layouts
// (row-major; weights in nn.Linear layout [rows = out, cols = in]; fused QKV rows Q | K | V).
// The plain-TypeScript kernels (ref.ts) are their oracle (test/webgpu.test.ts).
//
// Every kernel reads one 64-byte uniform block `p` (fields used per kernel as named below).
// Weights keep their storage format on the GPU and are decoded in the inner loop:
//   f32: one word per value · bf16 / f16: two values per word · q8_0 / q4_0: GGUF blocks, read bytewise.
import { DTYPE_CODE } from '../codes.ts';
import type { WeightDType } from '../types.ts';

export const PARAMS_BYTES = 64;

const PARAMS = /* wgsl */ `
struct P {
  n: u32, rows: u32, cols: u32, pos0: u32,
  nQ: u32, nKV: u32, hd: u32, dim: u32,
  xOff: u32, outOff: u32, act: u32, flags: u32,
  eps: f32, temp: f32, f2: f32, f3: f32,
}
@group(0) @binding(0) var<uniform> p: P;
`;

/** Decoding weight (r, c) of W (array<u32>) for the dtype fixed at compile time. */
function weightAccess(dtype: WeightDType): string {
  return /* wgsl */ `
const DTYPE: u32 = ${DTYPE_CODE[dtype]}u;
fn wbyte(b: u32) -> u32 { return (W[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu; }
fn whalf(i: u32) -> u32 { let w = W[i >> 1u]; return select(w & 0xffffu, w >> 16u, (i & 1u) == 1u); }
fn f16v(h: u32) -> f32 { return unpack2x16float(h).x; }
fn wval(r: u32, c: u32) -> f32 {
  if (DTYPE == 0u) { return bitcast<f32>(W[r * p.cols + c]); }
  if (DTYPE == 1u) { return bitcast<f32>(whalf(r * p.cols + c) << 16u); }
  if (DTYPE == 2u) { return f16v(whalf(r * p.cols + c)); }
  let nb = (p.cols + 31u) / 32u;
  let b = c / 32u;
  let j = c % 32u;
  if (DTYPE == 3u) {
    let o = (r * nb + b) * 34u;
    let d = f16v(wbyte(o) | (wbyte(o + 1u) << 8u));
    let q = i32(wbyte(o + 2u + j) << 24u) >> 24u;
    return d * f32(q);
  }
  let o = (r * nb + b) * 18u;
  let d = f16v(wbyte(o) | (wbyte(o + 1u) << 8u));
  let byte = wbyte(o + 2u + (j % 16u));
  let q = select(byte & 15u, byte >> 4u, j >= 16u);
  return d * (f32(q) - 8.0);
}
`;
}

/** out[outOff + t * rows + r] = Σ_c x[xOff + t * cols + c] · W[r, c]; a workgroup of 64 per (r, t). */
export function matmulShader(dtype: WeightDType): string {
  return (
    PARAMS +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
${weightAccess(dtype)}
var<workgroup> part: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let r = wg.x;
  let t = wg.y;
  var s = 0.0;
  let x0 = p.xOff + t * p.cols;
  for (var c = li; c < p.cols; c += 64u) { s += X[x0 + c] * wval(r, c); }
  part[li] = s;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  if (li == 0u) { O[p.outOff + t * p.rows + r] = part[0]; }
}
`
  );
}

/**
 * The same product with one invocation per output (r, t) and no workgroup barriers: what
 * software adapters (SwiftShader, lavapipe) run fastest, where a barrier costs a context switch.
 */
export function matmulRowShader(dtype: WeightDType): string {
  return (
    PARAMS +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
${weightAccess(dtype)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let r = g.x;
  let t = g.y;
  if (r >= p.rows) { return; }
  let x0 = p.xOff + t * p.cols;
  var s = 0.0;
  for (var c = 0u; c < p.cols; c++) { s += X[x0 + c] * wval(r, c); }
  O[p.outOff + t * p.rows + r] = s;
}
`
  );
}

/** out[t, c] = table[ids[t], c] as f32. p.n tokens, p.cols = dim. */
export function embedShader(dtype: WeightDType): string {
  return (
    PARAMS +
    /* wgsl */ `
@group(0) @binding(1) var<storage, read> IDS: array<u32>;
@group(0) @binding(2) var<storage, read> W: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
${weightAccess(dtype)}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let i = g.x + g.y * 65535u * 64u;
  if (i >= p.n * p.cols) { return; }
  let t = i / p.cols;
  O[i] = wval(IDS[t], i % p.cols);
}
`
  );
}

/** RMSNorm of p.n rows of p.dim: out[t] = x[xOff + t] / sqrt(mean(x²) + eps) · w. Workgroup per row. */
export const RMSNORM =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;
var<workgroup> part: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let x0 = p.xOff + wg.x * p.dim;
  var s = 0.0;
  for (var i = li; i < p.dim; i += 64u) { let v = X[x0 + i]; s += v * v; }
  part[li] = s;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  let inv = 1.0 / sqrt(part[0] / f32(p.dim) + p.eps);
  for (var i = li; i < p.dim; i += 64u) { O[p.outOff + wg.x * p.dim + i] = (X[x0 + i] * inv) * G[i]; }
}
`;

/**
 * In place on QKV [n, (nQ + 2 nKV) hd]: per-head RMSNorm of Q and K heads (flags bit 0: q norm,
 * bit 1: k norm), then rotate-half RoPE at positions pos0 + t. Workgroup per (head, token); hd ≤ 256.
 */
export const HEAD_NORM_ROPE =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> QKV: array<f32>;
@group(0) @binding(2) var<storage, read> QN: array<f32>;
@group(0) @binding(3) var<storage, read> KN: array<f32>;
@group(0) @binding(4) var<storage, read> COS: array<f32>;
@group(0) @binding(5) var<storage, read> SIN: array<f32>;
var<workgroup> v: array<f32, 256>;
var<workgroup> part: array<f32, 64>;
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let h = wg.x;
  let t = wg.y;
  let hd = p.hd;
  let o = t * (p.nQ + 2u * p.nKV) * hd + h * hd;
  var s = 0.0;
  for (var i = li; i < hd; i += 64u) { let x = QKV[o + i]; v[i] = x; s += x * x; }
  part[li] = s;
  workgroupBarrier();
  for (var k = 32u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  let isQ = h < p.nQ;
  let useNorm = select((p.flags & 2u) != 0u, (p.flags & 1u) != 0u, isQ);
  if (useNorm) {
    let inv = 1.0 / sqrt(part[0] / f32(hd) + p.eps);
    for (var i = li; i < hd; i += 64u) { v[i] = (v[i] * inv) * select(KN[i], QN[i], isQ); }
  }
  workgroupBarrier();
  let half = hd / 2u;
  let c0 = (p.pos0 + t) * half;
  for (var i = li; i < half; i += 64u) {
    let x1 = v[i];
    let x2 = v[i + half];
    let c = COS[c0 + i];
    let sn = SIN[c0 + i];
    QKV[o + i] = x1 * c - x2 * sn;
    QKV[o + i + half] = x2 * c + x1 * sn;
  }
}
`;

/** Copies the n new K and V heads of QKV into cache rows pos0 .. pos0 + n - 1 ([capacity, nKV hd]). */
export const KV_STORE =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> QKV: array<f32>;
@group(0) @binding(2) var<storage, read_write> K: array<f32>;
@group(0) @binding(3) var<storage, read_write> V: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  let kvDim = p.nKV * p.hd;
  if (g.x >= p.n * kvDim) { return; }
  let t = g.x / kvDim;
  let i = g.x % kvDim;
  let src = t * (p.nQ + 2u * p.nKV) * p.hd + p.nQ * p.hd + i;
  K[(p.pos0 + t) * kvDim + i] = QKV[src];
  V[(p.pos0 + t) * kvDim + i] = QKV[src + kvDim];
}
`;

/**
 * Causal attention over the cache (after KV_STORE): out[t, h] = softmax(q·K / sqrt(hd)) · V over
 * positions 0 .. pos0 + t, KV head h / (nQ / nKV); an online (one-pass) softmax per (head, token).
 */
export const ATTENTION =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> QKV: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(1)
fn main(@builtin(workgroup_id) wg: vec3<u32>) {
  let h = wg.x;
  let t = wg.y;
  let hd = p.hd;
  let kvDim = p.nKV * hd;
  let q0 = t * (p.nQ + 2u * p.nKV) * hd + h * hd;
  let kv = (h / (p.nQ / p.nKV)) * hd;
  let scale = 1.0 / sqrt(f32(hd));
  var acc: array<f32, 256>;
  for (var i = 0u; i < hd; i++) { acc[i] = 0.0; }
  var m = -3.4028234e38;
  var sum = 0.0;
  let len = p.pos0 + t + 1u;
  for (var pos = 0u; pos < len; pos++) {
    var dot = 0.0;
    for (var i = 0u; i < hd; i++) { dot += QKV[q0 + i] * K[pos * kvDim + kv + i]; }
    let s = dot * scale;
    let mNew = max(m, s);
    let corr = exp(m - mNew);
    let w = exp(s - mNew);
    sum = sum * corr + w;
    for (var i = 0u; i < hd; i++) { acc[i] = acc[i] * corr + w * V[pos * kvDim + kv + i]; }
    m = mNew;
  }
  let o = t * p.nQ * hd + h * hd;
  for (var i = 0u; i < hd; i++) { O[o + i] = acc[i] / sum; }
}
`;

/** FFN nonlinearity: flags bit 0 = GLU (x [n, 2 dim] as gate | up), act = ACT_CODE. */
export const FFN_ACT =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
fn erf_(x: f32) -> f32 {
  // Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7)
  let s = sign(x);
  let a = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * a);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);
  return s * y;
}
fn act(x: f32) -> f32 {
  switch p.act {
    case 0u: { return x / (1.0 + exp(-x)); }
    case 1u: { return 0.5 * x * (1.0 + erf_(x / 1.4142135623730951)); }
    case 2u: { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }
    case 3u: { return x / (1.0 + exp(-1.702 * x)); }
    case 4u: { return max(x, 0.0); }
    case 5u: { return 1.0 / (1.0 + exp(-x)); }
    default: { return tanh(x); }
  }
}
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x >= p.n * p.dim) { return; }
  let t = g.x / p.dim;
  let i = g.x % p.dim;
  if ((p.flags & 1u) != 0u) {
    O[g.x] = act(X[t * 2u * p.dim + i]) * X[t * 2u * p.dim + p.dim + i];
  } else {
    O[g.x] = act(X[g.x]);
  }
}
`;

/** out[i] += x[i] for i < p.n. */
export const ADD =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> O: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
  if (g.x < p.n) { O[g.x] += X[g.x]; }
}
`;

/** The index of the largest of x[xOff .. xOff + n) into R[0]: first on ties, NaNs skipped (a NaN first gives 0). One workgroup. */
export const ARGMAX =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> R: array<u32>;
var<workgroup> bv: array<f32, 256>;
var<workgroup> bi: array<u32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var best = -3.4028234e38;
  var idx = 0xffffffffu;
  for (var i = li; i < p.n; i += 256u) {
    let v = X[p.xOff + i];
    if (v > best || (idx == 0xffffffffu && v == best)) { best = v; idx = i; }
  }
  bv[li] = best;
  bi[li] = idx;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (li < k) {
      let v = bv[li + k];
      let j = bi[li + k];
      if (j != 0xffffffffu && (bi[li] == 0xffffffffu || v > bv[li] || (v == bv[li] && j < bi[li]))) { bv[li] = v; bi[li] = j; }
    }
    workgroupBarrier();
  }
  if (li == 0u) {
    let x0 = X[p.xOff];
    R[0] = select(select(bi[0], 0u, bi[0] == 0xffffffffu), 0u, x0 != x0);
  }
}
`;

/** x[0 .. n) ← softmax(x / temp) in place. One workgroup. */
export const SOFTMAX =
  PARAMS +
  /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> X: array<f32>;
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) li: u32) {
  var m = -3.4028234e38;
  for (var i = li; i < p.n; i += 256u) { m = max(m, X[i] / p.temp); }
  part[li] = m;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] = max(part[li], part[li + k]); }
    workgroupBarrier();
  }
  let mx = part[0];
  workgroupBarrier();
  var s = 0.0;
  for (var i = li; i < p.n; i += 256u) { let e = exp(X[i] / p.temp - mx); X[i] = e; s += e; }
  part[li] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k >>= 1u) {
    if (li < k) { part[li] += part[li + k]; }
    workgroupBarrier();
  }
  let total = part[0];
  for (var i = li; i < p.n; i += 256u) { X[i] = X[i] / total; }
}
`;

/** Every shader by name (matmul and embed once per weight dtype): what CI compiles and validates. */
export function allShaders(): Record<string, string> {
  const out: Record<string, string> = { RMSNORM, HEAD_NORM_ROPE, KV_STORE, ATTENTION, FFN_ACT, ADD, ARGMAX, SOFTMAX };
  for (const d of Object.keys(DTYPE_CODE) as WeightDType[]) {
    out[`matmul_${d}`] = matmulShader(d);
    out[`matmul_row_${d}`] = matmulRowShader(d);
    out[`embed_${d}`] = embedShader(d);
  }
  return out;
}
