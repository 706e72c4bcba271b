// The piece table every vocabulary source is turned into: SentencePiece's ModelProto, reduced to
// what BPE encoding and decoding read. Three loaders (tokenizer.model, tokenizer.json, the npm
// vocabulary) build one of these; everything after that is source-independent.

/** SentencePiece's `SentencePiece.Type` enum, with the proto's own numbers. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceType = (typeof PieceType)[keyof typeof PieceType];

/** The normalizer flags SentencePiece applies before BPE (`NormalizerSpec`). */
export interface NormalizerFlags {
  /** prepend "▁" to non-empty input (LLaMA: true) */
  addDummyPrefix: boolean;
  /** drop leading/trailing spaces and collapse runs of spaces (LLaMA: false) */
  removeExtraWhitespaces: boolean;
  /** write " " as "▁" (U+2581) (LLaMA: true) */
  escapeWhitespaces: boolean;
}

export interface PieceTable {
  /** [vocabSize] piece text, id order */
  pieces: string[];
  /** [vocabSize] float32 scores; BPE merges the pair whose result has the highest score */
  scores: Float32Array;
  /** [vocabSize] PieceType per id */
  types: Uint8Array;
  normalizer: NormalizerFlags;
  /** unknown characters become their UTF-8 bytes as `<0xXX>` pieces instead of UNK */
  byteFallback: boolean;
  /** what UNK decodes to (SentencePiece default " ⁇ ") */
  unkSurface: string;
  /** piece texts of the special ids; resolved to ids by the Tokenizer */
  unkPiece: string;
  bosPiece: string;
  eosPiece: string;
}

/** SentencePiece's defaults for TrainerSpec fields a model file may leave out. */
export const SP_DEFAULTS = {
  unkSurface: ' \u2047 ',
  unkPiece: '<unk>',
  bosPiece: '<s>',
  eosPiece: '</s>',
} as const;

/** The LLaMA-2 normalizer: identity, dummy prefix, spaces as "▁". */
export const LLAMA_NORMALIZER: NormalizerFlags = {
  addDummyPrefix: true,
  removeExtraWhitespaces: false,
  escapeWhitespaces: true,
};

/** `<0x41>` -> 0x41, anything else -> -1. */
export function bytePieceValue(piece: string): number {
  if (piece.length !== 6 || !piece.startsWith('<0x') || piece[5] !== '>') return -1;
  const hex = piece.slice(3, 5);
  return /^[0-9A-F]{2}$/.test(hex) ? parseInt(hex, 16) : -1;
}

/** 0x41 -> `<0x41>` (upper-case hex, as SentencePiece writes them). */
export function bytePiece(byte: number): string {
  return `<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`;
}
