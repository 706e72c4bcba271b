// tokenizer.json (Hugging Face `tokenizers`) -> PieceTable, for LLaMA-style BPE files:
// model.type "BPE" with vocab {piece: id}, merges ("a b" or ["a", "b"]), byte_fallback, and
// either the legacy normalizer [Prepend "▁", Replace " " -> "▁"] or a Metaspace pre-tokenizer.
// Scores come from the merge ranks (see scores-from-merges.ts). Anything that would make HF
// tokenize differently from SentencePiece BPE (NFKC, ByteLevel, splitting) is rejected by name.

import { SPACE_SYMBOL } from './normalize.ts';
import { bytePieceValue, type NormalizerFlags, type PieceTable, PieceType, SP_DEFAULTS } from './pieces.ts';
import { scoresFromMerges } from './scores-from-merges.ts';

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * @param json the file text, or the parsed object
 * @param file name used in error messages
 */
export function parseTokenizerJson(json: string | object, file = 'tokenizer.json'): PieceTable {
  let root: unknown = json;
  if (typeof json === 'string') {
    try {
      root = JSON.parse(json);
    } catch (e) {
      throw new Error(`${file}: not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!isObject(root)) throw new Error(`${file}: top level must be an object`);
  const model = root.model;
  if (!isObject(model)) throw new Error(`${file}: missing "model" object`);
  if (model.type !== 'BPE') throw new Error(`${file}: model.type is ${JSON.stringify(model.type)}; only "BPE" is supported`);
  if (!isObject(model.vocab)) throw new Error(`${file}: model.vocab must be an object {piece: id}`);
  if (!Array.isArray(model.merges)) throw new Error(`${file}: model.merges must be an array`);
  const byteFallback = model.byte_fallback === true;
  const unkToken = typeof model.unk_token === 'string' ? model.unk_token : SP_DEFAULTS.unkPiece;

  // id -> piece, from vocab plus added tokens (which may extend it)
  const byId = new Map<number, string>();
  const put = (piece: string, id: unknown, where: string): void => {
    if (!Number.isInteger(id) || (id as number) < 0) throw new Error(`${file}: ${where} has invalid id ${JSON.stringify(id)}`);
    const prev = byId.get(id as number);
    if (prev !== undefined && prev !== piece) throw new Error(`${file}: id ${id} is both ${JSON.stringify(prev)} and ${JSON.stringify(piece)}`);
    byId.set(id as number, piece);
  };
  for (const [piece, id] of Object.entries(model.vocab)) put(piece, id, `model.vocab[${JSON.stringify(piece)}]`);
  const added = new Map<number, { special: boolean }>();
  const addedTokens = root.added_tokens ?? [];
  if (!Array.isArray(addedTokens)) throw new Error(`${file}: added_tokens must be an array`);
  addedTokens.forEach((t, i) => {
    if (!isObject(t) || typeof t.content !== 'string') throw new Error(`${file}: added_tokens[${i}] needs a string "content"`);
    put(t.content, t.id, `added_tokens[${i}]`);
    added.set(t.id as number, { special: t.special === true });
  });
  const n = byId.size;
  const pieces = new Array<string>(n);
  for (let id = 0; id < n; id++) {
    const p = byId.get(id);
    if (p === undefined) throw new Error(`${file}: ids are not contiguous: ${n} pieces but id ${id} is missing`);
    pieces[id] = p;
  }

  const types = new Uint8Array(n).fill(PieceType.NORMAL);
  for (let id = 0; id < n; id++) {
    const a = added.get(id);
    if (pieces[id] === unkToken) types[id] = PieceType.UNKNOWN;
    else if (a) types[id] = a.special ? PieceType.CONTROL : PieceType.USER_DEFINED;
    else if (byteFallback && bytePieceValue(pieces[id]) >= 0) types[id] = PieceType.BYTE;
  }
  if (!types.includes(PieceType.UNKNOWN)) throw new Error(`${file}: unk_token ${JSON.stringify(unkToken)} is not in the vocabulary`);

  const mergedPieces = model.merges.map((m, i): string => {
    if (typeof m === 'string') {
      const parts = m.split(' ');
      if (parts.length !== 2) throw new Error(`${file}: model.merges[${i}] ${JSON.stringify(m)} is not "left right"`);
      return parts[0] + parts[1];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return m[0] + m[1];
    throw new Error(`${file}: model.merges[${i}] must be "left right" or ["left", "right"]`);
  });

  return {
    pieces,
    scores: scoresFromMerges(pieces, types, mergedPieces, file),
    types,
    normalizer: normalizerFlags(root, file),
    byteFallback,
    unkSurface: SP_DEFAULTS.unkSurface,
    unkPiece: unkToken,
    bosPiece: SP_DEFAULTS.bosPiece,
    eosPiece: SP_DEFAULTS.eosPiece,
  };
}

/** Map HF normalizer + pre-tokenizer onto SentencePiece's flags, or reject. */
function normalizerFlags(root: Json, file: string): NormalizerFlags {
  const flags: NormalizerFlags = { addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: false };
  const flat = (v: unknown, field: string): Json[] => {
    if (v === null || v === undefined) return [];
    if (!isObject(v)) throw new Error(`${file}: ${field} must be an object or null`);
    if (v.type === 'Sequence') {
      const list = v.normalizers ?? v.pretokenizers;
      if (!Array.isArray(list)) throw new Error(`${file}: ${field} Sequence has no list`);
      return list.flatMap((x, i) => flat(x, `${field}[${i}]`));
    }
    return [v];
  };
  for (const nz of flat(root.normalizer, 'normalizer')) {
    const pattern = isObject(nz.pattern) ? nz.pattern.String : undefined;
    if (nz.type === 'Prepend' && nz.prepend === SPACE_SYMBOL) flags.addDummyPrefix = true;
    else if (nz.type === 'Replace' && pattern === ' ' && nz.content === SPACE_SYMBOL) flags.escapeWhitespaces = true;
    else throw new Error(`${file}: normalizer ${JSON.stringify(nz)} is not supported (SentencePiece BPE uses Prepend "▁" and Replace " " -> "▁")`);
  }
  for (const pt of flat(root.pre_tokenizer, 'pre_tokenizer')) {
    if (pt.type !== 'Metaspace') throw new Error(`${file}: pre_tokenizer type ${JSON.stringify(pt.type)} is not supported (only Metaspace)`);
    if (pt.replacement !== undefined && pt.replacement !== SPACE_SYMBOL) throw new Error(`${file}: pre_tokenizer Metaspace replacement must be "▁"`);
    // splitting at each "▁" (the default, and what files without the field do) keeps "▁▁" from merging
    if (pt.split !== false) throw new Error(`${file}: pre_tokenizer Metaspace must have split: false to match SentencePiece`);
    flags.escapeWhitespaces = true;
    const scheme = pt.prepend_scheme ?? (pt.add_prefix_space === false ? 'never' : 'always');
    if (scheme !== 'never') flags.addDummyPrefix = true;
  }
  if (!flags.escapeWhitespaces) throw new Error(`${file}: no Replace " " -> "▁" normalizer or Metaspace pre-tokenizer; not a SentencePiece-style tokenizer`);
  return flags;
}
