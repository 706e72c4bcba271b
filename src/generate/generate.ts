// Text generation as flat small steps: encode → prefill → decode one token at a time → stream text.
//
// One call at a time on a model runs on the model's own KV cache (the fast path). A call made
// while another runs on the same model goes to an Engine shared by that model's concurrent calls
// (continuous batching over their own caches), so concurrent calls are safe and batched. An
// Engine can also be given instead of the model: every call then decodes in its batches.
import { Engine, type Sequence } from '../engine/engine.ts';
import { TextTail } from '../engine/text.ts';
import type { OpenELM } from '../model/openelm.ts';
import { ContextLengthError } from '../model/openelm.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { Sampler, type SamplingOptions } from './sampler.ts';
import { type SpeculativeOptions, type SpeculativeStats, speculativeTokens } from './speculative.ts';

export interface GenerateOptions extends SamplingOptions {
  /** maximum tokens to generate (default 256; capped by the context left) */
  maxNewTokens?: number;
  /** stop when any of these strings appears; the text is cut before it */
  stop?: string[];
  /** keep generating past the end-of-sequence token (benchmarks) */
  ignoreEos?: boolean;
  /** token ids that end generation (default: the model's eos_token_id) */
  eosIds?: number[];
  /** cancel generation */
  signal?: AbortSignal;
  /** speculative decoding: a draft model or prompt lookup proposes tokens, the model checks them in one pass (speculative.ts) */
  speculative?: SpeculativeOptions;
}

export interface TokenEvent {
  /** the generated token */
  token: number;
  /** text completed by this token (may be empty while a character or a possible stop string is held back) */
  text: string;
}

export type FinishReason = 'eos' | 'length' | 'stop' | 'aborted';

export interface GenerationResult {
  promptIds: number[];
  outputIds: number[];
  text: string;
  finishReason: FinishReason;
  /** prompt tokens served from the KV cache instead of recomputed */
  cachedTokens: number;
  prefillMs: number;
  decodeMs: number;
  /** with opts.speculative: verification rounds, draft tokens proposed and kept */
  speculative?: SpeculativeStats;
}

/** A prompt: text (BOS is prepended, as the HF tokenizer does) or token ids used as given. */
export type Prompt = string | { ids: number[] };

export function encodePrompt(tok: Tokenizer, prompt: Prompt): number[] {
  return typeof prompt === 'string' ? tok.encode(prompt, { bos: true }) : prompt.ids.slice();
}

/** Checks what JavaScript callers pass at run time, naming the option (TypeScript's types do not reach them). */
export function checkGenerateOptions(opts: GenerateOptions, vocab: number): void {
  const m = opts.maxNewTokens;
  if (m !== undefined && !(Number.isInteger(m) && m >= 0)) throw new RangeError(`maxNewTokens must be an integer ≥ 0, got ${JSON.stringify(m)}`);
  if (opts.stop !== undefined && !(Array.isArray(opts.stop) && opts.stop.every((x) => typeof x === 'string'))) {
    throw new TypeError(`stop must be an array of strings, got ${JSON.stringify(opts.stop)?.slice(0, 80)}`);
  }
  if (opts.eosIds !== undefined && !(Array.isArray(opts.eosIds) && opts.eosIds.every((x) => Number.isInteger(x) && x >= 0 && x < vocab))) {
    throw new TypeError(`eosIds must be an array of token ids in [0, ${vocab}), got ${JSON.stringify(opts.eosIds)?.slice(0, 80)}`);
  }
}

/**
 * Streams generated tokens. The generator's return value is the full result:
 *   const it = generate(model, tok, 'Once upon a time', { maxNewTokens: 32 });
 *   for (let r = await it.next(); !r.done; r = await it.next()) process.stdout.write(r.value.text);
 * Calls made while another runs on the same model are batched on the model's shared engine;
 * with an Engine as the target, every call is:
 *   const engine = new Engine(model, { parallel: 8 });
 *   const [a, b] = await Promise.all([generateText(engine, tok, 'Hi'), generateText(engine, tok, 'Hello')]);
 */
export async function* generate(
  target: OpenELM | Engine,
  tok: Tokenizer,
  prompt: Prompt,
  opts: GenerateOptions = {},
): AsyncGenerator<TokenEvent, GenerationResult> {
  if (target instanceof Engine) return yield* generateOnEngine(target, tok, prompt, opts);
  // another call is decoding on this model's cache: this one goes to the model's shared engine
  if (running.has(target)) return yield* generateOnEngine(sharedEngine(target, opts.speculative), tok, prompt, opts);
  running.add(target);
  try {
    return yield* generateAlone(target, tok, prompt, opts);
  } finally {
    running.delete(target);
  }
}

/** Models with a generate call decoding on their own KV cache. */
const running = new WeakSet<OpenELM>();
/** Per model, the engines its concurrent calls share (one per speculative setting). */
const engines = new WeakMap<OpenELM, Map<unknown, Engine>>();

/**
 * The engine for concurrent calls on a model: up to 4 sequences batched, a long queue. Its slots
 * are made as calls overlap (slots: 'lazy'), each with a KV cache of the model's context, and kept
 * with the model for the next concurrent calls: memory follows the most calls ever run at once.
 */
function sharedEngine(model: OpenELM, spec: SpeculativeOptions | undefined): Engine {
  let byKey = engines.get(model);
  if (!byKey) engines.set(model, (byKey = new Map()));
  const key = spec?.draft ? spec.draft : spec?.promptLookup ? `lookup ${spec.promptLookup}` : null;
  let e = byKey.get(key);
  if (!e) byKey.set(key, (e = new Engine(model, { parallel: 4, maxQueue: 1 << 16, speculative: spec, slots: 'lazy' })));
  return e;
}

/** generate on an Engine: the same events, text and result as on the model alone. */
async function* generateOnEngine(engine: Engine, tok: Tokenizer, prompt: Prompt, opts: GenerateOptions): AsyncGenerator<TokenEvent, GenerationResult> {
  const model = engine.model,
    V = model.config.vocab_size;
  checkGenerateOptions(opts, V);
  if (typeof prompt !== 'string' && !(prompt && Array.isArray(prompt.ids))) throw new TypeError('prompt must be a string or { ids: number[] }');
  const promptIds = encodePrompt(tok, prompt);
  if (promptIds.length >= engine.capacity) throw new ContextLengthError(promptIds.length + 1, engine.capacity);
  const eosIds = opts.ignoreEos ? [] : (opts.eosIds ?? [model.config.eos_token_id]);
  const { temperature, topK, topP, minP, repetitionPenalty, seed } = opts;
  const seq = engine.submit({
    promptIds,
    maxTokens: Math.min(opts.maxNewTokens ?? 256, engine.capacity - promptIds.length),
    sampling: { temperature, topK, topP, minP, repetitionPenalty, seed },
    eosIds,
    signal: opts.signal,
  }) as Sequence;
  const tail = new TextTail(tok, opts.stop);
  const outputIds: number[] = [];
  const t0 = performance.now();
  let t1 = t0;
  async function* tokens(): AsyncGenerator<number> {
    for await (const { token } of seq) {
      if (outputIds.length === 0) t1 = performance.now();
      yield token;
    }
  }
  let finishReason: FinishReason;
  try {
    finishReason = yield* streamTokens(tokens(), tail, new Set(eosIds), opts.signal, outputIds);
  } finally {
    seq.cancel(); // a caller that stops early frees the slot (no-op once the sequence ended)
  }
  if (seq.finishReason === 'cancelled' && finishReason === 'length') finishReason = 'aborted';
  return {
    promptIds,
    outputIds,
    text: tail.text,
    finishReason,
    cachedTokens: seq.cachedTokens,
    prefillMs: t1 - t0,
    decodeMs: performance.now() - t1,
    ...(opts.speculative ? { speculative: { ...seq.speculative } } : {}),
  };
}

/**
 * The prompt's token ids (BOS first for text), each checked against the vocabulary: what a model
 * generating alone (on the CPU or the GPU) starts from.
 */
export function checkedPromptIds(tok: Tokenizer, prompt: Prompt, V: number): number[] {
  if (typeof prompt !== 'string' && !(prompt && Array.isArray(prompt.ids))) throw new TypeError('prompt must be a string or { ids: number[] }');
  const promptIds = encodePrompt(tok, prompt);
  if (promptIds.length === 0) throw new RangeError('the prompt is empty: give text or at least one token id');
  promptIds.forEach((id, i) => {
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`prompt token ${i} (${JSON.stringify(id)}) is not a token id in [0, ${V})`);
  });
  return promptIds;
}

/**
 * The decode loop a model generating alone runs over its tokens: each token goes into outputIds,
 * then out as the text that can no longer become part of a stop string; it ends at an abort, an
 * eos token or a stop string, and finally yields what stop strings held back. `pause` runs after
 * each yielded token. Returns why it ended ('length' when the tokens ran out).
 */
export async function* streamTokens(
  tokens: Iterable<number> | AsyncIterable<number>,
  tail: TextTail,
  eos: ReadonlySet<number>,
  signal: AbortSignal | undefined,
  outputIds: number[],
  pause?: () => Promise<void>,
): AsyncGenerator<TokenEvent, FinishReason> {
  let finishReason: FinishReason = 'length';
  for await (const token of tokens) {
    if (signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    outputIds.push(token);
    if (eos.has(token)) {
      finishReason = 'eos';
      break;
    }
    const piece = tail.push(token);
    if (tail.stopped) {
      finishReason = 'stop';
      if (piece) yield { token, text: piece };
      break;
    }
    yield { token, text: piece };
    await pause?.();
  }
  const rest = tail.flush();
  if (rest) yield { token: outputIds[outputIds.length - 1], text: rest };
  return finishReason;
}

/** lets I/O (streams, servers) run between tokens */
const nextTurn = () => new Promise<void>((r) => setImmediate(r));

async function* generateAlone(model: OpenELM, tok: Tokenizer, prompt: Prompt, opts: GenerateOptions): AsyncGenerator<TokenEvent, GenerationResult> {
  checkGenerateOptions(opts, model.config.vocab_size);
  const promptIds = checkedPromptIds(tok, prompt, model.config.vocab_size);
  const capacity = model.cache.capacity;
  if (promptIds.length >= capacity) throw new ContextLengthError(promptIds.length + 1, capacity);
  const maxNew = Math.min(opts.maxNewTokens ?? 256, capacity - promptIds.length);
  const eos = new Set(opts.ignoreEos ? [] : (opts.eosIds ?? [model.config.eos_token_id]));
  const sampler = new Sampler(model.config.vocab_size, opts, model.kernels);
  sampler.observe(promptIds);

  // prefill, reusing the cached prefix when the new prompt extends what is in the cache
  const t0 = performance.now();
  const cachedTokens = reusablePrefix(model.cache.ids, promptIds);
  model.cache.truncate(cachedTokens);
  const logits = model.forward(promptIds.slice(cachedTokens));
  const prefillMs = performance.now() - t0;

  const outputIds: number[] = [];
  const tail = new TextTail(tok, opts.stop); // text, stop strings, what is held back
  const t1 = performance.now();
  const spec = opts.speculative;
  const stats: SpeculativeStats | undefined = spec ? { rounds: 0, drafted: 0, accepted: 0 } : undefined;
  if (spec?.draft && spec.draft.config.vocab_size !== model.config.vocab_size) {
    throw new RangeError(`the draft model's vocabulary (${spec.draft.config.vocab_size} tokens) differs from the model's (${model.config.vocab_size})`);
  }
  const tokens = spec ? speculativeTokens(model, sampler, logits, promptIds, maxNew, spec, opts, stats!) : plainTokens(model, sampler, logits, maxNew);
  const finishReason = yield* streamTokens(tokens, tail, eos, opts.signal, outputIds, nextTurn);
  const text = tail.text;
  return { promptIds, outputIds, text, finishReason, cachedTokens, prefillMs, decodeMs: performance.now() - t1, ...(stats ? { speculative: stats } : {}) };
}

/** One token per step: sample from the logits, then feed the token (only when another is wanted). */
function* plainTokens(model: OpenELM, sampler: Sampler, logits: Float32Array, maxNew: number): Generator<number, void, void> {
  for (let i = 0; i < maxNew; i++) {
    const token = sampler.sample(logits);
    sampler.observeOne(token);
    yield token;
    if (i + 1 < maxNew) logits = model.step(token);
  }
}

/** Runs generation to the end and returns the result. */
export async function generateText(
  target: OpenELM | Engine,
  tok: Tokenizer,
  prompt: Prompt,
  opts: GenerateOptions = {},
  onText?: (text: string) => void,
): Promise<GenerationResult> {
  const it = generate(target, tok, prompt, opts);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    if (onText && r.value.text) onText(r.value.text);
  }
}

/** Longest prefix of `prompt` already in the cache, leaving at least one token to feed. */
export function reusablePrefix(cached: readonly number[], prompt: readonly number[]): number {
  let n = 0;
  const max = Math.min(cached.length, prompt.length - 1);
  while (n < max && cached[n] === prompt[n]) n++;
  return n;
}
