// WebGPU in Node (Dawn, the optional npm package "webgpu"): the adapter Node finds (here Chromium's
// SwiftShader, Vulkan on the CPU), every WGSL shader validated by Dawn, GPU logits against the
// plain-TypeScript kernels for each weight dtype, and `openelm generate / chat / bench --device
// webgpu` against --device wasm token for token. Its own file, so its own process: a crash in Dawn
// ends these tests only. Skipped, saying why, where no adapter exists (CI has one: .ci/run installs
// Chromium, whose SwiftShader ICD is the fallback).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type NodeAdapter, requestNodeAdapter } from '../src/kernels/webgpu/node.ts';
import { WebGpuKernels } from '../src/kernels/webgpu/webgpu.ts';
import { loadGpuModel, loadOpenELM } from '../src/load.ts';
import { GpuOpenELM } from '../src/model/gpu.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const FIX = path.join(ROOT, 'test/fixtures/openelm');
const BUILTIN = path.join(ROOT, 'builtin/openelm-sotu');
const MAIN = path.join(ROOT, 'src/cli/main.ts');

// one probe decides: no adapter → every test skips with the loader's reason (CI must have one)
const probe = await requestNodeAdapter().then(
  (a) => ({ ok: true as const, ...a, name: a.adapter.info.description }),
  (e: Error) => ({ ok: false as const, why: e.message }),
);
if (!probe.ok && process.env.CI) throw new Error(`CI must offer a WebGPU adapter in Node (.ci/run installs chromium for SwiftShader): ${probe.why}`);
const skip = probe.ok ? false : `WebGPU in Node: ${probe.why}`;
if (probe.ok) console.log(`# WebGPU in Node: ${probe.name} (driver: ${probe.driver})`);

let gpu: WebGpuKernels | undefined;
const device = async () => (gpu ??= await WebGpuKernels.fromAdapter((probe as NodeAdapter).adapter, (probe as NodeAdapter).driver));
after(() => gpu?.dispose());

function cli(args: string[], input = '') {
  const r = spawnSync(process.execPath, ['--import', 'tsx', MAIN, ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    input,
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
    timeout: 120_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').at(-1)!);

test('every WGSL shader compiles and its pipeline validates in Dawn', { skip }, async () => {
  const g = await device();
  assert.deepEqual(await g.validateShaders(), {});
  assert.ok(g.adapterName.length > 0);
});

test('GPU logits equal the plain-TypeScript kernels (f32, bf16, f16, q8_0, q4_0 weights, copied from a CPU model or loaded straight to the GPU; prefill and decode steps)', {
  skip,
}, async () => {
  const g = await device();
  const cases: [string, 'auto' | 'f16' | 'q8_0' | 'q4_0'][] = [
    ['tiny-f32', 'auto'],
    ['tiny-bf16-sharded', 'auto'],
    ['tiny-f32', 'f16'],
    ['tiny-f32', 'q8_0'],
    ['tiny-f32', 'q4_0'],
  ];
  for (const [fixture, dtype] of cases) {
    const { model, dispose } = await loadOpenELM(path.join(FIX, fixture), { backend: 'ref', dtype });
    // the f32 fixture's weights are copied from a CPU model; the others go from the file to the GPU tensor by tensor
    const gm =
      fixture === 'tiny-f32' && dtype === 'auto'
        ? GpuOpenELM.fromWeights(g, model.config, model.weights, model.cache.capacity)
        : (await loadGpuModel(path.join(FIX, fixture), g, { dtype })).model;
    assert.equal(gm.capacity, model.cache.capacity);
    const e = JSON.parse(fs.readFileSync(path.join(FIX, fixture, 'expected.json'), 'utf8'));
    const ids: number[] = e.input_ids;
    let want = model.forward(ids).slice();
    let got = await gm.forward(ids);
    for (let step = 0; step < 4; step++) {
      let worst = 0,
        scale = 0;
      for (let i = 0; i < want.length; i++) {
        scale = Math.max(scale, Math.abs(want[i]));
        worst = Math.max(worst, Math.abs(got[i] - want[i]));
      }
      assert.ok(worst <= 1e-4 * (1 + scale), `${fixture} as ${dtype}, step ${step}: max |gpu - ref| ${worst} (logits up to ${scale})`);
      const next = (7 * step + 3) % model.config.vocab_size;
      want = model.step(next).slice();
      got = await gm.forward([next]);
    }
    dispose();
  }
});

test('generate --device webgpu --json equals --device wasm token for token (tiny fixture, built-in model; greedy and seeded sampling)', { skip }, () => {
  const tiny = path.join(FIX, 'tiny-f32');
  const g = JSON.parse(fs.readFileSync(path.join(tiny, 'expected.json'), 'utf8')).greedy;
  const runs: [string, string[]][] = [
    ['tiny-f32 greedy', ['-m', tiny, '--prompt-ids', g.prompt_ids.join(','), '-n', '16', '--temperature', '0', '--ignore-eos']],
    [
      'tiny-f32 sampled',
      ['-m', tiny, '--prompt-ids', g.prompt_ids.join(','), '-n', '16', '--temperature', '0.8', '--top-p', '0.95', '--seed', '7', '--ignore-eos'],
    ],
    ['built-in greedy', ['-m', BUILTIN, 'The state of the Union is', '-n', '16', '--temperature', '0', '--ignore-eos']],
  ];
  for (const [what, args] of runs) {
    const gpuRun = cli(['generate', ...args, '--device', 'webgpu', '--json']);
    assert.equal(gpuRun.code, 0, `${what}: ${gpuRun.err}`);
    const cpuRun = cli(['generate', ...args, '--json']);
    assert.equal(cpuRun.code, 0, `${what}: ${cpuRun.err}`);
    const a = lastJson(gpuRun.out),
      b = lastJson(cpuRun.out);
    assert.equal(a.output_ids.length, 16, what);
    assert.deepEqual(a.output_ids, b.output_ids, `${what}: webgpu ${a.output_ids} vs wasm ${b.output_ids}`);
    assert.equal(a.text, b.text, what);
    assert.equal(a.device, 'webgpu');
    assert.match(a.adapter, /\S/);
    assert.equal(b.device, 'wasm');
    if (what === 'tiny-f32 greedy') assert.deepEqual(a.output_ids, g.output_ids.slice(0, 16), 'the PyTorch greedy tokens');
  }
});

test('chat --device webgpu: the same replies as wasm over two turns (KV cache kept between turns)', { skip }, () => {
  const args = ['chat', '-m', path.join(FIX, 'tiny-vocab32k-bf16'), '--temperature', '0', '-n', '6', '--system', 'Be brief.'];
  const input = 'Hello\nHow are you?\n';
  const a = cli([...args, '--device', 'webgpu'], input),
    b = cli(args, input);
  assert.equal(a.code, 0, a.err);
  assert.equal(b.code, 0, b.err);
  assert.equal(a.out, b.out);
  assert.equal(a.out.split('\n').filter(Boolean).length, 2);
});

test('bench --device webgpu --json reports prefill and decode tok/s with the adapter', { skip }, () => {
  const r = cli(['bench', '-m', path.join(FIX, 'tiny-f32'), '--device', 'webgpu', '--prompt-tokens', '8', '--gen-tokens', '4', '--repeat', '1', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = lastJson(r.out);
  assert.equal(j.device, 'webgpu');
  assert.match(j.adapter, /\S/);
  assert.ok(j.prefill_tps > 0 && j.decode_tps > 0, JSON.stringify(j));
  assert.equal(j.prompt_tokens, 8);
});

test('--device errors: an unknown device, CPU-only flags, a model the kernels cannot run, no adapter', { skip }, async () => {
  const bad = cli(['generate', '-m', path.join(FIX, 'tiny-f32'), '--prompt-ids', '1,2', '--device', 'cuda']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--device must be wasm, webgpu or auto, got "cuda"/);
  const lora = cli([
    'generate',
    '-m',
    path.join(FIX, 'tiny-f32'),
    '--prompt-ids',
    '1,2',
    '--device',
    'webgpu',
    '--adapter',
    path.join(FIX, 'tiny-f32-peft/lora'),
  ]);
  assert.equal(lora.code, 2);
  assert.match(lora.err, /--adapter does not apply with --device webgpu/);
  const spec = cli(['bench', '-m', path.join(FIX, 'tiny-f32'), '--device', 'webgpu', '--prompt-lookup', '4']);
  assert.equal(spec.code, 2);
  assert.match(spec.err, /--prompt-lookup does not apply with --device webgpu/);

  const g = await device();
  const { model, dispose } = await loadOpenELM(path.join(FIX, 'tiny-f32'), { backend: 'ref' });
  assert.throws(() => GpuOpenELM.check(g, { ...model.config, head_dim: 512 }), /WebGPU kernels cannot run this model: head_dim is 512.*--device wasm/);
  assert.throws(() => GpuOpenELM.check(g, { ...model.config, activation_fn_name: 'mish' }), /activation_fn_name "mish" has no WGSL kernel/);
  dispose();

  // a Vulkan driver the user names is respected (no fallback): here one that does not exist
  const none = spawnSync(
    process.execPath,
    ['--import', 'tsx', MAIN, 'generate', '-m', path.join(FIX, 'tiny-f32'), '--prompt-ids', '1,2', '--device', 'webgpu'],
    {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'VK_DRIVER_FILES')), VK_ICD_FILENAMES: '/nonexistent/icd.json' },
      timeout: 60_000,
    },
  );
  assert.equal(none.status, 1, none.stderr);
  assert.match(none.stderr, /no WebGPU adapter: .*\/nonexistent\/icd\.json.*install a Vulkan driver or chromium; --device wasm runs on the CPU/);
});
