// Text generation as flat small steps: encode → prefill → decode one token at a time → stream text.
import type { OpenELM } from '../model/openelm.ts';
import { ContextLengthError } from '../model/openelm.ts';
import { StreamDecoder, type Tokenizer } from '../tokenizer/index.ts';
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

/**
 * Streams generated tokens. The generator's return value is the full result:
 *   const it = generate(model, tok, 'Once upon a time', { maxNewTokens: 32 });
 *   for (let r = await it.next(); !r.done; r = await it.next()) process.stdout.write(r.value.text);
 */
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

export async function* generate(model: OpenELM, tok: Tokenizer, prompt: Prompt, opts: GenerateOptions = {}): AsyncGenerator<TokenEvent, GenerationResult> {
  const V = model.config.vocab_size;
  checkGenerateOptions(opts, V);
  if (typeof prompt !== 'string' && !(prompt && Array.isArray(prompt.ids))) throw new TypeError('prompt must be a string or { ids: number[] }');
  const promptIds = encodePrompt(tok, prompt);
  if (promptIds.length === 0) throw new RangeError('the prompt is empty: give text or at least one token id');
  promptIds.forEach((id, i) => {
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`prompt token ${i} (${JSON.stringify(id)}) is not a token id in [0, ${V})`);
  });
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
  const decoder = new StreamDecoder(tok);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const holdBack = stops.reduce((m, s) => Math.max(m, s.length - 1), 0);
  let text = ''; // all text decoded so far
  let emitted = 0; // characters of `text` already yielded
  let finishReason: FinishReason = 'length';
  const t1 = performance.now();
  const spec = opts.speculative;
  const stats: SpeculativeStats | undefined = spec ? { rounds: 0, drafted: 0, accepted: 0 } : undefined;
  if (spec?.draft && spec.draft.config.vocab_size !== model.config.vocab_size) {
    throw new RangeError(`the draft model's vocabulary (${spec.draft.config.vocab_size} tokens) differs from the model's (${model.config.vocab_size})`);
  }
  const tokens = spec ? speculativeTokens(model, sampler, logits, promptIds, maxNew, spec, opts, stats!) : plainTokens(model, sampler, logits, maxNew);
  for (const token of tokens) {
    if (opts.signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    outputIds.push(token);
    if (eos.has(token)) {
      finishReason = 'eos';
      break;
    }
    text += decoder.push(token);
    const hit = firstStop(text, stops, emitted);
    if (hit >= 0) {
      text = text.slice(0, hit);
      finishReason = 'stop';
      break;
    }
    // yield what can no longer become part of a stop string
    const safe = Math.max(emitted, text.length - holdBack);
    yield { token, text: text.slice(emitted, safe) };
    emitted = safe;
    await new Promise<void>((r) => setImmediate(r)); // let I/O (streams, servers) run between tokens
  }
  if (finishReason !== 'stop') text += decoder.flush();
  if (text.length > emitted) yield { token: outputIds[outputIds.length - 1], text: text.slice(emitted) };
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
  model: OpenELM,
  tok: Tokenizer,
  prompt: Prompt,
  opts: GenerateOptions = {},
  onText?: (text: string) => void,
): Promise<GenerationResult> {
  const it = generate(model, tok, prompt, opts);
  for (;;) {
    const r = await it.next();
    if (r.done) return r.value;
    if (onText && r.value.text) onText(r.value.text);
  }
}

/** Longest prefix of `prompt` already in the cache, leaving at least one token to feed. */
function reusablePrefix(cached: readonly number[], prompt: readonly number[]): number {
  let n = 0;
  const max = Math.min(cached.length, prompt.length - 1);
  while (n < max && cached[n] === prompt[n]) n++;
  return n;
}

/** Index of the earliest stop string in text that ends after `from - maxlen`, or -1. */
function firstStop(text: string, stops: string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s, Math.max(0, from - s.length + 1));
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
