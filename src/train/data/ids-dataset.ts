// --data-ids FILE: a JSON array of token-id rows, all the same length, used in order and then
// again (an epoch per pass), batchSize rows per batch. A row is one sample as is: the model reads
// row[:-1] and predicts row[1:], so Batch.seqLen is the row length - 1 (not checked against
// --seq-len). No validation split. Meant for tests and for feeding exactly the same batches to
// this trainer and to a reference (PyTorch) one.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import type { Batch } from '../options.ts';
import type { DataState, DataStats, IdsDataState, TrainData } from './types.ts';

export class IdsDataset implements TrainData {
  readonly kind = 'ids';
  private row = 0;
  private epoch = 0;
  private rowsServed = 0;
  private readonly fingerprint: string;
  private readonly warnings: string[] = [];

  private constructor(
    private readonly file: string,
    /** [rows][length] */
    private readonly rows: Int32Array[],
    text: string,
  ) {
    this.fingerprint = createHash('sha256').update(text).digest('hex').slice(0, 16);
  }

  /** @param vocabSize when given, every id must be below it */
  static open(file: string, vocabSize?: number): IdsDataset {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      throw new Error(`${file}: cannot read the --data-ids file`);
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new Error(`${file}: not JSON (${(e as Error).message}); expected an array of token-id rows`);
    }
    if (!Array.isArray(value) || value.length === 0) throw new Error(`${file}: expected a non-empty JSON array of token-id rows`);
    const rows = value.map((row: unknown, r) => {
      if (!Array.isArray(row)) throw new Error(`${file}: row ${r} is not an array of token ids`);
      if (row.length < 2) throw new Error(`${file}: row ${r} has ${row.length} ids; a row needs at least 2 (inputs row[:-1], targets row[1:])`);
      if (row.length !== (value[0] as unknown[]).length)
        throw new Error(`${file}: row ${r} has ${row.length} ids, row 0 has ${(value[0] as unknown[]).length}; rows must have equal length`);
      const ids = new Int32Array(row.length);
      row.forEach((id: unknown, i) => {
        if (!Number.isInteger(id) || (id as number) < 0 || (vocabSize !== undefined && (id as number) >= vocabSize)) {
          throw new Error(`${file}: row ${r}, position ${i}: ${JSON.stringify(id)} is not a token id${vocabSize !== undefined ? ` in [0, ${vocabSize})` : ''}`);
        }
        ids[i] = id as number;
      });
      return ids;
    });
    return new IdsDataset(file, rows, text);
  }

  nextBatch(batchSize: number): Batch {
    checkBatchSize(batchSize);
    const S = this.rows[0].length - 1;
    const inputs = new Int32Array(batchSize * S);
    const targets = new Int32Array(batchSize * S);
    for (let b = 0; b < batchSize; b++) {
      const row = this.rows[this.row];
      inputs.set(row.subarray(0, S), b * S);
      targets.set(row.subarray(1), b * S);
      if (++this.row === this.rows.length) {
        this.row = 0;
        this.epoch++;
      }
    }
    this.rowsServed += batchSize;
    return { batchSize, seqLen: S, inputs, targets };
  }

  validationBatches(): Batch[] {
    return [];
  }

  state(): IdsDataState {
    return { kind: 'ids', version: 1, corpus: this.fingerprint, epoch: this.epoch, row: this.row, rows: this.rowsServed };
  }

  restore(state: DataState): void {
    if (state === null || typeof state !== 'object')
      throw new Error(`data state must be an object from state(), got ${state === null ? 'null' : typeof state}`);
    if (state.kind !== 'ids') throw new Error(`data state is for a ${state.kind} dataset, not a --data-ids file`);
    if (state.corpus !== this.fingerprint)
      throw new Error(`data state belongs to another --data-ids file (fingerprint ${state.corpus}, ${this.file} has ${this.fingerprint})`);
    if (!Number.isInteger(state.row) || state.row < 0 || state.row >= this.rows.length)
      throw new Error(`data state row ${state.row} is outside ${this.file}'s ${this.rows.length} rows`);
    this.row = state.row;
    this.epoch = state.epoch;
    this.rowsServed = state.rows;
  }

  stats(): DataStats {
    const S = this.rows[0].length - 1;
    return {
      kind: 'ids',
      sources: [this.file],
      documents: this.rows.length,
      trainDocuments: this.rows.length,
      validationDocuments: 0,
      heldOutTail: false,
      packing: false,
      seqLen: S,
      minChars: 0,
      minTokens: 0,
      epoch: this.epoch,
      documentsRead: this.rowsServed,
      filtered: { minChars: 0, minTokens: 0 },
      tokens: this.rowsServed * (S + 1),
      rows: this.rowsServed,
      padded: 0,
      warnings: this.warnings,
    };
  }

  describe(): string {
    return `data: ${this.file}: ${this.rows.length} rows of ${this.rows[0].length} ids, used in order; epoch ${this.epoch}, row ${this.row}; no validation split`;
  }

  close(): void {}

  /** records a warning (stats().warnings) */
  warn(message: string): void {
    this.warnings.push(message);
  }
}

export function checkBatchSize(batchSize: number): void {
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`batch size must be a positive integer, got ${batchSize}`);
}
