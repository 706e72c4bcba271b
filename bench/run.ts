// `npm run bench`: openelm against llama.cpp (node-llama-cpp) on the same random-weight OpenELM,
// same precision, same thread count, in the same run, interleaved, each side in its own process.
//
//   npm run bench -- [--preset OpenELM-270M] [--threads 2] [--precisions q8,f16,bf16,q4]
//                    [--rounds 3] [--prompt-tokens 128] [--gen-tokens 128] [--json]
//
// Prints tokens/s for both and the ratios (openelm ÷ llama.cpp), plus peak RSS against the
// budget 1.15 × weights + KV cache + 100 MB. Models are made once under bench/out/.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: v } = benchArgs(import.meta.url, {
  preset: { type: 'string' },
  threads: { type: 'string' },
  precisions: { type: 'string' },
  rounds: { type: 'string' },
  'prompt-tokens': { type: 'string' },
  'gen-tokens': { type: 'string' },
  json: { type: 'boolean' },
  out: { type: 'string' },
});
const preset = v.preset ?? 'OpenELM-270M';
const threads = Number(v.threads ?? os.availableParallelism());
const precisions = (v.precisions ?? 'q8,f16').split(',');
const rounds = Number(v.rounds ?? 3);
const promptTokens = Number(v['prompt-tokens'] ?? 128);
const genTokens = Number(v['gen-tokens'] ?? 128);
const OUT = path.resolve(v.out ?? path.join(ROOT, 'bench/out'));
fs.mkdirSync(OUT, { recursive: true });

// precision → how each side gets its weights (all from the same seeded f32 initialisation)
const PRECISIONS: Record<string, { ours: 'init-bf16' | 'init-f16' | 'init-f32' | 'quantize-q8' | 'quantize-q4'; gguf: string }> = {
  f32: { ours: 'init-f32', gguf: 'f32' },
  f16: { ours: 'init-f16', gguf: 'f16' },
  bf16: { ours: 'init-bf16', gguf: 'bf16' },
  q8: { ours: 'quantize-q8', gguf: 'q8_0' },
  q4: { ours: 'quantize-q4', gguf: 'q4_0' },
};

function log(s: string): void {
  process.stderr.write(s + '\n');
}

function run(args: string[], what: string): string {
  const r = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', maxBuffer: 1 << 26, env: { ...process.env, HF_HUB_OFFLINE: '1' } });
  if (r.status !== 0) throw new Error(`${what} failed (exit ${r.status}):\n${r.stderr.slice(-3000)}`);
  return r.stdout;
}
// openelm runs as users run it: the compiled CLI (no TypeScript loader in its memory or startup)
log('building dist/ (npm run build)');
const build = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
const cli = (args: string[], what: string) => run(['bin/openelm.js', ...args], what);
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

function prepare(prec: string): { ours: string; gguf: string } {
  const spec = PRECISIONS[prec];
  if (!spec) throw new Error(`unknown precision "${prec}"; expected ${Object.keys(PRECISIONS).join(', ')}`);
  const f32 = path.join(OUT, `${preset}-f32`);
  if (!fs.existsSync(path.join(f32, 'config.json'))) {
    log(`making ${f32} (openelm init, seed 0)`);
    cli(['init', '--preset', preset, '--out', f32, '--seed', '0', '--json'], 'init');
  }
  let ours = f32;
  if (spec.ours.startsWith('init-') && spec.ours !== 'init-f32') {
    const dtype = spec.ours.slice(5);
    ours = path.join(OUT, `${preset}-${dtype}`);
    if (!fs.existsSync(path.join(ours, 'config.json'))) {
      log(`making ${ours}`);
      cli(['init', '--preset', preset, '--out', ours, '--seed', '0', '--dtype', dtype, '--json'], 'init');
    }
  } else if (spec.ours.startsWith('quantize-')) {
    const to = spec.ours.slice(9);
    ours = path.join(OUT, `${preset}-${to}`);
    if (!fs.existsSync(path.join(ours, 'config.json'))) {
      log(`making ${ours} (openelm quantize)`);
      cli(['quantize', '--model', f32, '--to', to, '--out', ours, '--no-eval', '--json'], 'quantize');
    }
  }
  const gguf = path.join(OUT, `${preset}-${spec.gguf}.gguf`);
  if (!fs.existsSync(gguf)) {
    log(`making ${gguf} (openelm export)`);
    cli(['export', '--format', 'gguf', '--model', f32, '--out', gguf, '--dtype', spec.gguf, '--json'], 'export');
  }
  return { ours, gguf };
}

interface Side {
  prefill_tps: number;
  decode_tps: number;
  peak_rss_bytes: number;
  weight_bytes?: number;
  kv_cache_bytes?: number;
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b),
    m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

const common = ['--prompt-tokens', String(promptTokens), '--gen-tokens', String(genTokens), '--repeat', '2'];
const results: Record<string, { ours: Side[]; llama: Side[] }> = {};
const models = Object.fromEntries(precisions.map((p) => [p, prepare(p)]));
// first use on a machine calibrates the kernels (tuning.ts: about a second, ~150 MB more peak
// RSS): done here, untimed, so no measured run pays for it
const warm = lastJson(
  cli(
    [
      'bench',
      '--model',
      models[precisions[0]].ours,
      '--threads',
      String(threads),
      '--prompt-tokens',
      '4',
      '--gen-tokens',
      '4',
      '--repeat',
      '1',
      '--warmup',
      '0',
      '--json',
    ],
    'openelm bench (kernel calibration)',
  ),
) as Side & {
  cpu?: string;
  kernel_tuning?: Record<string, unknown>;
};
log(
  `machine: ${os.cpus().length} × ${warm.cpu ?? os.cpus()[0]?.model}, load average ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}`,
);
log(`openelm kernels: ${JSON.stringify(warm.kernel_tuning ?? null)}`);
for (let r = 0; r < rounds; r++) {
  for (const p of precisions) {
    results[p] ??= { ours: [], llama: [] };
    const { ours, gguf } = models[p];
    // alternate which side goes first, so neither always runs on a warmer machine
    const order = r % 2 === 0 ? ['ours', 'llama'] : ['llama', 'ours'];
    for (const side of order) {
      if (side === 'ours') {
        results[p].ours.push(lastJson(cli(['bench', '--model', ours, '--threads', String(threads), ...common, '--json'], `openelm bench ${p}`)));
      } else {
        results[p].llama.push(lastJson(run(['--import', 'tsx', 'bench/llama-cpp.ts', gguf, '--threads', String(threads), ...common], `llama.cpp bench ${p}`)));
      }
    }
    const o = results[p].ours.at(-1)!,
      l = results[p].llama.at(-1)!;
    log(
      `round ${r + 1}/${rounds} ${p}: decode ${o.decode_tps.toFixed(1)} vs ${l.decode_tps.toFixed(1)} tok/s, prefill ${o.prefill_tps.toFixed(1)} vs ${l.prefill_tps.toFixed(1)} tok/s`,
    );
  }
}

const rows = precisions.map((p) => {
  const { ours, llama } = results[p];
  const o = { decode: median(ours.map((x) => x.decode_tps)), prefill: median(ours.map((x) => x.prefill_tps)), rss: median(ours.map((x) => x.peak_rss_bytes)) };
  const l = {
    decode: median(llama.map((x) => x.decode_tps)),
    prefill: median(llama.map((x) => x.prefill_tps)),
    rss: median(llama.map((x) => x.peak_rss_bytes)),
  };
  const weights = ours[0].weight_bytes ?? 0;
  const budget = 1.15 * weights + (ours[0].kv_cache_bytes ?? 0) + 100e6;
  const spread = (xs: number[], digits = 1) => `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;
  return {
    precision: p,
    threads,
    openelm: { ...o, decode_runs: spread(ours.map((x) => x.decode_tps)), prefill_runs: spread(ours.map((x) => x.prefill_tps)) },
    llama_cpp: { ...l, decode_runs: spread(llama.map((x) => x.decode_tps)), prefill_runs: spread(llama.map((x) => x.prefill_tps)) },
    // each round runs both sides back to back, so the ratio of a round is less exposed to the
    // machine's drift between rounds than the ratio of medians: report the median of those
    decode_ratio: median(ours.map((x, i) => x.decode_tps / llama[i].decode_tps)),
    prefill_ratio: median(ours.map((x, i) => x.prefill_tps / llama[i].prefill_tps)),
    decode_ratio_runs: spread(
      ours.map((x, i) => x.decode_tps / llama[i].decode_tps),
      2,
    ),
    prefill_ratio_runs: spread(
      ours.map((x, i) => x.prefill_tps / llama[i].prefill_tps),
      2,
    ),
    weight_bytes: weights,
    decode_gbps: (weights * o.decode) / 1e9,
    rss_budget: budget,
    rss_ok: o.rss <= budget,
  };
});

if (v.json) {
  process.stdout.write(
    JSON.stringify({ preset, threads, prompt_tokens: promptTokens, gen_tokens: genTokens, rounds, cpu: warm.cpu, kernel_tuning: warm.kernel_tuning, rows }) +
      '\n',
  );
} else {
  const f = (x: number) => x.toFixed(1);
  const mb = (x: number) => `${(x / 1e6).toFixed(0)} MB`;
  const lines = [
    `${preset}, ${threads} threads, ${promptTokens}-token prompt, ${genTokens} generated, median of ${rounds} interleaved rounds (range in brackets); ratios: median of the rounds' ratios`,
    '',
    '| precision | decode tok/s openelm | llama.cpp | ratio | prefill tok/s openelm | llama.cpp | ratio | weights GB/s | peak RSS (budget) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.precision} | ${f(r.openelm.decode)} [${r.openelm.decode_runs}] | ${f(r.llama_cpp.decode)} [${r.llama_cpp.decode_runs}] | **${r.decode_ratio.toFixed(2)}×** [${r.decode_ratio_runs}] | ` +
        `${f(r.openelm.prefill)} [${r.openelm.prefill_runs}] | ${f(r.llama_cpp.prefill)} [${r.llama_cpp.prefill_runs}] | **${r.prefill_ratio.toFixed(2)}×** [${r.prefill_ratio_runs}] | ` +
        `${r.decode_gbps.toFixed(1)} | ${mb(r.openelm.rss)} (${mb(r.rss_budget)}${r.rss_ok ? '' : ' EXCEEDED'}); llama.cpp ${mb(r.llama_cpp.rss)} |`,
    ),
  ];
  process.stdout.write(lines.join('\n') + '\n');
}
