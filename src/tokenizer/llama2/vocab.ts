// The default vocabulary: LLaMA-2's 32000 pieces (pieces.ts, generated from the npm package
// llama-tokenizer-js), so the tokenizer works without the gated meta-llama download. The scores
// and types follow LLaMA-2's tokenizer.model, which they equal exactly (test/tokenizer.test.ts):
// 0 <unk>, 1 <s>, 2 </s> (score 0), 3..258 the byte pieces <0x00>..<0xFF> (score 0), then the
// normal pieces in merge order, piece i scoring -(i - 259), except the 16 pieces made only of
// "▁", which score -1e9 (SentencePiece merges them last).
import { bytePiece, LLAMA_NORMALIZER, type PieceTable, PieceType, SP_DEFAULTS } from '../pieces.ts';
import { LLAMA2_PIECES } from './pieces.ts';

const FIRST_BYTE_ID = 3;
const FIRST_NORMAL_ID = FIRST_BYTE_ID + 256;
const WHITESPACE_ONLY = /^▁+$/;

/** The LLaMA-2 piece table (a fresh copy). */
export function llama2PieceTable(): PieceTable {
  const pieces = LLAMA2_PIECES.split('\n');
  const n = pieces.length;
  if (n !== 32000) throw new Error(`llama2 vocabulary: ${n} pieces, expected 32000`);
  const types = new Uint8Array(n).fill(PieceType.NORMAL);
  const scores = new Float32Array(n);
  types[0] = PieceType.UNKNOWN;
  types[1] = types[2] = PieceType.CONTROL;
  for (let b = 0; b < 256; b++) {
    if (pieces[FIRST_BYTE_ID + b] !== bytePiece(b)) throw new Error(`llama2 vocabulary: piece ${FIRST_BYTE_ID + b} is not ${bytePiece(b)}`);
    types[FIRST_BYTE_ID + b] = PieceType.BYTE;
  }
  for (let i = FIRST_NORMAL_ID; i < n; i++) scores[i] = WHITESPACE_ONLY.test(pieces[i]) ? -1e9 : -(i - FIRST_NORMAL_ID);
  return {
    pieces,
    scores,
    types,
    normalizer: { ...LLAMA_NORMALIZER },
    byteFallback: true,
    unkSurface: SP_DEFAULTS.unkSurface,
    unkPiece: SP_DEFAULTS.unkPiece,
    bosPiece: SP_DEFAULTS.bosPiece,
    eosPiece: SP_DEFAULTS.eosPiece,
  };
}
