// response_format json_object / json_schema: the output is JSON (valid against the schema),
// enforced while decoding.
//
// A JsonRecognizer (json-schema.ts) follows the generated text character by character. A token
// is allowed when every character of its text keeps the text a prefix of some valid document;
// the engine samples as usual and only when the pick is refused masks all refused tokens and
// samples again. End of sequence is refused until the root value is closed, and then it is forced.
// Whitespace is limited to one space or newline in a row, so a model cannot pad forever.
//
// max_tokens still applies: a reply that runs out of tokens first ends with finish_reason
// "length" and its text is a prefix of a valid document, not a document (as OpenAI's API does).
import type { TokenConstraint } from '../engine/engine.ts';
import { PieceType, type Tokenizer } from '../tokenizer/index.ts';
import { badParam } from './errors.ts';
import { ANY_OBJECT_ROOT, compileSchema, JsonRecognizer, SchemaError, type SchemaNode } from './json-schema.ts';
import type { ResponseFormat } from './params.ts';

/** What a token adds to the output: text, a raw byte ≥ 0x80 (part of a multi-byte character), or null (control pieces: never allowed). */
type TokenText = string | number | null;

function tokenTexts(tok: Tokenizer, vocab: number): TokenText[] {
  const out: TokenText[] = [];
  for (let id = 0; id < Math.min(vocab, tok.vocabSize); id++) {
    const piece = tok.idToPiece(id);
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (m) {
      const b = parseInt(m[1], 16);
      out.push(b < 0x80 ? String.fromCharCode(b) : b);
    } else if (tok.table.types[id] !== PieceType.NORMAL && tok.table.types[id] !== PieceType.USER_DEFINED) out.push(null);
    else out.push(piece.replace(/\u2581/g, ' '));
  }
  return out;
}

/** Token ids grouped by what their text starts with (a character, or the byte): one check of it rules out a whole group. */
function groupByFirst(texts: TokenText[]): Map<string | number, number[]> {
  const g = new Map<string | number, number[]>();
  texts.forEach((t, id) => {
    if (t === null || t === '') return;
    const k = typeof t === 'number' ? t : String.fromCodePoint(t.codePointAt(0)!);
    let ids = g.get(k);
    if (!ids) g.set(k, (ids = []));
    ids.push(id);
  });
  return g;
}

const textsCache = new WeakMap<Tokenizer, { texts: TokenText[]; groups: Map<string | number, number[]> }>();

/** The output follows a compiled schema (any JSON object for json_object). */
export class JsonConstraint implements TokenConstraint {
  private r: JsonRecognizer;
  private readonly texts: TokenText[];
  private readonly groups: Map<string | number, number[]>;

  constructor(tok: Tokenizer, vocab: number, root: SchemaNode = ANY_OBJECT_ROOT) {
    let t = textsCache.get(tok);
    if (!t) {
      const texts = tokenTexts(tok, vocab);
      textsCache.set(tok, (t = { texts, groups: groupByFirst(texts) }));
    }
    this.texts = t.texts;
    this.groups = t.groups;
    this.r = new JsonRecognizer(root);
  }

  fill(allowed: Uint8Array): void {
    allowed.fill(0);
    for (const [first, ids] of this.groups) {
      if (!JsonConstraint.run(this.r.fork(), first)) continue;
      if (ids.length === 1) {
        allowed[ids[0]] = 1;
        continue;
      }
      for (const id of ids) if (JsonConstraint.run(this.r.fork(), this.texts[id])) allowed[id] = 1;
    }
  }

  private static run(r: JsonRecognizer, text: TokenText | undefined): boolean {
    if (text === undefined || text === null || text === '') return false;
    return typeof text === 'number' ? r.byte(text) : r.feed(text);
  }

  allows(token: number): boolean {
    return JsonConstraint.run(this.r.fork(), this.texts[token]);
  }

  accept(token: number): void {
    if (!JsonConstraint.run(this.r, this.texts[token])) throw new Error(`json constraint: token ${token} was accepted but does not continue the JSON`);
  }

  done(): boolean {
    return this.r.done();
  }
}

/** A checked response_format, ready to make one constraint per sequence. */
export interface CompiledFormat {
  constraint(): TokenConstraint;
}

/** Compiles a response_format once per request; a schema openelm cannot enforce is a 400 naming the keywords. */
export function compileFormat(tok: Tokenizer, format: ResponseFormat, vocab: number): CompiledFormat | null {
  if (format.type === 'text') return null;
  let root: SchemaNode = ANY_OBJECT_ROOT;
  if (format.type === 'json_schema') {
    try {
      root = compileSchema(format.schema);
    } catch (e) {
      if (e instanceof SchemaError)
        throw badParam('response_format', `response_format json_schema ${JSON.stringify(format.name)}: ${e.message}`, 'unsupported_schema');
      throw e;
    }
  }
  return { constraint: () => new JsonConstraint(tok, vocab, root) };
}
