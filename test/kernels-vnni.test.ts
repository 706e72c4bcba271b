/// <reference types="node" />
// The VNNI build of the wasm kernels (kernels.as with VNNI: the q8_0 / q4_0 kernels on the fused
// int8 dot product, i32x4.relaxed_dot_i8x16_i7x16_add_s taken as VNNI's exact u8 × s8) against the
// relaxed build, bit for bit: both compute the same integer sums per 32-block, so every quantized
// matmul (the one-token kernel, the GEMM tile by tile and in passes) must give the same floats.
//
// The VNNI build only runs where wasm.ts's probe (vnniDotProduct) finds that dot product: V8 13+
// (Node 24+) on a CPU with AVX-VNNI. Node 20's V8 gets the fused sums wrong, so under Node 20 this
// file re-runs itself under a newer Node when one is at $OPENELM_VNNI_NODE or .ci/node/bin/node
// (.ci/run installs Node 24 there from the npm registry); with neither, or on a CPU without
// AVX-VNNI (the newer Node has no VNNI dot product there either), it is skipped.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeRow, RefKernels } from '../src/kernels/ref.ts';
import type { WeightDType } from '../src/kernels/types.ts';
import { createWasmKernels, enableRelaxedSimd, vnniDotProduct } from '../src/kernels/wasm/wasm.ts';
import { pairedMatmul } from './helpers/kernel-check.ts';
import { rng } from './helpers/rng.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
await enableRelaxedSimd();
const here = vnniDotProduct();
const child = process.env.OPENELM_VNNI_CHILD === '1';
const otherNode = process.env.OPENELM_VNNI_NODE || (existsSync(`${root}.ci/node/bin/node`) ? `${root}.ci/node/bin/node` : '');

test('the VNNI build gives the relaxed build its exact results (q8_0, q4_0; one token, tiles, passes; q8_0 stored in tiles, read back by embed, matmulGradInput and the TS decodeRow)', {
  skip: !here && (child || !otherNode) ? skipReason() : false,
}, async (t) => {
  if (!here) {
    // Node 20 here: the same file under the newer Node, which must find the VNNI dot product
    const r = spawnSync(otherNode, ['--import', 'tsx', '--test', '--test-reporter=spec', fileURLToPath(import.meta.url)], {
      cwd: root,
      // (without the runner's NODE_TEST_CONTEXT, which would make the child report to this runner, not to stdout)
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, OPENELM_VNNI_CHILD: '1' },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, `${otherNode} failed:\n${r.stdout}\n${r.stderr}`);
    // a CPU without AVX-VNNI: that Node has no VNNI dot product either, and says so
    const skipped = /# SKIP (.*)/.exec(r.stdout);
    if (skipped) return t.skip(`under ${otherNode}: ${skipped[1]}`);
    assert.match(r.stdout, /✔ the VNNI build gives/, `the check did not run under ${otherNode}:\n${r.stdout}`);
    t.diagnostic(`ran under ${otherNode}`);
    return;
  }
  const opts = { threads: 2, tuning: 'default', minParallelWork: 0, chunkWork: 1 } as const;
  // 1 MiB: up to 64 tokens tile by tile; 420 KiB: the GEMM in passes over column chunks; q8_0
  // weights as they are, and stored in tiles (`tiles`), split finely between the threads and (so
  // that one call covers many tiles: decodeTiles' tiles side by side) as they are by default
  for (const [threadScratch, tiles, chunkWork] of [
    [1 << 20, false, 1],
    [420 << 10, false, 1],
    [1 << 20, true, 1],
    [420 << 10, true, 1],
    [1 << 20, true, 65536],
  ] as const) {
    const relaxed = await createWasmKernels({ ...opts, chunkWork, threadScratch, vnni: false });
    const vnni = await createWasmKernels({ ...opts, chunkWork, threadScratch, tiles });
    try {
      assert.ok(vnni.vnni && !relaxed.vnni && relaxed.relaxedSimd, `${vnni.name} against ${relaxed.name}`);
      const rand = rng(21);
      for (const [dtype, rows, cols] of [
        ['q8_0', 203, 160],
        ['q8_0', 64, 5120],
        ['q8_0', 37, 77],
        ['q4_0', 150, 4100],
        ['q4_0', 531, 96],
        ['q4_0', 9, 33],
      ] as [WeightDType, number, number][]) {
        const run = pairedMatmul(relaxed, vnni, new RefKernels(), dtype, rows, cols, rand);
        for (const n of [1, 2, 3, 4, 5, 8, 33, 70]) {
          // activations of every sign and size, whole blocks of zeros and of one value included
          const x = Float32Array.from({ length: n * cols }, (_, i) => (i % 97 < 32 ? 0 : i % 89 < 32 ? -0.75 : (rand() * 2 - 1) * 10 ** (rand() * 4 - 2)));
          const [out, out2] = run(x, n);
          assert.deepEqual(out2, out, `${dtype} ${rows}x${cols}, ${n} tokens, scratch ${threadScratch >> 10} KiB${tiles ? ', tiles' : ''}`);
        }
        const what = `${dtype} ${rows}x${cols}${tiles ? ', tiles' : ''}`;
        if (dtype === 'q8_0' && tiles) {
          // the VNNI build has stored it in 8-row tiles (kernels.as repack_q8): other bytes, all in
          // the whole tiles, the rows after them as they were; and it reads them back as rows alike
          const a = run.w.data as Uint8Array,
            b = run.w2.data as Uint8Array,
            tiled = (rows & ~7) * (a.length / rows);
          assert.notDeepEqual(b.subarray(0, tiled), a.subarray(0, tiled), `${what}: tiled`);
          assert.deepEqual(b.subarray(tiled), a.subarray(tiled), `${what}: the rows after the last whole tile`);
          // and says so, for the TS readers of the bytes (ref.ts decodeRow: DoRA's row norms)
          assert.equal(run.w2.layout, 'tiles8');
          const row = new Float32Array(cols),
            row2 = new Float32Array(cols);
          for (let r = 0; r < rows; r++) {
            decodeRow(run.w, r, row, new Uint32Array(row.buffer));
            decodeRow(run.w2, r, row2, new Uint32Array(row2.buffer));
            assert.deepEqual(row2, row, `${what}: decodeRow ${r}`);
          }
        }
        const ids = Array.from({ length: rows }, (_, i) => i),
          e = relaxed.f32(rows * cols),
          e2 = vnni.f32(rows * cols);
        relaxed.embed(e, run.w, ids, rows);
        vnni.embed(e2, run.w2, ids, rows);
        assert.deepEqual(e2, e, `${what}: embed, every row`);
        const dy = relaxed.f32(3 * rows),
          dy2 = vnni.f32(3 * rows),
          dx = relaxed.f32(3 * cols),
          dx2 = vnni.f32(3 * cols);
        for (let i = 0; i < dy.length; i++) dy[i] = dy2[i] = rand() * 2 - 1;
        relaxed.matmulGradInput(dx, dy, run.w, 3);
        vnni.matmulGradInput(dx2, dy2, run.w2, 3);
        assert.deepEqual(dx2, dx, `${what}: matmulGradInput`);
      }
    } finally {
      relaxed.dispose();
      vnni.dispose();
    }
  }
});

function skipReason(): string {
  if (child) return `this engine (Node ${process.version}) has no VNNI dot product: a CPU without AVX-VNNI?`;
  return `Node ${process.version} has no VNNI dot product and no newer Node is at $OPENELM_VNNI_NODE or .ci/node/bin/node`;
}
