// A Hugging Face checkpoint folder, opened and checked before a byte of weights is read.
//
//   <dir>/config.json                      the OpenELM config (parsed by config/config.ts)
//   <dir>/model.safetensors                one file, or (when there is no such file)
//   <dir>/model.safetensors.index.json     { metadata: { total_size }, weight_map: { tensor: shard } }
//   <dir>/model-00001-of-0000N.safetensors the shards the index names
//
// Opening parses every safetensors header and cross-checks index and shards (missing shard,
// tensor listed but absent, tensor in two shards, tensor no index entry points to). validate()
// (run by default) compares the tensors with what the config implies: expectedTensors(config).
//
//   const ck = openCheckpoint('OpenELM-270M');
//   const norm = ck.readAsF32('transformer.norm.weight');   // Float32Array [model_dim]
import fs from 'node:fs';
import nodePath from 'node:path';
import { expectedTensors, type OpenELMConfig, parseConfig } from '../config/config.ts';
import { CheckpointError } from './checkpoint-error.ts';
import { explainShape } from './checkpoint-shapes.ts';
import { isFloatDType } from './dtype.ts';
import { readJsonFile } from './json.ts';
import { openSafetensors, type SafetensorsFile, type SafetensorsTensorInfo, type TensorArray } from './safetensors.ts';

export { CheckpointError } from './checkpoint-error.ts';
export { type CheckpointTensorInput, type WriteCheckpointOptions, writeCheckpoint } from './checkpoint-write.ts';

export const CONFIG_FILE = 'config.json';
export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export interface CheckpointTensor extends SafetensorsTensorInfo {
  /** path of the safetensors file holding it */
  file: string;
}

export interface Checkpoint {
  readonly dir: string;
  readonly config: OpenELMConfig;
  /** safetensors files in shard order (one when unsharded) */
  readonly files: string[];
  /** path of model.safetensors.index.json when sharded */
  readonly index?: string;
  readonly tensors: Map<string, CheckpointTensor>;
  /** copies the tensor's raw little-endian bytes into dest (dest.byteLength = its byteLength) */
  readInto(name: string, dest: ArrayBufferView): void;
  /** copies dest.byteLength raw bytes of the tensor, from byte `offset` of its data (for reading in chunks) */
  readRangeInto(name: string, offset: number, dest: ArrayBufferView): void;
  /** the tensor in a new typed array: Float32Array for F32, Uint16Array (raw bits) for BF16/F16 */
  read(name: string): TensorArray;
  /** an F32/BF16/F16 tensor as f32 values */
  readAsF32(name: string): Float32Array;
  readF32Into(name: string, dest: Float32Array): void;
  /** throws a CheckpointError listing missing, unexpected, non-float and mis-shaped tensors */
  validate(): void;
}

export interface OpenCheckpointOptions {
  /** compare the tensors against the config (default true) */
  validate?: boolean;
}

/** Buffers that some exports carry and that the model recomputes: never an error. */
const HARMLESS = /(^|\.)inv_freq$/;

export function openCheckpoint(dir: string, opts: OpenCheckpointOptions = {}): Checkpoint {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new CheckpointError(`checkpoint folder ${dir} does not exist`, dir);
  }
  if (!st.isDirectory()) {
    throw new CheckpointError(
      `${dir} is not a folder: give the checkpoint folder holding ${CONFIG_FILE} and ${SINGLE_FILE} (or ${INDEX_FILE} and shards)`,
      dir,
    );
  }
  const config = readConfig(dir);
  const single = nodePath.join(dir, SINGLE_FILE);
  const indexPath = nodePath.join(dir, INDEX_FILE);
  let ck: CheckpointImpl;
  if (fs.existsSync(single)) {
    const f = openSafetensors(single);
    ck = new CheckpointImpl(dir, config, [f], undefined);
  } else if (fs.existsSync(indexPath)) {
    ck = openSharded(dir, config, indexPath);
  } else {
    const others = fs.readdirSync(dir).filter((f) => /\.(safetensors|bin|pt|pth|gguf)$/.test(f));
    const found = others.length
      ? ` (found ${others.join(', ')}${others.some((f) => !f.endsWith('.safetensors')) ? '; only safetensors weights are read' : ''})`
      : '';
    throw new CheckpointError(`${dir}: no model weights: looked for ${SINGLE_FILE} and ${INDEX_FILE}${found}`, dir);
  }
  if (opts.validate ?? true) ck.validate();
  return ck;
}

function readConfig(dir: string): OpenELMConfig {
  const file = nodePath.join(dir, CONFIG_FILE);
  if (!fs.existsSync(file)) throw new CheckpointError(`${dir}: no ${CONFIG_FILE} (looked for ${file})`, file);
  let raw: unknown;
  try {
    raw = readJsonFile(file, 1024 * 1024); // a config is a few KB
  } catch (e) {
    throw new CheckpointError((e as Error).message, file);
  }
  return parseConfig(raw, file);
}

function openSharded(dir: string, config: OpenELMConfig, indexPath: string): CheckpointImpl {
  const fail = (msg: string, tensor?: string): never => {
    throw new CheckpointError(`${indexPath}: ${msg}`, indexPath, tensor);
  };
  let raw: unknown;
  try {
    raw = readJsonFile(indexPath);
  } catch (e) {
    return fail((e as Error).message.replace(`${indexPath}: `, ''));
  }
  const map = (raw as { weight_map?: unknown } | null)?.weight_map;
  if (map === null || typeof map !== 'object' || Array.isArray(map)) return fail('needs a "weight_map" object of tensor name → shard file');

  // shard file → the tensors the index puts there, in first-seen order
  const byShard = new Map<string, string[]>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '') fail(`weight_map["${name}"] must be a shard file name, got ${JSON.stringify(shard)}`, name);
    const s = shard as string;
    if (nodePath.isAbsolute(s) || s.split(/[\\/]/).includes('..')) fail(`weight_map["${name}"] = "${s}" points outside the checkpoint folder`, name);
    if (!byShard.has(s)) byShard.set(s, []);
    byShard.get(s)!.push(name);
  }
  if (byShard.size === 0) fail('weight_map is empty');

  const files: SafetensorsFile[] = [];
  for (const [shard, names] of [...byShard].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
    const p = nodePath.join(dir, shard);
    if (!fs.existsSync(p)) {
      fail(`maps ${names.length} tensor(s) (e.g. "${names[0]}") to shard ${shard}, which is missing from ${dir}`, names[0]);
    }
    const f = openSafetensors(p);
    for (const n of names) if (!f.tensors.has(n)) fail(`lists tensor "${n}" in ${shard}, but ${p} has no such tensor`, n);
    files.push(f);
  }
  const where = new Map<string, string>();
  for (const f of files) {
    for (const n of f.tensors.keys()) {
      const other = where.get(n);
      if (other) throw new CheckpointError(`${dir}: tensor "${n}" is in two shards: ${other} and ${f.path}`, f.path, n);
      where.set(n, f.path);
      const listed = (map as Record<string, string>)[n];
      if (listed === undefined) fail(`does not list tensor "${n}", which ${f.path} holds`, n);
    }
  }
  return new CheckpointImpl(dir, config, files, indexPath);
}

/** Up to `max` items, then "… and N more". */
function some(items: string[], max = 8): string {
  return items.slice(0, max).join('\n    ') + (items.length > max ? `\n    … and ${items.length - max} more` : '');
}

function unexpectedHint(name: string, cfg: OpenELMConfig): string {
  const layer = /^transformer\.layers\.(\d+)\./.exec(name);
  if (layer && Number(layer[1]) >= cfg.num_transformer_layers) return ` (layer ${layer[1]}, but num_transformer_layers = ${cfg.num_transformer_layers})`;
  if (name === 'lm_head.weight' && cfg.share_input_output_layers) return ' (share_input_output_layers = true ties the output head to the embedding)';
  if (/\.(q|k)_norm\.weight$/.test(name) && !cfg.normalize_qk_projections) return ' (normalize_qk_projections = false)';
  return '';
}

class CheckpointImpl implements Checkpoint {
  readonly tensors = new Map<string, CheckpointTensor>();
  readonly files: string[];
  private readonly byPath = new Map<string, SafetensorsFile>();

  constructor(
    readonly dir: string,
    readonly config: OpenELMConfig,
    files: SafetensorsFile[],
    readonly index: string | undefined,
  ) {
    this.files = files.map((f) => f.path);
    for (const f of files) {
      this.byPath.set(f.path, f);
      for (const t of f.tensors.values()) this.tensors.set(t.name, { ...t, file: f.path });
    }
  }

  private fileOf(name: string): SafetensorsFile {
    const t = this.tensors.get(name);
    if (!t) throw new CheckpointError(`${this.dir}: checkpoint has no tensor "${name}"`, this.dir, name);
    return this.byPath.get(t.file)!;
  }

  readInto(name: string, dest: ArrayBufferView): void {
    this.fileOf(name).readInto(name, dest);
  }

  readRangeInto(name: string, offset: number, dest: ArrayBufferView): void {
    this.fileOf(name).readRangeInto(name, offset, dest);
  }

  read(name: string): TensorArray {
    return this.fileOf(name).read(name);
  }

  readAsF32(name: string): Float32Array {
    return this.fileOf(name).readAsF32(name);
  }

  readF32Into(name: string, dest: Float32Array): void {
    this.fileOf(name).readF32Into(name, dest);
  }

  validate(): void {
    const cfg = this.config;
    const want = expectedTensors(cfg);
    const source = this.index ?? this.files[0];
    const missing: string[] = [];
    const shapes: string[] = [];
    const dtypes: string[] = [];
    for (const [name, shape] of want) {
      const t = this.tensors.get(name);
      if (!t) {
        missing.push(`${name} [${shape}]`);
        continue;
      }
      if (!isFloatDType(t.dtype)) dtypes.push(`${name} is ${t.dtype} in ${t.file}`);
      if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
        shapes.push(`${name} in ${t.file} has shape [${t.shape}], expected [${shape}] ${explainShape(cfg, name)}`);
      }
    }
    const unexpected = [...this.tensors.values()]
      .filter((t) => !want.has(t.name) && !HARMLESS.test(t.name))
      .map((t) => `${t.name} [${t.shape}] in ${t.file}${unexpectedHint(t.name, cfg)}`);

    const problems: string[] = [];
    if (missing.length)
      problems.push(`${missing.length} missing tensor(s), which ${source} ${this.index ? 'does not list' : 'should hold'}:\n    ${some(missing)}`);
    if (unexpected.length)
      problems.push(
        `${unexpected.length} unexpected tensor(s), not part of an OpenELM with this config (a config.json that does not match the weights?):\n    ${some(unexpected)}`,
      );
    if (shapes.length) problems.push(`${shapes.length} tensor(s) with the wrong shape for ${nodePath.join(this.dir, CONFIG_FILE)}:\n    ${some(shapes, 4)}`);
    if (dtypes.length) problems.push(`${dtypes.length} tensor(s) not stored as F32, BF16 or F16:\n    ${some(dtypes)}`);
    if (problems.length) {
      const first = missing[0]?.split(' ')[0] ?? unexpected[0]?.split(' ')[0] ?? shapes[0]?.split(' ')[0] ?? dtypes[0]?.split(' ')[0];
      throw new CheckpointError(`${this.dir}: checkpoint does not match its config:\n  ${problems.join('\n  ')}`, source, first);
    }
  }
}
