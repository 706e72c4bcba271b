// The OpenELM causal language model: embeddings → layers → final RMSNorm → (tied) output head.
// Buffers are sized once from the config; `forward` appends tokens to the KV cache and returns
// logits, allocating nothing per decoded token.
import type { OpenELMConfig } from '../config/config.ts';
import { RefKernels } from '../kernels/ref.ts';
import type { Activation, ForwardKernels, Kernels } from '../kernels/types.ts';
import { KVCache } from './kv-cache.ts';
import { type ForwardAdapter, NORM_EPS, newScratch, OpenELMLayer, type Scratch } from './layer.ts';
import { ropeTables } from './rope.ts';
import { checkTensors, type LoadDType, loadWeights, type ModelWeights, type TensorSource } from './weights.ts';

export interface ModelOptions {
  /** the math backend (default: the plain-TypeScript reference) */
  kernels?: Kernels;
  /** weight storage: 'auto' keeps the checkpoint's dtype; or f32, bf16, f16, q8_0, q4_0 */
  dtype?: LoadDType;
  /** KV cache capacity in tokens (default and maximum: config.max_context_length) */
  contextLength?: number;
  /** prompt tokens processed per forward step (default 128: the prefill GEMMs pack each weight tile once per 128 tokens) */
  chunkSize?: number;
}

export class ContextLengthError extends RangeError {
  constructor(
    readonly requested: number,
    readonly capacity: number,
  ) {
    super(`the sequence needs ${requested} tokens but the model's context holds ${capacity}; shorten the prompt or lower max new tokens`);
    this.name = 'ContextLengthError';
  }
}

/** Throws a RangeError naming the first token id (and its position) that is not in [0, V); or when there are none. */
export function checkIds(ids: ArrayLike<number>, V: number): void {
  if (ids.length === 0) throw new RangeError('forward needs at least one token');
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
  }
}

/**
 * The body of a forward step on any backend: embeds n tokens (ids, after those in the cache) into
 * x [n, d], runs every layer over them with the cache, and appends them to the cache's ids. The
 * residual stream x is left for the final norm and the output head.
 */
export function forwardChunk<B, W>(
  k: ForwardKernels<B, W>,
  embeddings: W,
  layers: readonly OpenELMLayer<B, W>[],
  x: B,
  ids: ArrayLike<number>,
  n: number,
  cache: KVCache<B>,
  scratch: Scratch<B>,
  d: number,
  ad: ForwardAdapter<B> | null,
): void {
  const pos0 = cache.length;
  k.embed(x, embeddings, ids, n);
  ad?.embed(x, ids, n);
  for (const layer of layers) layer.forward(k, x, n, pos0, d, cache.k[layer.index], cache.v[layer.index], scratch, ad);
  for (let i = 0; i < n; i++) cache.ids.push(ids[i]);
}

export class OpenELM {
  readonly layers: OpenELMLayer[];
  readonly cache: KVCache;
  readonly chunkSize: number;
  private readonly x: Float32Array; // [chunk, d] residual stream
  private readonly scratch: Scratch;
  private readonly xLast: Float32Array; // [d]
  private readonly logitsLast: Float32Array; // [vocab]
  private logitsChunk: Float32Array | null = null; // [chunk, vocab], made on the first forwardAll
  private readonly one = new Int32Array(1);
  /** a LoRA / DoRA adapter applied while running (src/peft: attachAdapter), or null */
  adapter: ForwardAdapter | null = null;

  constructor(
    readonly config: OpenELMConfig,
    readonly weights: ModelWeights,
    readonly kernels: Kernels,
    opts: ModelOptions = {},
  ) {
    const cfg = config;
    const k = kernels;
    const capacity = opts.contextLength ?? cfg.max_context_length;
    if (!(Number.isInteger(capacity) && capacity > 0 && capacity <= cfg.max_context_length)) {
      throw new RangeError(`contextLength must be an integer in [1, ${cfg.max_context_length}] (max_context_length), got ${capacity}`);
    }
    const T = (this.chunkSize = Math.max(1, Math.min(opts.chunkSize ?? 128, capacity)));
    const act = cfg.activation_fn_name as Activation;
    this.layers = weights.layers.map((w, i) => new OpenELMLayer(cfg, i, w, act, cfg.ffn_with_glu));
    const d = cfg.model_dim;
    this.x = k.f32(T * d);
    const f32 = (n: number) => k.f32(n);
    this.scratch = newScratch(cfg, this.layers, T, f32, k.f32(capacity), ropeTables(cfg.head_dim, cfg.rope_freq_constant, capacity, f32));
    this.xLast = k.f32(d);
    this.logitsLast = k.f32(cfg.vocab_size);
    this.cache = new KVCache(cfg, k, capacity);
  }

  /** Loads weights from a checkpoint (validated against the config) into the backend. */
  static load(src: TensorSource, opts: ModelOptions = {}, where = 'checkpoint'): OpenELM {
    checkTensors(src, where);
    const kernels = opts.kernels ?? new RefKernels();
    return new OpenELM(src.config, loadWeights(kernels, src, opts.dtype ?? 'auto'), kernels, opts);
  }

  /** Tokens the cache can still take. */
  get remaining(): number {
    return this.cache.capacity - this.cache.length;
  }

  /**
   * A new, empty KV cache for another sequence on the same weights (default capacity: the
   * model's). The forward methods take it as their last argument; the model's own `cache` is the
   * default, so single-sequence code never names one. Capacity is at most the model's: the RoPE
   * tables and attention scratch are sized for that.
   */
  newCache(capacity = this.cache.capacity): KVCache {
    if (!(Number.isInteger(capacity) && capacity >= 1 && capacity <= this.cache.capacity)) {
      throw new RangeError(`a KV cache's capacity must be an integer in [1, ${this.cache.capacity}] (the model's context), got ${capacity}`);
    }
    return new KVCache(this.config, this.kernels, capacity);
  }

  /** Empties the KV cache. */
  reset(): void {
    this.cache.truncate(0);
  }

  /**
   * Feeds tokens after those already cached and returns the logits [vocab] predicting the next
   * token. The returned array is reused by the next call.
   */
  forward(ids: ArrayLike<number>, cache: KVCache = this.cache): Float32Array {
    this.run(ids, null, cache);
    return this.logitsLast;
  }

  /** Feeds one token (no allocation): the decode step. */
  step(id: number, cache: KVCache = this.cache): Float32Array {
    this.one[0] = id;
    return this.forward(this.one, cache);
  }

  /** Feeds tokens and returns the logits of every position: [ids.length, vocab]. */
  forwardAll(ids: ArrayLike<number>, cache: KVCache = this.cache): Float32Array {
    const out = new Float32Array(ids.length * this.config.vocab_size);
    this.run(ids, out, cache);
    return out;
  }

  private run(ids: ArrayLike<number>, all: Float32Array | null, cache: KVCache): void {
    const cfg = this.config,
      k = this.kernels;
    const d = cfg.model_dim,
      V = cfg.vocab_size;
    const total = ids.length;
    checkIds(ids, V);
    if (cache.length + total > cache.capacity) throw new ContextLengthError(cache.length + total, cache.capacity);
    for (let start = 0; start < total; start += this.chunkSize) {
      const n = Math.min(this.chunkSize, total - start);
      const chunk = start === 0 && n === total ? ids : (Array.prototype.slice.call(ids, start, start + n) as number[]);
      forwardChunk(k, this.weights.token_embeddings, this.layers, this.x, chunk, n, cache, this.scratch, d, this.adapter);
      if (all) {
        k.rmsnorm(this.x, this.x, this.weights.norm, n, d, NORM_EPS);
        const lc = (this.logitsChunk ??= k.f32(this.chunkSize * V));
        k.matmul(lc, this.x, this.weights.lm_head, n);
        all.set(lc.subarray(0, n * V), start * V);
        if (start + n === total) this.logitsLast.set(lc.subarray((n - 1) * V, n * V));
      } else if (start + n === total) {
        // only the last position's logits are needed: normalise and project one row
        for (let i = 0; i < d; i++) this.xLast[i] = this.x[(n - 1) * d + i];
        k.rmsnorm(this.xLast, this.xLast, this.weights.norm, 1, d, NORM_EPS);
        k.matmul(this.logitsLast, this.xLast, this.weights.lm_head, 1);
      }
    }
  }
}
