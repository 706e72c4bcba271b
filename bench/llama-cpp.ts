// llama.cpp's side of the benchmark, through the node-llama-cpp npm package (prebuilt llama.cpp).
// Run as its own process so its peak RSS is its own:
//   node --import tsx bench/llama-cpp.ts FILE.gguf --threads 2 --prompt-tokens 128 --gen-tokens 128 --repeat 3
// Prints one JSON line shaped like `openelm bench --json`.
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { getLlama } from 'node-llama-cpp';
import { Rng } from '../src/generate/rng.ts';

const { values: v, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'gen-tokens': { type: 'string' },
    repeat: { type: 'string' },
    warmup: { type: 'string' },
  },
});
const file = positionals[0];
const threads = Number(v.threads ?? 2);
const promptTokens = Number(v['prompt-tokens'] ?? 128);
const genTokens = Number(v['gen-tokens'] ?? 128);
const repeat = Number(v.repeat ?? 3);
const warmup = Number(v.warmup ?? 4);

const t0 = performance.now();
const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
const context = await model.createContext({
  contextSize: promptTokens + genTokens + warmup + 16,
  batchSize: promptTokens,
  threads: { ideal: threads, min: threads },
  sequences: 1,
});
const seq = context.getSequence();
const loadMs = performance.now() - t0;
const V = 32000; // OpenELM: the LLaMA-2 vocabulary

// the same seeded prompt as `openelm bench`
const rng = new Rng(0);
const prompt = Array.from({ length: promptTokens }, () => 3 + (rng.nextU32() % (V - 3))) as never[];

async function decode(n: number, first: never): Promise<void> {
  let i = 0;
  for await (const _ of seq.evaluate([first], { temperature: 0 })) {
    if (++i >= n) break;
  }
}

// warm-up
await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 8));
await decode(warmup, prompt[8]);
const runs: { prefill_tps: number; decode_tps: number }[] = [];
for (let r = 0; r < repeat; r++) {
  await seq.clearHistory();
  let t = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const prefillMs = performance.now() - t;
  t = performance.now();
  // genTokens single-token evaluations, like genTokens calls of model.step
  await decode(genTokens, prompt[0]);
  const decodeMs = performance.now() - t;
  runs.push({ prefill_tps: (promptTokens / prefillMs) * 1000, decode_tps: (genTokens / decodeMs) * 1000 });
}
const out = {
  backend: 'llama.cpp (node-llama-cpp)',
  model: file,
  threads,
  load_ms: loadMs,
  prompt_tokens: promptTokens,
  gen_tokens: genTokens,
  prefill_tps: Math.max(...runs.map((r) => r.prefill_tps)),
  decode_tps: Math.max(...runs.map((r) => r.decode_tps)),
  runs,
  file_bytes: fs.statSync(file).size,
  peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
};
process.stdout.write(JSON.stringify(out) + '\n');
await context.dispose();
await model.dispose();
await llama.dispose();
