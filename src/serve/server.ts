// `openelm serve`: the OpenAI API over the engine, on Fastify.
//
//   GET  /v1/models                 the model and its adapters (each adapter is a model id)
//   GET  /v1/models/{id}            one of them (404 for any other id)
//   POST /v1/completions            prompt: string | string[] | number[] | number[][]; echo, logprobs
//   POST /v1/chat/completions       messages through the model's chat template
//   POST /tokenize, /detokenize     {"prompt"} → {"tokens"}, {"tokens"} → {"prompt"}
//   GET  /health, /metrics          liveness (no API key needed) and Prometheus text
//
// Each choice of a request is one engine sequence; all of them decode together with every other
// request's. A client that goes away cancels its sequences; a full queue is a 429; every error
// is OpenAI's {"error": {...}} with the status the official clients expect.
import crypto from 'node:crypto';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { type EngineToken, EngineUnavailableError, QueueFullError, type SequenceStream, type ServingEngine } from '../engine/engine.ts';
import type { TokenLogprob } from '../engine/logits.ts';
import { TextTail, tokenString } from '../engine/text.ts';
import { type ChatMessage, encodeWithSpecials, minTokensWithSpecials } from '../generate/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';
import type { ChatFormat } from './chat-template.ts';
import { ApiError, badParam } from './errors.ts';
import { compileFormat } from './json-constraint.ts';
import { ServerMetrics } from './metrics.ts';
import { type CommonParams, chatMessages, checkBody, commonParams, completionPrompts, DEFAULT_LIMITS, type ServeLimits } from './params.ts';

export interface ServeOptions {
  /** the Engine, or a WorkerEngine (the forward pass in a worker thread) */
  engine: ServingEngine;
  tokenizer: Tokenizer;
  /** the id the base model is served under */
  modelName: string;
  chat: ChatFormat;
  /** required as "Authorization: Bearer KEY" on every route but /health */
  apiKey?: string;
  limits?: Partial<ServeLimits>;
  /** largest request body in bytes (default 4 MiB) */
  bodyLimit?: number;
  /** Fastify's logger (default off) */
  logger?: boolean;
}

interface Choice {
  index: number;
  seq: SequenceStream;
  tail: TextTail;
  promptIds: number[];
  /** the prompt's text when echoed */
  echo: string | null;
  tokens: EngineToken[];
  finish: 'stop' | 'length' | null;
  lastTokenAt: number;
}

const now = () => Math.floor(Date.now() / 1000);

export async function createServer(o: ServeOptions): Promise<FastifyInstance> {
  const { engine, tokenizer: tok } = o;
  const limits: ServeLimits = { ...DEFAULT_LIMITS, ...o.limits };
  const metrics = new ServerMetrics();
  const capacity = engine.capacity,
    V = engine.config.vocab_size;
  const app = Fastify({
    logger: o.logger ?? false,
    bodyLimit: o.bodyLimit ?? 4 * 1024 * 1024,
    forceCloseConnections: 'idle',
    // errors Fastify meets before routing (a malformed URL): OpenAI's shape too, not Fastify's own
    frameworkErrors: (err, _req, reply) => {
      (reply as FastifyReply).code(400).send(new ApiError(400, `malformed request: ${err.message}`, null).body());
    },
  });
  const started = now();

  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof ApiError) {
      if (err.status === 503) reply.header('retry-after', '2');
      return reply.code(err.status).send(err.body());
    }
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    const message =
      err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.name === 'SyntaxError'
        ? `the request body is not valid JSON: ${err.message}`
        : err.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? `the request body is larger than the server's limit of ${o.bodyLimit ?? 4 * 1024 * 1024} bytes`
          : status === 500
            ? `internal error: ${err.message}`
            : err.message;
    const e = new ApiError(status === 413 ? 413 : status, message, status === 500 ? null : 'body');
    reply.code(e.status).send(e.body());
  });
  app.setNotFoundHandler((req, reply) => {
    reply.code(404).send(new ApiError(404, `no route ${req.method} ${req.url}`, null, 'not_found').body());
  });
  app.addHook('onRequest', async (req) => {
    if (!o.apiKey || req.url === '/health') return;
    const auth = req.headers.authorization ?? '';
    const given = auth.startsWith('Bearer ') ? auth.slice(7) : '';
    const a = Buffer.from(given),
      b = Buffer.from(o.apiKey);
    if (a.length !== b.length || !crypto.timingSafeEqual(a, b))
      throw new ApiError(401, 'invalid API key: pass it as "Authorization: Bearer KEY"', null, 'invalid_api_key');
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unknown';
    metrics.requests.inc({ endpoint: route, status: String(reply.statusCode) });
    if (route.startsWith('/v1/')) metrics.latency.observe(reply.elapsedTime / 1000);
  });

  // 503 while the engine's worker is being restarted (load balancers and probes read the status)
  app.get('/health', async (_req, reply) => {
    const up = engine.ready !== false;
    if (!up) reply.code(503);
    return { status: up ? 'ok' : 'unavailable', active: engine.stats.active, waiting: engine.stats.waiting, restarts: engine.restarts ?? 0 };
  });
  app.get('/metrics', async (_req, reply) => {
    reply.type('text/plain; version=0.0.4');
    const st = engine.stats;
    return metrics.text({
      queue: st.waiting,
      active: st.active,
      parallel: engine.parallel,
      steps: st.steps,
      rounds: st.speculativeRounds,
      drafted: st.draftedTokens,
      accepted: st.acceptedTokens,
      draftLength: st.draftLength,
      up: engine.ready !== false,
      restarts: engine.restarts ?? 0,
    });
  });
  const modelCard = (id: string) => ({ id, object: 'model', created: started, owned_by: 'openelm', max_model_len: capacity });
  app.get('/v1/models', async () => ({ object: 'list', data: [o.modelName, ...engine.adapterNames].map(modelCard) }));

  app.post('/tokenize', async (req) => {
    const b = checkBody(req.body);
    let ids: number[];
    if (typeof b.prompt === 'string') ids = tok.encode(b.prompt, { bos: b.add_special_tokens !== false });
    else if (Array.isArray(b.messages)) ids = o.chat.encode(chatMessages(b) as ChatMessage[]);
    else throw badParam('prompt', `'prompt' (a string) or 'messages' is required`);
    return { tokens: ids, count: ids.length, max_model_len: capacity };
  });
  app.post('/detokenize', async (req) => {
    const b = checkBody(req.body);
    if (!Array.isArray(b.tokens) || !b.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < Math.min(V, tok.vocabSize))) {
      throw badParam('tokens', `'tokens' must be a list of token ids in [0, ${Math.min(V, tok.vocabSize)})`);
    }
    return { prompt: tok.decode(b.tokens as number[]) };
  });

  /** The adapter a model id selects (null: the base model); 404 for ids this server does not serve. */
  const adapterOf = (model: string): string | null => {
    if (model === o.modelName) return null;
    if (engine.adapterNames.includes(model)) return model;
    throw new ApiError(
      404,
      `the model ${JSON.stringify(model)} does not exist; this server serves ${[o.modelName, ...engine.adapterNames].map((m) => JSON.stringify(m)).join(', ')}`,
      'model',
      'model_not_found',
    );
  };

  // client.models.retrieve(id); ids with a slash (hub repo names) come URL-encoded or not
  app.get('/v1/models/*', async (req) => {
    const id = (req.params as { '*': string })['*'];
    adapterOf(id);
    return modelCard(id);
  });

  /**
   * 400 when prompt i of `count` (`tokens` long, or with `atLeast` at least that: a bound taken
   * before encoding a text too long to be worth encoding) leaves no room in the context.
   */
  const checkFits = (p: CommonParams, tokens: number, atLeast: boolean, i = 0, count = 1): void => {
    if (tokens + (p.maxTokens === 0 ? 0 : 1) <= capacity) return;
    throw badParam(
      count > 1 ? `prompt[${i}]` : 'prompt',
      `This model's maximum context length is ${capacity} tokens, but the prompt${count > 1 ? ` ${i}` : ''} has ${atLeast ? 'at least ' : ''}${tokens} tokens${p.maxTokens === 0 ? '' : ' and at least one more is needed for the completion'}. Shorten the prompt.`,
      'context_length_exceeded',
    );
  };

  /**
   * Starts one sequence per prompt × n on `adapter` (adapterOf, taken before the prompts are
   * tokenized, so an unknown model is a 404 before their lengths are weighed; each prompt checked
   * with checkFits as it was encoded); 429 when the queue cannot take them all.
   */
  const start = (
    req: FastifyRequest,
    reply: FastifyReply,
    p: CommonParams,
    adapter: string | null,
    prompts: { ids: number[]; echo: string | null }[],
    defaultMax: (promptLen: number) => number,
    promptLogprobs: boolean,
  ): Choice[] => {
    if (engine.room() < prompts.length * p.n) {
      metrics.rejected.inc();
      throw new ApiError(429, `the server is busy: its queue is full (${engine.maxQueue} waiting); retry later`, null, 'queue_full');
    }
    const choices: Choice[] = [];
    const cancelAll = () => {
      for (const c of choices)
        if (!c.seq.finishReason) {
          c.seq.cancel();
          metrics.cancelled.inc();
        }
    };
    reply.raw.on('close', () => {
      if (!reply.raw.writableFinished) cancelAll();
    });
    const format = p.responseFormat ? compileFormat(tok, p.responseFormat, V) : null; // a 400 before anything is queued
    try {
      prompts.forEach(({ ids, echo }, i) => {
        const maxTokens = Math.min(p.maxTokens ?? defaultMax(ids.length), capacity - ids.length);
        for (let j = 0; j < p.n; j++) {
          const index = i * p.n + j;
          const constraint = format?.constraint();
          const seq = engine.submit({
            promptIds: ids,
            maxTokens,
            adapter,
            constraint,
            responseFormat: constraint ? p.responseFormat : undefined,
            sampling: { ...p.sampling, seed: p.seed === undefined ? undefined : p.seed + index },
            adjust: p.adjust,
            logprobs: p.logprobs,
            promptLogprobs,
            eosIds: p.ignoreEos ? [] : undefined,
          });
          choices.push({ index, seq, tail: new TextTail(tok, p.stop), promptIds: ids, echo, tokens: [], finish: null, lastTokenAt: 0 });
          metrics.promptTokens.inc({}, ids.length);
        }
      });
    } catch (e) {
      cancelAll();
      if (e instanceof QueueFullError) {
        metrics.rejected.inc();
        throw new ApiError(429, e.message, null, 'queue_full');
      }
      if (e instanceof EngineUnavailableError) throw new ApiError(503, e.message, null, 'engine_unavailable');
      throw e;
    }
    void req;
    return choices;
  };

  /** Runs a choice to its end, calling onToken with each token and the text it made final. */
  const drive = async (c: Choice, onToken: (t: EngineToken, text: string) => void): Promise<void> => {
    for await (const t of c.seq) {
      const at = performance.now();
      if (c.tokens.length === 0) metrics.ttft.observe(c.seq.firstTokenMs / 1000);
      else metrics.itl.observe((at - c.lastTokenAt) / 1000);
      c.lastTokenAt = at;
      metrics.generatedTokens.inc();
      c.tokens.push(t);
      const text = c.tail.push(t.token);
      onToken(t, text);
      if (c.tail.stopped) {
        c.seq.cancel();
        c.finish = 'stop';
        break;
      }
    }
    if (c.seq.finishReason === 'error') throw new ApiError(500, `generation failed: ${c.seq.error?.message}`);
    if (!c.finish) {
      if (c.seq.finishReason === 'cancelled') return;
      c.finish = c.seq.finishReason === 'stop' ? 'stop' : 'length';
    }
    metrics.cachedTokens.inc({}, c.seq.cachedTokens);
  };

  const usageOf = (choices: Choice[], prompts: { ids: number[] }[]) => {
    const prompt_tokens = prompts.reduce((s, p) => s + p.ids.length, 0);
    const completion_tokens = choices.reduce((s, c) => s + c.tokens.length, 0);
    return { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens };
  };

  const sse = (reply: FastifyReply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    return (data: unknown) => {
      if (!reply.raw.destroyed) reply.raw.write(`data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`);
    };
  };

  // ---- /v1/completions ----
  app.post('/v1/completions', async (req, reply) => {
    const b = checkBody(req.body);
    const p = commonParams(b, limits, false);
    const echo =
      typeof b.echo === 'boolean'
        ? b.echo
        : b.echo === undefined || b.echo === null
          ? false
          : (() => {
              throw badParam('echo', `'echo' must be true or false`);
            })();
    if (b.suffix !== undefined && b.suffix !== null) throw badParam('suffix', `'suffix' is not supported`);
    if (b.best_of !== undefined && b.best_of !== null && b.best_of !== p.n) throw badParam('best_of', `'best_of' other than n is not supported`);
    const inputs = completionPrompts(b, limits, V);
    const adapter = adapterOf(p.model);
    // a text far too long is turned away before the BPE spends the event loop's time on it
    // and each text is checked as soon as it is encoded, so one over-long prompt of many costs only its own encoding
    inputs.forEach((x, i) => 'text' in x && checkFits(p, 1 + tok.minTokens(x.text), true, i, inputs.length));
    const prompts = inputs.map((x, i) => {
      const ids = 'text' in x ? tok.encode(x.text, { bos: true }) : x.ids;
      checkFits(p, ids.length, false, i, inputs.length);
      return { ids, echo: echo ? ('text' in x ? x.text : tok.decode(x.ids)) : null };
    });
    if (p.stream && echo && p.logprobs !== undefined) throw badParam('echo', `'echo' with 'logprobs' is not supported when streaming`);
    const choices = start(req, reply, p, adapter, prompts, () => 16, echo && p.logprobs !== undefined);
    const id = `cmpl-${crypto.randomUUID()}`,
      created = now();

    const legacy = (c: Choice, tokens: EngineToken[], offset0: number, withPrompt: boolean) => {
      const out = {
        tokens: [] as string[],
        token_logprobs: [] as (number | null)[],
        top_logprobs: [] as (Record<string, number> | null)[],
        text_offset: [] as number[],
      };
      let offset = offset0;
      const add = (id: number, lp: TokenLogprob | null, text: string) => {
        out.tokens.push(tokenString(tok, id));
        out.token_logprobs.push(lp ? lp.logprob : null);
        out.top_logprobs.push(lp ? Object.fromEntries(lp.top.map(([t, v]) => [tokenString(tok, t), v])) : null);
        out.text_offset.push(offset);
        offset += text.length;
      };
      if (withPrompt) {
        const tail = new TextTail(tok);
        c.promptIds.forEach((t, i) => add(t, i === 0 ? null : c.seq.promptLogprobs[i - 1], tail.push(t)));
      }
      const tail = new TextTail(tok);
      for (const t of tokens) add(t.token, t.logprob ?? null, tail.push(t.token));
      return out;
    };

    if (!p.stream) {
      await Promise.all(choices.map((c) => drive(c, () => {})));
      return {
        id,
        object: 'text_completion',
        created,
        model: p.model,
        choices: choices.map((c) => {
          c.tail.flush();
          return {
            index: c.index,
            text: (c.echo ?? '') + c.tail.text,
            logprobs: p.logprobs === undefined ? null : legacy(c, c.tokens, 0, c.echo !== null),
            finish_reason: c.finish,
          };
        }),
        usage: usageOf(choices, prompts),
      };
    }
    const send = sse(reply);
    try {
      for (const c of choices)
        if (c.echo)
          send({ id, object: 'text_completion', created, model: p.model, choices: [{ index: c.index, text: c.echo, logprobs: null, finish_reason: null }] });
      await Promise.all(
        choices.map(async (c) => {
          let offset = c.echo?.length ?? 0;
          await drive(c, (t, text) => {
            if (!text && p.logprobs === undefined) return;
            const lp = p.logprobs === undefined ? null : legacy(c, [t], offset, false);
            offset += text.length;
            send({ id, object: 'text_completion', created, model: p.model, choices: [{ index: c.index, text, logprobs: lp, finish_reason: null }] });
          });
          const rest = c.tail.flush();
          if (c.finish)
            send({
              id,
              object: 'text_completion',
              created,
              model: p.model,
              choices: [{ index: c.index, text: rest, logprobs: null, finish_reason: c.finish }],
            });
        }),
      );
      if (p.includeUsage) send({ id, object: 'text_completion', created, model: p.model, choices: [], usage: usageOf(choices, prompts) });
      send('[DONE]');
    } catch (e) {
      send({ error: e instanceof ApiError ? e.body().error : { message: (e as Error).message, type: 'server_error', param: null, code: null } });
    }
    reply.raw.end();
    return reply;
  });

  // ---- /v1/chat/completions ----
  app.post('/v1/chat/completions', async (req, reply) => {
    const b = checkBody(req.body);
    const p = commonParams(b, limits, true);
    const messages = chatMessages(b) as ChatMessage[];
    let text: string;
    try {
      text = o.chat.render(messages);
    } catch (e) {
      throw badParam('messages', `the chat template failed on these messages: ${(e as Error).message}`);
    }
    const adapter = adapterOf(p.model);
    checkFits(p, minTokensWithSpecials(tok, text), true);
    const ids = encodeWithSpecials(tok, text);
    checkFits(p, ids.length, false);
    const prompts = [{ ids, echo: null }];
    const choices = start(req, reply, p, adapter, prompts, (n) => capacity - n, false);
    const id = `chatcmpl-${crypto.randomUUID()}`,
      created = now();
    const entry = (t: EngineToken) => {
      const lp = t.logprob!;
      const bytes = (s: string) => [...Buffer.from(s, 'utf8')];
      const s = tokenString(tok, t.token);
      return {
        token: s,
        logprob: lp.logprob,
        bytes: bytes(s),
        top_logprobs: lp.top.map(([i, v]) => {
          const ts = tokenString(tok, i);
          return { token: ts, logprob: v, bytes: bytes(ts) };
        }),
      };
    };
    if (!p.stream) {
      await Promise.all(choices.map((c) => drive(c, () => {})));
      return {
        id,
        object: 'chat.completion',
        created,
        model: p.model,
        choices: choices.map((c) => {
          c.tail.flush();
          return {
            index: c.index,
            message: { role: 'assistant', content: c.tail.text },
            logprobs: p.logprobs === undefined ? null : { content: c.tokens.filter((t) => t.token !== engine.config.eos_token_id).map(entry) },
            finish_reason: c.finish,
          };
        }),
        usage: usageOf(choices, prompts),
      };
    }
    const send = sse(reply);
    const chunk = (index: number, delta: object, finish: string | null, logprobs: unknown = null) => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: p.model,
      choices: [{ index, delta, logprobs, finish_reason: finish }],
    });
    try {
      for (const c of choices) send(chunk(c.index, { role: 'assistant', content: '' }, null));
      await Promise.all(
        choices.map(async (c) => {
          await drive(c, (t, text) => {
            const lp = p.logprobs !== undefined && t.token !== engine.config.eos_token_id ? { content: [entry(t)] } : null;
            if (text || lp) send(chunk(c.index, { content: text }, null, lp));
          });
          const rest = c.tail.flush();
          if (c.finish) send(chunk(c.index, rest ? { content: rest } : {}, c.finish));
        }),
      );
      if (p.includeUsage) send({ id, object: 'chat.completion.chunk', created, model: p.model, choices: [], usage: usageOf(choices, prompts) });
      send('[DONE]');
    } catch (e) {
      send({ error: e instanceof ApiError ? e.body().error : { message: (e as Error).message, type: 'server_error', param: null, code: null } });
    }
    reply.raw.end();
    return reply;
  });

  return app;
}
