/// <reference types="node" />
// Per-machine kernel variants (src/kernels/wasm/tuning.ts): every variant computes the same
// decode results, bit for bit, and stays within the reference's bound; the GEMM threshold moves
// which kernel runs without leaving the bound; calibration measures, chooses among the variants,
// is kept in a store keyed by CPU / threads / build / engine and read back instead of measuring
// again; a broken store or a bad setting is an error that names it, never a wrong kernel.
//
// The rest of the suite runs with OPENELM_KERNEL_TUNING=default (package.json), so results there
// do not depend on a measurement; the tests here pass `tuning` explicitly, which wins over it.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { formatTuning } from '../src/bench.ts';
import { RefKernels } from '../src/kernels/ref.ts';
import type { WeightDType } from '../src/kernels/types.ts';
import {
  CALIBRATION_MAX_BYTES,
  calibrationFootprint,
  DEFAULT_TUNING,
  type KernelTuning,
  keyString,
  lastLevelCacheBytes,
  nodeTuningStore,
} from '../src/kernels/wasm/tuning.ts';
import { createWasmKernels } from '../src/kernels/wasm/wasm.ts';
import { checkMatmul, sameWeights } from './helpers/kernel-check.ts';
import { rng } from './helpers/rng.ts';

const ref = new RefKernels();
const dir = mkdtempSync(join(tmpdir(), 'openelm-tuning-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('every rows-in-flight variant gives bit-identical one-token matmuls, within the reference bound', async () => {
  const k = await createWasmKernels({ threads: 2, tuning: 'default', minParallelWork: 0, chunkWork: 1 });
  try {
    const rand = rng(7);
    // odd row counts: whole groups of 16, 8, 4 rows and a tail (quantized: four rows at a time, the
    // last group repeating its last row; float: one row at a time)
    for (const [dtype, rows, cols] of [
      ['q8_0', 77, 96],
      ['q4_0', 53, 160],
      ['f32', 45, 72],
      ['bf16', 37, 40],
      ['f16', 29, 264],
    ] as [WeightDType, number, number][]) {
      const { w } = sameWeights(k, ref, dtype, rows, cols, rand);
      const x = k.f32(cols);
      for (let i = 0; i < cols; i++) x[i] = rand() * 2 - 1;
      const quant = dtype === 'q8_0' || dtype === 'q4_0';
      const variants: KernelTuning[] = quant
        ? ([4, 8, 16] as const).map((r) => ({ ...DEFAULT_TUNING, quantDecodeRows: r }))
        : ([4, 8] as const).map((r) => ({ ...DEFAULT_TUNING, floatDecodeRows: r }));
      let first: Float32Array | null = null;
      for (const t of variants) {
        k.setTuning(t);
        const out = k.f32(rows);
        k.matmul(out, x, w, 1);
        if (!first) first = out.slice();
        else assert.deepEqual(out, first, `${dtype} ${JSON.stringify(t)}: differs from the first variant`);
        for (const c of checkMatmul(k, ref, dtype, rows, cols, [1], rand)) assert.equal(c.failure, null, `${dtype} ${JSON.stringify(t)}: ${c.failure}`);
      }
    }
  } finally {
    k.dispose();
  }
});

test('the GEMM threshold only chooses the kernel: few-token matmuls stay within the reference bound either way', async () => {
  const k = await createWasmKernels({ threads: 2, tuning: 'default' });
  try {
    const rand = rng(11);
    for (const dtype of ['q8_0', 'q4_0', 'bf16', 'f16'] as WeightDType[]) {
      for (const min of [3, 6, 16]) {
        k.setTuning({ ...DEFAULT_TUNING, gemmMinTokensQuant: min, gemmMinTokensFloat: min });
        for (const c of checkMatmul(k, ref, dtype, 41, 96, [2, 3, 4, 5, 7, 9], rand))
          assert.equal(c.failure, null, `${dtype} gemmMinTokens ${min}: ${c.what}: ${c.failure}`);
      }
    }
  } finally {
    k.dispose();
  }
});

test('calibration measures the variants, keeps the record, and the next backend reads it instead of measuring', async () => {
  const file = join(dir, 'tuning.json');
  const store = await nodeTuningStore(file);
  // 64 MB whatever this machine's cache (a VM may report its host's 480 MiB L3: see the next test)
  const calibrationBytes = 64 << 20;
  const a = await createWasmKernels({ threads: 1, tuning: 'auto', tuningStore: store, calibrationBytes });
  try {
    assert.equal(a.tuningSource, 'calibrated');
    const m = a.tuningMeasured;
    assert.ok(m, 'the measurements are kept');
    assert.deepEqual(Object.keys(m.quantDecodeGBps).sort(), ['16', '4', '8']);
    for (const gbps of [...Object.values(m.quantDecodeGBps), ...Object.values(m.floatDecodeGBps)]) assert.ok(gbps > 0.1 && gbps < 1000, `${gbps} GB/s`);
    assert.equal(m.footprint, calibrationBytes);
    assert.equal(m.skipped, undefined);
    // the choice is the default unless another variant was at least 5 % faster (then the fastest);
    // the GEMM thresholds are not calibrated (they change rounding)
    for (const [field, gbps] of [
      ['quantDecodeRows', m.quantDecodeGBps],
      ['floatDecodeRows', m.floatDecodeGBps],
    ] as const) {
      const chosen = String(a.tuning[field]),
        fallback = String(DEFAULT_TUNING[field]);
      const fastest = Object.entries(gbps).sort((x, y) => y[1] - x[1])[0][0];
      if (chosen !== fallback) {
        assert.equal(chosen, fastest, field);
        assert.ok(gbps[chosen] * 0.95 >= gbps[fallback] * (1 - 1e-9), `${field}: ${chosen} chosen over the default without a 5 % gain`);
      } else assert.ok(fastest === fallback || gbps[fastest] * 0.95 < gbps[fallback] * (1 + 1e-9), `${field}: kept the default against a clear gain`);
    }
    assert.equal(a.tuning.gemmMinTokensQuant, DEFAULT_TUNING.gemmMinTokensQuant);
    assert.equal(a.tuning.gemmMinTokensFloat, DEFAULT_TUNING.gemmMinTokensFloat);
    assert.ok(a.tuningKey?.cpu && a.tuningKey.threads === 1 && /^[0-9a-f]{8}$/.test(a.tuningKey.kernels));
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    assert.deepEqual(saved.records[keyString(a.tuningKey)].tuning, a.tuning);
  } finally {
    a.dispose();
  }
  const t0 = performance.now();
  const b = await createWasmKernels({ threads: 1, tuning: 'auto', tuningStore: store, calibrationBytes });
  try {
    assert.equal(b.tuningSource, 'cache');
    assert.deepEqual(b.tuning, a.tuning);
    assert.ok(performance.now() - t0 < 1000, 'reading the record does not measure again');
  } finally {
    b.dispose();
  }
  // another thread count is another machine as far as streaming goes: measured separately
  const c = await createWasmKernels({ threads: 2, tuning: 'auto', tuningStore: store, calibrationBytes });
  try {
    assert.equal(c.tuningSource, 'calibrated');
    assert.equal(Object.keys(JSON.parse(readFileSync(file, 'utf8')).records).length, 2);
  } finally {
    c.dispose();
  }
});

test('the calibration streams past the last-level cache, or keeps the defaults and says why', async () => {
  // twice the cache, at least 64 MB, at most CALIBRATION_MAX_BYTES
  assert.equal(calibrationFootprint(undefined), 64 << 20);
  assert.equal(calibrationFootprint(2 << 20), 64 << 20);
  assert.equal(calibrationFootprint(105 << 20), 210 << 20);
  assert.equal(calibrationFootprint(CALIBRATION_MAX_BYTES / 2), CALIBRATION_MAX_BYTES);
  assert.equal(calibrationFootprint(480 << 20), null);
  const llc = await lastLevelCacheBytes();
  if (process.platform === 'linux' && existsSync('/sys/devices/system/cpu/cpu0/cache')) assert.ok(llc && llc >= 1 << 20, `last-level cache ${llc}`);
  const store = await nodeTuningStore(join(dir, 'skipped.json'));
  const k = await createWasmKernels({ threads: 1, tuning: 'calibrate', tuningStore: store, calibrationBytes: null });
  try {
    assert.deepEqual(k.tuning, DEFAULT_TUNING);
    assert.equal(k.tuningMeasured?.skipped, 'calibration turned off');
    assert.match(formatTuning({ ...k.tuning, source: k.tuningSource, skipped: k.tuningMeasured?.skipped }), /not calibrated: calibration turned off/);
  } finally {
    k.dispose();
  }
});

test('a corrupt or hand-edited record is measured again, never used', async () => {
  const file = join(dir, 'corrupt.json');
  writeFileSync(file, '{"version": 1, "records": {');
  const k = await createWasmKernels({ threads: 1, tuning: 'auto', tuningStore: await nodeTuningStore(file) });
  try {
    assert.equal(k.tuningSource, 'calibrated');
    const saved = JSON.parse(readFileSync(file, 'utf8'));
    // now break the record's values
    const key = keyString(k.tuningKey!);
    saved.records[key].tuning.quantDecodeRows = 12;
    writeFileSync(file, JSON.stringify(saved));
  } finally {
    k.dispose();
  }
  const again = await createWasmKernels({ threads: 1, tuning: 'auto', tuningStore: await nodeTuningStore(file) });
  try {
    assert.equal(again.tuningSource, 'calibrated');
    assert.ok([4, 8, 16].includes(again.tuning.quantDecodeRows));
  } finally {
    again.dispose();
  }
});

test('bad settings are errors that name them', async () => {
  await assert.rejects(
    createWasmKernels({ threads: 1, tuning: { ...DEFAULT_TUNING, quantDecodeRows: 12 as 16 } }),
    /quantDecodeRows must be 4, 8 or 16, got 12/,
  );
  await assert.rejects(
    createWasmKernels({ threads: 1, tuning: { ...DEFAULT_TUNING, gemmMinTokensFloat: 1 } }),
    /gemmMinTokensFloat must be an integer in 3\.\.64/,
  );
  await assert.rejects(
    createWasmKernels({ threads: 1, tuning: 'fast' as 'auto' }),
    /tuning must be 'auto', 'default', 'calibrate' or a KernelTuning, got 'fast'/,
  );
  const saved = process.env.OPENELM_KERNEL_TUNING;
  process.env.OPENELM_KERNEL_TUNING = 'fastest';
  try {
    await assert.rejects(createWasmKernels({ threads: 1 }), /OPENELM_KERNEL_TUNING must be auto, default or calibrate, got 'fastest'/);
    // a caller's explicit choice wins over the environment
    const k = await createWasmKernels({ threads: 1, tuning: 'default' });
    assert.equal(k.tuningSource, 'default');
    k.dispose();
  } finally {
    if (saved === undefined) delete process.env.OPENELM_KERNEL_TUNING;
    else process.env.OPENELM_KERNEL_TUNING = saved;
  }
});
