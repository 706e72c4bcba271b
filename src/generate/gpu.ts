// Text generation on the GPU forward pass (model.ts), step for step as generate() does it on the
// CPU (src/generate/generate.ts), with the same options, events and result: the prompt (BOS first
// for text), a cached prefix reused (chat turns), the same Sampler (so --seed draws the same
// numbers), stop strings held back, eos / length / stop / abort. Greedy picks without a repetition
// penalty run as an argmax on the GPU (4 bytes read back per token); anything else reads back the
// logits and samples on the CPU. Speculative decoding is not done here.
//
//   const it = gpuGenerate(gm, tokenizer, 'Once upon a time', { maxNewTokens: 32, temperature: 0 });
//   for (let r = await it.next(); !r.done; r = await it.next()) process.stdout.write(r.value.text);

import { TextTail } from '../engine/text.ts';
import type { GpuOpenELM } from '../model/gpu.ts';
import { ContextLengthError } from '../model/openelm.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import {
  checkedPromptIds,
  checkGenerateOptions,
  type GenerateOptions,
  type GenerationResult,
  type Prompt,
  reusablePrefix,
  streamTokens,
  type TokenEvent,
} from './generate.ts';
import { Sampler } from './sampler.ts';

export async function* gpuGenerate(gm: GpuOpenELM, tok: Tokenizer, prompt: Prompt, opts: GenerateOptions = {}): AsyncGenerator<TokenEvent, GenerationResult> {
  const V = gm.config.vocab_size;
  checkGenerateOptions(opts, V);
  if (opts.speculative) throw new Error('speculative decoding (a draft model, prompt lookup) is not available on WebGPU; use --device wasm');
  const promptIds = checkedPromptIds(tok, prompt, V);
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
  const tail = new TextTail(tok, opts.stop); // text, stop strings, what is held back
  const t1 = performance.now();
  /** the first token (from the prefill), then one per step, each fed only when another is wanted */
  async function* tokens(): AsyncGenerator<number, void, void> {
    for (let i = 0; i < maxNew; i++) {
      sampler.observeOne(token);
      yield token;
      if (i + 1 < maxNew) token = await next([token]);
    }
  }
  const finishReason = yield* streamTokens(tokens(), tail, eos, opts.signal, outputIds);
  const text = tail.text;
  return { promptIds, outputIds, text, finishReason, cachedTokens, prefillMs, decodeMs: performance.now() - t1 };
}
