// What the trainer sees of the data pipeline: a TrainData hands out batches and a small
// JSON-serialisable DataState that goes into every checkpoint.
import type { Batch } from '../options.ts';
import type { CursorCounters } from './cursor.ts';

/** What the pipeline needs of a tokenizer; the project's Tokenizer fits. */
export interface DataTokenizer {
  /** token ids of a text, without BOS/EOS */
  encode(text: string): number[];
  /** -1 when the vocabulary has none */
  readonly bosId: number;
  readonly eosId: number;
  readonly vocabSize: number;
}

/** What the run adds to the DataOptions. */
export interface DataRunOptions {
  /** the training order of every epoch derives from it */
  seed: number;
  /** BOS / EOS ids (default: the tokenizer's) */
  bos?: number;
  eos?: number;
  /** where .gz and .parquet sources are decompressed / converted (default $TMPDIR/openelm-data-cache) */
  cacheDir?: string;
  /** words per piece (CoreNet's document_split_size, default 2048) */
  splitWords?: number;
  /** called with each warning as it arises (they are also in stats().warnings) */
  warn?: (message: string) => void;
}

export interface TrainData {
  readonly kind: 'text' | 'ids';
  /**
   * The next `batchSize` training rows: endless, each epoch in a new order drawn from (seed, epoch).
   * A fresh batch each call ([batchSize * seqLen] inputs and targets).
   */
  nextBatch(batchSize: number): Batch;
  /**
   * The validation split as batches of `batchSize` rows, at most `maxBatches` of them: the same
   * batches at every call (read once, in a fixed order, then kept). The last batch may end in pad
   * rows (all targets IGNORE): average the loss over the targets that are not IGNORE. Empty when
   * there is no validation split. Callers must not modify them.
   */
  validationBatches(batchSize: number, maxBatches: number): Batch[];
  /** Where the training stream is; restore(state) continues it exactly. */
  state(): DataState;
  /** Continues the training stream from a state() of the same corpus, options and seed. */
  restore(state: DataState): void;
  stats(): DataStats;
  /** stats() in one line, for logs */
  describe(): string;
  /** closes the files */
  close(): void;
}

export interface TextDataState {
  kind: 'text';
  version: 1;
  /** fingerprint of the corpus, data options and seed the state belongs to */
  corpus: string;
  epoch: number;
  /** index into the epoch's shuffled order of the training document being read */
  doc: number;
  /** position in that document: see CursorPosition (cursor.ts) */
  piece: number;
  token: number;
  carry: number;
  /** the statistics so far, so that they continue too */
  counters: CursorCounters;
}

export interface IdsDataState {
  kind: 'ids';
  version: 1;
  corpus: string;
  epoch: number;
  /** the next row */
  row: number;
  rows: number;
}

export type DataState = TextDataState | IdsDataState;

export interface DataStats {
  kind: 'text' | 'ids';
  /** the sources as named */
  sources: string[];
  /** documents indexed (ids: rows) */
  documents: number;
  trainDocuments: number;
  validationDocuments: number;
  /** a single document: validation is its tail (see text-dataset.ts) */
  heldOutTail: boolean;
  packing: boolean;
  seqLen: number;
  minChars: number;
  minTokens: number;
  /** the training stream so far */
  epoch: number;
  /** documents (packing) or texts (truncate-and-pad) that passed the filters */
  documentsRead: number;
  filtered: { minChars: number; minTokens: number };
  /** tokens read into rows (BOS/EOS included), rows made, pad positions */
  tokens: number;
  rows: number;
  padded: number;
  warnings: string[];
}
