// Reading safetensors files: the header is parsed and validated up front, tensor bytes are read
// from disk straight into the caller's buffer, one tensor at a time, never the whole file.
//
//   u64 little-endian N | N bytes of UTF-8 JSON header | data section
//   header: { "<name>": { "dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end] },
//             "__metadata__"?: { "<key>": "<string value>" } }
//   offsets are relative to the data section; the tensors must tile it exactly (no overlap, no hole).
//
//   const f = openSafetensors('model.safetensors');
//   const w = f.readAsF32('transformer.norm.weight');   // Float32Array [model_dim]
//
// Offsets are JS numbers (exact to 2^53 bytes), so files past 2 GB / 4 GB are fine.
import fs from 'node:fs';
import { bf16ToF32, DTYPE_SIZES, f16ToF32, isSafetensorsDType, type SafetensorsDType } from './dtype.ts';
import { SafetensorsError } from './safetensors-error.ts';

export { DTYPE_SIZES, type FloatDType, type SafetensorsDType } from './dtype.ts';
export { SafetensorsError } from './safetensors-error.ts';
export { type SafetensorsTensorSpec, type SafetensorsTensorToWrite, SafetensorsWriter, writeSafetensors } from './safetensors-write.ts';

/** Largest header we accept (the reference implementation's limit is 100 MB too). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Reads go through in chunks this large: big enough to be I/O bound, below readSync's 2 GB limit. */
const READ_CHUNK = 64 * 1024 * 1024;

export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** [begin, end) relative to the data section */
  dataOffsets: [number, number];
  /** end - begin = product(shape) * dtype size */
  byteLength: number;
}

/** The typed array `read` returns for each dtype (raw bits for 16-bit floats and F8). */
export type TensorArray =
  | Float64Array
  | Float32Array
  | Uint16Array
  | Int16Array
  | BigInt64Array
  | BigUint64Array
  | Int32Array
  | Uint32Array
  | Int8Array
  | Uint8Array;

export interface SafetensorsFile {
  readonly path: string;
  readonly fileSize: number;
  /** N, the JSON header length */
  readonly headerLength: number;
  /** 8 + N: absolute offset of the data section */
  readonly dataStart: number;
  readonly metadata: Record<string, string>;
  /** in data order */
  readonly tensors: Map<string, SafetensorsTensorInfo>;
  /** the tensor's info; throws naming the file if absent */
  info(name: string): SafetensorsTensorInfo;
  /** copies the tensor's raw little-endian bytes into dest (dest.byteLength must equal its byteLength) */
  readInto(name: string, dest: ArrayBufferView): void;
  /** copies dest.byteLength raw bytes of the tensor, from byte `offset` of its data, into dest */
  readRangeInto(name: string, offset: number, dest: ArrayBufferView): void;
  /** the tensor in a new typed array: Float32Array for F32, Uint16Array (raw bits) for BF16/F16, … */
  read(name: string): TensorArray;
  /** an F32/BF16/F16 tensor as f32 values */
  readAsF32(name: string): Float32Array;
  /** an F32/BF16/F16 tensor as f32 values into dest (16-bit data is read into dest's upper half and widened in place) */
  readF32Into(name: string, dest: Float32Array): void;
}

const u8 = (v: ArrayBufferView): Uint8Array => new Uint8Array(v.buffer, v.byteOffset, v.byteLength);

function readFully(fd: number, dest: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < dest.length) {
    const n = fs.readSync(fd, dest, done, Math.min(READ_CHUNK, dest.length - done), position + done);
    if (n === 0) throw new SafetensorsError(file, `unexpected end of file reading ${what} at byte ${position + done}`);
    done += n;
  }
}

/** Opens a safetensors file and validates its header against its size. Only the header is read. */
export function openSafetensors(path: string): SafetensorsFile {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (e) {
    throw new SafetensorsError(path, `cannot open: ${(e as Error).message}`);
  }
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) throw new SafetensorsError(path, `only ${fileSize} bytes: too short for a safetensors file (needs an 8-byte header length)`);
    const lenBuf = Buffer.alloc(8);
    readFully(fd, lenBuf, 0, path, 'the header length');
    const n64 = lenBuf.readBigUInt64LE(0);
    if (n64 > BigInt(MAX_HEADER_BYTES))
      throw new SafetensorsError(path, `header length ${n64} is absurd (limit ${MAX_HEADER_BYTES} bytes): not a safetensors file, or a corrupt one`);
    const n = Number(n64);
    if (8 + n > fileSize)
      throw new SafetensorsError(path, `header length ${n} runs past the end of the file (${fileSize} bytes): truncated or not a safetensors file`);
    const headerBytes = Buffer.alloc(n);
    readFully(fd, headerBytes, 8, path, 'the header');
    return parseHeader(path, headerBytes, fileSize);
  } finally {
    fs.closeSync(fd);
  }
}

function parseHeader(path: string, bytes: Uint8Array, fileSize: number): SafetensorsFile {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new SafetensorsError(path, 'header is not valid UTF-8');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(path, `header is not valid JSON (${(e as Error).message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new SafetensorsError(path, 'header must be a JSON object');

  const dataLength = fileSize - 8 - bytes.length;
  const metadata: Record<string, string> = {};
  const list: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(raw as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) throw new SafetensorsError(path, '"__metadata__" must be an object of strings');
      for (const [k, v] of Object.entries(entry)) {
        if (typeof v !== 'string') throw new SafetensorsError(path, `"__metadata__"."${k}" must be a string, got ${JSON.stringify(v)}`);
        metadata[k] = v;
      }
      continue;
    }
    list.push(parseEntry(path, name, entry, dataLength));
  }

  // The tensors must tile [0, dataLength) exactly: sort by begin and walk a cursor.
  list.sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let cursor = 0;
  let prev: SafetensorsTensorInfo | undefined;
  for (const t of list) {
    const [begin, end] = t.dataOffsets;
    if (begin < cursor) {
      throw new SafetensorsError(
        path,
        `tensors "${prev!.name}" (bytes ${prev!.dataOffsets[0]}..${prev!.dataOffsets[1]}) and "${t.name}" (bytes ${begin}..${end}) overlap`,
        t.name,
      );
    }
    if (begin > cursor) {
      const after = prev ? `after tensor "${prev.name}"` : 'at the start of the data section';
      throw new SafetensorsError(path, `hole in the data section: bytes ${cursor}..${begin} ${after} belong to no tensor (next is "${t.name}")`, t.name);
    }
    cursor = end;
    prev = t;
  }
  if (cursor !== dataLength) {
    throw new SafetensorsError(
      path,
      `the data section has ${dataLength} bytes but the tensors cover only ${cursor}: ${dataLength - cursor} trailing bytes belong to no tensor`,
    );
  }
  return new SafetensorsFileImpl(path, fileSize, bytes.length, metadata, new Map(list.map((t) => [t.name, t])));
}

function parseEntry(path: string, name: string, entry: unknown, dataLength: number): SafetensorsTensorInfo {
  const fail = (msg: string): never => {
    throw new SafetensorsError(path, `tensor "${name}": ${msg}`, name);
  };
  if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) fail('header entry must be an object with dtype, shape and data_offsets');
  const e = entry as Record<string, unknown>;
  if (!isSafetensorsDType(e.dtype)) fail(`unknown dtype ${JSON.stringify(e.dtype)} (known: ${Object.keys(DTYPE_SIZES).join(', ')})`);
  const dtype = e.dtype as SafetensorsDType;
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0))
    fail(`shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    fail(`data_offsets must be [begin, end] with non-negative integers, got ${JSON.stringify(offs)}`);
  }
  const [begin, end] = offs as number[];
  if (begin > end) fail(`data_offsets [${begin}, ${end}] have begin > end`);
  let numel = 1;
  for (const d of shape as number[]) numel *= d;
  const want = numel * DTYPE_SIZES[dtype];
  if (!Number.isSafeInteger(want)) fail(`shape ${JSON.stringify(shape)} is too large`);
  if (end - begin !== want) {
    fail(`data_offsets [${begin}, ${end}] span ${end - begin} bytes but shape [${shape}] of ${dtype} needs ${numel} × ${DTYPE_SIZES[dtype]} = ${want}`);
  }
  if (end > dataLength) fail(`truncated: tensor "${name}" needs bytes ${begin}..${end} but the file has only ${dataLength} data bytes`);
  return { name, dtype, shape: shape as number[], dataOffsets: [begin, end], byteLength: want };
}

const ARRAY_OF: Record<SafetensorsDType, new (n: number) => TensorArray> = {
  F64: Float64Array,
  F32: Float32Array,
  F16: Uint16Array,
  BF16: Uint16Array,
  I64: BigInt64Array,
  I32: Int32Array,
  I16: Int16Array,
  I8: Int8Array,
  U64: BigUint64Array,
  U32: Uint32Array,
  U16: Uint16Array,
  U8: Uint8Array,
  BOOL: Uint8Array,
  F8_E4M3: Uint8Array,
  F8_E5M2: Uint8Array,
};

class SafetensorsFileImpl implements SafetensorsFile {
  readonly dataStart: number;

  constructor(
    readonly path: string,
    readonly fileSize: number,
    readonly headerLength: number,
    readonly metadata: Record<string, string>,
    readonly tensors: Map<string, SafetensorsTensorInfo>,
  ) {
    this.dataStart = 8 + headerLength;
  }

  info(name: string): SafetensorsTensorInfo {
    const t = this.tensors.get(name);
    if (!t) throw new SafetensorsError(this.path, `no tensor "${name}" (the file has ${this.tensors.size} tensors)`, name);
    return t;
  }

  readInto(name: string, dest: ArrayBufferView): void {
    const t = this.info(name);
    if (dest.byteLength !== t.byteLength) {
      throw new SafetensorsError(
        this.path,
        `tensor "${name}" has ${t.byteLength} bytes (${t.dtype} [${t.shape}]) but the destination buffer has ${dest.byteLength}`,
        name,
      );
    }
    this.readRangeInto(name, 0, dest);
  }

  readRangeInto(name: string, offset: number, dest: ArrayBufferView): void {
    const t = this.info(name);
    if (!(Number.isInteger(offset) && offset >= 0 && offset + dest.byteLength <= t.byteLength)) {
      throw new SafetensorsError(
        this.path,
        `bytes [${offset}, ${offset + dest.byteLength}) are outside tensor "${name}" (${t.byteLength} bytes, ${t.dtype} [${t.shape}])`,
        name,
      );
    }
    // Opened per read: no descriptor to leak, and a file changed since opening is caught here.
    const fd = fs.openSync(this.path, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      if (size !== this.fileSize) {
        throw new SafetensorsError(this.path, `file changed since it was opened (${this.fileSize} → ${size} bytes) while reading tensor "${name}"`, name);
      }
      readFully(fd, u8(dest), this.dataStart + t.dataOffsets[0] + offset, this.path, `tensor "${name}"`);
    } finally {
      fs.closeSync(fd);
    }
  }

  read(name: string): TensorArray {
    const t = this.info(name);
    const a = new ARRAY_OF[t.dtype](t.byteLength / DTYPE_SIZES[t.dtype]);
    this.readInto(name, a);
    return a;
  }

  readAsF32(name: string): Float32Array {
    const t = this.info(name);
    const out = new Float32Array(t.byteLength / DTYPE_SIZES[t.dtype]);
    this.readF32Into(name, out);
    return out;
  }

  readF32Into(name: string, dest: Float32Array): void {
    const t = this.info(name);
    const n = t.byteLength / DTYPE_SIZES[t.dtype];
    if (dest.length !== n) throw new SafetensorsError(this.path, `tensor "${name}" has ${n} elements but the destination has ${dest.length}`, name);
    if (t.dtype === 'F32') return this.readInto(name, dest);
    if (t.dtype !== 'BF16' && t.dtype !== 'F16')
      throw new SafetensorsError(this.path, `tensor "${name}" is ${t.dtype}, not a float dtype convertible to f32 (F32, BF16, F16)`, name);
    const raw = new Uint16Array(dest.buffer, dest.byteOffset + 2 * n, n); // upper half of dest
    this.readInto(name, raw);
    (t.dtype === 'BF16' ? bf16ToF32 : f16ToF32)(raw, dest);
  }
}
