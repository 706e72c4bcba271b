// llama.cpp's side of `npm run bench:serve -- --peer`: the aggregate decode throughput of c
// sequences decoded together in one llama.cpp context (node-llama-cpp batches the sequences'
// evaluations of one event-loop cycle into one llama_decode), for each level c, on a GGUF of the
// same shape. Like bench:serve: --requests requests per level, c at a time (each sequence takes
// its next request when one ends), distinct random prompts of --prompt-tokens tokens (BOS first),
// greedy, --max-tokens generated tokens each. Run as its own process; prints one JSON line:
//   node --import tsx bench/llama-cpp-batch.ts FILE.gguf --threads 2 --levels 1,4,8 --requests 32
import { parseArgs } from 'node:util';
import { getLlama, type LlamaContextSequence, type Token } from 'node-llama-cpp';
import { Rng } from '../src/generate/rng.ts';

const { values: v, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    threads: { type: 'string' },
    levels: { type: 'string' },
    requests: { type: 'string' },
    'prompt-tokens': { type: 'string' },
    'max-tokens': { type: 'string' },
  },
});
const file = positionals[0];
if (!file) throw new Error('usage: bench/llama-cpp-batch.ts FILE.gguf [--threads N] [--levels 1,4,8] [--requests N]');
const threads = Number(v.threads ?? 2);
const levels = (v.levels ?? '1,4,8').split(',').map(Number);
const requests = Number(v.requests ?? 32);
const promptTokens = Number(v['prompt-tokens'] ?? 32);
const maxTokens = Number(v['max-tokens'] ?? 32);
const V = 32000; // OpenELM: the LLaMA-2 vocabulary

const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
const model = await llama.loadModel({ modelPath: file, gpuLayers: 0 });
let promptSeed = 1;
const nextPrompt = (): Token[] => {
  const rng = new Rng(promptSeed++);
  return [1, ...Array.from({ length: promptTokens - 1 }, () => 3 + (rng.nextU32() % (V - 3)))] as Token[];
};

/** One request on a sequence: its prompt, then maxTokens greedy tokens (end of sequence not honoured); tokens and time to the first. */
async function one(seq: LlamaContextSequence): Promise<{ n: number; ttft: number }> {
  const t0 = performance.now();
  await seq.clearHistory();
  let n = 0,
    ttft = 0;
  for await (const _ of seq.evaluate(nextPrompt(), { temperature: 0 })) {
    if (n === 0) ttft = performance.now() - t0;
    if (++n >= maxTokens) break;
  }
  return { n, ttft };
}
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

const out: { concurrency: number; requests: number; wall_s: number; tokens: number; tokens_per_s: number; ttft_ms: { p50: number; p95: number } }[] = [];
for (const c of levels) {
  const context = await model.createContext({
    contextSize: c * (promptTokens + maxTokens + 16),
    batchSize: Math.max(512, c * promptTokens),
    threads: { ideal: threads, min: threads },
    sequences: c,
  });
  const seqs = Array.from({ length: c }, () => context.getSequence());
  await one(seqs[0]); // warm-up
  let left = requests,
    tokens = 0;
  const ttfts: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    seqs.map(async (seq) => {
      while (left > 0) {
        left--;
        const r = await one(seq); // (not `tokens += await ...`: that reads tokens before the await)
        tokens += r.n;
        ttfts.push(r.ttft);
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  out.push({ concurrency: c, requests, wall_s: wall, tokens, tokens_per_s: tokens / wall, ttft_ms: { p50: pct(ttfts, 50), p95: pct(ttfts, 95) } });
  await context.dispose();
}
process.stdout.write(JSON.stringify({ backend: 'llama.cpp (node-llama-cpp)', model: file, threads, levels: out }) + '\n');
await model.dispose();
await llama.dispose();
