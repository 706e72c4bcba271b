import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Rng } from '../src/generate/rng.ts';
import { argmax, Sampler } from '../src/generate/sampler.ts';

/** Straightforward HF-order filter over a full sort: the oracle for the fast threshold search. */
function oracle(logits: Float32Array, o: { temperature: number; topK: number; topP: number; minP: number }): number[] {
  const V = logits.length;
  // probabilities stored as float32, as the sampler keeps them
  const z = Float32Array.from(logits, (x) => x / o.temperature);
  const max = Math.max(...z);
  const e = Float32Array.from(z, (x) => Math.exp(x - max));
  const s = e.reduce((a, b) => a + b, 0);
  const p = Float32Array.from(e, (x) => x / s);
  let ids = Array.from({ length: V }, (_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
  if (o.topK > 0 && ids.length > o.topK) {
    const kth = p[ids[o.topK - 1]];
    ids = ids.filter((i, j) => j < o.topK || p[i] === kth);
  }
  if (o.topP < 1) {
    const total = o.topK > 0 ? ids.reduce((a, i) => a + p[i], 0) : 1;
    let cum = 0,
      keep = ids.length;
    for (let j = 0; j < ids.length; j++) {
      cum += p[ids[j]] / total;
      if (cum >= o.topP) {
        keep = j + 1;
        break;
      }
    }
    ids = ids.slice(0, keep);
  }
  if (o.minP > 0) {
    const floor = o.minP * p[ids[0]];
    const kept = ids.filter((i) => p[i] >= floor);
    ids = kept.length ? kept : ids.slice(0, 1);
  }
  return ids;
}

function randomLogits(rng: Rng, V: number, spread: number): Float32Array {
  const l = new Float32Array(V);
  for (let i = 0; i < V; i++) l[i] = rng.normal() * spread;
  return l;
}

test('temperature 0 is argmax; top-k 1 is argmax', () => {
  const rng = new Rng(1);
  for (let t = 0; t < 20; t++) {
    const l = randomLogits(rng, 1000, 3);
    assert.equal(new Sampler(1000, { temperature: 0 }).sample(l), argmax(l));
    assert.equal(new Sampler(1000, { temperature: 1, topK: 1, topP: 1, seed: t }).sample(l), argmax(l));
  }
});

test('fast candidate filtering equals the full-sort oracle', () => {
  const rng = new Rng(7);
  const settings = [
    { temperature: 1, topK: 0, topP: 0.9, minP: 0 },
    { temperature: 0.7, topK: 0, topP: 0.5, minP: 0 },
    { temperature: 1.3, topK: 40, topP: 0.95, minP: 0 },
    { temperature: 1, topK: 0, topP: 1, minP: 0.05 },
    { temperature: 1, topK: 5, topP: 1, minP: 0 },
    { temperature: 2, topK: 0, topP: 0.999, minP: 0 },
    { temperature: 1, topK: 50, topP: 0.8, minP: 0.1 },
  ];
  for (const o of settings) {
    for (const spread of [0.5, 2, 8]) {
      const l = randomLogits(rng, 3000, spread);
      const got = new Sampler(3000, o).candidatesOf(l).ids;
      assert.deepEqual(got, oracle(l, o), JSON.stringify({ o, spread }));
    }
  }
});

test('seeded sampling is reproducible and follows the distribution', () => {
  const l = new Float32Array([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
  const draw = (seed: number) => {
    const s = new Sampler(3, { temperature: 1, topP: 1, seed });
    return Array.from({ length: 20000 }, () => s.sample(l));
  };
  assert.deepEqual(draw(42), draw(42));
  assert.notDeepEqual(draw(42), draw(43));
  const counts = [0, 0, 0];
  for (const x of draw(5)) counts[x]++;
  assert.ok(Math.abs(counts[0] / 20000 - 0.5) < 0.015 && Math.abs(counts[2] / 20000 - 0.2) < 0.015, `${counts}`);
  // top-p 0.6 keeps {0, 1} (0.5 < 0.6 ≤ 0.8): token 2 never appears
  const s = new Sampler(3, { temperature: 1, topP: 0.6, seed: 1 });
  for (let i = 0; i < 2000; i++) assert.notEqual(s.sample(l), 2);
});

test('repetition penalty follows HF: positive logits divided, negative multiplied', () => {
  const l = new Float32Array([2.0, 1.9, -0.1, -0.2]);
  const s = new Sampler(4, { temperature: 0, repetitionPenalty: 1.2 });
  s.observe([0]);
  assert.equal(s.sample(l), 1); // 2.0 / 1.2 < 1.9
  const t = new Sampler(4, { temperature: 0, repetitionPenalty: 1.2 });
  const m = new Float32Array([-1, -1.1, -1.05, -5]);
  t.observe([0]);
  assert.equal(t.sample(m), 2); // -1 * 1.2 = -1.2 < -1.05
});

test('invalid sampling options are rejected by name', () => {
  assert.throws(() => new Sampler(10, { temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler(10, { topP: 0 }), /topP/);
  assert.throws(() => new Sampler(10, { topK: 1.5 }), /topK/);
  assert.throws(() => new Sampler(10, { repetitionPenalty: 0 }), /repetitionPenalty/);
});
