// The training data pipeline, in the style of Apple's CoreNet (corenet/data/datasets/
// language_modeling): text read on the fly from files, folders or a built-in corpus, NFC, CoreNet's
// filters, tokenized, framed BOS + text + EOS, and cut into rows of seqLen + 1 tokens by packing
// (the default; the sensible mode for long documents) or by CoreNet's truncate-and-pad.
//
//   import { openDataset } from './train/data/index.ts';
//   import { loadTokenizer } from './tokenizer/index.ts';
//   const data = await openDataset(
//     { paths: ['builtin:sotu'], seqLen: 256, packing: true, minChars: 200, minTokens: 256, valFraction: 0.01 },
//     await loadTokenizer(), { seed: 0 });
//   const batch = data.nextBatch(8);           // { batchSize: 8, seqLen: 256, inputs, targets }: Int32Array[8 * 256]
//   const val = data.validationBatches(8, 4);  // the same batches every call
//   const saved = data.state();                // JSON: put it in the checkpoint ...
//   data.restore(saved);                       // ... and continue exactly where it was
//   console.log(data.describe());
//
// Pieces: sources.ts (what the paths name, caches for .gz/.parquet), corpus.ts (index of
// documents, texts read lazily), doc-text.ts (CoreNet's 2048-word pieces), filters.ts (CoreNet's
// character filter), cursor.ts (tokenize, filter, frame, pack or truncate-and-pad), shuffle.ts
// (seeded epoch orders), text-dataset.ts (the split and the TrainData), ids-dataset.ts (--data-ids).
import type { DataOptions } from '../options.ts';
import { IdsDataset } from './ids-dataset.ts';
import { TextDataset } from './text-dataset.ts';
import type { DataRunOptions, DataTokenizer, TrainData } from './types.ts';

export { Corpus, type CorpusOptions } from './corpus.ts';
export { PAD_ID } from './cursor.ts';
export { DOCUMENT_SPLIT_WORDS } from './doc-text.ts';
export { processedLength } from './filters.ts';
export { BUILTIN_CORPORA, DEFAULT_CACHE_DIR, KNOWN_EXTENSIONS } from './sources.ts';
export type { DataRunOptions, DataState, DataStats, DataTokenizer, IdsDataState, TextDataState, TrainData } from './types.ts';
export { IdsDataset, TextDataset };

/** Defaults of the data flags (the issue's; CoreNet's OpenELM recipes use min 200 characters, 256 tokens). */
export const DATA_DEFAULTS = { packing: true, minChars: 200, minTokens: 256, valFraction: 0.01 } as const;

/**
 * The training data a run reads: the --data-ids file if opts.idsFile is set, else the text sources.
 * @param tokenizer needed for text sources; for --data-ids only used to check ids against its vocabulary
 */
export async function openDataset(opts: DataOptions, tokenizer: DataTokenizer | undefined, run: DataRunOptions): Promise<TrainData> {
  if (opts.idsFile !== undefined) {
    const data = IdsDataset.open(opts.idsFile, tokenizer?.vocabSize);
    if (opts.paths.length > 0) {
      const message = `--data-ids ${opts.idsFile} is used; the text sources (${opts.paths.join(', ')}) are not`;
      data.warn(message);
      run.warn?.(message);
    }
    return data;
  }
  if (!tokenizer) throw new Error('text data needs a tokenizer');
  return TextDataset.open(opts, tokenizer, run);
}
