/// <reference types="node" />
// Worker threads that share the caller's WebAssembly memory and run slices of one kernel call.
//
// Dispatch is synchronous and allocation-free: the caller writes a job descriptor (export index +
// 9 i32 arguments) into a control block in shared memory, bumps the job counter, Atomics.notify,
// runs its own share (part 0), then waits until every worker has bumped the done counter. Workers
// spin briefly on the job counter before sleeping in Atomics.wait, so back-to-back kernel calls
// (the matmuls of one decode step) do not pay a futex wake-up each. The caller blocks while it
// waits: fine in Node and inside a browser Web Worker; on a browser main thread it only spins.
//
// Works with worker_threads in Node and Web Workers in the browser; the worker body is
// `workerMain` below, shipped as source text so there is no separate file to resolve.

/** Layout of the control block: Int32 words at `ctlOffset` in shared memory. */
export const CTL = { SEQ: 0, DONE: 1, OP: 2, ARGS: 4, WORDS: 16 } as const;

/** Everything a worker needs; structured-cloned into the worker. */
interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctlOffset: number;
  part: number;
  parts: number;
  scratch: number;
  ops: readonly string[];
  spin: number;
}

type SplitFn = (a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number, a8: number,
  part: number, parts: number, scratch: number) => void;

// The worker body. Self-contained (it is turned into source text): the CTL indices are literals.
function workerMain(init: WorkerInit, post: (msg: string) => void): void {
  const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
  const fns = init.ops.map((name) => instance.exports[name] as SplitFn);
  const ctl = new Int32Array(init.memory.buffer, init.ctlOffset, 16);
  const { part, parts, scratch, spin } = init;
  let seen = Atomics.load(ctl, 0);
  post('ready');
  for (;;) {
    let seq: number, spins = 0;
    while ((seq = Atomics.load(ctl, 0)) === seen) {
      if (++spins > spin) { Atomics.wait(ctl, 0, seen); spins = 0; }
    }
    seen = seq;
    const op = ctl[2];
    if (op < 0) return;
    fns[op](ctl[4], ctl[5], ctl[6], ctl[7], ctl[8], ctl[9], ctl[10], ctl[11], ctl[12], part, parts, scratch);
    if (Atomics.add(ctl, 1, 1) + 1 === parts - 1) Atomics.notify(ctl, 1);
  }
}

interface AnyWorker {
  terminate(): unknown;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function startWorker(init: WorkerInit): Promise<AnyWorker> {
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    const src = `const { parentPort, workerData } = require('node:worker_threads');\n` +
      `(${workerMain.toString()})(workerData, (m) => parentPort.postMessage(m));`;
    const w = new Worker(src, { eval: true, workerData: init, execArgv: [] });
    await new Promise<void>((resolve, reject) => {
      w.once('message', () => resolve());
      w.once('error', reject);
    });
    w.unref(); // an idle pool must not keep the process alive
    return w;
  }
  const src = `onmessage = (e) => { onmessage = null; (${workerMain.toString()})(e.data, (m) => postMessage(m)); };`;
  const url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
  const w = new Worker(url);
  await new Promise<void>((resolve, reject) => {
    w.onmessage = () => resolve();
    w.onerror = (e) => reject(new Error(`openelm wasm worker failed to start: ${e.message}`));
    w.postMessage(init);
  });
  URL.revokeObjectURL(url);
  return w;
}

export class ThreadPool {
  readonly parts: number;
  private readonly ctl: Int32Array;
  private readonly fns: SplitFn[];
  private readonly canBlock: boolean;
  private workers: AnyWorker[] = [];

  private constructor(mainInstance: WebAssembly.Instance, memory: WebAssembly.Memory, ctlOffset: number,
    ops: readonly string[], parts: number, private readonly mainScratch: number, private readonly spin: number) {
    this.parts = parts;
    this.ctl = new Int32Array(memory.buffer, ctlOffset, CTL.WORDS);
    this.fns = ops.map((name) => mainInstance.exports[name] as SplitFn);
    // Atomics.wait throws on a browser's main thread; there the caller only spins
    this.canBlock = isNode || typeof (globalThis as { document?: unknown }).document === 'undefined';
  }

  /**
   * A pool of `parts` threads: the caller (part 0) plus parts - 1 workers, each with its own
   * scratch region (`scratch[part]`). `ops` lists the splittable exports, by index.
   */
  static async create(module: WebAssembly.Module, mainInstance: WebAssembly.Instance, memory: WebAssembly.Memory,
    ctlOffset: number, ops: readonly string[], parts: number, scratch: readonly number[], spin = 20000): Promise<ThreadPool> {
    const pool = new ThreadPool(mainInstance, memory, ctlOffset, ops, parts, scratch[0], spin);
    pool.ctl.fill(0);
    try {
      const started = [];
      for (let part = 1; part < parts; part++) {
        started.push(startWorker({ module, memory, ctlOffset, part, parts, scratch: scratch[part], ops, spin }));
      }
      pool.workers = await Promise.all(started);
    } catch (e) {
      pool.dispose();
      throw e;
    }
    return pool;
  }

  /** Runs export `op` on all threads with the same arguments; returns when every share is done. */
  run(op: number, a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number, a8: number): void {
    const ctl = this.ctl, workers = this.parts - 1;
    if (workers > 0) {
      ctl[CTL.OP] = op;
      ctl[4] = a0; ctl[5] = a1; ctl[6] = a2; ctl[7] = a3; ctl[8] = a4;
      ctl[9] = a5; ctl[10] = a6; ctl[11] = a7; ctl[12] = a8;
      Atomics.store(ctl, CTL.DONE, 0);
      Atomics.add(ctl, CTL.SEQ, 1);
      Atomics.notify(ctl, CTL.SEQ);
    }
    this.fns[op](a0, a1, a2, a3, a4, a5, a6, a7, a8, 0, this.parts, this.mainScratch);
    if (workers > 0) {
      let done: number, spins = 0;
      while ((done = Atomics.load(ctl, CTL.DONE)) < workers) {
        if (this.canBlock && ++spins > this.spin) { Atomics.wait(ctl, CTL.DONE, done); spins = 0; }
      }
    }
  }

  /** Runs export `op` on the caller only, as the single part. */
  runLocal(op: number, a0: number, a1: number, a2: number, a3: number, a4: number, a5: number, a6: number, a7: number, a8: number): void {
    this.fns[op](a0, a1, a2, a3, a4, a5, a6, a7, a8, 0, 1, this.mainScratch);
  }

  /** Stops the workers. The pool must not be used afterwards. */
  dispose(): void {
    if (this.workers.length) {
      this.ctl[CTL.OP] = -1;
      Atomics.add(this.ctl, CTL.SEQ, 1);
      Atomics.notify(this.ctl, CTL.SEQ);
      for (const w of this.workers) void w.terminate();
      this.workers = [];
    }
  }
}
