/// <reference types="node" />
// Worker threads that share the caller's WebAssembly memory and run slices of one kernel call.
//
// Dispatch is synchronous and allocation-free: the caller writes a job descriptor (export index,
// item count and granule, 9 i32 arguments) into a control block in shared memory, bumps the job counter
// (Atomics.notify only if a worker sleeps), then it and the workers claim ranges of the job's
// items from a shared counter until none are left, and the caller waits for the ranges the
// workers took. Claiming (rather than a fixed share per thread) keeps the caller busy when a
// worker wakes late or is descheduled, which on 2 cores shared with other processes is common.
// Workers spin briefly on the job counter before sleeping in Atomics.wait, so back-to-back kernel
// calls (the matmuls of one decode step) do not pay a futex wake-up each. The caller blocks while
// it waits: fine in Node and inside a browser Web Worker; on a browser main thread it only spins.
//
// Works with worker_threads in Node and Web Workers in the browser; the worker body is
// `workerMain` below, shipped as source text so there is no separate file to resolve.

/**
 * Layout of the control block: Int32 words at `ctlOffset` in shared memory.
 * SEQ: job counter (bumped per job) · DONE: granules finished by workers · OP: export index ·
 * UNITS: items in this job · ARGS..ARGS+8: the 9 arguments · CLAIM: (job id << 16) | next granule ·
 * SLEEPERS: workers blocked in Atomics.wait · WAITING: 1 while the caller blocks on DONE ·
 * GRAIN: items per granule · MIN: fewest granules per claim · THREADS: threads in the pool.
 */
export const CTL = { SEQ: 0, DONE: 1, OP: 2, UNITS: 3, ARGS: 4, CLAIM: 13, SLEEPERS: 14, WAITING: 15, GRAIN: 16, MIN: 17, THREADS: 18, WORDS: 20 } as const;

/** Everything a worker needs; structured-cloned into the worker. */
interface WorkerInit {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctlOffset: number;
  scratch: number;
  ops: readonly string[];
  spin: number;
}

/** A splittable export: does items [from, to) of the job given by a0 .. a8. */
type SplitFn = (
  a0: number,
  a1: number,
  a2: number,
  a3: number,
  a4: number,
  a5: number,
  a6: number,
  a7: number,
  a8: number,
  from: number,
  to: number,
  scratch: number,
) => void;

// The worker body. Self-contained (it is turned into source text): the CTL indices are literals.
//
// Scheduling is "guided": a job's items, in granules, are claimed from the CLAIM word in ranges of
// 1 / (threads + 1) of what is left (at least MIN granules), so the first claims are big (about
// a static split's share, streaming long runs of weight rows) and the last ones small (threads
// finish together). A worker that wakes late or is descheduled only takes what is left and never
// holds the caller up by more than one range. The job id in CLAIM's high bits makes a stale
// worker's claim fail once the caller has moved on to the next job. Caller and workers share
// `claim` (the same code is in ThreadPool.run).
/** granules one job can have: CLAIM's low 16 bits count them (ThreadPool.run merges granules beyond) */
const MAX_GRANULES = 0x7ffe;

function workerMain(init: WorkerInit, post: (msg: string) => void): void {
  const instance = new WebAssembly.Instance(init.module, { env: { memory: init.memory } });
  const fns = init.ops.map((name) => instance.exports[name] as SplitFn);
  const ctl = new Int32Array(init.memory.buffer, init.ctlOffset, 20);
  const { scratch, spin } = init;
  let seen = Atomics.load(ctl, 0);
  post('ready');
  for (;;) {
    let seq: number,
      spins = 0;
    while ((seq = Atomics.load(ctl, 0)) === seen) {
      if (++spins > spin) {
        Atomics.add(ctl, 14, 1);
        Atomics.wait(ctl, 0, seen);
        Atomics.sub(ctl, 14, 1);
        spins = 0;
      }
    }
    seen = seq;
    const op = ctl[2];
    if (op < 0) return;
    const job = seq & 0x7fff,
      units = ctl[3],
      grain = ctl[16],
      min = ctl[17],
      threads = ctl[18],
      fn = fns[op];
    const total = Math.ceil(units / grain);
    const a0 = ctl[4],
      a1 = ctl[5],
      a2 = ctl[6],
      a3 = ctl[7],
      a4 = ctl[8],
      a5 = ctl[9],
      a6 = ctl[10],
      a7 = ctl[11],
      a8 = ctl[12];
    for (;;) {
      const v = Atomics.load(ctl, 13),
        g = v & 0xffff;
      if (v >>> 16 !== job || g >= total) break;
      const take = Math.max(min, Math.ceil((total - g) / (threads + 1)));
      const end = Math.min(total, g + take);
      if (Atomics.compareExchange(ctl, 13, v, (v & ~0xffff) | end) !== v) continue;
      fn(a0, a1, a2, a3, a4, a5, a6, a7, a8, g * grain, Math.min(units, end * grain), scratch);
      Atomics.add(ctl, 1, end - g);
      if (Atomics.load(ctl, 15)) Atomics.notify(ctl, 1);
    }
  }
}

interface AnyWorker {
  terminate(): unknown;
}

const isNode = typeof process !== 'undefined' && !!process.versions?.node;

async function startWorker(init: WorkerInit): Promise<AnyWorker> {
  if (isNode) {
    const { Worker } = await import('node:worker_threads');
    const src =
      `const { parentPort, workerData } = require('node:worker_threads');\n` + `(${workerMain.toString()})(workerData, (m) => parentPort.postMessage(m));`;
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

  private constructor(
    mainInstance: WebAssembly.Instance,
    memory: WebAssembly.Memory,
    ctlOffset: number,
    ops: readonly string[],
    parts: number,
    private readonly mainScratch: number,
    private readonly spin: number,
  ) {
    this.parts = parts;
    this.ctl = new Int32Array(memory.buffer, ctlOffset, CTL.WORDS);
    this.fns = ops.map((name) => mainInstance.exports[name] as SplitFn);
    // Atomics.wait throws on a browser's main thread; there the caller only spins
    this.canBlock = isNode || typeof (globalThis as { document?: unknown }).document === 'undefined';
  }

  /**
   * A pool of `parts` threads: the caller plus parts - 1 workers, each with its own scratch
   * region (`scratch[0]` is the caller's). `ops` lists the splittable exports, by index.
   */
  static async create(
    module: WebAssembly.Module,
    mainInstance: WebAssembly.Instance,
    memory: WebAssembly.Memory,
    ctlOffset: number,
    ops: readonly string[],
    parts: number,
    scratch: readonly number[],
    spin = 20000,
  ): Promise<ThreadPool> {
    const pool = new ThreadPool(mainInstance, memory, ctlOffset, ops, parts, scratch[0], spin);
    pool.ctl.fill(0);
    pool.ctl[CTL.THREADS] = parts;
    try {
      const started = [];
      for (let part = 1; part < parts; part++) {
        started.push(startWorker({ module, memory, ctlOffset, scratch: scratch[part], ops, spin }));
      }
      pool.workers = await Promise.all(started);
    } catch (e) {
      pool.dispose();
      throw e;
    }
    return pool;
  }

  /**
   * Runs export `op` over items [0, units) in granules of `grain` items (each call gets a range
   * that starts at a multiple of `grain`), claimed by the caller and the workers in ranges of at
   * least `minGrains` granules; returns when every item is done.
   */
  run(
    op: number,
    units: number,
    grain: number,
    minGrains: number,
    a0: number,
    a1: number,
    a2: number,
    a3: number,
    a4: number,
    a5: number,
    a6: number,
    a7: number,
    a8: number,
  ): void {
    const ctl = this.ctl,
      fn = this.fns[op],
      scratch = this.mainScratch,
      threads = this.parts;
    let total = Math.ceil(units / grain);
    if (threads === 1 || total <= minGrains) {
      fn(a0, a1, a2, a3, a4, a5, a6, a7, a8, 0, units, scratch);
      return;
    }
    if (total > MAX_GRANULES) {
      // CLAIM holds a granule index in 16 bits: merge granules (a multiple of the grain, so every
      // range still starts where the kernel expects) until they fit
      const f = Math.ceil(total / MAX_GRANULES);
      grain *= f;
      minGrains = Math.max(1, Math.ceil(minGrains / f));
      total = Math.ceil(units / grain);
    }
    // First, close the previous job to stale claims. A worker that saw the previous job late may be
    // reading its descriptor just as it is overwritten below; with the previous job's id still in
    // CLAIM, a granule count read half from the new descriptor could let it claim and run a range
    // of that finished job with the new arguments (and count it into DONE for the new job). A CLAIM
    // carrying the new job's id fails its id check; the new job's workers start only after SEQ.
    const seq = (ctl[CTL.SEQ] + 1) | 0,
      job = (seq & 0x7fff) << 16;
    Atomics.store(ctl, CTL.CLAIM, job | 0xffff);
    ctl[CTL.OP] = op;
    ctl[CTL.UNITS] = units;
    ctl[CTL.GRAIN] = grain;
    ctl[CTL.MIN] = minGrains;
    ctl[4] = a0;
    ctl[5] = a1;
    ctl[6] = a2;
    ctl[7] = a3;
    ctl[8] = a4;
    ctl[9] = a5;
    ctl[10] = a6;
    ctl[11] = a7;
    ctl[12] = a8;
    Atomics.store(ctl, CTL.DONE, 0);
    Atomics.store(ctl, CTL.CLAIM, job);
    Atomics.store(ctl, CTL.SEQ, seq);
    if (Atomics.load(ctl, CTL.SLEEPERS) > 0) Atomics.notify(ctl, CTL.SEQ);
    let mine = 0;
    for (;;) {
      const v = Atomics.load(ctl, CTL.CLAIM),
        g = v & 0xffff;
      if (g >= total) break;
      const end = Math.min(total, g + Math.max(minGrains, Math.ceil((total - g) / (threads + 1))));
      if (Atomics.compareExchange(ctl, CTL.CLAIM, v, job | end) !== v) continue;
      fn(a0, a1, a2, a3, a4, a5, a6, a7, a8, g * grain, Math.min(units, end * grain), scratch);
      mine += end - g;
    }
    const want = total - mine;
    let done: number,
      spins = 0;
    while ((done = Atomics.load(ctl, CTL.DONE)) < want) {
      if (this.canBlock && ++spins > this.spin) {
        Atomics.store(ctl, CTL.WAITING, 1);
        if (Atomics.load(ctl, CTL.DONE) < want) Atomics.wait(ctl, CTL.DONE, done, 1);
        Atomics.store(ctl, CTL.WAITING, 0);
        spins = 0;
      }
    }
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
