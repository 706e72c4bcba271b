// openelm: Apple's OpenELM in TypeScript. The public library API.
//
//   import { loadModel, generateText } from 'openelm';
//   const { model, tokenizer, dispose } = await loadModel('apple/OpenELM-270M-Instruct');
//   const r = await generateText(model, tokenizer, 'Once upon a time', { maxNewTokens: 32 });
//   console.log(r.text);
//   dispose();

export { loadModel, loadOpenELM, checkpointSource, type LoadOptions, type LoadedModel, type LoadedOpenELM } from './load.ts';

// config: layer-wise scaling
export {
  parseConfig, presetConfig, presetNameOf, numParameters, expectedTensors, layerShape, configToJson,
  ConfigError, PRESET_NAMES, type OpenELMConfig, type OpenELMConfigJson, type LayerShape, type PresetName,
} from './config/index.ts';

// model
export { OpenELM, ContextLengthError, type ModelOptions } from './model/openelm.ts';
export { KVCache } from './model/kv-cache.ts';
export { loadWeights, type TensorSource, type ModelWeights, type LoadDType } from './model/weights.ts';
export { initTensors } from './model/init.ts';

// kernels
export type { Kernels, Weight, WeightDType, Activation } from './kernels/types.ts';
export { RefKernels } from './kernels/ref.ts';
export { createKernels, createWasmKernels, type KernelsKind } from './kernels/index.ts';

// generation
export { generate, generateText, encodePrompt, type GenerateOptions, type GenerationResult, type TokenEvent, type FinishReason, type Prompt } from './generate/generate.ts';
export { Sampler, argmax, type SamplingOptions, type SamplerKernels } from './generate/sampler.ts';
export { chatTemplate, encodeChat, type ChatMessage, type Role } from './generate/chat.ts';
export { Rng } from './generate/rng.ts';

// tokenizer
export * from './tokenizer/index.ts';

// io
export { resolveModel } from './io/hub.ts';
export * from './io/safetensors.ts';
export * from './io/checkpoint.ts';
