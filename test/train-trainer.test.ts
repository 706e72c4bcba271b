// The trainer's loop: checkpoints in HF layout that load as models, an exact resume (same losses
// bit for bit, same final parameters), the JSONL log, NaN stops with the last checkpoint intact.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openSafetensors } from '../src/io/safetensors.ts';
import { createKernels } from '../src/kernels/index.ts';
import { checkpointSource } from '../src/load.ts';
import { listCheckpoints } from '../src/train/checkpoint.ts';
import { type Batch, DEFAULT_OPTIMIZER, type TrainOptions } from '../src/train/options.ts';
import { NonFiniteLossError, type TrainData, Trainer } from '../src/train/trainer.ts';

const DIR = fileURLToPath(new URL('./fixtures/openelm/tiny-f32/', import.meta.url));

/** rows of ids used in order, cycling; its state is the next row */
class Rows implements TrainData {
  next = 0;
  constructor(readonly rows: number[][]) {}
  nextBatch(B: number): Batch {
    const S = this.rows[0].length - 1;
    const inputs = new Int32Array(B * S),
      targets = new Int32Array(B * S);
    for (let b = 0; b < B; b++) {
      const r = this.rows[this.next++ % this.rows.length];
      for (let t = 0; t < S; t++) {
        inputs[b * S + t] = r[t];
        targets[b * S + t] = r[t + 1];
      }
    }
    return { batchSize: B, seqLen: S, inputs, targets };
  }
  validationBatches(B: number): Batch[] {
    const save = this.next;
    this.next = 0;
    const v = [this.nextBatch(B)];
    this.next = save;
    return v;
  }
  state() {
    return { next: this.next };
  }
  restore(s: unknown) {
    this.next = (s as { next: number }).next;
  }
}

function rows(n: number, len: number, seed: number): number[][] {
  let x = seed;
  return Array.from({ length: n }, () => Array.from({ length: len }, () => (x = (x * 1103515245 + 12345) >>> 0) % 512));
}

function options(out: string, over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    init: DIR,
    data: { paths: [], seqLen: 12, packing: true, minChars: 0, minTokens: 0, valFraction: 0 },
    steps: 6,
    batchSize: 2,
    gradAccum: 2,
    optimizer: { ...DEFAULT_OPTIMIZER },
    schedule: { name: 'cosine', lr: 3e-3, minLr: 3e-4, warmup: 2, warmupInitLr: 1e-5, maxSteps: 6 },
    gradClip: 1.0,
    zLoss: 1e-4,
    activationCheckpointing: false,
    evalEvery: 2,
    evalBatches: 1,
    saveEvery: 2,
    out,
    resume: false,
    seed: 0,
    ...over,
  };
}

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-train-'));
const readLog = (f: string) =>
  fs
    .readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

async function runTrainer(o: TrainOptions, data: TrainData, stopAfter?: number) {
  const k = await createKernels('wasm', { threads: 2 });
  try {
    const src = checkpointSource(o.init!);
    const t = new Trainer({ config: src.config, init: src, kernels: k, data, options: o });
    if (o.resume) t.resume();
    let steps = 0;
    const r = await t.run({ shouldStop: () => stopAfter !== undefined && ++steps >= stopAfter });
    return { r, params: Float32Array.from(t.params) };
  } finally {
    k.dispose?.();
  }
}

test('an interrupted and resumed run equals the uninterrupted run, bit for bit', async () => {
  const data = rows(16, 13, 7);
  const a = tmp(),
    b = tmp();
  const full = await runTrainer(options(a), new Rows(data));
  assert.equal(full.r.step, 6);
  // stop after 3 steps (a checkpoint is saved on stop), then resume to the end
  const part = await runTrainer(options(b), new Rows(data), 3);
  assert.equal(part.r.stopped, 'interrupted');
  assert.equal(part.r.step, 3);
  const rest = await runTrainer(options(b, { resume: true }), new Rows(data));
  assert.equal(rest.r.step, 6);
  const la = readLog(path.join(a, 'train.jsonl')),
    lb = readLog(path.join(b, 'train.jsonl'));
  assert.deepEqual(
    lb.map((r) => r.step),
    [1, 2, 3, 4, 5, 6],
  );
  assert.deepEqual(
    lb.map((r) => [r.loss, r.grad_norm, r.lr, r.val_loss]),
    la.map((r) => [r.loss, r.grad_norm, r.lr, r.val_loss]),
  );
  assert.deepEqual(rest.params, full.params);
  // the newest checkpoint's weights equal the run's parameters and load as a model folder
  const ck = listCheckpoints(b);
  assert.deepEqual(
    ck.map((c) => c.step),
    [4, 6],
  );
  const f = openSafetensors(path.join(b, 'model.safetensors'));
  assert.equal(
    f.readAsF32('transformer.norm.weight')[0],
    rest.params[new (await import('../src/train/params.ts')).ParamLayout(checkpointSource(DIR).config).get('transformer.norm.weight').offset],
  );
  assert.ok(checkpointSource(b).config);
  for (const d of [a, b]) fs.rmSync(d, { recursive: true, force: true });
});

test('a non-finite loss stops the run with a clear error and the last checkpoint intact', async () => {
  const out = tmp();
  const o = options(out, { schedule: { name: 'constant', lr: 1e30, minLr: 0, warmup: 0, warmupInitLr: 0, maxSteps: 6 }, gradClip: null, saveEvery: 1 });
  let err: NonFiniteLossError | undefined;
  await assert.rejects(runTrainer(o, new Rows(rows(16, 13, 3))), (e: Error) => {
    err = e as NonFiniteLossError;
    return e instanceof NonFiniteLossError && /last good checkpoint is .*step-/.test(e.message);
  });
  const ck = listCheckpoints(out);
  const last = ck[ck.length - 1];
  assert.equal(last.step, err!.step - 1, 'every step before the failing one was saved (--save-every 1)');
  const f = openSafetensors(path.join(last.dir, 'model.safetensors'));
  for (const name of f.tensors.keys()) assert.ok(f.readAsF32(name).every(Number.isFinite), `${name} in the last checkpoint is finite`);
  fs.rmSync(out, { recursive: true, force: true });
});
