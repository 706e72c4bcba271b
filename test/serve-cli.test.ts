/// <reference types="node" />
// `openelm serve` as a process: it says where it listens and on which kernels, and SIGTERM drains
// it: the request in flight streams to its end, no new connection is taken, the process exits 0.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

test('serve: the startup line names the address and the kernels; SIGTERM lets the stream in flight finish, refuses new connections, exits 0', async () => {
  // the built-in model (context 256), so that 200 tokens take long enough to be in flight
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, 'serve', '--port', '0', '--threads', '1'], {
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
  try {
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
    });
    assert.match(err, / on wasm-(relaxed-simd(-vnni)?|simd)-1t/, err);
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
    assert.equal(signal, null, err);
    assert.equal(code, 0, err);
    assert.match(err, /SIGTERM, draining 1 sequences/, 'the sequence was in flight when SIGTERM came');
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
