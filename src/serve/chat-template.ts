// The chat template a served model uses: the Jinja `chat_template` of its folder's
// tokenizer_config.json when there is one (rendered with @huggingface/jinja, as transformers'
// apply_chat_template does), else the OpenELM -Instruct format (src/generate/chat.ts).
import fs from 'node:fs';
import path from 'node:path';
import { Template } from '@huggingface/jinja';
import { type ChatMessage, encodeChat, encodeWithSpecials, renderChat } from '../generate/chat.ts';
import type { Tokenizer } from '../tokenizer/index.ts';

export interface ChatFormat {
  /** where the template came from, for logs */
  source: string;
  /** the conversation's text, ending with the assistant's turn opener; "<s>" / "</s>" stand for BOS / EOS */
  render(messages: ChatMessage[]): string;
  /** its token ids: encodeWithSpecials of render */
  encode(messages: ChatMessage[]): number[];
}

export function chatFormat(modelDir: string | null, tok: Tokenizer): ChatFormat {
  const file = modelDir ? path.join(modelDir, 'tokenizer_config.json') : null;
  if (file && fs.existsSync(file)) {
    let cfg: { chat_template?: unknown; bos_token?: unknown; eos_token?: unknown };
    try {
      cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (e) {
      throw new Error(`${file}: not valid JSON (${(e as Error).message})`);
    }
    let tpl = cfg.chat_template;
    if (Array.isArray(tpl)) tpl = (tpl.find((t) => t?.name === 'default') ?? tpl[0])?.template;
    if (typeof tpl === 'string') {
      let template: Template;
      try {
        template = new Template(tpl);
      } catch (e) {
        throw new Error(`${file}: chat_template does not parse: ${(e as Error).message}`);
      }
      const tokenText = (t: unknown, fallback: string) => (typeof t === 'string' ? t : ((t as { content?: string } | undefined)?.content ?? fallback));
      const bos = tokenText(cfg.bos_token, '<s>'),
        eos = tokenText(cfg.eos_token, '</s>');
      const render = (messages: ChatMessage[]) => template.render({ messages, bos_token: bos, eos_token: eos, add_generation_prompt: true });
      return { source: `${file} (chat_template)`, render, encode: (messages) => encodeWithSpecials(tok, render(messages)) };
    }
  }
  return { source: 'the OpenELM -Instruct format', render: (messages) => renderChat(messages), encode: (messages) => encodeChat(tok, messages) };
}
