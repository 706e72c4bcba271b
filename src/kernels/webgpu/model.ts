// OpenELM's forward pass on the GPU: weights, KV cache and activations resident in GPU memory,
// every dispatch of a step (embedding, all layers, final norm, output head, argmax) encoded into
// one compute pass, one submission and one read back per token (the argmax, or the logits for
// sampling). The layer is src/model/layer.ts op for op, on WebGpuKernels.
//
//   const cpu = await loadBrowserModel(files, { backend: 'ref' });     // weights in CPU memory
//   const gm = GpuOpenELM.fromWeights(gpu, cpu.config, cpu.model.weights);
//   let next = await gm.forwardArgmax(promptIds);                       // then gm.forwardArgmax([next]) ...
import type { OpenELMConfig } from '../../config/config.ts';
import { layerShape } from '../../config/config.ts';
import { ropeTables } from '../../model/rope.ts';
import type { ModelWeights } from '../../model/weights.ts';
import { ACT_CODE } from '../codes.ts';
import type { Activation } from '../types.ts';
import type { GpuWeight, WebGpuKernels } from './webgpu.ts';

const NORM_EPS = 1e-6; // src/model/layer.ts NORM_EPS

interface GpuLayer {
  attn_norm: GPUBuffer;
  qkv_proj: GpuWeight;
  q_norm: GPUBuffer | null;
  k_norm: GPUBuffer | null;
  out_proj: GpuWeight;
  ffn_norm: GPUBuffer;
  proj_1: GpuWeight;
  proj_2: GpuWeight;
  k: GPUBuffer;
  v: GPUBuffer; // [capacity, nKV * hd]
  nQ: number;
  nKV: number;
  ffn: number;
}

export class GpuOpenELM {
  readonly capacity: number;
  readonly chunk: number;
  /** the tokens in the KV cache, in order (a new prompt that extends them reuses them: chat turns) */
  readonly ids: number[] = [];
  private readonly layers: GpuLayer[];
  private readonly emb: GpuWeight;
  private readonly lmHead: GpuWeight;
  private readonly norm: GPUBuffer;
  private readonly cos: GPUBuffer;
  private readonly sin: GPUBuffer;
  private readonly idBuf: GPUBuffer; // u32 [chunk]
  private readonly x: GPUBuffer;
  private readonly xb: GPUBuffer;
  private readonly qkv: GPUBuffer;
  private readonly att: GPUBuffer;
  private readonly proj: GPUBuffer;
  private readonly ffnIn: GPUBuffer;
  private readonly ffnOut: GPUBuffer;
  private readonly xLast: GPUBuffer;
  private readonly logits: GPUBuffer;
  private readonly result: GPUBuffer;

  private constructor(
    readonly gpu: WebGpuKernels,
    readonly config: OpenELMConfig,
    w: ModelWeights,
    capacity: number,
  ) {
    const cfg = config,
      d = cfg.model_dim,
      hd = cfg.head_dim;
    GpuOpenELM.check(gpu, cfg);
    this.capacity = capacity;
    this.chunk = Math.min(128, capacity);
    const T = this.chunk;
    this.emb = gpu.weight(w.token_embeddings, 'transformer.token_embeddings.weight');
    this.lmHead = w.lm_head === w.token_embeddings ? this.emb : gpu.weight(w.lm_head, 'lm_head.weight');
    this.norm = gpu.upload(w.norm);
    this.layers = w.layers.map((l, i) => {
      const s = layerShape(cfg, i);
      const name = (t: string) => `transformer.layers.${i}.${t}.weight`;
      return {
        attn_norm: gpu.upload(l.attn_norm),
        qkv_proj: gpu.weight(l.qkv_proj, name('attn.qkv_proj')),
        q_norm: l.q_norm && gpu.upload(l.q_norm),
        k_norm: l.k_norm && gpu.upload(l.k_norm),
        out_proj: gpu.weight(l.out_proj, name('attn.out_proj')),
        ffn_norm: gpu.upload(l.ffn_norm),
        proj_1: gpu.weight(l.proj_1, name('ffn.proj_1')),
        proj_2: gpu.weight(l.proj_2, name('ffn.proj_2')),
        k: gpu.f32(capacity * s.nKV * hd, `the KV cache of layer ${i} (context ${capacity})`),
        v: gpu.f32(capacity * s.nKV * hd, `the KV cache of layer ${i} (context ${capacity})`),
        nQ: s.nQ,
        nKV: s.nKV,
        ffn: s.ffnDim,
      };
    });
    const rope = ropeTables(hd, cfg.rope_freq_constant, capacity);
    this.cos = gpu.upload(rope.cos);
    this.sin = gpu.upload(rope.sin);
    const maxQkv = Math.max(...this.layers.map((l) => (l.nQ + 2 * l.nKV) * hd));
    const maxFfn = Math.max(...this.layers.map((l) => l.ffn));
    this.idBuf = gpu.f32(T);
    this.x = gpu.f32(T * d);
    this.xb = gpu.f32(T * d);
    this.qkv = gpu.f32(T * maxQkv);
    this.att = gpu.f32(T * maxQkv);
    this.proj = gpu.f32(T * d);
    this.ffnIn = gpu.f32(T * 2 * maxFfn);
    this.ffnOut = gpu.f32(T * maxFfn);
    this.xLast = gpu.f32(d);
    this.logits = gpu.f32(cfg.vocab_size);
    this.result = gpu.f32(4);
  }

  /** Uploads a model's weights (loaded into CPU memory, e.g. with the 'ref' backend). */
  static fromWeights(gpu: WebGpuKernels, config: OpenELMConfig, w: ModelWeights, capacity = config.max_context_length): GpuOpenELM {
    return new GpuOpenELM(gpu, config, w, capacity);
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
    return this.layers.reduce((s, l) => s + 2 * this.capacity * l.nKV * this.config.head_dim * 4, 0);
  }

  /** tokens in the KV cache */
  get length(): number {
    return this.ids.length;
  }

  reset(): void {
    this.ids.length = 0;
  }

  /** Keeps the first n cached tokens (their K / V stay; later positions are overwritten). */
  truncate(n: number): void {
    if (n < this.ids.length) this.ids.length = Math.max(0, n);
  }

  /** Encodes the forward pass of ids after the cached tokens, leaving the last position's logits in `logits`. */
  private encode(ids: ArrayLike<number>): void {
    const g = this.gpu,
      cfg = this.config,
      d = cfg.model_dim,
      hd = cfg.head_dim;
    if (ids.length === 0) throw new RangeError('forward needs at least one token');
    if (this.length + ids.length > this.capacity)
      throw new RangeError(`the sequence needs ${this.length + ids.length} tokens but the context holds ${this.capacity}`);
    const act = cfg.activation_fn_name as Activation;
    for (let start = 0; start < ids.length; start += this.chunk) {
      const n = Math.min(this.chunk, ids.length - start),
        pos0 = this.length;
      const chunk = Uint32Array.from({ length: n }, (_, i) => ids[start + i]);
      for (const id of chunk) if (id >= cfg.vocab_size) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${cfg.vocab_size})`);
      // the ids of every chunk must reach the GPU before its dispatches: submit chunk by chunk
      g.write(this.idBuf, chunk);
      g.embed(this.x, this.emb, this.idBuf, n);
      for (const l of this.layers) {
        const s = { n, pos0, nQ: l.nQ, nKV: l.nKV, headDim: hd };
        g.rmsnorm(this.xb, this.x, l.attn_norm, n, d, NORM_EPS);
        g.matmul(this.qkv, this.xb, l.qkv_proj, n);
        g.headNormRope(this.qkv, s, l.q_norm, l.k_norm, NORM_EPS, this.cos, this.sin);
        g.attention(this.att, this.qkv, l.k, l.v, s);
        g.matmul(this.proj, this.att, l.out_proj, n);
        g.addInPlace(this.x, this.proj, n * d);
        g.rmsnorm(this.xb, this.x, l.ffn_norm, n, d, NORM_EPS);
        g.matmul(this.ffnIn, this.xb, l.proj_1, n);
        g.ffnAct(this.ffnOut, this.ffnIn, n, l.ffn, act, cfg.ffn_with_glu);
        g.matmul(this.proj, this.ffnOut, l.proj_2, n);
        g.addInPlace(this.x, this.proj, n * d);
      }
      for (const id of chunk) this.ids.push(id);
      if (start + n === ids.length) {
        g.rmsnorm(this.xLast, this.x, this.norm, 1, d, NORM_EPS, (n - 1) * d);
        g.matmul(this.logits, this.xLast, this.lmHead, 1);
      } else g.submit();
    }
  }

  /** Feeds tokens; returns the argmax of the next-token logits (greedy decoding: 4 bytes read back). */
  async forwardArgmax(ids: ArrayLike<number>): Promise<number> {
    this.encode(ids);
    this.gpu.argmax(this.result, this.logits, this.config.vocab_size);
    return new Uint32Array(await this.gpu.read(this.result, 4))[0];
  }

  /** Feeds tokens; returns the next-token logits [vocab] (for sampling on the CPU). */
  async forward(ids: ArrayLike<number>): Promise<Float32Array> {
    this.encode(ids);
    return new Float32Array(await this.gpu.read(this.logits, this.config.vocab_size * 4));
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
