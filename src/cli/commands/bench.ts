import { benchGpuModel, benchMachine, benchModel, formatBench } from '../../bench.ts';
import { Rng } from '../../generate/rng.ts';
import { Sampler } from '../../generate/sampler.ts';
import { acceptanceFor, type SpeculativeOptions, type SpeculativeStats, speculativeTokens, tokensPerRound } from '../../generate/speculative.ts';
import type { OpenELM } from '../../model/openelm.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { DEVICE_HELP, DEVICE_OPTION, deviceJson, openDevice } from '../device-option.ts';
import { MODEL_HELP, MODEL_OPTIONS, openGpuModel, openModelOnly } from '../model-options.ts';
import { openSpeculative, SPECULATIVE_HELP, SPECULATIVE_OPTIONS } from './generate.ts';

export interface SpeculativeBench {
  draft: string;
  /** tokens drafted per round: the most, with `adaptive` */
  draft_tokens: number;
  /** greedy rounds chose their length (0 .. draft_tokens) from timed costs and acceptance */
  adaptive: boolean;
  /** rounds with a draft, and tokens drafted per such round */
  rounds: number;
  drafts_per_round: number;
  /** draft tokens the model kept / proposed */
  acceptance: number;
  /** tokens per pass of the model (including plain steps when nothing was drafted) */
  tokens_per_pass: number;
  plain_decode_tps: number;
  decode_tps: number;
  speedup: number;
  /** greedy output identical with and without the draft */
  identical: boolean;
  runs: { plain_decode_tps: number; decode_tps: number }[];
  /**
   * With a draft model, what a round costs, measured apart (best of repeat): one draft step, the
   * model's check of draft_tokens + 1 tokens, and one plain step (ms); the speed-up those costs
   * predict at the measured acceptance, and the acceptance that 1.3× and 2× would need (null when
   * even accepting everything falls short).
   */
  costs?: {
    draft_step_ms: number;
    verify_ms: number;
    /** [m - 1]: the model's pass over m = 1 .. draft_tokens + 1 tokens */
    pass_ms: number[];
    plain_step_ms: number;
    predicted_speedup: number;
    acceptance_for_1_3x: number | null;
    acceptance_for_2x: number | null;
    /** the draft length 1 .. draft_tokens that needs the least acceptance for 1.3× (null: none reaches it), and that acceptance */
    best_length_for_1_3x: number | null;
    acceptance_for_1_3x_at_best_length: number | null;
  };
}

/**
 * Greedy decoding of the same seeded random prompt with and without the draft, interleaved
 * (plain, speculative, plain, ...), best of `repeat` each; the decode phase only.
 */
export function benchSpeculative(
  model: OpenELM,
  spec: SpeculativeOptions,
  o: { promptTokens: number; genTokens: number; repeat: number; seed?: number },
  label: string,
): SpeculativeBench {
  const V = model.config.vocab_size;
  const rng = new Rng(o.seed ?? 0);
  const prompt = Array.from({ length: o.promptTokens }, () => 3 + (rng.nextU32() % (V - 3)));
  const runs: SpeculativeBench['runs'] = [];
  let stats: SpeculativeStats = { rounds: 0, drafted: 0, accepted: 0 };
  let identical = true;
  const decode = (useSpec: boolean): { ids: number[]; ms: number } => {
    model.reset();
    spec.draft?.reset();
    const sampler = new Sampler(V, { temperature: 0 }, model.kernels);
    const logits = model.forward(prompt);
    const ids: number[] = [];
    const t0 = performance.now();
    if (useSpec) {
      stats = { rounds: 0, drafted: 0, accepted: 0 };
      for (const t of speculativeTokens(model, sampler, logits, prompt, o.genTokens, spec, { temperature: 0 }, stats)) ids.push(t);
    } else {
      let x = logits;
      for (let i = 0; i < o.genTokens; i++) {
        const t = sampler.sample(x);
        ids.push(t);
        if (i + 1 < o.genTokens) x = model.step(t);
      }
    }
    return { ids, ms: performance.now() - t0 };
  };
  decode(false); // warm-up (JIT, page faults) of both paths
  decode(true);
  for (let r = 0; r < o.repeat; r++) {
    const a = decode(false),
      b = decode(true);
    identical &&= a.ids.join() === b.ids.join();
    runs.push({ plain_decode_tps: (o.genTokens / a.ms) * 1000, decode_tps: (o.genTokens / b.ms) * 1000 });
  }
  const plain = Math.max(...runs.map((r) => r.plain_decode_tps)),
    fast = Math.max(...runs.map((r) => r.decode_tps));
  const K = spec.draft ? (spec.draftTokens ?? 4) : (spec.promptLookup ?? 10);
  const acceptance = stats.drafted ? stats.accepted / stats.drafted : 0;
  let costs: SpeculativeBench['costs'];
  if (spec.draft) {
    // a round's parts timed apart, after the prompt: K draft steps, the model's pass over K + 1 tokens, a plain step
    const draft = spec.draft;
    // the fastest of at least 5 runs and 50 ms of them (a small model's steps are fractions of a ms)
    const best = (f: () => void) => {
      let ms = Infinity,
        total = 0;
      for (let r = 0; r < 5 || total < 50; r++) {
        const t0 = performance.now();
        f();
        const dt = performance.now() - t0;
        ms = Math.min(ms, dt);
        total += dt;
      }
      return ms;
    };
    draft.reset();
    draft.forward(prompt);
    const draftStep =
      best(() => {
        for (let i = 0; i < K; i++) draft.step(prompt[i]);
        draft.cache.truncate(prompt.length);
      }) / K;
    model.reset();
    model.forward(prompt);
    const pass = (m: number) =>
      best(() => {
        model.forward(prompt.slice(0, m));
        model.cache.truncate(prompt.length);
      });
    const passMs = Array.from({ length: K + 1 }, (_, i) => pass(i + 1));
    const verify = passMs[K];
    const plainStep = best(() => {
      model.step(prompt[0]);
      model.cache.truncate(prompt.length);
    });
    let bestLength: number | null = null,
      bestNeed: number | null = null;
    for (let k = 1; k <= K; k++) {
      const need = acceptanceFor(1.3, k, draftStep, passMs[k], plainStep);
      if (need !== null && (bestNeed === null || need < bestNeed)) {
        bestNeed = need;
        bestLength = k;
      }
    }
    costs = {
      draft_step_ms: draftStep,
      verify_ms: verify,
      pass_ms: passMs,
      plain_step_ms: plainStep,
      predicted_speedup: (tokensPerRound(acceptance, K) * plainStep) / (K * draftStep + verify),
      acceptance_for_1_3x: acceptanceFor(1.3, K, draftStep, verify, plainStep),
      acceptance_for_2x: acceptanceFor(2, K, draftStep, verify, plainStep),
      best_length_for_1_3x: bestLength,
      acceptance_for_1_3x_at_best_length: bestNeed,
    };
  }
  return {
    draft: label,
    draft_tokens: K,
    adaptive: spec.adaptive !== false,
    rounds: stats.rounds,
    drafts_per_round: stats.rounds ? stats.drafted / stats.rounds : 0,
    acceptance,
    tokens_per_pass: (o.genTokens - 1) / Math.max(1, o.genTokens - 1 - stats.accepted),
    plain_decode_tps: plain,
    decode_tps: fast,
    speedup: fast / plain,
    identical,
    runs,
    costs,
  };
}

export function formatSpeculative(s: SpeculativeBench): string {
  const spread = (k: 'plain_decode_tps' | 'decode_tps') =>
    `${Math.min(...s.runs.map((r) => r[k])).toFixed(1)}–${Math.max(...s.runs.map((r) => r[k])).toFixed(1)}`;
  return [
    `speculative (${s.draft}, ${s.adaptive ? `up to ${s.draft_tokens} per round, chosen each round` : `${s.draft_tokens} per round`}): ${s.rounds} rounds of ${s.drafts_per_round.toFixed(1)} drafts, ${(100 * s.acceptance).toFixed(0)}% of drafted tokens kept, ${s.tokens_per_pass.toFixed(2)} tokens per pass`,
    `  decode ${s.decode_tps.toFixed(1)} tok/s (runs ${spread('decode_tps')}) vs ${s.plain_decode_tps.toFixed(1)} without (runs ${spread('plain_decode_tps')}): ${s.speedup.toFixed(2)}× · output ${s.identical ? 'identical' : 'DIFFERENT'}`,
    ...(s.costs ? [costLine(s)] : []),
  ].join('\n');
}

function costLine(s: SpeculativeBench): string {
  const c = s.costs!,
    need = (a: number | null) => (a === null ? 'more than keeping every draft' : `${(100 * a).toFixed(0)}% of the drafts kept`);
  return (
    `  a round: ${s.draft_tokens} draft steps × ${c.draft_step_ms.toFixed(1)} ms + the model's pass over ${s.draft_tokens + 1} tokens ${c.verify_ms.toFixed(1)} ms, ` +
    `against ${c.plain_step_ms.toFixed(1)} ms a plain step: ${c.predicted_speedup.toFixed(2)}× at this acceptance; ` +
    `1.3× would need ${need(c.acceptance_for_1_3x)}, 2× ${need(c.acceptance_for_2x)}` +
    (s.draft_tokens > 1
      ? `\n  passes over 1..${s.draft_tokens + 1} tokens: ${c.pass_ms.map((x) => x.toFixed(1)).join(' / ')} ms; ` +
        (c.best_length_for_1_3x === null
          ? `no draft length reaches 1.3×`
          : `1.3× needs the least with ${c.best_length_for_1_3x} drafts per round: ${need(c.acceptance_for_1_3x_at_best_length)}`)
      : '')
  );
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'measure prefill and decode speed, memory bandwidth and peak memory',
  help: `Usage: openelm bench --model M [--dtype f32|bf16|f16|q8|q4] [--threads N] [--prompt-tokens 128] [--gen-tokens 128] [--repeat 3] [--json]

Feeds a seeded random prompt of --prompt-tokens tokens (prefill), then decodes --gen-tokens
tokens one at a time with greedy argmax (end-of-sequence ignored). Reports the best of --repeat
runs: tokens/s for both phases, weight bytes, achieved weight bandwidth during decode
(bytes × tokens/s), KV cache bytes and the process's peak RSS.

Options:
      --prompt-tokens N    prefill length (default 128; 32 on a software WebGPU adapter)
      --gen-tokens N       decoded tokens (default 128; 16 on a software WebGPU adapter)
      --repeat N           runs; the best is reported (default 3; 2 on a software WebGPU adapter)
      --warmup N           untimed decode steps before measuring (default 4; 2 on a software WebGPU adapter)
      --json               machine-readable output (with "device", and "adapter" on WebGPU)
${DEVICE_HELP}
${SPECULATIVE_HELP}
  With a draft or --prompt-lookup, bench also decodes the prompt greedily with and without it
  (interleaved) and reports the acceptance rate, the speed-up and whether the output is identical.
${MODEL_HELP}

npm run bench compares this against llama.cpp (node-llama-cpp) on the same weights.`,
  async run(argv) {
    const { values: v } = parse(argv, {
      ...MODEL_OPTIONS,
      ...SPECULATIVE_OPTIONS,
      ...DEVICE_OPTION,
      'prompt-tokens': { type: 'string' },
      'gen-tokens': { type: 'string' },
      repeat: { type: 'string' },
      warmup: { type: 'string' },
    });
    const gpu = await openDevice(v, true); // the report names the device
    // SwiftShader decodes a few tokens per second: shorter defaults there
    const slow = gpu?.software === true;
    const promptTokens = num(v['prompt-tokens'] as string, 'prompt-tokens', { int: true, min: 1 }) ?? (slow ? 32 : 128);
    const genTokens = num(v['gen-tokens'] as string, 'gen-tokens', { int: true, min: 1 }) ?? (slow ? 16 : 128);
    const repeat = num(v.repeat as string, 'repeat', { int: true, min: 1 }) ?? (slow ? 2 : 3);
    const warmup = num(v.warmup as string, 'warmup', { int: true, min: 0 }) ?? (slow ? 2 : 4);
    const t0 = performance.now();
    const needed = promptTokens + genTokens + warmup;
    // the context is ours, not the user's: a --context error names the flags that made it too long
    const contextError = (e: unknown): unknown =>
      v.context === undefined && e instanceof UsageError && e.message.startsWith('--context')
        ? new UsageError(
            `--prompt-tokens + --gen-tokens + --warmup = ${needed} tokens, more than the model's context: ${e.message.replace(/^--context must be at most /, '').replace(/, got \d+$/, '')}`,
          )
        : e;
    const modelValues = { ...v, context: v.context ?? String(needed) };
    if (gpu) {
      try {
        // straight onto the GPU, tensor by tensor
        const { model: gm, dir } = await openGpuModel(modelValues, gpu, Boolean(v.json)).catch((e) => {
          throw contextError(e);
        });
        const loadMs = performance.now() - t0;
        const r = await benchGpuModel(gm, { promptTokens, genTokens, repeat, warmup });
        const out = { model: dir, dtype: (v.dtype as string | undefined) ?? 'auto', backend: 'webgpu', ...deviceJson(gpu), load_ms: loadMs, ...r };
        if (v.json) printJson(out);
        else {
          const lines = formatBench(out).split('\n');
          lines[0] = `device webgpu on ${gpu.adapterName} · dtype ${out.dtype} · loaded in ${(loadMs / 1000).toFixed(1)} s`;
          process.stdout.write(lines.join('\n') + '\n');
        }
      } finally {
        gpu.dispose();
      }
      return;
    }
    let loaded: Awaited<ReturnType<typeof openModelOnly>>;
    try {
      loaded = await openModelOnly(modelValues, Boolean(v.json));
    } catch (e) {
      throw contextError(e);
    }
    let draft: Awaited<ReturnType<typeof openSpeculative>> = { dispose: () => {} };
    try {
      const loadMs = performance.now() - t0;
      draft = await openSpeculative(v, loaded.model, Boolean(v.json));
      const r = await benchModel(loaded.model, { promptTokens, genTokens, repeat, warmup });
      const k = loaded.model.kernels as { name: string; threads?: number };
      const out = {
        model: loaded.dir,
        dtype: (v.dtype as string | undefined) ?? 'auto',
        threads: k.threads ?? 1,
        backend: k.name,
        ...deviceJson(null),
        load_ms: loadMs,
        ...r,
        ...(await benchMachine(loaded.model.kernels)),
      };
      const label = v['draft-model'] !== undefined ? `draft ${v['draft-model']}${v['draft-dtype'] ? ` as ${v['draft-dtype']}` : ''}` : 'prompt lookup';
      const spec = draft.spec ? benchSpeculative(loaded.model, draft.spec, { promptTokens, genTokens, repeat }, label) : undefined;
      if (v.json) printJson(spec ? { ...out, speculative: spec } : out);
      else process.stdout.write(formatBench(out) + '\n' + (spec ? formatSpeculative(spec) + '\n' : ''));
    } finally {
      draft.dispose();
      loaded.dispose();
    }
  },
};
