// --device on the commands that decode (generate, chat, bench): where the forward pass runs.
//   wasm    the CPU: WebAssembly kernels on worker threads (or --backend ref), the default
//   webgpu  the GPU: WGSL kernels through Dawn (the optional npm package `webgpu`), weights
//           uploaded once (src/kernels/webgpu/node.ts picks the adapter)
//   auto    webgpu when the adapter is a hardware GPU, else wasm (a software adapter such as
//           SwiftShader is far slower than the wasm kernels)
import { createNodeWebGpu } from '../kernels/webgpu/node.ts';
import type { WebGpuKernels } from '../kernels/webgpu/webgpu.ts';
import { type Options, UsageError } from './args.ts';

export const DEVICE_OPTION: Options = { device: { type: 'string' } };

export const DEVICE_HELP = `      --device D             wasm (the CPU, default), webgpu (the GPU through Dawn, the optional
                             npm package "webgpu": a Vulkan driver, else Chromium's SwiftShader
                             on the CPU) or auto (webgpu on a hardware GPU, else wasm)`;

export type Device = 'wasm' | 'webgpu' | 'auto';

export function parseDevice(v: Record<string, unknown>): Device {
  const d = (v.device as string | undefined) ?? 'wasm';
  if (d !== 'wasm' && d !== 'webgpu' && d !== 'auto') throw new UsageError(`--device must be wasm, webgpu or auto, got "${d}"`);
  return d;
}

/** Flags the GPU path does not do: refused by name rather than ignored. */
const CPU_ONLY: Record<string, string> = {
  backend: 'chooses the CPU kernels',
  threads: 'sets the CPU worker threads',
  adapter: 'LoRA / DoRA terms are not in the GPU forward pass yet (openelm merge folds an adapter into the weights)',
  'draft-model': 'speculative decoding runs on the CPU only',
  'prompt-lookup': 'speculative decoding runs on the CPU only',
};

/**
 * The WebGPU device the flags ask for, or null for the CPU. `--device webgpu` fails with the
 * loader's message when there is no adapter; `auto` falls back to wasm (saying why unless quiet).
 */
export async function openDevice(v: Record<string, unknown>, quiet = false): Promise<WebGpuKernels | null> {
  const device = parseDevice(v);
  if (device === 'wasm') return null;
  if (device === 'webgpu') {
    for (const [flag, why] of Object.entries(CPU_ONLY)) {
      if (v[flag] !== undefined) throw new UsageError(`--${flag} does not apply with --device webgpu (it ${why}); drop it or use --device wasm`);
    }
  }
  let gpu: WebGpuKernels;
  try {
    gpu = await createNodeWebGpu();
  } catch (e) {
    if (device === 'webgpu') throw e;
    if (!quiet) process.stderr.write(`device: wasm (no WebGPU: ${(e as Error).message.replace(/; --device wasm.*$/, '')})\n`);
    return null;
  }
  if (device === 'auto' && (gpu.software || Object.keys(CPU_ONLY).some((f) => v[f] !== undefined))) {
    if (!quiet)
      process.stderr.write(
        `device: wasm (${gpu.software ? `the WebGPU adapter is software, ${gpu.adapterName}: WebAssembly is faster` : 'a CPU-only flag was given'})\n`,
      );
    gpu.dispose();
    return null;
  }
  if (!quiet) process.stderr.write(`device: webgpu on ${gpu.adapterName}\n`);
  return gpu;
}

/** `device` and `adapter` fields of --json output. */
export function deviceJson(gpu: WebGpuKernels | null): { device: 'wasm' | 'webgpu'; adapter?: string; driver?: string } {
  return gpu ? { device: 'webgpu', adapter: gpu.adapterName, driver: gpu.driver } : { device: 'wasm' };
}
