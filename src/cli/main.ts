// `openelm`: a thin command-line layer over the library API.
import { UsageError } from './args.ts';
import type { Command } from './command.ts';
import { benchCommand } from './commands/bench.ts';
import { chatCommand } from './commands/chat.ts';
import { checkCommand } from './commands/check.ts';
import { evalCommand } from './commands/eval.ts';
import { exportCommand } from './commands/export.ts';
import { finetuneCommand } from './commands/finetune.ts';
import { generateCommand } from './commands/generate.ts';
import { initCommand } from './commands/init.ts';
import { inspectCommand } from './commands/inspect.ts';
import { listCommand } from './commands/list.ts';
import { logitsCommand } from './commands/logits.ts';
import { mergeCommand } from './commands/merge.ts';
import { plotCommand } from './commands/plot.ts';
import { pullCommand } from './commands/pull.ts';
import { quantizeCommand } from './commands/quantize.ts';
import { rmCommand } from './commands/rm.ts';
import { serveCommand } from './commands/serve.ts';
import { detokenizeCommand, tokenizeCommand } from './commands/tokenize.ts';
import { trainCommand } from './commands/train.ts';

const COMMANDS: Command[] = [
  generateCommand,
  chatCommand,
  logitsCommand,
  tokenizeCommand,
  detokenizeCommand,
  inspectCommand,
  initCommand,
  pullCommand,
  listCommand,
  rmCommand,
  quantizeCommand,
  exportCommand,
  benchCommand,
  checkCommand,
  trainCommand,
  finetuneCommand,
  mergeCommand,
  plotCommand,
  evalCommand,
  serveCommand,
];

function usage(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return `openelm — Apple's OpenELM language models in TypeScript

Usage: openelm <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

Models (--model): a local Hugging Face checkpoint folder, or a hub repo id such as
apple/OpenELM-270M-Instruct (downloaded once into ~/.cache/huggingface/hub; set HF_TOKEN
for gated repos, HF_HUB_OFFLINE=1 to use only the cache).

Run 'openelm <command> --help' for a command's options. Add --json for machine-readable output.
`;
}

/**
 * A reader that goes away (`openelm generate ... | head -c 10`) is the end of the output, not an
 * error: stop quietly with status 0 instead of an EPIPE stack trace.
 */
let pipesHandled = false;
function endOnBrokenPipe(): void {
  if (pipesHandled) return;
  pipesHandled = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EPIPE') process.exit(0);
      throw e;
    });
  }
}

export async function main(argv: string[]): Promise<number> {
  endOnBrokenPipe();
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 1;
  }
  if (name === '--version' || name === '-v') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8'));
    process.stdout.write(`openelm ${pkg.version}\n`);
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`openelm: unknown command "${name}"\n\n${usage()}`);
    return 2;
  }
  const json = rest.includes('--json');
  try {
    if (rest.includes('--help') || rest.includes('-h')) {
      process.stdout.write(cmd.help + '\n');
      return 0;
    }
    return (await cmd.run(rest)) ?? 0;
  } catch (e) {
    const err = e as Error;
    if (json) process.stdout.write(JSON.stringify({ error: { type: err.name, message: err.message } }) + '\n');
    process.stderr.write(`openelm ${name}: ${err.message}\n`);
    if (err instanceof UsageError) process.stderr.write(`Run 'openelm ${name} --help' for usage.\n`);
    if (process.env.OPENELM_DEBUG) process.stderr.write(`${err.stack}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

// Run directly (node --import tsx src/cli/main.ts ...): the bin script imports main() instead.
if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
