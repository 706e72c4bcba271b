import fs from 'node:fs';
import { resolveModel } from '../../io/hub.ts';
import { loadTokenizer, type Tokenizer } from '../../tokenizer/index.ts';
import { idList, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

async function tokenizerFor(model: string | undefined, offline?: boolean): Promise<Tokenizer> {
  const m = model ?? process.env.OPENELM_MODEL;
  if (!m) return loadTokenizer();
  return loadTokenizer(await resolveModel(m, { offline }));
}

/** The positional text, or stdin when it is "-" or absent and stdin is piped. */
function inputText(positionals: string[], what: string): string {
  if (positionals.length > 0 && positionals[0] !== '-') return positionals.join(' ');
  if (process.stdin.isTTY && positionals[0] !== '-') throw new UsageError(`give the ${what} as an argument, or pipe it on stdin`);
  return fs.readFileSync(0, 'utf8');
}

export const tokenizeCommand: Command = {
  name: 'tokenize',
  summary: 'text → token ids (LLaMA-2 SentencePiece, no BOS)',
  help: `Usage: openelm tokenize [--model M] [--bos] [--json] TEXT   (or pipe the text on stdin)

Prints the token ids of TEXT. Uses the model folder's tokenizer.model / tokenizer.json when
present, else the built-in LLaMA-2 vocabulary. With --json: {"ids": [...], "pieces": [...]}.

Options:
  -m, --model M   model folder or hub repo id whose tokenizer to use
      --bos       prepend the BOS token (as generation does)
      --json      machine-readable output`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, { model: { type: 'string', short: 'm' }, bos: { type: 'boolean' }, offline: { type: 'boolean' } }, true);
    const tok = await tokenizerFor(v.model as string | undefined, v.offline as boolean | undefined);
    const text = inputText(positionals, 'text');
    const ids = tok.encode(text, { bos: Boolean(v.bos) });
    if (v.json) printJson({ ids, pieces: ids.map((id) => tok.idToPiece(id)) });
    else process.stdout.write(ids.join(' ') + '\n');
  },
};

export const detokenizeCommand: Command = {
  name: 'detokenize',
  summary: 'token ids → text',
  help: `Usage: openelm detokenize [--model M] [--json] IDS   (comma or space separated, or on stdin)

Options:
  -m, --model M   model folder or hub repo id whose tokenizer to use
      --json      print {"text": "..."}`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, { model: { type: 'string', short: 'm' }, offline: { type: 'boolean' } }, true);
    const tok = await tokenizerFor(v.model as string | undefined, v.offline as boolean | undefined);
    const ids = idList(inputText(positionals, 'token ids'), 'ids');
    for (const id of ids) if (id >= tok.vocabSize) throw new UsageError(`token id ${id} is outside the vocabulary [0, ${tok.vocabSize})`);
    const text = tok.decode(ids);
    if (v.json) printJson({ text });
    else process.stdout.write(text + '\n');
  },
};
