import readline from 'node:readline';
import { type ChatMessage, encodeChat } from '../../generate/chat.ts';
import { type GenerateOptions, type GenerationResult, generate, type TokenEvent } from '../../generate/generate.ts';
import { gpuGenerate } from '../../generate/gpu.ts';
import { OpenELM } from '../../model/openelm.ts';
import { ADAPTER_HELP, ADAPTER_OPTION, applyAdapterOption } from '../adapter-option.ts';
import { checkSamplingFlags, parse, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { DEVICE_HELP, DEVICE_OPTION, openDevice } from '../device-option.ts';
import { MODEL_HELP, MODEL_OPTIONS, openGpuModel, openModel } from '../model-options.ts';
import {
  openSpeculative,
  SAMPLING_HELP,
  SAMPLING_OPTIONS,
  SPECULATIVE_HELP,
  SPECULATIVE_OPTIONS,
  samplingOptions,
  speculativeLine,
  timingLine,
} from './generate.ts';

const COMMANDS_HELP = `Commands inside the chat:
  /help                 this list
  /clear                start a new conversation (also /reset)
  /set                  show the settings
  /set temperature T    0 = greedy
  /set top-p P          /set top-k K, /set min-p P, /set repetition-penalty R, /set seed S
  /set max-tokens N     longest reply in tokens
  /set system TEXT      the system message (starts a new conversation; /set system alone removes it)
  /system TEXT          the same as /set system TEXT
  /exit                 quit (also /quit, /bye, Ctrl-D)
  """                   begin or end a multi-line message
  //text                send "/text" as a message`;

/** `/set` keys → the flag they stand for (max-tokens is -n / --max-new-tokens). */
const SET_KEYS: Record<string, string> = {
  temperature: 'temperature',
  'top-p': 'top-p',
  'top-k': 'top-k',
  'min-p': 'min-p',
  'repetition-penalty': 'repetition-penalty',
  seed: 'seed',
  'max-tokens': 'max-new-tokens',
  'max-new-tokens': 'max-new-tokens',
};

/** The conversation and settings of one chat session; `handle` takes one complete user input. */
export class ChatSession {
  messages: ChatMessage[] = [];
  constructor(
    public system: string | undefined,
    public opts: GenerateOptions,
  ) {
    this.clear();
  }

  clear(): void {
    this.messages = this.system ? [{ role: 'system', content: this.system }] : [];
  }

  /**
   * Applies `/set KEY VALUE` (VALUE checked like its flag); returns the text to show. Throws a
   * UsageError naming the key when the value is out of range (the session goes on).
   */
  set(args: string): string {
    const [key, ...rest] = args.trim().split(/\s+/);
    const value = rest.join(' ');
    if (!key) return this.settings();
    if (key === 'system') {
      this.system = args.trim().slice('system'.length).trim() || undefined;
      this.clear();
      return this.system ? '(system message set; new conversation)' : '(system message removed; new conversation)';
    }
    const flag = SET_KEYS[key];
    if (!flag)
      throw new UsageError(`/set: unknown setting "${key}"; one of ${[...Object.keys(SET_KEYS).filter((k) => k !== 'max-new-tokens'), 'system'].join(', ')}`);
    if (value === '') throw new UsageError(`/set ${key} needs a value`);
    let next: GenerateOptions;
    try {
      const parsed = samplingOptions({ [flag]: value });
      next = checkSamplingFlags({ ...this.opts, ...Object.fromEntries(Object.entries(parsed).filter(([, v]) => v !== undefined)) });
    } catch (e) {
      throw new UsageError((e as Error).message.replace(/^--[\w-]+/, `/set ${key}`));
    }
    this.opts = next;
    return `(${key} = ${value})`;
  }

  settings(): string {
    const o = this.opts;
    return [
      `temperature ${o.temperature ?? 0.7} · top-p ${o.topP ?? 0.9} · top-k ${o.topK ?? 0} · min-p ${o.minP ?? 0} · ` +
        `repetition-penalty ${o.repetitionPenalty ?? 1} · max-tokens ${o.maxNewTokens ?? 256}${o.seed !== undefined ? ` · seed ${o.seed}` : ''}`,
      `system: ${this.system === undefined ? '(none)' : JSON.stringify(this.system)}`,
    ].join('\n');
  }
}

/** Collects lines into messages: a line starting with """ opens a block that a line ending with """ closes. */
export class MultilineReader {
  private block: string[] | undefined;

  /** The complete input this line finishes, or undefined while a block is open. */
  push(line: string): string | undefined {
    if (this.block) {
      if (line.trimEnd().endsWith('"""')) {
        this.block.push(line.trimEnd().slice(0, -3));
        const text = this.block.join('\n');
        this.block = undefined;
        return text.trim() === '' ? '' : text;
      }
      this.block.push(line);
      return undefined;
    }
    if (line.trimStart().startsWith('"""')) {
      const rest = line.trimStart().slice(3);
      if (rest.trimEnd().endsWith('"""') && rest.trimEnd().length >= 3) return rest.trimEnd().slice(0, -3);
      this.block = rest === '' ? [] : [rest];
      return undefined;
    }
    return line;
  }

  get open(): boolean {
    return this.block !== undefined;
  }
}

export const chatCommand: Command = {
  name: 'chat',
  summary: 'chat with an -Instruct model in the terminal (multi-turn)',
  help: `Usage: openelm chat [--model M] [options]

An interactive conversation using the OpenELM -Instruct chat format. The KV cache is kept
between turns, so only the new turn is processed. Reads one message per line (or a block between
""" lines); when stdin is not a terminal, each message is a user turn and each reply is printed
on its own line. When the conversation outgrows the context, the oldest turns are dropped (and
you are told); a message that cannot fit at all is refused, and the chat goes on.

Ctrl-C stops a reply; Ctrl-C at the prompt or Ctrl-D quits.

${COMMANDS_HELP}

Options:
      --system TEXT          initial system message
  -v, --verbose              print timings after each reply
${DEVICE_HELP}
${SAMPLING_HELP}
${SPECULATIVE_HELP}
${MODEL_HELP}
${ADAPTER_HELP}`,
  async run(argv) {
    const { values: v } = parse(argv, {
      ...MODEL_OPTIONS,
      ...ADAPTER_OPTION,
      ...SAMPLING_OPTIONS,
      ...SPECULATIVE_OPTIONS,
      ...DEVICE_OPTION,
      system: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
    });
    const session = new ChatSession(v.system as string | undefined, checkSamplingFlags(samplingOptions(v)));
    const tty = Boolean(process.stdin.isTTY);
    const gpu = await openDevice(v);
    // on the GPU the weights go straight to the device, tensor by tensor; the CPU model is never made
    let loaded: Awaited<ReturnType<typeof openModel>> | (Awaited<ReturnType<typeof openGpuModel>> & { dispose(): void });
    try {
      loaded = gpu ? { ...(await openGpuModel(v, gpu)), dispose: () => {} } : await openModel(v);
    } catch (e) {
      gpu?.dispose();
      throw e;
    }
    const { model, tokenizer } = loaded;
    const disposeModel = () => {
      loaded.dispose();
      gpu?.dispose();
    };
    let draft: Awaited<ReturnType<typeof openSpeculative>> = { dispose: () => {} };
    try {
      if (model instanceof OpenELM) {
        applyAdapterOption(model, v);
        draft = await openSpeculative(v, model);
      }
    } catch (e) {
      disposeModel();
      throw e;
    }
    const dispose = () => {
      draft.dispose();
      disposeModel();
    };
    const capacity = model instanceof OpenELM ? model.cache.capacity : model.capacity;
    const note = (s: string) => process.stderr.write(`${s}\n`);
    const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: tty });
    const lines = new MultilineReader();
    const ask = () => {
      if (tty) rl.setPrompt(lines.open ? '... ' : '>>> '), rl.prompt();
    };
    // Ctrl-C stops the reply being generated; at the prompt it quits
    let generating: AbortController | undefined;
    let failures = 0;
    rl.on('SIGINT', () => {
      if (generating) generating.abort();
      else rl.close();
    });
    if (tty) process.stdout.write('Chat with the model. /help for commands, """ for a multi-line message, Ctrl-D quits.\n');
    ask();
    try {
      for await (const line of rl) {
        const input = lines.push(line);
        if (input === undefined) {
          ask();
          continue;
        }
        const text = input.trim();
        if (!text) {
          ask();
          continue;
        }
        if (text.startsWith('/') && !text.startsWith('//')) {
          const [cmd] = text.split(/\s/, 1);
          const arg = text.slice(cmd.length).trim();
          if (cmd === '/exit' || cmd === '/quit' || cmd === '/bye') break;
          try {
            if (cmd === '/help' || cmd === '/?') process.stdout.write(COMMANDS_HELP + '\n');
            else if (cmd === '/clear' || cmd === '/reset') {
              session.clear();
              process.stdout.write('(new conversation)\n');
            } else if (cmd === '/set') process.stdout.write(session.set(arg) + '\n');
            else if (cmd === '/system') process.stdout.write(session.set(`system ${arg}`) + '\n');
            else note(`unknown command ${cmd}; /help lists the commands (start a message with // to send a "/")`);
          } catch (e) {
            note(`${(e as Error).message}`);
          }
          ask();
          continue;
        }
        const content = input.startsWith('//') ? input.slice(1) : input;

        // keep the conversation inside the context: drop the oldest turns first
        const msgs = session.messages;
        const first = session.system ? 1 : 0;
        const reserve = Math.max(16, Math.min(session.opts.maxNewTokens ?? 256, Math.floor(capacity / 4)));
        msgs.push({ role: 'user', content });
        let ids = encodeChat(tokenizer, msgs);
        let dropped = 0;
        while (ids.length + reserve > capacity && msgs.length > first + 1) {
          msgs.splice(first, Math.min(2, msgs.length - first - 1));
          dropped++;
          ids = encodeChat(tokenizer, msgs);
        }
        if (ids.length + 1 > capacity) {
          msgs.pop();
          note(
            `(not sent: the message takes ${ids.length} tokens with the template${session.system ? ' and system message' : ''}, and the context holds ${capacity}; shorten it)`,
          );
          ask();
          continue;
        }
        if (dropped > 0) note(`(dropped the oldest ${dropped === 1 ? 'exchange' : `${dropped} exchanges`} to fit the context of ${capacity} tokens)`);

        generating = new AbortController();
        try {
          const it: AsyncGenerator<TokenEvent, GenerationResult> =
            model instanceof OpenELM
              ? generate(model, tokenizer, { ids }, { ...session.opts, signal: generating.signal, speculative: draft.spec })
              : gpuGenerate(model, tokenizer, { ids }, { ...session.opts, signal: generating.signal });
          let r = await it.next();
          for (; !r.done; r = await it.next()) process.stdout.write(r.value.text);
          const res = r.value;
          process.stdout.write(res.finishReason === 'aborted' ? ' [stopped]\n' : '\n');
          if (res.finishReason === 'length') {
            const room = capacity - ids.length;
            note(
              res.outputIds.length >= room
                ? `(reply cut at ${res.outputIds.length} tokens: the context of ${capacity} is full; /clear to start over)`
                : `(reply cut at the limit of ${res.outputIds.length} tokens; /set max-tokens N for longer replies)`,
            );
          }
          msgs.push({ role: 'assistant', content: res.text });
          if (v.verbose) note(timingLine(res));
          if (v.verbose && res.speculative) note(speculativeLine(res.speculative, res.outputIds.length));
        } catch (e) {
          msgs.pop(); // the user turn that failed: not part of the conversation
          failures++;
          note(`error: ${(e as Error).message}`);
          process.stdout.write('\n');
        } finally {
          generating = undefined;
        }
        ask();
      }
    } finally {
      rl.close();
      dispose();
    }
    return failures > 0 && !tty ? 1 : 0;
  },
};
