// Fine-tuning records (JSONL, one object per line) → token rows with a loss mask.
//
// SFT:  {"messages": [{"role", "content"}, ...]}   the -Instruct chat template; loss on the
//                                                    assistant turns (each reply and its </s>)
//       {"prompt": "...", "completion": "..."}     BOS + prompt + completion + EOS; loss on the
//                                                    completion and EOS
//       {"prompt_ids": [...], "completion_ids": [...]}   used as is (no BOS or EOS added)
// DPO:  {"prompt", "chosen", "rejected"}            two rows sharing the prompt; loss on responses
//       {"prompt_ids", "chosen_ids", "rejected_ids"} the response ids after the prompt, as is
//
// A completion's tokens are encode(prompt + completion) minus encode(prompt), as lm-evaluation-
// harness splits a context from its continuation, so the text tokenizes as it would in one piece.
// Every record is checked before any step: a malformed one names the file, line and field.
import fs from 'node:fs';
import { type ChatMessage, encodeChat } from '../../generate/chat.ts';
import type { Tokenizer } from '../../tokenizer/index.ts';

/** One sequence: ids, and which of them are learned (predicted with loss). */
export interface Row {
  ids: number[];
  /** loss[t]: whether ids[t] is a target (never true at t = 0) */
  loss: boolean[];
}

/** One record: an SFT row, or a DPO pair [chosen, rejected]. */
export interface Example {
  rows: Row[];
  /** 1-based line in its file */
  line: number;
}

export type FinetuneMethod = 'sft' | 'dpo';

export class RecordError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string | null,
    msg: string,
  ) {
    super(`${file}:${line}: ${field ? `"${field}" ` : ''}${msg}`);
    this.name = 'RecordError';
  }
}

/** Reads and tokenizes every record of a JSONL file (or a JSON array file). */
export function readRecords(file: string, method: FinetuneMethod, tok: Tokenizer | null, vocabSize: number): Example[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`);
  }
  const lines: { obj: unknown; line: number }[] = [];
  const trimmed = text.trimStart();
  if (trimmed.startsWith('[')) {
    let arr: unknown;
    try {
      arr = JSON.parse(text);
    } catch (e) {
      throw new RecordError(file, 1, null, `is not valid JSON: ${(e as Error).message}`);
    }
    (arr as unknown[]).forEach((obj, i) => lines.push({ obj, line: i + 1 }));
  } else {
    text.split('\n').forEach((l, i) => {
      if (!l.trim()) return;
      let obj: unknown;
      try {
        obj = JSON.parse(l);
      } catch (e) {
        throw new RecordError(file, i + 1, null, `this line is not valid JSON: ${(e as Error).message}`);
      }
      lines.push({ obj, line: i + 1 });
    });
  }
  if (lines.length === 0) throw new Error(`${file}: no records`);
  return lines.map(({ obj, line }) => toExample(obj, method, tok, vocabSize, file, line));
}

function toExample(obj: unknown, method: FinetuneMethod, tok: Tokenizer | null, V: number, file: string, line: number): Example {
  const fail = (field: string | null, msg: string): never => {
    throw new RecordError(file, line, field, msg);
  };
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) fail(null, 'a record must be a JSON object');
  const o = obj as Record<string, unknown>;
  const str = (f: string): string => (typeof o[f] === 'string' ? (o[f] as string) : fail(f, o[f] === undefined ? 'is missing' : 'must be a string'));
  const ids = (f: string, allowEmpty = false): number[] => {
    const a = o[f];
    if (!Array.isArray(a)) return fail(f, a === undefined ? 'is missing' : 'must be an array of token ids');
    if (!allowEmpty && a.length === 0) fail(f, 'is empty');
    a.forEach((x, i) => {
      if (!(Number.isInteger(x) && x >= 0 && x < V)) fail(f, `element ${i} (${JSON.stringify(x)}) is not a token id in [0, ${V})`);
    });
    return a as number[];
  };
  const needTok = (): Tokenizer =>
    tok ?? fail(null, `is a text record, but the model has no tokenizer that fits its vocabulary of ${V} tokens: use token-id records (prompt_ids, …)`);
  const row = (prompt: number[], response: number[]): Row => ({
    ids: [...prompt, ...response],
    loss: [...prompt.map(() => false), ...response.map(() => true)],
  });
  /** the tokens of prompt + response after those of prompt alone, BOS first, EOS last */
  const textRow = (prompt: string, response: string): Row => {
    const t = needTok();
    const p = t.encode(prompt),
      whole = t.encode(prompt + response);
    let common = 0;
    while (common < p.length && common < whole.length && p[common] === whole[common]) common++;
    return row([t.bosId, ...whole.slice(0, common)], [...whole.slice(common), t.eosId]);
  };

  if (method === 'sft') {
    if ('messages' in o) return { rows: [chatRow(o.messages, needTok, fail)], line };
    if ('prompt_ids' in o || 'completion_ids' in o) {
      const r = row(ids('prompt_ids', true), ids('completion_ids'));
      if (r.ids.length < 2) fail('completion_ids', 'a row needs at least 2 tokens');
      r.loss[0] = false;
      return { rows: [r], line };
    }
    if ('prompt' in o || 'completion' in o) return { rows: [textRow(str('prompt'), str('completion'))], line };
    if ('text' in o) {
      const t = needTok();
      const all = [t.bosId, ...t.encode(str('text')), t.eosId];
      return { rows: [{ ids: all, loss: all.map((_, i) => i > 0) }], line };
    }
    return fail(null, 'an SFT record has "messages", "prompt" and "completion", "prompt_ids" and "completion_ids", or "text"');
  }
  if ('prompt_ids' in o || 'chosen_ids' in o) {
    const p = ids('prompt_ids', true),
      c = ids('chosen_ids'),
      r = ids('rejected_ids');
    if (p.length === 0) fail('prompt_ids', 'is empty (the first response token needs a token before it)');
    return { rows: [row(p, c), row(p, r)], line };
  }
  if ('prompt' in o || 'chosen' in o) {
    const p = str('prompt'),
      c = str('chosen'),
      r = str('rejected');
    return { rows: [textRow(p, c), textRow(p, r)], line };
  }
  return fail(null, 'a DPO record has "prompt", "chosen" and "rejected" (or "prompt_ids", "chosen_ids" and "rejected_ids")');
}

/** The chat template's ids, with the loss on each assistant reply and the </s> that ends it. */
function chatRow(messages: unknown, needTok: () => Tokenizer, fail: (field: string | null, msg: string) => never): Row {
  if (!Array.isArray(messages) || messages.length === 0) return fail('messages', 'must be a non-empty array of {"role", "content"}');
  messages.forEach((m, i) => {
    if (typeof m !== 'object' || m === null) fail('messages', `element ${i} is not an object`);
    const { role, content } = m as Record<string, unknown>;
    if (role !== 'system' && role !== 'user' && role !== 'assistant')
      fail('messages', `element ${i}: role must be system, user or assistant, got ${JSON.stringify(role)}`);
    if (typeof content !== 'string') fail('messages', `element ${i}: content must be a string`);
  });
  const msgs = messages as ChatMessage[];
  if (!msgs.some((m) => m.role === 'assistant')) fail('messages', 'has no assistant message to learn');
  const tok = needTok();
  const ids = encodeChat(tok, msgs, false);
  const loss = ids.map(() => false);
  for (let i = 0; i < msgs.length; i++) {
    if (msgs[i].role !== 'assistant') continue;
    // the special tokens split the text, so each turn tokenizes alone: the reply's tokens are those
    // after the conversation up to its opener, through the </s> that closes it
    const before = encodeChat(tok, msgs.slice(0, i), true),
      upTo = encodeChat(tok, msgs.slice(0, i + 1), false);
    let common = 0;
    while (common < before.length && before[common] === upTo[common]) common++;
    let end = upTo.length;
    while (end > common && upTo[end - 1] !== tok.eosId) end--;
    for (let t = Math.max(1, common); t < end; t++) loss[t] = true;
  }
  return { ids, loss };
}
