import fs from 'node:fs';
import path from 'node:path';
import { checkpointSource } from '../../io/checkpoint-source.ts';
import { resolveModel } from '../../io/hub.ts';
import { ProgressBar } from '../../io/progress.ts';
import { createKernels } from '../../kernels/index.ts';
import { Adapter, loadAdapter } from '../../peft/adapter.ts';
import { DEFAULT_ADAPTER, parseAdapterConfig } from '../../peft/config.ts';
import { loadTokenizer } from '../../tokenizer/index.ts';
import type { DpoLossKind } from '../../train/finetune/dpo.ts';
import { ExampleData, fitSeqLen } from '../../train/finetune/examples.ts';
import { type FinetuneRecipe, loadFinetuneRecipe } from '../../train/finetune/recipe.ts';
import { type FinetuneMethod, readRecords } from '../../train/finetune/records.ts';
import { loadRecipe, type Recipe, resolveTrainOptions, type TrainOverrides } from '../../train/recipe.ts';
import { type StepRecord, type TrainData, Trainer } from '../../train/trainer.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { downloadBars, modelSource, parseDType } from '../model-options.ts';
import { ctrlC, defined, optimizerFlags, scheduleFlags, TRAINER_FLAGS } from '../trainer-flags.ts';

const FLAGS = {
  ...TRAINER_FLAGS,
  model: { type: 'string', short: 'm' },
  config: { type: 'string', short: 'c' },
  method: { type: 'string' },
  data: { type: 'string', multiple: true },
  'val-data': { type: 'string' },
  'val-fraction': { type: 'string' },
  peft: { type: 'string' },
  rank: { type: 'string' },
  alpha: { type: 'string' },
  dropout: { type: 'string' },
  targets: { type: 'string' },
  rslora: { type: 'boolean' },
  'init-adapter': { type: 'string' },
  dtype: { type: 'string' },
  'dpo-loss': { type: 'string' },
  beta: { type: 'string' },
  epochs: { type: 'string' },
  json: { type: 'boolean' },
} as const;

export const finetuneCommand: Command = {
  name: 'finetune',
  summary: 'fine-tune a model: SFT or DPO, full or with a LoRA / DoRA adapter (PEFT format)',
  help: `Usage: openelm finetune --model M --data FILE.jsonl [--method sft|dpo] [--peft lora|dora] --out DIR [options]

Fine-tunes with the pre-training trainer: the same optimizers, schedules, clipping, accumulation,
progress bar, JSONL log, validation, atomic checkpoints and exact --resume. With --peft the base
stays frozen (and may be quantized: --dtype q8_0 / q4_0) and DIR/checkpoints/step-N hold the adapter
in PEFT's layout (DIR/adapter_model.safetensors is the newest): 'openelm generate -m M --adapter DIR'.
Without --peft, all weights train and the checkpoints are full models.

Records (JSONL, one per line; every record is checked before the first step):
  SFT  {"messages": [{"role": "user", "content": …}, {"role": "assistant", …}]}  loss on the replies
       {"prompt": …, "completion": …}             loss on the completion (+ EOS)
       {"prompt_ids": […], "completion_ids": […]} token ids used as they are
  DPO  {"prompt": …, "chosen": …, "rejected": …}  or  {"prompt_ids", "chosen_ids", "rejected_ids"}

Model and data:
  -m, --model M            the base: a checkpoint folder, a hub repo id, or builtin
  -c, --config FILE        a recipe: CoreNet keys (optim, scheduler, …), CoreNet's model.lora PEFT
                           settings, and a finetune: section (recipes/finetune-*.yaml, dpo-*.yaml)
      --method M           sft (default) or dpo
      --data FILE          training records (repeatable)
      --val-data FILE      validation records; or --val-fraction F of the training records
      --seq-len N          tokens per row (default: the longest record, up to the context)

Adapter:
      --peft P             lora or dora (default: full fine-tuning)
      --rank R             (default 8)  --alpha A (default: R)  --dropout P (default 0)
      --targets LIST       comma separated: qkv_proj,out_proj,proj_1,proj_2[,token_embeddings]
      --rslora             scale by alpha / √r instead of alpha / r
      --init-adapter DIR   continue this adapter (its rank, targets and settings)
      --dtype D            the frozen base's storage: auto (default), f32, bf16, f16, q8_0, q4_0

DPO:
      --dpo-loss L         sigmoid (default) or hinge
      --beta B             (default 0.1; Apple's recipes 0.01)

Optimisation (defaults add nothing: constant LR, no warmup, no clipping, no weight decay):
      --steps N | --epochs E   --batch-size B (default 1)   --grad-accum K
      --lr LR (required)   --schedule constant|linear|cosine   --min-lr   --warmup N   --warmup-init-lr
      --optimizer adamw|sgd (default adamw, β 0.9/0.95)   --weight-decay W (default 0)
      --beta1  --beta2  --eps  --momentum  --nesterov  --grad-clip C  --activation-checkpointing

Run:
  -o, --out DIR   --resume   --eval-every N   --eval-batches N   --save-every N   --log FILE
      --seed S   -t, --threads N   -q, --quiet   --json

Examples:
  openelm finetune -m builtin --data examples/chat.jsonl --peft lora --rank 16 --lr 1e-3 --epochs 3 --out runs/chat-lora
  openelm finetune -m apple/OpenELM-270M --config recipes/dpo-270M.yaml --data prefs.jsonl --out runs/dpo
  openelm generate -m builtin --adapter runs/chat-lora "Hello"`,

  async run(argv) {
    const { values: v } = parse(argv, FLAGS);
    const n = (name: string, opts: { int?: boolean; min?: number; max?: number } = {}) => num(v[name as keyof typeof v] as string | undefined, name, opts);
    const info = (msg: string) => {
      if (!v.json) process.stderr.write(msg + '\n');
    };
    const recipe: Recipe | undefined = v.config ? loadRecipe(v.config as string) : undefined;
    const ft: FinetuneRecipe = v.config ? loadFinetuneRecipe(v.config as string) : { keys: [] };
    const ignored = (recipe?.ignored ?? []).filter(
      (k) => !k.startsWith('model.') && !k.startsWith('finetune') && !k.startsWith('dataset.') && !k.startsWith('text_tokenizer'),
    );
    if (ignored.length) info(`${recipe!.file}: ${ignored.length} key(s) openelm does not use: ${ignored.join(', ')}`);

    const method = ((v.method as string | undefined) ?? ft.method ?? 'sft') as FinetuneMethod;
    if (method !== 'sft' && method !== 'dpo') throw new UsageError(`--method must be sft or dpo, got "${method}"`);
    if (!v.peft && !v['init-adapter'] && (!ft.peft || ft.peft === 'none')) {
      for (const f of ['rank', 'alpha', 'dropout', 'targets', 'rslora'] as const)
        if (v[f] !== undefined) throw new UsageError(`--${f} needs --peft lora|dora (without it, all weights are fine-tuned)`);
    }
    const dataFiles = (v.data as string[] | undefined) ?? [];
    if (dataFiles.length === 0) throw new UsageError('--data FILE.jsonl is required (the fine-tuning records)');
    if (!v.out) throw new UsageError('--out DIR is required');
    const out = v.out as string;
    const modelDir = await resolveModel(modelSource(v), { onProgress: v.json || v.quiet ? undefined : downloadBars() });
    const src = checkpointSource(modelDir);
    const config = src.config;
    const tokenizer = await loadTokenizer(modelDir);
    // a tokenizer larger than the model's vocabulary (a test model without its own) only serves token-id records
    const tok = tokenizer.vocabSize <= config.vocab_size ? tokenizer : null;

    // records: read and checked in full before anything else happens
    const train = dataFiles.flatMap((f) => readRecords(f, method, tok, config.vocab_size));
    const val = v['val-data'] ? readRecords(v['val-data'] as string, method, tok, config.vocab_size) : undefined;
    const cap = n('seq-len', { int: true, min: 1 }) ?? config.max_context_length;
    if (cap > config.max_context_length) throw new UsageError(`--seq-len ${cap} exceeds the model's max_context_length (${config.max_context_length})`);
    const seqLen = fitSeqLen([...train, ...(val ?? [])], cap);
    const valFraction = n('val-fraction', { min: 0, max: 0.99 }) ?? 0;
    const seed = n('seed', { int: true, min: 0 }) ?? 0;
    const data = new ExampleData(train, { seed, seqLen, validation: val, valFraction });

    // options: the trainer's, with fine-tuning's "nothing added" defaults
    const batchSize = n('batch-size', { int: true, min: 1 }) ?? recipe?.options.batchSize ?? 1;
    const gradAccum = n('grad-accum', { int: true, min: 1 }) ?? recipe?.options.gradAccum ?? 1;
    const epochs = n('epochs', { min: 0 }) ?? ft.epochs;
    let steps = n('steps', { int: true, min: 1 });
    if (steps !== undefined && v.epochs !== undefined) throw new UsageError('give one of --steps and --epochs');
    if (steps === undefined && epochs !== undefined) steps = Math.max(1, Math.ceil((data.train.length * epochs) / (batchSize * gradAccum)));
    const overrides: TrainOverrides = {
      init: modelDir,
      data: { paths: dataFiles, seqLen, valFraction },
      steps,
      batchSize,
      gradAccum,
      out,
      resume: !!v.resume,
      seed,
      // fine-tuning adds no weight decay unless a flag or the recipe asks for it
      optimizer: { weightDecay: recipe?.options.optimizer?.weightDecay === undefined ? 0 : undefined, ...optimizerFlags(v) },
      schedule: defined({ ...scheduleFlags(v), maxSteps: steps }),
      gradClip: n('grad-clip'),
      zLoss: 0,
      activationCheckpointing: v['activation-checkpointing'] ? true : undefined,
      evalEvery: n('eval-every', { int: true, min: 0 }),
      evalBatches: n('eval-batches', { int: true, min: 1 }),
      saveEvery: n('save-every', { int: true, min: 0 }),
      log: v.log as string | undefined,
      threads: n('threads', { int: true, min: 1 }),
    };
    if (steps === undefined && recipe?.options.steps === undefined) throw new UsageError('give --steps N or --epochs E (how long to train)');
    const o = resolveTrainOptions(recipe, defined(overrides));
    o.data.seqLen = seqLen;
    if (ft.warmupRatio !== undefined && v.warmup === undefined) o.schedule.warmup = Math.round(ft.warmupRatio * o.steps);

    // the adapter: continued, or new from flags / the recipe's model.lora
    const dtype = parseDType(v.dtype as string | undefined);
    const peft = (v.peft as string | undefined) ?? (v['init-adapter'] ? 'init' : ft.peft === 'none' ? undefined : ft.peft);
    if (peft !== undefined && !['lora', 'dora', 'init'].includes(peft)) throw new UsageError(`--peft must be lora or dora, got "${peft}"`);
    if (!peft && dtype !== 'auto' && dtype !== 'f32')
      throw new UsageError("--dtype sets the frozen base's storage of an adapter run (--peft); full fine-tuning trains f32 weights");
    const backend = (v.backend as string | undefined) ?? 'wasm';
    if (backend !== 'wasm' && backend !== 'ref') throw new UsageError(`--backend must be wasm or ref, got "${backend}"`);
    const kernels = await createKernels(backend, { threads: o.threads });
    let adapter: Adapter | undefined;
    if (v['init-adapter']) {
      const dir = v['init-adapter'] as string;
      for (const f of ['rank', 'targets', 'alpha', 'rslora'] as const)
        if (v[f] !== undefined) throw new UsageError(`--${f} conflicts with --init-adapter: the adapter fixes its own rank, alpha and targets`);
      if (v.peft !== undefined) throw new UsageError('--peft conflicts with --init-adapter: the adapter says whether it is LoRA or DoRA');
      adapter = loadAdapter(dir, config, kernels);
      if (v.dropout !== undefined) (adapter.config as { lora_dropout: number }).lora_dropout = n('dropout', { min: 0, max: 0.99 })!;
    } else if (peft) {
      const r = n('rank', { int: true, min: 1 }) ?? ft.lora?.r ?? DEFAULT_ADAPTER.r;
      const targets = v.targets
        ? (v.targets as string)
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : (ft.lora?.targets ?? [...(DEFAULT_ADAPTER.target_modules as string[])]);
      const cfg = flagErrors(() =>
        parseAdapterConfig(
          {
            r,
            lora_alpha: n('alpha') ?? (v.rank === undefined ? ft.lora?.alpha : undefined) ?? r,
            lora_dropout: n('dropout', { min: 0, max: 0.99 }) ?? ft.lora?.dropout ?? 0,
            target_modules: targets,
            use_dora: peft === 'dora',
            use_rslora: !!v.rslora || !!ft.lora?.rslora,
            base_model_name_or_path: v.model ?? 'builtin',
          },
          'adapter',
        ),
      );
      adapter = new Adapter(cfg, config, kernels); // initialised below, on the trainer's copy of the base
    }
    const dpoLoss = ((v['dpo-loss'] as string | undefined) ?? ft.dpo?.loss ?? 'sigmoid') as DpoLossKind;
    if (dpoLoss !== 'sigmoid' && dpoLoss !== 'hinge') throw new UsageError(`--dpo-loss must be sigmoid or hinge, got "${dpoLoss}"`);
    const beta = n('beta', { min: 0 }) ?? ft.dpo?.beta ?? 0.1;
    if (method !== 'dpo' && (v['dpo-loss'] !== undefined || v.beta !== undefined))
      throw new UsageError('--dpo-loss and --beta are DPO settings: add --method dpo');

    fs.mkdirSync(out, { recursive: true });
    const sigint = ctrlC(info);
    try {
      const trainer = new Trainer({
        config,
        init: src,
        kernels,
        data: data as unknown as TrainData,
        options: o,
        adapter,
        baseDType: dtype,
        dpo: method === 'dpo' ? { loss: dpoLoss, beta } : undefined,
      });
      info(
        `${method.toUpperCase()} of ${path.basename(path.resolve(modelDir))}: ${adapter ? `${adapter.config.use_dora ? 'DoRA' : 'LoRA'} r=${adapter.r} (${trainer.numTrainable.toLocaleString('en-US')} trainable parameters, base ${dtype})` : `all ${trainer.numTrainable.toLocaleString('en-US')} parameters`} on ${kernels.name}; ${data.describe()}`,
      );
      if (adapter && !v['init-adapter']) adapter.init(seed, trainer.weights);
      trainer.start(info);
      const bar = v.json || v.quiet ? undefined : new ProgressBar({ label: 'finetune', total: o.steps, unit: 'items' });
      const r = await trainer.run({
        onStep(rec: StepRecord) {
          if (!bar) return;
          const extra = rec.reward_margin !== undefined ? ` margin ${rec.reward_margin.toFixed(3)}` : '';
          bar.label = `step ${rec.step}/${o.steps} loss ${rec.loss.toFixed(3)}${extra}${rec.val_loss !== undefined ? ` val ${rec.val_loss.toFixed(3)}` : ''}`;
          bar.update(rec.step);
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
        out,
        step: r.step,
        loss: r.lastLoss,
        val_loss: r.lastValLoss ?? null,
        stopped: r.stopped,
        log: o.log ?? path.join(out, 'train.jsonl'),
        adapter: !!adapter,
      };
      if (v.json) printJson(summary);
      else
        info(
          `${r.stopped === 'done' ? 'done' : 'stopped'} at step ${r.step}: loss ${r.lastLoss.toFixed(4)}${r.lastValLoss !== undefined ? `, val ${r.lastValLoss.toFixed(4)}` : ''}; ${adapter ? `adapter in ${out} (use --adapter ${out})` : `${out}/model.safetensors`}`,
        );
      return r.stopped === 'interrupted' ? 130 : 0;
    } finally {
      sigint.release();
      kernels.dispose?.();
    }
  },
};

/** An adapter setting's error in the words of the flag that set it (exit 2). */
function flagErrors<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    const FLAG: Record<string, string> = { r: '--rank', lora_alpha: '--alpha', lora_dropout: '--dropout', target_modules: '--targets' };
    const m = /^adapter: "(\w+)" (.*)$/s.exec((e as Error).message);
    if (m && FLAG[m[1]]) throw new UsageError(`${FLAG[m[1]]} ${m[2]}`);
    throw e;
  }
}
