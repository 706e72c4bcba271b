// The engine: many sequences on one model, decoded together (continuous batching).
//
// The model's weights are shared and read-only. Each sequence lives in a slot that owns a KV cache
// from a pool made once (`parallel` caches of the model's context: the memory budget). A request
// waits in a bounded FIFO queue until a slot is free. Every step builds one batch (BatchForward):
// one token for each decoding sequence, then chunks of prompts being prefilled, up to `stepTokens`
// rows, so a long prompt is spread over several steps and never stalls the others. After each step
// the event loop runs (HTTP, timers, cancellations); sequences join and leave between steps.
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

import { checkSampling, Sampler, type SamplingOptions } from '../generate/sampler.ts';
import { BatchForward } from '../model/batch.ts';
import type { KVCache } from '../model/kv-cache.ts';
import type { ForwardAdapter } from '../model/layer.ts';
import { ContextLengthError, type OpenELM } from '../model/openelm.ts';
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
  signal?: AbortSignal;
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
  /** adapters by name, usable per request */
  adapters?: ReadonlyMap<string, ForwardAdapter>;
}

interface Slot {
  cache: KVCache;
  seq: Sequence | null;
  /** adapter name the cached keys and values were computed with */
  adapter: string | null;
  lastUsed: number;
}

/** A sequence in the engine: iterate it for its tokens; its fields say how it ended. */
export class Sequence implements AsyncIterable<EngineToken> {
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

  /** @internal */ fed = 0; // prompt tokens already in the cache
  /** @internal */ pending = -1; // the last generated token, to feed next step
  /** @internal */ sampler: Sampler;
  /** @internal */ adjuster: LogitAdjuster;
  /** @internal */ slot: Slot | null = null;
  private readonly queue: EngineToken[] = [];
  private wake: (() => void) | null = null;
  private cancelled = false;

  constructor(
    readonly req: SequenceRequest,
    vocab: number,
    kernels: ConstructorParameters<typeof Sampler>[2],
    private readonly onCancel: (s: Sequence) => void,
  ) {
    this.sampler = new Sampler(vocab, req.sampling ?? {}, kernels);
    this.sampler.observe(req.promptIds);
    this.adjuster = new LogitAdjuster(req.adjust ?? {});
  }

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

export interface EngineStats {
  active: number;
  waiting: number;
  parallel: number;
  steps: number;
  promptTokens: number;
  cachedPromptTokens: number;
  generatedTokens: number;
}

export class Engine {
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
    this.parallel = parallel;
    this.maxQueue = maxQueue;
    this.stepTokens = stepTokens;
    this.capacity = opts.contextLength ?? model.cache.capacity;
    for (let i = 0; i < parallel; i++) this.slots.push({ cache: model.newCache(this.capacity), seq: null, adapter: null, lastUsed: 0 });
    this.batch = new BatchForward(model, stepTokens);
    this.work = model.kernels.f32(model.config.vocab_size);
    this.mask = new Float32Array(model.config.vocab_size);
    this.allowed = new Uint8Array(model.config.vocab_size);
    this.adapters = opts.adapters ?? new Map();
    this.stats = { active: 0, waiting: 0, parallel, steps: 0, promptTokens: 0, cachedPromptTokens: 0, generatedTokens: 0 };
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
    const P = req.promptIds.length;
    if (P === 0) throw new RangeError('the prompt is empty: give text or at least one token id');
    for (const id of req.promptIds)
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${V})`);
    if (!(Number.isInteger(req.maxTokens) && req.maxTokens >= 0)) throw new RangeError(`maxTokens must be an integer ≥ 0, got ${req.maxTokens}`);
    if (P + (req.maxTokens > 0 ? 1 : 0) > this.capacity) throw new ContextLengthError(P + (req.maxTokens > 0 ? 1 : 0), this.capacity);
    if (req.adapter && !this.adapters.has(req.adapter))
      throw new RangeError(`no adapter named ${JSON.stringify(req.adapter)} (have: ${this.adapterNames.join(', ') || 'none'})`);
    checkSampling(req.sampling ?? {});
    if (this.waiting.length >= this.maxQueue && !this.slots.some((s) => !s.seq)) throw new QueueFullError(this.maxQueue);
    const seq = new Sequence(req, V, this.model.kernels, (s) => this.onCancel(s));
    if (req.signal) {
      if (req.signal.aborted) {
        seq.finish('cancelled');
        return seq;
      }
      req.signal.addEventListener('abort', () => seq.cancel(), { once: true });
    }
    this.waiting.push(seq);
    this.kick();
    return seq;
  }

  /** Sequences that can be submitted now without a QueueFullError. */
  room(): number {
    return this.slots.filter((s) => !s.seq).length + this.maxQueue - this.waiting.length;
  }

  /** Resolves when no sequence is running or waiting. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private onCancel(s: Sequence): void {
    const i = this.waiting.indexOf(s);
    if (i >= 0) {
      this.waiting.splice(i, 1);
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
    for (;;) {
      this.admit();
      this.stats.active = this.slots.filter((s) => s.seq).length;
      this.stats.waiting = this.waiting.length;
      if (this.stats.active === 0) return;
      this.step();
      this.stats.steps++;
      await new Promise<void>((r) => setImmediate(r)); // HTTP, timers and cancellations run between steps
    }
  }

  /** Moves waiting sequences into free slots, FIFO, reusing the longest cached prefix. */
  private admit(): void {
    while (this.waiting.length) {
      const free = this.slots.filter((s) => !s.seq);
      if (free.length === 0) return;
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
      let slot: Slot;
      if (best && !best.seq) slot = best;
      else {
        // the least recently used free slot; copy the prefix into it from the running one
        slot = free.reduce((a, b) => (b.lastUsed < a.lastUsed ? b : a));
        if (best && bestLen > 0) slot.cache.copyPrefix(best.cache, bestLen);
        else bestLen = 0;
      }
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
  }

  private release(slot: Slot): void {
    if (slot.seq) slot.seq.slot = null;
    slot.seq = null;
    slot.lastUsed = ++this.clock;
  }

  /** One batched forward pass, then sampling for every sequence that got logits. */
  private step(): void {
    type Part = { slot: Slot; seq: Sequence; ids: number[]; logits: 'none' | 'last' | 'all'; prefillDone: boolean };
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
    // decoding sequences: one token each
    for (const slot of this.slots) {
      const seq = slot.seq;
      if (!seq || seq.pending < 0) continue;
      parts.push({ slot, seq, ids: [seq.pending], logits: 'last', prefillDone: false });
      seq.pending = -1;
      budget--;
    }
    // prefilling sequences, oldest first: chunks of their prompts within what is left of the step
    const prefilling = this.slots.filter((s) => s.seq && s.seq.fed < s.seq.req.promptIds.length).sort((a, b) => a.seq!.submitted - b.seq!.submitted);
    for (const slot of prefilling) {
      if (budget <= 0) break;
      const seq = slot.seq!,
        prompt = seq.req.promptIds;
      const n = Math.min(budget, prompt.length - seq.fed);
      const done = seq.fed + n === prompt.length;
      parts.push({ slot, seq, ids: prompt.slice(seq.fed, seq.fed + n), logits: seq.req.promptLogprobs ? 'all' : done ? 'last' : 'none', prefillDone: done });
      seq.fed += n;
      budget -= n;
    }
    if (parts.length === 0) return;
    // segments sharing an adapter side by side: one adapter call per group of rows
    parts.sort((a, b) => (a.seq.req.adapter ?? '').localeCompare(b.seq.req.adapter ?? ''));
    let logits: Float32Array;
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
    const V = this.model.config.vocab_size;
    let row = 0;
    for (const p of parts) {
      const seq = p.seq;
      if (p.logits === 'none') continue;
      if (p.logits === 'all') {
        // prompt logprobs: the row at prompt position i predicts token i + 1
        const start = seq.fed - p.ids.length,
          prompt = seq.req.promptIds,
          k = seq.req.logprobs ?? 0;
        for (let i = 0; i < p.ids.length; i++) {
          const pos = start + i;
          if (pos + 1 < prompt.length) seq.promptLogprobs.push(tokenLogprob(logits.subarray((row + i) * V, (row + i + 1) * V), V, prompt[pos + 1], k));
        }
        row += p.ids.length;
        if (!p.prefillDone) continue;
        this.next(p.slot, seq, logits.subarray((row - 1) * V, row * V));
      } else {
        this.next(p.slot, seq, logits.subarray(row * V, (row + 1) * V));
        row++;
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
    seq.sampler.observeOne(token);
    seq.adjuster.observe(token);
    const isEos = eos.includes(token);
    if (!isEos && !c?.done()) c?.accept(token);
    seq.emit({ token, logprob: req.logprobs !== undefined ? tokenLogprob(row, V, token, req.logprobs) : undefined });
    this.stats.generatedTokens++;
    if (isEos || c?.done()) {
      seq.finish('stop');
      this.release(slot);
      return;
    } // a closed constraint ends the sequence (even with eosIds [])
    if (seq.outputIds.length >= req.maxTokens || slot.cache.length >= slot.cache.capacity) {
      seq.finish('length');
      this.release(slot);
      return;
    }
    seq.pending = token;
  }
}

function commonPrefix(a: readonly number[], b: readonly number[], limit: number): number {
  const max = Math.min(a.length, b.length, limit);
  let n = 0;
  while (n < max && a[n] === b[n]) n++;
  return n;
}
