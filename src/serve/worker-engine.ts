// The engine in a worker thread: the model, its KV caches and every forward pass live in the
// worker (engine-worker.ts), so a long prefill step never blocks the server's event loop:
// /health, new requests and disconnects are answered while the model computes.
//
// The server's thread keeps only the tokenizer. Each submitted sequence is a message; each
// generated token comes back as one; a cancel is one. Requests are checked here first (prompt,
// context, adapter, sampling, queue room), so the errors a caller sees are the Engine's, thrown
// synchronously.
//
//   const engine = await WorkerEngine.start({ model: 'apple/OpenELM-270M', load: { dtype: 'q8' }, engine: { parallel: 8 } });
//   const seq = engine.submit({ promptIds, maxTokens: 32 });
//   for await (const t of seq) ...
//   await engine.close();
import { Worker } from 'node:worker_threads';
import {
  checkRequest,
  type EngineStats,
  emptyEngineStats,
  QueueFullError,
  type SequenceRequest,
  SequenceStream,
  type ServingEngine,
} from '../engine/engine.ts';
import type { EngineWorkerInfo, EngineWorkerInit, FromWorker, ToWorker } from './engine-worker.ts';

export type { EngineWorkerInit };

export class WorkerEngine implements ServingEngine {
  readonly stats: EngineStats = emptyEngineStats(0); // parallel: the worker's, once it reports
  private readonly seqs = new Map<number, SequenceStream>();
  private nextId = 0;
  private idleWaiters: (() => void)[] = [];
  private exited = false;

  private constructor(
    private readonly worker: Worker,
    readonly info: EngineWorkerInfo,
  ) {
    this.stats.parallel = info.parallel;
    worker.on('message', (m: FromWorker) => this.onMessage(m));
    worker.on('error', (e: Error) => this.failAll(e));
    worker.on('exit', () => {
      this.exited = true;
      this.failAll(new Error('the engine worker exited'));
    });
  }

  /** Starts the worker and waits until its model is loaded; rejects with the worker's load error. */
  static async start(init: EngineWorkerInit): Promise<WorkerEngine> {
    // built: the .js next to this file; from source (tsx), a worker does not get tsx's loader
    // from --import, so it registers it and then imports the .ts file
    const fromSource = import.meta.url.endsWith('.ts');
    const url = new URL(fromSource ? './engine-worker.ts' : './engine-worker.js', import.meta.url);
    const worker = fromSource
      ? new Worker(`import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(url.href)}); })`, { eval: true, workerData: init })
      : new Worker(url, { workerData: init });
    const info = await new Promise<EngineWorkerInfo>((resolve, reject) => {
      const onMessage = (m: FromWorker) => {
        if (m.t === 'ready') resolve(m.info);
        else if (m.t === 'failed') reject(new Error(m.message));
        else return;
        worker.off('message', onMessage);
        worker.off('error', reject);
      };
      worker.on('message', onMessage);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`the engine worker exited (code ${code}) before the model was loaded`)));
    }).catch(async (e) => {
      await worker.terminate();
      throw e;
    });
    return new WorkerEngine(worker, info);
  }

  get config(): EngineWorkerInfo['config'] {
    return this.info.config;
  }
  get capacity(): number {
    return this.info.capacity;
  }
  get parallel(): number {
    return this.info.parallel;
  }
  get maxQueue(): number {
    return this.info.maxQueue;
  }
  get draftTokens(): number {
    return this.info.draftTokens;
  }
  get adapterNames(): string[] {
    return this.info.adapterNames;
  }

  /** Slots and queue places not taken by sequences this side has submitted and not yet seen end. */
  room(): number {
    return this.parallel + this.maxQueue - this.seqs.size;
  }

  submit(req: SequenceRequest): SequenceStream {
    checkRequest(req, this.config.vocab_size, this.capacity, this.adapterNames);
    if (this.exited) throw new Error('the engine worker has exited');
    if (this.room() <= 0) throw new QueueFullError(this.maxQueue);
    const id = this.nextId++;
    const seq = new SequenceStream(() => this.send({ t: 'cancel', id }));
    if (req.signal) {
      if (req.signal.aborted) {
        seq.finish('cancelled');
        return seq;
      }
      req.signal.addEventListener('abort', () => seq.cancel(), { once: true });
    }
    const { constraint: _c, signal: _s, ...rest } = req;
    this.seqs.set(id, seq);
    this.send({ t: 'submit', id, req: rest });
    return seq;
  }

  async idle(): Promise<void> {
    if (this.seqs.size === 0) return;
    await new Promise<void>((r) => this.idleWaiters.push(r));
  }

  /** Waits for the sequences in flight, frees the model and stops the worker. */
  async close(): Promise<void> {
    if (this.exited) return;
    await this.idle();
    const closed = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.send({ t: 'close' });
    await closed;
  }

  private send(m: ToWorker): void {
    if (!this.exited) this.worker.postMessage(m);
  }

  private onMessage(m: FromWorker): void {
    if (m.t === 'stats') Object.assign(this.stats, m.stats);
    else if (m.t === 'token') {
      Object.assign(this.stats, m.stats);
      this.seqs.get(m.id)?.emit({ token: m.token, logprob: m.logprob });
    } else if (m.t === 'end') {
      Object.assign(this.stats, m.stats);
      const seq = this.seqs.get(m.id);
      if (!seq) return;
      this.seqs.delete(m.id);
      seq.cachedTokens = m.cachedTokens;
      seq.promptLogprobs.push(...m.promptLogprobs);
      seq.finish(m.reason, m.error && Object.assign(new Error(m.error.message), { name: m.error.name }));
      if (this.seqs.size === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private failAll(e: Error): void {
    for (const seq of this.seqs.values()) seq.finish('error', e);
    this.seqs.clear();
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
