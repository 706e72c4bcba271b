// Options every model-running command shares, and opening the model they name.
import { num, UsageError, type Options } from './args.ts';
import { BUILTIN_MODEL, builtinModelDir } from '../builtin.ts';
import { loadModel, loadOpenELM, type LoadedModel, type LoadedOpenELM, type LoadOptions } from '../load.ts';
import type { LoadDType } from '../model/weights.ts';
import { ProgressBar } from '../io/progress.ts';
import type { DownloadProgress } from '../io/hub.ts';

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
      --dtype D        weight storage: auto (as stored), f32, bf16, f16, q8 or q4 (default auto)
  -t, --threads N      worker threads for the math (default: all cores)
      --backend B      wasm (fast, default) or ref (plain TypeScript reference)
      --context N      KV cache size in tokens (default: the model's max_context_length)
      --revision R     hub revision (default main)
      --offline        use only the local hub cache`;

const DTYPES: Record<string, LoadDType> = { auto: 'auto', f32: 'f32', bf16: 'bf16', f16: 'f16', q8: 'q8_0', q8_0: 'q8_0', q4: 'q4_0', q4_0: 'q4_0' };

export function parseDType(v: string | undefined): LoadDType {
  if (v === undefined) return 'auto';
  const d = DTYPES[v.toLowerCase()];
  if (!d) throw new UsageError(`--dtype must be one of auto, f32, bf16, f16, q8, q4; got "${v}"`);
  return d;
}

export function modelSource(values: Record<string, unknown>): string {
  const m = (values.model as string | undefined) ?? process.env.OPENELM_MODEL;
  if (m && m !== BUILTIN_MODEL) return m;
  const builtin = builtinModelDir();
  if (!builtin) throw new UsageError('no model given and the built-in model is missing from this installation: pass --model <folder or hub repo id> (or set OPENELM_MODEL)');
  return builtin;
}

/** A per-file download progress bar for resolveModel's onProgress (one bar per file, in turn). */
export function downloadBars(): (p: DownloadProgress) => void {
  let bar: ProgressBar | undefined;
  return (p) => {
    bar ??= new ProgressBar({ label: p.file, total: p.total, unit: 'bytes' });
    bar.update(p.done);
    if (p.done >= p.total) { bar.finish(); bar = undefined; }
  };
}

export async function openModel(values: Record<string, unknown>, quiet = false): Promise<LoadedModel> {
  return loadModel(modelSource(values), loadOptions(values, quiet));
}

/** openModel without the tokenizer, for commands that work on token ids only (bench). */
export async function openModelOnly(values: Record<string, unknown>, quiet = false): Promise<LoadedOpenELM> {
  return loadOpenELM(modelSource(values), loadOptions(values, quiet));
}

function loadOptions(values: Record<string, unknown>, quiet: boolean): LoadOptions {
  const backend = (values.backend as string | undefined) ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'ref') throw new UsageError(`--backend must be wasm or ref, got "${backend}"`);
  return {
    dtype: parseDType(values.dtype as string | undefined),
    threads: num(values.threads as string | undefined, 'threads', { int: true, min: 1 }),
    backend,
    contextLength: num(values.context as string | undefined, 'context', { int: true, min: 1 }),
    revision: values.revision as string | undefined,
    offline: values.offline as boolean | undefined,
    onProgress: quiet ? undefined : downloadBars(),
  };
}
