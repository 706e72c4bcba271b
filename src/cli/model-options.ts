// Options every model-running command shares, and opening the model they name.

import { BUILTIN_MODEL, builtinModelDir } from '../builtin.ts';
import { normalizeDType } from '../io/dtype.ts';
import type { DownloadProgress } from '../io/hub.ts';
import { ProgressBar } from '../io/progress.ts';
import type { WebGpuKernels } from '../kernels/webgpu/webgpu.ts';
import {
  type LoadedGpuModel,
  type LoadedModel,
  type LoadedOpenELM,
  LoadOptionError,
  type LoadOptions,
  loadGpuModel,
  loadModel,
  loadOpenELM,
  maxThreads,
} from '../load.ts';
import type { LoadDType } from '../model/weights.ts';
import { num, type Options, UsageError } from './args.ts';

export const MODEL_OPTIONS: Options = {
  model: { type: 'string', short: 'm' },
  dtype: { type: 'string' },
  threads: { type: 'string', short: 't' },
  backend: { type: 'string' },
  context: { type: 'string' },
  revision: { type: 'string' },
  offline: { type: 'boolean' },
};

export const MODEL_HELP = `Model options:
  -m, --model M        checkpoint folder or hub repo id (default: $OPENELM_MODEL, else the
                       built-in model trained by openelm itself, see 'openelm inspect builtin')
      --dtype D        weight storage: auto (as stored), f32, bf16, f16, q8 (q8_0) or q4 (q4_0)
                       (default auto)
  -t, --threads N      worker threads for the math (default: all cores; at most 4 × cores)
      --backend B      wasm (fast, default) or ref (plain TypeScript reference)
      --context N      KV cache size in tokens (default: the model's max_context_length)
      --revision R     hub revision (default main)
      --offline        use only the local hub cache`;

/** --dtype of the model-running commands: auto or a dtype in any spelling (q8 = q8_0, q4 = q4_0). */
export function parseDType(v: string | undefined, flag = 'dtype'): LoadDType {
  if (v === undefined) return 'auto';
  const d = normalizeDType(v, true);
  if (!d) throw new UsageError(`--${flag} must be one of auto, f32, bf16, f16, q8 (q8_0), q4 (q4_0); got "${v}"`);
  return d;
}

/** --threads: 1 to 4 × the cores (each worker costs memory; more than the cores only slows down). */
export function parseThreads(v: string | undefined): number | undefined {
  return num(v, 'threads', { int: true, min: 1, max: maxThreads() });
}

export function modelSource(values: Record<string, unknown>): string {
  const m = (values.model as string | undefined) ?? process.env.OPENELM_MODEL;
  if (m && m !== BUILTIN_MODEL) return m;
  const builtin = builtinModelDir();
  if (!builtin)
    throw new UsageError(
      'no model given and the built-in model is missing from this installation: pass --model <folder or hub repo id> (or set OPENELM_MODEL)',
    );
  return builtin;
}

/** A per-file download progress bar for resolveModel's onProgress (one bar per file, in turn). */
export function downloadBars(): (p: DownloadProgress) => void {
  let bar: ProgressBar | undefined;
  return (p) => {
    bar ??= new ProgressBar({ label: p.file, total: p.total, unit: 'bytes' });
    bar.update(p.done);
    if (p.done >= p.total) {
      bar.finish();
      bar = undefined;
    }
  };
}

export async function openModel(values: Record<string, unknown>, quiet = false): Promise<LoadedModel> {
  return asFlagError(values, () => loadModel(modelSource(values), loadOptions(values, quiet)));
}

/** openModel without the tokenizer, for commands that work on token ids only (bench). */
export async function openModelOnly(values: Record<string, unknown>, quiet = false): Promise<LoadedOpenELM> {
  return asFlagError(values, () => loadOpenELM(modelSource(values), loadOptions(values, quiet)));
}

/** openModel onto a WebGPU device: the weights go to the GPU tensor by tensor (never all in CPU memory). */
export async function openGpuModel(values: Record<string, unknown>, gpu: WebGpuKernels, quiet = false): Promise<LoadedGpuModel> {
  return asFlagError(values, () => loadGpuModel(modelSource(values), gpu, loadOptions(values, quiet)));
}

/** A library option error caused by a flag the user gave becomes a usage error naming the flag (exit 2). */
async function asFlagError<T>(values: Record<string, unknown>, f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof LoadOptionError && e.option === 'contextLength' && values.context !== undefined && /at most max_context_length/.test(e.message)) {
      throw new UsageError(`--context ${e.message.replace(/^contextLength /, '')}`);
    }
    throw e;
  }
}

function loadOptions(values: Record<string, unknown>, quiet: boolean): LoadOptions {
  const backend = (values.backend as string | undefined) ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'ref') throw new UsageError(`--backend must be wasm or ref, got "${backend}"`);
  return {
    dtype: parseDType(values.dtype as string | undefined),
    threads: parseThreads(values.threads as string | undefined),
    backend,
    contextLength: num(values.context as string | undefined, 'context', { int: true, min: 1 }),
    revision: values.revision as string | undefined,
    offline: values.offline as boolean | undefined,
    onProgress: quiet ? undefined : downloadBars(),
  };
}
