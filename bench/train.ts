// npm run bench:train [-- --steps N --threads T --rounds R --json]
//
// Training throughput on a fixed OpenELM (vocab 32000, model_dim 256, 8 layers, head_dim 32,
// 4 query heads per KV head, qkv multipliers 0.5→1.0, ffn multipliers 0.5→4.0, ffn_dim_divisor
// 64; 12.96 M parameters), seq 256, batch 8, AdamW, grad clip 1.0: openelm's trainer, and in the
// same run PyTorch eager CPU training of the same model (bench/train-torch.py) when Debian's
// python3-torch is installed. Prints tokens/s, GFLOP/s and peak RSS of each and their ratio.
// Rounds alternate the two sides; the ratio is the median of each round's ratio.

import { execFileSync, spawnSync } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { type OpenELMConfig, parseConfig } from '../src/config/index.ts';
import { Rng } from '../src/generate/rng.ts';
import { createKernels } from '../src/kernels/index.ts';
import { Backprop } from '../src/train/backprop.ts';
import { clipGradNorm, Optimizer } from '../src/train/optim.ts';
import { type Batch, DEFAULT_OPTIMIZER } from '../src/train/options.ts';
import { ParamLayout } from '../src/train/params.ts';
import { benchArgs } from './args.ts';

const { values: a } = benchArgs(import.meta.url, {
  steps: { type: 'string', default: '6' },
  warmup: { type: 'string', default: '2' },
  threads: { type: 'string' },
  rounds: { type: 'string', default: '2' },
  json: { type: 'boolean' },
  'no-torch': { type: 'boolean' },
});
const steps = Number(a.steps),
  warmup = Number(a.warmup),
  rounds = Number(a.rounds);
const threads = a.threads ? Number(a.threads) : os.availableParallelism();
const B = 8,
  S = 256;

export const BENCH_CONFIG: OpenELMConfig = parseConfig(
  {
    vocab_size: 32000,
    model_dim: 256,
    num_transformer_layers: 8,
    head_dim: 32,
    num_gqa_groups: 4,
    qkv_multipliers: [0.5, 1.0],
    ffn_multipliers: [0.5, 4.0],
    ffn_dim_divisor: 64,
    max_context_length: S,
  },
  'bench config',
);

/**
 * Training FLOPs per token, the formula bench/train-torch.py uses: 6 × the multiply-adds per token
 * of every matmul (the tied output head included) + 12 · seq · Σ_layers nQ · head_dim for the
 * attention scores and weighted values (the full seq × seq square, not halved for the mask).
 */
export function flopsPerToken(cfg: OpenELMConfig, seqLen: number): number {
  let matmul = cfg.vocab_size * cfg.model_dim,
    attn = 0;
  for (let i = 0; i < cfg.num_transformer_layers; i++) {
    const nQ = cfg.num_query_heads[i],
      nKV = cfg.num_kv_heads[i],
      hd = cfg.head_dim,
      F = cfg.ffn_dims[i];
    matmul += (nQ + 2 * nKV) * hd * cfg.model_dim + nQ * hd * cfg.model_dim + (cfg.ffn_with_glu ? 3 : 2) * F * cfg.model_dim;
    attn += nQ * hd;
  }
  return 6 * matmul + 12 * seqLen * attn;
}

function randomBatch(rng: Rng): Batch {
  const inputs = new Int32Array(B * S),
    targets = new Int32Array(B * S);
  for (let i = 0; i < B * S; i++) {
    inputs[i] = rng.nextU32() % 32000;
    targets[i] = rng.nextU32() % 32000;
  }
  return { batchSize: B, seqLen: S, inputs, targets };
}

async function openelmRound(): Promise<{ tokens_per_s: number; step_ms: number[] }> {
  const k = await createKernels('wasm', { threads });
  try {
    const layout = new ParamLayout(BENCH_CONFIG);
    const params = k.f32(layout.size),
      grads = k.f32(layout.size);
    layout.init(params, 0);
    const opt = new Optimizer(k, layout, DEFAULT_OPTIMIZER);
    const bp = new Backprop(BENCH_CONFIG, k, { batchSize: B, seqLen: S });
    const w = layout.weights(params),
      g = layout.weights(grads);
    const rng = new Rng(1);
    const times: number[] = [];
    for (let s = 0; s < warmup + steps; s++) {
      const batch = randomBatch(rng);
      const t0 = performance.now();
      grads.fill(0);
      bp.step(w, g, batch);
      clipGradNorm(k, grads, layout, 1.0);
      opt.update(params, grads, 1e-3);
      if (s >= warmup) times.push(performance.now() - t0);
    }
    const mean = times.reduce((x, y) => x + y, 0) / times.length;
    return { tokens_per_s: (B * S) / (mean / 1000), step_ms: times.map((t) => Math.round(t)) };
  } finally {
    k.dispose?.();
  }
}

/** A Python that imports torch: $TORCH_PYTHON, python3, or Debian's /usr/bin/python3 (python3-torch). */
function torchPython(): string | null {
  for (const py of [process.env.TORCH_PYTHON, 'python3', '/usr/bin/python3']) {
    if (py && spawnSync(py, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0) return py;
  }
  return null;
}

function torchRound(py: string): { tokens_per_s: number; torch_version: string; blas?: string; step_ms: number[] } {
  const script = fileURLToPath(new URL('./train-torch.py', import.meta.url));
  const out = execFileSync(py, [script, '--threads', String(threads), '--steps', String(steps), '--warmup-steps', String(warmup), '--json'], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out.trim().split('\n').pop()!);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((x, y) => x - y),
    m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const fpt = flopsPerToken(BENCH_CONFIG, S);
const py = a['no-torch'] ? null : torchPython();
const withTorch = py !== null;
const ours: number[] = [],
  theirs: number[] = [],
  ratios: number[] = [];
let torchVersion: string | undefined, blas: string | undefined;
for (let r = 0; r < rounds; r++) {
  const o = await openelmRound();
  ours.push(o.tokens_per_s);
  if (!a.json) process.stderr.write(`round ${r + 1}: openelm ${o.tokens_per_s.toFixed(0)} tokens/s (steps ${o.step_ms.join(', ')} ms)\n`);
  if (withTorch) {
    const t = torchRound(py!);
    torchVersion = t.torch_version;
    blas = t.blas;
    theirs.push(t.tokens_per_s);
    ratios.push(o.tokens_per_s / t.tokens_per_s);
    if (!a.json) process.stderr.write(`round ${r + 1}: pytorch ${t.tokens_per_s.toFixed(0)} tokens/s → ${(o.tokens_per_s / t.tokens_per_s).toFixed(2)}×\n`);
  }
}
const tps = median(ours);
const result = {
  cpu,
  threads,
  batch: B,
  seq_len: S,
  params: new ParamLayout(BENCH_CONFIG).count,
  tokens_per_s: tps,
  gflops: (tps * fpt) / 1e9,
  flops_per_token: fpt,
  peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  pytorch: withTorch ? { version: torchVersion, blas, tokens_per_s: median(theirs), gflops: (median(theirs) * fpt) / 1e9 } : null,
  ratio: withTorch ? median(ratios) : null,
  ratio_range: withTorch ? [Math.min(...ratios), Math.max(...ratios)] : null,
  rounds,
};
if (a.json) process.stdout.write(JSON.stringify(result) + '\n');
else {
  process.stdout.write(`\nTraining throughput, ${cpu}, ${threads} threads, batch ${B} × seq ${S}, ${(result.params / 1e6).toFixed(2)} M parameters\n`);
  process.stdout.write(`  openelm   ${tps.toFixed(0)} tokens/s  ${result.gflops.toFixed(1)} GFLOP/s  peak RSS ${result.peak_rss_mb} MB\n`);
  if (result.pytorch) {
    process.stdout.write(
      `  pytorch   ${result.pytorch.tokens_per_s.toFixed(0)} tokens/s  ${result.pytorch.gflops.toFixed(1)} GFLOP/s  (torch ${torchVersion}, eager, BLAS ${blas ?? '?'})\n`,
    );
    process.stdout.write(
      `  ratio     ${result.ratio!.toFixed(2)}× [${result.ratio_range![0].toFixed(2)}–${result.ratio_range![1].toFixed(2)}] (median of ${rounds} rounds)\n`,
    );
  } else process.stdout.write("  pytorch   not measured (install Debian's python3-torch)\n");
}
