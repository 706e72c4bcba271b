// openelm serve, driven by the official `openai` client over loopback (and raw fetch where a
// client would never send such a request). The model is the tiny 32k-vocabulary fixture on the
// reference backend; the references are the library's own single-sequence generate and eval.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Ajv } from 'ajv';
import OpenAI from 'openai';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { Engine } from '../src/engine/engine.ts';
import { encodePair, LoglikScorer } from '../src/eval/loglikelihood.ts';
import { encodeChat } from '../src/generate/chat.ts';
import type { LoadedModel } from '../src/load.ts';
import { chatFormat } from '../src/serve/chat-template.ts';
import { createServer } from '../src/serve/server.ts';
import { type TinyServer, tinyServer } from './helpers/tiny-server.ts';

const MODEL = 'tiny';
let server: TinyServer, loaded: LoadedModel, ref: LoadedModel, base: string, client: OpenAI, engine: Engine;

before(async () => {
  server = await tinyServer(MODEL);
  ({ loaded, ref, base, engine } = server);
  client = new OpenAI({ baseURL: base, apiKey: 'none', maxRetries: 0 });
});
after(() => server.close());

const greedy = (prompt: string | { ids: number[] }, n: number) => server.greedy(prompt, n);

const extra = { ignore_eos: true } as Record<string, unknown>;

test('completions: greedy text of every prompt form equals openelm generate; usage counts BOS', async () => {
  const a = 'Once upon a time',
    b = 'The weather today';
  const ga = await greedy(a, 12),
    gb = await greedy(b, 12);
  const idsB = ref.tokenizer.encode(b, { bos: true });
  const one = await client.completions.create({ model: MODEL, prompt: a, max_tokens: 12, temperature: 0, ...extra });
  assert.equal(one.choices[0].text, ga.text);
  assert.equal(one.choices[0].finish_reason, 'length');
  assert.deepEqual(one.usage, { prompt_tokens: 5, completion_tokens: 12, total_tokens: 17 });
  const two = await client.completions.create({ model: MODEL, prompt: [a, b], max_tokens: 12, temperature: 0, ...extra });
  assert.deepEqual(
    two.choices.map((c) => [c.index, c.text]),
    [
      [0, ga.text],
      [1, gb.text],
    ],
  );
  const ids = await client.completions.create({ model: MODEL, prompt: idsB, max_tokens: 12, temperature: 0, ...extra });
  assert.equal(ids.choices[0].text, gb.text);
  const lists = await client.completions.create({
    model: MODEL,
    prompt: [idsB, ref.tokenizer.encode(a, { bos: true })],
    max_tokens: 12,
    temperature: 0,
    ...extra,
  });
  assert.deepEqual(
    lists.choices.map((c) => c.text),
    [gb.text, ga.text],
  );
  // token ids are used as given: without BOS the continuation differs from the text prompt's
  const noBos = await greedy({ ids: idsB.slice(1) }, 12);
  const r = await client.completions.create({ model: MODEL, prompt: idsB.slice(1), max_tokens: 12, temperature: 0, ...extra });
  assert.equal(r.choices[0].text, noBos.text);
});

test('streaming: chunks concatenate to the non-streamed text, then the usage chunk', async () => {
  const p = 'In the beginning';
  const full = await client.completions.create({ model: MODEL, prompt: p, max_tokens: 10, temperature: 0, ...extra });
  const stream = await client.completions.create({
    model: MODEL,
    prompt: p,
    max_tokens: 10,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
    ...extra,
  });
  let text = '',
    finish: string | null = null,
    usage = null,
    afterUsage = 0;
  for await (const c of stream) {
    if (usage) afterUsage++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.equal(text, full.choices[0].text);
  assert.equal(finish, 'length');
  assert.deepEqual(usage, full.usage);
  assert.equal(afterUsage, 0);

  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Hi there' }],
    max_tokens: 8,
    temperature: 0,
    stream: true,
    ...extra,
  });
  let ctext = '',
    role = '';
  for await (const c of chat) {
    ctext += c.choices[0]?.delta.content ?? '';
    role ||= c.choices[0]?.delta.role ?? '';
  }
  const ids = encodeChat(ref.tokenizer, [{ role: 'user', content: 'Hi there' }]);
  assert.equal(ctext, (await greedy({ ids }, 8)).text);
  assert.equal(role, 'assistant');
});

test('chat: the -Instruct template, greedy reply equals generate on encodeChat; logprobs per token', async () => {
  const messages = [
    { role: 'system' as const, content: 'Be brief.' },
    { role: 'user' as const, content: 'Name a color.' },
  ];
  const want = await greedy({ ids: encodeChat(ref.tokenizer, messages) }, 10);
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3, ...extra });
  assert.equal(r.choices[0].message.content, want.text);
  assert.equal(r.usage?.prompt_tokens, encodeChat(ref.tokenizer, messages).length);
  const lp = r.choices[0].logprobs!.content!;
  assert.equal(lp.length, 10);
  for (const e of lp) {
    assert.equal(e.top_logprobs.length, 3);
    assert.ok(e.logprob <= 0 && Math.abs(e.logprob - e.top_logprobs[0].logprob) < 1e-9, 'greedy picks the top token');
  }
});

test("chat: a model folder's Jinja chat_template (tokenizer_config.json) renders the conversation; the reply is generate's on its ids", async () => {
  // Llama-2-chat's template, as its tokenizer_config.json carries it
  const template =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
    '{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}' +
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
    "{% else %}{% set content = message['content'] %}{% endif %}" +
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-chat-'));
  try {
    const tok = loaded.tokenizer;
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Name a color.' },
      { role: 'assistant' as const, content: 'Red.' },
      { role: 'user' as const, content: 'Another?' },
    ];
    // what transformers' apply_chat_template(tokenize=True) gives with the Llama-2 tokenizer: the
    // special tokens by id, each text between them encoded as its own piece
    const want = [
      tok.bosId,
      ...tok.encode('[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nName a color. [/INST] Red. '),
      tok.eosId,
      tok.bosId,
      ...tok.encode('[INST] Another? [/INST]'),
    ];
    for (const form of ['string', 'list'] as const) {
      const chat_template =
        form === 'string'
          ? template
          : [
              { name: 'tool_use', template: 'unused' },
              { name: 'default', template },
            ];
      fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: { content: '</s>' }, chat_template }));
      const format = chatFormat(dir, tok);
      assert.match(format.source, /tokenizer_config\.json \(chat_template\)/);
      assert.deepEqual(format.encode(messages), want, form);
    }
    // through the server: the prompt is those ids
    const s2 = await createServer({ engine, tokenizer: tok, modelName: MODEL, chat: chatFormat(dir, tok) });
    try {
      const c2 = new OpenAI({ baseURL: (await s2.listen({ host: '127.0.0.1', port: 0 })) + '/v1', apiKey: 'none', maxRetries: 0 });
      const r = await c2.chat.completions.create({ model: MODEL, messages, max_tokens: 8, temperature: 0, ...extra });
      assert.equal(r.usage?.prompt_tokens, want.length);
      assert.equal(r.choices[0].message.content, (await greedy({ ids: want }, 8)).text);
    } finally {
      await s2.close();
    }
    // a template that does not parse, a config that is not JSON: errors naming the file
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ chat_template: '{% for m in messages %}{{ m.content }' }));
    assert.throws(() => chatFormat(dir, tok), /tokenizer_config\.json: chat_template does not parse/);
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{"chat_template": ');
    assert.throws(() => chatFormat(dir, tok), /tokenizer_config\.json: not valid JSON/);
    // no chat_template: the -Instruct format
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), '{}');
    assert.deepEqual(chatFormat(dir, tok).encode(messages), encodeChat(tok, messages));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('n, seed: choices are independent samples, reproducible alone and batched with other requests', async () => {
  const q = { model: MODEL, prompt: 'The state of the Union is', max_tokens: 12, temperature: 1, n: 3, seed: 42, ...extra };
  const a = await client.completions.create(q);
  assert.equal(a.choices.length, 3);
  assert.ok(new Set(a.choices.map((c) => c.text)).size > 1, 'the n choices differ');
  // the same request while other requests decode in the same batches
  const [b] = await Promise.all([
    client.completions.create(q),
    client.completions.create({ ...q, seed: 7, prompt: 'Something else entirely' }),
    client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 12, ...extra }),
  ]);
  assert.deepEqual(
    b.choices.map((c) => c.text),
    a.choices.map((c) => c.text),
  );
  const c = await client.completions.create({ ...q, seed: 43 });
  assert.notDeepEqual(
    c.choices.map((x) => x.text),
    a.choices.map((x) => x.text),
  );
});

test('concurrent greedy requests give the outputs each gives alone', async () => {
  const prompts = ['A', 'The cat sat on', 'Numbers: 1, 2, 3,', 'Hello world', 'Why is the sky', 'Once upon a time'];
  const want: { text: string }[] = [];
  for (const p of prompts) want.push(await greedy(p, 16)); // one at a time: generate() owns the model's single cache
  const got = await Promise.all(prompts.map((p) => client.completions.create({ model: MODEL, prompt: p, max_tokens: 16, temperature: 0, ...extra })));
  assert.deepEqual(
    got.map((g) => g.choices[0].text),
    want.map((w) => w.text),
  );
});

test('stop strings cut the text before them; max_tokens past the context ends with length', async () => {
  const full = (await greedy('Once upon a time', 16)).text;
  const stop = full.slice(6, 10);
  const r = await client.completions.create({ model: MODEL, prompt: 'Once upon a time', max_tokens: 16, temperature: 0, stop: [stop], ...extra });
  assert.equal(r.choices[0].text, full.slice(0, full.indexOf(stop)));
  assert.equal(r.choices[0].finish_reason, 'stop');
  const long = ref.tokenizer.encode('word '.repeat(200), { bos: true }).slice(0, 120);
  const l = await client.completions.create({ model: MODEL, prompt: long, max_tokens: 100, temperature: 0, ...extra });
  assert.equal(l.choices[0].finish_reason, 'length');
  assert.equal(l.usage?.completion_tokens, 128 - 120);
});

test('echo + logprobs + max_tokens 1 (lm-evaluation-harness local-completions) agrees with openelm eval', async () => {
  const tok = ref.tokenizer;
  const items = [
    ['Question: How many legs does a spider have?\nAnswer:', ' eight'],
    ['The trophy did not fit in the suitcase because the trophy was too', ' big'],
    ['Goal: Keep bread fresh for longer.\nSolution:', ' Store it in a sealed bag.'],
  ];
  const reqs = items.map(([c, x]) => encodePair(tok, c, x));
  const scorer = new LoglikScorer(ref.model);
  const want = reqs.map((r) => {
    ref.model.reset();
    return scorer.score([r])[0];
  });
  // as the harness sends them: token ids of context + continuation, several prompts per request
  const r = await client.completions.create({
    model: MODEL,
    prompt: reqs.map((q) => [...q.context, ...q.continuation]),
    max_tokens: 1,
    temperature: 0,
    logprobs: 1,
    echo: true,
    seed: 1234,
  });
  r.choices.forEach((c, i) => {
    const lp = c.logprobs!,
      ctxlen = reqs[i].context.length;
    assert.equal(lp.token_logprobs!.length, reqs[i].context.length + reqs[i].continuation.length + 1);
    assert.equal(lp.token_logprobs![0], null);
    const tokenLps = lp.token_logprobs!.slice(ctxlen, -1) as number[];
    const sum = tokenLps.reduce((s, v) => s + v, 0);
    assert.ok(Math.abs(sum - want[i].loglik) < 1e-3, `item ${i}: ${sum} vs ${want[i].loglik}`);
    const greedyAll = tokenLps.every((v, j) => v === Math.max(...Object.values(lp.top_logprobs![ctxlen + j]!)));
    assert.equal(greedyAll, want[i].isGreedy);
    assert.ok(c.text.startsWith(tok.decode(reqs[i].context)), 'echo returns the prompt text first');
    assert.equal(lp.text_offset![0], 0);
  });
});

test('errors: OpenAI-style 400s, 404 for an unknown model, an over-long prompt names both numbers (megabytes of text: a bound, before encoding)', async () => {
  const long = Array.from({ length: 200 }, () => 450);
  await assert.rejects(client.completions.create({ model: MODEL, prompt: long, max_tokens: 4 }), (e: InstanceType<typeof OpenAI.BadRequestError>) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /128 tokens.*200 tokens/);
    return true;
  });
  // a text prompt over the context by a little: its exact count; by megabytes: turned away before
  // encoding (which would hold the event loop for seconds), with a lower bound of its count
  const exact = ref.tokenizer.encode('hello '.repeat(200), { bos: true }).length;
  await assert.rejects(client.completions.create({ model: MODEL, prompt: 'hello '.repeat(200) }), (e: InstanceType<typeof OpenAI.BadRequestError>) => {
    assert.equal(e.code, 'context_length_exceeded');
    assert.match(e.message, new RegExp(`128 tokens, but the prompt has ${exact} tokens`));
    return true;
  });
  const huge = 'the state of the union is strong '.repeat(90_000); // 3 MB
  for (const send of [
    () => client.completions.create({ model: MODEL, prompt: ['fine', huge] }),
    () => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: huge }] }),
  ]) {
    await assert.rejects(send(), (e: InstanceType<typeof OpenAI.BadRequestError>) => {
      assert.equal(e.status, 400);
      assert.equal(e.code, 'context_length_exceeded');
      assert.match(e.message, /128 tokens, but the prompt( 1)? has at least \d{5,} tokens/);
      return true;
    });
  }
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: 'x', temperature: 5 }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && /temperature/.test(e.message),
  );
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: [99999] }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && /vocabulary/.test(e.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [] }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && /messages/.test(e.message),
  );
  await assert.rejects(client.completions.create({ model: 'gpt-4', prompt: 'x' }), (e: InstanceType<typeof OpenAI.NotFoundError>) => e.status === 404);
  for (const body of ['{"model": "tiny", "prompt": ', '[1, 2]', 'null']) {
    const res = await fetch(base + '/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    assert.equal(res.status, 400, body);
    const j = (await res.json()) as { error: { message: string; type: string } };
    assert.equal(j.error.type, 'invalid_request_error');
  }
  assert.equal((await fetch(base.replace('/v1', '/health'))).status, 200);
});

test('an aborted stream cancels its sequence; the server keeps serving; /metrics and /v1/models', async () => {
  const ac = new AbortController();
  const stream = await client.completions.create(
    { model: MODEL, prompt: 'Abort me', max_tokens: 100, temperature: 0, stream: true, ...extra },
    { signal: ac.signal },
  );
  let chunks = 0;
  try {
    for await (const _ of stream) if (++chunks === 2) ac.abort();
  } catch {
    /* the client reports the abort as an error or just ends */
  }
  assert.equal(chunks, 2);
  for (let i = 0; i < 100 && engine.stats.active > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(engine.stats.active, 0, 'the slot is freed');
  const m = await (await fetch(base.replace('/v1', '/metrics'))).text();
  assert.match(m, /openelm_sequences_cancelled_total 1/);
  assert.match(m, /openelm_generation_tokens_total \d+/);
  const models = await client.models.list();
  assert.deepEqual(
    models.data.map((x) => x.id),
    [MODEL],
  );
  const ok = await client.completions.create({ model: MODEL, prompt: 'still alive', max_tokens: 2 });
  assert.equal(ok.choices.length, 1);
});

test('GET /v1/models/{id}: client.models.retrieve finds the served model, a 404 (model_not_found) for any other; a malformed URL is an OpenAI-style 400', async () => {
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
  assert.equal(m.object, 'model');
  await assert.rejects(client.models.retrieve('nope'), (e: unknown) => {
    assert.ok(e instanceof OpenAI.NotFoundError, String(e));
    assert.equal(e.code, 'model_not_found');
    return true;
  });
  const res = await fetch(base.replace('/v1', '/%zz'));
  assert.equal(res.status, 400);
  const j = (await res.json()) as { error: { message: string; type: string } };
  assert.equal(j.error.type, 'invalid_request_error');
  assert.match(j.error.message, /%zz/);
});

test('tokenize / detokenize round trip', async () => {
  const t = (await (
    await fetch(base.replace('/v1', '/tokenize'), {
      method: 'POST',
      body: JSON.stringify({ prompt: 'Hello world' }),
      headers: { 'content-type': 'application/json' },
    })
  ).json()) as { tokens: number[] };
  assert.deepEqual(t.tokens, ref.tokenizer.encode('Hello world', { bos: true }));
  const d = (await (
    await fetch(base.replace('/v1', '/detokenize'), {
      method: 'POST',
      body: JSON.stringify({ tokens: t.tokens }),
      headers: { 'content-type': 'application/json' },
    })
  ).json()) as { prompt: string };
  assert.equal(d.prompt, 'Hello world');
});

test('a full queue is a 429; an API key is enforced (401) except on /health', async () => {
  const e2 = new Engine(loaded.model, { parallel: 1, maxQueue: 1, stepTokens: 8 });
  const s2 = await createServer({ engine: e2, tokenizer: loaded.tokenizer, modelName: MODEL, chat: chatFormat(null, loaded.tokenizer), apiKey: 'sekret' });
  const url = (await s2.listen({ host: '127.0.0.1', port: 0 })) + '/v1';
  try {
    const bad = new OpenAI({ baseURL: url, apiKey: 'wrong', maxRetries: 0 });
    await assert.rejects(bad.models.list(), (e: InstanceType<typeof OpenAI.AuthenticationError>) => e.status === 401);
    assert.equal((await fetch(url.replace('/v1', '/health'))).status, 200);
    const good = new OpenAI({ baseURL: url, apiKey: 'sekret', maxRetries: 0 });
    const q = { model: MODEL, prompt: 'busy', max_tokens: 30, ...extra };
    const results = await Promise.allSettled([good.completions.create(q), good.completions.create(q), good.completions.create(q), good.completions.create(q)]);
    const statuses = results.map((r) => (r.status === 'fulfilled' ? 200 : (r.reason as { status: number }).status));
    assert.ok(statuses.includes(429), `statuses ${statuses}`);
    assert.ok(statuses.filter((s) => s === 200).length >= 2);
  } finally {
    await s2.close();
  }
});

test('response_format json_object: the output is always a JSON object (or a prefix of one when max_tokens cuts it, finish_reason length)', async () => {
  const plainQ = { model: MODEL, prompt: 'JSON:', max_tokens: 60, temperature: 1, n: 4, seed: 11 };
  const q = { ...plainQ, response_format: { type: 'json_object' } } as typeof plainQ; // an openelm extension on /v1/completions
  const plain = await client.completions.create(plainQ);
  assert.ok(
    plain.choices.every((c) => !c.text.trimStart().startsWith('{')),
    'unconstrained, the tiny model writes no JSON',
  );
  const r = await client.completions.create(q);
  for (const c of r.choices) {
    assert.ok(c.text.trimStart().startsWith('{'), c.text);
    if (c.finish_reason === 'stop') assert.equal(typeof JSON.parse(c.text), 'object', c.text);
  }
  assert.ok(
    r.choices.some((c) => c.finish_reason === 'stop'),
    'some choice closes its object',
  );
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'JSON please' }],
    max_tokens: 60,
    seed: 2,
    n: 4,
    response_format: { type: 'json_object' },
  });
  for (const c of chat.choices) if (c.finish_reason === 'stop') assert.equal(typeof JSON.parse(c.message.content!), 'object');
  const cut = await client.completions.create({ ...q, max_tokens: 3 });
  assert.ok(cut.choices.some((c) => c.finish_reason === 'length'));
  for (const c of cut.choices) {
    // a closed object ends the reply (stop); one cut by max_tokens is an honest prefix (length)
    if (c.finish_reason === 'stop') assert.equal(typeof JSON.parse(c.text), 'object', c.text);
    else assert.throws(() => JSON.parse(c.text), c.text);
  }
});

test('response_format json_schema: every reply parses and validates against the schema (ajv); unsupported keywords are a 400 naming them', async () => {
  const schema = {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'age', 'pets', 'address'],
    properties: {
      name: { type: 'string', maxLength: 12 },
      age: { type: 'integer' },
      height: { type: 'number' },
      student: { type: 'boolean' },
      spouse: { type: 'null' },
      mood: { enum: ['happy', 'sad', 42] },
      pets: {
        type: 'array',
        items: { type: 'object', properties: { kind: { enum: ['cat', 'dog'] }, legs: { type: 'integer' } }, required: ['kind'] },
        maxItems: 2,
      },
      address: { type: 'object', properties: { city: { type: ['string', 'null'], maxLength: 10 } }, required: ['city'] },
    },
  };
  const validate = new Ajv({ strict: false }).compile(schema);
  const format = { type: 'json_schema' as const, json_schema: { name: 'person', strict: true, schema } };
  const chat = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Describe a person as JSON' }],
    max_tokens: 400,
    seed: 5,
    n: 3,
    temperature: 1,
    response_format: format,
  });
  for (const c of chat.choices) {
    assert.equal(c.finish_reason, 'stop', c.message.content!);
    const v = JSON.parse(c.message.content!);
    assert.ok(validate(v), `${c.message.content}\n${JSON.stringify(validate.errors)}`);
  }
  // greedy and streamed: the same document as the non-streamed greedy reply
  const q = { model: MODEL, messages: [{ role: 'user' as const, content: 'JSON' }], max_tokens: 400, temperature: 0, response_format: format };
  const one = await client.chat.completions.create(q);
  let streamed = '';
  for await (const ch of await client.chat.completions.create({ ...q, stream: true })) streamed += ch.choices[0]?.delta.content ?? '';
  assert.equal(streamed, one.choices[0].message.content);
  assert.ok(validate(JSON.parse(streamed)));
  // too few tokens: finish_reason length, the text a prefix that does not parse
  const cut = await client.chat.completions.create({ ...q, max_tokens: 4 });
  assert.equal(cut.choices[0].finish_reason, 'length');
  assert.ok(one.choices[0].message.content!.startsWith(cut.choices[0].message.content!));
  const bad = {
    ...format,
    json_schema: { name: 'x', schema: { type: 'object', properties: { when: { type: 'string', format: 'date-time', pattern: '^2' } } } },
  };
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], response_format: bad }),
    (e: InstanceType<typeof OpenAI.BadRequestError>) => e.status === 400 && /'format', 'pattern'/.test(e.message) && /properties\/when/.test(e.message),
  );
  const ok = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 2 });
  assert.equal(ok.choices.length, 1, 'the server is still serving');
});

test('GET /metrics is Prometheus text (parse-prometheus-text-format): requests, tokens, queue, latencies, active sequences, with their types', async () => {
  await client.completions.create({ model: MODEL, prompt: 'Hello', max_tokens: 3, temperature: 0, ...extra });
  const res = await fetch(base.replace('/v1', '/metrics'));
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const families = new Map(parsePrometheusTextFormat(await res.text()).map((f) => [f.name, f]));
  const want: [string, string][] = [
    ['openelm_requests_total', 'COUNTER'],
    ['openelm_prompt_tokens_total', 'COUNTER'],
    ['openelm_generation_tokens_total', 'COUNTER'],
    ['openelm_queue_length', 'GAUGE'],
    ['openelm_active_sequences', 'GAUGE'],
    ['openelm_time_to_first_token_seconds', 'HISTOGRAM'],
    ['openelm_inter_token_latency_seconds', 'HISTOGRAM'],
    ['openelm_request_duration_seconds', 'HISTOGRAM'],
  ];
  for (const [name, type] of want) assert.equal(families.get(name)?.type, type, name);
  const completions = families.get('openelm_requests_total')!.metrics.filter((m) => m.labels?.endpoint === '/v1/completions' && m.labels?.status === '200');
  assert.ok(completions.length === 1 && Number(completions[0].value) >= 1, JSON.stringify(families.get('openelm_requests_total')));
  assert.ok(Number(families.get('openelm_generation_tokens_total')!.metrics[0].value) >= 3);
  for (const name of ['openelm_time_to_first_token_seconds', 'openelm_request_duration_seconds']) {
    const h = families.get(name)!.metrics[0];
    const counts = Object.entries(h.buckets!)
      .sort(([a], [b]) => (a === '+Inf' ? 1 : b === '+Inf' ? -1 : Number(a) - Number(b)))
      .map(([, c]) => Number(c));
    assert.ok(
      counts.every((c, i) => i === 0 || c >= counts[i - 1]),
      `${name}: buckets are cumulative`,
    );
    assert.equal(counts.at(-1), Number(h.count), `${name}: the +Inf bucket is the count`);
    assert.ok(Number(h.count) >= 1 && Number(h.sum) > 0, name);
  }
});
