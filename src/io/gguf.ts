// GGUF (llama.cpp's model file format, version 3): writing and reading.
//
//   magic "GGUF" | u32 version | u64 tensor count | u64 metadata count
//   metadata: (string key, u32 type, value)*
//   tensor infos: (string name, u32 n_dims, u64 ne[n_dims] (ne[0] = innermost = columns), u32 type, u64 offset)*
//   padding to `general.alignment` (32), then tensor data, each tensor aligned the same way.
// Strings are u64 length + UTF-8 bytes; everything little-endian.
import fs from 'node:fs';
import { checkOutputFile, cleanStaleTemps, fsError } from './output.ts';

export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

/** ggml tensor types we write or read */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  BF16 = 30,
}

export type GGUFValue =
  | {
      type:
        | GGUFValueType.UINT32
        | GGUFValueType.INT32
        | GGUFValueType.FLOAT32
        | GGUFValueType.UINT8
        | GGUFValueType.INT8
        | GGUFValueType.UINT16
        | GGUFValueType.INT16
        | GGUFValueType.FLOAT64
        | GGUFValueType.UINT64
        | GGUFValueType.INT64;
      value: number;
    }
  | { type: GGUFValueType.BOOL; value: boolean }
  | { type: GGUFValueType.STRING; value: string }
  | { type: GGUFValueType.ARRAY; itemType: GGUFValueType; value: (number | string | boolean)[] };

export const u32 = (value: number): GGUFValue => ({ type: GGUFValueType.UINT32, value });
export const i32 = (value: number): GGUFValue => ({ type: GGUFValueType.INT32, value });
export const f32v = (value: number): GGUFValue => ({ type: GGUFValueType.FLOAT32, value });
export const bool = (value: boolean): GGUFValue => ({ type: GGUFValueType.BOOL, value });
export const str = (value: string): GGUFValue => ({ type: GGUFValueType.STRING, value });
export const arr = (itemType: GGUFValueType, value: (number | string | boolean)[]): GGUFValue => ({ type: GGUFValueType.ARRAY, itemType, value });

export interface GGUFTensorSpec {
  name: string;
  /** PyTorch order, outermost first: [rows, cols] */
  shape: number[];
  type: GGMLType;
  /** bytes of the tensor in ggml layout */
  byteLength: number;
  /** produces the bytes when the writer reaches this tensor (so tensors stream one at a time) */
  data: () => Uint8Array;
}

export const ALIGNMENT = 32;

/** [values per block, bytes per block] of the ggml types whose sizes this file knows */
const BLOCK: Partial<Record<number, [number, number]>> = {
  [GGMLType.F32]: [1, 4],
  [GGMLType.F16]: [1, 2],
  [GGMLType.BF16]: [1, 2],
  [GGMLType.Q8_0]: [32, 34],
  [GGMLType.Q4_0]: [32, 18],
};

/** Bytes of a tensor of this ggml type and shape, or undefined for types not listed above. */
export function ggmlTensorBytes(type: number, shape: number[]): number | undefined {
  const b = BLOCK[type];
  if (!b) return undefined;
  if (shape.length === 0) return b[1];
  const cols = shape[shape.length - 1];
  if (cols % b[0] !== 0) return undefined;
  return (shape.reduce((a, x) => a * x, 1) / b[0]) * b[1];
}

class Buf {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.chunks.push(b);
    this.length += b.length;
  }
  u8(x: number) {
    const b = Buffer.alloc(1);
    b.writeUInt8(x);
    this.push(b);
  }
  u32(x: number) {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(x);
    this.push(b);
  }
  i32(x: number) {
    const b = Buffer.alloc(4);
    b.writeInt32LE(x);
    this.push(b);
  }
  u64(x: number) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(x));
    this.push(b);
  }
  f32(x: number) {
    const b = Buffer.alloc(4);
    b.writeFloatLE(x);
    this.push(b);
  }
  str(s: string) {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

function writeScalar(b: Buf, type: GGUFValueType, v: number | string | boolean): void {
  switch (type) {
    case GGUFValueType.UINT8:
      return b.u8(v as number);
    case GGUFValueType.INT8: {
      const x = Buffer.alloc(1);
      x.writeInt8(v as number);
      return b.push(x);
    }
    case GGUFValueType.UINT16: {
      const x = Buffer.alloc(2);
      x.writeUInt16LE(v as number);
      return b.push(x);
    }
    case GGUFValueType.INT16: {
      const x = Buffer.alloc(2);
      x.writeInt16LE(v as number);
      return b.push(x);
    }
    case GGUFValueType.UINT32:
      return b.u32(v as number);
    case GGUFValueType.INT32:
      return b.i32(v as number);
    case GGUFValueType.FLOAT32:
      return b.f32(v as number);
    case GGUFValueType.BOOL:
      return b.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      return b.str(v as string);
    case GGUFValueType.UINT64:
      return b.u64(v as number);
    case GGUFValueType.INT64: {
      const x = Buffer.alloc(8);
      x.writeBigInt64LE(BigInt(v as number));
      return b.push(x);
    }
    case GGUFValueType.FLOAT64: {
      const x = Buffer.alloc(8);
      x.writeDoubleLE(v as number);
      return b.push(x);
    }
    default:
      throw new Error(`GGUF: cannot write a nested value of type ${type}`);
  }
}

const pad = (n: number) => (ALIGNMENT - (n % ALIGNMENT)) % ALIGNMENT;

/** Writes a GGUF file atomically (temp file + rename), streaming tensor data one tensor at a time. */
export function writeGGUF(path: string, metadata: Map<string, GGUFValue>, tensors: GGUFTensorSpec[]): void {
  const h = new Buf();
  h.push(Buffer.from('GGUF', 'ascii'));
  h.u32(3);
  h.u64(tensors.length);
  h.u64(metadata.size);
  for (const [key, v] of metadata) {
    h.str(key);
    h.u32(v.type);
    if (v.type === GGUFValueType.ARRAY) {
      h.u32(v.itemType);
      h.u64(v.value.length);
      for (const x of v.value) writeScalar(h, v.itemType, x);
    } else writeScalar(h, v.type, v.value);
  }
  let offset = 0;
  for (const t of tensors) {
    h.str(t.name);
    h.u32(t.shape.length);
    for (let i = t.shape.length - 1; i >= 0; i--) h.u64(t.shape[i]); // ggml: ne[0] is the innermost dimension
    h.u32(t.type);
    h.u64(offset);
    offset += t.byteLength + pad(t.byteLength);
  }
  h.push(Buffer.alloc(pad(h.length)));
  checkOutputFile(path, 'GGUF output');
  cleanStaleTemps(path);
  const tmp = `${path}.tmp-${process.pid}`;
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w');
  } catch (e) {
    throw fsError(e, `writing ${tmp}`);
  }
  try {
    fs.writeSync(fd, h.bytes());
    for (const t of tensors) {
      const d = t.data();
      if (d.byteLength !== t.byteLength) throw new Error(`GGUF: tensor "${t.name}" produced ${d.byteLength} bytes, expected ${t.byteLength}`);
      fs.writeSync(fd, d);
      const p = pad(d.byteLength);
      if (p) fs.writeSync(fd, Buffer.alloc(p));
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, path);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw fsError(e, `writing ${path}`);
  }
}

export interface GGUFFile {
  version: number;
  metadata: Map<string, number | bigint | string | boolean | (number | bigint | string | boolean)[]>;
  tensors: { name: string; shape: number[]; type: number; offset: number }[];
  /** absolute file offset where tensor data starts */
  dataOffset: number;
}

/** Reads a GGUF header (metadata and tensor infos; not the data, which is never loaded here). */
export function readGGUF(path: string, maxHeaderBytes = 64 << 20): GGUFFile {
  const fd = fs.openSync(path, 'r');
  const size = fs.fstatSync(fd).size;
  const buf = Buffer.alloc(Math.min(size, maxHeaderBytes));
  fs.readSync(fd, buf, 0, buf.length, 0);
  fs.closeSync(fd);
  let p = 0;
  const need = (n: number) => {
    if (p + n > buf.length) throw new Error(`${path}: truncated GGUF header at byte ${p}`);
  };
  const rd = {
    u8: () => {
      need(1);
      return buf.readUInt8(p++);
    },
    u32: () => {
      need(4);
      const v = buf.readUInt32LE(p);
      p += 4;
      return v;
    },
    u64: () => {
      need(8);
      const v = buf.readBigUInt64LE(p);
      p += 8;
      return Number(v);
    },
    str: () => {
      const n = rd.u64();
      need(n);
      const s = buf.toString('utf8', p, p + n);
      p += n;
      return s;
    },
  };
  const scalar = (t: number): number | string | boolean => {
    switch (t) {
      case 0:
        return rd.u8();
      case 1:
        need(1);
        return buf.readInt8(p++);
      case 2:
        need(2);
        p += 2;
        return buf.readUInt16LE(p - 2);
      case 3:
        need(2);
        p += 2;
        return buf.readInt16LE(p - 2);
      case 4:
        return rd.u32();
      case 5:
        need(4);
        p += 4;
        return buf.readInt32LE(p - 4);
      case 6:
        need(4);
        p += 4;
        return buf.readFloatLE(p - 4);
      case 7:
        return rd.u8() !== 0;
      case 8:
        return rd.str();
      case 10:
        return rd.u64();
      case 11:
        need(8);
        p += 8;
        return Number(buf.readBigInt64LE(p - 8));
      case 12:
        need(8);
        p += 8;
        return buf.readDoubleLE(p - 8);
      default:
        throw new Error(`${path}: unknown GGUF value type ${t} at byte ${p}`);
    }
  };
  need(4);
  if (buf.toString('ascii', 0, 4) !== 'GGUF') throw new Error(`${path}: not a GGUF file (bad magic)`);
  p = 4;
  const version = rd.u32();
  if (version !== 2 && version !== 3) throw new Error(`${path}: unsupported GGUF version ${version} (expected 2 or 3)`);
  const nt = rd.u64();
  const nkv = rd.u64();
  const metadata: GGUFFile['metadata'] = new Map();
  for (let i = 0; i < nkv; i++) {
    const key = rd.str();
    const t = rd.u32();
    if (t === GGUFValueType.ARRAY) {
      const it = rd.u32();
      const n = rd.u64();
      const a: (number | string | boolean)[] = [];
      for (let j = 0; j < n; j++) a.push(scalar(it));
      metadata.set(key, a);
    } else metadata.set(key, scalar(t));
  }
  const tensors: GGUFFile['tensors'] = [];
  for (let i = 0; i < nt; i++) {
    const name = rd.str();
    const nd = rd.u32();
    const ne: number[] = [];
    for (let j = 0; j < nd; j++) ne.push(rd.u64());
    const type = rd.u32();
    const offset = rd.u64();
    tensors.push({ name, shape: ne.reverse(), type, offset });
  }
  const align = Number(metadata.get('general.alignment') ?? ALIGNMENT);
  const dataOffset = p + ((align - (p % align)) % align);
  // every tensor's data must lie inside the file (a cut-off download fails here, not at first use)
  for (const t of tensors) {
    const bytes = ggmlTensorBytes(t.type, t.shape);
    if (t.offset % align !== 0) throw new Error(`${path}: tensor "${t.name}" data offset ${t.offset} is not aligned to ${align}`);
    if (bytes !== undefined && dataOffset + t.offset + bytes > size) {
      throw new Error(
        `${path}: truncated GGUF: tensor "${t.name}" needs bytes ${dataOffset + t.offset}..${dataOffset + t.offset + bytes} but the file has ${size}`,
      );
    }
  }
  return { version, metadata, tensors, dataOffset };
}
