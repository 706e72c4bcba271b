// Optimizers over the flat parameter buffer (params.ts), as CoreNet configures PyTorch's:
// AdamW (decoupled weight decay) and SGD (momentum, Nesterov, L2 decay), decay skipped on 1-D
// tensors (norm weights), and global grad-norm clipping as torch.nn.utils.clip_grad_norm_.
import type { Kernels } from '../kernels/types.ts';
import type { OptimizerOptions } from './options.ts';
import type { FlatLayout } from './params.ts';

/** The optimizer's state that a checkpoint must keep for an exact resume. */
export interface OptimizerState {
  /** updates done so far (AdamW's bias correction counts from 1) */
  step: number;
  /** named flat buffers: AdamW 'exp_avg', 'exp_avg_sq'; SGD 'momentum_buffer' */
  buffers: Record<string, Float32Array>;
}

export class Optimizer {
  step = 0;
  readonly buffers: Record<string, Float32Array> = {};

  constructor(
    readonly kernels: Kernels,
    readonly layout: FlatLayout,
    readonly opts: OptimizerOptions,
  ) {
    if (opts.name === 'adamw') {
      this.buffers.exp_avg = kernels.f32(layout.size);
      this.buffers.exp_avg_sq = kernels.f32(layout.size);
    } else if (opts.name === 'sgd') {
      if (opts.momentum > 0) this.buffers.momentum_buffer = kernels.f32(layout.size);
    } else {
      throw new Error(`unknown optimizer '${(opts as { name: string }).name}', expected adamw or sgd`);
    }
  }

  /** One update of params from grads at learning rate lr. */
  update(params: Float32Array, grads: Float32Array, lr: number): void {
    this.step++;
    const o = this.opts,
      k = this.kernels;
    if (o.name === 'adamw') {
      const m = this.buffers.exp_avg,
        v = this.buffers.exp_avg_sq;
      for (const t of this.layout.tensors) {
        const a = t.offset,
          b = a + t.size;
        k.adamw(
          params.subarray(a, b),
          grads.subarray(a, b),
          m.subarray(a, b),
          v.subarray(a, b),
          t.size,
          lr,
          o.beta1,
          o.beta2,
          o.eps,
          t.decay ? o.weightDecay : 0,
          this.step,
        );
      }
      return;
    }
    // torch.optim.SGD: g += wd·p; buf = g (first step) or momentum·buf + g; g = g + momentum·buf (Nesterov) or buf; p -= lr·g
    const f = Math.fround,
      buf = this.buffers.momentum_buffer;
    const mom = f(o.momentum),
      negLr = f(-lr);
    for (const t of this.layout.tensors) {
      const wd = f(t.decay ? o.weightDecay : 0);
      for (let i = t.offset, end = t.offset + t.size; i < end; i++) {
        let g = grads[i];
        if (wd !== 0) g = f(g + f(wd * params[i]));
        if (buf) {
          const bi = this.step === 1 ? g : f(f(mom * buf[i]) + g);
          buf[i] = bi;
          g = o.nesterov ? f(g + f(mom * bi)) : bi;
        }
        params[i] = f(params[i] + f(negLr * g));
      }
    }
  }

  state(): OptimizerState {
    return { step: this.step, buffers: this.buffers };
  }

  /** Restores from a checkpoint's state (the buffers are copied into ours). */
  restore(s: OptimizerState, where = 'optimizer state'): void {
    for (const name of Object.keys(this.buffers)) {
      const b = s.buffers[name];
      if (!b) throw new Error(`${where}: buffer "${name}" is missing (was the run started with another optimizer?)`);
      if (b.length !== this.buffers[name].length) throw new Error(`${where}: buffer "${name}" has ${b.length} values, expected ${this.buffers[name].length}`);
      this.buffers[name].set(b);
    }
    this.step = s.step;
  }
}

/**
 * The global L2 norm of all gradients, then, when maxNorm is given, the gradients scaled by
 * maxNorm / (norm + 1e-6) if that is below 1 (torch.nn.utils.clip_grad_norm_). Returns the norm
 * before clipping.
 */
export function clipGradNorm(k: Kernels, grads: Float32Array, layout: FlatLayout, maxNorm: number | null): number {
  // per-tensor norms in f32, then the norm of the norms, as PyTorch's clip_grad_norm_ does
  let total = 0;
  for (const t of layout.tensors) {
    const n = Math.fround(Math.sqrt(k.sumSquares(grads.subarray(t.offset, t.offset + t.size), t.size)));
    total += n * n;
  }
  const norm = Math.fround(Math.sqrt(total));
  if (maxNorm !== null && Number.isFinite(norm)) {
    const coef = Math.fround(maxNorm / Math.fround(norm + 1e-6));
    if (coef < 1) k.scale(grads, layout.size, coef);
  }
  return norm;
}
