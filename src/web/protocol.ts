// Messages between a page and the inference Worker (worker.ts; client.ts is the page's side).
import type { ChatMessage } from '../generate/chat.ts';
import type { FinishReason } from '../generate/generate.ts';
import type { SamplingOptions } from '../generate/sampler.ts';
import type { LoadDType } from '../model/weights.ts';
import type { BrowserBackend } from './load.ts';

/** Where the model comes from. */
export type ModelSpec =
  | { kind: 'url'; url: string }
  | { kind: 'hub'; repo: string; revision?: string; endpoint?: string; token?: string }
  | { kind: 'files'; files: File[]; name?: string }
  | { kind: 'directory'; handle: FileSystemDirectoryHandle };

/** Where downloads are kept: 'auto' = OPFS, else the Cache API; 'none' reads with range requests every time. */
export type CacheChoice = 'auto' | 'opfs' | 'cache-api' | 'none';

export interface LoadRequest {
  type: 'load';
  spec: ModelSpec;
  cache?: CacheChoice;
  backend?: BrowserBackend;
  threads?: number;
  dtype?: LoadDType;
  contextLength?: number;
  /** 'auto' (default): WebGPU when a hardware adapter exists, else WebAssembly; 'webgpu' also takes a software adapter */
  device?: 'auto' | 'webgpu' | 'wasm';
}

/** A prompt: text (BOS first, no template: as `openelm generate`), token ids, or a conversation (-Instruct template). */
export type RunPrompt = string | { ids: number[] } | { messages: ChatMessage[] };

export interface RunOptions extends SamplingOptions {
  maxNewTokens?: number;
  stop?: string[];
}

export type ToWorker = LoadRequest | { type: 'run'; id: number; prompt: RunPrompt; options?: RunOptions } | { type: 'stop' } | { type: 'reset' };

export interface ModelInfo {
  where: string;
  backend: string;
  /** why this backend (e.g. "one thread: not cross-origin isolated") */
  note: string;
  parameters: number;
  layers: number;
  contextLength: number;
  crossOriginIsolated: boolean;
  loadMs: number;
}

export interface RunResult {
  text: string;
  promptIds: number[];
  outputIds: number[];
  finishReason: FinishReason;
  cachedTokens: number;
  prefillMs: number;
  decodeMs: number;
  /** generated tokens per second of decoding */
  tokensPerSecond: number;
}

export type FromWorker =
  | { type: 'progress'; phase: 'download' | 'load'; file: string; loaded: number; total: number; cached?: boolean }
  | { type: 'ready'; info: ModelInfo }
  | { type: 'text'; id: number; text: string }
  | { type: 'done'; id: number; result: RunResult }
  | { type: 'error'; id?: number; message: string };
