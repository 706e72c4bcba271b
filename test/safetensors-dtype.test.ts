// bf16/f16 ↔ f32 conversions, checked against an exact oracle: every f16/bf16 value decoded in
// f64 arithmetic, and f32 inputs placed on, beside and exactly between neighbouring 16-bit values.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bf16BitsToF32, bf16ToF32, f16BitsToF32, f16ToF32, f32ToBf16, f32ToBf16Bits, f32ToF16, f32ToF16Bits } from '../src/io/dtype.ts';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const bitsOf = (x: number): number => ((f32[0] = x), u32[0]);
const fromBits = (b: number): number => ((u32[0] = b), f32[0]);

/** f16 decoded independently: sign · 2^(e-15) · (1 + m/1024), or subnormal m · 2^-24. */
function f16Exact(h: number): number {
  const s = h >> 15 ? -1 : 1;
  const e = (h >> 10) & 31;
  const m = h & 1023;
  if (e === 31) return m ? NaN : s * Infinity;
  return e === 0 ? s * m * Math.pow(2, -24) : s * Math.pow(2, e - 15) * (1 + m / 1024);
}

test('f16 → f32: all 65536 values, scalar and bulk, agree with the exact decoding', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const out = new Float32Array(65536);
  f16ToF32(all, out);
  for (let h = 0; h < 65536; h++) {
    const want = f16Exact(h);
    if (Number.isNaN(want)) {
      assert.ok(Number.isNaN(out[h]) && Number.isNaN(f16BitsToF32(h)), `0x${h.toString(16)} must be NaN`);
      continue;
    }
    assert.equal(f16BitsToF32(h), want, `scalar 0x${h.toString(16)}`);
    assert.ok(Object.is(out[h], want), `bulk 0x${h.toString(16)}: ${out[h]} vs ${want}`);
  }
});

test('f32 → f16 rounds to nearest even: values on, beside and between every pair of neighbours', () => {
  const inputs: number[] = [];
  const want: number[] = [];
  // positive finite halves h and h+1; the negative side mirrors through the sign bit
  for (let h = 0; h < 0x7c00; h++) {
    const lo = f16Exact(h);
    const hi = f16Exact(h + 1); // h + 1 = 0x7c00 is inf: the midpoint is 65520, which rounds to inf
    const mid = h + 1 === 0x7c00 ? 65520 : (lo + hi) / 2; // exact in f32: one more bit than f16
    inputs.push(lo, mid, fromBits(bitsOf(mid) - 1), fromBits(bitsOf(mid) + 1));
    want.push(h, h & 1 ? h + 1 : h, h, h + 1);
  }
  inputs.push(Infinity, 1e30, 2 ** -25, 2 ** -26, fromBits(1), 3e-8);
  want.push(0x7c00, 0x7c00, 0, 0, 0, 1); // 2^-25 is the tie between 0 and the smallest subnormal: even = 0
  const src = new Float32Array(inputs.length * 2);
  const wantAll: number[] = [];
  inputs.forEach((x, i) => {
    src[2 * i] = x;
    src[2 * i + 1] = -x;
    wantAll.push(want[i], want[i] | 0x8000);
  });
  const out = new Uint16Array(src.length);
  f32ToF16(src, out);
  for (let i = 0; i < src.length; i++) {
    assert.equal(out[i], wantAll[i], `${src[i]} (bits 0x${bitsOf(src[i]).toString(16)}) → 0x${out[i].toString(16)}, want 0x${wantAll[i].toString(16)}`);
    assert.equal(f32ToF16Bits(src[i]), wantAll[i]);
  }
});

test('f32 → f16: NaN stays NaN (PyTorch 0x7e00 with sign), -0 keeps its sign', () => {
  assert.equal(f32ToF16Bits(NaN), 0x7e00);
  assert.equal(f32ToF16Bits(fromBits(0xffc00001)), 0xfe00);
  assert.equal(f32ToF16Bits(-0), 0x8000);
});

test('bf16 ↔ f32: round to nearest even like PyTorch, NaN → 0x7fc0, round trip exact', () => {
  const cases: [number, number][] = [
    [1, 0x3f80],
    [-2, 0xc000],
    [0, 0],
    [-0, 0x8000],
    [Infinity, 0x7f80],
    [-Infinity, 0xff80],
    [fromBits(0x3f808000), 0x3f80], // tie, even stays
    [fromBits(0x3f818000), 0x3f82], // tie, odd rounds up
    [fromBits(0x3f808001), 0x3f81], // above the tie
    [fromBits(0x3f807fff), 0x3f80], // below the tie
    [fromBits(0x7f7fffff), 0x7f80], // f32 max rounds to inf, as in PyTorch
    [NaN, 0x7fc0],
    [fromBits(0xff800001), 0x7fc0],
  ];
  const src = new Float32Array(cases.map((c) => c[0]));
  const out = new Uint16Array(src.length);
  f32ToBf16(src, out);
  cases.forEach(([x, want], i) => {
    assert.equal(out[i], want, `${x} (0x${bitsOf(x).toString(16)}) → 0x${out[i].toString(16)}`);
    assert.equal(f32ToBf16Bits(x), want);
  });
  // every non-NaN bf16 survives bf16 → f32 → bf16, and the f32 is the bits shifted up
  const all = new Uint16Array(65536).map((_, i) => i);
  const wide = new Float32Array(65536);
  bf16ToF32(all, wide);
  const wideBits = new Uint32Array(wide.buffer); // NaN payloads do not survive a trip through a JS number
  const back = new Uint16Array(65536);
  f32ToBf16(wide, back);
  for (let b = 0; b < 65536; b++) {
    assert.equal(wideBits[b], (b << 16) >>> 0);
    assert.ok(Object.is(bf16BitsToF32(b), wide[b]) || Number.isNaN(wide[b]));
    if ((b & 0x7f80) !== 0x7f80 || (b & 0x7f) === 0) assert.equal(back[b], b, `0x${b.toString(16)}`);
  }
});

test('bf16/f16 → f32 run in place from the upper half of the destination', () => {
  const n = 1001;
  const values = new Float32Array(n).map((_, i) => (i - 500) / 64);
  for (const [enc, dec] of [
    [f32ToBf16, bf16ToF32],
    [f32ToF16, f16ToF32],
  ] as const) {
    const bits = new Uint16Array(n);
    enc(values, bits);
    const want = new Float32Array(n);
    dec(bits, want); // out of place
    const dst = new Float32Array(n);
    const upper = new Uint16Array(dst.buffer, 2 * n, n);
    upper.set(bits);
    dec(upper, dst);
    assert.deepEqual(dst, want);
  }
});

test('length mismatch is a RangeError naming the conversion', () => {
  assert.throws(() => bf16ToF32(new Uint16Array(3), new Float32Array(4)), /bf16ToF32: src has 3 elements but dst has 4/);
});
