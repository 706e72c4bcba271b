import { builtinModelDir } from '../../builtin.ts';
import { hubCacheDir } from '../../io/hub.ts';
import { listModels } from '../../io/hub-cache.ts';
import { formatBytes } from '../../io/progress.ts';
import { parse, printJson } from '../args.ts';
import type { Command } from '../command.ts';

export const listCommand: Command = {
  name: 'list',
  summary: 'list the models in the Hugging Face cache (and folders given), with size, dtype and parameters',
  help: `Usage: openelm list [FOLDER...] [--json]

Lists the models downloaded into the Hugging Face cache (~/.cache/huggingface/hub, or
$HF_HUB_CACHE / $HF_HOME/hub), the built-in model, and any checkpoint folders given: name,
parameter count, dtype of the weights, size on disk and when it was fetched. Only config.json and
the safetensors headers are read. 'openelm rm REPO' removes a model from the cache.

Options:
      --json   print [{"name", "dir", "parameters", "dtype", "bytes", "refs", "modified"}, ...]

Examples:
  openelm list
  openelm list runs/tiny models/merged`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, {}, true);
    const builtin = builtinModelDir();
    const entries = listModels({ folders: [...(builtin ? [builtin] : []), ...positionals] }).map((m) =>
      m.dir === builtin || m.name === builtin ? { ...m, name: 'builtin' } : m,
    );
    if (v.json) {
      printJson(
        entries.map((m) => ({
          name: m.name,
          dir: m.dir,
          parameters: m.parameters ?? null,
          dtype: m.dtype,
          bytes: m.bytes,
          refs: m.refs,
          modified: m.modified.toISOString(),
        })),
      );
      return 0;
    }
    const rows = [
      ['NAME', 'PARAMETERS', 'DTYPE', 'SIZE', 'MODIFIED'],
      ...entries.map((m) => [
        m.name,
        m.parameters === undefined ? '?' : humanCount(m.parameters),
        m.dtype,
        formatBytes(m.bytes),
        m.modified.toISOString().slice(0, 16).replace('T', ' '),
      ]),
    ];
    const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows)
      process.stdout.write(
        r
          .map((x, c) => (c === 1 || c === 3 ? x.padStart(w[c]) : x.padEnd(w[c])))
          .join('   ')
          .trimEnd() + '\n',
      );
    if (entries.length <= (builtin ? 1 : 0)) process.stderr.write(`no downloaded models in ${hubCacheDir()} (openelm pull apple/OpenELM-270M-Instruct)\n`);
    return 0;
  },
};

function humanCount(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}K` : String(n);
}
