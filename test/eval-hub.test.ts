// Bare task names download their dataset from the hub into the HF cache (src/eval/hub-dataset.ts),
// tested against a local imitation of the hub's dataset routes (the pattern of
// test/helpers/hub-server.ts, for datasets):
//
//   GET /api/datasets/{owner}/{name}/revision/{rev}           → { sha, siblings: [{ rfilename }] }
//   GET /datasets/{owner}/{name}/resolve/{rev}/{file}         → Parquet (LFS): 302 to the cdn with
//                                                               X-Linked-Etag "<sha256>"; other files: 200
//   GET cdn /lfs/{sha256}                                     → the bytes (Authorization refused)

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type LoadTaskOptions, loadTask } from '../src/eval/evaluate.ts';
import type { HubError } from '../src/io/hub.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = path.join(ROOT, 'test/fixtures/eval');
const read = (rel: string) => fs.readFileSync(path.join(FIX, rel));
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const TOKEN = 'hf_dataset_token';

interface Repo {
  sha: string;
  files: Record<string, Buffer>;
}
// repo id → revision → files
const REPOS: Record<string, Record<string, Repo>> = {
  'allenai/ai2_arc': {
    main: {
      sha: 'a'.repeat(40),
      files: {
        'README.md': Buffer.from('# ai2_arc\n'),
        'ARC-Easy/test-00000-of-00001.parquet': read('ai2_arc/ARC-Easy/test-00000-of-00001.parquet'),
        'ARC-Easy/train-00000-of-00001.parquet': read('ai2_arc/ARC-Easy/train-00000-of-00001.parquet'),
        'ARC-Easy/validation-00000-of-00001.parquet': read('ai2_arc/ARC-Easy/validation-00000-of-00001.parquet'),
        'ARC-Challenge/test-00000-of-00001.parquet': read('ai2_arc/ARC-Challenge/test-00000-of-00001.parquet'),
        'ARC-Challenge/train-00000-of-00001.parquet': read('ai2_arc/ARC-Challenge/train-00000-of-00001.parquet'),
      },
    },
  },
  // a loading-script dataset: the data is only in the hub's Parquet conversion
  'Rowan/hellaswag': {
    main: { sha: 'b'.repeat(40), files: { 'hellaswag.py': Buffer.from('# a loading script\n'), 'README.md': Buffer.from('# hellaswag\n') } },
    'refs/convert/parquet': {
      sha: 'c'.repeat(40),
      files: {
        'default/validation/0000.parquet': read('hellaswag/data/validation-00000-of-00001.parquet'),
        'default/train/0000.parquet': read('hellaswag/data/train-00000-of-00001.parquet'),
      },
    },
  },
};

interface Logged {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  auth?: string;
}
let requests: Logged[] = [];
let corrupt = false;
let hub: http.Server,
  cdn: http.Server,
  endpoint = '',
  cdnUrl = '';
let tmp: string;

function start(): Promise<void> {
  const blobs = new Map<string, Buffer>();
  for (const revs of Object.values(REPOS)) for (const r of Object.values(revs)) for (const b of Object.values(r.files)) blobs.set(sha256(b), b);
  hub = http.createServer((req, res) => {
    requests.push({ server: 'hub', method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
    const url = new URL(req.url ?? '/', 'http://x');
    const api = /^\/api\/datasets\/([^/]+\/[^/]+)\/revision\/(.+)$/.exec(url.pathname);
    const resolve = /^\/datasets\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const m = api ?? resolve;
    const repo = m && REPOS[m[1]];
    if (!m || !repo) {
      res.writeHead(404, { 'x-error-code': 'RepoNotFound' });
      return res.end();
    }
    const rev = decodeURIComponent(m[2]);
    const r = repo[rev] ?? Object.values(repo).find((x) => x.sha === rev);
    if (!r) {
      res.writeHead(404, { 'x-error-code': 'RevisionNotFound' });
      return res.end();
    }
    if (api) {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ id: m[1], sha: r.sha, siblings: Object.keys(r.files).map((rfilename) => ({ rfilename })) }));
    }
    const file = m[3].split('/').map(decodeURIComponent).join('/');
    const data = r.files[file];
    if (!data) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound' });
      return res.end();
    }
    if (file.endsWith('.parquet')) {
      const sha = sha256(data);
      res.writeHead(302, { location: `${cdnUrl}/lfs/${sha}`, 'x-linked-etag': `"${sha}"`, 'x-linked-size': data.length, etag: '"pointer"' });
      return res.end();
    }
    // a regular (non-LFS) file: the hub's ETag is git's blob id
    const gitSha1 = createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
    res.writeHead(200, { etag: `"${gitSha1}"`, 'content-length': data.length });
    res.end(req.method === 'HEAD' ? undefined : data);
  });
  cdn = http.createServer((req, res) => {
    requests.push({ server: 'cdn', method: req.method ?? '', url: req.url ?? '', auth: req.headers.authorization });
    if (req.headers.authorization) {
      res.writeHead(400);
      return res.end('Authorization must not reach the CDN');
    }
    const data = blobs.get(/^\/lfs\/([0-9a-f]{64})$/.exec(req.url ?? '')?.[1] ?? '');
    if (!data) {
      res.writeHead(404);
      return res.end();
    }
    const body = corrupt ? Buffer.concat([data.subarray(0, -1), Buffer.from([data[data.length - 1] ^ 1])]) : data;
    res.writeHead(200, { 'content-length': body.length });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const listen = (s: http.Server) => new Promise<string>((ok) => s.listen(0, '127.0.0.1', () => ok(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)));
  return Promise.all([listen(hub), listen(cdn)]).then(([h, c]) => {
    endpoint = h;
    cdnUrl = c;
  });
}

const opts = (extra: LoadTaskOptions = {}): LoadTaskOptions => ({ endpoint, cacheDir: path.join(tmp, 'hub'), env: {}, token: TOKEN, ...extra });

describe('datasets from the hub', () => {
  before(start);
  after(async () => {
    for (const s of [hub, cdn]) {
      s.closeAllConnections();
      await new Promise((ok) => s.close(ok));
    }
  });
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-eval-hub-'));
    requests = [];
    corrupt = false;
  });

  test("arc_easy: only ARC-Easy's test split is fetched, into datasets--allenai--ai2_arc; the cache answers next time", async () => {
    const t = await loadTask('arc_easy', opts());
    const local = await loadTask(`arc_easy=${FIX}/ai2_arc`);
    assert.deepEqual(t.docs, local.docs);
    const repoDir = path.join(tmp, 'hub', 'datasets--allenai--ai2_arc');
    const file = path.join(repoDir, 'snapshots', 'a'.repeat(40), 'ARC-Easy', 'test-00000-of-00001.parquet');
    assert.ok(fs.lstatSync(file).isSymbolicLink());
    assert.equal(fs.realpathSync(file), fs.realpathSync(path.join(repoDir, 'blobs', sha256(read('ai2_arc/ARC-Easy/test-00000-of-00001.parquet')))));
    assert.equal(fs.readFileSync(path.join(repoDir, 'refs', 'main'), 'utf8'), 'a'.repeat(40));
    // the model downloader's protocol: HEAD the resolve URL (etag, size), then GET it (a 302 to the CDN)
    const gets = requests.filter((r) => r.url.includes('/resolve/') && r.method === 'GET');
    assert.deepEqual(
      requests.filter((r) => r.url.includes('/resolve/') && r.method === 'HEAD').map((r) => r.url),
      gets.map((r) => r.url),
    );
    assert.deepEqual(
      gets.map((r) => r.url),
      [`/datasets/allenai/ai2_arc/resolve/${'a'.repeat(40)}/ARC-Easy/test-00000-of-00001.parquet`],
    );
    assert.ok(requests.filter((r) => r.server === 'hub').every((r) => r.auth === `Bearer ${TOKEN}`));
    assert.ok(requests.filter((r) => r.server === 'cdn').every((r) => r.auth === undefined));
    assert.equal(requests.filter((r) => r.server === 'cdn').length, 1);

    requests = [];
    await loadTask('arc_easy', opts());
    assert.equal(requests.length, 0, 'a complete cached snapshot needs no request');
    await loadTask('arc_easy', opts({ offline: true }));
    // few-shot needs the train split: fetched on top of the cached test split
    const fs2 = await loadTask('arc_easy', opts({ fewshot: true }));
    assert.equal(fs2.fewshotDocs!.length, 4);
    assert.deepEqual(
      requests.filter((r) => r.url.includes('/resolve/') && r.method === 'GET').map((r) => path.basename(r.url)),
      ['train-00000-of-00001.parquet'],
    );
  });

  test("a loading-script dataset (Rowan/hellaswag) is read from the hub's refs/convert/parquet branch", async () => {
    const t = await loadTask('hellaswag', opts());
    assert.deepEqual(t.docs, (await loadTask(`hellaswag=${FIX}/hellaswag`)).docs);
    const repoDir = path.join(tmp, 'hub', 'datasets--Rowan--hellaswag');
    assert.equal(fs.readFileSync(path.join(repoDir, 'refs', 'refs', 'convert', 'parquet'), 'utf8'), 'c'.repeat(40));
    assert.ok(requests.some((r) => r.url === '/api/datasets/Rowan/hellaswag/revision/refs%2Fconvert%2Fparquet'));
    requests = [];
    await loadTask('hellaswag', opts());
    assert.equal(requests.length, 0);
  });

  test('offline without a cache, a corrupted download, an unknown repo: HubErrors that say what to do', async () => {
    await assert.rejects(
      loadTask('arc_challenge', opts({ offline: true })),
      (e: HubError) => e.code === 'not-cached' && /offline mode is on.*--tasks NAME=PATH/.test(e.message),
    );
    assert.equal(requests.length, 0);
    corrupt = true;
    await assert.rejects(
      loadTask('arc_challenge', opts()),
      (e: HubError) => e.code === 'integrity' && /sha256 [0-9a-f]{64} does not match the hub's/.test(e.message),
    );
    await assert.rejects(loadTask('sciq', opts()), (e: HubError) => e.code === 'not-found' && /allenai\/sciq/.test(e.message));
  });

  test('openelm eval --tasks arc_challenge downloads through HF_ENDPOINT into HF_HUB_CACHE', async () => {
    const env = { ...process.env, HF_ENDPOINT: endpoint, HF_HUB_CACHE: path.join(tmp, 'cache'), HF_HUB_OFFLINE: '', HF_TOKEN: '' };
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'src/cli/main.ts', 'eval', '-m', 'test/fixtures/openelm/tiny-vocab32k-bf16', '--tasks', 'arc_challenge', '--json'],
      { cwd: ROOT, env },
    );
    let stdout = '',
      stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise((ok) => child.on('close', ok));
    assert.equal(code, 0, stderr);
    assert.equal(JSON.parse(stdout).results.arc_challenge.n, 2);
    assert.ok(
      fs.existsSync(path.join(tmp, 'cache', 'datasets--allenai--ai2_arc', 'snapshots', 'a'.repeat(40), 'ARC-Challenge', 'test-00000-of-00001.parquet')),
    );
  });
});
