// The quantized checkpoint layout, version 1 (docs/quantized-format.md): q8_0 / q4_0 matrices
// stored as U8 [rows, bytes per row] in safetensors, described by "__metadata__" entries.
import { expectedTensors } from '../config/config.ts';
import { blocksPerRow, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES } from '../kernels/quant.ts';
import { type Checkpoint, CheckpointError } from './checkpoint.ts';
import { openSafetensors } from './safetensors.ts';

/** `__metadata__["openelm.format"]` of a quantized checkpoint. */
export const QUANTIZED_FORMAT = 'quantized-v1';
export const FORMAT_KEY = 'openelm.format';
/** `__metadata__["openelm.quant.<tensor>"] = "<type>:<rows>x<cols>"`, e.g. "q8_0:2048x512" */
export const QUANT_KEY_PREFIX = 'openelm.quant.';
export type QuantType = 'q8_0' | 'q4_0';
export const QUANT_BLOCK_BYTES: Record<QuantType, number> = { q8_0: Q8_0_BLOCK_BYTES, q4_0: Q4_0_BLOCK_BYTES };

export interface QuantizedTensor {
  type: QuantType;
  rows: number;
  cols: number;
}

/** Bytes of one quantized row: ceil(cols / 32) blocks. */
export function quantizedRowBytes(type: QuantType, cols: number): number {
  return blocksPerRow(cols) * QUANT_BLOCK_BYTES[type];
}

/**
 * The quantized tensors of a checkpoint by name, checked against their stored U8 tensors and the
 * config; undefined when the checkpoint is not quantized (no "openelm.format" metadata).
 */
export function readQuantizedLayout(ck: Checkpoint): Map<string, QuantizedTensor> | undefined {
  const meta = new Map<string, { value: string; file: string }>();
  for (const file of ck.files) {
    for (const [k, value] of Object.entries(openSafetensors(file).metadata)) meta.set(k, { value, file });
  }
  const format = meta.get(FORMAT_KEY);
  if (!format) return undefined;
  const fail = (msg: string, file: string, tensor?: string): never => {
    throw new CheckpointError(`${file}: ${msg}`, file, tensor);
  };
  if (format.value !== QUANTIZED_FORMAT) {
    fail(`"${FORMAT_KEY}" is "${format.value}"; this version of openelm reads "${QUANTIZED_FORMAT}" (docs/quantized-format.md)`, format.file);
  }
  const want = expectedTensors(ck.config);
  const out = new Map<string, QuantizedTensor>();
  for (const [key, { value, file }] of meta) {
    if (!key.startsWith(QUANT_KEY_PREFIX)) continue;
    const name = key.slice(QUANT_KEY_PREFIX.length);
    const m = /^([a-z0-9_]+):(\d+)x(\d+)$/.exec(value);
    if (!m) fail(`metadata "${key}" = "${value}" is not "<type>:<rows>x<cols>"`, file, name);
    const [, type, r, c] = m!;
    if (!(type in QUANT_BLOCK_BYTES))
      fail(`tensor "${name}": unknown quantization type "${type}" in metadata "${key}" (known: ${Object.keys(QUANT_BLOCK_BYTES).join(', ')})`, file, name);
    const q: QuantizedTensor = { type: type as QuantType, rows: Number(r), cols: Number(c) };
    const t = ck.tensors.get(name);
    if (!t) fail(`metadata "${key}" describes tensor "${name}", which the checkpoint does not hold`, file, name);
    const rowBytes = quantizedRowBytes(q.type, q.cols);
    if (t!.dtype !== 'U8' || t!.shape.length !== 2 || t!.shape[0] !== q.rows || t!.shape[1] !== rowBytes) {
      fail(
        `tensor "${name}" is declared ${q.type} [${q.rows}, ${q.cols}], which takes U8 [${q.rows}, ${rowBytes}] ` +
          `(${q.rows} rows × ${blocksPerRow(q.cols)} blocks × ${QUANT_BLOCK_BYTES[q.type]} bytes = ${q.rows * rowBytes} bytes), ` +
          `but it is stored as ${t!.dtype} [${t!.shape}] (${t!.byteLength} bytes): corrupt or truncated`,
        t!.file,
        name,
      );
    }
    const shape = want.get(name);
    if (shape && (shape.length !== 2 || shape[0] !== q.rows || shape[1] !== q.cols)) {
      fail(`tensor "${name}" is declared ${q.type} [${q.rows}, ${q.cols}] but the config implies [${shape}]`, t!.file, name);
    }
    out.set(name, q);
  }
  // everything else must be an expected float tensor (the norms)
  for (const t of ck.tensors.values()) {
    if (out.has(t.name)) continue;
    if (!want.has(t.name)) fail(`unexpected tensor "${t.name}" [${t.shape}] (not part of an OpenELM with this config)`, t.file, t.name);
    if (t.dtype !== 'F32' && t.dtype !== 'BF16' && t.dtype !== 'F16') {
      fail(`tensor "${t.name}" is ${t.dtype} but has no "${QUANT_KEY_PREFIX}${t.name}" metadata entry saying how it is quantized`, t.file, t.name);
    }
  }
  return out;
}
