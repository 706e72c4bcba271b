// Log-likelihood of continuations, the lm-evaluation-harness way (HFLM with add_bos_token=True):
//
//   context' , continuation' = context with its trailing whitespace moved onto the continuation
//   context tokens      = [BOS] + encode(context')
//   continuation tokens = encode(context' + continuation')[len(encode(context')):]
//   loglik   = Σ log p(continuation token t | everything before it)
//   is_greedy = every continuation token is the argmax of its row
//
// The model reads (context + continuation)[:-1], left-truncated to the context window as the
// harness truncates. Requests of one item usually share their context: it is run once, and the
// choices are scored from its KV cache (several choices in one batched pass: BatchForward's
// branches, segments with keep: false).
// What stays in the cache after an item is reused by the next item as far as the tokens agree
// (a few-shot prefix is computed once for the whole task).

import { BatchForward, type BatchSegment } from '../model/batch.ts';
import type { KVCache } from '../model/kv-cache.ts';
import type { OpenELM } from '../model/openelm.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { pyRstrip } from './pystr.ts';

/** Token ids of one request: the context (BOS first) and the continuation to score. */
export interface LoglikRequest {
  context: number[];
  continuation: number[];
}

export interface LoglikResult {
  /** Σ log p over the continuation tokens (natural log) */
  loglik: number;
  /** every continuation token was the model's argmax */
  isGreedy: boolean;
  /** continuation tokens scored */
  tokens: number;
}

/**
 * The harness's `_encode_pair` with BOS: trailing whitespace of the context moves to the
 * continuation, the continuation's tokens are what encoding the whole adds after the context's
 * tokens. An empty context becomes [BOS] with the continuation encoded alone (the harness's
 * `prefix_token_id` case).
 */
export function encodePair(tokenizer: Tokenizer, context: string, continuation: string): LoglikRequest {
  if (context === '') {
    const cont = tokenizer.encode(continuation);
    // the harness drops a leading BOS of the continuation in favour of its own
    return cont[0] === tokenizer.bosId ? { context: cont.slice(0, 1), continuation: cont.slice(1) } : { context: [tokenizer.bosId], continuation: cont };
  }
  const trimmed = pyRstrip(context);
  if (trimmed.length < context.length) {
    continuation = context.slice(trimmed.length) + continuation;
    context = trimmed;
  }
  const whole = tokenizer.encode(context + continuation, { bos: true });
  const ctx = tokenizer.encode(context, { bos: true });
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/** log softmax(row)[target] in f64 (max subtracted) and whether target is the row's argmax (first on ties). */
export function tokenLogprob(logits: Float32Array, offset: number, vocab: number, target: number): { logprob: number; greedy: boolean } {
  let max = -Infinity,
    arg = 0;
  for (let j = 0; j < vocab; j++) {
    const v = logits[offset + j];
    if (v > max) {
      max = v;
      arg = j;
    }
  }
  let sum = 0;
  for (let j = 0; j < vocab; j++) sum += Math.exp(logits[offset + j] - max);
  return { logprob: logits[offset + target] - max - Math.log(sum), greedy: arg === target };
}

export interface ScorerOptions {
  /**
   * Tokens of choices run together in one batched pass after their shared context (default 128).
   * 1 runs each choice on its own (the plain path, one forward per choice).
   */
  batchTokens?: number;
  /**
   * Items scoreMany runs together (default 4), each in its own KV cache: their contexts share
   * passes, then all their choices do, so short items fill a pass that one item would leave mostly
   * empty. 1 scores item by item.
   */
  docsPerPass?: number;
}

/** Counters for throughput. */
export interface ScorerStats {
  /** requests scored */
  requests: number;
  /** Σ over requests of the tokens the harness would feed the model for it (context + continuation - 1) */
  requestTokens: number;
  /** tokens that actually went through the model (shared prefixes once) */
  modelTokens: number;
  /** continuation tokens scored */
  continuationTokens: number;
}

interface Prepared {
  full: number[];
  /** full minus its last token: what the model reads */
  input: number[];
  /** the continuation starts at full[ctxLen] */
  ctxLen: number;
}

export class LoglikScorer {
  readonly stats: ScorerStats = { requests: 0, requestTokens: 0, modelTokens: 0, continuationTokens: 0 };
  private readonly batchTokens: number;
  /** items scoreMany runs together */
  readonly docsPerPass: number;
  private branch: BatchForward | null = null;
  /** scoreMany's KV caches, one per item of a call, made on first use; each keeps its last item's prefix */
  private readonly caches: KVCache[] = [];

  constructor(
    readonly model: OpenELM,
    opts: ScorerOptions = {},
  ) {
    const b = opts.batchTokens ?? 128;
    if (!(Number.isInteger(b) && b >= 1)) throw new RangeError(`batchTokens must be a positive integer, got ${b}`);
    this.batchTokens = b;
    const d = opts.docsPerPass ?? 4;
    if (!(Number.isInteger(d) && d >= 1)) throw new RangeError(`docsPerPass must be a positive integer, got ${d}`);
    this.docsPerPass = d;
  }

  /**
   * Scores several items (each a list of requests, usually one document's choices) and returns
   * their results in order, exactly as score() would item by item up to rounding (batched rows
   * sum in another order). Up to docsPerPass items run together, each in its own KV cache: first
   * the parts of their contexts that the caches do not hold yet, packed into passes of at most
   * batchTokens tokens, then all their choices as branches of their contexts, packed the same way.
   * An item with a choice longer than batchTokens is scored on its own by score().
   */
  scoreMany(items: readonly (readonly LoglikRequest[])[]): LoglikResult[][] {
    const out: LoglikResult[][] = [];
    if (this.docsPerPass === 1 || this.batchTokens === 1) {
      for (const it of items) out.push(this.score(it));
      return out;
    }
    for (let i0 = 0; i0 < items.length; i0 += this.docsPerPass) {
      const group = items.slice(i0, i0 + this.docsPerPass);
      out.push(...this.scoreTogether(group));
    }
    return out;
  }

  private scoreTogether(items: readonly (readonly LoglikRequest[])[]): LoglikResult[][] {
    const model = this.model,
      V = model.config.vocab_size,
      T = this.batchTokens;
    const results: LoglikResult[][] = items.map(() => []);
    // the items that fit the batched path, each with its cache, prepared requests and shared prefix P
    const work: { item: number; cache: KVCache; prep: Prepared[]; P: number }[] = [];
    for (let i = 0; i < items.length; i++) {
      if (items[i].length === 0) continue;
      while (this.caches.length <= work.length) this.caches.push(model.newCache());
      const cache = this.caches[work.length];
      const prep = this.prepare(items[i], cache.capacity);
      const P = sharedPrefix(prep);
      if (prep.some((p) => p.input.length - P > T)) {
        results[i] = this.score(items[i]); // a long choice: the plain path
        continue;
      }
      work.push({ item: i, cache, prep, P });
    }
    this.branch ??= new BatchForward(model, T);
    // contexts: what each cache lacks of its item's shared prefix, in chunks filling passes of T tokens
    const todo = work.map((w) => {
      const first = w.prep[0].input;
      const kept = commonPrefix(w.cache.ids, first, w.P);
      w.cache.truncate(kept);
      return { w, ids: first.slice(kept, w.P) };
    });
    for (;;) {
      const segments: BatchSegment[] = [];
      let room = T;
      for (const t of todo) {
        if (t.ids.length === 0 || room === 0) continue;
        const n = Math.min(room, t.ids.length);
        segments.push({ cache: t.w.cache, ids: t.ids.slice(0, n), logits: 'none' });
        t.ids = t.ids.slice(n);
        room -= n;
      }
      if (segments.length === 0) break;
      this.branch.run(segments);
      this.stats.modelTokens += T - room;
    }
    // choices: every item's branches after its prefix, packed into passes of T tokens
    const branches = work.flatMap((w) => w.prep.map((p, r) => ({ w, r, cache: w.cache, ids: p.input.slice(w.P) })));
    this.runBranches(branches, (x, logits, row) => {
      results[x.w.item][x.r] = scoreRows(x.w.prep[x.r], x.w.P, logits, row, V);
    });
    for (const w of work) this.count(w.prep);
    return results;
  }

  /**
   * Runs branches (continuations of what their caches hold, kept out of the caches) in order,
   * packed greedily into passes of at most batchTokens tokens, and hands each its logits and first
   * row. Every branch must fit a pass.
   */
  private runBranches<X extends { cache: KVCache; ids: number[] }>(branches: readonly X[], scored: (x: X, logits: Float32Array, row: number) => void): void {
    const T = this.batchTokens;
    this.branch ??= new BatchForward(this.model, T);
    let b = 0;
    while (b < branches.length) {
      const pass: X[] = [];
      let total = 0;
      while (b < branches.length && total + branches[b].ids.length <= T) {
        pass.push(branches[b]);
        total += branches[b].ids.length;
        b++;
      }
      if (pass.length === 0) throw new RangeError(`a branch of ${branches[b].ids.length} tokens does not fit a pass of ${T}`);
      const logits = this.branch.run(pass.map((x) => ({ cache: x.cache, ids: x.ids, logits: 'all', keep: false })));
      let row = 0;
      for (const x of pass) {
        scored(x, logits, row);
        row += x.ids.length;
      }
      this.stats.modelTokens += total;
    }
  }

  /** the requests as the model reads them (see Prepared), checked and left-truncated to `cap` */
  private prepare(requests: readonly LoglikRequest[], cap: number): Prepared[] {
    return requests.map((r, i) => {
      if (r.continuation.length === 0) throw new RangeError(`request ${i}: the continuation has no tokens`);
      if (r.context.length === 0) throw new RangeError(`request ${i}: the context has no tokens (it should start with BOS)`);
      let full = r.context.concat(r.continuation);
      // the harness keeps the last max_length + 1 tokens: (context + continuation)[-(L+1):][:-1]
      if (full.length > cap + 1) full = full.slice(full.length - (cap + 1));
      const ctxLen = full.length - r.continuation.length;
      if (ctxLen < 1) throw new RangeError(`request ${i}: the continuation (${r.continuation.length} tokens) does not fit the context window of ${cap} tokens`);
      return { full, input: full.slice(0, -1), ctxLen };
    });
  }

  private count(prep: readonly Prepared[]): void {
    for (const p of prep) {
      this.stats.requests++;
      this.stats.requestTokens += p.input.length;
      this.stats.continuationTokens += p.full.length - p.ctxLen;
    }
  }

  /**
   * Scores requests, sharing the KV cache of their common token prefix (one item's choices).
   * The model's cache is left holding that prefix, for the next call to reuse.
   */
  score(requests: readonly LoglikRequest[]): LoglikResult[] {
    if (requests.length === 0) return [];
    const model = this.model,
      cache = model.cache,
      V = model.config.vocab_size;
    const prep = this.prepare(requests, cache.capacity);
    const P = sharedPrefix(prep);
    const first = prep[0].input;
    // keep what the cache already holds of it; run the rest
    const kept = commonPrefix(cache.ids, first, P);
    cache.truncate(kept);
    if (P > kept) model.forward(first.slice(kept, P));
    this.stats.modelTokens += P - kept;

    const results: LoglikResult[] = new Array(prep.length);

    // branches, packed into batches of at most batchTokens tokens; a longer one runs alone
    let i = 0;
    while (i < prep.length) {
      const len = prep[i].input.length - P;
      if (this.batchTokens === 1 || len > this.batchTokens) {
        cache.truncate(P);
        results[i] = scoreRows(prep[i], P, model.forwardAll(prep[i].input.slice(P)), 0, V);
        cache.truncate(P);
        this.stats.modelTokens += len;
        i++;
        continue;
      }
      // the run of branches up to the next one too long for a pass
      const run: { g: number; cache: KVCache; ids: number[] }[] = [];
      while (i < prep.length && prep[i].input.length - P <= this.batchTokens) {
        run.push({ g: i, cache, ids: prep[i].input.slice(P) });
        i++;
      }
      this.runBranches(run, (x, logits, row) => {
        results[x.g] = scoreRows(prep[x.g], P, logits, row, V);
      });
    }
    this.count(prep);
    return results;
  }
}

/**
 * P: tokens every request reads identically, always short of each request's last context token
 * (so each branch is at least one token and yields the row predicting its continuation)
 */
function sharedPrefix(prep: readonly Prepared[]): number {
  let P = Math.min(...prep.map((p) => p.ctxLen - 1));
  const first = prep[0].input;
  for (const p of prep) P = Math.min(P, commonPrefix(first, p.input, P));
  return P;
}

/** a request's result from its branch's logits rows (row0: the branch's first row, input[P]) */
function scoreRows(p: Prepared, P: number, logits: Float32Array, row0: number, V: number): LoglikResult {
  let loglik = 0,
    greedy = true;
  // logits row r (r = 0 is input[P]) predicts full[P + r + 1]
  for (let t = p.ctxLen; t < p.full.length; t++) {
    const s = tokenLogprob(logits, (row0 + t - 1 - P) * V, V, p.full[t]);
    loglik += s.logprob;
    greedy &&= s.greedy;
  }
  return { loglik, isGreedy: greedy, tokens: p.full.length - p.ctxLen };
}

/** Length of the common prefix of a and b, at most `max`. */
function commonPrefix(a: readonly number[], b: readonly number[], max: number): number {
  const n = Math.min(a.length, b.length, max);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
