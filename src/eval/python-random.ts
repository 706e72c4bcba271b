// Python's `random.Random`, exactly: the Mersenne Twister (MT19937) seeded the way CPython seeds
// it from an integer, `getrandbits`, `random()` and `sample()`. lm-evaluation-harness draws its
// few-shot examples with `random.Random(1234).sample(train_docs, k)`, one call per evaluated
// document on the same generator; reproducing the generator bit for bit is what makes
// `--num-fewshot` pick the same examples as the harness.
//
//   const r = new PythonRandom(1234);
//   r.random();                 // 0.9664535356921388, as Python prints
//   r.sample([...'abcdefgh'], 3);
//
// Sources: CPython Modules/_randommodule.c (init_genrand, init_by_array, genrand_uint32,
// random_seed for ints: the absolute value split into 32-bit words, least significant first;
// getrandbits: for k ≤ 32, genrand_uint32() >> (32 - k); random: (a·2^26 + b) / 2^53 with
// a = 27 bits, b = 26 bits) and Lib/random.py (_randbelow_with_getrandbits, sample).

const N = 624;
const M = 397;

export class PythonRandom {
  private readonly mt = new Uint32Array(N);
  private mti = N + 1;

  /** `random.Random(seed)` for a non-negative or negative integer (Python uses |seed|). */
  constructor(seed: number | bigint) {
    this.seed(seed);
  }

  seed(seed: number | bigint): void {
    if (typeof seed === 'number' && !Number.isSafeInteger(seed)) throw new RangeError(`PythonRandom: seed must be an integer, got ${seed}`);
    let n = BigInt(seed);
    if (n < 0n) n = -n;
    // the key: 32-bit words of |seed|, least significant first; at least one word (0 → [0])
    const key: number[] = [];
    do {
      key.push(Number(n & 0xffffffffn));
      n >>= 32n;
    } while (n > 0n);
    this.initByArray(key);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < N; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.mti = N;
  }

  private initByArray(key: number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1,
      j = 0;
    for (let k = Math.max(N, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0; // non linear
      i++;
      j++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = N - 1; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0; // non linear
      i++;
      if (i >= N) {
        mt[0] = mt[N - 1];
        i = 1;
      }
    }
    mt[0] = 0x80000000; // MSB is 1, assuring a non-zero initial array
  }

  /** The next 32-bit output of MT19937. */
  nextU32(): number {
    const mt = this.mt;
    if (this.mti >= N) {
      let kk = 0;
      for (; kk < N - M; kk++) {
        const y = (mt[kk] & 0x80000000) | (mt[kk + 1] & 0x7fffffff);
        mt[kk] = mt[kk + M] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      for (; kk < N - 1; kk++) {
        const y = (mt[kk] & 0x80000000) | (mt[kk + 1] & 0x7fffffff);
        mt[kk] = mt[kk + (M - N)] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      const y = (mt[N - 1] & 0x80000000) | (mt[0] & 0x7fffffff);
      mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      this.mti = 0;
    }
    let y = mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** `random.random()`: a float in [0, 1) with 53 random bits. */
  random(): number {
    const a = this.nextU32() >>> 5,
      b = this.nextU32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }

  /** `random.getrandbits(k)` for 0 ≤ k ≤ 32 (all a sampler over fewer than 2^32 items needs). */
  getrandbits(k: number): number {
    if (!(Number.isInteger(k) && k >= 0 && k <= 32)) throw new RangeError(`getrandbits: k must be an integer in [0, 32], got ${k}`);
    if (k === 0) return 0;
    return this.nextU32() >>> (32 - k);
  }

  /** `Random._randbelow_with_getrandbits(n)`: uniform in [0, n), by rejection on n.bit_length() bits. */
  randbelow(n: number): number {
    if (!(Number.isInteger(n) && n > 0 && n <= 0xffffffff)) throw new RangeError(`randbelow: n must be an integer in [1, 2^32), got ${n}`);
    const k = 32 - Math.clz32(n); // n.bit_length()
    let r = this.getrandbits(k);
    while (r >= n) r = this.getrandbits(k);
    return r;
  }

  /**
   * `random.sample(population, k)`: k distinct elements in selection order. Like CPython, a
   * partial Fisher–Yates over a copy when the population is small, else rejection of repeated
   * indices through a set (the two branches draw different numbers, so both are reproduced).
   */
  sample<T>(population: readonly T[], k: number): T[] {
    const n = population.length;
    if (!(Number.isInteger(k) && k >= 0 && k <= n)) throw new RangeError(`sample: k must be an integer in [0, ${n}] (the population size), got ${k}`);
    const result: T[] = new Array(k);
    let setsize = 21; // size of a small set minus size of an empty list
    if (k > 5) setsize += 4 ** Math.ceil(Math.log(k * 3) / Math.log(4)); // table size for big sets
    if (n <= setsize) {
      const pool = population.slice();
      for (let i = 0; i < k; i++) {
        const j = this.randbelow(n - i);
        result[i] = pool[j];
        pool[j] = pool[n - i - 1]; // move the non-selected item into the vacancy
      }
    } else {
      const selected = new Set<number>();
      for (let i = 0; i < k; i++) {
        let j = this.randbelow(n);
        while (selected.has(j)) j = this.randbelow(n);
        selected.add(j);
        result[i] = population[j];
      }
    }
    return result;
  }
}
