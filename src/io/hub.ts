// Model sources: a local folder, or a Hugging Face hub repo downloaded into the standard HF cache.
//
// The cache layout is the one huggingface_hub writes, so Python tools and ours share downloads:
//
//   <cache>/models--{owner}--{name}/
//     blobs/<etag>                    file contents, named by etag (sha256 for LFS files, git sha1 else)
//     blobs/<etag>.incomplete         a download in progress; resumed with `Range: bytes=N-`
//     refs/<revision>                 the commit sha that revision (e.g. "main") pointed to
//     snapshots/<sha>/<filename>      relative symlink to ../../blobs/<etag> (a copy where links fail)
//
// Flow for a repo id: a complete cached snapshot for refs/<revision> is used without any network
// request (pass `refresh: true` to ask the hub what the revision points to now). Otherwise:
//   1. GET  {endpoint}/api/models/{repo}/revision/{rev}      → commit `sha`, `siblings[].rfilename`
//   2. HEAD {endpoint}/{repo}/resolve/{sha}/{file}            → ETag / X-Linked-Etag, size, and for
//      LFS files a 302 to a CDN (not followed for HEAD; the hub's headers are on the 302 itself)
//   3. GET the same URL, following redirects by hand so Authorization never leaves the hub's origin,
//      streaming chunks into blobs/<etag>.incomplete, then size + hash check of the bytes on disk
//      (sha256 for 64-hex etags, git's blob sha1 for 40-hex ones), then rename.
//
// Hostile or broken servers: the commit sha, the revision, file names and etags become path parts
// only after they are checked (hex ids, safe segments) and every path is checked to stay inside the
// cache; bodies are capped at the announced size (and at maxFileBytes), whatever their encoding;
// requests time out (no response within HF_HUB_ETAG_TIMEOUT, no byte within HF_HUB_DOWNLOAD_TIMEOUT,
// or fewer than minBytesPerSecond over a window: slow-loris). Concurrency: one process at a time
// downloads a blob, holding blobs/<etag>.lock (its host and pid); others wait for it, and take a
// lock over when its holder is dead or silent.
//
// Datasets (lm-evaluation-harness data for `openelm eval`) go through the same downloader:
// resolveRepo(repo, { repoType: 'dataset', selectFiles, isComplete }) uses datasets--{owner}--{name},
// /api/datasets/{repo}/revision/{rev} and {endpoint}/datasets/{repo}/resolve/{sha}/{file}, with
// the files and the completeness rule the caller gives.
//
// Example:
//   const dir = await resolveModel('apple/OpenELM-270M-Instruct', { onProgress: (p) => console.log(p.file, p.done, p.total) });
//   // dir = ~/.cache/huggingface/hub/models--apple--OpenELM-270M-Instruct/snapshots/<sha>
import { createHash, type Hash } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';

/** Progress of one file's download. `done`/`total` are bytes of `file`; the `overall*` fields span every file this call downloads. */
export interface DownloadProgress {
  repo: string;
  file: string;
  /** bytes of `file` on disk (including bytes kept from an earlier, interrupted download) */
  done: number;
  /** size of `file` in bytes */
  total: number;
  overallDone: number;
  overallTotal: number;
}

export interface ResolveOptions {
  /** branch, tag or commit sha (default "main") */
  revision?: string;
  /** default: env HF_TOKEN, else HUGGING_FACE_HUB_TOKEN, else the file $HF_TOKEN_PATH or $HF_HOME/token */
  token?: string;
  /** default: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub */
  cacheDir?: string;
  /** default: $HF_ENDPOINT, else https://huggingface.co */
  endpoint?: string;
  /** never touch the network; default: $HF_HUB_OFFLINE is 1/true/yes/on */
  offline?: boolean;
  /** ask the hub what `revision` points to even when a complete snapshot is cached */
  refresh?: boolean;
  /** shell-style globs (`*` matches anything, `/` included); default DEFAULT_ALLOW_PATTERNS */
  allowPatterns?: string[];
  onProgress?: (p: DownloadProgress) => void;
  /** extra attempts per file after a dropped connection, each resuming where the last stopped (default 3) */
  retries?: number;
  /** environment to read HF_* variables from (default process.env); tests pass their own */
  env?: Record<string, string | undefined>;
  /** ms to wait for a response's headers (default: $HF_HUB_ETAG_TIMEOUT seconds, else 10 s) */
  connectTimeoutMs?: number;
  /** ms without a single body byte before a download counts as dropped (default: $HF_HUB_DOWNLOAD_TIMEOUT seconds, else 10 s) */
  idleTimeoutMs?: number;
  /** slowest accepted download: fewer bytes than this per second, over windows of 3 × idleTimeoutMs, drop the connection (default 1024; 0 = off) */
  minBytesPerSecond?: number;
  /** largest file accepted, whatever the server announces (default 128 GiB for weights, 64 MiB for other files) */
  maxFileBytes?: number;
  /** a download lock not refreshed for this many ms is taken over (default max(60 s, 6 × idleTimeoutMs)) */
  lockStaleMs?: number;
  /** default globalThis.fetch */
  fetch?: typeof fetch;
}

/** resolveRepo's options: a model (default) or a dataset repo, and which of its files make a usable snapshot. */
export interface RepoOptions extends ResolveOptions {
  repoType?: 'model' | 'dataset';
  /** the files to fetch, from the repo's file list (default: a model's config, tokenizer and safetensors weights, by allowPatterns) */
  selectFiles?: (files: string[]) => string[];
  /** whether a snapshot folder holds what the caller needs (default: config.json and every weight file) */
  isComplete?: (dir: string) => boolean;
}

export const DEFAULT_ALLOW_PATTERNS = [
  'config.json',
  'generation_config.json',
  '*.safetensors',
  'model.safetensors.index.json',
  'tokenizer.model',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
];

export type HubErrorCode = 'gated' | 'not-found' | 'not-cached' | 'network' | 'integrity' | 'http' | 'no-weights' | 'invalid' | 'io';

/** Every failure of resolveModel, with a machine-readable `code` and a message that says what to do. */
export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HubError';
  }
}

/** Returns a local folder holding config.json and the weights of `source` (a folder, or a hub repo id `owner/name`). */
export async function resolveModel(source: string, opts: ResolveOptions = {}): Promise<string> {
  if (isDirectory(source)) return path.resolve(source);
  const repo = source
    .replace(/^hf:\/\//, '')
    .replace(/^https?:\/\/(www\.)?(huggingface\.co|hf\.co)\//, '')
    .replace(/\/+$/, '');
  if (!REPO_ID.test(repo) || repo.includes('..') || repo.includes('--')) {
    throw new HubError('not-found', `model "${source}" is neither a folder nor a Hugging Face repo id like apple/OpenELM-270M-Instruct`);
  }
  if (opts.revision !== undefined && !isSafeRevision(opts.revision)) {
    throw new HubError(
      'invalid',
      `revision ${JSON.stringify(opts.revision)} is not a branch, tag or commit name (letters, digits, - _ . and / between parts; no "..", no leading "/")`,
    );
  }
  return new Hub(repo, opts).snapshot();
}

/**
 * A local snapshot folder of hub repo `repo` (a model, or with repoType 'dataset' a dataset)
 * holding the files `selectFiles` picks: the cached one when `isComplete` accepts it, else
 * downloaded with every guarantee of resolveModel (resume, locks, hashes, timeouts, size caps).
 */
export async function resolveRepo(repo: string, opts: RepoOptions = {}): Promise<string> {
  if (!REPO_ID.test(repo) || repo.includes('..') || repo.includes('--')) {
    throw new HubError('not-found', `"${repo}" is not a Hugging Face repo id like ${opts.repoType === 'dataset' ? 'allenai/ai2_arc' : 'apple/OpenELM-270M'}`);
  }
  if (opts.revision !== undefined && !isSafeRevision(opts.revision)) {
    throw new HubError('invalid', `revision ${JSON.stringify(opts.revision)} is not a branch, tag or commit name`);
  }
  return new Hub(repo, opts).snapshot();
}

/** The HF cache folder resolveModel uses under the given environment. */
export function hubCacheDir(env: Record<string, string | undefined> = process.env): string {
  if (env.HF_HUB_CACHE) return env.HF_HUB_CACHE;
  if (env.HUGGINGFACE_HUB_CACHE) return env.HUGGINGFACE_HUB_CACHE; // legacy name, still read by huggingface_hub
  return path.join(hfHome(env), 'hub');
}

/** The token resolveModel sends, if any: env HF_TOKEN, HUGGING_FACE_HUB_TOKEN, else the token file `huggingface-cli login` writes. */
export function hubToken(env: Record<string, string | undefined> = process.env): string | undefined {
  const t = env.HF_TOKEN?.trim() || env.HUGGING_FACE_HUB_TOKEN?.trim();
  if (t) return t;
  const file = env.HF_TOKEN_PATH || path.join(hfHome(env), 'token');
  try {
    return fs.readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------

// huggingface_hub's rule: letters, digits, - _ . ; no leading/trailing - or ., no "--" or ".."
const REPO_ID = /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/;
const COMMIT_SHA = /^[0-9a-f]{40}$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** what an etag may be: git's blob sha1 (regular files) or the sha256 of an LFS file */
const ETAG = /^([0-9a-f]{40}|[0-9a-f]{64})$/;
const MAX_JSON_BYTES = 16 * 1024 * 1024;
const MAX_WEIGHT_BYTES = 128 * 1024 ** 3;
const MAX_OTHER_BYTES = 64 * 1024 * 1024;

/** A revision that is safe as a path under refs/: segments of [\w.-] separated by "/", none "." or "..". */
export function isSafeRevision(rev: string): boolean {
  if (typeof rev !== 'string' || rev.length === 0 || rev.length > 256) return false;
  return rev.split('/').every((seg) => /^[\w.-]+$/.test(seg) && seg !== '.' && seg !== '..');
}

/** A repo file name that is safe under snapshots/<sha>/: relative, no "." / ".." / empty segments, no backslash or NUL. */
function isSafeFileName(f: string): boolean {
  if (f.length === 0 || f.length > 1024 || f.startsWith('/') || /[\\\0]/.test(f)) return false;
  return f.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/** `p` itself, after checking that it lies inside `root` (both resolved). */
function inside(root: string, p: string, what: string): string {
  const r = path.resolve(root),
    q = path.resolve(p);
  if (q !== r && !q.startsWith(r + path.sep)) throw new HubError('invalid', `refusing to write ${what} at ${q}: outside the cache folder ${r}`);
  return q;
}

/** An integer header, or undefined when it is absent or not a non-negative integer. */
function headerInt(res: Response, name: string): number | undefined {
  const v = res.headers.get(name);
  if (v === null || !/^\s*\d+\s*$/.test(v)) return undefined;
  const n = Number(v);
  return Number.isSafeInteger(n) ? n : undefined;
}

function envSeconds(v: string | undefined): number | undefined {
  if (v === undefined || v.trim() === '') return undefined;
  const x = Number(v);
  return Number.isFinite(x) && x > 0 ? x * 1000 : undefined;
}
const WEIGHTS = /\.safetensors$/;
const PYTORCH_WEIGHTS = /(^|\/)(pytorch_model.*\.bin|.*\.(bin|pt|pth|ckpt))$/;

function hfHome(env: Record<string, string | undefined>): string {
  if (env.HF_HOME) return env.HF_HOME;
  const xdg = env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(xdg, 'huggingface');
}

function isTrue(v: string | undefined): boolean {
  return v !== undefined && ['1', 'ON', 'YES', 'TRUE'].includes(v.toUpperCase());
}

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function exists(p: string): boolean {
  return fs.existsSync(p); // follows symlinks: a dangling snapshot link counts as missing
}

/** fnmatch-style glob: `*` any run of characters (including `/`), `?` one character, `[...]` a class. */
function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        let cls = glob.slice(i + 1, end).replace(/\\/g, '\\\\');
        if (cls.startsWith('!')) cls = '^' + cls.slice(1);
        re += `[${cls}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\/]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** huggingface_hub's _normalize_etag: drop the weak marker and the quotes. */
function normalizeEtag(etag: string | null): string | undefined {
  if (!etag) return undefined;
  return etag.trim().replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;
}

/** True when a snapshot folder has config.json and every weight file (all shards an index lists). */
function isCompleteSnapshot(dir: string): boolean {
  if (!exists(path.join(dir, 'config.json'))) return false;
  const index = path.join(dir, 'model.safetensors.index.json');
  if (exists(index)) {
    try {
      const map = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      const shards = new Set(Object.values(map));
      return shards.size > 0 && [...shards].every((f) => typeof f === 'string' && isSafeFileName(f) && exists(path.join(dir, f)));
    } catch {
      return false;
    }
  }
  try {
    return fs.readdirSync(dir).some((f) => WEIGHTS.test(f) && exists(path.join(dir, f)));
  } catch {
    return false;
  }
}

interface FileMeta {
  name: string;
  etag: string;
  size: number;
  /** where to GET the bytes (the resolve URL; redirects are followed at download time) */
  url: string;
}

/** Why a request was aborted by our own timers. */
class Timeout extends Error {}

class Hub {
  private readonly revision: string;
  private readonly endpoint: string;
  private readonly token: string | undefined;
  private readonly offline: boolean;
  private readonly repoDir: string;
  private readonly fetch: typeof fetch;
  private readonly retries: number;
  private readonly cacheRoot: string;
  private readonly connectMs: number;
  private readonly idleMs: number;
  private readonly minSpeed: number;
  private readonly lockStaleMs: number;

  private readonly kind: 'model' | 'dataset';
  private readonly isComplete: (dir: string) => boolean;

  constructor(
    private readonly repo: string,
    private readonly opts: RepoOptions,
  ) {
    const env = opts.env ?? process.env;
    this.kind = opts.repoType ?? 'model';
    this.isComplete = opts.isComplete ?? isCompleteSnapshot;
    this.revision = opts.revision ?? 'main';
    this.endpoint = (opts.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
    this.token = opts.token ?? hubToken(env);
    this.offline = opts.offline ?? isTrue(env.HF_HUB_OFFLINE);
    this.cacheRoot = path.resolve(opts.cacheDir ?? hubCacheDir(env));
    this.repoDir = inside(this.cacheRoot, path.join(this.cacheRoot, `${this.kind}s--${repo.replace(/\//g, '--')}`), `repo ${repo}`);
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.retries = opts.retries ?? 3;
    const positive = (v: number | undefined, name: string): number | undefined => {
      if (v !== undefined && !(typeof v === 'number' && v > 0 && Number.isFinite(v)))
        throw new HubError('invalid', `${name} must be a positive number of milliseconds, got ${v}`);
      return v;
    };
    this.connectMs = positive(opts.connectTimeoutMs, 'connectTimeoutMs') ?? envSeconds(env.HF_HUB_ETAG_TIMEOUT) ?? 10_000;
    this.idleMs = positive(opts.idleTimeoutMs, 'idleTimeoutMs') ?? envSeconds(env.HF_HUB_DOWNLOAD_TIMEOUT) ?? 10_000;
    this.minSpeed = opts.minBytesPerSecond ?? 1024;
    this.lockStaleMs = positive(opts.lockStaleMs, 'lockStaleMs') ?? Math.max(60_000, 6 * this.idleMs);
    if (!Number.isInteger(this.retries) || this.retries < 0) throw new HubError('invalid', `retries must be an integer ≥ 0, got ${opts.retries}`);
  }

  private get label(): string {
    return `${this.kind === 'dataset' ? 'dataset ' : ''}${this.repo}@${this.revision}`;
  }

  /** The cached snapshot for this revision, when it is complete. */
  private cachedSnapshot(): string | undefined {
    let sha = COMMIT_SHA.test(this.revision) ? this.revision : undefined;
    if (!sha) {
      try {
        sha = fs.readFileSync(path.join(this.repoDir, 'refs', this.revision), 'utf8').trim();
      } catch {
        return undefined;
      }
      if (!COMMIT_SHA.test(sha)) return undefined; // a damaged or planted ref: ask the hub again
    }
    const dir = path.join(this.repoDir, 'snapshots', sha);
    return this.isComplete(dir) ? dir : undefined;
  }

  private notCached(why: string, cause?: unknown): HubError {
    return new HubError(
      why === 'offline' ? 'not-cached' : 'network',
      `${this.label} is not (completely) in the Hugging Face cache at ${this.repoDir}` +
        (why === 'offline' ? ' and offline mode is on (offline option or HF_HUB_OFFLINE=1)' : `, and ${why}`) +
        (this.kind === 'model'
          ? `. Download it once with network access (openelm pull ${this.repo}), or pass a local folder instead of a repo id.`
          : '. Download it once with network access, or pass a local folder (--tasks NAME=PATH).'),
      { cause },
    );
  }

  async snapshot(): Promise<string> {
    const cached = this.cachedSnapshot();
    if (cached && !this.opts.refresh) return cached;
    if (this.offline) {
      if (cached) return cached;
      throw this.notCached('offline');
    }

    let info: { sha: string; siblings: string[] };
    try {
      info = await this.revisionInfo();
    } catch (e) {
      if (e instanceof HubError && e.code === 'network') {
        if (cached) return cached;
        throw this.notCached(`the hub could not be reached (${e.message})`, e);
      }
      throw e;
    }

    const files = this.opts.selectFiles ? this.opts.selectFiles(info.siblings.filter(isSafeFileName)) : this.selectFiles(info.siblings);
    for (const f of files) if (!isSafeFileName(f)) throw new HubError('invalid', `${this.label}: refusing the file name ${JSON.stringify(f)}`);
    const snapDir = inside(this.repoDir, path.join(this.repoDir, 'snapshots', info.sha), 'the snapshot');
    // Files already linked in this commit's snapshot are immutable: no request needed.
    const missing = files.filter((f) => !exists(path.join(snapDir, f)));
    // Small files first, weights last, so a snapshot whose weights are all present is complete.
    missing.sort((a, b) => Number(WEIGHTS.test(a)) - Number(WEIGHTS.test(b)));

    const metas: FileMeta[] = [];
    for (const f of missing) metas.push(await this.fileMeta(info.sha, f));

    const progress = { done: 0, total: 0 };
    for (const m of metas) {
      progress.total += m.size;
      if (exists(path.join(this.repoDir, 'blobs', m.etag))) progress.done += m.size;
    }
    for (const m of metas) {
      const blob = inside(path.join(this.repoDir, 'blobs'), path.join(this.repoDir, 'blobs', m.etag), `the blob of ${m.name}`);
      if (!exists(blob)) await this.download(m, blob, progress);
      await this.io(`linking ${m.name} into ${snapDir}`, () => linkIntoSnapshot(blob, inside(snapDir, path.join(snapDir, m.name), m.name)));
    }
    if (this.revision !== info.sha) {
      const ref = inside(path.join(this.repoDir, 'refs'), path.join(this.repoDir, 'refs', this.revision), `the ref of ${this.revision}`);
      await this.io(`writing ${ref}`, () => writeRef(ref, info.sha));
    }

    if (!this.isComplete(snapDir)) {
      throw new HubError(
        'no-weights',
        this.opts.isComplete
          ? `${this.label}: after download, ${snapDir} still lacks files it needs`
          : `${this.label}: after download, ${snapDir} lacks config.json or a *.safetensors weight file listed in model.safetensors.index.json`,
      );
    }
    return snapDir;
  }

  private selectFiles(siblings: string[]): string[] {
    const patterns = (this.opts.allowPatterns ?? DEFAULT_ALLOW_PATTERNS).map(globToRegExp);
    const safe = siblings.filter(isSafeFileName);
    let files = safe.filter((f) => patterns.some((re) => re.test(f)));
    const hasSafetensors = safe.some((f) => WEIGHTS.test(f));
    if (hasSafetensors) files = files.filter((f) => !PYTORCH_WEIGHTS.test(f));
    if (!hasSafetensors && !this.opts.allowPatterns) {
      const pt = safe.filter((f) => PYTORCH_WEIGHTS.test(f));
      throw new HubError(
        'no-weights',
        `${this.label} has no *.safetensors weights` + (pt.length ? ` (only ${pt.join(', ')}); convert them to safetensors first` : ''),
      );
    }
    return files;
  }

  private headers(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'openelm/0.1.0 (node)', ...extra };
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  /** Runs a file-system step; its errors (ENOSPC, EACCES, EISDIR...) become HubError 'io' naming the step and path. */
  private async io<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      if (e instanceof HubError) throw e;
      throw new HubError('io', `${this.label}: ${what} failed: ${(e as Error).message}`, { cause: e });
    }
  }

  /**
   * fetch with a deadline for the response headers. The returned controller aborts the body too:
   * callers reading a body arm their own idle timer on it (readBody / downloadOnce).
   */
  private async request(url: string, init: RequestInit): Promise<Response> {
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Timeout(`no response within ${this.connectMs} ms (HF_HUB_ETAG_TIMEOUT)`)), this.connectMs);
    try {
      const res = await this.fetch(url, { ...init, signal: ac.signal });
      (res as Response & { abort?: (why: Error) => void }).abort = (why) => ac.abort(why);
      return res;
    } catch (e) {
      const reason = ac.signal.reason;
      if (reason instanceof Timeout) throw new HubError('network', `${init.method ?? 'GET'} ${url} failed: ${reason.message}`, { cause: e });
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new HubError('network', `${init.method ?? 'GET'} ${url} failed: ${cause?.code ?? cause?.message ?? (e as Error).message}`, { cause: e });
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Streams a response body through `onChunk`, aborting when no byte arrives for idleMs or when
   * fewer than minBytesPerSecond arrive over a window of 3 × idleMs (a slow-loris server).
   */
  private async pump(res: Response, onChunk: (chunk: Uint8Array) => Promise<void> | void): Promise<void> {
    const abort = (res as Response & { abort?: (why: Error) => void }).abort ?? (() => res.body?.cancel().catch(() => {}));
    let idle: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(() => abort(new Timeout(`no data for ${this.idleMs} ms (HF_HUB_DOWNLOAD_TIMEOUT)`)), this.idleMs);
    };
    const windowMs = 3 * this.idleMs;
    let windowStart = performance.now(),
      windowBytes = 0;
    arm();
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        windowBytes += chunk.length;
        const now = performance.now();
        if (now - windowStart >= windowMs) {
          const speed = (windowBytes * 1000) / (now - windowStart);
          if (this.minSpeed > 0 && speed < this.minSpeed) {
            abort(new Timeout(`the server sent ${Math.round(speed)} bytes/s over ${Math.round(now - windowStart)} ms, below the minimum of ${this.minSpeed}`));
            throw new Timeout(
              `the server sent ${Math.round(speed)} bytes/s over ${Math.round(now - windowStart)} ms, below the minimum of ${this.minSpeed} bytes/s`,
            );
          }
          windowStart = now;
          windowBytes = 0;
        }
        await onChunk(chunk);
      }
    } catch (e) {
      if (e instanceof HubError || e instanceof Timeout) throw e;
      // an abort by our timers surfaces as the stream's error; report the timer's reason
      const reason = (e as { cause?: unknown }).cause ?? e;
      if (reason instanceof Timeout) throw reason;
      const name = (e as Error).name;
      if (name === 'AbortError' || name === 'TimeoutError') throw new Timeout(String((e as Error).message));
      throw e;
    } finally {
      clearTimeout(idle);
    }
  }

  /** The whole body as text, at most `max` bytes, under the idle and speed timers. */
  private async readBody(res: Response, max: number, what: string): Promise<string> {
    const parts: Uint8Array[] = [];
    let n = 0;
    try {
      await this.pump(res, (c) => {
        n += c.length;
        if (n > max) throw new HubError('http', `${what}: the response is larger than ${max} bytes; refusing it`);
        parts.push(c);
      });
    } catch (e) {
      await res.body?.cancel().catch(() => {});
      if (e instanceof HubError) throw e;
      throw new HubError('network', `${what}: ${(e as Error).message}`, { cause: e });
    }
    return Buffer.concat(parts).toString('utf8');
  }

  /** Turns a hub error response into a HubError that names the repo, revision or file. */
  private async httpError(res: Response, file?: string): Promise<HubError> {
    const code = res.headers.get('x-error-code');
    // the body of an error is read only to quote it: at most 64 KiB, under the idle timer
    const serverMsg = res.headers.get('x-error-message') ?? (await this.readBody(res, 64 * 1024, 'error body').catch(() => '')).slice(0, 300);
    await res.body?.cancel().catch(() => {});
    const what = file ? `${file} in ${this.label}` : this.label;
    if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code !== 'RepoNotFound')) {
      return new HubError(
        'gated',
        `${this.repo} is gated or private (HTTP ${res.status}${serverMsg ? `: ${serverMsg}` : ''}). ` +
          (this.token
            ? 'Your token was sent but has no access: '
            : 'No token was sent: set HF_TOKEN to a token from https://huggingface.co/settings/tokens and ') +
          `accept the licence on https://huggingface.co/${this.kind === 'dataset' ? 'datasets/' : ''}${this.repo}.`,
      );
    }
    if (code === 'RevisionNotFound') return new HubError('not-found', `revision "${this.revision}" not found in repo ${this.repo} (HTTP ${res.status})`);
    if (code === 'EntryNotFound') return new HubError('not-found', `file ${what} not found (HTTP ${res.status})`);
    if (code === 'RepoNotFound' || (res.status === 404 && !file)) {
      return new HubError(
        'not-found',
        `repo ${this.repo} not found on ${this.endpoint} (HTTP ${res.status}); check the id` + (this.token ? '' : ', or set HF_TOKEN if it is private'),
      );
    }
    if (res.status === 404) return new HubError('not-found', `file ${what} not found (HTTP ${res.status})`);
    return new HubError('http', `${what}: HTTP ${res.status} ${res.statusText}${serverMsg ? `: ${serverMsg}` : ''}`);
  }

  private async revisionInfo(): Promise<{ sha: string; siblings: string[] }> {
    const url = `${this.endpoint}/api/${this.kind}s/${this.repo}/revision/${encodeURIComponent(this.revision)}`;
    const res = await this.request(url, { headers: this.headers(url) });
    if (!res.ok) throw await this.httpError(res);
    const text = await this.readBody(res, MAX_JSON_BYTES, url);
    let json: { sha?: unknown; siblings?: { rfilename?: unknown }[] };
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new HubError('http', `${url}: the hub's answer is not JSON (${(e as Error).message}): ${JSON.stringify(text.slice(0, 120))}`);
    }
    if (json === null || typeof json !== 'object' || typeof json.sha !== 'string' || !Array.isArray(json.siblings)) {
      throw new HubError('http', `${url}: expected JSON with "sha" and "siblings", got ${JSON.stringify(text.slice(0, 200))}`);
    }
    // the sha names a folder of the cache: only a commit id is acceptable (never "../..")
    if (!COMMIT_SHA.test(json.sha))
      throw new HubError('http', `${url}: the hub answered commit sha ${JSON.stringify(json.sha.slice(0, 100))}, not 40 hex digits; refusing to use it`);
    if (COMMIT_SHA.test(this.revision) && json.sha !== this.revision) {
      throw new HubError('http', `${url}: asked for commit ${this.revision}, the hub answered ${json.sha}`);
    }
    return { sha: json.sha, siblings: json.siblings.map((s) => s?.rfilename).filter((f): f is string => typeof f === 'string') };
  }

  private resolveUrl(sha: string, file: string): string {
    const prefix = this.kind === 'dataset' ? 'datasets/' : '';
    return `${this.endpoint}/${prefix}${this.repo}/resolve/${sha}/${file.split('/').map(encodeURIComponent).join('/')}`;
  }

  /** HEAD the resolve URL: etag and size come from the hub's own response (a 302 for LFS files). */
  private async fileMeta(sha: string, name: string): Promise<FileMeta> {
    let url = this.resolveUrl(sha, name);
    for (let hop = 0; ; hop++) {
      const res = await this.request(url, { method: 'HEAD', redirect: 'manual', headers: this.headers(url, { 'accept-encoding': 'identity' }) });
      const location = res.headers.get('location');
      const next = location ? new URL(location, url) : undefined;
      // Like huggingface_hub, follow only same-origin (relative) redirects, e.g. a renamed repo.
      if (res.status >= 300 && res.status < 400 && next && next.origin === new URL(url).origin && !res.headers.get('x-linked-etag') && hop < 5) {
        url = next.href;
        continue;
      }
      if (!(res.ok || (res.status >= 300 && res.status < 400))) throw await this.httpError(res, name);
      await res.body?.cancel().catch(() => {});
      const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'))?.toLowerCase();
      const size = res.headers.has('x-linked-size') ? headerInt(res, 'x-linked-size') : headerInt(res, 'content-length');
      // the etag names the blob file and is the hash it is checked against: git sha1 or sha256 only
      if (!etag || !ETAG.test(etag))
        throw new HubError(
          'http',
          `${name} in ${this.label}: the hub sent no usable ETag (got ${JSON.stringify(etag?.slice(0, 100))}; expected a git sha1 or a sha256)`,
        );
      if (size === undefined)
        throw new HubError('http', `${name} in ${this.label}: the hub sent no file size (X-Linked-Size / Content-Length) for HEAD ${url}`);
      const max = this.opts.maxFileBytes ?? (WEIGHTS.test(name) || this.kind === 'dataset' ? MAX_WEIGHT_BYTES : MAX_OTHER_BYTES);
      if (size > max) throw new HubError('http', `${name} in ${this.label}: the hub announces ${size} bytes, more than the limit of ${max} (maxFileBytes)`);
      return { name, etag, size, url: this.resolveUrl(sha, name) };
    }
  }

  /** GET with redirects followed by hand, so the Authorization header never goes to another origin (the LFS CDN). */
  private async get(url: string, headers: Record<string, string>, file: string): Promise<Response> {
    for (let hop = 0; hop < 10; hop++) {
      const res = await this.request(url, { redirect: 'manual', headers: this.headers(url, headers) });
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        await res.body?.cancel().catch(() => {});
        url = new URL(location, url).href;
        continue;
      }
      if (!res.ok && res.status !== 416) throw await this.httpError(res, file);
      return res;
    }
    throw new HubError('http', `${file} in ${this.label}: too many redirects`);
  }

  private async download(m: FileMeta, blob: string, progress: { done: number; total: number }): Promise<void> {
    await this.io(`creating ${path.dirname(blob)}`, () => fsp.mkdir(path.dirname(blob), { recursive: true }));
    const lock = await this.io(`locking ${blob}.lock`, () => acquireLock(`${blob}.lock`, this.lockStaleMs, () => exists(blob)));
    if (!lock) return; // another process finished it while we waited
    try {
      if (exists(blob)) return; // it finished it just before we took the lock
      await this.downloadLocked(m, blob, progress, lock);
    } finally {
      await lock.release();
    }
  }

  private async downloadLocked(m: FileMeta, blob: string, progress: { done: number; total: number }, lock: Lock): Promise<void> {
    const tmp = `${blob}.incomplete`;
    const startOverall = progress.done;
    for (let attempt = 0; ; attempt++) {
      try {
        const written = await this.downloadOnce(m, tmp, (n) => {
          lock.touch();
          progress.done = startOverall + n;
          this.opts.onProgress?.({ repo: this.repo, file: m.name, done: n, total: m.size, overallDone: progress.done, overallTotal: progress.total });
        });
        await this.verify(m, tmp, written);
        await this.io(`renaming ${tmp} to ${blob}`, () => fsp.rename(tmp, blob));
        return;
      } catch (e) {
        // A dropped connection keeps the bytes on disk; try again from there. Hub errors are final.
        if (e instanceof HubError && e.code !== 'network') throw e;
        if (attempt >= this.retries) {
          throw new HubError(
            'network',
            `downloading ${m.name} of ${this.label} was interrupted (${(e as Error).message}); ` +
              `${fileSize(tmp)} of ${m.size} bytes are kept in ${tmp} and the next call resumes from there`,
            { cause: e },
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
      }
    }
  }

  /** One GET into `tmp`, resuming from its current size. Returns the size of the file on disk. */
  private async downloadOnce(m: FileMeta, tmp: string, report: (done: number) => void): Promise<{ size: number }> {
    let offset = fileSize(tmp);
    if (offset > m.size) {
      await this.io(`removing ${tmp}`, () => fsp.rm(tmp, { force: true }));
      offset = 0;
    }
    const res = await this.get(m.url, offset > 0 ? { range: `bytes=${offset}-`, 'accept-encoding': 'identity' } : { 'accept-encoding': 'identity' }, m.name);
    if (res.status === 416) {
      // Range not satisfiable: the partial file is already whole (or bogus; verify decides).
      await res.body?.cancel().catch(() => {});
      report(offset);
      return { size: offset };
    }
    if (res.status === 206) {
      const start = Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]);
      if (start !== offset) {
        await res.body?.cancel().catch(() => {});
        throw new HubError('network', `${m.name}: asked for bytes from ${offset}, server sent Content-Range ${res.headers.get('content-range')}`);
      }
    } else if (offset > 0) {
      offset = 0; // the server ignored Range and sends the whole file: start over
    }
    // Content-Length, when present and the body is not re-encoded, must match; absent is fine (chunked):
    // the body is capped at the announced size below either way.
    const expected = headerInt(res, 'content-length');
    const encoding = res.headers.get('content-encoding');
    const encoded = encoding !== null && encoding.toLowerCase() !== 'identity';
    if (expected !== undefined && !encoded && offset + expected !== m.size) {
      await res.body?.cancel().catch(() => {});
      throw new HubError(
        'integrity',
        `${m.name} in ${this.label}: the hub announced ${m.size} bytes but the download is ${offset + expected} (Content-Length ${expected} from byte ${offset})`,
      );
    }
    if (!res.body) throw new HubError('http', `${m.name}: empty response body`);

    const fh = await this.io(`opening ${tmp}`, () => fsp.open(tmp, offset > 0 ? 'a' : 'w'));
    let size = offset;
    report(size);
    try {
      await this.pump(res, async (chunk) => {
        if (size + chunk.length > m.size) {
          // more bytes than announced (an endless or decompressing body): stop reading at once
          throw new HubError(
            'integrity',
            `${m.name} in ${this.label}: the server sent more than the announced ${m.size} bytes${encoded ? ` (Content-Encoding ${encoding})` : ''}; deleted the partial file`,
          );
        }
        try {
          await fh.write(chunk);
        } catch (e) {
          throw new HubError('io', `${m.name} in ${this.label}: writing ${tmp} failed after ${size} of ${m.size} bytes: ${(e as Error).message}`, { cause: e });
        }
        size += chunk.length;
        report(size);
      });
    } catch (e) {
      await res.body?.cancel().catch(() => {});
      if (e instanceof HubError) {
        if (e.code === 'integrity')
          await fh
            .close()
            .then(() => fsp.rm(tmp, { force: true }))
            .catch(() => {});
        throw e;
      }
      const why = e instanceof Timeout ? e.message : ((e as { cause?: Error }).cause?.message ?? (e as Error).message);
      throw new HubError('network', `connection lost after ${size} of ${m.size} bytes: ${why}`, { cause: e });
    } finally {
      await fh.close().catch(() => {});
    }
    return { size };
  }

  /** Size and hash of the bytes on disk (not of what this process wrote: another one may have written too). */
  private async verify(m: FileMeta, tmp: string, got: { size: number }): Promise<void> {
    if (got.size < m.size) throw new HubError('network', `connection ended after ${got.size} of ${m.size} bytes`);
    const onDisk = fileSize(tmp);
    if (onDisk !== m.size) {
      await fsp.rm(tmp, { force: true });
      throw new HubError('integrity', `${m.name} in ${this.label}: ${tmp} holds ${onDisk} bytes, expected ${m.size}; deleted the partial file`);
    }
    const hex = await this.io(`reading ${tmp}`, () => hashFile(tmp, SHA256.test(m.etag) ? 'sha256' : 'git-sha1', m.size));
    if (hex !== m.etag) {
      await fsp.rm(tmp, { force: true });
      const kind = SHA256.test(m.etag) ? 'sha256' : 'git blob sha1';
      throw new HubError('integrity', `${m.name} in ${this.label}: ${kind} ${hex} does not match the hub's ${m.etag}; deleted the download, try again`);
    }
  }
}

function fileSize(p: string): number {
  try {
    return fs.statSync(p).size;
  } catch {
    return 0;
  }
}

/** sha256 of a file, or git's blob id (sha1 of "blob <size>\0" + bytes, what the hub sends as ETag of regular files). */
async function hashFile(p: string, kind: 'sha256' | 'git-sha1', size: number): Promise<string> {
  const hash: Hash = kind === 'sha256' ? createHash('sha256') : createHash('sha1').update(`blob ${size}\0`);
  for await (const chunk of fs.createReadStream(p)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

// ---- one downloader per blob, across processes ----

interface Lock {
  /** marks the lock alive (at most once a second) */
  touch(): void;
  release(): Promise<void>;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * an empty lock file older than this is one whose maker died between creating it and writing its
 * holder; younger, its maker is about to write it (taking it over then gave two downloaders)
 */
const EMPTY_LOCK_GRACE_MS = 5000;

/**
 * Takes `file` (created exclusively, holding "host pid"), waiting while another live holder keeps
 * it fresh. A lock whose process is gone (same host), that was not touched for `staleMs`, or that
 * is still empty after EMPTY_LOCK_GRACE_MS is taken over. Returns undefined when `done()` became
 * true while waiting.
 */
async function acquireLock(file: string, staleMs: number, done: () => boolean): Promise<Lock | undefined> {
  const me = `${os.hostname()} ${process.pid} ${Math.random().toString(36).slice(2)}`;
  for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
    try {
      await fsp.writeFile(file, me, { flag: 'wx' });
      let last = Date.now();
      return {
        touch() {
          const now = Date.now();
          if (now - last < 1000) return;
          last = now;
          fs.utimes(file, now / 1000, now / 1000, () => {});
        },
        async release() {
          try {
            if ((await fsp.readFile(file, 'utf8')) === me) await fsp.rm(file, { force: true });
          } catch {
            /* already gone */
          }
        },
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    if (done()) return undefined;
    let holder = '',
      age = 0;
    try {
      holder = await fsp.readFile(file, 'utf8');
      age = Date.now() - (await fsp.stat(file)).mtimeMs;
    } catch {
      continue; // released meanwhile: try again at once
    }
    const [host, pid] = holder.split(' ');
    const dead = host === os.hostname() && Number(pid) > 0 && !pidAlive(Number(pid));
    if (dead || age > staleMs || (holder === '' && age > EMPTY_LOCK_GRACE_MS)) {
      // take over: remove only the lock we judged stale (rename makes the check-and-remove atomic)
      const grave = `${file}.stale-${process.pid}-${Math.random().toString(36).slice(2)}`;
      try {
        await fsp.rename(file, grave);
        if ((await fsp.readFile(grave, 'utf8')) === holder) await fsp.rm(grave, { force: true });
        else await fsp.rename(grave, file).catch(() => fsp.rm(grave, { force: true })); // someone else's fresh lock: put it back
      } catch {
        /* raced with another taker */
      }
      continue;
    }
    await new Promise((r) => setTimeout(r, wait));
  }
}

/**
 * snapshots/<sha>/<name> → relative symlink to the blob; a copy where symlinks are not allowed
 * (Windows without developer mode). Made under a unique name and renamed over the pointer, so two
 * processes linking the same file never see it missing.
 */
async function linkIntoSnapshot(blob: string, pointer: string): Promise<void> {
  await fsp.mkdir(path.dirname(pointer), { recursive: true });
  const target = path.relative(path.dirname(pointer), blob);
  const tmp = `${pointer}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  try {
    await fsp.symlink(target, tmp);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EACCES' && code !== 'EINVAL') throw e;
    await fsp.copyFile(blob, tmp);
  }
  try {
    await fsp.rename(tmp, pointer); // replaces a dangling link from an earlier, deleted blob too
  } catch (e) {
    await fsp.rm(tmp, { force: true });
    throw e;
  }
}

async function writeRef(file: string, sha: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  try {
    if ((await fsp.readFile(file, 'utf8')) === sha) return;
  } catch {
    /* not written yet */
  }
  const tmp = `${file}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
  await fsp.writeFile(tmp, sha);
  await fsp.rename(tmp, file);
}
