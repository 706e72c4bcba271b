/// <reference types="node" />

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createKernels, RefKernels, WasmKernels } from '../src/kernels/index.ts';

test('createKernels picks a backend by name', async () => {
  assert.ok((await createKernels('ref')) instanceof RefKernels);
  const wasm = await createKernels('wasm', { threads: 2 });
  assert.ok(wasm instanceof WasmKernels);
  assert.match(wasm.name, /^wasm-(relaxed-)?simd-2t$/);
  wasm.dispose?.();
  await assert.rejects(createKernels('gpu' as never), /unknown kernels 'gpu'/);
});
