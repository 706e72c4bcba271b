// Storage dtypes of checkpoint files and the 16-bit float conversions between them and f32.
//
//   bf16: the top 16 bits of an f32 (1 sign, 8 exponent, 7 mantissa bits)
//   f16:  IEEE 754 binary16 (1 sign, 5 exponent, 10 mantissa bits; subnormals below 2^-14)
//
// f32 → bf16 rounds to nearest even and maps every NaN to 0x7fc0, as PyTorch's
// c10::BFloat16 does, so a tensor converted here equals `tensor.to(torch.bfloat16)` bit for bit.
// f32 → f16 is correctly rounded (nearest even) including subnormals and overflow to ±inf; every
// NaN becomes the quiet NaN 0x7e00 with its sign, as PyTorch's c10::Half does (numpy keeps payload
// bits instead: the two differ only in NaN payloads).
//
// The bulk loops work on the raw bits through Uint32Array views: no allocation, no Math calls,
// one pass. Everything assumes a little-endian host (every platform Node runs on).
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundF16 } from '../kernels/half.ts';

/** dtype strings of the safetensors format, with their element size in bytes. */
export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
} as const;

export type SafetensorsDType = keyof typeof DTYPE_SIZES;

/** The float dtypes a model can be loaded from and written as. */
export type FloatDType = 'F32' | 'F16' | 'BF16';

export function isSafetensorsDType(s: unknown): s is SafetensorsDType {
  return typeof s === 'string' && Object.hasOwn(DTYPE_SIZES, s);
}

export function isFloatDType(s: unknown): s is FloatDType {
  return s === 'F32' || s === 'F16' || s === 'BF16';
}

// ---- scalar helpers live in kernels/half.ts ----

export { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits };

// ---- bulk conversions: dst.length must equal src.length ----

function checkLengths(what: string, src: ArrayLike<number>, dst: ArrayLike<number>): void {
  if (src.length !== dst.length) throw new RangeError(`${what}: src has ${src.length} elements but dst has ${dst.length}`);
}

const u32View = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

/**
 * bf16 bits → f32. May run in place when `src` is the upper half of `dst`'s bytes
 * (element i is written at bytes 4i..4i+3, src[i] lives at 2n+2i ≥ 4i+2: never overwritten early).
 */
export function bf16ToF32(src: Uint16Array, dst: Float32Array): void {
  checkLengths('bf16ToF32', src, dst);
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = src[i] << 16;
}

/** f32 → bf16 bits, round to nearest even (PyTorch). */
export function f32ToBf16(src: Float32Array, dst: Uint16Array): void {
  checkLengths('f32ToBf16', src, dst);
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) {
    const b = bits[i];
    dst[i] = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
  }
}

let f16Table: Uint32Array | undefined;

/** f16 bits → f32 through a 65536-entry table of f32 bits (256 KB, built on first use). Same in-place rule as bf16ToF32. */
export function f16ToF32(src: Uint16Array, dst: Float32Array): void {
  checkLengths('f16ToF32', src, dst);
  if (!f16Table) {
    const t = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) t[h] = f16BitsToF32(h);
    // NaN payloads: keep the f16 payload in the f32 mantissa rather than whatever the engine's NaN is
    const bits = u32View(t);
    for (let h = 0; h < 65536; h++) if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) bits[h] = ((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13);
    f16Table = bits;
  }
  const table = f16Table;
  const out = u32View(dst);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
}

/** f32 → f16 bits, correctly rounded. */
export function f32ToF16(src: Float32Array, dst: Uint16Array): void {
  checkLengths('f32ToF16', src, dst);
  const bits = u32View(src);
  for (let i = 0; i < bits.length; i++) dst[i] = roundF16(bits[i]);
}

/** Converts 16-bit floats of `dtype` to f32 (F32 input is copied). */
export function toF32(dtype: FloatDType, src: Float32Array | Uint16Array, dst: Float32Array): void {
  if (dtype === 'F32') {
    checkLengths('toF32', src, dst);
    dst.set(src as Float32Array);
  } else if (dtype === 'BF16') bf16ToF32(src as Uint16Array, dst);
  else f16ToF32(src as Uint16Array, dst);
}

/** Converts f32 to `dtype` (F32 output is copied). */
export function fromF32(dtype: FloatDType, src: Float32Array, dst: Float32Array | Uint16Array): void {
  if (dtype === 'F32') {
    checkLengths('fromF32', src, dst);
    (dst as Float32Array).set(src);
  } else if (dtype === 'BF16') f32ToBf16(src, dst as Uint16Array);
  else f32ToF16(src, dst as Uint16Array);
}

// ---- dtype names: one table for every command and the library ----

/** The weight dtypes a model can be held in (kernels/types.ts WeightDType), by canonical name. */
export type WeightDTypeName = 'f32' | 'bf16' | 'f16' | 'q8_0' | 'q4_0';

/** Every spelling accepted for a weight dtype (case-insensitive): q8 = q8_0, q4 = q4_0, as in llama.cpp and ollama. */
export const DTYPE_ALIASES: Readonly<Record<string, WeightDTypeName>> = {
  f32: 'f32',
  fp32: 'f32',
  float32: 'f32',
  bf16: 'bf16',
  bfloat16: 'bf16',
  f16: 'f16',
  fp16: 'f16',
  float16: 'f16',
  q8: 'q8_0',
  q8_0: 'q8_0',
  q4: 'q4_0',
  q4_0: 'q4_0',
};

/** The canonical name of a dtype spelling (`'q8'` → `'q8_0'`, `'BF16'` → `'bf16'`); `'auto'` when allowed; else undefined. */
export function normalizeDType(v: unknown, allowAuto = false): WeightDTypeName | 'auto' | undefined {
  if (typeof v !== 'string') return undefined;
  const k = v.toLowerCase();
  if (allowAuto && k === 'auto') return 'auto';
  return Object.hasOwn(DTYPE_ALIASES, k) ? DTYPE_ALIASES[k] : undefined;
}

/** The canonical dtype of the file dtypes a checkpoint stores (safetensors F32/BF16/F16, quantized Q8_0/Q4_0). */
export function dtypeOfFile(d: string): WeightDTypeName | undefined {
  const k = d.toLowerCase();
  return Object.hasOwn(DTYPE_ALIASES, k) ? DTYPE_ALIASES[k] : undefined;
}

/** Bytes per weight of a dtype (q8_0: 34 bytes per block of 32, q4_0: 18). */
export function bytesPerWeight(d: WeightDTypeName): number {
  return d === 'f32' ? 4 : d === 'q8_0' ? 34 / 32 : d === 'q4_0' ? 18 / 32 : 2;
}
