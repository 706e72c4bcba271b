import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parse as parseYaml } from 'yaml';
import { numParameters } from '../src/config/index.ts';
import { DEFAULT_OPTIMIZER, type TrainOptions } from '../src/train/options.ts';
import {
  loadRecipe,
  newModelConfig,
  parseRecipe,
  RecipeError,
  resolveTrainOptions,
  TrainOptionsError,
  type TrainOverrides,
  validateTrainOptions,
} from '../src/train/recipe.ts';

const RECIPES = new URL('../recipes/', import.meta.url);
const recipePath = (name: string) => new URL(name, RECIPES).pathname;
/** what the CLI adds to an official recipe: an output folder and data */
const RUN: TrainOverrides = { out: 'runs/x', data: { paths: ['builtin:sotu'] } };

test('every shipped pre-training recipe loads and resolves', () => {
  // (finetune-*.yaml and dpo-*.yaml are fine-tuning recipes: test/finetune-cli.test.ts)
  const files = fs
    .readdirSync(RECIPES)
    .filter((f) => f.endsWith('.yaml') && !/^(finetune|dpo)-/.test(f))
    .sort();
  assert.deepEqual(files, [
    'builtin-uniform.yaml',
    'builtin.yaml',
    'openelm-1_1B.yaml',
    'openelm-270M.yaml',
    'openelm-3B.yaml',
    'openelm-450M.yaml',
    'tiny-cpu.yaml',
  ]);
  for (const f of files) {
    const r = loadRecipe(recipePath(f));
    const o = resolveTrainOptions(r, RUN);
    assert.equal(o.schedule.name, 'cosine', f);
    assert.equal(o.steps, o.schedule.maxSteps, f);
    assert.equal(o.zLoss, 1e-4, f);
    assert.equal(o.gradClip, 1, f);
    assert.equal(o.optimizer.name, 'adamw', f);
    assert.ok(o.preset !== undefined || o.modelOverrides?.model_dim !== undefined, f);
    // the small recipes are complete: no flags needed but --out, nothing ignored
    if (!f.startsWith('openelm-')) {
      assert.deepEqual(r.ignored, [], f);
      assert.deepEqual(resolveTrainOptions(r, { out: 'runs/x' }).data.paths, ['builtin:sotu'], f);
    }
  }
});

test("the 270M recipe yields CoreNet's values", () => {
  const r = loadRecipe(recipePath('openelm-270M.yaml'));
  const o = resolveTrainOptions(r, RUN);
  assert.deepEqual(o.schedule, { name: 'cosine', lr: 0.0053, minLr: 0.00053, warmup: 5000, warmupInitLr: 1e-6, maxSteps: 350000 });
  assert.equal(o.steps, 350000);
  assert.equal(o.data.seqLen, 2048);
  assert.equal(o.data.minTokens, 256);
  assert.equal(o.data.minChars, 200);
  assert.equal(o.data.packing, false); // CoreNet's truncate-and-pad
  assert.equal(o.zLoss, 1e-4); // use_z_loss with CoreNet's default z_loss_eps
  assert.equal(o.gradClip, 1);
  assert.equal(o.batchSize, 16);
  assert.equal(o.gradAccum, 1);
  assert.deepEqual(o.optimizer, { ...DEFAULT_OPTIMIZER, name: 'adamw', beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1 });
  assert.equal(o.preset, 'OpenELM-270M');
  assert.deepEqual(o.modelOverrides, { vocab_size: 32128, max_context_length: 2048 });
  assert.deepEqual(r.modelConfig, { vocab_size: 32128, max_context_length: 2048 });
  assert.equal(o.activationCheckpointing, false);
  assert.equal(o.saveEvery, 5000);
  assert.equal(o.evalEvery, 0); // dataset.disable_val: true
  assert.equal(o.data.valFraction, 0);
  assert.equal(o.seed, 0);
  assert.match(r.sources['schedule.lr'], /^scheduler\.cosine\.max_lr at .*openelm-270M\.yaml:\d+$/);

  // what openelm does not use is reported, what it uses is not
  for (const k of [
    'taskname',
    'common.log_freq',
    'common.mixed_precision_dtype',
    'common.eval_every_k_iterations',
    'dataset.workers',
    'dataset.language_modeling.shuffle_data',
    'text_tokenizer.sentence_piece.append_eot_token',
    'loss.language_modeling.cross_entropy.ignore_index',
    'model.language_modeling.general_gpt.padding_index',
    'stats.checkpoint_metric',
  ]) {
    assert.ok(r.ignored.includes(k), `${k} should be ignored`);
  }
  for (const k of [
    'common.grad_clip',
    'optim.adamw.beta2',
    'scheduler.cosine.max_lr',
    'dataset.language_modeling.sequence_length',
    'optim.no_decay_bn_filter_bias',
    'dataset.language_modeling.general_lm.train_data_info',
  ]) {
    assert.ok(!r.ignored.includes(k), `${k} is used`);
  }
  assert.ok(!r.ignored.some((k) => k.startsWith('_anchor')), 'anchor holders are skipped');
});

test('the 450M, 1.1B and 3B recipes: their LRs, presets and activation checkpointing', () => {
  const expect: [string, string, number, number][] = [
    ['450M', 'OpenELM-450M', 0.0039, 0.00039],
    ['1_1B', 'OpenELM-1_1B', 0.0024, 0.00024],
    ['3B', 'OpenELM-3B', 0.0012, 0.00012],
  ];
  for (const [size, preset, lr, minLr] of expect) {
    const r = loadRecipe(recipePath(`openelm-${size}.yaml`));
    const o = resolveTrainOptions(r, RUN);
    assert.equal(o.preset, preset);
    assert.equal(o.schedule.lr, lr);
    assert.equal(o.schedule.minLr, minLr);
    assert.equal(o.activationCheckpointing, true);
    assert.equal(o.schedule.maxSteps, 350000);
    if (size === '3B') assert.ok(r.ignored.includes('fsdp.sharding_strategy') && r.ignored.includes('train_eval_pipeline.name'));
  }
});

test("the shipped OpenELM recipes keep CoreNet's keys and values", () => {
  // A few of CoreNet's keys openelm ignores, kept verbatim like CoreNet's own file.
  const flat = flatten(parseYaml(fs.readFileSync(recipePath('openelm-270M.yaml'), 'utf8')));
  assert.equal(flat['common.auto_resume'], true);
  assert.equal(flat['loss.language_modeling.cross_entropy.ignore_index'], 32000);
  assert.equal(flat['model.language_modeling.general_gpt.vocab_size'], 32128);
  assert.deepEqual(flat['stats.val'], ['loss']);
  assert.equal(Object.keys(flat).length, 57);
});

test('builtin: ≤ 40 MB in bf16, layer-wise scaled; builtin-uniform: the same parameter count, uniform layers', () => {
  const lw = resolveTrainOptions(loadRecipe(recipePath('builtin.yaml')), { out: 'x' });
  const un = resolveTrainOptions(loadRecipe(recipePath('builtin-uniform.yaml')), { out: 'x' });
  const a = newModelConfig(lw.preset, lw.modelOverrides);
  const b = newModelConfig(un.preset, un.modelOverrides);
  assert.equal(a.vocab_size, 32000);
  assert.ok(numParameters(a) * 2 <= 40e6, `${numParameters(a) * 2} bytes`);
  assert.equal(numParameters(a), numParameters(b));
  assert.ok(new Set(a.num_query_heads).size > 1 && new Set(a.ffn_dims).size > 1, 'layer-wise');
  assert.equal(new Set(b.num_query_heads).size, 1);
  assert.equal(new Set(b.ffn_dims).size, 1);
  // the two runs differ only in the model's multipliers
  const { modelOverrides: ma, ...ra } = lw;
  const { modelOverrides: mb, ...rb } = un;
  assert.deepEqual(ra, rb);
  const differ = Object.keys({ ...ma, ...mb })
    .filter((k) => JSON.stringify(ma?.[k]) !== JSON.stringify(mb?.[k]))
    .sort();
  assert.deepEqual(differ, ['ffn_dim_divisor', 'ffn_multipliers', 'qkv_multipliers']);
});

test('nested maps, dotted keys and a mix give the same recipe', () => {
  const nested = `
optim:
  name: adamw
  weight_decay: 0.05
  adamw:
    beta1: 0.8
    beta2: 0.99
scheduler:
  name: cosine
  max_iterations: 100
  warmup_iterations: 10
  cosine:
    max_lr: 1.0e-3
    min_lr: 1.0e-4
dataset:
  language_modeling:
    sequence_length: 64
`;
  const dotted = `
optim.name: adamw
optim.weight_decay: 0.05
optim.adamw.beta1: 0.8
optim.adamw.beta2: 0.99
scheduler.name: cosine
scheduler.max_iterations: 100
scheduler.warmup_iterations: 10
scheduler.cosine.max_lr: 1.0e-3
scheduler.cosine.min_lr: 1.0e-4
dataset.language_modeling.sequence_length: 64
`;
  const mixed = `
optim:
  name: adamw
  weight_decay: 0.05
  adamw.beta1: 0.8
optim.adamw.beta2: 0.99
scheduler:
  name: cosine
  max_iterations: 100
  warmup_iterations: 10
  cosine.max_lr: 1.0e-3
  cosine.min_lr: 1.0e-4
dataset.language_modeling:
  sequence_length: 64
`;
  const a = parseRecipe(nested, 'nested.yaml');
  const b = parseRecipe(dotted, 'dotted.yaml');
  const c = parseRecipe(mixed, 'mixed.yaml');
  assert.deepEqual(b.options, a.options);
  assert.deepEqual(c.options, a.options);
  assert.deepEqual(a.options.schedule, { name: 'cosine', maxSteps: 100, warmup: 10, lr: 1e-3, minLr: 1e-4 });
  assert.deepEqual(a.options.optimizer, { name: 'adamw', weightDecay: 0.05, beta1: 0.8, beta2: 0.99 });
  assert.deepEqual([a.ignored, b.ignored, c.ignored], [[], [], []]);
});

test('keys openelm does not use are reported, in file order', () => {
  const r = parseRecipe(
    `
_anchor_x: &x 3
taskname: demo
optim:
  name: adamw
  no_decay_bn_filter_bias: false
  sgd:
    momentum: 0.9
  adamw.amsgrad: true
scheduler:
  name: fixed
  lr: 0.1
  max_epochs: 3
  fixed.lr: 1.0e-3
  cosine.max_lr: 0.5
loss.language_modeling.cross_entropy:
  label_smoothing: 0.1
  use_z_loss: false
  z_loss_eps: 1.0e-3
something_else:
  deep.key: *x
`,
    'r.yaml',
  );
  assert.deepEqual(r.ignored, [
    'taskname',
    'optim.no_decay_bn_filter_bias',
    'optim.sgd.momentum',
    'optim.adamw.amsgrad',
    'scheduler.lr',
    'scheduler.max_epochs',
    'scheduler.cosine.max_lr',
    'loss.language_modeling.cross_entropy.label_smoothing',
    'loss.language_modeling.cross_entropy.z_loss_eps',
    'something_else.deep.key',
  ]);
  assert.deepEqual(r.options.schedule, { name: 'constant', lr: 1e-3 });
  assert.equal(r.options.zLoss, 0);
});

test('openelm: section and train_data_info', () => {
  const r = parseRecipe(
    `
openelm:
  data: [a.txt, builtin:sotu]
  packing: true
  val_fraction: 0.1
  eval_batches: 3
  steps: 7
  out: runs/r
  threads: 2
common.eval_every_k_iterations: 5
dataset.train_batch_size0: 2
dataset.language_modeling.sequence_length: 32
scheduler:
  name: linear
  max_iterations: 20
  polynomial: {start_lr: 0.01, end_lr: 0.001}
openelm.preset: openelm-270m
`,
    'o.yaml',
  );
  const o = resolveTrainOptions(r);
  assert.deepEqual(o.data, { paths: ['a.txt', 'builtin:sotu'], packing: true, minChars: 200, minTokens: 256, valFraction: 0.1, seqLen: 32 });
  assert.equal(o.steps, 7); // openelm.steps: the run stops before the schedule's end
  assert.deepEqual(o.schedule, { name: 'linear', lr: 0.01, minLr: 0.001, warmup: 0, warmupInitLr: 1e-7, maxSteps: 20 });
  assert.equal(o.preset, 'OpenELM-270M');
  assert.equal(o.evalEvery, 5);
  assert.equal(o.evalBatches, 3);
  assert.equal(o.threads, 2);
  assert.equal(o.out, 'runs/r');

  const info = parseRecipe(
    `
dataset.language_modeling.general_lm.train_data_info:
  - {file_name: "/d/train-{file_id:05d}-00003.parquet", text_key: content, file_id_range: [0, 3]}
  - {file_name: "/d/book.jsonl", text_key: text, file_id_range: [0, 1]}
  - {text_key: text, file_id_range: [0, 9]}
`,
    'i.yaml',
  );
  assert.deepEqual(info.options.data?.paths, ['/d/train-00000-00003.parquet', '/d/train-00001-00003.parquet', '/d/train-00002-00003.parquet', '/d/book.jsonl']);
  // openelm reads the "text" field: another text_key is reported, for the entries that give files
  assert.deepEqual(info.ignored, ['dataset.language_modeling.general_lm.train_data_info[0].text_key']);
});

/** asserts that parsing `yaml` fails with a RecipeError naming `key` and matching `msg` */
function fails(yaml: string, key: string | undefined, msg: RegExp, line?: number): void {
  assert.throws(
    () => parseRecipe(yaml, 'bad.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof RecipeError, String(e));
      assert.equal(e.key, key);
      assert.match(e.message, msg);
      assert.match(e.message, /^bad\.yaml/);
      if (line !== undefined) {
        assert.equal(e.line, line);
        assert.ok(e.message.startsWith(`bad.yaml:${line}: `), e.message);
      }
      return true;
    },
  );
}

test('errors name the file, the line and the key, and what was expected', () => {
  fails('optim:\n  weight_decay: high\n', 'optim.weight_decay', /optim\.weight_decay must be a number ≥ 0, got "high"/, 2);
  fails('scheduler:\n  name: cosine\n  cosine:\n    max_lr: -0.1\n', 'scheduler.cosine.max_lr', /must be a number > 0, got -0\.1/, 4);
  fails('scheduler.name: cyclic\n', 'scheduler.name', /must be cosine, fixed or polynomial .* got "cyclic"/, 1);
  fails('optim.name: lamb\n', 'optim.name', /must be "adamw" or "sgd" .* got "lamb"/, 1);
  fails(
    'scheduler:\n  cosine:\n    max_lr: 1.0e-3\n    min_lr: 1.0e-2\n',
    'scheduler.cosine.min_lr',
    /\(0\.01\) must not exceed scheduler\.cosine\.max_lr \(0\.001\)/,
    4,
  );
  fails('scheduler:\n  name: polynomial\n  polynomial.start_lr: 0.1\n', 'scheduler.name', /polynomial\.power: 1\.0/);
  fails('scheduler:\n  name: polynomial\n  polynomial: {start_lr: 0.1, power: 2}\n', 'scheduler.polynomial.power', /must be 1/);
  fails('scheduler:\n  is_iteration_based: false\n', 'scheduler.is_iteration_based', /must be true/);
  fails('scheduler:\n  max_iterations: 10\n  warmup_iterations: 11\n', 'scheduler.warmup_iterations', /must not exceed scheduler\.max_iterations/);
  fails('scheduler.max_iterations: 1.5\n', 'scheduler.max_iterations', /must be an integer ≥ 1, got 1\.5/);
  fails('common.grad_clip: 0\n', 'common.grad_clip', /must be a number > 0/);
  fails('dataset.train_batch_size0: "16"\n', 'dataset.train_batch_size0', /must be an integer ≥ 1, got "16"/);
  fails('optim.adamw.beta2: 1\n', 'optim.adamw.beta2', /must be a number ≥ 0 and < 1, got 1/);
  fails('model.activation_checkpointing: yes\n', 'model.activation_checkpointing', /must be true or false, got "yes"/);
  fails('dataset.category: classification\n', 'dataset.category', /must be "language_modeling"/);
  fails(
    'model.language_modeling.general_gpt.model_name: OpenELM-7B\n',
    'model.language_modeling.general_gpt.model_name',
    /must be one of OpenELM-270M, .* got "OpenELM-7B"/,
  );
  fails(
    'model.language_modeling.general_gpt:\n  model_dim: 128\n  num_transformer_layers: 2\n  head_dim: 33\n',
    'model.language_modeling.general_gpt.head_dim',
    /general_gpt\.head_dim must be even for rotary embeddings, got 33$/,
    4,
  );
  fails('model.language_modeling.general_gpt.model_dim: 128\n', 'model.language_modeling.general_gpt.num_transformer_layers', /is missing/);
  fails('openelm:\n  data: a.txt\n  pack: true\n', 'openelm.pack', /is not an openelm setting; they are openelm\.data, /, 3);
  fails('openelm.val_fraction: 0.1\ndataset.disable_val: true\n', 'openelm.val_fraction', /dataset\.disable_val is true/);
  fails('optim:\n  name: adamw\noptim.name: sgd\n', 'optim.name', /given twice/);
  fails(
    'dataset.language_modeling.general_lm.train_data_info: [{file_name: "a-{id}.txt", file_id_range: [0, 2]}]\n',
    'dataset.language_modeling.general_lm.train_data_info',
    /entry 0: file_name may hold only \{file_id\} .* found \{id\}/,
  );
  fails('a: 1\na: 2\n', undefined, /^bad\.yaml:2: not valid YAML: Map keys must be unique/);
  fails('- a\n- b\n', undefined, /expected a map of settings/);
  assert.throws(() => loadRecipe('/nonexistent/recipe.yaml'), /\/nonexistent\/recipe\.yaml: cannot read the recipe \(ENOENT\)/);
});

test('loadRecipe reads a file and names it in errors', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-recipe-'));
  try {
    const file = path.join(dir, 'r.yaml');
    fs.writeFileSync(file, 'common:\n  seed: 3\n  accum_freq: 0\n');
    assert.throws(
      () => loadRecipe(file),
      (e: unknown) => e instanceof RecipeError && e.message.startsWith(`${file}:3: common.accum_freq must be an integer ≥ 1, got 0`),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// ---- resolving without and with a recipe ----

const MINIMAL: TrainOverrides = {
  out: 'runs/m',
  preset: 'OpenELM-270M',
  data: { paths: ['t.txt'], seqLen: 64 },
  steps: 10,
  batchSize: 2,
  schedule: { lr: 1e-3 },
};

test('without a recipe nothing is added that the flags do not ask for', () => {
  const o = resolveTrainOptions(undefined, MINIMAL);
  const expected: TrainOptions = {
    preset: 'OpenELM-270M',
    // CoreNet's text filters and a small validation split are the data pipeline's defaults
    data: { paths: ['t.txt'], packing: false, minChars: 200, minTokens: 256, valFraction: 0.01, seqLen: 64 },
    steps: 10,
    batchSize: 2,
    gradAccum: 1,
    optimizer: DEFAULT_OPTIMIZER,
    schedule: { name: 'constant', lr: 1e-3, minLr: 1e-3, warmup: 0, warmupInitLr: 1e-7, maxSteps: 10 },
    gradClip: null,
    zLoss: 0,
    activationCheckpointing: false,
    evalEvery: 0,
    evalBatches: 10,
    saveEvery: 0,
    out: 'runs/m',
    resume: false,
    seed: 0,
  };
  assert.deepEqual(o, expected);
});

test("flags override the recipe; a model from the flags replaces the recipe's", () => {
  const r = loadRecipe(recipePath('builtin.yaml'));
  const o = resolveTrainOptions(r, {
    out: 'o',
    schedule: { lr: 1e-3 },
    gradClip: null,
    optimizer: { beta2: 0.99 },
    modelOverrides: { rope_freq_constant: 500000 },
  });
  assert.equal(o.schedule.lr, 1e-3);
  assert.equal(o.schedule.minLr, 2e-4); // still the recipe's
  assert.equal(o.gradClip, null);
  assert.equal(o.optimizer.beta2, 0.99);
  assert.equal(o.optimizer.beta1, 0.9);
  assert.equal(o.modelOverrides?.model_dim, 256);
  assert.equal(o.modelOverrides?.rope_freq_constant, 500000);

  const fromCkpt = resolveTrainOptions(r, { out: 'o', init: 'runs/old' });
  assert.equal(fromCkpt.init, 'runs/old');
  assert.equal(fromCkpt.modelOverrides, undefined);
  assert.equal(fromCkpt.preset, undefined);

  // --steps shortens the run, not the schedule; --max-steps shortens both
  const short = resolveTrainOptions(r, { out: 'o', steps: 5 });
  assert.equal(short.steps, 5);
  assert.equal(short.schedule.maxSteps, 2000);
  const shrunk = resolveTrainOptions(r, { out: 'o', schedule: { maxSteps: 300 } });
  assert.equal(shrunk.steps, 300);
  assert.equal(shrunk.schedule.maxSteps, 300);
});

/** asserts that resolving fails with a TrainOptionsError on `field` matching `msg` */
function invalid(recipe: Parameters<typeof resolveTrainOptions>[0], o: TrainOverrides, field: string, msg: RegExp): void {
  assert.throws(
    () => resolveTrainOptions(recipe, o),
    (e: unknown) => {
      assert.ok(e instanceof TrainOptionsError, String(e));
      assert.equal(e.field, field);
      assert.match(e.message, msg);
      return true;
    },
  );
}

test('resolved options are validated, naming the field and its flag or recipe key', () => {
  const { schedule: _s, ...noLr } = MINIMAL;
  invalid(undefined, noLr, 'schedule.lr', /^schedule\.lr \(--lr\) is required/);
  invalid(undefined, { ...MINIMAL, steps: undefined }, 'steps', /^steps \(--steps\) is required/);
  invalid(undefined, { ...MINIMAL, out: undefined }, 'out', /^out \(--out\) is required/);
  invalid(undefined, { ...MINIMAL, data: { seqLen: 64 } }, 'data.paths', /no training data/);
  invalid(undefined, { ...MINIMAL, preset: undefined }, 'init', /^no model to train: set init \(--init\), preset \(--preset\)/);
  invalid(undefined, { ...MINIMAL, init: 'ckpt' }, 'preset', /conflicts with init/);
  invalid(undefined, { ...MINIMAL, steps: 0 }, 'steps', /must be an integer ≥ 1, got 0/);
  invalid(undefined, { ...MINIMAL, steps: 2.5 }, 'steps', /must be an integer ≥ 1, got 2\.5/);
  invalid(undefined, { ...MINIMAL, batchSize: 0 }, 'batchSize', /^batchSize \(--batch-size\) must be an integer ≥ 1/);
  invalid(undefined, { ...MINIMAL, schedule: { lr: 0 } }, 'schedule.lr', /must be a positive number, got 0/);
  invalid(undefined, { ...MINIMAL, schedule: { lr: Infinity } }, 'schedule.lr', /must be a positive number, got Infinity/);
  invalid(
    undefined,
    { ...MINIMAL, schedule: { lr: 1e-3, name: 'cosine', minLr: 1e-2 } },
    'schedule.minLr',
    /\(0\.01\) must not exceed schedule\.lr \(--lr\) \(0\.001\)/,
  );
  invalid(undefined, { ...MINIMAL, schedule: { lr: 1e-3, name: 'step' as never } }, 'schedule.name', /must be constant, linear or cosine/);
  invalid(undefined, { ...MINIMAL, schedule: { lr: 1e-3, warmup: 11 } }, 'schedule.warmup', /must not exceed schedule\.maxSteps/);
  invalid(undefined, { ...MINIMAL, optimizer: { beta1: 1 } }, 'optimizer.beta1', /^optimizer\.beta1 \(--beta1\) must be ≥ 0 and < 1, got 1/);
  invalid(undefined, { ...MINIMAL, optimizer: { beta2: -0.1 } }, 'optimizer.beta2', /must be ≥ 0 and < 1/);
  invalid(undefined, { ...MINIMAL, optimizer: { eps: 0 } }, 'optimizer.eps', /positive/);
  invalid(undefined, { ...MINIMAL, optimizer: { name: 'sgd', nesterov: true } }, 'optimizer.nesterov', /momentum > 0/);
  invalid(undefined, { ...MINIMAL, gradClip: -1 }, 'gradClip', /^gradClip \(--grad-clip\) must be a positive number/);
  invalid(undefined, { ...MINIMAL, zLoss: -1 }, 'zLoss', /≥ 0/);
  invalid(
    undefined,
    { ...MINIMAL, evalEvery: 10, data: { paths: ['t.txt'], seqLen: 64, valFraction: 0 } },
    'evalEvery',
    /needs validation data: set data\.valFraction \(--val-fraction\) > 0/,
  );
  invalid(undefined, { ...MINIMAL, data: { paths: ['t'], seqLen: 4096 } }, 'data.seqLen', /exceeds the model's max_context_length \(2048\)/);
  invalid(undefined, { ...MINIMAL, data: { paths: ['t'], seqLen: 64, valFraction: 1 } }, 'data.valFraction', /≥ 0 and < 1/);
  invalid(
    undefined,
    { ...MINIMAL, modelOverrides: { head_dim: 63 } },
    'modelOverrides.head_dim',
    /^modelOverrides\.head_dim must be even for rotary embeddings, got 63$/,
  );
  invalid(undefined, { ...MINIMAL, preset: undefined, modelOverrides: { model_dim: 64 } }, 'modelOverrides.num_transformer_layers', /is missing/);
  invalid(undefined, { ...MINIMAL, threads: 0 }, 'threads', /≥ 1/);

  // a value the recipe set is named by its key and line
  const r = loadRecipe(recipePath('tiny-cpu.yaml'));
  invalid(
    r,
    { out: 'o', schedule: { lr: 1e-4 } },
    'schedule.minLr',
    /^schedule\.minLr \(scheduler\.cosine\.min_lr at .*tiny-cpu\.yaml:\d+\) \(0\.0003\) must not exceed schedule\.lr \(--lr\) \(0\.0001\)/,
  );
  invalid(r, { out: 'o', data: { seqLen: 512 } }, 'data.seqLen', /max_context_length \(128\)/);

  // the CLI may name its own flags
  assert.throws(
    () => validateTrainOptions({ ...resolveTrainOptions(undefined, MINIMAL), batchSize: -1 }, { flags: { batchSize: '-b' } }),
    /^TrainOptionsError: batchSize \(-b\) must be/,
  );
});

function flatten(o: Record<string, unknown>, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [k, v] of Object.entries(o)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v as Record<string, unknown>, key, out);
    else out[key] = v;
  }
  return out;
}
