// Layer-wise scaling, exactly as `configuration_openelm.py` computes it.
//
// Each layer i gets a QKV multiplier α_i and an FFN multiplier β_i, linearly interpolated
// from the first to the last layer (numpy.linspace), rounded with Python's round(x, 2),
// then turned into widths with `make_divisible`. The rounding is where ports go wrong:
// Python rounds the exact binary value half-to-even, numpy builds linspace as
// start + i * step. Both are reproduced here bit for bit.

/** numpy.linspace(start, stop, num) with endpoint=True, in float64 like numpy. */
export function linspace(start: number, stop: number, num: number): number[] {
  if (num <= 0) return [];
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  const out: number[] = [];
  for (let i = 0; i < num; i++) out.push(step === 0 ? (i / (num - 1)) * (stop - start) + start : i * step + start);
  out[num - 1] = stop;
  return out;
}

/**
 * Python's round(x, ndigits) for ndigits >= 0: the exact binary value of x rounded to the
 * nearest multiple of 10^-ndigits, ties to even. `toFixed` rounds the exact value too but
 * breaks ties upward, so exact ties are detected and handled separately.
 */
export function pyRound(x: number, ndigits = 0): number {
  if (!Number.isFinite(x)) return x;
  const scale = 10 ** ndigits;
  const fixed = Number(x.toFixed(ndigits));
  // An exact tie means x * 10^n is exactly k + 1/2, which needs x to be a dyadic rational.
  // Check it with exact integer arithmetic on the binary value via BigInt.
  const tie = isExactHalf(x, ndigits);
  if (!tie) return fixed;
  const down = Math.floor(x * scale);
  const even = down % 2 === 0 ? down : down + 1;
  return even / scale;
}

function isExactHalf(x: number, ndigits: number): boolean {
  // x = m * 2^e exactly. x * 10^n = k + 1/2  <=>  2 * m * 2^e * 10^n is an odd integer.
  const buf = new DataView(new ArrayBuffer(8));
  buf.setFloat64(0, Math.abs(x));
  const bits = buf.getBigUint64(0);
  const expBits = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & ((1n << 52n) - 1n);
  if (expBits === 0 && frac === 0n) return false;
  const mant = expBits === 0 ? frac : frac | (1n << 52n);
  const e = expBits === 0 ? -1074 : expBits - 1075;
  let num = 2n * mant * 10n ** BigInt(ndigits);
  let den = 1n;
  if (e >= 0) num <<= BigInt(e);
  else den <<= BigInt(-e);
  if (num % den !== 0n) return false;
  return (num / den) % 2n === 1n;
}

/** make_divisible from CoreNet / modeling_openelm.py: nearest multiple of divisor, never 10% below v. */
export function makeDivisible(v: number, divisor = 8, minValue?: number): number {
  const min = minValue ?? divisor;
  let newV = Math.max(min, Math.floor(Math.trunc(v + divisor / 2) / divisor) * divisor);
  if (newV < 0.9 * v) newV += divisor;
  return newV;
}

/**
 * Expands a multiplier setting into one value per layer:
 * a number → the same for every layer; [a, b] → round(linspace(a, b, L), 2);
 * a list of L values → used as given (HF writes the expanded list back into config.json).
 */
export function perLayerMultipliers(value: number | number[], numLayers: number, field: string): number[] {
  if (typeof value === 'number') return new Array<number>(numLayers).fill(value);
  if (value.length === 2) return linspace(value[0], value[1], numLayers).map((v) => pyRound(v, 2));
  if (value.length === numLayers) return value.slice();
  throw new Error(`config field "${field}": expected a number, [start, end], or ${numLayers} values (one per layer), got ${value.length} values`);
}
