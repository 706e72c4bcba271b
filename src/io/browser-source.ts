// A checkpoint's tensors over ModelFiles (browser-files.ts): the model's TensorSource, as a folder
// is in Node (checkpoint-source.ts), but the bytes come asynchronously, one tensor at a time.
//
//   const src = await openBrowserSource(urlFiles('/models/openelm-sotu/'));
//   await src.fetch('transformer.norm.weight');     // one range read
//   src.readInto('transformer.norm.weight', dest);  // then TensorSource's synchronous reads
//   src.release('transformer.norm.weight');
//
// Opening reads config.json and each safetensors header (two range reads per file) and checks
// the header against the file size: a model is refused before any weight is downloaded.
import { type OpenELMConfig, parseConfig } from '../config/config.ts';
import { blocksPerRow, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES } from '../kernels/quant.ts';
import type { FileDType, TensorSource } from '../model/weights.ts';
import { type ByteFile, ModelFileError, type ModelFiles } from './browser-files.ts';

const DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };
const MAX_HEADER = 100_000_000;

interface TensorAt {
  file: ByteFile;
  /** absolute byte offset in the file */
  start: number;
  byteLength: number;
  dtype: FileDType;
  /** logical shape ([rows, cols] for quantized matrices) */
  shape: number[];
}

/** TensorSource plus the asynchronous fetch that fills it, tensor by tensor. */
export interface BrowserTensorSource extends TensorSource {
  readonly where: string;
  /** every tensor's stored bytes, summed (what a download costs) */
  readonly totalBytes: number;
  /** reads the tensor's bytes so readInto / readRangeInto can serve them */
  fetch(name: string): Promise<void>;
  /** drops a fetched tensor's bytes */
  release(name: string): void;
  /** stored bytes of a tensor (0 if absent) */
  byteLength(name: string): number;
}

export async function readText(f: ByteFile): Promise<string> {
  return new TextDecoder().decode(await f.read(0, f.size));
}

async function readJson(f: ByteFile): Promise<unknown> {
  const text = await readText(f);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(f.name, `not valid JSON (${(e as Error).message})`);
  }
}

interface Header {
  meta: Record<string, string>;
  tensors: Map<string, { dtype: string; shape: number[]; start: number; byteLength: number }>;
}

/** Parses and checks a safetensors header: dtypes, shapes, and tensors that tile the data section exactly. */
async function readHeader(f: ByteFile): Promise<Header> {
  if (f.size < 8) throw new ModelFileError(f.name, `only ${f.size} bytes: too short for a safetensors file`);
  const lenBytes = await f.read(0, 8);
  const n = Number(new DataView(lenBytes.buffer, lenBytes.byteOffset, 8).getBigUint64(0, true));
  if (n > MAX_HEADER || 8 + n > f.size)
    throw new ModelFileError(f.name, `header length ${n} does not fit the file (${f.size} bytes): truncated or not a safetensors file`);
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(await f.read(8, n)));
  } catch (e) {
    throw new ModelFileError(f.name, `the safetensors header is not valid JSON (${(e as Error).message})`);
  }
  const dataStart = 8 + n,
    dataLength = f.size - dataStart;
  const meta: Record<string, string> = {};
  const list: { name: string; dtype: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, e] of Object.entries(raw)) {
    if (name === '__metadata__') {
      for (const [k, v] of Object.entries(e as Record<string, unknown>)) if (typeof v === 'string') meta[k] = v;
      continue;
    }
    const t = e as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const size = DTYPE_BYTES[t.dtype as string];
    const shape = t.shape as number[],
      offs = t.data_offsets as number[];
    const bad = (why: string) => new ModelFileError(f.name, `tensor "${name}": ${why}`);
    if (!size) throw bad(`unknown dtype ${JSON.stringify(t.dtype)}`);
    if (!Array.isArray(shape) || !shape.every((s) => Number.isInteger(s) && s >= 0)) throw bad(`shape ${JSON.stringify(shape)} is not a list of sizes`);
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isInteger(o) && o >= 0) || offs[1] < offs[0] || offs[1] > dataLength) {
      throw bad(`data_offsets ${JSON.stringify(offs)} do not lie in the data section (${dataLength} bytes)`);
    }
    const want = shape.reduce((a, b) => a * b, 1) * size;
    if (offs[1] - offs[0] !== want) throw bad(`${offs[1] - offs[0]} bytes for ${t.dtype} [${shape}], which takes ${want}`);
    list.push({ name, dtype: t.dtype as string, shape, begin: offs[0], end: offs[1] });
  }
  list.sort((a, b) => a.begin - b.begin);
  let cursor = 0;
  for (const t of list) {
    if (t.begin !== cursor)
      throw new ModelFileError(f.name, `tensor "${t.name}" starts at byte ${t.begin} of the data section, expected ${cursor} (overlap or hole)`);
    cursor = t.end;
  }
  if (cursor !== dataLength)
    throw new ModelFileError(f.name, `${dataLength - cursor} trailing bytes of the data section belong to no tensor: truncated or corrupt`);
  return { meta, tensors: new Map(list.map((t) => [t.name, { dtype: t.dtype, shape: t.shape, start: dataStart + t.begin, byteLength: t.end - t.begin }])) };
}

/** Opens config.json and model.safetensors (or model.safetensors.index.json and its shards). */
export async function openBrowserSource(files: ModelFiles): Promise<BrowserTensorSource> {
  const cfgFile = await files.open('config.json');
  if (!cfgFile) throw new ModelFileError(`${files.where}`, 'no config.json here: not a Hugging Face model folder');
  const config: OpenELMConfig = parseConfig(await readJson(cfgFile), cfgFile.name);
  let shards: ByteFile[];
  const single = await files.open('model.safetensors');
  if (single) shards = [single];
  else {
    const idx = await files.open('model.safetensors.index.json');
    if (!idx) throw new ModelFileError(files.where, 'neither model.safetensors nor model.safetensors.index.json is here');
    const map = ((await readJson(idx)) as { weight_map?: Record<string, string> }).weight_map;
    if (!map || typeof map !== 'object') throw new ModelFileError(idx.name, 'has no "weight_map" object');
    shards = [];
    for (const shard of [...new Set(Object.values(map))]) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('..'))
        throw new ModelFileError(idx.name, `shard name ${JSON.stringify(shard)} is not a file name`);
      const f = await files.open(shard);
      if (!f) throw new ModelFileError(idx.name, `names shard ${shard}, which is missing`);
      shards.push(f);
    }
  }
  const tensors = new Map<string, TensorAt>();
  for (const file of shards) {
    const h = await readHeader(file);
    const quantized = h.meta['openelm.format'];
    if (quantized !== undefined && quantized !== 'quantized-v1')
      throw new ModelFileError(file.name, `"openelm.format" is "${quantized}"; this version reads "quantized-v1"`);
    for (const [name, t] of h.tensors) {
      if (tensors.has(name)) throw new ModelFileError(file.name, `tensor "${name}" is in two shards`);
      let dtype = t.dtype as FileDType,
        shape = t.shape;
      const q = h.meta[`openelm.quant.${name}`];
      if (q !== undefined) {
        // docs/quantized-format.md: U8 [rows, bytes per row] holding q8_0 / q4_0 blocks
        const m = /^(q8_0|q4_0):(\d+)x(\d+)$/.exec(q);
        if (!m) throw new ModelFileError(file.name, `metadata "openelm.quant.${name}" = "${q}" is not "<q8_0|q4_0>:<rows>x<cols>"`);
        const rows = Number(m[2]),
          cols = Number(m[3]);
        const rowBytes = blocksPerRow(cols) * (m[1] === 'q8_0' ? Q8_0_BLOCK_BYTES : Q4_0_BLOCK_BYTES);
        if (t.dtype !== 'U8' || t.byteLength !== rows * rowBytes)
          throw new ModelFileError(file.name, `tensor "${name}" is declared ${m[1]} [${rows}, ${cols}] but stored as ${t.dtype} [${t.shape}]`);
        dtype = m[1] === 'q8_0' ? 'Q8_0' : 'Q4_0';
        shape = [rows, cols];
      } else if (!['F32', 'F16', 'BF16'].includes(t.dtype) && !/(^|\.)inv_freq$/.test(name)) {
        throw new ModelFileError(file.name, `tensor "${name}" is ${t.dtype}; weights must be F32, F16 or BF16 (or a quantized checkpoint's q8_0 / q4_0)`);
      }
      tensors.set(name, { file, start: t.start, byteLength: t.byteLength, dtype, shape });
    }
  }
  const fetched = new Map<string, Uint8Array>();
  const bytesOf = (name: string): Uint8Array => {
    const b = fetched.get(name);
    if (!b) throw new Error(`tensor "${name}" of ${files.where} was read before it was fetched (call fetch(name) first)`);
    return b;
  };
  return {
    config,
    where: files.where,
    totalBytes: [...tensors.values()].reduce((a, t) => a + t.byteLength, 0),
    info: (name) => {
      const t = tensors.get(name);
      return t ? { dtype: t.dtype, shape: t.shape } : undefined;
    },
    async fetch(name) {
      const t = tensors.get(name);
      if (!t) throw new ModelFileError(files.where, `has no tensor "${name}"`);
      if (!fetched.has(name)) fetched.set(name, await t.file.read(t.start, t.byteLength));
    },
    release: (name) => void fetched.delete(name),
    byteLength: (name) => tensors.get(name)?.byteLength ?? 0,
    readInto(name, dest) {
      const b = bytesOf(name);
      if (dest.length !== b.length) throw new RangeError(`tensor "${name}" has ${b.length} bytes, the destination ${dest.length}`);
      dest.set(b);
    },
    readRangeInto(name, offset, dest) {
      const b = bytesOf(name);
      if (offset + dest.length > b.length) throw new RangeError(`tensor "${name}": bytes ${offset}..${offset + dest.length} lie past its ${b.length}`);
      dest.set(b.subarray(offset, offset + dest.length));
    },
  };
}
