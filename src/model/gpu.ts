// OpenELM's forward pass on the GPU: weights, KV cache and activations resident in GPU memory,
// every dispatch of a step (embedding, all layers, final norm, output head, argmax) encoded into
// one compute pass, one submission and one read back per token (the argmax, or the logits for
// sampling). The layers are src/model/layer.ts's, the same code as on the CPU, run on the
// WebGPU backend's buffers (src/kernels/webgpu/webgpu.ts) through the kernel seam.
//
//   const gm = GpuOpenELM.load(gpu, checkpointSource(dir), { dtype: 'q8_0' }); // tensor by tensor to the GPU
//   const gm2 = GpuOpenELM.fromWeights(gpu, model.config, model.weights);       // or a CPU model's weights, copied
//   let next = await gm.forwardArgmax(promptIds);                              // then gm.forwardArgmax([next]) ...
//
// Loading uploads each tensor as soon as it is read (loadWeights with a GPU sink), so the CPU
// never holds more than one tensor of a model that lives on the GPU.
import type { OpenELMConfig } from '../config/config.ts';
import { ACT_CODE } from '../kernels/codes.ts';
import { RefKernels } from '../kernels/ref.ts';
import type { Activation, Weight } from '../kernels/types.ts';
import type { GpuWeight, WebGpuKernels } from '../kernels/webgpu/webgpu.ts';
import { KVCache } from './kv-cache.ts';
import { NORM_EPS, newScratch, OpenELMLayer, type Scratch } from './layer.ts';
import { ContextLengthError, checkIds, forwardChunk } from './openelm.ts';
import { ropeTables } from './rope.ts';
import { checkTensors, type LoadDType, loadWeights, type ModelWeights, type TensorSource, type WeightSink } from './weights.ts';

/** Uploads each weight tensor to the GPU as it is handed over (matrices in their storage format). */
export function gpuWeightSink(gpu: WebGpuKernels): WeightSink<GPUBuffer, GpuWeight> {
  return { vector: (name, v) => gpu.upload(v, name), matrix: (name, w) => gpu.weight(w, name) };
}

export class GpuOpenELM {
  readonly capacity: number;
  readonly chunk: number;
  /** the sequence's KV cache on the GPU; its ids are the tokens in it, in order (a new prompt that extends them reuses them: chat turns) */
  readonly cache: KVCache<GPUBuffer>;
  readonly layers: OpenELMLayer<GPUBuffer, GpuWeight>[];
  private readonly x: GPUBuffer; // [chunk, d] residual stream
  private readonly scratch: Scratch<GPUBuffer>;
  private readonly xLast: GPUBuffer;
  private readonly logits: GPUBuffer;
  private readonly result: GPUBuffer;

  private constructor(
    readonly gpu: WebGpuKernels,
    readonly config: OpenELMConfig,
    /** the weights as uploaded */
    readonly weights: ModelWeights<GPUBuffer, GpuWeight>,
    capacity: number,
  ) {
    const cfg = config,
      d = cfg.model_dim,
      hd = cfg.head_dim;
    if (!(Number.isInteger(capacity) && capacity >= 1 && capacity <= cfg.max_context_length))
      throw new RangeError(`contextLength must be an integer in [1, ${cfg.max_context_length}] (max_context_length), got ${capacity}`);
    this.capacity = capacity;
    const T = (this.chunk = Math.min(128, capacity));
    const act = cfg.activation_fn_name as Activation;
    this.layers = this.weights.layers.map((lw, i) => new OpenELMLayer(cfg, i, lw, act, cfg.ffn_with_glu));
    this.cache = new KVCache(cfg, { f32: (n) => gpu.f32(n, `the KV cache (context ${capacity})`) }, capacity);
    const rope = ropeTables(hd, cfg.rope_freq_constant, capacity);
    this.x = gpu.f32(T * d);
    // scores: none (the attention shader keeps a head's weights in workgroup memory)
    this.scratch = newScratch(cfg, this.layers, T, (n) => gpu.f32(n), gpu.f32(1), { cos: gpu.upload(rope.cos), sin: gpu.upload(rope.sin) });
    this.xLast = gpu.f32(d);
    this.logits = gpu.f32(cfg.vocab_size);
    this.result = gpu.f32(4);
  }

  /**
   * Reads a checkpoint's weights straight onto the GPU, tensor by tensor (matrices as `dtype`,
   * default: as stored). Checks first that the kernels can run the model.
   */
  static load(gpu: WebGpuKernels, src: TensorSource, opts: { dtype?: LoadDType; contextLength?: number } = {}): GpuOpenELM {
    checkTensors(src, 'checkpoint');
    GpuOpenELM.check(gpu, src.config);
    const w = loadWeights(new RefKernels(), src, opts.dtype ?? 'auto', gpuWeightSink(gpu));
    return new GpuOpenELM(gpu, src.config, w, opts.contextLength ?? src.config.max_context_length);
  }

  /** A model on weights already on the GPU (e.g. loaded with gpuWeightSink). */
  static fromUploaded(gpu: WebGpuKernels, config: OpenELMConfig, w: ModelWeights<GPUBuffer, GpuWeight>, capacity = config.max_context_length): GpuOpenELM {
    GpuOpenELM.check(gpu, config);
    return new GpuOpenELM(gpu, config, w, capacity);
  }

  /** Copies a model's weights (in CPU memory, e.g. an OpenELM's) to the GPU. */
  static fromWeights(gpu: WebGpuKernels, config: OpenELMConfig, w: ModelWeights, capacity = config.max_context_length): GpuOpenELM {
    GpuOpenELM.check(gpu, config);
    const sink = gpuWeightSink(gpu);
    const mat = (x: Weight, name: string) => sink.matrix(name, x);
    const emb = mat(w.token_embeddings, 'transformer.token_embeddings.weight');
    const uploaded: ModelWeights<GPUBuffer, GpuWeight> = {
      token_embeddings: emb,
      lm_head: w.lm_head === w.token_embeddings ? emb : mat(w.lm_head, 'lm_head.weight'),
      norm: sink.vector('transformer.norm.weight', w.norm),
      layers: w.layers.map((l, i) => {
        const name = (t: string) => `transformer.layers.${i}.${t}.weight`;
        return {
          attn_norm: sink.vector(name('attn_norm'), l.attn_norm),
          qkv_proj: mat(l.qkv_proj, name('attn.qkv_proj')),
          q_norm: l.q_norm && sink.vector(name('attn.q_norm'), l.q_norm),
          k_norm: l.k_norm && sink.vector(name('attn.k_norm'), l.k_norm),
          out_proj: mat(l.out_proj, name('attn.out_proj')),
          ffn_norm: sink.vector(name('ffn_norm'), l.ffn_norm),
          proj_1: mat(l.proj_1, name('ffn.proj_1')),
          proj_2: mat(l.proj_2, name('ffn.proj_2')),
        };
      }),
    };
    return new GpuOpenELM(gpu, config, uploaded, capacity);
  }

  /** bytes of the weights on the GPU (the tied embedding counted once) */
  get weightBytes(): number {
    const w = this.weights;
    let n = w.token_embeddings.buffer.size + w.norm.size + (w.lm_head === w.token_embeddings ? 0 : w.lm_head.buffer.size);
    for (const l of w.layers) {
      n += l.qkv_proj.buffer.size + l.out_proj.buffer.size + l.proj_1.buffer.size + l.proj_2.buffer.size;
      n += l.attn_norm.size + l.ffn_norm.size + (l.q_norm?.size ?? 0) + (l.k_norm?.size ?? 0);
    }
    return n;
  }

  /**
   * Throws an Error naming the config field when the GPU kernels cannot run this model (rather than
   * compute something else): head_dim above the shaders' 256, an activation they lack, or a
   * vocabulary too wide for one dispatch of the output head.
   */
  static check(gpu: WebGpuKernels, cfg: OpenELMConfig): void {
    const no = (why: string) => new Error(`the WebGPU kernels cannot run this model: ${why}; --device wasm runs it on the CPU`);
    if (cfg.head_dim > 256) throw no(`head_dim is ${cfg.head_dim}, the attention shaders hold at most 256`);
    if (!(cfg.activation_fn_name in ACT_CODE))
      throw no(`activation_fn_name "${cfg.activation_fn_name}" has no WGSL kernel (${Object.keys(ACT_CODE).join(', ')})`);
    const maxWg = gpu.device.limits.maxComputeWorkgroupsPerDimension;
    if (!gpu.rowMatmul && cfg.vocab_size > maxWg) throw no(`vocab_size ${cfg.vocab_size} is more output rows than one dispatch holds here (${maxWg})`);
  }

  /** bytes of the KV caches on the GPU (f32 K and V of every layer, `capacity` positions) */
  get kvCacheBytes(): number {
    return this.cache.bytes;
  }

  /** the tokens in the KV cache, in order */
  get ids(): readonly number[] {
    return this.cache.ids;
  }

  /** tokens in the KV cache */
  get length(): number {
    return this.cache.length;
  }

  reset(): void {
    this.cache.truncate(0);
  }

  /** Keeps the first n cached tokens (their K / V stay; later positions are overwritten). */
  truncate(n: number): void {
    this.cache.truncate(Math.max(0, n));
  }

  /** Encodes the forward pass of ids after the cached tokens, leaving the last position's logits in `logits`. */
  private encode(ids: ArrayLike<number>): void {
    const g = this.gpu,
      cfg = this.config,
      d = cfg.model_dim;
    checkIds(ids, cfg.vocab_size);
    if (this.length + ids.length > this.capacity) throw new ContextLengthError(this.length + ids.length, this.capacity);
    for (let start = 0; start < ids.length; start += this.chunk) {
      const n = Math.min(this.chunk, ids.length - start);
      const chunk = start === 0 && n === ids.length ? ids : Array.prototype.slice.call(ids, start, start + n);
      forwardChunk(g, this.weights.token_embeddings, this.layers, this.x, chunk, n, this.cache, this.scratch, d, null);
      if (start + n === ids.length) {
        g.rmsnorm(this.xLast, this.x, this.weights.norm, 1, d, NORM_EPS, (n - 1) * d);
        g.matmul(this.logits, this.xLast, this.weights.lm_head, 1);
      }
    }
  }

  /** Feeds tokens; returns the argmax of the next-token logits (greedy decoding: 4 bytes read back). */
  async forwardArgmax(ids: ArrayLike<number>): Promise<number> {
    this.encode(ids);
    this.gpu.argmax(this.result, this.logits, this.config.vocab_size);
    return new Uint32Array(await this.gpu.readBytes(this.result, 4))[0];
  }

  /** Feeds tokens; returns the next-token logits [vocab] (for sampling on the CPU). */
  async forward(ids: ArrayLike<number>): Promise<Float32Array> {
    this.encode(ids);
    return this.gpu.read(this.logits, this.config.vocab_size);
  }

  /** Greedy decoding: the prompt, then up to maxNew tokens (stopping after eos). */
  async greedy(promptIds: number[], maxNew: number, eos = this.config.eos_token_id): Promise<number[]> {
    const out: number[] = [];
    let next = await this.forwardArgmax(promptIds);
    for (let i = 0; i < maxNew; i++) {
      out.push(next);
      if (next === eos || i + 1 === maxNew) break;
      next = await this.forwardArgmax([next]);
    }
    return out;
  }
}
