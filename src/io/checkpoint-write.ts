// Writing a Hugging Face checkpoint folder: config.json + model.safetensors, or, when the weights
// exceed `shardSize`, model-0000i-of-0000N.safetensors shards + model.safetensors.index.json.
//
// The layout is planned from the config (expectedTensors), so tensors can stream in one at a time
// and in any order; each is converted to the target dtype in 1M-element chunks and written at its
// offset. Shards are split like transformers' save_pretrained: in tensor order, a new shard when
// the next tensor would push the current one past shardSize (default 5 GB, as transformers).
//
// Atomic: everything is written into `<dir>.tmp-<pid>` and renamed to `dir` at the end; on any
// error the temp folder is removed and `dir` is untouched. `dir` must not exist or be empty.
//
//   await writeCheckpoint('out', cfg, initTensors(cfg, 0), { dtype: 'bf16' });
import fs from 'node:fs';
import nodePath from 'node:path';
import { configToJson, expectedTensors, type OpenELMConfig } from '../config/config.ts';
import { CheckpointError } from './checkpoint-error.ts';
import { DTYPE_SIZES, type FloatDType, fromF32, toF32 } from './dtype.ts';
import { checkOutputDir, cleanStaleTemps, fsError, OutputPathError } from './output.ts';
import { SafetensorsWriter, syncDir } from './safetensors-write.ts';

export interface CheckpointTensorInput {
  name: string;
  shape: number[];
  /** values [numel]: f32, or raw bf16/f16 bits with `dtype` saying which */
  data: Float32Array | Uint16Array;
  /** dtype of `data` (default F32; required for a Uint16Array) */
  dtype?: FloatDType;
}

export interface WriteCheckpointOptions {
  /** storage dtype of the written weights (default f32) */
  dtype?: 'f32' | 'bf16' | 'f16';
  /** maximum bytes per shard (default 5e9, transformers' "5GB") */
  shardSize?: number;
}

const TARGET: Record<'f32' | 'bf16' | 'f16', { dtype: FloatDType; torch: string }> = {
  f32: { dtype: 'F32', torch: 'float32' },
  bf16: { dtype: 'BF16', torch: 'bfloat16' },
  f16: { dtype: 'F16', torch: 'float16' },
};
const CHUNK = 1 << 20; // elements converted per step

interface Planned {
  shape: number[];
  shard: number;
  done: boolean;
}

export async function writeCheckpoint(
  dir: string,
  config: OpenELMConfig,
  tensors: Iterable<CheckpointTensorInput> | AsyncIterable<CheckpointTensorInput>,
  opts: WriteCheckpointOptions = {},
): Promise<void> {
  const want = opts.dtype ?? 'f32';
  const target = Object.hasOwn(TARGET, want) ? TARGET[want] : undefined;
  if (!target) throw new Error(`writeCheckpoint: dtype must be f32, bf16 or f16, got ${JSON.stringify(opts.dtype)}`);
  const shardSize = opts.shardSize ?? 5e9;
  if (!(shardSize > 0)) throw new Error(`writeCheckpoint: shardSize must be a positive number of bytes, got ${shardSize}`);
  try {
    checkOutputDir(dir, 'writeCheckpoint');
  } catch (e) {
    if (e instanceof OutputPathError) throw new CheckpointError(`${e.message.replace(/^writeCheckpoint /, '')}; writeCheckpoint does not overwrite`, dir);
    throw e;
  }
  cleanStaleTemps(dir);

  // Plan: tensor → shard, in expectedTensors order.
  const esize = DTYPE_SIZES[target.dtype];
  const plan = new Map<string, Planned>();
  const shards: { name: string; specs: { name: string; dtype: FloatDType; shape: number[] }[]; bytes: number }[] = [];
  for (const [name, shape] of expectedTensors(config)) {
    const bytes = shape.reduce((a, b) => a * b, 1) * esize;
    let cur = shards[shards.length - 1];
    if (!cur || (cur.bytes > 0 && cur.bytes + bytes > shardSize)) shards.push((cur = { name: '', specs: [], bytes: 0 }));
    cur.specs.push({ name, dtype: target.dtype, shape });
    cur.bytes += bytes;
    plan.set(name, { shape, shard: shards.length - 1, done: false });
  }
  const n = shards.length;
  const pad5 = (i: number) => String(i).padStart(5, '0');
  shards.forEach((s, i) => (s.name = n === 1 ? 'model.safetensors' : `model-${pad5(i + 1)}-of-${pad5(n)}.safetensors`));

  const tmp = `${nodePath.resolve(dir)}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  try {
    fs.mkdirSync(tmp, { recursive: true });
  } catch (e) {
    throw fsError(e, `writeCheckpoint: creating ${tmp}`);
  }
  const writers: SafetensorsWriter[] = [];
  try {
    for (const s of shards) writers.push(new SafetensorsWriter(nodePath.join(tmp, s.name), s.specs, { format: 'pt' }));
    const f32 = new Float32Array(CHUNK);
    const u16 = new Uint16Array(CHUNK);
    for await (const t of tensors) {
      const p = plan.get(t.name);
      const fail = (msg: string): never => {
        throw new CheckpointError(`writeCheckpoint ${dir}: tensor "${t.name}" ${msg}`, dir, t.name);
      };
      if (!p) fail(`is not part of an OpenELM with this config (expectedTensors(config) does not list it)`);
      if (p!.done) fail('is given twice');
      if (t.shape.length !== p!.shape.length || t.shape.some((d, i) => d !== p!.shape[i])) fail(`has shape [${t.shape}] but the config implies [${p!.shape}]`);
      const srcType: FloatDType = t.dtype ?? 'F32';
      if ((srcType === 'F32') !== t.data instanceof Float32Array)
        fail(`data is a ${t.data.constructor.name} but dtype is ${srcType} (F32 needs a Float32Array, BF16/F16 a Uint16Array)`);
      const numel = p!.shape.reduce((a, b) => a * b, 1);
      if (t.data.length !== numel) fail(`has ${t.data.length} values but shape [${p!.shape}] needs ${numel}`);
      const w = writers[p!.shard];
      for (let off = 0; off < numel; off += CHUNK) {
        const len = Math.min(CHUNK, numel - off);
        const src = t.data.subarray(off, off + len);
        if (srcType === target.dtype) {
          w.write(t.name, src);
          continue;
        }
        const asF32 = srcType === 'F32' ? (src as Float32Array) : f32.subarray(0, len);
        if (srcType !== 'F32') toF32(srcType, src, asF32);
        const out = target.dtype === 'F32' ? asF32 : u16.subarray(0, len);
        if (target.dtype !== 'F32') fromF32(target.dtype, asF32, out);
        w.write(t.name, out);
      }
      p!.done = true;
    }
    const missing = [...plan].filter(([, p]) => !p.done).map(([name]) => name);
    if (missing.length) {
      throw new CheckpointError(`writeCheckpoint ${dir}: ${missing.length} tensor(s) the config needs were never given, e.g. "${missing[0]}"`, dir, missing[0]);
    }
    for (const w of writers) w.finish();

    writeFileSynced(nodePath.join(tmp, 'config.json'), JSON.stringify({ ...configToJson(config), torch_dtype: target.torch }, null, 2) + '\n');
    if (n > 1) {
      const weightMap: Record<string, string> = {};
      for (const name of [...plan.keys()].sort()) weightMap[name] = shards[plan.get(name)!.shard].name;
      const totalSize = shards.reduce((a, s) => a + s.bytes, 0);
      writeFileSynced(
        nodePath.join(tmp, 'model.safetensors.index.json'),
        JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 2) + '\n',
      );
    }
    syncDir(tmp);
    try {
      if (fs.existsSync(dir)) fs.rmdirSync(dir); // empty (checked above); rename cannot replace a folder everywhere
      fs.renameSync(tmp, dir);
    } catch (e) {
      throw fsError(e, `writeCheckpoint: moving ${tmp} to ${dir} (did something write into ${dir} meanwhile?)`);
    }
    syncDir(nodePath.dirname(nodePath.resolve(dir)));
  } catch (e) {
    for (const w of writers) w.abort();
    fs.rmSync(tmp, { recursive: true, force: true });
    throw fsError(e, `writeCheckpoint ${dir}`);
  }
}

function writeFileSynced(file: string, text: string): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeFileSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
