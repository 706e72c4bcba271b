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

export interface LoadedModel {
  model: OpenELM;
  tokenizer: Tokenizer;
  /** the local folder the model was read from */
  dir: string;
  /** stops worker threads */
  dispose(): void;
}

export async function loadModel(source: string, opts: LoadOptions = {}): Promise<LoadedModel> {
  const dir = await resolveModel(source, { revision: opts.revision, offline: opts.offline, token: opts.token, onProgress: opts.onProgress });
  const src = checkpointSource(dir);
  const kernels = await createKernels(opts.backend ?? 'wasm', { threads: opts.threads });
  try {
    const model = OpenELM.load(src, { ...opts, kernels }, dir);
    const tokenizer = await loadTokenizer(dir);
    return { model, tokenizer, dir, dispose: () => kernels.dispose?.() };
  } catch (e) {
    kernels.dispose?.();
    throw e;
  }
}
