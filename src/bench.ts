// Speed measurement of a loaded model: prefill and decode tokens/s, weight bandwidth, memory.

import { Rng } from './generate/rng.ts';
import { cpuModel, type KernelTuning, type TuningSource, vnniHint } from './kernels/wasm/tuning.ts';
import { WasmKernels } from './kernels/wasm/wasm.ts';
import type { GpuOpenELM } from './model/gpu.ts';
import type { OpenELM } from './model/openelm.ts';
import type { ModelWeights } from './model/weights.ts';

export interface BenchOptions {
  promptTokens: number;
  genTokens: number;
  /** runs; the best (fastest) is reported */
  repeat: number;
  /** untimed decode steps first (JIT, page faults) */
  warmup: number;
  seed?: number;
}

export interface BenchResult {
  prompt_tokens: number;
  gen_tokens: number;
  prefill_tps: number;
  decode_tps: number;
  /** every run, for judging noise */
  runs: { prefill_tps: number; decode_tps: number }[];
  weight_bytes: number;
  /** bytes of weights streamed per second while decoding (each token reads every weight once) */
  decode_gbps: number;
  kv_cache_bytes: number;
  peak_rss_bytes: number;
}

/** Bytes of all weights as stored (the tied embedding counted once). */
export function weightBytes(w: ModelWeights): number {
  let n = w.token_embeddings.data.byteLength + w.norm.byteLength;
  if (w.lm_head !== w.token_embeddings) n += w.lm_head.data.byteLength;
  for (const l of w.layers) {
    n += l.qkv_proj.data.byteLength + l.out_proj.data.byteLength + l.proj_1.data.byteLength + l.proj_2.data.byteLength;
    n += l.attn_norm.byteLength + l.ffn_norm.byteLength + (l.q_norm?.byteLength ?? 0) + (l.k_norm?.byteLength ?? 0);
  }
  return n;
}

/** The seeded random prompt every bench feeds (ids from 3 on: no BOS, EOS or padding), checked against the KV cache. */
export function benchPrompt(vocab: number, o: BenchOptions, capacity: number): number[] {
  const rng = new Rng(o.seed ?? 0);
  const prompt = Array.from({ length: o.promptTokens }, () => 3 + (rng.nextU32() % (vocab - 3)));
  if (o.promptTokens + o.genTokens + o.warmup > capacity) {
    throw new RangeError(`prompt + generated + warmup tokens (${o.promptTokens + o.genTokens + o.warmup}) exceed the KV cache (${capacity})`);
  }
  return prompt;
}

/** The report from the timed runs: the best run of each phase, weight bandwidth, memory. */
export function benchSummary(o: BenchOptions, runs: BenchResult['runs'], weightBytes: number, kvCacheBytes: number): BenchResult {
  const prefill = Math.max(...runs.map((r) => r.prefill_tps));
  const decode = Math.max(...runs.map((r) => r.decode_tps));
  return {
    prompt_tokens: o.promptTokens,
    gen_tokens: o.genTokens,
    prefill_tps: prefill,
    decode_tps: decode,
    runs,
    weight_bytes: weightBytes,
    decode_gbps: (weightBytes * decode) / 1e9,
    kv_cache_bytes: kvCacheBytes,
    peak_rss_bytes: process.resourceUsage().maxRSS * 1024,
  };
}

/** A model as the bench drives it: an empty cache, then tokens fed and the greedy next token back. */
interface GreedyStepper {
  reset(): void;
  next(ids: number[]): number | Promise<number>;
}

/** Warm-up, then `repeat` timed runs of prefill (the seeded prompt) and greedy decode. */
async function benchGreedy(m: GreedyStepper, vocab: number, capacity: number, o: BenchOptions, bytes: number, kvBytes: number): Promise<BenchResult> {
  const prompt = benchPrompt(vocab, o, capacity);
  // warm up: JIT-compile the wasm (or the GPU's pipelines), fault in every buffer
  m.reset();
  let t = await m.next(prompt.slice(0, Math.min(8, prompt.length)));
  for (let i = 0; i < o.warmup; i++) t = await m.next([t]);

  const runs: BenchResult['runs'] = [];
  for (let r = 0; r < o.repeat; r++) {
    m.reset();
    let t0 = performance.now();
    t = await m.next(prompt);
    const prefillMs = performance.now() - t0;
    t0 = performance.now();
    for (let i = 0; i < o.genTokens; i++) t = await m.next([t]);
    const decodeMs = performance.now() - t0;
    runs.push({ prefill_tps: (o.promptTokens / prefillMs) * 1000, decode_tps: (o.genTokens / decodeMs) * 1000 });
  }
  return benchSummary(o, runs, bytes, kvBytes);
}

/** `openelm bench` on the CPU: the model's forward pass on its kernels, the argmax on the CPU. */
export function benchModel(model: OpenELM, o: BenchOptions): Promise<BenchResult> {
  const V = model.config.vocab_size,
    k = model.kernels;
  const stepper = { reset: () => model.reset(), next: (ids: number[]) => k.argmax(model.forward(ids), V) };
  return benchGreedy(stepper, V, model.cache.capacity, o, weightBytes(model.weights), model.cache.bytes);
}

/**
 * `openelm bench --device webgpu`: the GPU forward pass with the argmax on the GPU (4 bytes read
 * back per token), so a decode step is one submission and one read back, as in gpuGenerate.
 */
export function benchGpuModel(gm: GpuOpenELM, o: BenchOptions): Promise<BenchResult> {
  const stepper = { reset: () => gm.reset(), next: (ids: number[]) => gm.forwardArgmax(ids) };
  return benchGreedy(stepper, gm.config.vocab_size, gm.capacity, o, gm.weightBytes, gm.kvCacheBytes);
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

/** What `openelm bench` adds to a BenchResult on the CPU: the CPU model and the kernel variants in use (tuning.ts). */
export interface BenchMachine {
  cpu?: string;
  /** `skipped`: why the calibration measured nothing and kept the defaults */
  kernel_tuning?: KernelTuning & { source: TuningSource; skipped?: string };
  /** advice on running faster here: a CPU with AVX-VNNI under a Node whose V8 does not use it */
  hint?: string;
}

/** The CPU model and the wasm kernels' variants, for a report (nothing for other backends). */
export async function benchMachine(kernels: unknown): Promise<BenchMachine> {
  const cpu = await cpuModel();
  if (!(kernels instanceof WasmKernels)) return { cpu };
  const skipped = kernels.tuningMeasured?.skipped;
  const hint = await vnniHint(kernels.name);
  return { cpu, kernel_tuning: { ...kernels.tuning, source: kernels.tuningSource, ...(skipped ? { skipped } : {}) }, ...(hint ? { hint } : {}) };
}

export function formatBench(r: BenchResult & BenchMachine & { dtype?: string; threads?: number; backend?: string; load_ms?: number }): string {
  const spread = (k: 'prefill_tps' | 'decode_tps') => {
    const xs = r.runs.map((x) => x[k]);
    return `${Math.min(...xs).toFixed(1)}–${Math.max(...xs).toFixed(1)}`;
  };
  return [
    `backend ${r.backend ?? '?'} · dtype ${r.dtype ?? '?'} · threads ${r.threads ?? '?'}${r.load_ms !== undefined ? ` · loaded in ${(r.load_ms / 1000).toFixed(1)} s` : ''}`,
    `prefill  ${r.prompt_tokens} tokens: ${r.prefill_tps.toFixed(1)} tok/s (runs ${spread('prefill_tps')})`,
    `decode   ${r.gen_tokens} tokens: ${r.decode_tps.toFixed(1)} tok/s (runs ${spread('decode_tps')}) · ${r.decode_gbps.toFixed(1)} GB/s of weights`,
    `weights ${mb(r.weight_bytes)} · KV cache ${mb(r.kv_cache_bytes)} · peak RSS ${mb(r.peak_rss_bytes)}`,
    ...(r.cpu ? [`cpu ${r.cpu}`] : []),
    ...(r.kernel_tuning ? [`kernels ${formatTuning(r.kernel_tuning)}`] : []),
    ...(r.hint ? [`hint: ${r.hint}`] : []),
  ].join('\n');
}

export function formatTuning(t: KernelTuning & { source: TuningSource; skipped?: string }): string {
  const from = t.skipped
    ? `defaults, not calibrated: ${t.skipped}`
    : { default: 'fixed defaults', calibrated: 'calibrated now', cache: 'calibrated earlier, cached', given: 'given' }[t.source];
  return `decode rows in flight: quantized ${t.quantDecodeRows}, float ${t.floatDecodeRows} (${from}) · GEMM from ${t.gemmMinTokensQuant} tokens (quantized) / ${t.gemmMinTokensFloat} (f16; f32 and bf16 never pack)`;
}
