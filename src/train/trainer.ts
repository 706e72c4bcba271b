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
import type { Kernels } from '../kernels/types.ts';
import type { TensorSource } from '../model/weights.ts';
import { checkpointSource } from '../io/checkpoint-source.ts';
import { Backprop } from './backprop.ts';
import { listCheckpoints, readTrainerState, saveCheckpoint, type TrainerState } from './checkpoint.ts';
import { clipGradNorm, Optimizer } from './optim.ts';
import type { Batch, TrainOptions } from './options.ts';
import { ParamLayout } from './params.ts';
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
  constructor(readonly step: number, what: string, lastCheckpoint: string | null) {
    super(`step ${step}: the ${what} is not finite; stopping without applying this update. ` +
      (lastCheckpoint ? `The last good checkpoint is ${lastCheckpoint}. ` : 'No checkpoint was saved yet. ') +
      'Lower the learning rate (--lr), add --grad-clip or warmup (--warmup), or check the data.');
    this.name = 'NonFiniteLossError';
  }
}

export class Trainer {
  readonly layout: ParamLayout;
  readonly params: Float32Array;
  readonly grads: Float32Array;
  readonly optimizer: Optimizer;
  readonly backprop: Backprop;
  private step = 0;
  private tokens = 0;
  private elapsed = 0;
  private lastCheckpoint: string | null = null;
  private readonly logFile: string;

  constructor(readonly setup: TrainerSetup) {
    const { config, kernels: k, options: o } = setup;
    this.layout = new ParamLayout(config);
    this.params = k.f32(this.layout.size);
    this.grads = k.f32(this.layout.size);
    if (setup.init) this.layout.load(this.params, setup.init, o.init ?? 'checkpoint');
    else this.layout.init(this.params, o.seed);
    this.optimizer = new Optimizer(k, this.layout, o.optimizer);
    this.backprop = new Backprop(config, k, { batchSize: o.batchSize, seqLen: o.data.seqLen, activationCheckpointing: o.activationCheckpointing });
    this.logFile = o.log ?? path.join(o.out, 'train.jsonl');
  }

  get numParameters(): number {
    return numParameters(this.setup.config);
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
    this.layout.load(this.params, checkpointSource(dir), dir);
    loaded.readOptimizer(this.optimizer.buffers, this.layout);
    if (s.optimizer.name !== this.setup.options.optimizer.name) {
      throw new Error(`${dir}: the run used optimizer ${s.optimizer.name}, this one ${this.setup.options.optimizer.name}`);
    }
    this.optimizer.step = s.optimizer.step;
    this.setup.data.restore(s.data);
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
    const { layout, params, grads, backprop } = this;
    const w = layout.weights(params), g = layout.weights(grads);
    const valBatches = o.evalEvery > 0 ? data.validationBatches(o.batchSize, o.evalBatches) : [];
    if (o.evalEvery > 0 && valBatches.length === 0) hooks.onInfo?.('no validation data: val_loss will not be logged');
    fs.mkdirSync(path.dirname(path.resolve(this.logFile)), { recursive: true });
    const log = fs.openSync(this.logFile, 'a');
    let lastLoss = NaN, lastVal: number | undefined;
    try {
      while (this.step < o.steps) {
        const t0 = performance.now();
        const lr = lrAt(this.step, o.schedule);
        grads.fill(0);
        let loss = 0, zl = 0, tokens = 0;
        for (let a = 0; a < o.gradAccum; a++) {
          const r = backprop.step(w, g, data.nextBatch(o.batchSize), o.zLoss, 1 / o.gradAccum);
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
        if (valBatches.length > 0 && (this.step % o.evalEvery === 0 || this.step === o.steps)) {
          rec.val_loss = lastVal = this.validate(valBatches);
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

  /** Mean loss over the validation batches (token-weighted). */
  validate(batches: Batch[]): number {
    const w = this.layout.weights(this.params);
    let sum = 0, n = 0;
    for (const b of batches) {
      const r = this.backprop.loss(w, b, 0);
      if (r.tokens > 0) {
        sum += r.loss * r.tokens;
        n += r.tokens;
      }
    }
    return n > 0 ? sum / n : NaN;
  }

  async save(): Promise<string> {
    const o = this.setup.options;
    const state: TrainerState = {
      format: 'openelm-trainer-state', version: 1, step: this.step, tokens: this.tokens,
      optimizer: { name: o.optimizer.name, step: this.optimizer.step },
      data: this.setup.data.state(), rng: { seed: o.seed }, options: o, elapsed: this.elapsed,
    };
    this.lastCheckpoint = await saveCheckpoint(o.out, this.setup.config, this.layout, this.params, this.optimizer.state(), state);
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
