/// <reference types="node" />
// `openelm serve` as a process: it says where it listens and on which kernels, and SIGTERM drains
// it: the request in flight streams to its end, no new connection is taken, the process exits 0.

import assert from 'node:assert/strict';
import { type ChildProcessByStdio, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { generateText } from '../src/generate/generate.ts';
import { loadModel } from '../src/load.ts';
import { attachAdapter, loadAdapter } from '../src/peft/index.ts';
import { cpuHasAvxVnni } from './helpers/cpu.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

/** `openelm serve ARGS --port 0` as a child process, once it says where it listens */
async function startServe(
  args: string[],
): Promise<{ child: ChildProcessByStdio<null, Readable, Readable>; base: string; err: () => string; exited: Promise<[number | null, NodeJS.Signals | null]> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--port', '0', ...args], {
    cwd: ROOT,
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    err += s;
  });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line in 60 s:\n${err}`)), 60_000);
    const look = () => {
      const m = /openelm serve: .* on (http:\/\/[^ ]+) · .* on (wasm-[a-z0-9-]+|ref)/.exec(err);
      if (m) {
        clearTimeout(timer);
        child.stderr.off('data', look);
        resolve(m[1]);
      }
    };
    child.stderr.on('data', look);
    child.once('exit', (code) => reject(new Error(`serve exited (${code}) before listening:\n${err}`)));
  }).catch((e) => {
    child.kill('SIGKILL');
    throw e;
  });
  return { child, base, err: () => err, exited };
}

test('serve: the startup line names the address and the kernels; SIGTERM lets the stream in flight finish, refuses new connections, exits 0', async () => {
  // the built-in model (context 256), so that 200 tokens take long enough to be in flight
  const { child, base, err: stderr, exited } = await startServe(['--threads', '1']);
  try {
    const err = stderr();
    assert.match(err, / on wasm-(relaxed-simd(-vnni)?|simd)-1t/, err);
    // the VNNI hint: a CPU with AVX-VNNI under a Node that runs the relaxed build (Node 20 does)
    const hinted = cpuHasAvxVnni() && / on wasm-relaxed-simd-1t/.test(err); // checked once the process has exited
    const res = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'builtin', prompt: 'The', max_tokens: 200, temperature: 0, ignore_eos: true, stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    let text = '';
    // the first chunk: the sequence is running; then SIGTERM
    while (!text.includes('data: ')) {
      const { value, done } = await reader.read();
      assert.ok(!done, 'the stream ended before its first chunk');
      text += decoder.decode(value, { stream: true });
    }
    child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 100));
    await assert.rejects(fetch(`${base}/health`), 'a new connection after SIGTERM is refused');
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const events = text
      .split('\n\n')
      .map((e) => e.trim())
      .filter((e) => e.startsWith('data: '))
      .map((e) => e.slice(6));
    assert.equal(events.at(-1), '[DONE]', 'the stream ends with [DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { choices: { text: string; finish_reason: string | null }[] });
    assert.equal(chunks.at(-1)?.choices[0].finish_reason, 'length', 'the request ran to its max_tokens');
    const [code, signal] = await exited;
    assert.equal(signal, null, stderr());
    assert.equal(code, 0, stderr());
    assert.match(stderr(), /SIGTERM, draining 1 sequences/, 'the sequence was in flight when SIGTERM came');
    if (hinted) assert.match(stderr(), /openelm serve: hint: this CPU has AVX-VNNI/);
    else assert.doesNotMatch(stderr(), /hint:/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test("serve --adapter NAME=DIR: /v1/models lists the adapters; a request for one gets that adapter's greedy tokens, the base model its own", async () => {
  const TINY = fileURLToPath(new URL('./fixtures/openelm/tiny-f32/', import.meta.url));
  const PEFT = fileURLToPath(new URL('./fixtures/openelm/tiny-f32-peft/', import.meta.url));
  const prompt = [1, 17, 42, 99, 7];
  // the reference: the library's single-sequence generate with the adapter attached
  const { model, tokenizer, dispose } = await loadModel(TINY, { backend: 'ref' });
  const want: Record<string, string> = {};
  try {
    for (const name of ['tiny', 'lora', 'dora']) {
      attachAdapter(model, name === 'tiny' ? null : loadAdapter(path.join(PEFT, name), model.config, model.kernels));
      model.reset();
      want[name] = (await generateText(model, tokenizer, { ids: prompt }, { temperature: 0, maxNewTokens: 8, ignoreEos: true })).text;
    }
  } finally {
    dispose();
  }
  assert.notEqual(want.lora, want.tiny);
  const { child, base, err } = await startServe([
    '-m',
    TINY,
    '--served-name',
    'tiny',
    '--backend',
    'ref',
    '--adapter',
    `lora=${path.join(PEFT, 'lora')}`,
    '--adapter',
    `dora=${path.join(PEFT, 'dora')}`,
  ]);
  try {
    const models = (await (await fetch(`${base}/v1/models`)).json()) as { data: { id: string }[] };
    assert.deepEqual(
      models.data.map((m) => m.id),
      ['tiny', 'lora', 'dora'],
    );
    // all three at once: one batch, each sequence with its own adapter
    const got = await Promise.all(
      ['lora', 'tiny', 'dora'].map(async (name) => {
        const res = await fetch(`${base}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: name, prompt, max_tokens: 8, temperature: 0, ignore_eos: true }),
        });
        assert.equal(res.status, 200, await res.clone().text());
        return [name, ((await res.json()) as { choices: { text: string }[] }).choices[0].text] as const;
      }),
    );
    for (const [name, text] of got) assert.equal(text, want[name], name);
    const unknown = await fetch(`${base}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'nope', prompt, max_tokens: 1 }),
    });
    assert.equal(unknown.status, 404);
    assert.match(((await unknown.json()) as { error: { message: string } }).error.message, /serves "tiny", "lora", "dora"/);
  } finally {
    child.kill('SIGTERM');
    await once(child, 'exit');
    assert.doesNotMatch(err(), /Error/);
  }
});
