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
//      streaming chunks into blobs/<etag>.incomplete, then size + sha256 check, then rename.
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
  /** default globalThis.fetch */
  fetch?: typeof fetch;
}

export const DEFAULT_ALLOW_PATTERNS = [
  'config.json', 'generation_config.json', '*.safetensors', 'model.safetensors.index.json',
  'tokenizer.model', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json',
];

export type HubErrorCode = 'gated' | 'not-found' | 'not-cached' | 'network' | 'integrity' | 'http' | 'no-weights';

/** Every failure of resolveModel, with a machine-readable `code` and a message that says what to do. */
export class HubError extends Error {
  constructor(readonly code: HubErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'HubError';
  }
}

/** Returns a local folder holding config.json and the weights of `source` (a folder, or a hub repo id `owner/name`). */
export async function resolveModel(source: string, opts: ResolveOptions = {}): Promise<string> {
  if (isDirectory(source)) return path.resolve(source);
  const repo = source.replace(/^hf:\/\//, '').replace(/^https?:\/\/(www\.)?(huggingface\.co|hf\.co)\//, '').replace(/\/+$/, '');
  if (!REPO_ID.test(repo)) {
    throw new HubError('not-found', `model "${source}" is neither a folder nor a Hugging Face repo id like apple/OpenELM-270M-Instruct`);
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
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '') || undefined;
}

/** True when a snapshot folder has config.json and every weight file (all shards an index lists). */
function isCompleteSnapshot(dir: string): boolean {
  if (!exists(path.join(dir, 'config.json'))) return false;
  const index = path.join(dir, 'model.safetensors.index.json');
  if (exists(index)) {
    try {
      const map = (JSON.parse(fs.readFileSync(index, 'utf8')) as { weight_map?: Record<string, string> }).weight_map ?? {};
      const shards = new Set(Object.values(map));
      return shards.size > 0 && [...shards].every((f) => exists(path.join(dir, f)));
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

class Hub {
  private readonly revision: string;
  private readonly endpoint: string;
  private readonly token: string | undefined;
  private readonly offline: boolean;
  private readonly repoDir: string;
  private readonly fetch: typeof fetch;
  private readonly retries: number;

  constructor(private readonly repo: string, private readonly opts: ResolveOptions) {
    const env = opts.env ?? process.env;
    this.revision = opts.revision ?? 'main';
    this.endpoint = (opts.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
    this.token = opts.token ?? hubToken(env);
    this.offline = opts.offline ?? isTrue(env.HF_HUB_OFFLINE);
    this.repoDir = path.join(opts.cacheDir ?? hubCacheDir(env), `models--${repo.replace(/\//g, '--')}`);
    this.fetch = opts.fetch ?? globalThis.fetch;
    this.retries = opts.retries ?? 3;
  }

  private get label(): string {
    return `${this.repo}@${this.revision}`;
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
    }
    const dir = path.join(this.repoDir, 'snapshots', sha);
    return isCompleteSnapshot(dir) ? dir : undefined;
  }

  private notCached(why: string, cause?: unknown): HubError {
    return new HubError(
      why === 'offline' ? 'not-cached' : 'network',
      `${this.label} is not (completely) in the Hugging Face cache at ${this.repoDir}` +
        (why === 'offline' ? ' and offline mode is on (offline option or HF_HUB_OFFLINE=1)' : `, and ${why}`) +
        `. Download it once with network access (openelm pull ${this.repo}), or pass a local folder instead of a repo id.`,
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

    const files = this.selectFiles(info.siblings);
    const snapDir = path.join(this.repoDir, 'snapshots', info.sha);
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
      const blob = path.join(this.repoDir, 'blobs', m.etag);
      if (!exists(blob)) await this.download(m, blob, progress);
      await linkIntoSnapshot(blob, path.join(snapDir, m.name));
    }
    if (this.revision !== info.sha) await writeRef(path.join(this.repoDir, 'refs', this.revision), info.sha);

    if (!isCompleteSnapshot(snapDir)) {
      throw new HubError('no-weights', `${this.label}: after download, ${snapDir} lacks config.json or a *.safetensors weight file listed in model.safetensors.index.json`);
    }
    return snapDir;
  }

  private selectFiles(siblings: string[]): string[] {
    const patterns = (this.opts.allowPatterns ?? DEFAULT_ALLOW_PATTERNS).map(globToRegExp);
    const safe = siblings.filter((f) => !f.startsWith('/') && !f.split('/').includes('..'));
    let files = safe.filter((f) => patterns.some((re) => re.test(f)));
    const hasSafetensors = safe.some((f) => WEIGHTS.test(f));
    if (hasSafetensors) files = files.filter((f) => !PYTORCH_WEIGHTS.test(f));
    if (!hasSafetensors && !this.opts.allowPatterns) {
      const pt = safe.filter((f) => PYTORCH_WEIGHTS.test(f));
      throw new HubError('no-weights', `${this.label} has no *.safetensors weights` + (pt.length ? ` (only ${pt.join(', ')}); convert them to safetensors first` : ''));
    }
    return files;
  }

  private headers(url: string, extra: Record<string, string> = {}): Record<string, string> {
    const h: Record<string, string> = { 'user-agent': 'openelm/0.1.0 (node)', ...extra };
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin) h.authorization = `Bearer ${this.token}`;
    return h;
  }

  private async request(url: string, init: RequestInit): Promise<Response> {
    try {
      return await this.fetch(url, init);
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new HubError('network', `${init.method ?? 'GET'} ${url} failed: ${cause?.code ?? cause?.message ?? (e as Error).message}`, { cause: e });
    }
  }

  /** Turns a hub error response into a HubError that names the repo, revision or file. */
  private async httpError(res: Response, file?: string): Promise<HubError> {
    const code = res.headers.get('x-error-code');
    const serverMsg = res.headers.get('x-error-message') ?? (await res.text().catch(() => '')).slice(0, 300);
    await res.body?.cancel().catch(() => {});
    const what = file ? `${file} in ${this.label}` : this.label;
    if (code === 'GatedRepo' || ((res.status === 401 || res.status === 403) && code !== 'RepoNotFound')) {
      return new HubError('gated',
        `${this.repo} is gated or private (HTTP ${res.status}${serverMsg ? `: ${serverMsg}` : ''}). ` +
          (this.token ? 'Your token was sent but has no access: ' : 'No token was sent: set HF_TOKEN to a token from https://huggingface.co/settings/tokens and ') +
          `accept the licence on https://huggingface.co/${this.repo}.`);
    }
    if (code === 'RevisionNotFound') return new HubError('not-found', `revision "${this.revision}" not found in repo ${this.repo} (HTTP ${res.status})`);
    if (code === 'EntryNotFound') return new HubError('not-found', `file ${what} not found (HTTP ${res.status})`);
    if (code === 'RepoNotFound' || (res.status === 404 && !file)) {
      return new HubError('not-found',
        `repo ${this.repo} not found on ${this.endpoint} (HTTP ${res.status}); check the id` +
          (this.token ? '' : ', or set HF_TOKEN if it is private'));
    }
    if (res.status === 404) return new HubError('not-found', `file ${what} not found (HTTP ${res.status})`);
    return new HubError('http', `${what}: HTTP ${res.status} ${res.statusText}${serverMsg ? `: ${serverMsg}` : ''}`);
  }

  private async revisionInfo(): Promise<{ sha: string; siblings: string[] }> {
    const url = `${this.endpoint}/api/models/${this.repo}/revision/${encodeURIComponent(this.revision)}`;
    const res = await this.request(url, { headers: this.headers(url) });
    if (!res.ok) throw await this.httpError(res);
    const json = (await res.json()) as { sha?: unknown; siblings?: { rfilename?: unknown }[] };
    if (typeof json.sha !== 'string' || !Array.isArray(json.siblings)) {
      throw new HubError('http', `${url}: expected JSON with "sha" and "siblings", got ${JSON.stringify(json).slice(0, 200)}`);
    }
    return { sha: json.sha, siblings: json.siblings.map((s) => s.rfilename).filter((f): f is string => typeof f === 'string') };
  }

  private resolveUrl(sha: string, file: string): string {
    return `${this.endpoint}/${this.repo}/resolve/${sha}/${file.split('/').map(encodeURIComponent).join('/')}`;
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
      const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
      const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length'));
      if (!etag || !/^[\w.-]+$/.test(etag)) throw new HubError('http', `${name} in ${this.label}: the hub sent no usable ETag (got ${JSON.stringify(etag)})`);
      if (!Number.isSafeInteger(size) || size < 0) throw new HubError('http', `${name} in ${this.label}: the hub sent no file size (X-Linked-Size / Content-Length)`);
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
    await fsp.mkdir(path.dirname(blob), { recursive: true });
    const tmp = `${blob}.incomplete`;
    const startOverall = progress.done;
    for (let attempt = 0; ; attempt++) {
      try {
        const written = await this.downloadOnce(m, tmp, (n) => {
          progress.done = startOverall + n;
          this.opts.onProgress?.({ repo: this.repo, file: m.name, done: n, total: m.size, overallDone: progress.done, overallTotal: progress.total });
        });
        await this.verify(m, tmp, written);
        await fsp.rename(tmp, blob);
        return;
      } catch (e) {
        // A dropped connection keeps the bytes on disk; try again from there. Hub errors are final.
        if (e instanceof HubError && e.code !== 'network') throw e;
        if (attempt >= this.retries) {
          throw new HubError('network', `downloading ${m.name} of ${this.label} was interrupted (${(e as Error).message}); ` +
            `${fileSize(tmp)} of ${m.size} bytes are kept in ${tmp} and the next call resumes from there`, { cause: e });
        }
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
      }
    }
  }

  /** One GET into `tmp`, resuming from its current size. Returns the hash of the whole file so far. */
  private async downloadOnce(m: FileMeta, tmp: string, report: (done: number) => void): Promise<{ hash: Hash; size: number }> {
    let offset = fileSize(tmp);
    if (offset > m.size) {
      await fsp.rm(tmp, { force: true });
      offset = 0;
    }
    const res = await this.get(m.url, offset > 0 ? { range: `bytes=${offset}-`, 'accept-encoding': 'identity' } : { 'accept-encoding': 'identity' }, m.name);
    if (res.status === 416) {
      // Range not satisfiable: the partial file is already whole (or bogus; verify decides).
      await res.body?.cancel().catch(() => {});
      report(offset);
      return { hash: await hashFile(tmp), size: offset };
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
    const expected = Number(res.headers.get('content-length'));
    if (Number.isSafeInteger(expected) && offset + expected !== m.size && res.headers.get('content-encoding') == null) {
      await res.body?.cancel().catch(() => {});
      throw new HubError('integrity', `${m.name} in ${this.label}: the hub announced ${m.size} bytes but the download is ${offset + expected} (Content-Length ${expected} from byte ${offset})`);
    }
    if (!res.body) throw new HubError('http', `${m.name}: empty response body`);

    const hash = offset > 0 ? await hashFile(tmp) : createHash('sha256');
    const fh = await fsp.open(tmp, offset > 0 ? 'a' : 'w');
    let size = offset;
    report(size);
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        await fh.write(chunk);
        hash.update(chunk);
        size += chunk.length;
        report(size);
      }
    } catch (e) {
      throw new HubError('network', `connection lost after ${size} of ${m.size} bytes: ${(e as { cause?: Error }).cause?.message ?? (e as Error).message}`, { cause: e });
    } finally {
      await fh.close();
    }
    return { hash, size };
  }

  private async verify(m: FileMeta, tmp: string, got: { hash: Hash; size: number }): Promise<void> {
    if (got.size < m.size) throw new HubError('network', `connection ended after ${got.size} of ${m.size} bytes`);
    if (got.size > m.size) {
      await fsp.rm(tmp, { force: true });
      throw new HubError('integrity', `${m.name} in ${this.label}: downloaded ${got.size} bytes, expected ${m.size}; deleted the partial file`);
    }
    if (SHA256.test(m.etag)) {
      const sha = got.hash.digest('hex');
      if (sha !== m.etag) {
        await fsp.rm(tmp, { force: true });
        throw new HubError('integrity', `${m.name} in ${this.label}: sha256 ${sha} does not match the hub's ${m.etag}; deleted the download, try again`);
      }
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

async function hashFile(p: string): Promise<Hash> {
  const hash = createHash('sha256');
  for await (const chunk of fs.createReadStream(p)) hash.update(chunk as Buffer);
  return hash;
}

/** snapshots/<sha>/<name> → relative symlink to the blob; a copy where symlinks are not allowed (Windows without developer mode). */
async function linkIntoSnapshot(blob: string, pointer: string): Promise<void> {
  await fsp.mkdir(path.dirname(pointer), { recursive: true });
  const target = path.relative(path.dirname(pointer), blob);
  await fsp.rm(pointer, { force: true }); // a dangling link from an earlier, deleted blob
  try {
    await fsp.symlink(target, pointer);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EACCES' && code !== 'EINVAL') throw e;
    await fsp.copyFile(blob, `${pointer}.tmp`);
    await fsp.rename(`${pointer}.tmp`, pointer);
  }
}

async function writeRef(file: string, sha: string): Promise<void> {
  await fsp.mkdir(path.dirname(file), { recursive: true });
  try {
    if ((await fsp.readFile(file, 'utf8')) === sha) return;
  } catch { /* not written yet */ }
  await fsp.writeFile(`${file}.tmp`, sha);
  await fsp.rename(`${file}.tmp`, file);
}
