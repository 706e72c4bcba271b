import { checkCheckpoint, formatCheckReport } from '../../check/scan.ts';
import { resolveModel } from '../../io/hub.ts';
import { parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { modelSource } from '../model-options.ts';

export const checkCommand: Command = {
  name: 'check',
  summary: "scan a checkpoint's weights: NaN / Inf, absurd magnitudes, shapes, per tensor",
  help: `Usage: openelm check [--model M | M] [--all] [--json]

Reads every tensor of a checkpoint (a folder or hub repo id; quantized ones dequantized) in
chunks and reports per tensor: NaN and Inf counts, min, max, RMS, and magnitudes no trained
OpenELM has (norm weights above 1e3, matrices with RMS above 10 or all zeros). Also reports a
config that does not match the tensors. Exits 1 when anything is wrong.

Run it when generation stops with "non-finite logit".

Options:
  -m, --model M   checkpoint folder or hub repo id (default: $OPENELM_MODEL, else the built-in model)
      --all       list every tensor (by default large checkpoints list only the ones with problems)
      --revision R hub revision (default main)
      --offline    use only the local hub cache
      --json      print {"ok", "dir", "problems", "tensors": [{name, dtype, shape, nan, inf, min, max, rms, problems}]}`,
  async run(argv) {
    const { values: v, positionals } = parse(
      argv,
      { model: { type: 'string', short: 'm' }, all: { type: 'boolean' }, revision: { type: 'string' }, offline: { type: 'boolean' } },
      true,
    );
    if (positionals.length > 1 || (positionals.length === 1 && v.model !== undefined)) throw new UsageError('give one model: --model M or M');
    if (positionals.length === 1) v.model = positionals[0];
    const dir = await resolveModel(modelSource(v), { revision: v.revision as string | undefined, offline: v.offline as boolean | undefined });
    const r = checkCheckpoint(dir);
    if (v.json) printJson(r);
    else process.stdout.write(formatCheckReport(r, Boolean(v.all)) + '\n');
    return r.ok ? 0 : 1;
  },
};
