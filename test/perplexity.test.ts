import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseConfig } from '../src/config/index.ts';
import { perplexity, tokenNll } from '../src/eval/perplexity.ts';
import { openSafetensors } from '../src/io/safetensors.ts';
import { OpenELM } from '../src/model/openelm.ts';
import type { FileDType, TensorSource } from '../src/model/weights.ts';

const DIR = fileURLToPath(new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url));
const expected = JSON.parse(fs.readFileSync(DIR + 'expected.json', 'utf8')).perplexity as {
  text: string;
  ids: number[];
  mean_nll: number;
  perplexity: number;
};

/** A single-file checkpoint as a TensorSource (no dependency on the checkpoint folder reader). */
function source(dir: string): TensorSource {
  const f = openSafetensors(dir + 'model.safetensors');
  return {
    config: parseConfig(JSON.parse(fs.readFileSync(dir + 'config.json', 'utf8')), dir + 'config.json'),
    info: (name) => {
      const t = f.tensors.get(name);
      return t && { dtype: t.dtype as FileDType, shape: t.shape };
    },
    readInto: (name, dest) => f.readInto(name, dest),
  };
}

test('perplexity matches PyTorch on tiny-vocab32k-bf16 (mean NLL of ids[1:])', () => {
  const model = OpenELM.load(source(DIR));
  const r = perplexity(model, expected.ids);
  assert.equal(r.tokens, expected.ids.length - 1);
  assert.equal(r.windows, 1);
  // the model runs in f32 on bf16 weights, as the reference did; differences are f32 rounding
  assert.ok(Math.abs(r.meanNll - expected.mean_nll) < 1e-4, `mean NLL ${r.meanNll} vs ${expected.mean_nll}`);
  assert.ok(Math.abs(r.perplexity / expected.perplexity - 1) < 1e-3, `perplexity ${r.perplexity} vs ${expected.perplexity}`);
  assert.equal(model.cache.length, 0, 'the KV cache is left empty');
});

test('sliding window: a window as long as the text equals the plain score; shorter windows score every token once', () => {
  const model = OpenELM.load(source(DIR));
  const ids = expected.ids;
  const full = perplexity(model, ids);
  const same = perplexity(model, ids, { chunk: ids.length });
  assert.equal(same.meanNll, full.meanNll);
  const slid = perplexity(model, ids, { chunk: 8, stride: 4 });
  assert.equal(slid.tokens, ids.length - 1);
  assert.equal(slid.windows, Math.ceil((ids.length - 8) / 4) + 1);
  // by hand: window [b, b+8) scores the tokens after the previous window's end
  let total = 0,
    scored = 1;
  const V = model.config.vocab_size;
  for (let b = 0; scored < ids.length; b += 4) {
    const e = Math.min(b + 8, ids.length);
    model.reset();
    const logits = model.forwardAll(ids.slice(b, e));
    for (let t = scored; t < e; t++) total += tokenNll(logits, (t - 1 - b) * V, V, ids[t]);
    scored = e;
  }
  assert.ok(Math.abs(slid.meanNll - total / (ids.length - 1)) < 1e-12);
  // less context can only be a little worse on average here, never wildly different
  assert.ok(Math.abs(slid.meanNll - full.meanNll) < 0.5, `${slid.meanNll} vs ${full.meanNll}`);
});

test('a text longer than the context is scored with the sliding window by default', () => {
  const model = OpenELM.load(source(DIR), { contextLength: 16 });
  const ids = expected.ids; // 24 tokens > 16
  const r = perplexity(model, ids);
  assert.equal(r.tokens, ids.length - 1);
  assert.equal(r.windows, 2); // [0,16) then [8,24)
  assert.ok(Number.isFinite(r.perplexity) && r.perplexity > 1);
});

test('perplexity errors: too few tokens, window larger than the context, bad stride', () => {
  const model = OpenELM.load(source(DIR), { contextLength: 16 });
  assert.throws(() => perplexity(model, [1]), /at least 2 tokens/);
  assert.throws(() => perplexity(model, expected.ids, { chunk: 17 }), /chunk must be an integer in \[2, 16\]/);
  assert.throws(() => perplexity(model, expected.ids, { chunk: 8, stride: 8 }), /stride must be an integer in \[1, 7\]/);
});

test('tokenNll is −log softmax, stable for large logits', () => {
  const l = new Float32Array([1000, 1000, 1000, 1000]);
  assert.ok(Math.abs(tokenNll(l, 0, 4, 2) - Math.log(4)) < 1e-12);
  const m = new Float32Array([0, Math.log(3)]);
  assert.ok(Math.abs(tokenNll(m, 0, 2, 1) - Math.log(4 / 3)) < 1e-6);
});
