// The benchmarks' command lines: node's parseArgs plus `--help` / `-h`, which prints the leading
// comment of the benchmark's file (its usage), and a one-line error naming a bad option instead
// of a stack trace.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type ParseArgsConfig, parseArgs } from 'node:util';

type Options = NonNullable<ParseArgsConfig['options']>;

/** the `//` comment at the top of a file (after any `///` directives), markers removed */
export function usageOf(file: string): string {
  const lines = readFileSync(file, 'utf8').split('\n');
  let i = 0;
  while (i < lines.length && lines[i].startsWith('///')) i++;
  const out: string[] = [];
  for (; i < lines.length && lines[i].startsWith('//'); i++) out.push(lines[i].replace(/^\/\/ ?/, ''));
  return out.join('\n').trim();
}

/** parses process.argv for the benchmark at `moduleUrl` (its import.meta.url) */
export function benchArgs<O extends Options>(moduleUrl: string, options: O) {
  const all = { ...options, help: { type: 'boolean', short: 'h' } } as O & { help: { type: 'boolean'; short: 'h' } };
  try {
    const parsed = parseArgs({ options: all, allowPositionals: false });
    if ((parsed.values as { help?: boolean }).help) {
      process.stdout.write(usageOf(fileURLToPath(moduleUrl)) + '\n');
      process.exit(0);
    }
    return parsed;
  } catch (e) {
    usageError((e as Error).message);
  }
}

/** a command-line mistake: the message and a pointer to --help on stderr, exit 2 */
export function usageError(message: string): never {
  process.stderr.write(`${message}\n(--help lists the options)\n`);
  process.exit(2);
}
