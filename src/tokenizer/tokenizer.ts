// The Tokenizer: text <-> token ids, id-for-id identical to SentencePiece for a BPE PieceTable.
//
//   const tok = await defaultTokenizer();
//   tok.encode('Hello world', { bos: true });   // [1, 15043, 3186]
//   tok.decode([1, 15043, 3186]);                // "Hello world"
import { BpeModel } from './bpe.ts';
import { DecodeState, type DecodeTables, decodeTables } from './decoder.ts';
import { normalize } from './normalize.ts';
import { type PieceTable, PieceType } from './pieces.ts';

export interface EncodeOptions {
  /** prepend BOS (`<s>`, id 1 for LLaMA); default false */
  bos?: boolean;
  /** append EOS (`</s>`, id 2 for LLaMA); default false */
  eos?: boolean;
}

export interface DecodeOptions {
  /** control pieces (BOS/EOS) decode to nothing, as in SentencePiece; default true. false writes their text. */
  skipSpecial?: boolean;
}

export class Tokenizer {
  readonly vocabSize: number;
  /** -1 if the vocabulary has no such control piece */
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  private readonly bpe: BpeModel;
  private decodeTablesCache?: DecodeTables;

  /**
   * @param table the vocabulary, from one of the loaders
   * @param source where it came from, for error messages
   */
  constructor(
    readonly table: PieceTable,
    readonly source = 'tokenizer',
  ) {
    this.bpe = new BpeModel(table, source);
    this.vocabSize = table.pieces.length;
    this.unkId = table.types.indexOf(PieceType.UNKNOWN);
    this.bosId = this.controlId(table.bosPiece);
    this.eosId = this.controlId(table.eosPiece);
  }

  private controlId(piece: string): number {
    const id = this.bpe.idOf.get(piece);
    return id !== undefined && this.table.types[id] === PieceType.CONTROL ? id : -1;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode: text must be a string, got ${typeof text}`);
    const ids = this.bpe.encode(normalize(text, this.table.normalizer));
    if (opts.bos) {
      if (this.bosId < 0) throw new Error(`encode: bos requested but ${this.source} has no control piece "${this.table.bosPiece}"`);
      ids.unshift(this.bosId);
    }
    if (opts.eos) {
      if (this.eosId < 0) throw new Error(`encode: eos requested but ${this.source} has no control piece "${this.table.eosPiece}"`);
      ids.push(this.eosId);
    }
    return ids;
  }

  /**
   * A lower bound on `encode(text).length` (no BOS / EOS) without encoding: linear in the text,
   * far cheaper than the BPE, for turning away a text too long for a context at once
   * (with byte fallback, as LLaMA-2's tokenizer has, the text's length over the longest piece's).
   */
  minTokens(text: string): number {
    return this.bpe.minTokens(normalize(text, this.table.normalizer));
  }

  decode(ids: ArrayLike<number>, opts: DecodeOptions = {}): string {
    const state = this.decoderState(opts.skipSpecial ?? true);
    const parts: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new Error(`decode: token id ${id} at position ${i} is out of range [0, ${this.vocabSize})`);
      }
      parts.push(state.push(id));
    }
    parts.push(state.flush());
    return parts.join('');
  }

  /** A fresh decoding state machine (used by StreamDecoder). */
  decoderState(skipSpecial = true): DecodeState {
    this.decodeTablesCache ??= decodeTables(this.table);
    return new DecodeState(this.decodeTablesCache, skipSpecial);
  }

  idToPiece(id: number): string {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(`idToPiece: token id ${id} is out of range [0, ${this.vocabSize})`);
    }
    return this.table.pieces[id];
  }

  pieceToId(piece: string): number | undefined {
    return this.bpe.idOf.get(piece);
  }
}
