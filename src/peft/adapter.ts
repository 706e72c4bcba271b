// A LoRA / DoRA adapter: its settings (config.ts) and its tensors, kept like the model's trainable
// parameters in one flat f32 buffer with a named view per tensor (train/params.ts FlatLayout), so
// the trainer's optimizer, clipping and checkpoints work on it unchanged. The tensor names are
// PEFT's, as in adapter_model.safetensors:
//
//   base_model.model.transformer.layers.{i}.attn.qkv_proj.lora_A.weight     [r, in]
//   base_model.model.transformer.layers.{i}.attn.qkv_proj.lora_B.weight     [out, r]
//   base_model.model.transformer.layers.{i}.attn.qkv_proj.lora_magnitude_vector  [out]  (DoRA)
//   … attn.out_proj, ffn.proj_1, ffn.proj_2 alike
//   base_model.model.transformer.token_embeddings.lora_embedding_A         [r, vocab]
//   base_model.model.transformer.token_embeddings.lora_embedding_B         [dim, r]
//
// The base model's weights are never touched: an adapter is applied while the model runs
// (model/openelm.ts, peft/lora.ts), over float or quantized base weights alike.
import fs from 'node:fs';
import path from 'node:path';
import type { OpenELMConfig } from '../config/config.ts';
import { expectedTensors } from '../config/config.ts';
import { Rng } from '../generate/rng.ts';
import { openSafetensors, writeSafetensors } from '../io/safetensors.ts';
import { syncDir } from '../io/safetensors-write.ts';
import { decodeRow } from '../kernels/ref.ts';
import type { Kernels, Weight } from '../kernels/types.ts';
import type { ModelWeights } from '../model/weights.ts';
import { FlatLayout } from '../train/params.ts';
import {
  type AdapterConfig,
  adapterConfigJson,
  adapterScaling,
  EMBEDDING_PATH,
  isTarget,
  LINEAR_TARGETS,
  type LinearTarget,
  modulePath,
  parseAdapterConfig,
} from './config.ts';

export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';
const PREFIX = 'base_model.model.';

/** One adapted linear layer: views into an adapter buffer (parameters or their gradients). */
export interface LinearAdapter {
  layer: number;
  target: LinearTarget;
  /** input and output features of the base weight [out, in] */
  in: number;
  out: number;
  A: Weight; // f32 [r, in]
  B: Weight; // f32 [out, r]
  /** DoRA's magnitude m [out]; null for LoRA */
  magnitude: Float32Array | null;
}

/** The adapted token embedding (LoRA only, as PEFT's Embedding layer). */
export interface EmbeddingAdapter {
  A: Float32Array; // [r, vocab]
  B: Float32Array; // [dim, r]
  vocab: number;
  dim: number;
}

/** An adapter's tensors over one buffer, by layer and target. */
export interface AdapterTensors {
  linears: LinearAdapter[];
  /** byLayer[i][target], undefined where layer i's target is not adapted */
  byLayer: Partial<Record<LinearTarget, LinearAdapter>>[];
  embedding: EmbeddingAdapter | null;
}

export class Adapter {
  readonly layout: FlatLayout;
  /** the adapter's weights in kernel memory */
  readonly params: Float32Array;
  /** s = lora_alpha / r (or / √r with rsLoRA) */
  readonly scale: number;
  readonly r: number;
  private readonly linearSpecs: { layer: number; target: LinearTarget; out: number; in: number }[] = [];
  private readonly hasEmbedding: boolean;

  constructor(
    readonly config: AdapterConfig,
    readonly modelConfig: OpenELMConfig,
    readonly kernels: Kernels,
  ) {
    const c = config,
      r = (this.r = c.r);
    this.scale = adapterScaling(c);
    const shapes = expectedTensors(modelConfig);
    const list: { name: string; shape: number[]; decay?: boolean }[] = [];
    if (c.layers_to_transform) {
      const bad = c.layers_to_transform.filter((l) => l >= modelConfig.num_transformer_layers);
      if (bad.length) throw new Error(`adapter: layers_to_transform names layer(s) ${bad.join(', ')} but the model has ${modelConfig.num_transformer_layers}`);
    }
    this.hasEmbedding = isTarget(c, EMBEDDING_PATH, null);
    if (this.hasEmbedding) {
      if (c.use_dora)
        throw new Error('adapter: DoRA on the token embedding is not supported (use LoRA there, or leave token_embeddings out of target_modules)');
      list.push({ name: `${PREFIX}${EMBEDDING_PATH}.lora_embedding_A`, shape: [r, modelConfig.vocab_size] });
      list.push({ name: `${PREFIX}${EMBEDDING_PATH}.lora_embedding_B`, shape: [modelConfig.model_dim, r] });
    }
    for (let i = 0; i < modelConfig.num_transformer_layers; i++) {
      for (const target of LINEAR_TARGETS) {
        const p = modulePath(target, i);
        if (!isTarget(c, p, i)) continue;
        const [out, inF] = shapes.get(p + '.weight')!;
        this.linearSpecs.push({ layer: i, target, out, in: inF });
        list.push({ name: `${PREFIX}${p}.lora_A.weight`, shape: [r, inF] });
        list.push({ name: `${PREFIX}${p}.lora_B.weight`, shape: [out, r] });
        if (c.use_dora) list.push({ name: `${PREFIX}${p}.lora_magnitude_vector`, shape: [out] });
      }
    }
    if (list.length === 0) {
      throw new Error(
        `adapter: target_modules ${JSON.stringify(c.target_modules)} matches no module of this model (qkv_proj, out_proj, proj_1, proj_2, token_embeddings)`,
      );
    }
    this.layout = new FlatLayout(list);
    this.params = kernels.f32(this.layout.size);
  }

  /** Number of adapter parameters. */
  get count(): number {
    return this.layout.count;
  }

  /** The adapter's tensors as views of buf (its parameters by default, or a gradient buffer of the same layout). */
  tensors(buf: Float32Array = this.params): AdapterTensors {
    const L = this.layout,
      r = this.r;
    const byLayer: Partial<Record<LinearTarget, LinearAdapter>>[] = Array.from({ length: this.modelConfig.num_transformer_layers }, () => ({}));
    const linears: LinearAdapter[] = [];
    for (const s of this.linearSpecs) {
      const p = PREFIX + modulePath(s.target, s.layer);
      const a: LinearAdapter = {
        layer: s.layer,
        target: s.target,
        in: s.in,
        out: s.out,
        A: { dtype: 'f32', rows: r, cols: s.in, data: L.view(buf, `${p}.lora_A.weight`) },
        B: { dtype: 'f32', rows: s.out, cols: r, data: L.view(buf, `${p}.lora_B.weight`) },
        magnitude: this.config.use_dora ? L.view(buf, `${p}.lora_magnitude_vector`) : null,
      };
      linears.push(a);
      byLayer[s.layer][s.target] = a;
    }
    const embedding = this.hasEmbedding
      ? {
          A: L.view(buf, `${PREFIX}${EMBEDDING_PATH}.lora_embedding_A`),
          B: L.view(buf, `${PREFIX}${EMBEDDING_PATH}.lora_embedding_B`),
          vocab: this.modelConfig.vocab_size,
          dim: this.modelConfig.model_dim,
        }
      : null;
    return { linears, byLayer, embedding };
  }

  /**
   * PEFT's initialisation (init_lora_weights=True), seeded: lora_A ~ kaiming_uniform(a=√5), i.e.
   * U(±1/√in), lora_B = 0, so the adapted model starts equal to the base; embedding A = 0, B ~ N(0, 1);
   * DoRA's magnitude = the base weight's row norms ‖W‖ (needs the base weights).
   */
  init(seed: number, base: ModelWeights): void {
    const rng = new Rng(seed),
      t = this.tensors();
    if (t.embedding) {
      t.embedding.A.fill(0);
      for (let i = 0; i < t.embedding.B.length; i++) t.embedding.B[i] = rng.normal();
    }
    for (const a of t.linears) {
      const A = a.A.data as Float32Array,
        bound = 1 / Math.sqrt(a.in);
      for (let i = 0; i < A.length; i++) A[i] = (2 * rng.next() - 1) * bound;
      (a.B.data as Float32Array).fill(0);
      if (a.magnitude) rowNorms(baseWeight(base, a), null, 0, null, a.magnitude);
    }
  }

  /** Reads adapter_model.safetensors from dir into the parameters (checked name by name and shape by shape). */
  readWeights(dir: string): void {
    const file = path.join(dir, ADAPTER_WEIGHTS_FILE);
    if (!fs.existsSync(file))
      throw new Error(`${dir}: no ${ADAPTER_WEIGHTS_FILE} (an adapter folder holds ${ADAPTER_CONFIG_FILE} and ${ADAPTER_WEIGHTS_FILE})`);
    const f = openSafetensors(file);
    const found = new Map<string, string>();
    for (const key of f.tensors.keys()) found.set(canonicalKey(key), key);
    for (const t of this.layout.tensors) {
      const key = found.get(t.name);
      if (!key) throw new Error(`${file}: tensor "${t.name}" is missing (the adapter's config says ${describeTargets(this.config)}, r=${this.r})`);
      const info = f.info(key);
      if (info.shape.length !== t.shape.length || info.shape.some((s, i) => s !== t.shape[i])) {
        throw new Error(`${file}: tensor "${key}" has shape [${info.shape}] but this model and r=${this.r} need [${t.shape}] (an adapter for another model?)`);
      }
      if (info.dtype !== 'F32' && info.dtype !== 'BF16' && info.dtype !== 'F16')
        throw new Error(`${file}: tensor "${key}" is ${info.dtype}; adapters are read as F32, BF16 or F16`);
      f.readF32Into(key, this.layout.view(this.params, t.name));
      found.delete(t.name);
    }
    if (found.size > 0) {
      const extra = [...found.values()];
      throw new Error(
        `${file}: ${extra.length} tensor(s) the adapter's config does not explain, e.g. "${extra[0]}" (openelm applies LoRA/DoRA to ${describeTargets(this.config)})`,
      );
    }
  }

  /** Writes adapter_config.json and adapter_model.safetensors (F32) into an existing folder. */
  writeFiles(dir: string, buf: Float32Array = this.params): void {
    const tensors = this.layout.tensors.map((t) => ({ name: t.name, dtype: 'F32' as const, shape: t.shape, data: this.layout.view(buf, t.name) }));
    writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(adapterConfigJson(this.config), null, 2) + '\n');
  }

  /** Saves into dir atomically (a temporary folder renamed into place); dir must not hold anything but an adapter. */
  save(dir: string): void {
    if (fs.existsSync(dir)) {
      const other = fs.readdirSync(dir).filter((f) => f !== ADAPTER_CONFIG_FILE && f !== ADAPTER_WEIGHTS_FILE && f !== 'README.md');
      if (!fs.statSync(dir).isDirectory() || other.length) throw new Error(`${dir}: exists and is not an adapter folder; choose a new folder`);
    }
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    try {
      this.writeFiles(tmp);
      syncDir(tmp);
      fs.rmSync(dir, { recursive: true, force: true });
      fs.renameSync(tmp, dir);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
  }
}

/** Reads an adapter folder (adapter_config.json + adapter_model.safetensors) for a model of this config. */
export function loadAdapter(dir: string, modelConfig: OpenELMConfig, kernels: Kernels): Adapter {
  const file = path.join(dir, ADAPTER_CONFIG_FILE);
  let raw: unknown;
  try {
    raw = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'ENOENT') throw new Error(`${dir}: not an adapter folder (no ${ADAPTER_CONFIG_FILE})`);
    throw new Error(`${file}: ${err.message}`);
  }
  const a = new Adapter(parseAdapterConfig(raw, file), modelConfig, kernels);
  a.readWeights(dir);
  return a;
}

/** Whether a folder holds an adapter rather than a model. */
export function isAdapterDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, ADAPTER_CONFIG_FILE));
}

/** The base weight an adapted linear layer sits on. */
export function baseWeight(w: ModelWeights, a: { layer: number; target: LinearTarget }): Weight {
  return w.layers[a.layer][a.target];
}

/**
 * Row norms of W + s·B·A (out[o] = ‖W[o, :] + s Σ_r B[o, r] A[r, :]‖₂), or of W alone when A is
 * null: DoRA's weight norm. In f64 over f32 rows; W may be any dtype (quantized rows are decoded).
 */
export function rowNorms(W: Weight, A: Weight | null, s: number, B: Weight | null, out: Float32Array): void {
  const cols = W.cols,
    row = new Float32Array(cols),
    bits = new Uint32Array(row.buffer);
  const Ad = A?.data as Float32Array | undefined,
    Bd = B?.data as Float32Array | undefined,
    r = A?.rows ?? 0;
  const ba = new Float64Array(cols);
  for (let o = 0; o < W.rows; o++) {
    decodeRow(W, o, row, bits);
    let sum = 0;
    if (Ad && Bd) {
      ba.fill(0);
      for (let k = 0; k < r; k++) {
        const b = Bd[o * r + k];
        if (b === 0) continue;
        for (let i = 0, a = k * cols; i < cols; i++) ba[i] += b * Ad[a + i];
      }
      for (let i = 0; i < cols; i++) {
        const v = row[i] + s * ba[i];
        sum += v * v;
      }
    } else {
      for (let i = 0; i < cols; i++) sum += row[i] * row[i];
    }
    out[o] = Math.sqrt(sum);
  }
}

/** PEFT's saved names, with what other PEFT versions write mapped to them. */
function canonicalKey(key: string): string {
  let k = key.replace(/\.default(?=\.|$)/g, '');
  k = k.replace(/\.lora_magnitude_vector\.weight$/, '.lora_magnitude_vector');
  if (!k.startsWith(PREFIX)) k = PREFIX + k;
  return k;
}

function describeTargets(c: AdapterConfig): string {
  const t = typeof c.target_modules === 'string' ? `modules matching /${c.target_modules}/` : c.target_modules.join(', ');
  return c.layers_to_transform ? `${t} in layers ${c.layers_to_transform.join(', ')}` : t;
}
