// The KV cache: per layer, keys and values of every position seen so far, preallocated for the
// whole context. Row p of a layer's cache holds all of that layer's KV heads at position p.
// It is one sequence's state, apart from the model's read-only weights, in the backend's buffers
// (B: Float32Array on the CPU, GPUBuffer on WebGPU).
import type { OpenELMConfig } from '../config/config.ts';

export class KVCache<B = Float32Array> {
  /** per layer: [capacity, nKV * headDim] */
  readonly k: B[] = [];
  readonly v: B[] = [];
  /** the token ids whose keys and values are cached, in order */
  readonly ids: number[] = [];
  /** per layer: nKV * headDim */
  private readonly kvDims: number[] = [];

  constructor(
    cfg: OpenELMConfig,
    kernels: { f32(n: number): B },
    readonly capacity: number,
  ) {
    for (let i = 0; i < cfg.num_transformer_layers; i++) {
      const kvDim = cfg.num_kv_heads[i] * cfg.head_dim;
      this.kvDims.push(kvDim);
      this.k.push(kernels.f32(capacity * kvDim));
      this.v.push(kernels.f32(capacity * kvDim));
    }
  }

  /** number of cached positions */
  get length(): number {
    return this.ids.length;
  }

  /** Forgets everything from position `n` on (the stale rows are simply overwritten later). */
  truncate(n: number): void {
    this.ids.length = Math.min(n, this.ids.length);
  }

  /**
   * Makes this cache hold the first n positions of `src` (same model): copies their keys, values
   * and ids. Prefix caching: a sequence whose prompt starts like another's skips those tokens.
   */
  copyPrefix(this: KVCache, src: KVCache, n: number): void {
    if (src === this) {
      this.truncate(n);
      return;
    }
    if (!(n >= 0 && n <= src.length && n <= this.capacity))
      throw new RangeError(`copyPrefix: ${n} positions from a cache of ${src.length} into one of capacity ${this.capacity}`);
    for (let l = 0; l < this.k.length; l++) {
      const kvDim = this.kvDims[l];
      this.k[l].set(src.k[l].subarray(0, n * kvDim));
      this.v[l].set(src.v[l].subarray(0, n * kvDim));
    }
    this.ids.length = 0;
    for (let i = 0; i < n; i++) this.ids.push(src.ids[i]);
  }

  /** Bytes the cache occupies (f32 keys and values). */
  get bytes(): number {
    return this.kvDims.reduce((s, kvDim) => s + 2 * 4 * this.capacity * kvDim, 0);
  }
}
