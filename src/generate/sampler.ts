// Choosing the next token from logits, with Hugging Face semantics and order:
// repetition penalty → temperature → top-k → top-p → min-p → sample.
// temperature 0 is plain argmax. All buffers are allocated once per vocabulary size.
import { Rng } from './rng.ts';
import type { Kernels } from '../kernels/types.ts';

export interface SamplingOptions {
  /** 0 = greedy (argmax); default 0.7 */
  temperature?: number;
  /** keep the k most likely tokens (0 = off) */
  topK?: number;
  /** keep the smallest set of tokens whose probability mass reaches p (1 = off) */
  topP?: number;
  /** drop tokens less likely than minP × the most likely one (0 = off) */
  minP?: number;
  /** HF repetition penalty over prompt + generated tokens (1 = off; OpenELM's card suggests 1.2) */
  repetitionPenalty?: number;
  /** seed for reproducible sampling */
  seed?: number;
}

export const DEFAULT_SAMPLING = { temperature: 0.7, topK: 0, topP: 0.9, minP: 0, repetitionPenalty: 1 } as const;

export function checkSampling(o: SamplingOptions): void {
  const bad = (name: string, v: unknown, want: string): never => { throw new RangeError(`${name} must be ${want}, got ${v}`); };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad('temperature', o.temperature, 'a number ≥ 0');
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad('top-k', o.topK, 'an integer ≥ 0');
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad('top-p', o.topP, 'in (0, 1]');
  if (o.minP !== undefined && !(o.minP >= 0 && o.minP <= 1)) bad('min-p', o.minP, 'in [0, 1]');
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad('repetition penalty', o.repetitionPenalty, 'a number > 0');
  if (o.seed !== undefined && !Number.isInteger(o.seed)) bad('seed', o.seed, 'an integer');
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  private readonly rng: Rng;
  private readonly work: Float32Array; // [vocab] penalised / scaled logits, then probabilities
  private readonly idx: Int32Array; // [vocab] candidate token ids
  private readonly seen: Uint8Array; // [vocab] tokens already in the sequence
  private n = 0; // candidates in idx

  /**
   * With `kernels`, greedy picks without a repetition penalty run the backend's argmax straight
   * on the logits, which must then be that backend's memory (as a model's logits are).
   */
  constructor(readonly vocabSize: number, opts: SamplingOptions = {}, private readonly kernels?: Pick<Kernels, 'argmax'>) {
    checkSampling(opts);
    this.temperature = opts.temperature ?? DEFAULT_SAMPLING.temperature;
    this.topK = opts.topK ?? DEFAULT_SAMPLING.topK;
    this.topP = opts.topP ?? DEFAULT_SAMPLING.topP;
    this.minP = opts.minP ?? DEFAULT_SAMPLING.minP;
    this.repetitionPenalty = opts.repetitionPenalty ?? DEFAULT_SAMPLING.repetitionPenalty;
    this.rng = new Rng(opts.seed);
    this.work = new Float32Array(vocabSize);
    this.idx = new Int32Array(vocabSize);
    this.seen = new Uint8Array(vocabSize);
  }

  /** Marks tokens as present in the sequence (for the repetition penalty). */
  observe(ids: ArrayLike<number>): void {
    for (let i = 0; i < ids.length; i++) this.seen[ids[i]] = 1;
  }

  /** Marks one token as present in the sequence. */
  observeOne(id: number): void {
    this.seen[id] = 1;
  }

  /** Forgets the observed tokens. */
  resetObserved(): void {
    this.seen.fill(0);
  }

  /** Picks the next token. `logits` is not modified. */
  sample(logits: Float32Array): number {
    const V = this.vocabSize, w = this.work;
    if (this.temperature === 0 && this.repetitionPenalty === 1 && this.kernels) return this.kernels.argmax(logits, V);
    w.set(logits.subarray(0, V));
    if (this.repetitionPenalty !== 1) {
      const p = this.repetitionPenalty;
      for (let i = 0; i < V; i++) if (this.seen[i]) w[i] = w[i] < 0 ? w[i] * p : w[i] / p;
    }
    if (this.temperature === 0) return argmax(w);
    this.filter();
    // sample from the renormalised candidates
    let mass = 0;
    for (let j = 0; j < this.n; j++) mass += w[this.idx[j]];
    let r = this.rng.next() * mass;
    for (let j = 0; j < this.n; j++) {
      r -= w[this.idx[j]];
      if (r < 0) return this.idx[j];
    }
    return this.idx[this.n - 1];
  }

  /** The tokens sampling can pick from (temperature and filters; temperature must be > 0), most likely first, with their probabilities before renormalisation. */
  candidatesOf(logits: Float32Array): { ids: number[]; probs: number[] } {
    this.work.set(logits.subarray(0, this.vocabSize));
    this.filter();
    const ids = Array.from(this.idx.subarray(0, this.n));
    return { ids, probs: ids.map((i) => this.work[i]) };
  }

  /** work: logits → probabilities; idx[0..n): the surviving tokens. */
  private filter(): void {
    const V = this.vocabSize, w = this.work;
    for (let i = 0; i < V; i++) w[i] /= this.temperature;
    // softmax over all tokens; w becomes probabilities
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (w[i] > max) max = w[i];
    let sum = 0;
    for (let i = 0; i < V; i++) { w[i] = Math.exp(w[i] - max); sum += w[i]; }
    for (let i = 0; i < V; i++) w[i] /= sum;
    this.candidates();
  }

  /**
   * Fills idx[0 .. n) with the tokens that survive top-k, top-p and min-p, most likely first.
   * Sorting 32000 tokens per step is slow, so only tokens above a probability threshold are
   * sorted; the threshold is lowered until the survivors are provably among them.
   */
  private candidates(): void {
    const V = this.vocabSize, w = this.work, idx = this.idx;
    let pmax = 0;
    for (let i = 0; i < V; i++) if (w[i] > pmax) pmax = w[i];
    const filtering = this.topK > 0 || this.topP < 1 || this.minP > 0;
    if (!filtering) {
      for (let i = 0; i < V; i++) idx[i] = i;
      this.n = V;
      return;
    }
    const floor = this.minP * pmax;
    for (let tau = pmax * 1e-3; ; tau *= 1e-3) {
      let n = 0, mass = 0;
      for (let i = 0; i < V; i++) if (w[i] >= tau) { idx[n++] = i; mass += w[i]; }
      // the filters apply in order top-k → top-p → min-p, each within the previous one's survivors,
      // so the first filter in use decides whether this set surely holds all survivors
      const enough = tau < 1e-30 ||
        (this.topK > 0 ? n >= this.topK : this.topP < 1 ? mass >= this.topP : tau <= floor);
      if (!enough) continue;
      sortByProbDesc(idx, n, w);
      if (this.topK > 0 && n > this.topK) {
        // HF keeps ties with the k-th value
        const kth = w[idx[this.topK - 1]];
        let k = this.topK;
        while (k < n && w[idx[k]] === kth) k++;
        n = k;
      }
      if (this.topP < 1) {
        // renormalise over survivors of top-k (HF applies top-p to the top-k-filtered distribution)
        let total = 0;
        for (let j = 0; j < n; j++) total += w[idx[j]];
        if (this.topK === 0) total = 1;
        let cum = 0, keep = n;
        for (let j = 0; j < n; j++) {
          cum += w[idx[j]] / total;
          if (cum >= this.topP) { keep = j + 1; break; }
        }
        n = keep;
      }
      if (this.minP > 0) {
        let keep = 0;
        while (keep < n && w[idx[keep]] >= floor) keep++;
        n = Math.max(1, keep);
      }
      this.n = n;
      return;
    }
  }
}

/** Sorts idx[0..n) by probability, highest first; ties by lower id. */
function sortByProbDesc(idx: Int32Array, n: number, w: Float32Array): void {
  const view = idx.subarray(0, n);
  view.sort((a, b) => (w[b] - w[a]) || (a - b));
}
