// openelm: Apple's OpenELM in TypeScript. The public library API.
//
//   import { loadModel, generateText } from 'openelm';
//   const { model, tokenizer, dispose } = await loadModel('apple/OpenELM-270M-Instruct');
//   const r = await generateText(model, tokenizer, 'Once upon a time', { maxNewTokens: 32 });
//   console.log(r.text);
//   dispose();

export { BUILTIN_MODEL, builtinModelDir } from './builtin.ts';

// config: layer-wise scaling
export {
  ConfigError,
  configToJson,
  expectedTensors,
  type LayerShape,
  layerShape,
  numParameters,
  type OpenELMConfig,
  type OpenELMConfigJson,
  PRESET_NAMES,
  type PresetName,
  parseConfig,
  presetConfig,
  presetNameOf,
} from './config/index.ts';
// serving: many sequences batched on one model (continuous batching), the OpenAI-compatible server;
// generate(engine, …) batches concurrent calls, and concurrent generate(model, …) calls share one
export {
  Engine,
  type EngineFinish,
  type EngineOptions,
  type EngineStats,
  type EngineToken,
  QueueFullError,
  Sequence,
  type SequenceRequest,
  SequenceStream,
  type ServingEngine,
  type TokenConstraint,
} from './engine/engine.ts';
// evaluation (lm-evaluation-harness's zero-/few-shot method, perplexity)
export * from './eval/index.ts';
export { type ChatMessage, chatTemplate, encodeChat, type Role } from './generate/chat.ts';
// generation
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
// WebGPU: the WGSL kernels and the GPU forward pass; in Node on Dawn (the optional package "webgpu")
export { gpuGenerate } from './generate/gpu.ts';
export { Rng } from './generate/rng.ts';
export { argmax, Sampler, type SamplerKernels, type SamplingOptions } from './generate/sampler.ts';
export * from './io/checkpoint.ts';
// io
export { resolveModel } from './io/hub.ts';
export * from './io/safetensors.ts';
export { createKernels, createWasmKernels, type KernelsKind } from './kernels/index.ts';
export { RefKernels } from './kernels/ref.ts';
// kernels
export type { Activation, AttentionShape, ForwardKernels, Kernels, Weight, WeightDType } from './kernels/types.ts';
export {
  createNodeWebGpu,
  type NodeAdapter,
  type NodeWebGpuOptions,
  NoWebGpuAdapterError,
  requestNodeAdapter,
  SWIFTSHADER_ICDS,
} from './kernels/webgpu/node.ts';
export { type GpuWeight, WebGpuKernels } from './kernels/webgpu/webgpu.ts';
export { checkpointSource, type LoadedGpuModel, type LoadedModel, type LoadedOpenELM, type LoadOptions, loadGpuModel, loadModel, loadOpenELM } from './load.ts';
export { BatchForward, type BatchSegment } from './model/batch.ts';
export { GpuOpenELM, gpuWeightSink } from './model/gpu.ts';
export { initTensors } from './model/init.ts';
export { KVCache } from './model/kv-cache.ts';
// model
export { ContextLengthError, type ModelOptions, OpenELM } from './model/openelm.ts';
export { type LoadDType, loadWeights, type ModelWeights, type TensorSource, type WeightSink, weightTensors } from './model/weights.ts';
// fine-tuning: LoRA / DoRA adapters in PEFT's format, SFT and DPO on the same trainer
export {
  Adapter,
  type AdapterConfig,
  AdapterRuntime,
  type AdapterTensors,
  adapterConfigJson,
  adapterScaling,
  attachAdapter,
  isAdapterDir,
  type LinearAdapter,
  type LinearTarget,
  loadAdapter,
  parseAdapterConfig,
} from './peft/index.ts';
export { mergeAdapter } from './peft/merge.ts';
export { createServer, type ServeOptions } from './serve/server.ts';
export { type EngineWorkerInit, WorkerEngine } from './serve/worker-engine.ts';
// tokenizer
export * from './tokenizer/index.ts';
export { Backprop, type BackpropOptions, type LossResult, type PassOptions } from './train/backprop.ts';
export { listCheckpoints, readTrainerState, saveCheckpoint, type TrainerState } from './train/checkpoint.ts';
export { Corpus, type DataState, type DataStats, IdsDataset, openDataset, PAD_ID, TextDataset } from './train/data/index.ts';
export { type DpoLossKind, type DpoMetrics, type DpoOptions, dpoBatch, dpoPair } from './train/finetune/dpo.ts';
export { type ExampleBatch, ExampleData, fitSeqLen } from './train/finetune/examples.ts';
export { type Example, type FinetuneMethod, RecordError, type Row, readRecords } from './train/finetune/records.ts';
export { clipGradNorm, Optimizer, type OptimizerState } from './train/optim.ts';
export { type Batch, type DataOptions, DEFAULT_OPTIMIZER, IGNORE, type OptimizerOptions, type ScheduleOptions, type TrainOptions } from './train/options.ts';
export { FlatLayout, ParamLayout, type ParamTensor } from './train/params.ts';
export {
  loadRecipe,
  newModelConfig,
  parseRecipe,
  type Recipe,
  RecipeError,
  resolveTrainOptions,
  TrainOptionsError,
  type TrainOverrides,
  validateTrainOptions,
} from './train/recipe.ts';
export { lrAt } from './train/schedule.ts';
// training (CoreNet's recipe: AdamW, cosine schedule with warmup, z-loss, on-the-fly data)
export { NonFiniteLossError, type StepRecord, type TrainData, Trainer, type TrainerHooks, type TrainerSetup, type TrainResult } from './train/trainer.ts';
