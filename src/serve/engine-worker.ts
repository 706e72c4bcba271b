// The body of the worker thread a WorkerEngine starts (worker-engine.ts): it loads the model (and
// its adapters and draft), runs the Engine, and talks to the server's thread by messages.
//
//   in:  {t: 'submit', id, req}   a sequence (its response_format compiled here, into a constraint)
//        {t: 'cancel', id}        the client went away
//        {t: 'close'}             finish what runs, free the model, exit
//   out: {t: 'ready', info} | {t: 'failed', message}
//        {t: 'token', id, token, stats}   each generated token, as the engine emits it
//        {t: 'end', id, reason, error, cachedTokens, promptLogprobs, stats}
//        {t: 'stats', stats}              every 250 ms (queue and active counts for /health, /metrics)
import { parentPort, workerData } from 'node:worker_threads';
import { Engine, type EngineStats, type SequenceRequest } from '../engine/engine.ts';
import type { TokenLogprob } from '../engine/logits.ts';
import type { SpeculativeOptions } from '../generate/speculative.ts';
import { type LoadedModel, type LoadedOpenELM, type LoadOptions, loadModel, loadOpenELM } from '../load.ts';
import type { ForwardAdapter } from '../model/layer.ts';
import type { LoadDType } from '../model/weights.ts';
import { loadAdapter } from '../peft/index.ts';
import { AdapterRuntime } from '../peft/lora.ts';
import { type CompiledFormat, compileFormat } from './json-constraint.ts';

/** What the worker is started with (structured-clone data only). */
export interface EngineWorkerInit {
  /** a model folder or hub repo id */
  model: string;
  load: Omit<LoadOptions, 'onProgress'>;
  engine: { parallel?: number; maxQueue?: number; stepTokens?: number; refillWaitMs?: number };
  adapters?: { name: string; dir: string }[];
  /** a draft model (folder or repo id) and its dtype, or prompt lookup */
  /** adaptive: see SpeculativeOptions (default true) */
  speculative?: { draftModel?: string; draftDtype?: LoadDType; draftTokens?: number; promptLookup?: number; adaptive?: boolean };
}

export interface EngineWorkerInfo {
  config: Engine['config'];
  capacity: number;
  parallel: number;
  maxQueue: number;
  draftTokens: number;
  adapterNames: string[];
  dir: string;
  draftDir: string | null;
  /** the kernels running the model (e.g. wasm-relaxed-simd-vnni-2t) */
  backend: string;
}

export type ToWorker = { t: 'submit'; id: number; req: Omit<SequenceRequest, 'constraint' | 'signal'> } | { t: 'cancel'; id: number } | { t: 'close' };

export type FromWorker =
  | { t: 'ready'; info: EngineWorkerInfo }
  | { t: 'failed'; message: string }
  | { t: 'token'; id: number; token: number; logprob?: TokenLogprob; stats: EngineStats }
  | {
      t: 'end';
      id: number;
      reason: 'stop' | 'length' | 'cancelled' | 'error';
      error: { name: string; message: string } | null;
      cachedTokens: number;
      promptLogprobs: TokenLogprob[];
      stats: EngineStats;
    }
  | { t: 'stats'; stats: EngineStats }
  | { t: 'closed' };

const port = parentPort!;
const post = (m: FromWorker) => port.postMessage(m);

async function main(init: EngineWorkerInit): Promise<void> {
  let loaded: LoadedModel | null = null,
    draft: LoadedOpenELM | null = null;
  let engine: Engine;
  try {
    loaded = await loadModel(init.model, init.load);
    const model = loaded.model;
    const stepTokens = init.engine.stepTokens ?? Math.max(64, init.engine.parallel ?? 8);
    const adapters = new Map<string, ForwardAdapter>();
    for (const a of init.adapters ?? []) {
      try {
        adapters.set(a.name, new AdapterRuntime(model.kernels, loadAdapter(a.dir, model.config, model.kernels), model.weights, stepTokens));
      } catch (e) {
        throw new Error(`--adapter ${a.name}=${a.dir}: ${(e as Error).message}`);
      }
    }
    const s = init.speculative;
    let speculative: SpeculativeOptions | undefined;
    if (s?.draftModel) {
      draft = await loadOpenELM(s.draftModel, { ...init.load, dtype: s.draftDtype ?? 'auto' }).catch((e: Error) => {
        throw new Error(`--draft-model: ${e.message}`);
      });
      speculative = { draft: draft.model, draftTokens: s.draftTokens, adaptive: s.adaptive };
    } else if (s?.promptLookup) speculative = { promptLookup: s.promptLookup, adaptive: s.adaptive };
    engine = new Engine(model, { ...init.engine, stepTokens, adapters, speculative });
  } catch (e) {
    draft?.dispose();
    loaded?.dispose();
    post({ t: 'failed', message: (e as Error).message });
    return;
  }
  const tok = loaded.tokenizer,
    V = engine.config.vocab_size;
  post({
    t: 'ready',
    info: {
      config: engine.config,
      capacity: engine.capacity,
      parallel: engine.parallel,
      maxQueue: engine.maxQueue,
      draftTokens: engine.draftTokens,
      adapterNames: engine.adapterNames,
      dir: loaded.dir,
      draftDir: draft?.dir ?? null,
      backend: loaded.model.kernels.name,
    },
  });
  setInterval(() => post({ t: 'stats', stats: engine.stats }), 250).unref();
  const running = new Map<number, ReturnType<Engine['submit']>>();
  const formats = new Map<string, CompiledFormat | null>(); // compiled response formats, by their JSON
  const formatOf = (rf: NonNullable<SequenceRequest['responseFormat']>) => {
    const key = JSON.stringify(rf);
    if (!formats.has(key)) {
      if (formats.size > 64) formats.clear();
      formats.set(key, compileFormat(tok, rf, V));
    }
    return formats.get(key)!;
  };
  const end = (id: number, reason: Extract<FromWorker, { t: 'end' }>['reason'], error: Error | null, cachedTokens = 0, promptLogprobs: TokenLogprob[] = []) =>
    post({ t: 'end', id, reason, error: error && { name: error.name, message: error.message }, cachedTokens, promptLogprobs, stats: engine.stats });

  port.on('message', (m: ToWorker) => {
    if (m.t === 'submit') {
      let seq: ReturnType<Engine['submit']>;
      try {
        const constraint = m.req.responseFormat ? formatOf(m.req.responseFormat)?.constraint() : undefined;
        seq = engine.submit({ ...m.req, constraint });
      } catch (e) {
        end(m.id, 'error', e as Error);
        return;
      }
      running.set(m.id, seq);
      void (async () => {
        try {
          for await (const t of seq) post({ t: 'token', id: m.id, token: t.token, logprob: t.logprob, stats: engine.stats });
        } catch {
          /* finishReason 'error': reported below */
        }
        running.delete(m.id);
        end(m.id, seq.finishReason ?? 'error', seq.error, seq.cachedTokens, seq.promptLogprobs);
      })();
    } else if (m.t === 'cancel') running.get(m.id)?.cancel();
    else if (m.t === 'close') {
      void engine.idle().then(() => {
        draft?.dispose();
        loaded!.dispose();
        post({ t: 'closed' });
        port.close();
      });
    }
  });
}

void main(workerData as EngineWorkerInit);
