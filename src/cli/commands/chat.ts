import readline from 'node:readline';
import { parse } from '../args.ts';
import type { Command } from '../command.ts';
import { MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.ts';
import { SAMPLING_HELP, SAMPLING_OPTIONS, samplingOptions, timingLine } from './generate.ts';
import { generate } from '../../generate/generate.ts';
import { encodeChat, type ChatMessage } from '../../generate/chat.ts';

export const chatCommand: Command = {
  name: 'chat',
  summary: 'chat with an -Instruct model in the terminal (multi-turn)',
  help: `Usage: openelm chat [--model M] [options]

An interactive conversation using the OpenELM -Instruct chat format. The KV cache is kept
between turns, so only the new turn is processed. Reads one message per line; when stdin is not
a terminal, each line is a user turn and each reply is printed on its own line.

Ctrl-C stops a reply; Ctrl-C at the prompt or Ctrl-D quits.

Commands inside the chat:
  /reset          start a new conversation
  /system TEXT    set the system message (and reset)
  /exit           quit (or Ctrl-D)

Options:
      --system TEXT          initial system message
  -v, --verbose              print timings after each reply
${SAMPLING_HELP}
${MODEL_HELP}`,
  async run(argv) {
    const { values: v } = parse(argv, { ...MODEL_OPTIONS, ...SAMPLING_OPTIONS, system: { type: 'string' }, verbose: { type: 'boolean', short: 'v' } });
    const opts = samplingOptions(v);
    const tty = Boolean(process.stdin.isTTY);
    const { model, tokenizer, dispose } = await openModel(v);
    let system = v.system as string | undefined;
    let messages: ChatMessage[] = [];
    const reset = () => { messages = system ? [{ role: 'system', content: system }] : []; };
    reset();
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
    const ask = () => { if (tty) rl.setPrompt('>>> '), rl.prompt(); };
    // Ctrl-C stops the reply being generated; at the prompt it quits
    let generating: AbortController | undefined;
    rl.on('SIGINT', () => {
      if (generating) generating.abort();
      else rl.close();
    });
    if (tty) process.stdout.write('Chat with the model. /reset, /system TEXT, /exit. Ctrl-D quits.\n');
    ask();
    try {
      for await (const line of rl) {
        const text = line.trim();
        if (!text) { ask(); continue; }
        if (text === '/exit' || text === '/quit' || text === '/bye') break;
        if (text === '/reset') { reset(); process.stdout.write('(new conversation)\n'); ask(); continue; }
        if (text.startsWith('/system')) { system = text.slice(7).trim() || undefined; reset(); process.stdout.write('(system message set; new conversation)\n'); ask(); continue; }
        messages.push({ role: 'user', content: text });
        let ids = encodeChat(tokenizer, messages);
        // keep the conversation inside the context: drop the oldest turns first
        while (ids.length + 16 > model.cache.capacity && messages.length > 1 + (system ? 1 : 0)) {
          messages.splice(system ? 1 : 0, 2);
          ids = encodeChat(tokenizer, messages);
        }
        generating = new AbortController();
        const it = generate(model, tokenizer, { ids }, { ...opts, signal: generating.signal });
        let r = await it.next();
        for (; !r.done; r = await it.next()) process.stdout.write(r.value.text);
        generating = undefined;
        process.stdout.write(r.value.finishReason === 'aborted' ? ' [stopped]\n' : '\n');
        messages.push({ role: 'assistant', content: r.value.text });
        if (v.verbose) process.stderr.write(timingLine(r.value) + '\n');
        ask();
      }
    } finally {
      rl.close();
      dispose();
    }
  },
};
