// resolveModel against a local imitation of the hub (test/helpers/hub-server.ts): cache layout,
// no-network cache hits, resumable downloads, tokens and env, error texts, offline mode, integrity.
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { type DownloadProgress, HubError, hubCacheDir, hubToken, type ResolveOptions, resolveModel } from '../src/io/hub.ts';
import { type FixtureRepo, gitBlobSha1, type HubServer, sha256, startHubServer, tinyShardedDir } from './helpers/hub-server.ts';

const SHA = 'a'.repeat(40);
const SHARD1 = 'model-00001-of-00002.safetensors';
const SHARD2 = 'model-00002-of-00002.safetensors'; // ~3.2 MB, the one we cut
const fixtureDir = tinyShardedDir();
const read = (f: string) => fs.readFileSync(path.join(fixtureDir, f));
const files: Record<string, Buffer> = {
  'config.json': read('config.json'),
  'model.safetensors.index.json': read('model.safetensors.index.json'),
  [SHARD1]: read(SHARD1),
  [SHARD2]: read(SHARD2),
  'README.md': Buffer.from('# tiny\n'), // not in the allow patterns
  'pytorch_model.bin': Buffer.from('not really pickle'), // never fetched when safetensors exist
};
const WANTED = ['config.json', 'model.safetensors.index.json', SHARD1, SHARD2];
const etagOf = (f: string) => (/\.(safetensors|bin)$/.test(f) ? sha256(files[f]) : gitBlobSha1(files[f]));

const repos: FixtureRepo[] = [
  { id: 'apple/OpenELM-tiny', sha: SHA, files },
  { id: 'meta/gated-tiny', sha: 'b'.repeat(40), files, gated: true },
  { id: 'someone/pt-only', sha: 'c'.repeat(40), files: { 'config.json': files['config.json'], 'pytorch_model.bin': files['pytorch_model.bin'] } },
];
const TOKEN = 'hf_test_token';
const REPO = 'apple/OpenELM-tiny';

let server: HubServer;
let tmp: string;
let cache: string;

before(async () => {
  server = await startHubServer(repos, { token: TOKEN });
});
after(async () => {
  await server.close();
});
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-hub-'));
  cache = path.join(tmp, 'hub');
  server.reset();
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Options that never read the real environment or ~/.cache. */
function opts(extra: ResolveOptions = {}): ResolveOptions {
  return { endpoint: server.endpoint, cacheDir: cache, env: {}, ...extra };
}
const repoDir = () => path.join(cache, 'models--apple--OpenELM-tiny');
const cdnGets = (file: string) => server.requests.filter((r) => r.server === 'cdn' && r.method === 'GET' && r.url.includes(sha256(files[file])));

async function rejectsWith(p: Promise<unknown>, code: string, re: RegExp): Promise<HubError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof HubError, `expected a HubError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.match(e.message, re);
    return e;
  }
  assert.fail('expected a rejection');
}

describe('download into the HF cache', () => {
  test('first download writes the exact huggingface_hub layout, byte-identical files', async () => {
    const events: DownloadProgress[] = [];
    const dir = await resolveModel(REPO, opts({ onProgress: (p) => events.push(p) }));

    assert.equal(dir, path.join(repoDir(), 'snapshots', SHA));
    assert.equal(fs.readFileSync(path.join(repoDir(), 'refs', 'main'), 'utf8'), SHA);
    assert.deepEqual(fs.readdirSync(path.join(repoDir(), 'blobs')).sort(), WANTED.map(etagOf).sort());
    assert.deepEqual(fs.readdirSync(dir).sort(), [...WANTED].sort());
    for (const f of WANTED) {
      const link = path.join(dir, f);
      assert.ok(fs.lstatSync(link).isSymbolicLink(), `${f} is a symlink`);
      assert.equal(fs.readlinkSync(link), `../../blobs/${etagOf(f)}`);
      assert.ok(fs.readFileSync(link).equals(files[f]), `${f} is byte-identical`);
    }
    // the LFS file came from the cdn, without the hub's Authorization, and .bin/README were never asked for
    assert.equal(cdnGets(SHARD2).length, 1);
    assert.equal(server.authLeaks, 0);
    assert.ok(!server.requests.some((r) => /pytorch_model|README/.test(r.url)));
    // progress: every downloaded file reaches done === total, overall adds up
    for (const f of WANTED) {
      const last = events.filter((e) => e.file === f).at(-1);
      assert.ok(last, `progress for ${f}`);
      assert.equal(last.done, files[f].length);
      assert.equal(last.total, files[f].length);
    }
    const total = WANTED.reduce((s, f) => s + files[f].length, 0);
    assert.equal(events.at(-1)!.overallDone, total);
    assert.equal(events.at(-1)!.overallTotal, total);
  });

  test('a second call is served from the cache with no network request', async () => {
    await resolveModel(REPO, opts());
    const n = server.requests.length;
    assert.ok(n > 0);
    const dir = await resolveModel(REPO, opts());
    assert.equal(server.requests.length, n);
    assert.equal(dir, path.join(repoDir(), 'snapshots', SHA));
    // a commit sha as revision also hits the cache directly
    await resolveModel(REPO, opts({ revision: SHA }));
    assert.equal(server.requests.length, n);
  });

  test('refresh asks the hub again but re-downloads nothing', async () => {
    await resolveModel(REPO, opts());
    server.requests.length = 0;
    await resolveModel(REPO, opts({ refresh: true }));
    assert.deepEqual(
      server.requests.map((r) => `${r.server} ${r.method}`),
      ['hub GET'],
    ); // only the revision API
  });

  test('an interrupted download resumes on the next call with a Range request', async () => {
    const K = 1_000_000;
    server.cutAfter(SHARD2, K);
    await rejectsWith(resolveModel(REPO, opts({ retries: 0 })), 'network', /interrupted.*next call resumes/s);
    const incomplete = path.join(repoDir(), 'blobs', `${etagOf(SHARD2)}.incomplete`);
    assert.equal(fs.statSync(incomplete).size, K);
    assert.ok(!fs.existsSync(path.join(repoDir(), 'refs', 'main')), 'no ref before the snapshot is complete');

    server.requests.length = 0;
    const dir = await resolveModel(REPO, opts({ retries: 0 }));
    const gets = cdnGets(SHARD2);
    assert.equal(gets.length, 1);
    assert.equal(gets[0].headers.range, `bytes=${K}-`);
    assert.equal(cdnGets(SHARD1).length, 0, 'the finished shard is not fetched again');
    assert.ok(fs.readFileSync(path.join(dir, SHARD2)).equals(files[SHARD2]));
    assert.ok(!fs.existsSync(incomplete));
  });

  test('a dropped connection is retried within the same call, resuming', async () => {
    server.cutAfter(SHARD2, 123_457);
    const dir = await resolveModel(REPO, opts());
    const gets = cdnGets(SHARD2);
    assert.deepEqual(
      gets.map((g) => g.headers.range),
      [undefined, 'bytes=123457-'],
    );
    assert.ok(fs.readFileSync(path.join(dir, SHARD2)).equals(files[SHARD2]));
  });

  test('a server that answers 200 to a Range request makes us start the file over', async () => {
    server.cutAfter(SHARD2, 500_000);
    await assert.rejects(resolveModel(REPO, opts({ retries: 0 })));
    server.ignoreRange = true;
    const dir = await resolveModel(REPO, opts({ retries: 0 }));
    assert.equal(cdnGets(SHARD2).at(-1)!.headers.range, 'bytes=500000-');
    assert.ok(fs.readFileSync(path.join(dir, SHARD2)).equals(files[SHARD2]));
  });

  test('a blob whose sha256 differs from the etag is rejected and deleted', async () => {
    server.corrupt(SHARD2);
    await rejectsWith(resolveModel(REPO, opts()), 'integrity', new RegExp(`${SHARD2}.*sha256 [0-9a-f]{64} does not match the hub's ${sha256(files[SHARD2])}`));
    const blobs = fs.readdirSync(path.join(repoDir(), 'blobs'));
    assert.ok(!blobs.some((b) => b.startsWith(sha256(files[SHARD2]))), `no blob or .incomplete left: ${blobs}`);
    assert.ok(!fs.existsSync(path.join(repoDir(), 'snapshots', SHA, SHARD2)));
  });
});

describe('environment and tokens', () => {
  test('HF_HOME/hub is the cache; HF_HUB_CACHE overrides it; ~/.cache/huggingface/hub otherwise', async () => {
    const home = path.join(tmp, 'hfhome');
    assert.equal(hubCacheDir({ HF_HOME: home }), path.join(home, 'hub'));
    assert.equal(hubCacheDir({ HF_HOME: home, HF_HUB_CACHE: path.join(tmp, 'c') }), path.join(tmp, 'c'));
    assert.equal(hubCacheDir({}), path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
    assert.equal(hubCacheDir({ XDG_CACHE_HOME: path.join(tmp, 'xdg') }), path.join(tmp, 'xdg', 'huggingface', 'hub'));

    const dir = await resolveModel(REPO, { endpoint: server.endpoint, env: { HF_HOME: home } });
    assert.equal(dir, path.join(home, 'hub', 'models--apple--OpenELM-tiny', 'snapshots', SHA));
    const dir2 = await resolveModel(REPO, { env: { HF_HOME: home, HF_HUB_CACHE: cache, HF_ENDPOINT: server.endpoint } });
    assert.equal(dir2, path.join(cache, 'models--apple--OpenELM-tiny', 'snapshots', SHA));
  });

  test('HF_TOKEN is sent as Authorization: Bearer to the hub, never to the cdn', async () => {
    const dir = await resolveModel('meta/gated-tiny', opts({ env: { HF_TOKEN: TOKEN } }));
    assert.ok(fs.readFileSync(path.join(dir, SHARD2)).equals(files[SHARD2]));
    const hub = server.requests.filter((r) => r.server === 'hub');
    assert.ok(hub.length > 0 && hub.every((r) => r.headers.authorization === `Bearer ${TOKEN}`));
    assert.ok(server.requests.some((r) => r.server === 'cdn'));
    assert.equal(server.authLeaks, 0);
  });

  test('token sources in order: option, HF_TOKEN, HUGGING_FACE_HUB_TOKEN, $HF_HOME/token', async () => {
    const home = path.join(tmp, 'hfhome');
    fs.mkdirSync(home, { recursive: true });
    fs.writeFileSync(path.join(home, 'token'), `${TOKEN}\n`);
    assert.equal(hubToken({ HF_HOME: home }), TOKEN);
    assert.equal(hubToken({ HF_HOME: home, HUGGING_FACE_HUB_TOKEN: 'old' }), 'old');
    assert.equal(hubToken({ HF_HOME: home, HUGGING_FACE_HUB_TOKEN: 'old', HF_TOKEN: 'new' }), 'new');
    assert.equal(hubToken({ HF_HOME: path.join(tmp, 'none') }), undefined);

    await resolveModel('meta/gated-tiny', opts({ env: { HF_HOME: home } }));
    assert.ok(server.requests.filter((r) => r.server === 'hub').every((r) => r.headers.authorization === `Bearer ${TOKEN}`));
    server.requests.length = 0;
    await resolveModel(REPO, opts({ token: 'explicit', cacheDir: path.join(tmp, 'c2'), env: { HF_TOKEN: TOKEN } }));
    assert.equal(server.requests[0].headers.authorization, 'Bearer explicit');
  });

  test('HF_HUB_OFFLINE=1 uses the cache and never the network', async () => {
    await resolveModel(REPO, opts());
    server.requests.length = 0;
    const dir = await resolveModel(REPO, opts({ env: { HF_HUB_OFFLINE: '1' }, refresh: true }));
    assert.equal(dir, path.join(repoDir(), 'snapshots', SHA));
    assert.equal(server.requests.length, 0);
  });
});

describe('errors', () => {
  test('a gated repo without a token says to set HF_TOKEN and accept the licence', async () => {
    const e = await rejectsWith(
      resolveModel('meta/gated-tiny', opts()),
      'gated',
      /meta\/gated-tiny is gated or private \(HTTP 401.*set HF_TOKEN.*accept the licence on https:\/\/huggingface\.co\/meta\/gated-tiny/s,
    );
    assert.ok(!e.message.includes('undefined'));
    await rejectsWith(resolveModel('meta/gated-tiny', opts({ token: 'wrong' })), 'gated', /HTTP 403.*token was sent but has no access/s);
  });

  test('an unknown repo, revision or file is named in the error', async () => {
    await rejectsWith(
      resolveModel('nobody/missing-model', opts()),
      'not-found',
      /repo nobody\/missing-model not found on http:\/\/127\.0\.0\.1:\d+ \(HTTP 401\).*HF_TOKEN if it is private/s,
    );
    await rejectsWith(resolveModel('nobody/missing-model', opts({ token: TOKEN })), 'not-found', /repo nobody\/missing-model not found .*\(HTTP 404\)/);
    await rejectsWith(resolveModel(REPO, opts({ revision: 'v9' })), 'not-found', /revision "v9" not found in repo apple\/OpenELM-tiny/);
    await rejectsWith(resolveModel('not a model', opts()), 'not-found', /"not a model" is neither a folder nor a Hugging Face repo id/);
  });

  test('a repo with only pytorch weights is refused rather than downloading .bin', async () => {
    await rejectsWith(resolveModel('someone/pt-only', opts()), 'no-weights', /no \*\.safetensors weights \(only pytorch_model\.bin\)/);
    assert.ok(!server.requests.some((r) => r.url.includes('resolve')));
  });

  test('*.bin is skipped even when allowPatterns ask for it, if safetensors exist', async () => {
    const dir = await resolveModel(REPO, opts({ allowPatterns: ['*'] }));
    assert.deepEqual(fs.readdirSync(dir).sort(), ['README.md', ...WANTED].sort());
  });
});

describe('offline and unreachable hub', () => {
  test('offline with nothing cached: a clear error saying what to do', async () => {
    await rejectsWith(
      resolveModel(REPO, opts({ offline: true })),
      'not-cached',
      /apple\/OpenELM-tiny@main is not \(completely\) in the Hugging Face cache at .*offline mode is on.*openelm pull apple\/OpenELM-tiny/s,
    );
    assert.equal(server.requests.length, 0);
  });

  test('offline with a partial cache (a shard missing) is not taken as complete', async () => {
    await resolveModel(REPO, opts());
    fs.rmSync(path.join(repoDir(), 'blobs', etagOf(SHARD2)));
    await rejectsWith(resolveModel(REPO, opts({ offline: true })), 'not-cached', /not \(completely\) in the Hugging Face cache/);
    // online again, the missing blob is fetched and the dangling link replaced
    const dir = await resolveModel(REPO, opts());
    assert.ok(fs.readFileSync(path.join(dir, SHARD2)).equals(files[SHARD2]));
  });

  test('an unreachable hub falls back to a complete cache, else says it is not cached', async () => {
    const dead = http.createServer();
    await new Promise<void>((ok) => dead.listen(0, '127.0.0.1', () => ok()));
    const endpoint = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise((ok) => dead.close(ok));

    await rejectsWith(
      resolveModel(REPO, opts({ endpoint })),
      'network',
      /not \(completely\) in the Hugging Face cache.*hub could not be reached.*ECONNREFUSED/s,
    );
    await resolveModel(REPO, opts());
    const dir = await resolveModel(REPO, opts({ endpoint, refresh: true }));
    assert.equal(dir, path.join(repoDir(), 'snapshots', SHA));
  });

  test('an existing folder is returned as is', async () => {
    assert.equal(await resolveModel(fixtureDir, opts({ offline: true })), path.resolve(fixtureDir));
  });
});
