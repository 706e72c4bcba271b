// The documents of one split, read in a given order, tokenized on the fly and cut into rows of
// seqLen + 1 tokens (inputs = row[:-1], targets = row[1:]). Everything a row depends on is a pure
// function of (epoch, document, piece, token, carry), which is the cursor's whole position: a
// restored position continues the stream bit for bit.
//
// Each text is NFC-normalized (CoreNet: ftfy NFC), filtered (filters.ts), tokenized without
// BOS/EOS, and framed BOS + text + EOS (CoreNet's recipes set append_sot_token/append_eot_token).
//
// truncate-and-pad (CoreNet, base_lm.py `_tokenize_text`): every piece of DOCUMENT_SPLIT_WORDS words
//   (doc-text.ts) is one CoreNet "text": dropped if its processed length < minChars or if
//   BOS + tokens + EOS < minTokens; else its first seqLen + 1 tokens are one row, padded. Pad
//   inputs hold PAD_ID; targets that are pads are IGNORE. The rest of the piece is discarded.
// packing: every document is BOS + all its pieces' tokens + EOS, the filters applied to the whole
//   document; documents follow each other in one stream, and row k is stream[k·S, k·S + S]: a
//   row's last token starts the next row (it is a target once, then an input), so every token
//   after the first is predicted exactly once and nothing is padded. Attention is not masked at
//   document boundaries (EOS, BOS separate them), as in GPT-style packing.
import { type Batch, IGNORE } from '../options.ts';
import type { Corpus } from './corpus.ts';
import type { DocText } from './doc-text.ts';
import { processedLength } from './filters.ts';

/** The input id at pad positions. No LLaMA id is a pad (CoreNet adds id 32000 for it); <unk> (0)
 *  is a valid embedding row, and pad positions only ever precede IGNORE targets, so it is never learned from. */
export const PAD_ID = 0;

export interface CursorConfig {
  seqLen: number;
  packing: boolean;
  minChars: number;
  minTokens: number;
  bos: number;
  eos: number;
  /** apply the filters (false for the held-out tail of a single document, which passed them as a whole) */
  filter: boolean;
}

export interface CursorPosition {
  epoch: number;
  /** index into the epoch's order of the document being read */
  doc: number;
  /** packing: start of the piece being consumed; truncate: start of the next piece; -1: the document is not open */
  piece: number;
  /** packing: tokens of that piece (with its BOS/EOS) already taken */
  token: number;
  /** packing: the last token of the previous row, the first of the next; -1 at the start */
  carry: number;
}

export interface CursorCounters {
  /** documents (packing) or texts (truncate) that passed the filters */
  documents: number;
  /** dropped by the character filter, by the token filter */
  filteredChars: number;
  filteredTokens: number;
  /** tokens read from the corpus into rows, BOS/EOS included (packing: each once) */
  tokens: number;
  rows: number;
  /** pad positions written */
  padded: number;
}

export const zeroCounters = (): CursorCounters => ({ documents: 0, filteredChars: 0, filteredTokens: 0, tokens: 0, rows: 0, padded: 0 });

interface Unit {
  start: number;
  next: number;
  /** BOS (first piece) + text tokens + EOS (last piece) */
  tokens: number[];
}

export type Encode = (text: string) => number[];

export class RowCursor {
  readonly counters = zeroCounters();
  private epoch = 0;
  private order: Uint32Array | null;
  private pos = 0;
  /** the open document (null: not opened yet) */
  private text: DocText | null = null;
  // packing
  private unit: Unit | null = null;
  private tokenPos = 0;
  private pending: Unit[] = [];
  private carry = -1;
  // truncate
  private nextPiece = 0;
  /** documents (packing) or rows (truncate) of this epoch so far, and whether it was read from its start */
  private admitted = 0;
  private wholeEpoch = true;

  /**
   * @param orderFor the documents of epoch e in reading order, or null when the split is read once and e > 0
   * @param view what part of an opened document to read (all of it, or one side of a held-out tail)
   * @param emptyError the error to throw when no document passes the filters (null: a read-once split just ends)
   */
  constructor(
    private readonly corpus: Corpus,
    private readonly encode: Encode,
    private readonly cfg: CursorConfig,
    private readonly orderFor: (epoch: number) => Uint32Array | null,
    private readonly view: (doc: DocText) => DocText,
    private readonly emptyError: ((c: CursorCounters) => Error) | null,
  ) {
    this.order = orderFor(0);
  }

  /** Writes the next row into inputs/targets[at, at + seqLen). @returns false at the end of a read-once split */
  nextRow(inputs: Int32Array, targets: Int32Array, at: number): boolean {
    return this.cfg.packing ? this.packedRow(inputs, targets, at) : this.truncatedRow(inputs, targets, at);
  }

  position(): CursorPosition {
    if (this.cfg.packing) {
      return { epoch: this.epoch, doc: this.pos, piece: this.unit ? this.unit.start : -1, token: this.unit ? this.tokenPos : 0, carry: this.carry };
    }
    return { epoch: this.epoch, doc: this.pos, piece: this.text ? this.nextPiece : -1, token: 0, carry: -1 };
  }

  seek(p: CursorPosition): void {
    const bad = (what: string) => new Error(`data state does not fit this corpus: ${what}`);
    for (const k of ['epoch', 'doc', 'piece', 'token', 'carry'] as const) {
      if (!Number.isInteger(p[k])) throw bad(`${k} = ${p[k]} is not an integer`);
    }
    this.epoch = p.epoch;
    this.order = this.orderFor(p.epoch);
    if (!this.order || p.doc < 0 || p.doc > this.order.length) throw bad(`document ${p.doc} of epoch ${p.epoch}`);
    this.pos = p.doc;
    this.pending = [];
    this.admitted = 0;
    this.wholeEpoch = p.doc === 0 && p.piece < 0;
    this.text = null;
    this.unit = null;
    this.tokenPos = 0;
    this.carry = this.cfg.packing ? p.carry : -1;
    if (p.piece < 0) return;
    if (p.doc === this.order.length) throw bad(`piece ${p.piece} past the last document`);
    this.text = this.view(this.corpus.open(this.order[p.doc]));
    if (p.piece < this.text.begin || p.piece > this.text.end) throw bad(`piece ${p.piece} outside the document [${this.text.begin}, ${this.text.end})`);
    if (this.cfg.packing) {
      this.unit = this.readUnit(p.piece);
      if (p.token < 0 || p.token > this.unit.tokens.length) throw bad(`token ${p.token} of a ${this.unit.tokens.length}-token piece`);
      this.tokenPos = p.token;
    } else {
      this.nextPiece = p.piece;
    }
  }

  // ---- packing ----

  private packedRow(inputs: Int32Array, targets: Int32Array, at: number): boolean {
    const S = this.cfg.seqLen;
    const first = this.carry >= 0 ? this.carry : this.take();
    if (first < 0) return false;
    inputs[at] = first;
    let k = 1; // tokens of the row so far: row[0..k)
    for (; k <= S; k++) {
      const t = this.take();
      if (t < 0) break;
      if (k < S) inputs[at + k] = t;
      targets[at + k - 1] = t;
    }
    if (k <= S) {
      // the end of a read-once split: pad the rest
      this.carry = -1;
      if (k === 1) return false;
      for (let i = k; i < S; i++) inputs[at + i] = PAD_ID;
      for (let i = k - 1; i < S; i++) targets[at + i] = IGNORE;
      this.counters.padded += S + 1 - k;
    } else {
      this.carry = targets[at + S - 1];
    }
    this.counters.rows++;
    return true;
  }

  /** the next token of the stream, or -1 at the end of a read-once split */
  private take(): number {
    while (!this.unit || this.tokenPos >= this.unit.tokens.length) {
      if (!this.advance()) return -1;
    }
    this.counters.tokens++;
    return this.unit.tokens[this.tokenPos++];
  }

  /** moves to the next piece of the document, or to the next document that passes the filters */
  private advance(): boolean {
    if (this.unit && this.unit.next < this.text!.end) {
      this.setUnit(this.pending.shift() ?? this.readUnit(this.unit.next));
      return true;
    }
    if (this.unit) {
      this.unit = null;
      this.text = null;
      this.pos++;
    }
    for (;;) {
      if (!this.ensureOrder()) return false;
      const first = this.admit(this.order![this.pos]);
      if (first) {
        this.admitted++;
        this.setUnit(first);
        return true;
      }
      this.text = null;
      this.pos++;
    }
  }

  private setUnit(u: Unit): void {
    this.unit = u;
    this.tokenPos = 0;
  }

  /** Opens a document and applies the filters to it as a whole, reading (and keeping) only as many
   *  pieces as they need. @returns its first piece, or null if it is dropped */
  private admit(doc: number): Unit | null {
    const text = (this.text = this.view(this.corpus.open(doc)));
    const { minChars, minTokens, filter } = this.cfg;
    const texts: { start: number; next: number; text: string }[] = [];
    let p = text.begin;
    let whole = false; // every piece has been read
    const read = () => {
      const piece = text.piece(p);
      const t = { start: p, next: piece.next, text: piece.text.normalize('NFC') };
      whole = piece.next >= text.end;
      p = piece.next;
      return t;
    };
    if (filter && minChars > 0) {
      let chars = 0;
      while (chars < minChars && !whole) {
        const t = read();
        texts.push(t);
        chars += processedLength(t.text, minChars - chars);
      }
      if (chars < minChars) {
        this.counters.filteredChars++;
        return null;
      }
    }
    const units = texts.map((t) => this.unitOf(t.start, t.next, t.text));
    let tokens = units.reduce((n, u) => n + u.tokens.length, 0);
    if (units.length === 0 || (filter && tokens < minTokens)) {
      while ((units.length === 0 || (filter && tokens < minTokens)) && !whole) {
        const t = read();
        const u = this.unitOf(t.start, t.next, t.text);
        units.push(u);
        tokens += u.tokens.length;
      }
      if (filter && tokens < minTokens) {
        this.counters.filteredTokens++;
        return null;
      }
    }
    this.counters.documents++;
    this.pending = units.slice(1);
    return units[0];
  }

  private readUnit(start: number): Unit {
    const piece = this.text!.piece(start);
    return this.unitOf(start, piece.next, piece.text.normalize('NFC'));
  }

  private unitOf(start: number, next: number, nfcText: string): Unit {
    const tokens = this.encode(nfcText);
    if (start === this.text!.begin) tokens.unshift(this.cfg.bos);
    if (next >= this.text!.end) tokens.push(this.cfg.eos);
    return { start, next, tokens };
  }

  // ---- truncate-and-pad ----

  private truncatedRow(inputs: Int32Array, targets: Int32Array, at: number): boolean {
    for (;;) {
      if (!this.text) {
        if (!this.ensureOrder()) return false;
        this.text = this.view(this.corpus.open(this.order![this.pos]));
        this.nextPiece = this.text.begin;
      }
      const piece = this.text.piece(this.nextPiece);
      this.nextPiece = piece.next;
      if (piece.next >= this.text.end) {
        this.text = null;
        this.pos++;
      }
      if (this.truncatedSample(piece.text, inputs, targets, at)) {
        this.admitted++;
        return true;
      }
    }
  }

  /** one CoreNet text as a row, unless a filter drops it */
  private truncatedSample(text: string, inputs: Int32Array, targets: Int32Array, at: number): boolean {
    const { seqLen: S, minChars, minTokens, filter, bos, eos } = this.cfg;
    const nfc = text.normalize('NFC');
    if (filter && minChars > 0 && processedLength(nfc, minChars) < minChars) {
      this.counters.filteredChars++;
      return false;
    }
    const { ids, complete } = encodePrefix(this.encode, nfc, Math.max(S, minTokens - 2));
    if (filter && complete && ids.length + 2 < minTokens) {
      this.counters.filteredTokens++;
      return false;
    }
    // the sample: BOS + ids + EOS, its first S + 1 tokens
    const n = Math.min(S + 1, complete ? ids.length + 2 : S + 1);
    const tok = (i: number) => (i === 0 ? bos : i <= ids.length ? ids[i - 1] : eos);
    for (let i = 0; i < S; i++) {
      inputs[at + i] = i < n ? tok(i) : PAD_ID;
      targets[at + i] = i + 1 < n ? tok(i + 1) : IGNORE;
    }
    this.counters.documents++;
    this.counters.rows++;
    this.counters.tokens += n;
    this.counters.padded += S + 1 - n;
    return true;
  }

  // ---- order ----

  /** pos points at a document of the current epoch (moving to the next epoch if needed); false at the end of a read-once split */
  private ensureOrder(): boolean {
    if (this.order && this.pos < this.order.length) return true;
    if (!this.order) return false;
    // a whole epoch without a row: nothing passes the filters
    if (this.emptyError && this.wholeEpoch && this.admitted === 0) throw this.emptyError(this.counters);
    this.admitted = 0;
    this.wholeEpoch = true;
    this.epoch++;
    this.pos = 0;
    this.order = this.orderFor(this.epoch);
    return this.order !== null && this.order.length > 0;
  }
}

/**
 * Tokens of the start of `text`, at least `need` + 16 of them if it has that many: the text is cut
 * at a space (which changes no token before the cut, see doc-text.ts), so that truncate-and-pad
 * does not tokenize the ~10x longer rest of a piece it throws away. @returns complete: all of `text`
 */
export function encodePrefix(encode: Encode, text: string, need: number): { ids: number[]; complete: boolean } {
  const want = need + 16;
  for (let len = want * 6; ; len *= 2) {
    if (len >= text.length) return { ids: encode(text), complete: true };
    const cut = text.lastIndexOf(' ', len);
    if (cut <= 0) return { ids: encode(text), complete: true };
    const ids = encode(text.slice(0, cut));
    if (ids.length >= want) return { ids, complete: false };
  }
}

/** A batch of `rows` rows of seqLen tokens, zeroed (inputs PAD_ID, targets IGNORE). */
export function emptyBatch(rows: number, seqLen: number): Batch {
  return { batchSize: rows, seqLen, inputs: new Int32Array(rows * seqLen).fill(PAD_ID), targets: new Int32Array(rows * seqLen).fill(IGNORE) };
}
