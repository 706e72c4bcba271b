// The training loop, nanoGPT's train.py in shape: get batch, forward + backward, clip, step, log,
// evaluate every N, checkpoint every M. One trainer for pre-training and fine-tuning.
//
// Cores: every op of a step is one kernel call that the wasm backend splits over all threads
// (GEMMs and their gradients by output rows, attention by KV heads, element-wise ops by rows);
// the loop itself runs on the main thread. Results do not depend on the thread count's timing:
// each output element is computed by one thread in a fixed order.
//
// Exact resume: the fp32 master weights, the optimizer's buffers and step, the data position and
// the RNG state are in every checkpoint; `--resume` restores them and continues as if the run had
// never stopped (the same losses bit for bit, the same final parameters).
import fs from 'node:fs';
import path from 'node:path';
import type { OpenELMConfig } from '../config/config.ts';
import { numParameters } from '../config/config.ts';
import { checkpointSource } from '../io/checkpoint-source.ts';
import type { Kernels } from '../kernels/types.ts';
import { type LoadDType, loadWeights, type ModelWeights, type TensorSource } from '../model/weights.ts';
import type { Adapter, AdapterTensors } from '../peft/adapter.ts';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../peft/adapter.ts';
import { Backprop, type LossResult } from './backprop.ts';
import { CHECKPOINTS_DIR, listCheckpoints, modelWeights, readTrainerState, saveCheckpoint, type TrainerState } from './checkpoint.ts';
import { mixSeed } from './data/shuffle.ts';
import { type DpoOptions, dpoBatch } from './finetune/dpo.ts';
import type { ExampleBatch } from './finetune/examples.ts';
import { clipGradNorm, Optimizer } from './optim.ts';
import type { Batch, TrainOptions } from './options.ts';
import { type FlatLayout, ParamLayout } from './params.ts';
import { lrAt } from './schedule.ts';

/** What the trainer needs from a data pipeline (src/train/data). */
export interface TrainData {
  /** the next training micro-batch (the stream is endless: epochs repeat, reshuffled) */
  nextBatch(batchSize: number): Batch;
  /** the fixed validation batches (the same every call); empty when there is no validation split */
  validationBatches(batchSize: number, maxBatches: number): Batch[];
  /** the reading position, JSON-serialisable */
  state(): unknown;
  restore(state: unknown): void;
}

/** One record of the JSONL log (and of the progress callback). */
export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  tokens_per_s: number;
  /** training tokens (counted targets) so far */
  tokens: number;
  z_loss?: number;
  val_loss?: number;
  /** DPO: the batch's rewards (β (π − ρ)), their margin and the fraction of pairs ranked right */
  rewards_chosen?: number;
  rewards_rejected?: number;
  reward_margin?: number;
  reward_accuracy?: number;
  val_reward_margin?: number;
  val_reward_accuracy?: number;
}

export interface TrainerHooks {
  /** after every step (and its evaluation) */
  onStep?(r: StepRecord): void;
  /** after every checkpoint */
  onSave?(dir: string, step: number): void;
  /** a message for the user (resume, warnings) */
  onInfo?(msg: string): void;
  /** polled after each step: true stops the run after saving a checkpoint (Ctrl-C) */
  shouldStop?(): boolean;
}

export interface TrainerSetup {
  config: OpenELMConfig;
  /** initial weights (a checkpoint) or null for a fresh initialisation from options.seed */
  init: TensorSource | null;
  kernels: Kernels;
  data: TrainData;
  options: TrainOptions;
  /**
   * Fine-tuning with an adapter (src/peft): only its tensors are trained, on the frozen weights of
   * `init` (required), loaded as `baseDType` (q8_0 / q4_0: QLoRA-style). Checkpoints hold the
   * adapter in PEFT's layout.
   */
  adapter?: Adapter;
  baseDType?: LoadDType;
  /** the loss: language modelling (pre-training, SFT) unless DPO options are given */
  dpo?: DpoOptions;
}

export interface TrainResult {
  step: number;
  tokens: number;
  lastLoss: number;
  lastValLoss?: number;
  out: string;
  stopped: 'done' | 'interrupted';
}

export class NonFiniteLossError extends Error {
  constructor(
    readonly step: number,
    what: string,
    lastCheckpoint: string | null,
  ) {
    super(
      `step ${step}: the ${what} is not finite; stopping without applying this update. ` +
        (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}. ` : 'No checkpoint was saved yet. ') +
        'Lower the learning rate (--lr), add --grad-clip or warmup (--warmup), or check the data.',
    );
    this.name = 'NonFiniteLossError';
  }
}

export class Trainer {
  /** what is trained: the model's parameters, or the adapter's */
  readonly layout: FlatLayout;
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly optimizer: Optimizer;
  readonly backprop: Backprop;
  /** the weights the forward pass reads (the frozen base under an adapter) */
  private readonly w: ModelWeights;
  private readonly g: ModelWeights | null;
  private readonly ag: AdapterTensors | null;
  private readonly adapter: Adapter | null;
  /** DPO: the reference model's summed response log-probs per training / validation record */
  private refTrain = new Map<number, [number, number]>();
  private refVal = new Map<number, [number, number]>();
  private step = 0;
  private tokens = 0;
  private elapsed = 0;
  private lastCheckpoint: string | null = null;
  private readonly logFile: string;

  constructor(readonly setup: TrainerSetup) {
    const { config, kernels: k, options: o } = setup;
    this.adapter = setup.adapter ?? null;
    if (this.adapter) {
      if (!setup.init) throw new Error("fine-tuning an adapter needs the base model's weights (init)");
      this.layout = this.adapter.layout;
      this.params = this.adapter.params;
      this.grads = k.f32(this.layout.size);
      this.w = loadWeights(k, setup.init, setup.baseDType ?? 'auto');
      this.g = null;
      this.ag = this.adapter.tensors(this.grads);
    } else {
      const layout = new ParamLayout(config);
      this.layout = layout;
      this.params = k.f32(layout.size);
      this.grads = k.f32(layout.size);
      if (setup.init) layout.load(this.params, setup.init, o.init ?? 'checkpoint');
      else layout.init(this.params, o.seed);
      this.w = layout.weights(this.params);
      this.g = layout.weights(this.grads);
      this.ag = null;
    }
    this.optimizer = new Optimizer(k, this.layout, o.optimizer);
    this.backprop = new Backprop(config, k, {
      batchSize: o.batchSize * (setup.dpo ? 2 : 1),
      seqLen: o.data.seqLen,
      activationCheckpointing: o.activationCheckpointing,
      adapter: this.adapter ?? undefined,
    });
    this.logFile = o.log ?? path.join(o.out, 'train.jsonl');
  }

  get numParameters(): number {
    return numParameters(this.setup.config);
  }

  /** The weights the forward pass reads (under an adapter: the frozen base, e.g. to initialise DoRA's magnitudes). */
  get weights(): ModelWeights {
    return this.w;
  }

  /** Parameters being trained (the adapter's, or all the model's). */
  get numTrainable(): number {
    return this.layout.count;
  }

  /**
   * Before run(): with options.resume, restores the newest checkpoint; without, refuses an output
   * folder that already holds a run's checkpoints (they would be mixed with this run's).
   */
  start(info?: (msg: string) => void): void {
    const { out, resume } = this.setup.options;
    if (resume) this.resume(info);
    else if (fs.existsSync(path.join(out, CHECKPOINTS_DIR))) {
      throw new Error(`${out} already holds checkpoints of a run: add --resume to continue it, or choose a new --out`);
    }
  }

  /** Restores the newest checkpoint under options.out; returns its step (0 when there is none). */
  resume(info?: (msg: string) => void): number {
    const { out } = this.setup.options;
    const all = listCheckpoints(out);
    if (all.length === 0) {
      info?.(`--resume: no checkpoint under ${out}; starting from step 0`);
      return 0;
    }
    const { dir } = all[all.length - 1];
    const loaded = readTrainerState(dir);
    const s = loaded.state;
    if (this.adapter) this.adapter.readWeights(dir);
    else (this.layout as ParamLayout).load(this.params, checkpointSource(dir), dir);
    loaded.readOptimizer(this.optimizer.buffers, this.layout);
    if (s.optimizer.name !== this.setup.options.optimizer.name) {
      throw new Error(`${dir}: the run used optimizer ${s.optimizer.name}, this one ${this.setup.options.optimizer.name}`);
    }
    this.optimizer.step = s.optimizer.step;
    this.setup.data.restore(s.data);
    const ref = (s as { reference?: { train: [number, [number, number]][]; val: [number, [number, number]][] } }).reference;
    if (ref) {
      this.refTrain = new Map(ref.train);
      this.refVal = new Map(ref.val);
    }
    this.step = s.step;
    this.tokens = s.tokens;
    this.elapsed = s.elapsed;
    this.lastCheckpoint = dir;
    truncateLog(this.logFile, s.step);
    info?.(`resumed from ${dir} (step ${s.step}, ${s.tokens.toLocaleString('en-US')} tokens)`);
    return s.step;
  }

  /** Runs to options.steps (from wherever resume left the run). */
  async run(hooks: TrainerHooks = {}): Promise<TrainResult> {
    const { kernels: k, data, options: o } = this.setup;
    const { layout, params, grads } = this;
    const valBatches = o.evalEvery > 0 ? data.validationBatches(o.batchSize, o.evalBatches) : [];
    if (o.evalEvery > 0 && valBatches.length === 0) hooks.onInfo?.('no validation data: val_loss will not be logged');
    if (this.setup.dpo && !this.adapter && this.step === 0) this.precomputeReference(valBatches, hooks);
    fs.mkdirSync(path.dirname(path.resolve(this.logFile)), { recursive: true });
    const log = fs.openSync(this.logFile, 'a');
    let lastLoss = NaN,
      lastVal: number | undefined;
    try {
      while (this.step < o.steps) {
        const t0 = performance.now();
        const lr = lrAt(this.step, o.schedule);
        grads.fill(0);
        let loss = 0,
          zl = 0,
          tokens = 0;
        const extra: Record<string, number> = {};
        for (let a = 0; a < o.gradAccum; a++) {
          const r = this.microStep(data.nextBatch(o.batchSize), 1 / o.gradAccum, mixSeed(o.seed, this.step * o.gradAccum + a), extra, a > 0);
          loss += r.loss / o.gradAccum;
          zl += r.zLoss / o.gradAccum;
          tokens += r.tokens;
        }
        const norm = clipGradNorm(k, grads, layout, o.gradClip);
        if (!Number.isFinite(loss)) throw new NonFiniteLossError(this.step + 1, `loss (${loss})`, this.lastCheckpoint);
        if (!Number.isFinite(norm)) throw new NonFiniteLossError(this.step + 1, `gradient norm (${norm})`, this.lastCheckpoint);
        this.optimizer.update(params, grads, lr);
        this.step++;
        this.tokens += tokens;
        const secs = (performance.now() - t0) / 1000;
        this.elapsed += secs;
        const rec: StepRecord = { step: this.step, loss, lr, grad_norm: norm, tokens_per_s: tokens / secs, tokens: this.tokens };
        if (o.zLoss > 0) rec.z_loss = zl;
        for (const [key, v] of Object.entries(extra)) (rec as unknown as Record<string, number>)[key] = v / o.gradAccum;
        if (valBatches.length > 0 && (this.step % o.evalEvery === 0 || this.step === o.steps)) {
          const v = this.validateAll(valBatches);
          rec.val_loss = lastVal = v.loss;
          if (v.margin !== undefined) {
            rec.val_reward_margin = v.margin;
            rec.val_reward_accuracy = v.accuracy;
          }
        }
        lastLoss = loss;
        fs.writeSync(log, JSON.stringify(rec) + '\n');
        hooks.onStep?.(rec);
        const stop = hooks.shouldStop?.() ?? false;
        if (stop || this.step === o.steps || (o.saveEvery > 0 && this.step % o.saveEvery === 0)) {
          fs.fsyncSync(log);
          await this.save();
          hooks.onSave?.(this.lastCheckpoint!, this.step);
        }
        if (stop) return { step: this.step, tokens: this.tokens, lastLoss, lastValLoss: lastVal, out: o.out, stopped: 'interrupted' };
      }
    } finally {
      fs.closeSync(log);
    }
    return { step: this.step, tokens: this.tokens, lastLoss, lastValLoss: lastVal, out: o.out, stopped: 'done' };
  }

  /**
   * Forward + backward of one micro-batch (gradients added into this.grads); `sameStep`: not the
   * step's first micro-batch, so nothing changed since the previous one (DoRA's norms are reused).
   */
  private microStep(batch: Batch, gradScale: number, seed: number, extra: Record<string, number>, sameStep: boolean): LossResult {
    const o = this.setup.options,
      dpo = this.setup.dpo;
    const pass = { adapterGrads: this.ag, dropoutSeed: seed, sameAdapter: sameStep };
    if (!dpo) return this.backprop.step(this.w, this.g, batch, o.zLoss, gradScale, pass);
    const eb = batch as ExampleBatch;
    const ref = this.reference(eb, this.refTrain);
    let metrics: ReturnType<typeof dpoBatch>['metrics'] | null = null;
    const r = this.backprop.step(this.w, this.g, batch, 0, gradScale, {
      ...pass,
      rowCoef: (nll, tok) => {
        const d = dpoBatch(nll, tok, ref, dpo);
        metrics = d.metrics;
        return d.coef;
      },
    });
    const m = metrics!;
    extra.rewards_chosen = (extra.rewards_chosen ?? 0) + m.rewards_chosen;
    extra.rewards_rejected = (extra.rewards_rejected ?? 0) + m.rewards_rejected;
    extra.reward_margin = (extra.reward_margin ?? 0) + m.reward_margin;
    extra.reward_accuracy = (extra.reward_accuracy ?? 0) + m.reward_accuracy;
    return { ...r, loss: m.loss, zLoss: 0 };
  }

  /**
   * DPO's reference log-probs of the batch's rows (ρ), computed once per record and cached: with an
   * adapter, the base alone; in full fine-tuning, the weights before the first step (precomputed).
   */
  private reference(b: ExampleBatch, cache: Map<number, [number, number]>): Float64Array {
    const ref = new Float64Array(b.batchSize);
    if (b.records.some((rec) => !cache.has(rec))) {
      if (!this.adapter && this.step > 0) throw new Error('internal: reference log-probs missing after the first step');
      const r = this.backprop.loss(this.w, b, 0, { noAdapter: true });
      b.records.forEach((rec, i) => cache.set(rec, [-r.rowNll[2 * i], -r.rowNll[2 * i + 1]]));
    }
    b.records.forEach((rec, i) => {
      [ref[2 * i], ref[2 * i + 1]] = cache.get(rec)!;
    });
    return ref;
  }

  /** Full fine-tuning with DPO: the reference is the starting model, so score every record before step 1. */
  private precomputeReference(valBatches: Batch[], hooks: TrainerHooks): void {
    const data = this.setup.data as unknown as { train: unknown[]; batchOf?: unknown };
    const n = data.train?.length ?? 0;
    hooks.onInfo?.(`DPO: scoring ${n} training pairs with the reference model (the weights before fine-tuning)`);
    const seen = new Set<number>();
    // one pass over an epoch's worth of batches covers every record; the data position is restored after
    const state = this.setup.data.state();
    while (seen.size < n) {
      const b = this.setup.data.nextBatch(this.setup.options.batchSize) as ExampleBatch;
      this.reference(b, this.refTrain);
      b.records.forEach((r) => seen.add(r));
    }
    this.setup.data.restore(state);
    for (const b of valBatches) this.reference(b as ExampleBatch, this.refVal);
  }

  /** Mean loss over the validation batches (token-weighted; DPO: pair-weighted, with the reward margin). */
  private validateAll(batches: Batch[]): { loss: number; margin?: number; accuracy?: number } {
    const dpo = this.setup.dpo;
    if (!dpo) return { loss: this.validate(batches) };
    let loss = 0,
      margin = 0,
      acc = 0,
      n = 0;
    for (const b of batches) {
      const ref = this.reference(b as ExampleBatch, this.refVal);
      const r = this.backprop.loss(this.w, b, 0);
      const { metrics: m } = dpoBatch(r.rowNll, r.rowTokens, ref, dpo);
      if (m.pairs === 0) continue;
      loss += m.loss * m.pairs;
      margin += m.reward_margin * m.pairs;
      acc += m.reward_accuracy * m.pairs;
      n += m.pairs;
    }
    return n > 0 ? { loss: loss / n, margin: margin / n, accuracy: acc / n } : { loss: NaN };
  }

  /** Mean loss over the validation batches (token-weighted). */
  validate(batches: Batch[]): number {
    let sum = 0,
      n = 0;
    for (const b of batches) {
      const r = this.backprop.loss(this.w, b, 0);
      if (r.tokens > 0) {
        sum += r.loss * r.tokens;
        n += r.tokens;
      }
    }
    return n > 0 ? sum / n : NaN;
  }

  async save(): Promise<string> {
    const o = this.setup.options,
      ad = this.adapter;
    const state: TrainerState & { reference?: unknown } = {
      format: 'openelm-trainer-state',
      version: 1,
      step: this.step,
      tokens: this.tokens,
      optimizer: { name: o.optimizer.name, step: this.optimizer.step },
      data: this.setup.data.state(),
      rng: { seed: o.seed },
      options: o,
      elapsed: this.elapsed,
    };
    if (this.setup.dpo) state.reference = { train: [...this.refTrain], val: [...this.refVal] };
    const weights = ad
      ? {
          files: [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE],
          newest: ADAPTER_WEIGHTS_FILE,
          write: async (dir: string) => {
            fs.mkdirSync(dir, { recursive: true });
            ad.writeFiles(dir);
          },
        }
      : undefined;
    this.lastCheckpoint = await saveCheckpoint(
      o.out,
      weights ?? modelWeights(this.setup.config, this.layout as ParamLayout, this.params),
      this.layout,
      this.optimizer.state(),
      state,
    );
    return this.lastCheckpoint;
  }
}

/** Drops log records after `step` (a resumed run redoes those steps and logs them again). */
function truncateLog(file: string, step: number): void {
  if (!fs.existsSync(file)) return;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const keep: string[] = [];
  for (const line of lines) {
    if (!line.trim()) continue;
    try {
      if (JSON.parse(line).step <= step) keep.push(line);
    } catch {
      // a line cut by the kill: dropped
    }
  }
  const tmp = file + '.tmp';
  fs.writeFileSync(tmp, keep.map((l) => l + '\n').join(''));
  fs.renameSync(tmp, file);
}
