// openelm eval against the PyTorch reference (tiny-vocab32k-bf16/expected.json → multiple_choice
// and perplexity), through the library and through the command line; the batched scoring of
// choices against one-choice-at-a-time; left truncation; output formats.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateTask, loadTask } from '../src/eval/evaluate.ts';
import { encodePair, LoglikScorer, tokenLogprob } from '../src/eval/loglikelihood.ts';
import { paperFigures } from '../src/eval/paper.ts';
import { type LoadedModel, loadModel } from '../src/load.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MODEL = path.join(ROOT, 'test/fixtures/openelm/tiny-vocab32k-bf16');
const FIX = path.join(ROOT, 'test/fixtures/eval');
const expected = JSON.parse(fs.readFileSync(path.join(MODEL, 'expected.json'), 'utf8'));
const mc = expected.multiple_choice as {
  items: {
    id: string;
    context: string;
    choices: string[];
    label: number;
    loglik: number[];
    num_tokens: number[];
    is_greedy: boolean[];
    pred_acc: number;
    pred_acc_norm: number;
  }[];
  summary: { acc: number; acc_norm: number };
};
const ppl = expected.perplexity as { text: string; ids: number[]; mean_nll: number; perplexity: number };

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'eval', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('against the PyTorch reference', () => {
  let m: LoadedModel;
  before(async () => {
    m = await loadModel(MODEL, { backend: 'ref' });
  });
  after(() => m.dispose());

  test('multiple_choice: logliks, token counts, is_greedy, acc and acc_norm predictions (library)', async () => {
    const task = await loadTask(path.join(FIX, 'tiny-mc.jsonl'));
    assert.equal(task.spec.name, 'tiny-mc');
    const r = evaluateTask(m.model, m.tokenizer, task, { perItem: true });
    assert.equal(r.n, mc.items.length);
    const scorer = new LoglikScorer(m.model);
    mc.items.forEach((it, i) => {
      const got = r.items![i];
      it.loglik.forEach((l, j) => assert.ok(Math.abs(got.loglik[j] - l) < 2e-4, `${it.id} choice ${j}: ${got.loglik[j]} vs ${l}`));
      assert.deepEqual(got.is_greedy, it.is_greedy);
      assert.equal(got.pred, it.pred_acc, it.id);
      assert.equal(got.pred_norm, it.pred_acc_norm, it.id);
      assert.equal(got.label, it.label);
      const tokens = scorer.score(it.choices.map((c) => encodePair(m.tokenizer, it.context, ' ' + c))).map((x) => x.tokens);
      assert.deepEqual(tokens, it.num_tokens, it.id);
    });
    assert.equal(r.acc, mc.summary.acc);
    assert.equal(r.acc_norm, mc.summary.acc_norm);
    // the harness's mean_stderr of the 0/1 scores: sqrt(p (1 - p) n / (n - 1)) / sqrt(n)
    const n = r.n,
      p = r.acc;
    assert.ok(Math.abs(r.acc_stderr! - Math.sqrt((p * (1 - p) * n) / (n - 1) / n)) < 1e-12);
  });

  test('encodePair: BOS first, the continuation is what encoding the whole adds; trailing spaces move to the continuation', () => {
    const t = m.tokenizer;
    const a = encodePair(t, 'Question: 2+2?\nAnswer:', ' four');
    assert.equal(a.context[0], t.bosId);
    assert.deepEqual(a.context.concat(a.continuation), t.encode('Question: 2+2?\nAnswer: four', { bos: true }));
    const b = encodePair(t, 'Answer: ', 'four'); // the harness scores " four" after "Answer:"
    assert.deepEqual(b, encodePair(t, 'Answer:', ' four'));
    const c = encodePair(t, '', 'Hello');
    assert.deepEqual(c, { context: [t.bosId], continuation: t.encode('Hello') });
  });
});

describe('batched choices', () => {
  let m: LoadedModel;
  before(async () => {
    m = await loadModel(MODEL, { backend: 'wasm', threads: 2 });
  });
  after(() => m.dispose());

  test('one batched pass after the shared context equals one choice at a time (wasm), across batch splits and long branches', () => {
    const reqs = mc.items.map((it) => it.choices.map((c) => encodePair(m.tokenizer, it.context, ' ' + c)));
    const plain = new LoglikScorer(m.model, { batchTokens: 1 });
    const want = reqs.map((r) => plain.score(r));
    for (const batchTokens of [128, 5, 3]) {
      const s = new LoglikScorer(m.model, { batchTokens });
      reqs.forEach((r, i) =>
        s.score(r).forEach((x, j) => {
          assert.ok(Math.abs(x.loglik - want[i][j].loglik) < 1e-4, `batch ${batchTokens} item ${i} choice ${j}`);
          assert.equal(x.isGreedy, want[i][j].isGreedy);
        }),
      );
      // the context runs once per item, not once per choice; the prefix shared with the previous item is kept
      assert.ok(s.stats.modelTokens < s.stats.requestTokens / 2, `${s.stats.modelTokens} of ${s.stats.requestTokens}`);
    }
    mc.items.forEach((it, i) => want[i].forEach((x, j) => assert.ok(Math.abs(x.loglik - it.loglik[j]) < 2e-4)));
  });

  test('several items per pass (scoreMany, each in its own cache) equal item by item, across pass sizes, long branches and cache reuse', () => {
    const reqs = mc.items.map((it) => it.choices.map((c) => encodePair(m.tokenizer, it.context, ' ' + c)));
    const want = reqs.map((r) => new LoglikScorer(m.model, { batchTokens: 1 }).score(r));
    for (const [batchTokens, docsPerPass] of [
      [128, 4],
      [128, 3],
      [9, 2],
      [3, 4], // choices longer than a pass: those items go the single-item way
    ]) {
      const s = new LoglikScorer(m.model, { batchTokens, docsPerPass });
      // twice: the second call finds each item's prefix already in its cache
      for (let round = 0; round < 2; round++) {
        const before = s.stats.modelTokens;
        s.scoreMany(reqs).forEach((res, i) =>
          res.forEach((x, j) => {
            assert.ok(
              Math.abs(x.loglik - want[i][j].loglik) < 1e-4,
              `batch ${batchTokens} × ${docsPerPass} docs, item ${i} choice ${j}: ${x.loglik} vs ${want[i][j].loglik}`,
            );
            assert.equal(x.isGreedy, want[i][j].isGreedy);
            assert.equal(x.tokens, want[i][j].tokens);
          }),
        );
        if (round === 1 && docsPerPass >= reqs.length && batchTokens > 3)
          assert.ok(s.stats.modelTokens - before < before, 'the second round reuses the cached contexts');
      }
    }
    assert.deepEqual(new LoglikScorer(m.model).scoreMany([]), []);
    assert.throws(() => new LoglikScorer(m.model, { docsPerPass: 0 }), /docsPerPass must be a positive integer, got 0/);
  });

  test('a context longer than the window is left-truncated as the harness does: (context + continuation)[-(L+1):][:-1]', async () => {
    const small = await loadModel(MODEL, { backend: 'ref', contextLength: 16 });
    try {
      const ctx = 'The small language model ran on the laptop without a network connection, and it answered';
      const r = encodePair(small.tokenizer, ctx, ' every question');
      assert.ok(r.context.length + r.continuation.length > 17);
      const [got] = new LoglikScorer(small.model).score([r]);
      const all = r.context.concat(r.continuation).slice(-17);
      small.model.reset(); // the scorer leaves the shared prefix cached
      const logits = small.model.forwardAll(all.slice(0, -1));
      const V = small.model.config.vocab_size;
      let want = 0;
      for (let t = all.length - r.continuation.length; t < all.length; t++) want += tokenLogprob(logits, (t - 1) * V, V, all[t]).logprob;
      small.model.reset();
      assert.ok(Math.abs(got.loglik - want) < 1e-6, `${got.loglik} vs ${want}`);
      assert.throws(() => new LoglikScorer(small.model).score([{ context: [1], continuation: Array(17).fill(450) }]), /does not fit the context window of 16/);
    } finally {
      small.dispose();
    }
  });
});

describe('openelm eval (command line)', () => {
  let tmp: string;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-eval-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('--tasks FILE.jsonl --json --per-item: the reference logliks, acc and acc_norm (four documents per pass, and one)', () => {
    const r = cli(['-m', MODEL, '--tasks', path.join(FIX, 'tiny-mc.jsonl'), '--json', '--per-item']);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.config.docsPerPass, 4);
    const one = cli(['-m', MODEL, '--tasks', path.join(FIX, 'tiny-mc.jsonl'), '--json', '--per-item', '--docs-per-pass', '1']);
    assert.equal(one.status, 0, one.stderr);
    const single = JSON.parse(one.stdout);
    assert.equal(single.config.docsPerPass, 1);
    single.items.forEach((it: { loglik: number[] }, i: number) => it.loglik.forEach((l, j) => assert.ok(Math.abs(l - out.items[i].loglik[j]) < 1e-4)));
    assert.match(cli(['-m', MODEL, '--tasks', path.join(FIX, 'tiny-mc.jsonl'), '--docs-per-pass', '0']).stderr, /--docs-per-pass/);
    const res = out.results['tiny-mc'];
    assert.equal(res.n, 12);
    assert.equal(res.acc, mc.summary.acc);
    assert.equal(res.acc_norm, mc.summary.acc_norm);
    assert.equal(typeof res.acc_stderr, 'number');
    assert.equal(typeof res.acc_norm_stderr, 'number');
    assert.equal(out.items.length, 12);
    out.items.forEach((got: { task: string; loglik: number[]; is_greedy: boolean[]; pred: number; pred_norm: number; label: number }, i: number) => {
      const it = mc.items[i];
      assert.equal(got.task, 'tiny-mc');
      got.loglik.forEach((l, j) => assert.ok(Math.abs(l - it.loglik[j]) < 2e-3));
      assert.deepEqual([got.pred, got.pred_norm, got.label], [it.pred_acc, it.pred_acc_norm, it.label]);
      assert.deepEqual(got.is_greedy, it.is_greedy);
    });
  });

  test('--perplexity FILE --json: mean NLL per token (BOS first), perplexity, bits per byte; --window / --stride slide', () => {
    const file = path.join(FIX, 'tiny-ppl.txt');
    const r = cli(['-m', MODEL, '--perplexity', file, '--json']);
    assert.equal(r.status, 0, r.stderr);
    const p = JSON.parse(r.stdout).perplexity;
    assert.equal(p.tokens, ppl.ids.length - 1);
    assert.ok(Math.abs(p.mean_nll - ppl.mean_nll) < 2e-3, `${p.mean_nll} vs ${ppl.mean_nll}`);
    assert.ok(Math.abs(p.perplexity / ppl.perplexity - 1) < 2e-3);
    assert.equal(p.bytes, Buffer.byteLength(ppl.text));
    assert.ok(Math.abs(p.bits_per_byte - (p.mean_nll * p.tokens) / p.bytes / Math.LN2) < 1e-9);
    assert.equal(p.windows, 1);
    const s = JSON.parse(cli(['-m', MODEL, '--perplexity', file, '--window', '8', '--stride', '4', '--json', '--per-item']).stdout).perplexity;
    assert.equal(s.windows, Math.ceil((ppl.ids.length - 8) / 4) + 1);
    assert.equal(s.docs[0].token_nll.length, ppl.ids.length - 1);
    // JSON lines: every record's "text", token-weighted
    const jl = path.join(tmp, 'texts.jsonl');
    fs.writeFileSync(jl, [ppl.text, ppl.text].map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const two = JSON.parse(cli(['-m', MODEL, '--perplexity', jl, '--json']).stdout).perplexity;
    assert.equal(two.documents, 2);
    assert.equal(two.tokens, 2 * p.tokens);
    assert.ok(Math.abs(two.mean_nll - p.mean_nll) < 1e-9);
  });

  test('NAME=PATH tasks: the table on stdout, --output writes the JSON, a progress line per task on stderr', () => {
    const outFile = path.join(tmp, 'res.json');
    const r = cli(['-m', MODEL, '--tasks', `arc_easy=${path.join(FIX, 'ai2_arc')},winogrande=${path.join(FIX, 'winogrande')}`, '--output', outFile]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0], /^task\s+n\s+acc\s+± stderr\s+acc_norm\s+± stderr\s+items\/s$/);
    assert.match(lines[1], /^arc_easy\s+3\s+\d\.\d{4}\s+\d\.\d{4}\s+\d\.\d{4}\s+\d\.\d{4}\s+[\d.]+$/);
    assert.match(lines[2], /^winogrande\s+3\s+\d\.\d{4}\s+\d\.\d{4}\s+[\d.]+$/); // no acc_norm for WinoGrande
    assert.match(r.stderr, /arc_easy 100%\s+3\/3/);
    const saved = JSON.parse(fs.readFileSync(outFile, 'utf8'));
    assert.deepEqual(Object.keys(saved.results), ['arc_easy', 'winogrande']);
    assert.equal(saved.results.winogrande.acc_norm, undefined);
    assert.equal(saved.config.seed, 1234);
  });

  test('--num-fewshot from the train split; usage errors', () => {
    const r = cli(['-m', MODEL, '--tasks', `arc_easy=${path.join(FIX, 'ai2_arc')}`, '--num-fewshot', '2', '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).results.arc_easy.num_fewshot, 2);
    assert.equal(cli(['-m', MODEL]).status, 2);
    const bad = cli(['-m', MODEL, '--tasks', 'nosuchtask']);
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /unknown task "nosuchtask"/);
    assert.match(cli(['--help']).stdout, /--num-fewshot K/);
  });
});

test("the paper's figures are matched to Apple's checkpoints only", () => {
  assert.equal(paperFigures('apple/OpenELM-270M')?.figures.winogrande, 53.91);
  assert.equal(paperFigures('/home/u/.cache/huggingface/hub/models--apple--OpenELM-3B-Instruct/snapshots/abc')?.model, 'apple/OpenELM-3B-Instruct');
  assert.equal(paperFigures('runs/tiny'), undefined);
  assert.equal(paperFigures('someone/OpenELM-270M'), undefined);
});
