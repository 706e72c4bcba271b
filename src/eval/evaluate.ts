// Zero- and few-shot multiple-choice evaluation, lm-evaluation-harness's method:
//
//   for each document of the task's split (the first --limit ones):
//     context  = k few-shot examples ("question answer\n\n", drawn from the few-shot split with
//                Python's random.Random(seed).sample, one draw per document, in order) + question
//     loglik_i = log p(" " + choice_i | BOS + context)                   (loglikelihood.ts)
//     acc      = [argmax_i loglik_i == gold]
//     acc_norm = [argmax_i loglik_i / len(choice_i) == gold]              (len in characters)
//   acc = mean over documents, acc_stderr = sample stddev / sqrt(n)      (the harness's mean_stderr)
//
//   const { model, tokenizer } = await loadModel('apple/OpenELM-270M');
//   const task = await loadTask('arc_easy=./ai2_arc');       // or 'arc_easy' to download it
//   const r = evaluateTask(model, tokenizer, task, { limit: 100 });
//   console.log(r.acc, r.acc_stderr, r.acc_norm);
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { OpenELM } from '../model/openelm.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import { findSplitFiles, readAll, readRecords } from './datasets.ts';
import { type DatasetResolveOptions, resolveDataset } from './hub-dataset.ts';
import { encodePair, LoglikScorer, type ScorerStats } from './loglikelihood.ts';
import { PythonRandom } from './python-random.ts';
import { buildItem, choiceLengths, type Doc, fewshotExample, genericTask, type McItem, type Metric, TASKS, type TaskSpec } from './tasks.ts';

/** A task with its documents in memory. */
export interface LoadedTask {
  spec: TaskSpec;
  /** the evaluated split's records (raw, as in the files) */
  docs: Doc[];
  /** the few-shot split's records (raw), when there is one */
  fewshotDocs?: Doc[];
  /** where the records came from (files or folder), for messages */
  source: string;
}

export interface LoadTaskOptions extends Omit<DatasetResolveOptions, 'splits' | 'config'> {
  /** also load the few-shot split (needed for numFewshot > 0) */
  fewshot?: boolean;
}

/**
 * Loads a task from a spec:
 *   "arc_easy"              the harness task, its dataset downloaded into the HF cache
 *   "arc_easy=PATH"         the harness task on a local file or folder in the hub's layout
 *   "FILE.jsonl"            a generic task {"context", "choices", "label"} named after the file
 *   "NAME=FILE.jsonl"       the same, named NAME (when NAME is not a harness task)
 */
export async function loadTask(spec: string, opts: LoadTaskOptions = {}): Promise<LoadedTask> {
  const eq = spec.indexOf('=');
  let name = eq >= 0 ? spec.slice(0, eq) : spec;
  const where = eq >= 0 ? spec.slice(eq + 1) : undefined;
  if (where === undefined && !TASKS[name]) {
    if (fs.existsSync(spec)) {
      name = path.basename(spec).replace(/\.(jsonl|json|parquet)$/i, '');
      return loadGeneric(name, spec);
    }
    throw new Error(`unknown task "${spec}": expected one of ${Object.keys(TASKS).join(', ')}, NAME=PATH, or a JSONL file of {"context", "choices", "label"}`);
  }
  if (where !== undefined && !fs.existsSync(where)) throw new Error(`task ${name}: ${where} does not exist`);
  const task = TASKS[name];
  if (!task) return loadGeneric(name, where!);

  let root: string;
  let evalFiles: string[];
  if (where !== undefined && fs.statSync(where).isFile()) {
    // a single file is the evaluated split; few-shot examples from its folder's train files
    evalFiles = [where];
    root = path.dirname(where);
  } else {
    root =
      where ??
      (await resolveDataset(task.dataset!.repo, {
        ...opts,
        config: task.dataset!.config,
        splits: opts.fewshot ? [task.split, task.fewshotSplit] : [task.split],
      }));
    evalFiles = findSplitFiles(root, task.split, task.dataset?.config);
    if (evalFiles.length === 0) {
      throw new Error(
        `task ${name}: no ${task.split} split in ${root} (looked for Parquet / JSON-lines files named like "${task.split}-00000-of-00001.parquet"${task.dataset?.config ? ` under ${task.dataset.config}/` : ''})`,
      );
    }
  }
  const docs = await readAll(evalFiles);
  checkFields(task, docs, evalFiles.join(', '));
  let fewshotDocs: Doc[] | undefined;
  if (opts.fewshot) {
    const files = findSplitFiles(root, task.fewshotSplit, task.dataset?.config).filter((f) => !evalFiles.includes(f));
    if (files.length === 0) throw new Error(`task ${name}: few-shot examples come from the ${task.fewshotSplit} split, and ${root} has none`);
    fewshotDocs = await readAll(files);
    checkFields(task, fewshotDocs, files.join(', '));
  }
  return { spec: task, docs, fewshotDocs, source: evalFiles.length === 1 ? evalFiles[0] : root };
}

async function loadGeneric(name: string, file: string): Promise<LoadedTask> {
  const spec = genericTask(name);
  const docs = await readRecords(file);
  checkFields(spec, docs, file);
  return { spec, docs, fewshotDocs: docs, source: file };
}

function checkFields(task: TaskSpec, docs: Doc[], where: string): void {
  docs.forEach((d, i) => {
    const missing = task.fields.filter((f) => !(f in d));
    if (missing.length)
      throw new Error(
        `${where}: record ${i} has no ${missing.map((m) => `"${m}"`).join(', ')} (task ${task.name} needs ${task.fields.join(', ')}; has ${Object.keys(d).join(', ')})`,
      );
  });
}

export interface EvaluateOptions {
  /** evaluate only the first N documents (the harness's --limit) */
  limit?: number;
  /** few-shot examples per document (default 0) */
  numFewshot?: number;
  /** the few-shot sampler's seed (default 1234, the harness's fewshot_random_seed) */
  seed?: number;
  /** choice tokens run together after their shared context (default 128; 1 = one choice at a time) */
  batchTokens?: number;
  /** documents scored together, each in its own KV cache (default 4; 1 = one at a time) */
  docsPerPass?: number;
  /** keep every item's logliks and predictions in the result */
  perItem?: boolean;
  /** called after each document */
  onProgress?: (done: number, total: number) => void;
}

export interface ItemResult {
  task: string;
  /** index of the document in the evaluated split */
  doc: number;
  loglik: number[];
  is_greedy: boolean[];
  pred: number;
  pred_norm: number;
  label: number;
}

export interface TaskResult {
  task: string;
  n: number;
  num_fewshot: number;
  metrics: Metric[];
  acc: number;
  acc_stderr: number | null;
  /** only for tasks whose harness definition reports it */
  acc_norm?: number;
  acc_norm_stderr?: number | null;
  items?: ItemResult[];
  stats: ScorerStats & { seconds: number };
}

/** Evaluates a loaded task; deterministic for a given model, task, seed and options. Leaves the model's KV cache empty. */
export function evaluateTask(model: OpenELM, tokenizer: Tokenizer, task: LoadedTask, opts: EvaluateOptions = {}): TaskResult {
  const spec = task.spec;
  const k = opts.numFewshot ?? 0;
  if (!(Number.isInteger(k) && k >= 0)) throw new RangeError(`numFewshot must be a non-negative integer, got ${k}`);
  const n = Math.min(task.docs.length, opts.limit ?? Infinity);
  const process = (d: Doc) => (spec.process ? spec.process(d) : d);
  const docs = task.docs.slice(0, n).map((d, i) => wrap(() => process(d), task, i));
  let pool: Doc[] = [];
  if (k > 0) {
    if (!task.fewshotDocs) throw new Error(`task ${spec.name}: --num-fewshot ${k} needs the ${spec.fewshotSplit} split (load the task with fewshot: true)`);
    pool = task.fewshotDocs.map(process);
    const sameSplit = spec.fewshotSplit === spec.split;
    if (pool.length < k + (sameSplit ? 1 : 0))
      throw new Error(`task ${spec.name}: --num-fewshot ${k} but the ${spec.fewshotSplit} split has ${pool.length} records`);
  }
  const rng = new PythonRandom(opts.seed ?? 1234);
  const scorer = new LoglikScorer(model, { batchTokens: opts.batchTokens, docsPerPass: opts.docsPerPass });
  const accs: number[] = [],
    norms: number[] = [];
  const items: ItemResult[] = [];
  const t0 = performance.now();
  // items are built in order (the few-shot sampler's draws are sequential), then scored a few at
  // a time (LoglikScorer.scoreMany: their contexts and choices share batched passes)
  for (let i0 = 0; i0 < n; i0 += scorer.docsPerPass) {
    const chunk: McItem[] = [];
    for (let i = i0; i < Math.min(n, i0 + scorer.docsPerPass); i++) {
      const doc = docs[i];
      let prefix = '';
      if (k > 0) {
        // the harness: sample k (k + 1 when drawing from the evaluated split, then drop the doc itself)
        let shots: Doc[];
        if (spec.fewshotSplit === spec.split) {
          const key = JSON.stringify(doc);
          shots = rng
            .sample(pool, k + 1)
            .filter((x) => JSON.stringify(x) !== key)
            .slice(0, k);
        } else shots = rng.sample(pool, k);
        prefix = shots.map((s) => fewshotExample(spec, s)).join('');
      }
      chunk.push(wrap(() => buildItem(spec, doc, prefix), task, i));
    }
    const scored = scorer.scoreMany(chunk.map((item) => item.contexts.map((c, j) => encodePair(tokenizer, c, item.continuations[j]))));
    chunk.forEach((item, j) => {
      const i = i0 + j,
        results = scored[j];
      const ll = results.map((r) => r.loglik);
      const lens = choiceLengths(item);
      const pred = argmax(ll);
      const predNorm = argmax(ll.map((x, c) => x / lens[c]));
      accs.push(pred === item.gold ? 1 : 0);
      norms.push(predNorm === item.gold ? 1 : 0);
      if (opts.perItem)
        items.push({ task: spec.name, doc: i, loglik: ll, is_greedy: results.map((r) => r.isGreedy), pred, pred_norm: predNorm, label: item.gold });
      opts.onProgress?.(i + 1, n);
    });
  }
  const seconds = (performance.now() - t0) / 1000;
  model.reset();
  const res: TaskResult = {
    task: spec.name,
    n,
    num_fewshot: k,
    metrics: spec.metrics,
    acc: mean(accs),
    acc_stderr: meanStderr(accs),
    stats: { ...scorer.stats, seconds },
  };
  if (spec.metrics.includes('acc_norm')) {
    res.acc_norm = mean(norms);
    res.acc_norm_stderr = meanStderr(norms);
  }
  if (opts.perItem) res.items = items;
  return res;
}

function wrap<T>(f: () => T, task: LoadedTask, i: number): T {
  try {
    return f();
  } catch (e) {
    throw new Error(`task ${task.spec.name}: ${task.source}: record ${i}: ${(e as Error).message}`);
  }
}

/** np.argmax: the first index of the maximum (NaN wins, as in NumPy). */
export function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 0; i < xs.length; i++) {
    if (Number.isNaN(xs[i])) return i;
    if (xs[i] > xs[best]) best = i;
  }
  return best;
}

export function mean(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (const x of xs) s += x;
  return s / xs.length;
}

/**
 * The harness's mean_stderr: sample standard deviation (n - 1) / sqrt(n). Null below two
 * values, where the harness reports "N/A".
 */
export function meanStderr(xs: readonly number[]): number | null {
  const n = xs.length;
  if (n < 2) return null;
  const mu = mean(xs);
  let ss = 0;
  for (const x of xs) ss += (x - mu) ** 2;
  return Math.sqrt(ss / (n - 1)) / Math.sqrt(n);
}
