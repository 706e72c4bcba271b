// What the Hugging Face cache holds, for `openelm list` / `openelm rm` (like `ollama list` / `rm`):
// one entry per cached repo (or local checkpoint folder) with its size on disk, the dtype of its
// weights and its parameter count, read from config.json and the safetensors headers only.
//
//   for (const m of listModels()) console.log(m.name, m.bytes, m.dtype, m.parameters);
//   removeCachedModel('apple/OpenELM-270M');   // → bytes freed
import fs from 'node:fs';
import path from 'node:path';
import { numParameters, parseConfig } from '../config/config.ts';
import { openCheckpoint } from './checkpoint.ts';
import { HubError, hubCacheDir } from './hub.ts';
import { readQuantizedLayout } from './quantized.ts';

export interface ModelEntry {
  /** repo id (cache) or the folder as given */
  name: string;
  /** the snapshot folder of the newest cached revision, or the folder itself */
  dir: string;
  /** bytes on disk: the repo's blobs (every revision), or the folder's files */
  bytes: number;
  /** f32, bf16, f16, q8_0, q4_0, "mixed", or "?" when the checkpoint cannot be read */
  dtype: string;
  /** from config.json; undefined when it cannot be read */
  parameters?: number;
  /** refs (e.g. "main") pointing at the listed snapshot */
  refs: string[];
  modified: Date;
}

const REPO_DIR = /^models--(.+?)--(.+)$/;

function sizeOf(p: string): number {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return 0;
  }
  if (st.isDirectory()) return fs.readdirSync(p).reduce((a, e) => a + sizeOf(path.join(p, e)), 0);
  return st.isFile() ? st.size : 0;
}

/** dtype and parameter count of a checkpoint folder, without reading weights. */
function describe(dir: string): { dtype: string; parameters?: number } {
  let parameters: number | undefined;
  try {
    parameters = numParameters(parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), path.join(dir, 'config.json')));
  } catch {
    /* unreadable config */
  }
  try {
    const ck = openCheckpoint(dir, { validate: false });
    const quant = readQuantizedLayout(ck);
    if (quant) return { dtype: [...new Set([...quant.values()].map((q) => q.type))].join('+'), parameters };
    const kinds = new Set([...ck.tensors.values()].filter((t) => t.shape.length === 2).map((t) => t.dtype.toLowerCase()));
    return { dtype: kinds.size === 1 ? [...kinds][0] : kinds.size ? 'mixed' : '?', parameters };
  } catch {
    return { dtype: '?', parameters };
  }
}

/** The models in the HF cache (`cacheDir`, default hubCacheDir()) and the given local folders. */
export function listModels(opts: { cacheDir?: string; folders?: string[] } = {}): ModelEntry[] {
  const cache = opts.cacheDir ?? hubCacheDir();
  const out: ModelEntry[] = [];
  let repos: string[] = [];
  try {
    repos = fs.readdirSync(cache).filter((d) => REPO_DIR.test(d));
  } catch {
    /* no cache yet */
  }
  for (const d of repos.sort()) {
    const [, owner, name] = REPO_DIR.exec(d)!;
    const repoDir = path.join(cache, d);
    const snapshots = path.join(repoDir, 'snapshots');
    let newest: { sha: string; mtime: Date } | undefined;
    try {
      for (const sha of fs.readdirSync(snapshots)) {
        const mtime = fs.statSync(path.join(snapshots, sha)).mtime;
        if (!newest || mtime > newest.mtime) newest = { sha, mtime };
      }
    } catch {
      /* no snapshot */
    }
    if (!newest) continue;
    const refs: string[] = [];
    const refsDir = path.join(repoDir, 'refs');
    const walk = (rel: string) => {
      for (const e of fs.readdirSync(path.join(refsDir, rel), { withFileTypes: true })) {
        const r = path.join(rel, e.name);
        if (e.isDirectory()) walk(r);
        else if (fs.readFileSync(path.join(refsDir, r), 'utf8').trim() === newest!.sha) refs.push(r.split(path.sep).join('/'));
      }
    };
    try {
      walk('');
    } catch {
      /* no refs */
    }
    const dir = path.join(snapshots, newest.sha);
    out.push({ name: `${owner}/${name}`, dir, bytes: sizeOf(path.join(repoDir, 'blobs')), refs, modified: newest.mtime, ...describe(dir) });
  }
  for (const f of opts.folders ?? []) {
    if (!fs.existsSync(path.join(f, 'config.json'))) throw new HubError('not-found', `${f}: not a checkpoint folder (no config.json)`);
    out.push({ name: f, dir: path.resolve(f), bytes: sizeOf(f), refs: [], modified: fs.statSync(f).mtime, ...describe(f) });
  }
  return out;
}

/** Deletes a repo from the HF cache (every revision and blob); returns the bytes freed. */
export function removeCachedModel(repo: string, opts: { cacheDir?: string } = {}): number {
  const cache = path.resolve(opts.cacheDir ?? hubCacheDir());
  if (!/^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(repo) || repo.includes('..')) {
    throw new HubError('invalid', `"${repo}" is not a hub repo id like apple/OpenELM-270M`);
  }
  const dir = path.join(cache, `models--${repo.replace('/', '--')}`);
  if (path.dirname(dir) !== cache) throw new HubError('invalid', `"${repo}" does not name a folder of the cache ${cache}`);
  if (!fs.existsSync(dir)) throw new HubError('not-cached', `${repo} is not in the Hugging Face cache at ${cache}`);
  const bytes = sizeOf(dir);
  fs.rmSync(dir, { recursive: true, force: true });
  return bytes;
}
