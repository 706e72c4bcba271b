// One OpenELM decoder layer (modeling_openelm.py: OpenELMDecoderLayer), pre-norm:
//   x = x + out_proj(attention(rope(qk_norm(split(qkv_proj(attn_norm(x)))))))
//   x = x + proj_2(act(gate) * up),  (gate | up) = proj_1(ffn_norm(x))
// Layer i has its own head count and FFN width: that is layer-wise scaling.
// Written once against the kernel seam's forward ops, it runs on any backend: B and W are the
// backend's buffers and weights (Float32Array and Weight on the CPU, GPUBuffer and GpuWeight on WebGPU).
import type { LayerShape, OpenELMConfig } from '../config/config.ts';
import { layerShape } from '../config/config.ts';
import type { Activation, AttentionShape, ForwardKernels, Weight } from '../kernels/types.ts';
import type { LayerWeights } from './weights.ts';

export const NORM_EPS = 1e-6;

/** The linear layers an adapter (src/peft) may add to, by their HF names. */
export type AdaptedLinear = 'qkv_proj' | 'out_proj' | 'proj_1' | 'proj_2';

/**
 * What a running adapter (LoRA / DoRA, src/peft/lora.ts AdapterRuntime) does to the forward pass:
 * after each base matmul y = x Wᵀ it adds its own term to y; after the embedding, to the rows.
 */
export interface ForwardAdapter<B = Float32Array> {
  linear(layer: number, target: AdaptedLinear, y: B, x: B, n: number): void;
  embed(x: B, ids: ArrayLike<number>, n: number): void;
}

/** Scratch buffers shared by all layers, sized once for the widest layer and the largest chunk. */
export interface Scratch<B = Float32Array> {
  xb: B; // [T, d]        normed input
  qkv: B; // [T, max qkvDim]
  att: B; // [T, max nQ * hd]
  proj: B; // [T, d]       attention / FFN output before the residual add
  ffnIn: B; // [T, max 2 * ffn]
  ffnAct: B; // [T, max ffn]
  scores: B; // [context]   attention weights of one head
  rope: { cos: B; sin: B }; // [context, hd / 2]
}

/**
 * The scratch buffers for chunks of up to T tokens through these layers, from a backend's f32
 * allocator; the attention scores and the RoPE tables as the backend keeps them.
 */
export function newScratch<B, W>(
  cfg: OpenELMConfig,
  layers: readonly OpenELMLayer<B, W>[],
  T: number,
  f32: (n: number) => B,
  scores: B,
  rope: { cos: B; sin: B },
): Scratch<B> {
  const d = cfg.model_dim;
  const maxQkv = Math.max(...layers.map((l) => l.shape.qkvDim));
  const maxQ = Math.max(...layers.map((l) => l.shape.nQ * l.shape.headDim));
  const maxFfn = Math.max(...cfg.ffn_dims);
  return {
    xb: f32(T * d),
    qkv: f32(T * maxQkv),
    att: f32(T * maxQ),
    proj: f32(T * d),
    ffnIn: f32(T * (cfg.ffn_with_glu ? 2 : 1) * maxFfn),
    ffnAct: f32(T * maxFfn),
    scores,
    rope,
  };
}

export class OpenELMLayer<B = Float32Array, W = Weight> {
  readonly shape: LayerShape;
  private readonly attnShape: AttentionShape;

  constructor(
    cfg: OpenELMConfig,
    readonly index: number,
    readonly w: LayerWeights<B, W>,
    private readonly act: Activation,
    private readonly glu: boolean,
  ) {
    this.shape = layerShape(cfg, index);
    this.attnShape = { n: 0, pos0: 0, nQ: this.shape.nQ, nKV: this.shape.nKV, headDim: this.shape.headDim };
  }

  /** x: [n, d] residual stream, updated in place; kCache/vCache: this layer's cache. */
  forward(k: ForwardKernels<B, W>, x: B, n: number, pos0: number, d: number, kCache: B, vCache: B, s: Scratch<B>, ad: ForwardAdapter<B> | null = null): void {
    const { w, shape, attnShape } = this,
      i = this.index;
    attnShape.n = n;
    attnShape.pos0 = pos0;

    // attention block
    k.rmsnorm(s.xb, x, w.attn_norm, n, d, NORM_EPS);
    k.matmul(s.qkv, s.xb, w.qkv_proj, n); // [n, (nQ + 2 nKV) * hd]
    ad?.linear(i, 'qkv_proj', s.qkv, s.xb, n);
    k.headNormRope(s.qkv, attnShape, w.q_norm, w.k_norm, NORM_EPS, s.rope.cos, s.rope.sin);
    k.attention(s.att, s.qkv, kCache, vCache, attnShape, s.scores); // [n, nQ * hd]
    k.matmul(s.proj, s.att, w.out_proj, n); // [n, d]
    ad?.linear(i, 'out_proj', s.proj, s.att, n);
    k.addInPlace(x, s.proj, n * d);

    // feed-forward block
    k.rmsnorm(s.xb, x, w.ffn_norm, n, d, NORM_EPS);
    k.matmul(s.ffnIn, s.xb, w.proj_1, n); // [n, 2 * ffn] with GLU
    ad?.linear(i, 'proj_1', s.ffnIn, s.xb, n);
    k.ffnAct(s.ffnAct, s.ffnIn, n, shape.ffnDim, this.act, this.glu); // [n, ffn]
    k.matmul(s.proj, s.ffnAct, w.proj_2, n); // [n, d]
    ad?.linear(i, 'proj_2', s.proj, s.ffnAct, n);
    k.addInPlace(x, s.proj, n * d);
  }
}
