/// <reference types="node" />

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createKernels, RefKernels, WasmKernels } from '../src/kernels/index.ts';

test('createKernels picks a backend by name', async () => {
  assert.ok((await createKernels('ref')) instanceof RefKernels);
  const wasm = await createKernels('wasm', { threads: 2 });
  assert.ok(wasm instanceof WasmKernels);
  assert.match(wasm.name, /^wasm-(relaxed-simd(-vnni)?|simd)-2t$/);
  wasm.dispose?.();
  await assert.rejects(createKernels('gpu' as never), /unknown kernels 'gpu'/);
});

test("the seam's read back: a copy of x[offset .. offset + n) on the CPU backends, unaffected by later ops", async () => {
  for (const kind of ['ref', 'wasm'] as const) {
    const k = await createKernels(kind, { threads: 1 });
    const x = k.f32(8);
    x.set([0, 1, 2, 3, 4, 5, 6, 7]);
    const got = await k.read(x, 3, 2);
    k.addInPlace(x, x, 8);
    assert.deepEqual(Array.from(got), [2, 3, 4], kind);
    assert.deepEqual(Array.from(await k.read(x, 2)), [0, 2], kind);
    k.dispose?.();
  }
});
