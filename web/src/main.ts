// The chat page: UI on the main thread, the model in a Web Worker (src/web/worker.ts).
//
// Deep links run one completion with the built-in model when the page loads:
//   index.html?prompt=TEXT&max_new_tokens=N&temperature=T&autorun=1   (also top_p, top_k, seed, repetition_penalty)
// The text goes into #output (its textContent equals `openelm generate --json`'s "text"), then
// #output gets data-done; on failure data-done and data-error (the message).

import type { ChatMessage } from '../../src/generate/chat.ts';
import { ModelWorker } from '../../src/web/client.ts';
import type { LoadRequest, ModelInfo, RunOptions, RunPrompt } from '../../src/web/protocol.ts';

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $<HTMLParagraphElement>('status');
const modelName = $<HTMLSpanElement>('model-name');
const progress = $<HTMLProgressElement>('progress');
const progressText = $<HTMLParagraphElement>('progress-text');
const log = $<HTMLOListElement>('log');
const form = $<HTMLFormElement>('chat-form');
const promptBox = $<HTMLTextAreaElement>('prompt');
const send = $<HTMLButtonElement>('send');
const stopBtn = $<HTMLButtonElement>('stop');
const stats = $<HTMLParagraphElement>('stats');
const mode = $<HTMLSelectElement>('mode');
const output = $<HTMLPreElement>('output');

const BUILTIN_URL = new URL('models/openelm-sotu/', location.href).href;
const worker = new ModelWorker(new Worker(new URL('../../src/web/worker.ts', import.meta.url), { type: 'module' }));

let ready = false;
let busy = false;
let messages: ChatMessage[] = [];

function setBusy(b: boolean): void {
  busy = b;
  send.disabled = b || !ready;
  stopBtn.disabled = !b;
}

const mb = (b: number) => `${(b / 1e6).toFixed(1)} MB`;

async function loadModel(req: Omit<LoadRequest, 'type'>, label: string): Promise<ModelInfo> {
  ready = false;
  setBusy(false);
  send.disabled = true;
  status.textContent = `Loading ${label}…`;
  progress.hidden = false;
  progress.value = 0;
  try {
    const info = await worker.load(req, (p) => {
      progress.value = p.total ? p.loaded / p.total : 0;
      progressText.textContent =
        p.phase === 'download'
          ? `${p.cached ? 'From the cache' : 'Downloading'} ${p.file}: ${mb(p.loaded)} of ${mb(p.total)}`
          : `Loading weights: ${mb(p.loaded)} of ${mb(p.total)}`;
    });
    ready = true;
    modelName.textContent = `${label} (${(info.parameters / 1e6).toFixed(0)}M parameters)`;
    status.textContent = `${label} ready, ${info.note}; loaded in ${(info.loadMs / 1000).toFixed(1)} s.`;
    progressText.textContent = '';
    mode.value = /instruct/i.test(label) ? 'chat' : 'complete';
    return info;
  } catch (e) {
    status.textContent = `Could not load ${label}: ${(e as Error).message}`;
    throw e;
  } finally {
    progress.hidden = true;
    setBusy(false);
  }
}

/** ?device=webgpu|wasm overrides the choice (default: WebGPU on a hardware adapter, else WebAssembly) */
const DEVICE = (
  ['webgpu', 'wasm'].includes(new URLSearchParams(location.search).get('device') ?? '') ? new URLSearchParams(location.search).get('device') : 'auto'
) as 'auto' | 'webgpu' | 'wasm';
const loadBuiltin = () => loadModel({ spec: { kind: 'url', url: BUILTIN_URL }, cache: 'none', device: DEVICE }, 'built-in model');

function num(id: string, fallback: number): number {
  const v = Number($<HTMLInputElement>(id).value);
  return Number.isFinite(v) ? v : fallback;
}

function settings(): RunOptions {
  return {
    temperature: num('temperature', 0.7),
    topP: num('top-p', 0.9),
    maxNewTokens: Math.max(1, Math.round(num('max-tokens', 128))),
    repetitionPenalty: num('repetition-penalty', 1),
  };
}

function addMessage(role: 'user' | 'assistant' | 'error', text: string): HTMLElement {
  const li = document.createElement('li');
  li.className = role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : role === 'assistant' ? 'OpenELM' : 'Error';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text;
  li.append(who, body);
  log.append(li);
  li.scrollIntoView({ block: 'end' });
  return body;
}

async function submit(): Promise<void> {
  const text = promptBox.value;
  if (!ready || busy || !text.trim()) return;
  promptBox.value = '';
  addMessage('user', text);
  let prompt: RunPrompt;
  if (mode.value === 'chat') {
    const system = $<HTMLTextAreaElement>('system').value.trim();
    messages.push({ role: 'user', content: text });
    prompt = { messages: [...(system ? [{ role: 'system' as const, content: system }] : []), ...messages] };
  } else prompt = text;
  const reply = addMessage('assistant', '');
  reply.parentElement!.setAttribute('aria-busy', 'true');
  setBusy(true);
  stats.textContent = 'Thinking…';
  try {
    const r = await worker.run(prompt, settings(), (t) => {
      reply.textContent += t;
    });
    reply.textContent = r.text;
    if (mode.value === 'chat') messages.push({ role: 'assistant', content: r.text.trim() });
    const why = r.finishReason === 'aborted' ? ' (stopped)' : r.finishReason === 'length' ? ' (max tokens)' : '';
    stats.textContent =
      `${r.outputIds.length} tokens${why} · ${r.tokensPerSecond.toFixed(1)} tokens/s · prompt ${r.promptIds.length} tokens in ${r.prefillMs.toFixed(0)} ms` +
      (r.cachedTokens ? ` (${r.cachedTokens} reused)` : '');
  } catch (e) {
    reply.parentElement!.className = 'error';
    reply.textContent = (e as Error).message;
    stats.textContent = '';
    if (mode.value === 'chat') messages.pop();
  } finally {
    reply.parentElement!.removeAttribute('aria-busy');
    setBusy(false);
    promptBox.focus();
  }
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  void submit();
});
promptBox.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    void submit();
  }
});
stopBtn.addEventListener('click', () => worker.stop());
document.addEventListener('keydown', (e) => {
  if (e.key === 'Escape' && busy) worker.stop();
});
$('new-chat').addEventListener('click', () => {
  messages = [];
  log.replaceChildren();
  stats.textContent = '';
  worker.reset();
  promptBox.focus();
});
$('load-builtin').addEventListener('click', () => void loadBuiltin().catch(() => undefined));
$<HTMLInputElement>('folder').addEventListener('change', (e) => {
  const files = Array.from((e.target as HTMLInputElement).files ?? []);
  if (!files.length) return;
  const name = (files[0] as File & { webkitRelativePath?: string }).webkitRelativePath?.split('/')[0] || 'picked folder';
  void loadModel({ spec: { kind: 'files', files, name }, device: DEVICE }, name).catch(() => undefined);
});
$<HTMLFormElement>('hub-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const repo = $<HTMLInputElement>('hub-repo').value.trim();
  const endpoint = new URLSearchParams(location.search).get('hub_endpoint') ?? undefined;
  if (repo) void loadModel({ spec: { kind: 'hub', repo, endpoint }, device: DEVICE }, repo).catch(() => undefined);
});
$<HTMLFormElement>('url-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const url = $<HTMLInputElement>('model-url').value.trim();
  if (url) void loadModel({ spec: { kind: 'url', url: new URL(url, location.href).href }, device: DEVICE }, url).catch(() => undefined);
});

/** ?prompt=…&autorun=1: one completion with the built-in model into #output. */
async function deepLink(q: URLSearchParams): Promise<void> {
  const section = $<HTMLElement>('completion');
  section.hidden = false;
  try {
    const opt = (k: string): number | undefined => {
      if (!q.has(k)) return undefined;
      const v = Number(q.get(k));
      if (q.get(k)!.trim() === '' || !Number.isFinite(v)) throw new Error(`${k} must be a number, got ${JSON.stringify(q.get(k))}`);
      return v;
    };
    const options: RunOptions = {
      maxNewTokens: opt('max_new_tokens'),
      temperature: opt('temperature'),
      topP: opt('top_p'),
      topK: opt('top_k'),
      seed: opt('seed'),
      repetitionPenalty: opt('repetition_penalty'),
    };
    await loadBuiltin();
    setBusy(true);
    const r = await worker.run(q.get('prompt')!, options, (t) => {
      output.textContent += t;
    });
    output.textContent = r.text;
    stats.textContent = `${r.outputIds.length} tokens · ${r.tokensPerSecond.toFixed(1)} tokens/s`;
    output.dataset.tokensPerSecond = r.tokensPerSecond.toFixed(2);
  } catch (e) {
    output.dataset.error = (e as Error).message || String(e);
  } finally {
    output.dataset.done = '1';
    setBusy(false);
  }
}

const q = new URLSearchParams(location.search);
if (q.has('prompt')) {
  promptBox.value = q.get('prompt')!;
  mode.value = 'complete';
}
if (q.has('prompt') && q.get('autorun') === '1') void deepLink(q);
else void loadBuiltin().catch(() => undefined);
