// OpenELM weights, named as in the Hugging Face checkpoint, loaded straight into kernel memory.
import type { OpenELMConfig } from '../config/config.ts';
import { expectedTensors, layerShape } from '../config/config.ts';
import { bf16BitsToF32, f16BitsToF32, f32ToF16Bits, roundBf16 } from '../kernels/half.ts';
import { blocksPerRow, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, quantizeRowQ4_0, quantizeRowQ8_0 } from '../kernels/quant.ts';
import type { Kernels, Weight, WeightDType } from '../kernels/types.ts';

/**
 * Storage dtypes of a tensor in a checkpoint file: safetensors float names, plus the GGUF block
 * formats of a quantized checkpoint (docs/quantized-format.md), whose bytes are the q8_0 / q4_0
 * blocks row by row. The shape reported for a quantized tensor is its logical [rows, cols].
 */
export type FileDType = FloatFileDType | 'Q8_0' | 'Q4_0';
export type FloatFileDType = 'F32' | 'F16' | 'BF16';

/** Where weights come from: a checkpoint folder, a GGUF file, a test's in-memory tensors. */
export interface TensorSource {
  readonly config: OpenELMConfig;
  /** dtype and shape of a tensor, or undefined if absent */
  info(name: string): { dtype: FileDType; shape: number[] } | undefined;
  /** copies the tensor's raw little-endian bytes into dest (dest.length = its byte size) */
  readInto(name: string, dest: Uint8Array): void;
  /** copies dest.length raw bytes of the tensor from byte `offset` on; lets conversions read in chunks */
  readRangeInto?(name: string, offset: number, dest: Uint8Array): void;
}

/** One layer's weights, in a backend's buffers B and weight matrices W (the CPU's by default; GPUBuffer / GpuWeight on WebGPU). */
export interface LayerWeights<B = Float32Array, W = Weight> {
  attn_norm: B; // [d]
  qkv_proj: W; // [(nQ + 2 nKV) * hd, d]
  q_norm: B | null; // [hd]
  k_norm: B | null; // [hd]
  out_proj: W; // [d, nQ * hd]
  ffn_norm: B; // [d]
  proj_1: W; // [2 * ffn (GLU: gate | up), d]
  proj_2: W; // [d, ffn]
}

export interface ModelWeights<B = Float32Array, W = Weight> {
  token_embeddings: W; // [vocab, d]
  layers: LayerWeights<B, W>[];
  norm: B; // [d]
  lm_head: W; // [vocab, d]; the embedding itself when share_input_output_layers
}

/** Weight storage dtype: 'auto' keeps what the file has (f32, bf16, f16, q8_0 or q4_0). */
export type LoadDType = 'auto' | WeightDType;

const FILE_TO_KERNEL: Record<FileDType, WeightDType> = { F32: 'f32', BF16: 'bf16', F16: 'f16', Q8_0: 'q8_0', Q4_0: 'q4_0' };

function readAsF32(src: TensorSource, name: string, dest: Float32Array): void {
  const info = src.info(name)!;
  if (info.dtype === 'Q8_0' || info.dtype === 'Q4_0') {
    throw new Error(`tensor "${name}" is stored quantized (${info.dtype}) but is needed as floats; only 2-D weight matrices may be quantized`);
  }
  if (info.dtype === 'F32') {
    src.readInto(name, new Uint8Array(dest.buffer, dest.byteOffset, dest.length * 4));
    return;
  }
  const raw = new Uint16Array(dest.length);
  src.readInto(name, new Uint8Array(raw.buffer));
  const conv = info.dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32;
  for (let i = 0; i < raw.length; i++) dest[i] = conv(raw[i]);
}

export function loadVector(k: Kernels, src: TensorSource, name: string, n: number): Float32Array {
  const v = k.f32(n);
  readAsF32(src, name, v);
  return v;
}

/**
 * Loads a matrix into kernel memory. When the file dtype is the storage dtype the bytes go
 * straight from disk into the weight (one copy of the weights, ever); otherwise one tensor at a
 * time is read as f32 and converted or quantized row by row.
 */
export function loadMatrix(k: Kernels, src: TensorSource, name: string, want: LoadDType): Weight {
  const info = src.info(name)!;
  const [rows, cols] = info.shape;
  const stored = FILE_TO_KERNEL[info.dtype];
  const dtype: WeightDType = want === 'auto' ? stored : want;
  if (dtype !== stored && (info.dtype === 'Q8_0' || info.dtype === 'Q4_0')) {
    // dequantizing would only waste memory, and re-quantizing would add a second rounding error
    throw new Error(
      `tensor "${name}" is stored quantized as ${stored}; it can only be loaded as ${stored} (dtype auto), not ${dtype}. Quantize from the original checkpoint instead.`,
    );
  }
  const w = k.weight(dtype, rows, cols);
  if (dtype === stored) {
    src.readInto(name, new Uint8Array(w.data.buffer, w.data.byteOffset, k.weightBytes(dtype, rows, cols)));
    return w;
  }
  if (!src.readRangeInto) {
    const f = new Float32Array(rows * cols);
    readAsF32(src, name, f);
    convertInto(w, f);
    return w;
  }
  // convert in chunks of rows through a bounded temporary (≤ 4 MiB of f32), so loading with a
  // conversion peaks at the converted weights plus a few MiB, not plus the whole f32 tensor
  const inBytes = info.dtype === 'F32' ? 4 : 2;
  const chunkRows = Math.max(1, Math.min(rows, Math.floor((1 << 20) / cols)));
  // one temporary for every tensor of a load (allocating one per tensor leaves them to the GC)
  if (convScratch.length < chunkRows * cols) convScratch = new Float32Array(chunkRows * cols);
  const f = convScratch,
    raw = new Uint16Array(f.buffer, f.byteLength / 2); // raw: f's upper half
  const conv = info.dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32;
  for (let r0 = 0; r0 < rows; r0 += chunkRows) {
    const nr = Math.min(chunkRows, rows - r0),
      len = nr * cols;
    if (inBytes === 4) {
      src.readRangeInto(name, r0 * cols * 4, new Uint8Array(f.buffer, 0, len * 4));
    } else {
      // 16-bit values land in f's upper half and are widened from the front: f[i] overlaps only
      // raw[2i - N] and raw[2i - N + 1] (N = f.length), both ≤ i and so already read
      src.readRangeInto(name, r0 * cols * 2, new Uint8Array(raw.buffer, raw.byteOffset, len * 2));
      for (let i = 0; i < len; i++) f[i] = conv(raw[i]);
    }
    convertRowsInto(w, f, r0, nr);
  }
  return w;
}

let convScratch = new Float32Array(0);

/** Fills a weight of any dtype from f32 values [rows, cols]. */
export function convertInto(w: Weight, f: Float32Array): void {
  convertRowsInto(w, f, 0, w.rows);
}

/** Fills rows r0 .. r0+n-1 of a weight of any dtype from f32 values f: [n, cols]. */
export function convertRowsInto(w: Weight, f: Float32Array, r0: number, n: number): void {
  const cols = w.cols,
    len = n * cols,
    o = r0 * cols;
  switch (w.dtype) {
    case 'f32':
      (w.data as Float32Array).set(f.subarray(0, len), o);
      return;
    case 'bf16': {
      const bits = new Uint32Array(f.buffer, f.byteOffset, len);
      const out = w.data as Uint16Array;
      for (let i = 0; i < len; i++) out[o + i] = roundBf16(bits[i]);
      return;
    }
    case 'f16': {
      const out = w.data as Uint16Array;
      for (let i = 0; i < len; i++) out[o + i] = f32ToF16Bits(f[i]);
      return;
    }
    case 'q8_0':
      for (let r = 0; r < n; r++) quantizeRowQ8_0(f, r * cols, cols, w.data as Uint8Array, (r0 + r) * blocksPerRow(cols) * Q8_0_BLOCK_BYTES);
      return;
    case 'q4_0':
      for (let r = 0; r < n; r++) quantizeRowQ4_0(f, r * cols, cols, w.data as Uint8Array, (r0 + r) * blocksPerRow(cols) * Q4_0_BLOCK_BYTES);
      return;
  }
}

/** Checks every expected tensor is present with the right shape and no unexpected ones exist. */
export function checkTensors(src: TensorSource, where: string): void {
  const want = expectedTensors(src.config);
  for (const [name, shape] of want) {
    const info = src.info(name);
    if (!info) throw new Error(`${where}: tensor "${name}" is missing (expected shape [${shape}])`);
    if (info.shape.length !== shape.length || info.shape.some((s, i) => s !== shape[i])) {
      throw new Error(`${where}: tensor "${name}" has shape [${info.shape}] but the config implies [${shape}]`);
    }
  }
}

/** One weight tensor of a model: its checkpoint name and, for a 1-D tensor (a norm's weight), its length. */
export interface WeightTensor {
  name: string;
  /** floats of a vector; undefined for a matrix */
  vector?: number;
}

/** Every weight tensor of a model, in the order the loaders read them (the tied output head is not listed). */
export function weightTensors(cfg: OpenELMConfig): WeightTensor[] {
  const d = cfg.model_dim;
  const out: WeightTensor[] = [{ name: 'transformer.token_embeddings.weight' }];
  for (let i = 0; i < cfg.num_transformer_layers; i++) {
    const p = `transformer.layers.${i}.`,
      hd = layerShape(cfg, i).headDim;
    out.push({ name: p + 'attn_norm.weight', vector: d }, { name: p + 'attn.qkv_proj.weight' });
    if (cfg.normalize_qk_projections) out.push({ name: p + 'attn.q_norm.weight', vector: hd }, { name: p + 'attn.k_norm.weight', vector: hd });
    out.push({ name: p + 'attn.out_proj.weight' }, { name: p + 'ffn_norm.weight', vector: d });
    out.push({ name: p + 'ffn.proj_1.weight' }, { name: p + 'ffn.proj_2.weight' });
  }
  out.push({ name: 'transformer.norm.weight', vector: d });
  if (!cfg.share_input_output_layers) out.push({ name: 'lm_head.weight' });
  return out;
}

/**
 * Where loaded tensors go: the identity keeps them in the loading kernels' memory; a GPU sink
 * uploads each one as it is loaded (so the CPU never holds more than one tensor of them).
 */
export interface WeightSink<B, W> {
  vector(name: string, v: Float32Array): B;
  matrix(name: string, w: Weight): W;
}

/** The identity sink: tensors stay where they were loaded. */
export const KEEP_WEIGHTS: WeightSink<Float32Array, Weight> = { vector: (_, v) => v, matrix: (_, w) => w };

/**
 * ModelWeights from its tensors by checkpoint name (what a sink made of each, a view into a
 * trainer's parameter buffer); the tied head is the embedding itself.
 */
export function assembleWeights<B, W>(cfg: OpenELMConfig, vec: (name: string) => B, mat: (name: string) => W): ModelWeights<B, W> {
  const emb = mat('transformer.token_embeddings.weight');
  const layers: LayerWeights<B, W>[] = [];
  for (let i = 0; i < cfg.num_transformer_layers; i++) {
    const p = `transformer.layers.${i}.`;
    layers.push({
      attn_norm: vec(p + 'attn_norm.weight'),
      qkv_proj: mat(p + 'attn.qkv_proj.weight'),
      q_norm: cfg.normalize_qk_projections ? vec(p + 'attn.q_norm.weight') : null,
      k_norm: cfg.normalize_qk_projections ? vec(p + 'attn.k_norm.weight') : null,
      out_proj: mat(p + 'attn.out_proj.weight'),
      ffn_norm: vec(p + 'ffn_norm.weight'),
      proj_1: mat(p + 'ffn.proj_1.weight'),
      proj_2: mat(p + 'ffn.proj_2.weight'),
    });
  }
  const lm_head = cfg.share_input_output_layers ? emb : mat('lm_head.weight');
  return { token_embeddings: emb, layers, norm: vec('transformer.norm.weight'), lm_head };
}

/**
 * Loads every weight of a checkpoint into the kernels' memory (matrices as `dtype`), tensor by
 * tensor; with a sink, each tensor is handed on as it is loaded (uploaded to a GPU, say).
 */
export function loadWeights(k: Kernels, src: TensorSource, dtype?: LoadDType): ModelWeights;
export function loadWeights<B, W>(k: Kernels, src: TensorSource, dtype: LoadDType, sink: WeightSink<B, W>): ModelWeights<B, W>;
export function loadWeights<B, W>(k: Kernels, src: TensorSource, dtype: LoadDType = 'auto', sink?: WeightSink<B, W>): ModelWeights<B, W> {
  const put = sink ?? (KEEP_WEIGHTS as unknown as WeightSink<B, W>);
  const vectors = new Map<string, B>(),
    matrices = new Map<string, W>();
  for (const t of weightTensors(src.config)) {
    if (t.vector !== undefined) vectors.set(t.name, put.vector(t.name, loadVector(k, src, t.name, t.vector)));
    else matrices.set(t.name, put.matrix(t.name, loadMatrix(k, src, t.name, dtype)));
  }
  convScratch = new Float32Array(0);
  return assembleWeights(
    src.config,
    (name) => vectors.get(name)!,
    (name) => matrices.get(name)!,
  );
}
