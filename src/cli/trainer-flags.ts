// What `openelm train` and `openelm finetune` share: the trainer's flags (optimiser, schedule,
// loop), their parsing into a partial TrainOptions, and Ctrl-C (the first saves a checkpoint after
// the current step, the second quits at once).
import type { OptimizerOptions, ScheduleOptions } from '../train/options.ts';
import { num, type Options, UsageError } from './args.ts';

export const TRAINER_FLAGS = {
  steps: { type: 'string' },
  'batch-size': { type: 'string' },
  'grad-accum': { type: 'string' },
  'seq-len': { type: 'string' },
  lr: { type: 'string' },
  'min-lr': { type: 'string' },
  warmup: { type: 'string' },
  'warmup-init-lr': { type: 'string' },
  schedule: { type: 'string' },
  optimizer: { type: 'string' },
  'weight-decay': { type: 'string' },
  beta1: { type: 'string' },
  beta2: { type: 'string' },
  eps: { type: 'string' },
  momentum: { type: 'string' },
  nesterov: { type: 'boolean' },
  'grad-clip': { type: 'string' },
  'activation-checkpointing': { type: 'boolean' },
  'eval-every': { type: 'string' },
  'eval-batches': { type: 'string' },
  'save-every': { type: 'string' },
  log: { type: 'string' },
  out: { type: 'string', short: 'o' },
  resume: { type: 'boolean' },
  seed: { type: 'string' },
  threads: { type: 'string', short: 't' },
  backend: { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const satisfies Options;

type Values = Record<string, unknown>;
type NumOpts = { int?: boolean; min?: number; max?: number };

/** A flag's number, checked, or undefined when the flag is absent. */
export function flagNum(v: Values, name: string, opts: NumOpts = {}): number | undefined {
  return num(v[name] as string | undefined, name, opts);
}

/** --schedule, --lr, --min-lr, --warmup, --warmup-init-lr: only those given. */
export function scheduleFlags(v: Values): Partial<ScheduleOptions> | undefined {
  const s = {
    name: v.schedule as ScheduleOptions['name'] | undefined,
    lr: flagNum(v, 'lr'),
    minLr: flagNum(v, 'min-lr', { min: 0 }),
    warmup: flagNum(v, 'warmup', { int: true, min: 0 }),
    warmupInitLr: flagNum(v, 'warmup-init-lr', { min: 0 }),
  };
  if (s.name !== undefined && !['constant', 'linear', 'cosine'].includes(s.name))
    throw new UsageError(`--schedule must be constant, linear or cosine, got "${s.name}"`);
  return defined(s);
}

/** --optimizer, --weight-decay, --beta1, --beta2, --eps, --momentum, --nesterov: only those given. */
export function optimizerFlags(v: Values): Partial<OptimizerOptions> | undefined {
  const o = {
    name: v.optimizer as OptimizerOptions['name'] | undefined,
    weightDecay: flagNum(v, 'weight-decay', { min: 0 }),
    beta1: flagNum(v, 'beta1'),
    beta2: flagNum(v, 'beta2'),
    eps: flagNum(v, 'eps'),
    momentum: flagNum(v, 'momentum', { min: 0 }),
    nesterov: v.nesterov as boolean | undefined,
  };
  if (o.name !== undefined && !['adamw', 'sgd'].includes(o.name)) throw new UsageError(`--optimizer must be adamw or sgd, got "${o.name}"`);
  return defined(o);
}

/** The object without its undefined fields; undefined when none is left. */
export function defined<T extends object>(o: T): Partial<T> | undefined {
  const r = Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as Partial<T>;
  return Object.keys(r).length ? r : undefined;
}

/**
 * Ctrl-C while training: the first asks the trainer to save a checkpoint after this step and stop
 * (`stop()` turns true), a second one exits at once (130). `release()` removes the handler.
 */
export function ctrlC(info: (msg: string) => void): { stop: () => boolean; release: () => void } {
  let interrupted = 0;
  const onSigint = () => {
    interrupted++;
    if (interrupted === 1) info('\nCtrl-C: saving a checkpoint after this step (Ctrl-C again to quit now)');
    else process.exit(130);
  };
  process.on('SIGINT', onSigint);
  return { stop: () => interrupted > 0, release: () => process.off('SIGINT', onSigint) };
}
