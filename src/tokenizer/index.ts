// LLaMA-2 SentencePiece BPE tokenizer (what OpenELM uses), id-for-id identical to SentencePiece.
//
//   import { loadTokenizer, StreamDecoder } from './tokenizer/index.ts';
//   const tok = await loadTokenizer();              // built-in LLaMA-2 vocabulary; or loadTokenizer(modelDir)
//   const ids = tok.encode('Hello world', { bos: true });   // [1, 15043, 3186]
//   tok.decode(ids);                                 // "Hello world"

export { parseTokenizerJson } from './hf-json.ts';
export { defaultTokenizer, fromSentencePieceModel, fromTokenizerJson, loadTokenizer } from './load.ts';
export { type NormalizerFlags, type PieceTable, PieceType } from './pieces.ts';
export { parseSentencePieceModel } from './sentencepiece-model.ts';
export { StreamDecoder } from './stream.ts';
export { type DecodeOptions, type EncodeOptions, Tokenizer } from './tokenizer.ts';
