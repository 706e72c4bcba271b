// Text generation on the GPU forward pass (model.ts), step for step as generate() does it on the
// CPU (src/generate/generate.ts), with the same options, events and result: the prompt (BOS first
// for text), a cached prefix reused (chat turns), the same Sampler (so --seed draws the same
// numbers), stop strings held back, eos / length / stop / abort. Greedy picks without a repetition
// penalty run as an argmax on the GPU (4 bytes read back per token); anything else reads back the
// logits and samples on the CPU. Speculative decoding is not done here.
//
//   const it = gpuGenerate(gm, tokenizer, 'Once upon a time', { maxNewTokens: 32, temperature: 0 });
//   for (let r = await it.next(); !r.done; r = await it.next()) process.stdout.write(r.value.text);
import {
  checkGenerateOptions,
  encodePrompt,
  type FinishReason,
  type GenerateOptions,
  type GenerationResult,
  type Prompt,
  type TokenEvent,
} from '../../generate/generate.ts';
import { Sampler } from '../../generate/sampler.ts';
import { ContextLengthError } from '../../model/openelm.ts';
import { StreamDecoder, type Tokenizer } from '../../tokenizer/index.ts';
import type { GpuOpenELM } from './model.ts';

export async function* gpuGenerate(gm: GpuOpenELM, tok: Tokenizer, prompt: Prompt, opts: GenerateOptions = {}): AsyncGenerator<TokenEvent, GenerationResult> {
  const V = gm.config.vocab_size;
  checkGenerateOptions(opts, V);
  if (opts.speculative) throw new Error('speculative decoding (a draft model, prompt lookup) is not available on WebGPU; use --device wasm');
  if (typeof prompt !== 'string' && !(prompt && Array.isArray(prompt.ids))) throw new TypeError('prompt must be a string or { ids: number[] }');
  const promptIds = encodePrompt(tok, prompt);
  if (promptIds.length === 0) throw new RangeError('the prompt is empty: give text or at least one token id');
  promptIds.forEach((id, i) => {
    if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new RangeError(`prompt token ${i} (${JSON.stringify(id)}) is not a token id in [0, ${V})`);
  });
  if (promptIds.length >= gm.capacity) throw new ContextLengthError(promptIds.length + 1, gm.capacity);
  const maxNew = Math.min(opts.maxNewTokens ?? 256, gm.capacity - promptIds.length);
  const eos = new Set(opts.ignoreEos ? [] : (opts.eosIds ?? [gm.config.eos_token_id]));
  const sampler = new Sampler(V, opts);
  sampler.observe(promptIds);
  const argmaxOnly = sampler.temperature === 0 && sampler.repetitionPenalty === 1;
  /** feeds ids, returns the next token */
  const next = async (ids: ArrayLike<number>): Promise<number> => (argmaxOnly ? gm.forwardArgmax(ids) : sampler.sample(await gm.forward(ids)));

  // prefill, reusing the cached prefix when the new prompt extends what is in the cache
  const t0 = performance.now();
  const cachedTokens = reusablePrefix(gm.ids, promptIds);
  gm.truncate(cachedTokens);
  let token = await next(promptIds.slice(cachedTokens));
  const prefillMs = performance.now() - t0;

  const outputIds: number[] = [];
  const decoder = new StreamDecoder(tok);
  const stops = (opts.stop ?? []).filter((s) => s.length > 0);
  const holdBack = stops.reduce((m, s) => Math.max(m, s.length - 1), 0);
  let text = ''; // all text decoded so far
  let emitted = 0; // characters of `text` already yielded
  let finishReason: FinishReason = 'length';
  const t1 = performance.now();
  for (let i = 0; i < maxNew; i++) {
    if (opts.signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    sampler.observeOne(token);
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
    if (i + 1 < maxNew) token = await next([token]);
  }
  if (finishReason !== 'stop') text += decoder.flush();
  if (text.length > emitted) yield { token: outputIds[outputIds.length - 1], text: text.slice(emitted) };
  return { promptIds, outputIds, text, finishReason, cachedTokens, prefillMs, decodeMs: performance.now() - t1 };
}

/** Longest prefix of `prompt` already in the cache, leaving at least one token to feed (as generate.ts). */
function reusablePrefix(cached: readonly number[], prompt: readonly number[]): number {
  let n = 0;
  const max = Math.min(cached.length, prompt.length - 1);
  while (n < max && cached[n] === prompt[n]) n++;
  return n;
}

/** Index of the earliest stop string in text that ends after `from - maxlen`, or -1 (as generate.ts). */
function firstStop(text: string, stops: string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s, Math.max(0, from - s.length + 1));
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}
