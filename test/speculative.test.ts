// Speculative decoding (src/generate/speculative.ts): greedy output with a draft is identical to
// the target alone (a q4_0 copy of the same weights, a smaller OpenELM, prompt lookup; reference
// and wasm backends), and sampling keeps the target's distribution (the accept / reject rule
// checked against the exact next-token distribution).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { generateText } from '../src/generate/generate.ts';
import { acceptanceFor, DraftLength, Policy, PromptLookupDrafter, StepDraftLength, tokensPerRound, verify } from '../src/generate/speculative.ts';
import { loadModel, loadOpenELM } from '../src/load.ts';

const F = (name: string) => new URL(`./fixtures/openelm/${name}/`, import.meta.url).pathname;

for (const backend of ['wasm'] as const) {
  // the reference backend: the next test
  test(`greedy with a q4_0 copy of the same weights as draft, or prompt lookup, equals the model alone (${backend})`, async () => {
    const target = await loadModel(F('tiny-vocab32k-bf16'), { backend, threads: 2 });
    const draft = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend, threads: 2, dtype: 'q4' });
    try {
      const prompts = ['Once upon a time', 'The weather today is the weather today is the', 'a b c a b c a b'];
      for (const p of prompts) {
        const opts = { temperature: 0, maxNewTokens: 40, ignoreEos: true };
        target.model.reset();
        const alone = await generateText(target.model, target.tokenizer, p, opts);
        // adaptive (the default): each round's length from timings, so which rounds draft varies
        // from run to run; the text may not
        for (const speculative of [{ draft: draft.model, draftTokens: 4, adaptive: false }, { draft: draft.model, draftTokens: 7 }, { promptLookup: 10 }]) {
          target.model.reset();
          const r = await generateText(target.model, target.tokenizer, p, { ...opts, speculative });
          assert.deepEqual(r.outputIds, alone.outputIds, `${p} ${JSON.stringify({ ...speculative, draft: !!speculative.draft })}`);
          assert.ok(r.speculative!.rounds > 0 && r.speculative!.accepted <= r.speculative!.drafted);
          if ('adaptive' in speculative) assert.ok(r.speculative!.accepted > 0, 'the q4 copy agrees with its own weights sometimes');
          // the cache holds exactly the prompt and the output but the last token
          assert.deepEqual(target.model.cache.ids, [...r.promptIds, ...r.outputIds].slice(0, r.promptIds.length + r.outputIds.length - 1));
        }
      }
      // a repetition penalty and a stop string go through the same verification
      target.model.reset();
      const opts = { temperature: 0, maxNewTokens: 30, repetitionPenalty: 1.3, ignoreEos: true };
      const alone = await generateText(target.model, target.tokenizer, 'It was the best of times', opts);
      target.model.reset();
      const r = await generateText(target.model, target.tokenizer, 'It was the best of times', { ...opts, speculative: { draft: draft.model } });
      assert.deepEqual(r.outputIds, alone.outputIds);
    } finally {
      target.dispose();
      draft.dispose();
    }
  });
}

test('reference backend: greedy with a smaller OpenELM or a q4_0 copy as draft equals the model alone; a draft with another vocabulary is refused', async () => {
  const target = await loadModel(F('tiny-bf16-sharded'), { backend: 'ref' });
  const small = await loadOpenELM(F('tiny-f32'), { backend: 'ref' });
  const q4 = await loadOpenELM(F('tiny-bf16-sharded'), { backend: 'ref', dtype: 'q4' });
  const other = await loadOpenELM(F('tiny-vocab32k-bf16'), { backend: 'ref' });
  try {
    const opts = { temperature: 0, maxNewTokens: 40, ignoreEos: true };
    for (const prompt of [
      [1, 5, 9, 12],
      [1, 300, 301, 302, 300, 301],
    ]) {
      target.model.reset();
      const alone = await generateText(target.model, target.tokenizer, { ids: prompt }, opts);
      for (const speculative of [{ draft: small.model, draftTokens: 3 }, { draft: q4.model, draftTokens: 5 }, { promptLookup: 10 }]) {
        target.model.reset();
        const r = await generateText(target.model, target.tokenizer, { ids: prompt }, { ...opts, speculative });
        assert.deepEqual(r.outputIds, alone.outputIds);
      }
    }
    await assert.rejects(
      generateText(target.model, target.tokenizer, { ids: [1, 5] }, { ...opts, speculative: { draft: other.model } }),
      /vocabulary \(32000 tokens\) differs/,
    );
  } finally {
    target.dispose();
    small.dispose();
    q4.dispose();
    other.dispose();
  }
});

test('sampling: the accept / reject rule gives exactly the target distribution (exact sums over the draft)', () => {
  // vocabulary of 4; target p and draft q known; the first token of the verified output has
  // probability Σ_d q(d) · [accept d] + reject mass · residual = p, computed by enumerating draws
  const V = 4;
  const logitsP = new Float32Array([1.2, 0.1, -0.5, 0.7]),
    logitsQ = [0.2, 1.0, 0.3, -1];
  const policy = new Policy(V, { temperature: 0.9, topP: 1 }, 7);
  const seen = new Uint8Array(V);
  const p = policy.dist(logitsP, seen);
  const q = policy.dist(new Float32Array(logitsQ), seen);
  const counts = new Float64Array(V);
  const N = 40000;
  const rows = new Float32Array(2 * V);
  rows.set(logitsP, 0);
  rows.set(logitsP, V);
  for (let i = 0; i < N; i++) {
    const d = policy.draw(q);
    const { accepted, next } = verify(policy, rows, { tokens: [d], probs: [q] }, new Uint8Array(V));
    counts[accepted === 1 ? d : next]++;
  }
  for (let t = 0; t < V; t++) {
    const want = p.get(t)!,
      got = counts[t] / N,
      sd = Math.sqrt((want * (1 - want)) / N);
    assert.ok(Math.abs(got - want) < 5 * sd, `token ${t}: ${got.toFixed(4)} vs p ${want.toFixed(4)}`);
  }
  // and q alone is visibly different, so the check can fail
  assert.ok(Math.abs(q.get(1)! - p.get(1)!) > 0.2);
});

test('prompt lookup proposes what followed the latest earlier occurrence of the last n-gram', () => {
  const d = new PromptLookupDrafter(3);
  assert.deepEqual(d.propose([1, 7, 8, 9, 4, 5, 7, 8], 3).tokens, [9, 4, 5]);
  assert.deepEqual(d.propose([1, 7, 8, 9, 2, 7, 8, 3, 7, 8], 2).tokens, [3, 7]); // the latest match
  assert.deepEqual(d.propose([1, 2, 3], 4).tokens, []);
});

test("a round's worth: expected tokens per round, and the acceptance a speed-up needs given a round's costs", () => {
  assert.equal(tokensPerRound(0, 4), 1);
  assert.equal(tokensPerRound(1, 4), 5);
  assert.ok(Math.abs(tokensPerRound(0.8, 4) - (1 - 0.8 ** 5) / 0.2) < 1e-12);
  // free drafts and a check as cheap as a step: 1.3× needs 0.3 = a + a² + … ⇒ a ≈ 0.2308 (k = 4)
  const a = acceptanceFor(1.3, 4, 0, 10, 10)!;
  assert.ok(Math.abs(tokensPerRound(a, 4) - 1.3) < 1e-9, `${a}`);
  assert.ok(a > 0.23 && a < 0.232);
  // drafts at 40 % of a step and a check at 1.2 steps: even keeping everything gives 5 / 2.8 < 2
  assert.equal(acceptanceFor(2, 4, 4, 12, 10), null);
  assert.ok(acceptanceFor(1.3, 4, 4, 12, 10)! > 0.8);
});

test('adaptive draft length: the k that maximises expected tokens per ms, from the costs and acceptance seen', () => {
  // the 1.1B bf16 model with its q4_0 copy on 2 cores: a draft step 28 ms, a plain step 80, the
  // model's pass over 4 tokens 140, over 5 tokens 200
  const L = new DraftLength(4);
  assert.equal(L.choose(), 4, 'the first round drafts the most');
  L.round(4, 4 * 28, 200, 4);
  assert.equal(L.choose(), 0, 'the second measures a plain step');
  L.plain(80);
  // a drafter the model agrees with: 4 tokens cost 112 + 200 = 312 ms for ≤ 5, 3 cost 84 + 140 for ≤ 4
  for (let i = 0; i < 12; i++) {
    const k = L.choose();
    assert.ok(k >= 1, `round ${i}: ${k}`);
    L.round(k, k * 28, k === 3 ? 140 : k === 4 ? 200 : 80 + 20 * k, k);
  }
  assert.equal(L.choose(), 3, 'with every draft kept, 4 tokens per 224 ms beat 5 per 312 and 1 per 80');
  assert.ok(L.acceptance > 0.9);
  // the drafter stops agreeing: after a few misses plain steps win, with a one-token probe now and then
  let k = L.choose();
  for (let i = 0; i < 30 && k > 0; i++) {
    L.round(k, k * 28, k === 3 ? 140 : 200, 0);
    k = L.choose();
  }
  assert.equal(k, 0, 'nothing kept: plain steps');
  const probesOf = (d: DraftLength, agreesFrom: number) => {
    const probes: number[] = [];
    for (let i = 0; i < 400; i++) {
      const c = d.choose();
      assert.ok(c <= 1 || i > agreesFrom, `step ${i}: ${c}`);
      if (c === 0) d.plain(80);
      else {
        probes.push(i);
        d.round(c, c * 28, 110, i >= agreesFrom ? c : 0);
      }
    }
    return probes;
  };
  // a probe after ≤ 16 plain steps, then after 32 more and 64 more while they keep nothing, then
  // none (each would make a draft model catch up on every token since its last round)
  const probes = probesOf(L, Infinity);
  assert.ok(probes[0] < 16, `probes at ${probes.join(' ')}`);
  assert.deepEqual(
    probes.slice(1).map((p, i) => p - probes[i]),
    [32, 64],
    `probes at ${probes.join(' ')}`,
  );
  // a probe that keeps its token brings the wait back to 16
  const M = new DraftLength(4);
  M.round(4, 112, 200, 0);
  M.plain(80);
  const back = probesOf(M, 30);
  assert.equal(back[1] - back[0], 32, `probes at ${back.join(' ')}`);
  assert.ok(back[2] - back[1] <= 16, `probes at ${back.join(' ')}`);
  // where a round can never pay (a q8_0 model: a plain step 47 ms, a pass over m tokens ~47 + 27.5
  // (m - 1)), even with every draft kept: each length is tried once at most, then plain steps
  const Q = new DraftLength(4);
  const qPass = (m: number) => 47 + 27.5 * (m - 1);
  const tried: number[] = [];
  for (let i = 0; i < 12; i++) {
    const c = Q.choose();
    if (c === 0) Q.plain(qPass(1));
    else {
      tried.push(c);
      Q.round(c, c * 28, qPass(c + 1), c);
    }
  }
  assert.ok(tried.length <= 4 && new Set(tried).size === tried.length, `tried ${tried.join(' ')}`);
  assert.equal(Q.choose(), 0);
});

test("a serving step's draft length: one k for the greedy sequences decoded together, from costs by rows and each one's acceptance", () => {
  // 8 sequences, a model whose pass over m rows costs 40 + 2 m ms (bound by reading its weights),
  // a small draft model: 5 ms a pass
  const pass = (m: number) => 40 + 2 * m;
  const seqs = (a: number, room = 4) => Array.from({ length: 8 }, () => ({ acceptance: a, room }));
  const S = new StepDraftLength(4, 64 + 8 * 4, 8);
  assert.equal(S.choose(0, 0, seqs(0.5)), 4, 'the first drafting step drafts the most');
  S.drafted(8, 5);
  S.passed(8 + 32, pass(40));
  assert.equal(S.choose(0, 0, seqs(0.5)), 0, 'then a plain step is measured');
  S.passed(8, pass(8));
  // kept often: 8 · tokensPerRound(0.9, k) / (20 k + pass(8 + 8 k)); k = 4 was measured, 1-3 look
  // as cheap as 8 rows (optimistic), so each is tried
  const tried = new Set<number>();
  for (let i = 0; i < 8; i++) {
    const k = S.choose(0, 0, seqs(0.9));
    assert.ok(k >= 1, `step ${i}: ${k}`);
    tried.add(k);
    S.drafted(8, 5);
    S.passed(8 + 8 * k, pass(8 + 8 * k));
  }
  const rate = (a: number, k: number) => (8 * tokensPerRound(a, k)) / (k ? 5 * k + pass(8 + 8 * k) : pass(8));
  const best = [1, 2, 3, 4].reduce((b, k) => (rate(0.9, k) > rate(0.9, b) ? k : b), 1);
  assert.equal(S.choose(0, 0, seqs(0.9)), best, `tried ${[...tried].join(' ')}`);
  // a room caps a sequence's drafts (more would only cost draft passes)
  assert.equal(S.choose(0, 0, seqs(0.9, 1)), 1);
  // kept rarely: plain steps, with a one-token probe after 16
  let probes = 0;
  for (let i = 0; i < 60; i++) {
    const k = S.choose(0, 0, seqs(0.05));
    assert.ok(k <= 1, `step ${i}: ${k}`);
    if (k) {
      probes++;
      S.drafted(8, 5);
      S.passed(16, pass(16));
      S.checked(0);
    } else S.passed(8, pass(8));
  }
  assert.equal(probes, 2, 'probes after 16 steps, then after 32');
  // prompt lookup drafts for free: the model's pass alone decides
  const L = new StepDraftLength(10, 200, 8, true);
  L.passed(8, pass(8));
  assert.equal(L.choose(0, 0, seqs(0.9, 10)), 10, 'no cost measured beyond 8 rows: the most');
  assert.equal(L.choose(0, 0, []), 0, 'nobody to draft');
});
