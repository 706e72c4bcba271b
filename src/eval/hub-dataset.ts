// Dataset files from the Hugging Face hub, into the standard HF cache beside the models:
//
//   <cache>/datasets--{owner}--{name}/blobs/<etag>, refs/<revision>, snapshots/<sha>/<file>
//
// the layout huggingface_hub writes (so `datasets` and openelm share downloads). Only the files
// a task needs are fetched: the data files (Parquet / JSON lines) of the evaluated and few-shot
// splits of its config, chosen from the repo's file list by the split rules of datasets.ts. A
// dataset whose main branch has no such files (a loading script) is read from the hub's
// automatic Parquet conversion, revision refs/convert/parquet.
//
//   1. GET {endpoint}/api/datasets/{repo}/revision/{rev}         → commit sha, siblings
//   2. GET {endpoint}/datasets/{repo}/resolve/{sha}/{file}        → the bytes (LFS files: a 302 to a
//      CDN, followed by hand so Authorization stays on the hub's origin); the ETag / X-Linked-Etag
//      names the blob, and a sha256 etag is checked against the bytes.
//
// It uses the model downloader's conventions (src/io/hub.ts: cache folder, token and endpoint
// from the same HF_* variables, HubError codes); dataset files are small, so a broken download
// starts over instead of resuming.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { HubError, hubCacheDir, hubToken } from '../io/hub.ts';
import { findSplitFiles, selectSplitFiles } from './datasets.ts';
import type { Split } from './tasks.ts';

export interface DatasetResolveOptions {
  /** dataset config: files under this top-level folder (e.g. "ARC-Easy") */
  config?: string;
  /** the splits whose files are needed */
  splits: Split[];
  /** branch, tag or commit (default "main") */
  revision?: string;
  token?: string;
  cacheDir?: string;
  endpoint?: string;
  /** never touch the network; default $HF_HUB_OFFLINE */
  offline?: boolean;
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
  onProgress?: (p: { repo: string; file: string; done: number; total: number }) => void;
}

const REPO_ID = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;
const CONVERTED = 'refs/convert/parquet';

/**
 * A local snapshot folder of dataset `repo` holding the files of `opts.splits` (the first split
 * is required; later ones, the few-shot split, are fetched when the repo has them).
 */
export async function resolveDataset(repo: string, opts: DatasetResolveOptions): Promise<string> {
  if (!REPO_ID.test(repo)) throw new HubError('not-found', `dataset "${repo}" is not a Hugging Face repo id like allenai/ai2_arc`);
  const env = opts.env ?? process.env;
  const endpoint = (opts.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
  const token = opts.token ?? hubToken(env);
  const offline = opts.offline ?? ['1', 'ON', 'YES', 'TRUE'].includes((env.HF_HUB_OFFLINE ?? '').toUpperCase());
  const repoDir = path.join(opts.cacheDir ?? hubCacheDir(env), `datasets--${repo.replace(/\//g, '--')}`);
  const doFetch = opts.fetch ?? globalThis.fetch;
  const [evalSplit] = opts.splits;

  // a cached snapshot with every wanted split is used without asking the hub
  const cached = (rev: string): string | undefined => {
    let sha: string;
    try {
      sha = fs.readFileSync(path.join(repoDir, 'refs', rev), 'utf8').trim();
    } catch {
      return undefined;
    }
    const dir = path.join(repoDir, 'snapshots', sha);
    return fs.existsSync(dir) && opts.splits.every((s) => findSplitFiles(dir, s, opts.config).length > 0) ? dir : undefined;
  };
  const revision = opts.revision ?? 'main';
  const hit = cached(revision) ?? cached(CONVERTED);
  if (hit) return hit;
  if (offline) {
    throw new HubError('not-cached', `dataset ${repo} (${opts.splits.join(', ')} of ${opts.config ?? 'its default config'}) is not in the Hugging Face cache at ${repoDir} and offline mode is on; download it once with network access, or pass a local folder: --tasks NAME=PATH`);
  }

  const headers = (url: string): Record<string, string> => {
    const h: Record<string, string> = { 'user-agent': 'openelm/0.1.0 (node)' };
    if (token && new URL(url).origin === new URL(endpoint).origin) h.authorization = `Bearer ${token}`;
    return h;
  };
  /** GET with redirects followed by hand; `etag` is the hub's own (X-Linked-Etag on an LFS redirect, else ETag). */
  const request = async (url: string): Promise<Response & { hubEtag?: string }> => {
    let hubEtag: string | undefined;
    for (let hop = 0; hop < 10; hop++) {
      let res: Response;
      try {
        res = await doFetch(url, { redirect: 'manual', headers: headers(url) });
      } catch (e) {
        const cause = (e as { cause?: { code?: string } }).cause;
        throw new HubError('network', `GET ${url} failed: ${cause?.code ?? (e as Error).message}`, { cause: e });
      }
      if (hop === 0) hubEtag = res.headers.get('x-linked-etag') ?? res.headers.get('etag') ?? undefined;
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel().catch(() => {});
        url = new URL(location, url).href;
        continue;
      }
      if (!res.ok) {
        const code = res.headers.get('x-error-code');
        await res.body?.cancel().catch(() => {});
        if (code === 'GatedRepo' || res.status === 403) throw new HubError('gated', `dataset ${repo} is gated or private (HTTP ${res.status}): set HF_TOKEN and accept its terms on ${endpoint}/datasets/${repo}`);
        if (res.status === 404 || res.status === 401) throw new HubError('not-found', `dataset ${repo}: ${url} not found (HTTP ${res.status}${code ? `, ${code}` : ''})`);
        throw new HubError('http', `dataset ${repo}: ${url}: HTTP ${res.status} ${res.statusText}`);
      }
      return Object.assign(res, { hubEtag });
    }
    throw new HubError('http', `dataset ${repo}: too many redirects for ${url}`);
  };
  const revisionInfo = async (rev: string) => {
    const res = await request(`${endpoint}/api/datasets/${repo}/revision/${encodeURIComponent(rev)}`);
    const json = (await res.json()) as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
    if (typeof json.sha !== 'string' || !/^[0-9a-f]{40}$/.test(json.sha) || !Array.isArray(json.siblings)) {
      throw new HubError('http', `dataset ${repo}@${rev}: the hub's answer has no commit sha or file list`);
    }
    const files = json.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === 'string' && !f.startsWith('/') && !f.split('/').includes('..'));
    return { sha: json.sha, files };
  };

  let rev = revision;
  let info = await revisionInfo(rev);
  if (selectSplitFiles(info.files, evalSplit, opts.config).length === 0 && revision === 'main') {
    // a script dataset: the hub's Parquet conversion has the data
    try {
      const conv = await revisionInfo(CONVERTED);
      if (selectSplitFiles(conv.files, evalSplit, opts.config).length > 0) {
        rev = CONVERTED;
        info = conv;
      }
    } catch (e) {
      if (!(e instanceof HubError) || e.code !== 'not-found') throw e;
    }
  }
  const wanted = [...new Set(opts.splits.flatMap((s) => selectSplitFiles(info.files, s, opts.config)))];
  if (selectSplitFiles(info.files, evalSplit, opts.config).length === 0) {
    throw new HubError('not-found', `dataset ${repo}@${revision} has no ${evalSplit} data files${opts.config ? ` for config ${opts.config}` : ''} (Parquet or JSON lines); files: ${info.files.slice(0, 20).join(', ')}`);
  }

  const snap = path.join(repoDir, 'snapshots', info.sha);
  for (const file of wanted) {
    const pointer = path.join(snap, ...file.split('/'));
    if (fs.existsSync(pointer)) continue;
    const url = `${endpoint}/datasets/${repo}/resolve/${info.sha}/${file.split('/').map(encodeURIComponent).join('/')}`;
    const res = await request(url);
    const bytes = Buffer.from(await res.arrayBuffer());
    opts.onProgress?.({ repo, file, done: bytes.length, total: bytes.length });
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    // the hub's etag names the blob: sha256 for LFS files (checked), git's blob sha1 for others
    const etag = (res.hubEtag ?? '').replace(/^W\//, '').replace(/"/g, '') || sha256;
    if (!/^[\w.-]+$/.test(etag)) throw new HubError('http', `${file} in dataset ${repo}: unusable ETag ${JSON.stringify(etag)}`);
    if (/^[0-9a-f]{64}$/.test(etag) && etag !== sha256) throw new HubError('integrity', `${file} in dataset ${repo}: sha256 ${sha256} does not match the hub's ${etag}`);
    const blob = path.join(repoDir, 'blobs', etag);
    await fsp.mkdir(path.dirname(blob), { recursive: true });
    await fsp.writeFile(`${blob}.incomplete`, bytes);
    await fsp.rename(`${blob}.incomplete`, blob);
    await fsp.mkdir(path.dirname(pointer), { recursive: true });
    await fsp.rm(pointer, { force: true });
    try {
      await fsp.symlink(path.relative(path.dirname(pointer), blob), pointer);
    } catch {
      await fsp.copyFile(blob, pointer); // no symlinks allowed (Windows without developer mode)
    }
  }
  const ref = path.join(repoDir, 'refs', ...rev.split('/'));
  await fsp.mkdir(path.dirname(ref), { recursive: true });
  await fsp.writeFile(ref, info.sha);
  return snap;
}
