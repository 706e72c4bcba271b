// The built-in model (builtin/openelm-sotu): shipped, small, layer-wise scaled, the default model of
// the CLI, and its greedy continuations are English: at least 80 % of the words of a 48-token
// continuation of each prompt are in a dictionary (Debian's wamerican list).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { builtinModelDir } from '../src/builtin.ts';
import { generateText } from '../src/generate/generate.ts';
import { loadModel } from '../src/load.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DICT = '/usr/share/dict/american-english';
export const PROMPTS = [
  'The state of the Union is',
  'Our nation',
  'The Congress',
  'In the past year',
  'We must',
  'The American people',
  'Our economy',
  'I ask the Congress to',
];

test('the built-in model ships: ≤ 40 MB, layer-wise scaled, with its recipe, log and loss curve', () => {
  const dir = builtinModelDir();
  assert.ok(dir, 'builtin/openelm-sotu/model.safetensors is missing');
  const bytes = fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);
  assert.ok(bytes <= 40e6, `${bytes} bytes of weights`);
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
  assert.equal(cfg.vocab_size, 32000);
  assert.ok(new Set(cfg.num_query_heads).size > 1 && new Set(cfg.ffn_dims ?? cfg.ffn_multipliers).size > 1, 'layer-wise scaled');
  for (const f of ['recipe.yaml', 'train.jsonl', 'loss.svg', 'README.md']) assert.ok(fs.existsSync(path.join(dir, f)), f);
});

test('greedy continuations of the built-in model are English (≥ 80 % dictionary words, prompt by prompt)', {
  skip: !fs.existsSync(DICT) && !process.env.CI ? `${DICT} missing: apt-get install wamerican` : false,
}, async () => {
  const words = new Set(
    fs
      .readFileSync(DICT, 'utf8')
      .split('\n')
      .map((w) => w.toLowerCase()),
  );
  const { model, tokenizer, dispose } = await loadModel(builtinModelDir()!, { threads: 2 });
  try {
    for (const prompt of PROMPTS) {
      const r = await generateText(model, tokenizer, prompt, { maxNewTokens: 48, temperature: 0, ignoreEos: true });
      const ws = r.text.match(/[A-Za-z]+/g) ?? [];
      const known = ws.filter((w) => words.has(w.toLowerCase())).length;
      assert.ok(ws.length >= 10, `"${prompt}" → ${JSON.stringify(r.text)}: too few words`);
      assert.ok(known / ws.length >= 0.8, `"${prompt}" → ${JSON.stringify(r.text)}: ${known}/${ws.length} dictionary words`);
    }
  } finally {
    dispose();
  }
});

test('openelm generate without --model runs the built-in model, the prompt as an argument', () => {
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts'), 'generate', 'The state of the Union is', '-n', '12', '--temperature', '0', '--json'],
    { encoding: 'utf8', cwd: ROOT, env: { ...process.env, OPENELM_MODEL: '' } },
  );
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout);
  assert.equal(out.output_ids.length, 12);
  assert.ok(out.text.trim().length > 0);
});
