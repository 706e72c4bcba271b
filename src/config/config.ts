// OpenELM configuration: the Hugging Face `config.json` keys (model_type "openelm"), validated,
// plus the per-layer shapes that layer-wise scaling derives from them.
import { makeDivisible, perLayerMultipliers } from './scaling.ts';

/** The keys of an OpenELM `config.json`, named exactly as Hugging Face writes them. */
export interface OpenELMConfigJson {
  model_type?: string;
  vocab_size: number;
  max_context_length: number;
  num_transformer_layers: number;
  model_dim: number;
  head_dim: number;
  /** query heads per KV head; 1 = multi-head attention */
  num_gqa_groups: number;
  /** QKV width multiplier: a number, or [first layer, last layer] */
  qkv_multipliers: number | number[];
  /** FFN width multiplier: a number, [first, last], or one per layer */
  ffn_multipliers: number | number[];
  ffn_dim_divisor: number;
  ffn_with_glu: boolean;
  activation_fn_name: string;
  normalization_layer_name: string;
  normalize_qk_projections: boolean;
  share_input_output_layers: boolean;
  rope_freq_constant: number;
  rope_max_length: number;
  initializer_range: number;
  bos_token_id: number;
  eos_token_id: number;
  torch_dtype?: string;
  [key: string]: unknown;
}

/** A validated config with the layer-wise shapes computed once. */
export interface OpenELMConfig extends OpenELMConfigJson {
  /** per layer: query heads */
  num_query_heads: number[];
  /** per layer: key/value heads (num_query_heads / num_gqa_groups) */
  num_kv_heads: number[];
  /** per layer: FFN multiplier after rounding */
  ffn_multipliers: number[];
  /** per layer: FFN intermediate width (proj_2 input; proj_1 output is 2x with GLU) */
  ffn_dims: number[];
}

export const DEFAULTS: Omit<OpenELMConfigJson, 'num_transformer_layers' | 'model_dim' | 'head_dim'> = {
  model_type: 'openelm',
  vocab_size: 32000,
  max_context_length: 2048,
  num_gqa_groups: 4,
  qkv_multipliers: [0.5, 1.0],
  ffn_multipliers: [0.5, 4.0],
  ffn_dim_divisor: 256,
  ffn_with_glu: true,
  activation_fn_name: 'swish',
  normalization_layer_name: 'rms_norm',
  normalize_qk_projections: true,
  share_input_output_layers: true,
  rope_freq_constant: 10000,
  rope_max_length: 4096,
  initializer_range: 0.02,
  bos_token_id: 1,
  eos_token_id: 2,
};

export class ConfigError extends Error {
  constructor(message: string, readonly field?: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const INT_FIELDS = ['vocab_size', 'max_context_length', 'num_transformer_layers', 'model_dim', 'head_dim',
  'num_gqa_groups', 'ffn_dim_divisor', 'rope_max_length', 'bos_token_id', 'eos_token_id'] as const;
const BOOL_FIELDS = ['ffn_with_glu', 'normalize_qk_projections', 'share_input_output_layers'] as const;
const REQUIRED = ['num_transformer_layers', 'model_dim', 'head_dim'] as const;

export const ACTIVATIONS = ['swish', 'silu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu', 'relu', 'sigmoid', 'tanh'] as const;

/**
 * Validates a parsed `config.json` and computes the per-layer shapes.
 * `source` names the file in error messages.
 */
export function parseConfig(raw: unknown, source = 'config.json'): OpenELMConfig {
  const fail = (field: string, msg: string): never => {
    throw new ConfigError(`${source}: field "${field}" ${msg}`, field);
  };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`${source}: expected a JSON object`);
  const r = raw as Record<string, unknown>;
  if (r.model_type !== undefined && r.model_type !== 'openelm') fail('model_type', `must be "openelm", got ${JSON.stringify(r.model_type)}`);
  for (const f of REQUIRED) if (r[f] === undefined) fail(f, 'is missing');
  const c = { ...DEFAULTS, ...r } as Record<string, unknown>;

  for (const f of INT_FIELDS) {
    const v = c[f];
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(f, `must be an integer, got ${JSON.stringify(v)}`);
    if (f !== 'bos_token_id' && f !== 'eos_token_id' && (v as number) <= 0) fail(f, `must be positive, got ${v}`);
  }
  for (const f of BOOL_FIELDS) if (typeof c[f] !== 'boolean') fail(f, `must be true or false, got ${JSON.stringify(c[f])}`);
  for (const f of ['rope_freq_constant', 'initializer_range'] as const) {
    if (typeof c[f] !== 'number' || !((c[f] as number) > 0)) fail(f, `must be a positive number, got ${JSON.stringify(c[f])}`);
  }
  if (typeof c.activation_fn_name !== 'string' || !(ACTIVATIONS as readonly string[]).includes(c.activation_fn_name)) {
    fail('activation_fn_name', `must be one of ${ACTIVATIONS.join(', ')}, got ${JSON.stringify(c.activation_fn_name)}`);
  }
  if (c.normalization_layer_name !== 'rms_norm') fail('normalization_layer_name', `must be "rms_norm", got ${JSON.stringify(c.normalization_layer_name)}`);
  const L = c.num_transformer_layers as number;
  const checkMult = (f: 'qkv_multipliers' | 'ffn_multipliers'): number[] => {
    const v = c[f];
    const ok = typeof v === 'number' ? v > 0 : Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && x > 0);
    if (!ok) fail(f, `must be a positive number or a list of positive numbers, got ${JSON.stringify(v)}`);
    try {
      return perLayerMultipliers(v as number | number[], L, f);
    } catch (e) {
      return fail(f, (e as Error).message.replace(/^config field "[^"]+": /, ''));
    }
  };
  const qkvMult = checkMult('qkv_multipliers');
  const ffnMult = checkMult('ffn_multipliers');
  const modelDim = c.model_dim as number;
  const headDim = c.head_dim as number;
  const groups = c.num_gqa_groups as number;
  if (headDim % 2 !== 0) fail('head_dim', `must be even for rotary embeddings, got ${headDim}`);

  // query_dims = make_divisible(model_dim * α, head_dim * num_gqa_groups); heads = query_dims / head_dim
  const numQueryHeads = qkvMult.map((m) => makeDivisible(modelDim * m, headDim * groups) / headDim);
  const numKvHeads = numQueryHeads.map((q, i) => {
    if (q % groups !== 0) fail('num_gqa_groups', `layer ${i}: ${q} query heads are not divisible by ${groups} groups`);
    return q / groups;
  });
  const ffnDims = ffnMult.map((m) => Math.trunc(makeDivisible(m * modelDim, c.ffn_dim_divisor as number)));

  // If the file carries the expanded lists (HF writes them), they must agree with the computation.
  for (const [f, mine] of [['num_query_heads', numQueryHeads], ['num_kv_heads', numKvHeads]] as const) {
    const given = r[f];
    if (given === undefined) continue;
    if (!Array.isArray(given) || given.length !== L || given.some((x, i) => x !== mine[i])) {
      fail(f, `is ${JSON.stringify(given)} but layer-wise scaling of qkv_multipliers gives ${JSON.stringify(mine)}`);
    }
  }
  return {
    ...(c as unknown as OpenELMConfigJson),
    qkv_multipliers: c.qkv_multipliers as number | number[],
    ffn_multipliers: ffnMult,
    num_query_heads: numQueryHeads,
    num_kv_heads: numKvHeads,
    ffn_dims: ffnDims,
  };
}

/** The `config.json` object to write for a config (HF layout, expanded lists included). */
export function configToJson(cfg: OpenELMConfig): Record<string, unknown> {
  const { ffn_dims: _ffn, ...rest } = cfg;
  return { architectures: ['OpenELMForCausalLM'], ...rest, model_type: 'openelm' };
}

/** Shapes of one layer, read like the paper: layer i has its own heads and FFN width. */
export interface LayerShape {
  nQ: number;
  nKV: number;
  headDim: number;
  /** fused QKV output width: (nQ + 2 nKV) * headDim */
  qkvDim: number;
  ffnDim: number;
}

export function layerShape(cfg: OpenELMConfig, i: number): LayerShape {
  const nQ = cfg.num_query_heads[i];
  const nKV = cfg.num_kv_heads[i];
  return { nQ, nKV, headDim: cfg.head_dim, qkvDim: (nQ + 2 * nKV) * cfg.head_dim, ffnDim: cfg.ffn_dims[i] };
}

/** Every tensor the checkpoint must hold, with its shape, in HF names. */
export function expectedTensors(cfg: OpenELMConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const d = cfg.model_dim;
  m.set('transformer.token_embeddings.weight', [cfg.vocab_size, d]);
  for (let i = 0; i < cfg.num_transformer_layers; i++) {
    const s = layerShape(cfg, i);
    const p = `transformer.layers.${i}.`;
    m.set(p + 'attn_norm.weight', [d]);
    m.set(p + 'attn.qkv_proj.weight', [s.qkvDim, d]);
    if (cfg.normalize_qk_projections) {
      m.set(p + 'attn.q_norm.weight', [s.headDim]);
      m.set(p + 'attn.k_norm.weight', [s.headDim]);
    }
    m.set(p + 'attn.out_proj.weight', [d, s.nQ * s.headDim]);
    m.set(p + 'ffn_norm.weight', [d]);
    m.set(p + 'ffn.proj_1.weight', [cfg.ffn_with_glu ? 2 * s.ffnDim : s.ffnDim, d]);
    m.set(p + 'ffn.proj_2.weight', [d, s.ffnDim]);
  }
  m.set('transformer.norm.weight', [d]);
  if (!cfg.share_input_output_layers) m.set('lm_head.weight', [cfg.vocab_size, d]);
  return m;
}

export function numParameters(cfg: OpenELMConfig): number {
  let n = 0;
  for (const shape of expectedTensors(cfg).values()) n += shape.reduce((a, b) => a * b, 1);
  return n;
}
