// ProgressBar with a fake clock and fake streams: in-place TTY redraws throttled to ~10/s,
// sparse plain lines on a non-TTY, quiet, units, speed and ETA.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatBytes, formatDuration, ProgressBar } from '../src/io/progress.ts';

function fakeStream(isTTY: boolean, columns = 100) {
  const writes: string[] = [];
  return {
    isTTY,
    columns,
    writes,
    write: (s: string) => {
      writes.push(s);
      return true;
    },
  };
}

function fakeClock() {
  const clock = { t: 0, now: () => clock.t };
  return clock;
}

test('on a TTY it redraws in place, at most every 100 ms, and ends the line on finish', () => {
  const stream = fakeStream(true);
  const clock = fakeClock();
  const bar = new ProgressBar({ label: 'model.safetensors', total: 2_500_000_000, unit: 'bytes', stream, now: clock.now });
  bar.update(1_000_000); // first update draws at once
  for (let i = 1; i <= 9; i++) {
    clock.t = i * 10;
    bar.update(1_000_000 * (i + 1)); // within 100 ms of the last draw: no output
  }
  assert.equal(stream.writes.length, 1);
  clock.t = 2000;
  bar.update(1_300_000_000);
  assert.equal(stream.writes.length, 2);
  const line = stream.writes[1];
  assert.ok(line.startsWith('\rmodel.safetensors ['), line);
  assert.ok(line.endsWith('\x1b[K'), 'clears the rest of the line');
  assert.ok(!line.includes('\n'));
  assert.match(line, / 52% {2}1\.30\/2\.50 GB {2}\d+(\.\d+)? MB\/s {2}ETA \d+:\d\d/);
  // 1.3 GB in 2 s → 650 MB/s, 1.2 GB left → 0:02
  assert.match(line, /650 MB\/s {2}ETA 0:02/);

  clock.t = 4000;
  bar.update(2_500_000_000);
  bar.finish();
  const last = stream.writes.at(-1)!;
  assert.match(last, /100% {2}2\.50\/2\.50 GB {2}in 0:04 {2}625 MB\/s\x1b\[K\n$/);
  bar.finish();
  bar.update(1);
  assert.equal(stream.writes.at(-1), last, 'nothing after finish');
});

test('tick adds to the count; items use k/M suffixes', () => {
  const stream = fakeStream(true);
  const clock = fakeClock();
  const bar = new ProgressBar({ label: 'init', total: 3_000_000, stream, now: clock.now });
  clock.t = 1000;
  bar.tick(1_500_000);
  assert.equal(bar.done, 1_500_000);
  assert.match(stream.writes.at(-1)!, / 50% {2}1\.50M\/3\.00M {2}1\.50M\/s {2}ETA 0:01/);
});

test('on a non-TTY it prints plain lines only every logIntervalMs, plus the final one', () => {
  const stream = fakeStream(false);
  const clock = fakeClock();
  const bar = new ProgressBar({ label: 'dl', total: 1000, unit: 'bytes', stream, now: clock.now, logIntervalMs: 10_000 });
  for (let i = 1; i <= 100; i++) {
    clock.t = i * 200; // 20 s of updates
    bar.update(i * 10);
  }
  bar.finish();
  assert.equal(stream.writes.length, 3, stream.writes.join(''));
  for (const w of stream.writes) {
    assert.ok(!w.includes('\r') && !w.includes('\x1b'), 'no control characters in logs');
    assert.ok(w.endsWith('\n'));
  }
  assert.match(stream.writes[2], /^dl 100% {2}1\.00\/1\.00 kB {2}in 0:20 {2}50 B\/s\n$/);
});

test('quiet prints nothing; an unknown total shows no percent or ETA; a narrow terminal drops the bar', () => {
  const quiet = fakeStream(true);
  const q = new ProgressBar({ label: 'x', total: 10, stream: quiet, quiet: true });
  q.update(5);
  q.finish();
  assert.equal(quiet.writes.length, 0);

  const stream = fakeStream(true);
  const clock = fakeClock();
  const bar = new ProgressBar({ label: 'stream', unit: 'bytes', stream, now: clock.now });
  clock.t = 1000;
  bar.update(5_000_000);
  assert.match(stream.writes.at(-1)!, /^\rstream \[░+\] 5\.00 MB {2}5\.00 MB\/s\x1b\[K$/);

  const narrow = fakeStream(true, 40);
  const n = new ProgressBar({ label: 'model-00001-of-00002.safetensors', total: 100, stream: narrow, now: clock.now });
  n.update(50);
  const line = narrow.writes.at(-1)!;
  assert.ok(!/[█░]/.test(line), line);
  assert.ok(line.replace('\r', '').replace('\x1b[K', '').length <= 40, line);
  assert.match(line, /…/);
});

test('formatBytes and formatDuration', () => {
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1500), '1.50 kB');
  assert.equal(formatBytes(270_000_000), '270 MB');
  assert.equal(formatBytes(1_080_000_000), '1.08 GB');
  assert.equal(formatBytes(500_000_000, 2_000_000_000), '0.50 GB');
  assert.equal(formatDuration(75), '1:15');
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(formatDuration(Infinity), '?');
});
