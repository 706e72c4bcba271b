// The package in the browser: everything of src/index.ts that runs without Node built-ins, plus
// model loading from URLs, picked files and folders, and the hub, with Cache API / OPFS caching.
//
//   import { loadBrowserModel, cachedFiles, hubFiles, defaultStore, generateText } from 'openelm/browser';
//   const store = await defaultStore();
//   const files = hubFiles('apple/OpenELM-270M-Instruct');
//   const m = await loadBrowserModel(store ? cachedFiles(files, store) : files);
//   const r = await generateText(m.model, m.tokenizer, 'Once upon a time', { maxNewTokens: 32 });
//
// Pages should run the model in a Web Worker (src/web/worker.ts, driven by ModelWorker from
// src/web/client.ts) so that decoding never blocks the page; web/ is the chat page built on it.
import './web/portable.ts';

export { expectedTensors, layerShape, numParameters, type OpenELMConfig, parseConfig } from './config/config.ts';
export { type ChatMessage, chatTemplate, encodeChat, type Role } from './generate/chat.ts';
export {
  encodePrompt,
  type FinishReason,
  type GenerateOptions,
  type GenerationResult,
  generate,
  generateText,
  type Prompt,
  type TokenEvent,
} from './generate/generate.ts';
export { gpuGenerate } from './generate/gpu.ts';
export { Rng } from './generate/rng.ts';
export { argmax, Sampler, type SamplingOptions } from './generate/sampler.ts';
export * from './io/browser-files.ts';
export { type BrowserTensorSource, openBrowserSource } from './io/browser-source.ts';
export { RefKernels } from './kernels/ref.ts';
export type { Activation, AttentionShape, ForwardKernels, Kernels, Weight, WeightDType } from './kernels/types.ts';
export { createWasmKernels, type WasmKernelsOptions } from './kernels/wasm/wasm.ts';
export { type GpuWeight, WebGpuKernels } from './kernels/webgpu/webgpu.ts';
export { GpuOpenELM, gpuWeightSink } from './model/gpu.ts';
export { KVCache } from './model/kv-cache.ts';
export { ContextLengthError, type ModelOptions, OpenELM } from './model/openelm.ts';
export { type LoadDType, loadWeights, type ModelWeights, type TensorSource, type WeightSink, weightTensors } from './model/weights.ts';
export { defaultTokenizer, fromSentencePieceModel, fromTokenizerJson, StreamDecoder, Tokenizer } from './tokenizer/index.ts';
export { ModelWorker } from './web/client.ts';
export {
  type BrowserBackend,
  type BrowserLoadOptions,
  type BrowserModel,
  canUseThreads,
  createBrowserKernels,
  loadBrowserGpuModel,
  loadBrowserModel,
  loadTokenizerFrom,
  loadWeightsAsync,
} from './web/load.ts';
export type * from './web/protocol.ts';
