/// <reference types="node" />
// LangChain's OpenAI integration (@langchain/openai) against openelm serve on loopback, unchanged:
// the chat model and the completions model, invoke, stream and batch, each reply the library's
// own greedy text for the same prompt ids.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ChatOpenAI, OpenAI as LangChainOpenAI } from '@langchain/openai';
import type { FastifyInstance } from 'fastify';
import { Engine } from '../src/engine/engine.ts';
import { encodeChat } from '../src/generate/chat.ts';
import { generateText } from '../src/generate/generate.ts';
import { type LoadedModel, loadModel } from '../src/load.ts';
import { chatFormat } from '../src/serve/chat-template.ts';
import { createServer } from '../src/serve/server.ts';

const DIR = new URL('./fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url).pathname;
let loaded: LoadedModel, ref: LoadedModel, app: FastifyInstance, baseURL: string;

before(async () => {
  loaded = await loadModel(DIR, { backend: 'ref' });
  ref = await loadModel(DIR, { backend: 'ref' });
  const engine = new Engine(loaded.model, { parallel: 4, maxQueue: 8, stepTokens: 16 });
  app = await createServer({ engine, tokenizer: loaded.tokenizer, modelName: 'tiny', chat: chatFormat(null, loaded.tokenizer) });
  baseURL = (await app.listen({ host: '127.0.0.1', port: 0 })) + '/v1';
});
after(async () => {
  await app.close();
  loaded.dispose();
  ref.dispose();
});

async function greedy(prompt: string | { ids: number[] }, n: number): Promise<string> {
  ref.model.reset();
  return (await generateText(ref.model, ref.tokenizer, prompt, { temperature: 0, maxNewTokens: n, ignoreEos: true })).text;
}

// (a function: the server's address is known once `before` has run)
const options = () => ({
  configuration: { baseURL },
  apiKey: 'none',
  model: 'tiny',
  temperature: 0,
  maxTokens: 8,
  maxRetries: 0,
  modelKwargs: { ignore_eos: true },
});

test('LangChain ChatOpenAI: invoke, stream and batch give the greedy reply to the -Instruct prompt', async () => {
  const chat = new ChatOpenAI(options());
  const messages: [string, string][] = [
    ['system', 'Be brief.'],
    ['human', 'Name a color.'],
  ];
  const want = await greedy(
    {
      ids: encodeChat(ref.tokenizer, [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Name a color.' },
      ]),
    },
    8,
  );
  const r = await chat.invoke(messages);
  assert.equal(r.content, want);
  assert.equal(r.usage_metadata?.output_tokens, 8);
  let streamed = '';
  for await (const chunk of await chat.stream(messages)) streamed += chunk.content as string;
  assert.equal(streamed, want);
  const both = await chat.batch([messages, [['human', 'Another one.']]]);
  assert.equal(both[0].content, want);
  assert.equal(both[1].content, await greedy({ ids: encodeChat(ref.tokenizer, [{ role: 'user', content: 'Another one.' }]) }, 8));
});

test("LangChain OpenAI (completions): invoke and stream give generate's greedy text", async () => {
  const llm = new LangChainOpenAI(options());
  const want = await greedy('The capital of France is', 8);
  assert.equal(await llm.invoke('The capital of France is'), want);
  let streamed = '';
  for await (const chunk of await llm.stream('The capital of France is')) streamed += chunk;
  assert.equal(streamed, want);
});
