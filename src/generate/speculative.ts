// Speculative decoding: a cheap drafter proposes k tokens, the target model checks them all in
// one batched forward pass (k + 1 rows: one weight read instead of k + 1), and keeps the longest
// prefix it agrees with plus one token of its own. Decoding is bound by reading the weights, so
// each round costs about one target step and yields 1 .. k + 1 tokens.
//
// Output is the target's: greedy keeps a draft token only when it is the target's argmax (so the
// text is identical to the target alone); sampling uses the standard rule (Leviathan et al. 2023,
// Chen et al. 2023): keep draft token x with probability min(1, p(x) / q(x)), else sample the next
// token from max(0, p − q) renormalised; p and q are the target's and the draft's distributions
// after the same repetition penalty, temperature and top-k / top-p / min-p. Every token then has
// exactly the target's distribution.
//
// Drafters: another model (a smaller OpenELM, or a 4-bit copy of the same one; every OpenELM
// shares the LLaMA-2 vocabulary) with its own KV cache, or prompt lookup (Saxena 2023): the tokens
// that followed the last occurrence of the sequence's final n-gram, free to compute, good when the
// output repeats the prompt (summaries, code edits, extraction).
import type { OpenELM } from '../model/openelm.ts';
import { Rng } from './rng.ts';
import { argmax, DEFAULT_SAMPLING, Sampler, type SamplingOptions } from './sampler.ts';

export interface SpeculativeOptions {
  /** a draft model with the target's vocabulary (its own KV cache is used) */
  draft?: OpenELM;
  /** prompt-lookup decoding: propose this many tokens from an n-gram match (no draft model) */
  promptLookup?: number;
  /** tokens a draft model proposes per round (default 4); with `adaptive`, the most */
  draftTokens?: number;
  /**
   * greedy decoding (default true): each round drafts 0 .. draftTokens tokens (promptLookup
   * tokens), whichever the costs measured so far (a draft step, the model's pass over m tokens, a
   * plain step) and the acceptance seen so far make fastest (DraftLength in `generate`,
   * StepDraftLength for the Engine's batched steps). The text is the model's whatever the length;
   * sampled decoding keeps the fixed length, so its random streams never depend on timing. false:
   * always the full length.
   */
  adaptive?: boolean;
}

export interface SpeculativeStats {
  /** verification passes of the target */
  rounds: number;
  /** draft tokens proposed */
  drafted: number;
  /** draft tokens the target kept */
  accepted: number;
}

/** Proposed tokens; probs[i] is the draft's distribution the i-th token was sampled from (null: picked deterministically). */
export interface Draft {
  tokens: number[];
  probs: (Map<number, number> | null)[];
}

export interface Drafter {
  /** Up to k tokens continuing ctx (the whole sequence so far: prompt and generated tokens). */
  propose(ctx: readonly number[], k: number): Draft;
}

/**
 * The sampling rule as a distribution (for the accept / reject test) rather than a draw: the
 * repetition penalty over the tokens seen, then the Sampler's temperature and filters.
 */
export class Policy {
  readonly greedy: boolean;
  private readonly penalty: number;
  private readonly sampler: Sampler;
  private readonly work: Float32Array; // [vocab] penalised logits of one row
  readonly rng: Rng;

  constructor(
    readonly vocab: number,
    opts: SamplingOptions,
    rngSeed?: number,
  ) {
    this.penalty = opts.repetitionPenalty ?? DEFAULT_SAMPLING.repetitionPenalty;
    this.greedy = (opts.temperature ?? DEFAULT_SAMPLING.temperature) === 0;
    this.sampler = new Sampler(vocab, { ...opts, repetitionPenalty: 1 });
    this.work = new Float32Array(vocab);
    this.rng = new Rng(rngSeed);
  }

  private penalised(row: Float32Array, seen: Uint8Array): Float32Array {
    const V = this.vocab;
    if (this.penalty === 1) return row.subarray(0, V);
    const w = this.work,
      p = this.penalty,
      M = 3.4028234663852886e38;
    w.set(row.subarray(0, V));
    for (let i = 0; i < V; i++) if (seen[i]) w[i] = Math.max(-M, Math.min(M, w[i] < 0 ? w[i] * p : w[i] / p)); // as Sampler.sample
    return w;
  }

  /** The greedy pick (as Sampler.sample with temperature 0). */
  pick(row: Float32Array, seen: Uint8Array): number {
    return argmax(this.penalised(row, seen));
  }

  /** The distribution a sampled token comes from (temperature > 0), renormalised. */
  dist(row: Float32Array, seen: Uint8Array): Map<number, number> {
    const { ids, probs } = this.sampler.candidatesOf(this.penalised(row, seen));
    let total = 0;
    for (const p of probs) total += p;
    const m = new Map<number, number>();
    ids.forEach((id, i) => m.set(id, probs[i] / total));
    return m;
  }

  draw(d: Map<number, number>): number {
    let r = this.rng.next(),
      last = -1;
    for (const [id, p] of d) {
      last = id;
      r -= p;
      if (r < 0) return id;
    }
    return last;
  }
}

/**
 * The draft's token at one position, by the same sampling rule as the target's: the greedy pick
 * (q null), or a draw from its distribution q (kept for the accept / reject test). The model
 * drafter here and the engine's batched drafter both draft with it.
 */
export function draftToken(policy: Policy, logits: Float32Array, seen: Uint8Array): { token: number; q: Map<number, number> | null } {
  if (policy.greedy) return { token: policy.pick(logits, seen), q: null };
  const q = policy.dist(logits, seen);
  return { token: policy.draw(q), q };
}

/** A draft model: greedy or sampled with the same rule as the target, on its own KV cache. */
export class ModelDrafter implements Drafter {
  private readonly policy: Policy;
  private readonly seen: Uint8Array;

  constructor(
    readonly model: OpenELM,
    opts: SamplingOptions,
  ) {
    this.policy = new Policy(model.config.vocab_size, opts, draftSeed(opts.seed));
    this.seen = new Uint8Array(model.config.vocab_size);
  }

  propose(ctx: readonly number[], k: number): Draft {
    const cache = this.model.cache;
    k = Math.min(k, cache.capacity - ctx.length);
    if (k <= 0) return { tokens: [], probs: [] };
    // keep the cached prefix the draft already computed, feed the rest (usually 1 or 2 tokens)
    let n = 0;
    const max = Math.min(cache.ids.length, ctx.length - 1);
    while (n < max && cache.ids[n] === ctx[n]) n++;
    cache.truncate(n);
    let logits = this.model.forward(ctx.slice(n));
    const seen = this.seen;
    seen.fill(0);
    for (const t of ctx) seen[t] = 1;
    const out: Draft = { tokens: [], probs: [] };
    for (let i = 0; i < k; i++) {
      const { token: t, q } = draftToken(this.policy, logits, seen);
      out.tokens.push(t);
      out.probs.push(q);
      seen[t] = 1;
      if (i + 1 < k) logits = this.model.step(t);
    }
    return out;
  }
}

/** The seeds of a sequence's draft and verification random streams (its sampler has `seed`). */
export const draftSeed = (seed: number | undefined) => (seed === undefined ? undefined : seed + 1);
export const verifySeed = (seed: number | undefined) => (seed === undefined ? undefined : seed + 2);

/** Prompt lookup: the tokens after the latest earlier occurrence of the last n tokens (n = maxNgram .. 1). */
export class PromptLookupDrafter implements Drafter {
  constructor(readonly maxNgram = 3) {}

  propose(ctx: readonly number[], k: number): Draft {
    const L = ctx.length;
    for (let n = Math.min(this.maxNgram, L - 1); n >= 1; n--) {
      for (let start = L - n - 1; start >= 0; start--) {
        let j = 0;
        while (j < n && ctx[start + j] === ctx[L - n + j]) j++;
        if (j < n) continue;
        const tokens = ctx.slice(start + n, Math.min(start + n + k, L));
        if (tokens.length) return { tokens, probs: tokens.map(() => null) };
      }
    }
    return { tokens: [], probs: [] };
  }
}

/**
 * The accept / reject test of one draft token d (drawn from q; null: picked deterministically)
 * against the target's logits row at its position: -1 when the target keeps it, else the token
 * the target puts in its place. Greedy keeps d only when it is the target's pick.
 */
export function judge(policy: Policy, row: Float32Array, d: number, q: Map<number, number> | null, seen: Uint8Array): number {
  if (policy.greedy) {
    const g = policy.pick(row, seen);
    return g === d ? -1 : g;
  }
  const p = policy.dist(row, seen);
  const pd = p.get(d) ?? 0,
    qd = q ? (q.get(d) ?? 0) : 1;
  if (policy.rng.next() * qd < pd) return -1;
  // rejected: the next token comes from the part of p that q does not cover
  const rest = new Map<number, number>();
  let total = 0;
  for (const [id, pp] of p) {
    const r = pp - (q ? (q.get(id) ?? 0) : id === d ? 1 : 0);
    if (r > 0) {
      rest.set(id, r);
      total += r;
    }
  }
  if (total <= 0) return policy.draw(p); // p = q up to rounding
  for (const [id, r] of rest) rest.set(id, r / total);
  return policy.draw(rest);
}

/** The target's own token after the last kept draft token (every draft token kept). */
export function bonusToken(policy: Policy, row: Float32Array, seen: Uint8Array): number {
  return policy.greedy ? policy.pick(row, seen) : policy.draw(policy.dist(row, seen));
}

/**
 * Checks a draft against the target's logits rows: rows[i] (i = 0 .. n) follows the draft's first
 * i tokens. Returns how many draft tokens are kept and the target's own next token. `seen` (the
 * repetition penalty's tokens) gets the kept ones.
 */
export function verify(policy: Policy, rows: Float32Array, draft: Draft, seen: Uint8Array): { accepted: number; next: number } {
  const V = policy.vocab,
    n = draft.tokens.length;
  const row = (i: number) => rows.subarray(i * V, (i + 1) * V);
  for (let i = 0; i < n; i++) {
    const d = draft.tokens[i];
    const next = judge(policy, row(i), d, draft.probs[i], seen);
    if (next >= 0) return { accepted: i, next };
    seen[d] = 1;
  }
  return { accepted: n, next: bonusToken(policy, row(n), seen) };
}

/**
 * The decode loop of `generate` with a drafter: yields the target's tokens, the first one sampled
 * by `sampler` from `logits` (as without a draft), then the kept draft tokens and the target's own
 * token of each round. The caller stops it (EOS, stop strings, maxNew); the model's cache always
 * holds exactly the tokens it has keys and values for.
 */
export function* speculativeTokens(
  model: OpenELM,
  sampler: Sampler,
  logits: Float32Array,
  promptIds: readonly number[],
  maxNew: number,
  spec: SpeculativeOptions,
  opts: SamplingOptions,
  stats: SpeculativeStats,
): Generator<number, void, void> {
  const V = model.config.vocab_size;
  const drafter: Drafter = spec.draft ? new ModelDrafter(spec.draft, opts) : new PromptLookupDrafter();
  const k = spec.draft ? (spec.draftTokens ?? 4) : (spec.promptLookup ?? 10);
  const policy = new Policy(V, opts, verifySeed(opts.seed));
  const length = spec.adaptive !== false && policy.greedy ? new DraftLength(k) : null;
  const ctx = promptIds.slice();
  const seen = new Uint8Array(V);
  for (const t of ctx) seen[t] = 1;

  let t = sampler.sample(logits);
  sampler.observeOne(t);
  seen[t] = 1;
  ctx.push(t);
  let emitted = 1;
  yield t;
  while (emitted < maxNew) {
    // t is the last token: in ctx, not yet in the target's cache
    const cache = model.cache;
    const room = Math.min(length ? length.choose() : k, maxNew - emitted - 1, cache.capacity - cache.length - 1);
    const t0 = performance.now();
    const draft = room > 0 ? drafter.propose(ctx, room) : { tokens: [], probs: [] };
    const t1 = performance.now();
    let kept: number[];
    if (draft.tokens.length === 0) {
      t = sampler.sample(model.step(t)); // nothing to check: a plain step
      length?.plain(performance.now() - t1);
      kept = [t];
    } else {
      const base = cache.length;
      const rows = model.forwardAll([t, ...draft.tokens]);
      const t2 = performance.now();
      const { accepted, next } = verify(policy, rows, draft, seen);
      length?.round(draft.tokens.length, t1 - t0, t2 - t1, accepted);
      cache.truncate(base + 1 + accepted);
      stats.rounds++;
      stats.drafted += draft.tokens.length;
      stats.accepted += accepted;
      kept = [...draft.tokens.slice(0, accepted), next];
      t = next;
    }
    for (const x of kept) {
      sampler.observeOne(x);
      seen[x] = 1;
      ctx.push(x);
      emitted++;
      yield x;
    }
  }
}

/**
 * how many plain steps a draft length of 0 waits before one draft token is tried again: at first,
 * and at most (each probe that keeps nothing doubles the wait; one more failure there ends the
 * probing, since each probe makes a draft model catch up on every token since the last one)
 */
const PROBE_EVERY = 16;
const PROBE_EVERY_MAX = 64;
/** the weight the acceptance seen so far keeps per new draft token (recent text counts more) */
const ACCEPTANCE_MEMORY = 0.95;
/** the weight a cost measured before keeps against a new measurement */
const COST_MEMORY = 0.7;

/**
 * Chooses each round's draft length (greedy decoding): the k in 0 .. max that maximises expected
 * tokens per ms, tokensPerRound(a, k) / (k · draft step + the model's pass over k + 1 tokens),
 * a plain step being k = 0 (Leviathan et al. 2023, section 3.1, with measured costs). Costs are
 * running averages of what the rounds took; a pass length not measured yet is taken to cost what
 * the longest shorter one measured costs, so every length that could pay gets tried. The first
 * round drafts max, the second none (so both ends are measured); a length of 0 is probed with one
 * draft token after PROBE_EVERY plain steps, so a drafter that starts agreeing again is noticed
 * (then after 2×, 4× … PROBE_EVERY_MAX while the probes keep nothing, then no more: a draft model
 * catching up on the tokens since its last round costs ~10-20 % of plain decoding on the CPU).
 */
export class DraftLength {
  /** a draft step (size 1) */
  private readonly draftMs = new CostTable(1);
  /** the model's pass over m tokens */
  private readonly passMs: CostTable;
  private readonly accepted = new Acceptance();
  private readonly probe = new Probe();

  constructor(readonly max: number) {
    this.passMs = new CostTable(max + 1);
  }

  /** the acceptance so far (a Beta(1, 1) prior, recent drafts weighted more) */
  get acceptance(): number {
    return this.accepted.value;
  }

  choose(): number {
    const max = this.max,
      plain = this.passMs.at(1),
      draft = this.draftMs.at(1);
    if (Number.isNaN(draft)) return max;
    if (Number.isNaN(plain)) return 0;
    let best = 0,
      bestRate = 1 / plain;
    const a = this.acceptance;
    for (let k = 1; k <= max; k++) {
      const rate = tokensPerRound(a, k) / (k * draft + this.passMs.at(k + 1));
      if (rate > bestRate) {
        best = k;
        bestRate = rate;
      }
    }
    return this.probe.length(best);
  }

  /** a round: k tokens drafted in draftMs, the model's pass over k + 1 tokens in passMs, `accepted` kept */
  round(k: number, draftMs: number, passMs: number, accepted: number): void {
    this.draftMs.add(1, draftMs / k);
    this.passMs.add(k + 1, passMs);
    this.accepted.add(k, accepted);
    this.probe.kept(accepted);
  }

  /** a plain step (nothing drafted) took ms */
  plain(ms: number): void {
    this.passMs.add(1, ms);
  }
}

/** A drafter's acceptance: kept / drafted with a prior worth two tokens, recent drafts weighted more (ACCEPTANCE_MEMORY per token). */
export class Acceptance {
  private kept = 0;
  private drafted = 0;
  constructor(private readonly prior = 0.5) {}

  get value(): number {
    return (this.kept + 2 * this.prior) / (this.drafted + 2);
  }

  /** k tokens drafted, `accepted` of them kept */
  add(k: number, accepted: number): void {
    const decay = ACCEPTANCE_MEMORY ** k;
    this.kept = this.kept * decay + accepted;
    this.drafted = this.drafted * decay + k;
  }
}

/**
 * When a best length of 0 is tried again with one draft token: after PROBE_EVERY plain rounds, then
 * (while the probes keep nothing) 2×, 4× … PROBE_EVERY_MAX as many, then never.
 */
class Probe {
  private idle = 0;
  private every = PROBE_EVERY;
  private probing = false;

  /** the length to draft, given the best one */
  length(best: number): number {
    if (best > 0) this.idle = 0;
    else if (++this.idle >= this.every && this.every <= PROBE_EVERY_MAX) {
      this.idle = 0;
      this.probing = true;
      return 1;
    }
    return best;
  }

  /** a round with drafts kept `kept` of them (a probe that kept nothing doubles the wait) */
  kept(kept: number): void {
    if (this.probing) this.every = kept > 0 ? PROBE_EVERY : 2 * this.every;
    this.probing = false;
  }
}

/**
 * A running average by size, for costs: measured sizes as measured, any other what the longest
 * shorter measured size cost (optimistic, so each size gets tried once; a guess in between would
 * keep a better one never tried).
 */
class CostTable {
  private readonly ms: number[];
  constructor(size: number) {
    this.ms = new Array<number>(size + 1).fill(NaN);
  }
  add(m: number, ms: number): void {
    if (!(m >= 1 && m < this.ms.length && ms >= 0)) return;
    const P = this.ms;
    P[m] = Number.isNaN(P[m]) ? ms : COST_MEMORY * P[m] + (1 - COST_MEMORY) * ms;
  }
  /** the cost of size m (NaN when nothing up to m was measured) */
  at(m: number): number {
    let j = Math.min(m, this.ms.length - 1);
    while (j >= 1 && Number.isNaN(this.ms[j])) j--;
    return j >= 1 ? this.ms[j] : NaN;
  }
}

/** A drafting sequence of a serving step: its acceptance so far and the most it may draft. */
export interface StepDrafter {
  acceptance: number;
  room: number;
}

/**
 * The draft length of a serving step (the Engine's greedy speculating sequences, decoded
 * together): the k in 0 .. max that maximises the step's expected tokens per ms,
 *   (others + Σ_i tokensPerRound(a_i, min(k, room_i))) / (k · a draft pass + the model's pass over base + Σ_i min(k, room_i) rows),
 * a_i sequence i's acceptance, base the step's other rows (prompt chunks, tokens of sequences
 * not drafting), others the tokens those yield. DraftLength's rule for one sequence, with costs
 * kept by size: the model's pass by rows, a draft pass by sequences drafting. The first drafting
 * step drafts max, and a 0 is probed with one draft token after PROBE_EVERY steps (2×, 4× …
 * PROBE_EVERY_MAX while the probes keep nothing, then no more), as DraftLength does.
 */
export class StepDraftLength {
  private readonly pass: CostTable;
  private readonly draft: CostTable;
  private readonly probe = new Probe();

  /** free: drafting costs nothing to speak of (prompt lookup) */
  constructor(
    readonly max: number,
    maxRows: number,
    maxSequences: number,
    private readonly free = false,
  ) {
    this.pass = new CostTable(maxRows);
    this.draft = new CostTable(maxSequences);
  }

  choose(base: number, others: number, seqs: readonly StepDrafter[]): number {
    if (seqs.length === 0) return 0;
    const d = this.free ? 0 : this.draft.at(seqs.length);
    if (Number.isNaN(d)) return this.max;
    const plain = this.pass.at(base + seqs.length);
    if (Number.isNaN(plain)) return 0;
    let best = 0,
      bestRate = (others + seqs.length) / plain;
    for (let k = 1; k <= this.max; k++) {
      let tokens = others,
        rows = base;
      for (const s of seqs) {
        const n = Math.min(k, s.room);
        tokens += tokensPerRound(s.acceptance, n);
        rows += 1 + n;
      }
      const rate = tokens / (k * d + this.pass.at(rows));
      if (rate > bestRate) {
        best = k;
        bestRate = rate;
      }
    }
    return this.probe.length(best);
  }

  /** the model's pass over `rows` rows took ms */
  passed(rows: number, ms: number): void {
    this.pass.add(rows, ms);
  }

  /** a draft pass (one token each) for `sequences` sequences took ms */
  drafted(sequences: number, ms: number): void {
    this.draft.add(sequences, ms);
  }

  /** a step with drafts kept `kept` of them in all */
  checked(kept: number): void {
    this.probe.kept(kept);
  }
}

// ---- what a round is worth (the bench's cost model; Leviathan et al. 2023, section 3.1) ----

/** Expected tokens a round yields when each of k drafts is kept with probability a (independently), the model's own token included. */
export function tokensPerRound(a: number, k: number): number {
  return a >= 1 ? k + 1 : (1 - a ** (k + 1)) / (1 - a);
}

/** The acceptance at which k drafts per round reach `target`× plain decoding, given a round's costs; null if none does. */
export function acceptanceFor(target: number, k: number, draftMs: number, verifyMs: number, stepMs: number): number | null {
  const speedup = (a: number) => (tokensPerRound(a, k) * stepMs) / (k * draftMs + verifyMs);
  if (speedup(1) < target) return null;
  let lo = 0,
    hi = 1;
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    if (speedup(mid) >= target) hi = mid;
    else lo = mid;
  }
  return hi;
}
