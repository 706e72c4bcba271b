// `openelm bench --device webgpu`: src/bench.ts's measurement on the GPU forward pass. The same
// seeded random prompt and result fields; greedy decoding with the argmax on the GPU (4 bytes read
// back per token), so a decode step is one submission and one read back, as in gpuGenerate.
import { type BenchOptions, type BenchResult, weightBytes } from '../../bench.ts';
import { Rng } from '../../generate/rng.ts';
import type { ModelWeights } from '../../model/weights.ts';
import type { GpuOpenELM } from './model.ts';

/** `weights`: the model's weights as uploaded (for their byte count). */
export async function benchGpuModel(gm: GpuOpenELM, weights: ModelWeights, o: BenchOptions): Promise<BenchResult> {
  const V = gm.config.vocab_size;
  const rng = new Rng(o.seed ?? 0);
  const prompt = Array.from({ length: o.promptTokens }, () => 3 + (rng.nextU32() % (V - 3)));
  if (o.promptTokens + o.genTokens + o.warmup > gm.capacity) {
    throw new RangeError(`prompt + generated + warmup tokens (${o.promptTokens + o.genTokens + o.warmup}) exceed the KV cache (${gm.capacity})`);
  }
  // warm up: the first pass compiles every pipeline
  gm.reset();
  let t = await gm.forwardArgmax(prompt.slice(0, Math.min(8, prompt.length)));
  for (let i = 0; i < o.warmup; i++) t = await gm.forwardArgmax([t]);

  const runs: BenchResult['runs'] = [];
  for (let r = 0; r < o.repeat; r++) {
    gm.reset();
    let t0 = performance.now();
    t = await gm.forwardArgmax(prompt);
    const prefillMs = performance.now() - t0;
    t0 = performance.now();
    for (let i = 0; i < o.genTokens; i++) t = await gm.forwardArgmax([t]);
    const decodeMs = performance.now() - t0;
    runs.push({ prefill_tps: (o.promptTokens / prefillMs) * 1000, decode_tps: (o.genTokens / decodeMs) * 1000 });
  }
  const prefill = Math.max(...runs.map((r) => r.prefill_tps));
  const decode = Math.max(...runs.map((r) => r.decode_tps));
  const bytes = weightBytes(weights);
  return {
    prompt_tokens: o.promptTokens,
    gen_tokens: o.genTokens,
    prefill_tps: prefill,
    decode_tps: decode,
    runs,
    weight_bytes: bytes,
    decode_gbps: (bytes * decode) / 1e9,
    kv_cache_bytes: gm.kvCacheBytes,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
}
