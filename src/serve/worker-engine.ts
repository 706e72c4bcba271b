// The engine in a worker thread: the model, its KV caches and every forward pass live in the
// worker (engine-worker.ts), so a long prefill step never blocks the server's event loop:
// /health, new requests and disconnects are answered while the model computes.
//
// The server's thread keeps only the tokenizer. Each submitted sequence is a message; each
// generated token comes back as one; a cancel is one. Requests are checked here first (prompt,
// context, adapter, sampling, queue room), so the errors a caller sees are the Engine's, thrown
// synchronously.
//
// A worker that dies (a crash in the forward pass, out of memory, a native fault) fails the
// sequences it was running with an error, and a new worker is started with the same model: while
// it loads, `ready` is false and submit throws EngineUnavailableError (the server answers 503 with
// Retry-After, which the official clients retry); up to MAX_RESTART_ATTEMPTS tries with growing
// pauses, after which the engine stays down and says so.
//
//   const engine = await WorkerEngine.start({ model: 'apple/OpenELM-270M', load: { dtype: 'q8' }, engine: { parallel: 8 } });
//   const seq = engine.submit({ promptIds, maxTokens: 32 });
//   for await (const t of seq) ...
//   await engine.close();
import { Worker } from 'node:worker_threads';
import {
  checkRequest,
  type EngineStats,
  EngineUnavailableError,
  emptyEngineStats,
  QueueFullError,
  type SequenceRequest,
  SequenceStream,
  type ServingEngine,
} from '../engine/engine.ts';
import type { EngineWorkerInfo, EngineWorkerInit, FromWorker, ToWorker } from './engine-worker.ts';

export type { EngineWorkerInit };

/** tries at starting a new worker after one died, and the pause before each (doubling) */
const MAX_RESTART_ATTEMPTS = 4;
const FIRST_RESTART_PAUSE_MS = 500;

export class WorkerEngine implements ServingEngine {
  readonly stats: EngineStats = emptyEngineStats(0); // parallel: the worker's, once it reports
  private readonly seqs = new Map<number, SequenceStream>();
  private nextId = 0;
  private idleWaiters: (() => void)[] = [];
  /** closed, or given up on after failed restarts: no worker will run again */
  private exited = false;
  private closing = false;
  /** why the engine is down, while a restart is under way or after it failed */
  private down: string | null = null;
  private worker: Worker;
  /** times a dead worker was replaced */
  restarts = 0;

  private constructor(
    worker: Worker,
    readonly info: EngineWorkerInfo,
    private readonly init: EngineWorkerInit,
  ) {
    this.stats.parallel = info.parallel;
    this.worker = worker;
    this.attach(worker);
  }

  /** false while a dead worker is being replaced (submit throws EngineUnavailableError) */
  get ready(): boolean {
    return this.down === null && !this.exited;
  }

  private attach(worker: Worker): void {
    worker.on('message', (m: FromWorker) => {
      if (worker === this.worker) this.onMessage(m);
    });
    worker.on('error', (e: Error) => {
      if (worker === this.worker) this.failAll(new Error(`the engine worker failed: ${e.message}`));
    });
    worker.on('exit', (code) => {
      if (worker !== this.worker) return;
      if (this.closing) {
        this.exited = true;
        this.failAll(new Error('the engine was closed'));
        return;
      }
      this.failAll(new Error(`the engine worker stopped (exit code ${code}); a new one is being started`));
      void this.restart(`the engine worker stopped (exit code ${code})`);
    });
  }

  /** Replaces a dead worker with a new one on the same model, retrying with growing pauses. */
  private async restart(why: string): Promise<void> {
    let pause = FIRST_RESTART_PAUSE_MS;
    for (let attempt = 1; attempt <= MAX_RESTART_ATTEMPTS; attempt++) {
      this.down = `${why}; restarting it (attempt ${attempt} of ${MAX_RESTART_ATTEMPTS})`;
      await new Promise((r) => setTimeout(r, pause));
      if (this.closing) break;
      try {
        const { worker } = await WorkerEngine.spawn(this.init);
        if (this.closing) {
          await worker.terminate();
          break;
        }
        this.worker = worker;
        this.attach(worker);
        this.restarts++;
        this.down = null;
        process.emitWarning(`openelm: ${why}; a new engine worker took over (restart ${this.restarts})`);
        return;
      } catch (e) {
        why = `${why}; restart ${attempt} failed: ${(e as Error).message}`;
        pause *= 2;
      }
    }
    this.exited = true;
    this.down = `${why}; gave up restarting it`;
  }

  /** Starts the worker and waits until its model is loaded; rejects with the worker's load error. */
  static async start(init: EngineWorkerInit): Promise<WorkerEngine> {
    const { worker, info } = await WorkerEngine.spawn(init);
    return new WorkerEngine(worker, info, init);
  }

  private static async spawn(init: EngineWorkerInit): Promise<{ worker: Worker; info: EngineWorkerInfo }> {
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
    return { worker, info };
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
    if (this.down !== null && !this.closing) throw new EngineUnavailableError(`the engine is not available: ${this.down}`);
    if (this.exited) throw new Error('the engine has been closed');
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
    this.closing = true;
    if (this.down !== null) return; // no worker is running; the restart loop sees `closing` and stops
    const closed = new Promise<void>((r) => this.worker.once('exit', () => r()));
    this.send({ t: 'close' });
    await closed;
  }

  private send(m: ToWorker): void {
    if (!this.exited && this.down === null) this.worker.postMessage(m);
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
