// OpenELM → GGUF, laid out exactly as llama.cpp's convert_hf_to_gguf.py writes it (class
// OpenELMModel), so llama.cpp's LLM_ARCH_OPENELM loader and graph read it unchanged:
//
//   metadata  general.architecture = "openelm"; openelm.* hyperparameters, where head_count,
//             head_count_kv and feed_forward_length are per-layer ARRAYS (layer-wise scaling);
//             the LLaMA-2 SentencePiece vocabulary as tokenizer.ggml.* (model "llama").
//   tensors   HF name                                  GGUF name                  shape (rows, cols)
//             transformer.token_embeddings.weight      token_embd.weight          [vocab, d]
//             transformer.layers.N.attn_norm.weight    blk.N.attn_norm.weight     [d]
//             transformer.layers.N.attn.qkv_proj       blk.N.attn_qkv.weight      [(nQ + 2 nKV) hd, d]
//             transformer.layers.N.attn.q_norm         blk.N.attn_q_norm.weight   [hd]
//             transformer.layers.N.attn.k_norm         blk.N.attn_k_norm.weight   [hd]
//             transformer.layers.N.attn.out_proj       blk.N.attn_output.weight   [d, nQ hd]
//             transformer.layers.N.ffn_norm.weight     blk.N.ffn_norm.weight      [d]
//             transformer.layers.N.ffn.proj_1 rows [0, F)   blk.N.ffn_gate.weight [F, d]
//             transformer.layers.N.ffn.proj_1 rows [F, 2F)  blk.N.ffn_up.weight   [F, d]
//             transformer.layers.N.ffn.proj_2          blk.N.ffn_down.weight      [d, F]
//             transformer.norm.weight                  output_norm.weight         [d]
//   No output.weight: llama.cpp's OpenELM always reuses token_embd as the output head.
//
// Rows stay rows: a PyTorch [rows, cols] matrix is ggml ne = [cols, rows] with the same bytes, so
// no transposition. Norm vectors stay F32 (as convert_hf_to_gguf does); matrices take the
// requested dtype. Tensors are produced one at a time while the file is written, so peak memory
// is about one tensor (the embedding), never the whole model.
//
//   import { exportGGUF } from './io/gguf-export.ts';
//   exportGGUF(checkpointSource('./OpenELM-270M'), await loadTokenizer('./OpenELM-270M'), 'openelm-270m-f16.gguf', { dtype: 'f16' });
import type { OpenELMConfig } from '../config/config.ts';
import { layerShape } from '../config/config.ts';
import { bf16BitsToF32, f16BitsToF32 } from '../kernels/half.ts';
import { blocksPerRow, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, QK } from '../kernels/quant.ts';
import type { Weight, WeightDType } from '../kernels/types.ts';
import { checkTensors, convertInto, type FileDType, type TensorSource } from '../model/weights.ts';
import type { PieceTable } from '../tokenizer/pieces.ts';
import { arr, bool, f32v, GGMLType, type GGUFTensorSpec, type GGUFValue, GGUFValueType, str, u32, writeGGUF } from './gguf.ts';

/** Storage types a matrix can be exported as; all run on llama.cpp's CPU backend. */
export type GGUFExportDType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0';
export const GGUF_EXPORT_DTYPES: readonly GGUFExportDType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0'];

export interface GGUFExportOptions {
  /** storage of the matrices (default 'f16'); norm vectors are always f32 */
  dtype?: GGUFExportDType;
  /** general.name (default: none) */
  name?: string;
  /** called as each tensor has been produced for writing */
  onProgress?: (p: GGUFExportProgress) => void;
}

export interface GGUFExportProgress {
  /** GGUF name of the tensor just produced */
  tensor: string;
  /** 1-based */
  index: number;
  count: number;
  /** tensor bytes produced so far / in all */
  bytes: number;
  totalBytes: number;
}

export interface GGUFExportResult {
  path: string;
  dtype: GGUFExportDType;
  /** general.file_type (llama_ftype) */
  fileType: number;
  tensors: number;
  /** bytes of tensor data (without header and padding) */
  tensorBytes: number;
  /** matrices written as F16 because q8_0 / q4_0 need a column count divisible by 32 */
  f16Fallbacks: string[];
}

/** The vocabulary part of a Tokenizer (the Tokenizer class satisfies this). */
export interface GGUFVocab {
  readonly table: PieceTable;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
}

export class GGUFExportError extends Error {
  constructor(
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.name = 'GGUFExportError';
  }
}

/** llama_ftype per dtype ("mostly" that type; norms are F32 in every case). */
const FILE_TYPE: Record<GGUFExportDType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, bf16: 32 };
const GGML: Record<GGUFExportDType, GGMLType> = { f32: GGMLType.F32, f16: GGMLType.F16, q8_0: GGMLType.Q8_0, q4_0: GGMLType.Q4_0, bf16: GGMLType.BF16 };
const FILE_TO_EXPORT: Record<FileDType, GGUFExportDType> = { F32: 'f32', F16: 'f16', BF16: 'bf16', Q8_0: 'q8_0', Q4_0: 'q4_0' };

/** RMSNorm epsilon of OpenELM (modeling_openelm.py), which the config does not carry. */
const RMS_EPS = 1e-6;

/**
 * Throws, naming the config field, for models llama.cpp's OpenELM graph cannot run: it hard-codes
 * SwiGLU FFNs, q/k RMSNorm, RMSNorm layers and an output head tied to the embedding.
 */
export function checkGGUFCompatible(cfg: OpenELMConfig, where = 'config.json'): void {
  const no = (field: string, got: unknown, want: string): never => {
    throw new GGUFExportError(`${where}: field "${field}" is ${JSON.stringify(got)}, but llama.cpp's OpenELM architecture only supports ${want}`, field);
  };
  if (!cfg.ffn_with_glu) no('ffn_with_glu', cfg.ffn_with_glu, 'true (gated FFN: proj_1 = gate | up)');
  if (cfg.activation_fn_name !== 'swish' && cfg.activation_fn_name !== 'silu') no('activation_fn_name', cfg.activation_fn_name, '"swish" (SiLU)');
  if (!cfg.normalize_qk_projections) no('normalize_qk_projections', cfg.normalize_qk_projections, 'true (q_norm and k_norm are required tensors)');
  if (!cfg.share_input_output_layers)
    no('share_input_output_layers', cfg.share_input_output_layers, 'true (the output head is always token_embd; an lm_head.weight would be ignored)');
  if (cfg.normalization_layer_name !== 'rms_norm') no('normalization_layer_name', cfg.normalization_layer_name, '"rms_norm"');
}

/** The metadata convert_hf_to_gguf.py writes for OpenELM, plus the SentencePiece vocabulary. */
export function ggufMetadata(cfg: OpenELMConfig, vocab: GGUFVocab, dtype: GGUFExportDType, name?: string): Map<string, GGUFValue> {
  const L = cfg.num_transformer_layers;
  const U32 = GGUFValueType.UINT32;
  const m = new Map<string, GGUFValue>();
  m.set('general.architecture', str('openelm'));
  if (name) m.set('general.name', str(name));
  m.set('openelm.block_count', u32(L));
  m.set('openelm.context_length', u32(cfg.max_context_length));
  m.set('openelm.embedding_length', u32(cfg.model_dim));
  m.set('openelm.feed_forward_length', arr(U32, cfg.ffn_dims.slice(0, L)));
  m.set('openelm.attention.head_count', arr(U32, cfg.num_query_heads.slice(0, L)));
  m.set('openelm.attention.head_count_kv', arr(U32, cfg.num_kv_heads.slice(0, L)));
  m.set('openelm.rope.freq_base', f32v(cfg.rope_freq_constant));
  m.set('openelm.attention.layer_norm_rms_epsilon', f32v(RMS_EPS));
  m.set('openelm.rope.dimension_count', u32(cfg.head_dim)); // rotary over the full head (NEOX rotate-half)
  m.set('openelm.attention.key_length', u32(cfg.head_dim));
  m.set('openelm.attention.value_length', u32(cfg.head_dim));
  m.set('general.file_type', u32(FILE_TYPE[dtype]));
  m.set('general.quantization_version', u32(2));
  for (const [k, v] of vocabMetadata(cfg, vocab)) m.set(k, v);
  return m;
}

/** tokenizer.ggml.*: what convert_hf_to_gguf's `_set_vocab_sentencepiece` writes for LLaMA-2. */
function vocabMetadata(cfg: OpenELMConfig, vocab: GGUFVocab): Map<string, GGUFValue> {
  const t = vocab.table;
  const n = t.pieces.length;
  if (n > cfg.vocab_size) {
    throw new GGUFExportError(
      `the tokenizer has ${n} pieces but config field "vocab_size" is ${cfg.vocab_size}: the embedding has no rows for the extra ids`,
      'vocab_size',
    );
  }
  const tokens = t.pieces.slice();
  const scores = Array.from(t.scores);
  const types: number[] = Array.from(t.types); // SentencePiece piece types = llama_token_type numbers
  // an embedding wider than the vocabulary: convert_hf_to_gguf pads with unused [PAD{i}] pieces
  for (let i = n; i < cfg.vocab_size; i++) {
    tokens.push(`[PAD${i}]`);
    scores.push(-1000);
    types.push(5); // UNUSED
  }
  const id = (mine: number, fallback: number) => (mine >= 0 ? mine : fallback);
  const m = new Map<string, GGUFValue>();
  m.set('tokenizer.ggml.model', str('llama'));
  m.set('tokenizer.ggml.pre', str('default'));
  m.set('tokenizer.ggml.tokens', arr(GGUFValueType.STRING, tokens));
  m.set('tokenizer.ggml.scores', arr(GGUFValueType.FLOAT32, scores));
  m.set('tokenizer.ggml.token_type', arr(GGUFValueType.INT32, types));
  m.set('tokenizer.ggml.bos_token_id', u32(id(vocab.bosId, cfg.bos_token_id)));
  m.set('tokenizer.ggml.eos_token_id', u32(id(vocab.eosId, cfg.eos_token_id)));
  m.set('tokenizer.ggml.unknown_token_id', u32(id(vocab.unkId, 0)));
  m.set('tokenizer.ggml.add_bos_token', bool(true));
  m.set('tokenizer.ggml.add_eos_token', bool(false));
  m.set('tokenizer.ggml.add_space_prefix', bool(t.normalizer.addDummyPrefix));
  m.set('tokenizer.ggml.remove_extra_whitespaces', bool(t.normalizer.removeExtraWhitespaces));
  return m;
}

/** Bytes of one row of `cols` values stored as dtype (ggml layout = our checkpoint layout). */
function rowBytes(dtype: GGUFExportDType, cols: number): number {
  switch (dtype) {
    case 'f32':
      return cols * 4;
    case 'f16':
    case 'bf16':
      return cols * 2;
    case 'q8_0':
      return blocksPerRow(cols) * Q8_0_BLOCK_BYTES;
    case 'q4_0':
      return blocksPerRow(cols) * Q4_0_BLOCK_BYTES;
  }
}

/**
 * Reads HF tensors and re-encodes row ranges of them. Keeps the raw bytes of the last tensor read,
 * so the two halves of proj_1 (ffn_gate, then ffn_up) cost one read.
 */
class RowReader {
  private lastName = '';
  private lastRaw: Uint8Array | null = null;
  constructor(private readonly src: TensorSource) {}

  private raw(name: string): Uint8Array {
    if (name !== this.lastName) {
      this.lastRaw = null; // let the previous tensor go before allocating the next
      const info = this.src.info(name)!;
      const rows = info.shape.length === 1 ? 1 : info.shape[0];
      const bytes = new Uint8Array(rows * rowBytes(FILE_TO_EXPORT[info.dtype], info.shape[info.shape.length - 1]));
      this.src.readInto(name, bytes);
      this.lastName = name;
      this.lastRaw = bytes;
    }
    return this.lastRaw!;
  }

  /** rows [r0, r1) of a 1-D or 2-D tensor as little-endian bytes of dtype */
  rows(name: string, r0: number, r1: number, dtype: GGUFExportDType): Uint8Array {
    const info = this.src.info(name)!;
    const cols = info.shape.length === 1 ? info.shape[0] : info.shape[1];
    const rows = r1 - r0;
    const stored = FILE_TO_EXPORT[info.dtype];
    const raw = this.raw(name);
    const rb = rowBytes(stored, cols);
    const slice = raw.subarray(r0 * rb, r1 * rb);
    // same dtype: the checkpoint's bits, exactly what the model loads without --dtype
    if (stored === dtype) return slice;
    if (info.dtype === 'Q8_0' || info.dtype === 'Q4_0') {
      throw new GGUFExportError(
        `tensor "${name}" is stored quantized as ${stored}; a quantized checkpoint can only be exported at its own dtype (${stored}), not ${dtype}`,
      );
    }
    const f = toF32(slice, info.dtype);
    if (dtype === 'f32') return new Uint8Array(f.buffer);
    // the model's own conversion, so an export at dtype X holds the same bits as loading with --dtype X
    const out = new Uint8Array(rows * rowBytes(dtype, cols));
    const data = dtype === 'q8_0' || dtype === 'q4_0' ? out : new Uint16Array(out.buffer);
    const w: Weight = { dtype: dtype as WeightDType, rows, cols, data };
    convertInto(w, f);
    return out;
  }

  /** drops the cached tensor */
  release(): void {
    this.lastName = '';
    this.lastRaw = null;
  }
}

function toF32(bytes: Uint8Array, dtype: 'F32' | 'F16' | 'BF16'): Float32Array {
  if (dtype === 'F32') {
    const f = new Float32Array(bytes.byteLength / 4);
    new Uint8Array(f.buffer).set(bytes);
    return f;
  }
  const h = new Uint16Array(bytes.byteLength / 2);
  new Uint8Array(h.buffer).set(bytes);
  const f = new Float32Array(h.length);
  const conv = dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32;
  for (let i = 0; i < h.length; i++) f[i] = conv(h[i]);
  return f;
}

/** The tensor list, in llama.cpp's names, each producing its bytes when the writer reaches it. */
export function ggufTensors(src: TensorSource, dtype: GGUFExportDType, f16Fallbacks: string[] = []): GGUFTensorSpec[] {
  const cfg = src.config;
  const d = cfg.model_dim;
  const rd = new RowReader(src);
  const specs: GGUFTensorSpec[] = [];
  const vector = (gguf: string, hf: string, n: number) => {
    specs.push({ name: gguf, shape: [n], type: GGMLType.F32, byteLength: n * 4, data: () => rd.rows(hf, 0, 1, 'f32') });
  };
  const matrix = (gguf: string, hf: string, rows: number, cols: number, r0 = 0) => {
    // ggml's quantized rows are whole blocks; like gguf-py, fall back to F16 when they cannot be
    let t = dtype;
    if ((t === 'q8_0' || t === 'q4_0') && cols % QK !== 0) {
      const stored = src.info(hf)!.dtype;
      if (stored === 'Q8_0' || stored === 'Q4_0') {
        throw new GGUFExportError(`tensor "${hf}" is stored as ${stored} with ${cols} columns, not a multiple of ${QK}: GGUF cannot hold its partial blocks`);
      }
      t = 'f16';
      f16Fallbacks.push(gguf);
    }
    specs.push({ name: gguf, shape: [rows, cols], type: GGML[t], byteLength: rows * rowBytes(t, cols), data: () => rd.rows(hf, r0, r0 + rows, t) });
  };
  matrix('token_embd.weight', 'transformer.token_embeddings.weight', cfg.vocab_size, d);
  for (let i = 0; i < cfg.num_transformer_layers; i++) {
    const s = layerShape(cfg, i);
    const p = `transformer.layers.${i}.`;
    const b = `blk.${i}.`;
    vector(b + 'attn_norm.weight', p + 'attn_norm.weight', d);
    matrix(b + 'attn_qkv.weight', p + 'attn.qkv_proj.weight', s.qkvDim, d);
    vector(b + 'attn_q_norm.weight', p + 'attn.q_norm.weight', s.headDim);
    vector(b + 'attn_k_norm.weight', p + 'attn.k_norm.weight', s.headDim);
    matrix(b + 'attn_output.weight', p + 'attn.out_proj.weight', d, s.nQ * s.headDim);
    vector(b + 'ffn_norm.weight', p + 'ffn_norm.weight', d);
    matrix(b + 'ffn_gate.weight', p + 'ffn.proj_1.weight', s.ffnDim, d, 0); // GLU: gate first
    matrix(b + 'ffn_up.weight', p + 'ffn.proj_1.weight', s.ffnDim, d, s.ffnDim);
    matrix(b + 'ffn_down.weight', p + 'ffn.proj_2.weight', d, s.ffnDim);
  }
  vector('output_norm.weight', 'transformer.norm.weight', d);
  // release the reader's cache once the last tensor is out
  const last = specs[specs.length - 1];
  const lastData = last.data;
  last.data = () => {
    const x = lastData();
    rd.release();
    return x;
  };
  return specs;
}

/**
 * Writes `src` (an OpenELM checkpoint) and `vocab` (its tokenizer) as a GGUF file llama.cpp runs.
 * The file appears atomically (temp file + rename).
 */
export function exportGGUF(src: TensorSource, vocab: GGUFVocab, outPath: string, opts: GGUFExportOptions = {}): GGUFExportResult {
  const dtype = opts.dtype ?? 'f16';
  if (!GGUF_EXPORT_DTYPES.includes(dtype)) throw new GGUFExportError(`dtype must be one of ${GGUF_EXPORT_DTYPES.join(', ')}, got ${JSON.stringify(dtype)}`);
  checkGGUFCompatible(src.config);
  checkTensors(src, 'checkpoint');
  const metadata = ggufMetadata(src.config, vocab, dtype, opts.name);
  const f16Fallbacks: string[] = [];
  const tensors = ggufTensors(src, dtype, f16Fallbacks);
  const totalBytes = tensors.reduce((a, t) => a + t.byteLength, 0);
  const onProgress = opts.onProgress;
  if (onProgress) {
    let bytes = 0;
    tensors.forEach((t, i) => {
      const data = t.data;
      t.data = () => {
        const x = data();
        bytes += x.byteLength;
        onProgress({ tensor: t.name, index: i + 1, count: tensors.length, bytes, totalBytes });
        return x;
      };
    });
  }
  writeGGUF(outPath, metadata, tensors);
  return {
    path: outPath,
    dtype,
    fileType: FILE_TYPE[dtype],
    tensors: tensors.length,
    tensorBytes: totalBytes,
    f16Fallbacks,
  };
}
