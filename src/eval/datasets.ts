// Dataset records from local files in the form the Hugging Face hub serves them: Parquet
// (what the hub converts every dataset to), JSON lines, or a JSON array, with the dataset's own
// field names. A folder is searched for a split's files the way the `datasets` library infers
// splits from file names: a path part (folder or file name) equal to the split's keyword or
// bounded by separators - . _ space or digits, e.g.
//
//   ARC-Easy/test-00000-of-00001.parquet         (allenai/ai2_arc, config folder ARC-Easy)
//   boolq/validation-00000-of-00001.parquet      (aps/super_glue)
//   data/validation-00000-of-00001.parquet       (single-config datasets)
//   default/validation/0000.parquet              (the hub's refs/convert/parquet branch)
//   hellaswag_val.jsonl                          (the original release's file names)
//
// With a config (the harness's dataset_name), files under a top-level folder of that name are
// preferred. Shards are read in path order.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Doc, Split } from './tasks.ts';

/** Keywords per split, in the `datasets` library's order (datasets/data_files.py). */
export const SPLIT_KEYWORDS: Record<Split, string[]> = {
  train: ['train', 'training'],
  validation: ['validation', 'valid', 'dev', 'val'],
  test: ['test', 'testing', 'eval', 'evaluation'],
};

const DATA_FILE = /\.(parquet|jsonl|json|ndjson)$/i;
const SEP = '[-._ 0-9]';

function splitRegExp(split: Split): RegExp {
  return new RegExp(`(^|${SEP})(${SPLIT_KEYWORDS[split].join('|')})($|${SEP})`, 'i');
}

/** Does a repo-relative path (with / separators) belong to `split`? */
export function pathInSplit(rel: string, split: Split): boolean {
  const re = splitRegExp(split);
  const parts = rel.split('/');
  return parts.some((p, i) => re.test(i === parts.length - 1 ? p.replace(DATA_FILE, '') + '.' : p));
}

/**
 * The data files of `split` among repo-relative paths, in path order. With `config`, only
 * files under a top-level `config/` folder when there are any.
 */
export function selectSplitFiles(paths: readonly string[], split: Split, config?: string): string[] {
  let data = paths.filter((p) => DATA_FILE.test(p));
  if (config) {
    const under = data.filter((p) => p.startsWith(config + '/') || p.includes(`/${config}/`));
    if (under.length > 0) data = under.map((p) => p);
  }
  return data.filter((p) => pathInSplit(stripConfig(p, config), split)).sort();
}

function stripConfig(p: string, config?: string): string {
  if (!config) return p;
  const i = p.indexOf(config + '/');
  return i === 0 || (i > 0 && p[i - 1] === '/') ? p.slice(i + config.length + 1) : p;
}

/** Every file under `root` (relative paths, / separators), skipping hidden folders such as .cache and .git. */
export function listFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, rel: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const r = rel ? `${rel}/${e.name}` : e.name;
      const full = path.join(dir, e.name);
      let isDir = e.isDirectory();
      if (e.isSymbolicLink()) isDir = fs.statSync(full).isDirectory();
      if (isDir) walk(full, r);
      else out.push(r);
    }
  };
  walk(root, '');
  return out;
}

/** The absolute paths of `split`'s files in a folder (see selectSplitFiles). */
export function findSplitFiles(root: string, split: Split, config?: string): string[] {
  return selectSplitFiles(listFiles(root), split, config).map((r) => path.join(root, ...r.split('/')));
}

/** Records of one Parquet, JSON-lines or JSON-array file; 64-bit integers become numbers. */
export async function readRecords(file: string): Promise<Doc[]> {
  if (/\.parquet$/i.test(file)) return readParquet(file);
  const text = fs.readFileSync(file, 'utf8');
  const head = text.trimStart();
  if (/\.json$/i.test(file) && head.startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
    if (!Array.isArray(arr)) throw new Error(`${file}: expected a JSON array of records`);
    return arr.map((r, i) => record(r, `${file}: record ${i}`));
  }
  const docs: Doc[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch (e) {
      throw new Error(`${file}:${i + 1}: not valid JSON (${(e as Error).message})`);
    }
    docs.push(record(v, `${file}:${i + 1}`));
  });
  return docs;
}

function record(v: unknown, where: string): Doc {
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    throw new Error(`${where}: expected a JSON object, got ${Array.isArray(v) ? 'an array' : JSON.stringify(v)}`);
  return v as Doc;
}

async function readParquet(file: string): Promise<Doc[]> {
  const { asyncBufferFromFile, parquetReadObjects } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  let rows: Record<string, unknown>[];
  try {
    rows = await parquetReadObjects({ file: await asyncBufferFromFile(file), compressors });
  } catch (e) {
    throw new Error(`${file}: cannot read as Parquet (${(e as Error).message})`);
  }
  return rows.map((r) => plain(r) as Doc);
}

/** BigInt → number (dataset labels and ids are small), recursively. */
function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object' && !(v instanceof Uint8Array) && !(v instanceof Date)) {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = plain(x);
    return o;
  }
  return v;
}

/** All records of the given files, in order. */
export async function readAll(files: readonly string[]): Promise<Doc[]> {
  const out: Doc[] = [];
  for (const f of files) for (const d of await readRecords(f)) out.push(d);
  return out;
}
