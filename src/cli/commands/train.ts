import fs from 'node:fs';
import path from 'node:path';
import { type OpenELMConfig, parseConfig } from '../../config/index.ts';
import { checkpointSource } from '../../io/checkpoint-source.ts';
import { formatDuration, ProgressBar } from '../../io/progress.ts';
import { createKernels } from '../../kernels/index.ts';
import type { TensorSource } from '../../model/weights.ts';
import { loadTokenizer } from '../../tokenizer/index.ts';
import { openDataset, type TrainData } from '../../train/data/index.ts';
import type { TrainOptions } from '../../train/options.ts';
import { loadRecipe, newModelConfig, type Recipe, resolveTrainOptions, type TrainOverrides } from '../../train/recipe.ts';
import { type StepRecord, Trainer } from '../../train/trainer.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { ctrlC, defined, optimizerFlags, scheduleFlags, TRAINER_FLAGS } from '../trainer-flags.ts';

const FLAGS = {
  ...TRAINER_FLAGS,
  config: { type: 'string', short: 'c' },
  init: { type: 'string' },
  preset: { type: 'string' },
  'model-config': { type: 'string' },
  data: { type: 'string', multiple: true },
  'data-ids': { type: 'string' },
  'max-steps': { type: 'string' },
  'z-loss': { type: 'string' },
  'min-chars': { type: 'string' },
  'min-tokens': { type: 'string' },
  'val-fraction': { type: 'string' },
  packing: { type: 'boolean' },
  'no-packing': { type: 'boolean' },
} as const;

export const trainCommand: Command = {
  name: 'train',
  summary: 'train an OpenELM (pre-training from scratch or from a checkpoint), CoreNet recipes',
  help: `Usage: openelm train [--config RECIPE.yaml] [overrides] --out DIR

Trains an OpenELM with CoreNet's recipe: AdamW, a cosine schedule with warmup, z-loss, gradient
clipping, on text tokenized on the fly. Checkpoints (HF layout, fp32 master weights, optimizer
state, data position) go to DIR/checkpoints/step-N; DIR/model.safetensors is the newest, so
'openelm generate -m DIR' runs it. --resume continues exactly where the last checkpoint left off.
Ctrl-C saves a checkpoint and stops; a second Ctrl-C quits at once.

Recipe (CoreNet YAML; keys openelm does not use are listed in one warning):
  -c, --config FILE        recipes/builtin.yaml, recipes/openelm-270M.yaml, ... or your own

Model (one of; a recipe may give it):
      --init DIR           start from this checkpoint
      --preset P           a new OpenELM-270M / 450M / 1_1B / 3B shape
      --model-config FILE  a new model from a config.json

Data:
      --data PATH          text: a file, a folder, .txt/.jsonl/.json(.gz)/.parquet with a "text"
                           field, or builtin:sotu (State of the Union addresses); repeatable
      --data-ids FILE      a JSON array of token-id rows used in order, --batch-size rows a step:
                           the model reads row[:-1] and predicts row[1:]
      --seq-len N          tokens per sample (a sample is N + 1 tokens)
      --packing / --no-packing  pack texts into full rows / CoreNet's truncate-and-pad per text
      --min-chars N        drop texts under N characters (default 200, CoreNet's)
      --min-tokens N       drop texts under N tokens (default 256, CoreNet's)
      --val-fraction F     texts held out for validation (default 0.01)

Optimisation:
      --steps N            optimizer steps to run
      --max-steps N        the schedule's length (default: --steps)
      --batch-size B       sequences per micro-batch
      --grad-accum K       micro-batches per step (default 1)
      --lr LR              peak learning rate
      --schedule S         constant (default), linear or cosine
      --min-lr LR          the schedule's final LR (CoreNet: 0.1 × --lr)
      --warmup N           linear warmup steps (default 0)
      --warmup-init-lr LR  warmup's first LR (default 1e-7)
      --optimizer O        adamw (default: β 0.9/0.95, eps 1e-8) or sgd
      --weight-decay W     default 0.1; never on norm weights
      --beta1 B, --beta2 B, --eps E, --momentum M, --nesterov
      --grad-clip C        clip the global gradient norm to C (default: none)
      --z-loss Z           z-loss coefficient (default 0; CoreNet 1e-4)
      --activation-checkpointing  recompute activations in the backward pass (less memory)

Run:
  -o, --out DIR            output folder (checkpoints, train.jsonl)
      --resume             continue from the newest checkpoint in DIR
      --eval-every N       validation loss every N steps (default 0: never)
      --eval-batches N     validation batches per evaluation (default 10)
      --save-every N       checkpoint every N steps (default: at the end only)
      --log FILE           JSONL log, one record per step (default DIR/train.jsonl)
      --seed S             initialisation and data order (default 0)
  -t, --threads N          threads (default: all cores)
  -q, --quiet              no progress bar
      --json               print {"out", "step", "loss", "val_loss", ...} at the end

Examples:
  openelm train --config recipes/tiny-cpu.yaml --out runs/tiny
  openelm train --config recipes/builtin.yaml --out runs/builtin --resume
  openelm train --preset OpenELM-270M --data corpus/ --seq-len 512 --batch-size 4 --lr 3e-4 \\
      --schedule cosine --warmup 100 --steps 1000 --grad-clip 1 --out runs/270m
  openelm plot runs/tiny/train.jsonl --out loss.svg`,

  async run(argv) {
    const { values: v } = parse(argv, FLAGS);
    const recipe: Recipe | undefined = v.config ? loadRecipe(v.config as string) : undefined;
    const o = resolveTrainOptions(recipe, overridesFrom(v));
    const info = (msg: string) => {
      if (!v.json) process.stderr.write(msg + '\n');
    };
    if (recipe?.ignored.length) info(`${recipe.file}: ${recipe.ignored.length} key(s) openelm does not use: ${recipe.ignored.join(', ')}`);

    const { config, init } = resolveModel(o);
    fs.mkdirSync(o.out, { recursive: true });
    let data: TrainData;
    if (o.data.idsFile) {
      // token ids as given: checked against the model's vocabulary; the rows fix the sequence length
      data = await openDataset(
        o.data,
        { encode: () => [], bosId: config.bos_token_id, eosId: config.eos_token_id, vocabSize: config.vocab_size },
        { seed: o.seed, warn: info },
      );
      o.data.seqLen = data.stats().seqLen;
    } else {
      const tokenizer = await loadTokenizer(o.init);
      if (tokenizer.vocabSize > config.vocab_size) {
        throw new Error(`the tokenizer has ${tokenizer.vocabSize} tokens but the model's vocab_size is ${config.vocab_size}`);
      }
      data = await openDataset(o.data, tokenizer, { seed: o.seed, bos: config.bos_token_id, eos: config.eos_token_id, warn: info });
    }
    const backend = (v.backend as string | undefined) ?? 'wasm';
    if (backend !== 'wasm' && backend !== 'ref') throw new UsageError(`--backend must be wasm or ref, got "${backend}"`);
    const kernels = await createKernels(backend, { threads: o.threads });
    const sigint = ctrlC(info);
    try {
      const trainer = new Trainer({ config, init, kernels, data, options: o });
      info(`training ${trainer.numParameters.toLocaleString('en-US')} parameters on ${kernels.name}; ${data.describe()}`);
      trainer.start(info);
      const tokensPerStep = o.batchSize * o.gradAccum * o.data.seqLen;
      const bar = v.json || v.quiet ? undefined : new ProgressBar({ label: 'train', total: o.steps * tokensPerStep, unit: 'items' });
      let first = true;
      const r = await trainer.run({
        onStep(rec: StepRecord) {
          if (!bar) return;
          if (first) {
            bar.update((rec.step - 1) * tokensPerStep);
            first = false;
          }
          bar.label = `step ${rec.step}/${o.steps} loss ${rec.loss.toFixed(3)}${rec.val_loss !== undefined ? ` val ${rec.val_loss.toFixed(3)}` : ''} lr ${rec.lr.toExponential(2)} tok`;
          bar.update(rec.step * tokensPerStep);
        },
        onSave(dir) {
          if (bar && process.stderr.isTTY) return;
          info(`saved ${dir}`);
        },
        onInfo: info,
        shouldStop: sigint.stop,
      });
      bar?.finish();
      const summary = {
        out: o.out,
        step: r.step,
        tokens: r.tokens,
        loss: r.lastLoss,
        val_loss: r.lastValLoss ?? null,
        stopped: r.stopped,
        log: o.log ?? path.join(o.out, 'train.jsonl'),
      };
      if (v.json) printJson(summary);
      else
        info(
          `${r.stopped === 'done' ? 'done' : 'stopped'} at step ${r.step}: loss ${r.lastLoss.toFixed(4)}${r.lastValLoss !== undefined ? `, val ${r.lastValLoss.toFixed(4)}` : ''}; ${o.out}/model.safetensors (${formatDuration(0)})`.replace(
            / \(0:00\)$/,
            '',
          ),
        );
      return r.stopped === 'interrupted' ? 130 : 0;
    } finally {
      sigint.release();
      data.close();
      kernels.dispose?.();
    }
  },
};

/** The flags as a partial TrainOptions (only what was given). */
function overridesFrom(v: Record<string, unknown>): TrainOverrides {
  const n = (name: string, opts: { int?: boolean; min?: number; max?: number } = {}) => num(v[name] as string | undefined, name, opts);
  const o: TrainOverrides = {};
  const set = <K extends keyof TrainOverrides>(k: K, x: TrainOverrides[K] | undefined) => {
    if (x !== undefined) o[k] = x;
  };
  set('init', v.init as string | undefined);
  set('preset', v.preset as string | undefined);
  set('modelConfig', v['model-config'] as string | undefined);
  if (v.packing && v['no-packing']) throw new UsageError('give one of --packing or --no-packing');
  const data = {
    paths: v.data as string[] | undefined,
    idsFile: v['data-ids'] as string | undefined,
    seqLen: n('seq-len', { int: true, min: 1 }),
    packing: v.packing ? true : v['no-packing'] ? false : undefined,
    minChars: n('min-chars', { int: true, min: 0 }),
    minTokens: n('min-tokens', { int: true, min: 0 }),
    valFraction: n('val-fraction', { min: 0, max: 0.99 }),
  };
  set('data', defined(data));
  set('steps', n('steps', { int: true, min: 1 }));
  set('batchSize', n('batch-size', { int: true, min: 1 }));
  set('gradAccum', n('grad-accum', { int: true, min: 1 }));
  set('schedule', defined({ ...scheduleFlags(v), maxSteps: n('max-steps', { int: true, min: 1 }) }));
  set('optimizer', optimizerFlags(v));
  set('gradClip', n('grad-clip'));
  set('zLoss', n('z-loss', { min: 0 }));
  if (v['activation-checkpointing']) o.activationCheckpointing = true;
  set('evalEvery', n('eval-every', { int: true, min: 0 }));
  set('evalBatches', n('eval-batches', { int: true, min: 1 }));
  set('saveEvery', n('save-every', { int: true, min: 0 }));
  set('log', v.log as string | undefined);
  set('out', v.out as string | undefined);
  if (v.resume) o.resume = true;
  set('seed', n('seed', { int: true, min: 0 }));
  set('threads', n('threads', { int: true, min: 1 }));
  return o;
}

/** The model to train: a checkpoint (--init) or a new shape (preset / config.json + overrides). */
function resolveModel(o: TrainOptions): { config: OpenELMConfig; init: TensorSource | null } {
  if (o.init) {
    const src = checkpointSource(o.init);
    return { config: src.config, init: src };
  }
  if (o.modelConfig) {
    let raw: Record<string, unknown>;
    try {
      raw = JSON.parse(fs.readFileSync(o.modelConfig, 'utf8'));
    } catch (e) {
      throw new Error(`--model-config ${o.modelConfig}: ${(e as Error).message}`);
    }
    return { config: parseConfig({ ...raw, ...(o.modelOverrides ?? {}) }, o.modelConfig), init: null };
  }
  return { config: newModelConfig(o.preset, o.modelOverrides), init: null };
}
