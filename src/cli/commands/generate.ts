import { encodeChat } from '../../generate/chat.ts';
import { type GenerateOptions, type GenerationResult, generate, type Prompt, type TokenEvent } from '../../generate/generate.ts';
import { gpuGenerate } from '../../generate/gpu.ts';
import type { SpeculativeOptions, SpeculativeStats } from '../../generate/speculative.ts';
import { type LoadedOpenELM, loadOpenELM } from '../../load.ts';
import { OpenELM } from '../../model/openelm.ts';
import { ADAPTER_HELP, ADAPTER_OPTION, applyAdapterOption } from '../adapter-option.ts';
import { checkSamplingFlags, idList, num, parse, printJson, type SpeedFigures, speedJson, speedLine, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { DEVICE_HELP, DEVICE_OPTION, deviceJson, openDevice } from '../device-option.ts';
import { MODEL_HELP, MODEL_OPTIONS, modelSource, openGpuModel, openModel, parseDType, parseThreads } from '../model-options.ts';

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

export const SPECULATIVE_OPTIONS = {
  'draft-model': { type: 'string' },
  'draft-dtype': { type: 'string' },
  'draft-tokens': { type: 'string' },
  'draft-fixed': { type: 'boolean' },
  'prompt-lookup': { type: 'string' },
} as const;

export const SPECULATIVE_HELP = `Speculative decoding (the output is the model's: greedy text is identical):
      --draft-model M        a draft model with the same vocabulary: a smaller OpenELM, the built-in
                             model, or the model itself with --draft-dtype q4 (a 4-bit copy)
      --draft-dtype D        the draft's weight storage (default auto)
      --draft-tokens K       tokens the draft proposes per round, at most (default 4)
      --prompt-lookup N      no draft model: propose N tokens that followed the last matching
                             n-gram of the text so far (OpenELM's card suggests 10)
      --draft-fixed          always K (N) per round; by default greedy decoding drafts 0..K each
                             round (serve: each batched step), whichever the costs timed so far
                             and the share of drafts kept make fastest (so a draft that does not
                             pay is soon left out); sampling always drafts K`;

/** The draft model and options the speculative flags ask for (nothing without them); dispose() frees the draft. */
export async function openSpeculative(v: Record<string, unknown>, target: OpenELM, quiet = false): Promise<{ spec?: SpeculativeOptions; dispose: () => void }> {
  const lookup = num(v['prompt-lookup'] as string | undefined, 'prompt-lookup', { int: true, min: 1, max: 64 });
  const draftTokens = num(v['draft-tokens'] as string | undefined, 'draft-tokens', { int: true, min: 1, max: 64 });
  if (v['draft-model'] === undefined) {
    if (v['draft-dtype'] !== undefined || draftTokens !== undefined)
      throw new UsageError(`--${v['draft-dtype'] !== undefined ? 'draft-dtype' : 'draft-tokens'} needs --draft-model`);
    if (v['draft-fixed'] && lookup === undefined) throw new UsageError('--draft-fixed needs --draft-model or --prompt-lookup');
    return { spec: lookup === undefined ? undefined : { promptLookup: lookup, adaptive: !v['draft-fixed'] }, dispose: () => {} };
  }
  if (lookup !== undefined) throw new UsageError('give --draft-model or --prompt-lookup, not both');
  const dtype = parseDType(v['draft-dtype'] as string | undefined, 'draft-dtype');
  const draft: LoadedOpenELM = await loadOpenELM(modelSource({ model: v['draft-model'] }), {
    dtype,
    threads: parseThreads(v.threads as string | undefined),
    backend: (v.backend as 'wasm' | 'ref' | undefined) ?? 'wasm',
    contextLength: num(v.context as string | undefined, 'context', { int: true, min: 1 }),
    offline: v.offline as boolean | undefined,
  }).catch((e: Error) => {
    throw new UsageError(`--draft-model: ${e.message}`);
  });
  if (draft.model.config.vocab_size !== target.config.vocab_size) {
    draft.dispose();
    throw new UsageError(
      `--draft-model ${v['draft-model']}: its vocabulary has ${draft.model.config.vocab_size} tokens, the model's ${target.config.vocab_size}; a draft must share the tokenizer`,
    );
  }
  if (!quiet) process.stderr.write(`draft: ${draft.dir}${dtype === 'auto' ? '' : ` as ${dtype}`}\n`);
  return { spec: { draft: draft.model, draftTokens, adaptive: !v['draft-fixed'] }, dispose: () => draft.dispose() };
}

/** "draft: 82% of 160 tokens kept, 3.3 tokens per pass" */
export function speculativeLine(s: SpeculativeStats, generated: number): string {
  const rate = s.drafted ? (100 * s.accepted) / s.drafted : 0;
  // the first token comes from the prompt's pass; every later pass (a check or a plain step) adds its kept drafts + 1
  const passes = Math.max(1, generated - 1 - s.accepted);
  return `draft: ${rate.toFixed(0)}% of ${s.drafted} proposed tokens kept, ${((generated - 1) / passes).toFixed(2)} tokens per pass of the model`;
}

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
  return (
    `prefill: ${pre} tokens in ${r.prefillMs.toFixed(0)} ms (${tps(pre, r.prefillMs)} tok/s) · ` +
    `decode: ${r.outputIds.length} tokens in ${r.decodeMs.toFixed(0)} ms (${tps(r.outputIds.length, r.decodeMs)} tok/s) · ${r.finishReason}`
  );
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
      --json                 print {"output_ids", "text", "prompt_ids", "finish_reason", "speed", "device", ...} at the end
${DEVICE_HELP}
${SAMPLING_HELP}
${SPECULATIVE_HELP}
${MODEL_HELP}
${ADAPTER_HELP}

Examples:
  openelm generate "The state of the Union is"
  openelm generate -m apple/OpenELM-270M -p "Once upon a time" -n 64
  openelm generate -m ./my-model --prompt-ids 1,450,4996 --temperature 0 --json
  openelm generate -m apple/OpenELM-1_1B --draft-model apple/OpenELM-1_1B --draft-dtype q4 -p "..."
  openelm generate -m apple/OpenELM-270M-Instruct --chat --prompt-lookup 10 -p "Summarize: ..."
  openelm generate --device webgpu "The state of the Union is" --temperature 0`,
  async run(argv) {
    const { values: v, positionals } = parse(
      argv,
      {
        ...MODEL_OPTIONS,
        ...ADAPTER_OPTION,
        ...SAMPLING_OPTIONS,
        ...SPECULATIVE_OPTIONS,
        ...DEVICE_OPTION,
        prompt: { type: 'string', short: 'p' },
        'prompt-ids': { type: 'string' },
        chat: { type: 'boolean' },
        system: { type: 'string' },
        'ignore-eos': { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
        quiet: { type: 'boolean', short: 'q' },
      },
      true,
    );
    if (positionals.length > 1)
      throw new UsageError(`one prompt expected, got ${positionals.length} arguments; quote the prompt: openelm generate "${positionals.join(' ')}"`);
    if (positionals.length === 1) {
      if (v.prompt !== undefined) throw new UsageError('give the prompt once: as an argument or with --prompt, not both');
      v.prompt = positionals[0];
    }
    if ((v.prompt === undefined) === (v['prompt-ids'] === undefined)) throw new UsageError('give exactly one of PROMPT (or --prompt TEXT) or --prompt-ids IDS');
    const opts = { ...samplingOptions(v), ignoreEos: v['ignore-eos'] as boolean | undefined };
    const gpu = await openDevice(v, Boolean(v.json) || Boolean(v.quiet));
    // on the GPU the weights go straight to the device, tensor by tensor; the CPU model is never made
    let loaded: Awaited<ReturnType<typeof openModel>> | (Awaited<ReturnType<typeof openGpuModel>> & { dispose(): void });
    try {
      loaded = gpu ? { ...(await openGpuModel(v, gpu, Boolean(v.json))), dispose: () => {} } : await openModel(v, Boolean(v.json));
    } catch (e) {
      gpu?.dispose();
      throw e;
    }
    const { tokenizer } = loaded;
    const dispose = () => {
      loaded.dispose();
      gpu?.dispose();
    };
    let draft = { dispose: () => {} } as Awaited<ReturnType<typeof openSpeculative>>;
    try {
      const model = loaded.model;
      if (model instanceof OpenELM) {
        draft = await openSpeculative(v, model, Boolean(v.json));
        applyAdapterOption(model, v);
      }
      let prompt: Prompt;
      if (v['prompt-ids'] !== undefined) prompt = { ids: idList(v['prompt-ids'] as string, 'prompt-ids') };
      else if (v.chat) {
        const msgs = [...(v.system ? [{ role: 'system' as const, content: v.system as string }] : []), { role: 'user' as const, content: v.prompt as string }];
        prompt = { ids: encodeChat(tokenizer, msgs) };
      } else prompt = v.prompt as string;
      const it: AsyncGenerator<TokenEvent, GenerationResult> =
        model instanceof OpenELM ? generate(model, tokenizer, prompt, { ...opts, speculative: draft.spec }) : gpuGenerate(model, tokenizer, prompt, opts);
      let r = await it.next();
      for (; !r.done; r = await it.next()) if (!v.json) process.stdout.write(r.value.text);
      const res = r.value;
      const speed: SpeedFigures = {
        promptTokens: res.promptIds.length - res.cachedTokens,
        promptMs: res.prefillMs,
        generatedTokens: res.outputIds.length,
        generateMs: res.decodeMs,
      };
      if (v.json) {
        printJson({
          prompt_ids: res.promptIds,
          output_ids: res.outputIds,
          text: res.text,
          finish_reason: res.finishReason,
          timings: { prefill_ms: res.prefillMs, decode_ms: res.decodeMs },
          speed: speedJson(speed),
          ...deviceJson(gpu),
          ...(res.speculative
            ? { speculative: { ...res.speculative, acceptance: res.speculative.drafted ? res.speculative.accepted / res.speculative.drafted : 0 } }
            : {}),
        });
      } else process.stdout.write('\n');
      if (v.verbose) process.stderr.write(timingLine(res) + '\n');
      else if (!v.quiet && !v.json) process.stderr.write(speedLine(speed) + '\n');
      if (res.speculative && !v.quiet && !v.json) process.stderr.write(speculativeLine(res.speculative, res.outputIds.length) + '\n');
    } finally {
      draft.dispose();
      dispose();
    }
  },
};
