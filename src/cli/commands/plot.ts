import fs from 'node:fs';
import { METRICS, type Metric, plotTrainingLogs, readTrainingLog, type XAxis } from '../../plot/loss-plot.ts';
import type { Limits } from '../../plot/svg-chart.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

/** "LO,HI" with either side optional → [LO, HI] */
function limits(v: string | undefined, name: string): Limits | undefined {
  if (v === undefined) return undefined;
  const parts = v.split(',');
  if (parts.length !== 2) throw new UsageError(`--${name} must be LO,HI (either may be empty, e.g. "0,4" or ",4"), got "${v}"`);
  const [lo, hi] = parts.map((p) => (p.trim() === '' ? undefined : num(p, name)));
  if (lo !== undefined && hi !== undefined && !(hi > lo)) throw new UsageError(`--${name}: HI must be greater than LO, got "${v}"`);
  return [lo, hi];
}

export const plotCommand: Command = {
  name: 'plot',
  summary: 'draw training loss curves from training logs into an SVG',
  help: `Usage: openelm plot LOG... --out FILE.svg [--label NAME]... [--smooth K] [--log-y] [--json]

Draws the curves of one or more training runs from their logs (the JSONL the trainer writes,
one record per optimizer step) into a standalone SVG chart: for each run, in its own colour,
the training loss smoothed with the raw curve faint behind it, and the validation loss dashed
with markers. Prints a sparkline, the last loss and the best validation loss of each run to
stderr. The SVG has no external fonts or CSS: open it in a browser or put it in a README.

A resumed run's log is one run: from the step it restarted at, its records replace the old
ones. Blank lines and a truncated last line (a killed run) are skipped with a warning.

Options:
  -o, --out FILE      the SVG to write (required)
  -l, --label NAME    a run's name, repeated once per LOG in order (default: from the file
                      names; runs/a/train.jsonl runs/b/train.jsonl → a, b)
      --smooth K      exponential moving average weight in [0, 1), like TensorBoard's slider:
                      0.9 (default; 0 for --y lr), 0.99 for long noisy runs, 0 = raw curve only
      --x AXIS        step (default) or tokens (records must carry "tokens")
      --y METRIC      loss (default), lr, grad_norm, tokens_per_s, or a DPO run's
                      reward_margin / reward_accuracy (with their validation values dashed)
      --log-y         logarithmic y axis
      --xlim LO,HI    x range; either side may be empty (--xlim 1000,)
      --ylim LO,HI    y range (--ylim ,4 leaves out the first steps' high loss)
      --title TEXT    chart title (default: from the metric)
      --width PX      image width (default 800)
      --height PX     image height (default 480)
      --json          print {"out", "runs": [{"name", "file", "steps", "last_loss",
                      "min_val_loss", "min_val_step", "resumed_at"}]} instead of the summary

Examples:
  openelm plot runs/base/train.jsonl runs/wide/train.jsonl --out loss.svg
  openelm plot train.jsonl --y lr --out lr.svg
  openelm plot a.jsonl b.jsonl -l "lr 3e-4" -l "lr 1e-3" --log-y --x tokens --out loss.svg`,
  async run(argv) {
    const { values: v, positionals: files } = parse(
      argv,
      {
        out: { type: 'string', short: 'o' },
        label: { type: 'string', short: 'l', multiple: true },
        smooth: { type: 'string' },
        x: { type: 'string' },
        y: { type: 'string' },
        'log-y': { type: 'boolean' },
        xlim: { type: 'string' },
        ylim: { type: 'string' },
        title: { type: 'string' },
        width: { type: 'string' },
        height: { type: 'string' },
      },
      true,
    );
    if (files.length === 0) throw new UsageError('give at least one training log (LOG...)');
    const out = v.out as string | undefined;
    if (!out) throw new UsageError('--out FILE.svg is required');
    const labels = (v.label as string[] | undefined) ?? [];
    if (labels.length > files.length)
      throw new UsageError(`${labels.length} --label for ${files.length} log${files.length === 1 ? '' : 's'}: give at most one per LOG`);
    const smooth = num(v.smooth as string | undefined, 'smooth', { min: 0 });
    if (smooth !== undefined && smooth >= 1) throw new UsageError(`--smooth must be < 1 (1 would never move), got ${smooth}`);
    const x = (v.x as string | undefined) ?? 'step';
    if (x !== 'step' && x !== 'tokens') throw new UsageError(`--x must be step or tokens, got "${x}"`);
    const y = (v.y as string | undefined) ?? 'loss';
    if (!(METRICS as readonly string[]).includes(y)) throw new UsageError(`--y must be one of ${METRICS.join(', ')}, got "${y}"`);
    const width = num(v.width as string | undefined, 'width', { int: true, min: 200, max: 20000 });
    const height = num(v.height as string | undefined, 'height', { int: true, min: 150, max: 20000 });
    const logY = Boolean(v['log-y']);
    const ylim = limits(v.ylim as string | undefined, 'ylim');
    if (logY && ylim?.[0] !== undefined && ylim[0] <= 0) throw new UsageError(`--ylim: a log y axis needs LO > 0, got ${ylim[0]}`);

    const logs = files.map(readTrainingLog);
    for (const l of logs) for (const w of l.warnings) process.stderr.write(`warning: ${w}\n`);
    const plot = plotTrainingLogs(logs, {
      labels,
      x: x as XAxis,
      y: y as Metric,
      smooth,
      logY,
      ylim,
      xlim: limits(v.xlim as string | undefined, 'xlim'),
      title: v.title as string | undefined,
      width,
      height,
    });

    // temp file + rename: a reader (a browser reloading the file) never sees half a chart
    const tmp = `${out}.tmp-${process.pid}`;
    try {
      fs.writeFileSync(tmp, plot.svg);
      fs.renameSync(tmp, out);
    } catch (e) {
      fs.rmSync(tmp, { force: true });
      const err = e as NodeJS.ErrnoException;
      throw new Error(`cannot write ${out}: ${err.code === 'ENOENT' ? 'its folder does not exist' : err.message}`);
    }
    if (v.json) printJson({ out, runs: plot.runs });
    else process.stderr.write(`${plot.summary}wrote ${out}\n`);
  },
};
