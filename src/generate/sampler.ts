// Choosing the next token from logits, with Hugging Face semantics and order:
// repetition penalty → temperature → top-k → top-p → min-p → sample.
// temperature 0 is plain argmax. The vocabulary-sized work (softmax, selecting and sorting the
// candidates) runs on a Kernels backend: the model's (WebAssembly SIMD) when given, else the
// plain-TypeScript reference. Buffers are made once per backend and vocabulary size.
import { Rng } from './rng.ts';
import type { Kernels } from '../kernels/types.ts';
import { RefKernels } from '../kernels/ref.ts';

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
  constructor(readonly vocabSize: number, opts: SamplingOptions = {}, kernels?: SamplerKernels) {
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

  /** Picks the next token. `logits` is not modified. */
  sample(logits: Float32Array): number {
    const V = this.vocabSize, w = this.work;
    if (this.temperature === 0 && this.repetitionPenalty === 1 && this.directArgmax) return this.kernels.argmax(logits, V);
    w.set(logits.subarray(0, V));
    if (this.repetitionPenalty !== 1) {
      const p = this.repetitionPenalty;
      for (let i = 0; i < V; i++) if (this.seen[i]) w[i] = w[i] < 0 ? w[i] * p : w[i] / p;
    }
    if (this.temperature === 0) return this.kernels.argmax(w, V);
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
    this.candidates(this.kernels.softmax(this.work, this.vocabSize, this.temperature));
  }

  /**
   * Fills idx[0 .. n) with the tokens that survive top-k, top-p and min-p, most likely first
   * (pmax: the largest probability). Only tokens above a probability threshold are selected and
   * sorted (selectDesc); the threshold is lowered until the survivors are provably among them.
   */
  private candidates(pmax: number): void {
    const V = this.vocabSize, w = this.work, idx = this.idx;
    const filtering = this.topK > 0 || this.topP < 1 || this.minP > 0;
    if (!filtering) {
      for (let i = 0; i < V; i++) idx[i] = i;
      this.n = V;
      return;
    }
    const floor = this.minP * pmax;
    for (let tau = pmax * 0.05; ; tau *= 0.05) {
      let n = this.kernels.selectDesc(w, V, tau, idx), mass = 0;
      for (let j = 0; j < n; j++) mass += w[idx[j]];
      // the filters apply in order top-k → top-p → min-p, each within the previous one's survivors,
      // so the first filter in use decides whether this set surely holds all survivors
      const enough = tau < 1e-38 ||
        (this.topK > 0 ? n >= this.topK : this.topP < 1 ? mass >= this.topP : tau <= floor);
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

