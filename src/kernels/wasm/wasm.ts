/// <reference types="node" />
// WasmKernels: the Kernels interface on WebAssembly SIMD (assembly/kernels.as), multi-threaded.
//
//   const k = await createWasmKernels({ threads: 2 });
//   const w = k.weight('q8_0', 5120, 1280);   // fill w.data from the checkpoint
//   const x = k.f32(1280), y = k.f32(5120);
//   k.matmul(y, x, w, 1);
//   k.dispose();
//
// Memory: one shared WebAssembly.Memory (32-bit, up to 4 GiB) holds everything. f32() and
// weight() hand out views into it from a bump allocator (64-byte aligned, never freed: the model
// allocates once at load). Ops turn views into pointers with byteOffset, so every array passed
// to an op must come from this backend. Growing the memory keeps earlier views valid (a shared
// buffer never detaches; each growth just adds a new, longer SharedArrayBuffer object).
//
// Layout: [0, 4096) static data of the wasm module | 4096: thread-pool control block |
// 65536.. arena: the f16 → f32 table (256 KiB) and the tuning words after it, per-thread scratch regions, then the model's
// buffers and weights, and our activation-quantization scratch.

import { ACT_CODE, DTYPE_CODE } from '../codes.ts';
import { blocksPerRow, QK } from '../quant.ts';
import { makeWeight, RefKernels, weightBytes } from '../ref.ts';
import type { Activation, AttentionShape, Kernels, Weight, WeightDType } from '../types.ts';
import * as embedded from './build/kernels-wasm.ts';
import { ThreadPool } from './pool.ts';
import {
  buildHash,
  CALIBRATION_MAX_BYTES,
  CALIBRATION_VERSION,
  type Calibratable,
  calibrationFootprint,
  checkTuning,
  cpuModel,
  DEFAULT_TUNING,
  defaultTuningStore,
  engineName,
  type KernelTuning,
  lastLevelCacheBytes,
  measureTuning,
  type TuningKey,
  type TuningMeasurements,
  type TuningSource,
  type TuningStore,
} from './tuning.ts';

export interface WasmKernelsOptions {
  /** Threads including the caller. Default: all cores (os.availableParallelism / hardwareConcurrency). */
  threads?: number;
  /** Use the relaxed-SIMD build if the engine supports it (default true); false forces plain SIMD. */
  relaxedSimd?: boolean;
  /**
   * With relaxed SIMD, use the build whose int8 kernels run the fused dot product as VNNI's exact
   * u8 × s8 (vpdpbusd) where a probe shows the engine gives exactly that (default true; V8 13+,
   * i.e. Node 24+, on CPUs with AVX-VNNI); false keeps the relaxed build. Same results either way.
   */
  vnni?: boolean;
  /** Initial memory in bytes (default 16 MiB); it grows on demand up to 4 GiB. */
  initialMemory?: number;
  /** Multiply-adds below which an op runs on the caller alone (default 65536); 0 splits everything. */
  minParallelWork?: number;
  /**
   * Fewest multiply-adds the threads claim at a time (default 65536); 1 gives the finest split.
   * One-token matmuls claim at least DECODE_MIN_CLAIM_ROWS rows at the default, proportionally fewer below it.
   */
  chunkWork?: number;
  /** Bytes of private scratch ("stack") per thread (default 512 KiB: the prefill GEMMs need gemm_scratch_bytes()). */
  threadScratch?: number;
  /** Spin iterations before a waiting thread sleeps (default 20000, tens of microseconds). */
  spin?: number;
  /**
   * In the VNNI build, store q8_0 weights in tiles of 8 rows on their first use (default false):
   * the GEMM kernels' packed order, read in place rather than packed at every call, so passes over
   * several tokens (a batched step of many sequences, a prompt, a speculative check) run ~1.3×
   * faster and one token alone ~0.92× (270M shape, in-process A/B, Intel Xeon, Node 24). Same
   * results either way. `openelm serve` turns it on (LoadOptions.batched).
   */
  tiles?: boolean;
  /** @internal another build of kernels.as to run instead of the embedded one (A/B benchmarks of kernel changes) */
  binary?: Uint8Array<ArrayBuffer>;
  /**
   * Kernel variants (tuning.ts): 'auto' (default) uses the record kept for this CPU, threads,
   * build and engine, or calibrates once (about 1.4 s on 2 cores) and keeps it; 'default' the fixed
   * DEFAULT_TUNING; 'calibrate' measures again; or a KernelTuning. When this is not given, the
   * environment variable OPENELM_KERNEL_TUNING=auto|default|calibrate chooses (Node).
   */
  tuning?: 'auto' | 'default' | 'calibrate' | KernelTuning;
  /** where 'auto' keeps its records (default: the platform's, see tuning.ts); null keeps none */
  tuningStore?: TuningStore | null;
  /**
   * @internal bytes of weights a calibration streams through (default: calibrationFootprint of the
   * last-level cache); null measures nothing and keeps the defaults, as on a machine whose cache is
   * too large to stream past
   */
  calibrationBytes?: number | null;
}

const PAGE = 65536;
const MAX_PAGES = 65536;
const CTL_OFFSET = 4096;
const ARENA_START = 65536;
const ALIGN = 64;

/** Splittable exports, in the order the pool indexes them. */
const SPLIT_OPS = [
  'matmul_f32',
  'matmul_bf16',
  'matmul_f16',
  'matmul_q8_0',
  'matmul_q4_0',
  'attention',
  'gemm_float',
  'gemm_quant',
  'gemm_quant_tiles',
  'ffn_act',
  'quantize_q8',
  'gemm_t',
  'attention_bwd',
  'attention_bwd_reduce',
  'rmsnorm_bwd',
  'ffn_act_bwd',
  'cross_entropy',
  'sum_squares',
  'scale_f32',
  'adamw',
  'read_sum',
  'repack_q8',
] as const;
const OP = Object.fromEntries(SPLIT_OPS.map((name, i) => [name, i])) as { readonly [K in (typeof SPLIT_OPS)[number]]: number };
// From tuning.gemmMinTokens* tokens on, matmul runs the prefill GEMMs (packed weight tiles); their row tiles:
/** fewest rows per granule of the quantized decode kernel (whole groups of its rows in flight) */
const DECODE_GRANULE = 16;
/**
 * fewest rows a thread claims at a time in a one-token matmul: the decode kernels stream their R
 * rows in flight from R stretches of (claimed rows) / R consecutive rows, and short stretches lose
 * the hardware prefetchers (kernels.as decodeRows). 128 against 16 (the granule): decode 1.01-1.02x
 * (q8_0 270M, 1.1B), 1.04x (bf16 1.1B), in-process A/B on 2 threads; 256 no better
 */
const DECODE_MIN_CLAIM_ROWS = 128;
/** WasmKernelsOptions.chunkWork's default */
const DEFAULT_CHUNK_WORK = 65536;
const GEMM_FLOAT_ROWS = 12;
/** the GEMMs' token block (TB in kernels.as): the row granule of gemm_t split by rows */
const GEMM_TOKEN_BLOCK = 128;
const GEMM_QUANT_ROWS = 8;
/**
 * up to this many tokens the quantized GEMM runs tile by tile (gemm_quant_tiles) when its packed
 * activations fit the thread's scratch. 270M q8_0 prefill, in-process A/B on 2 threads: 8 tokens
 * 1.22x, 16 1.15x, 32 1.10x, 64 1.05x, 96 1.01x, 128 0.99x
 */
const GEMM_TILES_MAX_TOKENS = 64;

interface Exports {
  memory: WebAssembly.Memory;
  init_half_table(lut: number): void;
  gemm_scratch_bytes(): number;
  gemm_tiles_scratch_bytes(kind: number, n: number, cols: number): number;
  pair_for_f16(dst: number, src: number, n: number, cols: number): void;
  gemm_reads_int8(kind: number): number;
  vnni_build(): number;
  quarters_for_f16(dst: number, src: number, n: number, cols: number): void;
  decode_row(kind: number, w: number, r: number, cols: number, dst: number, rows: number): void;
  repack_scratch_bytes(cols: number): number;
  rmsnorm(out: number, x: number, weight: number, n: number, dim: number, eps: number): void;
  head_norm_rope(
    qkv: number,
    n: number,
    pos0: number,
    nQ: number,
    nKV: number,
    hd: number,
    qNorm: number,
    kNorm: number,
    eps: number,
    cos: number,
    sin: number,
  ): void;
  add_in_place(out: number, x: number, len: number): void;
  argmax(x: number, n: number): number;
  softmax(x: number, n: number, t: number): number;
  select_desc(p: number, n: number, tau: number, idx: number, tmp: number): number;
  kv_store(qkv: number, kc: number, vc: number, n: number, pos0: number, nQ: number, nKV: number, hd: number): void;
  gemm_t_scratch_bytes(): number;
  attention_bwd_scratch_bytes(n: number, R: number, hd: number): number;
  head_norm_rope_bwd(
    dqkv: number,
    qkvIn: number,
    n: number,
    pos0: number,
    nQ: number,
    nKV: number,
    hd: number,
    qNorm: number,
    kNorm: number,
    dqNorm: number,
    dkNorm: number,
    eps: number,
    cos: number,
    sin: number,
  ): void;
  embed_bwd(dtable: number, dy: number, ids: number, n: number, dim: number): void;
}

/** elements per item of the flat-buffer ops (sum_squares, scale_f32, adamw in kernels.as) */
const FLAT_BLOCK = 16384;
/** bytes per item of readPass (read_sum's READ_BLOCK) */
const READ_BLOCK_BYTES = 65536;
/** floats of dequantized weight rows per chunk of matmulGradInput on q8_0 / q4_0 weights (4 MiB) */
const GRAD_INPUT_DEQUANT_FLOATS = 1 << 20;
/** query rows (tokens × the query heads of a KV head) per block of attentionBackward */
const ATT_BWD_ROWS = 64;
/** query chunks (each with its own dK/dV partial sums) per KV head in attentionBackward: fixed, so results do not depend on the thread count */
const ATT_BWD_CHUNKS = 4;

// f32 values cross the pool's i32 arguments as bit patterns
const bitsF32 = new Float32Array(1),
  bitsI32 = new Int32Array(bitsF32.buffer);
function f32Bits(x: number): number {
  bitsF32[0] = x;
  return bitsI32[0];
}

function decodeBase64(s: string): Uint8Array<ArrayBuffer> {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function defaultThreads(): number {
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  if (typeof process !== 'undefined' && process.versions?.node) return 0; // resolved via node:os below
  return nav?.hardwareConcurrency ?? 1;
}

/**
 * The wasm binaries: relaxed SIMD if the engine validates that build (its VNNI form if `vnni` and
 * the engine's fused int8 dot product is VNNI's: vnniDotProduct), else plain SIMD.
 */
export function wasmBinary(relaxedSimd = true, vnni = true): { bytes: Uint8Array<ArrayBuffer>; relaxed: boolean; vnni: boolean } {
  if (relaxedSimd) {
    const bytes = decodeBase64(embedded.relaxed);
    if (WebAssembly.validate(bytes)) {
      if (vnni && vnniDotProduct()) return { bytes: decodeBase64(embedded.vnni), relaxed: true, vnni: true };
      return { bytes, relaxed: true, vnni: false };
    }
  }
  const bytes = decodeBase64(embedded.simd);
  if (!WebAssembly.validate(bytes)) throw new Error('WasmKernels: this engine does not support WebAssembly SIMD with threads (shared memory)');
  return { bytes, relaxed: false, vnni: false };
}

/**
 * A module whose one function f computes, in its exported memory m, i32x4.relaxed_dot_i8x16_i7x16_add_s
 * of the vectors at bytes 0 (a), 16 (b) and 32 (c) into bytes 48..63.
 */
const DOT_PROBE = Uint8Array.from(
  [
    '0061736d 01000000', // magic, version
    '01 04 01 6000 00', // types: () → ()
    '03 02 01 00', // functions: one of type 0
    '05 03 01 0001', // memory: 1 page
    '07 09 02 016d 02 00 0166 00 00', // exports: "m" memory 0, "f" function 0
    '0a 1f 01 1d 00', // code: one body of 29 bytes, no locals
    '4130', // i32.const 48 (the store's address)
    '4100 fd00 0400 4110 fd00 0400 4120 fd00 0400', // v128.load [0], [16], [32]
    'fd9302', // i32x4.relaxed_dot_i8x16_i7x16_add_s
    'fd0b 0400 0b', // v128.store, end
  ]
    .join('')
    .replace(/ /g, '')
    .match(/../g) ?? [],
  (h) => Number.parseInt(h, 16),
);
let vnniProbed: boolean | undefined;

/**
 * Whether this engine's i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c) is exactly c + Σ a · b per
 * lane with a signed and b taken as unsigned bytes (0..255), never saturating: VNNI's vpdpbusd,
 * which the VNNI build's kernels rely on. Relaxed SIMD leaves b ≥ 128 (and, in Node 20's V8, the
 * sums themselves) to the engine, so this is measured, not assumed: every byte value of a against
 * b values across 0..255, the extremes included. Cached after the first call.
 */
export function vnniDotProduct(): boolean {
  if (vnniProbed !== undefined) return vnniProbed;
  vnniProbed = false;
  try {
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(DOT_PROBE));
    const f = exports.f as () => void,
      m = new Uint8Array((exports.m as WebAssembly.Memory).buffer);
    const a = new Int8Array(m.buffer, 0, 16),
      b = m.subarray(16, 32),
      c = new Int32Array(m.buffer, 32, 4),
      out = new Int32Array(m.buffer, 48, 4);
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 16; i++) {
        a[i] = ((round * 16 + i) % 256) - 128; // every value of a over the 16 rounds
        b[i] = round >= 16 ? (round & 1 ? 255 : 128) : (i * 67 + round * 29) % 256;
      }
      if (round >= 18) a.fill(round === 18 ? -128 : 127);
      for (let j = 0; j < 4; j++) c[j] = (j - 2) * 1_000_003 * (round + 1);
      f();
      for (let j = 0; j < 4; j++) {
        let want = c[j];
        for (let k = 4 * j; k < 4 * j + 4; k++) want += a[k] * b[k];
        if (out[j] !== want) return false;
      }
    }
    vnniProbed = true;
  } catch {
    // no relaxed SIMD (or no WebAssembly): not VNNI
  }
  return vnniProbed;
}

/**
 * Node 20 (V8 11.3) has relaxed SIMD behind --experimental-wasm-relaxed-simd; Node ≥ 22 and current
 * browsers have it on. The flag only gates validation of the relaxed opcodes, and V8 reads it when
 * a module is compiled, so setting it at run time (before our first compile) is enough; the worker
 * threads receive the compiled module. Nothing happens where the engine already accepts the build.
 */
export async function enableRelaxedSimd(): Promise<void> {
  if (typeof process === 'undefined' || !process.versions?.node) return;
  if (WebAssembly.validate(decodeBase64(embedded.relaxed))) return;
  const v8 = await import('node:v8');
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
}

/** Creates the backend: compiles the module, allocates shared memory and starts threads - 1 workers. */
export async function createWasmKernels(opts: WasmKernelsOptions = {}): Promise<WasmKernels> {
  let threads = opts.threads ?? defaultThreads();
  if (!threads) threads = (await import('node:os')).availableParallelism();
  if (!(Number.isInteger(threads) && threads >= 1)) throw new RangeError(`createWasmKernels: threads must be an integer ≥ 1, got ${opts.threads}`);
  const wantRelaxed = opts.relaxedSimd ?? true;
  if (wantRelaxed) await enableRelaxedSimd();
  const { bytes, relaxed } = opts.binary ? { bytes: opts.binary, relaxed: wantRelaxed } : wasmBinary(wantRelaxed, opts.vnni ?? true);
  const module = await WebAssembly.compile(bytes);
  const initialPages = Math.max(2, Math.ceil((opts.initialMemory ?? 16 << 20) / PAGE));
  const memory = new WebAssembly.Memory({ initial: initialPages, maximum: MAX_PAGES, shared: true });
  const instance = await WebAssembly.instantiate(module, { env: { memory } });
  const scratchBytes = opts.threadScratch ?? 512 << 10;
  const k = new WasmKernels(
    memory,
    instance,
    threads,
    relaxed,
    opts.minParallelWork ?? 65536,
    opts.chunkWork ?? DEFAULT_CHUNK_WORK,
    scratchBytes,
    opts.tiles ?? false,
  );
  const scratch = Array.from({ length: threads }, () => k.alloc(scratchBytes));
  k.pool = await ThreadPool.create(module, instance, memory, CTL_OFFSET, SPLIT_OPS, threads, scratch, opts.spin);
  try {
    await applyTuning(k, bytes, { ...opts, threads, relaxedSimd: relaxed });
  } catch (e) {
    k.dispose();
    throw e;
  }
  return k;
}

/** createWasmKernels' `tuning` option, resolved (see WasmKernelsOptions.tuning). */
async function applyTuning(k: WasmKernels, bytes: Uint8Array<ArrayBuffer>, opts: WasmKernelsOptions & { threads: number }): Promise<void> {
  let mode = opts.tuning ?? 'auto';
  if (typeof mode === 'object') return k.setTuning(checkTuning(mode, 'createWasmKernels: tuning'), 'given');
  // the environment decides only when the caller did not
  const env = typeof process !== 'undefined' ? process.env?.OPENELM_KERNEL_TUNING : undefined;
  if (opts.tuning === undefined && env) {
    if (env !== 'default' && env !== 'calibrate' && env !== 'auto') throw new Error(`OPENELM_KERNEL_TUNING must be auto, default or calibrate, got '${env}'`);
    mode = env;
  }
  if (mode === 'default') return k.setTuning(DEFAULT_TUNING, 'default');
  if (mode !== 'auto' && mode !== 'calibrate')
    throw new Error(`createWasmKernels: tuning must be 'auto', 'default', 'calibrate' or a KernelTuning, got '${mode}'`);
  const key: TuningKey = { calibration: CALIBRATION_VERSION, cpu: await cpuModel(), threads: opts.threads, kernels: buildHash(bytes), engine: engineName() };
  const store = opts.tuningStore === undefined ? await defaultTuningStore() : opts.tuningStore;
  if (mode === 'auto' && store) {
    const rec = await store.get(key);
    if (rec) return k.setTuning(rec.tuning, 'cache', key, rec.measured);
  }
  const llc = opts.calibrationBytes === undefined ? await lastLevelCacheBytes() : undefined;
  const footprint = opts.calibrationBytes === undefined ? calibrationFootprint(llc) : opts.calibrationBytes;
  let result: ReturnType<typeof measureTuning>;
  if (footprint === null) {
    // weights that stream from memory would not fit the calibration's budget: keep the defaults
    const skipped =
      llc === undefined
        ? 'calibration turned off'
        : `last-level cache ${Math.round(llc / 2 ** 20)} MiB: matmuls streaming from memory would need more than ${CALIBRATION_MAX_BYTES >> 20} MiB`;
    result = { tuning: { ...DEFAULT_TUNING }, measured: { quantDecodeGBps: {}, floatDecodeGBps: {}, ms: 0, skipped } };
  } else {
    // a throwaway backend of the same build and threads: the memory it fills is given back
    const probe = await createWasmKernels({ ...opts, tuning: 'default', binary: bytes, initialMemory: undefined, calibrationBytes: undefined });
    try {
      result = measureTuning(probe, undefined, footprint);
    } finally {
      probe.dispose();
    }
  }
  k.setTuning(result.tuning, 'calibrated', key, result.measured);
  // a cache that cannot be written (read-only home, private browsing) only costs a calibration next time
  await store?.put({ key, tuning: result.tuning, measured: result.measured, at: new Date().toISOString() }).catch(() => {});
}

export class WasmKernels implements Kernels, Calibratable {
  readonly name: string;
  /** @internal set by createWasmKernels */
  pool!: ThreadPool;
  private readonly x: Exports;
  /** every SharedArrayBuffer object this memory has had: views made before a growth keep theirs */
  private readonly buffers = new Set<ArrayBufferLike>();
  private top = ARENA_START;
  /** per-call data, grown (rarely) to the largest n × cols seen: quantized activations for q8_0/q4_0
   * matmuls ('q'), scaled activations for f16 matrix × vector ('f'), selectDesc's radix sort ('s') */
  private readonly scratchAreas = {
    q: { at: 0, bytes: 0 },
    f: { at: 0, bytes: 0 },
    s: { at: 0, bytes: 0 },
    // training: attentionBackward's dK/dV partial sums ('a') and its chunk table ('c'), rmsnormBackward's
    // weight-gradient partials ('r'), per-row / per-block f64 sums ('d'), AdamW's constants ('h'), token ids ('i'),
    // dequantized weight rows for matmulGradInput ('w')
    a: { at: 0, bytes: 0 },
    c: { at: 0, bytes: 0 },
    r: { at: 0, bytes: 0 },
    d: { at: 0, bytes: 0 },
    h: { at: 0, bytes: 0 },
    i: { at: 0, bytes: 0 },
    w: { at: 0, bytes: 0 },
  };
  /**
   * Whether prompts (4+ tokens) run the GEMM kernels: the per-thread scratch must hold their packed
   * tiles and panels (with a smaller `threadScratch` they fall back to the matrix × vector kernels).
   */
  readonly prefillGemm: boolean;
  /** Whether the matmul gradients run the GEMM (gemm_t); with a smaller `threadScratch` they use the TS reference. */
  readonly trainGemm: boolean;
  /** the VNNI build (wasmBinary; the binary says: vnni_build): relaxed SIMD, int8 kernels on the fused dot product */
  readonly vnni: boolean;
  /** per quantized dtype, whether its GEMMs run on the int8 activations, needing no i16 copy (kernels.as int8Gemm) */
  private readonly int8Gemm: { q8_0: boolean; q4_0: boolean };
  /** f16 bit pattern → f32 value, 65536 entries, for the scales of q8_0/q4_0 blocks */
  private readonly halfTable: number;

  /** Use createWasmKernels. */
  constructor(
    readonly memory: WebAssembly.Memory,
    instance: WebAssembly.Instance,
    readonly threads: number,
    readonly relaxedSimd: boolean,
    private readonly minParallelWork: number,
    private readonly chunkWork: number,
    private readonly threadScratch: number,
    /** whether the VNNI build stores q8_0 weights in tiles (WasmKernelsOptions.tiles) */
    private readonly tileQ8 = false,
  ) {
    this.x = instance.exports as unknown as Exports;
    this.vnni = this.x.vnni_build() === 1;
    this.int8Gemm = { q8_0: this.x.gemm_reads_int8(3) === 1, q4_0: this.x.gemm_reads_int8(4) === 1 };
    this.buffers.add(memory.buffer);
    this.name = `wasm-${this.vnni ? 'relaxed-simd-vnni' : relaxedSimd ? 'relaxed-simd' : 'simd'}-${threads}t`;
    this.prefillGemm = threadScratch >= this.x.gemm_scratch_bytes();
    this.trainGemm = threadScratch >= this.x.gemm_t_scratch_bytes();
    // the half table, then the tuning words the quantized kernels read (kernels.as LUT_BYTES, TUNE_*)
    this.halfTable = this.alloc(65536 * 4 + 64);
    this.x.init_half_table(this.halfTable);
    this.setTuning(DEFAULT_TUNING, 'default');
  }

  /** The kernel variants in use (tuning.ts), where they came from, and what a calibration measured. */
  tuning: KernelTuning = DEFAULT_TUNING;
  tuningSource: TuningSource = 'default';
  tuningKey?: TuningKey;
  tuningMeasured?: TuningMeasurements;

  /** Switches kernel variants (decode results are unchanged; see tuning.ts). */
  setTuning(t: KernelTuning, source: TuningSource = 'given', key?: TuningKey, measured?: TuningMeasurements): void {
    this.tuning = checkTuning(t);
    this.tuningSource = source;
    this.tuningKey = key;
    this.tuningMeasured = measured;
    new Int32Array(this.buffer(), this.halfTable + 65536 * 4, 16)[0] = this.tuning.quantDecodeRows;
  }

  /**
   * @internal for calibration: `copies` random rows × cols matrices of `dtype` in our memory and a
   * function that runs an n-token matmul on the next copy and returns its milliseconds
   */
  calibrationMatmul(dtype: 'q8_0' | 'bf16', rows: number, cols: number, copies: number): (n: number) => number {
    const ws: Weight[] = [];
    let seed = 0x9e3779b9;
    const rnd = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed;
    };
    for (let c = 0; c < copies; c++) {
      const w = this.weight(dtype, rows, cols);
      if (dtype === 'bf16') {
        // values of magnitude 0.004..1 with random signs: no subnormals, no NaN
        const u = w.data as Uint16Array;
        for (let i = 0; i < u.length; i++) {
          const r = rnd();
          u[i] = (r & 0x8000) | (0x3b80 + ((r >>> 16) % 0x380));
        }
      } else {
        const b = w.data as Uint8Array;
        for (let i = 0; i < b.length; i += 4) {
          const r = rnd();
          b[i] = r;
          b[i + 1] = r >>> 8;
          b[i + 2] = r >>> 16;
          b[i + 3] = r >>> 24;
        }
        for (let i = 0; i < b.length; i += 34) {
          b[i] = 0x00; // every block's f16 scale 2^-10
          b[i + 1] = 0x14;
        }
      }
      ws.push(w);
    }
    const x = this.f32(12 * cols),
      out = this.f32(12 * rows);
    for (let i = 0; i < x.length; i++) x[i] = (rnd() / 2 ** 32) * 2 - 1;
    let next = 0;
    return (n: number) => {
      const t0 = performance.now();
      for (let c = 0; c < copies; c++) {
        this.matmul(out, x, ws[next], n);
        next = (next + 1) % copies;
      }
      return performance.now() - t0;
    };
  }

  /** Bytes handed out so far (the arena's top); it never shrinks. */
  get usedBytes(): number {
    return this.top;
  }

  /** Reserves `bytes` (64-byte aligned) in the arena, growing the memory if needed; returns the offset. */
  alloc(bytes: number): number {
    const at = this.top;
    const end = at + Math.ceil(bytes / ALIGN) * ALIGN;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const need = Math.ceil((end - have) / PAGE);
      const pages = have / PAGE;
      // grow in steps of at least 1/8 of the current size so loading a model does not grow per tensor
      const step = Math.min(MAX_PAGES - pages, Math.max(need, Math.ceil(pages / 8), 256));
      if (need > MAX_PAGES - pages) {
        throw new RangeError(`WasmKernels: out of memory: ${end} bytes needed, WebAssembly memory is limited to 4 GiB`);
      }
      this.memory.grow(step);
      this.buffers.add(this.memory.buffer);
    }
    this.top = end;
    return at;
  }

  /**
   * memory.buffer, registered as ours. V8 may hand out a new SharedArrayBuffer object for a shared
   * memory that did not grow (when another shared memory of the process grew: seen with two
   * backends in one process), so every object a view is made on is recorded, not only those after
   * our own growths.
   */
  private buffer(): ArrayBufferLike {
    const b = this.memory.buffer;
    this.buffers.add(b);
    return b;
  }

  f32(n: number): Float32Array {
    const at = this.alloc(n * 4); // first: it may grow the memory, which replaces memory.buffer
    return new Float32Array(this.buffer(), at, n);
  }

  i32(n: number): Int32Array {
    const at = this.alloc(n * 4);
    return new Int32Array(this.buffer(), at, n);
  }

  weight(dtype: WeightDType, rows: number, cols: number): Weight {
    const bytes = weightBytes(dtype, rows, cols);
    const at = this.alloc(bytes);
    return makeWeight(dtype, rows, cols, new Uint8Array(this.buffer(), at, bytes));
  }

  weightBytes(dtype: WeightDType, rows: number, cols: number): number {
    return weightBytes(dtype, rows, cols);
  }

  /** Stops the worker threads. */
  dispose(): void {
    this.pool.dispose();
  }

  /** The address of a view into our memory. */
  private ptr(a: ArrayBufferView, what: string): number {
    if (!this.buffers.has(a.buffer)) {
      throw new Error(`WasmKernels: argument '${what}' is not memory of this backend; allocate it with kernels.f32() / kernels.weight()`);
    }
    return a.byteOffset;
  }

  read(x: Float32Array, n: number, offset = 0): Promise<Float32Array> {
    return Promise.resolve(x.slice(offset, offset + n));
  }

  embed(out: Float32Array, table: Weight, ids: ArrayLike<number>, n: number): void {
    const d = table.cols,
      o = this.ptr(out, 'out'),
      w = this.ptr(table.data, 'table'),
      kind = DTYPE_CODE[table.dtype] | this.tiled(table);
    for (let t = 0; t < n; t++) {
      const id = ids[t];
      if (!(id >= 0 && id < table.rows)) throw new RangeError(`token id ${id} is outside the vocabulary [0, ${table.rows})`);
      this.x.decode_row(kind, w, id, d, o + t * d * 4, table.rows);
    }
  }

  matmul(out: Float32Array, x: Float32Array, w: Weight, n: number): void {
    const { rows, cols } = w;
    const o = this.ptr(out, 'out'),
      xp = this.ptr(x, 'x'),
      wp = this.ptr(w.data, 'w');
    const quant = w.dtype === 'q8_0' || w.dtype === 'q4_0';
    // f32 / bf16 never pack: their tiles (kernels.as tilesFloat) outran the packed GEMM at every
    // size measured, and sum as the one-token kernel does (docs/kernels.md)
    const packs = quant || w.dtype === 'f16';
    const work = rows * cols * n,
      gemm = packs && n >= (quant ? this.tuning.gemmMinTokensQuant : this.tuning.gemmMinTokensFloat) && this.prefillGemm;
    switch (w.dtype) {
      case 'f32':
      case 'bf16':
      case 'f16': {
        if (gemm) {
          // (f16 only) its activations reordered to sum in the one-token kernel's order (kernels.as gemmF16)
          const xq = this.scratch('f', n * cols * 4);
          this.x.quarters_for_f16(xq, xp, n, cols);
          // by token blocks when every thread gets one (training batches), else by row tiles (prompts
          // come in chunks of 128 tokens)
          if (n >= GEMM_TOKEN_BLOCK * this.threads) {
            const g = this.rowGranule(n);
            return this.pool.run(OP.gemm_float, n, g, this.minGrains(g * rows * cols, work), o, xq, wp, rows, cols, n, DTYPE_CODE[w.dtype], 1, 0);
          }
          const tile = GEMM_FLOAT_ROWS;
          return this.pool.run(OP.gemm_float, rows, tile, this.minGrains(tile * cols * n, work), o, xq, wp, rows, cols, n, DTYPE_CODE[w.dtype], 0, 0);
        }
        // one token (and f16 short of its GEMM, token by token over rows kept in cache) runs the
        // one-token kernel: granules of the rows it streams side by side; f32 / bf16 from 2 tokens
        // run tiles (kernels.as tilesFloat)
        const few = n === 1 || w.dtype === 'f16';
        const R = this.tuning.floatDecodeRows,
          g = few ? R : 4,
          minGrains = few ? this.decodeGrains(g, cols * n, work) : this.minGrains(g * cols * n, work);
        if (w.dtype === 'f32') return this.pool.run(OP.matmul_f32, rows, g, minGrains, o, xp, wp, rows, cols, n, R, 0, 0);
        if (w.dtype === 'bf16') return this.pool.run(OP.matmul_bf16, rows, g, minGrains, o, xp, wp, rows, cols, n, R, 0, 0);
        // the f16 kernel skips the rebias multiply per weight; the activations carry it (×2^64),
        // reordered for the halves it takes in pairs
        const xs = this.scratch('f', n * cols * 4);
        this.x.pair_for_f16(xs, xp, n, cols);
        return this.pool.run(OP.matmul_f16, rows, g, minGrains, o, xs, wp, rows, cols, n, R, 0, 0);
      }
      case 'q8_0':
      case 'q4_0': {
        // activations → int8 blocks once per call (like llama.cpp's q8_0 × q8_0 dot)
        const nb = blocksPerRow(cols);
        // xi (int8), xd and xs (f32), xo (i32), then for the GEMM xw: the ints again as i16 (not
        // for the GEMMs on int8: q4_0's with relaxed SIMD, both with VNNI)
        const intBytes = n * nb * QK;
        const wide = gemm && !this.int8Gemm[w.dtype] ? 2 * intBytes : 0;
        const xi = this.scratch('q', intBytes + 3 * n * nb * 4 + wide);
        const xd = xi + intBytes,
          xw = wide ? xd + 3 * n * nb * 4 : 0;
        // ~10 ops per value, split by token
        this.runItems(OP.quantize_q8, n, 10 * cols, xp, xi, xd, n, cols, xw, 0, 0, 0);
        const kind = DTYPE_CODE[w.dtype],
          tiled = this.tiled(w);
        // a tiled weight's few tokens go through the GEMM's kernels too: tile by tile when the
        // thread's scratch holds their activations, else (very wide rows) in passes
        const tilesFit = (gemm || tiled) && this.gemmTiles(kind, n, cols);
        if (gemm || (tiled && !tilesFit)) {
          const tile = GEMM_QUANT_ROWS;
          const op = tilesFit ? OP.gemm_quant_tiles : OP.gemm_quant;
          return this.pool.run(op, rows, tile, this.minGrains(tile * cols * n, work), o, xw, xd, wp, rows, cols, n, kind | tiled, this.halfTable);
        }
        // fewer tokens run the decode kernel token by token over rows kept in cache: granules of
        // at least 16 rows, whole groups of the rows in flight. Both compute each row's sum in the
        // same way (kernels.as groupBlock), so a token's result does not depend on the others.
        // (A tiled weight's whole tiles run the GEMM's kernels where they lie: kernels.as matmul_q8_0.)
        const g = Math.max(DECODE_GRANULE, this.tuning.quantDecodeRows);
        const op = w.dtype === 'q8_0' ? OP.matmul_q8_0 : OP.matmul_q4_0;
        return this.pool.run(op, rows, g, this.decodeGrains(g, cols * n, work), o, xi, xd, wp, rows, cols, n, this.halfTable, tiled);
      }
    }
  }

  /**
   * TILED_KIND (kernels.as: 0x100, or'ed into a kind) when `w` is a q8_0 weight stored in tiles.
   * With WasmKernelsOptions.tiles, the VNNI build tiles a q8_0 weight in place on its first use
   * (where the GEMMs have their scratch): its whole groups of 8 rows rearranged into the GEMM
   * kernels' packed order, so they read it where it lies instead of packing it at every call
   * (types.ts Weight: `data` is filled before the first op that reads it).
   */
  private tiled(w: Weight): number {
    if (w.layout === 'tiles8') return 0x100;
    if (!(this.tileQ8 && this.vnni && w.dtype === 'q8_0' && this.prefillGemm && w.rows >= 8 && this.x.repack_scratch_bytes(w.cols) <= this.threadScratch))
      return 0;
    this.pool.run(OP.repack_q8, w.rows & ~7, 8, this.minGrains(8 * w.cols, w.rows * w.cols), this.ptr(w.data, 'w'), w.rows, w.cols, 0, 0, 0, 0, 0, 0);
    // the mark this and every TS reader of the bytes go by (ref.ts decodeRow: DoRA's row norms, the reference fallbacks)
    (w as { layout?: Weight['layout'] }).layout = 'tiles8';
    return 0x100;
  }

  /** Whether a quantized GEMM of n tokens × `cols` columns (kind 3 q8_0, 4 q4_0) runs tile by tile (gemm_quant_tiles). */
  gemmTiles(kind: number, n: number, cols: number): boolean {
    return n <= GEMM_TILES_MAX_TOKENS && this.x.gemm_tiles_scratch_bytes(kind, n, cols) <= this.threadScratch;
  }

  /** A reusable scratch area of at least `bytes` for per-call data ('q' quantized activations, 'f' scaled ones). */
  private scratch(which: keyof WasmKernels['scratchAreas'], bytes: number): number {
    const s = this.scratchAreas[which];
    if (bytes > s.bytes) {
      s.bytes = Math.max(bytes, 2 * s.bytes);
      s.at = this.alloc(s.bytes);
    }
    return s.at;
  }

  /**
   * Runs split op `op` over `units` independent items of about `itemWork` multiply-adds each, in
   * granules of one item, or of several when there are more items than the pool takes granules
   * (16384: e.g. one per token of a 16 × 2048-token micro-batch; the pool itself merges granules past 32766).
   */
  private runItems(
    op: number,
    units: number,
    itemWork: number,
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
    const grain = Math.max(1, Math.ceil(units / 16384));
    this.pool.run(op, units, grain, this.minGrains(grain * itemWork, units * itemWork), a0, a1, a2, a3, a4, a5, a6, a7, a8);
  }

  /** minGrains for the decode kernel in granules of g rows of `rowWork` each: at least DECODE_MIN_CLAIM_ROWS rows (scaled by chunkWork) */
  private decodeGrains(g: number, rowWork: number, work: number): number {
    const m = this.minGrains(g * rowWork, work);
    const rows = DECODE_MIN_CLAIM_ROWS * Math.min(1, this.chunkWork / DEFAULT_CHUNK_WORK);
    return m === 0x7fffffff ? m : Math.max(m, Math.ceil(rows / g));
  }

  /**
   * The fewest granules (of `grainWork` multiply-adds each) a thread claims at a time: all of them
   * (the caller alone) below minParallelWork multiply-adds in total, else chunkWork's worth.
   */
  private minGrains(grainWork: number, work: number): number {
    if (work < this.minParallelWork) return 0x7fffffff;
    return Math.max(1, Math.ceil(this.chunkWork / grainWork));
  }

  rmsnorm(out: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void {
    this.x.rmsnorm(this.ptr(out, 'out'), this.ptr(x, 'x'), this.ptr(weight, 'weight'), n, dim, eps);
  }

  headNormRope(
    qkv: Float32Array,
    s: AttentionShape,
    qNorm: Float32Array | null,
    kNorm: Float32Array | null,
    eps: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void {
    this.x.head_norm_rope(
      this.ptr(qkv, 'qkv'),
      s.n,
      s.pos0,
      s.nQ,
      s.nKV,
      s.headDim,
      qNorm ? this.ptr(qNorm, 'qNorm') : 0,
      kNorm ? this.ptr(kNorm, 'kNorm') : 0,
      eps,
      this.ptr(cos, 'cos'),
      this.ptr(sin, 'sin'),
    );
  }

  attention(out: Float32Array, qkv: Float32Array, kCache: Float32Array, vCache: Float32Array, s: AttentionShape, _scratch: Float32Array): void {
    const { n, pos0, nQ, nKV, headDim } = s;
    if (((nQ / nKV) * (256 + headDim + 2) + headDim) * 4 > this.threadScratch) {
      throw new RangeError(
        `WasmKernels.attention: ${nQ / nKV} query heads per KV head of dim ${headDim} need more than threadScratch = ${this.threadScratch} bytes`,
      );
    }
    const q = this.ptr(qkv, 'qkv'),
      kc = this.ptr(kCache, 'kCache'),
      vc = this.ptr(vCache, 'vCache'),
      o = this.ptr(out, 'out');
    this.x.kv_store(q, kc, vc, n, pos0, nQ, nKV, headDim);
    // q·k and p·v over every cached position, for every (token, head); items are (token, KV head)
    const work = 2 * n * nQ * (pos0 + n) * headDim;
    const items = n * nKV;
    this.runItems(OP.attention, items, work / items, o, q, kc, vc, n, pos0, nQ, nKV, headDim);
  }

  ffnAct(out: Float32Array, x: Float32Array, n: number, dim: number, act: Activation, glu: boolean): void {
    const code = ACT_CODE[act];
    if (code === undefined) throw new Error(`WasmKernels.ffnAct: unknown activation '${act}'`);
    // items are tokens; an activation costs ~20 ops per value, so weigh it like that many multiply-adds
    this.runItems(OP.ffn_act, n, 20 * dim, this.ptr(out, 'out'), this.ptr(x, 'x'), n, dim, code, glu ? 1 : 0, 0, 0, 0);
  }

  addInPlace(out: Float32Array, x: Float32Array, len: number): void {
    this.x.add_in_place(this.ptr(out, 'out'), this.ptr(x, 'x'), len);
  }

  softmax(x: Float32Array, n: number, temperature: number): number {
    if (!(n >= 0 && n <= x.length)) throw new RangeError(`WasmKernels.softmax: n = ${n} is outside [0, ${x.length}]`);
    if (!(temperature > 0 && temperature < Infinity))
      throw new RangeError(`WasmKernels.softmax: temperature must be a positive finite number, got ${temperature}`);
    return this.x.softmax(this.ptr(x, 'x'), n, temperature);
  }

  selectDesc(p: Float32Array, n: number, tau: number, idx: Int32Array): number {
    if (!(n >= 0 && n <= p.length && n <= idx.length)) throw new RangeError(`WasmKernels.selectDesc: n = ${n} exceeds p (${p.length}) or idx (${idx.length})`);
    return this.x.select_desc(this.ptr(p, 'p'), n, tau, this.ptr(idx, 'idx'), this.scratch('s', (3 * n + 256) * 4));
  }

  argmax(x: Float32Array, n: number): number {
    if (!(n >= 0 && n <= x.length)) throw new RangeError(`WasmKernels.argmax: n = ${n} is outside [0, ${x.length}]`);
    return this.x.argmax(this.ptr(x, 'x'), n);
  }

  // ---- training (kernels.as, "training"; the TS reference is the definition) ----

  /** refOps: the plain-TS ops, for what the SIMD kernels do not cover (quantized weights, odd head dims, a small threadScratch) */
  private readonly refOps = new RefKernels();

  /** an f64 view of `count` values at a scratch area's offset (made per call: the memory may have grown) */
  private f64At(at: number, count: number): Float64Array {
    return new Float64Array(this.memory.buffer, at, count);
  }

  /** the address of n token ids: the array itself when it is ours, else a copy in scratch area 'i' */
  private idsPtr(ids: ArrayLike<number>, n: number): number {
    if (ids instanceof Int32Array && this.buffers.has(ids.buffer)) return ids.byteOffset;
    const at = this.scratch('i', n * 4),
      view = new Int32Array(this.memory.buffer, at, n);
    for (let t = 0; t < n; t++) view[t] = ids[t];
    return at;
  }

  matmulGradInput(dx: Float32Array, dy: Float32Array, w: Weight, n: number): void {
    const { rows, cols } = w;
    if (!this.trainGemm) return this.refOps.matmulGradInput(dx, dy, w, n);
    if (n === 0 || cols === 0) return;
    if (rows === 0) {
      dx.fill(0, 0, n * cols);
      return;
    }
    const dxp = this.ptr(dx, 'dx'),
      dyp = this.ptr(dy, 'dy'),
      wp = this.ptr(w.data, 'w');
    // dx [n, cols] = dy [n, rows] · W [rows, cols]: W's rows are the packed tiles' k-major rows as they are
    if (w.dtype !== 'q8_0' && w.dtype !== 'q4_0') return this.gemmT(dxp, dyp, wp, n, cols, rows, DTYPE_CODE[w.dtype] << 4, 0);
    // quantized weights (a frozen base under an adapter): rows dequantized into scratch a chunk at
    // a time (O(rows · cols) against the product's O(n · rows · cols)), each chunk's product added
    const chunk = Math.max(16, Math.min(rows, Math.floor(GRAD_INPUT_DEQUANT_FLOATS / cols)));
    const buf = this.scratch('w', chunk * cols * 4),
      kind = DTYPE_CODE[w.dtype] | this.tiled(w);
    for (let r0 = 0; r0 < rows; r0 += chunk) {
      const kc = Math.min(chunk, rows - r0);
      for (let r = 0; r < kc; r++) this.x.decode_row(kind, wp, r0 + r, cols, buf + r * cols * 4, rows);
      this.gemmT(dxp, dyp + r0 * 4, buf, n, cols, kc, r0 > 0 ? 2 : 0, rows);
    }
  }

  matmulGradWeight(dw: Float32Array, dy: Float32Array, x: Float32Array, n: number, rows: number, cols: number): void {
    if (!this.trainGemm) return this.refOps.matmulGradWeight(dw, dy, x, n, rows, cols);
    if (n === 0 || rows === 0 || cols === 0) return;
    // dw [rows, cols] += dyᵀ [rows, n] · x [n, cols]: A = dy transposed block by block, B = x, accumulated
    this.gemmT(this.ptr(dw, 'dw'), this.ptr(dy, 'dy'), this.ptr(x, 'x'), rows, cols, n, 1 | 2, 0);
  }

  /**
   * The rows a claim of a GEMM split by rows is made of: a block (128) when there are 4 or more
   * per thread (the guided claims even out), else an equal share per thread, so that 3 blocks
   * (qkv_proj's 384 rows) do not split 2 : 1 (a claim still runs in blocks of up to 128 rows;
   * smaller claims measured slower: each packs the tiles of B again)
   */
  private rowGranule(M: number): number {
    if (M >= 4 * GEMM_TOKEN_BLOCK * this.threads) return GEMM_TOKEN_BLOCK;
    return Math.ceil(M / this.threads / 8) * 8;
  }

  /**
   * gemm_t over the threads: by blocks of output rows when every thread gets at least one (no part
   * of A is read twice), else by tiles of 12 columns in one range per thread (each range streams
   * all of A: the input gradient of the output head, 128 token rows against 32000 vocabulary rows)
   */
  private gemmT(out: number, a: number, b: number, M: number, N: number, K: number, flags: number, lda: number): void {
    const work = M * N * K;
    if (M >= GEMM_TOKEN_BLOCK * this.threads) {
      const g = this.rowGranule(M);
      this.pool.run(OP.gemm_t, M, g, this.minGrains(g * N * K, work), out, a, b, M, N, K, flags | 8, lda, 0);
    } else {
      const tiles = Math.ceil(N / GEMM_FLOAT_ROWS);
      const minGrains = work < this.minParallelWork ? 0x7fffffff : Math.max(1, Math.ceil(tiles / this.threads));
      this.pool.run(OP.gemm_t, N, GEMM_FLOAT_ROWS, minGrains, out, a, b, M, N, K, flags, lda, 0);
    }
  }

  rmsnormBackward(dx: Float32Array, dweight: Float32Array, dy: Float32Array, x: Float32Array, weight: Float32Array, n: number, dim: number, eps: number): void {
    if (n === 0) return;
    // parts of rows, each with its own weight-gradient partial (the threads must not share one);
    // how many depends on n only, so the result does not depend on the thread count
    const parts = Math.min(n, Math.max(1, Math.floor((n * dim) / 65536)), 8);
    const dwp = parts === 1 ? this.ptr(dweight, 'dweight') : this.scratch('r', parts * dim * 4);
    if (parts > 1) new Float32Array(this.memory.buffer, dwp, parts * dim).fill(0);
    this.runItems(
      OP.rmsnorm_bwd,
      parts,
      (8 * n * dim) / parts,
      this.ptr(dx, 'dx'),
      dwp,
      this.ptr(dy, 'dy'),
      this.ptr(x, 'x'),
      this.ptr(weight, 'weight'),
      n,
      dim,
      f32Bits(eps),
      parts,
    );
    if (parts > 1) {
      const dwo = this.ptr(dweight, 'dweight');
      for (let p = 0; p < parts; p++) this.x.add_in_place(dwo, dwp + p * dim * 4, dim);
    }
  }

  headNormRopeBackward(
    dqkv: Float32Array,
    qkvIn: Float32Array,
    s: AttentionShape,
    qNorm: Float32Array | null,
    kNorm: Float32Array | null,
    dqNorm: Float32Array | null,
    dkNorm: Float32Array | null,
    eps: number,
    cos: Float32Array,
    sin: Float32Array,
  ): void {
    this.x.head_norm_rope_bwd(
      this.ptr(dqkv, 'dqkv'),
      this.ptr(qkvIn, 'qkvIn'),
      s.n,
      s.pos0,
      s.nQ,
      s.nKV,
      s.headDim,
      qNorm ? this.ptr(qNorm, 'qNorm') : 0,
      kNorm ? this.ptr(kNorm, 'kNorm') : 0,
      qNorm && dqNorm ? this.ptr(dqNorm, 'dqNorm') : 0,
      kNorm && dkNorm ? this.ptr(dkNorm, 'dkNorm') : 0,
      eps,
      this.ptr(cos, 'cos'),
      this.ptr(sin, 'sin'),
    );
  }

  attentionBackward(dqkv: Float32Array, dout: Float32Array, qkv: Float32Array, out: Float32Array, s: AttentionShape): void {
    const { n, nQ, nKV, headDim: hd } = s;
    if (s.pos0 !== 0) throw new RangeError('attentionBackward: training attention starts at position 0');
    if (n === 0) return;
    const G = nQ / nKV;
    // blocks of Bq tokens (R = Bq · G query rows, padded to 8) that fit the thread's scratch
    let Bq = Math.max(1, Math.min(n, Math.floor(ATT_BWD_ROWS / G)));
    const bytes = (b: number): number => this.x.attention_bwd_scratch_bytes(n, (b * G + 7) & ~7, hd);
    while (Bq > 1 && bytes(Bq) > this.threadScratch) Bq = Math.ceil(Bq / 2);
    if (hd % 8 !== 0 || !Number.isInteger(G) || bytes(Bq) > this.threadScratch) return this.refOps.attentionBackward(dqkv, dout, qkv, out, s);
    // query chunks of about equal causal work (chunk [a, b) costs ∝ b² - a²), on block boundaries
    const blocks = Math.ceil(n / Bq),
      P = Math.min(ATT_BWD_CHUNKS, blocks);
    const ctlAt = this.scratch('c', (4 + P) * 4),
      ctl = new Int32Array(this.memory.buffer, ctlAt, 3 + P + 1);
    const partials = this.scratch('a', P * nKV * (n + 4) * 2 * hd * 4);
    ctl[0] = P;
    ctl[1] = Bq;
    ctl[2] = partials;
    ctl[3] = 0;
    ctl[3 + P] = n;
    for (let c = 1; c < P; c++) ctl[3 + c] = Math.min(n, Math.max(ctl[2 + c], Math.round(blocks * Math.sqrt(c / P)) * Bq));
    const work = (5 * nQ * hd * n * (n + 1)) / 2,
      items = P * nKV;
    const dq = this.ptr(dqkv, 'dqkv');
    this.runItems(OP.attention_bwd, items, work / items, dq, this.ptr(dout, 'dout'), this.ptr(qkv, 'qkv'), this.ptr(out, 'out'), n, nQ, nKV, hd, ctlAt);
    this.runItems(OP.attention_bwd_reduce, n, 2 * nKV * hd * P, dq, ctlAt, n, nQ, nKV, hd, 0, 0, 0);
  }

  ffnActBackward(dx: Float32Array, dy: Float32Array, x: Float32Array, n: number, dim: number, act: Activation, glu: boolean): void {
    const code = ACT_CODE[act];
    if (code === undefined) throw new Error(`WasmKernels.ffnActBackward: unknown activation '${act}'`);
    this.runItems(OP.ffn_act_bwd, n, 30 * dim, this.ptr(dx, 'dx'), this.ptr(dy, 'dy'), this.ptr(x, 'x'), n, dim, code, glu ? 1 : 0, 0, 0);
  }

  embedBackward(dtable: Float32Array, dy: Float32Array, ids: ArrayLike<number>, n: number, dim: number): void {
    const rows = Math.floor(dtable.length / dim);
    for (let t = 0; t < n; t++) {
      const id = ids[t];
      if (!(Number.isInteger(id) && id >= 0 && id < rows))
        throw new RangeError(`WasmKernels.embedBackward: token id ${id} at ${t} is outside the table's ${rows} rows`);
    }
    this.x.embed_bwd(this.ptr(dtable, 'dtable'), this.ptr(dy, 'dy'), this.idsPtr(ids, n), n, dim);
  }

  crossEntropy(logits: Float32Array, targets: Int32Array, n: number, V: number, zLoss: number, scale: number, lse: Float32Array): number {
    for (let t = 0; t < n; t++) {
      if (targets[t] >= V) throw new RangeError(`crossEntropy: target ${targets[t]} at row ${t} is outside the vocabulary [0, ${V})`);
    }
    if (n === 0) return 0;
    const losses = this.scratch('d', n * 8);
    // ~12 ops per logit (max, exp, sum, scale)
    this.runItems(
      OP.cross_entropy,
      n,
      12 * V,
      this.ptr(logits, 'logits'),
      this.idsPtr(targets, n),
      n,
      V,
      f32Bits(zLoss),
      f32Bits(scale),
      this.ptr(lse, 'lse'),
      losses,
      0,
    );
    const l = this.f64At(losses, n);
    let sum = 0;
    for (let t = 0; t < n; t++) sum += l[t];
    return sum;
  }

  /**
   * Reads `buf` (memory of this backend, a multiple of 64 KiB) once over all threads and returns a
   * checksum: one pass of the machine's read bandwidth from WebAssembly (bench/memory.ts). Not part
   * of the Kernels seam: a measurement tool of this backend.
   */
  readPass(buf: Float32Array): number {
    const bytes = buf.byteLength;
    if (bytes % READ_BLOCK_BYTES !== 0) throw new RangeError(`readPass: ${bytes} bytes is not a multiple of ${READ_BLOCK_BYTES}`);
    const blocks = bytes / READ_BLOCK_BYTES,
      sums = this.scratch('d', blocks * 4);
    this.pool.run(OP.read_sum, blocks, 1, 1, this.ptr(buf, 'buf'), blocks, sums, 0, 0, 0, 0, 0, 0);
    const v = new Int32Array(this.memory.buffer, sums, blocks);
    let s = 0;
    for (let b = 0; b < blocks; b++) s = (s + v[b]) | 0;
    return s;
  }

  sumSquares(x: Float32Array, n: number): number {
    if (n <= 0) return 0;
    const blocks = Math.ceil(n / FLAT_BLOCK),
      sums = this.scratch('d', blocks * 8);
    this.runItems(OP.sum_squares, blocks, FLAT_BLOCK, this.ptr(x, 'x'), n, sums, 0, 0, 0, 0, 0, 0);
    const p = this.f64At(sums, blocks);
    let s = 0;
    for (let b = 0; b < blocks; b++) s += p[b];
    return s;
  }

  scale(x: Float32Array, n: number, s: number): void {
    if (n <= 0) return;
    this.runItems(OP.scale_f32, Math.ceil(n / FLAT_BLOCK), FLAT_BLOCK, this.ptr(x, 'x'), n, f32Bits(s), 0, 0, 0, 0, 0, 0);
  }

  adamw(
    p: Float32Array,
    g: Float32Array,
    m: Float32Array,
    v: Float32Array,
    n: number,
    lr: number,
    beta1: number,
    beta2: number,
    eps: number,
    weightDecay: number,
    step: number,
  ): void {
    if (n <= 0) return;
    // the f32 constants exactly as adamwRef (ref.ts) rounds them
    const hp = this.scratch('h', 32),
      c = new Float32Array(this.memory.buffer, hp, 8);
    c[0] = 1 - lr * weightDecay;
    c[1] = beta1;
    c[2] = 1 - beta1;
    c[3] = beta2;
    c[4] = 1 - beta2;
    c[5] = Math.sqrt(1 - beta2 ** step);
    c[6] = eps;
    c[7] = -(lr / (1 - beta1 ** step));
    // ~14 ops and 28 bytes per parameter: memory-bound, split in blocks
    this.runItems(OP.adamw, Math.ceil(n / FLAT_BLOCK), 4 * FLAT_BLOCK, this.ptr(p, 'p'), this.ptr(g, 'g'), this.ptr(m, 'm'), this.ptr(v, 'v'), n, hp, 0, 0, 0);
  }
}
