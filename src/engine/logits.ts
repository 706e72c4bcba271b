// What happens to one sequence's logits between the model and the sampler, and what is read off
// them: OpenAI's logit_bias and presence / frequency penalties, and log-probabilities (the
// chosen token's and the most likely ones). All on the raw logits row; no allocation per token
// apart from the small top-k result.

/** OpenAI's penalties and biases: logit[t] += bias[t] − presence·[count[t] > 0] − frequency·count[t]. */
export interface LogitAdjustments {
  /** token id → bias added to its logit, in [-100, 100]; -100 bans, 100 forces in practice */
  logitBias?: ReadonlyMap<number, number>;
  /** subtracted once from every token already generated, [-2, 2] */
  presencePenalty?: number;
  /** subtracted per occurrence among the generated tokens, [-2, 2] */
  frequencyPenalty?: number;
}

/** Tracks the generated tokens' counts and applies the adjustments into a work buffer. */
export class LogitAdjuster {
  private readonly counts = new Map<number, number>();
  readonly active: boolean;

  constructor(readonly adj: LogitAdjustments) {
    this.active = (adj.logitBias?.size ?? 0) > 0 || !!adj.presencePenalty || !!adj.frequencyPenalty;
  }

  /** A generated token (the penalties count generated tokens, as OpenAI's do). */
  observe(id: number): void {
    this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
  }

  /** out[0 .. V) ← logits adjusted. */
  apply(out: Float32Array, logits: Float32Array, V: number): void {
    out.set(logits.subarray(0, V));
    const { logitBias, presencePenalty = 0, frequencyPenalty = 0 } = this.adj;
    if (logitBias) for (const [id, b] of logitBias) if (id < V) out[id] += b;
    if (presencePenalty || frequencyPenalty) {
      for (const [id, c] of this.counts) out[id] -= presencePenalty + frequencyPenalty * c;
    }
  }
}

/** log softmax(row)[i] needs the row's max and log Σ exp(x − max): its log-normaliser. */
export function logNormalizer(row: Float32Array, V: number): number {
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(row[i] - max);
  return max + Math.log(sum);
}

/** The k most likely tokens of a row with their log-probabilities (lse: logNormalizer), most likely first; ties: lower id first. */
export function topLogprobs(row: Float32Array, V: number, k: number, lse: number): [number, number][] {
  if (k <= 0) return [];
  const ids: number[] = [];
  for (let i = 0; i < V; i++) {
    const v = row[i];
    if (ids.length === k && v <= row[ids[k - 1]]) continue;
    let j = ids.length === k ? k - 1 : ids.length;
    if (ids.length < k) ids.push(i);
    while (j > 0 && row[ids[j - 1]] < v) {
      ids[j] = ids[j - 1];
      j--;
    }
    ids[j] = i;
  }
  return ids.map((i) => [i, row[i] - lse]);
}

/** One position's log-probability record: the token there, its logprob, and the top alternatives. */
export interface TokenLogprob {
  token: number;
  logprob: number;
  top: [number, number][];
}

export function tokenLogprob(row: Float32Array, V: number, token: number, k: number): TokenLogprob {
  const lse = logNormalizer(row, V);
  return { token, logprob: row[token] - lse, top: topLogprobs(row, V, k, lse) };
}
