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
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Upper bounds checked before anything is computed or allocated from a config: far above every
 * published OpenELM (3B: 36 layers, model_dim 3072, context 2048), far below what would exhaust
 * memory while parsing (1e9 layers used to crash V8 building the per-layer lists).
 */
export const CONFIG_LIMITS = {
  vocab_size: 1 << 24,
  max_context_length: 1 << 20,
  num_transformer_layers: 1024,
  model_dim: 1 << 16,
  head_dim: 4096,
  num_gqa_groups: 1024,
  ffn_dim_divisor: 1 << 16,
  rope_max_length: 1 << 24,
  bos_token_id: 2 ** 31 - 1,
  eos_token_id: 2 ** 31 - 1,
  /** qkv_multipliers / ffn_multipliers, each value */
  multiplier: 1024,
  /** rope_freq_constant: the RoPE base θ; below 1 the frequencies exceed 1 and grow without bound */
  rope_freq_constant: [1, 1e12] as const,
  initializer_range: 1e3,
  /** per-layer FFN width after rounding */
  ffn_dim: 1 << 20,
} as const;

const INT_FIELDS = [
  'vocab_size',
  'max_context_length',
  'num_transformer_layers',
  'model_dim',
  'head_dim',
  'num_gqa_groups',
  'ffn_dim_divisor',
  'rope_max_length',
  'bos_token_id',
  'eos_token_id',
] as const;
const BOOL_FIELDS = ['ffn_with_glu', 'normalize_qk_projections', 'share_input_output_layers'] as const;
const REQUIRED = ['num_transformer_layers', 'model_dim', 'head_dim'] as const;

export const ACTIVATIONS = ['swish', 'silu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu', 'relu', 'sigmoid', 'tanh'] as const;

/** A value for an error message: JSON, at most 80 characters, never throwing (deep nesting, cycles, BigInt). */
function short(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'number' ? String(v) : (JSON.stringify(v) ?? String(v));
  } catch {
    s = Array.isArray(v) ? `an array of ${v.length}` : typeof v;
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

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
  if (r.model_type !== undefined && r.model_type !== 'openelm') fail('model_type', `must be "openelm", got ${short(r.model_type)}`);
  for (const f of REQUIRED) if (r[f] === undefined) fail(f, 'is missing');
  const c = { ...DEFAULTS, ...r } as Record<string, unknown>;

  for (const f of INT_FIELDS) {
    const v = c[f];
    if (typeof v !== 'number' || !Number.isInteger(v)) fail(f, `must be an integer, got ${short(v)}`);
    if (f !== 'bos_token_id' && f !== 'eos_token_id' && (v as number) <= 0) fail(f, `must be positive, got ${v}`);
    if (Math.abs(v as number) > CONFIG_LIMITS[f])
      fail(f, `is ${v}, above the limit of ${CONFIG_LIMITS[f]} (no OpenELM comes near it: a corrupt or hostile config.json?)`);
  }
  for (const f of BOOL_FIELDS) if (typeof c[f] !== 'boolean') fail(f, `must be true or false, got ${short(c[f])}`);
  for (const f of ['rope_freq_constant', 'initializer_range'] as const) {
    if (typeof c[f] !== 'number' || !((c[f] as number) > 0) || !Number.isFinite(c[f])) fail(f, `must be a positive finite number, got ${short(c[f])}`);
  }
  const [ropeLo, ropeHi] = CONFIG_LIMITS.rope_freq_constant;
  if (!((c.rope_freq_constant as number) >= ropeLo && (c.rope_freq_constant as number) <= ropeHi)) {
    fail('rope_freq_constant', `must be in [${ropeLo}, ${ropeHi}] (the RoPE base; OpenELM uses 10000), got ${c.rope_freq_constant}`);
  }
  if ((c.initializer_range as number) > CONFIG_LIMITS.initializer_range)
    fail('initializer_range', `must be at most ${CONFIG_LIMITS.initializer_range}, got ${c.initializer_range}`);
  if (typeof c.activation_fn_name !== 'string' || !(ACTIVATIONS as readonly string[]).includes(c.activation_fn_name)) {
    fail('activation_fn_name', `must be one of ${ACTIVATIONS.join(', ')}, got ${short(c.activation_fn_name)}`);
  }
  if (c.normalization_layer_name !== 'rms_norm') fail('normalization_layer_name', `must be "rms_norm", got ${short(c.normalization_layer_name)}`);
  const L = c.num_transformer_layers as number;
  const checkMult = (f: 'qkv_multipliers' | 'ffn_multipliers'): number[] => {
    const v = c[f];
    const M = CONFIG_LIMITS.multiplier;
    const okNum = (x: unknown) => typeof x === 'number' && x > 0 && x <= M;
    const ok = typeof v === 'number' ? okNum(v) : Array.isArray(v) && v.length > 0 && v.length <= CONFIG_LIMITS.num_transformer_layers && v.every(okNum);
    if (!ok) fail(f, `must be a number in (0, ${M}] or a list of them (2 values or one per layer), got ${short(v)}`);
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
  const widest = ffnDims.reduce((a, b) => Math.max(a, b), 0);
  if (widest > CONFIG_LIMITS.ffn_dim) fail('ffn_multipliers', `give an FFN width of ${widest}, above the limit of ${CONFIG_LIMITS.ffn_dim}`);

  // If the file carries the expanded lists (HF writes them), they must agree with the computation.
  for (const [f, mine] of [
    ['num_query_heads', numQueryHeads],
    ['num_kv_heads', numKvHeads],
  ] as const) {
    const given = r[f];
    if (given === undefined) continue;
    if (!Array.isArray(given) || given.length !== L || given.some((x, i) => x !== mine[i])) {
      fail(f, `is ${short(given)} but layer-wise scaling of qkv_multipliers gives ${JSON.stringify(mine)}`);
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
