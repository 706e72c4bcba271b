// An adapter's settings in Hugging Face PEFT's adapter_config.json, so PEFT reads the adapters we
// write and we read PEFT's. Only what OpenELM can use is accepted; every other setting that would
// change the numbers (bias training, fan_in_fan_out, per-module rank patterns) is refused by name
// rather than ignored.
//
//   {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 32, "lora_alpha": 32, "lora_dropout": 0.1,
//    "target_modules": ["qkv_proj", "out_proj", "proj_1", "proj_2"], "use_dora": false, ...}
//
// scaling s = lora_alpha / r (rsLoRA: lora_alpha / √r); an adapted linear layer computes
//   LoRA: y = x Wᵀ + s · (x Aᵀ) Bᵀ                     A: [r, in], B: [out, r]
//   DoRA: y = m / ‖W + s B A‖_row ⊙ (x Wᵀ + s · (x Aᵀ) Bᵀ)   m: [out], the norm a constant for gradients
// and an adapted embedding adds s · B · A[:, id] to the token's row (A: [r, vocab], B: [dim, r]).

/** Linear layers of an OpenELM layer that adapters can target, with their module paths. */
export const LINEAR_TARGETS = ['qkv_proj', 'out_proj', 'proj_1', 'proj_2'] as const;
export type LinearTarget = (typeof LINEAR_TARGETS)[number];
/** The token embedding (CoreNet's PEFT recipe adapts it too). */
export const EMBEDDING_TARGET = 'token_embeddings';

/** The module path (HF OpenELM names) of a target in layer i. */
export function modulePath(target: LinearTarget, layer: number): string {
  const block = target === 'qkv_proj' || target === 'out_proj' ? 'attn' : 'ffn';
  return `transformer.layers.${layer}.${block}.${target}`;
}
export const EMBEDDING_PATH = 'transformer.token_embeddings';

export interface AdapterConfig {
  r: number;
  lora_alpha: number;
  lora_dropout: number;
  /** module names (matched against the last part of the module path, as PEFT does) or a regex string (full match) */
  target_modules: string[] | string;
  use_dora: boolean;
  use_rslora: boolean;
  /** only these layer indices are adapted (null: all) */
  layers_to_transform: number[] | null;
  base_model_name_or_path: string | null;
  /** the rest of the file, kept as read and written back */
  extra: Record<string, unknown>;
}

export const DEFAULT_ADAPTER: Omit<AdapterConfig, 'extra'> = {
  r: 8,
  lora_alpha: 8,
  lora_dropout: 0,
  target_modules: [...LINEAR_TARGETS],
  use_dora: false,
  use_rslora: false,
  layers_to_transform: null,
  base_model_name_or_path: null,
};

export function adapterScaling(c: Pick<AdapterConfig, 'r' | 'lora_alpha' | 'use_rslora'>): number {
  return c.use_rslora ? c.lora_alpha / Math.sqrt(c.r) : c.lora_alpha / c.r;
}

/** Whether the module at `path` (e.g. transformer.layers.3.attn.qkv_proj) is a target. */
export function isTarget(c: AdapterConfig, path: string, layer: number | null): boolean {
  if (layer !== null && c.layers_to_transform && !c.layers_to_transform.includes(layer)) return false;
  if (typeof c.target_modules === 'string') return new RegExp(`^(?:${c.target_modules})$`).test(path);
  return c.target_modules.some((t) => path === t || path.endsWith('.' + t));
}

/** Parses adapter_config.json; `where` names the file in errors. */
export function parseAdapterConfig(raw: unknown, where: string): AdapterConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`${where}: expected a JSON object`);
  const o = raw as Record<string, unknown>;
  const bad = (key: string, why: string): never => {
    throw new Error(`${where}: "${key}" ${why}`);
  };
  if (o.peft_type !== undefined && o.peft_type !== 'LORA') bad('peft_type', `is ${JSON.stringify(o.peft_type)}; openelm reads LORA adapters (LoRA and DoRA)`);
  const r = o.r ?? DEFAULT_ADAPTER.r;
  if (!(Number.isInteger(r) && (r as number) >= 1 && (r as number) <= 65536)) bad('r', `must be an integer ≥ 1, got ${JSON.stringify(r)}`);
  const alpha = o.lora_alpha ?? DEFAULT_ADAPTER.lora_alpha;
  if (!(typeof alpha === 'number' && Number.isFinite(alpha))) bad('lora_alpha', `must be a finite number, got ${JSON.stringify(alpha)}`);
  const dropout = o.lora_dropout ?? 0;
  if (!(typeof dropout === 'number' && dropout >= 0 && dropout < 1)) bad('lora_dropout', `must be in [0, 1), got ${JSON.stringify(dropout)}`);
  let targets = o.target_modules ?? DEFAULT_ADAPTER.target_modules;
  if (typeof targets === 'string') {
    try {
      new RegExp(targets);
    } catch (e) {
      bad('target_modules', `is not a valid regular expression: ${(e as Error).message}`);
    }
  } else if (!(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string'))) {
    bad('target_modules', `must be a non-empty list of module names or a regex string, got ${JSON.stringify(targets)}`);
  } else {
    const known = [...LINEAR_TARGETS, EMBEDDING_TARGET] as string[];
    const unknown = (targets as string[]).filter((t) => !known.includes(t.split('.').pop()!));
    if (unknown.length) bad('target_modules', `names ${unknown.map((t) => JSON.stringify(t)).join(', ')}, not a module of OpenELM (${known.join(', ')})`);
    targets = [...new Set(targets as string[])];
  }
  if (o.bias !== undefined && o.bias !== 'none') bad('bias', `is ${JSON.stringify(o.bias)}; OpenELM's linear layers have no bias, only "none" is supported`);
  if (o.fan_in_fan_out) bad('fan_in_fan_out', 'is true; OpenELM stores weights as [out, in] (false)');
  for (const key of ['rank_pattern', 'alpha_pattern']) {
    const p = o[key];
    if (p != null && (typeof p !== 'object' || Object.keys(p as object).length > 0)) bad(key, 'is set; per-module ranks and alphas are not supported');
  }
  if (o.modules_to_save != null && !(Array.isArray(o.modules_to_save) && o.modules_to_save.length === 0))
    bad('modules_to_save', 'is set; only LoRA/DoRA weights are supported');
  let layers = o.layers_to_transform ?? null;
  if (typeof layers === 'number') layers = [layers];
  if (layers !== null && !(Array.isArray(layers) && layers.every((l) => Number.isInteger(l) && l >= 0)))
    bad('layers_to_transform', `must be a list of layer indices, got ${JSON.stringify(layers)}`);
  const useDora = o.use_dora ?? false,
    rs = o.use_rslora ?? false;
  if (typeof useDora !== 'boolean') bad('use_dora', 'must be true or false');
  if (typeof rs !== 'boolean') bad('use_rslora', 'must be true or false');
  const KNOWN = new Set(['r', 'lora_alpha', 'lora_dropout', 'target_modules', 'use_dora', 'use_rslora', 'layers_to_transform', 'base_model_name_or_path']);
  const extra = Object.fromEntries(Object.entries(o).filter(([k]) => !KNOWN.has(k)));
  return {
    r: r as number,
    lora_alpha: alpha as number,
    lora_dropout: dropout as number,
    target_modules: targets as string[] | string,
    use_dora: useDora as boolean,
    use_rslora: rs as boolean,
    layers_to_transform: layers as number[] | null,
    base_model_name_or_path: typeof o.base_model_name_or_path === 'string' ? o.base_model_name_or_path : null,
    extra,
  };
}

/** adapter_config.json as PEFT writes it (PEFT's defaults for what openelm does not use). */
export function adapterConfigJson(c: AdapterConfig): Record<string, unknown> {
  return {
    alpha_pattern: {},
    auto_mapping: null,
    bias: 'none',
    fan_in_fan_out: false,
    inference_mode: true,
    init_lora_weights: true,
    layer_replication: null,
    layers_pattern: null,
    loftq_config: {},
    megatron_config: null,
    megatron_core: 'megatron.core',
    modules_to_save: null,
    rank_pattern: {},
    revision: null,
    ...c.extra,
    peft_type: 'LORA',
    task_type: 'CAUSAL_LM',
    base_model_name_or_path: c.base_model_name_or_path,
    r: c.r,
    lora_alpha: c.lora_alpha,
    lora_dropout: c.lora_dropout,
    target_modules: c.target_modules,
    layers_to_transform: c.layers_to_transform,
    use_dora: c.use_dora,
    use_rslora: c.use_rslora,
  };
}
