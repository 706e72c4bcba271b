// `openelm plot`: training-log parsing (resumes, a killed run's last line, errors naming
// file:line), series, ticks, and the SVG itself checked as XML.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { UsageError } from '../src/cli/args.ts';
import { plotCommand } from '../src/cli/commands/plot.ts';
import { buildSeries, emaSmooth, parseTrainingLog, plotTrainingLogs, runNames, sparkline, type TrainingLog } from '../src/plot/loss-plot.ts';
import { escapeXml, formatCompact, formatTicks, logTicks, niceTicks, PALETTE, renderLineChart } from '../src/plot/svg-chart.ts';

const jsonl = (...recs: object[]) => recs.map((r) => JSON.stringify(r)).join('\n') + '\n';
const steps = (log: TrainingLog) => log.records.map((r) => r.step);
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-plot-'));

/**
 * A small XML well-formedness check: tags balance, attributes are quoted, text and attribute
 * values hold no raw '<' and only known entities, one root element. Returns the root's tag.
 */
function checkXml(s: string): { root: string; tags: string[] } {
  const re = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[\w:.-]+="[^"<]*")*)\s*(\/?)>|([^<]+)/y;
  const entities = /&(?!(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);)/;
  const stack: string[] = [];
  const tags: string[] = [];
  let root = '',
    pos = 0;
  while (pos < s.length) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) throw new Error(`not well-formed at ${pos}: ${JSON.stringify(s.slice(pos, pos + 60))}`);
    pos = re.lastIndex;
    if (m[5] !== undefined) {
      if (entities.test(m[5])) throw new Error(`bare & in text: ${JSON.stringify(m[5])}`);
      if (stack.length === 0 && m[5].trim() !== '') throw new Error(`text outside the root: ${JSON.stringify(m[5])}`);
      continue;
    }
    if (entities.test(m[3])) throw new Error(`bare & in attributes of <${m[2]}>`);
    const names = [...m[3].matchAll(/([\w:.-]+)=/g)].map((a) => a[1]);
    assert.equal(new Set(names).size, names.length, `duplicate attribute in <${m[2]}${m[3]}>`);
    if (m[1]) {
      const open = stack.pop();
      if (open !== m[2]) throw new Error(`</${m[2]}> closes <${open}>`);
      continue;
    }
    if (stack.length === 0) {
      if (root) throw new Error('a second root element');
      root = m[2];
    }
    tags.push(m[2]);
    if (!m[4]) stack.push(m[2]);
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  return { root, tags };
}

// ---- parsing ------------------------------------------------------------------------------

test('parseTrainingLog: fields, null as NaN, other keys ignored', () => {
  const log = parseTrainingLog(
    jsonl({ step: 1, loss: 6.5, lr: 0.001, grad_norm: 18.4, tokens_per_s: 1234.5, epoch: 0, note: 'x' }, { step: 2, loss: null, val_loss: 5.9, tokens: 8192 }),
    'run.jsonl',
  );
  assert.deepEqual(steps(log), [1, 2]);
  assert.deepEqual(log.records[0], { step: 1, line: 1, loss: 6.5, lr: 0.001, grad_norm: 18.4, tokens_per_s: 1234.5 });
  assert.ok(Number.isNaN(log.records[1].loss));
  assert.equal(log.records[1].val_loss, 5.9);
  assert.equal(log.records[1].tokens, 8192);
  assert.deepEqual(log.warnings, []);
});

test('parseTrainingLog: a resumed run replaces the records from its restart step on', () => {
  // killed after step 6 with its last checkpoint at 4: restarts at 5 and runs to 8
  const first = [1, 2, 3, 4, 5, 6].map((step) => ({ step, loss: 10 - step }));
  const resumed = [5, 6, 7, 8].map((step) => ({ step, loss: 100 + step }));
  const log = parseTrainingLog(jsonl(...first, ...resumed), 'r.jsonl');
  assert.deepEqual(steps(log), [1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual(
    log.records.map((r) => r.loss),
    [9, 8, 7, 6, 105, 106, 107, 108],
  );
  assert.deepEqual(log.resumedAt, [5]);
  assert.equal(log.records[4].line, 7);
  // a resume that has not yet reached the killed run's last step: the abandoned steps go too
  const short = parseTrainingLog(jsonl(...first, { step: 3, loss: 50 }), 'r.jsonl');
  assert.deepEqual(steps(short), [1, 2, 3]);
  assert.equal(short.records[2].loss, 50);
  // the same step twice in a row: the later record wins
  assert.equal(parseTrainingLog(jsonl({ step: 1, loss: 1 }, { step: 1, loss: 2 }), 'r').records[0].loss, 2);
});

test('parseTrainingLog: blank lines and a truncated last line are warnings', () => {
  const text = jsonl({ step: 1, loss: 3 }) + '\n  \n' + jsonl({ step: 2, loss: 2.5 }) + '{"step": 3, "lo';
  const log = parseTrainingLog(text, 'runs/a.jsonl');
  assert.deepEqual(steps(log), [1, 2]);
  assert.equal(log.warnings.length, 2);
  assert.match(log.warnings[0], /^runs\/a\.jsonl: skipped 2 blank lines/);
  assert.match(log.warnings[1], /^runs\/a\.jsonl:5: ignoring a truncated last line/);
  // a truncated line followed only by blank lines is still the last line
  assert.deepEqual(steps(parseTrainingLog(jsonl({ step: 1, loss: 3 }) + '{"step": 2\n\n', 'a')), [1]);
  assert.deepEqual(parseTrainingLog('', 'empty.jsonl').records, []);
});

test('parseTrainingLog: anything else malformed is an error naming file:line', () => {
  const bad: [string, RegExp][] = [
    [jsonl({ step: 1, loss: 3 }) + '{"step": 2, "loss"\n' + jsonl({ step: 3, loss: 2 }), /log\.jsonl:2: not valid JSON/],
    [jsonl({ step: 1, loss: 3 }, [1, 2], { step: 3, loss: 2 }), /log\.jsonl:2: expected a JSON object per line, got \[1,2\]/],
    [jsonl({ loss: 3 }), /log\.jsonl:1: the record has no "step"/],
    [jsonl({ step: 1.5, loss: 3 }), /log\.jsonl:1: "step" must be an integer ≥ 0, got 1\.5/],
    [jsonl({ step: '1', loss: 3 }), /log\.jsonl:1: "step" must be an integer/],
    [jsonl({ step: 1, loss: 3 }, { step: 2, loss: 'nan' }), /log\.jsonl:2: "loss" must be a number \(or null\), got "nan"/],
    [jsonl({ step: 1, loss: 3, val_loss: [2] }), /log\.jsonl:1: "val_loss" must be a number/],
  ];
  for (const [text, re] of bad) assert.throws(() => parseTrainingLog(text, 'log.jsonl'), re);
  // an invalid last line that is valid JSON is not "truncated": it is an error
  assert.throws(() => parseTrainingLog(jsonl({ step: 1, loss: 3 }, { loss: 2 }), 'log.jsonl'), /log\.jsonl:2: the record has no "step"/);
});

test('runNames: file names, the folder for OUT/train.jsonl, more path where names collide', () => {
  assert.deepEqual(runNames(['runs/a/train.jsonl', 'runs/b/train.jsonl']), ['a', 'b']);
  assert.deepEqual(runNames(['base.jsonl', 'logs/lora.jsonl']), ['base', 'lora']);
  assert.deepEqual(runNames(['x/a.jsonl', 'y/a.jsonl']), ['x/a', 'y/a']);
  assert.deepEqual(runNames(['train.jsonl']), ['train']);
  assert.deepEqual(runNames(['/tmp/exp1/big/train.jsonl', '/tmp/exp2/big/train.jsonl']), ['exp1/big', 'exp2/big']);
  assert.deepEqual(runNames(['a.jsonl', 'a.jsonl']), ['a', 'a (2)']);
});

// ---- series -------------------------------------------------------------------------------

test('emaSmooth: TensorBoard debiased EMA', () => {
  assert.deepEqual(emaSmooth([1, 2, 3], 0), [1, 2, 3]);
  const s = emaSmooth([4, 2, NaN, 1], 0.5);
  assert.equal(s[0], 4); // debiased: starts at the first value, not at (1 - w) * y
  assert.ok(Math.abs(s[1] - (0.5 * 0.5 * 4 + 0.5 * 2) / (1 - 0.25)) < 1e-12);
  assert.ok(Number.isNaN(s[2]));
  const third = 0.5 * (0.5 * 0.5 * 4 + 0.5 * 2) + 0.5 * 1;
  assert.ok(Math.abs(s[3] - third / (1 - 0.125)) < 1e-12);
  for (const v of emaSmooth([3, 3, 3, 3], 0.9)) assert.ok(Math.abs(v - 3) < 1e-12);
  assert.throws(() => emaSmooth([1], 1), /\[0, 1\)/);
});

const twoRuns = (): TrainingLog[] => [
  parseTrainingLog(
    jsonl(
      ...Array.from({ length: 20 }, (_, i) => ({
        step: i + 1,
        loss: 5 - i * 0.1,
        lr: 1e-3,
        tokens: (i + 1) * 512,
        ...(i % 5 === 4 ? { val_loss: 5.2 - i * 0.1 } : {}),
      })),
    ),
    'a.jsonl',
  ),
  parseTrainingLog(jsonl(...Array.from({ length: 10 }, (_, i) => ({ step: i + 1, loss: 6 - i * 0.2, lr: 3e-4 }))), 'b.jsonl'),
];

test('buildSeries: per run, faint raw + smoothed training loss and dashed validation, one colour', () => {
  const series = buildSeries(twoRuns(), ['a', 'b'], { smooth: 0.6 });
  assert.deepEqual(
    series.map((s) => [s.name, s.color, s.legend ?? true, Boolean(s.dashed)]),
    [
      ['a (raw)', 0, false, false],
      ['b (raw)', 1, false, false], // every faint curve under every smoothed one
      ['a train', 0, true, false],
      ['a val', 0, true, true],
      ['b', 1, true, false],
    ],
  );
  assert.equal(series[0].fitRange, false);
  assert.ok((series[0].opacity ?? 1) < 0.5);
  assert.deepEqual(
    series[3].points.map((p) => p[0]),
    [5, 10, 15, 20],
  );
  for (const [x, y] of series[3].points) assert.ok(Math.abs(y - (5.2 - (x - 1) * 0.1)) < 1e-12);
  assert.deepEqual(
    series[2].points.map((p) => p[0]),
    series[0].points.map((p) => p[0]),
  );
  assert.ok(series[2].points[5][1] > series[0].points[5][1]); // the EMA lags a falling loss
  // three or more runs with validation: the legend lists runs, plus one train / val style key
  const three = buildSeries([...twoRuns(), twoRuns()[0]], ['a', 'b', 'c'], { smooth: 0 });
  assert.deepEqual(
    three.filter((s) => s.legend !== false).map((s) => s.name),
    ['a', 'b', 'c', 'train', 'val'],
  );
  // no smoothing: the raw curve is the curve
  assert.deepEqual(
    buildSeries(twoRuns(), ['a', 'b'], { smooth: 0 }).map((s) => s.name),
    ['a train', 'a val', 'b'],
  );
  // other metrics: no validation; lr unsmoothed by default
  const lr = buildSeries(twoRuns(), ['a', 'b'], { y: 'lr' });
  assert.deepEqual(
    lr.map((s) => s.name),
    ['a', 'b'],
  );
  assert.equal(lr[1].points[0][1], 3e-4);
  // x = tokens
  const tok = buildSeries(twoRuns().slice(0, 1), ['a'], { x: 'tokens', smooth: 0 });
  assert.deepEqual(tok[0].points[0], [512, 5]);
  assert.throws(() => buildSeries(twoRuns(), ['a', 'b'], { x: 'tokens' }), /^Error: b\.jsonl:1: no "tokens" field/);
  assert.throws(() => buildSeries(twoRuns(), ['a', 'b'], { y: 'grad_norm' }), /a\.jsonl: no record has "grad_norm" \(--y grad_norm\)/);
  assert.throws(() => buildSeries([parseTrainingLog('', 'e.jsonl')], ['e']), /e\.jsonl: no training records/);
});

test('plotTrainingLogs: labels, summaries, sparkline', () => {
  const plot = plotTrainingLogs(twoRuns(), { labels: ['first <run>'] });
  assert.deepEqual(
    plot.runs.map((r) => [r.name, r.steps, r.last_loss, r.min_val_loss, r.min_val_step]),
    [
      ['first <run>', 20, 5 - 19 * 0.1, 5.2 - 19 * 0.1, 20],
      ['b', 10, 6 - 9 * 0.2, null, null],
    ],
  );
  assert.ok(plot.svg.includes('first &lt;run&gt; train'));
  const lines = plot.summary.trimEnd().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0], /^first <run> {2}[▁-█ ]+ {2}step 20 {2}loss 3\.100 {2}min val 3\.300 @ 20$/);
  assert.match(lines[1], /^b {11}[▁-█ ]+ {2}step 10 {2}loss 4\.200$/);
  assert.throws(() => plotTrainingLogs(twoRuns(), { labels: ['x', 'y', 'z'] }), /3 labels for 2 logs/);
  assert.equal(
    sparkline(
      [
        [0, 1],
        [1, 2],
        [2, 3],
        [3, 4],
      ],
      4,
      0,
      3,
      1,
      4,
    ),
    '▁▃▆█',
  );
  assert.equal(
    sparkline(
      [
        [0, 1],
        [3, 4],
      ],
      4,
      0,
      3,
      1,
      4,
    ),
    '▁  █',
  );
});

// ---- chart --------------------------------------------------------------------------------

test('niceTicks: 1-2-5 steps, no float noise', () => {
  assert.deepEqual(niceTicks(0, 5000, 6), { values: [0, 1000, 2000, 3000, 4000, 5000], step: 1000 });
  assert.deepEqual(niceTicks(2.83, 10.6, 9).values, [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(niceTicks(0, 0.3, 3).values, [0, 0.1, 0.2, 0.3]);
  assert.deepEqual(niceTicks(-0.7, 0.7, 3).values, [-0.5, 0, 0.5]);
  assert.equal(niceTicks(0, 1e-3, 5).step, 2e-4);
  for (const [lo, hi, n] of [
    [0, 1, 5],
    [3.1, 3.4, 6],
    [1e6, 4e7, 7],
    [2e-5, 9e-5, 4],
  ]) {
    const t = niceTicks(lo, hi, n);
    const m = t.step / 10 ** Math.floor(Math.log10(t.step) + 1e-9);
    assert.ok(
      [1, 2, 5].some((k) => Math.abs(m - k) < 1e-9),
      `step ${t.step}`,
    );
    assert.ok(t.values.length >= 2 && t.values.length <= n + 1, `${lo}..${hi}: ${t.values}`);
    for (const v of t.values) assert.ok(v >= lo - 1e-12 && v <= hi + 1e-12);
  }
});

test('logTicks: decades, 1-2-5 within about a decade, linear below', () => {
  assert.deepEqual(logTicks(1e-5, 2e-2).major, [1e-5, 1e-4, 1e-3, 1e-2]);
  assert.ok(logTicks(1e-5, 2e-2).minor.includes(2e-5));
  assert.deepEqual(logTicks(1e-12, 1, 4).major, [1e-12, 1e-8, 1e-4, 1]); // every 4th of 13 decades
  assert.deepEqual(logTicks(0.4, 30).major, [0.5, 1, 2, 5, 10, 20]);
  assert.deepEqual(logTicks(2.8, 10.5).major, [3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual(logTicks(3.05, 3.9).major, [3.2, 3.4, 3.6, 3.8]);
});

test('formatting: compact numbers, tick labels alike on an axis', () => {
  assert.deepEqual(
    [0, 999, 1000, 12345, 2.5e9, 0.00031, 3.14158, -1500].map((v) => formatCompact(v)),
    ['0', '999', '1k', '12.3k', '2.5B', '3.1e-4', '3.14', '-1.5k'],
  );
  assert.deepEqual(formatTicks([0, 500, 1000, 1500], 500), ['0', '500', '1k', '1.5k']);
  assert.deepEqual(formatTicks([2.5, 3, 3.5], 0.5), ['2.5', '3.0', '3.5']);
  assert.deepEqual(formatTicks([0, 2e-4, 4e-4, 1e-3], 2e-4), ['0', '2e-4', '4e-4', '1e-3']);
  assert.deepEqual(formatTicks([1e6, 2e6, 5e7]), ['1M', '2M', '50M']);
  assert.equal(escapeXml(`a<b & "c" 'd'\u0001`), 'a&lt;b &amp; &quot;c&quot; &#39;d&#39;');
});

test('renderLineChart: a standalone, well-formed SVG with title, axes, legend, escaped text', () => {
  const svg = renderLineChart(
    [
      {
        name: 'run <a> & "b"',
        points: [
          [0, 3],
          [1, 2.5],
          [2, NaN],
          [3, 2],
        ],
      },
      {
        name: 'val',
        points: [
          [1, 2.8],
          [3, 2.4],
        ],
        dashed: true,
        markers: true,
        color: 0,
      },
      { name: 'hidden', points: [[0, 1]], legend: false, fitRange: false },
    ],
    { title: 'Loss & "friends"', xLabel: 'step', yLabel: 'loss', width: 640, height: 400 },
  );
  const { root, tags } = checkXml(svg);
  assert.equal(root, 'svg');
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="640" height="400" viewBox="0 0 640 400"/);
  assert.match(svg, /<rect x="0" y="0" width="640" height="400" fill="#ffffff"\/>/);
  assert.ok(svg.includes('font-family="Helvetica, Arial, sans-serif"'));
  assert.ok(!/<style|@import|url\(http|<image|href=/.test(svg), 'no external CSS, fonts or images');
  assert.ok(svg.includes('run &lt;a&gt; &amp; &quot;b&quot;'));
  assert.ok(svg.includes('<title>Loss &amp; &quot;friends&quot;</title>'));
  // the NaN breaks the first line into two pieces: a line and a lone point (drawn as a dot)
  const firstPath = svg.match(/<path d="([^"]+)" fill="none" stroke="#0072B2" stroke-width="1.75"/)![1];
  assert.equal((firstPath.match(/M/g) ?? []).length, 2);
  assert.ok(tags.filter((t) => t === 'circle').length >= 2 + 1 + 1); // val markers, lone point, legend marker
  assert.ok(!svg.includes('hidden'));
  assert.ok(svg.includes(`stroke="${PALETTE[2]}"`)); // the third series' colour by position
});

test('renderLineChart: log-y, several runs, thinning, ranges', () => {
  const n = 100_000;
  const runs = [0, 1, 2].map((k) => ({
    name: `run ${k}`,
    points: Array.from({ length: n }, (_, i): [number, number] => [i + 1, (k + 3) * (1 + 9 * Math.exp(-i / 5000)) * (1 + 0.05 * Math.sin(i))]),
  }));
  const svg = renderLineChart(runs, { logY: true, title: 'three runs', xLabel: 'step', yLabel: 'loss' });
  checkXml(svg);
  const paths = [...svg.matchAll(/<path d="([^"]+)" fill="none" stroke="(#[0-9A-F]{6})"/g)];
  assert.deepEqual(
    paths.slice(0, 3).map((p) => p[2]),
    PALETTE.slice(0, 3),
  );
  for (const [, d] of paths.slice(0, 3)) {
    const pts = d.split(/[ML]/).length - 1;
    assert.ok(pts > 500 && pts < 4 * 800, `${pts} points drawn for ${n}`); // ≤ 4 per pixel column
  }
  assert.ok(svg.length < 200_000, `${svg.length} bytes`);
  // log axis labels: 1-2-5 steps between ~2.9 and ~52 → 5, 10, 20, 50
  for (const l of ['>5<', '>10<', '>20<', '>50<']) assert.ok(svg.includes(l), l);
  assert.ok(svg.includes('>100k<'));
  assert.throws(() => renderLineChart(runs, { logY: true, ylim: [0, 10] }), /positive range/);
  assert.throws(() => renderLineChart(runs, { width: 60, height: 60 }), /no room to plot/);
  // a fixed y range cuts curves at the plot's edge (clipPath)
  const clipped = renderLineChart(runs, { ylim: [0, 10] });
  assert.match(clipped, /<clipPath id="(plot-area-[a-z0-9]+)">[\s\S]*clip-path="url\(#\1\)"/);
  // no data at all still draws axes
  checkXml(renderLineChart([{ name: 'empty', points: [] }]));
});

// ---- the command --------------------------------------------------------------------------

// biome-ignore lint/suspicious/noConfusingVoidType: what Command.run returns
async function runPlot(argv: string[]): Promise<{ out: string; err: string; code: number | void }> {
  const out: string[] = [],
    err: string[] = [];
  const w1 = process.stdout.write,
    w2 = process.stderr.write;
  process.stdout.write = ((s: string) => {
    out.push(String(s));
    return true;
  }) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => {
    err.push(String(s));
    return true;
  }) as typeof process.stderr.write;
  try {
    const code = await plotCommand.run(argv);
    return { out: out.join(''), err: err.join(''), code };
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

test('plot command: writes the SVG, --json, warnings and summary on stderr', async () => {
  const dir = tmp();
  for (const name of ['base', 'wide']) fs.mkdirSync(path.join(dir, name));
  const a = path.join(dir, 'base/train.jsonl'),
    b = path.join(dir, 'wide/train.jsonl');
  fs.writeFileSync(
    a,
    jsonl(...Array.from({ length: 50 }, (_, i) => ({ step: i + 1, loss: 8 - i * 0.1, ...(i % 10 === 9 ? { val_loss: 8.1 - i * 0.1 } : {}) }))),
  );
  fs.writeFileSync(b, jsonl(...Array.from({ length: 30 }, (_, i) => ({ step: i + 1, loss: 7 - i * 0.1 }))) + '{"step": 31, "lo');
  const svgPath = path.join(dir, 'loss.svg');

  const r = await runPlot([a, b, '--out', svgPath, '--json', '--log-y']);
  assert.equal(r.code, undefined);
  const j = JSON.parse(r.out);
  assert.equal(j.out, svgPath);
  assert.deepEqual(
    j.runs.map((x: { name: string; steps: number; last_loss: number; min_val_loss: number | null }) => [
      x.name,
      x.steps,
      Number(x.last_loss.toFixed(6)),
      x.min_val_loss === null ? null : Number(x.min_val_loss.toFixed(6)),
    ]),
    [
      ['base', 50, 3.1, 3.2],
      ['wide', 30, 4.1, null],
    ],
  );
  assert.match(r.err, /warning: .*wide\/train\.jsonl:31: ignoring a truncated last line/);
  checkXml(fs.readFileSync(svgPath, 'utf8'));
  assert.deepEqual(fs.readdirSync(dir).sort(), ['base', 'loss.svg', 'wide']); // no temp file left

  const r2 = await runPlot([a, '-o', svgPath, '-l', 'my run', '--smooth', '0', '--ylim', ',6', '--title', 'T']);
  assert.equal(r2.out, '');
  assert.match(r2.err, /^my run {2}[▁-█ ]+ {2}step 50 {2}loss 3\.100 {2}min val 3\.200 @ 50\nwrote /);
  const svg = fs.readFileSync(svgPath, 'utf8');
  assert.ok(svg.includes('>my run train<') && svg.includes('<title>T</title>') && !svg.includes('EMA'));
});

test('plot command: usage errors and errors naming the file', async () => {
  const dir = tmp();
  const good = path.join(dir, 'good.jsonl'),
    bad = path.join(dir, 'bad.jsonl');
  fs.writeFileSync(good, jsonl({ step: 1, loss: 3 }, { step: 2, loss: 2 }));
  fs.writeFileSync(bad, jsonl({ step: 1, loss: 3 }) + 'oops\n' + jsonl({ step: 3, loss: 2 }));
  const out = path.join(dir, 'x.svg');
  const usage: [string[], RegExp][] = [
    [['--out', out], /at least one training log/],
    [[good], /--out FILE\.svg is required/],
    [[good, '-o', out, '--smooth', '1'], /--smooth must be < 1/],
    [[good, '-o', out, '--smooth=-0.1'], /--smooth must be ≥ 0/],
    [[good, '-o', out, '--x', 'time'], /--x must be step or tokens/],
    [[good, '-o', out, '--y', 'perplexity'], /--y must be one of loss, lr, grad_norm, tokens_per_s/],
    [[good, '-o', out, '-l', 'a', '-l', 'b'], /2 --label for 1 log/],
    [[good, '-o', out, '--ylim', '4'], /--ylim must be LO,HI/],
    [[good, '-o', out, '--ylim', '4,3'], /HI must be greater than LO/],
    [[good, '-o', out, '--log-y', '--ylim', '0,3'], /log y axis needs LO > 0/],
    [[good, '-o', out, '--width', '10'], /--width must be ≥ 200/],
    [[good, '-o', out, '--colour', 'red'], /Unknown option '--colour'/],
  ];
  for (const [argv, re] of usage) await assert.rejects(plotCommand.run(argv), (e: Error) => e instanceof UsageError && re.test(e.message), argv.join(' '));
  await assert.rejects(runPlot([good, bad, '-o', out]), new RegExp(`^Error: ${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2: not valid JSON`));
  await assert.rejects(runPlot([path.join(dir, 'nope.jsonl'), '-o', out]), /nope\.jsonl: no such file/);
  await assert.rejects(runPlot([good, '-o', out, '--x', 'tokens']), /good\.jsonl:1: no "tokens" field/);
  await assert.rejects(runPlot([good, '-o', path.join(dir, 'no/such/dir/x.svg')]), /cannot write .*x\.svg: its folder does not exist/);
  assert.ok(!fs.existsSync(out));
});

test('plot command: --help text names every option it parses', () => {
  for (const opt of ['--out', '--label', '--smooth', '--x', '--y', '--log-y', '--xlim', '--ylim', '--title', '--width', '--height', '--json']) {
    assert.ok(plotCommand.help.includes(opt), opt);
  }
  assert.ok(plotCommand.help.split('\n').every((l) => l.length <= 100));
});

test('a DPO log: --y reward_margin draws the margin, and its validation values as a second series', () => {
  const text = [1, 2, 3, 4]
    .map((s) => JSON.stringify({ step: s, loss: 0.7 - 0.05 * s, reward_margin: 0.1 * s, ...(s % 2 === 0 ? { val_reward_margin: 0.08 * s } : {}) }))
    .join('\n');
  const log = parseTrainingLog(text, 'dpo.jsonl');
  const series = buildSeries([log], ['dpo'], { y: 'reward_margin', smooth: 0 });
  const ys = series.map((s) => s.points.map((p) => p[1]));
  assert.ok(
    ys.some((y) => y.length === 4 && Math.abs(y[3] - 0.4) < 1e-12),
    'the training margin',
  );
  assert.ok(
    ys.some((y) => y.length === 2 && Math.abs(y[1] - 0.32) < 1e-12),
    'the validation margin',
  );
  const plot = plotTrainingLogs([log], { y: 'reward_margin' });
  assert.match(plot.svg, /DPO reward margin/);
  assert.throws(() => buildSeries([parseTrainingLog('{"step":1,"loss":1}', 'sft.jsonl')], ['sft'], { y: 'reward_margin' }), /no record has "reward_margin"/);
});
