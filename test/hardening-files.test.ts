// Careless paths, extreme configs and options: export never replaces a symlink, device, FIFO,
// folder or its own input; killed runs' temporary files are cleaned up; configs with absurd sizes
// fail by field before any allocation; library options are checked at run time (q8 = q8_0);
// flag errors name the flag and exit 2.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { quantizeCheckpoint } from '../src/cli/commands/quantize.ts';
import { ConfigError, expectedTensors, numParameters, parseConfig, presetConfig } from '../src/config/index.ts';
import { openCheckpoint } from '../src/io/checkpoint.ts';
import { checkpointSource } from '../src/io/checkpoint-source.ts';
import { LoadOptionError, loadOpenELM, memoryPlan } from '../src/load.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = path.join(ROOT, 'test/fixtures/openelm');
const TINY = path.join(FIX, 'tiny-f32');
const VOCAB = path.join(FIX, 'tiny-vocab32k-bf16');
const MAIN = path.join(ROOT, 'src/cli/main.ts');
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-files-'));
after(() => fs.rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => path.join(root, `t${n++}`);

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
const sha = (f: string) => fs.readFileSync(f).toString('base64').slice(0, 64) + fs.statSync(f).size;

test("export refuses symlinks, FIFOs, devices, folders and the model's own files as --out (exit 2, nothing touched)", () => {
  const dir = fresh();
  fs.mkdirSync(dir);
  const victim = path.join(dir, 'victim.txt');
  fs.writeFileSync(victim, 'keep me');
  fs.symlinkSync(victim, path.join(dir, 'link.gguf'));
  let r = cli(['export', '-m', VOCAB, '-o', path.join(dir, 'link.gguf'), '--dtype', 'q8']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--out .*link\.gguf is a symbolic link; refusing to replace it/);
  assert.equal(fs.readFileSync(victim, 'utf8'), 'keep me');
  assert.ok(fs.lstatSync(path.join(dir, 'link.gguf')).isSymbolicLink());

  const fifo = path.join(dir, 'pipe.gguf');
  if (spawnSync('mkfifo', [fifo]).status === 0) {
    r = cli(['export', '-m', VOCAB, '-o', fifo]);
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /is a FIFO; refusing to replace it/);
  }
  r = cli(['export', '-m', VOCAB, '-o', '/dev/null']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /\/dev\/null is a device; refusing/);
  r = cli(['export', '-m', VOCAB, '-o', dir]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /is a folder; refusing/);

  // its own input, directly or through a link to the same file
  const copy = fresh();
  fs.cpSync(VOCAB, copy, { recursive: true });
  const weights = path.join(copy, 'model.safetensors');
  const before = sha(weights);
  r = cli(['export', '-m', copy, '-o', weights]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /is a file of the input .*refusing to overwrite what is being read/);
  assert.equal(sha(weights), before);
  r = cli(['export', '--format', 'hf', '-m', copy, '-o', path.join(copy, 'sub')]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /overlaps the input folder/);
  assert.ok(!fs.existsSync(path.join(copy, 'sub')));
});

test("export defaults to a quantized checkpoint's own dtype; q8/q8_0 spellings are one; a mismatch is a flag error", () => {
  const q = fresh();
  quantizeCheckpoint(VOCAB, q, 'q8_0');
  const out = path.join(root, 'q.gguf');
  let r = cli(['export', '-m', q, '-o', out, '--json']);
  assert.equal(r.code, 0, r.err);
  assert.equal(JSON.parse(r.out.trim().split('\n').at(-1)!).dtype, 'q8_0');
  r = cli(['export', '-m', q, '-o', out, '--dtype', 'Q8', '--json']);
  assert.equal(r.code, 0, r.err);
  r = cli(['export', '-m', q, '-o', out, '--dtype', 'q4']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--dtype q4: .* is quantized as q8_0 and exports only as q8_0/);
  r = cli(['export', '--format', 'hf', '-m', q, '-o', fresh()]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /is quantized \(q8_0\); --format hf writes float weights/);
});

test('temporary files of killed writers are removed by the next write to the same place; live ones are kept', () => {
  const out = fresh();
  const dead = `${path.resolve(out)}.tmp-2147483646`; // no such process
  const live = `${path.resolve(out)}.tmp-${process.pid}0`; // not ours, pid likely dead too: use our parent's instead
  fs.mkdirSync(dead);
  fs.writeFileSync(path.join(dead, 'model.safetensors'), Buffer.alloc(1000));
  const liveTmp = `${path.resolve(out)}.tmp-${process.ppid}`;
  fs.writeFileSync(liveTmp, 'in progress');
  void live;
  const r = cli(['init', '--config', path.join(TINY, 'config.json'), '--out', out, '--dtype', 'BF16']);
  assert.equal(r.code, 0, r.err);
  assert.ok(!fs.existsSync(dead), "the dead process's folder is gone");
  assert.ok(fs.existsSync(liveTmp), "a running process's temp is kept");
  fs.rmSync(liveTmp);
  // and quantize / GGUF writes clean theirs
  const q = fresh();
  fs.writeFileSync(`${path.resolve(q)}.tmp-2147483646`, 'junk');
  quantizeCheckpoint(out, q, 'q4_0');
  assert.ok(!fs.existsSync(`${path.resolve(q)}.tmp-2147483646`));
  const g = path.join(root, 'x.gguf');
  fs.writeFileSync(`${g}.tmp-2147483646`, 'junk');
  assert.equal(cli(['export', '-m', VOCAB, '-o', g, '--dtype', 'q4']).code, 0);
  assert.ok(!fs.existsSync(`${g}.tmp-2147483646`));
});

test('init and quantize name --out and --dtype, exit 2; init refuses quantized dtypes pointing to quantize', () => {
  let r = cli(['init', '--preset', 'OpenELM-270M', '--out', fresh(), '--dtype', 'q8']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--dtype must be f32, bf16 or f16, got "q8".*openelm quantize/);
  const file = path.join(root, 'a-file');
  fs.writeFileSync(file, 'x');
  r = cli(['init', '--preset', 'OpenELM-270M', '--out', file]);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--out .*a-file is not a regular file|--out .*a-file is .*not a folder/);
  r = cli(['quantize', '-m', TINY, '--to', 'q8_0', '--out', TINY, '--no-eval']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--out .*already exists and is not an empty folder/);
});

test('configs with absurd sizes fail by field at once, before anything is allocated', () => {
  const base = JSON.parse(fs.readFileSync(path.join(TINY, 'config.json'), 'utf8'));
  delete base.num_query_heads;
  delete base.num_kv_heads;
  const cases: [Record<string, unknown>, string, RegExp][] = [
    [{ num_transformer_layers: 1e9, ffn_multipliers: [0.5, 4] }, 'num_transformer_layers', /is 1000000000, above the limit of 1024/],
    [{ num_transformer_layers: 1e8, ffn_multipliers: [0.5, 4] }, 'num_transformer_layers', /above the limit/],
    [{ max_context_length: 1e7 }, 'max_context_length', /is 10000000, above the limit of 1048576/],
    [{ vocab_size: 2 ** 40 }, 'vocab_size', /above the limit/],
    [{ model_dim: 1e6 }, 'model_dim', /above the limit/],
    [{ rope_freq_constant: 1e-300 }, 'rope_freq_constant', /must be in \[1, 1000000000000\]/],
    [{ rope_freq_constant: Infinity }, 'rope_freq_constant', /positive finite number, got Infinity/],
    [{ ffn_multipliers: [0.5, 1e6] }, 'ffn_multipliers', /must be a number in \(0, 1024\]/],
    [{ ffn_multipliers: 1000, model_dim: 2048, ffn_dim_divisor: 1 }, 'ffn_multipliers', /FFN width of 2048000, above the limit/],
    [{ qkv_multipliers: new Array(5000).fill(1) }, 'qkv_multipliers', /must be a number in/],
  ];
  for (const [patch, field, re] of cases) {
    const t0 = performance.now();
    assert.throws(
      () => parseConfig({ ...base, ...patch }, 'x/config.json'),
      (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.field, field, e.message);
        assert.match(e.message, re);
        assert.match(e.message, new RegExp(`^x/config\\.json: field "${field}"`));
        return true;
      },
    );
    assert.ok(performance.now() - t0 < 200, `${field}: ${performance.now() - t0} ms`);
  }
  // the presets stay valid
  for (const p of ['OpenELM-270M', 'OpenELM-3B']) assert.ok(presetConfig(p));
});

test('config.json that is a folder, deeply nested, huge or not JSON: the file is named, no raw system error', () => {
  const mk = (write: (dir: string) => void) => {
    const d = fresh();
    fs.mkdirSync(d);
    fs.copyFileSync(path.join(TINY, 'model.safetensors'), path.join(d, 'model.safetensors'));
    write(d);
    return d;
  };
  const cases: [string, RegExp][] = [
    [mk((d) => fs.mkdirSync(path.join(d, 'config.json'))), /config\.json: is a folder, expected a JSON file/],
    [
      mk((d) =>
        fs.writeFileSync(
          path.join(d, 'config.json'),
          `{"num_transformer_layers": ${'['.repeat(100_000)}${']'.repeat(100_000)}, "model_dim": 64, "head_dim": 16}`,
        ),
      ),
      /config\.json: field "num_transformer_layers" must be an integer, got an array of 1|nested too deeply/,
    ],
    [mk((d) => fs.writeFileSync(path.join(d, 'config.json'), ' '.repeat(2 * 1024 * 1024))), /config\.json: is 2097152 bytes, more than the 1048576/],
    [mk((d) => fs.writeFileSync(path.join(d, 'config.json'), '{"a": ')), /config\.json: not valid JSON/],
  ];
  for (const [dir, re] of cases) {
    assert.throws(() => openCheckpoint(dir), re);
    const r = cli(['generate', '-m', dir, '--prompt-ids', '1', '-n', '1']);
    assert.equal(r.code, 1, r.err);
    assert.match(r.err, re);
    assert.doesNotMatch(r.err, /Maximum call stack|EISDIR| {4}at /);
  }
});

test('library options are checked at run time: dtype q8 = q8_0 on both backends; bad values name the option', async () => {
  for (const backend of ['ref', 'wasm'] as const) {
    const a = await loadOpenELM(TINY, { backend, threads: 1, dtype: 'q8' });
    const b = await loadOpenELM(TINY, { backend, threads: 1, dtype: 'q8_0' });
    try {
      assert.deepEqual(Array.from(a.model.forward([1, 5, 6])), Array.from(b.model.forward([1, 5, 6])));
    } finally {
      a.dispose();
      b.dispose();
    }
  }
  const bad: [Record<string, unknown>, string, RegExp][] = [
    [{ dtype: 'q5' }, 'dtype', /dtype must be 'auto' or one of .*q8_0.*got "q5"/],
    [{ threads: 1000 }, 'threads', /threads must be an integer in \[1, \d+\] \(4 × the \d+ cores/],
    [{ threads: 1.5 }, 'threads', /threads must be/],
    [{ backend: 'gpu' }, 'backend', /backend must be 'wasm' or 'ref', got "gpu"/],
    [{ contextLength: 1e9 }, 'contextLength', /contextLength must be at most max_context_length \(64 in .*config\.json\), got 1000000000/],
    [{ contextLength: -1 }, 'contextLength', /integer ≥ 1/],
    [{ onProgress: 'yes' }, 'onProgress', /onProgress must be a function/],
  ];
  for (const [opts, option, re] of bad) {
    await assert.rejects(loadOpenELM(TINY, opts as never), (e: unknown) => {
      assert.ok(e instanceof LoadOptionError, String(e));
      assert.equal(e.option, option);
      assert.match(e.message, re);
      return true;
    });
  }
  await assert.rejects(loadOpenELM(TINY, null as never), /options must be an object/);
});

test('the memory plan matches what the model allocates, and a 3B with a 1M-token context is refused by field', async () => {
  const m = await loadOpenELM(TINY, { backend: 'ref', contextLength: 48 });
  try {
    const plan = memoryPlan(checkpointSource(TINY), 'auto', 48);
    assert.equal(plan.kvCache, m.model.cache.bytes);
  } finally {
    m.dispose();
  }
  // the plan alone, on a 3B shape: its KV cache at 2^20 tokens is far beyond 4 GiB
  const cfg = parseConfig({
    ...presetConfig('OpenELM-3B'),
    max_context_length: 1 << 20,
    num_query_heads: undefined,
    num_kv_heads: undefined,
    ffn_multipliers: [0.5, 4],
  });
  const shapes = expectedTensors(cfg);
  const src = { config: cfg, info: (name: string) => ({ dtype: 'BF16' as const, shape: shapes.get(name)! }), readInto() {}, readRangeInto() {} };
  const plan = memoryPlan(src as never, 'auto', 1 << 20);
  assert.ok(plan.kvCache > 4 * 1024 ** 3, String(plan.kvCache));
  assert.ok(Math.abs(plan.weights - 2 * numParameters(cfg)) < 1e6, 'bf16: 2 bytes per weight (norms as f32)');
});

test('flag errors name the flag and exit 2: --threads, --context, --dtype, sampling flags of chat', () => {
  let r = cli(['generate', '-m', TINY, '--prompt-ids', '1', '--threads', '1000']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--threads must be ≤ \d+, got 1000/);
  r = cli(['generate', '-m', TINY, '--prompt-ids', '1', '--context', '100000', '--threads', '1']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--context must be at most max_context_length \(64 in .*\), got 100000/);
  r = cli(['generate', '-m', TINY, '--prompt-ids', '1', '--dtype', 'q5']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--dtype must be one of auto, f32, bf16, f16, q8 \(q8_0\), q4 \(q4_0\); got "q5"/);
  for (const cmd of ['chat', 'generate']) {
    r = cli(
      [cmd, '-m', TINY, '--prompt-ids', '1', '--repetition-penalty', '1e-300', '--threads', '1'].filter(
        (a, i, all) => cmd === 'generate' || (a !== '--prompt-ids' && all[i - 1] !== '--prompt-ids'),
      ),
      'hi\n',
    );
    assert.equal(r.code, 2, r.err);
    assert.match(r.err, /--repetition-penalty must be ≥ 0\.001, got 1e-300/);
  }
  r = cli(['generate', '-m', TINY, '--prompt-ids', '1', '--top-p', '0']);
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--top-p must be > 0, got 0/);
  r = cli(['chat', '-m', TINY, '--top-p', '0', '--threads', '1'], 'hi\n');
  assert.equal(r.code, 2, r.err);
  assert.match(r.err, /--top-p must be/);
});
