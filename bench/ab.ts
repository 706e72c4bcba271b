/// <reference types="node" />
// In-process A/B of two builds of the WebAssembly kernels, for kernel work on a noisy machine
// (this VM drifts by ±20 % between runs; two builds alternating in one process see the same drift).
//
//   node src/kernels/wasm/build.mjs /tmp/variant          # build the changed kernels.as elsewhere
//   npm run bench:ab -- --b /tmp/variant/kernels-relaxed.wasm [--dtype bf16] [--shape 1536,1280,128]
//   npm run bench:ab -- --b /tmp/variant/kernels-relaxed.wasm --model DIR [--dtype q4]
//
// --a defaults to the committed relaxed-SIMD build. --a-tuning / --b-tuning JSON: kernel tuning
// fields over DEFAULT_TUNING for that side (e.g. '{"gemmMinTokensFloat":64}': a routing choice
// against another; otherwise both follow OPENELM_KERNEL_TUNING). Without --model: one matmul of --shape
// (rows, cols, tokens), the weights rotated through ≥ 96 MB of copies so they come from memory
// as in a model (--copies 1: the same weights every call, from cache). --a-options / --b-options
// JSON: createWasmKernels options for that side (e.g. '{"tiles":false}'). With --model: the prefill of a --prompt-token prompt (default 128; two copies
// of the model, one per build); with --decode, 32 decode steps after a 4-token prompt instead. Prints the best of each and the median of the per-round ratios B/A (> 1: B faster).

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseDType } from '../src/cli/model-options.ts';
import type { WeightDType } from '../src/kernels/types.ts';
import { DEFAULT_TUNING, type KernelTuning } from '../src/kernels/wasm/tuning.ts';
import { createWasmKernels, type WasmKernelsOptions } from '../src/kernels/wasm/wasm.ts';
import { checkpointSource } from '../src/load.ts';
import { OpenELM } from '../src/model/openelm.ts';
import { benchArgs, usageError } from './args.ts';

const { values } = benchArgs(import.meta.url, {
  a: { type: 'string', default: fileURLToPath(new URL('../src/kernels/wasm/build/kernels-relaxed.wasm', import.meta.url)) },
  b: { type: 'string' },
  model: { type: 'string' },
  dtype: { type: 'string' },
  shape: { type: 'string', default: '1536,1280,128' },
  threads: { type: 'string', default: '1' },
  rounds: { type: 'string', default: '15' },
  copies: { type: 'string' },
  decode: { type: 'boolean', default: false },
  prompt: { type: 'string', default: '128' },
  'a-tuning': { type: 'string' },
  'b-tuning': { type: 'string' },
  'a-options': { type: 'string' },
  'b-options': { type: 'string' },
});
if (!values.b) usageError('--b BUILD.wasm is required: the build to compare with --a');
const promptTokens = Math.max(1, Number(values.prompt));
const threads = Number(values.threads),
  rounds = Number(values.rounds);

/** a function running one measured unit of work with the build in `file` */
async function setup(file: string, tuningJson: string | undefined, optionsJson: string | undefined): Promise<() => void> {
  const tuning = tuningJson ? { ...DEFAULT_TUNING, ...(JSON.parse(tuningJson) as Partial<KernelTuning>) } : undefined;
  const options = optionsJson ? (JSON.parse(optionsJson) as WasmKernelsOptions) : {};
  const kernels = await createWasmKernels({ ...options, threads, binary: new Uint8Array(readFileSync(file)), tuning });
  if (values.model) {
    const dtype = parseDType(values.dtype);
    const model = OpenELM.load(checkpointSource(values.model), { kernels, dtype, contextLength: 256 }, values.model);
    const prompt = Array.from({ length: promptTokens }, (_, i) => 3 + ((i * 7919) % (model.config.vocab_size - 3)));
    if (values.decode)
      return () => {
        model.reset();
        model.forward(prompt.slice(0, 4));
        for (let i = 0; i < 32; i++) model.step(5 + i);
      };
    return () => {
      model.reset();
      model.forward(prompt);
    };
  }
  const [rows, cols, n] = values.shape.split(',').map(Number);
  const dtype = (values.dtype ?? 'bf16') as WeightDType;
  const bytes = kernels.weightBytes(dtype, rows, cols);
  const copies = values.copies ? Number(values.copies) : Math.max(1, Math.ceil((96 << 20) / bytes));
  const weights = Array.from({ length: copies }, () => {
    const w = kernels.weight(dtype, rows, cols),
      b = new Uint8Array(w.data.buffer, w.data.byteOffset, w.data.byteLength);
    // small finite values in every dtype: bytes 0..63 (bf16/f16 halves ≤ ~2, q blocks' scales tiny)
    for (let i = 0; i < b.length; i++) b[i] = (i * 37) & 0x3f;
    return w;
  });
  const x = kernels.f32(n * cols),
    y = kernels.f32(n * rows);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i);
  let c = 0;
  return () => kernels.matmul(y, x, weights[(c = (c + 1) % weights.length)], n);
}

const A = await setup(values.a, values['a-tuning'], values['a-options']),
  B = await setup(values.b, values['b-tuning'], values['b-options']);
for (let i = 0; i < 3; i++) {
  A();
  B();
}
const time = (f: () => void): number => {
  const t = performance.now();
  f();
  f();
  return (performance.now() - t) / 2;
};
const ta: number[] = [],
  tb: number[] = [];
for (let r = 0; r < rounds; r++) {
  ta.push(time(A));
  tb.push(time(B));
}
const median = (a: number[]): number => [...a].sort((p, q) => p - q)[a.length >> 1];
const ms = (t: number): string => `${t.toFixed(2)} ms`;
console.log(
  `${values.model ? `${values.decode ? '4-token prompt + 32 decode steps' : `prefill ${promptTokens} tokens`} of ${values.model}` : `matmul ${values.shape} ${values.dtype ?? 'bf16'}`}, ${threads} thread(s), ${rounds} rounds`,
);
console.log(`A ${values.a}: best ${ms(Math.min(...ta))}`);
console.log(`B ${values.b}: best ${ms(Math.min(...tb))}`);
console.log(
  `B/A speed: ${median(ta.map((t, i) => t / tb[i])).toFixed(3)} (median of per-round ratios; range ${Math.min(...ta.map((t, i) => t / tb[i])).toFixed(3)}–${Math.max(...ta.map((t, i) => t / tb[i])).toFixed(3)})`,
);
process.exit(0);
