/// <reference types="node" />
// The chat page (web/) end to end in headless Chromium (Debian's `chromium`, driven by
// playwright-core): built with Vite as `npm run build:web` does, served as a static host would
// (byte ranges; with and without the cross-origin isolation headers), used as a person would.
//   - deep links: #output's text equals `openelm generate --json`'s text (greedy), errors go to data-error
//   - the built-in model is read with HTTP range requests, never downloaded whole
//   - the chat form: Enter sends, text streams, tokens/s shown, Stop stops, multi-turn reuses the KV cache
//   - models from a URL (cached in OPFS and then loaded with the server down), a picked folder, the hub
// `.ci/run` installs Chromium; elsewhere these tests are skipped when it is missing.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { encodeChat } from '../src/generate/chat.ts';
import { generateText } from '../src/generate/generate.ts';
import { type LoadedModel, loadModel } from '../src/load.ts';
import { type StaticServer, startStaticServer } from './browser/static-server.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const skip = CHROMIUM ? false : process.env.CI ? false : 'no Chromium here (apt-get install chromium, or set CHROMIUM_PATH)';
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BUILTIN = join(ROOT, 'builtin/openelm-sotu');
// with Chromium's software WebGPU adapter (SwiftShader), so the page's WebGPU path runs too
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--enable-unsafe-webgpu',
  '--use-webgpu-adapter=swiftshader',
  '--enable-features=Vulkan',
];

/** `openelm generate PROMPT -n N --temperature 0 --json`'s text, from the CLI itself. */
function cliText(prompt: string, n: number): string {
  const out = execFileSync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), 'generate', prompt, '-n', String(n), '--temperature', '0', '--json'],
    { cwd: ROOT, encoding: 'utf8' },
  );
  return (JSON.parse(out) as { text: string }).text;
}

async function outputOf(page: Page): Promise<{ text: string; error?: string; done?: string }> {
  await page.waitForSelector('#output[data-done]', { timeout: 60_000 });
  return page.$eval('#output', (e) => ({ text: e.textContent ?? '', error: (e as HTMLElement).dataset.error, done: (e as HTMLElement).dataset.done }));
}

async function waitReady(page: Page, what: RegExp = /ready/): Promise<string> {
  await page.waitForFunction((src) => new RegExp(src).test(document.getElementById('status')?.textContent ?? ''), what.source, { timeout: 60_000 });
  return page.$eval('#status', (e) => e.textContent ?? '');
}

describe('the chat page in headless Chromium', { skip, timeout: 240_000 }, () => {
  let outDir: string, server: StaticServer, plain: StaticServer, browser: Browser, node: LoadedModel;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(CHROMIUM, 'CI must have Chromium: .ci/run installs the Debian package');
    outDir = mkdtempSync(join(tmpdir(), 'openelm-web-'));
    const { build } = await import('vite');
    await build({ configFile: join(ROOT, 'vite.config.ts'), logLevel: 'error', build: { outDir, emptyOutDir: true } });
    server = await startStaticServer(outDir);
    plain = await startStaticServer(outDir, { isolated: false });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
    node = await loadModel(BUILTIN, { threads: 2 });
  });
  after(async () => {
    await browser?.close();
    await server?.close();
    await plain?.close();
    node?.dispose();
    if (outDir) rmSync(outDir, { recursive: true, force: true });
  });

  async function open(url: string): Promise<Page> {
    const page = await browser.newPage();
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto(url);
    return page;
  }

  const PROMPT = 'The state of the Union is\nstrong — and “the people” ';
  let cli = '';

  test('the built page is self-contained: the built-in model and the vocabulary are in web/dist', () => {
    assert.ok(existsSync(join(outDir, 'models/openelm-sotu/model.safetensors')));
    assert.ok(existsSync(join(outDir, 'models/openelm-sotu/config.json')));
    assert.ok(existsSync(join(outDir, '_headers')), 'static hosts get the isolation headers');
  });

  test('deep link (cross-origin isolated, threads): #output equals openelm generate --json, the model read by ranges', async () => {
    cli = cliText(PROMPT, 16);
    assert.ok(cli.length > 10, cli);
    server.log.length = 0;
    const page = await open(`${server.url}/index.html?prompt=${encodeURIComponent(PROMPT)}&max_new_tokens=16&temperature=0&autorun=1`);
    const out = await outputOf(page);
    assert.equal(out.error, undefined);
    assert.equal(out.text, cli);
    const status = await page.$eval('#status', (e) => e.textContent ?? '');
    assert.match(status, /WebAssembly SIMD on 2 threads/);
    assert.equal(await page.evaluate(() => crossOriginIsolated), true);
    // the 26 MB checkpoint is never fetched whole: a probe for its size, its header, then one range per tensor
    const model = server.log.filter((r) => r.url.endsWith('/model.safetensors'));
    assert.ok(model.length > 20, `${model.length} requests`);
    assert.ok(
      model.every((r) => r.range && r.status === 206),
      JSON.stringify(model.filter((r) => !r.range).slice(0, 3)),
    );
    assert.equal(model[0].range, 'bytes=0-0');
    await page.close();
  });

  test('deep link on WebGPU (?device=webgpu, SwiftShader here): the same text; auto keeps WebAssembly on a software adapter', async () => {
    assert.ok(cli, 'needs the previous test');
    const page = await open(`${server.url}/index.html?prompt=${encodeURIComponent(PROMPT)}&max_new_tokens=16&temperature=0&autorun=1&device=webgpu`);
    const out = await outputOf(page);
    if (out.error && /no adapter|not available/.test(out.error) && !process.env.CI) return; // no WebGPU in this Chromium
    assert.equal(out.error, undefined);
    assert.equal(out.text, cli);
    assert.match(await page.$eval('#status', (e) => e.textContent ?? ''), /WebGPU on .*swiftshader/i);
    await page.goto(`${server.url}/index.html`);
    assert.match(await waitReady(page), /WebAssembly SIMD on 2 threads \(WebGPU's adapter here is software/);
    await page.close();
  });

  test('deep link without isolation headers: one thread, the same text; a bad parameter sets data-error', async () => {
    assert.ok(cli, 'needs the previous test');
    const page = await open(`${plain.url}/index.html?prompt=${encodeURIComponent(PROMPT)}&max_new_tokens=16&temperature=0&autorun=1`);
    const out = await outputOf(page);
    assert.equal(out.error, undefined);
    assert.equal(out.text, cli);
    assert.match(await page.$eval('#status', (e) => e.textContent ?? ''), /one thread: the page is not cross-origin isolated/);
    await page.goto(`${plain.url}/index.html?prompt=hi&max_new_tokens=lots&autorun=1`);
    const bad = await outputOf(page);
    assert.equal(bad.done, '1');
    assert.match(bad.error ?? '', /max_new_tokens must be a number, got "lots"/);
    await page.goto(`${plain.url}/index.html?prompt=hi&max_new_tokens=1.5&autorun=1`);
    assert.match((await outputOf(page)).error ?? '', /maxNewTokens must be an integer/);
    await page.close();
  });

  test('chat form: Enter sends, text streams, tokens/s; greedy output equals Node; -Instruct template over two turns reuses the cache; Stop', async () => {
    const page = await open(`${server.url}/index.html`);
    await waitReady(page);
    await page.click('#settings-panel summary');
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '20');
    await page.fill('#repetition-penalty', '1.2');
    // completion mode (the built-in model is not instruction-tuned)
    assert.equal(await page.inputValue('#mode'), 'complete');
    await page.fill('#prompt', 'We the people');
    await page.press('#prompt', 'Enter');
    await page.waitForFunction(() => /tokens\/s/.test(document.getElementById('stats')?.textContent ?? ''), null, { timeout: 30_000 });
    const first = await page.$eval('#log li.assistant .text', (e) => e.textContent);
    const want = await generateText(node.model, node.tokenizer, 'We the people', { temperature: 0, maxNewTokens: 20, repetitionPenalty: 1.2 });
    assert.equal(first, want.text);
    assert.match(await page.$eval('#stats', (e) => e.textContent ?? ''), /^20 tokens \(max tokens\) · [\d.]+ tokens\/s/);

    // chat mode, two turns: the prompts are the -Instruct template; the second reuses the first's KV cache
    await page.click('#new-chat');
    await page.selectOption('#mode', 'chat');
    await page.fill('#system', 'Be brief.');
    const turns: string[] = [];
    for (const msg of ['What is the state of the Union?', 'And the economy?']) {
      await page.fill('#prompt', msg);
      await page.click('#send');
      await page.waitForFunction(
        (n) => document.querySelectorAll('#log li.assistant').length === n && !document.querySelector('#log li[aria-busy]'),
        turns.length + 1,
        { timeout: 30_000 },
      );
      turns.push(await page.$eval('#log li.assistant:last-of-type .text', (e) => e.textContent ?? ''));
    }
    const msgs = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'What is the state of the Union?' },
    ];
    node.model.reset();
    const t1 = await generateText(
      node.model,
      node.tokenizer,
      { ids: encodeChat(node.tokenizer, msgs) },
      { temperature: 0, maxNewTokens: 20, repetitionPenalty: 1.2 },
    );
    assert.equal(turns[0], t1.text);
    msgs.push({ role: 'assistant', content: t1.text.trim() } as never, { role: 'user', content: 'And the economy?' });
    const t2 = await generateText(
      node.model,
      node.tokenizer,
      { ids: encodeChat(node.tokenizer, msgs) },
      { temperature: 0, maxNewTokens: 20, repetitionPenalty: 1.2 },
    );
    assert.equal(turns[1], t2.text);
    assert.match(await page.$eval('#stats', (e) => e.textContent ?? ''), /\(\d+ reused\)/);

    // Stop: a long sampled completion, stopped once text has streamed in
    await page.click('#new-chat');
    await page.selectOption('#mode', 'complete');
    await page.fill('#temperature', '1');
    await page.fill('#repetition-penalty', '1');
    await page.fill('#max-tokens', '240');
    await page.fill('#prompt', 'The');
    await page.press('#prompt', 'Enter');
    await page.waitForFunction(() => (document.querySelector('#log li.assistant .text')?.textContent ?? '').length > 0, null, { timeout: 30_000 });
    await page.click('#stop');
    await page.waitForFunction(() => /tokens\/s/.test(document.getElementById('stats')?.textContent ?? ''), null, { timeout: 30_000 });
    const stats = await page.$eval('#stats', (e) => e.textContent ?? '');
    assert.match(stats, /\(stopped\)/, stats);
    assert.ok(Number(/^(\d+) tokens/.exec(stats)![1]) < 240, stats);
    assert.equal(await page.isDisabled('#stop'), true);
    assert.equal(await page.isDisabled('#send'), false);
    await page.close();
  });

  test('a model from a URL is cached (OPFS) and loads again with the server failing', async () => {
    server.mount('/remote/', BUILTIN);
    const page = await open(`${server.url}/index.html`);
    await waitReady(page);
    await page.click('#model-panel summary');
    server.log.length = 0;
    await page.fill('#model-url', '/remote/');
    await page.click('#url-form button');
    await waitReady(page, /\/remote\/ ready/);
    // downloaded whole once (into the cache), then read from there
    assert.equal(server.log.filter((r) => r.url === '/remote/model.safetensors' && !r.range && r.status === 200).length, 1, JSON.stringify(server.log));
    server.fail('/remote/', 503);
    await page.reload();
    await waitReady(page);
    await page.click('#model-panel summary');
    server.log.length = 0;
    await page.fill('#model-url', '/remote/');
    await page.click('#url-form button');
    const status = await waitReady(page, /\/remote\/ ready|Could not load/);
    assert.match(status, /\/remote\/ ready/);
    assert.deepEqual(
      server.log.filter((r) => r.url.startsWith('/remote/')),
      [],
      'nothing asked of the server',
    );
    server.fail('/remote/', null);
    await page.close();
  });

  test('a picked folder and a hub repo (a local imitation of the hub) load; a missing repo is named', async () => {
    server.mount('/hub/someone/tiny-openelm/resolve/main/', BUILTIN);
    const page = await open(`${server.url}/index.html?hub_endpoint=${encodeURIComponent(server.url + '/hub')}`);
    await waitReady(page);
    await page.click('#model-panel summary');
    await page.setInputFiles('#folder', BUILTIN);
    await waitReady(page, /openelm-sotu ready/);
    assert.match(await page.$eval('#model-name', (e) => e.textContent ?? ''), /openelm-sotu \(13M parameters\)/);
    await page.fill('#hub-repo', 'someone/tiny-openelm');
    await page.click('#hub-form button');
    await waitReady(page, /someone\/tiny-openelm ready/);
    await page.fill('#hub-repo', 'someone/absent');
    await page.click('#hub-form button');
    assert.match(await waitReady(page, /Could not load/), /Could not load someone\/absent: someone\/absent@main: no config\.json here/);
    await page.close();
    assert.deepEqual(pageErrors, []);
  });
});
