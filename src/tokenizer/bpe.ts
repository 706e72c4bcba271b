// SentencePiece BPE encoding (bpe_model.cc), O(n log n):
//   1. split the normalized text into symbols: user-defined pieces (longest match) or one code point;
//   2. keep a heap of adjacent pairs whose concatenation is a piece (normal, user-defined or
//      unused), keyed by that piece's score; pop the best (leftmost on ties), merge, and push the
//      two new neighbour pairs. Stale entries are skipped by length, as SentencePiece does;
//   3. unused pieces are split back into what built them; each symbol becomes its id, or, if it
//      is not a piece, its UTF-8 bytes as <0xXX> pieces (byte fallback) or UNK (one per run).
import { PairHeap } from './pair-heap.ts';
import { bytePiece, type PieceTable, PieceType } from './pieces.ts';

const utf8 = new TextEncoder();

export class BpeModel {
  /** piece text -> id, every piece */
  readonly idOf = new Map<string, number>();
  /** [256] id of `<0xXX>`, -1 if absent */
  private readonly byteIds = new Int32Array(256).fill(-1);
  /** user-defined pieces by first UTF-16 unit, longest first */
  private readonly userDefined = new Map<string, string[]>();
  /** longest mergeable piece in UTF-16 units: longer concatenations need no lookup */
  private readonly maxPieceLength: number;
  private readonly unkId: number;

  constructor(
    private readonly table: PieceTable,
    source: string,
  ) {
    const { pieces, types } = table;
    let maxLen = 0;
    let unkId = -1;
    for (let id = 0; id < pieces.length; id++) {
      const p = pieces[id];
      if (this.idOf.has(p)) throw new Error(`${source}: piece ${JSON.stringify(p)} appears twice (ids ${this.idOf.get(p)} and ${id})`);
      this.idOf.set(p, id);
      const t = types[id];
      if (t === PieceType.NORMAL || t === PieceType.USER_DEFINED || t === PieceType.UNUSED) maxLen = Math.max(maxLen, p.length);
      if (t === PieceType.UNKNOWN && unkId < 0) unkId = id;
      if (t === PieceType.USER_DEFINED) {
        const list = this.userDefined.get(p[0]) ?? [];
        list.push(p);
        list.sort((a, b) => b.length - a.length);
        this.userDefined.set(p[0], list);
      }
    }
    if (unkId < 0) throw new Error(`${source}: no piece of type UNKNOWN`);
    this.unkId = unkId;
    this.maxPieceLength = maxLen;
    if (table.byteFallback) {
      for (let b = 0; b < 256; b++) {
        const id = this.idOf.get(bytePiece(b));
        if (id === undefined || types[id] !== PieceType.BYTE) {
          throw new Error(`${source}: byte fallback is on but piece ${bytePiece(b)} is missing or not of type BYTE`);
        }
        this.byteIds[b] = id;
      }
    }
  }

  /** id of a piece that a pair may merge into, or -1 */
  private mergeable(piece: string): number {
    const id = this.idOf.get(piece);
    if (id === undefined) return -1;
    const t = this.table.types[id];
    return t === PieceType.NORMAL || t === PieceType.USER_DEFINED || t === PieceType.UNUSED ? id : -1;
  }

  /**
   * A lower bound on encode(s).length, in O(1): every symbol left after merging spans at most
   * max(maxPieceLength, 2) UTF-16 units of s (one code point, a user-defined piece or a merged
   * one) and becomes at least one token, except that without byte fallback a run of unknown
   * symbols becomes one UNK. For turning away text far too long for a context before spending
   * the BPE's time on it. @param s normalized text
   */
  minTokens(s: string): number {
    if (s.length === 0) return 0;
    return this.table.byteFallback ? Math.ceil(s.length / Math.max(this.maxPieceLength, 2)) : 1;
  }

  /** @param s normalized text (see normalize.ts) @returns token ids, no BOS/EOS */
  encode(s: string): number[] {
    if (s.length === 0) return [];
    const n = s.length; // upper bound on symbol count
    // per symbol: [start, end) in s, neighbours (-1 = none), frozen = user-defined (never merges)
    const start = new Int32Array(n);
    const end = new Int32Array(n);
    const prev = new Int32Array(n);
    const next = new Int32Array(n);
    const frozen = new Uint8Array(n);
    let count = 0;
    for (let pos = 0; pos < n; ) {
      let len = 0;
      const candidates = this.userDefined.size > 0 ? this.userDefined.get(s[pos]) : undefined;
      if (candidates) {
        const match = candidates.find((p) => s.startsWith(p, pos));
        if (match) {
          len = match.length;
          frozen[count] = 1;
        }
      }
      if (len === 0) len = s.codePointAt(pos)! > 0xffff ? 2 : 1;
      start[count] = pos;
      end[count] = pos + len;
      prev[count] = count - 1;
      next[count] = pos + len < n ? count + 1 : -1;
      count++;
      pos += len;
    }

    const heap = new PairHeap(3 * count + 1);
    const { scores, types } = this.table;
    // merged unused piece -> the two pieces that built it (SentencePiece's rev_merge)
    let revMerge: Map<string, [string, string]> | undefined;
    const tryPair = (left: number, right: number): void => {
      if (left < 0 || right < 0 || frozen[left] || frozen[right]) return;
      const size = end[right] - start[left];
      if (size > this.maxPieceLength) return;
      const piece = s.slice(start[left], end[right]);
      const id = this.mergeable(piece);
      if (id < 0) return;
      heap.push(scores[id], left, right, size);
      if (types[id] === PieceType.UNUSED) {
        revMerge ??= new Map();
        revMerge.set(piece, [s.slice(start[left], end[left]), s.slice(start[right], end[right])]);
      }
    };
    for (let i = 0; i + 1 < count; i++) tryPair(i, i + 1);

    while (heap.length > 0) {
      const e = heap.pop();
      const left = heap.left[e];
      const right = heap.right[e];
      const lenL = end[left] - start[left];
      const lenR = end[right] - start[right];
      // stale: one side was merged away or grew since this pair was pushed
      if (lenL === 0 || lenR === 0 || lenL + lenR !== heap.size[e]) continue;
      end[left] = end[right];
      next[left] = next[right];
      if (next[right] >= 0) prev[next[right]] = left;
      end[right] = start[right]; // empty = merged away
      tryPair(prev[left], left);
      tryPair(left, next[left]);
    }

    const ids: number[] = [];
    let prevUnk = false; // without byte fallback, a run of unknown symbols becomes one UNK
    const emit = (w: string): void => {
      const id = this.idOf.get(w);
      if (id !== undefined && types[id] === PieceType.UNUSED && revMerge?.has(w)) {
        const [a, b] = revMerge.get(w)!;
        emit(a);
        emit(b);
      } else if (id !== undefined && id !== this.unkId) {
        ids.push(id);
        prevUnk = false;
      } else if (this.table.byteFallback) for (const b of utf8.encode(w)) ids.push(this.byteIds[b]);
      else {
        if (!prevUnk) ids.push(this.unkId);
        prevUnk = true;
      }
    };
    for (let i = 0; i >= 0; i = next[i]) emit(s.slice(start[i], end[i]));
    return ids;
  }
}
