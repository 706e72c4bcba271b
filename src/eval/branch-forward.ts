// Several continuations of one cached prefix in a single forward pass.
//
// Multiple-choice scoring runs, for every choice, the same context followed by a different
// short continuation. The context goes through the model once (its keys and values stay in the
// KV cache, positions 0 .. P-1); then the branches — one token run per choice — are stacked into
// one [Σ len, d] batch so every matmul (where the time goes) streams each weight once for all
// choices together instead of once per choice. Only attention and RoPE are per branch: branch b
// sits at positions P .. P + len_b - 1 and attends to the prefix and to itself, never to the
// other branches. Its keys and values go into cache rows P.. (overwriting the previous branch's,
// which has already attended), so the cache holds exactly the prefix again once `truncate(P)`.
//
// This is OpenELMLayer.forward with the attention split by branch; the weights, kernels and KV
// cache are the model's own.
//
//   const fwd = new BranchForward(model, 64);
//   model.forward(prefix);                              // P = prefix.length tokens cached
//   const logits = fwd.run([[11, 12], [13], [14, 15, 16]]); // [6, vocab], rows in branch order
import type { Activation, AttentionShape } from '../kernels/types.ts';
import { NORM_EPS } from '../model/layer.ts';
import type { OpenELM } from '../model/openelm.ts';
import { ContextLengthError } from '../model/openelm.ts';
import { ropeTables } from '../model/rope.ts';

export class BranchForward {
  /** the most tokens (all branches together) one run takes */
  readonly maxTokens: number;
  private readonly x: Float32Array; // [T, d] residual stream
  private readonly xb: Float32Array; // [T, d]
  private readonly qkv: Float32Array; // [T, max qkvDim]
  private readonly att: Float32Array; // [T, max nQ * hd]
  private readonly proj: Float32Array; // [T, d]
  private readonly ffnIn: Float32Array; // [T, max (1|2) * ffn]
  private readonly ffnAct: Float32Array; // [T, max ffn]
  private readonly logits: Float32Array; // [T, vocab]
  private readonly scores: Float32Array; // [capacity]
  private readonly rope: { cos: Float32Array; sin: Float32Array };
  private readonly shape: AttentionShape = { n: 0, pos0: 0, nQ: 0, nKV: 0, headDim: 0 };

  constructor(
    readonly model: OpenELM,
    maxTokens = 128,
  ) {
    const cfg = model.config,
      k = model.kernels;
    const T = (this.maxTokens = maxTokens);
    const d = cfg.model_dim;
    const maxQkv = Math.max(...model.layers.map((l) => l.shape.qkvDim));
    const maxQ = Math.max(...model.layers.map((l) => l.shape.nQ * l.shape.headDim));
    const maxFfn = Math.max(...cfg.ffn_dims);
    this.x = k.f32(T * d);
    this.xb = k.f32(T * d);
    this.qkv = k.f32(T * maxQkv);
    this.att = k.f32(T * maxQ);
    this.proj = k.f32(T * d);
    this.ffnIn = k.f32(T * (cfg.ffn_with_glu ? 2 : 1) * maxFfn);
    this.ffnAct = k.f32(T * maxFfn);
    this.logits = k.f32(T * cfg.vocab_size);
    this.scores = k.f32(model.cache.capacity);
    this.rope = ropeTables(cfg.head_dim, cfg.rope_freq_constant, model.cache.capacity, (n) => k.f32(n));
  }

  /**
   * Runs every branch after the cached prefix (P = model.cache.length tokens) and returns the
   * logits of every branch token, branch after branch: [Σ len_b, vocab]. The view is reused by
   * the next call. The cache is left holding the prefix only.
   */
  run(branches: readonly (readonly number[])[]): Float32Array {
    const model = this.model,
      cfg = model.config,
      k = model.kernels,
      cache = model.cache;
    const d = cfg.model_dim,
      V = cfg.vocab_size,
      P = cache.length;
    const ids: number[] = [];
    let longest = 0;
    for (const b of branches) {
      if (b.length === 0) throw new RangeError('BranchForward: a branch needs at least one token');
      for (const id of b) {
        if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${V})`);
        ids.push(id);
      }
      longest = Math.max(longest, b.length);
    }
    const n = ids.length;
    if (n > this.maxTokens) throw new RangeError(`BranchForward: ${n} tokens exceed the batch of ${this.maxTokens}`);
    if (P + longest > cache.capacity) throw new ContextLengthError(P + longest, cache.capacity);

    const { x, xb, qkv, att, proj, ffnIn, ffnAct, shape } = this;
    k.embed(x, model.weights.token_embeddings, ids, n);
    const ad = model.adapter; // a LoRA / DoRA adapter (--adapter): its term after each matmul
    ad?.embed(x, ids, n);
    for (const layer of model.layers) {
      const w = layer.w,
        { qkvDim, nQ, nKV, headDim, ffnDim } = layer.shape;
      const qDim = nQ * headDim;
      k.rmsnorm(xb, x, w.attn_norm, n, d, NORM_EPS);
      k.matmul(qkv, xb, w.qkv_proj, n); // [n, qkvDim]
      ad?.linear(layer.index, 'qkv_proj', qkv, xb, n);
      shape.nQ = nQ;
      shape.nKV = nKV;
      shape.headDim = headDim;
      shape.pos0 = P;
      let row = 0;
      for (const b of branches) {
        // this branch's rows: positions P .. P + len - 1, attending to the prefix and itself
        shape.n = b.length;
        const q = qkv.subarray(row * qkvDim, (row + b.length) * qkvDim);
        k.headNormRope(q, shape, w.q_norm, w.k_norm, NORM_EPS, this.rope.cos, this.rope.sin);
        k.attention(att.subarray(row * qDim, (row + b.length) * qDim), q, cache.k[layer.index], cache.v[layer.index], shape, this.scores);
        row += b.length;
      }
      k.matmul(proj, att, w.out_proj, n); // [n, d]
      ad?.linear(layer.index, 'out_proj', proj, att, n);
      k.addInPlace(x, proj, n * d);
      k.rmsnorm(xb, x, w.ffn_norm, n, d, NORM_EPS);
      k.matmul(ffnIn, xb, w.proj_1, n);
      ad?.linear(layer.index, 'proj_1', ffnIn, xb, n);
      k.ffnAct(ffnAct, ffnIn, n, ffnDim, cfg.activation_fn_name as Activation, cfg.ffn_with_glu);
      k.matmul(proj, ffnAct, w.proj_2, n);
      ad?.linear(layer.index, 'proj_2', proj, ffnAct, n);
      k.addInPlace(x, proj, n * d);
    }
    k.rmsnorm(x, x, model.weights.norm, n, d, NORM_EPS);
    k.matmul(this.logits, x, model.weights.lm_head, n);
    cache.truncate(P);
    return this.logits.subarray(0, n * V);
  }
}
