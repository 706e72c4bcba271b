// The library's generate on many calls at once: concurrent calls on one model are safe (the first
// decodes on the model's cache, the others on the model's shared engine) and give the tokens and
// text each gives alone; an Engine passed to generate batches every call.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Engine } from '../src/engine/engine.ts';
import { type GenerateOptions, type GenerationResult, generate, generateText } from '../src/generate/generate.ts';
import { loadModel } from '../src/load.ts';

const DIR = new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url).pathname;

const calls: [string, GenerateOptions][] = [
  ['Once upon a time', { temperature: 0, maxNewTokens: 24, ignoreEos: true }],
  ['The weather today', { temperature: 0.8, seed: 11, maxNewTokens: 20, ignoreEos: true }],
  ['a b c a b c a b', { temperature: 0, maxNewTokens: 30, ignoreEos: true, repetitionPenalty: 1.2 }],
  ['It was the best of times', { temperature: 0.7, topK: 40, seed: 3, maxNewTokens: 16 }],
];

for (const backend of ['ref', 'wasm'] as const) {
  test(`${backend}: concurrent generate calls on one model give what each gives alone`, async () => {
    const { model, tokenizer, dispose } = await loadModel(DIR, { backend, threads: 2 });
    try {
      const alone: GenerationResult[] = [];
      for (const [p, o] of calls) alone.push(await generateText(model, tokenizer, p, o));
      // a stop string from the first greedy text, to end one call early
      const stop = alone[0].text.slice(8, 14);
      const withStop: [string, GenerateOptions][] = [...calls, ['Once upon a time', { ...calls[0][1], stop: [stop] }]];
      model.reset();
      const stopAlone = await generateText(model, tokenizer, 'Once upon a time', { ...calls[0][1], stop: [stop] });
      assert.equal(stopAlone.finishReason, 'stop');
      for (let round = 0; round < 2; round++) {
        const streamed: string[] = withStop.map(() => '');
        const together = await Promise.all(withStop.map(([p, o], i) => generateText(model, tokenizer, p, o, (t) => (streamed[i] += t))));
        [...alone, stopAlone].forEach((a, i) => {
          assert.deepEqual(together[i].outputIds, a.outputIds, `call ${i}`);
          assert.equal(together[i].text, a.text, `call ${i}`);
          assert.equal(streamed[i], a.text, `call ${i} streamed`);
          assert.equal(together[i].finishReason, a.finishReason, `call ${i}`);
        });
      }
      // the model's own cache still works for the next single call (its prefix reused)
      const again = await generateText(model, tokenizer, 'Once upon a time', calls[0][1]);
      assert.deepEqual(again.outputIds, alone[0].outputIds);
    } finally {
      dispose();
    }
  });
}

test('an Engine given to generate batches every call; abandoning a stream frees its slot', async () => {
  const { model, tokenizer, dispose } = await loadModel(DIR, { backend: 'ref' });
  try {
    const alone: GenerationResult[] = [];
    for (const [p, o] of calls) alone.push(await generateText(model, tokenizer, p, o));
    const engine = new Engine(model, { parallel: 4, stepTokens: 16 });
    const together = await Promise.all(calls.map(([p, o]) => generateText(engine, tokenizer, p, o)));
    together.forEach((r, i) => assert.deepEqual(r.outputIds, alone[i].outputIds));
    // four sequences decoded together: far fewer steps than tokens
    assert.ok(engine.stats.steps < together.reduce((s, r) => s + r.outputIds.length, 0) / 2, `${engine.stats.steps} steps`);
    const it = generate(engine, tokenizer, 'Once upon a time', { maxNewTokens: 100, ignoreEos: true });
    await it.next();
    await it.return(undefined as never);
    await engine.idle();
    assert.equal(engine.stats.active, 0);
    const ctl = new AbortController();
    ctl.abort();
    assert.equal((await generateText(engine, tokenizer, 'Hi', { signal: ctl.signal })).finishReason, 'aborted');
  } finally {
    dispose();
  }
});
