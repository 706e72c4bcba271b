// tokenizer.model (a SentencePiece ModelProto) -> PieceTable.
// ModelProto: 1 = repeated SentencePiece {1 piece, 2 score (float), 3 type}, 2 = TrainerSpec,
// 3 = NormalizerSpec. Only BPE models with an identity normalizer are accepted: anything else
// would tokenize differently from what we implement, so it is an error rather than a guess.
import { type PieceTable, PieceType, SP_DEFAULTS } from './pieces.ts';
import { ProtoReader, protoFloat, protoString, protoVarint } from './protobuf.ts';

// TrainerSpec field numbers (sentencepiece_model.proto)
const TS_MODEL_TYPE = 3;
const TS_TREAT_WS_AS_SUFFIX = 24;
const TS_BYTE_FALLBACK = 35;
const TS_UNK_SURFACE = 44;
const TS_UNK_PIECE = 45;
const TS_BOS_PIECE = 46;
const TS_EOS_PIECE = 47;
const MODEL_TYPE_BPE = 2;
const MODEL_TYPE_NAMES = ['?', 'UNIGRAM', 'BPE', 'WORD', 'CHAR'];

/**
 * Parse a SentencePiece `.model` file.
 * @param bytes the file contents
 * @param file name used in error messages
 */
export function parseSentencePieceModel(bytes: Uint8Array, file = 'tokenizer.model'): PieceTable {
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  // proto2 defaults; SentencePiece's TrainerSpec.model_type defaults to UNIGRAM
  let modelType = 1;
  let byteFallback = false;
  let treatWsAsSuffix = false;
  let unkSurface: string = SP_DEFAULTS.unkSurface;
  let unkPiece: string = SP_DEFAULTS.unkPiece;
  let bosPiece: string = SP_DEFAULTS.bosPiece;
  let eosPiece: string = SP_DEFAULTS.eosPiece;
  let normalizerName = '';
  let charsmapBytes = 0;
  let addDummyPrefix = true;
  let removeExtraWhitespaces = true;
  let escapeWhitespaces = true;
  let sawTrainer = false;

  const top = new ProtoReader(bytes, file);
  for (const f of top.fields()) {
    if (f.field === 1) {
      const where = `pieces[${pieces.length}]`;
      let piece: string | undefined;
      let score = 0;
      let type: number = PieceType.NORMAL;
      for (const g of top.nested(f).fields()) {
        if (g.field === 1) piece = protoString(g, file, `${where}.piece`);
        else if (g.field === 2) score = protoFloat(g, file, `${where}.score`);
        else if (g.field === 3) type = protoVarint(g, file, `${where}.type`);
      }
      if (piece === undefined || piece === '') throw new Error(`${file}: ${where} has no piece text`);
      if (type < 1 || type > 6) throw new Error(`${file}: ${where} (${JSON.stringify(piece)}) has unknown type ${type}`);
      pieces.push(piece);
      scores.push(score);
      types.push(type);
    } else if (f.field === 2) {
      sawTrainer = true;
      for (const g of top.nested(f).fields()) {
        if (g.field === TS_MODEL_TYPE) modelType = protoVarint(g, file, 'trainer_spec.model_type');
        else if (g.field === TS_TREAT_WS_AS_SUFFIX) treatWsAsSuffix = protoVarint(g, file, 'trainer_spec.treat_whitespace_as_suffix') !== 0;
        else if (g.field === TS_BYTE_FALLBACK) byteFallback = protoVarint(g, file, 'trainer_spec.byte_fallback') !== 0;
        else if (g.field === TS_UNK_SURFACE) unkSurface = protoString(g, file, 'trainer_spec.unk_surface');
        else if (g.field === TS_UNK_PIECE) unkPiece = protoString(g, file, 'trainer_spec.unk_piece');
        else if (g.field === TS_BOS_PIECE) bosPiece = protoString(g, file, 'trainer_spec.bos_piece');
        else if (g.field === TS_EOS_PIECE) eosPiece = protoString(g, file, 'trainer_spec.eos_piece');
      }
    } else if (f.field === 3) {
      for (const g of top.nested(f).fields()) {
        if (g.field === 1) normalizerName = protoString(g, file, 'normalizer_spec.name');
        else if (g.field === 2) charsmapBytes = g.bytes.length;
        else if (g.field === 3) addDummyPrefix = protoVarint(g, file, 'normalizer_spec.add_dummy_prefix') !== 0;
        else if (g.field === 4) removeExtraWhitespaces = protoVarint(g, file, 'normalizer_spec.remove_extra_whitespaces') !== 0;
        else if (g.field === 5) escapeWhitespaces = protoVarint(g, file, 'normalizer_spec.escape_whitespaces') !== 0;
      }
    }
  }

  if (pieces.length === 0) throw new Error(`${file}: no pieces (not a SentencePiece model, or empty)`);
  if (!sawTrainer) throw new Error(`${file}: no trainer_spec (field 2); cannot tell the model type`);
  if (modelType !== MODEL_TYPE_BPE) {
    throw new Error(`${file}: trainer_spec.model_type is ${MODEL_TYPE_NAMES[modelType] ?? modelType}; only BPE is supported`);
  }
  if (treatWsAsSuffix) throw new Error(`${file}: trainer_spec.treat_whitespace_as_suffix is not supported`);
  if (charsmapBytes > 0) {
    throw new Error(`${file}: normalizer_spec "${normalizerName}" has a precompiled charsmap; only the identity normalizer is supported`);
  }
  if (!types.includes(PieceType.UNKNOWN)) throw new Error(`${file}: no piece of type UNKNOWN`);

  return {
    pieces,
    scores: Float32Array.from(scores),
    types: Uint8Array.from(types),
    normalizer: { addDummyPrefix, removeExtraWhitespaces, escapeWhitespaces },
    byteFallback,
    unkSurface,
    unkPiece,
    bosPiece,
    eosPiece,
  };
}
