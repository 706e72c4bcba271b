// The default vocabulary: LLaMA-2's 32000 pieces and HF merges shipped by the npm package
// `llama-tokenizer-js`, so the tokenizer works without the gated meta-llama download.
// The package exposes `vocabById` (piece text by id) and `merges` (Map "left right" -> 2*rank+1).
// It is imported lazily: building its tables costs ~100 ms and ~1 MB of source.
import { LLAMA_NORMALIZER, type PieceTable, PieceType, SP_DEFAULTS, bytePiece } from './pieces.ts';
import { scoresFromMerges } from './scores-from-merges.ts';

const SOURCE = 'llama-tokenizer-js';
// LLaMA-2 layout: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then normal pieces
const NUM_BYTES = 256;
const FIRST_BYTE_ID = 3;

/** The LLaMA-2 piece table built from the npm package's data. */
export async function npmPieceTable(): Promise<PieceTable> {
  const mod = await import('llama-tokenizer-js');
  const { vocabById, merges } = mod.default;
  return pieceTableFromLlamaData(vocabById, merges);
}

/**
 * @param vocabById [32000] piece text by id
 * @param merges "left right" -> priority; lower priority merges first
 */
export function pieceTableFromLlamaData(vocabById: readonly string[], merges: ReadonlyMap<string, number>): PieceTable {
  const n = vocabById.length;
  if (n !== 32000) throw new Error(`${SOURCE}: vocabById has ${n} pieces, expected 32000`);
  const expectSpecial = ['<unk>', '<s>', '</s>'];
  expectSpecial.forEach((p, i) => {
    if (vocabById[i] !== p) throw new Error(`${SOURCE}: vocabById[${i}] is ${JSON.stringify(vocabById[i])}, expected "${p}"`);
  });
  const types = new Uint8Array(n).fill(PieceType.NORMAL);
  types[0] = PieceType.UNKNOWN;
  types[1] = types[2] = PieceType.CONTROL;
  for (let b = 0; b < NUM_BYTES; b++) {
    const id = FIRST_BYTE_ID + b;
    if (vocabById[id] !== bytePiece(b)) {
      throw new Error(`${SOURCE}: vocabById[${id}] is ${JSON.stringify(vocabById[id])}, expected "${bytePiece(b)}"`);
    }
    types[id] = PieceType.BYTE;
  }

  // merges in rank order -> the piece each one builds
  const ranked = [...merges].sort((a, b) => a[1] - b[1]);
  const mergedPieces = ranked.map(([key]) => {
    const space = key.indexOf(' ');
    if (space <= 0 || key.indexOf(' ', space + 1) >= 0) throw new Error(`${SOURCE}: malformed merge key ${JSON.stringify(key)}`);
    return key.slice(0, space) + key.slice(space + 1);
  });

  return {
    pieces: vocabById.slice(),
    scores: scoresFromMerges(vocabById, types, mergedPieces, SOURCE),
    types,
    normalizer: { ...LLAMA_NORMALIZER },
    byteFallback: true,
    unkSurface: SP_DEFAULTS.unkSurface,
    unkPiece: SP_DEFAULTS.unkPiece,
    bosPiece: SP_DEFAULTS.bosPiece,
    eosPiece: SP_DEFAULTS.eosPiece,
  };
}
