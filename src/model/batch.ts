// One forward pass over several sequences at once: the step of continuous batching.
//
// Each segment is a run of new tokens of one sequence, appended to that sequence's own KV cache:
// one token for a sequence that is decoding, a chunk of its prompt for one that is prefilling.
// The segments' rows are stacked into one [Σ n, d] batch, so every matmul (where the time goes:
// decode streams every weight once per step) serves all sequences with one read of the weights.
// Only RoPE and attention run per segment, each over its own cache at its own positions. An
// adapter (LoRA / DoRA) adds its term to the rows of the segments that use it: consecutive
// segments sharing an adapter make one call.
//
// Branches: a segment with `keep: false` runs after what its cache holds but leaves the cache as
// it was, so several such segments may share one cache: continuations of one cached prefix, each
// attending to the prefix and to itself, never to the others (multiple-choice scoring: the
// context once, then every choice in one pass). Their keys and values go into the cache rows past
// its length, one branch after the other within a layer, each overwriting the previous one's
// after it has attended.
//
// The weights and the model stay read-only; the caches belong to the caller; the scratch here
// is sized once for `maxTokens` rows.
//
//   const batch = new BatchForward(model, 64);
//   const a = model.newCache(), b = model.newCache();
//   const logits = batch.run([{ cache: a, ids: promptA, logits: 'last' }, { cache: b, ids: [tok], logits: 'last' }]);
//   // logits: [2, vocab], one row per segment that asked for 'last'
//   // choices after a cached context:
//   batch.run([{ cache: a, ids: choice1, logits: 'all', keep: false }, { cache: a, ids: choice2, logits: 'all', keep: false }]);
import type { Activation, AttentionShape } from '../kernels/types.ts';
import type { KVCache } from './kv-cache.ts';
import { type AdaptedLinear, type ForwardAdapter, NORM_EPS } from './layer.ts';
import { ContextLengthError, type OpenELM } from './openelm.ts';
import { ropeTables } from './rope.ts';

export interface BatchSegment {
  /** the sequence's KV cache: the tokens are appended after what it holds */
  cache: KVCache;
  /** new tokens of the sequence */
  ids: ArrayLike<number>;
  /** the sequence's adapter, or null for the base model (default: the model's own `adapter`) */
  adapter?: ForwardAdapter | null;
  /** which rows' logits to return: none, the last token's, or every token's (scoring an echoed prompt) */
  logits: 'none' | 'last' | 'all';
  /** append the tokens to the cache (default true); false: a branch, the cache is left as it was */
  keep?: boolean;
}

export class BatchForward {
  /** the most tokens (all segments together) one run takes */
  readonly maxTokens: number;
  private readonly x: Float32Array; // [T, d] residual stream
  private readonly xb: Float32Array; // [T, d]
  private readonly qkv: Float32Array; // [T, max qkvDim]
  private readonly att: Float32Array; // [T, max nQ * hd]
  private readonly proj: Float32Array; // [T, d]
  private readonly ffnIn: Float32Array; // [T, max (1|2) * ffn]
  private readonly ffnAct: Float32Array; // [T, max ffn]
  private readonly xOut: Float32Array; // [T, d] rows whose logits are wanted
  private readonly logits: Float32Array; // [T, vocab]
  private readonly scores: Float32Array; // [capacity]
  private readonly rope: { cos: Float32Array; sin: Float32Array };
  private readonly shape: AttentionShape = { n: 0, pos0: 0, nQ: 0, nKV: 0, headDim: 0 };
  private readonly rows: number[] = []; // first row of each segment

  constructor(
    readonly model: OpenELM,
    maxTokens = 128,
  ) {
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new RangeError(`BatchForward: maxTokens must be an integer ≥ 1, got ${maxTokens}`);
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
    this.xOut = k.f32(T * d);
    this.logits = k.f32(T * cfg.vocab_size);
    this.scores = k.f32(model.cache.capacity);
    this.rope = ropeTables(cfg.head_dim, cfg.rope_freq_constant, model.cache.capacity, (n) => k.f32(n));
  }

  /**
   * Runs every segment and returns the wanted logits, segment after segment: one row for 'last',
   * ids.length rows for 'all', none for 'none'. [rows, vocab]; the view is reused by the next run.
   * Each cache gets its segment's keys, values and ids.
   */
  run(segments: readonly BatchSegment[]): Float32Array {
    const model = this.model,
      cfg = model.config,
      k = model.kernels;
    const d = cfg.model_dim,
      V = cfg.vocab_size;
    const ids: number[] = [];
    const rows = this.rows;
    rows.length = 0;
    let outRows = 0;
    for (const s of segments) {
      const n = s.ids.length;
      if (n === 0) throw new RangeError('BatchForward: a segment needs at least one token');
      if (s.cache.length + n > s.cache.capacity) throw new ContextLengthError(s.cache.length + n, s.cache.capacity);
      if (segments.some((o) => o !== s && o.cache === s.cache && (o.keep !== false || s.keep !== false)))
        throw new Error('BatchForward: two segments share one KV cache (only branches, keep: false, may)');
      rows.push(ids.length);
      for (let i = 0; i < n; i++) {
        const id = s.ids[i];
        if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${V})`);
        ids.push(id);
      }
      outRows += s.logits === 'all' ? n : s.logits === 'last' ? 1 : 0;
    }
    const T = ids.length;
    if (T === 0) return this.logits.subarray(0, 0);
    if (T > this.maxTokens) throw new RangeError(`BatchForward: ${T} tokens exceed the batch of ${this.maxTokens}`);

    const { x, xb, qkv, att, proj, ffnIn, ffnAct, shape } = this;
    k.embed(x, model.weights.token_embeddings, ids, T);
    this.adapt(segments, (ad, r0, n) => ad.embed(x.subarray(r0 * d), ids.slice(r0, r0 + n), n));
    for (const layer of model.layers) {
      const w = layer.w,
        li = layer.index,
        { qkvDim, nQ, nKV, headDim, ffnDim } = layer.shape;
      const qDim = nQ * headDim,
        ffnW = (cfg.ffn_with_glu ? 2 : 1) * ffnDim;
      k.rmsnorm(xb, x, w.attn_norm, T, d, NORM_EPS);
      k.matmul(qkv, xb, w.qkv_proj, T); // [T, qkvDim]
      this.linear(segments, li, 'qkv_proj', qkv, qkvDim, xb, d);
      shape.nQ = nQ;
      shape.nKV = nKV;
      shape.headDim = headDim;
      for (let s = 0; s < segments.length; s++) {
        // this segment's rows: positions cache.length .. + n - 1 of its own sequence
        const seg = segments[s],
          r0 = rows[s],
          n = seg.ids.length;
        shape.n = n;
        shape.pos0 = seg.cache.length;
        const q = qkv.subarray(r0 * qkvDim, (r0 + n) * qkvDim);
        k.headNormRope(q, shape, w.q_norm, w.k_norm, NORM_EPS, this.rope.cos, this.rope.sin);
        k.attention(att.subarray(r0 * qDim, (r0 + n) * qDim), q, seg.cache.k[li], seg.cache.v[li], shape, this.scores);
      }
      k.matmul(proj, att, w.out_proj, T); // [T, d]
      this.linear(segments, li, 'out_proj', proj, d, att, qDim);
      k.addInPlace(x, proj, T * d);
      k.rmsnorm(xb, x, w.ffn_norm, T, d, NORM_EPS);
      k.matmul(ffnIn, xb, w.proj_1, T); // [T, (1|2) ffn]
      this.linear(segments, li, 'proj_1', ffnIn, ffnW, xb, d);
      k.ffnAct(ffnAct, ffnIn, T, ffnDim, cfg.activation_fn_name as Activation, cfg.ffn_with_glu);
      k.matmul(proj, ffnAct, w.proj_2, T); // [T, d]
      this.linear(segments, li, 'proj_2', proj, d, ffnAct, ffnDim);
      k.addInPlace(x, proj, T * d);
    }
    for (let s = 0; s < segments.length; s++) {
      const seg = segments[s];
      if (seg.keep !== false) for (let i = 0; i < seg.ids.length; i++) seg.cache.ids.push(seg.ids[i]);
    }
    if (outRows === 0) return this.logits.subarray(0, 0);
    // gather the rows whose logits are wanted, then one norm and one output-head matmul for all
    let o = 0;
    for (let s = 0; s < segments.length; s++) {
      const seg = segments[s],
        r0 = rows[s],
        n = seg.ids.length;
      if (seg.logits === 'all') {
        this.xOut.set(x.subarray(r0 * d, (r0 + n) * d), o * d);
        o += n;
      } else if (seg.logits === 'last') {
        this.xOut.set(x.subarray((r0 + n - 1) * d, (r0 + n) * d), o * d);
        o += 1;
      }
    }
    k.rmsnorm(this.xOut, this.xOut, model.weights.norm, outRows, d, NORM_EPS);
    k.matmul(this.logits, this.xOut, model.weights.lm_head, outRows);
    return this.logits.subarray(0, outRows * V);
  }

  /** Calls f once per run of consecutive segments sharing an adapter: (adapter, first row, rows). */
  private adapt(segments: readonly BatchSegment[], f: (ad: ForwardAdapter, r0: number, n: number) => void): void {
    let s = 0;
    while (s < segments.length) {
      const ad = segments[s].adapter === undefined ? this.model.adapter : segments[s].adapter;
      let e = s + 1;
      while (e < segments.length && (segments[e].adapter === undefined ? this.model.adapter : segments[e].adapter) === ad) e++;
      if (ad) {
        const r0 = this.rows[s],
          last = segments[e - 1];
        f(ad, r0, this.rows[e - 1] + last.ids.length - r0);
      }
      s = e;
    }
  }

  private linear(segments: readonly BatchSegment[], layer: number, target: AdaptedLinear, y: Float32Array, out: number, x: Float32Array, inDim: number): void {
    this.adapt(segments, (ad, r0, n) => ad.linear(layer, target, y.subarray(r0 * out), x.subarray(r0 * inDim), n));
  }
}
