// Tokens → text for one sequence, as `openelm generate` streams it: incremental decoding (never
// half a UTF-8 character), stop strings cut the text before them, and text that could still
// become the start of a stop string is held back until it cannot.
import { StreamDecoder, type Tokenizer } from '../tokenizer/index.ts';

export class TextTail {
  /** all text so far (cut before a stop string once one is found) */
  text = '';
  /** a stop string was found */
  stopped = false;
  private emitted = 0;
  private readonly decoder: StreamDecoder;
  private readonly stops: string[];
  private readonly holdBack: number;

  constructor(tok: Tokenizer, stops: readonly string[] = []) {
    this.decoder = new StreamDecoder(tok);
    this.stops = stops.filter((s) => s.length > 0);
    this.holdBack = this.stops.reduce((m, s) => Math.max(m, s.length - 1), 0);
  }

  /** Feeds a generated token; returns the text that became final (may be ""). */
  push(token: number): string {
    if (this.stopped) return '';
    this.text += this.decoder.push(token);
    const hit = firstStop(this.text, this.stops, this.emitted);
    if (hit >= 0) {
      this.text = this.text.slice(0, hit);
      this.stopped = true;
      return this.take(this.text.length);
    }
    return this.take(Math.max(this.emitted, this.text.length - this.holdBack));
  }

  /** The end of the sequence: returns what was held back. */
  flush(): string {
    if (!this.stopped) this.text += this.decoder.flush();
    return this.take(this.text.length);
  }

  private take(upTo: number): string {
    const s = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return s;
  }
}

/** Index of the earliest stop string in text that ends after `from`, or -1. */
export function firstStop(text: string, stops: readonly string[], from: number): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s, Math.max(0, from - s.length + 1));
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** A token as a string for log-probability listings: its piece with SentencePiece's "▁" as a space, byte pieces as their character when ASCII. */
export function tokenString(tok: Tokenizer, id: number): string {
  const piece = tok.idToPiece(id);
  const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (m) {
    const b = parseInt(m[1], 16);
    return b < 0x80 ? String.fromCharCode(b) : piece;
  }
  return piece.replace(/\u2581/g, ' ');
}
