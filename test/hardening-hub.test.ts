// resolveModel against a hostile or broken hub on loopback: path traversal through the commit
// sha, the revision and etags; bodies without end (gzip); missing Content-Length; hung and
// slow-loris servers; wrong hashes; concurrent downloads of one blob; a stale lock; a full disk.
// Timeouts are set to fractions of a second through the options, so every case is fast.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import * as zlib from 'node:zlib';
import { HubError, type ResolveOptions, resolveModel } from '../src/io/hub.ts';
import { listModels, removeCachedModel } from '../src/io/hub-cache.ts';

const SHA = 'c'.repeat(40);
const REPO = 'apple/OpenELM-hostile';
const CONFIG = Buffer.from(JSON.stringify({ model_type: 'openelm', num_transformer_layers: 1, model_dim: 64, head_dim: 16 }));
const WEIGHTS = Buffer.alloc(200_000);
for (let i = 0; i < WEIGHTS.length; i++) WEIGHTS[i] = (i * 2654435761) >>> 24;
const FILES: Record<string, Buffer> = { 'config.json': CONFIG, 'model.safetensors': WEIGHTS };
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const gitSha1 = (b: Buffer) => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
const etagOf = (f: string) => (f.endsWith('.safetensors') ? sha256(FILES[f]) : gitSha1(FILES[f]));

/** What the fake hub does; each test changes some of it. */
interface Scenario {
  sha: string;
  etag: (file: string) => string | undefined;
  /** serves a GET of a file; default: the bytes with Content-Length */
  get?: (file: string, req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** when set, the API never answers */
  hangApi?: boolean;
  headSize?: (file: string) => number | undefined;
}

let scenario: Scenario;
const requests: { method: string; url: string }[] = [];
let server: http.Server;
let endpoint: string;
const sockets = new Set<import('node:net').Socket>();

// a new server (new port) per test: no pooled connection of one test reaches the next
beforeEach(async () => {
  server = http.createServer((req, res) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '' });
    res.setHeader('connection', 'close'); // no keep-alive: afterEach destroys sockets
    const url = new URL(req.url ?? '/', 'http://x');
    if (/^\/api\/models\//.test(url.pathname)) {
      if (scenario.hangApi) return; // never answers
      const body = JSON.stringify({ id: REPO, sha: scenario.sha, siblings: Object.keys(FILES).map((rfilename) => ({ rfilename })) });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      return res.end(body);
    }
    const m = /^\/[^/]+\/[^/]+\/resolve\/[^/]+\/(.+)$/.exec(url.pathname);
    const file = m ? decodeURIComponent(m[1]) : '';
    const data = FILES[file];
    if (!data) {
      res.writeHead(404, { 'x-error-code': 'EntryNotFound' });
      return res.end();
    }
    const etag = scenario.etag(file);
    const headers: Record<string, string | number> = { 'x-repo-commit': SHA };
    if (etag !== undefined) headers.etag = `"${etag}"`;
    if (req.method === 'HEAD') {
      const size = scenario.headSize ? scenario.headSize(file) : data.length;
      if (size !== undefined) headers['content-length'] = size;
      res.writeHead(200, headers);
      return res.end();
    }
    if (scenario.get) return scenario.get(file, req, res);
    res.writeHead(200, { ...headers, 'content-length': data.length });
    res.end(data);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', () => ok()));
  endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterEach(async () => {
  for (const s of sockets) s.destroy(); // hung responses of the test
  await new Promise((ok) => server.close(ok));
});

let tmp: string;
let cache: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-hostile-'));
  cache = path.join(tmp, 'cache', 'hub');
  scenario = { sha: SHA, etag: etagOf };
  requests.length = 0;
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function opts(extra: ResolveOptions = {}): ResolveOptions {
  return { endpoint, cacheDir: cache, env: {}, retries: 0, connectTimeoutMs: 2000, idleTimeoutMs: 2000, ...extra };
}
const blobsDir = () => path.join(cache, 'models--apple--OpenELM-hostile', 'blobs');

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<HubError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof HubError, `expected a HubError, got ${(e as Error).stack}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return e;
  }
  assert.fail('expected a rejection');
}

/** Every path under `dir`, relative. */
function tree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      out.push(path.relative(dir, p));
      if (e.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

describe('nothing is written outside the cache', () => {
  test('a commit sha of "../../../../x" from the hub is refused before any file is written', async () => {
    for (const sha of ['../../../../escaped', '../../../../../../../tmp/openelm-escaped', 'C'.repeat(40), `${SHA}/..`]) {
      scenario.sha = sha;
      await rejectsWith(resolveModel(REPO, opts()), 'http', /commit sha .* not 40 hex digits; refusing/);
    }
    assert.deepEqual(
      tree(tmp).filter((p) => !p.startsWith('cache')),
      [],
    );
    assert.ok(!fs.existsSync('/tmp/openelm-escaped'));
    assert.ok(!requests.some((r) => r.url.includes('/resolve/')), 'no file requested');
  });

  test('a revision with ".." or a leading "/" is refused without a request', async () => {
    for (const revision of ['../../../x', '/etc', 'a/../../b', 'main\0', '']) {
      await rejectsWith(resolveModel(REPO, opts({ revision })), 'invalid', /is not a branch, tag or commit name/);
    }
    assert.equal(requests.length, 0);
    assert.ok(!fs.existsSync(cache));
  });

  test('a planted ref holding "../.." is not followed: the hub is asked again', async () => {
    const refs = path.join(cache, 'models--apple--OpenELM-hostile', 'refs');
    fs.mkdirSync(refs, { recursive: true });
    fs.mkdirSync(path.join(tmp, 'outside'), { recursive: true });
    fs.writeFileSync(path.join(tmp, 'outside', 'config.json'), '{}');
    fs.writeFileSync(path.join(tmp, 'outside', 'model.safetensors'), 'x');
    fs.writeFileSync(path.join(refs, 'main'), '../../../../outside');
    const dir = await resolveModel(REPO, opts());
    assert.equal(dir, path.join(cache, 'models--apple--OpenELM-hostile', 'snapshots', SHA));
  });

  test('an etag of "..", a path or a non-hash is refused', async () => {
    for (const etag of ['..', '../../x', 'abc', 'g'.repeat(64)]) {
      scenario.etag = () => etag;
      await rejectsWith(resolveModel(REPO, opts()), 'http', /no usable ETag .*expected a git sha1 or a sha256/);
    }
    assert.deepEqual(fs.existsSync(blobsDir()) ? fs.readdirSync(blobsDir()) : [], []);
  });
});

describe('integrity', () => {
  test("a 40-hex etag is checked as git's blob sha1: corrupt weights behind one are refused", async () => {
    const bad = Buffer.from(WEIGHTS);
    bad[1000] ^= 1;
    scenario.etag = (f) => (f === 'model.safetensors' ? gitSha1(WEIGHTS) : etagOf(f));
    scenario.get = (f, _req, res) => {
      const data = f === 'model.safetensors' ? bad : FILES[f];
      res.writeHead(200, { 'content-length': data.length });
      res.end(data);
    };
    await rejectsWith(resolveModel(REPO, opts()), 'integrity', /model\.safetensors.*git blob sha1 [0-9a-f]{40} does not match/);
    assert.ok(!fs.readdirSync(blobsDir()).some((b) => b.startsWith(gitSha1(WEIGHTS))), 'nothing kept under the etag');
    // and with the right bytes, the same etag is accepted
    scenario.get = undefined;
    const dir = await resolveModel(REPO, opts());
    assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(WEIGHTS));
  });

  test('a gzip body without end is cut at the announced size, quickly', async () => {
    scenario.get = (f, _req, res) => {
      if (f !== 'model.safetensors') {
        res.writeHead(200, { 'content-length': FILES[f].length });
        return res.end(FILES[f]);
      }
      res.writeHead(200, { 'content-encoding': 'gzip' });
      const gz = zlib.createGzip();
      gz.pipe(res);
      const zeros = Buffer.alloc(1 << 20);
      const pump = () => {
        while (gz.write(zeros)) {
          /* fill */
        }
        gz.once('drain', pump);
      };
      res.on('close', () => gz.destroy());
      pump();
    };
    const t0 = Date.now();
    await rejectsWith(resolveModel(REPO, opts()), 'integrity', /sent more than the announced 200000 bytes \(Content-Encoding gzip\)/);
    assert.ok(Date.now() - t0 < 10_000);
    assert.ok(!fs.readdirSync(blobsDir()).some((b) => b.startsWith(sha256(WEIGHTS))), 'partial file deleted');
  });

  test('a response without Content-Length (chunked) is accepted and verified', async () => {
    scenario.get = (f, _req, res) => {
      res.writeHead(200, { 'transfer-encoding': 'chunked' });
      const data = FILES[f];
      res.write(data.subarray(0, 1000));
      res.end(data.subarray(1000));
    };
    const dir = await resolveModel(REPO, opts());
    assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(WEIGHTS));
  });

  test('a HEAD without a size, or announcing more than maxFileBytes, is refused by name', async () => {
    scenario.headSize = () => undefined;
    await rejectsWith(resolveModel(REPO, opts()), 'http', /config\.json in apple\/OpenELM-hostile@main: the hub sent no file size/);
    scenario.headSize = (f) => (f === 'model.safetensors' ? 1e12 : FILES[f].length);
    await rejectsWith(resolveModel(REPO, opts()), 'http', /announces 1000000000000 bytes, more than the limit of 137438953472/);
    scenario.headSize = undefined;
    await rejectsWith(resolveModel(REPO, opts({ maxFileBytes: 1000 })), 'http', /model\.safetensors.*more than the limit of 1000 \(maxFileBytes\)/);
  });
});

describe('timeouts', () => {
  test('a hub that never answers fails after the connect timeout', async () => {
    scenario.hangApi = true;
    const t0 = Date.now();
    await rejectsWith(resolveModel(REPO, opts({ connectTimeoutMs: 300 })), 'network', /hub could not be reached.*no response within 300 ms/s);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  });

  test('a download that stops sending fails after the idle timeout, keeping the bytes for a resume', async () => {
    scenario.get = (f, _req, res) => {
      if (f !== 'model.safetensors') return res.end(FILES[f]);
      res.writeHead(200, { 'content-length': WEIGHTS.length });
      res.write(WEIGHTS.subarray(0, 5000)); // then nothing
    };
    const t0 = Date.now();
    await rejectsWith(
      resolveModel(REPO, opts({ idleTimeoutMs: 300 })),
      'network',
      /interrupted \(connection lost after 5000 of 200000 bytes: no data for 300 ms/,
    );
    assert.ok(Date.now() - t0 < 5000);
    assert.equal(fs.statSync(path.join(blobsDir(), `${sha256(WEIGHTS)}.incomplete`)).size, 5000);
    scenario.get = undefined; // a healthy server: the next call completes (Range ignored here: starts over)
    const dir = await resolveModel(REPO, opts());
    assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(WEIGHTS));
  });

  test('a slow-loris server (a byte now and then) is dropped by the minimum speed', async () => {
    scenario.get = (f, _req, res) => {
      if (f !== 'model.safetensors') return res.end(FILES[f]);
      res.writeHead(200, { 'content-length': WEIGHTS.length });
      let i = 0;
      const t = setInterval(() => {
        if (res.destroyed) clearInterval(t);
        else res.write(WEIGHTS.subarray(i, ++i));
      }, 20);
      res.on('close', () => clearInterval(t));
    };
    const t0 = Date.now();
    await rejectsWith(
      resolveModel(REPO, opts({ idleTimeoutMs: 200, minBytesPerSecond: 1000 })),
      'network',
      /bytes\/s over \d+ ms, below the minimum of 1000 bytes\/s/,
    );
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  });

  test('an error response with an endless body is not read to its end', async () => {
    scenario.get = (f, _req, res) => {
      if (f !== 'model.safetensors') return res.end(FILES[f]);
      res.writeHead(500, { 'content-type': 'text/plain' });
      const junk = Buffer.alloc(64 * 1024, 0x41);
      const pump = () => {
        while (!res.destroyed && res.write(junk)) {
          /* fill */
        }
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    };
    const t0 = Date.now();
    await rejectsWith(resolveModel(REPO, opts()), 'http', /model\.safetensors in apple\/OpenELM-hostile@main: HTTP 500/);
    assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms`);
  });

  test('HF_HUB_ETAG_TIMEOUT sets the connect timeout (seconds)', async () => {
    scenario.hangApi = true;
    const t0 = Date.now();
    await rejectsWith(
      resolveModel(REPO, { endpoint, cacheDir: cache, retries: 0, env: { HF_HUB_ETAG_TIMEOUT: '0.3' } }),
      'network',
      /no response within 300 ms/,
    );
    assert.ok(Date.now() - t0 < 5000);
  });
});

describe('concurrency and the disk', () => {
  test('two downloads of the same repo at once: one GET per file, both get the right bytes', async () => {
    scenario.get = (f, _req, res) => {
      res.writeHead(200, { 'content-length': FILES[f].length });
      const data = FILES[f];
      // slow enough that the two calls overlap
      res.write(data.subarray(0, data.length >> 1));
      setTimeout(() => res.end(data.subarray(data.length >> 1)), 150);
    };
    const [a, b] = await Promise.all([resolveModel(REPO, opts()), resolveModel(REPO, opts())]);
    assert.equal(a, b);
    assert.ok(fs.readFileSync(path.join(a, 'model.safetensors')).equals(WEIGHTS));
    const gets = requests.filter((r) => r.method === 'GET' && r.url.endsWith('/model.safetensors'));
    assert.equal(gets.length, 1, 'the second call waited for the first one instead of writing the same file');
    assert.deepEqual(fs.readdirSync(blobsDir()).sort(), Object.keys(FILES).map(etagOf).sort(), 'no lock or partial file left');
  });

  test('two processes pulling the same model at once: one downloads, the other waits; the cache is whole', async () => {
    scenario.get = (f, _req, res) => {
      const data = FILES[f];
      res.writeHead(200, { 'content-length': data.length });
      res.write(data.subarray(0, data.length >> 1));
      setTimeout(() => res.end(data.subarray(data.length >> 1)), 400);
    };
    const main = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');
    const env = { ...process.env, HF_ENDPOINT: endpoint, HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '', HF_TOKEN: '' };
    const run = () =>
      new Promise<{ code: number | null; out: string; err: string }>((ok) => {
        const p = spawn(process.execPath, ['--import', 'tsx', main, 'pull', REPO, '--json'], { env, cwd: path.join(import.meta.dirname, '..') });
        let out = '',
          err = '';
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('close', (code) => ok({ code, out, err }));
      });
    const [a, b] = await Promise.all([run(), run()]);
    assert.equal(a.code, 0, a.err);
    assert.equal(b.code, 0, b.err);
    const dir = JSON.parse(a.out).path;
    assert.equal(JSON.parse(b.out).path, dir);
    assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(WEIGHTS));
    assert.equal(requests.filter((r) => r.method === 'GET' && r.url.endsWith('/model.safetensors')).length, 1);
    assert.deepEqual(fs.readdirSync(blobsDir()).sort(), Object.keys(FILES).map(etagOf).sort());
  });

  test('a lock left by a dead process is taken over; its partial bytes are hashed before use', async () => {
    fs.mkdirSync(blobsDir(), { recursive: true });
    const blob = path.join(blobsDir(), sha256(WEIGHTS));
    fs.writeFileSync(`${blob}.lock`, `${os.hostname()} 2147483646 x`); // no such pid
    // a partial file some other writer filled with wrong bytes: resuming from it must not pass
    fs.writeFileSync(`${blob}.incomplete`, Buffer.alloc(1000, 7));
    scenario.get = (f, req, res) => {
      const data = FILES[f];
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const body = data.subarray(start);
      res.writeHead(start ? 206 : 200, {
        'content-length': body.length,
        ...(start ? { 'content-range': `bytes ${start}-${data.length - 1}/${data.length}` } : {}),
      });
      res.end(body);
    };
    await rejectsWith(resolveModel(REPO, opts()), 'integrity', /sha256 [0-9a-f]{64} does not match the hub's/);
    assert.ok(!fs.existsSync(`${blob}.lock`) && !fs.existsSync(`${blob}.incomplete`) && !fs.existsSync(blob));
    const dir = await resolveModel(REPO, opts());
    assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(WEIGHTS));
  });

  test('an empty lock (its maker about to write its pid) is waited for; one left empty for seconds is taken over', async () => {
    fs.mkdirSync(blobsDir(), { recursive: true });
    const lock = `${path.join(blobsDir(), sha256(WEIGHTS))}.lock`;
    // what another process's exclusive create looks like before it writes its holder: taking it
    // over then made two downloaders of one blob (the second's rename failed with ENOENT)
    fs.writeFileSync(lock, '');
    let done = false;
    const pending = resolveModel(REPO, opts()).then((dir) => ((done = true), dir));
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(!done && requests.every((r) => !r.url.endsWith('/model.safetensors') || r.method !== 'GET'), 'it did not wait for the lock');
    fs.rmSync(lock); // the other process finished (here: without the file, so this one downloads it)
    const dir = await pending;
    assert.ok(fs.readFileSync(path.join(dir, 'model.safetensors')).equals(WEIGHTS));
    // an empty lock from a process that died before writing it: taken over once it is old
    fs.rmSync(cache, { recursive: true, force: true });
    fs.mkdirSync(blobsDir(), { recursive: true });
    fs.writeFileSync(lock, '');
    const old = Date.now() / 1000 - 60;
    fs.utimesSync(lock, old, old);
    const again = await resolveModel(REPO, opts());
    assert.ok(fs.readFileSync(path.join(again, 'model.safetensors')).equals(WEIGHTS));
    assert.ok(!fs.existsSync(lock));
  });

  test('a full disk is reported as a write error naming the file, not as a lost connection', { skip: !fs.existsSync('/dev/full') }, async () => {
    fs.mkdirSync(blobsDir(), { recursive: true });
    const blob = path.join(blobsDir(), sha256(WEIGHTS));
    fs.symlinkSync('/dev/full', `${blob}.incomplete`); // every write: ENOSPC
    await rejectsWith(
      resolveModel(REPO, opts()),
      'io',
      /model\.safetensors in apple\/OpenELM-hostile@main: writing .*\.incomplete failed after 0 of 200000 bytes: ENOSPC/,
    );
    assert.ok(!fs.existsSync(`${blob}.lock`));
  });
});

describe('listing and removing cached models', () => {
  test('listModels shows cached repos and local folders with size, dtype and parameters; removeCachedModel deletes one', async () => {
    await resolveModel(REPO, opts());
    const tiny = path.join(import.meta.dirname, 'fixtures', 'openelm', 'tiny-f32');
    const list = listModels({ cacheDir: cache, folders: [tiny] });
    assert.deepEqual(
      list.map((m) => m.name),
      [REPO, tiny],
    );
    const [cached, local] = list;
    assert.equal(cached.dir, path.join(cache, 'models--apple--OpenELM-hostile', 'snapshots', SHA));
    assert.deepEqual(cached.refs, ['main']);
    assert.equal(cached.bytes, CONFIG.length + WEIGHTS.length);
    assert.equal(cached.dtype, '?', 'not real safetensors');
    assert.ok(cached.parameters! > 0);
    assert.equal(local.dtype, 'f32');
    assert.equal(local.parameters, 681344);

    for (const bad of ['../x/y', 'a/../../b', 'nope'])
      assert.throws(() => removeCachedModel(bad, { cacheDir: cache }), /is not a hub repo id|does not name a folder/);
    assert.throws(() => removeCachedModel('apple/other', { cacheDir: cache }), /not in the Hugging Face cache/);
    assert.equal(removeCachedModel(REPO, { cacheDir: cache }), CONFIG.length + WEIGHTS.length + SHA.length, 'blobs and refs/main');
    assert.deepEqual(listModels({ cacheDir: cache }), []);
  });
});
