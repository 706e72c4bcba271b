// response_format {"type": "json_object"}: the output is a JSON object, enforced while decoding.
//
// A character-level JSON recognizer (a pushdown automaton whose state is a few fields and the
// stack of open containers as a string, so copying it is cheap) follows the generated text. A
// token is allowed when every character of its text keeps the text a prefix of some JSON object;
// the engine samples as usual and only when the pick is refused masks all refused tokens and
// samples again. End of sequence is allowed once the object is closed, and then it is forced.
// Whitespace between tokens is limited to single spaces and newlines, so a model cannot pad
// forever.
import type { TokenConstraint } from '../engine/engine.ts';
import { PieceType, type Tokenizer } from '../tokenizer/index.ts';
import type { ResponseFormat } from './params.ts';
import { badParam } from './errors.ts';

const enum Mode { Value, Str, Num, Lit, After, KeyOrEnd, Key, Colon, Done }

interface State {
  mode: Mode;
  stack: string; // open containers: 'o' object, 'a' array
  esc: number; // in a string: 0 none, 1 after '\', 2..5 hex digits of \uXXXX still expected + 1
  isKey: boolean;
  num: string; // the number so far
  lit: string; // rest of true / false / null to come
  ws: number; // whitespace characters in a row
  first: boolean; // just opened a container (empty one may close)
}

const COMPLETE_NUM = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/;
const PARTIAL_NUM = /^-?(0|[1-9]\d*)?(\.\d*)?([eE][+-]?\d*)?$/;

/** Feeds one character; returns false when no JSON object can continue this way. */
function feed(s: State, c: string): boolean {
  switch (s.mode) {
    case Mode.Str:
      if (s.esc === 1) {
        if (c === 'u') { s.esc = 5; return true; }
        if ('"\\/bfnrt'.includes(c)) { s.esc = 0; return true; }
        return false;
      }
      if (s.esc > 1) {
        if (!/[0-9a-fA-F]/.test(c)) return false;
        s.esc = s.esc === 2 ? 0 : s.esc - 1;
        return true;
      }
      if (c === '\\') { s.esc = 1; return true; }
      if (c === '"') { s.mode = s.isKey ? Mode.Colon : Mode.After; s.ws = 0; return true; }
      return c >= ' ' && c !== '\u007f';
    case Mode.Num:
      if (/[-+0-9.eE]/.test(c) && PARTIAL_NUM.test(s.num + c)) { s.num += c; return true; }
      if (!COMPLETE_NUM.test(s.num)) return false;
      s.mode = Mode.After;
      s.ws = 0;
      return feed(s, c);
    case Mode.Lit:
      if (c !== s.lit[0]) return false;
      s.lit = s.lit.slice(1);
      if (s.lit === '') { s.mode = Mode.After; s.ws = 0; }
      return true;
    default:
      break;
  }
  if (c === ' ' || c === '\n') {
    if (s.ws >= 1) return false;
    s.ws++;
    return s.mode !== Mode.Done || true;
  }
  s.ws = 0;
  switch (s.mode) {
    case Mode.Value: {
      if (s.stack === '' && c !== '{') return false; // json_object: the top level is an object
      if (c === ']' && s.first && s.stack.endsWith('a')) { s.stack = s.stack.slice(0, -1); return close(s); }
      s.first = false;
      if (c === '{') { s.stack += 'o'; s.mode = Mode.KeyOrEnd; s.first = true; return true; }
      if (c === '[') { s.stack += 'a'; s.mode = Mode.Value; s.first = true; return true; }
      if (c === '"') { s.mode = Mode.Str; s.isKey = false; s.esc = 0; return true; }
      if (c === '-' || (c >= '0' && c <= '9')) { s.mode = Mode.Num; s.num = c; return true; }
      const lit = c === 't' ? 'rue' : c === 'f' ? 'alse' : c === 'n' ? 'ull' : null;
      if (lit === null) return false;
      s.mode = Mode.Lit;
      s.lit = lit;
      return true;
    }
    case Mode.KeyOrEnd:
      if (c === '}' && s.first) { s.stack = s.stack.slice(0, -1); return close(s); }
      if (c !== '"') return false;
      s.first = false;
      s.mode = Mode.Str; s.isKey = true; s.esc = 0;
      return true;
    case Mode.Key:
      if (c !== '"') return false;
      s.mode = Mode.Str; s.isKey = true; s.esc = 0;
      return true;
    case Mode.Colon:
      if (c !== ':') return false;
      s.mode = Mode.Value;
      return true;
    case Mode.After: {
      const top = s.stack[s.stack.length - 1];
      if (c === ',' && top) { s.mode = top === 'o' ? Mode.Key : Mode.Value; s.first = false; return true; }
      if ((c === '}' && top === 'o') || (c === ']' && top === 'a')) { s.stack = s.stack.slice(0, -1); return close(s); }
      return false;
    }
    default:
      return false; // Done: nothing but whitespace
  }
}

function close(s: State): boolean {
  s.mode = s.stack === '' ? Mode.Done : Mode.After;
  s.first = false;
  s.ws = 0;
  return true;
}

/** The text a token adds to the output, as the recognizer sees it (null: bytes of a multi-byte character, allowed only in strings). */
function tokenTexts(tok: Tokenizer, vocab: number): (string | null)[] {
  const out: (string | null)[] = [];
  for (let id = 0; id < Math.min(vocab, tok.vocabSize); id++) {
    const piece = tok.idToPiece(id);
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (m) { const b = parseInt(m[1], 16); out.push(b < 0x80 ? String.fromCharCode(b) : null); }
    else if (tok.table.types[id] !== PieceType.NORMAL && tok.table.types[id] !== PieceType.USER_DEFINED) out.push(''); // control / unknown pieces: refused below
    else out.push(piece.replace(/\u2581/g, ' '));
  }
  return out;
}

const textsCache = new WeakMap<Tokenizer, (string | null)[]>();

export class JsonObjectConstraint implements TokenConstraint {
  private s: State = { mode: Mode.Value, stack: '', esc: 0, isKey: false, num: '', lit: '', ws: 0, first: false };
  private readonly texts: (string | null)[];

  constructor(tok: Tokenizer, vocab: number) {
    let t = textsCache.get(tok);
    if (!t) textsCache.set(tok, (t = tokenTexts(tok, vocab)));
    this.texts = t;
  }

  private run(s: State, id: number): boolean {
    const text = this.texts[id];
    if (text === undefined || text === '') return false;
    if (text === null) return s.mode === Mode.Str && s.esc === 0;
    for (const c of text) if (!feed(s, c)) return false;
    return true;
  }

  allows(token: number): boolean {
    return this.run({ ...this.s }, token);
  }

  accept(token: number): void {
    if (!this.run(this.s, token)) throw new Error(`json constraint: token ${token} was accepted but does not continue the JSON`);
  }

  done(): boolean {
    return this.s.mode === Mode.Done;
  }
}

export function jsonConstraint(tok: Tokenizer, format: ResponseFormat, vocab: number): TokenConstraint {
  if (format.type === 'json_schema') {
    throw badParam('response_format', `response_format json_schema is not supported yet; use {"type": "json_object"} (the output is then always a JSON object)`);
  }
  return new JsonObjectConstraint(tok, vocab);
}
