// Small helpers over node:util parseArgs: typed option specs, numeric parsing with clear errors.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { checkSampling, SamplingOptionError, type SamplingOptions } from '../generate/sampler.ts';

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

export function num(v: string | undefined, name: string, opts: { int?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (v === undefined) return undefined;
  const x = Number(v);
  if (v.trim() === '' || !Number.isFinite(x) || (opts.int && !Number.isInteger(x))) {
    throw new UsageError(`--${name} must be ${opts.int ? 'an integer' : 'a number'}, got "${v}"`);
  }
  if (opts.min !== undefined && x < opts.min) throw new UsageError(`--${name} must be ≥ ${opts.min}, got ${x}`);
  if (opts.max !== undefined && x > opts.max) throw new UsageError(`--${name} must be ≤ ${opts.max}, got ${x}`);
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
  temperature: 'temperature', topK: 'top-k', topP: 'top-p', minP: 'min-p', repetitionPenalty: 'repetition-penalty', seed: 'seed',
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
