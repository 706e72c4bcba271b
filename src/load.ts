// Opening a model by name: folder or hub repo → checkpoint → kernels → OpenELM + tokenizer.
import { resolveModel, type DownloadProgress } from './io/hub.ts';
import { checkpointSource } from './io/checkpoint-source.ts';
import { createKernels } from './kernels/index.ts';
import { OpenELM, type ModelOptions } from './model/openelm.ts';
import type { LoadDType } from './model/weights.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer/index.ts';

export { checkpointSource };

export interface LoadOptions extends Omit<ModelOptions, 'kernels'> {
  /** 'wasm' (default): WebAssembly SIMD on worker threads; 'ref': the plain-TypeScript reference */
  backend?: 'wasm' | 'ref';
  /** worker threads for the wasm backend (default: all cores) */
  threads?: number;
  dtype?: LoadDType;
  /** hub options, for repo ids */
  revision?: string;
  offline?: boolean;
  token?: string;
  onProgress?: (p: DownloadProgress) => void;
}

/** A model without its tokenizer (token ids in, logits out): what loadOpenELM returns. */
export interface LoadedOpenELM {
  model: OpenELM;
  /** the local folder the model was read from */
  dir: string;
  /** stops worker threads */
  dispose(): void;
}

export interface LoadedModel extends LoadedOpenELM {
  tokenizer: Tokenizer;
}

/**
 * Opens the model alone, for work on token ids (benchmarks, scoring pre-tokenized data): no
 * tokenizer in memory (the built-in vocabulary's tables take ~8 MB of JS heap).
 */
export async function loadOpenELM(source: string, opts: LoadOptions = {}): Promise<LoadedOpenELM> {
  const dir = await resolveModel(source, { revision: opts.revision, offline: opts.offline, token: opts.token, onProgress: opts.onProgress });
  const src = checkpointSource(dir);
  const kernels = await createKernels(opts.backend ?? 'wasm', { threads: opts.threads });
  try {
    return { model: OpenELM.load(src, { ...opts, kernels }, dir), dir, dispose: () => kernels.dispose?.() };
  } catch (e) {
    kernels.dispose?.();
    throw e;
  }
}

/** Opens the model and its tokenizer (the checkpoint's, else the built-in LLaMA-2 vocabulary). */
export async function loadModel(source: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const loaded = await loadOpenELM(source, opts);
  try {
    return { ...loaded, tokenizer: await loadTokenizer(loaded.dir) };
  } catch (e) {
    loaded.dispose();
    throw e;
  }
}
