// The kernel backends behind the `Kernels` seam (types.ts):
//   ref   plain TypeScript, the readable oracle (ref.ts)
//   wasm  WebAssembly SIMD on worker threads (wasm/wasm.ts), the fast one
//
//   const kernels = await createKernels('wasm', { threads: 2 });
//   ... OpenELM.load(src, { kernels }) ...
//   kernels.dispose?.();

import { RefKernels } from './ref.ts';
import type { Kernels } from './types.ts';
import { createWasmKernels, type WasmKernelsOptions } from './wasm/wasm.ts';

export { RefKernels } from './ref.ts';
export type * from './types.ts';
export { createWasmKernels, WasmKernels, type WasmKernelsOptions } from './wasm/wasm.ts';

export type KernelsKind = 'ref' | 'wasm';

/** A backend by name; options apply to 'wasm' (threads, relaxedSimd, ...) and are ignored by 'ref'. */
export async function createKernels(kind: KernelsKind, opts: WasmKernelsOptions = {}): Promise<Kernels> {
  switch (kind) {
    case 'ref':
      return new RefKernels();
    case 'wasm':
      return createWasmKernels(opts);
    default:
      throw new Error(`createKernels: unknown kernels '${kind as string}', expected 'ref' or 'wasm'`);
  }
}
