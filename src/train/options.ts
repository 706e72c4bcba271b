// What a training run is: the resolved options the trainer reads. A recipe (CoreNet-style YAML,
// recipe.ts) and the CLI's flags both produce one of these; the trainer never sees YAML or argv.
//
// Defaults are "nothing the flags do not ask for": no warmup, no clipping, no z-loss, constant LR,
// AdamW with CoreNet's betas (0.9, 0.95), eps 1e-8 and weight decay 0.1 on 2-D tensors.

export type ScheduleName = 'constant' | 'linear' | 'cosine';
export type OptimizerName = 'adamw' | 'sgd';

/** The learning-rate schedule (schedule.ts), in CoreNet's terms. */
export interface ScheduleOptions {
  name: ScheduleName;
  /** the peak LR (cosine: scheduler.cosine.max_lr; linear: the LR at the end of warmup) */
  lr: number;
  /** the LR the schedule ends at (cosine: scheduler.cosine.min_lr; CoreNet's recipes use 0.1 × max) */
  minLr: number;
  /** linear warmup iterations from warmupInitLr to lr (0: none) */
  warmup: number;
  warmupInitLr: number;
  /** total optimizer steps the schedule spans (scheduler.max_iterations) */
  maxSteps: number;
}

export interface OptimizerOptions {
  name: OptimizerName;
  /** AdamW β1, β2, eps (CoreNet: optim.adamw.beta1/beta2/eps) */
  beta1: number;
  beta2: number;
  eps: number;
  /** decoupled weight decay (AdamW) or L2 (SGD); never applied to 1-D tensors (norm weights) */
  weightDecay: number;
  /** SGD momentum (optim.sgd.momentum) and Nesterov (optim.sgd.nesterov) */
  momentum: number;
  nesterov: boolean;
}

export interface DataOptions {
  /** text sources: files, folders, .txt/.jsonl/.json(.gz)/.parquet, or 'builtin:NAME' */
  paths: string[];
  /** a JSON array of token-id rows used in order instead of text (tests): row[:-1] in, row[1:] out */
  idsFile?: string;
  /** tokens a sample feeds the model (the sample itself is seqLen + 1 tokens) */
  seqLen: number;
  /** pack texts back to back into full rows (true), or CoreNet's truncate-and-pad per text (false) */
  packing: boolean;
  /** CoreNet's filters: drop texts shorter than this many characters / tokens */
  minChars: number;
  minTokens: number;
  /** fraction of texts held out for validation (always leaves training data) */
  valFraction: number;
}

export interface TrainOptions {
  // ---- the model ----
  /** start from this checkpoint folder (its config and weights) */
  init?: string;
  /** or a new model: a preset name ... */
  preset?: string;
  /** ... or a config.json file */
  modelConfig?: string;
  /** config.json keys set on top of the preset / file (a recipe's model section) */
  modelOverrides?: Record<string, unknown>;

  data: DataOptions;

  // ---- optimisation ----
  /** optimizer steps to run (the schedule's maxSteps unless the recipe says otherwise) */
  steps: number;
  /** sequences per micro-batch */
  batchSize: number;
  /** micro-batches per optimizer step (gradients averaged) */
  gradAccum: number;
  optimizer: OptimizerOptions;
  schedule: ScheduleOptions;
  /** global grad-norm clipping (null: none) */
  gradClip: number | null;
  /** z-loss coefficient (CoreNet: 1e-4; 0: off) */
  zLoss: number;
  /** recompute each layer's activations in the backward pass instead of keeping them */
  activationCheckpointing: boolean;

  // ---- the loop ----
  /** validation loss every N steps (0: never) */
  evalEvery: number;
  /** validation batches per evaluation */
  evalBatches: number;
  /** checkpoint every N steps (0: only at the end) */
  saveEvery: number;
  /** JSONL log path (default: OUT/train.jsonl) */
  log?: string;
  out: string;
  resume: boolean;
  seed: number;
  /** threads for the kernels (default: all cores) */
  threads?: number;
}

export const DEFAULT_OPTIMIZER: OptimizerOptions = {
  name: 'adamw',
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0.1,
  momentum: 0,
  nesterov: false,
};

/** A batch as the model consumes it: B sequences of S tokens. */
export interface Batch {
  batchSize: number;
  seqLen: number;
  /** [B * S] token ids the model reads (pad positions hold any valid id, e.g. 0) */
  inputs: Int32Array;
  /** [B * S] the next token for each input position; IGNORE where the loss skips it (padding) */
  targets: Int32Array;
}

/** Target id of a position excluded from the loss (PyTorch's ignore_index is -100; any negative works here). */
export const IGNORE = -1;
