// Sampling never hangs and never invents a token: NaN / Inf logits stop generation with a clear
// error (greedy used to emit token 0, sampling used to loop forever), absurd temperatures and
// repetition penalties either work or are refused by name.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateText } from '../src/generate/generate.ts';
import { argmax, checkSampling, NonFiniteLogitsError, Sampler, SamplingOptionError } from '../src/generate/sampler.ts';
import { openSafetensors } from '../src/io/safetensors.ts';
import { RefKernels } from '../src/kernels/ref.ts';
import { loadModel } from '../src/load.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TINY = path.join(ROOT, 'test/fixtures/openelm/tiny-f32');
const MAIN = path.join(ROOT, 'src/cli/main.ts');

function logits(V: number, seed = 1): Float32Array {
  const l = new Float32Array(V);
  for (let i = 0; i < V; i++) l[i] = Math.sin(i * 12.9898 + seed) * 4;
  return l;
}

/** Runs f and fails if it takes longer than ms (the bugs were infinite loops). */
function within<T>(ms: number, f: () => T): T {
  const t0 = performance.now();
  const r = f();
  assert.ok(performance.now() - t0 < ms, `took ${performance.now() - t0} ms`);
  return r;
}

test('a temperature of 1e-39 picks the argmax instead of sampling forever', () => {
  const l = logits(512);
  const best = argmax(l);
  for (const opts of [{}, { topP: 1 }, { topK: 5 }, { minP: 0.1 }, { topP: 0.5, repetitionPenalty: 1.3 }]) {
    const s = new Sampler(512, { temperature: 1e-39, seed: 1, ...opts });
    assert.equal(
      within(1000, () => s.sample(l)),
      best,
      JSON.stringify(opts),
    );
  }
  // the same with the largest float32 logits
  const big = new Float32Array(512).fill(-3e38);
  big[77] = 3e38;
  assert.equal(new Sampler(512, { temperature: 1e-30, seed: 2 }).sample(big), 77);
  // and ordinary temperatures sample as before (same seed, same token)
  const a = new Sampler(512, { temperature: 0.7, seed: 9 }),
    b = new Sampler(512, { temperature: 0.7, seed: 9 });
  for (let i = 0; i < 20; i++) assert.equal(a.sample(l), b.sample(l));
});

test('NaN or Inf logits: greedy and sampling throw NonFiniteLogitsError naming the token, on both paths', () => {
  for (const bad of [NaN, Infinity, -Infinity]) {
    const l = logits(512);
    l[300] = bad;
    for (const [name, s] of [
      ['greedy', new Sampler(512, { temperature: 0 })],
      ['greedy on the backend argmax', new Sampler(512, { temperature: 0 }, new RefKernels())],
      ['greedy with a penalty', new Sampler(512, { temperature: 0, repetitionPenalty: 1.2 })],
      ['sampling', new Sampler(512, { temperature: 0.7, seed: 1 })],
      ['sampling, no filter', new Sampler(512, { temperature: 1, topP: 1 })],
    ] as const) {
      assert.throws(
        () => within(1000, () => s.sample(l)),
        (e: unknown) => {
          assert.ok(e instanceof NonFiniteLogitsError, `${name}: ${e}`);
          assert.match(e.message, new RegExp(`non-finite logit \\(${bad} for token 300\\).*openelm check --model`));
          return true;
        },
        `${name} with ${bad}`,
      );
    }
    assert.throws(() => argmax(l), NonFiniteLogitsError);
  }
  // every logit NaN (a NaN weight in the final norm)
  assert.throws(() => new Sampler(16, { temperature: 0 }).sample(new Float32Array(16).fill(NaN)), /non-finite logit \(NaN for token 0\)/);
});

test('absurd repetition penalties are refused by name; large finite logits stay finite under the smallest one', () => {
  for (const repetitionPenalty of [1e-300, 0, -1, 1e300, Infinity, NaN]) {
    assert.throws(
      () => new Sampler(8, { repetitionPenalty }),
      (e: unknown) => e instanceof SamplingOptionError && e.option === 'repetitionPenalty' && /repetitionPenalty must be in \[0\.001, 1000\]/.test(e.message),
    );
  }
  const l = new Float32Array(8).fill(1);
  l[3] = 3e38; // seen, divided by 1e-3: clamped to float32's largest, not Inf
  const s = new Sampler(8, { temperature: 0.8, repetitionPenalty: 1e-3, seed: 1 });
  s.observe([3]);
  assert.equal(s.sample(l), 3);
  assert.throws(() => checkSampling({ temperature: '0.5' as unknown as number }), /temperature must be a finite number ≥ 0, got "0\.5"/);
  assert.throws(() => checkSampling({ topK: 2 ** 60 }), /topK must be an integer ≥ 0/);
});

/** A copy of tiny-f32 with transformer.norm.weight[0] = value. */
function poisonedCopy(value: number): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-nan-'));
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(TINY, f), path.join(dir, f));
  const file = path.join(dir, 'model.safetensors');
  const st = openSafetensors(file);
  const t = st.tensors.get('transformer.norm.weight')!;
  const at = st.dataStart + t.dataOffsets[0];
  const fd = fs.openSync(file, 'r+');
  const b = Buffer.alloc(4);
  b.writeFloatLE(value);
  fs.writeSync(fd, b, 0, 4, at);
  fs.closeSync(fd);
  return dir;
}

test('a checkpoint with a NaN weight stops generation with the error, on both backends (no token 0, no hang)', async () => {
  const dir = poisonedCopy(NaN);
  try {
    for (const backend of ['ref', 'wasm'] as const) {
      const m = await loadModel(dir, { backend, threads: 1 });
      try {
        for (const temperature of [0, 0.8]) {
          await assert.rejects(
            generateText(m.model, m.tokenizer, { ids: [1, 5, 6] }, { maxNewTokens: 3, temperature, seed: 1 }),
            NonFiniteLogitsError,
            `${backend} temperature ${temperature}`,
          );
        }
      } finally {
        m.dispose();
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('openelm generate --temperature 1e-39 ends, with the greedy tokens; a NaN checkpoint exits 1 naming the cause', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', MAIN, 'generate', ...args], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, HF_HUB_OFFLINE: '1' },
    });
  const greedy = run(['-m', TINY, '--prompt-ids', '1,5,6', '-n', '3', '--temperature', '0', '--json', '--threads', '1']);
  const tiny = run(['-m', TINY, '--prompt-ids', '1,5,6', '-n', '3', '--temperature', '1e-39', '--json', '--threads', '1']);
  assert.equal(tiny.status, 0, tiny.stderr);
  assert.deepEqual(JSON.parse(tiny.stdout.trim().split('\n').at(-1)!).output_ids, JSON.parse(greedy.stdout.trim().split('\n').at(-1)!).output_ids);

  const dir = poisonedCopy(NaN);
  try {
    const r = run(['-m', dir, '--prompt-ids', '1,5,6', '-n', '3', '--temperature', '0', '--threads', '1']);
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, /non-finite logit .*openelm check --model/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('generate checks its options and prompt at run time, naming them (JavaScript callers)', async () => {
  const m = await loadModel(fileURLToPath(new URL('./fixtures/openelm/tiny-f32/', import.meta.url)), { backend: 'ref' });
  try {
    const run = (prompt: unknown, opts: unknown) => generateText(m.model, m.tokenizer, prompt as { ids: number[] }, opts as object);
    await assert.rejects(run({ ids: [1, 2] }, { maxNewTokens: 2.5 }), /maxNewTokens must be an integer ≥ 0, got 2.5/);
    await assert.rejects(run({ ids: [1, 2] }, { maxNewTokens: '3' }), /maxNewTokens must be an integer ≥ 0, got "3"/);
    await assert.rejects(run({ ids: [1, 2] }, { stop: 'x' }), /stop must be an array of strings/);
    await assert.rejects(run({ ids: [1, 2] }, { eosIds: [2, 9999] }), /eosIds must be an array of token ids in \[0, 512\)/);
    await assert.rejects(run({ ids: [1, 600] }, {}), /prompt token 1 \(600\) is not a token id in \[0, 512\)/);
    await assert.rejects(run({ ids: [1, 2.5] }, {}), /prompt token 1 \(2.5\) is not a token id/);
    await assert.rejects(run(42, {}), /prompt must be a string or \{ ids: number\[\] \}/);
    const ok = await run({ ids: [1, 2] }, { maxNewTokens: 2, temperature: 0 });
    assert.equal(ok.outputIds.length, 2);
  } finally {
    m.dispose();
  }
});
