// `openelm bench --device webgpu`: src/bench.ts's measurement on the GPU forward pass. The same
// seeded random prompt and result fields; greedy decoding with the argmax on the GPU (4 bytes read
// back per token), so a decode step is one submission and one read back, as in gpuGenerate.
import { type BenchOptions, type BenchResult, benchPrompt, benchSummary, weightBytes } from '../../bench.ts';
import type { ModelWeights } from '../../model/weights.ts';
import type { GpuOpenELM } from './model.ts';

/** `weights`: the model's weights as uploaded (for their byte count). */
export async function benchGpuModel(gm: GpuOpenELM, weights: ModelWeights, o: BenchOptions): Promise<BenchResult> {
  const prompt = benchPrompt(gm.config.vocab_size, o, gm.capacity);
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
  return benchSummary(o, runs, weightBytes(weights), gm.kvCacheBytes);
}
