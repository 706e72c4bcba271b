// The inference Web Worker: holds one model, runs one generation at a time, streams text back.
// The page never blocks: loading, the kernels' threads (nested Workers) and decoding all live here.
// Protocol: protocol.ts. Start it with
//   new Worker(new URL('openelm/src/web/worker.ts', import.meta.url), { type: 'module' })
import './portable.ts';
import { encodeChat } from '../generate/chat.ts';
import { generate, type Prompt } from '../generate/generate.ts';
import { gpuGenerate } from '../generate/gpu.ts';
import {
  blobFiles,
  cacheApiStore,
  cachedFiles,
  defaultStore,
  directoryFiles,
  type FileStore,
  hubFiles,
  type ModelFiles,
  opfsStore,
  urlFiles,
} from '../io/browser-files.ts';
import { WebGpuKernels } from '../kernels/webgpu/webgpu.ts';
import { GpuOpenELM } from '../model/gpu.ts';
import type { OpenELM } from '../model/openelm.ts';
import { type BrowserModel, loadBrowserGpuModel, loadBrowserModel } from './load.ts';
import type { FromWorker, LoadRequest, RunOptions, RunPrompt, ToWorker } from './protocol.ts';

const post = (m: FromWorker) => (self as unknown as { postMessage(m: FromWorker): void }).postMessage(m);

/** the model (on the CPU, or on the GPU when the WebGPU backend was chosen) and its tokenizer */
let loaded: BrowserModel<OpenELM | GpuOpenELM> | null = null;

/** A WebGPU device when one should be used: asked for, or (auto) a hardware adapter exists. */
async function webgpuFor(device: LoadRequest['device']): Promise<{ gpu: WebGpuKernels | null; why: string }> {
  if (device === 'wasm') return { gpu: null, why: '' };
  try {
    const gpu = await WebGpuKernels.create();
    if (device === 'webgpu' || !gpu.software) return { gpu, why: '' };
    gpu.dispose();
    return { gpu: null, why: ` (WebGPU's adapter here is software, ${gpu.adapterName}: WebAssembly is faster)` };
  } catch (e) {
    if (device === 'webgpu') throw e;
    return { gpu: null, why: '' };
  }
}
let abort: AbortController | null = null;
let queue: Promise<void> = Promise.resolve();

async function storeFor(choice: LoadRequest['cache']): Promise<FileStore | null> {
  switch (choice ?? 'auto') {
    case 'none':
      return null;
    case 'opfs':
      return opfsStore();
    case 'cache-api':
      return cacheApiStore();
    default:
      return defaultStore();
  }
}

async function filesFor(req: LoadRequest): Promise<ModelFiles> {
  const s = req.spec;
  const progress = (p: { file: string; loaded: number; total: number; cached?: boolean }) => post({ type: 'progress', phase: 'download', ...p });
  switch (s.kind) {
    case 'files':
      return blobFiles(s.files, s.name);
    case 'directory':
      return directoryFiles(s.handle as never);
    case 'url':
    case 'hub': {
      const remote = s.kind === 'url' ? urlFiles(s.url) : hubFiles(s.repo, { revision: s.revision, endpoint: s.endpoint, token: s.token });
      const store = await storeFor(req.cache);
      return store ? cachedFiles(remote, store, progress) : remote;
    }
  }
}

async function load(req: LoadRequest): Promise<void> {
  abort?.abort();
  loaded?.dispose();
  if (loaded?.model instanceof GpuOpenELM) loaded.model.gpu.dispose();
  loaded = null;
  const t0 = performance.now();
  const files = await filesFor(req);
  const { gpu, why } = await webgpuFor(req.device);
  const onLoad = (p: { tensor: string; loaded: number; total: number }) =>
    post({ type: 'progress', phase: 'load', file: p.tensor, loaded: p.loaded, total: p.total });
  const m: BrowserModel<OpenELM | GpuOpenELM> = gpu
    ? await loadBrowserGpuModel(files, gpu, { dtype: req.dtype, contextLength: req.contextLength, onLoad }).catch((e) => {
        gpu.dispose();
        throw e;
      })
    : await loadBrowserModel(files, { backend: req.backend, threads: req.threads, dtype: req.dtype, contextLength: req.contextLength, onLoad });
  if (!gpu) m.note += why;
  loaded = m;
  post({
    type: 'ready',
    info: {
      where: m.where,
      backend: m.backend,
      note: m.note,
      parameters: m.parameters,
      layers: m.config.num_transformer_layers,
      contextLength: m.model.cache.capacity,
      crossOriginIsolated: (self as unknown as { crossOriginIsolated: boolean }).crossOriginIsolated,
      loadMs: performance.now() - t0,
    },
  });
}

async function run(id: number, prompt: RunPrompt, options: RunOptions = {}): Promise<void> {
  if (!loaded) throw new Error('no model loaded yet');
  const { model, tokenizer } = loaded;
  const p: Prompt = typeof prompt === 'object' && 'messages' in prompt ? { ids: encodeChat(tokenizer, prompt.messages) } : prompt;
  abort = new AbortController();
  // the same options, events and result on either device
  const it =
    model instanceof GpuOpenELM
      ? gpuGenerate(model, tokenizer, p, { ...options, signal: abort.signal })
      : generate(model, tokenizer, p, { ...options, signal: abort.signal });
  let r = await it.next();
  for (; !r.done; r = await it.next()) if (r.value.text) post({ type: 'text', id, text: r.value.text });
  const res = r.value;
  abort = null;
  const decoded = res.outputIds.length - 1; // the first token comes from the prefill's logits
  post({
    type: 'done',
    id,
    result: {
      text: res.text,
      promptIds: res.promptIds,
      outputIds: res.outputIds,
      finishReason: res.finishReason,
      cachedTokens: res.cachedTokens,
      prefillMs: res.prefillMs,
      decodeMs: res.decodeMs,
      tokensPerSecond: decoded > 0 ? decoded / (res.decodeMs / 1000) : 0,
    },
  });
}

self.onmessage = (e: MessageEvent<ToWorker>) => {
  const m = e.data;
  // stop acts at once (between two tokens); everything else waits its turn
  if (m.type === 'stop') {
    abort?.abort();
    return;
  }
  const job = async () => {
    try {
      if (m.type === 'load') await load(m);
      else if (m.type === 'run') await run(m.id, m.prompt, m.options);
      else if (m.type === 'reset') loaded?.model.reset();
    } catch (err) {
      abort = null;
      post({ type: 'error', id: m.type === 'run' ? m.id : undefined, message: (err as Error)?.message ?? String(err) });
    }
  };
  queue = queue.then(job);
};
