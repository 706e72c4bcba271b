// The chat format of the OpenELM -Instruct models (the Zephyr template Apple's tokenizer config uses):
//   <s><|system|>\n{system}</s>\n<|user|>\n{user}</s>\n<|assistant|>\n{reply}</s>\n<|user|>\n…<|assistant|>\n
// "</s>" is the end-of-sequence token itself, not the four characters: the HF tokenizer splits
// the text at special tokens and encodes each piece on its own (each with SentencePiece's
// leading "▁", the LLaMA tokenizer's legacy behaviour), which is what this reproduces.
import type { Tokenizer } from '../tokenizer/index.ts';

export type Role = 'system' | 'user' | 'assistant';

export interface ChatMessage {
  role: Role;
  content: string;
}

/** The prompt text of a conversation, ending with the assistant's turn opener. */
export function chatTemplate(messages: ChatMessage[], addGenerationPrompt = true): string {
  let s = '<s>';
  for (const m of messages) s += `<|${m.role}|>\n${m.content}</s>\n`;
  if (addGenerationPrompt) s += '<|assistant|>\n';
  return s;
}

/** Token ids of a conversation: BOS, then each turn with "</s>" as the EOS token. */
export function encodeChat(tok: Tokenizer, messages: ChatMessage[], addGenerationPrompt = true): number[] {
  return encodeWithSpecials(tok, renderChat(messages, addGenerationPrompt));
}

/** chatTemplate after checking the messages' roles and contents (what encodeChat encodes) */
export function renderChat(messages: ChatMessage[], addGenerationPrompt = true): string {
  for (const [i, m] of messages.entries()) {
    if (!['system', 'user', 'assistant'].includes(m.role))
      throw new Error(`message ${i}: role must be system, user or assistant, got ${JSON.stringify(m.role)}`);
    if (typeof m.content !== 'string') throw new Error(`message ${i}: content must be a string`);
  }
  return chatTemplate(messages, addGenerationPrompt);
}

const SPECIALS = /(<s>|<\/s>)/;

/** Encodes text in which "<s>" and "</s>" stand for the BOS and EOS tokens. */
export function encodeWithSpecials(tok: Tokenizer, text: string): number[] {
  const ids: number[] = [];
  for (const part of text.split(SPECIALS)) {
    if (part === '<s>') ids.push(tok.bosId);
    else if (part === '</s>') ids.push(tok.eosId);
    else if (part.length > 0) for (const id of tok.encode(part)) ids.push(id);
  }
  return ids;
}

/** A lower bound on encodeWithSpecials(tok, text).length without encoding (Tokenizer.minTokens). */
export function minTokensWithSpecials(tok: Tokenizer, text: string): number {
  let n = 0;
  for (const part of text.split(SPECIALS)) n += part === '<s>' || part === '</s>' ? 1 : tok.minTokens(part);
  return n;
}
