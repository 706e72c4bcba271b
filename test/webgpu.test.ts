/// <reference types="node" />
// The WebGPU backend in headless Chromium with its software adapter (SwiftShader: no GPU needed):
// every WGSL shader compiles and validates, each kernel matches the plain-TypeScript kernels, and
// the built-in model decodes greedily on the GPU to the same tokens as on the TS kernels. Isolated
// in its own browser; skipped where Chromium is missing (CI installs it) or offers no adapter.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import { startStaticServer } from './browser/static-server.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const skip = CHROMIUM ? false : process.env.CI ? false : 'no Chromium here (apt-get install chromium, or set CHROMIUM_PATH)';
/** Chromium's WebGPU on SwiftShader (Vulkan on the CPU) */
const WEBGPU_ARGS = ['--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader', '--enable-features=Vulkan'];

test('WebGPU kernels (WGSL) in headless Chromium on SwiftShader: shaders validate, ops equal the TS kernels, greedy decoding of the built-in model equals', {
  skip,
  timeout: 180_000,
}, async () => {
  assert.ok(CHROMIUM, 'CI must have Chromium: .ci/run installs the Debian package');
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('./browser/webgpu-page.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    write: false,
    external: ['node:*'],
  });
  const server = await startStaticServer(fileURLToPath(new URL('./browser/', import.meta.url)));
  server.mount('/model/', fileURLToPath(new URL('../builtin/openelm-sotu/', import.meta.url)));
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join((await import('node:os')).tmpdir(), 'openelm-webgpu-'));
  writeFileSync(join(dir, 'page.js'), bundle.outputFiles[0].text);
  writeFileSync(
    join(dir, 'index.html'),
    '<!doctype html><meta charset="utf-8"><title>openelm webgpu</title><link rel="icon" href="data:,"><script type="module" src="/t/page.js"></script>',
  );
  server.mount('/t/', dir);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update', ...WEBGPU_ARGS],
  });
  try {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${server.url}/t/index.html`);
    await page.waitForFunction(() => (window as unknown as { __result?: unknown }).__result !== undefined, null, { timeout: 150_000 });
    const r = (await page.evaluate(() => (window as unknown as { __result: unknown }).__result)) as {
      error?: string;
      adapter: string;
      shaderErrors: Record<string, string[]>;
      checks: { what: string; ok: boolean; detail: string }[];
      tokensPerSecond: number;
      dispatchesPerStep: number;
      text: string;
      timings: Record<string, number>;
    };
    if (r.error && /no adapter|not available/.test(r.error) && !process.env.CI) {
      console.log(`# skipped: ${r.error}`);
      return;
    }
    assert.equal(r.error, undefined, `the page failed: ${r.error}`);
    assert.deepEqual(r.shaderErrors, {}, 'every WGSL shader compiles and its pipeline validates');
    assert.deepEqual(errors, []);
    for (const c of r.checks) assert.ok(c.ok, `${c.what}: ${c.detail}`);
    assert.ok(r.checks.length >= 30, `${r.checks.length} checks`);
    console.log(
      `# WebGPU on ${r.adapter}: ${r.checks.length} checks pass; built-in model greedy ${r.tokensPerSecond.toFixed(1)} tokens/s, ` +
        `${r.dispatchesPerStep} dispatches in one submission per token: ${JSON.stringify(r.text)}; ms ${JSON.stringify(r.timings)}`,
    );
  } finally {
    await browser.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
