import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chatTemplate, encodeChat } from '../src/generate/chat.ts';
import { generate, generateText } from '../src/generate/generate.ts';
import { loadModel } from '../src/load.ts';
import { ContextLengthError } from '../src/model/openelm.ts';

const DIR = fileURLToPath(new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url));
const expected = JSON.parse(fs.readFileSync(DIR + 'expected.json', 'utf8'));

test('text prompts: BOS + SentencePiece ids, 16 greedy tokens and their text match the reference', async () => {
  const { model, tokenizer, dispose } = await loadModel(DIR, { backend: 'ref' });
  try {
    for (const g of expected.generation) {
      model.reset();
      const r = await generateText(model, tokenizer, g.prompt, { temperature: 0, maxNewTokens: g.output_ids.length, ignoreEos: true });
      assert.deepEqual(r.promptIds, g.prompt_ids, g.prompt);
      assert.deepEqual(r.outputIds, g.output_ids, g.prompt);
      assert.equal(r.text, g.output_text, g.prompt);
    }
  } finally {
    dispose();
  }
});

test('streamed chunks concatenate to the final text; stop strings cut the text', async () => {
  const { model, tokenizer, dispose } = await loadModel(DIR, { backend: 'ref' });
  try {
    const g = expected.generation[0];
    const it = generate(model, tokenizer, g.prompt, { temperature: 0, maxNewTokens: 16, ignoreEos: true });
    let streamed = '';
    let r = await it.next();
    for (; !r.done; r = await it.next()) streamed += r.value.text;
    assert.equal(streamed, r.value.text);
    // stop at the second occurrence-prone word of the reference continuation
    const stop = g.output_text.slice(5, 12);
    const s = await generateText(model, tokenizer, g.prompt, { temperature: 0, maxNewTokens: 16, stop: [stop], ignoreEos: true });
    assert.equal(s.finishReason, 'stop');
    assert.equal(s.text, g.output_text.slice(0, g.output_text.indexOf(stop)));
    assert.ok(!s.text.includes(stop));
  } finally {
    dispose();
  }
});

test('the KV cache prefix is reused across calls and gives identical results', async () => {
  const { model, tokenizer, dispose } = await loadModel(DIR, { backend: 'ref' });
  try {
    const a = await generateText(model, tokenizer, 'The weather today', { temperature: 0, maxNewTokens: 8, ignoreEos: true });
    const b = await generateText(model, tokenizer, 'The weather today', { temperature: 0, maxNewTokens: 8, ignoreEos: true });
    assert.deepEqual(a.outputIds, b.outputIds);
    assert.ok(b.cachedTokens > 0);
    model.reset();
    const c = await generateText(model, tokenizer, { ids: [...a.promptIds, ...a.outputIds.slice(0, 3)] }, { temperature: 0, maxNewTokens: 5, ignoreEos: true });
    assert.deepEqual(c.outputIds, a.outputIds.slice(3));
  } finally {
    dispose();
  }
});

test('seeded sampling is reproducible', async () => {
  const { model, tokenizer, dispose } = await loadModel(DIR, { backend: 'ref' });
  try {
    const opts = { temperature: 1, topP: 0.95, topK: 50, seed: 123, maxNewTokens: 12, ignoreEos: true };
    const a = await generateText(model, tokenizer, 'Hello', opts);
    const b = await generateText(model, tokenizer, 'Hello', opts);
    const c = await generateText(model, tokenizer, 'Hello', { ...opts, seed: 124 });
    assert.deepEqual(a.outputIds, b.outputIds);
    assert.notDeepEqual(a.outputIds, c.outputIds);
  } finally {
    dispose();
  }
});

test('a prompt longer than the context is a clear error', async () => {
  const { model, tokenizer, dispose } = await loadModel(DIR, { backend: 'ref', contextLength: 16 });
  try {
    await assert.rejects(generateText(model, tokenizer, 'word '.repeat(40), { maxNewTokens: 4 }), (e: unknown) => {
      assert.ok(e instanceof ContextLengthError);
      assert.match((e as Error).message, /context holds 16/);
      return true;
    });
    // generation stops at the context edge instead of crashing
    const r = await generateText(model, tokenizer, 'Hi', { temperature: 0, maxNewTokens: 100, ignoreEos: true });
    assert.equal(r.promptIds.length + r.outputIds.length, 16);
    assert.equal(r.finishReason, 'length');
  } finally {
    dispose();
  }
});

test('chat template: Apple -Instruct format with BOS and EOS tokens', async () => {
  const { tokenizer, dispose } = await loadModel(DIR, { backend: 'ref' });
  try {
    const msgs = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hi' },
      { role: 'assistant' as const, content: 'Hello!' },
      { role: 'user' as const, content: 'Bye' },
    ];
    assert.equal(chatTemplate(msgs), '<s><|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nBye</s>\n<|assistant|>\n');
    const ids = encodeChat(tokenizer, msgs);
    assert.equal(ids[0], 1);
    assert.equal(ids.filter((x) => x === 2).length, 4);
    assert.deepEqual(ids.slice(1, 1 + tokenizer.encode('<|system|>\nBe brief.').length), tokenizer.encode('<|system|>\nBe brief.'));
  } finally {
    dispose();
  }
});
