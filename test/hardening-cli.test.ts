// The CLI's rough edges: chat never ends itself on a long message, has /help /clear /set, """
// blocks, refuses unknown /commands, says when a reply was cut or old turns were dropped;
// `openelm check` reports NaN weights per tensor; output into a closed pipe ends quietly.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { checkCheckpoint } from '../src/check/scan.ts';
import { ChatSession, MultilineReader } from '../src/cli/commands/chat.ts';
import { quantizeCheckpoint } from '../src/cli/commands/quantize.ts';
import { openSafetensors } from '../src/io/safetensors.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = path.join(ROOT, 'test/fixtures/openelm');
const TINY = path.join(FIX, 'tiny-f32');
const VOCAB = path.join(FIX, 'tiny-vocab32k-bf16'); // context 128, the LLaMA-2 vocabulary
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-hcli-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));

function cli(args: string[], input = '') {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    input,
    timeout: 60_000,
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const chat = (input: string, ...extra: string[]) => cli(['chat', '-m', VOCAB, '--temperature', '0', '-n', '4', '--threads', '1', ...extra], input);

test('""" blocks make one message; single-line """x""" too', () => {
  const r = new MultilineReader();
  assert.equal(r.push('hello'), 'hello');
  assert.equal(r.push('"""first'), undefined);
  assert.ok(r.open);
  assert.equal(r.push('second'), undefined);
  assert.equal(r.push('third"""'), 'first\nsecond\nthird');
  assert.ok(!r.open);
  assert.equal(r.push('"""'), undefined);
  assert.equal(r.push('a'), undefined);
  assert.equal(r.push('"""'), 'a\n');
  assert.equal(r.push('"""one line"""'), 'one line');
});

test('/set checks values like the flags and names the setting; /set system starts over', () => {
  const s = new ChatSession(undefined, {});
  assert.equal(s.set('temperature 0.2'), '(temperature = 0.2)');
  assert.equal(s.opts.temperature, 0.2);
  assert.equal(s.set('max-tokens 5'), '(max-tokens = 5)');
  assert.equal(s.opts.maxNewTokens, 5);
  assert.throws(() => s.set('top-p 7'), /^UsageError: \/set top-p must be ≤ 1, got 7|\/set top-p must be/);
  assert.throws(() => s.set('repetition-penalty 0'), /\/set repetition-penalty must be ≥ 0\.001, got 0/);
  assert.throws(() => s.set('top-p 0'), /\/set top-p must be > 0, got 0/);
  assert.throws(() => s.set('temperature hot'), /\/set temperature must be a number, got "hot"/);
  assert.throws(() => s.set('warmth 3'), /unknown setting "warmth"/);
  assert.equal(s.opts.topP, undefined, 'a refused value changes nothing');
  s.messages.push({ role: 'user', content: 'x' });
  assert.match(s.set('system Be brief.'), /system message set; new conversation/);
  assert.deepEqual(s.messages, [{ role: 'system', content: 'Be brief.' }]);
  assert.match(s.set(''), /temperature 0\.2 .* max-tokens 5\nsystem: "Be brief\."/);
});

test('chat: commands are never sent to the model; unknown ones are refused; // sends a slash', () => {
  const r = chat('/help\n/nonsense\n/set max-tokens 2\n//etc/passwd\n/clear\n');
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /\/set max-tokens N {5}longest reply in tokens/);
  assert.match(r.err, /unknown command \/nonsense; \/help lists the commands/);
  assert.match(r.out, /\(max-tokens = 2\)/);
  assert.match(r.out, /\(new conversation\)/);
  // exactly one reply (to "/etc/passwd"), cut at 2 tokens, and said so
  assert.equal((r.err.match(/reply cut at the limit of 2 tokens/g) ?? []).length, 1, r.err);
});

test('chat: a message longer than the context is refused and the chat goes on; old turns dropped are announced', () => {
  const long = 'word '.repeat(400);
  const r = chat(`Hello\n${long}\nStill there?\n`);
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, /not sent: the message takes \d+ tokens with the template, and the context holds 128; shorten it/);
  assert.equal(r.out.trim().split('\n').length, 2, `two replies: ${r.out}`);

  // medium messages: the conversation outgrows 128 tokens and the oldest exchanges go
  const medium = Array.from({ length: 5 }, (_, i) => `message ${i} ${'lorem ipsum dolor '.repeat(6)}`).join('\n');
  const d = chat(`${medium}\n`);
  assert.equal(d.code, 0, d.err);
  assert.match(d.err, /dropped the oldest (exchange|\d+ exchanges) to fit the context of 128 tokens/);
  assert.equal(d.out.trim().split('\n').length, 5);
});

test('chat: """ multi-line input is one turn', () => {
  const r = chat('"""\nfirst line\nsecond line\n"""\n/set\n');
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out.split('\n').filter((l) => l.startsWith('temperature')).length, 1);
  assert.equal((r.err.match(/reply cut/g) ?? []).length, 1, 'one reply for the block');
});

/** A copy of `src` with `value` written at element `index` of tensor `name` (F32). */
function poisoned(src: string, name: string, index: number, value: number): string {
  const dir = fs.mkdtempSync(path.join(root, 'poison-'));
  for (const f of fs.readdirSync(src)) if (!f.endsWith('.json') || f === 'config.json') fs.copyFileSync(path.join(src, f), path.join(dir, f));
  const file = path.join(dir, 'model.safetensors');
  const st = openSafetensors(file);
  const t = st.tensors.get(name)!;
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  fs.writeSync(fd, b, 0, 4, st.dataStart + t.dataOffsets[0] + 4 * index);
  fs.closeSync(fd);
  return dir;
}

test('openelm check: a clean checkpoint passes; NaN, Inf and absurd norms are reported per tensor (exit 1)', () => {
  let r = cli(['check', '--model', TINY]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /34 tensors scanned, no problem found/);

  const nan = poisoned(TINY, 'transformer.layers.2.attn.qkv_proj.weight', 17, NaN);
  r = cli(['check', nan, '--json']);
  assert.equal(r.code, 1, r.err);
  const rep = JSON.parse(r.out);
  assert.equal(rep.ok, false);
  const bad = rep.tensors.filter((t: { problems: string[] }) => t.problems.length);
  assert.deepEqual(
    bad.map((t: { name: string }) => t.name),
    ['transformer.layers.2.attn.qkv_proj.weight'],
  );
  assert.equal(bad[0].nan, 1);
  assert.match(bad[0].problems[0], /^1 NaN value\(s\) of \d+$/);

  const norm = poisoned(TINY, 'transformer.layers.0.ffn_norm.weight', 3, 5e4);
  const inf = poisoned(norm, 'transformer.norm.weight', 0, -Infinity);
  const rep2 = checkCheckpoint(inf);
  const by = new Map(rep2.tensors.map((t) => [t.name, t]));
  assert.match(by.get('transformer.layers.0.ffn_norm.weight')!.problems.join(), /a norm weight of magnitude 5\.00e\+4/);
  assert.match(by.get('transformer.norm.weight')!.problems.join(), /1 infinite value/);
  r = cli(['check', '-m', inf]);
  assert.equal(r.code, 1);
  assert.match(r.out, /2 of 34 tensors with problems/);
});

test('openelm check: quantized checkpoints are dequantized (a NaN block scale is found); structural problems are reported', () => {
  const q = path.join(root, 'q8');
  quantizeCheckpoint(TINY, q, 'q8_0');
  assert.ok(checkCheckpoint(q).ok);
  // a NaN f16 scale (0x7e00) in the first block of a row
  const file = path.join(q, 'model.safetensors');
  const st = openSafetensors(file);
  const t = st.tensors.get('transformer.layers.1.ffn.proj_2.weight')!;
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([0x00, 0x7e]), 0, 2, st.dataStart + t.dataOffsets[0]);
  fs.closeSync(fd);
  const rep = checkCheckpoint(q);
  const bad = rep.tensors.filter((x) => x.problems.length);
  assert.deepEqual(
    bad.map((x) => x.name),
    ['transformer.layers.1.ffn.proj_2.weight'],
  );
  assert.match(bad[0].problems[0], /NaN value\(s\) of \d+ \(a NaN block scale\?\)/);
  assert.equal(bad[0].dtype, 'q8_0');

  // a config that does not match: reported, and the tensors still scanned
  const mismatch = fs.mkdtempSync(path.join(root, 'mm-'));
  fs.copyFileSync(path.join(TINY, 'model.safetensors'), path.join(mismatch, 'model.safetensors'));
  const cfg = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
  fs.writeFileSync(
    path.join(mismatch, 'config.json'),
    JSON.stringify({ ...cfg, num_transformer_layers: 3, ffn_multipliers: [0.5, 4], num_query_heads: undefined, num_kv_heads: undefined }),
  );
  const rep2 = checkCheckpoint(mismatch);
  assert.equal(rep2.ok, false);
  assert.match(rep2.problems[0], /checkpoint does not match its config/);
  assert.equal(rep2.tensors.length, 34);
});

test('output into a closed pipe ends quietly with status 0 (generate, logits --json)', () => {
  for (const args of [
    ['generate', '-m', VOCAB, '-p', 'Once upon a time', '-n', '60', '--temperature', '0', '--ignore-eos', '--threads', '1'],
    ['logits', '-m', TINY, '--ids', Array.from({ length: 40 }, (_, i) => i + 1).join(','), '--json', '--threads', '1'],
  ]) {
    const cmd = `"${process.execPath}" --import tsx "${MAIN}" ${args.map((a) => `'${a}'`).join(' ')} | head -c 10 >/dev/null; echo "status=\${PIPESTATUS[0]}" >&2`;
    const r = spawnSync('bash', ['-c', cmd], { cwd: ROOT, encoding: 'utf8', timeout: 60_000, env: { ...process.env, HF_HUB_OFFLINE: '1' } });
    assert.match(r.stderr, /status=0/, r.stderr);
    assert.doesNotMatch(r.stderr, /EPIPE|Error/, r.stderr);
  }
});
