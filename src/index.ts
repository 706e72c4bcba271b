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
export { BatchForward, type BatchSegment } from './model/batch.ts';
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

// serving: many sequences batched on one model (continuous batching), the OpenAI-compatible server
export { Engine, Sequence, QueueFullError, type EngineOptions, type SequenceRequest, type EngineToken, type EngineFinish, type TokenConstraint } from './engine/engine.ts';
export { createServer, type ServeOptions } from './serve/server.ts';

// tokenizer
export * from './tokenizer/index.ts';

// io
export { resolveModel } from './io/hub.ts';
export * from './io/safetensors.ts';
export * from './io/checkpoint.ts';

// training (CoreNet's recipe: AdamW, cosine schedule with warmup, z-loss, on-the-fly data)
export { Trainer, NonFiniteLossError, type TrainData, type StepRecord, type TrainerHooks, type TrainerSetup, type TrainResult } from './train/trainer.ts';
export { Backprop, type BackpropOptions, type LossResult, type PassOptions } from './train/backprop.ts';
export { Optimizer, clipGradNorm, type OptimizerState } from './train/optim.ts';
export { ParamLayout, FlatLayout, type ParamTensor } from './train/params.ts';
export { lrAt } from './train/schedule.ts';
export { loadRecipe, parseRecipe, resolveTrainOptions, validateTrainOptions, newModelConfig, RecipeError, TrainOptionsError, type Recipe, type TrainOverrides } from './train/recipe.ts';
export { openDataset, TextDataset, IdsDataset, Corpus, PAD_ID, type DataState, type DataStats } from './train/data/index.ts';
export { listCheckpoints, saveCheckpoint, readTrainerState, type TrainerState } from './train/checkpoint.ts';
export { IGNORE, DEFAULT_OPTIMIZER, type TrainOptions, type DataOptions, type OptimizerOptions, type ScheduleOptions, type Batch } from './train/options.ts';
export { builtinModelDir, BUILTIN_MODEL } from './builtin.ts';

// fine-tuning: LoRA / DoRA adapters in PEFT's format, SFT and DPO on the same trainer
export { Adapter, loadAdapter, attachAdapter, isAdapterDir, parseAdapterConfig, adapterConfigJson, adapterScaling, AdapterRuntime, type AdapterConfig, type AdapterTensors, type LinearAdapter, type LinearTarget } from './peft/index.ts';
export { mergeAdapter } from './peft/merge.ts';
export { readRecords, RecordError, type Example, type Row, type FinetuneMethod } from './train/finetune/records.ts';
export { ExampleData, fitSeqLen, type ExampleBatch } from './train/finetune/examples.ts';
export { dpoPair, dpoBatch, type DpoOptions, type DpoLossKind, type DpoMetrics } from './train/finetune/dpo.ts';

// evaluation (lm-evaluation-harness's zero-/few-shot method, perplexity)
export * from './eval/index.ts';
