/// <reference types="node" />
// The WebAssembly kernels in a real browser: test/browser/kernels-page.ts is bundled with esbuild,
// served from a local HTTP server with the cross-origin isolation headers SharedArrayBuffer needs
// (COOP/COEP), and opened in headless Chromium (Debian's `chromium`, driven by playwright-core).
// The page runs the kernels on two threads (a Web Worker plus the page) against the plain-TS
// kernels. `.ci/run` installs Chromium; elsewhere the test is skipped when it is missing.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const skip = CHROMIUM ? false : process.env.CI ? false : 'no Chromium here (apt-get install chromium, or set CHROMIUM_PATH)';

test('wasm kernels in headless Chromium: Web Workers on shared memory, relaxed SIMD, same results as the TS kernels', { skip, timeout: 180_000 }, async () => {
  assert.ok(CHROMIUM, 'CI must have Chromium: .ci/run installs the Debian package');
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('./browser/kernels-page.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external: ['node:*'], // only reached in Node
  });
  const js = bundle.outputFiles[0].text;
  const html = '<!doctype html><meta charset="utf-8"><title>openelm kernels</title><script type="module" src="/page.js"></script>';
  const server: Server = createServer((req, res) => {
    const headers = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
    if (req.url === '/') res.writeHead(200, { ...headers, 'Content-Type': 'text/html' }).end(html);
    else if (req.url === '/page.js') res.writeHead(200, { ...headers, 'Content-Type': 'text/javascript' }).end(js);
    else res.writeHead(404, headers).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, null, { timeout: 120_000 });
    const r = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as {
      error?: string;
      backend: string;
      relaxedSimd: boolean;
      threads: number;
      crossOriginIsolated: boolean;
      q8Gemm: number;
      checks: { what: string; ok: boolean; detail: string }[];
    };
    assert.equal(r.error, undefined, `the page failed: ${r.error}`);
    assert.deepEqual(errors, []);
    assert.ok(r.crossOriginIsolated, 'the page must be cross-origin isolated (SharedArrayBuffer)');
    assert.equal(r.threads, 2);
    assert.ok(r.relaxedSimd, 'Chromium has relaxed SIMD: the relaxed build must be chosen');
    for (const c of r.checks) assert.ok(c.ok, `${c.what}: ${c.detail}`);
    assert.ok(r.checks.length >= 16);
    console.log(`# ${r.backend} in Chromium: ${r.checks.length} checks pass; q8_0 GEMM 2048 x 1280, 64 tokens: ${r.q8Gemm.toFixed(1)} GOP/s`);
  } finally {
    await browser.close();
    server.close();
  }
});
