// Opening a model by name: folder or hub repo → checkpoint → kernels → OpenELM + tokenizer.
//
// Options are checked at run time before anything is allocated (JavaScript callers get no type
// check): dtype spellings as the CLI accepts them (q8 = q8_0), thread counts within reason, and a
// memory plan (weights + KV cache) that must fit the backend, naming the option or config field
// that makes it too large.
import os from 'node:os';
import { expectedTensors, type OpenELMConfig } from './config/config.ts';
import { checkpointSource } from './io/checkpoint-source.ts';
import { bytesPerWeight, DTYPE_ALIASES, dtypeOfFile, normalizeDType, type WeightDTypeName } from './io/dtype.ts';
import { type DownloadProgress, resolveModel } from './io/hub.ts';
import { createKernels } from './kernels/index.ts';
import type { WebGpuKernels } from './kernels/webgpu/webgpu.ts';
import { GpuOpenELM } from './model/gpu.ts';
import { type ModelOptions, OpenELM } from './model/openelm.ts';
import { checkTensors, type LoadDType, type TensorSource } from './model/weights.ts';
import { loadTokenizer, type Tokenizer } from './tokenizer/index.ts';

export { checkpointSource };

export interface LoadOptions extends Omit<ModelOptions, 'kernels' | 'dtype'> {
  /** 'wasm' (default): WebAssembly SIMD on worker threads; 'ref': the plain-TypeScript reference */
  backend?: 'wasm' | 'ref';
  /** worker threads for the wasm backend (default: all cores; at most maxThreads()) */
  threads?: number;
  /**
   * the model will mostly run batched passes (many sequences at a time, as `openelm serve` does):
   * q8_0 weights are laid out for them (WasmKernelsOptions.tiles; passes over several tokens
   * ~1.3× faster, one token alone ~0.92×, same results). Default false.
   */
  batched?: boolean;
  /** weight storage: 'auto' (as stored), f32, bf16, f16, q8_0 / q8, q4_0 / q4 */
  dtype?: LoadDType | 'q8' | 'q4';
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

/** An option of loadModel / loadOpenELM out of range; `option` is its LoadOptions key (the CLI maps it to its flag). */
export class LoadOptionError extends RangeError {
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(message);
    this.name = 'LoadOptionError';
  }
}

/** The most worker threads a model may use: 4 per core (more only costs memory: ~8 MB each). */
export function maxThreads(): number {
  return 4 * Math.max(1, os.availableParallelism?.() ?? os.cpus().length);
}

/** WebAssembly's 32-bit memory: everything the wasm backend holds lives in 4 GiB. */
export const WASM_MEMORY_BYTES = 4 * 1024 ** 3;

/** The checked options, with dtype in its canonical name. */
export function checkLoadOptions(opts: unknown): LoadOptions & { dtype: LoadDType } {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) throw new LoadOptionError('options', `options must be an object, got ${String(opts)}`);
  const o = opts as Record<string, unknown>;
  const bad = (key: string, want: string): never => {
    let got: string;
    try {
      got = JSON.stringify(o[key]) ?? String(o[key]);
    } catch {
      got = String(o[key]);
    }
    throw new LoadOptionError(key, `${key} must be ${want}, got ${got}`);
  };
  if (o.backend !== undefined && o.backend !== 'wasm' && o.backend !== 'ref') bad('backend', `'wasm' or 'ref'`);
  const maxT = maxThreads();
  if (o.threads !== undefined && !(Number.isInteger(o.threads) && (o.threads as number) >= 1 && (o.threads as number) <= maxT)) {
    bad('threads', `an integer in [1, ${maxT}] (4 × the ${maxT / 4} cores of this machine)`);
  }
  const dtype = o.dtype === undefined ? 'auto' : normalizeDType(o.dtype, true);
  if (!dtype) bad('dtype', `'auto' or one of ${Object.keys(DTYPE_ALIASES).join(', ')}`);
  if (o.contextLength !== undefined && !(Number.isInteger(o.contextLength) && (o.contextLength as number) >= 1)) bad('contextLength', 'an integer ≥ 1');
  if (o.chunkSize !== undefined && !(Number.isInteger(o.chunkSize) && (o.chunkSize as number) >= 1 && (o.chunkSize as number) <= 65536))
    bad('chunkSize', 'an integer in [1, 65536]');
  for (const k of ['revision', 'token'] as const) if (o[k] !== undefined && typeof o[k] !== 'string') bad(k, 'a string');
  for (const k of ['offline', 'batched'] as const) if (o[k] !== undefined && typeof o[k] !== 'boolean') bad(k, 'true or false');
  if (o.onProgress !== undefined && typeof o.onProgress !== 'function') bad('onProgress', 'a function');
  return { ...(o as LoadOptions), dtype: dtype as LoadDType };
}

/** Bytes a model will hold: its weights in `dtype`, and the KV cache and RoPE tables for `capacity` tokens. */
export function memoryPlan(src: TensorSource, dtype: LoadDType, capacity: number): { weights: number; kvCache: number; total: number } {
  const cfg: OpenELMConfig = src.config;
  let weights = 0;
  for (const [name, shape] of expectedTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const stored = dtypeOfFile(src.info(name)?.dtype ?? 'F32') ?? 'f32';
    const d: WeightDTypeName = shape.length === 2 && dtype !== 'auto' ? dtype : shape.length === 2 ? stored : 'f32';
    weights += n * bytesPerWeight(d);
  }
  let kvCache = 0;
  for (let i = 0; i < cfg.num_transformer_layers; i++) kvCache += 2 * capacity * cfg.num_kv_heads[i] * cfg.head_dim * 4;
  const other = capacity * (cfg.head_dim + 1) * 4 + cfg.vocab_size * 4 * 2;
  return { weights, kvCache, total: weights + kvCache + other };
}

const gb = (b: number) => `${(b / 1024 ** 3).toFixed(2)} GiB`;

/** Throws when the model cannot fit the backend's memory, naming what to change. */
function checkMemory(src: TensorSource, dir: string, opts: LoadOptions & { dtype: LoadDType }): void {
  const cfg = src.config;
  const capacity = opts.contextLength ?? cfg.max_context_length;
  if (capacity > cfg.max_context_length) {
    throw new LoadOptionError(
      'contextLength',
      `contextLength must be at most max_context_length (${cfg.max_context_length} in ${dir}/config.json), got ${capacity}`,
    );
  }
  const plan = memoryPlan(src, opts.dtype, capacity);
  const wasm = (opts.backend ?? 'wasm') === 'wasm';
  const limit = wasm ? WASM_MEMORY_BYTES - 256 * 1024 ** 2 : os.totalmem();
  if (plan.total <= limit) return;
  const where = wasm ? `WebAssembly memory (4 GiB; use --backend ref / backend: 'ref' for more)` : `this machine's ${gb(os.totalmem())} of RAM`;
  const kvWhy = opts.contextLength !== undefined ? `contextLength ${capacity}` : `max_context_length ${capacity} in ${dir}/config.json`;
  if (plan.kvCache > plan.weights) {
    throw new LoadOptionError(
      'contextLength',
      `${dir}: the KV cache for ${kvWhy} needs ${gb(plan.kvCache)} (weights ${gb(plan.weights)}), more than ${where}; pass a smaller context (--context N / contextLength)`,
    );
  }
  throw new LoadOptionError(
    'dtype',
    `${dir}: the weights need ${gb(plan.weights)} as ${opts.dtype === 'auto' ? 'stored' : opts.dtype} (KV cache ${gb(plan.kvCache)} for ${kvWhy}), more than ${where}; load them quantized (--dtype q8 or q4)`,
  );
}

/**
 * Opens the model alone, for work on token ids (benchmarks, scoring pre-tokenized data): no
 * tokenizer in memory (the built-in vocabulary's tables take ~8 MB of JS heap).
 */
export async function loadOpenELM(source: string, options: LoadOptions = {}): Promise<LoadedOpenELM> {
  if (typeof source !== 'string' || source === '')
    throw new LoadOptionError('source', `the model must be a folder or hub repo id (a non-empty string), got ${String(source)}`);
  const opts = checkLoadOptions(options);
  const dir = await resolveModel(source, { revision: opts.revision, offline: opts.offline, token: opts.token, onProgress: opts.onProgress });
  const src = checkpointSource(dir);
  checkMemory(src, dir, opts);
  const kernels = await createKernels(opts.backend ?? 'wasm', { threads: opts.threads, tiles: opts.batched });
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

/** A model on a WebGPU device and its tokenizer: what loadGpuModel returns. */
export interface LoadedGpuModel {
  model: GpuOpenELM;
  tokenizer: Tokenizer;
  /** the local folder the model was read from */
  dir: string;
}

/**
 * Opens a model straight onto a WebGPU device (Node: createNodeWebGpu) with its tokenizer: the
 * weights go to the GPU tensor by tensor, so CPU memory never holds the model. The same options
 * as loadModel (backend and threads do not apply); the device stays the caller's to dispose.
 */
export async function loadGpuModel(source: string, gpu: WebGpuKernels, options: LoadOptions = {}): Promise<LoadedGpuModel> {
  if (typeof source !== 'string' || source === '')
    throw new LoadOptionError('source', `the model must be a folder or hub repo id (a non-empty string), got ${String(source)}`);
  const opts = checkLoadOptions(options);
  const dir = await resolveModel(source, { revision: opts.revision, offline: opts.offline, token: opts.token, onProgress: opts.onProgress });
  const src = checkpointSource(dir);
  checkTensors(src, dir);
  const max = src.config.max_context_length;
  if (opts.contextLength !== undefined && opts.contextLength > max)
    throw new LoadOptionError('contextLength', `contextLength must be at most max_context_length (${max} in ${dir}/config.json), got ${opts.contextLength}`);
  const model = GpuOpenELM.load(gpu, src, { dtype: opts.dtype, contextLength: opts.contextLength });
  return { model, tokenizer: await loadTokenizer(dir), dir };
}
