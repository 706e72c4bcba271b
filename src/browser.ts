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

export { parseConfig, expectedTensors, numParameters, layerShape, type OpenELMConfig } from './config/config.ts';
export { OpenELM, ContextLengthError, type ModelOptions } from './model/openelm.ts';
export { KVCache } from './model/kv-cache.ts';
export { loadWeights, type TensorSource, type ModelWeights, type LoadDType } from './model/weights.ts';
export type { Kernels, Weight, WeightDType, Activation } from './kernels/types.ts';
export { RefKernels } from './kernels/ref.ts';
export { createWasmKernels, type WasmKernelsOptions } from './kernels/wasm/wasm.ts';
export { generate, generateText, encodePrompt, type GenerateOptions, type GenerationResult, type TokenEvent, type FinishReason, type Prompt } from './generate/generate.ts';
export { Sampler, argmax, type SamplingOptions } from './generate/sampler.ts';
export { chatTemplate, encodeChat, type ChatMessage, type Role } from './generate/chat.ts';
export { Rng } from './generate/rng.ts';
export { Tokenizer, StreamDecoder, defaultTokenizer, fromSentencePieceModel, fromTokenizerJson } from './tokenizer/index.ts';
export * from './io/browser-files.ts';
export { openBrowserSource, type BrowserTensorSource } from './io/browser-source.ts';
export { loadBrowserModel, loadWeightsAsync, loadTokenizerFrom, createBrowserKernels, canUseThreads,
  type BrowserModel, type BrowserLoadOptions, type BrowserBackend } from './web/load.ts';
export { ModelWorker } from './web/client.ts';
export type * from './web/protocol.ts';
