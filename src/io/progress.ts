// A terminal progress bar for downloads, conversion and training loops.
//
//   model-00001-of-00002.safetensors [██████████░░░░░░░░░░]  52%  1.30/2.50 GB  41.2 MB/s  ETA 0:29
//
// On a TTY it redraws one line in place (\r + clear-to-end), at most every `intervalMs`. On anything
// else (CI logs, files) it prints a plain line every `logIntervalMs` and one at the end, so logs stay
// readable. Written by hand rather than with cli-progress: we need bytes-aware units, speed and a
// non-TTY mode, which would be custom formatters there anyway.
//
//   const bar = new ProgressBar({ label: 'download', total: 2_500_000_000, unit: 'bytes' });
//   for (...) bar.tick(chunk.length);
//   bar.finish();

export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface ProgressBarOptions {
  label: string;
  /** the amount at 100%; 0 or undefined when unknown (then no percent or ETA is shown) */
  total?: number;
  /** 'bytes' shows kB/MB/GB and bytes/s; 'items' shows counts and items/s (default 'items') */
  unit?: 'bytes' | 'items';
  /** default process.stderr */
  stream?: ProgressStream;
  /** print nothing at all */
  quiet?: boolean;
  /** minimum time between TTY redraws (default 100 ms) */
  intervalMs?: number;
  /** minimum time between lines on a non-TTY stream (default 10 s); Infinity prints only the final line */
  logIntervalMs?: number;
  /** clock in ms, for tests (default performance.now) */
  now?: () => number;
}

const SPEED_WINDOW_MS = 5000; // speed is measured over the last few seconds, not since the start
const SAMPLES = 64; // at 10 redraws/s, a bit more than the window

export class ProgressBar {
  label: string;
  total: number;
  done = 0;
  private readonly unit: 'bytes' | 'items';
  private readonly stream: ProgressStream;
  private readonly quiet: boolean;
  private readonly tty: boolean;
  private readonly intervalMs: number;
  private readonly logIntervalMs: number;
  private readonly now: () => number;
  private readonly start: number;
  private lastDraw = -Infinity;
  private finished = false;
  // ring of (time, done) samples for the speed estimate, sized once
  private readonly sampleT = new Float64Array(SAMPLES);
  private readonly sampleD = new Float64Array(SAMPLES);
  private sampleN = 0;

  constructor(opts: ProgressBarOptions) {
    this.label = opts.label;
    this.total = opts.total && opts.total > 0 ? opts.total : 0;
    this.unit = opts.unit ?? 'items';
    this.stream = opts.stream ?? process.stderr;
    this.quiet = opts.quiet ?? false;
    this.tty = Boolean(this.stream.isTTY);
    this.intervalMs = opts.intervalMs ?? 100;
    this.logIntervalMs = opts.logIntervalMs ?? 10_000;
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    this.lastDraw = this.tty ? -Infinity : this.start; // a log line only after the first interval
    this.sample(this.start, 0);
  }

  /** Sets the amount done so far (and optionally a new total). */
  update(done: number, total?: number): void {
    if (this.finished) return;
    if (total !== undefined) this.total = total > 0 ? total : 0;
    this.done = done;
    const t = this.now();
    const due = t - this.lastDraw >= (this.tty ? this.intervalMs : this.logIntervalMs);
    if (!due) return;
    this.sample(t, done);
    this.lastDraw = t;
    if (!this.quiet) this.draw(false);
  }

  /** Adds n to the amount done. */
  tick(n = 1): void {
    this.update(this.done + n);
  }

  /** Draws the final state and ends the line; later calls do nothing. */
  finish(): void {
    if (this.finished) return;
    this.finished = true;
    const t = this.now();
    this.sample(t, this.done);
    if (!this.quiet) this.draw(true);
  }

  /** The status text without the bar, e.g. "52%  1.30/2.50 GB  41.2 MB/s  ETA 0:29". */
  status(final = false): string {
    const t = this.now();
    const parts: string[] = [];
    if (this.total > 0)
      parts.push(
        `${Math.floor((100 * Math.min(this.done, this.total)) / this.total)
          .toString()
          .padStart(3)}%`,
      );
    parts.push(this.total > 0 ? `${this.amount(this.done, this.total)}/${this.amount(this.total)}` : this.amount(this.done));
    if (final) {
      const secs = (t - this.start) / 1000;
      parts.push(`in ${formatDuration(secs)}`);
      if (secs > 0) parts.push(this.rate(this.done / secs));
    } else {
      const speed = this.speed();
      if (speed > 0) {
        parts.push(this.rate(speed));
        if (this.total > this.done) parts.push(`ETA ${formatDuration((this.total - this.done) / speed)}`);
      }
    }
    return parts.join('  ');
  }

  private draw(final: boolean): void {
    const status = this.status(final);
    if (!this.tty) {
      this.stream.write(`${this.label} ${status}\n`);
      return;
    }
    const cols = this.stream.columns ?? 80;
    let label = this.label;
    const barWidth = Math.min(30, cols - label.length - status.length - 5);
    if (barWidth < 10) {
      // narrow terminal: drop the bar and shorten the label from the left
      const room = Math.max(8, cols - status.length - 2);
      if (label.length > room) label = '…' + label.slice(label.length - room + 1);
      this.stream.write(`\r${label} ${status}\x1b[K${final ? '\n' : ''}`);
      return;
    }
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const full = Math.round(frac * barWidth);
    const bar = '█'.repeat(full) + '░'.repeat(barWidth - full);
    this.stream.write(`\r${label} [${bar}] ${status}\x1b[K${final ? '\n' : ''}`);
  }

  private sample(t: number, done: number): void {
    const i = this.sampleN % SAMPLES;
    this.sampleT[i] = t;
    this.sampleD[i] = done;
    this.sampleN++;
  }

  /** units per second over the last SPEED_WINDOW_MS of samples */
  private speed(): number {
    const n = Math.min(this.sampleN, SAMPLES);
    if (n < 2) return 0;
    const last = (this.sampleN - 1) % SAMPLES;
    let first = last;
    for (let k = 1; k < n; k++) {
      const i = (this.sampleN - 1 - k) % SAMPLES;
      first = i;
      if (this.sampleT[last] - this.sampleT[i] >= SPEED_WINDOW_MS) break;
    }
    const dt = (this.sampleT[last] - this.sampleT[first]) / 1000;
    return dt > 0 ? (this.sampleD[last] - this.sampleD[first]) / dt : 0;
  }

  private amount(n: number, scaleBy?: number): string {
    if (this.unit === 'items') return formatCount(n);
    // "1.30/2.50 GB": the done part uses the total's unit and omits it
    if (scaleBy !== undefined) return formatBytes(n, scaleBy).split(' ')[0];
    return formatBytes(n);
  }

  private rate(perSec: number): string {
    return this.unit === 'bytes' ? `${formatBytes(perSec)}/s` : `${formatCount(perSec)}/s`;
  }
}

const BYTE_UNITS = ['B', 'kB', 'MB', 'GB', 'TB'];

/** Decimal units like huggingface_hub's bars: 1 GB = 1e9 bytes. `scaleBy` picks the unit from another amount. */
export function formatBytes(n: number, scaleBy = n): string {
  let u = 0;
  while (u < BYTE_UNITS.length - 1 && Math.abs(scaleBy) >= 1000 ** (u + 1)) u++;
  const v = n / 1000 ** u;
  return `${u === 0 ? Math.round(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${BYTE_UNITS[u]}`;
}

function formatCount(n: number): string {
  if (Math.abs(n) < 1000) return Number.isInteger(n) ? String(n) : n.toFixed(1);
  const units = ['k', 'M', 'G', 'T'];
  let u = -1;
  let v = n;
  while (u < units.length - 1 && Math.abs(v) >= 1000) {
    v /= 1000;
    u++;
  }
  return `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)}${units[u]}`;
}

/** 75 → "1:15", 3725 → "1:02:05" */
export function formatDuration(secs: number): string {
  if (!Number.isFinite(secs) || secs < 0) return '?';
  const s = Math.round(secs);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
