// Seeded orders: each epoch's document order is a Fisher–Yates permutation drawn from a fresh Rng
// whose seed mixes the run's seed with the epoch, so an epoch's order is a pure function of
// (seed, epoch) and a restored run recomputes it instead of saving the generator.
import { Rng } from '../../generate/rng.ts';

/** A 32-bit seed for stream `stream` of run seed `seed` (murmur3's finalizer over both). */
export function mixSeed(seed: number, stream: number): number {
  let h = (seed >>> 0) ^ Math.imul(stream >>> 0, 0x9e3779b1);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** [n] a uniformly random permutation of 0..n-1 */
export function permutation(n: number, seed: number): Uint32Array {
  const p = new Uint32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const rng = new Rng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng.next() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

// Streams of mixSeed, so the orders of different purposes never coincide.
/** the validation split (independent of the run's seed, see text-dataset.ts) */
export const SPLIT_STREAM = 0x5b1;
/** epoch e's training order uses stream EPOCH_STREAM + e */
export const EPOCH_STREAM = 0x1000;
