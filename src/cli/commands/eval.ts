import * as fs from 'node:fs';
import { readRecords } from '../../eval/datasets.ts';
import { evaluateTask, loadTask, type TaskResult } from '../../eval/evaluate.ts';
import { paperFigures } from '../../eval/paper.ts';
import { perplexityOfTexts, type TextsPerplexity } from '../../eval/perplexity.ts';
import { PAPER_TASKS } from '../../eval/tasks.ts';
import { ProgressBar } from '../../io/progress.ts';
import { ADAPTER_HELP, ADAPTER_OPTION, applyAdapterOption } from '../adapter-option.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { MODEL_HELP, MODEL_OPTIONS, modelSource, openModel } from '../model-options.ts';

export const evalCommand: Command = {
  name: 'eval',
  summary: 'zero-/few-shot accuracy the lm-evaluation-harness way, and perplexity',
  help: `Usage: openelm eval --model M --tasks LIST [--limit N] [--num-fewshot K] [--seed S] [--batch-size B] [--docs-per-pass D] [--json] [--per-item] [--output FILE]
       openelm eval --model M --perplexity FILE [--stride N] [--window N] [--json]

Multiple-choice accuracy as EleutherAI's lm-evaluation-harness computes it (BOS first, each choice
scored as the summed log-probability of " " + choice after the context; acc, and acc_norm = by
log-likelihood per character of the choice where the harness reports it), so numbers compare with
the OpenELM paper, whose figures are printed beside ours for Apple's models.

Tasks (comma separated):
  ${PAPER_TASKS.join(', ')}
                       the harness's task; its dataset is downloaded from the Hugging Face hub
                       into the HF cache (HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE as for models)
  NAME=PATH            the same task on a local file or folder in the hub's layout: Parquet or
                       JSON lines with the dataset's own fields, split files such as
                       ARC-Easy/test-00000-of-00001.parquet or data/validation-*.parquet
  FILE.jsonl           a custom task: one {"context": str, "choices": [str], "label": int} per line
  all                  the paper's seven

Options:
      --tasks LIST         tasks to evaluate
      --limit N            only the first N documents of each task
      --num-fewshot K      examples before each question, drawn from the task's training split
                           with Python's random.Random(seed).sample, as the harness draws them (default 0)
      --seed S             the few-shot sampler's seed (default 1234, the harness's default)
      --batch-size B       tokens per batched pass: contexts, then the choices after them (default
                           128; 1 = one choice at a time)
      --docs-per-pass D    documents scored together, each in its own KV cache (default 4; 1 = one
                           document at a time)
      --per-item           with --json/--output: every item's logliks, is_greedy, predictions, label
      --output FILE        write the JSON result to FILE (the table still prints)
      --perplexity FILE    mean NLL per token, perplexity and bits per byte of FILE (plain text as one
                           document; .jsonl / .json / .parquet: every record's "text")
      --window N           tokens per window for --perplexity (default: the model's context)
      --stride N           window step for texts longer than the window (default window / 2)
      --json               print {"results": {TASK: {acc, acc_stderr, acc_norm, acc_norm_stderr, n}}}
${MODEL_HELP}
${ADAPTER_HELP}

Examples:
  openelm eval -m apple/OpenELM-270M --tasks all
  openelm eval -m runs/tiny --tasks arc_easy=./ai2_arc,piqa=./piqa --limit 200 --json
  openelm eval -m ./my-model --tasks my-questions.jsonl --json --per-item
  openelm eval -m ./my-model --perplexity wiki.txt --json`,
  async run(argv) {
    const { values: v } = parse(argv, {
      ...MODEL_OPTIONS,
      ...ADAPTER_OPTION,
      tasks: { type: 'string' },
      limit: { type: 'string' },
      'num-fewshot': { type: 'string' },
      seed: { type: 'string' },
      'batch-size': { type: 'string' },
      'docs-per-pass': { type: 'string' },
      'per-item': { type: 'boolean' },
      output: { type: 'string' },
      perplexity: { type: 'string' },
      stride: { type: 'string' },
      window: { type: 'string' },
    });
    if (v.tasks === undefined && v.perplexity === undefined) throw new UsageError('give --tasks LIST and/or --perplexity FILE');
    const limit = num(v.limit as string, 'limit', { int: true, min: 1 });
    const numFewshot = num(v['num-fewshot'] as string, 'num-fewshot', { int: true, min: 0 }) ?? 0;
    const seed = num(v.seed as string, 'seed', { int: true }) ?? 1234;
    const batchTokens = num(v['batch-size'] as string, 'batch-size', { int: true, min: 1 }) ?? 128;
    const docsPerPass = num(v['docs-per-pass'] as string, 'docs-per-pass', { int: true, min: 1 }) ?? 4;
    const stride = num(v.stride as string, 'stride', { int: true, min: 1 });
    const window = num(v.window as string, 'window', { int: true, min: 2 });
    const specs =
      v.tasks === undefined
        ? []
        : (v.tasks as string)
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
            .flatMap((s) => (s === 'all' ? PAPER_TASKS : [s]));
    if (v.tasks !== undefined && specs.length === 0) throw new UsageError('--tasks needs at least one task');
    const json = Boolean(v.json);

    // the data first: a missing file or field fails before the model loads
    const tasks = [];
    for (const s of specs)
      tasks.push(
        await loadTask(s, {
          fewshot: numFewshot > 0,
          onProgress: json ? undefined : (p) => process.stderr.write(`downloaded ${p.repo}/${p.file} (${p.total} bytes)\n`),
        }),
      );
    let texts: string[] | undefined;
    if (v.perplexity !== undefined) texts = await readTexts(v.perplexity as string);

    const source = modelSource(v);
    const { model, tokenizer, dispose } = await openModel(v, json);
    try {
      applyAdapterOption(model, v);
      const results: TaskResult[] = [];
      for (const task of tasks) {
        const total = Math.min(task.docs.length, limit ?? Infinity);
        const bar = new ProgressBar({ label: task.spec.name, total, unit: 'items' });
        results.push(
          evaluateTask(model, tokenizer, task, {
            limit,
            numFewshot,
            seed,
            batchTokens,
            docsPerPass,
            perItem: Boolean(v['per-item']),
            onProgress: (d) => bar.update(d),
          }),
        );
        bar.finish();
      }
      let ppl: TextsPerplexity | undefined;
      if (texts) ppl = perplexityOfTexts(model, (t) => tokenizer.encode(t, { bos: true }), texts, { chunk: window, stride, perToken: Boolean(v['per-item']) });

      const paper = paperFigures(source);
      const out = jsonResult(
        results,
        ppl,
        v.perplexity as string | undefined,
        { limit, numFewshot, seed, batchTokens, docsPerPass },
        paper,
        Boolean(v['per-item']),
      );
      if (v.output) fs.writeFileSync(v.output as string, JSON.stringify(out, null, 1) + '\n');
      if (json) printJson(out);
      else {
        if (results.length) process.stdout.write(table(results, paper?.figures) + '\n');
        if (ppl) process.stdout.write(pplLine(ppl) + '\n');
        if (paper && results.length) process.stdout.write(`paper: ${paper.model}, zero-shot, lm-evaluation-harness (OpenELM paper Table 4(a)), in %\n`);
      }
    } finally {
      dispose();
    }
  },
};

async function readTexts(file: string): Promise<string[]> {
  if (!fs.existsSync(file)) throw new UsageError(`--perplexity: ${file} does not exist`);
  if (!/\.(jsonl|json|ndjson|parquet)$/i.test(file)) return [fs.readFileSync(file, 'utf8')];
  const docs = await readRecords(file);
  return docs.map((d, i) => {
    if (typeof d.text !== 'string') throw new Error(`${file}: record ${i} has no "text" string`);
    return d.text;
  });
}

function jsonResult(
  results: TaskResult[],
  ppl: TextsPerplexity | undefined,
  pplFile: string | undefined,
  config: Record<string, unknown>,
  paper: ReturnType<typeof paperFigures>,
  perItem: boolean,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (results.length) {
    const res: Record<string, unknown> = {};
    for (const r of results) {
      res[r.task] = {
        acc: r.acc,
        acc_stderr: r.acc_stderr,
        ...(r.acc_norm !== undefined ? { acc_norm: r.acc_norm, acc_norm_stderr: r.acc_norm_stderr } : {}),
        n: r.n,
        num_fewshot: r.num_fewshot,
      };
    }
    out.results = res;
    out.config = config;
    out.throughput = Object.fromEntries(
      results.map((r) => [
        r.task,
        {
          seconds: r.stats.seconds,
          items_per_s: r.n / r.stats.seconds,
          request_tokens_per_s: r.stats.requestTokens / r.stats.seconds,
          model_tokens_per_s: r.stats.modelTokens / r.stats.seconds,
          requests: r.stats.requests,
          request_tokens: r.stats.requestTokens,
          model_tokens: r.stats.modelTokens,
        },
      ]),
    );
    if (paper) out.paper = { model: paper.model, zero_shot_percent: paper.figures };
    if (perItem) out.items = results.flatMap((r) => r.items ?? []);
  }
  if (ppl) {
    out.perplexity = {
      file: pplFile,
      documents: ppl.documents,
      tokens: ppl.tokens,
      bytes: ppl.bytes,
      words: ppl.words,
      mean_nll: ppl.meanNll,
      perplexity: ppl.perplexity,
      bits_per_byte: ppl.bitsPerByte,
      word_perplexity: ppl.wordPerplexity,
      windows: ppl.windows,
      ...(perItem ? { docs: ppl.docs.map((d) => ({ tokens: d.tokens, mean_nll: d.meanNll, perplexity: d.perplexity, token_nll: d.tokenNlls })) } : {}),
    };
  }
  return out;
}

const f4 = (x: number | null | undefined) => (x === undefined ? '' : x === null ? 'N/A' : x.toFixed(4));

function table(results: TaskResult[], paper?: Record<string, number>): string {
  const head = ['task', 'n', 'acc', '± stderr', 'acc_norm', '± stderr', ...(paper ? ['paper %'] : []), 'items/s'];
  const rows = results.map((r) => [
    r.task + (r.num_fewshot ? ` (${r.num_fewshot}-shot)` : ''),
    String(r.n),
    f4(r.acc),
    f4(r.acc_stderr),
    f4(r.acc_norm),
    f4(r.acc_norm_stderr),
    ...(paper ? [paper[r.task] !== undefined ? paper[r.task].toFixed(2) : ''] : []),
    (r.n / r.stats.seconds).toFixed(1),
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  return [line(head), ...rows.map(line)].join('\n');
}

function pplLine(p: TextsPerplexity): string {
  return (
    `perplexity ${p.perplexity.toFixed(3)} · mean NLL ${p.meanNll.toFixed(4)} nats/token · ${p.bitsPerByte.toFixed(4)} bits/byte · ` +
    `${p.tokens} tokens in ${p.documents} document${p.documents === 1 ? '' : 's'}, ${p.windows} window${p.windows === 1 ? '' : 's'}`
  );
}
