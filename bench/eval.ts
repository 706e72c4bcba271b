// `npm run bench:eval`: multiple-choice scoring throughput against the prefill rate of
// `openelm bench`, on the same model in the same process, interleaved rounds.
//
//   npm run bench:eval -- [--model DIR] [--threads 2] [--items 16] [--rounds 3] [--json]
//
// Items have the shapes of the harness's tasks (token counts of the LLaMA-2 vocabulary):
//   arc-like        a ~30-token question, 4 choices of 1-6 tokens
//   hellaswag-like  a ~60-token context, 4 endings of 12-24 tokens
//   winogrande-like 2 contexts of ~25 tokens that differ in one word, a shared ~8-token continuation
// Throughput is counted two ways: request tokens/s — the tokens the harness feeds the model for
// the same requests (context + continuation − 1 per choice) — and model tokens/s, the tokens that
// actually go through the model (each context once). The target: request tokens/s ≥ 0.8 × the
// prefill tokens/s of `openelm bench --prompt-tokens 128`.
// Without --model, a random-weight OpenELM-270M in bf16 is made once under bench/out/.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchModel } from '../src/bench.ts';
import { encodePair, type LoglikRequest, LoglikScorer } from '../src/eval/loglikelihood.ts';
import { Rng } from '../src/generate/rng.ts';
import { loadModel } from '../src/load.ts';
import { benchArgs } from './args.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const { values: v } = benchArgs(import.meta.url, {
  model: { type: 'string' },
  threads: { type: 'string' },
  items: { type: 'string' },
  rounds: { type: 'string' },
  json: { type: 'boolean' },
});
const threads = Number(v.threads ?? os.availableParallelism());
const nItems = Number(v.items ?? 16);
const rounds = Number(v.rounds ?? 3);
const log = (s: string) => process.stderr.write(s + '\n');

let dir = v.model;
if (!dir) {
  dir = path.join(ROOT, 'bench/out/OpenELM-270M-bf16');
  if (!fs.existsSync(path.join(dir, 'config.json'))) {
    log(`making ${dir} (openelm init, seed 0)`);
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'init', '--preset', 'OpenELM-270M', '--out', dir, '--seed', '0', '--dtype', 'bf16', '--json'],
      { cwd: ROOT, encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`openelm init failed:\n${r.stderr}`);
  }
}
const { model, tokenizer, dispose } = await loadModel(dir, { threads, contextLength: 512 });

// words of ordinary English, so token counts look like the tasks'
const WORDS =
  'the of and to in is was for on that with as by at from his her they which this be are have one had not but what all were when we there can an your who more will out if about up their time has so said she would make like into him them see than number way could people water been called who oil its now find long down day did get come made may part over new sound take only little work know place years live me back give most very after thing our just name good sentence man think say great where help through much before line right too means old any same tell boy follow came want show also around form three small set put end does another well large must big even such because turn here why ask went men read need land different home us move try kind hand picture again change off play spell air away animal house point page letter mother answer found study still learn should world'.split(
    ' ',
  );
const rng = new Rng(7);
const words = (n: number) => Array.from({ length: n }, () => WORDS[rng.nextU32() % WORDS.length]).join(' ');
const cap = (s: string) => s[0].toUpperCase() + s.slice(1);

type Item = LoglikRequest[];
function shapes(): Record<string, Item[]> {
  const arc: Item[] = [],
    hs: Item[] = [],
    wg: Item[] = [];
  for (let i = 0; i < nItems; i++) {
    const q = `Question: ${cap(words(20 + (i % 8)))}?\nAnswer:`;
    arc.push([1, 2, 3, 4].map((k) => encodePair(tokenizer, q, ' ' + words(k + (i % 3)))));
    const ctx = `${cap(words(3))}: ${cap(words(40 + (i % 10)))}. ${cap(words(4))}`;
    hs.push([0, 1, 2, 3].map((k) => encodePair(tokenizer, ctx, ' ' + words(10 + 3 * k + (i % 4)) + '.')));
    const [pre, post] = [cap(words(16 + (i % 6))), words(6)];
    wg.push(['Anna', 'Bill'].map((name) => encodePair(tokenizer, `${pre} because ${name}`, ' ' + post + '.')));
  }
  return { 'arc-like': arc, 'hellaswag-like': hs, 'winogrande-like': wg };
}
const tasks = shapes();

/** items one at a time (score), or with docsPerPass > 1 several per pass (scoreMany, as openelm eval does) */
function score(items: Item[], batchTokens: number, docsPerPass = 1) {
  const s = new LoglikScorer(model, { batchTokens, docsPerPass });
  model.reset();
  const t = performance.now();
  if (docsPerPass > 1) s.scoreMany(items);
  else for (const it of items) s.score(it);
  const sec = (performance.now() - t) / 1000;
  model.reset();
  return {
    request_tps: s.stats.requestTokens / sec,
    model_tps: s.stats.modelTokens / sec,
    items_per_s: items.length / sec,
    request_tokens: s.stats.requestTokens,
    model_tokens: s.stats.modelTokens,
  };
}

// warm up: JIT, page faults, the batched pass's buffers
score(tasks['arc-like'].slice(0, 2), 128);
score(tasks['arc-like'].slice(0, 4), 128, 4);
score(tasks['arc-like'].slice(0, 2), 1);
await benchModel(model, { promptTokens: 128, genTokens: 1, repeat: 1, warmup: 1 });

type Run = ReturnType<typeof score>;
const prefill: number[] = [];
const runs: Record<string, { batched: Run[]; docs: Run[]; plain: Run[] }> = {};
log(
  `machine: ${os.cpus().length} × ${os.cpus()[0]?.model}, load average ${os
    .loadavg()
    .map((x) => x.toFixed(2))
    .join(' ')}; ${threads} threads`,
);
for (let r = 0; r < rounds; r++) {
  prefill.push((await benchModel(model, { promptTokens: 128, genTokens: 1, repeat: 1, warmup: 0 })).prefill_tps);
  for (const [name, items] of Object.entries(tasks)) {
    runs[name] ??= { batched: [], docs: [], plain: [] };
    runs[name].batched.push(score(items, 128));
    runs[name].docs.push(score(items, 128, 4));
    runs[name].plain.push(score(items, 1));
  }
  log(`round ${r + 1}/${rounds}: prefill ${prefill[r].toFixed(1)} tok/s`);
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b),
    m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const pre = median(prefill);
const summary = Object.fromEntries(
  Object.entries(runs).map(([name, r]) => [
    name,
    {
      request_tps: median(r.batched.map((x) => x.request_tps)),
      model_tps: median(r.batched.map((x) => x.model_tps)),
      items_per_s: median(r.batched.map((x) => x.items_per_s)),
      ratio_to_prefill: median(r.batched.map((x) => x.request_tps)) / pre,
      plain_request_tps: median(r.plain.map((x) => x.request_tps)),
      // four items per pass (openelm eval's default): their contexts, then all their choices, share passes
      docs4_request_tps: median(r.docs.map((x) => x.request_tps)),
      docs4_ratio_to_prefill: median(r.docs.map((x) => x.request_tps)) / pre,
      docs4_model_tps: median(r.docs.map((x) => x.model_tps)),
      request_tokens: r.batched[0].request_tokens,
      model_tokens: r.batched[0].model_tokens,
      runs: r.batched.map((x) => x.request_tps),
    },
  ]),
);
dispose();
const out = {
  model: dir,
  threads,
  cpu: os.cpus()[0]?.model,
  load_average: os.loadavg(),
  items_per_task: nItems,
  rounds,
  prefill_tps: pre,
  prefill_runs: prefill,
  tasks: summary,
};
if (v.json) process.stdout.write(JSON.stringify(out) + '\n');
else {
  process.stdout.write(`prefill (openelm bench, 128 tokens): ${pre.toFixed(1)} tok/s (runs ${prefill.map((x) => x.toFixed(1)).join(', ')})\n`);
  for (const [name, s] of Object.entries(summary)) {
    process.stdout.write(
      `${name.padEnd(16)} request ${s.request_tps.toFixed(1)} tok/s = ${s.ratio_to_prefill.toFixed(2)}× prefill (runs ${s.runs.map((x) => x.toFixed(0)).join(', ')}) · ` +
        `model ${s.model_tps.toFixed(1)} tok/s · ${s.items_per_s.toFixed(2)} items/s · one choice at a time: ${s.plain_request_tps.toFixed(1)} tok/s · ` +
        `4 items per pass: request ${s.docs4_request_tps.toFixed(1)} tok/s = ${s.docs4_ratio_to_prefill.toFixed(2)}× prefill (model ${s.docs4_model_tps.toFixed(1)})\n`,
    );
  }
}
