// Choosing the next token from logits, with Hugging Face semantics and order:
// repetition penalty → temperature → top-k → top-p → min-p → sample.
// temperature 0 is plain argmax. The vocabulary-sized work (softmax, selecting and sorting the
// candidates) runs on a Kernels backend: the model's (WebAssembly SIMD) when given, else the
// plain-TypeScript reference. Buffers are made once per backend and vocabulary size.

import { RefKernels } from '../kernels/ref.ts';
import type { Kernels } from '../kernels/types.ts';
import { Rng } from './rng.ts';

/** The ops a Sampler uses. */
export type SamplerKernels = Pick<Kernels, 'argmax' | 'softmax' | 'selectDesc' | 'f32' | 'i32'>;

const refKernels = new RefKernels();
/**
 * work and idx per backend and vocabulary size, shared by its samplers: a backend's memory is
 * never freed (WasmKernels allocates from a bump arena), so a sampler per request must not
 * allocate; sampling is synchronous and keeps nothing in them between calls.
 */
const buffers = new WeakMap<object, Map<number, { work: Float32Array; idx: Int32Array }>>();
function buffersFor(k: SamplerKernels, V: number): { work: Float32Array; idx: Int32Array } {
  let byV = buffers.get(k);
  if (!byV) buffers.set(k, (byV = new Map()));
  let b = byV.get(V);
  if (!b) byV.set(V, (b = { work: k.f32(V), idx: k.i32(V) }));
  return b;
}

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

/** A sampling option out of range; `option` is its SamplingOptions key (the CLI maps it to its flag). */
export class SamplingOptionError extends RangeError {
  constructor(
    readonly option: keyof SamplingOptions,
    message: string,
  ) {
    super(message);
    this.name = 'SamplingOptionError';
  }
}

/**
 * The accepted ranges. The repetition penalty is bounded to [1e-3, 1e3]: outside it, dividing a
 * logit by it overflows float32 or flattens every seen token to 0 (HF only asks for > 0).
 */
export const SAMPLING_LIMITS = { maxRepetitionPenalty: 1e3, minRepetitionPenalty: 1e-3 } as const;

/** Throws a SamplingOptionError naming the first option of `o` outside its range. */
export function checkSampling(o: SamplingOptions): void {
  const bad = (key: keyof SamplingOptions, name: string, v: unknown, want: string): never => {
    throw new SamplingOptionError(key, `${name} must be ${want}, got ${typeof v === 'string' ? JSON.stringify(v) : v}`);
  };
  const isNum = (v: unknown): v is number => typeof v === 'number' && !Number.isNaN(v);
  if (o.temperature !== undefined && !(isNum(o.temperature) && o.temperature >= 0 && Number.isFinite(o.temperature)))
    bad('temperature', 'temperature', o.temperature, 'a finite number ≥ 0');
  if (o.topK !== undefined && !(Number.isSafeInteger(o.topK) && o.topK >= 0)) bad('topK', 'topK', o.topK, 'an integer ≥ 0');
  if (o.topP !== undefined && !(isNum(o.topP) && o.topP > 0 && o.topP <= 1)) bad('topP', 'topP', o.topP, 'in (0, 1]');
  if (o.minP !== undefined && !(isNum(o.minP) && o.minP >= 0 && o.minP <= 1)) bad('minP', 'minP', o.minP, 'in [0, 1]');
  const { minRepetitionPenalty: lo, maxRepetitionPenalty: hi } = SAMPLING_LIMITS;
  if (o.repetitionPenalty !== undefined && !(isNum(o.repetitionPenalty) && o.repetitionPenalty >= lo && o.repetitionPenalty <= hi)) {
    bad('repetitionPenalty', 'repetitionPenalty', o.repetitionPenalty, `in [${lo}, ${hi}] (1 = off)`);
  }
  if (o.seed !== undefined && !Number.isSafeInteger(o.seed)) bad('seed', 'seed', o.seed, 'an integer');
}

/**
 * Non-finite logits: the model computed NaN or ±Inf, so no token can be chosen. Generation stops
 * with this instead of emitting token 0 (argmax over NaN) or sampling forever.
 */
export class NonFiniteLogitsError extends Error {
  constructor(
    readonly index: number,
    readonly value: number,
  ) {
    super(
      `the model produced a non-finite logit (${value} for token ${index}): its weights or config hold NaN/Inf or extreme values ` +
        `(check the weights with 'openelm check --model M'; an extreme rope_freq_constant, a NaN quantization scale or an overflowing f16 conversion do this)`,
    );
    this.name = 'NonFiniteLogitsError';
  }
}

/** Throws NonFiniteLogitsError when x[0 .. n) holds NaN or ±Inf. One pass, no allocation. */
export function checkFiniteLogits(x: ArrayLike<number>, n: number): void {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * 0; // NaN exactly when some x[i] is NaN or ±Inf
  if (s === 0) return;
  for (let i = 0; i < n; i++) if (!Number.isFinite(x[i])) throw new NonFiniteLogitsError(i, x[i]);
}

/** Index of the largest value (the first of ties); throws NonFiniteLogitsError on NaN/Inf. */
export function argmax(x: ArrayLike<number>): number {
  checkFiniteLogits(x, x.length);
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

const F32_MAX = 3.4028234663852886e38;

export class Sampler {
  readonly temperature: number;
  readonly topK: number;
  readonly topP: number;
  readonly minP: number;
  readonly repetitionPenalty: number;
  private readonly rng: Rng;
  private readonly work: Float32Array; // [vocab] penalised / scaled logits, then probabilities
  private readonly idx: Int32Array; // [vocab] candidate token ids
  private readonly kernels: SamplerKernels;
  /** greedy picks straight on the logits (only with the model's own backend: its memory) */
  private readonly directArgmax: boolean;
  private readonly seen: Uint8Array; // [vocab] tokens already in the sequence
  private n = 0; // candidates in idx

  /**
   * `kernels`: the backend for the vocabulary-sized work (default: the TypeScript reference). With
   * it, greedy picks without a repetition penalty run its argmax straight on the logits, which
   * must then be that backend's memory (as a model's logits are).
   */
  constructor(
    readonly vocabSize: number,
    opts: SamplingOptions = {},
    kernels?: SamplerKernels,
  ) {
    checkSampling(opts);
    this.temperature = opts.temperature ?? DEFAULT_SAMPLING.temperature;
    this.topK = opts.topK ?? DEFAULT_SAMPLING.topK;
    this.topP = opts.topP ?? DEFAULT_SAMPLING.topP;
    this.minP = opts.minP ?? DEFAULT_SAMPLING.minP;
    this.repetitionPenalty = opts.repetitionPenalty ?? DEFAULT_SAMPLING.repetitionPenalty;
    this.rng = new Rng(opts.seed);
    this.kernels = kernels ?? refKernels;
    this.directArgmax = kernels !== undefined;
    ({ work: this.work, idx: this.idx } = buffersFor(this.kernels, vocabSize));
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

  /**
   * Picks the next token. `logits` is not modified. Throws NonFiniteLogitsError when a logit is
   * NaN or ±Inf (there is no meaningful next token: generation must stop).
   */
  sample(logits: Float32Array): number {
    const V = this.vocabSize,
      w = this.work;
    if (logits.length < V) throw new RangeError(`Sampler.sample: ${logits.length} logits for a vocabulary of ${V}`);
    checkFiniteLogits(logits, V);
    if (this.temperature === 0 && this.repetitionPenalty === 1 && this.directArgmax) return this.kernels.argmax(logits, V);
    w.set(logits.subarray(0, V));
    if (this.repetitionPenalty !== 1) {
      const p = this.repetitionPenalty;
      // clamped to float32's range: a large logit divided by a small penalty must not become Inf
      for (let i = 0; i < V; i++) if (this.seen[i]) w[i] = Math.max(-F32_MAX, Math.min(F32_MAX, w[i] < 0 ? w[i] * p : w[i] / p));
    }
    if (this.temperature === 0) return this.kernels.argmax(w, V);
    this.filter();
    if (this.n === 0) throw new NonFiniteLogitsError(-1, NaN); // unreachable with finite logits; never index idx[-1]
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
    checkFiniteLogits(logits, this.vocabSize);
    this.work.set(logits.subarray(0, this.vocabSize));
    this.filter();
    const ids = Array.from(this.idx.subarray(0, this.n));
    return { ids, probs: ids.map((i) => this.work[i]) };
  }

  /**
   * work: logits → probabilities; idx[0..n): the surviving tokens. The largest logit is
   * subtracted first: softmax divides by the temperature before it subtracts the maximum, and a
   * tiny temperature (1e-39) could turn finite logits into ±Inf and the probabilities into NaN.
   */
  private filter(): void {
    const V = this.vocabSize,
      w = this.work;
    if (this.temperature < 1) {
      let max = -Infinity,
        min = Infinity;
      for (let i = 0; i < V; i++) {
        if (w[i] > max) max = w[i];
        if (w[i] < min) min = w[i];
      }
      // only when x / T could overflow, so ordinary temperatures give the same bits as before
      if (Math.max(max, -min) / this.temperature > 1e37) for (let i = 0; i < V; i++) w[i] -= max; // ≤ 0: -Inf after dividing is fine (exp gives 0)
    }
    const pmax = this.kernels.softmax(w, V, this.temperature);
    if (!(pmax > 0 && pmax <= 1.0001)) throw new NonFiniteLogitsError(-1, pmax);
    this.candidates(pmax);
  }

  /**
   * Fills idx[0 .. n) with the tokens that survive top-k, top-p and min-p, most likely first
   * (pmax: the largest probability). Only tokens above a probability threshold are selected and
   * sorted (selectDesc); the threshold is lowered until the survivors are provably among them.
   */
  private candidates(pmax: number): void {
    const V = this.vocabSize,
      w = this.work,
      idx = this.idx;
    const filtering = this.topK > 0 || this.topP < 1 || this.minP > 0;
    if (!filtering) {
      for (let i = 0; i < V; i++) idx[i] = i;
      this.n = V;
      return;
    }
    const floor = this.minP * pmax;
    // at most 32 rounds: 0.05^32 · pmax is below float32's smallest subnormal, then tau = 0 takes all
    for (let round = 0, tau = pmax * 0.05; ; round++, tau = round < 32 ? tau * 0.05 : 0) {
      let n = this.kernels.selectDesc(w, V, tau, idx),
        mass = 0;
      for (let j = 0; j < n; j++) mass += w[idx[j]];
      // the filters apply in order top-k → top-p → min-p, each within the previous one's survivors,
      // so the first filter in use decides whether this set surely holds all survivors
      const enough = tau < 1e-38 || (this.topK > 0 ? n >= this.topK : this.topP < 1 ? mass >= this.topP : tau <= floor);
      if (!enough) continue;
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
        let cum = 0,
          keep = n;
        for (let j = 0; j < n; j++) {
          cum += w[idx[j]] / total;
          if (cum >= this.topP) {
            keep = j + 1;
            break;
          }
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
