// A small line-chart renderer: series of (x, y) points → one standalone SVG string.
//
//   const svg = renderLineChart([
//     { name: 'run-a', points: [[1, 6.5], [2, 5.9], [3, 5.1]] },
//     { name: 'run-a val', points: [[2, 5.8]], dashed: true, markers: true, color: 0 },
//   ], { title: 'Training loss', xLabel: 'step', yLabel: 'loss', logY: true });
//   fs.writeFileSync('loss.svg', svg);
//
// Written by hand (no charting dependency) for training curves: the output is a plain SVG 1.1
// file with no external fonts or CSS, a white background (it reads the same on a dark page, in a
// browser, and in a README on GitHub), nice 1-2-5 axis ticks, an optional log-scale y axis, a
// colour-blind-safe palette (Okabe & Ito), a grid and a legend placed in the emptiest corner.
//
// Layout, outside in: margins hold the title, the tick labels and the axis labels; the plot area
// is clipped, so curves that leave the axis range (a faint raw curve, --ylim) are cut at its edge.
// A series with more points than the plot has pixels is thinned to the first, lowest, highest and
// last point of each pixel column, which draws the same picture (spikes kept) from far fewer points.

export type XY = readonly [x: number, y: number];

export interface Series {
  /** legend text */
  name: string;
  /** in x order for lines; a non-finite y (or y ≤ 0 on a log axis) breaks the line there */
  points: readonly XY[];
  /** a palette index (wraps around) or any SVG colour; default: the series' own index */
  color?: number | string;
  dashed?: boolean;
  /** a dot on every point (left out above MAX_MARKERS points, where they would blur into a band) */
  markers?: boolean;
  /** stroke width in px (default 1.75) */
  width?: number;
  /** 0..1 (default 1): a faint context curve behind a smoothed one uses ~0.25 */
  opacity?: number;
  /** listed in the legend (default true) */
  legend?: boolean;
  /** counts when the axis ranges are chosen (default true); false lets a noisy raw curve be clipped */
  fitRange?: boolean;
}

/** [low, high]; either side undefined is chosen from the data */
export type Limits = readonly [number | undefined, number | undefined];

export interface ChartOptions {
  /** px (default 800 × 480) */
  width?: number;
  height?: number;
  title?: string;
  /** small grey text at the top right, e.g. "EMA smoothing 0.9" */
  note?: string;
  xLabel?: string;
  yLabel?: string;
  logY?: boolean;
  xlim?: Limits;
  ylim?: Limits;
  /** default true (drawn when at least one series is listed) */
  legend?: boolean;
}

/** Okabe & Ito's colour-blind-safe palette, in order of contrast on white (their yellow is too pale for lines). */
export const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'] as const;

export const FONT_FAMILY = 'Helvetica, Arial, sans-serif';
const MAX_MARKERS = 120;
const TICK_FONT = 11;
const LABEL_FONT = 12;
const TITLE_FONT = 15;
const INK = '#222222';
const MUTED = '#555555';
const GRID = '#e6e6e6';
const GRID_MINOR = '#f3f3f3';

// ---- numbers ------------------------------------------------------------------------------

const SUFFIXES: [number, string][] = [
  [1e12, 'T'],
  [1e9, 'B'],
  [1e6, 'M'],
  [1e3, 'k'],
];

/** Removes float noise: 0.30000000000000004 → 0.3, -0 → 0. */
function clean(v: number): number {
  const r = Number(v.toPrecision(12));
  return r === 0 ? 0 : r;
}

function trimZeros(s: string): string {
  return s.replace(/(\.\d*?)0+(?=$|e)/, '$1').replace(/\.(?=$|e)/, '');
}

/** A number in a few characters: 12345 → "12.3k", 2.5e9 → "2.5B", 0.00031 → "3.1e-4", 3.14159 → "3.14". */
export function formatCompact(v: number, digits = 3): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return '0';
  const a = Math.abs(v);
  for (const [unit, suffix] of SUFFIXES) {
    if (a >= unit * (1 - 5e-4)) return trimZeros((v / unit).toPrecision(digits)) + suffix;
  }
  if (a < 1e-3) return trimZeros(v.toExponential(digits - 1));
  return trimZeros(v.toPrecision(digits));
}

/**
 * Labels for one axis's ticks, formatted alike: fixed decimals read from the tick step
 * (2.5 3.0 3.5), k/M/B suffixes once the largest tick reaches 1000 (0 500 1k 1.5k), and
 * exponents when it is below 0.01 (0 2e-4 4e-4). Without a step (log axes) each label has
 * up to 3 significant digits.
 */
export function formatTicks(values: readonly number[], step?: number): string[] {
  const maxAbs = Math.max(0, ...values.map(Math.abs));
  return values.map((v) => {
    if (v === 0) return '0';
    if (maxAbs >= 1e3) {
      const [unit, suffix] = SUFFIXES.find(([u]) => Math.abs(v) >= u * (1 - 5e-4)) ?? [1, ''];
      const decimals = step === undefined ? 2 : Math.max(0, Math.ceil(-Math.log10(step / unit) - 1e-9));
      return trimZeros((v / unit).toFixed(Math.min(decimals, 6))) + suffix;
    }
    if (maxAbs < 1e-2) return trimZeros(v.toExponential(2));
    if (step === undefined) return trimZeros(v.toPrecision(3));
    return v.toFixed(Math.max(0, Math.ceil(-Math.log10(step) - 1e-9)));
  });
}

/** A 1-2-5 step (…, 0.1, 0.2, 0.5, 1, 2, 5, 10, …) at least `raw`. */
export function niceStep(raw: number): number {
  const mag = 10 ** Math.floor(Math.log10(raw));
  const n = raw / mag;
  const e = 1e-9; // raw = 2e-4 is 2.0000000000000004 × 1e-4
  return clean((n <= 1 + e ? 1 : n <= 2 + e ? 2 : n <= 5 + e ? 5 : 10) * mag);
}

/** Multiples of a 1-2-5 step inside [lo, hi], at most about `target` + 1 of them. */
export function niceTicks(lo: number, hi: number, target = 6): { values: number[]; step: number } {
  if (!(hi > lo)) return { values: [clean(lo)], step: 1 };
  const step = niceStep((hi - lo) / Math.max(1, target));
  const eps = 1e-9;
  const values: number[] = [];
  for (let i = Math.ceil(lo / step - eps); i <= Math.floor(hi / step + eps); i++) values.push(clean(i * step));
  return { values, step };
}

/**
 * Ticks for a log axis on [lo, hi] (both > 0). Over several decades the majors are powers of ten
 * (every n-th one when there are too many) with 2…9 × 10^k as minor grid lines; over about one
 * decade 1-2-5 × 10^k, then every integer multiple; over less (a loss between 2.5 and 10), plain
 * 1-2-5 ticks, placed on the log scale.
 */
export function logTicks(lo: number, hi: number, maxTicks = 8): { major: number[]; minor: number[]; step?: number } {
  const k0 = Math.floor(Math.log10(lo));
  const k1 = Math.ceil(Math.log10(hi));
  const inRange = (v: number) => v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9);
  const grid = (mults: number[]) => {
    const out: number[] = [];
    for (let k = k0; k <= k1; k++)
      for (const m of mults) {
        const v = clean(m * 10 ** k);
        if (inRange(v)) out.push(v);
      }
    return out;
  };
  const all = [1, 2, 3, 4, 5, 6, 7, 8, 9];
  const decades = grid([1]);
  if (decades.length >= 3) {
    const stride = Math.ceil(decades.length / maxTicks);
    const major = decades.filter((v) => Math.round(Math.log10(v)) % stride === 0);
    const minor = stride === 1 ? grid([2, 3, 4, 5, 6, 7, 8, 9]) : decades.filter((v) => !major.includes(v));
    return { major, minor };
  }
  const oneTwoFive = grid([1, 2, 5]);
  if (oneTwoFive.length >= 3 && oneTwoFive.length <= maxTicks) return { major: oneTwoFive, minor: grid(all).filter((v) => !oneTwoFive.includes(v)) };
  const every = grid(all);
  if (every.length >= 3 && every.length <= maxTicks) return { major: every, minor: [] };
  const t = niceTicks(lo, hi, Math.min(5, maxTicks));
  return { major: t.values.filter((v) => v > 0), minor: [], step: t.step };
}

// ---- text ---------------------------------------------------------------------------------

/** Escapes text for SVG content and attributes, dropping characters XML 1.0 forbids. */
export function escapeXml(s: string): string {
  return (
    s
      // eslint-disable-next-line no-control-regex
      .replace(/[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]/g, '')
      .replace(/&/g, '&amp;')
      .replace(/</g, '&lt;')
      .replace(/>/g, '&gt;')
      .replace(/"/g, '&quot;')
      .replace(/'/g, '&#39;')
  );
}

/**
 * Width of `s` in px at `size` px, estimated from DejaVu Sans's advance widths (the usual Linux
 * fallback for sans-serif, and wider than Helvetica or Arial, so other fonts only leave a little
 * more room): we cannot measure text without a browser, and only need it for margins and the legend.
 */
export function textWidth(s: string, size: number): number {
  let em = 0;
  for (const c of s) {
    if ("ijlI.,:;!|'`".includes(c)) em += 0.3;
    else if ('ftr()[]{} -/'.includes(c)) em += 0.4;
    else if ('mwMW@%&<>=+~'.includes(c)) em += 0.86;
    else if (c >= 'A' && c <= 'Z') em += 0.72;
    else em += 0.63;
  }
  return em * size;
}

function num(v: number): string {
  return String(Math.round(v * 10) / 10);
}

// ---- the chart ----------------------------------------------------------------------------

interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  /** data value → px */
  px(v: number): number;
}

function makeAxis(lo: number, hi: number, log: boolean, p0: number, p1: number): Axis {
  const f = log ? Math.log10 : (v: number) => v;
  const a = f(lo),
    b = f(hi);
  const scale = (p1 - p0) / (b - a);
  return { lo, hi, log, px: (v) => p0 + (f(v) - a) * scale };
}

/** The data range of the series that fit the range, x first, then y over the points inside the x range. */
function dataRanges(series: readonly Series[], logY: boolean, xlim: Limits, ylim: Limits) {
  let xlo = Infinity,
    xhi = -Infinity;
  for (const s of series) {
    if (s.fitRange === false) continue;
    for (const [x, y] of s.points)
      if (Number.isFinite(x) && Number.isFinite(y)) {
        xlo = Math.min(xlo, x);
        xhi = Math.max(xhi, x);
      }
  }
  if (xlo > xhi) {
    xlo = 0;
    xhi = 1;
  }
  // steps and token counts start near 0: start the axis at 0 rather than at the first logged step
  if (xlo >= 0 && xlo <= 0.05 * xhi) xlo = 0;
  if (xlo === xhi) {
    xlo -= Math.abs(xlo) * 0.5 || 1;
    xhi += Math.abs(xhi) * 0.5 || 1;
  }
  xlo = xlim[0] ?? xlo;
  xhi = xlim[1] ?? xhi;

  let ylo = Infinity,
    yhi = -Infinity;
  for (const s of series) {
    if (s.fitRange === false) continue;
    for (const [x, y] of s.points) {
      if (!Number.isFinite(y) || (logY && y <= 0) || x < xlo || x > xhi) continue;
      ylo = Math.min(ylo, y);
      yhi = Math.max(yhi, y);
    }
  }
  if (ylo > yhi) {
    ylo = logY ? 1 : 0;
    yhi = logY ? 10 : 1;
  }
  if (logY) {
    // a 5 % margin in log space
    let a = Math.log10(ylo),
      b = Math.log10(yhi);
    if (a === b) {
      a -= 0.3;
      b += 0.3;
    }
    const m = (b - a) * 0.05;
    ylo = 10 ** (a - m);
    yhi = 10 ** (b + m);
  } else {
    if (ylo === yhi) {
      ylo -= Math.abs(ylo) * 0.1 || 1;
      yhi += Math.abs(yhi) * 0.1 || 1;
    }
    const m = (yhi - ylo) * 0.05;
    ylo -= m;
    yhi += m;
  }
  ylo = ylim[0] ?? ylo;
  yhi = ylim[1] ?? yhi;
  return { xlo, xhi, ylo, yhi };
}

/** Keeps the points inside [xlo, xhi] plus one neighbour on each side (so lines run to the edge). */
function windowed(points: readonly XY[], xlo: number, xhi: number): readonly XY[] {
  let i0 = 0,
    i1 = points.length;
  while (i0 < points.length && points[i0][0] < xlo) i0++;
  while (i1 > i0 && points[i1 - 1][0] > xhi) i1--;
  if (i0 === 0 && i1 === points.length) return points;
  return points.slice(Math.max(0, i0 - 1), Math.min(points.length, i1 + 1));
}

/**
 * Pixel coordinates of a series, `null` for a break in the line. Above ~2 points per pixel column,
 * each column keeps its first, lowest, highest and last point (in x order), so the outline and the
 * spikes are the same as with every point drawn.
 */
function toPixels(points: readonly XY[], xa: Axis, ya: Axis, plotW: number): ([number, number] | null)[] {
  const out: ([number, number] | null)[] = [];
  const clampY = (py: number) => Math.max(-1e4, Math.min(1e4, py)); // a diverged 1e30 stays a finite coordinate
  const valid = (y: number) => Number.isFinite(y) && !(ya.log && y <= 0);
  if (points.length <= 2 * plotW) {
    for (const [x, y] of points) out.push(Number.isFinite(x) && valid(y) ? [xa.px(x), clampY(ya.px(y))] : null);
    return out;
  }
  let col = NaN;
  let bucket: XY[] = [];
  const flush = () => {
    if (bucket.length === 0) return;
    let lo = bucket[0],
      hi = bucket[0];
    for (const p of bucket) {
      if (p[1] < lo[1]) lo = p;
      if (p[1] > hi[1]) hi = p;
    }
    const keep = new Set([bucket[0], lo, hi, bucket[bucket.length - 1]]);
    for (const p of bucket) if (keep.has(p)) out.push([xa.px(p[0]), clampY(ya.px(p[1]))]);
    bucket = [];
  };
  for (const p of points) {
    if (!Number.isFinite(p[0]) || !valid(p[1])) {
      flush();
      col = NaN;
      out.push(null);
      continue;
    }
    const c = Math.floor(xa.px(p[0]));
    if (c !== col) {
      flush();
      col = c;
    }
    bucket.push(p);
  }
  flush();
  return out;
}

/** The SVG path of a polyline with breaks, and its lone points (a one-point piece draws nothing as a path). */
function pathData(px: ([number, number] | null)[]): { d: string; lone: [number, number][] } {
  let d = '';
  const lone: [number, number][] = [];
  for (let i = 0; i < px.length; i++) {
    const p = px[i];
    if (!p) continue;
    const first = i === 0 || !px[i - 1];
    if (first && (i + 1 === px.length || !px[i + 1])) lone.push(p);
    d += `${first ? 'M' : 'L'}${num(p[0])} ${num(p[1])}`;
  }
  return { d, lone };
}

/** Points every few px along a polyline, for finding the legend a free corner. */
function sampleAlong(px: ([number, number] | null)[], into: [number, number][]): void {
  for (let i = 0; i < px.length; i++) {
    const p = px[i],
      q = i > 0 ? px[i - 1] : null;
    if (!p) continue;
    if (q) {
      const n = Math.min(200, Math.ceil(Math.hypot(p[0] - q[0], p[1] - q[1]) / 4));
      for (let k = 1; k < n; k++) into.push([q[0] + ((p[0] - q[0]) * k) / n, q[1] + ((p[1] - q[1]) * k) / n]);
    }
    into.push(p);
  }
}

function colorOf(s: Series, i: number): string {
  const c = s.color ?? i;
  return typeof c === 'number' ? PALETTE[((c % PALETTE.length) + PALETTE.length) % PALETTE.length] : c;
}

const DASH = '6 4';

/** One series' look, for the plot and for its legend sample. */
function strokeAttrs(s: Series, color: string): string {
  const opacity = s.opacity ?? 1;
  return `fill="none" stroke="${escapeXml(color)}" stroke-width="${s.width ?? 1.75}"${s.dashed ? ` stroke-dasharray="${DASH}"` : ''}${opacity < 1 ? ` stroke-opacity="${opacity}"` : ''} stroke-linejoin="round" stroke-linecap="round"`;
}

function marker(x: number, y: number, color: string, opacity = 1): string {
  return `<circle cx="${num(x)}" cy="${num(y)}" r="3" fill="${escapeXml(color)}" stroke="#ffffff" stroke-width="0.75"${opacity < 1 ? ` opacity="${opacity}"` : ''}/>`;
}

/** A short stable hash, so two charts inlined in one HTML page do not share a clipPath id. */
function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(36);
}

/** Renders a line chart of `series` as a standalone SVG document. */
export function renderLineChart(series: readonly Series[], opts: ChartOptions = {}): string {
  const W = opts.width ?? 800;
  const H = opts.height ?? 480;
  const logY = opts.logY ?? false;
  const { xlo, xhi, ylo, yhi } = dataRanges(series, logY, opts.xlim ?? [undefined, undefined], opts.ylim ?? [undefined, undefined]);
  if (!(xhi > xlo)) throw new Error(`x range [${xlo}, ${xhi}] is empty`);
  if (!(yhi > ylo)) throw new Error(`y range [${ylo}, ${yhi}] is empty`);
  if (logY && !(ylo > 0)) throw new Error(`a log y axis needs a positive range, got [${ylo}, ${yhi}]`);

  // vertical layout first: the y tick labels' width then sets the left margin
  const top = opts.title || opts.note ? 44 : 16;
  const bottom = 6 + TICK_FONT + (opts.xLabel ? 10 + LABEL_FONT : 0) + 12; // tick labels, axis label, margin
  const plotH = H - top - bottom;
  let yMajor: number[],
    yMinor: number[] = [],
    yStep: number | undefined;
  if (logY) ({ major: yMajor, minor: yMinor, step: yStep } = logTicks(ylo, yhi, Math.max(3, Math.floor(plotH / 40))));
  else ({ values: yMajor, step: yStep } = niceTicks(ylo, yhi, Math.max(2, Math.floor(plotH / 42))));
  const yLabels = formatTicks(yMajor, yStep);
  const yLabelW = Math.max(0, ...yLabels.map((l) => textWidth(l, TICK_FONT)));
  const left = 12 + (opts.yLabel ? LABEL_FONT + 10 : 0) + yLabelW + 8;
  const right = 24;
  const plotW = W - left - right;
  if (plotW < 40 || plotH < 40)
    throw new Error(`a ${W}×${H} chart leaves no room to plot (at least ~${Math.ceil(W - plotW + 40)}×${Math.ceil(H - plotH + 40)} px needed)`);
  const xa = makeAxis(xlo, xhi, false, left, left + plotW);
  const ya = makeAxis(ylo, yhi, logY, top + plotH, top);
  const { values: xMajor, step: xStep } = niceTicks(xlo, xhi, Math.max(2, Math.floor(plotW / 90)));
  const xLabels = formatTicks(xMajor, xStep);

  const out: string[] = [];
  const title = opts.title ?? '';
  const clip = `plot-area-${hash(title + series.map((s) => s.name).join('\n') + W + 'x' + H)}`;
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img"${title ? ` aria-label="${escapeXml(title)}"` : ''}>`,
  );
  if (title) out.push(`<title>${escapeXml(title)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<g font-family="${FONT_FAMILY}" fill="${INK}">`);
  if (title) out.push(`<text x="${num(left)}" y="${num(top - 18)}" font-size="${TITLE_FONT}" font-weight="bold">${escapeXml(title)}</text>`);
  if (opts.note)
    out.push(`<text x="${num(left + plotW)}" y="${num(top - 18)}" font-size="${TICK_FONT}" fill="${MUTED}" text-anchor="end">${escapeXml(opts.note)}</text>`);

  // grid: minor lines first, majors over them
  const grid: string[] = [];
  for (const v of yMinor) grid.push(`<line x1="${num(left)}" y1="${num(ya.px(v))}" x2="${num(left + plotW)}" y2="${num(ya.px(v))}" stroke="${GRID_MINOR}"/>`);
  for (const v of yMajor) grid.push(`<line x1="${num(left)}" y1="${num(ya.px(v))}" x2="${num(left + plotW)}" y2="${num(ya.px(v))}" stroke="${GRID}"/>`);
  for (const v of xMajor) grid.push(`<line x1="${num(xa.px(v))}" y1="${num(top)}" x2="${num(xa.px(v))}" y2="${num(top + plotH)}" stroke="${GRID}"/>`);
  out.push(`<g stroke-width="1">${grid.join('')}</g>`);

  // the curves, clipped to the plot area; pixel outlines are kept for the legend placement
  out.push(`<clipPath id="${clip}"><rect x="${num(left)}" y="${num(top)}" width="${num(plotW)}" height="${num(plotH)}"/></clipPath>`);
  out.push(`<g clip-path="url(#${clip})">`);
  const occupied: { points: [number, number][]; weight: number }[] = [];
  series.forEach((s, i) => {
    const color = colorOf(s, i);
    const px = toPixels(windowed(s.points, xlo, xhi), xa, ya, plotW);
    const { d, lone } = pathData(px);
    if (d) out.push(`<path d="${d}" ${strokeAttrs(s, color)}/>`);
    const dots = px.filter((p): p is [number, number] => p !== null);
    if (s.markers && dots.length <= MAX_MARKERS) for (const [x, y] of dots) out.push(marker(x, y, color, s.opacity));
    else
      for (const [x, y] of lone)
        out.push(
          `<circle cx="${num(x)}" cy="${num(y)}" r="${(s.width ?? 1.75) + 0.5}" fill="${escapeXml(color)}"${(s.opacity ?? 1) < 1 ? ` opacity="${s.opacity}"` : ''}/>`,
        );
    const along: [number, number][] = [];
    sampleAlong(px, along);
    occupied.push({ points: along, weight: s.opacity ?? 1 });
  });
  out.push('</g>');

  // axes: a frame around the plot, outward ticks and their labels
  out.push(`<rect x="${num(left)}" y="${num(top)}" width="${num(plotW)}" height="${num(plotH)}" fill="none" stroke="#888888" stroke-width="1"/>`);
  const ticks: string[] = [];
  yMajor.forEach((v, i) => {
    const y = ya.px(v);
    ticks.push(`<line x1="${num(left - 4)}" y1="${num(y)}" x2="${num(left)}" y2="${num(y)}" stroke="#888888"/>`);
    ticks.push(`<text x="${num(left - 7)}" y="${num(y + TICK_FONT * 0.35)}" text-anchor="end">${escapeXml(yLabels[i])}</text>`);
  });
  xMajor.forEach((v, i) => {
    const x = xa.px(v);
    ticks.push(`<line x1="${num(x)}" y1="${num(top + plotH)}" x2="${num(x)}" y2="${num(top + plotH + 4)}" stroke="#888888"/>`);
    ticks.push(`<text x="${num(x)}" y="${num(top + plotH + 6 + TICK_FONT)}" text-anchor="middle">${escapeXml(xLabels[i])}</text>`);
  });
  out.push(`<g font-size="${TICK_FONT}" fill="${MUTED}">${ticks.join('')}</g>`);
  if (opts.xLabel)
    out.push(
      `<text x="${num(left + plotW / 2)}" y="${num(top + plotH + 6 + TICK_FONT + 10 + LABEL_FONT)}" font-size="${LABEL_FONT}" text-anchor="middle">${escapeXml(opts.xLabel)}</text>`,
    );
  if (opts.yLabel) {
    const x = 12 + LABEL_FONT * 0.8,
      y = top + plotH / 2;
    out.push(
      `<text x="${num(x)}" y="${num(y)}" font-size="${LABEL_FONT}" text-anchor="middle" transform="rotate(-90 ${num(x)} ${num(y)})">${escapeXml(opts.yLabel)}</text>`,
    );
  }

  const listed = series.map((s, i) => ({ s, color: colorOf(s, i) })).filter(({ s }) => s.legend !== false);
  if ((opts.legend ?? true) && listed.length > 0) out.push(legend(listed, { left, top, plotW, plotH }, occupied));
  out.push('</g>', '</svg>', '');
  return out.join('\n');
}

/**
 * The legend box, inside the plot in the corner that covers the least of the curves (faint ones
 * count by their opacity; upper right first on a tie, as matplotlib's loc="best").
 */
function legend(
  items: { s: Series; color: string }[],
  area: { left: number; top: number; plotW: number; plotH: number },
  occupied: { points: [number, number][]; weight: number }[],
): string {
  const row = 18,
    pad = 8,
    sample = 26,
    gap = 6,
    inset = 10;
  const w = pad * 2 + sample + gap + Math.max(...items.map(({ s }) => textWidth(s.name, TICK_FONT)));
  const h = pad * 2 + row * items.length - (row - TICK_FONT) + 2;
  const x0 = area.left + inset,
    x1 = area.left + area.plotW - inset - w;
  const y0 = area.top + inset,
    y1 = area.top + area.plotH - inset - h;
  const corners: [number, number][] = [
    [x1, y0],
    [x0, y0],
    [x0, y1],
    [x1, y1],
  ];
  let best = corners[0],
    fewest = Infinity;
  const m = 6; // keep curves a little away from the box, not just out of it
  for (const [cx, cy] of corners) {
    let n = 0;
    for (const { points, weight } of occupied) {
      for (const [px, py] of points) if (px >= cx - m && px <= cx + w + m && py >= cy - m && py <= cy + h + m) n += weight;
    }
    if (n < fewest) {
      fewest = n;
      best = [cx, cy];
    }
  }
  const [bx, by] = best;
  const parts = [
    `<g font-size="${TICK_FONT}">`,
    `<rect x="${num(bx)}" y="${num(by)}" width="${num(w)}" height="${num(h)}" rx="3" fill="#ffffff" fill-opacity="0.9" stroke="#cccccc"/>`,
  ];
  items.forEach(({ s, color }, i) => {
    const cy = by + pad + 1 + i * row + TICK_FONT / 2;
    const sx = bx + pad;
    parts.push(`<path d="M${num(sx)} ${num(cy)}H${num(sx + sample)}" ${strokeAttrs({ ...s, opacity: Math.max(s.opacity ?? 1, 0.6) }, color)}/>`);
    if (s.markers) parts.push(marker(sx + sample / 2, cy, color));
    parts.push(`<text x="${num(sx + sample + gap)}" y="${num(cy + TICK_FONT * 0.35)}">${escapeXml(s.name)}</text>`);
  });
  parts.push('</g>');
  return parts.join('');
}
