// Fine-tuning records as the trainer's data: whole records in a seeded order per epoch, each a row
// (SFT) or a pair of rows (DPO: chosen then rejected), padded to one sequence length with the pad
// and the prompt excluded from the loss. The reading position is (epoch, record), saved in every
// checkpoint; a validation split is either a separate file or a seeded fraction of the records.

import { EPOCH_STREAM, mixSeed, permutation, SPLIT_STREAM } from '../data/shuffle.ts';
import { type Batch, IGNORE } from '../options.ts';
import type { Example } from './records.ts';

export interface ExampleBatch extends Batch {
  /** the records in the batch (indices into the training or validation examples) */
  records: number[];
  /** rows per record: 1 (SFT) or 2 (DPO: chosen, rejected) */
  rowsPerRecord: number;
}

export interface ExampleState {
  kind: 'examples';
  version: 1;
  records: number;
  epoch: number;
  next: number;
}

export interface ExampleDataOptions {
  seed: number;
  /** tokens the model reads per row (rows are cut to seqLen + 1 tokens) */
  seqLen: number;
  /** held-out examples; or a fraction of `train` split off (seeded, at least one record stays in training) */
  validation?: Example[];
  valFraction?: number;
}

const PAD_ID = 0;

export class ExampleData {
  readonly kind = 'examples';
  readonly train: Example[];
  readonly validation: Example[];
  readonly rowsPerRecord: number;
  readonly seqLen: number;
  /** rows cut to seqLen + 1 tokens */
  readonly truncated: number;
  private epoch = 0;
  private next = 0;
  private order: Uint32Array;
  private valCache: ExampleBatch[] | null = null;

  constructor(
    all: Example[],
    private readonly opts: ExampleDataOptions,
  ) {
    if (all.length === 0) throw new Error('no fine-tuning records');
    this.rowsPerRecord = all[0].rows.length;
    let train = all,
      val = opts.validation ?? [];
    if (!opts.validation && (opts.valFraction ?? 0) > 0) {
      const nVal = Math.min(all.length - 1, Math.round(all.length * opts.valFraction!));
      const p = permutation(all.length, mixSeed(0, SPLIT_STREAM));
      const held = new Set(Array.from(p.subarray(0, nVal)));
      train = all.filter((_, i) => !held.has(i));
      val = all.filter((_, i) => held.has(i));
    }
    this.train = train;
    this.validation = val;
    this.seqLen = opts.seqLen;
    this.truncated = [...train, ...val].reduce((n, e) => n + e.rows.filter((r) => r.ids.length > opts.seqLen + 1).length, 0);
    this.order = permutation(train.length, mixSeed(opts.seed, EPOCH_STREAM));
  }

  /** The next `batchSize` records (batchSize × rowsPerRecord rows), epochs repeating in new orders. */
  nextBatch(batchSize: number): ExampleBatch {
    const recs: number[] = [];
    for (let i = 0; i < batchSize; i++) {
      if (this.next >= this.train.length) {
        this.epoch++;
        this.next = 0;
        this.order = permutation(this.train.length, mixSeed(this.opts.seed, EPOCH_STREAM + this.epoch));
      }
      recs.push(this.order[this.next++]);
    }
    return this.batchOf(this.train, recs);
  }

  /** The validation records in batches (the last one filled up with ignored rows). */
  validationBatches(batchSize: number, maxBatches: number): ExampleBatch[] {
    if (this.valCache) return this.valCache;
    const out: ExampleBatch[] = [];
    for (let i = 0; i < this.validation.length && out.length < maxBatches; i += batchSize) {
      const recs = Array.from({ length: batchSize }, (_, j) => i + j);
      out.push(this.batchOf(this.validation, recs));
    }
    return (this.valCache = out);
  }

  private batchOf(pool: Example[], recs: number[]): ExampleBatch {
    const R = this.rowsPerRecord,
      S = this.seqLen,
      B = recs.length * R;
    const inputs = new Int32Array(B * S).fill(PAD_ID),
      targets = new Int32Array(B * S).fill(IGNORE);
    recs.forEach((rec, j) => {
      const ex = pool[rec];
      if (!ex) return; // past the end of the validation records: an ignored row
      ex.rows.forEach((row, r) => {
        const o = (j * R + r) * S,
          n = Math.min(row.ids.length - 1, S);
        for (let t = 0; t < n; t++) {
          inputs[o + t] = row.ids[t];
          if (row.loss[t + 1]) targets[o + t] = row.ids[t + 1];
        }
      });
    });
    return { batchSize: B, seqLen: S, inputs, targets, records: recs, rowsPerRecord: R };
  }

  state(): ExampleState {
    return { kind: 'examples', version: 1, records: this.train.length, epoch: this.epoch, next: this.next };
  }

  restore(s: unknown): void {
    const st = s as ExampleState;
    if (st?.kind !== 'examples' || st.records !== this.train.length) {
      throw new Error(
        `the checkpoint's data position is for ${st?.records ?? 'other'} training records, these files have ${this.train.length}: resume with the same data and options`,
      );
    }
    this.epoch = st.epoch;
    this.next = st.next;
    this.order = permutation(this.train.length, mixSeed(this.opts.seed, EPOCH_STREAM + this.epoch));
  }

  describe(): string {
    const kind = this.rowsPerRecord === 2 ? 'preference pairs' : 'records';
    return (
      `${this.train.length} training ${kind}, ${this.validation.length} validation; rows of ${this.seqLen} tokens` +
      (this.truncated ? `; ${this.truncated} row(s) longer than ${this.seqLen + 1} tokens cut (raise --seq-len)` : '')
    );
  }

  close(): void {}
}

/** The sequence length that fits every row (capped by the model's context). */
export function fitSeqLen(examples: Example[], cap: number): number {
  let m = 1;
  for (const e of examples) for (const r of e.rows) m = Math.max(m, r.ids.length - 1);
  return Math.min(m, cap);
}
