import path from 'node:path';
import { builtinModelDir } from '../../builtin.ts';
import { Engine, type ServingEngine } from '../../engine/engine.ts';
import { resolveModel } from '../../io/hub.ts';
import { vnniHint } from '../../kernels/wasm/tuning.ts';
import type { ForwardAdapter } from '../../model/layer.ts';
import { loadAdapter } from '../../peft/index.ts';
import { AdapterRuntime } from '../../peft/lora.ts';
import { chatFormat } from '../../serve/chat-template.ts';
import { createServer } from '../../serve/server.ts';
import { type EngineWorkerInit, WorkerEngine } from '../../serve/worker-engine.ts';
import { loadTokenizer, type Tokenizer } from '../../tokenizer/index.ts';
import { num, parse, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { downloadBars, MODEL_HELP, MODEL_OPTIONS, modelSource, openModel, parseDType, parseThreads } from '../model-options.ts';
import { openSpeculative, SPECULATIVE_HELP, SPECULATIVE_OPTIONS } from './generate.ts';

export const serveCommand: Command = {
  name: 'serve',
  summary: 'an OpenAI-compatible HTTP server with continuous batching',
  help: `Usage: openelm serve [--model M] [--adapter NAME=DIR]... [--host H] [--port P] [--parallel N] [options]

Serves the OpenAI API (POST /v1/completions, /v1/chat/completions; GET /v1/models) and
/tokenize, /detokenize, /health, /metrics. Every request's sequences are decoded together in one
batched pass per step (continuous batching); long prompts are prefilled in chunks between decode
steps; prompts that start like an earlier one reuse its KV cache. Details: docs/serve.md.

Options:
      --host H               address to listen on (default 127.0.0.1)
      --port P               port (default 8080; 0 picks a free one)
      --parallel N           sequences decoded together, each with its own KV cache (default 8)
      --queue N              requests waiting for a sequence before 429 (default 64)
      --step-tokens N        most tokens in one batched step (decode + prompt chunks; default 64)
      --refill-wait MS       after a step that ended sequences, wait up to MS ms for requests to
                             take their slots before the next step (default 10; 0: never wait), so
                             a client's next request joins the step that starts now, not the one after
      --api-key KEY          require "Authorization: Bearer KEY" (default: $OPENELM_API_KEY, else none)
      --served-name NAME     the model id clients send (default: the --model argument)
      --adapter NAME=DIR     serve a LoRA / DoRA adapter as model NAME (repeatable)
      --max-tokens N         largest max_tokens a request may ask for (default 4096)
      --in-process           run the model on the HTTP thread (default: a worker thread, so a long
                             prefill step never delays /health, new requests or disconnects)
${SPECULATIVE_HELP}
                             (requests with response_format or logprobs decode without drafts)
${MODEL_HELP}

Examples:
  openelm serve -m apple/OpenELM-270M-Instruct --dtype q8 --port 8080
  openelm serve -m builtin --adapter sotu=runs/sft-lora --parallel 8 --api-key secret
  openelm serve -m apple/OpenELM-1_1B-Instruct --draft-model apple/OpenELM-1_1B-Instruct --draft-dtype q4`,
  async run(argv) {
    const { values: v } = parse(argv, {
      ...MODEL_OPTIONS,
      host: { type: 'string' },
      port: { type: 'string' },
      parallel: { type: 'string' },
      queue: { type: 'string' },
      'step-tokens': { type: 'string' },
      'refill-wait': { type: 'string' },
      'api-key': { type: 'string' },
      'served-name': { type: 'string' },
      adapter: { type: 'string', multiple: true },
      'max-tokens': { type: 'string' },
      'in-process': { type: 'boolean' },
      ...SPECULATIVE_OPTIONS,
    });
    const port = num(v.port as string | undefined, 'port', { int: true, min: 0, max: 65535 }) ?? 8080;
    const parallel = num(v.parallel as string | undefined, 'parallel', { int: true, min: 1, max: 256 }) ?? 8;
    const maxQueue = num(v.queue as string | undefined, 'queue', { int: true, min: 0, max: 100000 }) ?? 64;
    const stepTokens = num(v['step-tokens'] as string | undefined, 'step-tokens', { int: true, min: parallel, max: 4096 }) ?? Math.max(64, parallel);
    const refillWaitMs = num(v['refill-wait'] as string | undefined, 'refill-wait', { min: 0, max: 1000 }) ?? 10;
    const maxTokens = num(v['max-tokens'] as string | undefined, 'max-tokens', { int: true, min: 1 }) ?? 4096;
    const adapterSpecs = ((v.adapter as string[] | undefined) ?? []).map((s) => {
      const i = s.indexOf('=');
      if (i <= 0 || i === s.length - 1) throw new UsageError(`--adapter must be NAME=DIR, got "${s}"`);
      return { name: s.slice(0, i), dir: s.slice(i + 1) };
    });
    const source = modelSource(v);
    const modelName = (v['served-name'] as string | undefined) ?? (v.model as string | undefined) ?? 'builtin';
    if (adapterSpecs.some((a) => a.name === modelName)) throw new UsageError(`--adapter name "${modelName}" is the base model's id; pick another`);
    let engine: ServingEngine, tokenizer: Tokenizer, dir: string, draftDir: string | null, backend: string;
    let close: () => Promise<void>;
    if (v['in-process']) {
      // the engine on this thread: each step blocks the event loop (HTTP waits for it)
      const loaded = await openModel(v);
      const { model } = loaded;
      ({ tokenizer, dir } = loaded);
      backend = model.kernels.name;
      const adapters = new Map<string, ForwardAdapter>();
      let draft: Awaited<ReturnType<typeof openSpeculative>> | undefined;
      try {
        for (const a of adapterSpecs) {
          try {
            adapters.set(a.name, new AdapterRuntime(model.kernels, loadAdapter(a.dir, model.config, model.kernels), model.weights, stepTokens));
          } catch (e) {
            throw new Error(`--adapter ${a.name}=${a.dir}: ${(e as Error).message}`);
          }
        }
        draft = await openSpeculative(v, model, true);
      } catch (e) {
        loaded.dispose();
        throw e;
      }
      const d = draft;
      engine = new Engine(model, { parallel, maxQueue, stepTokens, refillWaitMs, adapters, speculative: d.spec });
      draftDir = d.spec?.draft ? String(v['draft-model']) : null;
      close = async () => {
        await engine.idle();
        d.dispose();
        loaded.dispose();
      };
    } else {
      // the engine in a worker thread: the forward pass never blocks HTTP (/health, new requests, disconnects)
      const spec = speculativeFlags(v);
      const load = loadFlags(v);
      dir = await resolveModel(source, { revision: v.revision as string | undefined, offline: v.offline as boolean | undefined, onProgress: downloadBars() });
      const draftSource = spec?.draftModel
        ? await resolveModel(modelSource({ model: spec.draftModel }), { offline: v.offline as boolean | undefined, onProgress: downloadBars() }).catch(
            (e: Error) => {
              throw new UsageError(`--draft-model: ${e.message}`);
            },
          )
        : undefined;
      tokenizer = await loadTokenizer(dir);
      const w = await WorkerEngine.start({
        model: dir,
        load,
        engine: { parallel, maxQueue, stepTokens, refillWaitMs },
        adapters: adapterSpecs,
        speculative: spec && { ...spec, draftModel: draftSource },
      });
      engine = w;
      draftDir = w.info.draftDir;
      backend = w.info.backend;
      close = () => w.close();
    }
    const chat = chatFormat(source === builtinModelDir() ? null : dir, tokenizer);
    const app = await createServer({
      engine,
      tokenizer,
      modelName,
      chat,
      apiKey: (v['api-key'] as string | undefined) ?? process.env.OPENELM_API_KEY,
      limits: { maxTokens },
    });
    const fixed = v['draft-fixed'] ? '' : 'up to ';
    const address = await app.listen({ host: (v.host as string | undefined) ?? '127.0.0.1', port });
    process.stderr.write(
      `openelm serve: ${modelName} (${path.basename(dir)}, ${engine.config.num_transformer_layers} layers, context ${engine.capacity}) ` +
        `on ${address} · ${parallel} parallel sequences, queue ${maxQueue}, chat template: ${chat.source}, engine ${v['in-process'] ? 'in process' : 'in a worker thread'} on ${backend}` +
        `${engine.draftTokens ? ` · speculative: ${draftDir ? `draft ${path.basename(draftDir)}, ${fixed}${engine.draftTokens} tokens a round` : `prompt lookup, ${fixed}${engine.draftTokens} tokens`}` : ''}\n`,
    );
    // the relaxed build on a CPU whose VNNI a newer Node would use
    const hint = await vnniHint(backend);
    if (hint) process.stderr.write(`openelm serve: hint: ${hint}\n`);
    // SIGTERM / SIGINT: stop accepting, let the requests in flight finish, exit 0
    await new Promise<void>((resolve) => {
      const stop = (sig: string) => {
        process.stderr.write(`openelm serve: ${sig}, draining ${engine.stats.active + engine.stats.waiting} sequences\n`);
        app
          .close()
          .then(() => engine.idle())
          .then(close)
          .finally(resolve);
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
    });
    return 0;
  },
};

/** The speculative flags, checked as openSpeculative checks them, for the worker to act on. */
function speculativeFlags(v: Record<string, unknown>): EngineWorkerInit['speculative'] {
  const lookup = num(v['prompt-lookup'] as string | undefined, 'prompt-lookup', { int: true, min: 1, max: 64 });
  const draftTokens = num(v['draft-tokens'] as string | undefined, 'draft-tokens', { int: true, min: 1, max: 64 });
  if (v['draft-model'] === undefined) {
    if (v['draft-dtype'] !== undefined || draftTokens !== undefined)
      throw new UsageError(`--${v['draft-dtype'] !== undefined ? 'draft-dtype' : 'draft-tokens'} needs --draft-model`);
    if (v['draft-fixed'] && lookup === undefined) throw new UsageError('--draft-fixed needs --draft-model or --prompt-lookup');
    return lookup === undefined ? undefined : { promptLookup: lookup, adaptive: !v['draft-fixed'] };
  }
  if (lookup !== undefined) throw new UsageError('give --draft-model or --prompt-lookup, not both');
  return {
    draftModel: v['draft-model'] as string,
    draftDtype: parseDType(v['draft-dtype'] as string | undefined, 'draft-dtype'),
    draftTokens,
    adaptive: !v['draft-fixed'],
  };
}

/** The model flags as load options for the worker (the model is already on disk: offline). */
function loadFlags(v: Record<string, unknown>): EngineWorkerInit['load'] {
  const backend = (v.backend as string | undefined) ?? 'wasm';
  if (backend !== 'wasm' && backend !== 'ref') throw new UsageError(`--backend must be wasm or ref, got "${backend}"`);
  return {
    dtype: parseDType(v.dtype as string | undefined),
    threads: parseThreads(v.threads as string | undefined),
    backend,
    contextLength: num(v.context as string | undefined, 'context', { int: true, min: 1 }),
    offline: true,
    // steps of many sequences: q8_0 laid out for passes over several tokens (LoadOptions.batched)
    batched: true,
  };
}
