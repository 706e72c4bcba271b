// Text generation on the WebGPU forward pass (src/kernels/webgpu/model.ts), as generate() does it
// on the CPU: BOS-first prompt, sampling with the same Sampler (greedy picks run as a GPU argmax:
// 4 bytes read back per token), streamed text, eos / max tokens / abort.

import type { FinishReason } from '../generate/generate.ts';
import { Sampler, type SamplingOptions } from '../generate/sampler.ts';
import type { GpuOpenELM } from '../kernels/webgpu/model.ts';
import { StreamDecoder, type Tokenizer } from '../tokenizer/index.ts';

export interface GpuGenerateResult {
  promptIds: number[];
  outputIds: number[];
  text: string;
  finishReason: FinishReason;
  prefillMs: number;
  decodeMs: number;
}

export async function gpuGenerate(
  gm: GpuOpenELM,
  tok: Tokenizer,
  prompt: string | { ids: number[] },
  opts: SamplingOptions & { maxNewTokens?: number; signal?: AbortSignal } = {},
  onText?: (t: string) => void,
): Promise<GpuGenerateResult> {
  const promptIds = typeof prompt === 'string' ? tok.encode(prompt, { bos: true }) : prompt.ids.slice();
  if (promptIds.length === 0) throw new RangeError('the prompt is empty');
  if (promptIds.length >= gm.capacity) throw new RangeError(`the prompt has ${promptIds.length} tokens; the context holds ${gm.capacity}`);
  const maxNew = Math.min(opts.maxNewTokens ?? 256, gm.capacity - promptIds.length);
  if (!(Number.isInteger(maxNew) && maxNew >= 0)) throw new RangeError(`maxNewTokens must be an integer ≥ 0, got ${opts.maxNewTokens}`);
  const sampler = new Sampler(gm.config.vocab_size, opts);
  sampler.observe(promptIds);
  // greedy without a penalty needs only the argmax: computed on the GPU
  const argmaxOnly = sampler.temperature === 0 && sampler.repetitionPenalty === 1;
  const next = async (ids: ArrayLike<number>) => (argmaxOnly ? gm.forwardArgmax(ids) : sampler.sample(await gm.forward(ids)));
  gm.reset();
  const t0 = performance.now();
  let token = maxNew > 0 ? await next(promptIds) : -1;
  const prefillMs = performance.now() - t0;
  const outputIds: number[] = [];
  const decoder = new StreamDecoder(tok);
  let text = '';
  let finishReason: FinishReason = 'length';
  const t1 = performance.now();
  for (let i = 0; i < maxNew; i++) {
    if (opts.signal?.aborted) {
      finishReason = 'aborted';
      break;
    }
    outputIds.push(token);
    sampler.observeOne(token);
    if (token === gm.config.eos_token_id) {
      finishReason = 'eos';
      break;
    }
    const piece = decoder.push(token);
    text += piece;
    if (piece) onText?.(piece);
    if (i + 1 < maxNew) token = await next([token]);
  }
  const tail = decoder.flush();
  text += tail;
  if (tail) onText?.(tail);
  return { promptIds, outputIds, text, finishReason, prefillMs, decodeMs: performance.now() - t1 };
}
