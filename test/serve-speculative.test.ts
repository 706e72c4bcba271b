// openelm serve with speculative decoding, through the official `openai` client: greedy text
// with prompt lookup, the model itself as draft and a q4_0 copy as draft equals the server
// without a drafter, for several concurrent requests; a seeded sampled request gives the same
// text alone and among others; /metrics counts drafted and accepted tokens.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import OpenAI from 'openai';
import { Engine } from '../src/engine/engine.ts';
import type { SpeculativeOptions } from '../src/generate/speculative.ts';
import { type LoadedModel, type LoadedOpenELM, loadModel, loadOpenELM } from '../src/load.ts';
import { chatFormat } from '../src/serve/chat-template.ts';
import { createServer } from '../src/serve/server.ts';

const DIR = new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url).pathname;
const MODEL = 'tiny';
let loaded: LoadedModel, self: LoadedOpenELM, q4: LoadedOpenELM;
const apps: FastifyInstance[] = [];

before(async () => {
  loaded = await loadModel(DIR, { backend: 'ref' });
  self = await loadOpenELM(DIR, { backend: 'ref' });
  q4 = await loadOpenELM(DIR, { backend: 'ref', dtype: 'q4' });
});
after(async () => {
  for (const app of apps) await app.close();
  loaded.dispose();
  self.dispose();
  q4.dispose();
});

async function serve(speculative?: SpeculativeOptions): Promise<{ client: OpenAI; base: string }> {
  const engine = new Engine(loaded.model, { parallel: 4, maxQueue: 16, stepTokens: 16, speculative });
  const app = await createServer({ engine, tokenizer: loaded.tokenizer, modelName: MODEL, chat: chatFormat(null, loaded.tokenizer) });
  apps.push(app);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  return { client: new OpenAI({ baseURL: `${base}/v1`, apiKey: 'none', maxRetries: 0 }), base };
}

const prompts = ['Once upon a time', 'The weather today is the weather today is the', 'a b c a b c a b', 'It was the best of times, it was the'];
const extra = { ignore_eos: true } as Record<string, unknown>;

async function texts(client: OpenAI, seed?: number): Promise<string[]> {
  // all at once: completions (one streamed), chat, and an n = 2 request
  const sampling = seed === undefined ? { temperature: 0 } : { temperature: 0.9, seed };
  const [a, b, c, d] = await Promise.all([
    client.completions.create({ model: MODEL, prompt: prompts[0], max_tokens: 24, ...sampling, ...extra }),
    client.completions.create({ model: MODEL, prompt: [prompts[1], prompts[2]], max_tokens: 30, ...sampling, ...extra }),
    client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: prompts[3] }], max_tokens: 20, n: 2, ...sampling, ...extra }),
    (async () => {
      const stream = await client.completions.create({ model: MODEL, prompt: prompts[3], max_tokens: 26, stream: true, ...sampling, ...extra });
      let s = '';
      for await (const chunk of stream) s += chunk.choices[0]?.text ?? '';
      return s;
    })(),
  ]);
  return [a.choices[0].text, ...b.choices.map((x) => x.text), ...c.choices.map((x) => x.message.content ?? ''), d];
}

test('greedy: prompt lookup, the model itself and a q4_0 copy as draft give the same text as no draft, concurrent requests', async () => {
  const plain = await serve();
  const want = await texts(plain.client);
  for (const [name, spec] of [
    ['lookup', { promptLookup: 10 }],
    ['self', { draft: self.model, draftTokens: 4 }],
    ['q4', { draft: q4.model, draftTokens: 5 }],
  ] as [string, SpeculativeOptions][]) {
    const s = await serve(spec);
    assert.deepEqual(await texts(s.client), want, name);
    const metrics = await (await fetch(`${s.base}/metrics`)).text();
    const drafted = Number(/openelm_speculative_draft_tokens_total (\d+)/.exec(metrics)?.[1]);
    const accepted = Number(/openelm_speculative_accepted_tokens_total (\d+)/.exec(metrics)?.[1]);
    assert.ok(drafted > 0 && accepted > 0 && accepted <= drafted, `${name}: ${drafted} drafted, ${accepted} accepted`);
    // the step's draft length, as last chosen for greedy sequences
    const length = Number(/openelm_speculative_draft_length (-?\d+)/.exec(metrics)?.[1]);
    assert.ok(length >= 0 && length <= (spec.draftTokens ?? spec.promptLookup!), `${name}: draft length ${length}`);
  }
});

test('sampling with a seed: the same text alone and among concurrent requests (draft model)', async () => {
  const s = await serve({ draft: q4.model, draftTokens: 4 });
  const req = { model: MODEL, prompt: prompts[1], max_tokens: 24, temperature: 0.8, seed: 7, ...extra };
  const alone = (await s.client.completions.create(req)).choices[0].text;
  const [, together] = await Promise.all([texts(s.client, 3), s.client.completions.create(req)]);
  assert.equal(together.choices[0].text, alone);
  // response_format and logprobs requests are served without drafts, and still work
  const lp = await s.client.completions.create({ ...req, logprobs: 2, temperature: 0 });
  assert.equal(lp.choices[0].logprobs?.tokens?.length, 24);
});
