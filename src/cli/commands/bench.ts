import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { MODEL_HELP, MODEL_OPTIONS, openModelOnly } from '../model-options.ts';
import { benchModel, formatBench } from '../../bench.ts';

export const benchCommand: Command = {
  name: 'bench',
  summary: 'measure prefill and decode speed, memory bandwidth and peak memory',
  help: `Usage: openelm bench --model M [--dtype f32|bf16|f16|q8|q4] [--threads N] [--prompt-tokens 128] [--gen-tokens 128] [--repeat 3] [--json]

Feeds a seeded random prompt of --prompt-tokens tokens (prefill), then decodes --gen-tokens
tokens one at a time with greedy argmax (end-of-sequence ignored). Reports the best of --repeat
runs: tokens/s for both phases, weight bytes, achieved weight bandwidth during decode
(bytes × tokens/s), KV cache bytes and the process's peak RSS.

Options:
      --prompt-tokens N    prefill length (default 128)
      --gen-tokens N       decoded tokens (default 128)
      --repeat N           runs; the best is reported (default 3)
      --warmup N           untimed decode steps before measuring (default 4)
      --json               machine-readable output
${MODEL_HELP}

npm run bench compares this against llama.cpp (node-llama-cpp) on the same weights.`,
  async run(argv) {
    const { values: v } = parse(argv, {
      ...MODEL_OPTIONS, 'prompt-tokens': { type: 'string' }, 'gen-tokens': { type: 'string' }, repeat: { type: 'string' }, warmup: { type: 'string' },
    });
    const promptTokens = num(v['prompt-tokens'] as string, 'prompt-tokens', { int: true, min: 1 }) ?? 128;
    const genTokens = num(v['gen-tokens'] as string, 'gen-tokens', { int: true, min: 1 }) ?? 128;
    const repeat = num(v.repeat as string, 'repeat', { int: true, min: 1 }) ?? 3;
    const warmup = num(v.warmup as string, 'warmup', { int: true, min: 0 }) ?? 4;
    const t0 = performance.now();
    const needed = promptTokens + genTokens + warmup;
    let loaded;
    try {
      loaded = await openModelOnly({ ...v, context: v.context ?? String(needed) }, Boolean(v.json));
    } catch (e) {
      // the context is ours, not the user's: name the flags that made it too long
      if (v.context === undefined && e instanceof UsageError && e.message.startsWith('--context')) {
        throw new UsageError(`--prompt-tokens + --gen-tokens + --warmup = ${needed} tokens, more than the model's context: ${e.message.replace(/^--context must be at most /, '').replace(/, got \d+$/, '')}`);
      }
      throw e;
    }
    const loadMs = performance.now() - t0;
    try {
      const r = benchModel(loaded.model, { promptTokens, genTokens, repeat, warmup });
      const k = loaded.model.kernels as { name: string; threads?: number };
      const out = { model: loaded.dir, dtype: (v.dtype as string | undefined) ?? 'auto', threads: k.threads ?? 1, backend: k.name, load_ms: loadMs, ...r };
      if (v.json) printJson(out);
      else process.stdout.write(formatBench(out) + '\n');
    } finally {
      loaded.dispose();
    }
  },
};
