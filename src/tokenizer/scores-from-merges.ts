// Recover SentencePiece scores from a Hugging Face-style merges list.
//
// The LLaMA tokenizer.model gives normal piece i the score -(i - firstNormal), except the
// whitespace-only pieces ("▁", "▁▁", ... 16 of them), which score -1e9 so they merge last.
// HF's converter lists merges sorted by the score of the merged piece, so:
//   - for ordinary pieces the first merge that builds them appears in id order;
//   - the -1e9 pieces are built only by merges in a tail at the very end, out of id order.
// We find that tail (pieces whose first merge rank is larger than that of some higher id), check
// it really is a tail (every tail rank after every ordinary rank), and add the single character
// the tail pieces are all made of ("▁"), which no merge builds but which shares their score.
// If merges are not in that shape we fall back to score = -rank, HF's own priority.
import { PieceType } from './pieces.ts';

export const LAST_MERGE_SCORE = -1e9;

/**
 * @param pieces [vocabSize] piece text by id
 * @param types [vocabSize] PieceType by id
 * @param mergedPieces the merged piece of each merge, in rank order (rank 0 first)
 * @param source file/package name for error messages
 */
export function scoresFromMerges(pieces: readonly string[], types: Uint8Array, mergedPieces: Iterable<string>, source: string): Float32Array {
  const n = pieces.length;
  const idOf = new Map<string, number>();
  pieces.forEach((p, i) => idOf.set(p, i));

  // [vocabSize] rank of the first merge that produces each piece, -1 if none
  const firstRank = new Int32Array(n).fill(-1);
  let rank = 0;
  for (const merged of mergedPieces) {
    const id = idOf.get(merged);
    if (id === undefined) throw new Error(`${source}: merge #${rank} produces "${merged}", which is not in the vocabulary`);
    if (firstRank[id] < 0) firstRank[id] = rank;
    rank++;
  }
  const numMerges = rank;

  let firstNormal = -1;
  for (let i = 0; i < n && firstNormal < 0; i++) if (types[i] === PieceType.NORMAL) firstNormal = i;

  // tail = merged pieces built later than some higher id
  const tail = new Uint8Array(n);
  let minRankAbove = Infinity;
  let maxOrdinaryRank = -1;
  let minTailRank = Infinity;
  for (let i = n - 1; i >= 0; i--) {
    const r = firstRank[i];
    if (r < 0 || types[i] !== PieceType.NORMAL) continue;
    if (r > minRankAbove) {
      tail[i] = 1;
      minTailRank = Math.min(minTailRank, r);
    } else minRankAbove = r;
  }
  for (let i = 0; i < n; i++) if (firstRank[i] >= 0 && !tail[i]) maxOrdinaryRank = Math.max(maxOrdinaryRank, firstRank[i]);

  const scores = new Float32Array(n);
  if (maxOrdinaryRank < minTailRank) {
    for (let i = 0; i < n; i++) if (types[i] === PieceType.NORMAL) scores[i] = tail[i] ? LAST_MERGE_SCORE : -(i - firstNormal);
    const unit = tailUnit(pieces, tail);
    if (unit !== undefined) {
      const id = idOf.get(unit);
      if (id !== undefined && types[id] === PieceType.NORMAL) scores[id] = LAST_MERGE_SCORE;
    }
  } else {
    // not SentencePiece-shaped: earlier merge = higher score; never-built pieces after all merges
    for (let i = 0; i < n; i++) {
      if (types[i] === PieceType.NORMAL) scores[i] = firstRank[i] >= 0 ? -firstRank[i] : -(numMerges + i);
    }
  }
  return scores;
}

/** If every tail piece is one character repeated, that character. */
function tailUnit(pieces: readonly string[], tail: Uint8Array): string | undefined {
  let unit: string | undefined;
  for (let i = 0; i < pieces.length; i++) {
    if (!tail[i]) continue;
    const chars = Array.from(pieces[i]);
    if (unit === undefined) unit = chars[0];
    if (!chars.every((c) => c === unit)) return undefined;
  }
  return unit;
}
