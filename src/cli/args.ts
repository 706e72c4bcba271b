// Small helpers over node:util parseArgs: typed option specs, numeric parsing with clear errors.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { checkSampling, SAMPLING_LIMITS, SamplingOptionError, type SamplingOptions } from '../generate/sampler.ts';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export const COMMON: Options = {
  help: { type: 'boolean', short: 'h' },
  json: { type: 'boolean' },
};

export function parse(argv: string[], options: Options, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options: { ...COMMON, ...options }, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^TypeError( \[[A-Z_]+\])?: /, ''));
  }
}

/**
 * Ranges of flags whose library option has a stricter range than a caller may pass to num(): the
 * flag is checked here, so the error names the flag and exits 2 (not the library's RangeError).
 */
const FLAG_RANGES: Record<string, { above?: number; min?: number; max?: number }> = {
  'repetition-penalty': { min: SAMPLING_LIMITS.minRepetitionPenalty, max: SAMPLING_LIMITS.maxRepetitionPenalty },
  'top-p': { above: 0, max: 1 },
  'min-p': { min: 0, max: 1 },
  temperature: { min: 0 },
  'top-k': { min: 0 },
  seed: { min: -Number.MAX_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER },
};

export function num(v: string | undefined, name: string, opts: { int?: boolean; min?: number; max?: number; above?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || (opts.int && !Number.isInteger(x))) {
    throw new UsageError(`--${name} must be ${opts.int ? 'an integer' : 'a number'}, got "${v}"`);
  }
  const r = { ...FLAG_RANGES[name], ...opts };
  if (r.above !== undefined && !(x > r.above)) throw new UsageError(`--${name} must be > ${r.above}, got ${x}`);
  if (r.min !== undefined && x < r.min) throw new UsageError(`--${name} must be ≥ ${r.min}, got ${x}`);
  if (r.max !== undefined && x > r.max) throw new UsageError(`--${name} must be ≤ ${r.max}, got ${x}`);
  return x;
}

/** "1,2,3" or "1 2 3" → [1, 2, 3] */
export function idList(v: string, name: string): number[] {
  const parts = v.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0) throw new UsageError(`--${name} needs at least one token id`);
  return parts.map((p) => {
    const x = Number(p);
    if (!Number.isInteger(x) || x < 0) throw new UsageError(`--${name}: "${p}" is not a token id (a non-negative integer)`);
    return x;
  });
}

export function out(s: string): void {
  process.stdout.write(s);
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v) + '\n');
}

/** The flag of each sampling option. */
export const SAMPLING_FLAGS: Record<keyof SamplingOptions, string> = {
  temperature: 'temperature',
  topK: 'top-k',
  topP: 'top-p',
  minP: 'min-p',
  repetitionPenalty: 'repetition-penalty',
  seed: 'seed',
};

/** Checks sampling options parsed from flags; an out-of-range value is a UsageError naming its flag (exit 2). */
export function checkSamplingFlags<T extends SamplingOptions>(o: T): T {
  try {
    checkSampling(o);
  } catch (e) {
    if (e instanceof SamplingOptionError) throw new UsageError(e.message.replace(/^\w+/, `--${SAMPLING_FLAGS[e.option]}`));
    throw e;
  }
  return o;
}

/** What `generate` reports about speed: prompt and generation tokens/s (from a GenerationResult's counts and timings). */
export interface SpeedFigures {
  promptTokens: number;
  promptMs: number;
  generatedTokens: number;
  generateMs: number;
}

/** The one-line summary `generate` prints on stderr when it finishes (like llama.cpp / ollama --verbose). */
export function speedLine(s: SpeedFigures): string {
  const tps = (n: number, ms: number) => (ms > 0 ? (n / ms) * 1000 : 0).toFixed(1);
  return `prompt: ${s.promptTokens} tokens, ${tps(s.promptTokens, s.promptMs)} tokens/s · generation: ${s.generatedTokens} tokens, ${tps(s.generatedTokens, s.generateMs)} tokens/s`;
}

/** The same figures for --json, rounded (ms to 0.1, tokens/s to 0.01). */
export function speedJson(s: SpeedFigures): Record<string, number> {
  const r = (x: number, d: number) => Math.round(x * d) / d;
  const tps = (n: number, ms: number) => (ms > 0 ? r((n / ms) * 1000, 100) : 0);
  return {
    prompt_tokens: s.promptTokens,
    prompt_ms: r(s.promptMs, 10),
    prompt_tokens_per_s: tps(s.promptTokens, s.promptMs),
    generated_tokens: s.generatedTokens,
    generate_ms: r(s.generateMs, 10),
    generate_tokens_per_s: tps(s.generatedTokens, s.generateMs),
  };
}
