// A local imitation of the Hugging Face hub for tests: two HTTP servers on 127.0.0.1 (different
// ports, so different origins), "hub" and "cdn", speaking the parts of the hub protocol that
// src/io/hub.ts uses:
//
//   GET  /api/models/{owner}/{name}/revision/{rev}   → { id, sha, siblings: [{ rfilename }] }
//   HEAD/GET /{owner}/{name}/resolve/{rev}/{file}    → regular files: 200, ETag "<git sha1>", X-Repo-Commit
//                                                      LFS files (*.safetensors, *.bin): 302 to the cdn,
//                                                      X-Linked-Etag "<sha256>", X-Linked-Size, X-Repo-Commit
//   HEAD/GET cdn /lfs/{sha256}                        → the bytes, with Range support (206)
//
// Errors carry X-Error-Code like the hub: RepoNotFound (401 without a token, 404 with one),
// RevisionNotFound, EntryNotFound, GatedRepo (401 without a token, 403 with a wrong one).
// Faults for tests: cut a CDN download after K bytes, ignore Range, corrupt a blob.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';

export interface FixtureRepo {
  /** owner/name */
  id: string;
  /** 40-hex commit sha that "main" points to */
  sha: string;
  files: Record<string, Buffer>;
  /** resolve needs `Authorization: Bearer <token>` */
  gated?: boolean;
}

export interface LoggedRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

export interface HubServer {
  /** e.g. http://127.0.0.1:41234 — pass as `endpoint` */
  endpoint: string;
  cdn: string;
  requests: LoggedRequest[];
  /** Authorization headers that reached the cdn (must stay 0) */
  authLeaks: number;
  /** the next cdn GET of `file` sends `bytes` body bytes (from where the request starts), then the socket is destroyed */
  cutAfter(file: string, bytes: number): void;
  /** answer Range requests with a full 200, like some proxies */
  ignoreRange: boolean;
  /** serve `file` from the cdn with one byte flipped (same length, wrong sha256) */
  corrupt(file: string): void;
  /** clears the request log and every fault above */
  reset(): void;
  close(): Promise<void>;
}

const LFS = /\.(safetensors|bin)$/;

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
/** git's blob id, which the hub sends as ETag for regular (non-LFS) files */
export const gitBlobSha1 = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');

/** The tiny sharded OpenELM checkpoint: from test/fixtures if it has been copied there, else from ../shared/fixtures. */
export function tinyShardedDir(): string {
  const root = path.resolve(import.meta.dirname, '..', '..');
  const local = path.join(root, 'test', 'fixtures', 'openelm', 'tiny-bf16-sharded');
  if (fs.existsSync(path.join(local, 'model-00002-of-00002.safetensors'))) return local;
  return path.join(root, '..', 'shared', 'fixtures', 'openelm', 'tiny-bf16-sharded');
}

function send(res: http.ServerResponse, status: number, headers: Record<string, string | number>, body?: string | Buffer): void {
  res.writeHead(status, headers);
  res.end(body);
}

function hubError(res: http.ServerResponse, status: number, code: string, message: string): void {
  send(res, status, { 'x-error-code': code, 'x-error-message': message, 'content-type': 'text/plain' }, message);
}

export async function startHubServer(repos: FixtureRepo[], opts: { token?: string } = {}): Promise<HubServer> {
  const byId = new Map(repos.map((r) => [r.id, r]));
  const blobs = new Map<string, Buffer>(); // sha256 → bytes, what the cdn serves
  const cuts = new Map<string, number>(); // sha256 → bytes to send before cutting
  const fillBlobs = () => {
    for (const r of repos) for (const [name, data] of Object.entries(r.files)) if (LFS.test(name)) blobs.set(sha256(data), data);
  };
  fillBlobs();

  const state: HubServer = {
    endpoint: '',
    cdn: '',
    requests: [],
    authLeaks: 0,
    ignoreRange: false,
    cutAfter(file, bytes) {
      for (const r of repos) if (r.files[file]) cuts.set(sha256(r.files[file]), bytes);
    },
    corrupt(file) {
      for (const r of repos) {
        const data = r.files[file];
        if (!data) continue;
        const bad = Buffer.from(data);
        bad[bad.length >> 1] ^= 0xff;
        blobs.set(sha256(data), bad);
      }
    },
    reset() {
      state.requests.length = 0;
      state.authLeaks = 0;
      state.ignoreRange = false;
      cuts.clear();
      fillBlobs();
    },
    close: async () => {},
  };

  const hub = http.createServer((req, res) => {
    state.requests.push({ server: 'hub', method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers });
    const url = new URL(req.url ?? '/', 'http://x');
    const auth = req.headers.authorization;
    const authed = opts.token !== undefined && auth === `Bearer ${opts.token}`;

    const api = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const id = api?.[1] ?? resolve?.[1];
    const repo = id ? byId.get(id) : undefined;
    if (!id) return hubError(res, 404, 'EntryNotFound', 'no such route');
    if (!repo) {
      // The hub answers 401 for unknown repos when no token is sent, not to reveal private ones.
      return hubError(res, auth ? 404 : 401, 'RepoNotFound', `Repository Not Found for url: ${req.url}.`);
    }
    const rev = decodeURIComponent((api ?? resolve)![2]);
    if (rev !== 'main' && rev !== repo.sha) return hubError(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);

    if (api) {
      const json = JSON.stringify({
        _id: 'x',
        id: repo.id,
        sha: repo.sha,
        gated: repo.gated ? 'manual' : false,
        siblings: Object.keys(repo.files).map((rfilename) => ({ rfilename })),
      });
      return send(res, 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }, json);
    }

    if (repo.gated && !authed) {
      return hubError(
        res,
        auth ? 403 : 401,
        'GatedRepo',
        `Access to model ${repo.id} is restricted. You must have access to it and be authenticated to access it. Please log in.`,
      );
    }
    const file = resolve![3].split('/').map(decodeURIComponent).join('/');
    const data = repo.files[file];
    if (!data) return hubError(res, 404, 'EntryNotFound', `${file} does not exist on "${rev}"`);
    const common = { 'x-repo-commit': repo.sha, 'accept-ranges': 'bytes' };
    if (LFS.test(file)) {
      const sha = sha256(data);
      const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha}\nsize ${data.length}\n`;
      return send(res, 302, {
        ...common,
        location: `${state.cdn}/lfs/${sha}?X-Amz-Signature=fake`,
        etag: `"${gitBlobSha1(Buffer.from(pointer))}"`, // the pointer's id: clients must prefer X-Linked-Etag
        'x-linked-etag': `"${sha}"`,
        'x-linked-size': data.length,
        'content-length': 0,
      });
    }
    send(res, 200, { ...common, etag: `"${gitBlobSha1(data)}"`, 'content-length': data.length }, req.method === 'HEAD' ? undefined : data);
  });

  const cdn = http.createServer((req, res) => {
    state.requests.push({ server: 'cdn', method: req.method ?? 'GET', url: req.url ?? '', headers: req.headers });
    if (req.headers.authorization) {
      state.authLeaks++;
      return send(res, 400, {}, 'Authorization header must not be forwarded to the CDN');
    }
    const sha = /^\/lfs\/([0-9a-f]{64})$/.exec(new URL(req.url ?? '/', 'http://x').pathname)?.[1];
    const data = sha ? blobs.get(sha) : undefined;
    if (!sha || !data) return send(res, 404, {}, 'NoSuchKey');

    let start = 0;
    let status = 200;
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range && !state.ignoreRange) {
      start = Number(range[1]);
      if (start >= data.length) return send(res, 416, { 'content-range': `bytes */${data.length}` });
      status = 206;
    }
    const body = data.subarray(start);
    const headers: Record<string, string | number> = { 'content-length': body.length, 'content-type': 'binary/octet-stream', etag: `"${sha}"` };
    if (status === 206) headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
    res.writeHead(status, headers);
    if (req.method === 'HEAD') return res.end();

    const cut = cuts.get(sha);
    if (cut !== undefined && req.method === 'GET') {
      cuts.delete(sha);
      res.write(body.subarray(0, cut), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    res.end(body);
  });

  const listen = (s: http.Server) => new Promise<string>((ok) => s.listen(0, '127.0.0.1', () => ok(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
  state.endpoint = await listen(hub);
  state.cdn = await listen(cdn);
  state.close = async () => {
    for (const s of [hub, cdn]) {
      s.closeAllConnections();
      await new Promise((ok) => s.close(ok));
    }
  };
  return state;
}
