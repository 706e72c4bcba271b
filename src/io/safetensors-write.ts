// Writing safetensors files atomically, one tensor at a time.
//
// Layout, as the reference implementation (Rust `safetensors::serialize`) writes it:
//   - tensors ordered by dtype, widest first (its enum order: U64, I64, F64, F32, U32, I32, BF16, …),
//     then by name, so every tensor starts at a multiple of its element size;
//   - header = compact JSON, "__metadata__" first, padded with spaces to a multiple of 8 bytes.
// The header is computed from names, dtypes and shapes alone, so data can arrive later, tensor by
// tensor and chunk by chunk, in any tensor order: each chunk is written at its own offset.
//
// Atomic: everything goes to `<path>.tmp-<pid>`, which is fsynced and renamed over `path` only
// when every byte of every tensor has been written. A failure leaves no partial `path`.
//
//   writeSafetensors('out.safetensors', [{ name: 'w', dtype: 'F32', shape: [2, 3], data: new Float32Array(6) }]);
import fs from 'node:fs';
import nodePath from 'node:path';
import { DTYPE_SIZES, isSafetensorsDType, type SafetensorsDType } from './dtype.ts';
import { checkOutputFile, cleanStaleTemps, fsError } from './output.ts';
import { SafetensorsError } from './safetensors-error.ts';

export interface SafetensorsTensorSpec {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
}

export interface SafetensorsTensorToWrite extends SafetensorsTensorSpec {
  /** the bytes (any typed array, little-endian), or a function producing them when the writer reaches this tensor */
  data: ArrayBufferView | (() => ArrayBufferView);
}

/** Order of the reference implementation's Dtype enum; written from the last (widest) down. */
const DTYPE_RANK: SafetensorsDType[] = ['BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64'];
const WRITE_CHUNK = 64 * 1024 * 1024;

interface Slot {
  spec: SafetensorsTensorSpec;
  begin: number;
  end: number;
  /** bytes written so far (tensors are filled front to back) */
  filled: number;
}

const u8 = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

/** Streams tensors into a safetensors file whose header is fixed up front. */
export class SafetensorsWriter {
  readonly tmpPath: string;
  /** tensor specs in data order */
  readonly order: SafetensorsTensorSpec[];
  readonly dataStart: number;
  readonly totalBytes: number;
  private readonly slots = new Map<string, Slot>();
  private fd: number | undefined;

  constructor(
    readonly path: string,
    specs: SafetensorsTensorSpec[],
    metadata?: Record<string, string>,
  ) {
    const fail = (msg: string, tensor?: string): never => {
      throw new SafetensorsError(path, msg, tensor);
    };
    for (const s of specs) {
      const where = `tensor "${s.name}"`;
      if (typeof s.name !== 'string' || s.name === '' || s.name === '__metadata__') fail(`invalid tensor name ${JSON.stringify(s.name)}`);
      if (this.slots.has(s.name)) fail(`${where} is given twice`, s.name);
      if (!isSafetensorsDType(s.dtype)) fail(`${where}: unknown dtype ${JSON.stringify(s.dtype)}`, s.name);
      if (!Array.isArray(s.shape) || !s.shape.every((d) => Number.isSafeInteger(d) && d >= 0))
        fail(`${where}: shape must be non-negative integers, got ${JSON.stringify(s.shape)}`, s.name);
      this.slots.set(s.name, { spec: s, begin: 0, end: 0, filled: 0 });
    }
    for (const [k, v] of Object.entries(metadata ?? {})) if (typeof v !== 'string') fail(`metadata "${k}" must be a string, got ${JSON.stringify(v)}`);

    this.order = [...specs].sort((a, b) => DTYPE_RANK.indexOf(b.dtype) - DTYPE_RANK.indexOf(a.dtype) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let offset = 0;
    const entries: string[] = [];
    if (metadata && Object.keys(metadata).length > 0) entries.push(`"__metadata__":${JSON.stringify(metadata)}`);
    for (const s of this.order) {
      const slot = this.slots.get(s.name)!;
      slot.begin = offset;
      offset += s.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZES[s.dtype];
      slot.end = offset;
      entries.push(`${JSON.stringify(s.name)}:${JSON.stringify({ dtype: s.dtype, shape: s.shape, data_offsets: [slot.begin, slot.end] })}`);
    }
    let header = Buffer.from(`{${entries.join(',')}}`, 'utf8');
    const pad = (8 - (header.length % 8)) % 8;
    if (pad) header = Buffer.concat([header, Buffer.alloc(pad, 0x20)]);
    this.dataStart = 8 + header.length;
    this.totalBytes = offset;

    checkOutputFile(path, 'safetensors output');
    cleanStaleTemps(path);
    this.tmpPath = `${path}.tmp-${process.pid}`;
    try {
      this.fd = fs.openSync(this.tmpPath, 'w');
    } catch (e) {
      throw fsError(e, `writing ${this.tmpPath}`);
    }
    try {
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(header.length));
      this.writeAt(len, 0);
      this.writeAt(header, 8);
    } catch (e) {
      this.abort();
      throw fsError(e, `writing ${this.tmpPath}`);
    }
  }

  /** byte range [begin, end) of a tensor in the data section */
  range(name: string): { begin: number; end: number } {
    const s = this.slot(name);
    return { begin: s.begin, end: s.end };
  }

  /** Appends bytes to tensor `name` (call repeatedly to stream a large tensor in chunks). */
  write(name: string, data: ArrayBufferView): void {
    const s = this.slot(name);
    const bytes = u8(data);
    if (s.filled + bytes.length > s.end - s.begin) {
      throw new SafetensorsError(
        this.path,
        `tensor "${name}" (${s.spec.dtype} [${s.spec.shape}]) takes ${s.end - s.begin} bytes; writing ${bytes.length} more after ${s.filled} overflows it`,
        name,
      );
    }
    try {
      this.writeAt(bytes, this.dataStart + s.begin + s.filled);
    } catch (e) {
      throw fsError(e, `writing tensor "${name}" to ${this.tmpPath}`);
    }
    s.filled += bytes.length;
  }

  /** Checks every tensor is complete, then fsyncs and renames the temp file to `path`. */
  finish(): void {
    const incomplete = [...this.slots.values()].filter((s) => s.filled !== s.end - s.begin);
    if (incomplete.length) {
      const s = incomplete[0];
      this.abort();
      throw new SafetensorsError(
        this.path,
        `${incomplete.length} tensor(s) not fully written, e.g. "${s.spec.name}" has ${s.filled} of ${s.end - s.begin} bytes`,
        s.spec.name,
      );
    }
    try {
      fs.fsyncSync(this.fd!);
      fs.closeSync(this.fd!);
      this.fd = undefined;
      fs.renameSync(this.tmpPath, this.path);
    } catch (e) {
      this.abort();
      throw fsError(e, `writing ${this.path}`);
    }
    syncDir(nodePath.dirname(this.path));
  }

  /** Closes and deletes the temp file; `path` is untouched. Safe to call twice. */
  abort(): void {
    if (this.fd !== undefined) {
      try {
        fs.closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = undefined;
    }
    fs.rmSync(this.tmpPath, { force: true });
  }

  private slot(name: string): Slot {
    const s = this.slots.get(name);
    if (!s) throw new SafetensorsError(this.path, `tensor "${name}" is not in the header being written`, name);
    if (this.fd === undefined) throw new SafetensorsError(this.path, `writer is already finished or aborted`);
    return s;
  }

  private writeAt(bytes: Uint8Array, position: number): void {
    let done = 0;
    while (done < bytes.length) {
      done += fs.writeSync(this.fd!, bytes, done, Math.min(WRITE_CHUNK, bytes.length - done), position + done);
    }
  }
}

/** Makes a rename durable where the platform allows fsync on a directory (not Windows). */
export function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch {
    /* best effort */
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Writes a safetensors file atomically. `data` may be a function: it is called when the writer
 * reaches that tensor, so only one tensor needs to be in memory at a time.
 */
export function writeSafetensors(path: string, tensors: SafetensorsTensorToWrite[], metadata?: Record<string, string>): void {
  const w = new SafetensorsWriter(path, tensors, metadata);
  try {
    const byName = new Map(tensors.map((t) => [t.name, t]));
    for (const spec of w.order) {
      const t = byName.get(spec.name)!;
      const data = typeof t.data === 'function' ? t.data() : t.data;
      const { begin, end } = w.range(t.name);
      if (data.byteLength !== end - begin) {
        throw new SafetensorsError(path, `tensor "${t.name}" (${t.dtype} [${t.shape}]) needs ${end - begin} bytes but its data has ${data.byteLength}`, t.name);
      }
      w.write(t.name, data);
    }
  } catch (e) {
    w.abort();
    throw e;
  }
  w.finish();
}
