// Speculative decoding inside the engine: greedy output with prompt lookup or a draft model (the
// model itself, a q4_0 copy) is identical to the engine without a drafter, several sequences
// batched; a seeded sampled sequence gives the same tokens alone or batched, and the same as
// `generate` with the same drafter and seed (reference backend; greedy on wasm too);
// constrained / logprobs sequences do not speculate.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../src/config/index.ts';
import { Engine, type SequenceRequest } from '../src/engine/engine.ts';
import { generateText } from '../src/generate/generate.ts';
import type { SpeculativeOptions } from '../src/generate/speculative.ts';
import { writeCheckpoint } from '../src/io/checkpoint.ts';
import { loadModel, loadOpenELM } from '../src/load.ts';
import { initTensors } from '../src/model/init.ts';

const F = (name: string) => new URL(`./fixtures/openelm/${name}/`, import.meta.url).pathname;

const prompts = [
  [1, 5, 9, 200, 17],
  [1, 300, 301, 302, 300, 301, 302, 300],
  [1, 5, 9, 200, 17, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 44, 45, 46],
  [1, 7, 7, 7],
  [1, 7, 7, 7, 8],
];

async function run(engine: Engine, reqs: SequenceRequest[]): Promise<number[][]> {
  return Promise.all(reqs.map((r) => engine.submit(r).done()));
}

test('greedy: prompt lookup and draft models (the model itself, a q4_0 copy) give the engine-without-draft tokens, batched', async () => {
  const target = await loadModel(F('tiny-vocab32k-bf16'), { backend: 'ref' });
  const self = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend: 'ref' });
  const q4 = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend: 'ref', dtype: 'q4' });
  try {
    const reqs = prompts.map((p, i) => ({ promptIds: p, maxTokens: 20 + i, eosIds: [], sampling: { temperature: 0, repetitionPenalty: i === 3 ? 1.3 : 1 } }));
    const want = await run(new Engine(target.model, { parallel: 3, stepTokens: 8 }), reqs);
    const cases: [string, SpeculativeOptions][] = [
      ['lookup', { promptLookup: 10 }],
      ['self', { draft: self.model, draftTokens: 4 }],
      ['q4', { draft: q4.model, draftTokens: 3 }],
      ['lookup, fixed length', { promptLookup: 10, adaptive: false }],
    ];
    for (const [name, speculative] of cases) {
      const engine = new Engine(target.model, { parallel: 3, stepTokens: 8, speculative });
      assert.deepEqual(await run(engine, reqs), want, name);
      assert.ok(engine.stats.speculativeRounds > 0, name);
      if (name === 'self') assert.equal(engine.stats.acceptedTokens, engine.stats.draftedTokens, 'the model agrees with itself');
      // a second pass reuses cached prefixes (target and draft) and gives the same tokens
      assert.deepEqual(await run(engine, reqs), want, `${name}, again`);
      // logit_bias and penalties go through the same check
      const adjusted = reqs.map((r) => ({ ...r, adjust: { presencePenalty: 0.5, frequencyPenalty: 0.3, logitBias: new Map([[29871, 2]]) } }));
      const plain = await run(new Engine(target.model, { parallel: 3, stepTokens: 8 }), adjusted);
      assert.deepEqual(await run(engine, adjusted), plain, `${name}, adjusted`);
    }
  } finally {
    target.dispose();
    self.dispose();
    q4.dispose();
  }
});

test('sampling with a seed: the same tokens alone or batched, and as generate with the same drafter', async () => {
  const target = await loadModel(F('tiny-vocab32k-bf16'), { backend: 'ref' });
  const q4 = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend: 'ref', dtype: 'q4' });
  const q4b = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend: 'ref', dtype: 'q4' });
  try {
    const sampling = { temperature: 0.9, topP: 0.95, seed: 42 };
    for (const speculative of [{ draft: q4.model, draftTokens: 4 }, { promptLookup: 6 }] as SpeculativeOptions[]) {
      const engine = new Engine(target.model, { parallel: 4, stepTokens: 16, speculative });
      const req = { promptIds: prompts[1], maxTokens: 24, eosIds: [], sampling };
      const [alone] = await run(engine, [req]);
      const others = prompts.map((p, i) => ({ promptIds: p, maxTokens: 30, eosIds: [], sampling: { ...sampling, seed: 100 + i } }));
      const batched = await run(engine, [others[0], others[2], req, others[3]]);
      assert.deepEqual(batched[2], alone);
      // generate's speculative loop with the same seed draws the same numbers (its own draft copy: its cache)
      target.model.reset();
      const g = await generateText(
        target.model,
        target.tokenizer,
        { ids: prompts[1] },
        { ...sampling, maxNewTokens: 24, eosIds: [], speculative: speculative.draft ? { draft: q4b.model, draftTokens: 4 } : speculative },
      );
      assert.deepEqual(alone, g.outputIds);
      if (!speculative.draft) continue;
      // a prompt longer than a draft pass takes (16 + 4 · 6 rows) while nobody else drafts: the
      // draft is fed its chunks anyway, so the first decoding step drafts as generate's first round does
      const longIds = Array.from({ length: 70 }, (_, i) => 1 + ((i * 37) % 500));
      const long = { promptIds: longIds, maxTokens: 12, eosIds: [], sampling: { ...sampling, seed: 7 } };
      const [longAlone] = await run(engine, [long]);
      target.model.reset();
      const lg = await generateText(
        target.model,
        target.tokenizer,
        { ids: longIds },
        { ...sampling, seed: 7, maxNewTokens: 12, eosIds: [], speculative: { draft: q4b.model, draftTokens: 4 } },
      );
      assert.deepEqual(longAlone, lg.outputIds, 'a long prompt alone, as generate');
      const [, longBatched] = await run(engine, [others[1], long]);
      assert.deepEqual(longBatched, longAlone, 'a long prompt batched');
    }
  } finally {
    target.dispose();
    q4.dispose();
    q4b.dispose();
  }
});

test('sequences with a constraint, logprobs or speculative: false decode one token a step', async () => {
  const target = await loadModel(F('tiny-vocab32k-bf16'), { backend: 'ref' });
  try {
    const engine = new Engine(target.model, { parallel: 2, stepTokens: 8, speculative: { promptLookup: 8 } });
    const base = { promptIds: prompts[1], maxTokens: 12, eosIds: [], sampling: { temperature: 0 } };
    await run(engine, [
      { ...base, logprobs: 2 },
      { ...base, speculative: false },
    ]);
    assert.equal(engine.stats.speculativeRounds, 0);
    await run(engine, [base]);
    assert.ok(engine.stats.speculativeRounds > 0);
  } finally {
    target.dispose();
  }
});

test('wasm: greedy with prompt lookup and a q4_0 draft gives the engine-without-draft tokens', async () => {
  const target = await loadModel(F('tiny-vocab32k-bf16'), { backend: 'wasm', threads: 2 });
  const q4 = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend: 'wasm', threads: 2, dtype: 'q4' });
  try {
    const reqs = prompts.map((p) => ({ promptIds: p, maxTokens: 30, eosIds: [], sampling: { temperature: 0 } }));
    const want = await run(new Engine(target.model, { parallel: 4, stepTokens: 16 }), reqs);
    for (const speculative of [{ promptLookup: 10 }, { draft: q4.model, draftTokens: 4 }]) {
      const engine = new Engine(target.model, { parallel: 4, stepTokens: 16, speculative });
      assert.deepEqual(await run(engine, reqs), want);
      assert.ok(engine.stats.acceptedTokens > 0);
    }
  } finally {
    target.dispose();
    q4.dispose();
  }
});

test('greedy with a draft that never agrees (other random weights): the steps soon stop drafting, same tokens', async () => {
  const target = await loadModel(F('tiny-vocab32k-bf16'), { backend: 'ref' });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-draft-'));
  const cfg = parseConfig(JSON.parse(fs.readFileSync(path.join(F('tiny-vocab32k-bf16'), 'config.json'), 'utf8')));
  await writeCheckpoint(dir, cfg, initTensors(cfg, 7), { dtype: 'bf16' });
  const other = await loadOpenELM(dir, { backend: 'ref' });
  try {
    const reqs = prompts.slice(0, 3).map((p) => ({ promptIds: p, maxTokens: 40, eosIds: [], sampling: { temperature: 0 } }));
    const want = await run(new Engine(target.model, { parallel: 3, stepTokens: 8 }), reqs);
    const drafted: Record<string, number> = {};
    for (const adaptive of [true, false]) {
      const engine = new Engine(target.model, { parallel: 3, stepTokens: 8, speculative: { draft: other.model, draftTokens: 4, adaptive } });
      assert.deepEqual(await run(engine, reqs), want, `adaptive ${adaptive}`);
      if (!adaptive) assert.ok(engine.stats.acceptedTokens <= engine.stats.draftedTokens / 10, JSON.stringify(engine.stats));
      drafted[String(adaptive)] = engine.stats.draftedTokens;
      // the last length chosen (what /metrics shows): none pays; a fixed length chooses nothing
      assert.equal(engine.stats.draftLength, adaptive ? 0 : -1);
    }
    // fixed: 4 drafts for nearly every token; adaptive: the first step's, then a probe now and then
    assert.ok(drafted.false >= 200, JSON.stringify(drafted));
    assert.ok(drafted.true <= drafted.false / 8, JSON.stringify(drafted));
  } finally {
    target.dispose();
    other.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
