// SentencePiece decoding (SentencePieceProcessor::Decode) as an incremental state machine, so
// `Tokenizer.decode` and `StreamDecoder` are the same code and cannot disagree.
//   - control pieces (<s>, </s>) decode to "" (or to their text with skipSpecial: false);
//   - UNK decodes to the unk surface " ⁇ ";
//   - "▁" becomes " "; while nothing has been written yet, the first piece loses one leading "▁"
//     (the dummy prefix). Once a piece has lost it, or any text exists, no later piece does;
//   - a run of consecutive byte pieces is read as UTF-8 one character at a time; each byte that
//     does not start a valid, complete, non-overlong, non-surrogate character becomes U+FFFD.
// Bytes of an unfinished character are held back until the next piece decides them.

import { SPACE_SYMBOL } from './normalize.ts';
import { bytePieceValue, type PieceTable, PieceType } from './pieces.ts';

const REPLACEMENT = '\uFFFD';

/** What a Tokenizer shares with its decoders: per-id surfaces, computed once. */
export interface DecodeTables {
  table: PieceTable;
  /** [vocabSize] byte value of BYTE pieces, -1 for others */
  byteValue: Int16Array;
  /** [vocabSize] surface of each piece with "▁" -> " " */
  surface: string[];
}

export function decodeTables(table: PieceTable): DecodeTables {
  const n = table.pieces.length;
  const byteValue = new Int16Array(n).fill(-1);
  const surface = new Array<string>(n);
  for (let id = 0; id < n; id++) {
    const p = table.pieces[id];
    if (table.types[id] === PieceType.BYTE) byteValue[id] = bytePieceValue(p);
    surface[id] = p.replaceAll(SPACE_SYMBOL, ' ');
  }
  return { table, byteValue, surface };
}

export class DecodeState {
  /** [<= 3] bytes of a character whose end has not arrived yet */
  private pending: number[] = [];
  /** SentencePiece's is_bos_ws: the next piece may still lose a leading "▁" */
  private isBosWs = true;
  /** the previous non-byte piece lost its leading "▁" */
  private bosWsSeen = false;
  private textEmpty = true;

  constructor(
    private readonly t: DecodeTables,
    private readonly skipSpecial = true,
  ) {}

  /** @returns text completed by this id, possibly "" */
  push(id: number): string {
    const { table, byteValue } = this.t;
    if (!Number.isInteger(id) || id < 0 || id >= table.pieces.length) {
      throw new Error(`decode: token id ${id} is out of range [0, ${table.pieces.length})`);
    }
    if (byteValue[id] >= 0) {
      this.pending.push(byteValue[id]);
      return this.drain(false);
    }
    const out = this.drain(true);
    if (this.bosWsSeen || !this.textEmpty) this.isBosWs = false;
    const type = table.types[id];
    let surface: string;
    if (type === PieceType.CONTROL) {
      surface = this.skipSpecial ? '' : table.pieces[id];
      this.bosWsSeen = false;
    } else if (type === PieceType.UNKNOWN) {
      surface = table.unkSurface;
      this.bosWsSeen = false;
    } else {
      surface = this.t.surface[id];
      const n = table.normalizer;
      this.bosWsSeen = false;
      if (this.isBosWs && (n.addDummyPrefix || n.removeExtraWhitespaces) && table.pieces[id].startsWith(SPACE_SYMBOL)) {
        surface = surface.slice(1);
        this.bosWsSeen = !n.removeExtraWhitespaces;
      }
    }
    if (surface.length > 0) this.textEmpty = false;
    return out + surface;
  }

  /** End of input: bytes still held are invalid (a character cut short). */
  flush(): string {
    return this.drain(true);
  }

  /** Emit every character of `pending` that is decided; `final` = no more bytes will follow. */
  private drain(final: boolean): string {
    const p = this.pending;
    let out = '';
    while (p.length > 0) {
      const b0 = p[0];
      const need = b0 < 0x80 ? 1 : (b0 & 0xe0) === 0xc0 ? 2 : (b0 & 0xf0) === 0xe0 ? 3 : (b0 & 0xf8) === 0xf0 ? 4 : 0;
      let ok = need > 0;
      for (let i = 1; ok && i < Math.min(need, p.length); i++) ok = (p[i] & 0xc0) === 0x80;
      if (ok && p.length < need) {
        if (!final) break; // could still complete
        ok = false;
      }
      let cp = -1;
      if (ok) {
        cp = need === 1 ? b0 : need === 2 ? b0 & 0x1f : need === 3 ? b0 & 0x0f : b0 & 0x07;
        for (let i = 1; i < need; i++) cp = (cp << 6) | (p[i] & 0x3f);
        const min = need === 1 ? 0 : need === 2 ? 0x80 : need === 3 ? 0x800 : 0x10000;
        ok = cp >= min && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff);
      }
      if (ok) {
        out += String.fromCodePoint(cp);
        p.splice(0, need);
      } else {
        out += REPLACEMENT;
        p.shift();
      }
    }
    if (out.length > 0) this.textEmpty = false;
    return out;
  }
}
