import { checkSamplingFlags, idList, num, parse, printJson, speedJson, speedLine, UsageError, type SpeedFigures } from '../args.ts';
import type { Command } from '../command.ts';
import { MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.ts';
import { ADAPTER_HELP, ADAPTER_OPTION, applyAdapterOption } from '../adapter-option.ts';
import { generate, type GenerateOptions, type GenerationResult, type Prompt } from '../../generate/generate.ts';
import { encodeChat } from '../../generate/chat.ts';

export const SAMPLING_OPTIONS = {
  'max-new-tokens': { type: 'string', short: 'n' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  seed: { type: 'string' },
  stop: { type: 'string', multiple: true },
} as const;

export const SAMPLING_HELP = `Sampling options:
  -n, --max-new-tokens N     tokens to generate (default 256)
      --temperature T        0 = greedy argmax (default 0.7)
      --top-k K              keep the K most likely tokens (default 0 = off)
      --top-p P              nucleus sampling mass (default 0.9; 1 = off)
      --min-p P              drop tokens below P × the top probability (default 0 = off)
      --repetition-penalty R HF repetition penalty (default 1 = off; OpenELM's card suggests 1.2)
      --seed S               seed for reproducible sampling
      --stop TEXT            stop when TEXT appears (repeatable)`;

export function samplingOptions(v: Record<string, unknown>): GenerateOptions {
  return checkSamplingFlags({
    maxNewTokens: num(v['max-new-tokens'] as string, 'max-new-tokens', { int: true, min: 0 }),
    temperature: num(v.temperature as string, 'temperature', { min: 0 }),
    topK: num(v['top-k'] as string, 'top-k', { int: true, min: 0 }),
    topP: num(v['top-p'] as string, 'top-p', { min: 0, max: 1 }),
    minP: num(v['min-p'] as string, 'min-p', { min: 0, max: 1 }),
    repetitionPenalty: num(v['repetition-penalty'] as string, 'repetition-penalty'),
    seed: num(v.seed as string, 'seed', { int: true }),
    stop: v.stop as string[] | undefined,
  });
}

export function timingLine(r: GenerationResult): string {
  const pre = r.promptIds.length - r.cachedTokens;
  const tps = (n: number, ms: number) => (ms > 0 ? (n / ms) * 1000 : 0).toFixed(1);
  return `prefill: ${pre} tokens in ${r.prefillMs.toFixed(0)} ms (${tps(pre, r.prefillMs)} tok/s) · ` +
    `decode: ${r.outputIds.length} tokens in ${r.decodeMs.toFixed(0)} ms (${tps(r.outputIds.length, r.decodeMs)} tok/s) · ${r.finishReason}`;
}

export const generateCommand: Command = {
  name: 'generate',
  summary: 'generate text from a prompt, streaming tokens',
  help: `Usage: openelm generate [--model M] (PROMPT | --prompt TEXT | --prompt-ids 1,2,3) [options]

Streams the continuation of a prompt. A text prompt gets a BOS token first, as the Hugging Face
tokenizer adds it; --prompt-ids are used exactly as given. Without --model, the built-in model.

Options:
  PROMPT, -p, --prompt TEXT  the prompt text
      --prompt-ids IDS       the prompt as token ids (comma separated)
      --chat                 wrap the prompt in the -Instruct chat template
      --system TEXT          system message (with --chat)
      --ignore-eos           keep going past the end-of-sequence token
  -q, --quiet                no speed summary on stderr at the end
  -v, --verbose              print timings and the finish reason to stderr instead
      --json                 print {"output_ids", "text", "prompt_ids", "finish_reason", "speed", ...} at the end
${SAMPLING_HELP}
${MODEL_HELP}
${ADAPTER_HELP}

Examples:
  openelm generate "The state of the Union is"
  openelm generate -m apple/OpenELM-270M -p "Once upon a time" -n 64
  openelm generate -m ./my-model --prompt-ids 1,450,4996 --temperature 0 --json`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, {
      ...MODEL_OPTIONS, ...ADAPTER_OPTION, ...SAMPLING_OPTIONS,
      prompt: { type: 'string', short: 'p' }, 'prompt-ids': { type: 'string' },
      chat: { type: 'boolean' }, system: { type: 'string' }, 'ignore-eos': { type: 'boolean' }, verbose: { type: 'boolean', short: 'v' },
      quiet: { type: 'boolean', short: 'q' },
    }, true);
    if (positionals.length > 1) throw new UsageError(`one prompt expected, got ${positionals.length} arguments; quote the prompt: openelm generate "${positionals.join(' ')}"`);
    if (positionals.length === 1) {
      if (v.prompt !== undefined) throw new UsageError('give the prompt once: as an argument or with --prompt, not both');
      v.prompt = positionals[0];
    }
    if ((v.prompt === undefined) === (v['prompt-ids'] === undefined)) throw new UsageError('give exactly one of PROMPT (or --prompt TEXT) or --prompt-ids IDS');
    const opts = { ...samplingOptions(v), ignoreEos: v['ignore-eos'] as boolean | undefined };
    const { model, tokenizer, dispose } = await openModel(v, Boolean(v.json));
    try {
      applyAdapterOption(model, v);
      let prompt: Prompt;
      if (v['prompt-ids'] !== undefined) prompt = { ids: idList(v['prompt-ids'] as string, 'prompt-ids') };
      else if (v.chat) {
        const msgs = [...(v.system ? [{ role: 'system' as const, content: v.system as string }] : []), { role: 'user' as const, content: v.prompt as string }];
        prompt = { ids: encodeChat(tokenizer, msgs) };
      } else prompt = v.prompt as string;
      const it = generate(model, tokenizer, prompt, opts);
      let r = await it.next();
      for (; !r.done; r = await it.next()) if (!v.json) process.stdout.write(r.value.text);
      const res = r.value;
      const speed: SpeedFigures = {
        promptTokens: res.promptIds.length - res.cachedTokens, promptMs: res.prefillMs, generatedTokens: res.outputIds.length, generateMs: res.decodeMs,
      };
      if (v.json) {
        printJson({
          prompt_ids: res.promptIds, output_ids: res.outputIds, text: res.text, finish_reason: res.finishReason,
          timings: { prefill_ms: res.prefillMs, decode_ms: res.decodeMs }, speed: speedJson(speed),
        });
      } else process.stdout.write('\n');
      if (v.verbose) process.stderr.write(timingLine(res) + '\n');
      else if (!v.quiet && !v.json) process.stderr.write(speedLine(speed) + '\n');
    } finally {
      dispose();
    }
  },
};
