// openelm serve against hostile requests: valid bodies with fields replaced by values of the wrong
// type, out of range, huge or deeply nested (seeded, several hundred), raw bodies that are not
// JSON at all. Every answer is a 200 or an OpenAI-style 4xx naming what is at fault, never a 5xx;
// streamed answers end; and afterwards the server still answers, gives the same greedy text as
// before and has no sequence left running. The engine in process (reference and wasm backends) and
// in its worker thread (with prompt lookup, so speculating sequences meet the bad requests too).

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { Engine, type ServingEngine } from '../src/engine/engine.ts';
import { Rng } from '../src/generate/rng.ts';
import { type LoadedModel, loadModel } from '../src/load.ts';
import { chatFormat } from '../src/serve/chat-template.ts';
import { createServer } from '../src/serve/server.ts';
import { WorkerEngine } from '../src/serve/worker-engine.ts';

const DIR = new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url).pathname;
let loaded: LoadedModel;

before(async () => {
  loaded = await loadModel(DIR, { backend: 'ref' });
});
after(() => loaded.dispose());

const rng = new Rng(2026);
const pick = <T>(xs: readonly T[]): T => xs[rng.nextU32() % xs.length];

/** values of every JSON type, out of range, huge, nested */
const nested = (depth: number) => JSON.parse('['.repeat(depth) + ']'.repeat(depth));
const HOSTILE: readonly unknown[] = [
  null,
  true,
  false,
  0,
  -1,
  1.5,
  -0.0001,
  2 ** 31,
  -(2 ** 53),
  1e308,
  -1e308,
  '',
  'x',
  '1',
  'NaN',
  'x'.repeat(20_000),
  '\u0000\ud800',
  [],
  [null],
  [1e9],
  [-5, 'a'],
  [[]],
  [[1, 2], [3]],
  Array.from({ length: 300 }, (_, i) => i),
  {},
  { a: 1 },
  { type: 'json_schema' },
  { type: 'json_schema', json_schema: { schema: { type: 'object', properties: { a: { $ref: '#/nope' } } } } },
  { type: 'json_object' },
  { '-1': 5, '99999999': 1, x: 2 },
  { '5': 1e308 },
  nested(64),
  [{ role: 'user' }],
  [{ role: 'wizard', content: 'hi' }],
  [{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url' }] }],
  [{ role: 'user', content: null }],
  { include_usage: 'yes' },
];

const COMPLETION_FIELDS = [
  'model',
  'prompt',
  'max_tokens',
  'temperature',
  'top_p',
  'n',
  'stop',
  'seed',
  'presence_penalty',
  'frequency_penalty',
  'logit_bias',
  'logprobs',
  'echo',
  'stream',
  'stream_options',
  'response_format',
  'top_k',
  'min_p',
  'repetition_penalty',
  'best_of',
  'suffix',
  'user',
] as const;
const CHAT_FIELDS = [
  ...COMPLETION_FIELDS.filter((f) => f !== 'prompt' && f !== 'echo' && f !== 'suffix'),
  'messages',
  'top_logprobs',
  'max_completion_tokens',
] as const;

function body(route: 'completions' | 'chat'): Record<string, unknown> {
  const b: Record<string, unknown> =
    route === 'completions'
      ? { model: 'tiny', prompt: 'Once upon a time', max_tokens: 3, temperature: 0 }
      : { model: 'tiny', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0 };
  const fields = route === 'completions' ? COMPLETION_FIELDS : CHAT_FIELDS;
  const changes = 1 + (rng.nextU32() % 3);
  for (let i = 0; i < changes; i++) {
    const f = pick(fields);
    b[f] = pick(HOSTILE);
  }
  // streaming now and then, so broken streams are exercised too
  if (rng.nextU32() % 4 === 0) b.stream = true;
  return b;
}

type Reply = { status: number; text: string };

async function post(root: string, path: string, raw: string, contentType = 'application/json'): Promise<Reply> {
  const res = await fetch(root + path, { method: 'POST', headers: { 'content-type': contentType }, body: raw });
  return { status: res.status, text: await res.text() };
}

function check(what: string, r: Reply): void {
  assert.ok(r.status < 500, `${what}: ${r.status} ${r.text.slice(0, 300)}`);
  assert.ok([200, 400, 404, 413, 415, 429].includes(r.status), `${what}: ${r.status} ${r.text.slice(0, 300)}`);
  if (r.status === 200) return;
  const j = JSON.parse(r.text) as { error?: { message?: unknown; type?: unknown } };
  assert.equal(typeof j.error?.message, 'string', `${what}: ${r.text.slice(0, 300)}`);
  assert.ok((j.error!.message as string).length > 0 && typeof j.error?.type === 'string', what);
}

async function hostile(engine: ServingEngine): Promise<void> {
  const app = await createServer({
    engine,
    tokenizer: loaded.tokenizer,
    modelName: 'tiny',
    chat: chatFormat(null, loaded.tokenizer),
    limits: { maxTokens: 100 },
  });
  try {
    await requests(engine, await app.listen({ host: '127.0.0.1', port: 0 }));
  } finally {
    await app.close();
  }
}

async function requests(engine: ServingEngine, root: string): Promise<void> {
  const send = (path: string, raw: string, contentType?: string) => post(root, path, raw, contentType);
  const reference = await send('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }));
  assert.equal(reference.status, 200);
  const counts: Record<number, number> = {};
  for (let round = 0; round < 40; round++) {
    // ten at a time, so bad requests meet good ones inside the engine's batches
    const batch = Array.from({ length: 10 }, () => {
      const route = pick(['completions', 'chat'] as const);
      const b = body(route);
      return { what: `${route} ${JSON.stringify(b).slice(0, 200)}`, p: send(route === 'chat' ? '/v1/chat/completions' : '/v1/completions', JSON.stringify(b)) };
    });
    for (const { what, p } of batch) {
      const r = await p;
      check(what, r);
      counts[r.status] = (counts[r.status] ?? 0) + 1;
      if (r.status === 200 && r.text.startsWith('data:')) assert.match(r.text.trimEnd(), /data: \[DONE\]$/, `${what}: the stream ends`);
    }
  }
  // both kinds of answers happened (the mutations are not all harmless, nor all fatal)
  assert.ok((counts[200] ?? 0) >= 10 && (counts[400] ?? 0) >= 100, JSON.stringify(counts));
  // tokenize / detokenize take the same treatment
  for (let i = 0; i < 60; i++) {
    const path = pick(['/tokenize', '/detokenize']);
    const b = { [pick(['prompt', 'messages', 'tokens', 'add_special_tokens'])]: pick(HOSTILE), [pick(['prompt', 'tokens'])]: pick(HOSTILE) };
    check(`${path} ${JSON.stringify(b).slice(0, 200)}`, await send(path, JSON.stringify(b)));
  }
  // bodies that are not JSON, or not the JSON asked for
  const raws: [string, string][] = [
    ['', 'application/json'],
    ['{', 'application/json'],
    ['{"model": "tiny", "prompt": "a", "max_tokens": 2,}', 'application/json'],
    ['\u0000\u0001\u0002', 'application/json'],
    ['[' + '1,'.repeat(100_000) + '1]', 'application/json'],
    ['['.repeat(100_000) + ']'.repeat(100_000), 'application/json'],
    ['{"__proto__": {"max_tokens": 1e9}, "model": "tiny", "prompt": "a"}', 'application/json'],
    ['{"constructor": {"prototype": {"n": 100}}, "model": "tiny", "prompt": "a"}', 'application/json'],
    ['model=tiny&prompt=a', 'application/x-www-form-urlencoded'],
    ['prompt', 'text/plain'],
    ['x'.repeat(5 * 1024 * 1024), 'application/json'],
  ];
  for (const [raw, type] of raws)
    for (const path of ['/v1/completions', '/v1/chat/completions', '/tokenize']) check(`${path} ${type} ${raw.slice(0, 60)}`, await send(path, raw, type));
  // clients that go away: mid-body, and mid-generation of a non-streaming request with n = 3
  const { port } = new URL(root);
  await new Promise<void>((resolve, reject) => {
    const s = net.connect(Number(port), '127.0.0.1', () => {
      s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model": "ti');
      setTimeout(() => {
        s.destroy();
        resolve();
      }, 20);
    });
    s.on('error', reject);
  });
  const cancelled = async () => Number(/openelm_sequences_cancelled_total (\d+)/.exec(await (await fetch(root + '/metrics')).text())?.[1] ?? 0);
  const before = await cancelled(),
    generated = engine.stats.generatedTokens;
  const ac = new AbortController();
  const abandoned = fetch(root + '/v1/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'tiny', prompt: 'Go away', max_tokens: 100, n: 3, temperature: 0.8, ignore_eos: true }),
    signal: ac.signal,
  }).catch(() => null);
  for (let i = 0; i < 2000 && engine.stats.generatedTokens < generated + 3; i++) await new Promise((r) => setTimeout(r, 1));
  ac.abort();
  assert.equal(await abandoned, null);
  for (let i = 0; i < 200 && engine.stats.active > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(engine.stats.active, 0, 'the slots are freed');
  assert.equal(await cancelled(), before + 3, 'its three sequences were cancelled');
  assert.ok(engine.stats.generatedTokens < generated + 3 * 100, 'before their end');
  // afterwards: alive, the same greedy text, nothing left running
  assert.equal((await fetch(root + '/health')).status, 200);
  const again = await send('/v1/completions', JSON.stringify({ model: 'tiny', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }));
  assert.equal(again.status, 200);
  assert.equal(JSON.parse(again.text).choices[0].text, JSON.parse(reference.text).choices[0].text);
  await engine.idle();
  assert.equal(engine.stats.active, 0);
  assert.equal(engine.stats.waiting, 0);
}

test('hostile requests, engine in process: every field of the wrong type, out of range, huge or nested gets a 200 or an OpenAI-style 4xx, never a 5xx', async () => {
  await hostile(new Engine(loaded.model, { parallel: 4, maxQueue: 64, stepTokens: 16 }));
});

test('hostile requests, engine in process on the wasm backend', async () => {
  const wasm = await loadModel(DIR, { backend: 'wasm', threads: 2 });
  try {
    await hostile(new Engine(wasm.model, { parallel: 4, maxQueue: 64, stepTokens: 16 }));
  } finally {
    wasm.dispose();
  }
});

test('hostile requests, engine in its worker thread (prompt lookup speculating)', async () => {
  const engine = await WorkerEngine.start({
    model: DIR,
    load: { backend: 'ref' },
    engine: { parallel: 4, maxQueue: 64, stepTokens: 16 },
    speculative: { promptLookup: 4 },
  });
  try {
    await hostile(engine);
  } finally {
    await engine.close();
  }
});
