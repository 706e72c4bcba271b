// The engine in a worker thread (src/serve/worker-engine.ts): /health answers while a long
// prompt prefills (with the engine on the HTTP thread it would wait for each step), and the
// worker's output equals the in-process engine's, through the official openai client.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { parseConfig } from '../src/config/index.ts';
import { Engine } from '../src/engine/engine.ts';
import { writeCheckpoint } from '../src/io/checkpoint.ts';
import { loadModel } from '../src/load.ts';
import { initTensors } from '../src/model/init.ts';
import { chatFormat } from '../src/serve/chat-template.ts';
import { createServer } from '../src/serve/server.ts';
import { WorkerEngine } from '../src/serve/worker-engine.ts';
import { loadTokenizer } from '../src/tokenizer/index.ts';

const TINY = new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url).pathname;
let dir: string;

before(async () => {
  // a model whose 256-token prefill step takes long on the reference backend (~1M parameters per layer)
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-worker-'));
  const json = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
  const { num_query_heads: _q, num_kv_heads: _kv, ...rest } = json;
  const cfg = parseConfig(
    { ...rest, model_dim: 256, head_dim: 64, num_transformer_layers: 2, ffn_multipliers: [0.5, 4.0], max_context_length: 640, rope_max_length: 1280 },
    'test config',
  );
  await writeCheckpoint(path.join(dir, 'm'), cfg, initTensors(cfg, 1), { dtype: 'bf16' });
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('/health answers within 100 ms while a long prompt prefills in the worker', async (t) => {
  const engine = await WorkerEngine.start({ model: path.join(dir, 'm'), load: { backend: 'ref' }, engine: { parallel: 2, stepTokens: 256 } });
  const tokenizer = await loadTokenizer(path.join(dir, 'm'));
  const app = await createServer({ engine, tokenizer, modelName: 'm', chat: chatFormat(null, tokenizer) });
  try {
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const prompt = [1, ...Array.from({ length: 599 }, (_, i) => 100 + ((i * 7919) % 20000))];
    let done = false;
    const t0 = performance.now();
    const req = fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt, max_tokens: 1, temperature: 0 }),
    }).then(async (r) => {
      assert.equal(r.status, 200);
      await r.json();
      done = true;
    });
    const lat: number[] = [];
    while (!done) {
      const h0 = performance.now();
      const h = await fetch(`${base}/health`);
      assert.equal(h.status, 200);
      await h.json();
      lat.push(performance.now() - h0);
      await new Promise((r) => setTimeout(r, 10));
    }
    await req;
    const prefill = performance.now() - t0;
    lat.sort((a, b) => a - b);
    const p90 = lat[Math.floor(0.9 * lat.length)],
      max = lat[lat.length - 1];
    t.diagnostic(`/health: ${lat.length} polls during a ${prefill.toFixed(0)} ms prefill, p90 ${p90.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
    // three steps of up to 256 prompt tokens: each far longer than the bound, so an engine on this thread would miss it
    assert.ok(prefill > 600, `the prefill took ${prefill.toFixed(0)} ms: too short to show anything`);
    assert.ok(p90 < 100 && max < 400, `/health: ${lat.length} polls during ${prefill.toFixed(0)} ms, p90 ${p90.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
  } finally {
    await app.close();
    await engine.close();
  }
});

test('the worker engine gives the in-process engine its tokens (openai client, concurrent, speculative too)', async () => {
  const local = await loadModel(TINY, { backend: 'ref' });
  const engines = [
    new Engine(local.model, { parallel: 4, stepTokens: 16 }),
    await WorkerEngine.start({ model: TINY, load: { backend: 'ref' }, engine: { parallel: 4, stepTokens: 16 } }),
    await WorkerEngine.start({ model: TINY, load: { backend: 'ref' }, engine: { parallel: 4, stepTokens: 16 }, speculative: { promptLookup: 8 } }),
  ];
  const results: string[][] = [];
  try {
    for (const engine of engines) {
      const app = await createServer({ engine, tokenizer: local.tokenizer, modelName: 'tiny', chat: chatFormat(null, local.tokenizer) });
      try {
        const client = new OpenAI({ baseURL: `${await app.listen({ host: '127.0.0.1', port: 0 })}/v1`, apiKey: 'none', maxRetries: 0 });
        const extra = { ignore_eos: true } as Record<string, unknown>;
        const rs = await Promise.all([
          client.completions.create({ model: 'tiny', prompt: ['Once upon a time', 'a b c a b c a b'], max_tokens: 20, temperature: 0, ...extra }),
          client.completions.create({ model: 'tiny', prompt: 'The weather', max_tokens: 12, temperature: 0.8, seed: 5, ...extra }),
          client.chat.completions.create({
            model: 'tiny',
            messages: [{ role: 'user', content: 'Hi' }],
            max_tokens: 10,
            temperature: 0,
            response_format: { type: 'json_object' },
          }),
        ]);
        results.push([...rs[0].choices.map((c) => c.text), rs[1].choices[0].text, rs[2].choices[0].message.content ?? '']);
        const m = await (await fetch(`${client.baseURL.replace(/\/v1$/, '')}/metrics`)).text();
        assert.match(m, /openelm_generation_tokens_total \d+/);
      } finally {
        await app.close();
      }
    }
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual([results[2][0], results[2][1], results[2][3]], [results[0][0], results[0][1], results[0][3]]); // greedy and JSON: identical
  } finally {
    for (const e of engines) if (e instanceof WorkerEngine) await e.close();
    local.dispose();
  }
});

test('a worker that dies is replaced: its requests fail with an error, /health is 503 meanwhile, then the same model answers the same', async () => {
  const engine = await WorkerEngine.start({ model: TINY, load: { backend: 'ref' }, engine: { parallel: 2 } });
  const tokenizer = await loadTokenizer(TINY);
  const app = await createServer({ engine, tokenizer, modelName: 'm', chat: chatFormat(null, tokenizer) });
  try {
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 });
    const ask = (max_tokens: number) => client.completions.create({ model: 'm', prompt: 'The state of the Union is', max_tokens, temperature: 0 });
    const before = (await ask(6)).choices[0].text;

    // a long generation in flight when the worker dies (as it would from a native crash or running out of memory)
    const inFlight = ask(400).then(
      () => null,
      (e: unknown) => e,
    );
    while (engine.stats.active === 0) await new Promise((r) => setTimeout(r, 5));
    await (engine as unknown as { worker: import('node:worker_threads').Worker }).worker.terminate();
    const err = await inFlight;
    assert.ok(err instanceof OpenAI.InternalServerError, `the request in flight fails with a server error, got ${String(err)}`);
    assert.match((err as Error).message, /engine worker stopped/);

    // while the new worker loads: 503 with Retry-After, which the openai client would retry
    const h = await fetch(`${base}/health`);
    assert.equal(h.status, 503);
    assert.equal(((await h.json()) as { status: string }).status, 'unavailable');
    const busy = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'x', max_tokens: 1 }),
    });
    assert.equal(busy.status, 503);
    assert.ok(busy.headers.get('retry-after'));
    assert.match(((await busy.json()) as { error: { message: string } }).error.message, /restarting it/);

    const t0 = Date.now();
    while (!engine.ready) {
      assert.ok(Date.now() - t0 < 60_000, 'the worker was not replaced within a minute');
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal((await fetch(`${base}/health`)).status, 200);
    assert.equal((await ask(6)).choices[0].text, before);
    assert.equal(engine.restarts, 1);
    const m = await (await fetch(`${base}/metrics`)).text();
    assert.match(m, /^openelm_engine_restarts_total 1$/m);
    assert.match(m, /^openelm_engine_up 1$/m);
  } finally {
    await app.close();
    await engine.close();
  }
});
