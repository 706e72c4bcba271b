// npm run bench:serve — openelm serve under a bounded load on loopback.
//
// Makes a random-weight OpenELM-270M (bf16, under bench/out/, once) and serves it quantized to
// q8_0 while loading, in a child process (`openelm serve --dtype q8`). Then, for each
// concurrency level (default 1, 4, 8), sends --requests streaming /v1/completions requests,
// that many at a time: distinct random token-id prompts (no prefix-cache hits), greedy,
// --max-tokens tokens each with ignore_eos. Per level: aggregate generated tokens/s (all
// tokens / wall time), time to first token and inter-token latency (gaps between streamed
// tokens) at p50 / p95 / p99, and the ratios against the first level, measured in the same run.
// After the first level the clients start one request lifetime / c apart (--no-stagger: together),
// so arrivals are spread as in a served population rather than bursts of c prompts in lockstep;
// TTFT is also reported for the requests after the first wave.
//
// --health: instead of the load levels, /health's latency while long prompts prefill (default 3
// prompts of 1000 tokens, one at a time, max_tokens 1; /health polled back to back): with the
// engine in its worker thread (the default) and with --in-process (the engine on the HTTP thread).
//
//   npm run bench:serve
//   npm run bench:serve -- --requests 32 --levels 1,8 --max-tokens 48 --threads 2 --json
//   npm run bench:serve -- --health [--in-process] [--prompt-tokens 1000]
//   npm run bench:serve -- --burst [--dtype f32] [--max-tokens 64]   non-streaming requests sent c at
//                          a time, each batch when the last one has ended (c = 1: one at a time):
//                          aggregate tokens/s per level and its ratio to one at a time
//   npm run bench:serve -- --draft-dtype q4 [--draft-tokens 4] [--draft-fixed]   the model drafts for
//                          itself (a q4_0 copy); greedy steps draft 0..4 tokens as the engine finds
//                          pays (--draft-fixed: always 4)
//   npm run bench:serve -- --prompt-lookup 10
//   npm run bench:serve -- --peer [--gguf F]   also llama.cpp (node-llama-cpp) decoding c sequences
//                          together in one context, same levels, on the GGUF of the same shape
//                          (default bench/out/OpenELM-270M-<dtype>.gguf, which npm run bench makes)
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Rng } from '../src/generate/rng.ts';
import { benchArgs } from './args.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const { values: v } = benchArgs(import.meta.url, {
  requests: { type: 'string' },
  levels: { type: 'string' },
  'max-tokens': { type: 'string' },
  'prompt-tokens': { type: 'string' },
  threads: { type: 'string' },
  parallel: { type: 'string' },
  model: { type: 'string' },
  dtype: { type: 'string' },
  json: { type: 'boolean' },
  health: { type: 'boolean' },
  burst: { type: 'boolean' },
  'in-process': { type: 'boolean' },
  'step-tokens': { type: 'string' },
  'refill-wait': { type: 'string' },
  'draft-dtype': { type: 'string' },
  'draft-tokens': { type: 'string' },
  'draft-fixed': { type: 'boolean' },
  'prompt-lookup': { type: 'string' },
  'no-stagger': { type: 'boolean' },
  peer: { type: 'boolean' },
  gguf: { type: 'string' },
});
const REQUESTS = Number(v.requests ?? 64),
  LEVELS = (v.levels ?? '1,4,8').split(',').map(Number);
const MAX_TOKENS = Number(v['max-tokens'] ?? 32),
  PROMPT_TOKENS = Number(v['prompt-tokens'] ?? (v.health ? 1000 : 32));
const THREADS = v.threads ?? '2',
  DTYPE = v.dtype ?? 'q8',
  PARALLEL = v.parallel ?? String(Math.max(8, ...LEVELS));
const CLI = ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts')];
const log = (s: string) => {
  if (!v.json) process.stderr.write(s + '\n');
};

function cpuModel(): string {
  try {
    const m = /Model name:\s*(.+)/.exec(execFileSync('lscpu', { encoding: 'utf8' }));
    if (m) return m[1].trim();
  } catch {
    /* no lscpu */
  }
  return os.cpus()[0]?.model ?? 'unknown';
}

// the model: made once, reused by later runs (and by npm run bench, which makes the same folder)
const dir = v.model ?? path.join(ROOT, 'bench/out/OpenELM-270M-bf16');
if (!v.model && !existsSync(path.join(dir, 'model.safetensors'))) {
  log(`making a random-weight OpenELM-270M in ${dir}`);
  execFileSync(process.execPath, [...CLI, 'init', '--preset', 'OpenELM-270M', '--dtype', 'bf16', '--out', dir, '--exist-ok'], { stdio: 'inherit' });
}

// the server, in its own process, as a user runs it
const server = spawn(
  process.execPath,
  [
    ...CLI,
    'serve',
    '-m',
    dir,
    '--dtype',
    DTYPE,
    '--threads',
    THREADS,
    '--port',
    '0',
    '--parallel',
    PARALLEL,
    '--queue',
    String(REQUESTS),
    '--served-name',
    'bench',
    ...(v['in-process'] ? ['--in-process'] : []),
    ...(v['step-tokens'] ? ['--step-tokens', v['step-tokens']] : []),
    ...(v['refill-wait'] ? ['--refill-wait', v['refill-wait']] : []),
    ...(v['draft-dtype'] ? ['--draft-model', dir, '--draft-dtype', v['draft-dtype'], ...(v['draft-tokens'] ? ['--draft-tokens', v['draft-tokens']] : [])] : []),
    ...(v['draft-fixed'] ? ['--draft-fixed'] : []),
    ...(v['prompt-lookup'] ? ['--prompt-lookup', v['prompt-lookup']] : []),
  ],
  { stdio: ['ignore', 'ignore', 'pipe'] },
);
const base = await new Promise<string>((resolve, reject) => {
  let err = '';
  server.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    const m = / on (http:\/\/[^ ]+) /.exec(err);
    if (m) resolve(m[1]);
  });
  server.on('exit', (code) => reject(new Error(`openelm serve exited with ${code}:\n${err}`)));
});
log(`server at ${base}`);

const V = 32000;
const SPECULATING = !!(v['draft-dtype'] || v['prompt-lookup']);
let promptSeed = 1;
interface One {
  ttft: number;
  gaps: number[];
  tokens: number;
}

/** BOS and PROMPT_TOKENS - 1 random token ids, a new seed each call (no prefix-cache hits) */
function randomPrompt(seed = promptSeed++): number[] {
  const rng = new Rng(seed);
  return [1, ...Array.from({ length: PROMPT_TOKENS - 1 }, () => 3 + (rng.nextU32() % (V - 3)))];
}

/** One streaming completion; times the first token and the gaps between tokens. */
async function one(): Promise<One> {
  const prompt = randomPrompt();
  const t0 = performance.now();
  const res = await fetch(base + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'bench',
      prompt,
      max_tokens: MAX_TOKENS,
      temperature: 0,
      ignore_eos: true,
      stream: true,
      stream_options: { include_usage: true },
      // logprobs make every token its own chunk, but a request with logprobs is not speculated
      logprobs: SPECULATING ? undefined : 0,
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  const times: number[] = [];
  let tokens = 0,
    buf = '';
  const dec = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    const now = performance.now();
    buf += dec.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!ev.startsWith('data: ') || ev === 'data: [DONE]') continue;
      const j = JSON.parse(ev.slice(6));
      if (j.usage) tokens = j.usage.completion_tokens;
      // logprobs: 0 makes every generated token a chunk with one entry, even when its text is held back
      for (const c of j.choices ?? []) {
        if (SPECULATING) {
          if (c.text) times.push(now); // speculating: the gaps are between chunks of text (one or more tokens)
        } else for (let k = 0; k < (c.logprobs?.tokens?.length ?? 0); k++) times.push(now);
      }
    }
  }
  const gaps = times.slice(1).map((t, k) => t - times[k]);
  return { ttft: times[0] - t0, gaps, tokens };
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : NaN;
};

interface Level {
  concurrency: number;
  requests: number;
  wall_s: number;
  tokens: number;
  tokens_per_s: number;
  ttft_ms: { p50: number; p95: number; p99: number };
  /**
   * TTFT of the requests sent after the first wave: the first `concurrency` requests start together
   * and queue behind each other's prefill by construction; the later ones arrive one at a time, as
   * a finished request is replaced
   */
  ttft_after_first_wave_ms: { p50: number; p95: number; p99: number };
  itl_ms: { p50: number; p95: number; p99: number };
  load_avg: number[];
}

/**
 * One level: c clients, each sending its next request when the previous one ends. With `stagger`
 * (ms), client i starts i × stagger / c later, so the clients' requests are spread over a request's
 * lifetime instead of starting, prefilling and ending in lockstep (with ignore_eos and one
 * max_tokens they would stay in step forever, every arrival a burst of c prompts).
 */
async function level(c: number, stagger = 0): Promise<Level> {
  const load0 = os.loadavg();
  const results: (One & { index: number })[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async (_, i) => {
      if (stagger > 0 && i > 0) await new Promise((r) => setTimeout(r, (i * stagger) / c));
      while (next < REQUESTS) {
        const index = next++;
        results.push({ ...(await one()), index });
      }
    }),
  );
  const wall = (performance.now() - t0) / 1000;
  const tokens = results.reduce((s, r) => s + r.tokens, 0);
  const ttft = results.map((r) => r.ttft),
    gaps = results.flatMap((r) => r.gaps);
  const q = (xs: number[]) => ({ p50: pct(xs, 50), p95: pct(xs, 95), p99: pct(xs, 99) });
  return {
    concurrency: c,
    requests: results.length,
    wall_s: wall,
    tokens,
    tokens_per_s: tokens / wall,
    ttft_ms: q(ttft),
    ttft_after_first_wave_ms: q(results.filter((r) => r.index >= c).map((r) => r.ttft)),
    itl_ms: q(gaps),
    load_avg: [load0[0], os.loadavg()[0]],
  };
}

const cpu = cpuModel();
if (v.health) {
  // /health while long prompts prefill, one prompt at a time
  const lat: number[] = [];
  const prefills: number[] = [];
  try {
    for (let r = 0; r < Math.min(REQUESTS, 3); r++) {
      const prompt = randomPrompt(1000 + r);
      let done = false;
      const t0 = performance.now();
      const req = fetch(base + '/v1/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'bench', prompt, max_tokens: 1, temperature: 0 }),
      }).then(async (res) => {
        await res.text();
        prefills.push(performance.now() - t0);
        done = true;
      });
      await new Promise((r) => setTimeout(r, 20));
      while (!done) {
        const h0 = performance.now();
        await (await fetch(base + '/health')).text();
        lat.push(performance.now() - h0);
      }
      await req;
    }
  } finally {
    server.kill('SIGTERM');
  }
  const out = {
    cpu,
    threads: Number(THREADS),
    dtype: DTYPE,
    engine: v['in-process'] ? 'in process' : 'worker thread',
    prompt_tokens: PROMPT_TOKENS,
    prefill_ms: prefills,
    health_polls: lat.length,
    health_ms: { p50: pct(lat, 50), p99: pct(lat, 99), max: Math.max(...lat) },
  };
  if (v.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else
    console.log(
      `/health during ${PROMPT_TOKENS}-token prefills (engine ${out.engine}, 270M shape ${DTYPE}, ${THREADS} threads, ${cpu}): ` +
        `${lat.length} polls, p50 ${pct(lat, 50).toFixed(1)} ms, p99 ${pct(lat, 99).toFixed(1)} ms, max ${out.health_ms.max.toFixed(1)} ms; ` +
        `prefill ${prefills.map((x) => (x / 1000).toFixed(2)).join(' / ')} s`,
    );
  process.exit(0);
}
if (v.burst) {
  // batches of c non-streaming requests, all sent at once, the next batch when they have all ended
  const once = async (): Promise<number> => {
    const prompt = randomPrompt();
    const res = await fetch(base + '/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'bench', prompt, max_tokens: MAX_TOKENS, temperature: 0, ignore_eos: true }),
    });
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    return ((await res.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens;
  };
  const rows: { concurrency: number; requests: number; tokens_per_s: number; ratio: number }[] = [];
  try {
    await once(); // warm-up
    for (const c of LEVELS) {
      const batches = Math.max(1, Math.round(REQUESTS / c));
      let tokens = 0;
      const t0 = performance.now();
      for (let b = 0; b < batches; b++) tokens += (await Promise.all(Array.from({ length: c }, once))).reduce((x, y) => x + y, 0);
      const tps = tokens / ((performance.now() - t0) / 1000);
      rows.push({ concurrency: c, requests: batches * c, tokens_per_s: tps, ratio: tps / (rows[0]?.tokens_per_s ?? tps) });
      log(`${c} at a time: ${tps.toFixed(1)} tokens/s`);
    }
  } finally {
    server.kill('SIGTERM');
  }
  const out = { cpu, threads: Number(THREADS), dtype: DTYPE, prompt_tokens: PROMPT_TOKENS, max_tokens: MAX_TOKENS, levels: rows };
  if (v.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
  else {
    console.log(`non-streaming requests sent c at a time · OpenELM-270M shape, random weights · ${DTYPE} · ${THREADS} threads · ${cpu}`);
    console.log(`${PROMPT_TOKENS}-token prompts, ${MAX_TOKENS} tokens each (greedy, ignore_eos)`);
    console.log('| at a time | requests | tokens/s | × one at a time |\n|---|---|---|---|');
    for (const r of rows) console.log(`| ${r.concurrency} | ${r.requests} | ${r.tokens_per_s.toFixed(1)} | ${r.ratio.toFixed(2)}× |`);
  }
  process.exit(0);
}
const loadStart = os.loadavg()[0];
const levels: Level[] = [];
let speculative: { drafted: number; accepted: number } | undefined;
try {
  await one(); // warm-up: JIT, page faults, the first pass
  for (const c of LEVELS) {
    // stagger by one request's lifetime at the first level (--no-stagger: all clients start together)
    const stagger = levels.length && !v['no-stagger'] ? (levels[0].wall_s * 1000 * levels[0].concurrency) / levels[0].requests : 0;
    const r = await level(c, stagger);
    levels.push(r);
    log(`concurrency ${c}: ${r.tokens} tokens in ${r.wall_s.toFixed(1)} s${stagger ? ` (clients started ${(stagger / c).toFixed(0)} ms apart)` : ''}`);
  }
  if (v['draft-dtype'] || v['prompt-lookup']) {
    const m = await (await fetch(base + '/metrics')).text();
    const count = (name: string) => Number(new RegExp(`${name} (\\d+)`).exec(m)?.[1] ?? NaN);
    speculative = { drafted: count('openelm_speculative_draft_tokens_total'), accepted: count('openelm_speculative_accepted_tokens_total') };
  }
} finally {
  server.kill('SIGTERM');
}
await new Promise((r) => server.once('exit', r));

// the peer: llama.cpp with c sequences in one context, same levels, prompts and lengths, in its own process
interface PeerLevel {
  concurrency: number;
  tokens_per_s: number;
  ttft_ms: { p50: number; p95: number };
}
let peer: { backend: string; gguf: string; levels: PeerLevel[] } | undefined;
if (v.peer) {
  const GGUF_TYPE: Record<string, string> = { q8: 'q8_0', q8_0: 'q8_0', q4: 'q4_0', q4_0: 'q4_0', bf16: 'bf16', f16: 'f16' };
  const gguf = v.gguf ?? path.join(ROOT, `bench/out/OpenELM-270M-${GGUF_TYPE[DTYPE] ?? DTYPE}.gguf`);
  if (!existsSync(gguf)) throw new Error(`--peer: no GGUF at ${gguf}; npm run bench makes it, or pass --gguf FILE`);
  log(`llama.cpp on ${path.basename(gguf)}: levels ${LEVELS.join(', ')}`);
  const r = JSON.parse(
    execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        path.join(ROOT, 'bench/llama-cpp-batch.ts'),
        gguf,
        '--threads',
        THREADS,
        '--levels',
        LEVELS.join(','),
        '--requests',
        String(REQUESTS),
        '--prompt-tokens',
        String(PROMPT_TOKENS),
        '--max-tokens',
        String(MAX_TOKENS),
      ],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
    )
      .trim()
      .split('\n')
      .at(-1)!,
  );
  peer = { backend: r.backend, gguf, levels: r.levels };
}
const first = levels[0];
// issue 12's targets, where the levels measured them: 8 streams ≥ 4× one stream's tokens/s; their
// TTFT p95 under 2× the idle one plus the prompt's own prefill (estimated by the idle TTFT p50)
const idle = levels.find((l) => l.concurrency === 1),
  eight = levels.find((l) => l.concurrency === 8);
const ttftLimit = idle ? 2 * idle.ttft_ms.p95 + idle.ttft_ms.p50 : NaN;
const targets =
  idle && eight
    ? {
        throughput_ratio_8: eight.tokens_per_s / idle.tokens_per_s,
        throughput_met: eight.tokens_per_s >= 4 * idle.tokens_per_s,
        ttft_p95_limit_ms: ttftLimit,
        ttft_p95_met: eight.ttft_ms.p95 < ttftLimit,
        ttft_p95_after_first_wave_met: eight.ttft_after_first_wave_ms.p95 < ttftLimit,
      }
    : null;
const out = {
  cpu,
  cores: os.cpus().length,
  node: process.version,
  threads: Number(THREADS),
  parallel: Number(PARALLEL),
  model: 'OpenELM-270M shape, random weights',
  dtype: DTYPE,
  requests_per_level: REQUESTS,
  prompt_tokens: PROMPT_TOKENS,
  max_tokens: MAX_TOKENS,
  load_avg_start: loadStart,
  load_avg_end: os.loadavg()[0],
  speculative: speculative && {
    draft: `${v['draft-dtype'] ? `the model as ${v['draft-dtype']}, ` : `prompt lookup, `}${v['draft-fixed'] ? '' : 'up to '}${v['draft-dtype'] ? (v['draft-tokens'] ?? 4) : v['prompt-lookup']} tokens a round`,
    ...speculative,
    acceptance: speculative.accepted / speculative.drafted,
  },
  levels: levels.map((l) => ({ ...l, throughput_ratio: l.tokens_per_s / first.tokens_per_s, ttft_p95_ratio: l.ttft_ms.p95 / first.ttft_ms.p95 })),
  targets,
  peer: peer && {
    ...peer,
    levels: peer.levels.map((l) => ({ ...l, throughput_ratio: l.tokens_per_s / peer!.levels[0].tokens_per_s })),
  },
};
if (v.json) process.stdout.write(JSON.stringify(out, null, 2) + '\n');
else {
  const f = (x: number) => x.toFixed(0);
  console.log(`openelm serve · ${out.model} · ${DTYPE} · ${THREADS} threads · --parallel ${PARALLEL} · ${cpu} (${out.cores} cores) · Node ${process.version}`);
  console.log(
    `${REQUESTS} streaming requests per level, ${PROMPT_TOKENS}-token prompts, ${MAX_TOKENS} tokens each (greedy, ignore_eos); load average ${loadStart.toFixed(2)} → ${out.load_avg_end.toFixed(2)}`,
  );
  if (out.speculative)
    console.log(
      `speculative: ${out.speculative.draft}; ${out.speculative.accepted} of ${out.speculative.drafted} drafted tokens kept (${(100 * out.speculative.acceptance).toFixed(0)} %)`,
    );
  console.log(
    '| concurrent | tokens/s | × 1 stream | TTFT p50 / p95 / p99 ms | × 1 stream (p95) | TTFT after the first wave p50 / p95 ms | inter-token p50 / p95 / p99 ms |',
  );
  console.log('|---|---|---|---|---|---|---|');
  for (const l of out.levels) {
    console.log(
      `| ${l.concurrency} | ${l.tokens_per_s.toFixed(1)} | ${l.throughput_ratio.toFixed(2)}× | ${f(l.ttft_ms.p50)} / ${f(l.ttft_ms.p95)} / ${f(l.ttft_ms.p99)} | ${l.ttft_p95_ratio.toFixed(2)}× | ${f(l.ttft_after_first_wave_ms.p50)} / ${f(l.ttft_after_first_wave_ms.p95)} | ${f(l.itl_ms.p50)} / ${f(l.itl_ms.p95)} / ${f(l.itl_ms.p99)} |`,
    );
  }
  if (targets && eight) {
    const met = (b: boolean) => (b ? 'met' : 'not met');
    console.log(
      `targets: 8 streams ≥ 4× one stream's tokens/s: ${targets.throughput_ratio_8.toFixed(2)}×, ${met(targets.throughput_met)}; ` +
        `TTFT p95 at 8 < 2 × idle p95 + the prompt's prefill (idle p50) = ${f(targets.ttft_p95_limit_ms)} ms: ${f(eight.ttft_ms.p95)}, ${met(targets.ttft_p95_met)} ` +
        `(after the first wave ${f(eight.ttft_after_first_wave_ms.p95)}, ${met(targets.ttft_p95_after_first_wave_met)})`,
    );
  }
  if (out.peer) {
    console.log(`\nagainst ${out.peer.backend} on ${path.basename(out.peer.gguf)}: c sequences in one context, no HTTP`);
    console.log(
      '| concurrent | openelm tokens/s | × 1 stream | llama.cpp tokens/s | × 1 stream | openelm / llama.cpp | TTFT p50 / p95 ms, openelm | llama.cpp |',
    );
    console.log('|---|---|---|---|---|---|---|---|');
    for (const l of out.levels) {
      const p = out.peer.levels.find((x) => x.concurrency === l.concurrency);
      if (!p) continue;
      console.log(
        `| ${l.concurrency} | ${l.tokens_per_s.toFixed(1)} | ${l.throughput_ratio.toFixed(2)}× | ${p.tokens_per_s.toFixed(1)} | ${p.throughput_ratio.toFixed(2)}× | ${(l.tokens_per_s / p.tokens_per_s).toFixed(2)}× | ${f(l.ttft_ms.p50)} / ${f(l.ttft_ms.p95)} | ${f(p.ttft_ms.p50)} / ${f(p.ttft_ms.p95)} |`,
      );
    }
  }
}
