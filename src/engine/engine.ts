// The engine: many sequences on one model, decoded together (continuous batching).
//
// The model's weights are shared and read-only. Each sequence lives in a slot that owns a KV cache
// from a pool made once (`parallel` caches of the model's context: the memory budget). A request
// waits in a bounded FIFO queue until a slot is free. Every step builds one batch (BatchForward):
// one token for each decoding sequence, then chunks of prompts being prefilled, up to `stepTokens`
// rows, so a long prompt is spread over several steps and never stalls the others (the oldest
// prompt takes a chunk; younger ones join only whole: step()). After each step
// the event loop runs (HTTP, timers, cancellations); sequences join and leave between steps.
//
// Speculative decoding (`speculative` option): each decoding sequence proposes up to k tokens
// (prompt lookup over its own text, or a draft model on its own KV cache, all sequences' drafts
// in one batched draft pass per position), and the step's one target pass checks every draft:
// a sequence's segment is [last token, d1 … dk] with the logits of every row. Each keeps the
// longest prefix the target agrees with plus one token of its own (speculative.ts: the same
// accept / reject rule as `generate`), and its KV cache is cut back to the kept tokens.
//
// Prefix caching: a slot keeps its tokens' keys and values after its sequence ends. A new
// sequence goes into the free slot whose cache shares the longest prefix with its prompt (same
// adapter), or copies that prefix from any slot that has it (the other choices of an `n` request,
// a running chat with the same system prompt), and is fed only the rest.
//
//   const engine = new Engine(model, { parallel: 8 });
//   const seq = engine.submit({ promptIds, maxTokens: 32, sampling: { temperature: 0 } });
//   for await (const ev of seq) console.log(ev.token);
//   console.log(seq.finishReason);

import type { OpenELMConfig } from '../config/config.ts';
import { checkSampling, Sampler, type SamplingOptions } from '../generate/sampler.ts';
import {
  Acceptance,
  bonusToken,
  type Draft,
  draftSeed,
  draftToken,
  judge,
  Policy,
  PromptLookupDrafter,
  type SpeculativeOptions,
  type StepDrafter,
  StepDraftLength,
  verifySeed,
} from '../generate/speculative.ts';
import { BatchForward, type BatchSegment } from '../model/batch.ts';
import type { KVCache } from '../model/kv-cache.ts';
import type { ForwardAdapter } from '../model/layer.ts';
import { ContextLengthError, type OpenELM } from '../model/openelm.ts';
import type { ResponseFormat } from '../serve/params.ts';
import { LogitAdjuster, type LogitAdjustments, type TokenLogprob, tokenLogprob } from './logits.ts';

/** Limits what a sequence may generate next (constrained decoding, e.g. JSON). */
export interface TokenConstraint {
  /** whether the output may continue with this token */
  allows(token: number): boolean;
  /** the token was generated */
  accept(token: number): void;
  /** the output is complete: the sequence ends here */
  done(): boolean;
  /** optional fast path: allowed[t] = allows(t) for every token of the vocabulary */
  fill?(allowed: Uint8Array): void;
}

export interface SequenceRequest {
  /** the prompt's token ids, used as given (BOS included by the caller) */
  promptIds: number[];
  /** most new tokens (0: only the prompt runs, for its logprobs); capped by the context left */
  maxTokens: number;
  sampling?: SamplingOptions;
  adjust?: LogitAdjustments;
  /** token ids that end the sequence (default: the model's EOS); [] to never stop on a token */
  eosIds?: number[];
  /** log-probabilities of each generated token with this many alternatives (undefined: none) */
  logprobs?: number;
  /** also the log-probabilities of the prompt's tokens (an echo request) */
  promptLogprobs?: boolean;
  /** a named adapter registered with the engine, or null for the base model */
  adapter?: string | null;
  constraint?: TokenConstraint;
  /** the response_format the constraint was compiled from: an engine in a worker thread compiles it again there */
  responseFormat?: ResponseFormat;
  signal?: AbortSignal;
  /**
   * false: never speculate for this sequence. Default: it speculates when the engine has a drafter,
   * unless it has a constraint or asks for logprobs (those always decode one token a step).
   */
  speculative?: boolean;
}

export type EngineFinish = 'stop' | 'length' | 'cancelled' | 'error';

/** One generated token. */
export interface EngineToken {
  token: number;
  logprob?: TokenLogprob;
}

export class QueueFullError extends Error {
  constructor(readonly capacity: number) {
    super(`the server is busy: ${capacity} requests are already waiting; retry later`);
    this.name = 'QueueFullError';
  }
}

export interface EngineOptions {
  /** sequences decoded together, each with its own KV cache (default 8) */
  parallel?: number;
  /** requests that may wait for a slot (default 64) */
  maxQueue?: number;
  /** most rows (decode tokens + prompt chunks) in one step (default 64) */
  stepTokens?: number;
  /** KV cache capacity of each slot (default: the model's context) */
  contextLength?: number;
  /**
   * after a step that ended sequences, how long (ms) the next step may wait for requests to take
   * the freed slots, when none wait yet (default 0). A client that sends its next request as soon
   * as one ends reaches the engine a few ms after the step that ended it, when the next step (all
   * of it, tens to hundreds of ms on a CPU) has already begun: waiting that long lets its prompt
   * join that step instead of the one after it. The server uses 10 (`openelm serve --refill-wait`).
   */
  refillWaitMs?: number;
  /** adapters by name, usable per request */
  adapters?: ReadonlyMap<string, ForwardAdapter>;
  /** speculative decoding: a draft model (same vocabulary; its own KV cache per slot) or prompt lookup */
  speculative?: SpeculativeOptions;
  /**
   * 'eager' (default): every slot's KV cache is made up front, so a model too large for the
   * memory fails at once; 'lazy': a slot is made when more sequences run at once than there are
   * slots yet, so the caches held follow the most sequences ever run together (generate's shared engine)
   */
  slots?: 'eager' | 'lazy';
}

interface Slot {
  cache: KVCache;
  /** the draft model's cache for this slot's sequence (speculative decoding with a draft model) */
  draftCache: KVCache | null;
  seq: Sequence | null;
  /** adapter name the cached keys and values were computed with */
  adapter: string | null;
  lastUsed: number;
}

/** A sequence as its caller sees it: iterate it for its tokens; its fields say how it ended. */
export class SequenceStream implements AsyncIterable<EngineToken> {
  finishReason: EngineFinish | null = null;
  error: Error | null = null;
  /** prompt tokens whose keys and values came from the prefix cache */
  cachedTokens = 0;
  /** log-probabilities of prompt tokens 1 .. P-1 (promptLogprobs), in order */
  readonly promptLogprobs: TokenLogprob[] = [];
  readonly outputIds: number[] = [];
  /** ms from submit to the first generated token */
  firstTokenMs = -1;
  readonly submitted = performance.now();

  private readonly queue: EngineToken[] = [];
  private wake: (() => void) | null = null;
  private cancelled = false;

  constructor(private readonly onCancel: (s: SequenceStream) => void) {}

  /** Ends the sequence at the next step boundary (its slot is freed then); idempotent. */
  cancel(): void {
    if (this.cancelled || this.finishReason) return;
    this.cancelled = true;
    this.onCancel(this);
  }

  get isCancelled(): boolean {
    return this.cancelled;
  }

  /** @internal */ emit(t: EngineToken): void {
    if (this.firstTokenMs < 0) this.firstTokenMs = performance.now() - this.submitted;
    this.outputIds.push(t.token);
    this.queue.push(t);
    this.wake?.();
  }

  /** @internal */ finish(reason: EngineFinish, error: Error | null = null): void {
    if (this.finishReason) return;
    this.finishReason = reason;
    this.error = error;
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<EngineToken> {
    for (;;) {
      while (this.queue.length) yield this.queue.shift()!;
      if (this.finishReason) {
        if (this.finishReason === 'error' && this.error) throw this.error;
        return;
      }
      await new Promise<void>((r) => (this.wake = r));
      this.wake = null;
    }
  }

  /** Waits for the end; returns the generated ids. */
  async done(): Promise<number[]> {
    for await (const _ of this);
    return this.outputIds;
  }
}

/** A sequence inside the engine: the stream plus its decoding state. */
export class Sequence extends SequenceStream {
  /** @internal */ fed = 0; // prompt tokens already in the cache
  /** @internal */ pending = -1; // the last generated token, to feed next step
  /** @internal */ sampler: Sampler;
  /** @internal */ adjuster: LogitAdjuster;
  /** @internal */ slot: Slot | null = null;
  /** @internal */ spec: SpecState | null = null;
  /** speculative decoding of this sequence: drafts checked, draft tokens proposed and kept */
  readonly speculative = { rounds: 0, drafted: 0, accepted: 0 };

  constructor(
    readonly req: SequenceRequest,
    vocab: number,
    kernels: ConstructorParameters<typeof Sampler>[2],
    onCancel: (s: Sequence) => void,
  ) {
    super((s) => onCancel(s as Sequence));
    this.sampler = new Sampler(vocab, req.sampling ?? {}, kernels);
    this.sampler.observe(req.promptIds);
    this.adjuster = new LogitAdjuster(req.adjust ?? {});
  }
}

/**
 * What a server needs of an engine: the Engine itself, or one running in a worker thread
 * (src/serve/worker-engine.ts) so the forward pass never blocks the server's event loop.
 */
/** The engine cannot take requests for a while (its worker is being restarted): retry later (HTTP 503). */
export class EngineUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EngineUnavailableError';
  }
}

export interface ServingEngine {
  /** false while the engine cannot take requests (a WorkerEngine restarting its worker); submit then throws EngineUnavailableError */
  readonly ready?: boolean;
  /** times the engine's worker was restarted after it died */
  readonly restarts?: number;
  readonly config: OpenELMConfig;
  readonly capacity: number;
  readonly parallel: number;
  readonly maxQueue: number;
  /** draft tokens per round (0: no speculative decoding) */
  readonly draftTokens: number;
  readonly stats: EngineStats;
  readonly adapterNames: string[];
  submit(req: SequenceRequest): SequenceStream;
  /** sequences that can be submitted now without a QueueFullError */
  room(): number;
  /** resolves when no sequence is running or waiting */
  idle(): Promise<void>;
}

/**
 * Checks a request against an engine's vocabulary, context and adapters: RangeError naming the
 * field, ContextLengthError when the prompt (plus one generated token) does not fit.
 */
export function checkRequest(req: SequenceRequest, vocab: number, capacity: number, adapterNames: readonly string[]): void {
  const P = req.promptIds.length;
  if (P === 0) throw new RangeError('the prompt is empty: give text or at least one token id');
  for (const id of req.promptIds)
    if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${vocab})`);
  if (!(Number.isInteger(req.maxTokens) && req.maxTokens >= 0)) throw new RangeError(`maxTokens must be an integer ≥ 0, got ${req.maxTokens}`);
  if (P + (req.maxTokens > 0 ? 1 : 0) > capacity) throw new ContextLengthError(P + (req.maxTokens > 0 ? 1 : 0), capacity);
  if (req.adapter && !adapterNames.includes(req.adapter))
    throw new RangeError(`no adapter named ${JSON.stringify(req.adapter)} (have: ${adapterNames.join(', ') || 'none'})`);
  checkSampling(req.sampling ?? {});
}

/** A speculating sequence's state: its random streams, its tokens, this round's draft. */
interface SpecState {
  /** the accept / reject test (the target's distribution), seeded seed + 2 as in `generate` */
  policy: Policy;
  /** the draft model's sampling rule, seeded seed + 1 (null: prompt lookup) */
  draftPolicy: Policy | null;
  /** [vocab] prompt and generated tokens (the repetition penalty's set) */
  seen: Uint8Array;
  /** [vocab] seen plus this round's draft tokens */
  draftSeen: Uint8Array;
  /** prompt + generated tokens */
  ctx: number[];
  draft: Draft;
  /** how often its drafts are kept (the step's draft length weighs it) */
  acceptance: Acceptance;
}

export interface EngineStats {
  active: number;
  waiting: number;
  parallel: number;
  steps: number;
  promptTokens: number;
  cachedPromptTokens: number;
  generatedTokens: number;
  /** target passes that checked a draft (one per speculating sequence and step) */
  speculativeRounds: number;
  /** draft tokens proposed */
  draftedTokens: number;
  /** draft tokens the target kept */
  acceptedTokens: number;
  /** the draft length the last step with greedy speculating sequences chose (StepDraftLength; -1: none chosen yet) */
  draftLength: number;
}

/** Counters of an engine with `parallel` slots before its first request. */
export function emptyEngineStats(parallel: number): EngineStats {
  return {
    active: 0,
    waiting: 0,
    parallel,
    steps: 0,
    promptTokens: 0,
    cachedPromptTokens: 0,
    generatedTokens: 0,
    speculativeRounds: 0,
    draftedTokens: 0,
    acceptedTokens: 0,
    draftLength: -1,
  };
}

type Part = {
  slot: Slot;
  seq: Sequence;
  ids: number[];
  logits: 'none' | 'last' | 'all';
  prefillDone: boolean;
  /** draft tokens appended after the decoding token (their rows' logits are checked) */
  drafted: number;
};

const NO_DRAFT: Draft = { tokens: [], probs: [] };

export class Engine implements ServingEngine {
  readonly parallel: number;
  readonly maxQueue: number;
  readonly stepTokens: number;
  readonly capacity: number;
  private readonly slots: Slot[] = [];
  private readonly waiting: Sequence[] = [];
  private readonly batch: BatchForward;
  private readonly work: Float32Array; // [vocab] adjusted logits of one sequence (backend memory)
  private readonly mask: Float32Array; // [vocab]
  private readonly allowed: Uint8Array; // [vocab] what the constraint allows
  private readonly adapters: ReadonlyMap<string, ForwardAdapter>;
  private running: Promise<void> | null = null;
  private clock = 0;
  readonly refillWaitMs: number;
  /** slots freed by the sequences that ended in the last step, and the requests submitted since it ended */
  private ended = 0;
  private arrived = 0;
  /** wakes the loop waiting for requests to refill freed slots */
  private onArrival: (() => void) | null = null;
  /** speculative decoding: draft tokens per round (0: off) and the drafter */
  readonly draftTokens: number;
  private readonly draft: OpenELM | null;
  private readonly draftBatch: BatchForward | null;
  private readonly lookup: PromptLookupDrafter | null;
  /** the draft length of greedy sequences' rounds, chosen each step (null: always draftTokens) */
  private readonly length: StepDraftLength | null;
  /** every sequence's drafts together: a new sequence's prior */
  private readonly acceptance = new Acceptance();
  readonly stats: EngineStats;

  constructor(
    readonly model: OpenELM,
    opts: EngineOptions = {},
  ) {
    const parallel = opts.parallel ?? 8,
      maxQueue = opts.maxQueue ?? 64,
      stepTokens = opts.stepTokens ?? 64;
    if (!(Number.isInteger(parallel) && parallel >= 1 && parallel <= 256)) throw new RangeError(`parallel must be an integer in [1, 256], got ${parallel}`);
    if (!(Number.isInteger(maxQueue) && maxQueue >= 0)) throw new RangeError(`maxQueue must be an integer ≥ 0, got ${maxQueue}`);
    if (!(Number.isInteger(stepTokens) && stepTokens >= parallel))
      throw new RangeError(`stepTokens must be an integer ≥ parallel (${parallel}), got ${stepTokens}`);
    const refillWaitMs = opts.refillWaitMs ?? 0;
    if (!(Number.isFinite(refillWaitMs) && refillWaitMs >= 0 && refillWaitMs <= 1000))
      throw new RangeError(`refillWaitMs must be a number of ms in [0, 1000], got ${refillWaitMs}`);
    this.refillWaitMs = refillWaitMs;
    this.parallel = parallel;
    this.maxQueue = maxQueue;
    this.stepTokens = stepTokens;
    this.capacity = opts.contextLength ?? model.cache.capacity;
    const spec = opts.speculative;
    this.draft = spec?.draft ?? null;
    this.lookup = spec && !spec.draft && spec.promptLookup ? new PromptLookupDrafter() : null;
    this.draftTokens = this.draft ? (spec?.draftTokens ?? 4) : this.lookup ? spec!.promptLookup! : 0;
    if (!(Number.isInteger(this.draftTokens) && this.draftTokens >= 0 && this.draftTokens <= 64))
      throw new RangeError(`speculative: draftTokens / promptLookup must be an integer in [1, 64], got ${this.draftTokens}`);
    const draft = this.draft;
    if (draft) {
      if (draft.config.vocab_size !== model.config.vocab_size)
        throw new RangeError(`the draft model's vocabulary (${draft.config.vocab_size} tokens) differs from the model's (${model.config.vocab_size})`);
      if (draft.cache.capacity < this.capacity)
        throw new RangeError(
          `the draft model's context (${draft.cache.capacity} tokens) is smaller than the engine's (${this.capacity}); give both the same context`,
        );
    }
    if (opts.slots !== 'lazy') for (let i = 0; i < parallel; i++) this.addSlot();
    // draft tokens come on top of the step's budget: a sequence's round never depends on the others
    this.batch = new BatchForward(model, stepTokens + parallel * this.draftTokens);
    // the draft's first pass of a step: the prompt chunks and each decoding sequence's 1-2 new tokens
    this.draftBatch = draft ? new BatchForward(draft, stepTokens + parallel * (this.draftTokens + 2)) : null;
    this.length =
      this.draftTokens > 0 && spec?.adaptive !== false
        ? new StepDraftLength(this.draftTokens, stepTokens + parallel * this.draftTokens, parallel, !draft)
        : null;
    this.work = model.kernels.f32(model.config.vocab_size);
    this.mask = new Float32Array(model.config.vocab_size);
    this.allowed = new Uint8Array(model.config.vocab_size);
    this.adapters = opts.adapters ?? new Map();
    this.stats = emptyEngineStats(parallel);
  }

  get config(): OpenELMConfig {
    return this.model.config;
  }

  /** Names of the adapters requests may ask for. */
  get adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  /**
   * Queues a sequence. Throws ContextLengthError when the prompt (plus one generated token) does
   * not fit a slot's context, QueueFullError when the queue is full, RangeError on bad options.
   */
  submit(req: SequenceRequest): Sequence {
    const V = this.model.config.vocab_size;
    checkRequest(req, V, this.capacity, this.adapterNames);
    if (this.waiting.length >= this.maxQueue && this.slots.length === this.parallel && !this.slots.some((s) => !s.seq)) throw new QueueFullError(this.maxQueue);
    const seq = new Sequence(req, V, this.model.kernels, (s) => this.onCancel(s));
    if (this.draftTokens > 0 && req.speculative !== false && !req.constraint && req.logprobs === undefined && !req.promptLogprobs && req.maxTokens > 1) {
      const o = req.sampling ?? {};
      const seen = new Uint8Array(V);
      for (const t of req.promptIds) seen[t] = 1;
      seq.spec = {
        policy: new Policy(V, o, verifySeed(o.seed)),
        draftPolicy: this.draft ? new Policy(V, o, draftSeed(o.seed)) : null,
        seen,
        draftSeen: new Uint8Array(V),
        ctx: req.promptIds.slice(),
        draft: NO_DRAFT,
        acceptance: new Acceptance(this.acceptance.value),
      };
    }
    if (req.signal) {
      if (req.signal.aborted) {
        seq.finish('cancelled');
        return seq;
      }
      req.signal.addEventListener('abort', () => seq.cancel(), { once: true });
    }
    this.waiting.push(seq);
    this.admit();
    this.arrived++;
    if (this.onArrival && this.arrived >= this.ended) this.onArrival();
    this.kick();
    return seq;
  }

  /** Sequences that can be submitted now without a QueueFullError. */
  room(): number {
    return this.parallel - this.slots.filter((s) => s.seq).length + this.maxQueue - this.waiting.length;
  }

  /** A new slot with its KV caches (all `parallel` at once, or one by one with slots: 'lazy'). */
  private addSlot(): Slot {
    const slot: Slot = {
      cache: this.model.newCache(this.capacity),
      draftCache: this.draft ? this.draft.newCache(this.capacity) : null,
      seq: null,
      adapter: null,
      lastUsed: 0,
    };
    this.slots.push(slot);
    return slot;
  }

  /** Resolves when no sequence is running or waiting. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private onCancel(s: Sequence): void {
    const i = this.waiting.indexOf(s);
    if (i >= 0) {
      this.waiting.splice(i, 1);
      this.counted();
      s.finish('cancelled');
    }
    // a running sequence leaves at the next step boundary (step())
  }

  private kick(): void {
    if (this.running) return;
    this.running = this.loop().finally(() => {
      this.running = null;
    });
  }

  private async loop(): Promise<void> {
    // the first step waits for the event loop's turn, so requests submitted together start together
    await new Promise<void>((r) => setImmediate(r));
    for (;;) {
      this.admit();
      if (this.stats.active === 0) return;
      this.ended = 0;
      this.step();
      this.stats.steps++;
      this.arrived = 0;
      await new Promise<void>((r) => setImmediate(r)); // HTTP, timers and cancellations run between steps
      if (this.refillWaitMs > 0 && this.arrived < this.ended && this.waiting.length === 0 && this.slots.some((s) => s.seq)) await this.refillWait();
    }
  }

  /** Waits until as many requests arrived as the last step ended sequences, or refillWaitMs. */
  private async refillWait(): Promise<void> {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, this.refillWaitMs);
      this.onArrival = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.onArrival = null;
  }

  /** Moves waiting sequences into free slots, FIFO, reusing the longest cached prefix. */
  private admit(): void {
    while (this.waiting.length) {
      const free = this.slots.filter((s) => !s.seq);
      if (free.length === 0) {
        if (this.slots.length === this.parallel) break;
        free.push(this.addSlot());
      }
      const seq = this.waiting.shift()!;
      const ad = seq.req.adapter ?? null,
        prompt = seq.req.promptIds;
      // prefix reuse leaves at least one prompt token to feed (its logits start the generation);
      // an echo request needs every prompt position's logits, so it reuses nothing
      const limit = seq.req.promptLogprobs ? 0 : prompt.length - 1;
      let best: Slot | null = null,
        bestLen = 0;
      for (const s of this.slots) {
        if (s.adapter !== ad && s.cache.length > 0) continue;
        const n = commonPrefix(s.cache.ids, prompt, limit);
        if (n > bestLen || (n === bestLen && n > 0 && !s.seq && best?.seq)) {
          best = s;
          bestLen = n;
        }
      }
      // a free slot that has the prefix, else the least recently used free one (the prefix copied into it)
      const reuse = best !== null && !best.seq;
      const slot = reuse ? best! : free.reduce((a, b) => (b.lastUsed < a.lastUsed ? b : a));
      if (!best) bestLen = 0;
      if (seq.spec && slot.draftCache) {
        // the draft's cache starts where the target's does, so both are fed the same prompt chunks
        const from = best ? best.draftCache! : slot.draftCache;
        bestLen = commonPrefix(from.ids, prompt, bestLen);
        slot.draftCache.copyPrefix(from, bestLen);
      }
      if (!reuse && bestLen > 0) slot.cache.copyPrefix(best!.cache, bestLen);
      slot.cache.truncate(bestLen);
      slot.seq = seq;
      slot.adapter = ad;
      slot.lastUsed = ++this.clock;
      seq.slot = slot;
      seq.fed = bestLen;
      seq.cachedTokens = bestLen;
      this.stats.promptTokens += prompt.length;
      this.stats.cachedPromptTokens += bestLen;
    }
    this.counted();
  }

  private release(slot: Slot): void {
    if (slot.seq) {
      slot.seq.slot = null;
      this.ended++;
    }
    slot.seq = null;
    slot.lastUsed = ++this.clock;
    this.counted();
  }

  /** stats.active and stats.waiting, kept current as sequences come, start and end (what a scrape of /metrics reads) */
  private counted(): void {
    this.stats.active = this.slots.filter((s) => s.seq).length;
    this.stats.waiting = this.waiting.length;
  }

  /** One batched forward pass (after the drafts, when speculating), then the next tokens of every sequence that got logits. */
  private step(): void {
    const parts: Part[] = [];
    let budget = this.stepTokens;
    // cancelled sequences leave first, freeing their slots
    for (const slot of this.slots) {
      const seq = slot.seq;
      if (seq?.isCancelled) {
        seq.finish('cancelled');
        this.release(slot);
      }
    }
    // decoding sequences: one token each (and their draft tokens, below)
    const decoding: Part[] = [];
    for (const slot of this.slots) {
      const seq = slot.seq;
      if (!seq || seq.pending < 0) continue;
      const p: Part = { slot, seq, ids: [seq.pending], logits: 'last', prefillDone: false, drafted: 0 };
      parts.push(p);
      decoding.push(p);
      seq.pending = -1;
      budget--;
    }
    // prefilling sequences, oldest first: the oldest prompt takes a chunk of what is left of the
    // step; a younger one joins only if the rest of it fits, so its first token comes out of this
    // step. A part of a younger prompt would cost this step its time (on a CPU a step costs about
    // its rows), delaying the decoding sequences and the oldest prompt, and give that prompt no
    // token before its next step anyway. Serving 8 streams of 32-token prompts (bench:serve,
    // 270M q8_0, 2 threads): time to first token after the first wave p50 / p95 395 / 557 ms
    // with such parts, 323 / 452-462 without (two runs), same tokens/s.
    const prefilling = this.slots.filter((s) => s.seq && s.seq.fed < s.seq.req.promptIds.length).sort((a, b) => a.seq!.submitted - b.seq!.submitted);
    const chunks: Part[] = [];
    for (const slot of prefilling) {
      if (budget <= 0) break;
      const seq = slot.seq!,
        prompt = seq.req.promptIds;
      if (chunks.length > 0 && prompt.length - seq.fed > budget) continue;
      const n = Math.min(budget, prompt.length - seq.fed);
      const done = seq.fed + n === prompt.length;
      const p: Part = {
        slot,
        seq,
        ids: prompt.slice(seq.fed, seq.fed + n),
        logits: seq.req.promptLogprobs ? 'all' : done ? 'last' : 'none',
        prefillDone: done,
        drafted: 0,
      };
      parts.push(p);
      chunks.push(p);
      seq.fed += n;
      budget -= n;
    }
    if (parts.length === 0) return;
    if (this.draftTokens > 0) {
      try {
        this.propose(decoding, chunks);
      } catch (e) {
        // a failed draft pass: the sequences go on without drafts this step
        for (const p of decoding) if (p.seq.spec) p.seq.spec.draft = NO_DRAFT;
        for (const s of this.slots) s.draftCache?.truncate(0);
        void e;
      }
      for (const p of decoding) {
        const d = p.seq.spec?.draft;
        if (!d?.tokens.length) continue;
        p.ids.push(...d.tokens);
        p.logits = 'all';
        p.drafted = d.tokens.length;
      }
    }
    // segments sharing an adapter side by side: one adapter call per group of rows
    parts.sort((a, b) => (a.seq.req.adapter ?? '').localeCompare(b.seq.req.adapter ?? ''));
    let logits: Float32Array;
    const t0 = performance.now();
    try {
      logits = this.batch.run(
        parts.map((p) => ({
          cache: p.slot.cache,
          ids: p.ids,
          logits: p.logits,
          adapter: p.seq.req.adapter ? this.adapters.get(p.seq.req.adapter)! : null,
        })),
      );
    } catch (e) {
      // a failed pass (cannot happen with checked inputs): fail its sequences, keep serving
      for (const p of parts) {
        p.seq.finish('error', e as Error);
        p.slot.cache.truncate(0);
        this.release(p.slot);
      }
      return;
    }
    this.length?.passed(
      parts.reduce((n, p) => n + p.ids.length, 0),
      performance.now() - t0,
    );
    let keptInStep = 0;
    const V = this.model.config.vocab_size;
    let row = 0;
    for (const p of parts) {
      const seq = p.seq;
      if (p.logits === 'none') continue;
      const n = p.logits === 'all' ? p.ids.length : 1;
      const rows = logits.subarray(row * V, (row + n) * V);
      row += n;
      if (p.drafted > 0) {
        const before = seq.speculative.accepted,
          acceptance = seq.spec!.acceptance;
        this.check(p, rows);
        const kept = seq.speculative.accepted - before;
        acceptance.add(p.drafted, kept);
        this.acceptance.add(p.drafted, kept);
        keptInStep += kept;
        continue;
      }
      if (p.logits === 'all') {
        // prompt logprobs: the row at prompt position i predicts token i + 1
        const start = seq.fed - p.ids.length,
          prompt = seq.req.promptIds,
          k = seq.req.logprobs ?? 0;
        for (let i = 0; i < n; i++) {
          const pos = start + i;
          if (pos + 1 < prompt.length) seq.promptLogprobs.push(tokenLogprob(rows.subarray(i * V, (i + 1) * V), V, prompt[pos + 1], k));
        }
        if (!p.prefillDone) continue;
        this.next(p.slot, seq, rows.subarray((n - 1) * V));
      } else this.next(p.slot, seq, rows);
    }
    if (parts.some((p) => p.drafted > 0)) this.length?.checked(keptInStep);
  }

  /**
   * Fills each speculating decoding sequence's spec.draft. A sequence drafts up to k tokens within
   * its own limits (max tokens, context) only, never the batch's, so its random streams run the
   * same alone or batched. With a draft model the draft caches also take the step's prompt chunks
   * of speculating sequences (no logits), so they hold what the target's caches hold.
   */
  private propose(decoding: Part[], chunks: Part[]): void {
    const k = this.draftTokens;
    let rooms: { p: Part; sp: SpecState; room: number }[] = [];
    for (const p of decoding) {
      const sp = p.seq.spec;
      if (!sp) continue;
      sp.draft = NO_DRAFT;
      // as generate's loop: the target checks 1 + room rows and keeps at most maxTokens
      const room = Math.min(k, p.seq.req.maxTokens - p.seq.outputIds.length - 1, p.slot.cache.capacity - p.slot.cache.length - 1);
      if (room > 0) rooms.push({ p, sp, room });
    }
    if (this.length) {
      // greedy sequences draft the step's length; sampled ones keep k (their random streams
      // must not depend on timing), counted with the step's other rows
      const greedy = rooms.filter((r) => r.sp.policy.greedy),
        others = decoding.length - greedy.length;
      let base = others + chunks.reduce((n, c) => n + c.ids.length, 0);
      for (const r of rooms) if (!r.sp.policy.greedy) base += r.room;
      const length = this.length.choose(
        base,
        others,
        greedy.map((r): StepDrafter => ({ acceptance: r.sp.acceptance.value, room: r.room })),
      );
      if (greedy.length) this.stats.draftLength = length;
      for (const r of greedy) r.room = Math.min(r.room, length);
      rooms = rooms.filter((r) => r.room > 0);
    }
    if (this.lookup) {
      for (const r of rooms) r.sp.draft = this.lookup.propose(r.sp.ctx, r.room);
      return;
    }
    const batch = this.draftBatch;
    if (!batch) return;
    // a step where nobody drafts feeds the draft only the prompts of sampled sequences (they draft
    // every step, and must never wait on a catch-up: their random streams would then depend on the
    // batch); a greedy sequence's draft catches up on its prompt and tokens when it next drafts, so
    // a draft that does not pay costs nothing at all
    const lazy = (c: Part) => this.length !== null && rooms.length === 0 && c.seq.spec!.policy.greedy;
    if (this.length && rooms.length === 0 && chunks.every((c) => !c.seq.spec || lazy(c))) return;
    // first draft pass: prompt chunks, and each drafting sequence's tokens the draft has not seen
    const segs: BatchSegment[] = [];
    const drafting: { p: Part; sp: SpecState; room: number }[] = [];
    let left = batch.maxTokens;
    for (const c of chunks) {
      if (!c.seq.spec || lazy(c)) continue;
      const dc = c.slot.draftCache!;
      const n = commonPrefix(dc.ids, c.seq.req.promptIds, c.seq.fed);
      if (c.seq.fed - n > left) continue; // the draft catches up later
      dc.truncate(n);
      if (n === c.seq.fed) continue;
      segs.push({ cache: dc, ids: c.seq.req.promptIds.slice(n, c.seq.fed), logits: 'none', adapter: null });
      left -= c.seq.fed - n;
    }
    // the drafts nearly caught up first, so one far behind cannot take the pass from the others
    const behind = rooms
      .map((r) => {
        const dc = r.p.slot.draftCache!,
          ctx = r.sp.ctx;
        const n = commonPrefix(dc.ids, ctx, ctx.length - 1);
        dc.truncate(n);
        return { r, dc, ctx, n };
      })
      .sort((a, b) => a.ctx.length - a.n - (b.ctx.length - b.n));
    for (const { r, dc, ctx, n } of behind) {
      if (ctx.length - n > left) {
        // a draft far behind (after steps without drafts, a failed pass) catches up in parts and drafts nothing this step
        if (left > 0) segs.push({ cache: dc, ids: ctx.slice(n, n + left), logits: 'none', adapter: null });
        left = 0;
        continue;
      }
      r.room = Math.min(r.room, dc.capacity - ctx.length); // the draft's cache must hold the k - 1 draft tokens it is fed
      if (r.room <= 0) continue;
      segs.push({ cache: dc, ids: ctx.slice(n), logits: 'last', adapter: null });
      left -= ctx.length - n;
      r.sp.draftSeen.set(r.sp.seen);
      r.sp.draft = { tokens: [], probs: [] };
      drafting.push(r);
    }
    if (segs.length === 0) return;
    const V = this.model.config.vocab_size;
    let t0 = performance.now();
    let logits = batch.run(segs);
    let active = drafting;
    for (let round = 0; ; round++) {
      if (active.length) this.length?.drafted(active.length, performance.now() - t0);
      // logits: one row per sequence still drafting, in order
      active.forEach((r, j) => {
        const { token, q } = draftToken(r.sp.draftPolicy!, logits.subarray(j * V, (j + 1) * V), r.sp.draftSeen);
        r.sp.draft.tokens.push(token);
        r.sp.draft.probs.push(q);
        r.sp.draftSeen[token] = 1;
      });
      active = active.filter((r) => r.room > round + 1);
      if (active.length === 0) return;
      t0 = performance.now();
      logits = batch.run(active.map((r) => ({ cache: r.p.slot.draftCache!, ids: [r.sp.draft.tokens[round]], logits: 'last', adapter: null })));
    }
  }

  /** A decoding sequence's segment [last, d1 … dn] with n + 1 logits rows: keep the agreed draft tokens and one of the target's, cut the cache back. */
  private check(p: Part, rows: Float32Array): void {
    const { slot, seq } = p,
      sp = seq.spec!,
      V = this.model.config.vocab_size;
    const draft = sp.draft,
      n = draft.tokens.length;
    const base = slot.cache.length - 1 - n; // the cache before this step
    this.stats.speculativeRounds++;
    this.stats.draftedTokens += n;
    seq.speculative.rounds++;
    seq.speculative.drafted += n;
    sp.draft = NO_DRAFT;
    if (seq.isCancelled) {
      slot.cache.truncate(base + 1);
      seq.finish('cancelled');
      this.release(slot);
      return;
    }
    for (let i = 0; i <= n; i++) {
      let row = rows.subarray(i * V, (i + 1) * V);
      if (seq.adjuster.active) {
        seq.adjuster.apply(this.work, row, V);
        row = this.work;
      }
      let token: number;
      try {
        token = i < n ? judge(sp.policy, row, draft.tokens[i], draft.probs[i], sp.seen) : bonusToken(sp.policy, row, sp.seen);
      } catch (e) {
        slot.cache.truncate(base + 1 + i);
        seq.finish('error', e as Error);
        this.release(slot);
        return;
      }
      const kept = token < 0;
      if (kept) {
        token = draft.tokens[i];
        this.stats.acceptedTokens++;
        seq.speculative.accepted++;
      }
      // the cache keeps the last token and the i draft tokens before this one
      const goesOn = this.emitToken(slot, seq, token, undefined, base + 1 + i);
      if (!goesOn || !kept) {
        slot.cache.truncate(base + 1 + i);
        return;
      }
    }
  }

  /** Picks a sequence's next token from its logits row, emits it, and decides whether it goes on. */
  private next(slot: Slot, seq: Sequence, row: Float32Array): void {
    const req = seq.req,
      V = this.model.config.vocab_size;
    if (seq.isCancelled) {
      seq.finish('cancelled');
      this.release(slot);
      return;
    }
    if (seq.outputIds.length >= req.maxTokens) {
      seq.finish('length');
      this.release(slot);
      return;
    }
    const eos = req.eosIds ?? [this.model.config.eos_token_id];
    const c = req.constraint;
    let token: number;
    try {
      if (c?.done()) token = eos[0] ?? this.model.config.eos_token_id;
      else {
        let input = row;
        if (seq.adjuster.active) {
          seq.adjuster.apply(this.work, row, V);
          input = this.work;
        }
        token = seq.sampler.sample(input);
        if (c && !c.allows(token)) {
          // mask every token the constraint refuses (EOS too: the output is not complete) and sample again
          if (input !== this.work) this.work.set(row.subarray(0, V));
          const m = this.mask,
            allowed = this.allowed;
          if (c.fill) c.fill(allowed);
          else for (let t = 0; t < V; t++) allowed[t] = c.allows(t) ? 1 : 0;
          let any = false;
          for (let t = 0; t < V; t++) {
            const ok = allowed[t] === 1 && !eos.includes(t);
            m[t] = ok ? 0 : 1;
            any ||= ok;
          }
          if (!any) throw new Error('constrained decoding: no token can continue the output');
          let min = Infinity;
          for (let t = 0; t < V; t++) if (!m[t] && this.work[t] < min) min = this.work[t];
          // a finite floor far below every allowed logit (the sampler refuses ±Inf)
          const floor = Math.max(-3e38, Math.min(min, 0) - 1e30);
          for (let t = 0; t < V; t++) if (m[t]) this.work[t] = floor;
          token = seq.sampler.sample(this.work);
          if (m[token]) throw new Error('constrained decoding: the sampler picked a masked token');
        }
      }
    } catch (e) {
      seq.finish('error', e as Error);
      this.release(slot);
      return;
    }
    this.emitToken(slot, seq, token, req.logprobs !== undefined ? tokenLogprob(row, V, token, req.logprobs) : undefined, slot.cache.length);
  }

  /**
   * A generated token: observed, emitted, and either the sequence's next input (true) or its end
   * (false: EOS, a closed constraint, max tokens, or a full cache; the slot is free then).
   * `cached`: the positions the cache holds before this token is fed.
   */
  private emitToken(slot: Slot, seq: Sequence, token: number, logprob: TokenLogprob | undefined, cached: number): boolean {
    const req = seq.req,
      c = req.constraint;
    const eos = req.eosIds ?? [this.model.config.eos_token_id];
    seq.sampler.observeOne(token);
    seq.adjuster.observe(token);
    if (seq.spec) {
      seq.spec.seen[token] = 1;
      seq.spec.ctx.push(token);
    }
    const isEos = eos.includes(token);
    if (!isEos && !c?.done()) c?.accept(token);
    seq.emit({ token, logprob });
    this.stats.generatedTokens++;
    if (isEos || c?.done()) {
      seq.finish('stop');
      this.release(slot);
      return false;
    } // a closed constraint ends the sequence (even with eosIds [])
    if (seq.outputIds.length >= req.maxTokens || cached >= slot.cache.capacity) {
      seq.finish('length');
      this.release(slot);
      return false;
    }
    seq.pending = token;
    return true;
  }
}

function commonPrefix(a: readonly number[], b: readonly number[], limit: number): number {
  const max = Math.min(a.length, b.length, limit);
  let n = 0;
  while (n < max && a[n] === b[n]) n++;
  return n;
}
