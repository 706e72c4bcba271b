// Direct Preference Optimization (Rafailov et al. 2023), the loss Apple tuned the -Instruct models
// with (CoreNet; sigmoid for 1.1B, hinge for 270M, 450M and 3B, β = 0.01 in their recipes).
//
// For a pair with summed response log-probabilities π_c, π_r under the policy and ρ_c, ρ_r under
// the reference model (the base before fine-tuning):
//   h = (π_c − ρ_c) − (π_r − ρ_r)
//   sigmoid: loss = −log σ(β h)          hinge: loss = max(0, 1 − β h)
// averaged over the pairs of a batch. Rewards, as TRL logs them: β (π − ρ) for chosen and rejected,
// their margin, and the fraction of pairs whose chosen reward is the higher.
// The gradient reaches the model through each row's summed log-probability (Backprop's rowCoef):
// ∂loss/∂π_c = ∂loss/∂h, ∂loss/∂π_r = −∂loss/∂h.

export type DpoLossKind = 'sigmoid' | 'hinge';

export interface DpoOptions {
  loss: DpoLossKind;
  beta: number;
}

/** The loss of one pair and its derivative with respect to h. */
export function dpoPair(h: number, o: DpoOptions): { loss: number; dh: number } {
  const bh = o.beta * h;
  if (o.loss === 'sigmoid') {
    // −log σ(x) = softplus(−x), computed without overflow
    const loss = bh > 0 ? Math.log1p(Math.exp(-bh)) : -bh + Math.log1p(Math.exp(bh));
    const sig = 1 / (1 + Math.exp(bh)); // σ(−βh)
    return { loss, dh: -o.beta * sig };
  }
  return 1 - bh > 0 ? { loss: 1 - bh, dh: -o.beta } : { loss: 0, dh: 0 };
}

export interface DpoMetrics {
  loss: number;
  rewards_chosen: number;
  rewards_rejected: number;
  reward_margin: number;
  reward_accuracy: number;
  pairs: number;
}

/**
 * The batch's loss and per-row coefficients (∂loss/∂ row NLL sum) from the policy's row sums.
 * rowNll[2i], rowNll[2i+1]: −π of pair i's chosen and rejected rows; ref[2i], ref[2i+1]: ρ.
 * Pairs whose rows count no tokens (padding) are left out.
 */
export function dpoBatch(rowNll: Float64Array, rowTokens: Int32Array, ref: Float64Array, o: DpoOptions): { metrics: DpoMetrics; coef: Float64Array } {
  const P = rowNll.length / 2,
    coef = new Float64Array(rowNll.length);
  let n = 0;
  for (let i = 0; i < P; i++) if (rowTokens[2 * i] > 0 && rowTokens[2 * i + 1] > 0) n++;
  const m: DpoMetrics = { loss: 0, rewards_chosen: 0, rewards_rejected: 0, reward_margin: 0, reward_accuracy: 0, pairs: n };
  if (n === 0) return { metrics: { ...m, loss: NaN }, coef };
  for (let i = 0; i < P; i++) {
    if (!(rowTokens[2 * i] > 0 && rowTokens[2 * i + 1] > 0)) continue;
    const pc = -rowNll[2 * i],
      pr = -rowNll[2 * i + 1];
    const rc = o.beta * (pc - ref[2 * i]),
      rr = o.beta * (pr - ref[2 * i + 1]);
    const { loss, dh } = dpoPair(pc - ref[2 * i] - (pr - ref[2 * i + 1]), o);
    m.loss += loss / n;
    m.rewards_chosen += rc / n;
    m.rewards_rejected += rr / n;
    m.reward_margin += (rc - rr) / n;
    m.reward_accuracy += (rc > rr ? 1 : 0) / n;
    // row NLL = −π: ∂loss/∂nll_c = −∂loss/∂π_c = −dh/n, ∂loss/∂nll_r = +dh/n
    coef[2 * i] = -dh / n;
    coef[2 * i + 1] = dh / n;
  }
  return { metrics: m, coef };
}
