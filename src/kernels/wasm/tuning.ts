// Kernel variants chosen per machine. The fastest way to stream weights from memory, and the
// token count from which a packed GEMM beats the matrix × vector kernels, differ between CPUs
// (AMD Zen 5 and Intel Xeon so far) and thread counts, so the wasm backend measures them once,
// on first use, and keeps the answer:
//
//   quantDecodeRows   rows the q8_0 / q4_0 one-token kernel streams side by side (4, 8 or 16)
//   floatDecodeRows   the same for f32 / bf16 / f16 (4 or 8)
//   gemmMinTokens     tokens from which matmul packs weight tiles (GEMM) instead of streaming
//                     rows, for quantized and for f16 weights (f32 / bf16 never pack): NOT
//                     calibrated (below)
//
// The rows in flight never change a result (each row's sum is taken in the same order whatever
// their number), so they are measured and chosen per machine. For f16, gemmMinTokens chooses
// between two kernels whose sums round differently: a measured threshold would let the same short
// prompt give different logits in Node and in the browser on one machine (each engine keeps its
// own record), or after a re-calibration, so it stays at DEFAULT_TUNING unless a caller sets it
// (the quantized kernels sum alike, but their threshold is not measured either).
//
// Calibration (measureTuning) runs on a throwaway backend with the same threads and build: a
// one-token matmul over q8_0 and bf16 weights in 5120 × 1280 matrices, rotated through copies
// that together are twice the last-level cache (at least 64 MB; 64 MB where the cache's size is
// unknown, as in the browser), so they come from memory as in a model, for each row count,
// interleaved over 7 rounds (this VM drifts ±20 % between runs; the variants see the same drift),
// best of each; a variant replaces the default only when it is at least 5 % faster. About a
// second. Where twice the cache is more than CALIBRATION_MAX_BYTES (a VM that reports its host's
// 480 MiB L3), nothing is measured and the defaults stay: timed from cache, the variants rank
// differently than from memory (there 8 rows ran 8 % ahead of 16, in a model 16 rows decode
// 1.1B q8_0 8 % faster). The record is kept keyed by CPU model, threads, kernels build and
// JavaScript engine: in Node in $XDG_CACHE_HOME/openelm/kernel-tuning.json (~/.cache/...), in the
// browser in the origin private file system. OPENELM_KERNEL_TUNING=default skips both (fixed
// defaults: DEFAULT_TUNING; the test suite runs so, for results that do not depend on a
// measurement), =calibrate measures again and replaces the record.

export interface KernelTuning {
  quantDecodeRows: 4 | 8 | 16;
  floatDecodeRows: 4 | 8;
  /** matmul of this many tokens or more on q8_0 / q4_0 weights runs the packed GEMM (≥ 3) */
  gemmMinTokensQuant: number;
  /** the same for f16 weights (≥ 3; f32 and bf16 never pack: kernels.as tilesFloat) */
  gemmMinTokensFloat: number;
}

/** Used when nothing was measured: the best on the machines measured so far (docs/kernels.md). */
export const DEFAULT_TUNING: Readonly<KernelTuning> = Object.freeze({
  quantDecodeRows: 16,
  floatDecodeRows: 8,
  gemmMinTokensQuant: 4,
  gemmMinTokensFloat: 4,
});

/** What a calibration measured, beside the choice it made (GB/s of weights streamed, ms per matmul). */
export interface TuningMeasurements {
  /** q8_0 one-token matmul: GB/s of weights per rows-in-flight */
  quantDecodeGBps: Record<string, number>;
  /** bf16 one-token matmul: GB/s per rows-in-flight */
  floatDecodeGBps: Record<string, number>;
  /** wall time of the calibration */
  ms: number;
  /** bytes of weights each measured matmul call rotated through */
  footprint?: number;
  /** why nothing was measured (the defaults were kept) */
  skipped?: string;
}

/** Where a tuning came from. */
export type TuningSource = 'default' | 'calibrated' | 'cache' | 'given';

export interface TuningRecord {
  key: TuningKey;
  tuning: KernelTuning;
  measured?: TuningMeasurements;
  /** ISO date of the calibration */
  at: string;
}

export interface TuningKey {
  /** CALIBRATION_VERSION of the calibration that made the record */
  calibration: number;
  cpu: string;
  threads: number;
  /** the kernels build: a hash of the wasm binary */
  kernels: string;
  /** the JavaScript engine (V8 version, or the browser's user agent) */
  engine: string;
}

export const QUANT_ROWS = [4, 8, 16] as const;
export const FLOAT_ROWS = [4, 8] as const;

/** Throws a clear error unless `t` is a usable tuning; returns it typed. */
export function checkTuning(t: unknown, what = 'kernel tuning'): KernelTuning {
  const o = t as Partial<KernelTuning> | null;
  const bad = (field: string, want: string) => new Error(`${what}: ${field} must be ${want}, got ${JSON.stringify(o?.[field as keyof KernelTuning])}`);
  if (!o || typeof o !== 'object') throw new Error(`${what}: expected an object, got ${JSON.stringify(t)}`);
  if (!(QUANT_ROWS as readonly unknown[]).includes(o.quantDecodeRows)) throw bad('quantDecodeRows', '4, 8 or 16');
  if (!(FLOAT_ROWS as readonly unknown[]).includes(o.floatDecodeRows)) throw bad('floatDecodeRows', '4 or 8');
  for (const f of ['gemmMinTokensQuant', 'gemmMinTokensFloat'] as const) {
    const v = o[f];
    if (!(Number.isInteger(v) && (v as number) >= 3 && (v as number) <= 64)) throw bad(f, 'an integer in 3..64');
  }
  return {
    quantDecodeRows: o.quantDecodeRows as KernelTuning['quantDecodeRows'],
    floatDecodeRows: o.floatDecodeRows as KernelTuning['floatDecodeRows'],
    gemmMinTokensQuant: o.gemmMinTokensQuant as number,
    gemmMinTokensFloat: o.gemmMinTokensFloat as number,
  };
}

/** FNV-1a over the bytes, as 8 hex digits: names a kernels build. */
export function buildHash(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return (h >>> 0).toString(16).padStart(8, '0');
}

/** The first processor's block of Linux's /proc/cpuinfo (Node only); '' elsewhere. */
async function cpuInfo(): Promise<string> {
  try {
    return (await import('node:fs')).readFileSync('/proc/cpuinfo', 'utf8').split('\n\n')[0];
  } catch {
    return ''; // not Linux
  }
}

/**
 * The CPU's model name (Node: os.cpus(), with family and model numbers from /proc/cpuinfo on Linux:
 * under a hypervisor the name is often just "Intel(R) Xeon(R) Processor"); the browser does not
 * tell, so 'browser'.
 */
export async function cpuModel(): Promise<string> {
  if (typeof process !== 'undefined' && process.versions?.node) {
    const os = await import('node:os');
    const name = os.cpus()[0]?.model?.trim() || 'unknown CPU';
    const info = await cpuInfo();
    const field = (f: string) => new RegExp(`^${f}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim();
    const family = field('cpu family'),
      model = field('model');
    return `${name} (${os.arch()}${family && model ? `, family ${family} model ${model}` : ''})`;
  }
  return 'browser';
}

/**
 * Advice for the kernels named `backend` (WasmKernels.name): when they are the relaxed build on a
 * CPU with AVX-VNNI (Linux's cpuinfo flags), this engine does not run the VNNI build (docs/kernels.md,
 * "The VNNI build"): Node before 24 turns the fused int8 dot product into three instructions (or,
 * in Node 20, wrong sums). Otherwise undefined.
 */
export async function vnniHint(backend: string): Promise<string | undefined> {
  if (typeof process === 'undefined' || !process.versions?.node) return undefined;
  if (!/^wasm-relaxed-simd-\d+t$/.test(backend)) return undefined;
  if (!/^flags\s*:.*\bavx_vnni\b/m.test(await cpuInfo())) return undefined;
  return `this CPU has AVX-VNNI, which Node ${process.versions.node} does not use: under Node 24 or later the q8 / q4 kernels run on it (the same results; q8 prefill about 2× faster)`;
}

export function engineName(): string {
  if (typeof process !== 'undefined' && process.versions?.node) return `node ${process.versions.node} v8 ${process.versions.v8}`;
  const nav = (globalThis as { navigator?: { userAgent?: string } }).navigator;
  return nav?.userAgent ?? 'unknown';
}

export function keyString(k: TuningKey): string {
  return `${k.cpu} | ${k.threads} threads | kernels ${k.kernels} | ${k.engine} | calibration ${k.calibration}`;
}

/** Where tuning records are kept; get returns null when there is none (or it cannot be read). */
export interface TuningStore {
  get(key: TuningKey): Promise<TuningRecord | null>;
  put(record: TuningRecord): Promise<void>;
  /** a human-readable location, for messages */
  readonly where: string;
}

interface StoreFile {
  version: 1;
  records: Record<string, TuningRecord>;
}

function parseStoreFile(text: string): StoreFile {
  const o = JSON.parse(text) as StoreFile;
  if (o?.version !== 1 || typeof o.records !== 'object' || o.records === null) throw new Error('not a version-1 tuning file');
  return o;
}

function fromFile(file: StoreFile, key: TuningKey): TuningRecord | null {
  const r = file.records[keyString(key)];
  if (!r) return null;
  try {
    return { ...r, tuning: checkTuning(r.tuning) };
  } catch {
    return null; // a record written by another version, or edited by hand: measure again
  }
}

/** Node: one JSON file of records, replaced atomically (write a temporary file, then rename). */
export async function nodeTuningStore(file?: string): Promise<TuningStore> {
  const path = await import('node:path');
  const os = await import('node:os');
  const fs = await import('node:fs/promises');
  const where = file ?? path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'openelm', 'kernel-tuning.json');
  const read = async (): Promise<StoreFile> => {
    try {
      return parseStoreFile(await fs.readFile(where, 'utf8'));
    } catch {
      return { version: 1, records: {} };
    }
  };
  return {
    where,
    async get(key) {
      return fromFile(await read(), key);
    },
    async put(record) {
      const f = await read();
      f.records[keyString(record.key)] = record;
      await fs.mkdir(path.dirname(where), { recursive: true });
      const tmp = `${where}.${process.pid}.${Date.now()}.tmp`;
      await fs.writeFile(tmp, `${JSON.stringify(f, null, 2)}\n`);
      await fs.rename(tmp, where);
    },
  };
}

interface OpfsFile {
  getFile(): Promise<{ text(): Promise<string> }>;
  createWritable(): Promise<{ write(s: string): Promise<void>; close(): Promise<void> }>;
}
interface OpfsDir {
  getFileHandle(name: string, opts?: { create?: boolean }): Promise<OpfsFile>;
}

/** Browser: the same file in the origin private file system; null where there is none. */
export async function browserTuningStore(): Promise<TuningStore | null> {
  const storage = (globalThis as { navigator?: { storage?: { getDirectory?(): Promise<OpfsDir> } } }).navigator?.storage;
  if (!storage?.getDirectory) return null;
  let dir: OpfsDir;
  try {
    dir = await storage.getDirectory();
  } catch {
    return null;
  }
  const name = 'openelm-kernel-tuning.json';
  const read = async (): Promise<StoreFile> => {
    try {
      return parseStoreFile(await (await (await dir.getFileHandle(name)).getFile()).text());
    } catch {
      return { version: 1, records: {} };
    }
  };
  return {
    where: `origin private file system: ${name}`,
    async get(key) {
      return fromFile(await read(), key);
    },
    async put(record) {
      const f = await read();
      f.records[keyString(record.key)] = record;
      const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
      await w.write(JSON.stringify(f));
      await w.close();
    },
  };
}

/** The store of this platform (Node file or browser OPFS), or null. */
export async function defaultTuningStore(): Promise<TuningStore | null> {
  if (typeof process !== 'undefined' && process.versions?.node) return nodeTuningStore();
  return browserTuningStore();
}

/** The one-token and few-token matmuls a calibration times; implemented by WasmKernels. */
export interface Calibratable {
  readonly threads: number;
  setTuning(t: KernelTuning): void;
  calibrationMatmul(dtype: 'q8_0' | 'bf16', rows: number, cols: number, copies: number): (n: number) => number;
}

const now = (): number => (globalThis.performance ?? Date).now();

/** a variant replaces the default only when its best time is at most this fraction of the default's */
const MARGIN = 0.95;

/** bumped when the calibration changes, so records made by an older one are measured again */
export const CALIBRATION_VERSION = 4;

/** the most weight bytes a calibration fills (its throwaway backend grows by about this much) */
export const CALIBRATION_MAX_BYTES = 256 << 20;
const CALIBRATION_MIN_BYTES = 64 << 20;

/** The size of the largest CPU cache (Node on Linux, from sysfs), or undefined where unknown. */
export async function lastLevelCacheBytes(): Promise<number | undefined> {
  if (typeof process === 'undefined' || !process.versions?.node) return undefined;
  try {
    const { readFileSync, readdirSync } = await import('node:fs');
    const dir = '/sys/devices/system/cpu/cpu0/cache';
    let best: { level: number; bytes: number } | undefined;
    for (const d of readdirSync(dir)) {
      if (!d.startsWith('index')) continue;
      const level = Number(readFileSync(`${dir}/${d}/level`, 'utf8'));
      const m = /^(\d+)([KMG]?)/.exec(readFileSync(`${dir}/${d}/size`, 'utf8').trim());
      if (!m) continue;
      const bytes = Number(m[1]) * ({ '': 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 } as const)[m[2] as '' | 'K' | 'M' | 'G'];
      if (!best || level > best.level || (level === best.level && bytes > best.bytes)) best = { level, bytes };
    }
    return best?.bytes;
  } catch {
    return undefined; // not Linux, or no sysfs
  }
}

/**
 * Bytes of weights a calibration's matmuls rotate through so they stream from memory: twice the
 * last-level cache, at least 64 MB (64 MB when the cache is unknown); null when that is more than
 * CALIBRATION_MAX_BYTES (then the calibration measures nothing).
 */
export function calibrationFootprint(llcBytes: number | undefined): number | null {
  if (llcBytes === undefined) return CALIBRATION_MIN_BYTES;
  const want = Math.max(CALIBRATION_MIN_BYTES, 2 * llcBytes);
  return want <= CALIBRATION_MAX_BYTES ? want : null;
}

/** Measures the variants on `k` (a backend nothing else uses: its memory grows by ~150 MB). */
export function measureTuning(k: Calibratable, rounds = 7, footprint = CALIBRATION_MIN_BYTES): { tuning: KernelTuning; measured: TuningMeasurements } {
  const t0 = now();
  const decode = (dtype: 'q8_0' | 'bf16', variants: readonly number[], set: (v: number) => KernelTuning, fallback: number) => {
    // an OpenELM-270M FFN matrix, 5120 × 1280: 7 MB of q8_0, 13 MB of bf16, copies rotated through `footprint` bytes
    const rows = 5120,
      cols = 1280;
    const bytesPerCopy = dtype === 'q8_0' ? rows * (cols / 32) * 34 : rows * cols * 2;
    const copies = Math.ceil(footprint / bytesPerCopy);
    const run = k.calibrationMatmul(dtype, rows, cols, copies);
    const best = new Map<number, number>();
    for (const v of variants) {
      k.setTuning(set(v));
      run(1); // warm: page in, first call
    }
    for (let r = 0; r < rounds; r++) {
      // rotate the order each round so no variant always follows the same one
      for (let i = 0; i < variants.length; i++) {
        const v = variants[(i + r) % variants.length];
        k.setTuning(set(v));
        const ms = run(1);
        best.set(v, Math.min(best.get(v) ?? Infinity, ms));
      }
    }
    const gbps: Record<string, number> = {};
    for (const [v, ms] of best) gbps[v] = (bytesPerCopy * copies) / (ms * 1e6);
    // the default stays unless another variant is clearly faster: a busy machine's noise (a few
    // per cent between runs even as the best of 7) must not move it
    const [fastest, ms] = [...best].sort((a, b) => a[1] - b[1])[0];
    const chosen = ms <= MARGIN * (best.get(fallback) ?? Infinity) ? fastest : fallback;
    return { chosen, gbps };
  };
  const q = decode('q8_0', QUANT_ROWS, (v) => ({ ...DEFAULT_TUNING, quantDecodeRows: v as KernelTuning['quantDecodeRows'] }), DEFAULT_TUNING.quantDecodeRows);
  const f = decode('bf16', FLOAT_ROWS, (v) => ({ ...DEFAULT_TUNING, floatDecodeRows: v as KernelTuning['floatDecodeRows'] }), DEFAULT_TUNING.floatDecodeRows);
  const tuning: KernelTuning = {
    quantDecodeRows: q.chosen as KernelTuning['quantDecodeRows'],
    floatDecodeRows: f.chosen as KernelTuning['floatDecodeRows'],
    gemmMinTokensQuant: DEFAULT_TUNING.gemmMinTokensQuant,
    gemmMinTokensFloat: DEFAULT_TUNING.gemmMinTokensFloat,
  };
  return {
    tuning,
    measured: { quantDecodeGBps: q.gbps, floatDecodeGBps: f.gbps, ms: now() - t0, footprint },
  };
}
