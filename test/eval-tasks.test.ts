// The task adapters against files in each dataset's hub layout (test/fixtures/eval, written by
// make-fixtures.mjs): the prompts are the harness's, written out by hand from its task YAMLs and
// utils (lm_eval/tasks/{arc,super_glue/boolq,hellaswag,piqa,sciq,winogrande}); the few-shot
// examples are the ones Python's random.Random(1234).sample picks; the scores are the model's.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pathInSplit, selectSplitFiles } from '../src/eval/datasets.ts';
import { argmax, evaluateTask, loadTask, meanStderr } from '../src/eval/evaluate.ts';
import { encodePair, tokenLogprob } from '../src/eval/loglikelihood.ts';
import { pyCapitalize, pyLen, pyRstrip, pyStrip } from '../src/eval/pystr.ts';
import { PythonRandom } from '../src/eval/python-random.ts';
import { buildItem, type Doc, fewshotExample, hellaswagPreprocess, TASKS } from '../src/eval/tasks.ts';
import { type LoadedModel, loadModel } from '../src/load.ts';

const FIX = fileURLToPath(new URL('./fixtures/eval/', import.meta.url));
const MODEL = fileURLToPath(new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url));

/** The requests of every document of a task loaded from the fixtures, as [contexts, continuations, gold]. */
async function items(spec: string) {
  const t = await loadTask(spec);
  return t.docs.map((d) => {
    const doc = t.spec.process ? t.spec.process(d) : d;
    return buildItem(t.spec, doc);
  });
}

describe('task prompts, by hand from the harness task definitions', () => {
  test('arc_easy / arc_challenge: "Question: {question}\\nAnswer:", " " + choices.text, gold = choices.label.index(answerKey) on test', async () => {
    const it = await items(`arc_easy=${FIX}ai2_arc`);
    assert.equal(it.length, 3); // the test split, not train (4) or validation (1)
    assert.deepEqual(it[0].contexts, Array(4).fill('Question: Which gas do plants take in from the air?\nAnswer:'));
    assert.deepEqual(it[0].continuations, [' oxygen', ' carbon dioxide', ' helium', ' neon']);
    assert.equal(it[0].gold, 1);
    assert.equal(it[1].gold, 1); // labels "1","2","3", answerKey "2"
    assert.equal(it[1].continuations.length, 3);
    assert.equal(it[2].continuations.length, 5);
    const ch = await items(`arc_challenge=${FIX}ai2_arc`);
    assert.equal(ch.length, 2); // ARC-Challenge/ folder only
    assert.equal(ch[0].contexts[0], 'Question: Why does the Moon shine?\nAnswer:');
    assert.deepEqual(TASKS.arc_easy.metrics, ['acc', 'acc_norm']);
  });

  test('boolq: "{passage}\\nQuestion: {question}?\\nAnswer:", choices no / yes, validation split, acc only', async () => {
    const it = await items(`boolq=${FIX}super_glue`);
    assert.equal(it.length, 2);
    assert.equal(it[0].contexts[0], 'The Sun is the star at the center of the Solar System.\nQuestion: is the sun a star?\nAnswer:');
    assert.deepEqual(it[0].continuations, [' no', ' yes']);
    assert.deepEqual([it[0].gold, it[1].gold], [1, 0]); // int64 labels read as numbers
    assert.deepEqual(TASKS.boolq.metrics, ['acc']);
  });

  test('hellaswag: activity_label + ": " + ctx_a + " " + ctx_b.capitalize(), [title] → ". ", [tags] removed, double spaces, endings preprocessed', async () => {
    const it = await items(`hellaswag=${FIX}hellaswag`);
    assert.equal(it.length, 3);
    // capitalize() lower-cases the rest: "HE starts pulling up ROOFING" → "He starts pulling up roofing"
    assert.equal(it[0].contexts[0], 'Roof shingle removal: A man is sitting on a roof. He starts pulling up roofing');
    assert.deepEqual(it[0].continuations, [' on a roof.', ' shingles with a crowbar.', ' a ladder down.', ' his hat.']);
    assert.equal(it[0].gold, 1); // label is the string "1" in the hub's files
    assert.equal(it[1].contexts[0], 'Home and Garden: Clean the gutters. Put on gloves. climb the ladder carefully');
    // strip() runs before the tags are removed, so "[substeps] Scoop" keeps its space
    assert.deepEqual(it[1].choices, [' Scoop out the leaves.', 'Paint the house. red.', 'Sing loudly.', 'Leave it.']);
    assert.equal(it[2].contexts[0], 'Running: People are running in a park'); // empty ctx_b: the trailing space is stripped
    assert.equal(it[2].gold, 3);
    // the original release's JSON lines (hellaswag_val.jsonl, integer labels) give the same items
    assert.deepEqual(await items(`hellaswag=${FIX}hellaswag-jsonl`), it);
    assert.equal(hellaswagPreprocess('a [x\ny] b'), 'a [x\ny] b'); // Python's "." does not cross newlines
  });

  test('piqa: "Question: {goal}\\nAnswer:", choices sol1 / sol2, validation', async () => {
    const it = await items(`piqa=${FIX}piqa`);
    assert.equal(it[1].contexts[0], 'Question: To cool a hot drink quickly,\nAnswer:');
    assert.deepEqual(it[1].continuations, [' put it in the oven.', ' add ice cubes.']);
    assert.equal(it[1].gold, 1);
  });

  test('sciq: "{support.lstrip()}\\nQuestion: {question}\\nAnswer:", distractor1..3 then correct_answer (gold 3), test split', async () => {
    const it = await items(`sciq=${FIX}sciq`);
    assert.equal(it.length, 2);
    assert.equal(it[0].contexts[0], 'Water is made of hydrogen and oxygen. \nQuestion: What is the chemical symbol for water?\nAnswer:');
    assert.deepEqual(it[0].continuations, [' O2', ' NaCl', ' CO2', ' H2O']);
    assert.equal(it[0].gold, 3);
    assert.equal(it[1].contexts[0], '\nQuestion: What organ pumps blood?\nAnswer:'); // empty support
  });

  test('winogrande: the option-filled prefix is the context, the rest of the sentence the shared continuation', async () => {
    const it = await items(`winogrande=${FIX}winogrande`);
    assert.equal(it.length, 3);
    assert.deepEqual(it[0].contexts, [
      'The trophy did not fit in the suitcase because the trophy',
      'The trophy did not fit in the suitcase because the suitcase',
    ]);
    assert.deepEqual(it[0].continuations, [' was too big.', ' was too big.']);
    assert.equal(it[0].gold, 0);
    assert.equal(it[2].gold, 1); // answer "2"
    assert.deepEqual(TASKS.winogrande.metrics, ['acc']);
  });

  test('a task on a single split file; errors name the file, the record and the field', async () => {
    const t = await loadTask(`arc_easy=${FIX}ai2_arc/ARC-Easy/test-00000-of-00001.parquet`);
    assert.equal(t.docs.length, 3);
    await assert.rejects(loadTask(`sciq=${FIX}piqa`), /task sciq: no test split in .*piqa/);
    await assert.rejects(
      loadTask(`piqa=${FIX}sciq`),
      /sciq.*validation-00000-of-00001\.parquet: record 0 has no "goal", "sol1", "sol2", "label" \(task piqa needs/,
    );
    await assert.rejects(loadTask('nope'), /unknown task "nope"/);
    await assert.rejects(loadTask(`arc_easy=${FIX}missing`), /does not exist/);
  });
});

describe('split files as the datasets library infers them', () => {
  test('keywords bounded by separators, in folders or file names; config folders', () => {
    assert.ok(pathInSplit('ARC-Easy/test-00000-of-00001.parquet', 'test'));
    assert.ok(pathInSplit('default/validation/0000.parquet', 'validation'));
    assert.ok(pathInSplit('hellaswag_val.jsonl', 'validation'));
    assert.ok(pathInSplit('data/dev.jsonl', 'validation'));
    assert.ok(!pathInSplit('data/contest.parquet', 'test'));
    assert.ok(!pathInSplit('data/validation-00000-of-00001.parquet', 'train'));
    const files = [
      'ARC-Easy/test-00001-of-00002.parquet',
      'ARC-Easy/test-00000-of-00002.parquet',
      'ARC-Challenge/test-00000-of-00001.parquet',
      'README.md',
      'ARC-Easy/train-00000-of-00001.parquet',
    ];
    assert.deepEqual(selectSplitFiles(files, 'test', 'ARC-Easy'), ['ARC-Easy/test-00000-of-00002.parquet', 'ARC-Easy/test-00001-of-00002.parquet']);
    assert.deepEqual(selectSplitFiles(files, 'test', 'ARC-Challenge'), ['ARC-Challenge/test-00000-of-00001.parquet']);
  });
});

describe('Python semantics', () => {
  test('random.Random(seed): random(), getrandbits, sample — values printed by CPython 3', () => {
    const r = new PythonRandom(1234);
    assert.equal(r.random(), 0.9664535356921388);
    assert.equal(r.getrandbits(32), 1892932127);
    const R = (n: number) => Array.from({ length: n }, (_, i) => i);
    const s = new PythonRandom(1234);
    // random.Random(1234): sample(range(10),3), sample(range(100),5), sample(range(1000),8) (the set branch), sample(range(40),10)
    assert.deepEqual(s.sample(R(10), 3), [7, 1, 0]);
    assert.deepEqual(s.sample(R(100), 5), [11, 74, 4, 85, 88]);
    assert.deepEqual(s.sample(R(1000), 8), [85, 100, 784, 363, 242, 17, 31, 807]);
    assert.deepEqual(s.sample(R(40), 10), [1, 22, 30, 29, 9, 5, 11, 7, 0, 16]);
    assert.equal(new PythonRandom(2n ** 40n + 5n).random(), 0.5043802970418443); // a two-word key
    assert.equal(new PythonRandom(-7).random(), 0.32383276483316237); // |seed|
    assert.equal(new PythonRandom(0).random(), 0.8444218515250481);
  });

  test('str.capitalize, strip, len', () => {
    assert.equal(pyCapitalize('HE starts pulling up ROOFING'), 'He starts pulling up roofing');
    assert.equal(pyCapitalize('ßtraße'), 'Sstraße');
    assert.equal(pyCapitalize('ǆemal'), 'ǅemal');
    assert.equal(pyCapitalize(''), '');
    assert.equal(pyStrip('\x1c a \u3000'), 'a'); // Python's whitespace includes \x1c…\x1f
    assert.equal(pyRstrip('a\ufeff'), 'a\ufeff'); // and not U+FEFF, unlike JS trim
    assert.equal(pyLen('à Paris'), 7);
    assert.equal(pyLen('🙂!'), 2);
  });

  test('np.argmax takes the first maximum; mean_stderr is the sample stddev / sqrt(n)', () => {
    assert.equal(argmax([-3, -1, -1]), 1);
    assert.equal(meanStderr([1]), null);
    // [1, 0, 1, 1]: mean 0.75, sample variance 0.25, stderr sqrt(0.25)/2
    assert.ok(Math.abs(meanStderr([1, 0, 1, 1])! - 0.25) < 1e-15);
  });
});

describe('evaluation on the tiny model', () => {
  let m: LoadedModel;
  before(async () => {
    m = await loadModel(MODEL, { backend: 'ref' });
  });
  after(() => m.dispose());

  /** A choice scored from scratch: a fresh cache, the whole of BOS + context + continuation, summed log-probabilities. */
  function direct(context: string, continuation: string): number {
    const { context: c, continuation: k } = encodePair(m.tokenizer, context, continuation);
    const V = m.model.config.vocab_size;
    m.model.reset();
    const all = c.concat(k);
    const logits = m.model.forwardAll(all.slice(0, -1));
    let s = 0;
    for (let t = c.length; t < all.length; t++) s += tokenLogprob(logits, (t - 1) * V, V, all[t]).logprob;
    m.model.reset();
    return s;
  }

  for (const name of ['arc_easy', 'arc_challenge', 'boolq', 'hellaswag', 'piqa', 'sciq', 'winogrande']) {
    test(`${name}: logliks as scored from scratch, predictions and metrics from them`, async () => {
      const root = { arc_easy: 'ai2_arc', arc_challenge: 'ai2_arc', boolq: 'super_glue' }[name] ?? name;
      const task = await loadTask(`${name}=${FIX}${root}`);
      const r = evaluateTask(m.model, m.tokenizer, task, { perItem: true });
      assert.equal(r.n, task.docs.length);
      const its = task.docs.map((d) => buildItem(task.spec, task.spec.process ? task.spec.process(d) : d));
      let acc = 0,
        norm = 0;
      r.items!.forEach((item, i) => {
        const want = its[i].contexts.map((c, j) => direct(c, its[i].continuations[j]));
        want.forEach((w, j) => assert.ok(Math.abs(item.loglik[j] - w) < 1e-4, `${name} item ${i} choice ${j}: ${item.loglik[j]} vs ${w}`));
        assert.equal(item.pred, argmax(item.loglik));
        assert.equal(item.pred_norm, argmax(item.loglik.map((x, j) => x / pyLen(its[i].choices[j]))));
        assert.equal(item.label, its[i].gold);
        acc += Number(item.pred === item.label);
        norm += Number(item.pred_norm === item.label);
      });
      assert.equal(r.acc, acc / r.n);
      if (TASKS[name].metrics.includes('acc_norm')) assert.equal(r.acc_norm, norm / r.n);
      else assert.equal(r.acc_norm, undefined);
    });
  }

  test('few-shot: the harness sampler picks random.Random(1234).sample(train, k) per document, in order', async () => {
    const task = await loadTask(`arc_easy=${FIX}ai2_arc`, { fewshot: true });
    assert.equal(task.fewshotDocs!.length, 4);
    const train = task.fewshotDocs!;
    // Python: r = random.Random(1234); [r.sample(range(4), 2) for _ in range(3)] == [[3, 0], [0, 3], [0, 2]]
    const picks = [
      [3, 0],
      [0, 3],
      [0, 2],
    ];
    assert.equal(fewshotExample(task.spec, train[3]), 'Question: Which is a mammal?\nAnswer: whale\n\n');
    assert.equal(fewshotExample(task.spec, train[2]), 'Question: What does a thermometer measure?\nAnswer: temperature\n\n');
    const r = evaluateTask(m.model, m.tokenizer, task, { numFewshot: 2, perItem: true });
    assert.equal(r.num_fewshot, 2);
    task.docs.forEach((d, i) => {
      const prefix = picks[i].map((p) => fewshotExample(task.spec, train[p])).join('');
      const item = buildItem(task.spec, d, prefix);
      assert.ok(item.contexts[0].startsWith('Question: ' + (train[picks[i][0]].question as string)));
      item.contexts.forEach((c, j) => assert.ok(Math.abs(r.items![i].loglik[j] - direct(c, item.continuations[j])) < 1e-4));
    });
    // winogrande's few-shot example: the gold option filled in, then the rest of the sentence
    const w = await loadTask(`winogrande=${FIX}winogrande`, { fewshot: true });
    assert.equal(fewshotExample(w.spec, w.fewshotDocs![0] as Doc), 'Tom called Bill because Tom needed help.\n\n');
    const wr = evaluateTask(m.model, m.tokenizer, w, { numFewshot: 1, perItem: true, limit: 2 });
    // Python: r = random.Random(1234); [r.sample(range(2), 1) for _ in range(2)] == [[1], [0]]
    const wi = buildItem(w.spec, w.docs[0], fewshotExample(w.spec, w.fewshotDocs![1]));
    assert.equal(wi.contexts[0], 'The ice melted because the room was warm.\n\nThe trophy did not fit in the suitcase because the trophy');
    wi.contexts.forEach((c, j) => assert.ok(Math.abs(wr.items![0].loglik[j] - direct(c, wi.continuations[j])) < 1e-4));
    await assert.rejects(async () => evaluateTask(m.model, m.tokenizer, await loadTask(`arc_easy=${FIX}ai2_arc`), { numFewshot: 1 }), /needs the train split/);
    assert.throws(() => evaluateTask(m.model, m.tokenizer, task, { numFewshot: 5 }), /--num-fewshot 5 but the train split has 4 records/);
  });

  test('deterministic, and --limit takes the first documents', async () => {
    const task = await loadTask(`hellaswag=${FIX}hellaswag`);
    const a = evaluateTask(m.model, m.tokenizer, task, { perItem: true });
    const b = evaluateTask(m.model, m.tokenizer, task, { perItem: true, batchTokens: 1 });
    assert.deepEqual(
      b.items!.map((x) => x.pred),
      a.items!.map((x) => x.pred),
    );
    b.items!.forEach((x, i) => x.loglik.forEach((l, j) => assert.ok(Math.abs(l - a.items![i].loglik[j]) < 1e-4)));
    const c = evaluateTask(m.model, m.tokenizer, task, { perItem: true, limit: 2 });
    assert.equal(c.n, 2);
    assert.deepEqual(c.items, a.items!.slice(0, 2));
  });
});
