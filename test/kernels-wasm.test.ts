/// <reference types="node" />
// WasmKernels against the plain-TypeScript oracle (RefKernels), op by op, on random shapes that
// include odd sizes (not multiples of the SIMD width or of the 32-value quant block), every
// weight dtype, GQA head layouts, partly filled KV caches, and 1 and 2 threads.
//
// Tolerances (|wasm - ref| ≤ bound, per element):
// - float matmuls (f32/bf16/f16 weights): 1e-5 · Σ_j |w_j x_j|: f32 accumulation in a different
//   order than the ref's f64, whose error is bounded by (a few ulps) × the sum of magnitudes.
// - q8_0/q4_0 matmuls: the wasm kernel quantizes the activations to int8 per 32-block with scale
//   d = amax/127 (like llama.cpp), so each x_j moves by at most d_b/2 and the output by at most
//   Σ_j |w_j| · d_b(j)/2; that exact bound is asserted (plus the float term above). The weights
//   themselves are the same blocks in both backends: the ref dequantizes them exactly.
// - everything else (norms, rope, attention, activations): 2e-5 relative + 1e-6 absolute; the
//   SIMD exp is a degree-6 polynomial with ~1e-7 relative error.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RefKernels } from '../src/kernels/ref.ts';
import type { Activation, Kernels, Weight, WeightDType } from '../src/kernels/types.ts';
import { createWasmKernels, enableRelaxedSimd, type WasmKernels, wasmBinary } from '../src/kernels/wasm/wasm.ts';
import { ropeTables } from '../src/model/rope.ts';
import { checkMatmul as checkMatmulAgainstRef, pairedMatmul, sameWeights } from './helpers/kernel-check.ts';
import { rng } from './helpers/rng.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const DTYPES: WeightDType[] = ['f32', 'bf16', 'f16', 'q8_0', 'q4_0'];
const ref = new RefKernels();

// both builds, when this engine can run relaxed SIMD (Node 20 after createWasmKernels' flag switch)
await enableRelaxedSimd();
const relaxedHere = wasmBinary(true).relaxed;
const variants = relaxedHere ? [false, true] : [false];
test('relaxed SIMD is available on this Node (the V8 flag is switched on at run time where needed)', () => {
  assert.ok(relaxedHere);
});

const rand = rng(1234);
function fillRandom(a: Float32Array, scale = 1): Float32Array {
  for (let i = 0; i < a.length; i++) a[i] = (rand() * 2 - 1) * scale;
  return a;
}

function makeWeights(k: Kernels, dtype: WeightDType, rows: number, cols: number): { w: Weight; wr: Weight; dense: Float32Array } {
  return sameWeights(k, ref, dtype, rows, cols, rand);
}

function assertClose(actual: Float32Array, expected: Float32Array, len: number, what: string, rel = 2e-5, abs = 1e-6): void {
  for (let i = 0; i < len; i++) {
    const a = actual[i],
      e = expected[i];
    if (Number.isNaN(e) && Number.isNaN(a)) continue;
    if (!(Math.abs(a - e) <= rel * Math.abs(e) + abs)) assert.fail(`${what}: element ${i}: wasm ${a} vs ref ${e}`);
  }
}

/** k.matmul against ref.matmul (test/helpers/kernel-check.ts) for one weight shape and several token counts */
function checkMatmul(k: Kernels, dtype: WeightDType, rows: number, cols: number, ns: number[]): void {
  for (const c of checkMatmulAgainstRef(k, ref, dtype, rows, cols, ns, rand)) if (c.failure) assert.fail(c.failure);
}

async function withKernels(threads: number, relaxedSimd: boolean, fn: (k: WasmKernels) => void | Promise<void>): Promise<void> {
  // split even tiny ops, into as many chunks as they have rows / items
  const k = await createWasmKernels({ threads, relaxedSimd, minParallelWork: 0, chunkWork: 1 });
  try {
    await fn(k);
  } finally {
    k.dispose();
  }
}

for (const relaxed of variants) {
  for (const threads of [1, 2]) {
    const tag = `${relaxed ? 'relaxed' : 'simd'}, ${threads} thread${threads > 1 ? 's' : ''}`;

    test(`matmul, every dtype, odd shapes (${tag})`, async () => {
      await withKernels(threads, relaxed, (k) => {
        if (relaxed) assert.ok(k.relaxedSimd);
        // n ≥ 4 runs the prefill GEMMs (f16, q8_0, q4_0): row tiles of 12 (f16) / 8 (quantized)
        // with partial last tiles, token groups of 3 / 4 with partial last groups; f32 / bf16 tiles
        // of 2 rows × 4 tokens, the last row and the last 1-3 tokens apart; 1100 columns span three packed
        // column chunks (512 each), 260 tokens three token blocks (128 each); up to 64 tokens the
        // quantized GEMM runs tile by tile (gemm_quant_tiles), 70 and 260 in passes
        const cases: [number, number, number[]][] = [
          [1, 1, [1, 2, 3, 7, 33]],
          [7, 5, [1, 2, 3, 7, 33]],
          [13, 33, [1, 2, 3, 7, 33]],
          [37, 70, [1, 2, 3, 7, 33]],
          [64, 128, [1, 2, 3, 4, 7, 33]],
          [33, 257, [1, 2, 3, 7, 33]],
          [130, 96, [1, 2, 3, 5, 7, 33]],
          [41, 1100, [4, 6, 9]],
          [19, 37, [70, 260]],
        ];
        for (const dtype of DTYPES) for (const [rows, cols, ns] of cases) checkMatmul(k, dtype, rows, cols, ns);
      });
    });

    test(`argmax: random lengths, ties, NaN, infinities, signed zeros (${tag})`, async () => {
      await withKernels(threads, relaxed, (k) => {
        const cases: number[][] = [
          [1],
          [NaN, 5, 7],
          [3, NaN, 7, NaN],
          [-Infinity, -Infinity],
          [-0, 0, 0],
          [0, -0],
          [1, 2, 3, 3, 2, 1],
          [Infinity, 1, Infinity],
          Array.from({ length: 37 }, (_, i) => (i % 5 === 0 ? 9 : i % 9)),
        ];
        for (const n of [2, 3, 5, 16, 17, 33, 100, 32000]) {
          cases.push(Array.from({ length: n }, () => Math.round((rand() * 2 - 1) * 20) / 4)); // many ties
          cases.push(Array.from({ length: n }, () => rand()));
        }
        for (const c of cases) {
          const x = k.f32(c.length + 4);
          x.set(c);
          x.fill(1e30, c.length); // beyond n: must be ignored
          assert.equal(
            k.argmax(x, c.length),
            ref.argmax(Float32Array.from(c), c.length),
            `argmax of [${c.slice(0, 12).join(', ')}${c.length > 12 ? ', …' : ''}] (n = ${c.length})`,
          );
        }
      });
    });

    test(`softmax and selectDesc (sampling over the vocabulary): odd lengths, -inf, ties (${tag})`, async () => {
      await withKernels(threads, relaxed, (k) => {
        for (const n of [1, 3, 5, 17, 33, 1000, 32000]) {
          for (const [spread, t] of [
            [3, 0.7],
            [0.5, 1],
            [20, 2],
            [60, 0.5],
          ]) {
            const logits = Array.from({ length: n }, (_, i) => (i % 97 === 5 ? -Infinity : (rand() * 2 - 1) * spread));
            const x = k.f32(n + 3),
              e = Float32Array.from(logits);
            x.set(logits);
            x.fill(1e30, n); // beyond n: untouched
            const pmax = k.softmax(x, n, t),
              epmax = ref.softmax(e, n, t);
            assert.ok(Math.abs(pmax - epmax) <= 1e-6 * epmax, `softmax pmax n=${n} t=${t}: ${pmax} vs ${epmax}`);
            for (let i = 0; i < n; i++) {
              // relative error ~ |x/t - max| · 2^-24 (the f32 difference; the ref's is exact) ≤ 87 · 6e-8;
              // exp4 flushes what the reference keeps as ~1e-38 subnormals
              if (!(Math.abs(x[i] - e[i]) <= 1e-5 * e[i] + 1e-37)) assert.fail(`softmax n=${n} t=${t} [${i}]: wasm ${x[i]} vs ref ${e[i]}`);
            }
            assert.equal(x[n], Math.fround(1e30));
            for (const bad of [0, -1, NaN, Infinity]) assert.throws(() => k.softmax(x, n, bad), /temperature/);
            // selection on the same probabilities, with ties (rounded copies)
            const p = k.f32(n),
              pr = new Float32Array(n),
              idx = k.i32(n),
              idr = new Int32Array(n);
            for (let i = 0; i < n; i++) pr[i] = p[i] = i % 3 === 0 ? Math.round(e[i] * 64) / 64 : e[i];
            for (const tau of [0, 1e-9, epmax * 0.05, epmax / 2, epmax, 2]) {
              const c = k.selectDesc(p, n, tau, idx),
                cr = ref.selectDesc(pr, n, tau, idr);
              assert.equal(c, cr, `selectDesc count n=${n} tau=${tau}`);
              assert.deepEqual(Array.from(idx.subarray(0, c)), Array.from(idr.subarray(0, cr)), `selectDesc order n=${n} tau=${tau}`);
            }
          }
        }
      });
    });

    test(`embed, rmsnorm, addInPlace, ffnAct (${tag})`, async () => {
      await withKernels(threads, relaxed, (k) => {
        for (const dtype of DTYPES) {
          const { w, wr } = makeWeights(k, dtype, 11, 45);
          const ids = [3, 0, 10, 3],
            out = k.f32(4 * 45),
            expected = new Float32Array(4 * 45);
          k.embed(out, w, ids, 4);
          ref.embed(expected, wr, ids, 4);
          assert.deepEqual(out, expected, `embed ${dtype}`);
          assert.throws(() => k.embed(out, w, [11], 1), /outside the vocabulary/);
        }
        // every finite f16 bit pattern, subnormals included, through the SIMD decoder
        const halves = k.weight('f16', 1, 65536),
          halvesRef = ref.weight('f16', 1, 65536);
        for (let h = 0; h < 65536; h++) (halves.data as Uint16Array)[h] = (halvesRef.data as Uint16Array)[h] = (h & 0x7c00) === 0x7c00 ? 0 : h;
        const decoded = k.f32(65536),
          decodedRef = new Float32Array(65536);
        k.embed(decoded, halves, [0], 1);
        ref.embed(decodedRef, halvesRef, [0], 1);
        assert.deepEqual(decoded, decodedRef, 'f16 decoding');
        for (const [n, dim] of [
          [1, 1],
          [3, 7],
          [2, 64],
          [5, 129],
        ]) {
          const x = fillRandom(k.f32(n * dim), 4),
            wt = fillRandom(k.f32(dim)),
            out = k.f32(n * dim),
            expected = new Float32Array(n * dim);
          ref.rmsnorm(expected, Float32Array.from(x), Float32Array.from(wt), n, dim, 1e-6);
          k.rmsnorm(out, x, wt, n, dim, 1e-6);
          assertClose(out, expected, n * dim, `rmsnorm [${n}, ${dim}]`);
          k.rmsnorm(x, x, wt, n, dim, 1e-6); // in place
          assertClose(x, expected, n * dim, `rmsnorm in place [${n}, ${dim}]`);
          const y = fillRandom(k.f32(n * dim)),
            sum = Float32Array.from(x);
          ref.addInPlace(sum, y, n * dim);
          k.addInPlace(x, y, n * dim);
          assert.deepEqual(x, sum, `addInPlace ${n * dim}`);
        }
        const acts: Activation[] = ['swish', 'silu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'gelu_fast', 'quick_gelu', 'relu', 'sigmoid', 'tanh'];
        for (const act of acts) {
          for (const glu of [true, false]) {
            for (const [n, dim] of [
              [1, 3],
              [3, 13],
              [2, 64],
            ]) {
              const x = fillRandom(k.f32(n * dim * (glu ? 2 : 1)), 8);
              x[0] = 100;
              x[1] = -100;
              if (x.length > 2) x[2] = 1e-5;
              const out = k.f32(n * dim),
                expected = new Float32Array(n * dim);
              ref.ffnAct(expected, Float32Array.from(x), n, dim, act, glu);
              k.ffnAct(out, x, n, dim, act, glu);
              assertClose(out, expected, n * dim, `ffnAct ${act} glu=${glu} [${n}, ${dim}]`, 2e-5, 1e-6);
            }
          }
        }
      });
    });

    test(`headNormRope and attention with a partly filled cache, GQA (${tag})`, async () => {
      await withKernels(threads, relaxed, (k) => {
        const heads: [number, number][] = [
          [1, 1],
          [4, 2],
          [6, 2],
          [3, 3],
          [12, 3],
        ];
        for (const hd of [2, 6, 8, 64]) {
          const maxPos = 80;
          const { cos, sin } = ropeTables(hd, 10000, maxPos, (n) => k.f32(n));
          for (const [nQ, nKV] of heads) {
            const qkvDim = (nQ + 2 * nKV) * hd,
              kvDim = nKV * hd;
            const kc = fillRandom(k.f32(maxPos * kvDim)),
              vc = fillRandom(k.f32(maxPos * kvDim));
            const kr = Float32Array.from(kc),
              vr = Float32Array.from(vc);
            const qNorm = fillRandom(k.f32(hd)),
              kNorm = fillRandom(k.f32(hd));
            // a sequence of calls: the cache fills as a model's would (prefill, then decode steps)
            let pos0 = 5;
            for (const n of [1, 3, 7, 33, 1, 2]) {
              const s = { n, pos0, nQ, nKV, headDim: hd };
              const qkv = fillRandom(k.f32(n * qkvDim), 2),
                qr = Float32Array.from(qkv);
              const norms = n !== 3; // also without q/k norms
              ref.headNormRope(
                qr,
                s,
                norms ? Float32Array.from(qNorm) : null,
                norms ? Float32Array.from(kNorm) : null,
                1e-6,
                Float32Array.from(cos),
                Float32Array.from(sin),
              );
              k.headNormRope(qkv, s, norms ? qNorm : null, norms ? kNorm : null, 1e-6, cos, sin);
              assertClose(qkv, qr, n * qkvDim, `headNormRope hd=${hd} ${nQ}/${nKV} n=${n} pos0=${pos0}`);
              qkv.set(qr); // both attend from identical inputs
              const out = k.f32(n * nQ * hd),
                expected = new Float32Array(n * nQ * hd);
              ref.attention(expected, qr, kr, vr, s, new Float32Array(pos0 + n));
              k.attention(out, qkv, kc, vc, s, k.f32(1));
              assertClose(out, expected, n * nQ * hd, `attention hd=${hd} ${nQ}/${nKV} n=${n} pos0=${pos0}`);
              assert.deepEqual(kc.subarray(0, (pos0 + n) * kvDim), kr.subarray(0, (pos0 + n) * kvDim));
              assert.deepEqual(vc.subarray(0, (pos0 + n) * kvDim), vr.subarray(0, (pos0 + n) * kvDim));
              pos0 += n;
            }
          }
        }
      });
    });

    test(`attention over a long cache: several 256-position blocks merged online (${tag})`, async () => {
      await withKernels(threads, relaxed, (k) => {
        const hd = 64,
          maxPos = 700;
        for (const [nQ, nKV] of [
          [4, 1],
          [6, 3],
        ] as [number, number][]) {
          const qkvDim = (nQ + 2 * nKV) * hd,
            kvDim = nKV * hd;
          const kc = k.f32(maxPos * kvDim),
            vc = k.f32(maxPos * kvDim);
          const kr = new Float32Array(maxPos * kvDim),
            vr = new Float32Array(maxPos * kvDim);
          let pos0 = 0;
          // a prompt longer than a block, decode steps across the 512 boundary, a chunk spanning blocks
          for (const n of [300, 1, 200, 9, 1, 3, 90, 1]) {
            const s = { n, pos0, nQ, nKV, headDim: hd };
            const qkv = fillRandom(k.f32(n * qkvDim), 3),
              qr = Float32Array.from(qkv);
            const out = k.f32(n * nQ * hd),
              expected = new Float32Array(n * nQ * hd);
            ref.attention(expected, qr, kr, vr, s, new Float32Array(pos0 + n));
            k.attention(out, qkv, kc, vc, s, k.f32(1));
            // out is a convex combination of V rows (|v| ≤ 1) summed in f32 over up to 700
            // positions: an absolute bound, as cancellation makes small outputs relatively noisy
            assertClose(out, expected, n * nQ * hd, `attention ${nQ}/${nKV} n=${n} pos0=${pos0}`, 2e-5, 1e-5);
            pos0 += n;
          }
        }
      });
    });
  }
}

test('f16 matmul over every finite f16 pattern, subnormals included, with activations from 1e-6 to 1e6', async () => {
  // the f16 kernel skips the per-weight rebias (×2^112) and scales activations by 2^64 and sums by 2^48
  await withKernels(2, false, (k) => {
    const rows = 8,
      cols = 30720; // 8 × 30720 = 245760 ≥ 3 × 65536: every finite pattern in several rows
    const w = k.weight('f16', rows, cols),
      wr = ref.weight('f16', rows, cols);
    const d = w.data as Uint16Array;
    for (let i = 0; i < d.length; i++) {
      const h = (i * 7) & 0xffff;
      d[i] = (h & 0x7c00) === 0x7c00 ? 0 : h;
    }
    (wr.data as Uint16Array).set(d);
    for (const n of [1, 5]) {
      const x = k.f32(n * cols);
      for (let i = 0; i < x.length; i++) x[i] = (rand() * 2 - 1) * 10 ** (((i * 13) % 13) - 6);
      const out = k.f32(n * rows),
        expected = new Float32Array(n * rows);
      k.matmul(out, x, w, n);
      ref.matmul(expected, Float32Array.from(x), wr, n);
      const row = new Float32Array(cols);
      for (let r = 0; r < rows; r++) {
        ref.embed(row, wr, [r], 1);
        for (let t = 0; t < n; t++) {
          let mag = 0;
          for (let j = 0; j < cols; j++) mag += Math.abs(row[j] * x[t * cols + j]);
          const a = out[t * rows + r],
            e = expected[t * rows + r];
          assert.ok(Math.abs(a - e) <= 1e-5 * mag + 1e-6, `f16 row ${r} token ${t}: wasm ${a} vs ref ${e} (Σ|wx| ${mag})`);
        }
      }
      // the GEMM (5 tokens) gives each token the one-token kernel's bits, subnormal halves included
      for (let t = 0; t < n && n > 1; t++) {
        const alone = k.f32(rows);
        k.matmul(alone, x.subarray(t * cols, (t + 1) * cols), w, 1);
        assert.deepEqual(out.subarray(t * rows, (t + 1) * rows), alone, `token ${t} of ${n}`);
      }
    }
  });
});

test('a per-thread scratch too small for the GEMMs: prompts fall back to the matrix × vector kernels', async () => {
  const k = await createWasmKernels({ threads: 2, threadScratch: 64 << 10 });
  const kd = await createWasmKernels({ threads: 1 });
  try {
    assert.equal(k.prefillGemm, false);
    // the defaults must leave room for the GEMMs (a kernel change that outgrows the scratch would
    // otherwise silently fall back to the slow path)
    assert.equal(kd.prefillGemm, true);
    for (const dtype of DTYPES) checkMatmul(k, dtype, 37, 300, [4, 9]);
    // f16's tokens run the one-token kernel, its reordered x made on the calling thread
    checkMatmul(k, 'f16', 37, 300, [1]);
    checkMatmul(k, 'f16', 9, 17000, [1]);
  } finally {
    k.dispose();
    kd.dispose();
  }
});

test('default thresholds and default thread count give the same results', async () => {
  const k = await createWasmKernels({ threads: 2 });
  const k1 = await createWasmKernels({ threads: 1 });
  const kd = await createWasmKernels();
  try {
    assert.ok(kd.threads >= 1);
    for (const dtype of DTYPES) {
      const rows = 512,
        cols = 300;
      const { w, dense } = makeWeights(k, dtype, rows, cols);
      const w1 = k1.weight(dtype, rows, cols);
      w1.data.set(w.data as never);
      const x = fillRandom(k.f32(3 * cols)),
        x1 = k1.f32(3 * cols);
      x1.set(x);
      const out = k.f32(3 * rows),
        out1 = k1.f32(3 * rows);
      k.matmul(out, x, w, 3);
      k1.matmul(out1, x1, w1, 3);
      assert.deepEqual(out, out1, `${dtype}: the split must not change the result`);
      assert.equal(dense.length, rows * cols);
    }
  } finally {
    k.dispose();
    k1.dispose();
    kd.dispose();
  }
});

test('views survive memory growth; foreign arrays are rejected', async () => {
  await withKernels(2, false, (k) => {
    const before = k.memory.buffer.byteLength;
    const x = fillRandom(k.f32(64)),
      w = k.weight('f32', 64, 64);
    (w.data as Float32Array).fill(1 / 64);
    const big = k.f32((before / 4) * 2); // forces the memory to grow
    assert.ok(k.memory.buffer.byteLength > before);
    big[big.length - 1] = 1;
    x[0] = 1000; // written through a view made before the growth
    const out = k.f32(64);
    k.matmul(out, x, w, 1);
    let mean = 0;
    for (let i = 0; i < 64; i++) mean += x[i] / 64;
    assertClose(out, new Float32Array(64).fill(mean), 64, 'matmul through pre-growth views', 1e-5, 1e-5);
    assert.throws(() => k.addInPlace(new Float32Array(4), out, 4), /argument 'out' is not memory of this backend/);
  });
});

test('ops allocate nothing per call: memory is stable after warm-up', async () => {
  await withKernels(2, false, (k) => {
    const d = 96,
      ffn = 160,
      n = 4,
      nQ = 4,
      nKV = 2,
      hd = 16,
      maxPos = 64;
    const ws = DTYPES.map((dt) => makeWeights(k, dt, ffn, d).w);
    const x = fillRandom(k.f32(n * d)),
      out = k.f32(n * ffn),
      nw = fillRandom(k.f32(d));
    const qkv = fillRandom(k.f32(n * (nQ + 2 * nKV) * hd)),
      att = k.f32(n * nQ * hd);
    const kc = k.f32(maxPos * nKV * hd),
      vc = k.f32(maxPos * nKV * hd),
      { cos, sin } = ropeTables(hd, 10000, maxPos, (m) => k.f32(m));
    const round = (): void => {
      for (const w of ws) k.matmul(out, x, w, n);
      k.rmsnorm(x, x, nw, n, d, 1e-6);
      const s = { n, pos0: 0, nQ, nKV, headDim: hd };
      k.headNormRope(qkv, s, nw.subarray(0, hd), null, 1e-6, cos, sin);
      k.attention(att, qkv, kc, vc, s, att);
      k.ffnAct(out, out, n, ffn / 2, 'silu', true);
      k.addInPlace(x, x, n * d);
      k.embed(x, ws[3], [1, 2, 3, 4], n);
    };
    round();
    const used = k.usedBytes,
      size = k.memory.buffer.byteLength;
    for (let i = 0; i < 200; i++) round();
    assert.equal(k.usedBytes, used);
    assert.equal(k.memory.buffer.byteLength, size);
  });
});

test('the committed wasm build is current (rebuild gives the same bytes)', () => {
  const out = mkdtempSync(join(tmpdir(), 'openelm-wasm-'));
  try {
    const r = spawnSync(process.execPath, [join(root, 'src/kernels/wasm/build.mjs'), out], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    for (const file of ['kernels-simd.wasm', 'kernels-relaxed.wasm', 'kernels-wasm.ts']) {
      const committed = readFileSync(join(root, 'src/kernels/wasm/build', file));
      assert.ok(committed.equals(readFileSync(join(out, file))), `src/kernels/wasm/build/${file} is stale: run npm run build:wasm`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test('readPass (bench:memory) reads every byte: its checksum equals the same sum done in JavaScript', async () => {
  const k = await createWasmKernels({ threads: 2 });
  try {
    const buf = k.f32((3 * 65536) / 4);
    const words = new Int32Array(buf.buffer, buf.byteOffset, buf.length);
    for (let i = 0; i < words.length; i++) words[i] = Math.imul(i + 1, 0x9e3779b1);
    // read_sum: per 128 bytes, the 16 words of the first half xor the 16 of the second, all summed (i32)
    let want = 0;
    for (let p = 0; p < words.length; p += 32) for (let j = 0; j < 16; j++) want = (want + (words[p + j] ^ words[p + 16 + j])) | 0;
    assert.equal(k.readPass(buf), want);
    words[12345] ^= 1 << 7; // one changed byte changes the checksum
    assert.notEqual(k.readPass(buf), want);
    assert.throws(() => k.readPass(k.f32(1000)), /not a multiple of 65536/);
  } finally {
    k.dispose?.();
  }
});

test('a matvec of more rows than the pool has granules (> 32766 granules on 2 threads) is split, not refused', async () => {
  // the finest split: every granule a claim of its own
  const k = await createWasmKernels({ threads: 2, minParallelWork: 0, chunkWork: 1 });
  try {
    for (const [dtype, rows, cols] of [
      ['f32', 300_001, 8], // granules of 8 rows: 37,501
      ['q8_0', 600_000, 32], // granules of 16 rows: 37,500
    ] as [WeightDType, number, number][]) {
      const { w, wr } = makeWeights(k, dtype, rows, cols);
      const x = fillRandom(k.f32(cols)),
        out = k.f32(rows),
        expected = new Float32Array(rows);
      k.matmul(out, x, w, 1);
      ref.matmul(expected, Float32Array.from(x), wr, 1);
      // every row was computed (none left at 0), each close to the reference
      for (let r = 0; r < rows; r++) {
        const tol = dtype === 'q8_0' ? 0.05 * (1 + Math.abs(expected[r])) : 1e-4 * (1 + Math.abs(expected[r]));
        if (!(Math.abs(out[r] - expected[r]) <= tol)) assert.fail(`${dtype} row ${r}: ${out[r]} vs ref ${expected[r]}`);
      }
    }
  } finally {
    k.dispose();
  }
});

test('tokens at once (a batch of decoding sequences, a prompt) give each token exactly what it gets alone', async () => {
  // q8_0 / q4_0: every path (the one-token kernel token by token, the GEMM tile by tile and in
  // passes) computes a row's sum the same way (kernels.as groupBlock), so any batch matches solo
  // decoding bit for bit; f32 / bf16 likewise (the one-token kernel's order in tiles), f16 too
  // (the GEMM sums in the one-token kernel's pairs; 8 and 264 columns: no tail, a tail of 3)
  for (const relaxedSimd of [true, false]) {
    const k = await createWasmKernels({ threads: 2, relaxedSimd, tuning: 'default', minParallelWork: 0, chunkWork: 1 });
    try {
      const rand = rng(11);
      for (const [dtype, rows, cols] of [
        ['q8_0', 1000, 160],
        ['q4_0', 531, 96],
        ['bf16', 700, 72],
        ['bf16', 301, 77],
        ['f16', 333, 264],
        ['f16', 40, 1283],
        ['f16', 7, 8],
        ['f32', 250, 40],
        ['f32', 99, 44],
      ] as [WeightDType, number, number][]) {
        const { w } = sameWeights(k, new RefKernels(), dtype, rows, cols, rand);
        for (const n of [2, 3, 5, 6, 7, 8, 33, 70]) {
          const x = k.f32(n * cols);
          for (let i = 0; i < x.length; i++) x[i] = rand() * 2 - 1;
          const out = k.f32(n * rows);
          k.matmul(out, x, w, n);
          for (let t = 0; t < n; t++) {
            const alone = k.f32(rows);
            k.matmul(alone, x.subarray(t * cols, (t + 1) * cols), w, 1);
            assert.deepEqual(out.subarray(t * rows, (t + 1) * rows), alone, `${dtype} ${relaxedSimd ? 'relaxed' : 'simd'}: token ${t} of ${n}`);
          }
        }
      }
    } finally {
      k.dispose();
    }
  }
});

test('the quantized GEMM for a few tokens (tile by tile) gives exactly what its pass-by-chunk form gives', async () => {
  // up to 64 tokens gemm_quant_tiles runs when its packed activations fit the thread's scratch; a
  // scratch too small for them makes the same calls run gemm_quant
  for (const relaxedSimd of [true, false]) {
    const opts = { threads: 2, relaxedSimd, tuning: 'default', minParallelWork: 0, chunkWork: 1 } as const;
    const tiles = await createWasmKernels({ ...opts, threadScratch: 1 << 20 });
    const passes = await createWasmKernels({ ...opts, threadScratch: 420 << 10 });
    try {
      assert.ok(passes.prefillGemm, 'the smaller scratch still runs the GEMMs');
      const rand = rng(12);
      for (const [dtype, rows, cols, n] of [
        ['q8_0', 203, 5120, 33],
        ['q8_0', 64, 5120, 64],
        ['q4_0', 37, 3000, 64],
        ['q4_0', 150, 4100, 47],
      ] as [WeightDType, number, number, number][]) {
        const kind = dtype === 'q8_0' ? 3 : 4,
          what = `${dtype} ${rows}x${cols}, ${n} tokens (${relaxedSimd ? 'relaxed' : 'simd'})`;
        assert.ok(tiles.gemmTiles(kind, n, cols) && !passes.gemmTiles(kind, n, cols), `${what}: one runs tiles, the other passes`);
        const run = pairedMatmul(tiles, passes, new RefKernels(), dtype, rows, cols, rand);
        const [out, out2] = run(
          Float32Array.from({ length: n * cols }, () => rand() * 2 - 1),
          n,
        );
        assert.deepEqual(out, out2, what);
      }
    } finally {
      tiles.dispose();
      passes.dispose();
    }
  }
});
