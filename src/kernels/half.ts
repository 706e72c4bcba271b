// Scalar 16-bit float conversions, the single home for them: the reference kernels and the
// quantizers use them directly, io/dtype.ts builds its bulk loops on them.

const f32s = new Float32Array(1);
const u32s = new Uint32Array(f32s.buffer);

/** bf16 bits → f32 value. */
export function bf16BitsToF32(bits: number): number {
  u32s[0] = (bits & 0xffff) << 16;
  return f32s[0];
}

/** f32 value → bf16 bits, round to nearest even; NaN → 0x7fc0 (PyTorch). */
export function f32ToBf16Bits(x: number): number {
  f32s[0] = x;
  return roundBf16(u32s[0]);
}

/** f16 bits → f32 value (exact: every f16 is an f32). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

/** f32 value → f16 bits, correctly rounded to nearest even. */
export function f32ToF16Bits(x: number): number {
  f32s[0] = x;
  return roundF16(u32s[0]);
}

export function roundBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return 0x7fc0;
  // add 0x7fff plus the lowest kept bit: a tie rounds up only when that makes the result even
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function roundF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00);
  const e = exp - 112; // f16 biased exponent (127 - 15)
  if (e >= 31) return sign | 0x7c00; // ≥ 2^16: overflow to inf
  if (e <= 0) {
    // subnormal result: units of 2^-24; values below 2^-25 round to zero (f32 subnormals included)
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e; // 14..24
    let h = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++; // may carry into the smallest normal: still right
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry out of 0x7bff gives 0x7c00 = inf
  return sign | h;
}
