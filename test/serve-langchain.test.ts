/// <reference types="node" />
// LangChain's OpenAI integration (@langchain/openai) against openelm serve on loopback, unchanged:
// the chat model and the completions model, invoke, stream and batch, each reply the library's
// own greedy text for the same prompt ids.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { ChatOpenAI, OpenAI as LangChainOpenAI } from '@langchain/openai';
import { encodeChat } from '../src/generate/chat.ts';
import type { LoadedModel } from '../src/load.ts';
import { type TinyServer, tinyServer } from './helpers/tiny-server.ts';

let server: TinyServer, ref: LoadedModel, baseURL: string;

before(async () => {
  server = await tinyServer('tiny');
  ({ ref, base: baseURL } = server);
});
after(() => server.close());

const greedy = async (prompt: string | { ids: number[] }, n: number): Promise<string> => (await server.greedy(prompt, n)).text;

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
