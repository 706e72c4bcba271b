import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pyRound } from '../src/config/scaling.ts';
import type { ScheduleOptions } from '../src/train/options.ts';
import { lrAt } from '../src/train/schedule.ts';

// OpenELM-270M's schedule (projects/openelm/pretraining_configs/openelm_270M.yaml).
const S270M: ScheduleOptions = { name: 'cosine', lr: 0.0053, minLr: 0.00053, warmup: 5000, warmupInitLr: 1e-6, maxSteps: 350000 };
const SMALL: ScheduleOptions = { name: 'cosine', lr: 1, minLr: 0.1, warmup: 10, warmupInitLr: 0, maxSteps: 20 };

test('cosine: hand-computed values of the 270M recipe', () => {
  assert.equal(lrAt(0, S270M), 1e-6); // the first update uses warmup_init_lr
  assert.equal(lrAt(1, S270M), 2.06e-6); // 1e-6 + 1 · (0.0053 − 1e-6) / 5000 = 2.0598e-6, rounded to 8 places
  assert.equal(lrAt(2, S270M), 3.12e-6);
  assert.equal(lrAt(2500, S270M), 0.0026505);
  assert.equal(lrAt(4999, S270M), 0.00529894);
  assert.equal(lrAt(5000, S270M), 0.0053); // peak at t = W
  assert.equal(lrAt(177500, S270M), 0.00291501);
  assert.equal(lrAt(350000, S270M), 0.00053); // 0.00053 + 9.9e-14 before rounding
  assert.equal(lrAt(350001, S270M), 0.00053);
  assert.equal(lrAt(10_000_000, S270M), 0.00053); // stays at min_lr after the end
});

test("cosine: small schedule, CoreNet's period M − W + 1", () => {
  assert.equal(lrAt(0, SMALL), 0);
  assert.equal(lrAt(5, SMALL), 0.5);
  assert.equal(lrAt(10, SMALL), 1);
  // 0.1 + 0.45 (1 + cos(5π/11))
  assert.equal(lrAt(15, SMALL), 0.61404168);
  // at t = M the curve is not yet at min_lr: 0.1 + 0.45 (1 + cos(10π/11))
  assert.equal(lrAt(20, SMALL), 0.11822816);
  assert.equal(lrAt(21, SMALL), 0.1);
  assert.equal(lrAt(22, SMALL), 0.1);
  assert.equal(lrAt(1000, SMALL), 0.1);
});

test('warmup rises monotonically from warmupInitLr to lr; the decay never rises', () => {
  for (const name of ['constant', 'linear', 'cosine'] as const) {
    const s: ScheduleOptions = { name, lr: 3e-3, minLr: 3e-4, warmup: 100, warmupInitLr: 1e-6, maxSteps: 1000 };
    assert.equal(lrAt(0, s), 1e-6, name);
    let prev = -Infinity;
    for (let t = 0; t <= 100; t++) {
      const lr = lrAt(t, s);
      assert.ok(lr > prev, `${name}: warmup not increasing at ${t}`);
      prev = lr;
    }
    assert.equal(lrAt(100, s), 3e-3, name);
    for (let t = 101; t <= 1100; t++) {
      const lr = lrAt(t, s);
      assert.ok(lr <= prev, `${name}: rises at ${t}`);
      assert.ok(lr >= s.minLr, `${name}: below min at ${t}`);
      prev = lr;
    }
    assert.equal(lrAt(1100, s), name === 'constant' ? 3e-3 : 3e-4, name);
  }
});

test('constant: lr from the start without warmup, forever', () => {
  const s: ScheduleOptions = { name: 'constant', lr: 2e-4, minLr: 2e-4, warmup: 0, warmupInitLr: 1e-7, maxSteps: 10 };
  for (const t of [0, 1, 9, 10, 11, 1e6]) assert.equal(lrAt(t, s), 2e-4);
});

test('linear: hand-computed values (CoreNet polynomial, power 1)', () => {
  const s: ScheduleOptions = { name: 'linear', lr: 1, minLr: 0, warmup: 0, warmupInitLr: 0, maxSteps: 9 };
  // P = 10: lr = 1 − t / 10
  assert.deepEqual(
    [0, 1, 5, 9, 10, 11].map((t) => lrAt(t, s)),
    [1, 0.9, 0.5, 0.1, 0, 0],
  );
  const w: ScheduleOptions = { name: 'linear', lr: 0.01, minLr: 0.001, warmup: 4, warmupInitLr: 0.002, maxSteps: 13 };
  // warmup: 0.002 + t · 0.002; then P = 10: 0.009 (1 − k/10) + 0.001
  assert.deepEqual(
    [0, 1, 3, 4, 9, 13, 14, 15].map((t) => lrAt(t, w)),
    [0.002, 0.004, 0.008, 0.01, 0.0055, 0.0019, 0.001, 0.001],
  );
});

test('no warmup: the first step is the peak', () => {
  assert.equal(lrAt(0, { ...S270M, warmup: 0 }), 0.0053);
  assert.equal(lrAt(0, { ...SMALL, name: 'linear', warmup: 0 }), 1);
});

test("matches CoreNet's get_lr + update_lr reimplemented literally", () => {
  // corenet/optims/scheduler/{cosine,fixed,polynomial}.py, iteration-based, and
  // base_scheduler.update_lr: lr = max(0.0, lr); round(lr, 8).
  const corenet = (s: ScheduleOptions, curr_iter: number): number => {
    const warmup_iterations = Math.max(s.warmup, 0);
    const warmup_init_lr = s.warmupInitLr;
    const max_iterations = s.maxSteps;
    let curr_lr: number;
    if (s.name === 'cosine') {
      const max_lr = s.lr,
        min_lr = s.minLr;
      const warmup_step = (max_lr - warmup_init_lr) / warmup_iterations;
      const period = max_iterations - warmup_iterations + 1;
      if (curr_iter < warmup_iterations) curr_lr = warmup_init_lr + curr_iter * warmup_step;
      else {
        curr_iter = curr_iter - warmup_iterations;
        curr_lr = min_lr + 0.5 * (max_lr - min_lr) * (1 + Math.cos((Math.PI * curr_iter) / period));
      }
    } else if (s.name === 'constant') {
      const fixed_lr = s.lr;
      const warmup_step = (fixed_lr - warmup_init_lr) / warmup_iterations;
      curr_lr = curr_iter < warmup_iterations ? warmup_init_lr + curr_iter * warmup_step : fixed_lr;
    } else {
      const start_lr = s.lr,
        end_lr = s.minLr,
        power = 1;
      const warmup_step = (start_lr - warmup_init_lr) / warmup_iterations;
      const max_its = max_iterations - warmup_iterations + 1;
      if (curr_iter < warmup_iterations) curr_lr = warmup_init_lr + curr_iter * warmup_step;
      else {
        const factor = (curr_iter - warmup_iterations) / max_its;
        curr_lr = (start_lr - end_lr) * (1.0 - factor) ** power + end_lr;
      }
    }
    curr_lr = Math.max(0.0, curr_lr); // get_lr's return
    return pyRound(Math.max(0.0, curr_lr), 8); // update_lr
  };
  const schedules: ScheduleOptions[] = [
    S270M,
    { ...S270M, lr: 0.0039, minLr: 0.00039 },
    { ...S270M, lr: 0.0012, minLr: 0.00012 },
    SMALL,
    { name: 'cosine', lr: 2e-3, minLr: 2e-4, warmup: 100, warmupInitLr: 1e-6, maxSteps: 2000 },
    { name: 'cosine', lr: 2e-3, minLr: 0, warmup: 0, warmupInitLr: 1e-7, maxSteps: 7 },
    { name: 'linear', lr: 3e-4, minLr: 3e-5, warmup: 50, warmupInitLr: 0, maxSteps: 777 },
    { name: 'linear', lr: 3e-4, minLr: 0, warmup: 0, warmupInitLr: 0, maxSteps: 100 },
    { name: 'constant', lr: 1e-3, minLr: 1e-3, warmup: 30, warmupInitLr: 1e-7, maxSteps: 100 },
  ];
  for (const s of schedules) {
    // every step of short schedules; a stride plus the edges of long ones
    const steps = new Set<number>();
    const stride = Math.max(1, Math.floor(s.maxSteps / 5000));
    for (let t = 0; t <= s.maxSteps + 1; t += stride) steps.add(t);
    for (const t of [0, 1, s.warmup - 1, s.warmup, s.warmup + 1, s.maxSteps - 1, s.maxSteps, s.maxSteps + 1]) if (t >= 0) steps.add(t);
    for (const t of steps) assert.equal(lrAt(t, s), corenet(s, t), `${JSON.stringify(s)} at step ${t}`);
  }
});

test('rejects a step that is not a non-negative integer', () => {
  assert.throws(() => lrAt(-1, S270M), /step must be an integer ≥ 0, got -1/);
  assert.throws(() => lrAt(1.5, S270M), /step must be an integer/);
});
