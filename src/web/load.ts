// Opening a model in the browser: ModelFiles → tensor source → kernels → OpenELM + tokenizer,
// the browser's counterpart of src/load.ts (which reads folders and the hub cache with node:fs).
//
//   const m = await loadBrowserModel(urlFiles('/models/openelm-sotu/'));
//   const r = await generateText(m.model, m.tokenizer, 'The state of the Union is', { maxNewTokens: 16 });
//
// Weights are fetched one tensor at a time, converted straight into kernel memory and dropped, so
// loading peaks at the model plus its largest tensor, never the model twice.
import './portable.ts';
import { expectedTensors, numParameters, type OpenELMConfig } from '../config/config.ts';
import type { ModelFiles } from '../io/browser-files.ts';
import { type BrowserTensorSource, openBrowserSource, readText } from '../io/browser-source.ts';
import { RefKernels } from '../kernels/ref.ts';
import type { Kernels } from '../kernels/types.ts';
import { createWasmKernels } from '../kernels/wasm/wasm.ts';
import type { WebGpuKernels } from '../kernels/webgpu/webgpu.ts';
import { GpuOpenELM, gpuWeightSink } from '../model/gpu.ts';
import { OpenELM } from '../model/openelm.ts';
import {
  assembleWeights,
  checkTensors,
  KEEP_WEIGHTS,
  type LoadDType,
  loadMatrix,
  loadVector,
  type ModelWeights,
  type WeightSink,
  weightTensors,
} from '../model/weights.ts';
import { defaultTokenizer, fromSentencePieceModel, fromTokenizerJson, type Tokenizer } from '../tokenizer/index.ts';

export type BrowserBackend = 'auto' | 'wasm' | 'ref';

export interface BrowserLoadOptions {
  /** 'auto' (default): WebAssembly on all cores when the page is cross-origin isolated, else on one thread */
  backend?: BrowserBackend;
  /** threads for the wasm backend (default: navigator.hardwareConcurrency, at most 8; 1 without isolation) */
  threads?: number;
  dtype?: LoadDType;
  contextLength?: number;
  /** bytes of weights loaded so far */
  onLoad?: (p: { loaded: number; total: number; tensor: string }) => void;
}

export interface BrowserModel<M = OpenELM> {
  model: M;
  tokenizer: Tokenizer;
  config: OpenELMConfig;
  where: string;
  /** the backend's name (e.g. wasm-relaxed-simd-2t), and why it was chosen */
  backend: string;
  note: string;
  parameters: number;
  dispose(): void;
}

/** Whether this page (or worker) may share memory between threads: COOP/COEP headers are set. */
export function canUseThreads(): boolean {
  return (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
}

/** The kernels for this browser: threaded wasm when isolated, one-thread wasm when not, the TS reference last. */
export async function createBrowserKernels(opts: { backend?: BrowserBackend; threads?: number } = {}): Promise<{ kernels: Kernels; note: string }> {
  const backend = opts.backend ?? 'auto';
  if (backend === 'ref') return { kernels: new RefKernels(), note: 'plain TypeScript kernels (asked for)' };
  const hw = Math.min(8, (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 1);
  const isolated = canUseThreads();
  const threads = opts.threads ?? (isolated ? hw : 1);
  try {
    const kernels = await createWasmKernels({ threads });
    const note = isolated
      ? `WebAssembly SIMD on ${threads} thread${threads > 1 ? 's' : ''}`
      : 'WebAssembly SIMD on one thread: the page is not cross-origin isolated (COOP/COEP headers), so threads cannot share memory';
    return { kernels, note };
  } catch (e) {
    if (backend === 'wasm') throw e;
    return { kernels: new RefKernels(), note: `plain TypeScript kernels: WebAssembly failed here (${(e as Error).message})` };
  }
}

/** The checkpoint's tokenizer.model or tokenizer.json, else the built-in LLaMA-2 vocabulary. */
export async function loadTokenizerFrom(files: ModelFiles): Promise<Tokenizer> {
  const sp = await files.open('tokenizer.model');
  if (sp) return fromSentencePieceModel(await sp.read(0, sp.size), sp.name);
  const json = await files.open('tokenizer.json');
  if (json) return fromTokenizerJson(await readText(json), json.name);
  return defaultTokenizer();
}

/**
 * The model's weights, tensor by tensor in the order src/model/weights.ts loadWeights takes
 * them: each fetched, loaded into kernel memory (converted when `dtype` asks), handed to the sink
 * (kept, or uploaded to the GPU), then released.
 */
export async function loadWeightsAsync(k: Kernels, src: BrowserTensorSource, dtype?: LoadDType, onLoad?: BrowserLoadOptions['onLoad']): Promise<ModelWeights>;
export async function loadWeightsAsync<B, W>(
  k: Kernels,
  src: BrowserTensorSource,
  dtype: LoadDType,
  onLoad: BrowserLoadOptions['onLoad'] | undefined,
  sink: WeightSink<B, W>,
): Promise<ModelWeights<B, W>>;
export async function loadWeightsAsync<B, W>(
  k: Kernels,
  src: BrowserTensorSource,
  dtype: LoadDType = 'auto',
  onLoad?: BrowserLoadOptions['onLoad'],
  sink?: WeightSink<B, W>,
): Promise<ModelWeights<B, W>> {
  const put = sink ?? (KEEP_WEIGHTS as unknown as WeightSink<B, W>);
  let loaded = 0;
  const total = src.totalBytes;
  const vectors = new Map<string, B>(),
    matrices = new Map<string, W>();
  for (const t of weightTensors(src.config)) {
    await src.fetch(t.name);
    try {
      if (t.vector !== undefined) vectors.set(t.name, put.vector(t.name, loadVector(k, src, t.name, t.vector)));
      else matrices.set(t.name, put.matrix(t.name, loadMatrix(k, src, t.name, dtype)));
    } finally {
      src.release(t.name);
      loaded += src.byteLength(t.name);
      onLoad?.({ loaded: Math.min(loaded, total), total, tensor: t.name });
    }
  }
  onLoad?.({ loaded: total, total, tensor: '' });
  return assembleWeights(
    src.config,
    (name) => vectors.get(name)!,
    (name) => matrices.get(name)!,
  );
}

/** WebAssembly memory is 32-bit: weights and KV cache must fit in 4 GiB. */
function checkFits(src: BrowserTensorSource, dtype: LoadDType, capacity: number): void {
  const cfg = src.config;
  const per: Record<string, number> = { f32: 4, bf16: 2, f16: 2, q8_0: 34 / 32, q4_0: 18 / 32, F32: 4, BF16: 2, F16: 2, Q8_0: 34 / 32, Q4_0: 18 / 32 };
  let bytes = 0;
  for (const [name, shape] of expectedTensors(cfg))
    bytes += shape.reduce((a, b) => a * b, 1) * (shape.length === 2 ? per[dtype === 'auto' ? (src.info(name)?.dtype ?? 'F32') : dtype] : 4);
  for (let i = 0; i < cfg.num_transformer_layers; i++) bytes += 2 * capacity * cfg.num_kv_heads[i] * cfg.head_dim * 4;
  if (bytes > 3.75 * 1024 ** 3)
    throw new RangeError(
      `${src.where}: the model needs ${(bytes / 1024 ** 3).toFixed(2)} GiB, more than WebAssembly's 4 GiB; load it quantized (dtype q8_0 or q4_0) or with a shorter context`,
    );
}

/** Opens a model and its tokenizer from ModelFiles (a URL, picked files, a folder handle, the hub, a cache). */
export async function loadBrowserModel(files: ModelFiles, opts: BrowserLoadOptions = {}): Promise<BrowserModel> {
  const src = await openBrowserSource(files);
  checkTensors(src, src.where);
  const dtype = opts.dtype ?? 'auto';
  const capacity = opts.contextLength ?? src.config.max_context_length;
  checkFits(src, dtype, capacity);
  const tokenizer = await loadTokenizerFrom(files);
  const { kernels, note } = await createBrowserKernels(opts);
  try {
    const weights = await loadWeightsAsync(kernels, src, dtype, opts.onLoad);
    const model = new OpenELM(src.config, weights, kernels, { contextLength: opts.contextLength });
    return {
      model,
      tokenizer,
      config: src.config,
      where: src.where,
      backend: kernels.name,
      note,
      parameters: numParameters(src.config),
      dispose: () => kernels.dispose?.(),
    };
  } catch (e) {
    kernels.dispose?.();
    throw e;
  }
}

/**
 * Opens a model onto a WebGPU device with its tokenizer: each tensor is fetched, read, uploaded
 * and released in turn, so the page's memory never holds the model. The device stays the caller's.
 */
export async function loadBrowserGpuModel(
  files: ModelFiles,
  gpu: WebGpuKernels,
  opts: Pick<BrowserLoadOptions, 'dtype' | 'contextLength' | 'onLoad'> = {},
): Promise<BrowserModel<GpuOpenELM>> {
  const src = await openBrowserSource(files);
  checkTensors(src, src.where);
  GpuOpenELM.check(gpu, src.config);
  const tokenizer = await loadTokenizerFrom(files);
  const weights = await loadWeightsAsync(new RefKernels(), src, opts.dtype ?? 'auto', opts.onLoad, gpuWeightSink(gpu));
  return {
    model: GpuOpenELM.fromUploaded(gpu, src.config, weights, opts.contextLength),
    tokenizer,
    config: src.config,
    where: src.where,
    backend: 'webgpu',
    note: `WebGPU on ${gpu.adapterName}`,
    parameters: numParameters(src.config),
    dispose: () => {},
  };
}
