// openelm serve in process over the tiny 32k-vocabulary fixture on the reference backend, for the
// tests that drive it with real clients, and a second copy of the model as the single-sequence
// reference (generate on its own cache).
import type { FastifyInstance } from 'fastify';
import { Engine } from '../../src/engine/engine.ts';
import { generateText } from '../../src/generate/generate.ts';
import { type LoadedModel, loadModel } from '../../src/load.ts';
import { chatFormat } from '../../src/serve/chat-template.ts';
import { createServer } from '../../src/serve/server.ts';

const DIR = new URL('../fixtures/openelm/tiny-vocab32k-bf16/', import.meta.url).pathname;

export interface TinyServer {
  /** the served model and its engine */
  loaded: LoadedModel;
  engine: Engine;
  app: FastifyInstance;
  /** the reference: the same model, loaded again */
  ref: LoadedModel;
  /** the server's address with /v1 */
  base: string;
  /** the reference's greedy continuation of n tokens (end of sequence ignored) */
  greedy(prompt: string | { ids: number[] }, n: number): Promise<{ ids: number[]; text: string }>;
  close(): Promise<void>;
}

export async function tinyServer(modelName: string): Promise<TinyServer> {
  const loaded = await loadModel(DIR, { backend: 'ref' });
  const ref = await loadModel(DIR, { backend: 'ref' });
  const engine = new Engine(loaded.model, { parallel: 4, maxQueue: 8, stepTokens: 16 });
  const app = await createServer({ engine, tokenizer: loaded.tokenizer, modelName, chat: chatFormat(null, loaded.tokenizer) });
  const base = (await app.listen({ host: '127.0.0.1', port: 0 })) + '/v1';
  return {
    loaded,
    engine,
    app,
    ref,
    base,
    async greedy(prompt, n) {
      ref.model.reset();
      const r = await generateText(ref.model, ref.tokenizer, prompt, { temperature: 0, maxNewTokens: n, ignoreEos: true });
      return { ids: r.outputIds, text: r.text };
    },
    async close() {
      await app.close();
      loaded.dispose();
      ref.dispose();
    },
  };
}
