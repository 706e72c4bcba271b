// Block quantization formats, bit-compatible with GGUF/llama.cpp:
//   q8_0: 32 values per block = f16 scale d, then 32 int8 q;  x ≈ d * q          (34 bytes)
//   q4_0: 32 values per block = f16 scale d, then 16 bytes of nibbles; byte j holds value j in
//         its low nibble and value j + 16 in its high nibble;  x ≈ d * (nibble - 8) (18 bytes)
// A row of `cols` values takes ceil(cols / 32) blocks; a partial last block is zero-padded.
import { f16BitsToF32, f32ToF16Bits } from './half.ts';

export const QK = 32;
export const Q8_0_BLOCK_BYTES = 34;
export const Q4_0_BLOCK_BYTES = 18;

export function blocksPerRow(cols: number): number {
  return Math.ceil(cols / QK);
}

/** Quantizes one row of f32 values into q8_0 blocks at dst[dstOff ...]. */
export function quantizeRowQ8_0(src: Float32Array, srcOff: number, cols: number, dst: Uint8Array, dstOff: number): void {
  const nb = blocksPerRow(cols);
  for (let b = 0; b < nb; b++) {
    const base = srcOff + b * QK;
    const end = Math.min(QK, cols - b * QK);
    let amax = 0;
    for (let j = 0; j < end; j++) amax = Math.max(amax, Math.abs(src[base + j]));
    // float32 arithmetic throughout, as llama.cpp's quantize_row_q8_0_ref, so the bytes agree
    const d = Math.fround(amax / 127);
    const id = d ? Math.fround(1 / d) : 0;
    const o = dstOff + b * Q8_0_BLOCK_BYTES;
    const dh = f32ToF16Bits(d);
    dst[o] = dh & 0xff;
    dst[o + 1] = dh >> 8;
    for (let j = 0; j < QK; j++) {
      const x = j < end ? Math.fround(src[base + j] * id) : 0;
      const q = Math.sign(x) * Math.round(Math.abs(x)); // roundf: halves away from zero, like llama.cpp
      dst[o + 2 + j] = q & 0xff;
    }
  }
}

/** Quantizes one row of f32 values into q4_0 blocks at dst[dstOff ...]. */
export function quantizeRowQ4_0(src: Float32Array, srcOff: number, cols: number, dst: Uint8Array, dstOff: number): void {
  const nb = blocksPerRow(cols);
  for (let b = 0; b < nb; b++) {
    const base = srcOff + b * QK;
    const end = Math.min(QK, cols - b * QK);
    // like llama.cpp: the value of largest magnitude maps to -8
    let amax = 0,
      max = 0;
    for (let j = 0; j < end; j++) {
      const v = src[base + j];
      if (Math.abs(v) > amax) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = Math.fround(max / -8);
    const id = d ? Math.fround(1 / d) : 0;
    const o = dstOff + b * Q4_0_BLOCK_BYTES;
    const dh = f32ToF16Bits(d);
    dst[o] = dh & 0xff;
    dst[o + 1] = dh >> 8;
    for (let j = 0; j < QK / 2; j++) {
      const x0 = j < end ? Math.fround(src[base + j] * id) : 0;
      const x1 = j + 16 < end ? Math.fround(src[base + j + 16] * id) : 0;
      const q0 = Math.min(15, Math.trunc(Math.fround(x0 + 8.5)));
      const q1 = Math.min(15, Math.trunc(Math.fround(x1 + 8.5)));
      dst[o + 2 + j] = q0 | (q1 << 4);
    }
  }
}

/** Dequantizes `cols` values of one q8_0 row starting at byte `off` into dst[dstOff ...]. */
export function dequantizeRowQ8_0(src: Uint8Array, off: number, cols: number, dst: Float32Array, dstOff: number): void {
  const nb = blocksPerRow(cols);
  for (let b = 0; b < nb; b++) {
    const o = off + b * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(src[o] | (src[o + 1] << 8));
    const end = Math.min(QK, cols - b * QK);
    for (let j = 0; j < end; j++) dst[dstOff + b * QK + j] = d * ((src[o + 2 + j] << 24) >> 24);
  }
}

/**
 * Dequantizes row r of a q8_0 weight stored in tiles of 8 rows (Weight.layout 'tiles8', r below
 * its last whole tile; kernels.as repack_q8): per 32-column block, the 8 rows' f16 scales, then
 * their values as w + 128 in 8 steps of (rows 0-3, rows 4-7) × 4 columns.
 */
export function dequantizeTiledRowQ8_0(src: Uint8Array, r: number, cols: number, dst: Float32Array): void {
  const nb = blocksPerRow(cols),
    tile = (r & ~7) * nb * Q8_0_BLOCK_BYTES,
    k = r & 7;
  const lane = ((k >> 2) << 4) + ((k & 3) << 2);
  for (let b = 0; b < nb; b++) {
    const o = tile + b * 8 * Q8_0_BLOCK_BYTES;
    const d = f16BitsToF32(src[o + 2 * k] | (src[o + 2 * k + 1] << 8));
    const end = Math.min(QK, cols - b * QK);
    for (let j = 0; j < end; j++) dst[b * QK + j] = d * (((src[o + 16 + ((j >> 2) << 5) + lane + (j & 3)] ^ 0x80) << 24) >> 24);
  }
}

/** Dequantizes `cols` values of one q4_0 row starting at byte `off` into dst[dstOff ...]. */
export function dequantizeRowQ4_0(src: Uint8Array, off: number, cols: number, dst: Float32Array, dstOff: number): void {
  const nb = blocksPerRow(cols);
  for (let b = 0; b < nb; b++) {
    const o = off + b * Q4_0_BLOCK_BYTES;
    const d = f16BitsToF32(src[o] | (src[o + 1] << 8));
    const end = Math.min(QK, cols - b * QK);
    for (let j = 0; j < QK / 2; j++) {
      const byte = src[o + 2 + j];
      if (j < end) dst[dstOff + b * QK + j] = d * ((byte & 0x0f) - 8);
      if (j + 16 < end) dst[dstOff + b * QK + j + 16] = d * ((byte >> 4) - 8);
    }
  }
}
