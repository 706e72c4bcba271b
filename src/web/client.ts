// The page's side of the inference Worker (worker.ts): promises and callbacks over its messages.
//
//   const w = new ModelWorker(new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' }));
//   await w.load({ spec: { kind: 'url', url: '/models/openelm-sotu/' } }, (p) => bar.value = p.loaded / p.total);
//   const r = await w.run('The state of the Union is', { maxNewTokens: 32, temperature: 0 }, (t) => out.append(t));
import type { FromWorker, LoadRequest, ModelInfo, RunOptions, RunPrompt, RunResult, ToWorker } from './protocol.ts';

type Progress = Extract<FromWorker, { type: 'progress' }>;

export class ModelWorker {
  private nextId = 1;
  private loading: { resolve(i: ModelInfo): void; reject(e: Error): void; progress?: (p: Progress) => void } | null = null;
  private runs = new Map<number, { resolve(r: RunResult): void; reject(e: Error): void; onText?: (t: string) => void }>();

  constructor(readonly worker: Worker) {
    worker.onmessage = (e: MessageEvent<FromWorker>) => this.handle(e.data);
    worker.onerror = (e) => this.failAll(new Error(`the model worker failed: ${e.message}`));
  }

  private send(m: ToWorker): void {
    this.worker.postMessage(m);
  }

  private handle(m: FromWorker): void {
    switch (m.type) {
      case 'progress':
        this.loading?.progress?.(m);
        break;
      case 'ready':
        this.loading?.resolve(m.info);
        this.loading = null;
        break;
      case 'text':
        this.runs.get(m.id)?.onText?.(m.text);
        break;
      case 'done':
        this.runs.get(m.id)?.resolve(m.result);
        this.runs.delete(m.id);
        break;
      case 'error':
        if (m.id !== undefined) {
          this.runs.get(m.id)?.reject(new Error(m.message));
          this.runs.delete(m.id);
        } else {
          this.loading?.reject(new Error(m.message));
          this.loading = null;
        }
    }
  }

  private failAll(e: Error): void {
    this.loading?.reject(e);
    this.loading = null;
    for (const r of this.runs.values()) r.reject(e);
    this.runs.clear();
  }

  /** Loads a model (replacing the current one); progress reports downloads, then weights loaded. */
  load(req: Omit<LoadRequest, 'type'>, progress?: (p: Progress) => void): Promise<ModelInfo> {
    return new Promise((resolve, reject) => {
      this.loading?.reject(new Error('superseded by another load'));
      this.loading = { resolve, reject, progress };
      this.send({ type: 'load', ...req });
    });
  }

  /** Generates from a prompt, calling onText with each piece of text as it is decoded. */
  run(prompt: RunPrompt, options: RunOptions = {}, onText?: (text: string) => void): Promise<RunResult> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.runs.set(id, { resolve, reject, onText });
      this.send({ type: 'run', id, prompt, options });
    });
  }

  /** Ends the current generation after the token being computed (its promise resolves, finishReason 'aborted'). */
  stop(): void {
    this.send({ type: 'stop' });
  }

  /** Empties the KV cache (a new conversation). */
  reset(): void {
    this.send({ type: 'reset' });
  }

  terminate(): void {
    this.worker.terminate();
    this.failAll(new Error('the model worker was terminated'));
  }
}
