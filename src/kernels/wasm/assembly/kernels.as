// WebAssembly SIMD kernels for openelm, written in AssemblyScript.
//
// This file is AssemblyScript, not TypeScript: it is named `.as` so the project's tsc never sees
// it, and `../build.mjs` hands it to the AssemblyScript compiler as `kernels.ts`. It is built
// three times: with plain 128-bit SIMD, with relaxed SIMD (ASC_FEATURE_RELAXED_SIMD, folded at
// compile time), and with relaxed SIMD whose fused int8 dot product is the CPU's (VNNI: build.mjs
// sets the constant VNNI, prepended to this file), into `../build/kernels-{simd,relaxed,vnni}.wasm`.
// The VNNI build relies on i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c) computing exactly
// c + Σ a (signed) · b (as unsigned bytes, 0..255) per lane, which V8 gives (vpdpbusd) from V8
// 13 (Node 24) on CPUs with AVX-VNNI: wasm.ts loads it only where a probe shows exactly that.
//
// Contract with the TypeScript side (`../wasm.ts`):
// - memory is imported (shared, owned by TS); every pointer is a byte offset into it;
// - nothing here allocates and there is no runtime (--runtime stub); the only static data is the
//   standard library's math tables (Mathf.exp's, 256 bytes at 1024), and it must end below 4096,
//   where wasm.ts keeps the thread pool's control block (test/kernels-train-wasm.test.ts checks):
//   f64 Math.log, for one, would bring 4 KiB of tables;
// - matrices are row-major; a weight is [rows, cols] in nn.Linear layout, out = x · Wᵀ;
// - q8_0 / q4_0 weight rows are GGUF blocks (f16 scale + 32 int8 / 16 bytes of nibbles),
//   ceil(cols / 32) blocks per row; activations for them are quantized once per call by
//   `quantize_q8` into int8 blocks `xi` [n, nb * 32] plus f32 scales `xd` [n, nb]; their f16
//   block scales are read through a half → f32 table filled once by `init_half_table`;
// - work that is split over threads is an export `f(a0 .. a8, from, to, scratch)` over independent
//   items (weight rows, attention heads): a call does items [from, to), the threads of the pool
//   claim such ranges until none are left; `scratch` is the calling thread's private region;
//   f32 arguments of split exports come as i32 bit patterns (the pool passes i32 words);
// - the training ops (backward, loss, optimizer) are the last section.

const QK: i32 = 32;
const Q8_BYTES: i32 = 34;
const Q4_BYTES: i32 = 18;

// ---------------------------------------------------------------- helpers

/** a*b + c; fused (one rounding, or not: relaxed semantics) when relaxed SIMD is on */
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

@inline function hsum(v: v128): f32 {
  const s = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1);
}

@inline function hsumI(v: v128): i32 {
  const s = i32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return i32x4.extract_lane(s, 0) + i32x4.extract_lane(s, 1);
}

/** IEEE half bits → f32 (normals, subnormals, inf, NaN): shift into place, rebias by 2^112. */
@inline function halfToF32(h: u32): f32 {
  const e = h & 0x7fff;
  let f = reinterpret<f32>(e << 13) * reinterpret<f32>(<u32>(127 + 112) << 23);
  if (e >= 0x7c00) f = reinterpret<f32>((e << 13) | 0x7f800000);
  return reinterpret<f32>(reinterpret<u32>(f) | ((h & 0x8000) << 16));
}

// Four 16-bit values placed in the high half of each 32-bit lane (h << 16): that *is* bf16 → f32.
@inline function high16(w: usize, i: i32): v128 {
  return i16x8.shuffle(i16x8.splat(0), v128.load64_zero(w + (<usize>i << 1)), 0, 8, 1, 9, 2, 10, 3, 11);
}

/**
 * f16 → f32 for four lanes holding h << 16: an arithmetic shift by 3 moves exponent and mantissa
 * into f32 position (sign smeared into bits 28..30, masked off), and × 2^112 rebiases the
 * exponent, subnormals included. Not handled: inf / NaN halves become large finite values
 * (weights are finite; the scalar halfToF32 and the quant scales are exact).
 */
@inline function halfToF32x4(hi: v128): v128 {
  const bits = v128.and(i32x4.shr_s(hi, 3), i32x4.splat(0x8fffe000));
  return f32x4.mul(bits, f32x4.splat(reinterpret<f32>(<u32>(127 + 112) << 23)));
}

// Weight element decoders for the float dtypes: 4 values at element index i of row pointer w.
// F16P is f16 for the one-token kernel: the halves are only shifted into f32 position (their value
// times 2^-112, no multiply), and taken in pairs: one 16-byte load of 8 halves gives the odd ones
// in the high half of each 32-bit lane and the even ones, after a shift, likewise, against
// activations reordered to match and pre-scaled by X_SCALE = 2^64 (pair_for_f16); the sums are
// scaled by OUT_SCALE = 2^48. Exact powers of two: |x| up to 1.8e19; products below ~1e-24 lose
// bits. 5 integer ops per 8 weights. The f16 GEMM sums in the same order (gemmF16), so it gives the
// same bits short of such tiny products.
const F32: i32 = 0, BF16: i32 = 1, F16: i32 = 2, F16P: i32 = 4;
const X_SCALE: f32 = 18446744073709551616.0; // 2^64
const OUT_SCALE: f32 = 281474976710656.0; // 2^48

@inline function load4(kind: i32, w: usize, i: i32): v128 {
  if (kind == F32) return v128.load(w + (<usize>i << 2));
  if (kind == BF16) return high16(w, i);
  return halfToF32x4(high16(w, i));
}

@inline function load1(kind: i32, w: usize, i: i32): f32 {
  if (kind == F32) return load<f32>(w + (<usize>i << 2));
  if (kind == BF16) return reinterpret<f32>(<u32>load<u16>(w + (<usize>i << 1)) << 16);
  const h = <u32>load<u16>(w + (<usize>i << 1));
  if (kind == F16P) return reinterpret<f32>(((h & 0x7fff) << 13) | ((h & 0x8000) << 16));
  return halfToF32(h);
}

/** what the float matmul multiplies its sums by: 2^48 for F16P (see above), else 1 */
@inline function outScale(kind: i32): f32 {
  return kind == F16P ? OUT_SCALE : 1;
}

/**
 * The activations of an f16 matmul through the one-token kernel: each of the n tokens' cols values
 * × X_SCALE, every full group of 8 reordered as its even elements, then its odd ones (F16P's
 * pairs); the last cols % 8 stay in place (the tail runs element by element).
 */
export function pair_for_f16(dst: usize, src: usize, n: i32, cols: i32): void {
  const f = f32x4.splat(X_SCALE);
  for (let t = 0; t < n; t++) {
    const x = src + (<usize>t * cols << 2), d = dst + (<usize>t * cols << 2);
    let i = 0;
    for (; i + 8 <= cols; i += 8) {
      const a = f32x4.mul(v128.load(x + (<usize>i << 2)), f), b = f32x4.mul(v128.load(x + (<usize>i << 2), 16), f);
      v128.store(d + (<usize>i << 2), i32x4.shuffle(a, b, 0, 2, 4, 6));
      v128.store(d + (<usize>i << 2), i32x4.shuffle(a, b, 1, 3, 5, 7), 16);
    }
    for (; i < cols; i++) store<f32>(d + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) * X_SCALE);
  }
}

@inline function elemBytes(kind: i32): usize {
  return kind == F32 ? 4 : 2;
}

/** bytes of weight rows a few-token matmul keeps in cache while all its tokens pass over them */
const FEW_TOKEN_BLOCK_BYTES: i32 = 256 << 10;

/**
 * Rows per block of a matmul that runs its tokens one by one over rows kept in cache (decodeTokens,
 * fewTokensFloat): ~FEW_TOKEN_BLOCK_BYTES of whole groups of R rows; one token takes all of them.
 */
@inline function fewTokenBlock(n: i32, r0: i32, r1: i32, rowBytes: usize, R: i32): i32 {
  return n == 1 ? r1 - r0 : max(R, (<i32>(<usize>FEW_TOKEN_BLOCK_BYTES / rowBytes) / R) * R);
}

// ---------------------------------------------------------------- float matmul (f32, bf16, f16)

// One output row for one token: the decode path. Four accumulators over 16 columns per step
// keep the adds independent; the weight row is streamed exactly once.
@inline function dotRow(kind: i32, w: usize, x: usize, cols: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let i = 0;
  for (; i + 16 <= cols; i += 16) {
    const xp = x + (<usize>i << 2);
    a0 = madd(load4(kind, w, i), v128.load(xp), a0);
    a1 = madd(load4(kind, w, i + 4), v128.load(xp, 16), a1);
    a2 = madd(load4(kind, w, i + 8), v128.load(xp, 32), a2);
    a3 = madd(load4(kind, w, i + 12), v128.load(xp, 48), a3);
  }
  for (; i + 4 <= cols; i += 4) a0 = madd(load4(kind, w, i), v128.load(x + (<usize>i << 2)), a0);
  let s = hsum(f32x4.add(f32x4.add(a0, a1), f32x4.add(a2, a3)));
  for (; i < cols; i++) s += load1(kind, w, i) * load<f32>(x + (<usize>i << 2));
  return s;
}

/**
 * a += w[i .. i+8) · x (two f32x4 of x at column i): one row's step in decodeRowsFloat. F16P: x0
 * holds x[i], x[i+2], x[i+4], x[i+6] and x1 the odd ones (pair_for_f16).
 */
@inline function rowCols8(kind: i32, w: usize, i: i32, x0: v128, x1: v128, a: v128): v128 {
  if (kind == F16P) {
    const v = v128.load(w + (<usize>i << 1)), m = i32x4.splat(0x8fffe000);
    const even = v128.and(i32x4.shr_s(i32x4.shl(v, 16), 3), m), odd = v128.and(i32x4.shr_s(v, 3), m);
    return madd(odd, x1, madd(even, x0, a));
  }
  return madd(load4(kind, w, i + 4), x1, madd(load4(kind, w, i), x0, a));
}

/**
 * Decode (one token) of a float matmul over rows [r0, r1) in groups of R rows (4 or 8, a constant
 * at each call site, chosen per machine: src/kernels/wasm/tuning.ts; 1 for the tail): R weight
 * rows streamed side by side, eight columns per step, as decodeRows does for the quantized dtypes
 * (one row at a time leaves the memory system idle between its requests). Every row's sum is
 * taken in the same order whatever R is. Returns the first row it did not do.
 */
@inline function decodeRowsFloat(kind: i32, out: usize, x: usize, w: usize, wStride: usize, cols: i32, r0: i32, r1: i32, R: i32): i32 {
  const k = outScale(kind);
  // the R rows in flight are m rows apart, each slot one long sequential read (see decodeRows)
  const m = (r1 - r0) / R, S = <usize>m * wStride, os = <usize>m << 2;
  for (let j = 0; j < m; j++) {
    const r = r0 + j, w0 = w + <usize>r * wStride;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    let i = 0;
    for (; i + 8 <= cols; i += 8) {
      const xp = x + (<usize>i << 2), x0 = v128.load(xp), x1 = v128.load(xp, 16);
      a0 = rowCols8(kind, w0, i, x0, x1, a0);
      if (R >= 4) {
        a1 = rowCols8(kind, w0 + S, i, x0, x1, a1);
        a2 = rowCols8(kind, w0 + 2 * S, i, x0, x1, a2);
        a3 = rowCols8(kind, w0 + 3 * S, i, x0, x1, a3);
      }
      if (R >= 8) {
        a4 = rowCols8(kind, w0 + 4 * S, i, x0, x1, a4);
        a5 = rowCols8(kind, w0 + 5 * S, i, x0, x1, a5);
        a6 = rowCols8(kind, w0 + 6 * S, i, x0, x1, a6);
        a7 = rowCols8(kind, w0 + 7 * S, i, x0, x1, a7);
      }
    }
    let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3), s4 = hsum(a4), s5 = hsum(a5), s6 = hsum(a6), s7 = hsum(a7);
    for (; i < cols; i++) {
      const xi = load<f32>(x + (<usize>i << 2));
      s0 += load1(kind, w0, i) * xi;
      if (R >= 4) { s1 += load1(kind, w0 + S, i) * xi; s2 += load1(kind, w0 + 2 * S, i) * xi; s3 += load1(kind, w0 + 3 * S, i) * xi; }
      if (R >= 8) {
        s4 += load1(kind, w0 + 4 * S, i) * xi; s5 += load1(kind, w0 + 5 * S, i) * xi;
        s6 += load1(kind, w0 + 6 * S, i) * xi; s7 += load1(kind, w0 + 7 * S, i) * xi;
      }
    }
    const o = out + (<usize>r << 2);
    store<f32>(o, s0 * k);
    if (R >= 4) { store<f32>(o + os, s1 * k); store<f32>(o + 2 * os, s2 * k); store<f32>(o + 3 * os, s3 * k); }
    if (R >= 8) { store<f32>(o + 4 * os, s4 * k); store<f32>(o + 5 * os, s5 * k); store<f32>(o + 6 * os, s6 * k); store<f32>(o + 7 * os, s7 * k); }
  }
  return r0 + m * R;
}

/**
 * decodeRowsFloat token by token over blocks of rows kept in cache (as decodeTokens), each token's
 * sums as if it were alone: one token of f32 / bf16, f16's tokens short of its GEMM (F16P, x from
 * pair_for_f16). rowsInFlight: R (4 or 8; anything else: 8).
 */
@inline function fewTokensFloat(kind: i32, out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, rowsInFlight: i32, r0: i32, r1: i32): void {
  const wStride = <usize>cols * elemBytes(kind), xs = <usize>cols << 2, os = <usize>rows << 2;
  const R = rowsInFlight == 4 ? 4 : 8;
  const blk = fewTokenBlock(n, r0, r1, wStride, R);
  for (let b0 = r0; b0 < r1; b0 += blk) {
    const b1 = min(b0 + blk, r1);
    for (let t = 0; t < n; t++) {
      const ot = out + <usize>t * os;
      const xt = x + <usize>t * xs;
      const rd = R == 4 ? decodeRowsFloat(kind, ot, xt, w, wStride, cols, b0, b1, 4) : decodeRowsFloat(kind, ot, xt, w, wStride, cols, b0, b1, 8);
      decodeRowsFloat(kind, ot, xt, w, wStride, cols, rd, b1, 1);
    }
  }
}

/**
 * R rows (1-4) × T tokens (1-4, R × T ≤ 9) of an f32 / bf16 matmul, every (row, token) sum taken
 * in decodeRowsFloat's order: one f32x4 over the columns four at a time up to the last multiple
 * of 8, hsum, then the rest one by one. Each weight vector is decoded once for the T tokens.
 */
@inline function tileFloat(kind: i32, R: i32, T: i32, out: usize, os: usize, x: usize, xs: usize, w: usize, wStride: usize, cols: i32): void {
  const z = f32x4.splat(0);
  let a00 = z, a01 = z, a02 = z, a03 = z, a10 = z, a11 = z, a12 = z, a13 = z;
  let a20 = z, a21 = z, a22 = z, a30 = z, a31 = z;
  const c8 = cols & ~7, w1 = w + wStride, w2 = w + 2 * wStride, w3 = w + 3 * wStride;
  for (let i = 0; i < c8; i += 4) {
    const xp = x + (<usize>i << 2);
    const x0 = v128.load(xp);
    const x1 = T >= 2 ? v128.load(xp + xs) : z;
    const x2 = T >= 3 ? v128.load(xp + 2 * xs) : z;
    const x3 = T >= 4 ? v128.load(xp + 3 * xs) : z;
    const v0 = load4(kind, w, i);
    a00 = madd(v0, x0, a00);
    if (T >= 2) a01 = madd(v0, x1, a01);
    if (T >= 3) a02 = madd(v0, x2, a02);
    if (T >= 4) a03 = madd(v0, x3, a03);
    if (R >= 2) {
      const v1 = load4(kind, w1, i);
      a10 = madd(v1, x0, a10);
      if (T >= 2) a11 = madd(v1, x1, a11);
      if (T >= 3) a12 = madd(v1, x2, a12);
      if (T >= 4) a13 = madd(v1, x3, a13);
    }
    if (R >= 3) {
      const v2 = load4(kind, w2, i);
      a20 = madd(v2, x0, a20);
      if (T >= 2) a21 = madd(v2, x1, a21);
      if (T >= 3) a22 = madd(v2, x2, a22);
    }
    if (R >= 4) {
      const v3 = load4(kind, w3, i);
      a30 = madd(v3, x0, a30);
      if (T >= 2) a31 = madd(v3, x1, a31);
    }
  }
  const k = outScale(kind);
  finishFloat(kind, T, out, os, x, xs, w, c8, cols, k, a00, a01, a02, a03);
  if (R >= 2) finishFloat(kind, T, out + 4, os, x, xs, w1, c8, cols, k, a10, a11, a12, a13);
  if (R >= 3) finishFloat(kind, T, out + 8, os, x, xs, w2, c8, cols, k, a20, a21, a22, z);
  if (R >= 4) finishFloat(kind, T, out + 12, os, x, xs, w3, c8, cols, k, a30, a31, z, z);
}

/** one row's T sums of tileFloat: hsum, the columns from c8 one by one, × k, stored */
@inline function finishFloat(kind: i32, T: i32, out: usize, os: usize, x: usize, xs: usize, w: usize, c8: i32, cols: i32, k: f32,
    a0: v128, a1: v128, a2: v128, a3: v128): void {
  let s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
  for (let i = c8; i < cols; i++) {
    const xp = x + (<usize>i << 2), u = load1(kind, w, i);
    s0 += u * load<f32>(xp);
    if (T >= 2) s1 += u * load<f32>(xp + xs);
    if (T >= 3) s2 += u * load<f32>(xp + 2 * xs);
    if (T >= 4) s3 += u * load<f32>(xp + 3 * xs);
  }
  store<f32>(out, s0 * k);
  if (T >= 2) store<f32>(out + os, s1 * k);
  if (T >= 3) store<f32>(out + 2 * os, s2 * k);
  if (T >= 4) store<f32>(out + 3 * os, s3 * k);
}

/** rows [r0, r1) × T tokens (1-4) by tiles of R rows (the last rows one by one) */
@inline function tileRowsFloat(kind: i32, R: i32, T: i32, out: usize, os: usize, x: usize, xs: usize, w: usize, wStride: usize, cols: i32, r0: i32, r1: i32): void {
  let r = r0;
  for (; r + R <= r1; r += R) tileFloat(kind, R, T, out + (<usize>r << 2), os, x, xs, w + <usize>r * wStride, wStride, cols);
  for (; r < r1; r++) tileFloat(kind, 1, T, out + (<usize>r << 2), os, x, xs, w + <usize>r * wStride, wStride, cols);
}

/**
 * f32 / bf16, 2 or more tokens, over blocks of rows kept in cache (the weights come from memory
 * once). f32: tiles of 3 rows × 3 tokens, the last tokens in pairs (4 × 2). bf16: tiles of 2 rows
 * × 4 tokens, the last 1-3 tokens in tiles of 8 chains or so (3 × 3, 4 × 2, the one-token
 * kernel's 8 rows). Each (row, token) sum is exactly what the one-token kernel gives, so a
 * sequence batched with others gets its solo logits bit for bit. rowsInFlight: decodeRowsFloat's
 * R for a last single token (4 or 8).
 */
@inline function tilesFloat(kind: i32, out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, rowsInFlight: i32, r0: i32, r1: i32): void {
  const wStride = <usize>cols * elemBytes(kind), xs = <usize>cols << 2, os = <usize>rows << 2;
  // f32 needs no register for widening, so its tiles are 3 × 3 (9 chains, 15 registers; bf16
  // spills there), the last tokens in pairs (4 × 2): 270M f32 forward of 6 / 8 / 32 / 128 tokens
  // 1.15 / 1.14 / 1.06 / 1.03× bf16's plan (4 × 2 alone at 8: 1.11×)
  const pairs = n % 3 == 0 ? 0 : n % 3 == 2 ? 1 : 2, threes = n - 2 * pairs;
  // bf16: 4 + 1 tokens as 3 + 2 (a lone token would stream the block once more at one multiply-add per weight)
  const fours = n % 4 == 1 && n > 1 ? n - 5 : n;
  // up to 16 tokens, the fewest rows the call's tile shapes divide (f32: 6 for 3 × 3 alone, 4 for
  // 4 × 2 alone, 12 for both; bf16: 2 for 2 × 4 alone, 4 with a 4 × 2 tail, 6 with a 3 × 3, 12
  // with both): every token group runs over them while they are in L1 (f32 rows of 1280 columns
  // are 5 KB), so the one pass over memory carries every token's arithmetic (against ~256 KiB
  // blocks: 270M f32 forward of 4-8 tokens 1.04-1.20x, bf16 1.0-1.11x); more tokens:
  // ~FEW_TOKEN_BLOCK_BYTES of rows
  let blk: i32;
  if (n > 16) blk = fewTokenBlock(n, r0, r1, wStride, 12);
  else if (kind == F32) blk = pairs == 0 ? 6 : threes == 0 ? 4 : 12;
  else blk = n % 4 == 0 ? 2 : n % 4 == 2 ? 4 : n % 4 == 3 ? 6 : 12;
  for (let b0 = r0; b0 < r1; b0 += blk) {
    const b1 = min(b0 + blk, r1);
    let t = 0;
    if (kind == F32) {
      for (; t < threes; t += 3) tileRowsFloat(kind, 3, 3, out + <usize>t * os, os, x + <usize>t * xs, xs, w, wStride, cols, b0, b1);
      for (; t < n; t += 2) tileRowsFloat(kind, 4, 2, out + <usize>t * os, os, x + <usize>t * xs, xs, w, wStride, cols, b0, b1);
      continue;
    }
    for (; t + 4 <= fours; t += 4) tileRowsFloat(kind, 2, 4, out + <usize>t * os, os, x + <usize>t * xs, xs, w, wStride, cols, b0, b1);
    if (n - t == 5) {
      tileRowsFloat(kind, 3, 3, out + <usize>t * os, os, x + <usize>t * xs, xs, w, wStride, cols, b0, b1);
      t += 3;
    }
    const ot = out + <usize>t * os, xt = x + <usize>t * xs;
    if (n - t == 3) tileRowsFloat(kind, 3, 3, ot, os, xt, xs, w, wStride, cols, b0, b1);
    else if (n - t == 2) tileRowsFloat(kind, 4, 2, ot, os, xt, xs, w, wStride, cols, b0, b1);
    else if (n - t == 1) {
      const rd = rowsInFlight == 4 ? decodeRowsFloat(kind, ot, xt, w, wStride, cols, b0, b1, 4) : decodeRowsFloat(kind, ot, xt, w, wStride, cols, b0, b1, 8);
      decodeRowsFloat(kind, ot, xt, w, wStride, cols, rd, b1, 1);
    }
  }
}

/** f32 / bf16. rowsInFlight: decodeRowsFloat's R for one token (4 or 8; anything else: 8) */
@inline function matmulFloat(kind: i32, out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, rowsInFlight: i32, r0: i32, r1: i32): void {
  if (n > 1) tilesFloat(kind, out, x, w, rows, cols, n, rowsInFlight, r0, r1);
  else fewTokensFloat(kind, out, x, w, rows, cols, 1, rowsInFlight, r0, r1);
}

/** rowsInFlight: decodeRowsFloat's R for one token (4 or 8) */
export function matmul_f32(out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, rowsInFlight: i32, _a7: i32, _a8: i32, from: i32, to: i32, _scratch: usize): void {
  matmulFloat(F32, out, x, w, rows, cols, n, rowsInFlight, from, to);
}
export function matmul_bf16(out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, rowsInFlight: i32, _a7: i32, _a8: i32, from: i32, to: i32, _scratch: usize): void {
  matmulFloat(BF16, out, x, w, rows, cols, n, rowsInFlight, from, to);
}
/**
 * The tokens short of the f16 GEMM (wasm.ts: tuning.gemmMinTokensFloat), one by one through the
 * one-token kernel; x: the activations from pair_for_f16.
 */
export function matmul_f16(out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, rowsInFlight: i32, _a7: i32, _a8: i32, from: i32, to: i32, _scratch: usize): void {
  fewTokensFloat(F16P, out, x, w, rows, cols, n, rowsInFlight, from, to);
}

// ---------------------------------------------------------------- quantized matmul (q8_0, q4_0)

/**
 * Quantizes activations like llama.cpp's q8_0 (per 32-block: d = amax / 127, q = round(x / d)),
 * but keeps the ints and the f32 scales in separate, aligned arrays:
 * xi: [n, nb * 32] int8 (a partial last block is zero-padded), xd: [n, nb] f32, and right after
 * xd, xs: [n, nb] f32 = d · Σ q (block sums, for q4_0's - 8 offset: Σ (q4 - 8) x = Σ q4 x - 8 Σ x),
 * then xo: [n, nb] i32 = 128 · Σ q (the VNNI build's q8_0 kernels multiply w + 128 and take it off).
 * With xw ≠ 0 the ints are also stored widened to i16, xw: [n, nb * 32], for the GEMMs.
 * Tokens [from, to) (split over threads).
 */
export function quantize_q8(x: usize, xi: usize, xd: usize, n: i32, cols: i32, xw: usize, _a6: i32, _a7: i32, _a8: i32,
  from: i32, to: i32, _scratch: usize): void {
  const nb = (cols + QK - 1) / QK;
  const xsOff = <usize>n * nb << 2;
  for (let t = from; t < to; t++) {
    const xr = x + (<usize>t * cols << 2);
    const qr = xi + <usize>t * nb * QK;
    for (let b = 0; b < nb; b++) {
      const xp = xr + (<usize>b * QK << 2), qp = qr + <usize>b * QK;
      const wp = xw + (<usize>(t * nb + b) * QK << 1);
      const d = xd + (<usize>(t * nb + b) << 2);
      if ((b + 1) * QK <= cols) {
        const v0 = v128.load(xp), v1 = v128.load(xp, 16), v2 = v128.load(xp, 32), v3 = v128.load(xp, 48);
        const v4 = v128.load(xp, 64), v5 = v128.load(xp, 80), v6 = v128.load(xp, 96), v7 = v128.load(xp, 112);
        let m = f32x4.max(f32x4.max(f32x4.max(f32x4.abs(v0), f32x4.abs(v1)), f32x4.max(f32x4.abs(v2), f32x4.abs(v3))),
          f32x4.max(f32x4.max(f32x4.abs(v4), f32x4.abs(v5)), f32x4.max(f32x4.abs(v6), f32x4.abs(v7))));
        m = f32x4.max(m, i32x4.shuffle(m, m, 2, 3, 0, 1));
        const amax = max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1));
        const scale = amax / 127;
        store<f32>(d, scale);
        const id = f32x4.splat(scale != 0 ? 1 / scale : 0);
        const q0 = i16x8.narrow_i32x4_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v0, id))), i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v1, id))));
        const q1 = i16x8.narrow_i32x4_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v2, id))), i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v3, id))));
        const q2 = i16x8.narrow_i32x4_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v4, id))), i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v5, id))));
        const q3 = i16x8.narrow_i32x4_s(i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v6, id))), i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v7, id))));
        v128.store(qp, i8x16.narrow_i16x8_s(q0, q1));
        v128.store(qp, i8x16.narrow_i16x8_s(q2, q3), 16);
        if (xw) { v128.store(wp, q0); v128.store(wp, q1, 16); v128.store(wp, q2, 32); v128.store(wp, q3, 48); }
        const sum = hsumI(i32x4.extadd_pairwise_i16x8_s(i16x8.add(i16x8.add(q0, q1), i16x8.add(q2, q3))));
        store<f32>(d + xsOff, scale * <f32>sum);
        store<i32>(d + 2 * xsOff, sum << 7);
      } else {
        const end = cols - b * QK;
        let amax: f32 = 0;
        for (let j = 0; j < end; j++) amax = max(amax, abs(load<f32>(xp + (<usize>j << 2))));
        const scale = amax / 127;
        store<f32>(d, scale);
        const id: f32 = scale != 0 ? 1 / scale : 0;
        let sum = 0;
        for (let j = 0; j < QK; j++) {
          const q = j < end ? <i32>nearest(load<f32>(xp + (<usize>j << 2)) * id) : 0;
          store<i8>(qp + j, <i8>q);
          if (xw) store<i16>(wp + (<usize>j << 1), <i16>q);
          sum += q;
        }
        store<f32>(d + xsOff, scale * <f32>sum);
        store<i32>(d + 2 * xsOff, sum << 7);
      }
    }
  }
}

/** Σ w·x over 32 int8 pairs, as i32x4 partial sums. |w|, |x| ≤ 128 so pairs of products fit i16. */
@inline function dot32(w0: v128, w1: v128, x: usize, sgn: v128, one: v128): v128 {
  if (VNNI) {
    // Σ (w + 128) x with w + 128 (w ^ 0x80) as the unsigned operand; groupBlock takes off 128 Σ x
    return i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(x, 16), v128.xor(w1, sgn),
      i32x4.relaxed_dot_i8x16_i7x16_add_s(v128.load(x), v128.xor(w0, sgn), i32x4.splat(0)));
  }
  if (ASC_FEATURE_RELAXED_SIMD) {
    // pmaddubsw-style: the second operand must be 7-bit, so multiply |x| by w carrying x's sign
    // (x is never -128; a weight of -128 against a negative x would wrap: llama.cpp never writes one)
    const x0 = v128.load(x), x1 = v128.load(x, 16);
    const n0 = i8x16.lt_s(x0, i8x16.splat(0)), n1 = i8x16.lt_s(x1, i8x16.splat(0));
    // w with x's sign: (w ^ n) - n negates where n is all ones (2 ops; bitselect with a negation is 5 on x64)
    const s0 = i8x16.sub(v128.xor(w0, n0), n0), s1 = i8x16.sub(v128.xor(w1, n1), n1);
    // (the fused i32x4.relaxed_dot_i8x16_i7x16_add_s gives twice the sum in Node 20's V8 11.3;
    // pairSums rather than extadd_pairwise, the same sums: 270M q8_0 decode 1.06x / 1.08x on 1 / 2 threads)
    return i32x4.add(pairSums(i16x8.relaxed_dot_i8x16_i7x16_s(s0, i8x16.abs(x0)), one),
      pairSums(i16x8.relaxed_dot_i8x16_i7x16_s(s1, i8x16.abs(x1)), one));
  }
  const x0 = v128.load(x), x1 = v128.load(x, 16);
  const p0 = i16x8.add(i16x8.extmul_low_i8x16_s(w0, x0), i16x8.extmul_high_i8x16_s(w0, x0));
  const p1 = i16x8.add(i16x8.extmul_low_i8x16_s(w1, x1), i16x8.extmul_high_i8x16_s(w1, x1));
  return i32x4.add(pairSums(p0, one), pairSums(p1, one));
}

const Q8: i32 = 0, Q4: i32 = 1;

/**
 * The int8 kernels' vector constants, taken once per call into locals (nibbleMask() etc.) and
 * handed down. In the VNNI build they are loaded from here: V8 13 rebuilds a v128 constant at every
 * use inside a loop (a load from the code's constant pool and a broadcast, three instructions) but
 * keeps a loaded value in a register (q4_0 decode 1.23-1.28x, Node 24, 270M, in-process A/B). The other
 * builds keep the constants: loaded, Node 20's q4_0 decode ran 0.86x. 16 × 0x0f, 16 × 0x80, 8 × i16 1.
 */
const KONST: usize = memory.data<u8>([
  0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f, 0x0f,
  0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
  1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0,
], 16);
@inline function nibbleMask(): v128 { return VNNI ? v128.load(KONST) : i8x16.splat(0x0f); }
@inline function signBits(): v128 { return VNNI ? v128.load(KONST, 16) : i8x16.splat(-128); }
@inline function onesI16(): v128 { return VNNI ? v128.load(KONST, 32) : i16x8.splat(1); }

/**
 * i16 lane pairs summed to i32: i32x4.extadd_pairwise_i16x8_s, written as a dot product with ones
 * because V8 lowers the former to pmaddwd against a constant it addresses anew at every use,
 * while a splat constant stays in a register across a loop (in Node 20's V8; V8 13 rebuilds that
 * too, hence `one` comes from onesI16(), loaded in the VNNI build)
 */
@inline function pairSums(v: v128, one: v128): v128 { return i32x4.dot_i16x8_s(v, one); }

// Weight block decoders: the 32 int8 values of block b as two v128 (values 0..15, 16..31).
@inline function blockQ8(w: usize): v128 { return v128.load(w, 2); }
@inline function blockQ8hi(w: usize): v128 { return v128.load(w, 18); }
// q4_0 nibbles stay unsigned (0..15); the - 8 is applied once per block through Σx (see xs)
@inline function blockQ4(q: v128, nib: v128): v128 { return v128.and(q, nib); }
// (a 16-bit shift and the same mask as blockQ4: V8 lowers i8x16.shr_u to the shift plus a mask it
// rebuilds from an immediate at every use)
@inline function blockQ4hi(q: v128, nib: v128): v128 { return v128.and(i16x8.shr_u(q, 4), nib); }

/** Σ q·x over 32 pairs with q in 0..15: four products per i16 lane fit (≤ 4 · 15 · 127) */
@inline function dot32u(lo: v128, hi: v128, x: usize, one: v128): v128 {
  const x0 = v128.load(x), x1 = v128.load(x, 16);
  if (VNNI) return i32x4.relaxed_dot_i8x16_i7x16_add_s(x1, hi, i32x4.relaxed_dot_i8x16_i7x16_add_s(x0, lo, i32x4.splat(0)));
  if (ASC_FEATURE_RELAXED_SIMD) {
    // the nibbles are valid 7-bit operands as they are
    return pairSums(i16x8.add(i16x8.relaxed_dot_i8x16_i7x16_s(x0, lo), i16x8.relaxed_dot_i8x16_i7x16_s(x1, hi)), one);
  }
  const p = i16x8.add(i16x8.add(i16x8.extmul_low_i8x16_s(lo, x0), i16x8.extmul_high_i8x16_s(lo, x0)),
    i16x8.add(i16x8.extmul_low_i8x16_s(hi, x1), i16x8.extmul_high_i8x16_s(hi, x1)));
  return pairSums(p, one);
}

/** the f16 scale of the block at wp, via the 256 KiB half → f32 table (a few hot entries: L1) */
@inline function scale(lut: usize, wp: usize): f32 {
  return load<f32>(lut + (<usize>load<u16>(wp) << 2));
}

/** the f16 scales at p0 .. p3 as one f32x4 (scale) */
@inline function scales4(lut: usize, p0: usize, p1: usize, p2: usize, p3: usize): v128 {
  return f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(scale(lut, p0)), 1, scale(lut, p1)), 2, scale(lut, p2)), 3, scale(lut, p3));
}

/** lane j: the sum of the four lanes of the j-th argument (exact: integers) */
@inline function rowSums4(a: v128, b: v128, c: v128, d: v128): v128 {
  const u = i32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const v = i32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return i32x4.add(i32x4.shuffle(u, v, 0, 1, 4, 5), i32x4.shuffle(u, v, 2, 3, 6, 7));
}

/** Σ w·x over the block at p (q8_0 signed, q4_0 its raw nibbles 0..15), i32x4 partial sums */
@inline function blockDot(kind: i32, p: usize, xp: usize, nib: v128, sgn: v128, one: v128): v128 {
  if (kind == Q8) return dot32(blockQ8(p), blockQ8hi(p), xp, sgn, one);
  const q = v128.load(p, 2);
  return dot32u(blockQ4(q, nib), blockQ4hi(q, nib), xp, one);
}

/**
 * One block of four weight rows (lane j: the row at pj) for one token: acc += the block's exact
 * integer sums × scales, in the form every quantized path uses, so a row's sum is the same bits
 * whichever kernel computes it (the GEMMs' kernelQuant8x4 / kernelQ4x8x4 end each block alike):
 * - q8_0: acc + Σwx · (dw · dx)
 * - q4_0 (Σ (q − 8) x = Σ q x − 8 Σ x, the block sums xs = dx · Σ x): acc + (Σqx · dx − 8 xs) · dw
 * dx and e (= −8 xs) come splatted; with VNNI, q8_0's e is its xo (128 Σx, splatted), taken off the
 * integer sums.
 */
@inline function groupBlock(kind: i32, lut: usize, p0: usize, p1: usize, p2: usize, p3: usize, xp: usize, dx: v128, e: v128, acc: v128,
  nib: v128, sgn: v128, one: v128): v128 {
  let ints = rowSums4(blockDot(kind, p0, xp, nib, sgn, one), blockDot(kind, p1, xp, nib, sgn, one), blockDot(kind, p2, xp, nib, sgn, one),
    blockDot(kind, p3, xp, nib, sgn, one));
  if (VNNI && kind == Q8) ints = i32x4.sub(ints, e);
  const sums = f32x4.convert_i32x4_s(ints);
  const dw = scales4(lut, p0, p1, p2, p3);
  if (kind == Q4) return madd(madd(sums, dx, e), dw, acc);
  return madd(sums, f32x4.mul(dw, dx), acc);
}

/** groupBlock's e for block b of a token: q4_0 −8 xs, q8_0 with VNNI xo, else unused (dx) */
@inline function blockE(kind: i32, xd: usize, xsOff: usize, b: i32, dx: v128): v128 {
  if (kind == Q4) return f32x4.splat(-8 * load<f32>(xd + xsOff + (<usize>b << 2)));
  return VNNI ? v128.load32_splat(xd + 2 * xsOff + (<usize>b << 2)) : dx;
}

/** lane j of a → out + j · os, for j < count */
@inline function storeLanes(a: v128, out: usize, os: usize, count: i32 = 4): void {
  store<f32>(out, f32x4.extract_lane(a, 0));
  if (count > 1) store<f32>(out + os, f32x4.extract_lane(a, 1));
  if (count > 2) store<f32>(out + 2 * os, f32x4.extract_lane(a, 2));
  if (count > 3) store<f32>(out + 3 * os, f32x4.extract_lane(a, 3));
}

/**
 * Decode (one token) over rows [r0, r1), R rows at a time (4, 8 or 16, a constant at each call
 * site): one pass over the blocks with a block of every one of the R rows per step, so R weight
 * streams are in flight at once. One row at a time leaves the memory system idle between its
 * requests; measured on a 270M q8_0 model (Xeon, Sapphire Rapids class): 4 rows 1.22-1.31x one
 * row, 8 rows 1.13x 4, 16 rows 1.11x 8, 32 rows no better (bench/ab.ts --decode). R is chosen per
 * machine (src/kernels/wasm/tuning.ts). The R rows are not neighbours but m = (r1 - r0) / R rows
 * apart: R adjacent rows (1.4 KB each in a 270M model) share 4 KiB pages, and the hardware
 * prefetchers, which follow one ascending stream per page, lose them; R slots each walking its
 * own long stretch of consecutive rows are R clean streams: 1.64x on the same decode, 2 threads.
 * The rows go four to a vector (groupBlock), one row per lane, so a row's sum is what the GEMMs
 * compute for it (lanes are rows there too); the rows left over (fewer than R) go four at a time.
 */
@inline function decodeRows(kind: i32, out: usize, xi: usize, xd: usize, w: usize, rowBytes: usize, nb: i32, bb: usize, lut: usize, r0: i32, r1: i32,
  xsOff: usize, R: i32): void {
  // xs (q4_0's block sums) of this token: xd + xsOff
  // the R rows in flight are m rows apart (slot k walks rows r0 + k·m, r0 + k·m + 1, …), so each
  // slot reads one long sequential stretch of memory, which the hardware prefetchers follow
  const m = (r1 - r0) / R, S = <usize>m * rowBytes, os = <usize>m << 2;
  const nib = nibbleMask(), sgn = signBits(), one = onesI16();
  for (let i = 0; i < m; i++) {
    const r = r0 + i, w0 = w + <usize>r * rowBytes;
    let a0 = f32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    for (let b = 0; b < nb; b++) {
      const p = w0 + <usize>b * bb, xp = xi + (<usize>b << 5), dx = v128.load32_splat(xd + (<usize>b << 2));
      const e = blockE(kind, xd, xsOff, b, dx);
      a0 = groupBlock(kind, lut, p, p + S, p + 2 * S, p + 3 * S, xp, dx, e, a0, nib, sgn, one);
      if (R >= 8) a1 = groupBlock(kind, lut, p + 4 * S, p + 5 * S, p + 6 * S, p + 7 * S, xp, dx, e, a1, nib, sgn, one);
      if (R >= 16) {
        a2 = groupBlock(kind, lut, p + 8 * S, p + 9 * S, p + 10 * S, p + 11 * S, xp, dx, e, a2, nib, sgn, one);
        a3 = groupBlock(kind, lut, p + 12 * S, p + 13 * S, p + 14 * S, p + 15 * S, xp, dx, e, a3, nib, sgn, one);
      }
    }
    const o = out + (<usize>r << 2);
    storeLanes(a0, o, os);
    if (R >= 8) storeLanes(a1, o + 4 * os, os);
    if (R >= 16) { storeLanes(a2, o + 8 * os, os); storeLanes(a3, o + 12 * os, os); }
  }
  // the rest, four neighbouring rows at a time (a short last group repeats its last row)
  for (let r = r0 + m * R; r < r1; r += 4) {
    const q0 = w + <usize>r * rowBytes, q1 = rowAt(w, r + 1, r1, rowBytes), q2 = rowAt(w, r + 2, r1, rowBytes), q3 = rowAt(w, r + 3, r1, rowBytes);
    let a = f32x4.splat(0);
    for (let b = 0; b < nb; b++) {
      const o = <usize>b * bb, xp = xi + (<usize>b << 5), dx = v128.load32_splat(xd + (<usize>b << 2));
      const e = blockE(kind, xd, xsOff, b, dx);
      a = groupBlock(kind, lut, q0 + o, q1 + o, q2 + o, q3 + o, xp, dx, e, a, nib, sgn, one);
    }
    storeLanes(a, out + (<usize>r << 2), 4, min(4, r1 - r));
  }
}
/** bytes of the half → f32 table (lut); the tuning words follow it (TUNE_* offsets) */
const LUT_BYTES: usize = 65536 * 4;
/** tuning word: rows in flight of the quantized decode kernel (4, 8 or 16; set by wasm.ts) */
const TUNE_QUANT_ROWS: usize = 0;

/**
 * Decode, any number of tokens (wasm.ts sends up to gemmMinTokensQuant - 1; the GEMMs take more):
 * decodeRows over the thread's rows; several tokens take the rows in blocks kept in cache, so the
 * weights come from memory once. Each row's sum is computed as the GEMMs compute it, so a token's
 * result is the same alone, batched with others, or in a prompt. Against the pair kernel this path
 * replaced and the GEMM, 5120 × 1280 q8_0 from memory, 2 threads: 2 tokens 1.49x, 3 about equal,
 * 4 1.14x, 6 1.07x, 8 0.82x (bench/ab.ts --shape).
 */
@inline function decodeTokens(kind: i32, out: usize, xi: usize, xd: usize, w: usize, rows: i32, rowBytes: usize, nb: i32, bb: usize, lut: usize,
  r0: i32, r1: i32, n: i32): void {
  const xis = <usize>nb * QK, xds = <usize>nb << 2, os = <usize>rows << 2, xsOff = <usize>n * xds;
  const R = load<i32>(lut + LUT_BYTES + TUNE_QUANT_ROWS);
  // several tokens: the rows in blocks of ~256 KiB (whole groups of R), every token over a block
  // while it is in cache, so the weights come from memory once
  const blk = fewTokenBlock(n, r0, r1, rowBytes, R);
  for (let b0 = r0; b0 < r1; b0 += blk) {
    const b1 = min(b0 + blk, r1);
    for (let t = 0; t < n; t++) {
      const ot = out + <usize>t * os, xt = xi + <usize>t * xis, dt = xd + <usize>t * xds;
      if (R == 16) decodeRows(kind, ot, xt, dt, w, rowBytes, nb, bb, lut, b0, b1, xsOff, 16);
      else if (R == 8) decodeRows(kind, ot, xt, dt, w, rowBytes, nb, bb, lut, b0, b1, xsOff, 8);
      else decodeRows(kind, ot, xt, dt, w, rowBytes, nb, bb, lut, b0, b1, xsOff, 4);
    }
  }
}

/** fills lut[0 .. 65536) with the f32 value of every half bit pattern */
export function init_half_table(lut: usize): void {
  for (let h: u32 = 0; h < 65536; h++) store<f32>(lut + (<usize>h << 2), halfToF32(h));
}

@inline function matmulQuant(kind: i32, out: usize, xi: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, lut: usize, r0: i32, r1: i32): void {
  const nb = (cols + QK - 1) / QK;
  const bb: usize = kind == Q8 ? Q8_BYTES : Q4_BYTES;
  decodeTokens(kind, out, xi, xd, w, rows, <usize>nb * bb, nb, bb, lut, r0, r1, n);
}

/**
 * tiled: TILED_KIND for a weight stored tiled (repack_q8): its whole tiles run the tile-by-tile
 * GEMM's kernels where they lie (the thread's scratch must hold gemm_tiles_scratch_bytes for these
 * n tokens), the rows after them the decode kernel
 */
export function matmul_q8_0(out: usize, xi: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, lut: usize, tiled: i32, from: i32, to: i32, scratch: usize): void {
  const tr = tiledRowsOf(tiled, rows), t1 = min(to, tr);
  if (from < t1) {
    if (n == 1) {
      const nb = (cols + QK - 1) / QK;
      decodeTiles(out, xi, xd, <usize>nb << 2, w, <usize>nb * Q8_BYTES, nb, lut, from, t1);
    } else gemmQuantTiles(Q8, out, 0, xd, w, rows, cols, n, lut, from, t1, scratch, tr);
  }
  if (max(from, t1) < to) matmulQuant(Q8, out, xi, xd, w, rows, cols, n, lut, max(from, t1), to);
}

/** VNNI's fused u8 × s8 dot product (the other builds never call it: they store nothing tiled) */
@inline function vnniDot(v: v128, w: v128, acc: v128): v128 {
  if (VNNI) return i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w, acc);
  return acc;
}

/** a tile's 8 outputs at o += its block's sums (rows 0-3 in a, 4-7 in c) × (row scales × dx), as tokenBlockEnd */
@inline function tileBlockOut(a: v128, c: v128, lut: usize, p: usize, dx: v128, o: usize): void {
  v128.store(o, madd(f32x4.convert_i32x4_s(a), f32x4.mul(tileScale4(lut, p), dx), v128.load(o)));
  v128.store(o, madd(f32x4.convert_i32x4_s(c), f32x4.mul(tileScale4(lut, p + 8), dx), v128.load(o, 16)), 16);
}

/** the f32 scales of rows 4h .. 4h+3 of the tiled block at p (its four f16 scales from p on) */
@inline function tileScale4(lut: usize, p: usize): v128 {
  return scales4(lut, p, p + 2, p + 4, p + 6);
}

/**
 * One token over whole tiles [r0, r1) stored tiled (repack_q8): DECODE_TILE_SLOTS tiles far apart
 * at a time (slot k walks the tiles from r0 + k · m on), block by block, 4 of them in lockstep, so
 * that several streams of weights are in flight, as the decode kernel's rows are (one or two
 * tiles at a time, each read a block at a time, ran 0.5-0.8x that kernel; this 0.92x); per tile
 * and block 8 steps of the fused dot product of its two weight vectors with the token's 4
 * activations broadcast, from −128 Σx, then the sums go into the tile's 8 outputs as tokenBlockEnd
 * ends a block: the GEMMs' sums, bit for bit. xi, xd: the token's int8 activations and scales
 * (quantize_q8; its xo at xd + 2 · xsOff).
 */
@inline function decodeTiles(out: usize, xi: usize, xd: usize, xsOff: usize, w: usize, rowBytes: usize, nb: i32, lut: usize, r0: i32, r1: i32): void {
  const tiles = (r1 - r0) >> 3, S = tiles >= DECODE_TILE_SLOTS ? DECODE_TILE_SLOTS : 1, m = tiles / S;
  const xo = xd + 2 * xsOff, zero = i32x4.splat(0);
  for (let i = 0; i < tiles; ) {
    const ns = S > 1 && i < m ? S : 1, stride = <usize>m * rowBytes << 3;
    const t0 = w + <usize>(r0 + (i << 3)) * rowBytes, o0 = out + (<usize>(r0 + (i << 3)) << 2), os = <usize>m << 5;
    for (let k = 0; k < ns; k++) { v128.store(o0 + <usize>k * os, zero); v128.store(o0 + <usize>k * os, zero, 16); }
    for (let b = 0; b < nb; b++) {
      const xp = xi + (<usize>b << 5), dx = v128.load32_splat(xd + (<usize>b << 2));
      const start = i32x4.sub(zero, v128.load32_splat(xo + (<usize>b << 2)));
      if (ns == 1) {
        const p = t0 + <usize>b * TILE_BLOCK;
        let a0 = start, a1 = start;
        for (let s: usize = 0; s < 256; s += 32) {
          const v = v128.load32_splat(xp + (s >> 3));
          a0 = vnniDot(v, v128.load(p + s, 16), a0);
          a1 = vnniDot(v, v128.load(p + s, 32), a1);
        }
        tileBlockOut(a0, a1, lut, p, dx, o0);
        continue;
      }
      for (let k = 0; k < ns; k += 4) {
        // four tiles in lockstep (ns: a multiple of 4)
        const k1 = k + 1, k2 = k + 2, k3 = k + 3;
        const bo = <usize>b * TILE_BLOCK;
        const p0 = t0 + <usize>k * stride + bo, p1 = t0 + <usize>k1 * stride + bo, p2 = t0 + <usize>k2 * stride + bo, p3 = t0 + <usize>k3 * stride + bo;
        let a0 = start, a1 = start, b0 = start, b1 = start, c0 = start, c1 = start, d0 = start, d1 = start;
        for (let s: usize = 0; s < 256; s += 32) {
          const v = v128.load32_splat(xp + (s >> 3));
          a0 = vnniDot(v, v128.load(p0 + s, 16), a0); a1 = vnniDot(v, v128.load(p0 + s, 32), a1);
          b0 = vnniDot(v, v128.load(p1 + s, 16), b0); b1 = vnniDot(v, v128.load(p1 + s, 32), b1);
          c0 = vnniDot(v, v128.load(p2 + s, 16), c0); c1 = vnniDot(v, v128.load(p2 + s, 32), c1);
          d0 = vnniDot(v, v128.load(p3 + s, 16), d0); d1 = vnniDot(v, v128.load(p3 + s, 32), d1);
        }
        tileBlockOut(a0, a1, lut, p0, dx, o0 + <usize>k * os);
        tileBlockOut(b0, b1, lut, p1, dx, o0 + <usize>k1 * os);
        tileBlockOut(c0, c1, lut, p2, dx, o0 + <usize>k2 * os);
        tileBlockOut(d0, d1, lut, p3, dx, o0 + <usize>k3 * os);
      }
    }
    i += 1;
    if (ns > 1 && i == m) i = m * S;
  }
}
export function matmul_q4_0(out: usize, xi: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, lut: usize, _a8: i32, from: i32, to: i32, _scratch: usize): void {
  matmulQuant(Q4, out, xi, xd, w, rows, cols, n, lut, from, to);
}

// ---------------------------------------------------------------- prefill GEMM (n ≥ 4 tokens)
//
// The decode kernels above stream each weight row once per token or pair of tokens; for a prompt
// that leaves the multiply units idle (few independent accumulators, a weight load per few
// multiply-adds). The GEMMs below repack a tile of weight rows into the calling thread's scratch,
// in the form the inner kernel wants, and reuse it for a block of tokens:
// - float (f32, bf16, f16): 12 rows × up to KC columns, converted to f32 and stored k-major (for
//   each column the 12 row values side by side), then 3 tokens × 12 rows per step: three weight
//   vectors, three broadcast activations, nine independent multiply-adds (fused with relaxed
//   SIMD) per column;
// - quantized (q8_0, q4_0): 8 rows × up to KB blocks widened to i16 (q4_0: its nibbles 0..15),
//   laid out so each 32-bit lane holds one row's column pair, then 4 tokens × 8 rows per step:
//   i32x4.dot_i16x8_s (pmaddwd) of two weight vectors with each token's column pair broadcast,
//   into eight i32x4 sums whose lanes are rows (no horizontal reduction); per 32-block the exact
//   integer sums go into the panel as the decode kernel's groupBlock does it (q8_0 × (row scale ×
//   token scale); q4_0 (Σqx · dx − 8 xs) · dw), so every path gives a row the same bits. With
//   relaxed SIMD, q4_0 keeps its raw nibbles and runs the int8 dot product instead
//   (kernelQ4x8x4); with VNNI, q8_0 too runs on bytes (w + 128) and both run the fused dot
//   product into i32 (kernelVnni8x4). The activations are packed per group of 4 tokens (packQuantActivations).
// Loop order: rows in passes of RS → token block (TB) → column chunk → row tile → tokens, so the
// activations of one (token block, column chunk), TB × KC values, stay in cache while the RS rows
// pass over them; each weight element is packed once per token block. Sums over the chunks
// collect in a panel in scratch (contiguous per tile: `out` rows are thousands of bytes apart,
// which maps a tile's tokens onto the same few cache sets) and go to `out` after the last chunk.
// Scratch per thread: gemm_scratch_bytes().

const KC: i32 = 512;   // float: columns per packed chunk (24 KiB packed)
const KB: i32 = 16;    // quantized: blocks per packed chunk (512 columns, 8.5 KiB packed)
const TB: i32 = 128;   // tokens per block
const RS: i32 = 512;   // rows per pass over a (token block, column chunk): a panel of 256 KiB (float: 504 rows)

/** bytes of per-thread scratch gemm_float and gemm_quant need (packed tiles, packed activations, panel) */
export function gemm_scratch_bytes(): i32 {
  return max(KC * 48 + 48, (KB << 9) + (KB << 5) + (TB >> 2) * KB * (256 + 32) + 32) + (RS >> 3) * TB * 32;
}

/** a 4 × 4 transpose of i32 lanes: lane j of a, b, c, d → vector j, stored `stride` bytes apart at dst */
@inline function storeTransposed(a: v128, b: v128, c: v128, d: v128, dst: usize, stride: usize): void {
  const t0 = i32x4.shuffle(a, b, 0, 4, 1, 5), t1 = i32x4.shuffle(a, b, 2, 6, 3, 7);
  const t2 = i32x4.shuffle(c, d, 0, 4, 1, 5), t3 = i32x4.shuffle(c, d, 2, 6, 3, 7);
  v128.store(dst, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
  v128.store(dst + stride, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
  v128.store(dst + 2 * stride, i32x4.shuffle(t1, t3, 0, 1, 4, 5));
  v128.store(dst + 3 * stride, i32x4.shuffle(t1, t3, 2, 3, 6, 7));
}

/** row r of a matrix at w with `stride` bytes per row, rows past the last valid one (< rEnd) clamped to it */
@inline function rowAt(w: usize, r: i32, rEnd: i32, stride: usize): usize {
  return w + <usize>min(r, rEnd - 1) * stride;
}

/**
 * sums collected in a panel (per row tile of `tile` rows, TB tokens × tile floats) → out (or, with
 * `acc`, added to out), for rows rs..re-1 and tokens t0..t0+nt-1
 */
@inline function panelToOut(panel: usize, out: usize, rows: i32, rs: i32, re: i32, t0: i32, nt: i32, tile: i32, acc: bool = false): void {
  const tb = <usize>tile << 2;
  // token by token: each writes one contiguous run of out's row
  for (let t = 0; t < nt; t++) {
    for (let r = rs; r < re; r += tile) {
      const nr = min(tile, re - r);
      const pp = panel + <usize>((r - rs) / tile) * TB * tb + <usize>t * tb, o = out + (<usize>(t0 + t) * rows + r << 2);
      if (acc) {
        if (nr == tile) { for (let j: usize = 0; j < tb; j += 16) v128.store(o + j, f32x4.add(v128.load(o + j), v128.load(pp + j))); }
        else for (let j = 0; j < nr; j++) store<f32>(o + (<usize>j << 2), load<f32>(o + (<usize>j << 2)) + load<f32>(pp + (<usize>j << 2)));
      } else {
        if (nr == tile) { for (let j: usize = 0; j < tb; j += 16) v128.store(o + j, v128.load(pp + j)); }
        else for (let j = 0; j < nr; j++) store<f32>(o + (<usize>j << 2), load<f32>(pp + (<usize>j << 2)));
      }
    }
  }
}

/**
 * packs rows r..r+11 (clamped to < rEnd) × columns k0..k0+kc (kc a multiple of 8) of an f16 weight
 * as exact f32 in the one-token kernel's lane order (F16P): quarter j, at pk + j · (kc / 4) · 48,
 * holds columns 2j and 2j + 1 of every group of 8, in order, each column the 12 rows side by side
 * (48 bytes)
 */
@inline function packF16Pairs(w: usize, cols: i32, r: i32, rEnd: i32, k0: i32, kc: i32, pk: usize): void {
  const stride = <usize>cols << 1, qs = <usize>(kc >> 2) * 48;
  const m = i32x4.splat(0x8fffe000), f = f32x4.splat(reinterpret<f32>(<u32>(127 + 112) << 23));
  for (let h = 0; h < 3; h++) {
    const w0 = rowAt(w, r + 4 * h, rEnd, stride) + (<usize>k0 << 1), w1 = rowAt(w, r + 4 * h + 1, rEnd, stride) + (<usize>k0 << 1);
    const w2 = rowAt(w, r + 4 * h + 2, rEnd, stride) + (<usize>k0 << 1), w3 = rowAt(w, r + 4 * h + 3, rEnd, stride) + (<usize>k0 << 1);
    const dst = pk + (<usize>h << 4);
    for (let g = 0; g < kc; g += 8) {
      const o = <usize>g << 1, d = dst + <usize>(g >> 2) * 48;
      const v0 = v128.load(w0 + o), v1 = v128.load(w1 + o), v2 = v128.load(w2 + o), v3 = v128.load(w3 + o);
      // even halves shifted into the high half of their lane first, as F16P does
      storeTransposed(f32x4.mul(v128.and(i32x4.shr_s(i32x4.shl(v0, 16), 3), m), f), f32x4.mul(v128.and(i32x4.shr_s(i32x4.shl(v1, 16), 3), m), f),
        f32x4.mul(v128.and(i32x4.shr_s(i32x4.shl(v2, 16), 3), m), f), f32x4.mul(v128.and(i32x4.shr_s(i32x4.shl(v3, 16), 3), m), f), d, qs);
      storeTransposed(f32x4.mul(v128.and(i32x4.shr_s(v0, 3), m), f), f32x4.mul(v128.and(i32x4.shr_s(v1, 3), m), f),
        f32x4.mul(v128.and(i32x4.shr_s(v2, 3), m), f), f32x4.mul(v128.and(i32x4.shr_s(v3, 3), m), f), d + 48, qs);
    }
  }
}

/**
 * o0..o2 (12 f32 each) (+)= 3 tokens (activations at x0..x2) · 12 rows (packed tile at pk) over kc
 * columns: three weight vectors, three broadcast activations, nine multiply-adds per column. Nine
 * accumulators, not eight: eight chains of fused multiply-adds wait on its latency (~4.5 cycles,
 * 2 per cycle); V8 starts all loads of the body first, so 6 loads + 9 accumulators fill its 15
 * usable xmm registers (4 × 12 or 6 × 8 spill). The f16 GEMM runs it on each quarter of a chunk
 * (packF16Pairs, quarters_for_f16), the training GEMMs on their packed tiles.
 */
function kernelFloat3x12(pk: usize, x0: usize, x1: usize, x2: usize, kc: i32, o0: usize, o1: usize, o2: usize, first: bool): void {
  let a0 = f32x4.splat(0), b0 = f32x4.splat(0), c0 = f32x4.splat(0);
  let a1 = f32x4.splat(0), b1 = f32x4.splat(0), c1 = f32x4.splat(0);
  let a2 = f32x4.splat(0), b2 = f32x4.splat(0), c2 = f32x4.splat(0);
  if (!first) {
    a0 = v128.load(o0); b0 = v128.load(o0, 16); c0 = v128.load(o0, 32);
    a1 = v128.load(o1); b1 = v128.load(o1, 16); c1 = v128.load(o1, 32);
    a2 = v128.load(o2); b2 = v128.load(o2, 16); c2 = v128.load(o2, 32);
  }
  // one column per step: unrolled, V8 hoists every load of the body and spills
  for (let kk = 0; kk < kc; kk++) {
    const p = pk + <usize>kk * 48, o = <usize>kk << 2;
    const w0 = v128.load(p), w1 = v128.load(p, 16), w2 = v128.load(p, 32);
    let v = v128.load32_splat(x0 + o);
    a0 = madd(w0, v, a0); b0 = madd(w1, v, b0); c0 = madd(w2, v, c0);
    v = v128.load32_splat(x1 + o);
    a1 = madd(w0, v, a1); b1 = madd(w1, v, b1); c1 = madd(w2, v, c1);
    v = v128.load32_splat(x2 + o);
    a2 = madd(w0, v, a2); b2 = madd(w1, v, b2); c2 = madd(w2, v, c2);
  }
  v128.store(o2, a2); v128.store(o2, b2, 16); v128.store(o2, c2, 32);
  v128.store(o1, a1); v128.store(o1, b1, 16); v128.store(o1, c1, 32);
  v128.store(o0, a0); v128.store(o0, b0, 16); v128.store(o0, c0, 32);
}

/**
 * The activations of the f16 GEMM: each of the n tokens' cols values, every chunk of KC columns
 * (the last one to a multiple of 8) as the quarters packF16Pairs makes of the weights (quarter j:
 * columns 2j, 2j + 1 of every group of 8); the last cols % 8 stay in place.
 */
export function quarters_for_f16(dst: usize, src: usize, n: i32, cols: i32): void {
  const c8 = cols & ~7;
  for (let t = 0; t < n; t++) {
    const x = src + (<usize>t * cols << 2), d = dst + (<usize>t * cols << 2);
    for (let k0 = 0; k0 < c8; k0 += KC) {
      const qb = <usize>(min(KC, c8 - k0) >> 2) << 2, d0 = d + (<usize>k0 << 2);
      for (let g = 0; g < min(KC, c8 - k0); g += 8) {
        const a = v128.load(x + (<usize>(k0 + g) << 2)), b = v128.load(x + (<usize>(k0 + g) << 2), 16), o = d0 + <usize>g;
        v128.store64_lane(o, a, 0);
        v128.store64_lane(o + qb, a, 1);
        v128.store64_lane(o + 2 * qb, b, 0);
        v128.store64_lane(o + 3 * qb, b, 1);
      }
    }
    for (let i = c8; i < cols; i++) store<f32>(d + (<usize>i << 2), load<f32>(x + (<usize>i << 2)));
  }
}

/** rows per pass of the f16 GEMM: its panel holds 4 partial sums per (row, token), 10 tiles × TB tokens × 192 bytes */
const RS_F16: i32 = 120;

/**
 * f16 weight rows [r0, r1) × tokens [n0, n1) of activations from quarters_for_f16, each (row, token) summed as
 * the one-token kernel (F16P) sums it: four partial sums (lane j: columns 8g + 2j, 8g + 2j + 1 in
 * turn), carried across the chunks in the panel, then (q0 + q2) + (q1 + q3) as hsum adds them and
 * the last cols % 8 columns one by one. Its products are F16P's times 2^48 (exact weights against
 * unscaled activations), so the sums are the same bits: a sequence gets its solo logits in a batch.
 */
@inline function gemmF16(out: usize, x: usize, w: usize, rows: i32, cols: i32, r0: i32, r1: i32, n0: i32, n1: i32, scratch: usize): void {
  const pk = scratch, junk = pk + <usize>KC * 48, panel = junk + 48;
  const xs = <usize>cols << 2, c8 = cols & ~7, PT: usize = 192, stride = <usize>cols << 1;
  for (let rs = r0; rs < r1; rs += RS_F16) {
    const re = min(rs + RS_F16, r1);
    for (let t0 = n0; t0 < n1; t0 += TB) {
      const nt = min(TB, n1 - t0), tl = t0 + nt - 1;
      for (let k0 = 0; k0 < c8; k0 += KC) {
        const kc = min(KC, c8 - k0), kq = kc >> 2, first = k0 == 0;
        for (let r = rs; r < re; r += 12) {
          packF16Pairs(w, cols, r, re, k0, kc, pk);
          // panel: per row tile, TB tokens × 4 quarters × 12 sums; a short last group of tokens
          // repeats its last token into junk
          const pt = panel + <usize>((r - rs) / 12) * TB * PT;
          // the quarters of a group of tokens one after another: its activations stay in L1
          for (let q = 0; q < nt; q += 3) {
            const ta = t0 + q, tb = min(ta + 1, tl), tc = min(ta + 2, tl), oq = pt + <usize>q * PT;
            for (let j = 0; j < 4; j++) {
              const xj = x + (<usize>(k0 + j * kq) << 2), o = oq + <usize>j * 48;
              kernelFloat3x12(pk + <usize>(j * kq) * 48, xj + <usize>ta * xs, xj + <usize>tb * xs, xj + <usize>tc * xs, kq,
                o, ta + 1 <= tl ? o + PT : junk, ta + 2 <= tl ? o + 2 * PT : junk, first);
            }
          }
        }
      }
      // the quarters' sums as hsum adds them, then the columns past c8, to out token by token
      for (let t = 0; t < nt; t++) {
        const xt = x + <usize>(t0 + t) * xs, ot = out + (<usize>(t0 + t) * rows << 2);
        for (let r = rs; r < re; r += 4) {
          const pp = panel + <usize>((r - rs) / 12) * TB * PT + <usize>t * PT + (<usize>((r - rs) % 12) << 2);
          const v = c8 == 0 ? f32x4.splat(0)
            : f32x4.add(f32x4.add(v128.load(pp), v128.load(pp, 96)), f32x4.add(v128.load(pp, 48), v128.load(pp, 144)));
          if (c8 == cols && r + 4 <= re) { v128.store(ot + (<usize>r << 2), v); continue; }
          v128.store(junk, v);
          for (let l = 0; l < min(4, re - r); l++) {
            const wr = w + <usize>(r + l) * stride;
            let s = load<f32>(junk + (<usize>l << 2));
            for (let i = c8; i < cols; i++) s += load1(F16, wr, i) * load<f32>(xt + (<usize>i << 2));
            store<f32>(ot + (<usize>(r + l) << 2), s);
          }
        }
      }
    }
  }
}

/**
 * f16 weights (f32 and bf16 matmuls run tilesFloat, which outran a packed GEMM at every size
 * measured), n ≥ 1 tokens of plain (unscaled) f32 activations. Items:
 * weight rows [from, to) (tiles of 12), or with byTokens tokens [from, to) (blocks of TB): a thread
 * claiming rows reads every token's activations for them, one claiming tokens only its own, and
 * the weight tiles are packed per token block either way (see gemm_t)
 */
export function gemm_float(out: usize, x: usize, w: usize, rows: i32, cols: i32, n: i32, kind: i32, byTokens: i32, _a8: i32, from: i32, to: i32, scratch: usize): void {
  const r0 = byTokens ? 0 : from, r1 = byTokens ? rows : to, n0 = byTokens ? from : 0, n1 = byTokens ? to : n;
  if (kind == F16) gemmF16(out, x, w, rows, cols, r0, r1, n0, n1, scratch);
  else unreachable();
}

/**
 * packs rows r..r+7 (clamped to < rEnd) × blocks b0..b0+kb of a q8_0 / q4_0 weight for the
 * quantized kernels, one 32-bit lane per row: as i16 (q4_0: its nibbles 0..15), per block 16 steps
 * of 32 bytes, step j holding columns 2j, 2j+1 of rows r..r+3 then of rows r+4..r+7, at pk + b ·
 * 512; or, `int8` (q4_0 with relaxed SIMD, q8_0 with VNNI), as bytes: q4_0's raw nibbles (0..15:
 * valid 7-bit operands of the int8 dot product), q8_0's w + 128 (0..255, unsigned for VNNI's),
 * per block 8 steps of 32 bytes, step s holding columns 4s..4s+3, at pk + b · 256. The row scales as two f32x4 at ps + b · 32.
 */
@inline function packQuant(kind: i32, int8: bool, w: usize, rowBytes: usize, r: i32, rEnd: i32, b0: i32, kb: i32, lut: usize, pk: usize, ps: usize): void {
  const bb: usize = kind == Q8 ? Q8_BYTES : Q4_BYTES, blockBytes: usize = int8 ? 256 : 512;
  const nib = nibbleMask(), m = signBits();
  for (let h = 0; h < 2; h++) {
    const w0 = rowAt(w, r + 4 * h, rEnd, rowBytes), w1 = rowAt(w, r + 4 * h + 1, rEnd, rowBytes);
    const w2 = rowAt(w, r + 4 * h + 2, rEnd, rowBytes), w3 = rowAt(w, r + 4 * h + 3, rEnd, rowBytes);
    for (let b = 0; b < kb; b++) {
      const o = <usize>(b0 + b) * bb, dst = pk + <usize>b * blockBytes + (<usize>h << 4);
      if (int8 && kind == Q8) {
        storeTransposed(v128.xor(v128.load(w0 + o, 2), m), v128.xor(v128.load(w1 + o, 2), m), v128.xor(v128.load(w2 + o, 2), m),
          v128.xor(v128.load(w3 + o, 2), m), dst, 32);
        storeTransposed(v128.xor(v128.load(w0 + o, 18), m), v128.xor(v128.load(w1 + o, 18), m), v128.xor(v128.load(w2 + o, 18), m),
          v128.xor(v128.load(w3 + o, 18), m), dst + 128, 32);
      } else if (int8) {
        // columns 0..15 are the low nibbles, 16..31 the high ones
        const qa = v128.load(w0 + o, 2), qb = v128.load(w1 + o, 2), qc = v128.load(w2 + o, 2), qd = v128.load(w3 + o, 2);
        storeTransposed(blockQ4(qa, nib), blockQ4(qb, nib), blockQ4(qc, nib), blockQ4(qd, nib), dst, 32);
        storeTransposed(blockQ4hi(qa, nib), blockQ4hi(qb, nib), blockQ4hi(qc, nib), blockQ4hi(qd, nib), dst + 128, 32);
      } else {
        // four rows' columns 8v .. 8v+7 as i16, transposed so each 32-bit lane is one row's pair
        for (let v = 0; v < 4; v++) {
          storeTransposed(widen(kind, w0 + o, v, nib), widen(kind, w1 + o, v, nib), widen(kind, w2 + o, v, nib), widen(kind, w3 + o, v, nib),
            dst + (<usize>v << 7), 32);
        }
      }
      const sp = ps + (<usize>b << 5) + (<usize>h << 4);
      store<f32>(sp, scale(lut, w0 + o)); store<f32>(sp, scale(lut, w1 + o), 4);
      store<f32>(sp, scale(lut, w2 + o), 8); store<f32>(sp, scale(lut, w3 + o), 12);
    }
  }
}

/** values 8v .. 8v+7 of the q8_0 / q4_0 block at wp as i16 (q4_0: the nibbles 0..15; the - 8 comes with the activations' block sums) */
@inline function widen(kind: i32, wp: usize, v: i32, mask: v128): v128 {
  if (kind == Q8) return v128.load8x8_s(wp + 2 + (<usize>v << 3));
  const q = v128.load(wp, 2);
  const nib = v < 2 ? blockQ4(q, mask) : blockQ4hi(q, mask);
  return (v & 1) == 0 ? i16x8.extend_low_i8x16_u(nib) : i16x8.extend_high_i8x16_u(nib);
}

/**
 * 8 rows × 4 tokens over kb blocks: for each block, sixteen steps of two weight vectors (one i32
 * lane per row) against each token's column pair broadcast (v128.load32_splat of two i16), into
 * eight i32x4 sums whose lanes are rows, no horizontal reduction; at the end of the block each sum
 * is converted and added to the token's panel row (f32 × 8, at o0..o3) times (row scales × the
 * token's block scale). px: the 4 tokens' activations packed by packQuantActivations, psc their
 * scales.
 */
function kernelQuant8x4(kind: i32, pk: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize, o1: usize, o2: usize, o3: usize): void {
  for (let b = 0; b < kb; b++) {
    let a0 = i32x4.splat(0), a1 = i32x4.splat(0), a2 = i32x4.splat(0), a3 = i32x4.splat(0);
    let c0 = i32x4.splat(0), c1 = i32x4.splat(0), c2 = i32x4.splat(0), c3 = i32x4.splat(0);
    let p = pk + (<usize>b << 9), x = px + (<usize>b << 8);
    for (const end = x + 256; x < end; x += 16, p += 32) {
      const w0 = v128.load(p), w1 = v128.load(p, 16);
      let v = v128.load32_splat(x);
      a0 = i32x4.add(a0, i32x4.dot_i16x8_s(w0, v)); c0 = i32x4.add(c0, i32x4.dot_i16x8_s(w1, v));
      v = v128.load32_splat(x, 4);
      a1 = i32x4.add(a1, i32x4.dot_i16x8_s(w0, v)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(w1, v));
      v = v128.load32_splat(x, 8);
      a2 = i32x4.add(a2, i32x4.dot_i16x8_s(w0, v)); c2 = i32x4.add(c2, i32x4.dot_i16x8_s(w1, v));
      v = v128.load32_splat(x, 12);
      a3 = i32x4.add(a3, i32x4.dot_i16x8_s(w0, v)); c3 = i32x4.add(c3, i32x4.dot_i16x8_s(w1, v));
    }
    const sb = ps + (<usize>b << 5), s0 = v128.load(sb), s1 = v128.load(sb, 16), xb = psc + (<usize>b << 5);
    tokenBlockEnd(kind, a0, c0, s0, s1, xb, o0);
    tokenBlockEnd(kind, a1, c1, s0, s1, xb + 4, o1);
    tokenBlockEnd(kind, a2, c2, s0, s1, xb + 8, o2);
    tokenBlockEnd(kind, a3, c3, s0, s1, xb + 12, o3);
  }
}

/**
 * the activations of tokens t0..t0+nt-1, blocks b0..b0+kb, packed per group of 4 tokens (a short
 * last group repeats its last token): per block and step, the 4 tokens' 4 bytes side by side (16
 * bytes) — i16 column pairs, 16 steps (256 bytes per block), or with `int8` int8 column quads,
 * 8 steps (128 bytes) — groups KB blocks apart at xpk; and per group and block at xsc + (g · KB +
 * b) · 32: the 4 tokens' scales, then (q4) their block sums times -8
 */
@inline function packQuantActivations(q4: bool, int8: bool, xw: usize, xi: usize, xd: usize, xsd: usize, nb: i32,
  t0: i32, nt: i32, b0: i32, kb: i32, xpk: usize, xsc: usize, groupBlocks: i32 = KB): void {
  const tl = t0 + nt - 1, blockBytes: usize = int8 ? 128 : 256;
  for (let q = 0; q < nt; q += 4) {
    const ta = t0 + q, tb = min(ta + 1, tl), tc = min(ta + 2, tl), td = min(ta + 3, tl);
    const g = <usize>(q >> 2) * groupBlocks;
    for (let b = 0; b < kb; b++) {
      const dst = xpk + (g + b) * blockBytes, blk = <usize>(b0 + b);
      if (int8) {
        const xs = <usize>nb << 5;
        const pa = xi + <usize>ta * xs + (blk << 5), pb = xi + <usize>tb * xs + (blk << 5);
        const pc = xi + <usize>tc * xs + (blk << 5), pd = xi + <usize>td * xs + (blk << 5);
        storeTransposed(v128.load(pa), v128.load(pb), v128.load(pc), v128.load(pd), dst, 16);
        storeTransposed(v128.load(pa, 16), v128.load(pb, 16), v128.load(pc, 16), v128.load(pd, 16), dst + 64, 16);
      } else {
        const xs = <usize>nb << 6;
        const pa = xw + <usize>ta * xs + (blk << 6), pb = xw + <usize>tb * xs + (blk << 6);
        const pc = xw + <usize>tc * xs + (blk << 6), pd = xw + <usize>td * xs + (blk << 6);
        for (let v: usize = 0; v < 64; v += 16) {
          storeTransposed(v128.load(pa + v), v128.load(pb + v), v128.load(pc + v), v128.load(pd + v), dst + (v << 2), 16);
        }
      }
      const sc = xsc + ((g + b) << 5), ds = <usize>nb << 2;
      store<f32>(sc, load<f32>(xd + <usize>ta * ds + (blk << 2)));
      store<f32>(sc, load<f32>(xd + <usize>tb * ds + (blk << 2)), 4);
      store<f32>(sc, load<f32>(xd + <usize>tc * ds + (blk << 2)), 8);
      store<f32>(sc, load<f32>(xd + <usize>td * ds + (blk << 2)), 12);
      if (q4) {
        const xe = xd + xsd;
        store<f32>(sc, -8 * load<f32>(xe + <usize>ta * ds + (blk << 2)), 16);
        store<f32>(sc, -8 * load<f32>(xe + <usize>tb * ds + (blk << 2)), 20);
        store<f32>(sc, -8 * load<f32>(xe + <usize>tc * ds + (blk << 2)), 24);
        store<f32>(sc, -8 * load<f32>(xe + <usize>td * ds + (blk << 2)), 28);
      } else if (int8) {
        // q8_0 with VNNI: the tokens' −128 Σx (quantize_q8's xo, negated), where their sums of
        // (w + 128) x start, so that they end as Σ w x
        const xo = xd + 2 * xsd;
        store<i32>(sc, -load<i32>(xo + <usize>ta * ds + (blk << 2)), 16);
        store<i32>(sc, -load<i32>(xo + <usize>tb * ds + (blk << 2)), 20);
        store<i32>(sc, -load<i32>(xo + <usize>tc * ds + (blk << 2)), 24);
        store<i32>(sc, -load<i32>(xo + <usize>td * ds + (blk << 2)), 28);
      }
    }
  }
}

/**
 * With VNNI, q8_0 / q4_0 as bytes (packQuant's and packQuantActivations' `int8` layouts), 8 rows ×
 * 4 tokens over kb blocks: per block 8 steps of the fused int8 dot product (vpdpbusd: 16 multiply-
 * adds into i32 lanes, one per row) of two weight vectors with each token's 4 activations
 * broadcast; q8_0's sums start at −128 Σx (its weights are w + 128), then every block ends as in
 * the other GEMM kernels (tokenBlockEnd): the same integer sums, so the same results.
 */
function kernelVnni8x4(kind: i32, pk: usize, ws: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize, o1: usize, o2: usize, o3: usize): void {
  for (let b = 0; b < kb; b++) {
    const xb = psc + (<usize>b << 5);
    let a0 = i32x4.splat(0), a1 = a0, a2 = a0, a3 = a0;
    if (kind == Q8) {
      a0 = v128.load32_splat(xb, 16); a1 = v128.load32_splat(xb, 20); a2 = v128.load32_splat(xb, 24); a3 = v128.load32_splat(xb, 28);
    }
    let c0 = a0, c1 = a1, c2 = a2, c3 = a3;
    let p = pk + <usize>b * ws, x = px + (<usize>b << 7);
    for (const end = x + 128; x < end; x += 16, p += 32) {
      const w0 = v128.load(p), w1 = v128.load(p, 16);
      let v = v128.load32_splat(x);
      a0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a0); c0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c0);
      v = v128.load32_splat(x, 4);
      a1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a1); c1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c1);
      v = v128.load32_splat(x, 8);
      a2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a2); c2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c2);
      v = v128.load32_splat(x, 12);
      a3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a3); c3 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c3);
    }
    const sb = ps + (<usize>b << 5), s0 = v128.load(sb), s1 = v128.load(sb, 16);
    tokenBlockEnd(kind, a0, c0, s0, s1, xb, o0);
    tokenBlockEnd(kind, a1, c1, s0, s1, xb + 4, o1);
    tokenBlockEnd(kind, a2, c2, s0, s1, xb + 8, o2);
    tokenBlockEnd(kind, a3, c3, s0, s1, xb + 12, o3);
  }
}

/**
 * q4_0 with relaxed SIMD, 8 rows × 4 tokens over kb blocks: per block 8 steps of the int8 dot
 * product (pmaddubsw: 16 multiply-adds into i16 pairs) of two nibble vectors with each token's 4
 * int8 activations broadcast, summed in i16 (8 · 2 · 127 · 15 < 2^15), widened once per block;
 * then Σ (q - 8) x = Σ q x - 8 Σ x with the block sums xs = d_x Σ x: the token's panel row (+)=
 * d_w · (d_x · Σ q x - 8 xs). px, psc: packed by packQuantActivations (with nibbles).
 */
function kernelQ4x8x4(pk: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize, o1: usize, o2: usize, o3: usize): void {
  const one = onesI16();
  for (let b = 0; b < kb; b++) {
    let a0 = i16x8.splat(0), a1 = i16x8.splat(0), a2 = i16x8.splat(0), a3 = i16x8.splat(0);
    let c0 = i16x8.splat(0), c1 = i16x8.splat(0), c2 = i16x8.splat(0), c3 = i16x8.splat(0);
    let p = pk + (<usize>b << 8), x = px + (<usize>b << 7);
    for (const end = x + 128; x < end; x += 16, p += 32) {
      const w0 = v128.load(p), w1 = v128.load(p, 16);
      let v = v128.load32_splat(x);
      a0 = i16x8.add(a0, i16x8.relaxed_dot_i8x16_i7x16_s(v, w0)); c0 = i16x8.add(c0, i16x8.relaxed_dot_i8x16_i7x16_s(v, w1));
      v = v128.load32_splat(x, 4);
      a1 = i16x8.add(a1, i16x8.relaxed_dot_i8x16_i7x16_s(v, w0)); c1 = i16x8.add(c1, i16x8.relaxed_dot_i8x16_i7x16_s(v, w1));
      v = v128.load32_splat(x, 8);
      a2 = i16x8.add(a2, i16x8.relaxed_dot_i8x16_i7x16_s(v, w0)); c2 = i16x8.add(c2, i16x8.relaxed_dot_i8x16_i7x16_s(v, w1));
      v = v128.load32_splat(x, 12);
      a3 = i16x8.add(a3, i16x8.relaxed_dot_i8x16_i7x16_s(v, w0)); c3 = i16x8.add(c3, i16x8.relaxed_dot_i8x16_i7x16_s(v, w1));
    }
    const sb = ps + (<usize>b << 5), s0 = v128.load(sb), s1 = v128.load(sb, 16), xb = psc + (<usize>b << 5);
    tokenBlockEnd(Q4, pairSums(a0, one), pairSums(c0, one), s0, s1, xb, o0);
    tokenBlockEnd(Q4, pairSums(a1, one), pairSums(c1, one), s0, s1, xb + 4, o1);
    tokenBlockEnd(Q4, pairSums(a2, one), pairSums(c2, one), s0, s1, xb + 8, o2);
    tokenBlockEnd(Q4, pairSums(a3, one), pairSums(c3, one), s0, s1, xb + 12, o3);
  }
}

/**
 * kernelQuant8x4 / kernelQ4x8x4 for the last T = 1..3 tokens of a call (the rest of n / 4): the
 * same steps for T tokens only, rather than 4 with the last repeated (5 tokens ran as 8). The
 * same sums per token. T is a constant at each call site (kernelQuant8x1 .. 8x3, chosen by kernelGroup).
 */
/** the int8 dot product of the nibble kernels (i16 pair sums); only ever called with relaxed SIMD */
@inline function nibbleDot(x: v128, w: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i16x8.relaxed_dot_i8x16_i7x16_s(x, w);
  return i16x8.splat(0);
}

@inline function quant8xT(kind: i32, int8: bool, T: i32, pk: usize, ws: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize, o1: usize, o2: usize): void {
  const one = onesI16();
  for (let b = 0; b < kb; b++) {
    let a0 = i32x4.splat(0), a1 = a0, a2 = a0, c0 = a0, c1 = a0, c2 = a0;
    if (VNNI && int8) {
      if (kind == Q8) {
        // the sums start at −128 Σx (packQuantActivations)
        const xb = psc + (<usize>b << 5);
        a0 = v128.load32_splat(xb, 16); c0 = a0;
        if (T > 1) { a1 = v128.load32_splat(xb, 20); c1 = a1; }
        if (T > 2) { a2 = v128.load32_splat(xb, 24); c2 = a2; }
      }
      let p = pk + <usize>b * ws, x = px + (<usize>b << 7);
      for (const end = x + 128; x < end; x += 16, p += 32) {
        const w0 = v128.load(p), w1 = v128.load(p, 16);
        let v = v128.load32_splat(x);
        a0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a0); c0 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c0);
        if (T > 1) { v = v128.load32_splat(x, 4); a1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a1); c1 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c1); }
        if (T > 2) { v = v128.load32_splat(x, 8); a2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w0, a2); c2 = i32x4.relaxed_dot_i8x16_i7x16_add_s(v, w1, c2); }
      }
    } else if (ASC_FEATURE_RELAXED_SIMD && int8) {
      let p = pk + (<usize>b << 8), x = px + (<usize>b << 7);
      for (const end = x + 128; x < end; x += 16, p += 32) {
        const w0 = v128.load(p), w1 = v128.load(p, 16);
        let v = v128.load32_splat(x);
        a0 = i16x8.add(a0, nibbleDot(v, w0)); c0 = i16x8.add(c0, nibbleDot(v, w1));
        if (T > 1) { v = v128.load32_splat(x, 4); a1 = i16x8.add(a1, nibbleDot(v, w0)); c1 = i16x8.add(c1, nibbleDot(v, w1)); }
        if (T > 2) { v = v128.load32_splat(x, 8); a2 = i16x8.add(a2, nibbleDot(v, w0)); c2 = i16x8.add(c2, nibbleDot(v, w1)); }
      }
      a0 = pairSums(a0, one); c0 = pairSums(c0, one);
      if (T > 1) { a1 = pairSums(a1, one); c1 = pairSums(c1, one); }
      if (T > 2) { a2 = pairSums(a2, one); c2 = pairSums(c2, one); }
    } else {
      let p = pk + (<usize>b << 9), x = px + (<usize>b << 8);
      for (const end = x + 256; x < end; x += 16, p += 32) {
        const w0 = v128.load(p), w1 = v128.load(p, 16);
        let v = v128.load32_splat(x);
        a0 = i32x4.add(a0, i32x4.dot_i16x8_s(w0, v)); c0 = i32x4.add(c0, i32x4.dot_i16x8_s(w1, v));
        if (T > 1) { v = v128.load32_splat(x, 4); a1 = i32x4.add(a1, i32x4.dot_i16x8_s(w0, v)); c1 = i32x4.add(c1, i32x4.dot_i16x8_s(w1, v)); }
        if (T > 2) { v = v128.load32_splat(x, 8); a2 = i32x4.add(a2, i32x4.dot_i16x8_s(w0, v)); c2 = i32x4.add(c2, i32x4.dot_i16x8_s(w1, v)); }
      }
    }
    const sb = ps + (<usize>b << 5), s0 = v128.load(sb), s1 = v128.load(sb, 16), xb = psc + (<usize>b << 5);
    tokenBlockEnd(kind, a0, c0, s0, s1, xb, o0);
    if (T > 1) tokenBlockEnd(kind, a1, c1, s0, s1, xb + 4, o1);
    if (T > 2) tokenBlockEnd(kind, a2, c2, s0, s1, xb + 8, o2);
  }
}

/**
 * one token's end of a block in the GEMMs: 8 rows' exact sums (a: rows 0..3, c: 4..7) into its
 * panel row at o, as groupBlock does it: q8_0 acc + Σwx · (dw · dx), q4_0 acc + (Σqx · dx − 8 xs)
 * · dw. xb: the token's dx, and 16 bytes on its −8 xs (packQuantActivations); s0, s1: the rows' dw
 */
@inline function tokenBlockEnd(kind: i32, a: v128, c: v128, s0: v128, s1: v128, xb: usize, o: usize): void {
  const d = v128.load32_splat(xb);
  if (kind == Q4) {
    const e = v128.load32_splat(xb, 16);
    v128.store(o, madd(madd(f32x4.convert_i32x4_s(a), d, e), s0, v128.load(o)));
    v128.store(o, madd(madd(f32x4.convert_i32x4_s(c), d, e), s1, v128.load(o, 16)), 16);
  } else {
    v128.store(o, madd(f32x4.convert_i32x4_s(a), f32x4.mul(s0, d), v128.load(o)));
    v128.store(o, madd(f32x4.convert_i32x4_s(c), f32x4.mul(s1, d), v128.load(o, 16)), 16);
  }
}

function kernelQuant8x1(kind: i32, int8: bool, pk: usize, ws: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize): void {
  quant8xT(kind, int8, 1, pk, ws, ps, px, psc, kb, o0, o0, o0);
}
function kernelQuant8x2(kind: i32, int8: bool, pk: usize, ws: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize, o1: usize): void {
  quant8xT(kind, int8, 2, pk, ws, ps, px, psc, kb, o0, o1, o1);
}
function kernelQuant8x3(kind: i32, int8: bool, pk: usize, ws: usize, ps: usize, px: usize, psc: usize, kb: i32, o0: usize, o1: usize, o2: usize): void {
  quant8xT(kind, int8, 3, pk, ws, ps, px, psc, kb, o0, o1, o2);
}

/**
 * the tokens q .. q + min(4, n - q) of a packed group against a packed tile: the 4-token kernels, or the rest (1-3 tokens).
 * ws: bytes from one block of the tile to the next (int8: 256 packed in scratch, TILE_BLOCK tiled in place, then pk is past the scales)
 */
@inline function kernelGroup(kind: i32, int8: bool, left: i32, pk: usize, ws: usize, ps: usize, px: usize, psc: usize, kb: i32, o: usize): void {
  if (left >= 4) {
    if (VNNI && int8) kernelVnni8x4(kind, pk, ws, ps, px, psc, kb, o, o + 32, o + 64, o + 96);
    else if (ASC_FEATURE_RELAXED_SIMD) {
      if (int8) kernelQ4x8x4(pk, ps, px, psc, kb, o, o + 32, o + 64, o + 96);
      else kernelQuant8x4(kind, pk, ps, px, psc, kb, o, o + 32, o + 64, o + 96);
    } else kernelQuant8x4(kind, pk, ps, px, psc, kb, o, o + 32, o + 64, o + 96);
  } else if (left == 3) kernelQuant8x3(kind, int8, pk, ws, ps, px, psc, kb, o, o + 32, o + 64);
  else if (left == 2) kernelQuant8x2(kind, int8, pk, ws, ps, px, psc, kb, o, o + 32);
  else kernelQuant8x1(kind, int8, pk, ws, ps, px, psc, kb, o);
}

/**
 * Whether the GEMMs of `kind` run on bytes (packQuant's and packQuantActivations' `int8` layouts,
 * the int8 activations xi and the block sums around xd, see quantize_q8) rather than on the
 * activations widened to i16 (xw): q4_0 with relaxed SIMD, and with VNNI q8_0 too
 */
@inline function int8Gemm(kind: i32): bool {
  return (ASC_FEATURE_RELAXED_SIMD && kind == Q4) || (VNNI && kind == Q8);
}

/** int8Gemm for wasm.ts (3 q8_0, 4 q4_0): 1 when the GEMMs need no xw */
export function gemm_reads_int8(kind: i32): i32 {
  return int8Gemm(kind == 3 ? Q8 : Q4) ? 1 : 0;
}

/** 1 in the VNNI build (build.mjs), for wasm.ts to tell the builds apart */
export function vnni_build(): i32 {
  return VNNI ? 1 : 0;
}

/**
 * q8_0 / q4_0 weights, n ≥ 1 tokens: xw the activations as i16 blocks [n, nb · 32], xd their
 * scales [n, nb]; both written by quantize_q8
 */
@inline function gemmQuant(kind: i32, out: usize, xw: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, lut: usize, r0: i32, r1: i32, scratch: usize,
  tiledRows: i32): void {
  const nb = (cols + QK - 1) / QK;
  const bb: usize = kind == Q8 ? Q8_BYTES : Q4_BYTES;
  const rowBytes = <usize>nb * bb;
  const int8 = int8Gemm(kind);
  const xi = xd - (<usize>n * nb << 5), xsd = <usize>n * nb << 2;
  const groupBytes: usize = <usize>KB * (int8 ? 128 : 256);
  const pk = scratch, ps = pk + (<usize>KB << 9), xpk = ps + (<usize>KB << 5), xsc = xpk + <usize>(TB >> 2) * groupBytes;
  const junk = xsc + (<usize>(TB >> 2) * KB << 5), panel = junk + 32;
  for (let rs = r0; rs < r1; rs += RS) {
    const re = min(rs + RS, r1);
    for (let t0 = 0; t0 < n; t0 += TB) {
      const nt = min(TB, n - t0);
      memory.fill(panel, 0, <usize>((re - rs + 7) >> 3) * TB << 5);
      for (let b0 = 0; b0 < nb; b0 += KB) {
        const kb = min(KB, nb - b0);
        packQuantActivations(kind == Q4, int8, xw, xi, xd, xsd, nb, t0, nt, b0, kb, xpk, xsc);
        for (let r = rs; r < re; r += 8) {
          // a tile stored tiled (repack_q8) is read in place; the others are packed into scratch
          let pw = pk, ws: usize = int8 ? 256 : 512;
          if (r + 8 <= tiledRows) {
            const t = w + <usize>r * rowBytes;
            tileScales(t, b0, kb, lut, ps);
            pw = t + <usize>b0 * TILE_BLOCK + 16;
            ws = TILE_BLOCK;
          } else packQuant(kind, int8, w, rowBytes, r, re, b0, kb, lut, pk, ps);
          // panel: per row tile, TB tokens × 8 sums (32 bytes per token); the padding tokens of a
          // short last group go to `junk`
          const pt = panel + (<usize>((r - rs) >> 3) * TB << 5);
          for (let q = 0; q < nt; q += 4) {
            const g = <usize>(q >> 2);
            kernelGroup(kind, int8, nt - q, pw, ws, ps, xpk + g * groupBytes, xsc + (g * KB << 5), kb, pt + (<usize>q << 5));
          }
        }
      }
      panelToOut(panel, out, rows, rs, re, t0, nt, 8);
    }
  }
}

/**
 * bytes of per-thread scratch gemm_quant_tiles needs for n tokens × `cols` columns of dtype `kind`
 * (3 q8_0, 4 q4_0): packed tile, staged rows, all the packed activations, the tile's sums
 */
export function gemm_tiles_scratch_bytes(kind: i32, n: i32, cols: i32): i32 {
  const nb = (cols + QK - 1) / QK, bb = kind == 3 ? <i32>Q8_BYTES : <i32>Q4_BYTES;
  return (KB << 9) + (KB << 5) + 8 * nb * bb + ((n + 3) >> 2) * nb * (256 + 32) + TILE_SLOTS * ((n + 3) >> 2) * 128;
}

/**
 * q8_0 / q4_0 weights, a few tokens (up to ~64, all their packed activations in the thread's
 * scratch: gemm_tiles_scratch_bytes): tile by tile rather than in passes over column chunks. The
 * activations are packed once for all blocks; then each tile of 8 rows is copied (one sequential
 * read of 8 consecutive rows, which the hardware prefetchers follow) into scratch, packed a chunk
 * at a time from there, and run against every token group; its sums go to `out` when the row is
 * done. gemmQuant's passes read each row a 544-byte chunk at a time, 512 rows apart, which the
 * prefetchers do not follow: with few tokens per packed tile the misses are not hidden (5120 ×
 * 1280 q8_0, 8 tokens: 1.60 ms, 1.01 from cache; tiles: 1.25 ms; the same tiles packed straight
 * from memory: 1.49 ms). Same sums in the same order as gemmQuant, so the same results.
 */
@inline function gemmQuantTiles(kind: i32, out: usize, xw: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, lut: usize, r0: i32, r1: i32, scratch: usize,
  tiledRows: i32): void {
  const nb = (cols + QK - 1) / QK;
  const bb: usize = kind == Q8 ? Q8_BYTES : Q4_BYTES;
  const rowBytes = <usize>nb * bb;
  const int8 = int8Gemm(kind);
  const xi = xd - (<usize>n * nb << 5), xsd = <usize>n * nb << 2;
  const blockBytes: usize = int8 ? 128 : 256, groupBytes: usize = <usize>nb * blockBytes;
  const groups = (n + 3) >> 2;
  const pk = scratch, ps = pk + (<usize>KB << 9), stage = ps + (<usize>KB << 5);
  const xpk = stage + (rowBytes << 3), xsc = xpk + <usize>groups * groupBytes, sums = xsc + (<usize>groups * nb << 5);
  packQuantActivations(kind == Q4, int8, xw, xi, xd, xsd, nb, 0, n, 0, nb, xpk, xsc, nb);
  // whole tiles stored tiled: read where they lie, TILE_SLOTS of them at a time
  const tEnd = min(r1, max(r0, tiledRows));
  if (r0 < tEnd) tilesInPlace(kind, out, w, rows, rowBytes, nb, n, lut, r0, tEnd, ps, xpk, xsc, sums);
  for (let r = tEnd; r < r1; r += 8) {
    const nr = min(8, r1 - r);
    memory.copy(stage, w + <usize>r * rowBytes, <usize>nr * rowBytes);
    // sums: per token 8 floats (the padding tokens of a short last group included)
    memory.fill(sums, 0, <usize>groups << 7);
    for (let b0 = 0; b0 < nb; b0 += KB) {
      const kb = min(KB, nb - b0);
      // rows r.. of the stage: packQuant addresses row r at w + r · rowBytes (wrapping arithmetic)
      packQuant(kind, int8, stage - <usize>r * rowBytes, rowBytes, r, r + nr, b0, kb, lut, pk, ps);
      for (let g: usize = 0; g < <usize>groups; g++) {
        const px = xpk + g * groupBytes + <usize>b0 * blockBytes, psc = xsc + ((g * nb + b0) << 5);
        kernelGroup(kind, int8, n - (<i32>g << 2), pk, int8 ? 256 : 512, ps, px, psc, kb, sums + (g << 7));
      }
    }
    tileToOut(out, rows, r, nr, n, sums);
  }
}

/** a tile's sums (per token 8 floats at sums) → rows r .. r + nr of `out` */
@inline function tileToOut(out: usize, rows: i32, r: i32, nr: i32, n: i32, sums: usize): void {
  for (let t = 0; t < n; t++) {
    const pp = sums + (<usize>t << 5), o = out + (<usize>t * rows + r << 2);
    if (nr == 8) { v128.store(o, v128.load(pp)); v128.store(o, v128.load(pp, 16), 16); }
    else for (let j = 0; j < nr; j++) store<f32>(o + (<usize>j << 2), load<f32>(pp + (<usize>j << 2)));
  }
}

/** tilesInPlace: the first row of slot s's tile at step i (slots m tiles apart; ns = 1: tile i) */
@inline function slotRow(r0: i32, ns: i32, s: i32, m: i32, i: i32): i32 {
  return r0 + ((ns > 1 ? s * m + i : i) << 3);
}

/**
 * gemmQuantTiles over rows [r0, r1) of whole tiles stored tiled (repack_q8), read where they lie:
 * TILE_SLOTS tiles far apart at a time (slot s walks the tiles from r0 + s · m tiles on), a few
 * blocks of each in turn, so that several streams of weights are in flight, as the decode kernel's
 * rows are (one stream at a time left the memory system idle: 1-token steps ran 0.5x); and a few
 * blocks (TILE_STEP) at a time, so their scales (tileScales) are not read in a burst ahead of the
 * arithmetic (16 at a time: 8-token steps 0.84x).
 */
@inline function tilesInPlace(kind: i32, out: usize, w: usize, rows: i32, rowBytes: usize, nb: i32, n: i32, lut: usize, r0: i32, r1: i32,
  ps: usize, xpk: usize, xsc: usize, sums: usize): void {
  const groups = (n + 3) >> 2, groupBytes: usize = <usize>nb * 128, slotBytes = <usize>groups << 7;
  const tiles = (r1 - r0) >> 3, S = tiles >= TILE_SLOTS ? TILE_SLOTS : 1, m = tiles / S;
  for (let i = 0; i < tiles; ) {
    // S slots m tiles apart while each has tiles left, then the rest one by one
    const ns = S > 1 && i < m ? S : 1;
    memory.fill(sums, 0, <usize>ns * slotBytes);
    for (let b0 = 0; b0 < nb; b0 += TILE_STEP) {
      const kb = min(TILE_STEP, nb - b0);
      for (let s = 0; s < ns; s++) {
        const t = w + <usize>slotRow(r0, ns, s, m, i) * rowBytes;
        tileScales(t, b0, kb, lut, ps);
        const pw = t + <usize>b0 * TILE_BLOCK + 16, so = sums + <usize>s * slotBytes;
        for (let g: usize = 0; g < <usize>groups; g++) {
          const px = xpk + g * groupBytes + (<usize>b0 << 7), psc = xsc + ((g * nb + b0) << 5);
          kernelGroup(kind, true, n - (<i32>g << 2), pw, TILE_BLOCK, ps, px, psc, kb, so + (g << 7));
        }
      }
    }
    for (let s = 0; s < ns; s++) tileToOut(out, rows, slotRow(r0, ns, s, m, i), 8, n, sums + <usize>s * slotBytes);
    i += 1;
    if (ns > 1 && i == m) i = m * S;
  }
}

/** kind: 3 q8_0, 4 q4_0; plus TILED_KIND for a q8_0 weight stored tiled (repack_q8) */
export function gemm_quant_tiles(out: usize, xw: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, kind: i32, lut: usize, from: i32, to: i32, scratch: usize): void {
  if ((kind & 0xff) == 3) gemmQuantTiles(Q8, out, xw, xd, w, rows, cols, n, lut, from, to, scratch, tiledRowsOf(kind, rows));
  else gemmQuantTiles(Q4, out, xw, xd, w, rows, cols, n, lut, from, to, scratch, 0);
}

export function gemm_quant(out: usize, xw: usize, xd: usize, w: usize, rows: i32, cols: i32, n: i32, kind: i32, lut: usize, from: i32, to: i32, scratch: usize): void {
  if ((kind & 0xff) == 3) gemmQuant(Q8, out, xw, xd, w, rows, cols, n, lut, from, to, scratch, tiledRowsOf(kind, rows));
  else gemmQuant(Q4, out, xw, xd, w, rows, cols, n, lut, from, to, scratch, 0);
}

// ---------------------------------------------------------------- q8_0 stored in tiles (VNNI build)
//
// In the VNNI build a q8_0 weight may be rearranged in place once (repack_q8, wasm.ts does it
// before the weight's first use): each whole group of 8 rows becomes a tile holding, per 32-column
// block, the 8 rows' f16 scales (16 bytes) and then their values as w + 128 in the GEMM kernels'
// packed order (8 steps of rows 0-3 then rows 4-7 × 4 columns: 256 bytes), TILE_BLOCK bytes in all,
// the same size as the 8 rows' blocks. The GEMMs and the few-token path read such tiles where they
// lie instead of copying and packing them at every call (8-token step of the 270M shape: 1.3×);
// the rows past the last whole tile keep the GGUF layout. Same integer sums, same order of the
// float steps: the same results.

const TILE_BLOCK: usize = 8 * <usize>Q8_BYTES;
const TILED_KIND: i32 = 0x100;
/** tiles read side by side by one token (decodeTiles) */
const DECODE_TILE_SLOTS: i32 = 8;
/** tiles read side by side (tilesInPlace) */
const TILE_SLOTS: i32 = 4;
/** blocks of a tile read at a time (tilesInPlace) */
const TILE_STEP: i32 = 2;

/** rows [0, tiledRows) of a weight passed with TILED_KIND in its kind are tiled */
@inline function tiledRowsOf(kind: i32, rows: i32): i32 {
  return VNNI && (kind & TILED_KIND) != 0 ? rows & ~7 : 0;
}

/** the scales of blocks b0 .. b0+kb of the tile at t as f32, two f32x4 per block at ps + b · 32 (as packQuant leaves them) */
@inline function tileScales(t: usize, b0: i32, kb: i32, lut: usize, ps: usize): void {
  for (let b = 0; b < kb; b++) {
    const sp = t + <usize>(b0 + b) * TILE_BLOCK, dst = ps + (<usize>b << 5);
    for (let j: usize = 0; j < 8; j++) store<f32>(dst + (j << 2), scale(lut, sp + (j << 1)));
  }
}

/** bytes of per-thread scratch repack_q8 needs for rows of `cols` columns */
export function repack_scratch_bytes(cols: i32): i32 {
  return 8 * ((cols + QK - 1) / QK) * Q8_BYTES;
}

/** q8_0 rows [from, to) (whole tiles of 8) → tiles in place, in the VNNI build (the others have no use for them) */
export function repack_q8(w: usize, _rows: i32, cols: i32, _a3: i32, _a4: i32, _a5: i32, _a6: i32, _a7: i32, _a8: i32, from: i32, to: i32, scratch: usize): void {
  if (!VNNI) return;
  const nb = (cols + QK - 1) / QK, rowBytes = <usize>nb * Q8_BYTES, m = signBits();
  for (let r = from; r + 8 <= to; r += 8) {
    const t = w + <usize>r * rowBytes;
    memory.copy(scratch, t, rowBytes << 3);
    for (let b = 0; b < nb; b++) {
      const dst = t + <usize>b * TILE_BLOCK, o = <usize>b * Q8_BYTES;
      for (let j: usize = 0; j < 8; j++) store<u16>(dst + (j << 1), load<u16>(scratch + j * rowBytes + o));
      for (let h: usize = 0; h < 2; h++) {
        const w0 = scratch + (h << 2) * rowBytes + o, w1 = w0 + rowBytes, w2 = w1 + rowBytes, w3 = w2 + rowBytes;
        const d = dst + 16 + (h << 4);
        storeTransposed(v128.xor(v128.load(w0, 2), m), v128.xor(v128.load(w1, 2), m), v128.xor(v128.load(w2, 2), m), v128.xor(v128.load(w3, 2), m), d, 32);
        storeTransposed(v128.xor(v128.load(w0, 18), m), v128.xor(v128.load(w1, 18), m), v128.xor(v128.load(w2, 18), m),
          v128.xor(v128.load(w3, 18), m), d + 128, 32);
      }
    }
  }
}

/** value j of row r of a tiled q8_0 weight (r < its tiled rows), and its block's scale bits */
@inline function tiledValue(w: usize, rowBytes: usize, r: i32, b: i32, j: i32): i32 {
  const t = w + <usize>(r & ~7) * rowBytes + <usize>b * TILE_BLOCK, k = r & 7;
  return <i32>(load<u8>(t + 16 + (<usize>(j >> 2) << 5) + (<usize>(k >> 2) << 4) + (<usize>(k & 3) << 2) + <usize>(j & 3)) ^ 0x80) << 24 >> 24;
}

// ---------------------------------------------------------------- row decoding (embed)

/** dst[0 .. cols) = row r of a weight of dtype `kind` (0 f32, 1 bf16, 2 f16, 3 q8_0, 4 q4_0; TILED_KIND: q8_0 stored tiled, of `rows` rows) */
export function decode_row(kind: i32, w: usize, r: i32, cols: i32, dst: usize, rows: i32): void {
  const tiled = r < tiledRowsOf(kind, rows);
  kind &= 0xff;
  if (kind <= F16) {
    const src = w + <usize>r * cols * elemBytes(kind);
    let i = 0;
    if (kind == F32) memory.copy(dst, src, <usize>cols << 2);
    else if (kind == BF16) { for (; i + 4 <= cols; i += 4) v128.store(dst + (<usize>i << 2), load4(BF16, src, i)); }
    else { for (; i + 4 <= cols; i += 4) v128.store(dst + (<usize>i << 2), load4(F16, src, i)); }
    if (kind != F32) for (; i < cols; i++) store<f32>(dst + (<usize>i << 2), load1(kind, src, i));
    return;
  }
  const nb = (cols + QK - 1) / QK;
  const bb = kind == 3 ? Q8_BYTES : Q4_BYTES;
  const wr = w + <usize>r * nb * bb;
  for (let b = 0; b < nb; b++) {
    const wp = wr + <usize>b * bb;
    const end = min(QK, cols - b * QK);
    if (tiled) {
      const rb = <usize>nb * bb, d = halfToF32(load<u16>(w + <usize>(r & ~7) * rb + <usize>b * TILE_BLOCK + (<usize>(r & 7) << 1)));
      for (let j = 0; j < end; j++) store<f32>(dst + (<usize>(b * QK + j) << 2), d * <f32>tiledValue(w, rb, r, b, j));
      continue;
    }
    const d = halfToF32(load<u16>(wp));
    for (let j = 0; j < end; j++) {
      const q = kind == 3 ? <i32>load<i8>(wp + 2 + j)
        : j < 16 ? (<i32>load<u8>(wp + 2 + j) & 15) - 8 : (<i32>load<u8>(wp + 2 + j - 16) >> 4) - 8;
      store<f32>(dst + (<usize>(b * QK + j) << 2), d * <f32>q);
    }
  }
}

// ---------------------------------------------------------------- norms, rope, residual

@inline function sumSquares(x: usize, dim: i32): f32 {
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= dim; i += 8) {
    const v = v128.load(x + (<usize>i << 2)), u = v128.load(x + (<usize>i << 2), 16);
    a0 = madd(v, v, a0);
    a1 = madd(u, u, a1);
  }
  for (; i + 4 <= dim; i += 4) { const v = v128.load(x + (<usize>i << 2)); a0 = madd(v, v, a0); }
  let s = hsum(f32x4.add(a0, a1));
  for (; i < dim; i++) { const v = load<f32>(x + (<usize>i << 2)); s += v * v; }
  return s;
}

/** out = x / sqrt(mean(x²) + eps) * weight, per row; out may be x */
@inline function normRow(out: usize, x: usize, weight: usize, dim: i32, eps: f32): void {
  const inv: f32 = 1 / Mathf.sqrt(sumSquares(x, dim) / <f32>dim + eps);
  const iv = f32x4.splat(inv);
  let i = 0;
  for (; i + 4 <= dim; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.mul(f32x4.mul(v128.load(x + o), iv), v128.load(weight + o)));
  }
  for (; i < dim; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, (load<f32>(x + o) * inv) * load<f32>(weight + o));
  }
}

export function rmsnorm(out: usize, x: usize, weight: usize, n: i32, dim: i32, eps: f32): void {
  for (let t = 0; t < n; t++) {
    const o = <usize>t * dim << 2;
    normRow(out + o, x + o, weight, dim, eps);
  }
}

/** per-head RMSNorm of Q and K (when the norm pointer is non-zero), then rotate-half RoPE */
export function head_norm_rope(qkv: usize, n: i32, pos0: i32, nQ: i32, nKV: i32, hd: i32,
  qNorm: usize, kNorm: usize, eps: f32, cos: usize, sin: usize): void {
  const stride = <usize>(nQ + 2 * nKV) * hd << 2;
  const half = hd >> 1;
  const hb = <usize>half << 2;
  for (let t = 0; t < n; t++) {
    const c = cos + (<usize>(pos0 + t) * half << 2), s = sin + (<usize>(pos0 + t) * half << 2);
    for (let h = 0; h < nQ + nKV; h++) {
      const o = qkv + <usize>t * stride + (<usize>h * hd << 2);
      const norm = h < nQ ? qNorm : kNorm;
      if (norm != 0) normRow(o, o, norm, hd, eps);
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const b = <usize>i << 2;
        const x1 = v128.load(o + b), x2 = v128.load(o + hb + b);
        const cv = v128.load(c + b), sv = v128.load(s + b);
        v128.store(o + b, f32x4.sub(f32x4.mul(x1, cv), f32x4.mul(x2, sv)));
        v128.store(o + hb + b, f32x4.add(f32x4.mul(x2, cv), f32x4.mul(x1, sv)));
      }
      for (; i < half; i++) {
        const b = <usize>i << 2;
        const x1 = load<f32>(o + b), x2 = load<f32>(o + hb + b);
        const cv = load<f32>(c + b), sv = load<f32>(s + b);
        store<f32>(o + b, x1 * cv - x2 * sv);
        store<f32>(o + hb + b, x2 * cv + x1 * sv);
      }
    }
  }
}

export function add_in_place(out: usize, x: usize, len: i32): void {
  let i = 0;
  for (; i + 4 <= len; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(out + o), v128.load(x + o)));
  }
  for (; i < len; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(out + o) + load<f32>(x + o));
  }
}

/**
 * index of the largest of x[0 .. n): the first on ties, NaNs skipped (pmax keeps its first
 * operand when the second is NaN), 0 when x[0] is NaN — a scalar `x[i] > x[best]` loop's answer
 */
export function argmax(x: usize, n: i32): i32 {
  if (n <= 0) return 0;
  const x0 = load<f32>(x);
  if (x0 != x0) return 0;
  let m = f32x4.splat(x0), i = 0;
  for (; i + 16 <= n; i += 16) {
    const p = x + (<usize>i << 2);
    m = f32x4.pmax(f32x4.pmax(m, v128.load(p)), f32x4.pmax(v128.load(p, 16), f32x4.pmax(v128.load(p, 32), v128.load(p, 48))));
  }
  for (; i + 4 <= n; i += 4) m = f32x4.pmax(m, v128.load(x + (<usize>i << 2)));
  let best = f32x4.extract_lane(m, 0);
  for (let l = 1; l < 4; l++) {
    const v = l == 1 ? f32x4.extract_lane(m, 1) : l == 2 ? f32x4.extract_lane(m, 2) : f32x4.extract_lane(m, 3);
    if (v > best) best = v;
  }
  for (; i < n; i++) { const v = load<f32>(x + (<usize>i << 2)); if (v > best) best = v; }
  // the first index holding the maximum
  const bv = f32x4.splat(best);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const mask = i32x4.bitmask(f32x4.eq(v128.load(x + (<usize>j << 2)), bv));
    if (mask) return j + <i32>ctz(mask);
  }
  for (; j < n; j++) if (load<f32>(x + (<usize>j << 2)) == best) return j;
  return 0;
}

// ---------------------------------------------------------------- attention

/** copies the n new K and V heads of qkv into cache rows pos0 .. pos0+n-1 */
export function kv_store(qkv: usize, kc: usize, vc: usize, n: i32, pos0: i32, nQ: i32, nKV: i32, hd: i32): void {
  const stride = <usize>(nQ + 2 * nKV) * hd << 2, kvBytes = <usize>nKV * hd << 2;
  for (let t = 0; t < n; t++) {
    const src = qkv + <usize>t * stride + (<usize>nQ * hd << 2);
    const dst = <usize>(pos0 + t) * kvBytes;
    memory.copy(kc + dst, src, kvBytes);
    memory.copy(vc + dst, src + kvBytes, kvBytes);
  }
}

/** positions per block of scores: the softmax is exact within a block, blocks merge online */
const ATT_BLOCK: i32 = 256;

// The two hot loops of attention, as functions of their own: exported only so that the optimizer
// keeps them separate (it inlines a function with one caller), which lets V8 allocate registers
// for each loop alone. V8 starts every load of a loop body before the first arithmetic, so a
// body's loads and its accumulators must fit the 15 usable xmm registers together, or an
// accumulator spills to the stack each iteration; and fewer than ~8 independent accumulators leave
// the loop waiting on the multiply-add latency. Both loops therefore take two query heads of the
// group at once (see docs/kernels.md).

/**
 * s[p] = q · k_p · scale and t[p] = r · k_p · scale (two query heads sharing the KV head) for the
 * bl positions k_p = k + p · ks, four positions at a time: eight accumulators, each K row loaded
 * once for both heads
 */
export function att_scores2(q: usize, r: usize, k: usize, ks: usize, hd: i32, bl: i32, scale: f32, s: usize, t: usize): void {
  let p = 0;
  const sc = f32x4.splat(scale);
  for (; p + 4 <= bl; p += 4) {
    const k0 = k + <usize>p * ks, k1 = k0 + ks, k2 = k1 + ks, k3 = k2 + ks;
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
    let i = 0;
    for (; i + 4 <= hd; i += 4) {
      const o = <usize>i << 2, u = v128.load(q + o), v = v128.load(r + o);
      let w = v128.load(k0 + o); a0 = madd(u, w, a0); b0 = madd(v, w, b0);
      w = v128.load(k1 + o); a1 = madd(u, w, a1); b1 = madd(v, w, b1);
      w = v128.load(k2 + o); a2 = madd(u, w, a2); b2 = madd(v, w, b2);
      w = v128.load(k3 + o); a3 = madd(u, w, a3); b3 = madd(v, w, b3);
    }
    let sa = sum4(a0, a1, a2, a3), sb = sum4(b0, b1, b2, b3);
    for (; i < hd; i++) {
      const o = <usize>i << 2;
      const kv = f32x4.replace_lane(f32x4.replace_lane(f32x4.replace_lane(
        f32x4.splat(load<f32>(k0 + o)), 1, load<f32>(k1 + o)), 2, load<f32>(k2 + o)), 3, load<f32>(k3 + o));
      sa = madd(v128.load32_splat(q + o), kv, sa);
      sb = madd(v128.load32_splat(r + o), kv, sb);
    }
    v128.store(s + (<usize>p << 2), f32x4.mul(sa, sc));
    v128.store(t + (<usize>p << 2), f32x4.mul(sb, sc));
  }
  for (; p < bl; p++) {
    const kp = k + <usize>p * ks;
    store<f32>(s + (<usize>p << 2), dotRow(F32, kp, q, hd) * scale);
    store<f32>(t + (<usize>p << 2), dotRow(F32, kp, r, hd) * scale);
  }
}

/** [Σa, Σb, Σc, Σd] */
@inline function sum4(a: v128, b: v128, c: v128, d: v128): v128 {
  const t0 = f32x4.add(i32x4.shuffle(a, b, 0, 4, 1, 5), i32x4.shuffle(a, b, 2, 6, 3, 7));
  const t1 = f32x4.add(i32x4.shuffle(c, d, 0, 4, 1, 5), i32x4.shuffle(c, d, 2, 6, 3, 7));
  return f32x4.add(i32x4.shuffle(t0, t1, 0, 1, 4, 5), i32x4.shuffle(t0, t1, 2, 3, 6, 7));
}

/**
 * acc[0 .. hd) += Σ_p e[p] · v_p and acd[..] += Σ_p f[p] · v_p (two query heads) for the bl rows
 * v_p = v + p · vs, 16 columns at a time: eight accumulators, each V row loaded once for both heads
 */
export function att_accumulate2(e: usize, f: usize, v: usize, vs: usize, hd: i32, bl: i32, acc: usize, acd: usize): void {
  let i = 0;
  for (; i + 16 <= hd; i += 16) {
    const ap = acc + (<usize>i << 2), dp = acd + (<usize>i << 2);
    let a0 = v128.load(ap), a1 = v128.load(ap, 16), a2 = v128.load(ap, 32), a3 = v128.load(ap, 48);
    let d0 = v128.load(dp), d1 = v128.load(dp, 16), d2 = v128.load(dp, 32), d3 = v128.load(dp, 48);
    let r = v + (<usize>i << 2);
    for (let p = 0; p < bl; p++, r += vs) {
      const o = <usize>p << 2, x = v128.load32_splat(e + o), y = v128.load32_splat(f + o);
      let w = v128.load(r); a0 = madd(x, w, a0); d0 = madd(y, w, d0);
      w = v128.load(r, 16); a1 = madd(x, w, a1); d1 = madd(y, w, d1);
      w = v128.load(r, 32); a2 = madd(x, w, a2); d2 = madd(y, w, d2);
      w = v128.load(r, 48); a3 = madd(x, w, a3); d3 = madd(y, w, d3);
    }
    v128.store(ap, a0); v128.store(ap, a1, 16); v128.store(ap, a2, 32); v128.store(ap, a3, 48);
    v128.store(dp, d0); v128.store(dp, d1, 16); v128.store(dp, d2, 32); v128.store(dp, d3, 48);
  }
  for (; i < hd; i++) {
    let a = load<f32>(acc + (<usize>i << 2)), d = load<f32>(acd + (<usize>i << 2));
    for (let p = 0; p < bl; p++) {
      const vi = load<f32>(v + <usize>p * vs + (<usize>i << 2));
      a += load<f32>(e + (<usize>p << 2)) * vi;
      d += load<f32>(f + (<usize>p << 2)) * vi;
    }
    store<f32>(acc + (<usize>i << 2), a);
    store<f32>(acd + (<usize>i << 2), d);
  }
}

/**
 * Causal attention over the cache. Work items are (token, KV head) pairs: the `group` = nQ / nKV
 * query heads that share a KV head are done together, so each K and V row is loaded once for
 * all of them. Positions go in blocks of ATT_BLOCK: scores q·k / sqrt(hd) for the block, then
 * an online-softmax merge (running max m and sum l per head; the accumulated p·V is rescaled
 * when the max grows), exp4 over the block's scores, and the weighted sum of V rows.
 * scratch: scores [group, ATT_BLOCK] | acc [group, hd] | m [group] | l [group] | spare [hd] (floats).
 * This call does items [i0, i1) of the n * nKV. kv_store must have run first.
 */
export function attention(out: usize, qkv: usize, kc: usize, vc: usize, n: i32, pos0: i32, nQ: i32, nKV: i32, hd: i32,
  i0: i32, i1: i32, scratch: usize): void {
  const stride = <usize>(nQ + 2 * nKV) * hd << 2, kvBytes = <usize>nKV * hd << 2, hb = <usize>hd << 2;
  const group = nQ / nKV;
  const scale: f32 = 1 / Mathf.sqrt(<f32>hd);
  const scores = scratch, acc = scores + (<usize>group * ATT_BLOCK << 2);
  const ms = acc + <usize>group * hb, ls = ms + (<usize>group << 2), spare = ls + (<usize>group << 2);
  for (let it = i0; it < i1; it++) {
    const t = it / nKV, g = it % nKV;
    const q0 = qkv + <usize>t * stride + <usize>g * group * hb; // first of the group's query heads
    const kvo = <usize>g * hb;
    const len = pos0 + t + 1;
    for (let j = 0; j < group; j++) { store<f32>(ms + (<usize>j << 2), -Infinity); store<f32>(ls + (<usize>j << 2), 0); }
    memory.fill(acc, 0, <usize>group * hb);
    for (let p0 = 0; p0 < len; p0 += ATT_BLOCK) {
      const bl = min(ATT_BLOCK, len - p0);
      // scores of the block, two heads at a time (an odd last head paired with itself)
      for (let j = 0; j < group; j += 2) {
        const j2 = min(j + 1, group - 1);
        att_scores2(q0 + <usize>j * hb, q0 + <usize>j2 * hb, kc + <usize>p0 * kvBytes + kvo, kvBytes, hd, bl, scale,
          scores + (<usize>(j * ATT_BLOCK) << 2), scores + (<usize>(j2 * ATT_BLOCK) << 2));
      }
      for (let j = 0; j < group; j++) {
        const sj = scores + (<usize>(j * ATT_BLOCK) << 2);
        // new running max; rescale what was accumulated under the old one
        let mx = load<f32>(ms + (<usize>j << 2));
        const mOld = mx;
        for (let p = 0; p < bl; p++) mx = max(mx, load<f32>(sj + (<usize>p << 2)));
        const c: f32 = Mathf.exp(mOld - mx); // 0 on the first block (mOld = -inf)
        store<f32>(ms + (<usize>j << 2), mx);
        const aj = acc + <usize>j * hb;
        if (c != 1) {
          const cv = f32x4.splat(c);
          let i = 0;
          for (; i + 4 <= hd; i += 4) v128.store(aj + (<usize>i << 2), f32x4.mul(v128.load(aj + (<usize>i << 2)), cv));
          for (; i < hd; i++) store<f32>(aj + (<usize>i << 2), load<f32>(aj + (<usize>i << 2)) * c);
        }
        // e = exp(s - max), in place, and its sum
        const mv = f32x4.splat(mx);
        let sv = f32x4.splat(0);
        let p = 0;
        for (; p + 4 <= bl; p += 4) {
          const e = exp4(f32x4.sub(v128.load(sj + (<usize>p << 2)), mv));
          v128.store(sj + (<usize>p << 2), e);
          sv = f32x4.add(sv, e);
        }
        let l = load<f32>(ls + (<usize>j << 2)) * c + hsum(sv);
        for (; p < bl; p++) {
          const e = Mathf.exp(load<f32>(sj + (<usize>p << 2)) - mx);
          store<f32>(sj + (<usize>p << 2), e);
          l += e;
        }
        store<f32>(ls + (<usize>j << 2), l);
      }
      // acc_j += Σ_p e_j[p] · V[p], two heads at a time (an odd last head: with a throwaway second)
      for (let j = 0; j < group; j += 2) {
        const two = j + 1 < group;
        att_accumulate2(scores + (<usize>(j * ATT_BLOCK) << 2), scores + (<usize>((two ? j + 1 : j) * ATT_BLOCK) << 2),
          vc + <usize>p0 * kvBytes + kvo, kvBytes, hd, bl, acc + <usize>j * hb, two ? acc + <usize>(j + 1) * hb : spare);
      }
    }
    for (let j = 0; j < group; j++) {
      const o = out + (<usize>(t * nQ + g * group + j) * hd << 2), aj = acc + <usize>j * hb;
      const il: f32 = 1 / load<f32>(ls + (<usize>j << 2));
      for (let i = 0; i < hd; i++) store<f32>(o + (<usize>i << 2), load<f32>(aj + (<usize>i << 2)) * il);
    }
  }
}

// ---------------------------------------------------------------- FFN activation

// exp(x) for 4 lanes: x = k ln2 + r, |r| ≤ ln2/2, Cephes' degree-6 polynomial for e^r, times 2^k.
// Relative error ≈ 1e-7 on the clamped range [-87.3, 88.3]. k = x log2(e) rounded to the nearest
// integer (ties to even) by adding 1.5 · 2^23, where the f32 spacing is 1: the sum's low mantissa
// bits are then k itself, so 2^k is a shift of those bits; the same k as f32x4.nearest and
// i32x4.trunc_sat (the latter is ~8 x64 instructions with V8, its NaN and overflow fix-ups).
// The clamp is pmax / pmin (one maxps / minps each; f32x4.max / min add NaN fix-ups), which
// agree with max / min here, NaNs included.
@inline function exp4(x: v128): v128 {
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(-87.3)), f32x4.splat(88.3));
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(1.44269504)), f32x4.splat(12582912));
  const k = f32x4.sub(t, f32x4.splat(12582912));
  let r = f32x4.sub(x, f32x4.mul(k, f32x4.splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(k, f32x4.splat(-2.12194440e-4)));
  let p = f32x4.splat(1.9875691500e-4);
  p = madd(p, r, f32x4.splat(1.3981999507e-3));
  p = madd(p, r, f32x4.splat(8.3334519073e-3));
  p = madd(p, r, f32x4.splat(4.1665795894e-2));
  p = madd(p, r, f32x4.splat(1.6666665459e-1));
  p = madd(p, r, f32x4.splat(5.0000001201e-1));
  p = madd(p, f32x4.mul(r, r), f32x4.add(r, f32x4.splat(1)));
  const pow2 = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return f32x4.mul(p, pow2);
}

// erf with |error| < 1.2e-7 (Numerical Recipes erfc), as in the reference kernels
function erf(x: f32): f32 {
  const z = abs(x);
  const t: f32 = 1 / (1 + 0.5 * z);
  const r: f32 = t * Mathf.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

const ACT_SILU: i32 = 0, ACT_GELU: i32 = 1, ACT_GELU_TANH: i32 = 2, ACT_QUICK_GELU: i32 = 3, ACT_RELU: i32 = 4, ACT_SIGMOID: i32 = 5, ACT_TANH: i32 = 6;

function act1(x: f32, act: i32): f32 {
  switch (act) {
    case ACT_SILU: return x / (1 + Mathf.exp(-x));
    case ACT_GELU: return 0.5 * x * (1 + erf(x * 0.70710678118654752));
    case ACT_GELU_TANH: return 0.5 * x * (1 + Mathf.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case ACT_QUICK_GELU: return x / (1 + Mathf.exp(-1.702 * x));
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_SIGMOID: return 1 / (1 + Mathf.exp(-x));
    default: return Mathf.tanh(x);
  }
}

/** 4 lanes of act(x); the exp-based ones vectorised, the rest lane by lane */
@inline function act4(x: v128, act: i32): v128 {
  if (act == ACT_SILU) return f32x4.div(x, f32x4.add(f32x4.splat(1), exp4(f32x4.neg(x))));
  if (act == ACT_QUICK_GELU) return f32x4.div(x, f32x4.add(f32x4.splat(1), exp4(f32x4.mul(x, f32x4.splat(-1.702)))));
  if (act == ACT_SIGMOID) return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), exp4(f32x4.neg(x))));
  if (act == ACT_RELU) return f32x4.max(x, f32x4.splat(0));
  let r = f32x4.splat(act1(f32x4.extract_lane(x, 0), act));
  r = f32x4.replace_lane(r, 1, act1(f32x4.extract_lane(x, 1), act));
  r = f32x4.replace_lane(r, 2, act1(f32x4.extract_lane(x, 2), act));
  return f32x4.replace_lane(r, 3, act1(f32x4.extract_lane(x, 3), act));
}

@inline function ffnActRows(out: usize, x: usize, dim: i32, act: i32, glu: i32, from: i32, to: i32): void {
  const db = <usize>dim << 2;
  for (let t = from; t < to; t++) {
    const g = x + <usize>t * (glu ? 2 * db : db), u = g + db, o = out + <usize>t * db;
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const b = <usize>i << 2;
      let a = act4(v128.load(g + b), act);
      if (glu) a = f32x4.mul(a, v128.load(u + b));
      v128.store(o + b, a);
    }
    for (; i < dim; i++) {
      const b = <usize>i << 2;
      let a = act1(load<f32>(g + b), act);
      if (glu) a *= load<f32>(u + b);
      store<f32>(o + b, a);
    }
  }
}

/**
 * glu: x [n, 2 dim] = (gate | up), out [n, dim] = act(gate) * up; else out = act(x); tokens
 * [from, to) (split over threads), the common activations compiled as their own loops
 */
export function ffn_act(out: usize, x: usize, n: i32, dim: i32, act: i32, glu: i32, _a6: i32, _a7: i32, _a8: i32, from: i32, to: i32, _scratch: usize): void {
  if (act == ACT_SILU && glu) ffnActRows(out, x, dim, ACT_SILU, 1, from, to);
  else if (act == ACT_SILU) ffnActRows(out, x, dim, ACT_SILU, 0, from, to);
  else ffnActRows(out, x, dim, act, glu, from, to);
}

// ---------------------------------------------------------------- sampling over the vocabulary

/**
 * x[0 .. n) ← softmax(x / t) in place (t > 0), as the reference computes it: x / t, minus its
 * maximum, exp, divided by the sum. Logits below the maximum by more than 87 (after / t) give 0
 * (exp4's range; the reference's exp gives at most ~1e-38 there). Returns the largest
 * probability, 1 / sum.
 */
export function softmax(x: usize, n: i32, t: f32): f32 {
  if (n <= 0) return 0;
  let mv = f32x4.splat(-Infinity), i = 0;
  for (; i + 4 <= n; i += 4) mv = f32x4.max(mv, v128.load(x + (<usize>i << 2)));
  let m = max(max(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)), max(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)));
  for (; i < n; i++) m = max(m, load<f32>(x + (<usize>i << 2)));
  m = m / t;
  const tv = f32x4.splat(t), m4 = f32x4.splat(m), lo = f32x4.splat(-87.3), zero = f32x4.splat(0);
  // the sum in f64 (as the reference): over 32000 terms an f32 sum drifts by ~1e-5
  let sa = f64x2.splat(0), sb = f64x2.splat(0);
  for (i = 0; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    const d = f32x4.sub(f32x4.div(v128.load(p), tv), m4);
    const e = v128.bitselect(zero, exp4(d), f32x4.lt(d, lo));
    v128.store(p, e);
    sa = f64x2.add(sa, f64x2.promote_low_f32x4(e));
    sb = f64x2.add(sb, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1)));
  }
  let sum64 = f64x2.extract_lane(sa, 0) + f64x2.extract_lane(sa, 1) + f64x2.extract_lane(sb, 0) + f64x2.extract_lane(sb, 1);
  for (; i < n; i++) {
    const p = x + (<usize>i << 2);
    const d = load<f32>(p) / t - m;
    const e = d < -87.3 ? <f32>0 : f32x4.extract_lane(exp4(f32x4.splat(d)), 0);
    store<f32>(p, e);
    sum64 += e;
  }
  const sum = <f32>sum64, s4 = f32x4.splat(sum);
  for (i = 0; i + 4 <= n; i += 4) {
    const p = x + (<usize>i << 2);
    v128.store(p, f32x4.div(v128.load(p), s4));
  }
  for (; i < n; i++) store<f32>(x + (<usize>i << 2), load<f32>(x + (<usize>i << 2)) / sum);
  return 1 / sum;
}

/**
 * idx ← the i < n with p[i] ≥ tau (probabilities: ≥ 0), most probable first, ties by lower i;
 * returns their count. A stable LSD radix sort on the f32 bits (which order non-negative floats),
 * complemented for descending order, skipping the byte positions all keys share. tmp: 3n + 256
 * i32 of scratch.
 */
export function select_desc(p: usize, n: i32, tau: f32, idx: usize, tmp: usize): i32 {
  let c = 0, i = 0;
  const tv = f32x4.splat(tau);
  for (; i + 4 <= n; i += 4) {
    let mask = i32x4.bitmask(f32x4.ge(v128.load(p + (<usize>i << 2)), tv));
    while (mask) {
      store<i32>(idx + (<usize>c << 2), i + <i32>ctz(mask));
      c++;
      mask &= mask - 1;
    }
  }
  for (; i < n; i++) if (load<f32>(p + (<usize>i << 2)) >= tau) { store<i32>(idx + (<usize>c << 2), i); c++; }
  const cb = <usize>c << 2;
  let ka = tmp, ia = idx, kb = tmp + cb, ib = tmp + 2 * cb;
  const hist = tmp + 3 * cb;
  for (let j: usize = 0; j < cb; j += 4) store<u32>(ka + j, ~load<u32>(p + (<usize>load<i32>(ia + j) << 2)));
  for (let shift: u32 = 0; shift < 32; shift += 8) {
    memory.fill(hist, 0, 1024);
    for (let j: usize = 0; j < cb; j += 4) {
      const h = hist + (<usize>((load<u32>(ka + j) >> shift) & 255) << 2);
      store<i32>(h, load<i32>(h) + 1);
    }
    if (load<i32>(hist + (<usize>((load<u32>(ka) >> shift) & 255) << 2)) == c) continue; // one digit for all
    let sum = 0;
    for (let b: usize = 0; b < 1024; b += 4) { const v = load<i32>(hist + b); store<i32>(hist + b, sum); sum += v; }
    for (let j: usize = 0; j < cb; j += 4) {
      const k = load<u32>(ka + j), h = hist + (<usize>((k >> shift) & 255) << 2), at = <usize>load<i32>(h) << 2;
      store<i32>(h, load<i32>(h) + 1);
      store<u32>(kb + at, k);
      store<i32>(ib + at, load<i32>(ia + j));
    }
    const tk = ka, ti = ia;
    ka = kb; ia = ib; kb = tk; ib = ti;
  }
  if (ia != idx) memory.copy(idx, ia, cb);
  return c;
}

// ================================================================ training
//
// The backward ops and the optimizer (src/kernels/types.ts, "training"); the plain-TS versions in
// ref.ts are the definitions. Weights and activations are f32; sums are f32 except where a long
// sum decides a scalar the trainer reports (cross-entropy's log-sum-exp, sumSquares: f64).

// ---------------------------------------------------------------- matmul gradients
//
// Both gradients of out = x · Wᵀ are GEMMs with the roles of the operands moved around, and both
// run on the forward's 3 × 12 kernel (kernelFloat3x12: 12 output columns in a packed tile, 3 output
// rows broadcast from A) with the same loop order, panel and packing scheme:
//   gemm_t: out[i, j] (+)= Σ_k A(i, k) · B(k, j), out [M, N] row-major, B [K, N] row-major, so a
//   packed tile (12 columns j, k-major) is a plain copy of 48 bytes per row k;
//   A [M, K] row-major (aT = 0) or A = the transpose of a [K, M] (aT = 1: each (row block, column
//   chunk) of A is transposed into the thread's scratch once, by 4 × 4 blocks, and reused by every
//   tile of the pass).
// - input gradient dx [n, cols] = dy [n, rows] · W [rows, cols]: M = n, N = cols, K = rows, A = dy;
// - weight gradient dw [rows, cols] += dyᵀ · x: M = rows, N = cols, K = n, A = dyᵀ (aT), B = x,
//   accumulated into dw when the panel is written out.
// Split over threads by tiles of 12 output columns, as the forward splits weight rows.

const KCA: i32 = 256; // inner-dimension chunk when A is transposed into scratch (TB × KCA f32: 128 KiB)

/** bytes of per-thread scratch gemm_t needs: packed tile, junk row, panel, transposed A block */
export function gemm_t_scratch_bytes(): i32 {
  return KC * 48 + 48 + (RS / 12) * TB * 48 + TB * KCA * 4;
}

/**
 * packs columns j..j+11 (clamped to < N) × rows k0..k0+kc of B [K, N] (dtype `kind`), k-major as
 * f32 (48 bytes per row k): a copy, B's rows already hold the 12 values side by side
 */
@inline function packDirect(kind: i32, b: usize, N: i32, j: i32, k0: i32, kc: i32, pk: usize): void {
  const stride = <usize>N * elemBytes(kind);
  let p = b + <usize>k0 * stride, d = pk;
  if (j + 12 <= N) {
    for (let kk = 0; kk < kc; kk++, p += stride, d += 48) {
      v128.store(d, load4(kind, p, j)); v128.store(d, load4(kind, p, j + 4), 16); v128.store(d, load4(kind, p, j + 8), 32);
    }
  } else {
    for (let kk = 0; kk < kc; kk++, p += stride, d += 48) {
      for (let c = 0; c < 12; c++) store<f32>(d + (<usize>c << 2), load1(kind, p, min(j + c, N - 1)));
    }
  }
}

/** A block rows i0..i0+mt-1 × columns k0..k0+kc-1 of A = aᵀ, a [K, M] (row stride M) → apk [mt, kc] row-major */
@inline function packTransposedA(a: usize, M: i32, i0: i32, mt: i32, k0: i32, kc: i32, apk: usize): void {
  const ms = <usize>M << 2, rowB = <usize>kc << 2;
  let ii = 0;
  for (; ii + 4 <= mt; ii += 4) {
    const src = a + (<usize>(i0 + ii) << 2), dst = apk + <usize>ii * rowB;
    let kk = 0;
    for (; kk + 4 <= kc; kk += 4) {
      const p = src + <usize>(k0 + kk) * ms;
      storeTransposed(v128.load(p), v128.load(p + ms), v128.load(p + 2 * ms), v128.load(p + 3 * ms), dst + (<usize>kk << 2), rowB);
    }
    for (; kk < kc; kk++) {
      const p = src + <usize>(k0 + kk) * ms, d = dst + (<usize>kk << 2);
      store<f32>(d, load<f32>(p)); store<f32>(d + rowB, load<f32>(p, 4));
      store<f32>(d + 2 * rowB, load<f32>(p, 8)); store<f32>(d + 3 * rowB, load<f32>(p, 12));
    }
  }
  for (; ii < mt; ii++) {
    for (let kk = 0; kk < kc; kk++) {
      store<f32>(apk + <usize>ii * rowB + (<usize>kk << 2), load<f32>(a + ((<usize>(k0 + kk) * M + i0 + ii) << 2)));
    }
  }
}

/** out rows [i0, i1) × columns [j0, j1); lda: A's row stride in elements (a [M, lda], or transposed a [K, lda]) */
@inline function gemmTrain(kind: i32, aT: bool, out: usize, a: usize, lda: i32, b: usize, M: i32, N: i32, K: i32, acc: bool,
  ib: i32, ie: i32, j0: i32, j1: i32, scratch: usize): void {
  const pk = scratch, junk = pk + <usize>KC * 48, panel = junk + 48, apk = panel + <usize>(RS / 12) * TB * 48;
  const kcMax = aT ? KCA : KC, rs12 = RS / 12 * 12;
  for (let js = j0; js < j1; js += rs12) {
    const je = min(js + rs12, j1);
    for (let i0 = ib; i0 < ie; i0 += TB) {
      const mt = min(TB, ie - i0), il = mt - 1;
      for (let k0 = 0; k0 < K; k0 += kcMax) {
        const kc = min(kcMax, K - k0), first = k0 == 0;
        let ab: usize, as: usize;
        if (aT) { packTransposedA(a, lda, i0, mt, k0, kc, apk); ab = apk; as = <usize>kc << 2; }
        else { ab = a + ((<usize>i0 * lda + k0) << 2); as = <usize>lda << 2; }
        for (let j = js; j < je; j += 12) {
          packDirect(kind, b, N, j, k0, kc, pk);
          const pt = panel + <usize>((j - js) / 12) * TB * 48;
          for (let q = 0; q < mt; q += 3) {
            const qb = min(q + 1, il), qc = min(q + 2, il), o = pt + <usize>q * 48;
            kernelFloat3x12(pk, ab + <usize>q * as, ab + <usize>qb * as, ab + <usize>qc * as, kc,
              o, q + 1 <= il ? o + 48 : junk, q + 2 <= il ? o + 96 : junk, first);
          }
        }
      }
      panelToOut(panel, out, N, js, je, i0, mt, 12, acc);
    }
  }
}

/**
 * out [M, N] (+)= A · B. Items: output columns [from, to) (tiles of 12), or with flag bit 3 output
 * rows [from, to) (blocks of TB): a thread that claims a range of columns transposes / streams all
 * of A for it, one that claims rows only its own part of A (B's tiles are packed per row block
 * either way), so rows are split when there are enough of them. flags: bit 0 A is given transposed
 * (a [K, M]), bit 1 accumulate into out, bit 3 the items are rows, bits 4.. B's dtype (0 f32,
 * 1 bf16, 2 f16). lda: A's row stride in elements, 0 for the dense default (K, or M transposed).
 */
export function gemm_t(out: usize, a: usize, b: usize, M: i32, N: i32, K: i32, flags: i32, lda: i32, _a8: i32, from: i32, to: i32, scratch: usize): void {
  const acc = (flags & 2) != 0, kind = flags >> 4, byRows = (flags & 8) != 0, aT = (flags & 1) != 0;
  const ib = byRows ? from : 0, ie = byRows ? to : M, j0 = byRows ? 0 : from, j1 = byRows ? N : to;
  const ld = lda != 0 ? lda : aT ? M : K;
  if (aT) gemmTrain(F32, true, out, a, ld, b, M, N, K, acc, ib, ie, j0, j1, scratch);
  else if (kind == F32) gemmTrain(F32, false, out, a, ld, b, M, N, K, acc, ib, ie, j0, j1, scratch);
  else if (kind == BF16) gemmTrain(BF16, false, out, a, ld, b, M, N, K, acc, ib, ie, j0, j1, scratch);
  else gemmTrain(F16, false, out, a, ld, b, M, N, K, acc, ib, ie, j0, j1, scratch);
}

// ---------------------------------------------------------------- attention backward
//
// One sequence attending causally to itself. For each query token t and head h (KV head g):
//   p_j = softmax_j(q·k_j · scale) (j ≤ t),  D = dout · out,  ds_j = p_j (dout · v_j − D) · scale,
//   dq = Σ_j ds_j k_j,  dk_j += ds_j q,  dv_j += p_j dout.
// Work items are (chunk of query tokens, KV head); a chunk goes in blocks of Bq tokens whose
// R = Bq · group query rows (the group's heads of each token) are done together as small GEMMs
// over the keys 0 .. L-1 the block sees (L = the block's last token + 1), all on one 4 × 8 kernel:
//   Sᵀ [L, R] = K · (scale · Q)ᵀ      dPᵀ [L, R] = V · dOᵀ        (inner: head dim)
//   Pᵀ, dSᵀ ← the softmax over each column of Sᵀ (causal mask) and ds from dPᵀ, in place
//   dQ [R, hd] = dS · K  (inner: L)   dK += dSᵀ · Q,  dV += Pᵀ · dO  (inner: R)
// Keys come first in the transposed products so that the softmax runs down columns with the R
// query rows in SIMD lanes. dK and dV of different chunks overlap, so each item adds into its own
// partial buffer and attention_bwd_reduce sums them into dqkv (over key tokens, split again).

/**
 * c_r[0..8) (+)= Σ_k A(r, k) · B[k, 0..8) for r = 0..3: A(r, k) at a_r + k · aks (broadcast),
 * B rows `bs` bytes apart; eight accumulators, 2 + 4 loads per step (15 xmm registers)
 */
function kern4x8(a0: usize, a1: usize, a2: usize, a3: usize, aks: usize, b: usize, bs: usize, K: i32,
  c0: usize, c1: usize, c2: usize, c3: usize, acc: bool): void {
  let x0 = f32x4.splat(0), y0 = f32x4.splat(0), x1 = f32x4.splat(0), y1 = f32x4.splat(0);
  let x2 = f32x4.splat(0), y2 = f32x4.splat(0), x3 = f32x4.splat(0), y3 = f32x4.splat(0);
  if (acc) {
    x0 = v128.load(c0); y0 = v128.load(c0, 16); x1 = v128.load(c1); y1 = v128.load(c1, 16);
    x2 = v128.load(c2); y2 = v128.load(c2, 16); x3 = v128.load(c3); y3 = v128.load(c3, 16);
  }
  let ko: usize = 0, bp = b;
  for (let k = 0; k < K; k++, ko += aks, bp += bs) {
    const w0 = v128.load(bp), w1 = v128.load(bp, 16);
    let v = v128.load32_splat(a0 + ko); x0 = madd(w0, v, x0); y0 = madd(w1, v, y0);
    v = v128.load32_splat(a1 + ko); x1 = madd(w0, v, x1); y1 = madd(w1, v, y1);
    v = v128.load32_splat(a2 + ko); x2 = madd(w0, v, x2); y2 = madd(w1, v, y2);
    v = v128.load32_splat(a3 + ko); x3 = madd(w0, v, x3); y3 = madd(w1, v, y3);
  }
  v128.store(c3, x3); v128.store(c3, y3, 16); v128.store(c2, x2); v128.store(c2, y2, 16);
  v128.store(c1, x1); v128.store(c1, y1, 16); v128.store(c0, x0); v128.store(c0, y0, 16);
}

/**
 * C [rows, hd·] (+)= A · B with rows of C `cs` bytes apart and columns in steps of 8 up to `cols`:
 * row r of A starts at a + r · ais (elements aks apart), B rows bs apart; rows past `rows` (a
 * short last group of 4) repeat the last row into junk
 */
@inline function gemm4x8(a: usize, ais: usize, aks: usize, b: usize, bs: usize, K: i32, c: usize, cs: usize, rows: i32, cols: i32, acc: bool, junk: usize): void {
  for (let r = 0; r < rows; r += 4) {
    const rl = rows - 1;
    const r1 = min(r + 1, rl), r2 = min(r + 2, rl), r3 = min(r + 3, rl);
    const a0 = a + <usize>r * ais, a1 = a + <usize>r1 * ais, a2 = a + <usize>r2 * ais, a3 = a + <usize>r3 * ais;
    for (let j = 0; j < cols; j += 8) {
      const jo = <usize>j << 2;
      const c0 = c + <usize>r * cs + jo;
      const c1 = r + 1 <= rl ? c + <usize>r1 * cs + jo : junk;
      const c2 = r + 2 <= rl ? c + <usize>r2 * cs + jo : junk;
      const c3 = r + 3 <= rl ? c + <usize>r3 * cs + jo : junk;
      kern4x8(a0, a1, a2, a3, aks, b + jo, bs, K, c0, c1, c2, c3, acc);
    }
  }
}

/**
 * attention_bwd's softmax, down the columns of Sᵀ [L, Rp] (rows rs bytes apart), 8 query rows (two
 * vectors) at a time: the causal maximum (key j counts for row r iff j ≤ t_r, t: i32 [Rp]; keys
 * below tb count for every row), e = exp(s - max) and its sum, then Pᵀ = e / sum in place of Sᵀ and
 * dSᵀ = Pᵀ (dPᵀ - D) · scale in place of dPᵀ (D [Rp]: dout · out per row). Independent chains per
 * step and one contiguous 32-byte run per key row: column by column (one vector, one dependent
 * max / sum chain, a 256-byte stride) it took a quarter of the op. Exported only to stay a function
 * of its own (see att_scores2).
 */
export function att_bwd_softmax(ST: usize, dPT: usize, tr: usize, Dv: usize, rs: usize, Rp: i32, tb: i32, L: i32, scale: f32): void {
  const ninf = f32x4.splat(-Infinity), sc = f32x4.splat(scale);
  for (let r = 0; r < Rp; r += 8) {
    const ro = <usize>r << 2, t0 = v128.load(tr + ro), t1 = v128.load(tr + ro, 16);
    let m0 = ninf, m1 = ninf, n0 = ninf, n1 = ninf;
    let j = 0, p = ST + ro;
    for (; j + 2 <= tb; j += 2, p += rs << 1) {
      m0 = f32x4.pmax(m0, v128.load(p)); m1 = f32x4.pmax(m1, v128.load(p, 16));
      n0 = f32x4.pmax(n0, v128.load(p + rs)); n1 = f32x4.pmax(n1, v128.load(p + rs, 16));
    }
    for (; j < L; j++, p += rs) {
      const js = i32x4.splat(j);
      m0 = f32x4.pmax(m0, v128.bitselect(v128.load(p), ninf, i32x4.le_s(js, t0)));
      m1 = f32x4.pmax(m1, v128.bitselect(v128.load(p, 16), ninf, i32x4.le_s(js, t1)));
    }
    m0 = f32x4.pmax(m0, n0); m1 = f32x4.pmax(m1, n1);
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0);
    for (j = 0, p = ST + ro; j < tb; j++, p += rs) {
      const e0 = exp4(f32x4.sub(v128.load(p), m0)), e1 = exp4(f32x4.sub(v128.load(p, 16), m1));
      v128.store(p, e0); v128.store(p, e1, 16);
      s0 = f32x4.add(s0, e0); s1 = f32x4.add(s1, e1);
    }
    for (; j < L; j++, p += rs) {
      const js = i32x4.splat(j);
      const e0 = v128.and(exp4(f32x4.sub(v128.load(p), m0)), i32x4.le_s(js, t0));
      const e1 = v128.and(exp4(f32x4.sub(v128.load(p, 16), m1)), i32x4.le_s(js, t1));
      v128.store(p, e0); v128.store(p, e1, 16);
      s0 = f32x4.add(s0, e0); s1 = f32x4.add(s1, e1);
    }
    const i0 = f32x4.div(f32x4.splat(1), s0), i1 = f32x4.div(f32x4.splat(1), s1);
    const d0 = v128.load(Dv + ro), d1 = v128.load(Dv + ro, 16);
    let q = dPT + ro;
    for (j = 0, p = ST + ro; j < L; j++, p += rs, q += rs) {
      const p0 = f32x4.mul(v128.load(p), i0), p1 = f32x4.mul(v128.load(p, 16), i1);
      v128.store(p, p0); v128.store(p, p1, 16);
      v128.store(q, f32x4.mul(f32x4.mul(p0, f32x4.sub(v128.load(q), d0)), sc));
      v128.store(q, f32x4.mul(f32x4.mul(p1, f32x4.sub(v128.load(q, 16), d1)), sc), 16);
    }
  }
}

/** bytes of thread scratch attention_bwd needs for blocks of R query rows (R a multiple of 8) over n keys */
export function attention_bwd_scratch_bytes(n: i32, R: i32, hd: i32): i32 {
  // Q, dO, their transposes, dQ [R, hd] · D, t [R] · Sᵀ, dPᵀ [n + 4, R] · junk
  return (5 * R * hd + 2 * R + 2 * (n + 4) * R + 2 * max(R, hd)) * 4;
}

/**
 * items [i0, i1) of (query chunk c, KV head g), item = c · nKV + g. ctl (i32): P (chunks), Bq
 * (tokens per block), partials (address), then the P + 1 chunk bounds (multiples of Bq but the
 * last). Partial buffer of item: [n + 4, 2 hd] (dK | dV per key), at partials + item · (n + 4) · 2hd · 4.
 * Writes dqkv's Q heads of the chunk's tokens; dK, dV into the partial buffer.
 */
export function attention_bwd(dqkv: usize, dout: usize, qkv: usize, out: usize, n: i32, nQ: i32, nKV: i32, hd: i32, ctl: usize,
  i0: i32, i1: i32, scratch: usize): void {
  const G = nQ / nKV, Bq = load<i32>(ctl, 4), partials = <usize>load<i32>(ctl, 8);
  const stride = <usize>(nQ + 2 * nKV) * hd << 2, hb = <usize>hd << 2, ostride = <usize>nQ * hd << 2;
  const scale: f32 = 1 / Mathf.sqrt(<f32>hd);
  const RpMax = (Bq * G + 7) & ~7;
  const rowB = <usize>RpMax * hd << 2;
  const Qp = scratch, dOp = Qp + rowB, QT = dOp + rowB, dOT = QT + rowB, dQb = dOT + rowB;
  const Dv = dQb + rowB, tr = Dv + (<usize>RpMax << 2);
  const ST = tr + (<usize>RpMax << 2), dPT = ST + (<usize>(n + 4) * RpMax << 2), junk = dPT + (<usize>(n + 4) * RpMax << 2);
  const pb = <usize>(n + 4) * hd << 3; // bytes of one partial buffer
  for (let it = i0; it < i1; it++) {
    const c = it / nKV, g = it % nKV;
    const s0 = load<i32>(ctl + (<usize>(3 + c) << 2)), s1 = load<i32>(ctl + (<usize>(4 + c) << 2));
    const part = partials + <usize>it * pb;
    memory.fill(part, 0, <usize>((s1 + 3) & ~3) * hd << 3);
    const kBase = qkv + (<usize>(nQ + g) * hd << 2), vBase = qkv + (<usize>(nQ + nKV + g) * hd << 2);
    for (let tb = s0; tb < s1; tb += Bq) {
      const tq1 = min(tb + Bq, s1), R = (tq1 - tb) * G, Rp = (R + 7) & ~7, L = tq1, Lp = (L + 3) & ~3;
      const rs = <usize>Rp << 2; // bytes per row of Sᵀ / dPᵀ
      // gather the block's query rows (scaled, transposed copies for the score products), dout rows, D
      for (let r = 0; r < Rp; r++) {
        const qr = Qp + <usize>r * hb, dr = dOp + <usize>r * hb;
        if (r < R) {
          const t = tb + r / G, h = g * G + r % G;
          const qs = qkv + <usize>t * stride + <usize>h * hb, ds = dout + <usize>t * ostride + <usize>h * hb;
          const os = out + <usize>t * ostride + <usize>h * hb;
          let dd = f32x4.splat(0);
          for (let i: usize = 0; i < hb; i += 16) {
            const dv = v128.load(ds + i);
            v128.store(qr + i, v128.load(qs + i));
            v128.store(dr + i, dv);
            dd = madd(dv, v128.load(os + i), dd);
          }
          store<f32>(Dv + (<usize>r << 2), hsum(dd));
          store<i32>(tr + (<usize>r << 2), t);
        } else {
          memory.fill(qr, 0, hb);
          memory.fill(dr, 0, hb);
          store<f32>(Dv + (<usize>r << 2), 0);
          store<i32>(tr + (<usize>r << 2), tq1 - 1);
        }
      }
      for (let r = 0; r < Rp; r += 4) {
        for (let i = 0; i < hd; i += 4) {
          const o = <usize>i << 2, sc = f32x4.splat(scale);
          const q0 = Qp + <usize>r * hb + o, d0 = dOp + <usize>r * hb + o;
          storeTransposed(f32x4.mul(v128.load(q0), sc), f32x4.mul(v128.load(q0 + hb), sc), f32x4.mul(v128.load(q0 + 2 * hb), sc),
            f32x4.mul(v128.load(q0 + 3 * hb), sc), QT + <usize>i * rs + (<usize>r << 2), rs);
          storeTransposed(v128.load(d0), v128.load(d0 + hb), v128.load(d0 + 2 * hb), v128.load(d0 + 3 * hb), dOT + <usize>i * rs + (<usize>r << 2), rs);
        }
      }
      // Sᵀ = K · (scale Q)ᵀ and dPᵀ = V · dOᵀ over keys 0 .. L-1 (a short last group of keys repeats key L-1)
      gemm4x8(kBase, stride, 4, QT, rs, hd, ST, rs, L, Rp, false, junk);
      gemm4x8(vBase, stride, 4, dOT, rs, hd, dPT, rs, L, Rp, false, junk);
      att_bwd_softmax(ST, dPT, tr, Dv, rs, Rp, tb, L, scale);
      // rows L .. Lp-1 (the padding of the dK, dV products below) are past every query: 0
      memory.fill(ST + <usize>L * rs, 0, <usize>(Lp - L) * rs);
      memory.fill(dPT + <usize>L * rs, 0, <usize>(Lp - L) * rs);
      // dQ = dS · K: A(r, j) = dSᵀ[j, r]
      gemm4x8(dPT, 4, rs, kBase, stride, L, dQb, hb, R, hd, false, junk);
      for (let r = 0; r < R; r++) {
        const t = tb + r / G, h = g * G + r % G;
        memory.copy(dqkv + <usize>t * stride + <usize>h * hb, dQb + <usize>r * hb, hb);
      }
      // dK += dSᵀ · Q, dV += Pᵀ · dO over keys 0 .. Lp-1 (partial rows, 2 hd apart)
      gemm4x8(dPT, rs, 4, Qp, hb, R, part, hb << 1, Lp, hd, true, junk);
      gemm4x8(ST, rs, 4, dOp, hb, R, part + hb, hb << 1, Lp, hd, true, junk);
    }
  }
}

/**
 * dqkv's K and V heads of key tokens [j0, j1) = the sum of the partial buffers of the chunks that
 * reach them (ctl as in attention_bwd)
 */
export function attention_bwd_reduce(dqkv: usize, ctl: usize, n: i32, nQ: i32, nKV: i32, hd: i32, _a6: i32, _a7: i32, _a8: i32,
  j0: i32, j1: i32, _scratch: usize): void {
  const P = load<i32>(ctl), partials = <usize>load<i32>(ctl, 8);
  const stride = <usize>(nQ + 2 * nKV) * hd << 2, hb = <usize>hd << 2, pb = <usize>(n + 4) * hd << 3;
  for (let j = j0; j < j1; j++) {
    for (let g = 0; g < nKV; g++) {
      const dk = dqkv + <usize>j * stride + (<usize>(nQ + g) * hd << 2), dv = dk + (<usize>nKV * hd << 2);
      const src = partials + <usize>g * pb + <usize>j * (hb << 1);
      for (let i: usize = 0; i < hb; i += 16) {
        let k = f32x4.splat(0), v = f32x4.splat(0);
        // chunk c (queries s_c .. s_{c+1}-1) reaches keys j < s_{c+1}; its rows past that are not written
        for (let c = 0; c < P; c++) {
          if (j < load<i32>(ctl + (<usize>(4 + c) << 2))) {
            const s = src + <usize>c * nKV * pb;
            k = f32x4.add(k, v128.load(s + i));
            v = f32x4.add(v, v128.load(s + hb + i));
          }
        }
        v128.store(dk + i, k);
        v128.store(dv + i, v);
      }
    }
  }
}

// ---------------------------------------------------------------- norms backward

/**
 * Backward of one RMSNorm row y = x · inv · w, inv = 1 / sqrt(mean(x²) + eps), given dy:
 * out (+)= inv · dy · w − x · inv³ · Σ(dy · w · x) / dim, and dw += dy · x · inv (when hasDw).
 * out may be dy (acc false: overwritten after each vector is read).
 */
@inline function normBackRow(out: usize, dw: usize, hasDw: bool, dy: usize, x: usize, w: usize, dim: i32, eps: f32, acc: bool): void {
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), g0 = f32x4.splat(0), g1 = f32x4.splat(0);
  let i = 0;
  for (; i + 8 <= dim; i += 8) {
    const o = <usize>i << 2;
    const x0 = v128.load(x + o), x1 = v128.load(x + o, 16);
    s0 = madd(x0, x0, s0); s1 = madd(x1, x1, s1);
    g0 = madd(f32x4.mul(v128.load(dy + o), v128.load(w + o)), x0, g0);
    g1 = madd(f32x4.mul(v128.load(dy + o, 16), v128.load(w + o, 16)), x1, g1);
  }
  for (; i + 4 <= dim; i += 4) {
    const o = <usize>i << 2, x0 = v128.load(x + o);
    s0 = madd(x0, x0, s0);
    g0 = madd(f32x4.mul(v128.load(dy + o), v128.load(w + o)), x0, g0);
  }
  let ss = hsum(f32x4.add(s0, s1)), gx = hsum(f32x4.add(g0, g1));
  for (; i < dim; i++) {
    const o = <usize>i << 2, xi = load<f32>(x + o);
    ss += xi * xi;
    gx += load<f32>(dy + o) * load<f32>(w + o) * xi;
  }
  const inv: f32 = 1 / Mathf.sqrt(ss / <f32>dim + eps);
  const c: f32 = inv * inv * inv * gx / <f32>dim;
  const iv = f32x4.splat(inv), cv = f32x4.splat(c);
  i = 0;
  for (; i + 4 <= dim; i += 4) {
    const o = <usize>i << 2, d = v128.load(dy + o), xv = v128.load(x + o);
    if (hasDw) v128.store(dw + o, f32x4.add(v128.load(dw + o), f32x4.mul(f32x4.mul(d, xv), iv)));
    let r = f32x4.sub(f32x4.mul(f32x4.mul(iv, d), v128.load(w + o)), f32x4.mul(xv, cv));
    if (acc) r = f32x4.add(v128.load(out + o), r);
    v128.store(out + o, r);
  }
  for (; i < dim; i++) {
    const o = <usize>i << 2, d = load<f32>(dy + o), xv = load<f32>(x + o);
    if (hasDw) store<f32>(dw + o, load<f32>(dw + o) + d * xv * inv);
    let r = inv * d * load<f32>(w + o) - xv * c;
    if (acc) r += load<f32>(out + o);
    store<f32>(out + o, r);
  }
}

/**
 * RMSNorm backward, rows of parts [p0, p1) of `parts` (part p: rows p·n/parts ..): dx += ∂/∂x,
 * the weight gradient added into the part's own buffer dwp + p · dim · 4 (summed by the caller)
 */
export function rmsnorm_bwd(dx: usize, dwp: usize, dy: usize, x: usize, w: usize, n: i32, dim: i32, epsBits: i32, parts: i32,
  p0: i32, p1: i32, _scratch: usize): void {
  const eps = reinterpret<f32>(epsBits), db = <usize>dim << 2;
  for (let p = p0; p < p1; p++) {
    const r0 = <i32>(<i64>p * n / parts), r1 = <i32>(<i64>(p + 1) * n / parts), dw = dwp + <usize>p * db;
    for (let t = r0; t < r1; t++) {
      const o = <usize>t * db;
      normBackRow(dx + o, dw, true, dy + o, x + o, w, dim, eps, true);
    }
  }
}

/** backward of head_norm_rope, in place on dqkv (see Kernels.headNormRopeBackward); norm pointers 0 = none */
export function head_norm_rope_bwd(dqkv: usize, qkvIn: usize, n: i32, pos0: i32, nQ: i32, nKV: i32, hd: i32,
  qNorm: usize, kNorm: usize, dqNorm: usize, dkNorm: usize, eps: f32, cos: usize, sin: usize): void {
  const stride = <usize>(nQ + 2 * nKV) * hd << 2;
  const half = hd >> 1, hb = <usize>half << 2;
  for (let t = 0; t < n; t++) {
    const c = cos + (<usize>(pos0 + t) * half << 2), s = sin + (<usize>(pos0 + t) * half << 2);
    for (let h = 0; h < nQ + nKV; h++) {
      const ho = <usize>t * stride + (<usize>h * hd << 2), o = dqkv + ho;
      // the rotation's transpose
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const b = <usize>i << 2;
        const d1 = v128.load(o + b), d2 = v128.load(o + hb + b), cv = v128.load(c + b), sv = v128.load(s + b);
        v128.store(o + b, f32x4.add(f32x4.mul(d1, cv), f32x4.mul(d2, sv)));
        v128.store(o + hb + b, f32x4.sub(f32x4.mul(d2, cv), f32x4.mul(d1, sv)));
      }
      for (; i < half; i++) {
        const b = <usize>i << 2;
        const d1 = load<f32>(o + b), d2 = load<f32>(o + hb + b), cv = load<f32>(c + b), sv = load<f32>(s + b);
        store<f32>(o + b, d1 * cv + d2 * sv);
        store<f32>(o + hb + b, d2 * cv - d1 * sv);
      }
      const norm = h < nQ ? qNorm : kNorm, dn = h < nQ ? dqNorm : dkNorm;
      if (norm != 0) normBackRow(o, dn, dn != 0, o, qkvIn + ho, norm, hd, eps, false);
    }
  }
}

// ---------------------------------------------------------------- activations backward

/** d act(x) / dx, as ref.ts's activateGrad */
function actGrad1(x: f32, act: i32): f32 {
  switch (act) {
    case ACT_SILU: { const sg: f32 = 1 / (1 + Mathf.exp(-x)); return sg * (1 + x * (1 - sg)); }
    case ACT_GELU: return 0.5 * (1 + erf(x * 0.70710678118654752)) + x * Mathf.exp(-0.5 * x * x) * 0.3989422804014327;
    case ACT_GELU_TANH: {
      const c: f32 = 0.7978845608028654;
      const th = Mathf.tanh(c * (x + 0.044715 * x * x * x));
      return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * c * (1 + 3 * 0.044715 * x * x);
    }
    case ACT_QUICK_GELU: { const sg: f32 = 1 / (1 + Mathf.exp(-1.702 * x)); return sg + 1.702 * x * sg * (1 - sg); }
    case ACT_RELU: return x > 0 ? 1 : 0;
    case ACT_SIGMOID: { const sg: f32 = 1 / (1 + Mathf.exp(-x)); return sg * (1 - sg); }
    default: { const th = Mathf.tanh(x); return 1 - th * th; }
  }
}

@inline function actGrad4(x: v128, act: i32): v128 {
  const one = f32x4.splat(1);
  if (act == ACT_SILU) {
    const sg = f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(x))));
    return f32x4.mul(sg, f32x4.add(one, f32x4.mul(x, f32x4.sub(one, sg))));
  }
  if (act == ACT_QUICK_GELU) {
    const sg = f32x4.div(one, f32x4.add(one, exp4(f32x4.mul(x, f32x4.splat(-1.702)))));
    return f32x4.add(sg, f32x4.mul(f32x4.mul(f32x4.mul(x, f32x4.splat(1.702)), sg), f32x4.sub(one, sg)));
  }
  if (act == ACT_SIGMOID) {
    const sg = f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(x))));
    return f32x4.mul(sg, f32x4.sub(one, sg));
  }
  if (act == ACT_RELU) return v128.and(f32x4.gt(x, f32x4.splat(0)), one);
  let r = f32x4.splat(actGrad1(f32x4.extract_lane(x, 0), act));
  r = f32x4.replace_lane(r, 1, actGrad1(f32x4.extract_lane(x, 1), act));
  r = f32x4.replace_lane(r, 2, actGrad1(f32x4.extract_lane(x, 2), act));
  return f32x4.replace_lane(r, 3, actGrad1(f32x4.extract_lane(x, 3), act));
}

@inline function ffnActBwdRows(dx: usize, dy: usize, x: usize, dim: i32, act: i32, glu: i32, from: i32, to: i32): void {
  const db = <usize>dim << 2, xs = glu ? 2 * db : db;
  for (let t = from; t < to; t++) {
    const g = x + <usize>t * xs, u = g + db, d = dy + <usize>t * db, o = dx + <usize>t * xs, ou = o + db;
    let i = 0;
    for (; i + 4 <= dim; i += 4) {
      const b = <usize>i << 2, xv = v128.load(g + b), dv = v128.load(d + b);
      if (glu) {
        let a: v128, gr: v128;
        if (act == ACT_SILU) {
          // σ once for both: act = x σ, act' = σ (1 + x (1 - σ))
          const one = f32x4.splat(1), sg = f32x4.div(one, f32x4.add(one, exp4(f32x4.neg(xv))));
          a = f32x4.mul(xv, sg);
          gr = f32x4.mul(sg, f32x4.add(one, f32x4.mul(xv, f32x4.sub(one, sg))));
        } else {
          a = act4(xv, act);
          gr = actGrad4(xv, act);
        }
        const uv = v128.load(u + b);
        v128.store(o + b, f32x4.mul(f32x4.mul(dv, uv), gr));
        v128.store(ou + b, f32x4.mul(dv, a));
      } else {
        v128.store(o + b, f32x4.mul(dv, actGrad4(xv, act)));
      }
    }
    for (; i < dim; i++) {
      const b = <usize>i << 2, xv = load<f32>(g + b), dv = load<f32>(d + b);
      if (glu) {
        const uv = load<f32>(u + b);
        store<f32>(o + b, dv * uv * actGrad1(xv, act));
        store<f32>(ou + b, dv * act1(xv, act));
      } else {
        store<f32>(o + b, dv * actGrad1(xv, act));
      }
    }
  }
}

/** backward of ffn_act: dx [n, 2 dim] (glu) or [n, dim] from dy [n, dim] and x; tokens [from, to) */
export function ffn_act_bwd(dx: usize, dy: usize, x: usize, n: i32, dim: i32, act: i32, glu: i32, _a7: i32, _a8: i32, from: i32, to: i32, _scratch: usize): void {
  if (act == ACT_SILU && glu) ffnActBwdRows(dx, dy, x, dim, ACT_SILU, 1, from, to);
  else if (act == ACT_SILU) ffnActBwdRows(dx, dy, x, dim, ACT_SILU, 0, from, to);
  else ffnActBwdRows(dx, dy, x, dim, act, glu, from, to);
}

// ---------------------------------------------------------------- embedding backward

/** dtable[ids[t], :] += dy[t, :] for t < n, in order (ids may repeat; the caller checks their range) */
export function embed_bwd(dtable: usize, dy: usize, ids: usize, n: i32, dim: i32): void {
  const db = <usize>dim << 2;
  for (let t = 0; t < n; t++) {
    const dst = dtable + <usize>load<i32>(ids + (<usize>t << 2)) * db, src = dy + <usize>t * db;
    let i: usize = 0;
    for (; i + 16 <= db; i += 16) v128.store(dst + i, f32x4.add(v128.load(dst + i), v128.load(src + i)));
    for (; i < db; i += 4) store<f32>(dst + i, load<f32>(dst + i) + load<f32>(src + i));
  }
}

// ---------------------------------------------------------------- cross-entropy with z-loss

/**
 * ln x for a normal, positive f64 (≈ 1 ulp), without the library's Math.log: its lookup tables are
 * 4 KiB of static data, which would reach the thread pool's control block at 4096 (wasm.ts).
 * x = 2^e · m with m in [√½, √2), ln m = 2 atanh(s), s = (m - 1) / (m + 1), |s| ≤ 0.172: the odd
 * series to s^21 (the next term is below 1e-18 relative).
 */
function ln64(x: f64): f64 {
  const bits = reinterpret<u64>(x);
  let e = <i32>(bits >> 52) - 1023;
  let m = reinterpret<f64>((bits & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000);
  if (m > 1.4142135623730951) { m *= 0.5; e++; }
  const s = (m - 1) / (m + 1), s2 = s * s;
  let t: f64 = 1.0 / 21;
  t = t * s2 + 1.0 / 19; t = t * s2 + 1.0 / 17; t = t * s2 + 1.0 / 15; t = t * s2 + 1.0 / 13; t = t * s2 + 1.0 / 11;
  t = t * s2 + 1.0 / 9; t = t * s2 + 1.0 / 7; t = t * s2 + 1.0 / 5; t = t * s2 + 1.0 / 3; t = t * s2 + 1;
  // ln 2 in two parts: e · LN2_HI is exact for |e| < 2^20
  return <f64>e * 6.93147180369123816490e-01 + (2 * s * t + <f64>e * 1.90821492927058770002e-10);
}

/**
 * Rows [from, to) of logits [n, V] (see Kernels.crossEntropy): per row with target ≥ 0, the max,
 * e = exp(x - max) in place with its sum in f64, lse = max + log(sum), then the row ← k · e / sum
 * with k = scale (1 + 2 zLoss lse), minus scale at the target. losses[t] (f64) ← lse - x[target];
 * ignored rows: 0 everywhere. zLoss, scale: f32 bit patterns.
 */
export function cross_entropy(logits: usize, targets: usize, n: i32, V: i32, zBits: i32, sBits: i32, lse: usize, losses: usize, _a8: i32,
  from: i32, to: i32, _scratch: usize): void {
  const zLoss = <f64>reinterpret<f32>(zBits), scale = reinterpret<f32>(sBits);
  for (let t = from; t < to; t++) {
    const row = logits + (<usize>t * V << 2), target = load<i32>(targets + (<usize>t << 2));
    if (target < 0) {
      memory.fill(row, 0, <usize>V << 2);
      store<f32>(lse + (<usize>t << 2), 0);
      store<f64>(losses + (<usize>t << 3), 0);
      continue;
    }
    let m0 = f32x4.splat(-Infinity), m1 = m0, i = 0;
    for (; i + 8 <= V; i += 8) {
      const p = row + (<usize>i << 2);
      m0 = f32x4.max(m0, v128.load(p)); m1 = f32x4.max(m1, v128.load(p, 16));
    }
    for (; i + 4 <= V; i += 4) m0 = f32x4.max(m0, v128.load(row + (<usize>i << 2)));
    m0 = f32x4.max(m0, m1);
    let m = max(max(f32x4.extract_lane(m0, 0), f32x4.extract_lane(m0, 1)), max(f32x4.extract_lane(m0, 2), f32x4.extract_lane(m0, 3)));
    for (; i < V; i++) m = max(m, load<f32>(row + (<usize>i << 2)));
    const xt = load<f32>(row + (<usize>target << 2));
    const mv = f32x4.splat(m);
    // e summed in f32 over runs of 64 (each term ≤ 1: the run's sum is off by < 64 · 2^-24 of it),
    // the runs in f64
    let sa = f64x2.splat(0), sb = f64x2.splat(0);
    for (i = 0; i + 64 <= V;) {
      let s4 = f32x4.splat(0);
      for (const end = i + 64; i < end; i += 4) {
        const p = row + (<usize>i << 2), e = exp4(f32x4.sub(v128.load(p), mv));
        v128.store(p, e);
        s4 = f32x4.add(s4, e);
      }
      sa = f64x2.add(sa, f64x2.promote_low_f32x4(s4));
      sb = f64x2.add(sb, f64x2.promote_low_f32x4(i32x4.shuffle(s4, s4, 2, 3, 0, 1)));
    }
    for (; i + 4 <= V; i += 4) {
      const p = row + (<usize>i << 2), e = exp4(f32x4.sub(v128.load(p), mv));
      v128.store(p, e);
      sa = f64x2.add(sa, f64x2.promote_low_f32x4(e));
      sb = f64x2.add(sb, f64x2.promote_low_f32x4(i32x4.shuffle(e, e, 2, 3, 0, 1)));
    }
    let sum = f64x2.extract_lane(sa, 0) + f64x2.extract_lane(sa, 1) + f64x2.extract_lane(sb, 0) + f64x2.extract_lane(sb, 1);
    for (; i < V; i++) {
      const p = row + (<usize>i << 2), e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(p) - m)), 0);
      store<f32>(p, e);
      sum += e;
    }
    const z = <f64>m + ln64(sum);
    store<f32>(lse + (<usize>t << 2), <f32>z);
    store<f64>(losses + (<usize>t << 3), z - <f64>xt);
    const f = <f32>(<f64>scale * (1 + 2 * zLoss * z) / sum), fv = f32x4.splat(f);
    for (i = 0; i + 4 <= V; i += 4) {
      const p = row + (<usize>i << 2);
      v128.store(p, f32x4.mul(v128.load(p), fv));
    }
    for (; i < V; i++) store<f32>(row + (<usize>i << 2), load<f32>(row + (<usize>i << 2)) * f);
    const pt = row + (<usize>target << 2);
    store<f32>(pt, load<f32>(pt) - scale);
  }
}

// ---------------------------------------------------------------- flat-buffer ops (gradient norm, clipping, AdamW)
//
// Items are blocks of FLAT_BLOCK elements, so a split never changes which elements a sum groups.

const FLAT_BLOCK: i32 = 16384;

/** partial Σ x² (f64) of blocks [b0, b1) of x [n] → sums[b] */
/**
 * Reads blocks [b0, b1) of READ_BLOCK bytes at x and stores a checksum per block (so the reads
 * are not optimised away): the machine's read bandwidth from WebAssembly, for bench/memory.ts,
 * with 8 independent 16-byte loads in flight per step like the decode kernels' streams.
 */
export function read_sum(x: usize, blocks: i32, sums: usize, _a3: i32, _a4: i32, _a5: i32, _a6: i32, _a7: i32, _a8: i32,
  b0: i32, b1: i32, _scratch: usize): void {
  for (let b = b0; b < b1; b++) {
    const p0 = x + <usize>b * READ_BLOCK, end = p0 + READ_BLOCK;
    let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
    for (let p = p0; p < end; p += 128) {
      s0 = i32x4.add(s0, v128.xor(v128.load(p), v128.load(p, 64)));
      s1 = i32x4.add(s1, v128.xor(v128.load(p, 16), v128.load(p, 80)));
      s2 = i32x4.add(s2, v128.xor(v128.load(p, 32), v128.load(p, 96)));
      s3 = i32x4.add(s3, v128.xor(v128.load(p, 48), v128.load(p, 112)));
    }
    store<i32>(sums + (<usize>b << 2), hsumI(i32x4.add(i32x4.add(s0, s1), i32x4.add(s2, s3))));
  }
}
const READ_BLOCK: usize = 65536;

export function sum_squares(x: usize, n: i32, sums: usize, _a3: i32, _a4: i32, _a5: i32, _a6: i32, _a7: i32, _a8: i32,
  b0: i32, b1: i32, _scratch: usize): void {
  for (let b = b0; b < b1; b++) {
    const i0 = b * FLAT_BLOCK, i1 = min(n, i0 + FLAT_BLOCK);
    let s0 = f64x2.splat(0), s1 = f64x2.splat(0), s2 = f64x2.splat(0), s3 = f64x2.splat(0);
    let i = i0;
    for (; i + 8 <= i1; i += 8) {
      const p = x + (<usize>i << 2), v = v128.load(p), u = v128.load(p, 16);
      const a = f64x2.promote_low_f32x4(v), c = f64x2.promote_low_f32x4(i32x4.shuffle(v, v, 2, 3, 0, 1));
      const d = f64x2.promote_low_f32x4(u), e = f64x2.promote_low_f32x4(i32x4.shuffle(u, u, 2, 3, 0, 1));
      s0 = f64x2.add(s0, f64x2.mul(a, a)); s1 = f64x2.add(s1, f64x2.mul(c, c));
      s2 = f64x2.add(s2, f64x2.mul(d, d)); s3 = f64x2.add(s3, f64x2.mul(e, e));
    }
    const s = f64x2.add(f64x2.add(s0, s1), f64x2.add(s2, s3));
    let sum = f64x2.extract_lane(s, 0) + f64x2.extract_lane(s, 1);
    for (; i < i1; i++) { const v = <f64>load<f32>(x + (<usize>i << 2)); sum += v * v; }
    store<f64>(sums + (<usize>b << 3), sum);
  }
}

/** x[i] *= s over blocks [b0, b1) of x [n]; s: f32 bits */
export function scale_f32(x: usize, n: i32, sBits: i32, _a3: i32, _a4: i32, _a5: i32, _a6: i32, _a7: i32, _a8: i32,
  b0: i32, b1: i32, _scratch: usize): void {
  const s = reinterpret<f32>(sBits), sv = f32x4.splat(s);
  const i1 = min(n, b1 * FLAT_BLOCK);
  let i = b0 * FLAT_BLOCK;
  for (; i + 4 <= i1; i += 4) { const p = x + (<usize>i << 2); v128.store(p, f32x4.mul(v128.load(p), sv)); }
  for (; i < i1; i++) { const p = x + (<usize>i << 2); store<f32>(p, load<f32>(p) * s); }
}

/**
 * AdamW over blocks [b0, b1) of n parameters, in f32 with PyTorch's order of operations (no fused
 * multiply-adds: every step rounds as torch.optim.AdamW's single-tensor path does). hp: 8 f32:
 * decay = 1 - lr·wd, β1, 1 - β1, β2, 1 - β2, sqrt(1 - β2^step), eps, -lr / (1 - β1^step).
 */
export function adamw(p: usize, g: usize, m: usize, v: usize, n: i32, hp: usize, _a6: i32, _a7: i32, _a8: i32,
  b0: i32, b1: i32, _scratch: usize): void {
  const decay = v128.load32_splat(hp), beta1 = v128.load32_splat(hp, 4), a1 = v128.load32_splat(hp, 8);
  const beta2 = v128.load32_splat(hp, 12), a2 = v128.load32_splat(hp, 16), bc2 = v128.load32_splat(hp, 20);
  const eps = v128.load32_splat(hp, 24), negStep = v128.load32_splat(hp, 28);
  const i1 = min(n, b1 * FLAT_BLOCK);
  let i = b0 * FLAT_BLOCK;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    const gi = v128.load(g + o);
    const pi = f32x4.mul(v128.load(p + o), decay);
    const mi = f32x4.add(f32x4.mul(v128.load(m + o), beta1), f32x4.mul(gi, a1));
    const vi = f32x4.add(f32x4.mul(v128.load(v + o), beta2), f32x4.mul(f32x4.mul(gi, gi), a2));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const denom = f32x4.add(f32x4.div(f32x4.sqrt(vi), bc2), eps);
    v128.store(p + o, f32x4.add(pi, f32x4.mul(negStep, f32x4.div(mi, denom))));
  }
  const sd = f32x4.extract_lane(decay, 0), s1 = f32x4.extract_lane(beta1, 0), sa1 = f32x4.extract_lane(a1, 0);
  const s2 = f32x4.extract_lane(beta2, 0), sa2 = f32x4.extract_lane(a2, 0), sbc = f32x4.extract_lane(bc2, 0);
  const se = f32x4.extract_lane(eps, 0), sn = f32x4.extract_lane(negStep, 0);
  for (; i < i1; i++) {
    const o = <usize>i << 2, gi = load<f32>(g + o);
    const pi = load<f32>(p + o) * sd;
    const mi = load<f32>(m + o) * s1 + gi * sa1;
    const vi = load<f32>(v + o) * s2 + (gi * gi) * sa2;
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    store<f32>(p + o, pi + sn * (mi / (Mathf.sqrt(vi) / sbc + se)));
  }
}
