// `openelm train` as a user (and the held-back checks) run it: a run on token-id rows against
// PyTorch's five AdamW steps; a run on JSONL text killed with SIGKILL and resumed, against the same
// run uninterrupted; errors naming the flag at fault.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openSafetensors } from '../src/io/safetensors.ts';
import { relErr } from './helpers/train.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = (f: string) => path.join(ROOT, 'test/fixtures/openelm', f);
const CLI = ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts')];
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-train-cli-'));
const readLog = (f: string) =>
  fs
    .readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

function openelm(args: string[]) {
  return spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', cwd: ROOT, env: { ...process.env, CI: process.env.CI ?? '' } });
}

test('train --init --data-ids reproduces PyTorch step by step (losses, grad norms, final parameters)', () => {
  const expected = JSON.parse(fs.readFileSync(path.join(FIX('tiny-f32'), 'expected.json'), 'utf8')).train;
  const dir = tmp();
  fs.writeFileSync(path.join(dir, 'ids.json'), JSON.stringify(expected.batch_ids));
  const a = expected.adamw;
  const r = openelm([
    'train',
    '--init',
    FIX('tiny-f32'),
    '--data-ids',
    path.join(dir, 'ids.json'),
    '--steps',
    String(a.steps),
    '--batch-size',
    '2',
    '--seq-len',
    '15',
    '--lr',
    String(a.lr),
    '--schedule',
    'constant',
    '--weight-decay',
    String(a.weight_decay),
    '--grad-clip',
    String(a.clip_grad_norm),
    '--log',
    path.join(dir, 'log.jsonl'),
    '--out',
    path.join(dir, 'out'),
    '--seed',
    '0',
    '--json',
  ]);
  assert.equal(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!);
  assert.equal(summary.step, a.steps);
  const log = readLog(path.join(dir, 'log.jsonl'));
  assert.deepEqual(
    log.map((x) => x.step),
    [1, 2, 3, 4, 5],
  );
  log.forEach((x, i) => {
    assert.ok(Math.abs(x.loss - a.losses[i]) < 1e-4, `step ${i + 1} loss ${x.loss} vs ${a.losses[i]}`);
    assert.ok(Math.abs(x.grad_norm - a.grad_norms_before_clip[i]) < 1e-4 * a.grad_norms_before_clip[i], `step ${i + 1} grad norm`);
    assert.equal(x.lr, a.lr);
    for (const k of ['tokens_per_s', 'loss', 'lr', 'grad_norm']) assert.equal(typeof x[k], 'number');
  });
  const final = openSafetensors(path.join(dir, 'out', 'model.safetensors'));
  const ref = openSafetensors(path.join(FIX('tiny-f32'), a.final_params_file));
  for (const name of ref.tensors.keys()) assert.ok(relErr(final.readAsF32(name), ref.readAsF32(name)) < 1e-4, name);
  // the output folder is a model: generate runs on it
  const g = openelm(['generate', '-m', path.join(dir, 'out'), '--prompt-ids', '1,5,6', '-n', '3', '--temperature', '0', '--json']);
  assert.equal(g.status, 0, g.stderr);
  assert.equal(JSON.parse(g.stdout).output_ids.length, 3);
  // a bf16 copy for inference: every value is the fp32 weight rounded to bf16
  const e = openelm(['export', '--format', 'hf', '-m', path.join(dir, 'out'), '-o', path.join(dir, 'bf16'), '--dtype', 'bf16', '--json']);
  assert.equal(e.status, 0, e.stderr);
  const bf = openSafetensors(path.join(dir, 'bf16', 'model.safetensors'));
  for (const name of ref.tensors.keys()) {
    assert.equal(bf.info(name).dtype, 'BF16');
    const a = bf.readAsF32(name),
      b = final.readAsF32(name);
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= Math.abs(b[i]) * 2 ** -8, `${name}[${i}]`);
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

function corpus(dir: string): string {
  // 40 short English documents, JSONL
  const words = 'the state of the union is strong and our nation will meet every challenge with courage and hope for all people who work'.split(' ');
  let x = 11;
  const lines = Array.from({ length: 40 }, (_, d) => {
    const text = Array.from({ length: 60 + (d % 7) * 10 }, () => words[(x = (x * 1103515245 + 12345) >>> 0) % words.length]).join(' ');
    return JSON.stringify({ id: d, text: text[0].toUpperCase() + text.slice(1) + '.' });
  });
  const f = path.join(dir, 'corpus.jsonl');
  fs.writeFileSync(f, lines.join('\n') + '\n');
  return f;
}

test('a run on JSONL text killed with SIGKILL and resumed logs the same losses and ends with the same parameters', async () => {
  const dir = tmp();
  const data = corpus(dir);
  const args = (out: string) => [
    'train',
    '--init',
    FIX('tiny-vocab32k-bf16'),
    '--data',
    data,
    '--seq-len',
    '32',
    '--batch-size',
    '2',
    '--steps',
    '12',
    '--lr',
    '2e-3',
    '--schedule',
    'cosine',
    '--warmup',
    '2',
    '--min-lr',
    '2e-4',
    '--grad-clip',
    '1',
    '--z-loss',
    '1e-4',
    '--min-chars',
    '10',
    '--min-tokens',
    '8',
    '--val-fraction',
    '0.1',
    '--eval-every',
    '4',
    '--eval-batches',
    '2',
    '--save-every',
    '3',
    '--packing',
    '--threads',
    '2',
    '--out',
    out,
    '--seed',
    '3',
    '--quiet',
  ];
  const a = path.join(dir, 'a'),
    b = path.join(dir, 'b');
  const full = openelm(args(a));
  assert.equal(full.status, 0, full.stderr);

  // the same run, killed hard once its log has passed step 7 (checkpoint at 6), then resumed
  const child = spawn(process.execPath, [...CLI, ...args(b)], { cwd: ROOT, stdio: 'ignore' });
  const logB = path.join(b, 'train.jsonl');
  await new Promise<void>((resolve, reject) => {
    const t = setInterval(() => {
      const n = fs.existsSync(logB) ? fs.readFileSync(logB, 'utf8').split('\n').filter(Boolean).length : 0;
      if (n >= 7) {
        clearInterval(t);
        child.kill('SIGKILL');
        resolve();
      }
    }, 5);
    child.on('exit', () => {
      clearInterval(t);
      reject(new Error('the run ended before it could be killed'));
    });
  });
  await new Promise((r) => child.on('exit', r));
  const killedAt = readLog(logB).length;
  assert.ok(killedAt < 12, `killed at ${killedAt}`);
  const resumed = openelm([...args(b), '--resume']);
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed from .*step-0000000[36]/);

  const la = readLog(path.join(a, 'train.jsonl')),
    lb = readLog(logB);
  assert.deepEqual(
    lb.map((r) => r.step),
    la.map((r) => r.step),
  );
  assert.deepEqual(
    lb.map((r) => [r.loss, r.grad_norm, r.lr, r.val_loss ?? null, r.tokens]),
    la.map((r) => [r.loss, r.grad_norm, r.lr, r.val_loss ?? null, r.tokens]),
  );
  assert.ok(la.some((r) => r.val_loss !== undefined));
  const fa = openSafetensors(path.join(a, 'model.safetensors')),
    fb = openSafetensors(path.join(b, 'model.safetensors'));
  for (const name of fa.tensors.keys()) assert.deepEqual(fb.readAsF32(name), fa.readAsF32(name), name);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('train refuses bad flags naming them, and an --out that holds a run without --resume', () => {
  const dir = tmp();
  const bad = openelm(['train', '--init', FIX('tiny-f32'), '--data-ids', 'x.json', '--steps', '0', '--batch-size', '2', '--lr', '1e-3', '--out', dir]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--steps must be ≥ 1/);
  const noLr = openelm(['train', '--init', FIX('tiny-f32'), '--data-ids', 'x.json', '--steps', '1', '--batch-size', '2', '--out', dir]);
  assert.notEqual(noLr.status, 0);
  assert.match(noLr.stderr, /--lr/);
  const expected = JSON.parse(fs.readFileSync(path.join(FIX('tiny-f32'), 'expected.json'), 'utf8')).train;
  fs.writeFileSync(path.join(dir, 'ids.json'), JSON.stringify(expected.batch_ids));
  fs.mkdirSync(path.join(dir, 'run', 'checkpoints'), { recursive: true });
  const again = openelm([
    'train',
    '--init',
    FIX('tiny-f32'),
    '--data-ids',
    path.join(dir, 'ids.json'),
    '--steps',
    '1',
    '--batch-size',
    '2',
    '--lr',
    '1e-3',
    '--out',
    path.join(dir, 'run'),
  ]);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /already holds checkpoints of a run: add --resume/);
  const badIds = openelm([
    'train',
    '--init',
    FIX('tiny-f32'),
    '--data-ids',
    path.join(dir, 'ids.json'),
    '--steps',
    '1',
    '--batch-size',
    '2',
    '--lr',
    '1e-3',
    '--out',
    path.join(dir, 'run2'),
    '--preset',
    'OpenELM-270M',
  ]);
  assert.notEqual(badIds.status, 0);
  assert.match(badIds.stderr, /--preset.*conflicts with.*--init|conflicts/);
  fs.rmSync(dir, { recursive: true, force: true });
});
