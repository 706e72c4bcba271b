// The request bodies of /v1/completions and /v1/chat/completions, checked field by field into
// what the engine takes. Every error is a 400 naming the parameter (OpenAI's shape).

import type { LogitAdjustments } from '../engine/logits.ts';
import type { SamplingOptions } from '../generate/sampler.ts';
import { badParam } from './errors.ts';

export interface ServeLimits {
  /** most choices per request (n) */
  maxN: number;
  /** most prompts in one completions request */
  maxPrompts: number;
  /** most tokens a request may ask for (max_tokens) */
  maxTokens: number;
  /** most stop strings */
  maxStops: number;
}

export const DEFAULT_LIMITS: ServeLimits = { maxN: 16, maxPrompts: 64, maxTokens: 4096, maxStops: 8 };

/** What both endpoints share once checked. */
export interface CommonParams {
  model: string;
  stream: boolean;
  includeUsage: boolean;
  maxTokens: number | undefined;
  n: number;
  stop: string[];
  sampling: SamplingOptions;
  adjust: LogitAdjustments;
  /** top alternatives per token, or undefined for no logprobs */
  logprobs: number | undefined;
  seed: number | undefined;
  responseFormat: ResponseFormat | undefined;
  ignoreEos: boolean;
}

export type ResponseFormat = { type: 'text' } | { type: 'json_object' } | { type: 'json_schema'; schema: unknown; name: string };

type Body = Record<string, unknown>;

const isObj = (v: unknown): v is Body => typeof v === 'object' && v !== null && !Array.isArray(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function optNum(b: Body, key: string, lo: number, hi: number, int = false): number | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (!isNum(v) || (int && !Number.isInteger(v)) || v < lo || v > hi) {
    throw badParam(key, `'${key}' must be ${int ? 'an integer' : 'a number'} in [${lo}, ${hi}], got ${JSON.stringify(v)}`);
  }
  return v;
}

function optBool(b: Body, key: string): boolean | undefined {
  const v = b[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw badParam(key, `'${key}' must be true or false, got ${JSON.stringify(v)}`);
  return v;
}

export function checkBody(body: unknown): Body {
  if (!isObj(body)) throw badParam('body', 'the request body must be a JSON object');
  return body;
}

export function commonParams(b: Body, limits: ServeLimits, chat: boolean): CommonParams {
  if (typeof b.model !== 'string' || b.model === '') throw badParam('model', `'model' is required: a model id from GET /v1/models`);
  const stream = optBool(b, 'stream') ?? false;
  let includeUsage = false;
  if (b.stream_options !== undefined && b.stream_options !== null) {
    if (!isObj(b.stream_options)) throw badParam('stream_options', `'stream_options' must be an object`);
    if (!stream) throw badParam('stream_options', `'stream_options' is only allowed with 'stream': true`);
    includeUsage = optBool(b.stream_options, 'include_usage') ?? false;
  }
  const maxKey = chat && b.max_completion_tokens !== undefined ? 'max_completion_tokens' : 'max_tokens';
  const maxTokens = optNum(b, maxKey, chat ? 1 : 0, limits.maxTokens, true);
  const n = optNum(b, 'n', 1, limits.maxN, true) ?? 1;
  let stop: string[] = [];
  if (typeof b.stop === 'string') stop = [b.stop];
  else if (Array.isArray(b.stop)) {
    if (!b.stop.every((s) => typeof s === 'string')) throw badParam('stop', `'stop' must be a string or a list of strings`);
    stop = b.stop as string[];
  } else if (b.stop !== undefined && b.stop !== null) throw badParam('stop', `'stop' must be a string or a list of strings`);
  if (stop.length > limits.maxStops) throw badParam('stop', `'stop' takes at most ${limits.maxStops} strings, got ${stop.length}`);

  const temperature = optNum(b, 'temperature', 0, 2);
  const topP = optNum(b, 'top_p', 0, 1);
  const seed = optNum(b, 'seed', -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true);
  const sampling: SamplingOptions = {
    temperature: temperature ?? 1,
    topP: topP === undefined ? 1 : Math.max(topP, 1e-9),
    topK: optNum(b, 'top_k', -1, 1e6, true),
    minP: optNum(b, 'min_p', 0, 1),
    repetitionPenalty: optNum(b, 'repetition_penalty', 1e-3, 1e3),
  };
  if (sampling.topK === -1) sampling.topK = 0; // vLLM's "off"

  const adjust: LogitAdjustments = {
    presencePenalty: optNum(b, 'presence_penalty', -2, 2),
    frequencyPenalty: optNum(b, 'frequency_penalty', -2, 2),
  };
  if (b.logit_bias !== undefined && b.logit_bias !== null) {
    if (!isObj(b.logit_bias)) throw badParam('logit_bias', `'logit_bias' must be an object mapping token ids to biases in [-100, 100]`);
    const m = new Map<number, number>();
    for (const [k, v] of Object.entries(b.logit_bias)) {
      const id = Number(k);
      if (!/^\d+$/.test(k) || !Number.isSafeInteger(id)) throw badParam('logit_bias', `'logit_bias' keys must be token ids, got ${JSON.stringify(k)}`);
      if (!isNum(v) || v < -100 || v > 100)
        throw badParam('logit_bias', `'logit_bias' values must be numbers in [-100, 100], got ${JSON.stringify(v)} for token ${k}`);
      m.set(id, v);
    }
    if (m.size > 1024) throw badParam('logit_bias', `'logit_bias' takes at most 1024 tokens, got ${m.size}`);
    adjust.logitBias = m;
  }

  let logprobs: number | undefined;
  if (chat) {
    const on = optBool(b, 'logprobs') ?? false;
    const top = optNum(b, 'top_logprobs', 0, 20, true);
    if (top !== undefined && !on) throw badParam('top_logprobs', `'top_logprobs' needs 'logprobs': true`);
    logprobs = on ? (top ?? 0) : undefined;
  } else {
    logprobs = optNum(b, 'logprobs', 0, 20, true);
  }

  let responseFormat: ResponseFormat | undefined;
  if (b.response_format !== undefined && b.response_format !== null) {
    const rf = b.response_format;
    if (!isObj(rf) || typeof rf.type !== 'string')
      throw badParam('response_format', `'response_format' must be {"type": "text" | "json_object" | "json_schema", ...}`);
    if (rf.type === 'text') responseFormat = { type: 'text' };
    else if (rf.type === 'json_object') responseFormat = { type: 'json_object' };
    else if (rf.type === 'json_schema') {
      const js = rf.json_schema;
      if (!isObj(js) || !isObj(js.schema)) throw badParam('response_format', `'response_format.json_schema.schema' must be a JSON Schema object`);
      responseFormat = { type: 'json_schema', schema: js.schema, name: typeof js.name === 'string' ? js.name : 'response' };
    } else throw badParam('response_format', `'response_format.type' must be text, json_object or json_schema, got ${JSON.stringify(rf.type)}`);
  }
  const ignoreEos = optBool(b, 'ignore_eos') ?? false;
  return { model: b.model, stream, includeUsage, maxTokens, n, stop, sampling, adjust, logprobs, seed, responseFormat, ignoreEos };
}

/** A completions prompt: a string, a list of strings, a list of token ids, or a list of such lists. */
export type PromptInput = { text: string } | { ids: number[] };

export function completionPrompts(b: Body, limits: ServeLimits, vocab: number): PromptInput[] {
  const p = b.prompt;
  const bad = () => badParam('prompt', `'prompt' must be a string, a list of strings, a list of token ids, or a list of token-id lists`);
  const idsOf = (a: unknown[]): number[] => {
    for (const id of a) {
      if (!(Number.isInteger(id) && (id as number) >= 0 && (id as number) < vocab)) {
        throw badParam('prompt', `token id ${JSON.stringify(id)} is outside the vocabulary [0, ${vocab})`);
      }
    }
    return a as number[];
  };
  let out: PromptInput[];
  if (typeof p === 'string') out = [{ text: p }];
  else if (Array.isArray(p)) {
    if (p.length === 0) throw badParam('prompt', `'prompt' is empty`);
    if (p.every((x) => typeof x === 'string')) out = (p as string[]).map((text) => ({ text }));
    else if (p.every((x) => typeof x === 'number')) out = [{ ids: idsOf(p) }];
    else if (p.every((x) => Array.isArray(x))) out = (p as unknown[][]).map((a) => ({ ids: idsOf(a) }));
    else throw bad();
  } else throw bad();
  if (out.length > limits.maxPrompts) throw badParam('prompt', `at most ${limits.maxPrompts} prompts per request, got ${out.length}`);
  for (const x of out) if ('ids' in x && x.ids.length === 0) throw badParam('prompt', `a token-id prompt is empty`);
  return out;
}

export interface ChatMessageIn {
  role: string;
  content: string;
}

export function chatMessages(b: Body): ChatMessageIn[] {
  const m = b.messages;
  if (!Array.isArray(m) || m.length === 0) throw badParam('messages', `'messages' must be a non-empty list of {"role", "content"}`);
  return m.map((x, i) => {
    if (!isObj(x) || typeof x.role !== 'string') throw badParam(`messages[${i}]`, `messages[${i}] must be {"role": ..., "content": ...}`);
    if (!['system', 'user', 'assistant', 'developer'].includes(x.role))
      throw badParam(`messages[${i}].role`, `messages[${i}].role must be system, user or assistant, got ${JSON.stringify(x.role)}`);
    let content: string;
    if (typeof x.content === 'string') content = x.content;
    else if (Array.isArray(x.content) && x.content.every((p) => isObj(p) && p.type === 'text' && typeof p.text === 'string')) {
      content = (x.content as { text: string }[]).map((p) => p.text).join('');
    } else throw badParam(`messages[${i}].content`, `messages[${i}].content must be a string or a list of text parts`);
    return { role: x.role === 'developer' ? 'system' : x.role, content };
  });
}
