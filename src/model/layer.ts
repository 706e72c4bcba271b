// One OpenELM decoder layer (modeling_openelm.py: OpenELMDecoderLayer), pre-norm:
//   x = x + out_proj(attention(rope(qk_norm(split(qkv_proj(attn_norm(x)))))))
//   x = x + proj_2(act(gate) * up),  (gate | up) = proj_1(ffn_norm(x))
// Layer i has its own head count and FFN width: that is layer-wise scaling.
import type { LayerShape, OpenELMConfig } from '../config/config.ts';
import { layerShape } from '../config/config.ts';
import type { Activation, AttentionShape, Kernels } from '../kernels/types.ts';
import type { LayerWeights } from './weights.ts';

export const NORM_EPS = 1e-6;

/** The linear layers an adapter (src/peft) may add to, by their HF names. */
export type AdaptedLinear = 'qkv_proj' | 'out_proj' | 'proj_1' | 'proj_2';

/**
 * What a running adapter (LoRA / DoRA, src/peft/lora.ts AdapterRuntime) does to the forward pass:
 * after each base matmul y = x Wᵀ it adds its own term to y; after the embedding, to the rows.
 */
export interface ForwardAdapter {
  linear(layer: number, target: AdaptedLinear, y: Float32Array, x: Float32Array, n: number): void;
  embed(x: Float32Array, ids: ArrayLike<number>, n: number): void;
}

/** Scratch buffers shared by all layers, sized once for the widest layer and the largest chunk. */
export interface Scratch {
  xb: Float32Array; // [T, d]        normed input
  qkv: Float32Array; // [T, max qkvDim]
  att: Float32Array; // [T, max nQ * hd]
  proj: Float32Array; // [T, d]       attention / FFN output before the residual add
  ffnIn: Float32Array; // [T, max 2 * ffn]
  ffnAct: Float32Array; // [T, max ffn]
  scores: Float32Array; // [context]   attention weights of one head
  rope: { cos: Float32Array; sin: Float32Array }; // [context, hd / 2]
}

export class OpenELMLayer {
  readonly shape: LayerShape;
  private readonly attnShape: AttentionShape;

  constructor(
    cfg: OpenELMConfig,
    readonly index: number,
    readonly w: LayerWeights,
    private readonly act: Activation,
    private readonly glu: boolean,
  ) {
    this.shape = layerShape(cfg, index);
    this.attnShape = { n: 0, pos0: 0, nQ: this.shape.nQ, nKV: this.shape.nKV, headDim: this.shape.headDim };
  }

  /** x: [n, d] residual stream, updated in place; kCache/vCache: this layer's cache. */
  forward(
    k: Kernels,
    x: Float32Array,
    n: number,
    pos0: number,
    d: number,
    kCache: Float32Array,
    vCache: Float32Array,
    s: Scratch,
    ad: ForwardAdapter | null = null,
  ): void {
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
