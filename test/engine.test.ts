// The engine on its own: batched steps over several sequences give what one sequence alone gives
// (on both backends), adapters apply per sequence inside a mixed batch, prefix caching reuses
// KV rows, cancellation frees the slot.

import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine/engine.ts';
import { loadOpenELM } from '../src/load.ts';
import { BatchForward } from '../src/model/batch.ts';
import type { OpenELM } from '../src/model/openelm.ts';
import { attachAdapter, loadAdapter } from '../src/peft/index.ts';
import { AdapterRuntime } from '../src/peft/lora.ts';

const TINY = fileURLToPath(new URL('./fixtures/openelm/tiny-f32/', import.meta.url));
const PEFT = fileURLToPath(new URL('./fixtures/openelm/tiny-f32-peft/', import.meta.url));

function alone(model: OpenELM, prompt: number[], n: number): number[] {
  model.reset();
  const out: number[] = [];
  let logits = model.forward(prompt);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let j = 1; j < model.config.vocab_size; j++) if (logits[j] > logits[best]) best = j;
    out.push(best);
    if (i + 1 < n) logits = model.step(best);
  }
  return out;
}

const prompts = [
  [1, 5, 9, 200, 17],
  [1, 300],
  [1, 5, 9, 200, 17, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60],
  [1, 7, 7, 7],
];

for (const backend of ['ref', 'wasm'] as const) {
  test(`${backend}: batched greedy decoding equals each sequence alone; prefix cache reused`, async () => {
    const { model, dispose } = await loadOpenELM(TINY, { backend, threads: 2 });
    try {
      const want = prompts.map((p) => alone(model, p, 12));
      const engine = new Engine(model, { parallel: 3, stepTokens: 8 }); // 4 prompts on 3 slots: one waits; the long one is prefilled in chunks
      const seqs = prompts.map((p) => engine.submit({ promptIds: p, maxTokens: 12, eosIds: [], sampling: { temperature: 0 } }));
      assert.deepEqual(await Promise.all(seqs.map((s) => s.done())), want);
      assert.ok(seqs.every((s) => s.finishReason === 'length'));
      // the third prompt starts with the first: one of them reused the other's keys and values
      const again = engine.submit({ promptIds: prompts[2], maxTokens: 12, eosIds: [], sampling: { temperature: 0 } });
      assert.deepEqual(await again.done(), want[2]);
      assert.equal(again.cachedTokens, prompts[2].length - 1);
    } finally {
      dispose();
    }
  });
}

// every dtype sums each (row, token) of a matmul the same way whatever the batch (docs/kernels.md)
for (const dtype of ['q8_0', 'q4_0', 'f32', 'bf16', 'f16'] as const) {
  test(`wasm, ${dtype} weights: each sequence's logits in a batch (8 decoding, a prompt chunk beside them) are bit for bit its logits alone`, async () => {
    const { model, dispose } = await loadOpenELM(TINY, { backend: 'wasm', threads: 2, dtype });
    try {
      const V = model.config.vocab_size;
      const seqs = Array.from({ length: 9 }, (_, i) => Array.from({ length: 3 + ((i * 5) % 11) }, (_, j) => 1 + ((i * 37 + j * 11) % (V - 1))));
      const next = (i: number, step: number): number => 3 + ((i * 13 + step * 7) % (V - 3));
      // alone: the prompt, then three steps
      const want = seqs.map((p, i) => {
        model.reset();
        const rows = [model.forward(p).slice()];
        for (let s = 0; s < 3; s++) rows.push(model.step(next(i, s)).slice());
        return rows;
      });
      // batched: the first 8 prompts in one pass; then three steps of the 8, the 9th prompt's
      // chunks (6 tokens, then the rest) beside the first two
      const caches = seqs.map(() => model.newCache());
      const batch = new BatchForward(model, 128);
      const first = batch.run(seqs.slice(0, 8).map((ids, i) => ({ cache: caches[i], ids, logits: 'last' as const })));
      for (let i = 0; i < 8; i++) assert.deepEqual(first.subarray(i * V, (i + 1) * V), want[i][0], `prompt ${i}`);
      const late = seqs[8];
      for (let s = 0; s < 3; s++) {
        const parts = Array.from({ length: 8 }, (_, i) => ({ cache: caches[i], ids: [next(i, s)], logits: 'last' as const }));
        const chunk = s === 0 ? late.slice(0, 6) : s === 1 ? late.slice(6) : [];
        const rows = batch.run(chunk.length ? [...parts, { cache: caches[8], ids: chunk, logits: 'last' as const }] : parts);
        for (let i = 0; i < 8; i++) assert.deepEqual(rows.subarray(i * V, (i + 1) * V), want[i][s + 1], `sequence ${i}, step ${s}`);
        if (s === 1) assert.deepEqual(rows.subarray(8 * V, 9 * V), want[8][0], 'the chunked prompt');
      }
    } finally {
      dispose();
    }
  });
}

test('prompt chunks: the oldest prompt takes what is left of a step; a younger one joins only if all of it fits', async () => {
  const { model, dispose } = await loadOpenELM(TINY, { backend: 'ref' });
  const run = BatchForward.prototype.run;
  const steps: number[][][] = [];
  BatchForward.prototype.run = function (this: BatchForward, segments) {
    steps.push(segments.map((s) => Array.from(s.ids)));
    return run.call(this, segments);
  };
  try {
    const engine = new Engine(model, { parallel: 4, stepTokens: 8 });
    const a = [1, 11, 12, 13, 14, 15],
      b = [1, 21, 22, 23, 24],
      c = [1, 31];
    const seqs = [a, b, c].map((promptIds) => engine.submit({ promptIds, maxTokens: 2, eosIds: [], sampling: { temperature: 0 } }));
    await Promise.all(seqs.map((s) => s.done()));
    // step 1: all of a (6), then not 2 tokens of b (5 would not fit) but all of c (2)
    assert.deepEqual(steps[0], [a, c]);
    // step 2: a's and c's first decode tokens, then all of b
    assert.deepEqual(
      steps[1].map((ids) => ids.length),
      [1, 1, 5],
    );
    assert.deepEqual(steps[1][2], b);
  } finally {
    BatchForward.prototype.run = run;
    dispose();
  }
});

test('refill wait: a request sent just after a sequence ended joins the next step, which waits for it (at most refillWaitMs)', async () => {
  const { model, dispose } = await loadOpenELM(TINY, { backend: 'ref' });
  const run = BatchForward.prototype.run;
  // each step takes 20 ms, as a step of a real model on a CPU does; a step records whether c's prompt is in it
  let steps: { at: number; c: boolean }[] = [];
  BatchForward.prototype.run = function (this: BatchForward, segments) {
    steps.push({ at: performance.now(), c: segments.some((s) => s.ids.length === 2 && s.ids[0] === 31 && s.ids[1] === 32) });
    const until = performance.now() + 20;
    while (performance.now() < until);
    return run.call(this, segments);
  };
  // a, ending after 2 tokens, is replaced by c 5 ms later (a client's next request); b decodes on.
  // c shares only BOS with the cached prompts, so its step feeds [31, 32]
  const serve = async (refillWaitMs: number, replace: boolean) => {
    steps = [];
    const engine = new Engine(model, { parallel: 4, stepTokens: 16, refillWaitMs });
    const opts = { maxTokens: 2, eosIds: [], sampling: { temperature: 0 } };
    const a = engine.submit({ promptIds: [1, 11, 12], ...opts });
    const b = engine.submit({ promptIds: [1, 21, 22], ...opts, maxTokens: 12 });
    await a.done();
    const ended = steps.length; // the step that ended a
    let c: Promise<number[]> | null = null;
    if (replace) {
      await new Promise((r) => setTimeout(r, 5));
      c = engine.submit({ promptIds: [1, 31, 32], ...opts }).done();
    }
    await Promise.all([b.done(), c]);
    return { joined: steps.findIndex((s) => s.c) - ended, gap: steps[ended].at - steps[ended - 1].at - 20 };
  };
  try {
    // without waiting, the next step starts at once and c's prompt joins the one after it
    assert.ok((await serve(0, true)).joined >= 1);
    // waiting: c joins the next step, which starts as soon as c arrives, well before 200 ms
    const waited = await serve(200, true);
    assert.equal(waited.joined, 0);
    assert.ok(waited.gap >= 4 && waited.gap < 150, `the step waited ${waited.gap} ms`);
    // nobody comes: the next step waits the whole 60 ms, then b goes on
    const alone = await serve(60, false);
    assert.ok(alone.gap >= 55, `the step waited ${alone.gap} ms`);
    assert.throws(() => new Engine(model, { refillWaitMs: -1 }), /refillWaitMs/);
  } finally {
    BatchForward.prototype.run = run;
    dispose();
  }
});

test('adapters per sequence: base and LoRA / DoRA sequences in one batch each get their own logits', async () => {
  const { model, dispose } = await loadOpenELM(TINY, { backend: 'ref' });
  try {
    const k = model.kernels;
    const lora = loadAdapter(path.join(PEFT, 'lora'), model.config, k),
      dora = loadAdapter(path.join(PEFT, 'dora'), model.config, k);
    const want: Record<string, number[]> = {};
    for (const [name, a] of [
      ['base', null],
      ['lora', lora],
      ['dora', dora],
    ] as const) {
      attachAdapter(model, a);
      want[name] = alone(model, prompts[0], 10);
    }
    attachAdapter(model, null);
    assert.notDeepEqual(want.lora, want.base);
    const adapters = new Map([
      ['lora', new AdapterRuntime(k, lora, model.weights, 16)],
      ['dora', new AdapterRuntime(k, dora, model.weights, 16)],
    ]);
    const engine = new Engine(model, { parallel: 4, stepTokens: 16, adapters });
    const names = ['lora', null, 'dora', 'lora'] as const;
    const seqs = names.map((adapter) => engine.submit({ promptIds: prompts[0], maxTokens: 10, eosIds: [], adapter, sampling: { temperature: 0 } }));
    const got = await Promise.all(seqs.map((s) => s.done()));
    names.forEach((n, i) => assert.deepEqual(got[i], want[n ?? 'base'], String(n)));
    assert.throws(() => engine.submit({ promptIds: [1], maxTokens: 1, adapter: 'nope' }), /no adapter named "nope"/);
  } finally {
    dispose();
  }
});

test('BatchForward branches (keep: false): continuations of one cached prefix, each as if run alone; the cache keeps the prefix only', async () => {
  const { model, dispose } = await loadOpenELM(TINY, { backend: 'ref' });
  try {
    const V = model.config.vocab_size;
    const prefix = [1, 5, 9, 13, 17],
      branches = [[21, 22, 23], [30], [41, 42]];
    const cache = model.newCache();
    const batch = new BatchForward(model, 32);
    batch.run([{ cache, ids: prefix, logits: 'none' }]);
    const rows = batch.run(branches.map((ids) => ({ cache, ids, logits: 'all' as const, keep: false })));
    assert.deepEqual(cache.ids, prefix, 'the branches leave the cache as it was');
    let row = 0;
    for (const b of branches) {
      model.reset();
      model.forward(prefix);
      const alone = model.forwardAll(b);
      const got = rows.subarray(row * V, (row + b.length) * V);
      for (let i = 0; i < alone.length; i++) assert.ok(Math.abs(got[i] - alone[i]) <= 1e-5 * (1 + Math.abs(alone[i])), `branch ${b}: logit ${i}`);
      row += b.length;
    }
    assert.throws(
      () =>
        batch.run([
          { cache, ids: [3], logits: 'last' },
          { cache, ids: [4], logits: 'last', keep: false },
        ]),
      /share one KV cache/,
    );
  } finally {
    dispose();
  }
});

test('BatchForward rows equal model.forward; cancel frees the slot; context and queue limits', async () => {
  const { model, dispose } = await loadOpenELM(TINY, { backend: 'ref' });
  try {
    const V = model.config.vocab_size;
    const batch = new BatchForward(model, 32);
    const a = model.newCache(),
      b = model.newCache();
    const rows = batch.run([
      { cache: a, ids: prompts[0], logits: 'all', adapter: null },
      { cache: b, ids: prompts[1], logits: 'last', adapter: null },
    ]);
    model.reset();
    const allA = model.forwardAll(prompts[0]);
    model.reset();
    const lastB = model.forward(prompts[1]);
    assert.deepEqual(Array.from(rows.subarray(0, prompts[0].length * V)), Array.from(allA));
    assert.deepEqual(Array.from(rows.subarray(prompts[0].length * V)), Array.from(lastB));

    const engine = new Engine(model, { parallel: 1, maxQueue: 1, stepTokens: 8 });
    const long = engine.submit({ promptIds: [1, 2, 3], maxTokens: 50, eosIds: [], sampling: { temperature: 0 } });
    const queued = engine.submit({ promptIds: [1, 4], maxTokens: 3, eosIds: [], sampling: { temperature: 0 } });
    assert.throws(() => engine.submit({ promptIds: [1], maxTokens: 1 }), /busy/);
    let n = 0;
    for await (const _ of long) if (++n === 3) long.cancel();
    assert.equal(long.finishReason, 'cancelled');
    assert.ok(long.outputIds.length < 50);
    assert.equal((await queued.done()).length, 3);
    assert.throws(() => engine.submit({ promptIds: new Array(64).fill(1), maxTokens: 1 }), /needs 65 tokens but the model's context holds 64/);
  } finally {
    dispose();
  }
});

test("slots: 'lazy' makes a slot's KV cache only when more sequences run at once than there are slots; the tokens are the eager engine's", async () => {
  const { model, dispose } = await loadOpenELM(TINY, { backend: 'ref' });
  try {
    const want = prompts.map((p) => alone(model, p, 8));
    const engine = new Engine(model, { parallel: 3, stepTokens: 8, slots: 'lazy' });
    const slots = () => (engine as unknown as { slots: unknown[] }).slots.length;
    assert.equal(slots(), 0);
    assert.equal(engine.room(), 3 + 64);
    // one at a time: one slot, reused
    for (const i of [0, 1])
      assert.deepEqual(await engine.submit({ promptIds: prompts[i], maxTokens: 8, eosIds: [], sampling: { temperature: 0 } }).done(), want[i]);
    assert.equal(slots(), 1);
    // four at once on 3 slots: three slots, one waits
    const seqs = prompts.map((p) => engine.submit({ promptIds: p, maxTokens: 8, eosIds: [], sampling: { temperature: 0 } }));
    assert.deepEqual(await Promise.all(seqs.map((s) => s.done())), want);
    assert.equal(slots(), 3);
  } finally {
    dispose();
  }
});
