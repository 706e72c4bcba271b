// Rotary position embedding tables, computed the way PyTorch does in float32
// (OpenELMRotaryEmbedding): inv_freq = 1 / base^(2i / headDim), θ = pos · inv_freq, all f32.

/** cos/sin tables [positions, headDim / 2] (the second half of HF's cat(freqs, freqs) repeats the first). */
export function ropeTables(
  headDim: number,
  base: number,
  positions: number,
  alloc: (n: number) => Float32Array = (n) => new Float32Array(n),
): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const invFreq = new Float32Array(half);
  for (let i = 0; i < half; i++) {
    const exponent = Math.fround((2 * i) / headDim);
    invFreq[i] = Math.fround(1 / Math.fround(Math.pow(base, exponent)));
  }
  const cos = alloc(positions * half);
  const sin = alloc(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const theta = Math.fround(p * invFreq[i]);
      cos[p * half + i] = Math.cos(theta);
      sin[p * half + i] = Math.sin(theta);
    }
  }
  return { cos, sin };
}
