// Training logs → loss curves: the JSONL a training run writes, read into records, turned into
// chart series (one colour per run: the smoothed training curve, the raw one faint behind it,
// validation loss dashed with markers) and a terminal summary with a sparkline per run.
//
//   const logs = ['runs/a/train.jsonl', 'runs/b/train.jsonl'].map(readTrainingLog);
//   const plot = plotTrainingLogs(logs, { smooth: 0.9, logY: true });
//   fs.writeFileSync('loss.svg', plot.svg);
//   process.stderr.write(plot.summary);   // a   ▇▅▃▂▂▁▁▁  step 5000  loss 3.214  min val 3.301 @ 4500
//
// The log: one JSON object per line and optimizer step,
//   {"step": 1, "loss": 6.5, "lr": 0.001, "grad_norm": 18.4, "tokens_per_s": 1234.5}
// with "val_loss" on the steps where validation ran and "tokens" (tokens seen so far) when the
// trainer records it; other keys are ignored, and null (how JSON writes a NaN) is a gap in a curve.
// A resumed run appends to the same log, restarting at the step after its last checkpoint: the
// records from that step on replace the earlier ones (the later record wins, and the killed run's
// steps past the restart point, which the resumed run has not redone yet, are dropped with them).

import fs from 'node:fs';
import { type Limits, renderLineChart, type Series, type XY } from './svg-chart.ts';

/** The numeric fields a record may carry; anything else in a record is ignored. */
export const LOG_FIELDS = [
  'loss',
  'val_loss',
  'lr',
  'grad_norm',
  'tokens_per_s',
  'tokens',
  'reward_margin',
  'val_reward_margin',
  'reward_accuracy',
  'val_reward_accuracy',
] as const;
export type LogField = (typeof LOG_FIELDS)[number];

export interface LogRecord extends Partial<Record<LogField, number>> {
  /** optimizer step (an integer ≥ 0) */
  step: number;
  /** 1-based line in the file, for messages */
  line: number;
}

export interface TrainingLog {
  file: string;
  /** one per step, in increasing step order, after resumes */
  records: LogRecord[];
  /** the steps at which a resumed run restarted, in file order */
  resumedAt: number[];
  /** tolerated problems (blank lines, a truncated last line), each naming the file */
  warnings: string[];
}

/** Metrics that can go on the y axis. */
/** Metrics that can go on the y axis (the reward ones: DPO fine-tuning logs). */
export const METRICS = ['loss', 'lr', 'grad_norm', 'tokens_per_s', 'reward_margin', 'reward_accuracy'] as const;
export type Metric = (typeof METRICS)[number];
export type XAxis = 'step' | 'tokens';

const METRIC_TEXT: Record<Metric, { title: string; label: string; smooth: number }> = {
  loss: { title: 'Training loss', label: 'loss', smooth: 0.9 },
  lr: { title: 'Learning rate', label: 'learning rate', smooth: 0 }, // a schedule, not noise
  grad_norm: { title: 'Gradient norm', label: 'gradient norm', smooth: 0.9 },
  tokens_per_s: { title: 'Throughput', label: 'tokens / s', smooth: 0.9 },
  reward_margin: { title: 'DPO reward margin', label: 'β (π − ρ) chosen − rejected', smooth: 0.9 },
  reward_accuracy: { title: 'DPO reward accuracy', label: 'pairs ranked right', smooth: 0.9 },
};

// ---- reading ------------------------------------------------------------------------------

function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

function toRecord(v: unknown, where: string, line: number): LogRecord {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${where}: expected a JSON object per line, got ${describe(v)}`);
  const o = v as Record<string, unknown>;
  const step = o.step;
  if (step === undefined) throw new Error(`${where}: the record has no "step"`);
  if (typeof step !== 'number' || !Number.isInteger(step) || step < 0) throw new Error(`${where}: "step" must be an integer ≥ 0, got ${describe(step)}`);
  const rec: LogRecord = { step, line };
  for (const k of LOG_FIELDS) {
    const x = o[k];
    if (x === undefined) continue;
    if (x === null) rec[k] = NaN;
    else if (typeof x === 'number') rec[k] = x;
    else throw new Error(`${where}: "${k}" must be a number (or null), got ${describe(x)}`);
  }
  return rec;
}

/**
 * Parses a training log's text. Blank lines and an unparseable last line (a run killed mid-write)
 * are skipped with a warning; any other bad line throws an error naming `file:line`.
 */
export function parseTrainingLog(text: string, file: string): TrainingLog {
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  if (lines[lines.length - 1] === '') lines.pop(); // the newline ending the last record
  let last = lines.length - 1;
  while (last >= 0 && lines[last].trim() === '') last--;
  const records: LogRecord[] = [];
  const resumedAt: number[] = [];
  const warnings: string[] = [];
  let blank = 0;
  for (let i = 0; i < lines.length; i++) {
    const s = lines[i].trim();
    if (s === '') {
      blank++;
      continue;
    }
    let v: unknown;
    try {
      v = JSON.parse(s);
    } catch (e) {
      if (i === last) {
        warnings.push(`${file}:${i + 1}: ignoring a truncated last line (a killed run?): ${describe(s)}`);
        break;
      }
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message}): ${describe(s)}`);
    }
    const rec = toRecord(v, `${file}:${i + 1}`, i + 1);
    // a resumed run restarts at a step already logged: from there on, its records replace the old ones
    if (records.length > 0 && rec.step <= records[records.length - 1].step) {
      resumedAt.push(rec.step);
      while (records.length > 0 && records[records.length - 1].step >= rec.step) records.pop();
    }
    records.push(rec);
  }
  if (blank > 0) warnings.unshift(`${file}: skipped ${blank} blank line${blank === 1 ? '' : 's'}`);
  return { file, records, resumedAt, warnings };
}

/** Reads and parses one training log (see parseTrainingLog). */
export function readTrainingLog(file: string): TrainingLog {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new Error(`${file}: ${err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'is a folder, not a log file' : err.message}`);
  }
  return parseTrainingLog(text, file);
}

/**
 * Short, distinct run names from log paths: the file name without its extension, or the folder's
 * name for the trainer's default OUT/train.jsonl; more of the path where names would collide
 * (runs/a/train.jsonl, runs/b/train.jsonl → a, b; x/a.jsonl, y/a.jsonl → x/a, y/a).
 */
export function runNames(files: readonly string[]): string[] {
  const parts = files.map((f) => {
    const p = f.split(/[\\/]+/).filter((c) => c !== '' && c !== '.');
    const base = (p.pop() ?? f).replace(/\.(jsonl|ndjson|json|log|txt)$/i, '');
    const chain = [base, ...p.reverse()]; // file name, then its folders inwards-out
    return base === 'train' && chain.length > 1 ? chain.slice(1) : chain;
  });
  const depth = parts.map(() => 1);
  const name = (i: number) => parts[i].slice(0, depth[i]).reverse().join('/');
  for (let grew = true; grew; ) {
    grew = false;
    const seen = new Map<string, number[]>();
    parts.forEach((_, i) => seen.set(name(i), [...(seen.get(name(i)) ?? []), i]));
    for (const group of seen.values()) {
      if (group.length < 2) continue;
      for (const i of group)
        if (depth[i] < parts[i].length) {
          depth[i]++;
          grew = true;
        }
    }
  }
  // still equal (the same file twice): number them
  const count = new Map<string, number>();
  return parts.map((_, i) => {
    const n = name(i);
    const k = (count.get(n) ?? 0) + 1;
    count.set(n, k);
    return k === 1 ? n : `${n} (${k})`;
  });
}

// ---- series -------------------------------------------------------------------------------

/**
 * Exponential moving average as TensorBoard's smoothing slider computes it: weight w in [0, 1),
 * debiased so the curve starts at the first value instead of at 0; non-finite values pass through
 * unchanged and do not disturb the average.
 */
export function emaSmooth(ys: readonly number[], weight: number): number[] {
  if (!(weight >= 0 && weight < 1)) throw new Error(`smoothing weight must be in [0, 1), got ${weight}`);
  let last = 0,
    n = 0;
  return ys.map((y) => {
    if (!Number.isFinite(y) || weight === 0) return y;
    last = last * weight + (1 - weight) * y;
    n++;
    return last / (1 - weight ** n);
  });
}

export interface LossPlotOptions {
  /** run names in the order of the logs; the rest come from the file names (runNames) */
  labels?: readonly string[];
  /** x axis: optimizer step (default) or tokens seen (records must carry "tokens") */
  x?: XAxis;
  /** y axis metric (default loss); its validation counterpart (val_loss, val_reward_margin, …) is drawn dashed */
  y?: Metric;
  /** EMA weight in [0, 1): 0 draws the raw curve only (default 0.9, and 0 for lr) */
  smooth?: number;
  logY?: boolean;
  title?: string;
  width?: number;
  height?: number;
  xlim?: Limits;
  ylim?: Limits;
}

export interface RunSummary {
  name: string;
  file: string;
  /** the last step logged */
  steps: number;
  /** the last finite training loss, null when there is none */
  last_loss: number | null;
  min_val_loss: number | null;
  /** the step of min_val_loss */
  min_val_step: number | null;
  resumed_at: number[];
}

export interface LossPlot {
  svg: string;
  series: Series[];
  runs: RunSummary[];
  /** per-run sparkline of the plotted metric and the last loss / best validation loss, for a terminal */
  summary: string;
}

function xOf(r: LogRecord, x: XAxis, file: string): number {
  if (x === 'step') return r.step;
  if (r.tokens === undefined) throw new Error(`${file}:${r.line}: no "tokens" field (--x tokens needs it on every record; use --x step)`);
  return r.tokens;
}

interface RunCurves {
  /** the metric as logged (drawn faint behind `main` when smoothing) */
  raw: XY[];
  /** the smoothed metric, or the raw one when not smoothing */
  main: XY[];
  /** validation loss (empty unless the metric is loss and the run validated) */
  val: XY[];
}

function runCurves(log: TrainingLog, xAxis: XAxis, metric: Metric, smooth: number): RunCurves {
  if (log.records.length === 0) throw new Error(`${log.file}: no training records`);
  const rows = log.records.filter((r) => r[metric] !== undefined);
  if (rows.length === 0) throw new Error(`${log.file}: no record has "${metric}"${metric === 'loss' ? '' : ` (--y ${metric})`}`);
  const xs = rows.map((r) => xOf(r, xAxis, log.file));
  const ys = rows.map((r) => r[metric]!);
  const raw = xs.map((x, j): XY => [x, ys[j]]);
  const sm = smooth > 0 ? emaSmooth(ys, smooth) : ys;
  const vf = `val_${metric}` as LogField;
  const val = (LOG_FIELDS as readonly string[]).includes(vf)
    ? log.records.filter((r) => Number.isFinite(r[vf])).map((r): XY => [xOf(r, xAxis, log.file), r[vf]!])
    : [];
  return { raw, main: xs.map((x, j): XY => [x, sm[j]]), val };
}

/** From this many runs with validation on, the legend lists runs by colour plus one train / val style key. */
const COMPACT_LEGEND_RUNS = 3;

function seriesOf(curves: readonly RunCurves[], names: readonly string[], smooth: number): Series[] {
  const anyVal = curves.some((c) => c.val.length > 0);
  const compact = anyVal && curves.length >= COMPACT_LEGEND_RUNS;
  // every faint raw curve first, so no run's noise band covers another run's smoothed curve
  const series: Series[] =
    smooth > 0 ? curves.map((c, i) => ({ name: `${names[i]} (raw)`, points: c.raw, color: i, width: 1, opacity: 0.22, legend: false, fitRange: false })) : [];
  curves.forEach((c, i) => {
    series.push({ name: c.val.length > 0 && !compact ? `${names[i]} train` : names[i], points: c.main, color: i });
    if (c.val.length > 0) series.push({ name: `${names[i]} val`, points: c.val, color: i, dashed: true, markers: true, width: 1.5, legend: !compact });
  });
  if (compact) {
    const key = '#555555';
    series.push({ name: 'train', points: [], color: key }, { name: 'val', points: [], color: key, dashed: true, markers: true, width: 1.5 });
  }
  return series;
}

/**
 * The chart series of several runs, run i in palette colour i: its training curve (smoothed, with
 * the raw one faint behind it), and its validation loss dashed with markers. See LossPlotOptions.
 */
export function buildSeries(logs: readonly TrainingLog[], names: readonly string[], opts: LossPlotOptions = {}): Series[] {
  const metric = opts.y ?? 'loss';
  const smooth = opts.smooth ?? METRIC_TEXT[metric].smooth;
  return seriesOf(
    logs.map((l) => runCurves(l, opts.x ?? 'step', metric, smooth)),
    names,
    smooth,
  );
}

export function summarizeRun(log: TrainingLog, name: string): RunSummary {
  let lastLoss: number | null = null,
    minVal: number | null = null,
    minValStep: number | null = null;
  for (const r of log.records) {
    if (r.loss !== undefined && Number.isFinite(r.loss)) lastLoss = r.loss;
    if (r.val_loss !== undefined && Number.isFinite(r.val_loss) && (minVal === null || r.val_loss < minVal)) {
      minVal = r.val_loss;
      minValStep = r.step;
    }
  }
  const steps = log.records.length > 0 ? log.records[log.records.length - 1].step : 0;
  return { name, file: log.file, steps, last_loss: lastLoss, min_val_loss: minVal, min_val_step: minValStep, resumed_at: log.resumedAt };
}

// ---- terminal summary -----------------------------------------------------------------------

const BARS = '▁▂▃▄▅▆▇█';

/**
 * A one-line sparkline of `points`: `width` columns over [xlo, xhi], each the mean of its points,
 * scaled to [ylo, yhi] (log-scaled when `log`); a column without points is a space.
 */
export function sparkline(points: readonly XY[], width: number, xlo: number, xhi: number, ylo: number, yhi: number, log = false): string {
  const f = log ? Math.log10 : (v: number) => v;
  const sum = new Float64Array(width),
    count = new Uint32Array(width);
  for (const [x, y] of points) {
    if (!Number.isFinite(y) || (log && y <= 0)) continue;
    const c = Math.min(width - 1, Math.max(0, Math.floor(((x - xlo) / (xhi - xlo || 1)) * width)));
    sum[c] += f(y);
    count[c]++;
  }
  const a = f(ylo),
    b = f(yhi);
  let s = '';
  for (let c = 0; c < width; c++) {
    if (count[c] === 0) {
      s += ' ';
      continue;
    }
    const t = b > a ? (sum[c] / count[c] - a) / (b - a) : 0.5;
    s += BARS[Math.min(7, Math.max(0, Math.round(t * 7)))];
  }
  return s;
}

function fmt(v: number | null): string {
  return v === null ? '–' : v.toPrecision(4);
}

/** One line per run: name, sparkline of its main curve (scales shared by all runs), last step, last loss, best validation loss. */
export function summaryText(curves: readonly (readonly XY[])[], runs: readonly RunSummary[], opts: { logY?: boolean; width?: number } = {}): string {
  let xlo = Infinity,
    xhi = -Infinity,
    ylo = Infinity,
    yhi = -Infinity;
  for (const points of curves)
    for (const [x, y] of points) {
      if (!Number.isFinite(y) || (opts.logY && y <= 0)) continue;
      xlo = Math.min(xlo, x);
      xhi = Math.max(xhi, x);
      ylo = Math.min(ylo, y);
      yhi = Math.max(yhi, y);
    }
  const nameW = Math.max(...runs.map((r) => r.name.length));
  return runs
    .map((r, i) => {
      const spark = xlo <= xhi ? sparkline(curves[i], opts.width ?? 32, xlo, xhi, ylo, yhi, opts.logY) : '';
      const parts = [`${r.name.padEnd(nameW)}  ${spark}`, `step ${r.steps}`, `loss ${fmt(r.last_loss)}`];
      if (r.min_val_loss !== null) parts.push(`min val ${fmt(r.min_val_loss)} @ ${r.min_val_step}`);
      if (r.resumed_at.length > 0) parts.push(`resumed at ${r.resumed_at.join(', ')}`);
      return parts.join('  ') + '\n';
    })
    .join('');
}

// ---- all together -------------------------------------------------------------------------

/** The chart and the summaries of one or more training logs. */
export function plotTrainingLogs(logs: readonly TrainingLog[], opts: LossPlotOptions = {}): LossPlot {
  if (logs.length === 0) throw new Error('no training logs to plot');
  if ((opts.labels?.length ?? 0) > logs.length) throw new Error(`${opts.labels!.length} labels for ${logs.length} log${logs.length === 1 ? '' : 's'}`);
  const auto = runNames(logs.map((l) => l.file));
  const names = logs.map((_, i) => opts.labels?.[i] ?? auto[i]);
  const metric = opts.y ?? 'loss';
  const smooth = opts.smooth ?? METRIC_TEXT[metric].smooth;
  const xAxis = opts.x ?? 'step';
  const curves = logs.map((l) => runCurves(l, xAxis, metric, smooth));
  const series = seriesOf(curves, names, smooth);
  const runs = logs.map((l, i) => summarizeRun(l, names[i]));
  const svg = renderLineChart(series, {
    width: opts.width,
    height: opts.height,
    title: opts.title ?? METRIC_TEXT[metric].title,
    note: smooth > 0 ? `EMA smoothing ${smooth} (raw curve faint)` : undefined,
    xLabel: xAxis,
    yLabel: METRIC_TEXT[metric].label,
    logY: opts.logY,
    xlim: opts.xlim,
    ylim: opts.ylim,
  });
  return {
    svg,
    series,
    runs,
    summary: summaryText(
      curves.map((c) => c.main),
      runs,
      { logY: opts.logY },
    ),
  };
}
