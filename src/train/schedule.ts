// The learning rate at each optimizer step, as CoreNet computes it.
//
// CoreNet (corenet/engine/default_trainer.py) sets the LR before every micro-batch from
// `curr_iter = train_iterations`, the number of optimizer steps already taken, so the first
// update uses get_lr(curr_iter=0) and, with accumulation, every micro-batch of one step sees the
// same LR. `step` here is that same counter: lrAt(0) is the LR of the first update.
//
// With t = step, W = warmup, M = maxSteps, and P = M − W + 1 (CoreNet's `period`):
//
//   warmup (t < W, all schedules):      warmupInitLr + t · (lr − warmupInitLr) / W
//                                        (lrAt(0) = warmupInitLr; the peak lr is reached at t = W)
//   constant  (CoreNet "fixed"):        lr
//   cosine    (CoreNet "cosine"):       minLr + ½ (lr − minLr) (1 + cos(π (t − W) / P))
//   linear    (CoreNet "polynomial", power 1):
//                                        (lr − minLr) (1 − (t − W) / P) + minLr
//
// The "+ 1" in P is CoreNet's off-by-one: the curve reaches minLr at t = M + 1, not at M. CoreNet's
// loop stops once train_iterations > max_iterations, so it runs M + 1 updates (t = 0 … M) and the
// last one is a hair above minLr (for the 270M recipe: 0.00053 + 1.2e-12). Past t = M + 1 CoreNet's
// cosine would rise again (it is never evaluated there); here it stays at minLr, and so does linear.
//
// CoreNet's update_lr then clamps at 0 and rounds to 8 decimal places (round(lr, 8), Python's
// round: exact binary value, ties to even) before writing the LR into the optimizer; so does lrAt.
import { pyRound } from '../config/scaling.ts';
import type { ScheduleOptions } from './options.ts';

/** The learning rate for optimizer step `step` (0 = the first update). */
export function lrAt(step: number, s: ScheduleOptions): number {
  if (!Number.isInteger(step) || step < 0) throw new RangeError(`lrAt: step must be an integer ≥ 0, got ${step}`);
  // a constant LR without warmup is used exactly as given (rounding to 8 places would turn
  // --lr 1e-9 into 0): the same LR as a plain PyTorch loop with that LR
  if (s.name === 'constant' && !(s.warmup > 0)) return s.lr;
  return pyRound(Math.max(0, rawLr(step, s)), 8);
}

/** CoreNet's get_lr (before update_lr's clamp and rounding). */
function rawLr(t: number, s: ScheduleOptions): number {
  const W = s.warmup > 0 ? s.warmup : 0;
  if (t < W) return s.warmupInitLr + t * ((s.lr - s.warmupInitLr) / W);
  if (s.name === 'constant') return s.lr;
  const P = s.maxSteps - W + 1;
  const k = t - W;
  if (k >= P) return s.minLr;
  if (s.name === 'cosine') return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos((Math.PI * k) / P));
  if (s.name === 'linear') return (s.lr - s.minLr) * (1 - k / P) + s.minLr;
  throw new Error(`lrAt: unknown schedule "${(s as { name: string }).name}"; expected constant, linear or cosine`);
}
