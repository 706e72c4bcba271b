// Shared by the training tests: batches from id rows, the per-tensor error measure.
import { type Batch, IGNORE } from '../../src/train/options.ts';

/**
 * Rows of ids → the batch the model reads: row[:-1] in, row[1:] out. With labels (HF convention:
 * negative = ignored), the targets are labels[1:] instead.
 */
export function batchFromRows(rows: number[][], labels?: number[][]): Batch {
  const B = rows.length,
    S = rows[0].length - 1;
  const inputs = new Int32Array(B * S),
    targets = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < S; t++) {
      inputs[b * S + t] = rows[b][t];
      const y = (labels ?? rows)[b][t + 1];
      targets[b * S + t] = y < 0 ? IGNORE : y;
    }
  }
  return { batchSize: B, seqLen: S, inputs, targets };
}

/** ‖a − b‖ / ‖b‖ */
export function relErr(a: Float32Array, b: Float32Array): number {
  let num = 0,
    den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i] - b[i]) ** 2;
    den += b[i] ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}
