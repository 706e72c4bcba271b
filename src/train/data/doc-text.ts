// A document's text, read one piece at a time.
//
// CoreNet tokenizes a document in pieces ("texts") of `document_split_size` = 2048 words:
// general_lm.py, `_split_document_into_sequences`, splits on " " and re-joins each run of 2048
// words with " " (the space between two pieces is dropped). A piece here is the same run: it ends
// before the 2048th " " after its start, which the next piece skips. Splitting there changes no
// token: the LLaMA normalizer turns that space into the "▁" dummy prefix the next piece gets, and
// no LLaMA piece joins a word to the "▁" after it (test/train-data.test.ts checks on the corpus).
//
// So that memory stays bounded whatever the input (a 1 GB .txt file, text without spaces), a piece
// is also at most PIECE_CAP units long: past that it ends at the last " " inside the cap, or, with
// no space at all, at the cap itself (moved back to a character boundary). CoreNet has no such cap;
// only texts with words longer than ~30 characters on average ever reach it.
//
// Positions are document-relative: UTF-16 units for texts already in memory (JSON, Parquet, the
// built-in corpus), bytes for text files, which are read from disk a piece at a time.

/** CoreNet's dataset.language_modeling.general_lm.document_split_size default */
export const DOCUMENT_SPLIT_WORDS = 2048;
/** longest piece, in units (UTF-16 units or bytes) */
export const PIECE_CAP = 1 << 16;

export interface Piece {
  text: string;
  /** where the text ends: next - 1 when the piece ended at a space (dropped), else next */
  end: number;
  /** where the next piece starts; === the document's end after the last piece */
  next: number;
}

export interface DocText {
  /** [begin, end): the part of the document read (the whole of it, or one side of a held-out tail) */
  readonly begin: number;
  readonly end: number;
  /** the piece starting at `start` (begin ≤ start < end, or start === begin === end for an empty document) */
  piece(start: number): Piece;
  /** the first piece boundary at or after `pos`: just past the next " " (within PIECE_CAP), else `pos` at a character boundary */
  boundaryAfter(pos: number): number;
  /** the same document restricted to [begin, end) */
  slice(begin: number, end: number): DocText;
}

export class StringText implements DocText {
  constructor(
    private readonly text: string,
    readonly splitWords: number,
    readonly begin = 0,
    readonly end = text.length,
  ) {}

  piece(start: number): Piece {
    const s = this.text;
    const limit = Math.min(this.end, start + PIECE_CAP);
    let pos = start;
    let words = 0;
    let lastSpace = -1;
    for (;;) {
      const sp = s.indexOf(' ', pos);
      if (sp < 0 || sp >= limit) break;
      if (++words === this.splitWords) return { text: s.slice(start, sp), end: sp, next: sp + 1 };
      lastSpace = sp;
      pos = sp + 1;
    }
    if (limit === this.end) return { text: s.slice(start, limit), end: limit, next: limit };
    if (lastSpace >= 0) return { text: s.slice(start, lastSpace), end: lastSpace, next: lastSpace + 1 };
    let cut = limit;
    if (isHighSurrogate(s.charCodeAt(cut - 1))) cut--;
    return { text: s.slice(start, cut), end: cut, next: cut };
  }

  boundaryAfter(pos: number): number {
    const sp = this.text.indexOf(' ', pos);
    if (sp >= 0 && sp < Math.min(this.end, pos + PIECE_CAP)) return sp + 1;
    return pos > 0 && isHighSurrogate(this.text.charCodeAt(pos - 1)) ? pos - 1 : pos;
  }

  slice(begin: number, end: number): DocText {
    return new StringText(this.text, this.splitWords, begin, end);
  }
}

/** Reads [fileOffset + start, ...) of a file on demand; `read` fills `buf` from an absolute file position. */
export type ReadAt = (buf: Buffer, length: number, position: number) => number;

export class FileText implements DocText {
  constructor(
    private readonly readAt: ReadAt,
    /** where the document starts in the file */
    private readonly fileOffset: number,
    readonly splitWords: number,
    readonly begin: number,
    readonly end: number,
    /** [PIECE_CAP] scratch shared by the documents of one reader */
    private readonly buf: Buffer,
  ) {}

  /** bytes [start, start + n) of the document into buf[0..n) */
  private load(start: number, n: number): void {
    let got = 0;
    while (got < n) {
      const r = this.readAt(this.buf.subarray(got), n - got, this.fileOffset + start + got);
      if (r <= 0) throw new Error(`unexpected end of file at byte ${this.fileOffset + start + got} (was the file changed while training?)`);
      got += r;
    }
  }

  piece(start: number): Piece {
    const n = Math.min(this.end, start + PIECE_CAP) - start;
    const buf = this.buf;
    this.load(start, n);
    let pos = 0;
    let words = 0;
    let lastSpace = -1;
    for (;;) {
      const sp = buf.indexOf(0x20, pos);
      if (sp < 0 || sp >= n) break;
      if (++words === this.splitWords) return { text: buf.toString('utf8', 0, sp), end: start + sp, next: start + sp + 1 };
      lastSpace = sp;
      pos = sp + 1;
    }
    if (start + n === this.end) return { text: buf.toString('utf8', 0, n), end: this.end, next: this.end };
    if (lastSpace >= 0) return { text: buf.toString('utf8', 0, lastSpace), end: start + lastSpace, next: start + lastSpace + 1 };
    const cut = utf8Boundary(buf, n);
    return { text: buf.toString('utf8', 0, cut), end: start + cut, next: start + cut };
  }

  boundaryAfter(pos: number): number {
    const n = Math.min(this.end, pos + PIECE_CAP) - pos;
    if (n <= 0) return pos;
    this.load(pos, n);
    const sp = this.buf.indexOf(0x20, 0);
    if (sp >= 0 && sp < n) return pos + sp + 1;
    let cut = 0;
    while (cut < n && (this.buf[cut] & 0xc0) === 0x80) cut++;
    return pos + cut;
  }

  slice(begin: number, end: number): DocText {
    return new FileText(this.readAt, this.fileOffset, this.splitWords, begin, end, this.buf);
  }
}

/** the largest cut ≤ n of buf[0..n) that does not split a UTF-8 sequence (n itself if the last one is whole) */
function utf8Boundary(buf: Uint8Array, n: number): number {
  let i = n - 1;
  while (i > 0 && n - i < 4 && (buf[i] & 0xc0) === 0x80) i--;
  const lead = buf[i];
  const len = lead < 0x80 ? 1 : lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return i + len <= n ? n : i > 0 ? i : n;
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
