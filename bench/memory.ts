/// <reference types="node" />
// `npm run bench:memory`: the machine's read bandwidth from WebAssembly, next to what decode
// streams, so every decode figure carries its physical limit.
//
//   npm run bench:memory -- [--mb 512] [--model DIR] [--tokens 32] [--rounds 5] [--json]
//
// 1. Read bandwidth: one buffer of --mb MiB (far larger than any cache) read end to end by
//    WasmKernels.readPass (8 independent 16-byte loads per step, all threads claiming 64 KiB blocks),
//    with 1 thread and with all of them; GB/s of the best of --rounds passes.
// 2. Decode: --model (default: the 270M q8_0 model `npm run bench` makes under bench/out) decoding
//    --tokens tokens after a 4-token prompt, on the same thread counts; its weight bytes × tokens/s
//    is the bandwidth decode achieves, printed as a fraction of the read bandwidth.

import { execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createWasmKernels } from '../src/kernels/wasm/wasm.ts';
import { checkpointSource } from '../src/load.ts';
import { OpenELM } from '../src/model/openelm.ts';
import { benchArgs } from './args.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: v } = benchArgs(import.meta.url, {
  mb: { type: 'string', default: '512' },
  model: { type: 'string' },
  tokens: { type: 'string', default: '32' },
  rounds: { type: 'string', default: '5' },
  json: { type: 'boolean' },
});
const mb = Number(v.mb),
  rounds = Number(v.rounds),
  tokens = Number(v.tokens);
const modelDir = v.model ?? path.join(ROOT, 'bench/out/OpenELM-270M-q8');
const threadCounts = [...new Set([1, os.availableParallelism()])];
let cpu = os.cpus()[0]?.model ?? 'unknown CPU';
try {
  cpu = /Model name:\s*(.+)/.exec(execSync('lscpu', { encoding: 'utf8' }))?.[1]?.trim() ?? cpu;
} catch {
  /* no lscpu */
}

const results: { threads: number; read_gb_s: number; decode_tok_s: number | null; decode_gb_s: number | null; fraction: number | null }[] = [];
for (const threads of threadCounts) {
  const k = await createWasmKernels({ threads });
  // the read: a buffer of mb MiB, touched once so its pages exist
  const buf = k.f32((mb << 20) / 4);
  for (let i = 0; i < buf.length; i += 1024) buf[i] = i;
  k.readPass(buf);
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    k.readPass(buf);
    best = Math.min(best, performance.now() - t0);
  }
  const readGBs = buf.byteLength / (best / 1000) / 1e9;
  // the decode: the same kernels, the model's weights streamed once per token
  let decodeTok: number | null = null,
    decodeGBs: number | null = null;
  if (fs.existsSync(path.join(modelDir, 'config.json'))) {
    const model = OpenELM.load(checkpointSource(modelDir), { kernels: k, contextLength: 4 + tokens + 1 });
    const weightBytes = [...model.weights.layers.flatMap((l) => [l.qkv_proj, l.out_proj, l.proj_1, l.proj_2]), model.weights.lm_head].reduce(
      (a, w) => a + w.data.byteLength,
      0,
    );
    let bestTok = 0;
    for (let r = 0; r < Math.max(2, Math.ceil(rounds / 2)); r++) {
      model.reset();
      model.forward([1, 2, 3, 4]);
      const t0 = performance.now();
      for (let i = 0; i < tokens; i++) model.step(5 + i);
      bestTok = Math.max(bestTok, tokens / ((performance.now() - t0) / 1000));
    }
    decodeTok = bestTok;
    decodeGBs = (weightBytes * bestTok) / 1e9;
  }
  results.push({ threads, read_gb_s: readGBs, decode_tok_s: decodeTok, decode_gb_s: decodeGBs, fraction: decodeGBs === null ? null : decodeGBs / readGBs });
  k.dispose?.();
}

const load = os
  .loadavg()
  .map((x) => x.toFixed(2))
  .join(' ');
if (v.json) {
  console.log(
    JSON.stringify(
      { cpu, cores: os.availableParallelism(), load_average: load, buffer_mb: mb, model: fs.existsSync(modelDir) ? modelDir : null, results },
      null,
      2,
    ),
  );
} else {
  console.log(
    `${cpu}, ${os.availableParallelism()} cores, load average ${load}; read buffer ${mb} MiB; decode: ${fs.existsSync(modelDir) ? modelDir : '(no model: run npm run bench first, or --model DIR)'}`,
  );
  console.log('| threads | read GB/s (WebAssembly) | decode tok/s | decode GB/s (weights) | decode ÷ read |');
  console.log('|---|---|---|---|---|');
  for (const r of results) {
    const f = (x: number | null, d = 1) => (x === null ? '–' : x.toFixed(d));
    console.log(
      `| ${r.threads} | ${f(r.read_gb_s)} | ${f(r.decode_tok_s)} | ${f(r.decode_gb_s)} | ${r.fraction === null ? '–' : `${(r.fraction * 100).toFixed(0)} %`} |`,
    );
  }
}
process.exit(0);
