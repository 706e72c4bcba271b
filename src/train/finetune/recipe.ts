// The fine-tuning parts of a recipe, beside the optimisation keys recipe.ts reads:
//
//   model.lora (CoreNet's PEFT configs, projects/openelm/peft_configs/*.yaml):
//     use_lora: true
//     config: [{regex: '.*qkv_proj.*', module_type: linear, params: {r, lora_alpha, lora_dropout, use_rslora, use_dora}}, …]
//   finetune (openelm's; the DPOTrainer arguments of Apple's alignment-handbook recipe):
//     method: sft | dpo
//     epochs: 5
//     warmup_ratio: 0.1          warmup steps = ratio × total steps
//     dpo: {loss: hinge, beta: 0.01}
//     peft: lora | dora | none   (when the YAML has no model.lora)
import fs from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { EMBEDDING_PATH, LINEAR_TARGETS, modulePath } from '../../peft/config.ts';
import type { DpoLossKind } from './dpo.ts';

export interface FinetuneRecipe {
  method?: 'sft' | 'dpo';
  epochs?: number;
  warmupRatio?: number;
  dpo?: { loss?: DpoLossKind; beta?: number };
  peft?: 'lora' | 'dora' | 'none';
  lora?: { r: number; alpha: number; dropout: number; rslora: boolean; targets: string[] };
  /** dotted keys of these sections (not to be reported as unused) */
  keys: string[];
}

export function loadFinetuneRecipe(file: string): FinetuneRecipe {
  const root = parseYaml(fs.readFileSync(file, 'utf8'), { merge: true, maxAliasCount: 10000 }) as Record<string, unknown> | null;
  const out: FinetuneRecipe = { keys: [] };
  const bad = (key: string, msg: string): never => {
    throw new Error(`${file}: "${key}" ${msg}`);
  };
  const ft = root?.finetune as Record<string, unknown> | undefined;
  if (ft !== undefined) {
    if (typeof ft !== 'object' || ft === null) bad('finetune', 'must be a map');
    if (ft.method !== undefined)
      out.method = ft.method === 'sft' || ft.method === 'dpo' ? ft.method : bad('finetune.method', `must be sft or dpo, got ${JSON.stringify(ft.method)}`);
    if (ft.epochs !== undefined) out.epochs = typeof ft.epochs === 'number' && ft.epochs > 0 ? ft.epochs : bad('finetune.epochs', 'must be a positive number');
    if (ft.warmup_ratio !== undefined)
      out.warmupRatio =
        typeof ft.warmup_ratio === 'number' && ft.warmup_ratio >= 0 && ft.warmup_ratio < 1
          ? ft.warmup_ratio
          : bad('finetune.warmup_ratio', 'must be in [0, 1)');
    if (ft.peft !== undefined)
      out.peft = ft.peft === 'lora' || ft.peft === 'dora' || ft.peft === 'none' ? ft.peft : bad('finetune.peft', 'must be lora, dora or none');
    const d = ft.dpo as Record<string, unknown> | undefined;
    if (d !== undefined) {
      out.dpo = {};
      if (d.loss !== undefined) out.dpo.loss = d.loss === 'sigmoid' || d.loss === 'hinge' ? d.loss : bad('finetune.dpo.loss', 'must be sigmoid or hinge');
      if (d.beta !== undefined) out.dpo.beta = typeof d.beta === 'number' && d.beta > 0 ? d.beta : bad('finetune.dpo.beta', 'must be a positive number');
    }
  }
  const lora = (root?.model as Record<string, unknown> | undefined)?.lora as Record<string, unknown> | undefined;
  if (lora !== undefined && lora.use_lora !== false) {
    const list = lora.config;
    if (!Array.isArray(list) || list.length === 0) bad('model.lora.config', 'must be a list of {regex, module_type, params}');
    const targets = new Set<string>();
    let params: Record<string, unknown> | undefined;
    for (const [i, c] of (list as Record<string, unknown>[]).entries()) {
      if (typeof c?.regex !== 'string') bad(`model.lora.config[${i}].regex`, 'must be a string');
      const re = new RegExp(`^(?:${c.regex as string})$`);
      const p = (c.params ?? {}) as Record<string, unknown>;
      if (params && JSON.stringify(pick(p)) !== JSON.stringify(pick(params)))
        bad(`model.lora.config[${i}].params`, "differ from the first entry's; one rank, alpha and dropout for every module is supported");
      params = p;
      // CoreNet matches module names such as layers.0.attn.qkv_proj and token_embeddings
      for (const t of LINEAR_TARGETS) if (re.test(modulePath(t, 0).replace('transformer.', ''))) targets.add(t);
      if (re.test(EMBEDDING_PATH.replace('transformer.', ''))) targets.add('token_embeddings');
    }
    const p = params!;
    const num = (k: string, d: number) =>
      p[k] === undefined ? d : typeof p[k] === 'number' ? (p[k] as number) : bad(`model.lora.config.params.${k}`, 'must be a number');
    out.lora = {
      r: num('r', 8),
      alpha: num('lora_alpha', 8),
      dropout: num('lora_dropout', 0),
      rslora: p.use_rslora === true,
      targets: [...LINEAR_TARGETS, 'token_embeddings'].filter((t) => targets.has(t)),
    };
    out.peft = p.use_dora === true ? 'dora' : 'lora';
  }
  const walk = (o: unknown, prefix: string) => {
    if (o && typeof o === 'object' && !Array.isArray(o)) for (const [k, v] of Object.entries(o)) walk(v, prefix ? `${prefix}.${k}` : k);
    else out.keys.push(prefix);
  };
  if (ft !== undefined) walk(ft, 'finetune');
  if (lora !== undefined) walk(lora, 'model.lora');
  return out;
}

function pick(p: Record<string, unknown>) {
  return [p.r, p.lora_alpha, p.lora_dropout, p.use_rslora, p.use_dora];
}
