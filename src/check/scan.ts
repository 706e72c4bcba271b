// `openelm check`: scans a checkpoint's weights without loading a model — every tensor read in
// chunks of 1M values (quantized ones dequantized row by row) — and reports per tensor: NaN and
// Inf counts, min / max / RMS, and values no trained OpenELM has (a norm weight of 1e4, an
// all-zero matrix). Structural problems (a config that does not match the tensors) are reported
// too, and the scan goes on over the tensors that exist.
//
//   const r = checkCheckpoint('models/270m');   // r.ok, r.problems, r.tensors[i].nan ...
import { type Checkpoint, openCheckpoint } from '../io/checkpoint.ts';
import { DTYPE_SIZES, isFloatDType, toF32 } from '../io/dtype.ts';
import { type QuantizedTensor, quantizedRowBytes, readQuantizedLayout } from '../io/quantized.ts';
import { dequantizeRowQ4_0, dequantizeRowQ8_0 } from '../kernels/quant.ts';

export interface TensorReport {
  name: string;
  /** as stored: F32, BF16, F16, or q8_0 / q4_0 */
  dtype: string;
  /** logical shape ([rows, cols] for quantized matrices) */
  shape: number[];
  nan: number;
  inf: number;
  /** over the finite values */
  min: number;
  max: number;
  rms: number;
  /** what is wrong with it, if anything */
  problems: string[];
}

export interface CheckReport {
  dir: string;
  ok: boolean;
  /** problems of the checkpoint as a whole (config, structure) */
  problems: string[];
  tensors: TensorReport[];
}

/** Limits no trained OpenELM comes near: a norm weight's magnitude, a matrix's RMS and largest magnitude. */
export const CHECK_LIMITS = { normAbsMax: 1e3, matrixRms: 10, matrixAbsMax: 1e4 } as const;

const CHUNK = 1 << 20;

export function checkCheckpoint(dir: string): CheckReport {
  const report: CheckReport = { dir, ok: true, problems: [], tensors: [] };
  let ck: Checkpoint;
  try {
    ck = openCheckpoint(dir, { validate: false });
  } catch (e) {
    report.problems.push((e as Error).message);
    report.ok = false;
    return report;
  }
  let quant: Map<string, QuantizedTensor> | undefined;
  try {
    quant = readQuantizedLayout(ck);
    if (!quant) ck.validate();
  } catch (e) {
    report.problems.push((e as Error).message);
  }
  for (const [name, t] of ck.tensors) {
    const q = quant?.get(name);
    const r: TensorReport = {
      name,
      dtype: q ? q.type : t.dtype,
      shape: q ? [q.rows, q.cols] : t.shape,
      nan: 0,
      inf: 0,
      min: Infinity,
      max: -Infinity,
      rms: 0,
      problems: [],
    };
    let sumSq = 0,
      count = 0;
    const visit = (x: Float32Array) => {
      for (let i = 0; i < x.length; i++) {
        const v = x[i];
        if (v !== v) r.nan++;
        else if (v === Infinity || v === -Infinity) r.inf++;
        else {
          if (v < r.min) r.min = v;
          if (v > r.max) r.max = v;
          sumSq += v * v;
          count++;
        }
      }
    };
    try {
      if (q) scanQuantized(ck, name, q, visit);
      else if (isFloatDType(t.dtype)) scanFloat(ck, name, t.dtype, t.byteLength, visit);
      else r.problems.push(`stored as ${t.dtype}, not a float or quantized dtype; not scanned`);
    } catch (e) {
      r.problems.push(`cannot be read: ${(e as Error).message}`);
    }
    r.rms = count ? Math.sqrt(sumSq / count) : 0;
    if (count === 0) {
      r.min = 0;
      r.max = 0;
    }
    judge(r, count);
    if (r.problems.length) report.ok = false;
    report.tensors.push(r);
  }
  if (report.problems.length) report.ok = false;
  return report;
}

function judge(r: TensorReport, finite: number): void {
  const total = finite + r.nan + r.inf;
  if (r.nan) r.problems.push(`${r.nan} NaN value(s) of ${total}${r.dtype.startsWith('q') ? ' (a NaN block scale?)' : ''}`);
  if (r.inf) r.problems.push(`${r.inf} infinite value(s) of ${total}`);
  const absMax = Math.max(Math.abs(r.min), Math.abs(r.max));
  const isNorm = /norm\.weight$/.test(r.name);
  if (isNorm && absMax > CHECK_LIMITS.normAbsMax)
    r.problems.push(`a norm weight of magnitude ${absMax.toPrecision(3)} (trained models stay far below ${CHECK_LIMITS.normAbsMax})`);
  if (!isNorm && r.shape.length === 2) {
    if (r.rms > CHECK_LIMITS.matrixRms) r.problems.push(`RMS ${r.rms.toPrecision(3)} (trained weights are around 0.01–1)`);
    else if (absMax > CHECK_LIMITS.matrixAbsMax) r.problems.push(`a value of magnitude ${absMax.toPrecision(3)}`);
    if (finite > 0 && absMax === 0) r.problems.push('all zeros');
  }
}

function scanFloat(ck: Checkpoint, name: string, dtype: 'F32' | 'BF16' | 'F16', byteLength: number, visit: (x: Float32Array) => void): void {
  const esize = DTYPE_SIZES[dtype];
  const n = byteLength / esize;
  const f32 = new Float32Array(Math.min(CHUNK, n));
  const raw = dtype === 'F32' ? f32 : new Uint16Array(f32.length);
  for (let off = 0; off < n; off += CHUNK) {
    const len = Math.min(CHUNK, n - off);
    const view = raw.subarray(0, len);
    ck.readRangeInto(name, off * esize, view);
    if (dtype !== 'F32') toF32(dtype, view as Uint16Array, f32.subarray(0, len));
    visit(f32.subarray(0, len));
  }
}

function scanQuantized(ck: Checkpoint, name: string, q: QuantizedTensor, visit: (x: Float32Array) => void): void {
  const rowBytes = quantizedRowBytes(q.type, q.cols);
  const rowsPer = Math.max(1, Math.floor(CHUNK / q.cols));
  const bytes = new Uint8Array(rowsPer * rowBytes);
  const out = new Float32Array(rowsPer * q.cols);
  const deq = q.type === 'q8_0' ? dequantizeRowQ8_0 : dequantizeRowQ4_0;
  for (let r0 = 0; r0 < q.rows; r0 += rowsPer) {
    const rows = Math.min(rowsPer, q.rows - r0);
    ck.readRangeInto(name, r0 * rowBytes, bytes.subarray(0, rows * rowBytes));
    for (let r = 0; r < rows; r++) deq(bytes, r * rowBytes, q.cols, out, r * q.cols);
    visit(out.subarray(0, rows * q.cols));
  }
}

/** The report as text: one line per tensor (problems first), then a summary. */
export function formatCheckReport(r: CheckReport, all = false): string {
  const lines: string[] = [];
  const fmt = (x: number) => (x === 0 ? '0' : Math.abs(x) >= 1e4 || Math.abs(x) < 1e-3 ? x.toExponential(2) : x.toFixed(4));
  const w = Math.max(20, ...r.tensors.map((t) => t.name.length));
  lines.push(`${'tensor'.padEnd(w)}  ${'dtype'.padEnd(5)}  ${'shape'.padEnd(12)}  ${'min'.padStart(10)}  ${'max'.padStart(10)}  ${'rms'.padStart(10)}  status`);
  for (const t of r.tensors) {
    if (!all && t.problems.length === 0 && r.tensors.length > 40) continue;
    lines.push(
      `${t.name.padEnd(w)}  ${t.dtype.padEnd(5)}  ${`[${t.shape.join(',')}]`.padEnd(12)}  ${fmt(t.min).padStart(10)}  ${fmt(t.max).padStart(10)}  ${fmt(t.rms).padStart(10)}  ${t.problems.length ? t.problems.join('; ') : 'ok'}`,
    );
  }
  for (const p of r.problems) lines.push(`problem: ${p}`);
  const bad = r.tensors.filter((t) => t.problems.length).length;
  lines.push(
    r.ok
      ? `${r.dir}: ${r.tensors.length} tensors scanned, no problem found`
      : `${r.dir}: ${bad} of ${r.tensors.length} tensors with problems${r.problems.length ? `, ${r.problems.length} checkpoint problem(s)` : ''}`,
  );
  return lines.join('\n');
}
