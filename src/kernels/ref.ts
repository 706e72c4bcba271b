// The plain-TypeScript kernels: the readable reference every faster backend is tested against.
// Straightforward loops, accumulation in float64 (JS numbers), results stored as float32.

import { f16BitsToF32 } from './half.ts';
import { blocksPerRow, dequantizeRowQ4_0, dequantizeRowQ8_0, dequantizeTiledRowQ8_0, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES } from './quant.ts';
import type { Activation, AttentionShape, Kernels, Weight, WeightDType } from './types.ts';

export function weightBytes(dtype: WeightDType, rows: number, cols: number): number {
  switch (dtype) {
    case 'f32':
      return rows * cols * 4;
    case 'bf16':
    case 'f16':
      return rows * cols * 2;
    case 'q8_0':
      return rows * blocksPerRow(cols) * Q8_0_BLOCK_BYTES;
    case 'q4_0':
      return rows * blocksPerRow(cols) * Q4_0_BLOCK_BYTES;
  }
}

/** Allocates weight storage of the right typed-array kind inside `buffer`-producing `alloc`. */
export function makeWeight(dtype: WeightDType, rows: number, cols: number, bytes: Uint8Array): Weight {
  const b = bytes.buffer,
    o = bytes.byteOffset;
  const data = dtype === 'f32' ? new Float32Array(b, o, rows * cols) : dtype === 'bf16' || dtype === 'f16' ? new Uint16Array(b, o, rows * cols) : bytes;
  return { dtype, rows, cols, data };
}

/** Decodes row r of w into dst[0 .. w.cols); dstBits is a Uint32Array view of dst. */
export function decodeRow(w: Weight, r: number, dst: Float32Array, dstBits: Uint32Array): void {
  const cols = w.cols;
  switch (w.dtype) {
    case 'f32': {
      const src = w.data as Float32Array;
      for (let j = 0, o = r * cols; j < cols; j++) dst[j] = src[o + j];
      return;
    }
    case 'bf16': {
      const src = w.data as Uint16Array;
      for (let j = 0, o = r * cols; j < cols; j++) dstBits[j] = src[o + j] << 16;
      return;
    }
    case 'f16': {
      const src = w.data as Uint16Array;
      for (let j = 0, o = r * cols; j < cols; j++) dst[j] = f16BitsToF32(src[o + j]);
      return;
    }
    case 'q8_0':
      if (w.layout === 'tiles8' && r < (w.rows & ~7)) dequantizeTiledRowQ8_0(w.data as Uint8Array, r, cols, dst);
      else dequantizeRowQ8_0(w.data as Uint8Array, r * blocksPerRow(cols) * Q8_0_BLOCK_BYTES, cols, dst, 0);
      return;
    case 'q4_0':
      dequantizeRowQ4_0(w.data as Uint8Array, r * blocksPerRow(cols) * Q4_0_BLOCK_BYTES, cols, dst, 0);
      return;
  }
}

// erf with |error| < 1.2e-7 (Numerical Recipes erfc, Chebyshev fit).
function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? 1 - r : r - 1;
}

export function activate(x: number, act: Activation): number {
  switch (act) {
    case 'swish':
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'gelu':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'quick_gelu':
      return x / (1 + Math.exp(-1.702 * x));
    case 'relu':
      return x > 0 ? x : 0;
    case 'sigmoid':
      return 1 / (1 + Math.exp(-x));
    case 'tanh':
      return Math.tanh(x);
  }
}

/** d act(x) / dx, for the backward pass. */
export function activateGrad(x: number, act: Activation): number {
  switch (act) {
    case 'swish':
    case 'silu': {
      const sg = 1 / (1 + Math.exp(-x));
      return sg * (1 + x * (1 - sg));
    }
    case 'gelu':
      return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case 'gelu_new':
    case 'gelu_pytorch_tanh':
    case 'gelu_fast': {
      const c = Math.sqrt(2 / Math.PI);
      const t = Math.tanh(c * (x + 0.044715 * x * x * x));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
    }
    case 'quick_gelu': {
      const sg = 1 / (1 + Math.exp(-1.702 * x));
      return sg + 1.702 * x * sg * (1 - sg);
    }
    case 'relu':
      return x > 0 ? 1 : 0;
    case 'sigmoid': {
      const sg = 1 / (1 + Math.exp(-x));
      return sg * (1 - sg);
    }
    case 'tanh': {
      const t = Math.tanh(x);
      return 1 - t * t;
    }
  }
}

export class RefKernels implements Kernels {
  readonly name = 'ref';
  /** one decoded weight row; grown (rarely) to the widest matrix seen */
  private row = new Float32Array(0);
  private rowBits = new Uint32Array(0);

  f32(n: number): Float32Array {
    return new Float32Array(n);
  }

  i32(n: number): Int32Array {
    return new Int32Array(n);
  }

  weight(dtype: WeightDType, rows: number, cols: number): Weight {
    return makeWeight(dtype, rows, cols, new Uint8Array(weightBytes(dtype, rows, cols)));
  }

  weightBytes(dtype: WeightDType, rows: number, cols: number): number {
    return weightBytes(dtype, rows, cols);
  }

  private rowScratch(cols: number): Float32Array {
    if (this.row.length < cols) {
      this.row = new Float32Array(cols);
      this.rowBits = new Uint32Array(this.row.buffer);
    }
    return this.row;
  }

  read(x: Float32Array, n: number, offset = 0): Promise<Float32Array> {
    return Promise.resolve(x.slice(offset, offset + n));
  }

  embed(out: Float32Array, table: Weight, ids: ArrayLike<number>, n: number): void {
    const d = table.cols;
    const row = this.rowScratch(d);
    for (let t = 0; t < n; t++) {
      const id = ids[t];
      if (!(id >= 0 && id < table.rows)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${table.rows})`);
      decodeRow(table, id, row, this.rowBits);
      for (let i = 0; i < d; i++) out[t * d + i] = row[i];
    }
  }

  matmul(out: Float32Array, x: Float32Array, w: Weight, n: number): void {
    const { rows, cols } = w;
    const row = this.rowScratch(cols);
    for (let o = 0; o < rows; o++) {
      decodeRow(w, o, row, this.rowBits);
      for (let t = 0; t < n; t++) {
        const xo = t * cols;
        let acc = 0;
        for (let i = 0; i < cols; i++) acc += x[xo + i] * row[i];
        out[t * rows + o] = acc;
      }
    }
  }

  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void {
    for (let t = 0; t < n; t++) {
      const o = t * dim;
      let ss = 0;
      for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
      // PyTorch computes the normalised value in f32, then multiplies by the weight
      const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / dim) + eps));
      for (let i = 0; i < dim; i++) out[o + i] = Math.fround(x[o + i] * inv) * weight[i];
    }
  }

  headNormRope(
    qkv: Float32Array,
    s: AttentionShape,
    qNorm: Float32Array | null,
    kNorm: Float32Array | null,
    eps: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void {
    const { n, pos0, nQ, nKV, headDim: hd } = s;
    const stride = (nQ + 2 * nKV) * hd;
    const half = hd / 2;
    for (let t = 0; t < n; t++) {
      const c0 = (pos0 + t) * half;
      for (let h = 0; h < nQ + nKV; h++) {
        const o = t * stride + h * hd;
        const norm = h < nQ ? qNorm : kNorm;
        if (norm) {
          let ss = 0;
          for (let i = 0; i < hd; i++) ss += qkv[o + i] * qkv[o + i];
          const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / hd) + eps));
          for (let i = 0; i < hd; i++) qkv[o + i] = Math.fround(qkv[o + i] * inv) * norm[i];
        }
        for (let i = 0; i < half; i++) {
          const x1 = qkv[o + i],
            x2 = qkv[o + i + half];
          const c = cos[c0 + i],
            sn = sin[c0 + i];
          qkv[o + i] = x1 * c - x2 * sn;
          qkv[o + i + half] = x2 * c + x1 * sn;
        }
      }
    }
  }

  attention(out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array, s: AttentionShape, scratch: Float32Array): void {
    const { n, pos0, nQ, nKV, headDim: hd } = s;
    const stride = (nQ + 2 * nKV) * hd;
    const kvDim = nKV * hd;
    const group = nQ / nKV;
    const scale = 1 / Math.sqrt(hd);
    // store the new keys and values: cache row p holds all KV heads of position p
    for (let t = 0; t < n; t++) {
      const src = t * stride + nQ * hd;
      const dst = (pos0 + t) * kvDim;
      for (let i = 0; i < kvDim; i++) {
        kCache[dst + i] = qkv[src + i];
        vCache[dst + i] = qkv[src + kvDim + i];
      }
    }
    for (let t = 0; t < n; t++) {
      const len = pos0 + t + 1; // causal: attend to positions 0 .. pos0 + t
      for (let h = 0; h < nQ; h++) {
        const q = t * stride + h * hd;
        const kv = Math.floor(h / group) * hd;
        let max = -Infinity;
        for (let p = 0; p < len; p++) {
          const k = p * kvDim + kv;
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += qkv[q + i] * kCache[k + i];
          scratch[p] = dot * scale;
          if (scratch[p] > max) max = scratch[p];
        }
        let sum = 0;
        for (let p = 0; p < len; p++) {
          scratch[p] = Math.exp(scratch[p] - max);
          sum += scratch[p];
        }
        const o = t * nQ * hd + h * hd;
        for (let i = 0; i < hd; i++) {
          let acc = 0;
          for (let p = 0; p < len; p++) acc += scratch[p] * vCache[p * kvDim + kv + i];
          out[o + i] = acc / sum;
        }
      }
    }
  }

  ffnAct(out: Float32Array, x: Float32Array, n: number, dim: number, act: Activation, glu: boolean): void {
    for (let t = 0; t < n; t++) {
      if (glu) {
        const g = t * 2 * dim,
          u = g + dim;
        for (let i = 0; i < dim; i++) out[t * dim + i] = activate(x[g + i], act) * x[u + i];
      } else {
        for (let i = 0; i < dim; i++) out[t * dim + i] = activate(x[t * dim + i], act);
      }
    }
  }

  addInPlace(out: Float32Array, x: Float32Array, len: number): void {
    for (let i = 0; i < len; i++) out[i] += x[i];
  }

  argmax(x: Float32Array, n: number): number {
    let best = 0;
    for (let i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
  }

  softmax(x: Float32Array, n: number, temperature: number): number {
    if (!(temperature > 0 && temperature < Infinity))
      throw new RangeError(`RefKernels.softmax: temperature must be a positive finite number, got ${temperature}`);
    for (let i = 0; i < n; i++) x[i] /= temperature;
    let max = -Infinity;
    for (let i = 0; i < n; i++) if (x[i] > max) max = x[i];
    let sum = 0;
    for (let i = 0; i < n; i++) {
      x[i] = Math.exp(x[i] - max);
      sum += x[i];
    }
    let pmax = 0;
    for (let i = 0; i < n; i++) {
      x[i] /= sum;
      if (x[i] > pmax) pmax = x[i];
    }
    return pmax;
  }

  selectDesc(p: Float32Array, n: number, tau: number, idx: Int32Array): number {
    let c = 0;
    for (let i = 0; i < n; i++) if (p[i] >= tau) idx[c++] = i;
    idx.subarray(0, c).sort((a, b) => p[b] - p[a] || a - b);
    return c;
  }

  // ---- training ----

  matmulGradInput(dx: Float32Array, dy: Float32Array, w: Weight, n: number): void {
    const { rows, cols } = w;
    const row = this.rowScratch(cols);
    const acc = new Float64Array(n * cols);
    for (let o = 0; o < rows; o++) {
      decodeRow(w, o, row, this.rowBits);
      for (let t = 0; t < n; t++) {
        const g = dy[t * rows + o];
        if (g === 0) continue;
        for (let i = 0, a = t * cols; i < cols; i++) acc[a + i] += g * row[i];
      }
    }
    for (let i = 0; i < n * cols; i++) dx[i] = acc[i];
  }

  matmulGradWeight(dw: Float32Array, dy: Float32Array, x: Float32Array, n: number, rows: number, cols: number): void {
    const acc = new Float64Array(cols);
    for (let o = 0; o < rows; o++) {
      acc.fill(0);
      for (let t = 0; t < n; t++) {
        const g = dy[t * rows + o];
        if (g === 0) continue;
        for (let i = 0, a = t * cols; i < cols; i++) acc[i] += g * x[a + i];
      }
      for (let i = 0, a = o * cols; i < cols; i++) dw[a + i] += acc[i];
    }
  }

  rmsnormBackward(dx: Float32Array, dweight: Float32Array, dy: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void {
    for (let t = 0; t < n; t++) rmsRowBackward(dx, dweight, dy, x, weight, t * dim, dim, eps, true);
  }

  headNormRopeBackward(
    dqkv: Float32Array,
    qkvIn: Float32Array,
    s: AttentionShape,
    qNorm: Float32Array | null,
    kNorm: Float32Array | null,
    dqNorm: Float32Array | null,
    dkNorm: Float32Array | null,
    eps: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void {
    const { n, pos0, nQ, nKV, headDim: hd } = s;
    const stride = (nQ + 2 * nKV) * hd;
    const half = hd / 2;
    for (let t = 0; t < n; t++) {
      const c0 = (pos0 + t) * half;
      for (let h = 0; h < nQ + nKV; h++) {
        const o = t * stride + h * hd;
        // rope⁻¹: the rotation's transpose takes the gradient back to the normed values z
        for (let i = 0; i < half; i++) {
          const d1 = dqkv[o + i],
            d2 = dqkv[o + i + half];
          const c = cos[c0 + i],
            sn = sin[c0 + i];
          dqkv[o + i] = d1 * c + d2 * sn;
          dqkv[o + i + half] = d2 * c - d1 * sn;
        }
        const norm = h < nQ ? qNorm : kNorm;
        const dnorm = h < nQ ? dqNorm : dkNorm;
        if (norm) rmsRowBackward(dqkv, dnorm, dqkv, qkvIn, norm, o, hd, eps, false);
      }
    }
  }

  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, out: Float32Array, s: AttentionShape): void {
    const { n, nQ, nKV, headDim: hd } = s;
    if (s.pos0 !== 0) throw new RangeError('attentionBackward: training attention starts at position 0');
    const stride = (nQ + 2 * nKV) * hd;
    const group = nQ / nKV;
    const scale = 1 / Math.sqrt(hd);
    const p = new Float64Array(n),
      dq = new Float64Array(hd);
    const dkv = new Float64Array(n * 2 * nKV * hd); // [n, K heads | V heads]
    const kvw = 2 * nKV * hd;
    for (let t = 0; t < n; t++) {
      for (let h = 0; h < nQ; h++) {
        const q = t * stride + h * hd;
        const kh = Math.floor(h / group);
        const kOff = nQ * hd + kh * hd,
          vOff = (nQ + nKV) * hd + kh * hd;
        // recompute the attention weights of (t, h)
        let max = -Infinity;
        for (let j = 0; j <= t; j++) {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += qkv[q + i] * qkv[j * stride + kOff + i];
          p[j] = dot * scale;
          if (p[j] > max) max = p[j];
        }
        let sum = 0;
        for (let j = 0; j <= t; j++) {
          p[j] = Math.exp(p[j] - max);
          sum += p[j];
        }
        const o = t * nQ * hd + h * hd;
        let D = 0; // Σ dout · out = Σ_j p_j (dout · v_j)
        for (let i = 0; i < hd; i++) D += dout[o + i] * out[o + i];
        dq.fill(0);
        for (let j = 0; j <= t; j++) {
          const pj = p[j] / sum;
          let dp = 0;
          for (let i = 0; i < hd; i++) dp += dout[o + i] * qkv[j * stride + vOff + i];
          const ds = pj * (dp - D) * scale;
          const kj = j * kvw + kh * hd,
            vj = j * kvw + nKV * hd + kh * hd;
          for (let i = 0; i < hd; i++) {
            dq[i] += ds * qkv[j * stride + kOff + i];
            dkv[kj + i] += ds * qkv[q + i];
            dkv[vj + i] += pj * dout[o + i];
          }
        }
        for (let i = 0; i < hd; i++) dqkv[q + i] = dq[i];
      }
    }
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < kvw; i++) dqkv[t * stride + nQ * hd + i] = dkv[t * kvw + i];
    }
  }

  ffnActBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, n: number, dim: number, act: Activation, glu: boolean): void {
    for (let t = 0; t < n; t++) {
      if (glu) {
        const g = t * 2 * dim,
          u = g + dim;
        for (let i = 0; i < dim; i++) {
          const d = dy[t * dim + i];
          dx[g + i] = d * x[u + i] * activateGrad(x[g + i], act);
          dx[u + i] = d * activate(x[g + i], act);
        }
      } else {
        for (let i = 0; i < dim; i++) dx[t * dim + i] = dy[t * dim + i] * activateGrad(x[t * dim + i], act);
      }
    }
  }

  embedBackward(dtable: Float32Array, dy: Float32Array, ids: ArrayLike<number>, n: number, dim: number): void {
    for (let t = 0; t < n; t++) {
      const r = ids[t] * dim;
      for (let i = 0; i < dim; i++) dtable[r + i] += dy[t * dim + i];
    }
  }

  crossEntropy(logits: Float32Array, targets: Int32Array, n: number, V: number, zLoss: number, scale: number, lse: Float32Array): number {
    let loss = 0;
    for (let t = 0; t < n; t++) {
      const o = t * V,
        target = targets[t];
      if (target < 0) {
        logits.fill(0, o, o + V);
        lse[t] = 0;
        continue;
      }
      if (target >= V) throw new RangeError(`crossEntropy: target ${target} at row ${t} is outside the vocabulary [0, ${V})`);
      let max = -Infinity;
      for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
      let sum = 0;
      for (let i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
      const z = max + Math.log(sum);
      loss += z - logits[o + target];
      lse[t] = z;
      const k = scale * (1 + 2 * zLoss * z);
      for (let i = 0; i < V; i++) logits[o + i] = k * Math.exp(logits[o + i] - z);
      logits[o + target] -= scale;
    }
    return loss;
  }

  sumSquares(x: Float32Array, n: number): number {
    let s = 0;
    for (let i = 0; i < n; i++) s += x[i] * x[i];
    return s;
  }

  scale(x: Float32Array, n: number, s: number): void {
    for (let i = 0; i < n; i++) x[i] *= s;
  }

  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void {
    adamwRef(p, g, m, v, n, lr, beta1, beta2, eps, weightDecay, step);
  }
}

/**
 * Backward of one RMSNorm row y = x · inv · w (inv = 1 / sqrt(mean(x²) + eps)) at offset o:
 * ∂/∂x_i = inv · g_i − x_i · inv³ · Σ_j g_j x_j / dim with g = dy · w, added into dx (add) or
 * written over it (dx may then be dy itself); dw += dy · x · inv when dw is given.
 */
function rmsRowBackward(
  dx: Float32Array,
  dw: Float32Array | null,
  dy: Float32Array,
  x: Float32Array,
  w: Float32Array,
  o: number,
  dim: number,
  eps: number,
  add: boolean,
): void {
  let ss = 0;
  for (let i = 0; i < dim; i++) ss += x[o + i] * x[o + i];
  const inv = 1 / Math.sqrt(ss / dim + eps);
  let gx = 0;
  for (let i = 0; i < dim; i++) gx += dy[o + i] * w[i] * x[o + i];
  const c = (inv * inv * inv * gx) / dim;
  for (let i = 0; i < dim; i++) {
    if (dw) dw[i] += dy[o + i] * x[o + i] * inv;
    const g = inv * dy[o + i] * w[i] - x[o + i] * c;
    dx[o + i] = add ? dx[o + i] + g : g;
  }
}

/** AdamW as torch.optim.AdamW (single-tensor path) computes it: float32 tensors, float64 scalars. */
export function adamwRef(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  n: number,
  lr: number,
  beta1: number,
  beta2: number,
  eps: number,
  weightDecay: number,
  step: number,
): void {
  const f = Math.fround;
  const decay = f(1 - lr * weightDecay),
    b1 = f(beta1),
    b2 = f(beta2),
    a1 = f(1 - beta1),
    a2 = f(1 - beta2);
  const stepSize = lr / (1 - beta1 ** step);
  const bc2Sqrt = Math.sqrt(1 - beta2 ** step);
  const epsF = f(eps),
    negStep = f(-stepSize),
    bc2F = f(bc2Sqrt);
  for (let i = 0; i < n; i++) {
    const gi = g[i];
    const pi = f(p[i] * decay);
    const mi = f(f(m[i] * b1) + f(gi * a1));
    const vi = f(f(v[i] * b2) + f(f(gi * gi) * a2));
    m[i] = mi;
    v[i] = vi;
    const denom = f(f(f(Math.sqrt(vi)) / bc2F) + epsF);
    p[i] = f(pi + f(negStep * f(mi / denom)));
  }
}
