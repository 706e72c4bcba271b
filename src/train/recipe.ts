// Training recipes: CoreNet-style YAML → TrainOptions.
//
// A recipe is a YAML file with CoreNet's own key names, so CoreNet's OpenELM pre-training files
// load as they are. Keys may be nested maps (CoreNet's files are) or dotted (`optim.adamw.beta1:
// 0.9`), or any mix; like CoreNet's loader, the recipe is flattened to dotted keys first. Keys
// openelm uses take effect; keys it does not use are returned in `ignored` (the CLI warns once),
// as CoreNet warns about keys it does not know. Top-level keys starting with `_` hold YAML anchors
// (CoreNet's `_anchor_context_length: &... 2048`) and are skipped. Settings openelm has that
// CoreNet does not live under `openelm:`.
//
//   const recipe = loadRecipe('recipes/builtin.yaml');
//   if (recipe.ignored.length) console.warn(`ignored: ${recipe.ignored.join(', ')}`);
//   const options = resolveTrainOptions(recipe, { out: 'runs/builtin', schedule: { lr: 1e-3 } });
//
// Read from apple/corenet (for the key names, their defaults and what they do):
//   projects/openelm/pretraining_configs/openelm_{270M,450M,1_1B,3B}.yaml   the recipes
//   corenet/options/utils.py            flatten_yaml_as_dict, load_config_file (unknown keys warn)
//   corenet/options/opts.py             common.* (seed, grad_clip, accum_freq, save_interval_freq, …)
//   corenet/engine/default_trainer.py   the LR is set from train_iterations before each micro-batch;
//                                       clipping, accumulation, the max_iterations stop
//   corenet/optims/{base_optim,adamw,sgd,__init__}.py   optim.* names and defaults
//   corenet/modeling/misc/common.py     no_decay_bn_filter_bias: no decay on 1-D parameters
//   corenet/optims/scheduler/{base_scheduler,cosine,fixed,polynomial,__init__}.py   scheduler.*
//   corenet/loss_fn/language_modeling/cross_entropy.py   use_z_loss, z_loss_eps (default 1e-4)
//   corenet/data/datasets/dataset_base.py, language_modeling/{base_lm,general_lm}.py   dataset.*
//   corenet/modeling/models/base_model.py, language_modeling/general_gpt.py   model.*, GPTConfig
//
// The mapping (CoreNet key → TrainOptions field):
//   common.seed                                         seed
//   common.grad_clip                                    gradClip
//   common.accum_freq                                   gradAccum
//   common.save_interval_freq                           saveEvery
//   common.eval_every_k_iterations                      evalEvery   (ignored when dataset.disable_val)
//   dataset.train_batch_size0                           batchSize   (CoreNet: per GPU)
//   dataset.disable_val: true                           evalEvery = 0, data.valFraction = 0
//   dataset.category / dataset.name                     checked: language_modeling / general_lm
//   dataset.language_modeling.sequence_length           data.seqLen
//   dataset.language_modeling.min_tokens_per_text       data.minTokens
//   dataset.language_modeling.min_characters_per_text   data.minChars
//   dataset.language_modeling.general_lm.train_data_info   data.paths: each entry's file_name with
//                                                       {file_id} / {file_id:05d} over file_id_range
//                                                       (entries without file_name add nothing)
//   loss.category, loss.language_modeling.name          checked: language_modeling, cross_entropy
//   loss.language_modeling.cross_entropy.use_z_loss     zLoss = z_loss_eps (CoreNet's default 1e-4) or 0
//   loss.language_modeling.cross_entropy.z_loss_eps
//   optim.name                                          optimizer.name (adamw | sgd)
//   optim.weight_decay                                  optimizer.weightDecay
//   optim.adamw.beta1 / beta2                           optimizer.beta1 / beta2
//   optim.adamw.eps (else optim.eps)                    optimizer.eps
//   optim.sgd.momentum / nesterov                       optimizer.momentum / nesterov
//   optim.no_decay_bn_filter_bias: true, optim.adamw.amsgrad: false,
//   loss.….label_smoothing: 0, common.accum_after_epoch: 0   what openelm does (else: ignored)
//   scheduler.name                                      schedule.name: cosine; fixed → constant;
//                                                       polynomial (power 1) → linear
//   scheduler.max_iterations                            schedule.maxSteps (and steps, unless openelm.steps)
//   scheduler.warmup_iterations                         schedule.warmup
//   scheduler.warmup_init_lr                            schedule.warmupInitLr
//   scheduler.cosine.max_lr / min_lr                    schedule.lr / minLr
//   scheduler.fixed.lr                                  schedule.lr
//   scheduler.polynomial.start_lr / end_lr / power      schedule.lr / minLr / (must be 1)
//   scheduler.is_iteration_based                        must be true (openelm counts iterations)
//   model.activation_checkpointing                      activationCheckpointing
//   model.language_modeling.name                        checked: general_gpt
//   model.language_modeling.general_gpt.model_name      preset (OpenELM-270M, -450M, -1_1B, -3B)
//   model.language_modeling.general_gpt.<key>           modelOverrides.<key>, for the config.json
//       keys (vocab_size, max_context_length, num_transformer_layers, model_dim, head_dim, num_gqa_groups,
//       qkv_multipliers, ffn_multipliers, ffn_dim_divisor, ffn_with_glu, normalize_qk_projections,
//       share_input_output_layers, rope_freq_constant, rope_max_length, …). CoreNet's GPTConfig
//       has these fields under the same names, but its YAML sets only model_name, vocab_size,
//       max_context_length and padding_index (the rest come from its table of named models);
//       CoreNet itself would warn about the others.
//
// openelm: (settings CoreNet does not have)
//   data: PATH | [PATHS]       data.paths (files, folders, builtin:NAME), instead of train_data_info
//   ids_file: PATH             data.idsFile
//   packing: BOOL              data.packing (default false: CoreNet's truncate-and-pad per text)
//   val_fraction: X            data.valFraction (0 ≤ x < 1)
//   eval_batches: N            evalBatches
//   steps: N                   steps, when the run is to stop before the schedule's end
//   preset: NAME               preset (same as general_gpt.model_name)
//   model_config: PATH         modelConfig (a config.json)
//   init: DIR                  init (a checkpoint folder to start from)
//   out: DIR, log: PATH, threads: N
// Paths are used as written (relative to the working directory, as CoreNet does).
//
// A key a recipe leaves out takes openelm's default (DEFAULT_OPTIMIZER, constant LR, no warmup,
// no clipping, no z-loss), not CoreNet's argparse default: CoreNet's defaults differ (optim.name sgd,
// weight_decay 4e-5, adamw beta2 0.98, sgd momentum 0.9, scheduler.warmup_init_lr 1e-7, cosine
// max_lr 0.1 / min_lr 1e-5, max_iterations 150000, train_batch_size0 128, sequence_length 2048).
// Exceptions, where CoreNet's default is the natural one: scheduler.name defaults to cosine when a
// scheduler section exists, z_loss_eps to 1e-4 when use_z_loss is true, warmup_init_lr to 1e-7.
//
// YAML is read as YAML 1.2. CoreNet reads it with PyYAML (YAML 1.1), which takes `1e-4` for a
// string: write exponents with a dot (`1.0e-4`) for a recipe both can read.
import fs from 'node:fs';
import { type Document, isAlias, isMap, isScalar, LineCounter, parseDocument } from 'yaml';
import { ConfigError, type OpenELMConfig, PRESET_NAMES, parseConfig, presetConfig, presetNameOf } from '../config/index.ts';
import { DEFAULT_OPTIMIZER, type OptimizerName, type ScheduleName, type TrainOptions } from './options.ts';

/** Every field optional, nested objects included (arrays and config maps are taken whole). */
export type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/** What a recipe or the CLI's flags set: any part of TrainOptions. */
export type TrainOverrides = DeepPartial<TrainOptions>;

export interface Recipe {
  file: string;
  /** the settings the recipe makes (only those; resolveTrainOptions adds the defaults) */
  options: TrainOverrides;
  /** dotted keys present in the YAML that openelm does not use, in file order */
  ignored: string[];
  /** config.json keys the recipe's model section sets (also in options.modelOverrides) */
  modelConfig?: Record<string, unknown>;
  /** TrainOptions field → the YAML key that set it, with file and line ("scheduler.cosine.max_lr at x.yaml:64") */
  sources: Record<string, string>;
}

/** A recipe the YAML of which is wrong: names the file, the line (when known) and the key. */
export class RecipeError extends Error {
  constructor(
    message: string,
    readonly file: string,
    readonly key?: string,
    readonly line?: number,
  ) {
    super(message);
    this.name = 'RecipeError';
  }
}

/** Resolved options that are missing or out of range: names the field (and flag or recipe key). */
export class TrainOptionsError extends Error {
  constructor(
    message: string,
    readonly field: string,
  ) {
    super(message);
    this.name = 'TrainOptionsError';
  }
}

/**
 * The flag that sets each TrainOptions field, for error messages. The CLI may pass its own table
 * to validateTrainOptions / resolveTrainOptions; these are the names it is expected to use.
 */
export const FIELD_FLAGS: Record<string, string> = {
  init: '--init',
  preset: '--preset',
  modelConfig: '--model-config',
  'data.paths': '--data',
  'data.idsFile': '--data-ids',
  'data.seqLen': '--seq-len',
  'data.packing': '--packing',
  'data.minChars': '--min-chars',
  'data.minTokens': '--min-tokens',
  'data.valFraction': '--val-fraction',
  steps: '--steps',
  batchSize: '--batch-size',
  gradAccum: '--grad-accum',
  'optimizer.name': '--optimizer',
  'optimizer.beta1': '--beta1',
  'optimizer.beta2': '--beta2',
  'optimizer.eps': '--eps',
  'optimizer.weightDecay': '--weight-decay',
  'optimizer.momentum': '--momentum',
  'optimizer.nesterov': '--nesterov',
  'schedule.name': '--schedule',
  'schedule.lr': '--lr',
  'schedule.minLr': '--min-lr',
  'schedule.warmup': '--warmup',
  'schedule.warmupInitLr': '--warmup-init-lr',
  'schedule.maxSteps': '--max-steps',
  gradClip: '--grad-clip',
  zLoss: '--z-loss',
  activationCheckpointing: '--activation-checkpointing',
  evalEvery: '--eval-every',
  evalBatches: '--eval-batches',
  saveEvery: '--save-every',
  log: '--log',
  out: '--out',
  resume: '--resume',
  seed: '--seed',
  threads: '--threads',
};

/** Defaults for what neither a recipe nor a flag sets (see options.ts). */
const DEFAULTS = {
  gradAccum: 1,
  gradClip: null,
  zLoss: 0,
  activationCheckpointing: false,
  evalEvery: 0,
  evalBatches: 10,
  saveEvery: 0,
  resume: false,
  seed: 0,
  data: { paths: [] as string[], packing: false, minChars: 200, minTokens: 256, valFraction: 0.01 },
  optimizer: DEFAULT_OPTIMIZER,
  schedule: { name: 'constant' as ScheduleName, warmup: 0, warmupInitLr: 1e-7, minLr: 0 },
};

/** CoreNet's default z-loss coefficient (loss.language_modeling.cross_entropy.z_loss_eps). */
const Z_LOSS_EPS = 1e-4;

/** config.json keys a recipe may set under model.language_modeling.general_gpt (GPTConfig's fields). */
const MODEL_KEYS: Record<string, 'int' | 'number' | 'bool' | 'string' | 'multiplier'> = {
  vocab_size: 'int',
  max_context_length: 'int',
  num_transformer_layers: 'int',
  model_dim: 'int',
  head_dim: 'int',
  num_gqa_groups: 'int',
  qkv_multipliers: 'multiplier',
  ffn_multipliers: 'multiplier',
  ffn_dim_divisor: 'int',
  ffn_with_glu: 'bool',
  activation_fn_name: 'string',
  normalization_layer_name: 'string',
  normalize_qk_projections: 'bool',
  share_input_output_layers: 'bool',
  rope_freq_constant: 'number',
  rope_max_length: 'int',
  initializer_range: 'number',
  bos_token_id: 'int',
  eos_token_id: 'int',
};

const OPENELM_KEYS = [
  'data',
  'ids_file',
  'packing',
  'val_fraction',
  'eval_batches',
  'steps',
  'preset',
  'model_config',
  'init',
  'out',
  'log',
  'threads',
] as const;

const SCHEDULERS: Record<string, ScheduleName> = { cosine: 'cosine', fixed: 'constant', constant: 'constant', polynomial: 'linear', linear: 'linear' };

/** Reads a recipe file. Throws RecipeError naming the file, line and key at fault. */
export function loadRecipe(file: string): Recipe {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new RecipeError(`${file}: cannot read the recipe (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, file);
  }
  return parseRecipe(text, file);
}

/** Parses recipe text; `file` names it in errors. */
export function parseRecipe(text: string, file = 'recipe'): Recipe {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, merge: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const line = e.linePos?.[0]?.line;
    throw new RecipeError(
      `${file}${line ? `:${line}` : ''}: not valid YAML: ${e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')}`,
      file,
      undefined,
      line,
    );
  }
  const root: unknown = doc.toJS({ maxAliasCount: 10000 });
  if (!isPlainObject(root)) {
    throw new RecipeError(`${file}: expected a map of settings (optim:, scheduler:, …), got ${root === null ? 'an empty document' : describe(root)}`, file);
  }
  const flat = new Map<string, unknown>();
  const lines = keyLines(doc, lineCounter);
  flatten(root, '', flat, (key) => {
    const line = lineOf(lines, key);
    throw new RecipeError(`${file}${line ? `:${line}` : ''}: ${key} is given twice (nested and dotted)`, file, key, line);
  });
  const r = new Reader(flat, file, lines);
  readRecipe(r);
  const ignored = [...[...flat.keys()].filter((k) => !r.used.has(k)), ...r.ignoredParts];
  const modelConfig = Object.keys(r.model).length > 0 ? r.model : undefined;
  return { file, options: r.options, ignored, ...(modelConfig ? { modelConfig } : {}), sources: r.sources };
}

// ---- reading the flattened keys ----

class Reader {
  readonly used = new Set<string>();
  readonly options: TrainOverrides = {};
  readonly sources: Record<string, string> = {};
  readonly model: Record<string, unknown> = {};
  /** settings inside a value that openelm cannot honour (a train_data_info text_key) */
  readonly ignoredParts: string[] = [];

  constructor(
    readonly flat: Map<string, unknown>,
    readonly file: string,
    readonly lines: Map<string, number>,
  ) {}

  where(key: string): string {
    const line = lineOf(this.lines, key);
    return `${this.file}${line ? `:${line}` : ''}`;
  }

  fail(key: string, msg: string): never {
    throw new RecipeError(`${this.where(key)}: ${key} ${msg}`, this.file, key, lineOf(this.lines, key));
  }

  /** true if the key is present with a value (null counts as absent) */
  has(key: string): boolean {
    const v = this.flat.get(key);
    return v !== undefined && v !== null;
  }

  /** the value, marking the key used; undefined when absent or null */
  take(key: string): unknown {
    if (this.flat.has(key)) this.used.add(key);
    const v = this.flat.get(key);
    return v === null ? undefined : v;
  }

  num(key: string, range: { min?: number; max?: number; above?: number; below?: number; int?: boolean } = {}): number | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    const what = range.int ? 'an integer' : 'a number';
    const bounds = [
      range.above !== undefined ? `> ${range.above}` : range.min !== undefined ? `≥ ${range.min}` : '',
      range.below !== undefined ? `< ${range.below}` : range.max !== undefined ? `≤ ${range.max}` : '',
    ]
      .filter(Boolean)
      .join(' and ');
    const expected = `must be ${what}${bounds ? ` ${bounds}` : ''}, got ${describe(v)}`;
    if (typeof v !== 'number' || !Number.isFinite(v) || (range.int && !Number.isInteger(v))) this.fail(key, expected);
    if (
      (range.min !== undefined && v < range.min) ||
      (range.max !== undefined && v > range.max) ||
      (range.above !== undefined && !(v > range.above)) ||
      (range.below !== undefined && !(v < range.below))
    )
      this.fail(key, expected);
    return v;
  }

  bool(key: string): boolean | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') this.fail(key, `must be true or false, got ${describe(v)}`);
    return v;
  }

  str(key: string): string | undefined {
    const v = this.take(key);
    if (v === undefined) return undefined;
    if (typeof v !== 'string' || v === '') this.fail(key, `must be a non-empty string, got ${describe(v)}`);
    return v;
  }

  /** the value if it equals `expected`; a different value fails with `why` */
  check(key: string, expected: unknown, why: string): void {
    const v = this.take(key);
    if (v !== undefined && v !== expected) this.fail(key, `must be ${JSON.stringify(expected)} (${why}), got ${describe(v)}`);
  }

  /** marks the key used only if its value is one openelm honours; otherwise it stays in `ignored` */
  acceptIf(key: string, ok: (v: unknown) => boolean): void {
    if (this.flat.has(key) && ok(this.flat.get(key))) this.used.add(key);
  }

  /** sets a TrainOptions field ('schedule.lr') and remembers which key set it */
  set(field: string, value: unknown, key: string): void {
    if (value === undefined) return;
    const path = field.split('.');
    let o = this.options as Record<string, unknown>;
    for (const p of path.slice(0, -1)) o = (o[p] ??= {}) as Record<string, unknown>;
    o[path[path.length - 1]] = value;
    this.sources[field] = `${key} at ${this.where(key)}`;
  }
}

function readRecipe(r: Reader): void {
  // ---- common ----
  r.set('seed', r.num('common.seed', { min: 0, int: true }), 'common.seed');
  r.set('gradClip', r.num('common.grad_clip', { above: 0 }), 'common.grad_clip');
  r.set('gradAccum', r.num('common.accum_freq', { min: 1, int: true }), 'common.accum_freq');
  r.acceptIf('common.accum_after_epoch', (v) => v === 0 || v === null);
  r.set('saveEvery', r.num('common.save_interval_freq', { min: 0, int: true }), 'common.save_interval_freq');

  // ---- dataset ----
  r.check('dataset.category', 'language_modeling', 'openelm trains language models');
  r.acceptIf('dataset.name', (v) => v === 'general_lm');
  r.set('batchSize', r.num('dataset.train_batch_size0', { min: 1, int: true }), 'dataset.train_batch_size0');
  const disableVal = r.bool('dataset.disable_val');
  if (disableVal) {
    r.set('evalEvery', 0, 'dataset.disable_val');
    r.set('data.valFraction', 0, 'dataset.disable_val');
  } else {
    r.set('evalEvery', r.num('common.eval_every_k_iterations', { min: 0, int: true }), 'common.eval_every_k_iterations');
  }
  const lm = 'dataset.language_modeling.';
  r.set('data.seqLen', r.num(lm + 'sequence_length', { min: 1, int: true }), lm + 'sequence_length');
  r.set('data.minTokens', r.num(lm + 'min_tokens_per_text', { min: 0, int: true }), lm + 'min_tokens_per_text');
  r.set('data.minChars', r.num(lm + 'min_characters_per_text', { min: 0, int: true }), lm + 'min_characters_per_text');
  const infoKey = lm + 'general_lm.train_data_info';
  const infoPaths = trainDataInfo(r, infoKey);
  if (infoPaths.length > 0) r.set('data.paths', infoPaths, infoKey);

  // ---- loss ----
  r.check('loss.category', 'language_modeling', 'openelm trains language models');
  r.check('loss.language_modeling.name', 'cross_entropy', 'the loss openelm computes');
  const ce = 'loss.language_modeling.cross_entropy.';
  const useZ = r.bool(ce + 'use_z_loss');
  if (useZ !== undefined) {
    const eps = useZ ? (r.num(ce + 'z_loss_eps', { min: 0 }) ?? Z_LOSS_EPS) : 0;
    r.set('zLoss', eps, ce + (useZ && r.has(ce + 'z_loss_eps') ? 'z_loss_eps' : 'use_z_loss'));
  }
  r.acceptIf(ce + 'label_smoothing', (v) => v === 0 || v === null);

  // ---- optim ----
  const name = r.str('optim.name');
  if (name !== undefined && name !== 'adamw' && name !== 'sgd') {
    r.fail('optim.name', `must be "adamw" or "sgd" (the optimizers openelm has), got ${describe(name)}`);
  }
  const optName = (name ?? 'adamw') as OptimizerName;
  r.set('optimizer.name', name, 'optim.name');
  r.set('optimizer.weightDecay', r.num('optim.weight_decay', { min: 0 }), 'optim.weight_decay');
  // openelm never decays 1-D tensors, which is what no_decay_bn_filter_bias: true asks for
  r.acceptIf('optim.no_decay_bn_filter_bias', (v) => v === true);
  if (optName === 'adamw') {
    r.set('optimizer.beta1', r.num('optim.adamw.beta1', { min: 0, below: 1 }), 'optim.adamw.beta1');
    r.set('optimizer.beta2', r.num('optim.adamw.beta2', { min: 0, below: 1 }), 'optim.adamw.beta2');
    // AdamW's eps: optim.adamw.eps, else the base optimizer's optim.eps (corenet/optims/adamw.py)
    const epsKey = r.has('optim.adamw.eps') ? 'optim.adamw.eps' : 'optim.eps';
    r.set('optimizer.eps', r.num(epsKey, { above: 0 }), epsKey);
    r.acceptIf('optim.adamw.amsgrad', (v) => v === false || v === null);
  } else {
    r.set('optimizer.momentum', r.num('optim.sgd.momentum', { min: 0, below: 1 }), 'optim.sgd.momentum');
    r.set('optimizer.nesterov', r.bool('optim.sgd.nesterov'), 'optim.sgd.nesterov');
  }

  // ---- scheduler ----
  readScheduler(r);

  // ---- model ----
  r.set('activationCheckpointing', r.bool('model.activation_checkpointing'), 'model.activation_checkpointing');
  r.check('model.language_modeling.name', 'general_gpt', 'the OpenELM model in CoreNet');
  const gpt = 'model.language_modeling.general_gpt.';
  const modelName = r.str(gpt + 'model_name');
  if (modelName !== undefined) {
    const p = presetNameOf(modelName);
    if (!p) r.fail(gpt + 'model_name', `must be one of ${PRESET_NAMES.join(', ')}, got ${describe(modelName)}`);
    r.set('preset', p, gpt + 'model_name');
  }
  for (const [k, kind] of Object.entries(MODEL_KEYS)) {
    const key = gpt + k;
    if (!r.has(key)) continue;
    const v = r.take(key);
    const ok =
      kind === 'int'
        ? Number.isInteger(v)
        : kind === 'number'
          ? typeof v === 'number' && Number.isFinite(v)
          : kind === 'bool'
            ? typeof v === 'boolean'
            : kind === 'string'
              ? typeof v === 'string'
              : typeof v === 'number' || (Array.isArray(v) && v.every((x) => typeof x === 'number'));
    if (!ok) {
      const what = { int: 'an integer', number: 'a number', bool: 'true or false', string: 'a string', multiplier: 'a number or a list of numbers' }[kind];
      r.fail(key, `must be ${what}, got ${describe(v)}`);
    }
    r.model[k] = v;
  }
  if (Object.keys(r.model).length > 0) {
    r.set('modelOverrides', { ...r.model }, gpt.slice(0, -1));
  }

  // ---- openelm ----
  readOpenelm(r);

  // A recipe that describes a new model (a preset and/or config keys) must describe a valid one.
  const opts = r.options;
  if (opts.init === undefined && opts.modelConfig === undefined && (opts.preset !== undefined || opts.modelOverrides !== undefined)) {
    try {
      newModelConfig(opts.preset, opts.modelOverrides);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const { field, msg } = configProblem(e);
      if (field && (r.flat.has(gpt + field) || opts.preset === undefined)) r.fail(gpt + field, msg);
      const key = opts.preset !== undefined ? (r.flat.has(gpt + 'model_name') ? gpt + 'model_name' : 'openelm.preset') : gpt.slice(0, -1);
      r.fail(key, `does not give a valid model: ${field ?? ''} ${msg}`.replace(/ {2,}/g, ' '));
    }
  }
}

function readScheduler(r: Reader): void {
  const hasSection = [...r.flat.keys()].some((k) => k.startsWith('scheduler.'));
  if (!hasSection) return;
  r.check('scheduler.is_iteration_based', true, 'openelm schedules count optimizer steps, not epochs');
  const given = r.str('scheduler.name');
  // CoreNet's default scheduler is cosine (corenet/optims/scheduler/__init__.py)
  const raw = (given ?? 'cosine').toLowerCase();
  const name = SCHEDULERS[raw];
  if (!name) {
    r.fail('scheduler.name', `must be cosine, fixed or polynomial (power 1) — or constant, linear — got ${describe(given)}`);
  }
  r.set('schedule.name', name, given !== undefined ? 'scheduler.name' : 'scheduler');

  const maxIt = r.num('scheduler.max_iterations', { min: 1, int: true });
  r.set('schedule.maxSteps', maxIt, 'scheduler.max_iterations');
  const warmup = r.num('scheduler.warmup_iterations', { min: 0, int: true });
  r.set('schedule.warmup', warmup, 'scheduler.warmup_iterations');
  const initLr = r.num('scheduler.warmup_init_lr', { min: 0 });
  r.set('schedule.warmupInitLr', initLr, 'scheduler.warmup_init_lr');
  if (warmup !== undefined && maxIt !== undefined && warmup > maxIt) {
    r.fail('scheduler.warmup_iterations', `(${warmup}) must not exceed scheduler.max_iterations (${maxIt})`);
  }

  let lrKey: string, minKey: string | undefined;
  if (name === 'cosine') {
    lrKey = 'scheduler.cosine.max_lr';
    minKey = 'scheduler.cosine.min_lr';
  } else if (name === 'constant') {
    lrKey = 'scheduler.fixed.lr';
  } else {
    lrKey = 'scheduler.polynomial.start_lr';
    minKey = 'scheduler.polynomial.end_lr';
    // CoreNet's polynomial default power is 0.9; openelm's linear schedule is power 1 only
    const power = r.num('scheduler.polynomial.power');
    if (raw === 'polynomial' && power === undefined) {
      r.fail('scheduler.name', "polynomial needs scheduler.polynomial.power: 1.0 (CoreNet's default power is 0.9; openelm has only the linear schedule)");
    }
    if (power !== undefined && power !== 1) {
      r.fail('scheduler.polynomial.power', `must be 1 (openelm's linear schedule), got ${power}`);
    }
  }
  const lr = r.num(lrKey, { above: 0 });
  r.set('schedule.lr', lr, lrKey);
  if (minKey) {
    const minLr = r.num(minKey, { min: 0 });
    r.set('schedule.minLr', minLr, minKey);
    if (lr !== undefined && minLr !== undefined && minLr > lr) r.fail(minKey, `(${minLr}) must not exceed ${lrKey} (${lr})`);
  }
  if ((warmup ?? 0) > 0 && lr !== undefined && initLr !== undefined && initLr > lr) {
    r.fail('scheduler.warmup_init_lr', `(${initLr}) must not exceed ${lrKey} (${lr})`);
  }
}

function readOpenelm(r: Reader): void {
  for (const k of r.flat.keys()) {
    if (k.startsWith('openelm.') && !(OPENELM_KEYS as readonly string[]).includes(k.slice(8))) {
      r.fail(k, `is not an openelm setting; they are ${OPENELM_KEYS.map((x) => 'openelm.' + x).join(', ')}`);
    }
  }
  if (r.flat.has('openelm') && r.flat.get('openelm') !== null) r.fail('openelm', `must be a map of settings, got ${describe(r.flat.get('openelm'))}`);
  r.take('openelm');

  if (r.has('openelm.data')) {
    const v = r.take('openelm.data');
    const paths = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(paths) || paths.length === 0 || !paths.every((p) => typeof p === 'string' && p !== '')) {
      r.fail('openelm.data', `must be a path or a list of paths (files, folders, builtin:NAME), got ${describe(v)}`);
    }
    if (r.options.data?.paths !== undefined) {
      r.fail('openelm.data', 'and dataset.language_modeling.general_lm.train_data_info both give training files; keep one');
    }
    r.set('data.paths', paths, 'openelm.data');
  }
  r.set('data.idsFile', r.str('openelm.ids_file'), 'openelm.ids_file');
  r.set('data.packing', r.bool('openelm.packing'), 'openelm.packing');
  const valFraction = r.num('openelm.val_fraction', { min: 0, below: 1 });
  if (valFraction !== undefined && valFraction > 0 && r.flat.get('dataset.disable_val') === true) {
    r.fail('openelm.val_fraction', 'holds out validation data but dataset.disable_val is true');
  }
  r.set('data.valFraction', valFraction, 'openelm.val_fraction');
  r.set('evalBatches', r.num('openelm.eval_batches', { min: 1, int: true }), 'openelm.eval_batches');
  r.set('steps', r.num('openelm.steps', { min: 1, int: true }), 'openelm.steps');
  const preset = r.str('openelm.preset');
  if (preset !== undefined) {
    const p = presetNameOf(preset);
    if (!p) r.fail('openelm.preset', `must be one of ${PRESET_NAMES.join(', ')}, got ${describe(preset)}`);
    if (r.options.preset !== undefined && r.options.preset !== p) {
      r.fail('openelm.preset', `(${p}) contradicts model.language_modeling.general_gpt.model_name (${r.options.preset})`);
    }
    r.set('preset', p, 'openelm.preset');
  }
  r.set('modelConfig', r.str('openelm.model_config'), 'openelm.model_config');
  r.set('init', r.str('openelm.init'), 'openelm.init');
  const sources = ['preset', 'modelConfig', 'init'].filter((f) => (r.options as Record<string, unknown>)[f] !== undefined);
  if (sources.length > 1) {
    const key = sources.includes('init') ? 'openelm.init' : 'openelm.model_config';
    r.fail(
      key,
      `conflicts with ${sources
        .filter((s) => s !== (key === 'openelm.init' ? 'init' : 'modelConfig'))
        .map((s) => r.sources[s].split(' at ')[0])
        .join(', ')}: give one model (a preset, a config.json, or a checkpoint)`,
    );
  }
  r.set('out', r.str('openelm.out'), 'openelm.out');
  r.set('log', r.str('openelm.log'), 'openelm.log');
  r.set('threads', r.num('openelm.threads', { min: 1, int: true }), 'openelm.threads');
}

/**
 * CoreNet's train_data_info: [{file_name: "dir/part-{file_id:05d}.parquet", text_key, file_id_range: [a, b]}]
 * → the file names for file_id in [a, b). Entries without file_name (CoreNet's published recipes
 * leave it commented out) add nothing. text_key is not passed on (DataOptions has no such field):
 * a text_key other than "text" is reported in `ignored` as KEY[i].text_key.
 */
function trainDataInfo(r: Reader, key: string): string[] {
  const v = r.take(key);
  if (v === undefined) return [];
  if (!Array.isArray(v)) r.fail(key, `must be a list of {file_name, text_key, file_id_range}, got ${describe(v)}`);
  const paths: string[] = [];
  v.forEach((entry, i) => {
    if (!isPlainObject(entry)) r.fail(key, `entry ${i} must be a map {file_name, text_key, file_id_range}, got ${describe(entry)}`);
    const name = entry.file_name;
    if (name === undefined || name === null) return;
    if (typeof name !== 'string' || name === '') r.fail(key, `entry ${i}: file_name must be a path, got ${describe(name)}`);
    const range = entry.file_id_range;
    if (!Array.isArray(range) || range.length !== 2 || !range.every((x) => Number.isInteger(x) && x >= 0) || range[0] > range[1]) {
      r.fail(key, `entry ${i}: file_id_range must be [first, end) as two integers, got ${describe(range)}`);
    }
    const left = /\{[^}]*\}/.exec(name.replace(/\{file_id(?::0?\d*d)?\}/g, ''));
    if (left) r.fail(key, `entry ${i}: file_name may hold only {file_id} or {file_id:0Nd}, found ${left[0]}`);
    // openelm's reader takes the "text" field/column; another text_key is reported as not used
    if (entry.text_key !== undefined && entry.text_key !== null && entry.text_key !== 'text') r.ignoredParts.push(`${key}[${i}].text_key`);
    for (let id = range[0]; id < range[1]; id++) {
      paths.push(
        name.replace(/\{file_id(?::(0?)(\d*)d)?\}/g, (_m, zero: string | undefined, width: string | undefined) => {
          const s = String(id);
          return width ? s.padStart(Number(width), zero ? '0' : ' ') : s;
        }),
      );
    }
  });
  return paths;
}

// ---- resolving and validating ----

/**
 * The options a run uses: openelm's defaults, then the recipe, then the overrides (the CLI's
 * flags). A model source in the overrides (init, preset or modelConfig) replaces the recipe's
 * model entirely; overrides.modelOverrides are set on top. Validated (validateTrainOptions).
 *
 * steps defaults to the schedule's maxSteps and maxSteps to steps, so `--steps N` alone gives a
 * schedule spanning N steps; with a recipe, --steps changes how long the run is and not the schedule
 * (set schedule.maxSteps too to shorten the schedule).
 */
export function resolveTrainOptions(recipe: Recipe | undefined, overrides: TrainOverrides = {}, flags: Record<string, string> = FIELD_FLAGS): TrainOptions {
  const r: TrainOverrides = recipe?.options ?? {};
  const o = overrides;
  const sources: Record<string, string> = {};
  for (const [field, src] of Object.entries(recipe?.sources ?? {})) {
    if (getPath(o, field) === undefined) sources[field] = src;
  }

  const modelFromOverrides = o.init !== undefined || o.preset !== undefined || o.modelConfig !== undefined;
  const m: TrainOverrides = modelFromOverrides ? {} : r;
  const modelOverrides = { ...(m.modelOverrides ?? {}), ...(o.modelOverrides ?? {}) };
  if (modelFromOverrides) for (const f of ['init', 'preset', 'modelConfig', 'modelOverrides']) delete sources[f];

  const data = { ...DEFAULTS.data, ...defined(r.data), ...defined(o.data) };
  const optimizer = { ...DEFAULTS.optimizer, ...defined(r.optimizer), ...defined(o.optimizer) };
  const sched = { ...DEFAULTS.schedule, ...defined(r.schedule), ...defined(o.schedule) };
  const steps = pick(o.steps, o.schedule?.maxSteps, r.steps, r.schedule?.maxSteps);
  const maxSteps = pick(o.schedule?.maxSteps, r.schedule?.maxSteps, steps);
  // a constant schedule has no end value: minLr is its lr
  if (sched.name === 'constant') sched.minLr = sched.lr as number;

  const opts = {
    ...pickModel(m, o),
    ...(Object.keys(modelOverrides).length > 0 ? { modelOverrides } : {}),
    data: data as TrainOptions['data'],
    steps: steps as number,
    batchSize: pick(o.batchSize, r.batchSize) as number,
    gradAccum: pick(o.gradAccum, r.gradAccum, DEFAULTS.gradAccum)!,
    optimizer: optimizer as TrainOptions['optimizer'],
    schedule: { ...sched, maxSteps } as TrainOptions['schedule'],
    gradClip: pick(o.gradClip, r.gradClip, DEFAULTS.gradClip) as number | null,
    zLoss: pick(o.zLoss, r.zLoss, DEFAULTS.zLoss)!,
    activationCheckpointing: pick(o.activationCheckpointing, r.activationCheckpointing, DEFAULTS.activationCheckpointing)!,
    evalEvery: pick(o.evalEvery, r.evalEvery, DEFAULTS.evalEvery)!,
    evalBatches: pick(o.evalBatches, r.evalBatches, DEFAULTS.evalBatches)!,
    saveEvery: pick(o.saveEvery, r.saveEvery, DEFAULTS.saveEvery)!,
    out: pick(o.out, r.out) as string,
    resume: pick(o.resume, r.resume, DEFAULTS.resume)!,
    seed: pick(o.seed, r.seed, DEFAULTS.seed)!,
    ...optional('log', pick(o.log, r.log)),
    ...optional('threads', pick(o.threads, r.threads)),
  } satisfies TrainOptions;
  return validateTrainOptions(opts, { flags, sources });
}

/**
 * Checks resolved options; throws TrainOptionsError naming the field and the flag (or the recipe
 * key) that set it. Returns its argument.
 */
export function validateTrainOptions(o: TrainOptions, names: { flags?: Record<string, string>; sources?: Record<string, string> } = {}): TrainOptions {
  const flags = names.flags ?? FIELD_FLAGS;
  const sources = names.sources ?? {};
  const label = (field: string): string => {
    const by = sources[field] ?? flags[field];
    return by ? `${field} (${by})` : field;
  };
  const fail = (field: string, msg: string): never => {
    throw new TrainOptionsError(`${label(field)} ${msg}`, field);
  };
  const get = (field: string): unknown => getPath(o, field);
  const int = (field: string, min: number): void => {
    const v = get(field);
    if (v === undefined) fail(field, 'is required');
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(field, `must be an integer ≥ ${min}, got ${describe(v)}`);
  };
  const real = (field: string, check: (x: number) => boolean, what: string): void => {
    const v = get(field);
    if (v === undefined) fail(field, 'is required');
    if (typeof v !== 'number' || !Number.isFinite(v) || !check(v)) fail(field, `must be ${what}, got ${describe(v)}`);
  };
  const bool = (field: string): void => {
    if (typeof get(field) !== 'boolean') fail(field, `must be true or false, got ${describe(get(field))}`);
  };
  const nonEmpty = (field: string): void => {
    const v = get(field);
    if (typeof v !== 'string' || v === '') fail(field, v === undefined ? 'is required' : `must be a non-empty string, got ${describe(v)}`);
  };

  // the model
  const given = (['init', 'preset', 'modelConfig'] as const).filter((f) => o[f] !== undefined);
  if (given.length > 1) fail(given[1], `conflicts with ${label(given[0])}: give one model (a checkpoint, a preset or a config.json)`);
  for (const f of given) nonEmpty(f);
  if (o.modelOverrides !== undefined && !isPlainObject(o.modelOverrides))
    fail('modelOverrides', `must be a map of config.json keys, got ${describe(o.modelOverrides)}`);
  let cfg: OpenELMConfig | undefined;
  if (o.init === undefined && o.modelConfig === undefined) {
    if (o.preset === undefined && o.modelOverrides === undefined) {
      throw new TrainOptionsError(
        `no model to train: set ${label('init')}, ${label('preset')} or ${label('modelConfig')}, or a recipe's model section`,
        'init',
      );
    }
    try {
      cfg = newModelConfig(o.preset, o.modelOverrides);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const { field, msg } = configProblem(e);
      if (field && (field in (o.modelOverrides ?? {}) || o.preset === undefined)) fail(`modelOverrides.${field}`, msg);
      fail('preset', `does not give a valid model: ${field ?? ''} ${msg}`.replace(/ {2,}/g, ' '));
    }
  }

  // the data
  if (!Array.isArray(o.data?.paths) || !o.data.paths.every((p) => typeof p === 'string' && p !== '')) {
    fail('data.paths', `must be a list of paths, got ${describe(o.data?.paths)}`);
  }
  if (o.data.idsFile !== undefined) nonEmpty('data.idsFile');
  if (o.data.paths.length === 0 && o.data.idsFile === undefined) fail('data.paths', 'is required: there is no training data (files, folders or builtin:NAME)');
  // --data-ids rows fix the sequence length themselves (row length − 1)
  if (o.data.idsFile === undefined || o.data.seqLen !== undefined) int('data.seqLen', 1);
  if (cfg && o.data.seqLen > cfg.max_context_length) {
    fail('data.seqLen', `(${o.data.seqLen}) exceeds the model's max_context_length (${cfg.max_context_length})`);
  }
  bool('data.packing');
  int('data.minChars', 0);
  int('data.minTokens', 0);
  real('data.valFraction', (x) => x >= 0 && x < 1, 'a fraction ≥ 0 and < 1');

  // optimisation
  int('steps', 1);
  int('batchSize', 1);
  int('gradAccum', 1);
  const opt = o.optimizer;
  if (opt?.name !== 'adamw' && opt?.name !== 'sgd') fail('optimizer.name', `must be "adamw" or "sgd", got ${describe(opt?.name)}`);
  real('optimizer.beta1', (x) => x >= 0 && x < 1, '≥ 0 and < 1');
  real('optimizer.beta2', (x) => x >= 0 && x < 1, '≥ 0 and < 1');
  real('optimizer.eps', (x) => x > 0, 'a positive number');
  real('optimizer.weightDecay', (x) => x >= 0, 'a number ≥ 0');
  real('optimizer.momentum', (x) => x >= 0 && x < 1, '≥ 0 and < 1');
  bool('optimizer.nesterov');
  if (opt.name === 'sgd' && opt.nesterov && opt.momentum === 0) fail('optimizer.nesterov', 'needs a momentum > 0 (optimizer.momentum)');

  const s = o.schedule;
  if (s?.name !== 'constant' && s?.name !== 'linear' && s?.name !== 'cosine') {
    fail('schedule.name', `must be constant, linear or cosine, got ${describe(s?.name)}`);
  }
  if (s.lr === undefined) fail('schedule.lr', "is required: there is no learning rate (or a recipe's scheduler.cosine.max_lr / scheduler.fixed.lr)");
  real('schedule.lr', (x) => x > 0, 'a positive number');
  real('schedule.minLr', (x) => x >= 0, 'a number ≥ 0');
  if (s.minLr > s.lr) fail('schedule.minLr', `(${s.minLr}) must not exceed ${label('schedule.lr')} (${s.lr})`);
  int('schedule.warmup', 0);
  real('schedule.warmupInitLr', (x) => x >= 0, 'a number ≥ 0');
  if (s.warmup > 0 && s.warmupInitLr > s.lr) fail('schedule.warmupInitLr', `(${s.warmupInitLr}) must not exceed ${label('schedule.lr')} (${s.lr})`);
  int('schedule.maxSteps', 1);
  if (s.warmup > s.maxSteps) fail('schedule.warmup', `(${s.warmup}) must not exceed ${label('schedule.maxSteps')} (${s.maxSteps})`);
  if (o.gradClip !== null) real('gradClip', (x) => x > 0, 'a positive number (or null: no clipping)');
  real('zLoss', (x) => x >= 0, 'a number ≥ 0');
  bool('activationCheckpointing');

  // the loop
  int('evalEvery', 0);
  int('evalBatches', 1);
  if (o.evalEvery > 0 && !(o.data.valFraction > 0)) {
    fail('evalEvery', `(${o.evalEvery}) needs validation data: set ${label('data.valFraction')} > 0, or evalEvery 0`);
  }
  int('saveEvery', 0);
  nonEmpty('out');
  if (o.log !== undefined) nonEmpty('log');
  bool('resume');
  int('seed', 0);
  if (o.threads !== undefined) int('threads', 1);
  return o;
}

/**
 * The config of a new model: a preset's shape with `overrides` (config.json keys) on top, or the
 * overrides alone (which must then give num_transformer_layers, model_dim and head_dim).
 */
export function newModelConfig(preset: string | undefined, overrides: Record<string, unknown> | undefined): OpenELMConfig {
  const base: Record<string, unknown> = {};
  if (preset !== undefined) {
    const p = presetConfig(preset); // throws on an unknown name
    base.num_transformer_layers = p.num_transformer_layers;
    base.model_dim = p.model_dim;
    base.head_dim = p.head_dim;
  }
  return parseConfig(
    { model_type: 'openelm', ...base, ...(overrides ?? {}) },
    preset !== undefined ? `preset ${preset} with the model settings` : 'the model settings',
  );
}

// ---- helpers ----

/** A ConfigError's field and what is wrong with it ("must be even …"), without the source prefix. */
function configProblem(e: ConfigError): { field?: string; msg: string } {
  const m = /field "([^"]+)" (.*)$/s.exec(e.message);
  return m ? { field: m[1], msg: m[2] } : { field: e.field, msg: e.message.replace(/^[^:]*: /, '') };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `a list ${JSON.stringify(v).slice(0, 60)}`;
  if (typeof v === 'object') return `a map ${JSON.stringify(v).slice(0, 60)}`;
  return String(v);
}

function pick<T>(...vals: (T | undefined)[]): T | undefined {
  return vals.find((v) => v !== undefined);
}

/** the object's entries that are not undefined (so spreading it does not erase defaults) */
function defined<T extends object>(o: T | undefined): Partial<T> {
  if (!o) return {};
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function optional<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}

function pickModel(m: TrainOverrides, o: TrainOverrides): Pick<TrainOptions, 'init' | 'preset' | 'modelConfig'> {
  return {
    ...optional('init', pick(o.init, m.init)),
    ...optional('preset', pick(o.preset, m.preset)),
    ...optional('modelConfig', pick(o.modelConfig, m.modelConfig)),
  };
}

function getPath(o: unknown, field: string): unknown {
  let v: unknown = o;
  for (const p of field.split('.')) {
    if (!isPlainObject(v)) return undefined;
    v = v[p];
  }
  return v;
}

/** CoreNet's flatten_yaml_as_dict: nested maps → dotted keys; lists and scalars are values. */
function flatten(v: Record<string, unknown>, prefix: string, out: Map<string, unknown>, twice: (key: string) => never): void {
  for (const [k, x] of Object.entries(v)) {
    if (prefix === '' && k.startsWith('_')) continue; // YAML anchor holders
    const key = prefix ? `${prefix}.${k}` : k;
    if (isPlainObject(x) && Object.keys(x).length > 0) flatten(x, key, out, twice);
    else {
      if (out.has(key)) twice(key);
      out.set(key, isPlainObject(x) ? null : x);
    }
  }
}

/** the line of every map key in the document, by dotted path */
function keyLines(doc: Document, lc: LineCounter): Map<string, number> {
  const lines = new Map<string, number>();
  const walk = (node: unknown, prefix: string, depth: number): void => {
    if (depth > 64) return;
    if (isAlias(node)) node = node.resolve(doc);
    if (!isMap(node)) return;
    for (const pair of node.items) {
      const k = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      const key = prefix ? `${prefix}.${k}` : k;
      const range = (pair.key as { range?: [number, number, number] } | null)?.range;
      if (range && !lines.has(key)) lines.set(key, lc.linePos(range[0]).line);
      walk(pair.value, key, depth + 1);
    }
  };
  walk(doc.contents, '', 0);
  return lines;
}

/** the line of a dotted key, or of its nearest parent that has one */
function lineOf(lines: Map<string, number>, key: string): number | undefined {
  for (let k = key; k; k = k.includes('.') ? k.slice(0, k.lastIndexOf('.')) : '') {
    const line = lines.get(k);
    if (line !== undefined) return line;
  }
  return undefined;
}
