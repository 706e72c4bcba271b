// `openelm finetune` as the held-back checks run it: one SGD step from a PEFT adapter on a
// pre-tokenized record (the logged loss is PEFT's, the saved adapter is the initial one minus the
// reference gradient), the DPO losses of a pre-tokenized pair, a killed-and-resumed adapter run,
// and records that are wrong, named by file, line and field.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openSafetensors } from '../src/io/safetensors.ts';
import { relErr } from './helpers/train.ts';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BASE = path.join(ROOT, 'test/fixtures/openelm/tiny-f32');
const PEFT = path.join(ROOT, 'test/fixtures/openelm/tiny-f32-peft');
const CLI = ['--import', 'tsx', path.join(ROOT, 'src/cli/main.ts')];
const expected = JSON.parse(fs.readFileSync(path.join(PEFT, 'expected.json'), 'utf8'));
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-finetune-'));
const readLog = (f: string) =>
  fs
    .readFileSync(f, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));

function openelm(args: string[]) {
  return spawnSync(process.execPath, [...CLI, ...args], { encoding: 'utf8', cwd: ROOT, env: { ...process.env, CI: process.env.CI ?? '' } });
}

for (const kind of ['lora', 'dora'] as const) {
  test(`finetune --init-adapter (${kind}): one SGD step = the adapter minus PEFT's gradient`, () => {
    const dir = tmp();
    try {
      const ids = expected.input_ids as number[],
        P = expected[kind].sft.prompt_len;
      fs.writeFileSync(path.join(dir, 'sft.jsonl'), JSON.stringify({ prompt_ids: ids.slice(0, P), completion_ids: ids.slice(P) }) + '\n');
      const r = openelm([
        'finetune',
        '--model',
        BASE,
        '--init-adapter',
        path.join(PEFT, kind),
        '--data',
        path.join(dir, 'sft.jsonl'),
        '--method',
        'sft',
        '--optimizer',
        'sgd',
        '--lr',
        '1',
        '--steps',
        '1',
        '--batch-size',
        '1',
        '--log',
        path.join(dir, 'log.jsonl'),
        '--out',
        path.join(dir, 'out'),
        '--quiet',
      ]);
      assert.equal(r.status, 0, r.stderr);
      const [rec] = readLog(path.join(dir, 'log.jsonl'));
      assert.equal(rec.step, 1);
      assert.ok(Math.abs(rec.loss - expected[kind].sft.loss) < 1e-4, `loss ${rec.loss} vs ${expected[kind].sft.loss}`);
      const saved = openSafetensors(path.join(dir, 'out', 'adapter_model.safetensors'));
      const init = openSafetensors(path.join(PEFT, kind, 'adapter_model.safetensors'));
      const grads = openSafetensors(path.join(PEFT, expected[kind].sft.grads_file));
      for (const name of init.tensors.keys()) {
        const a = init.readAsF32(name),
          g = grads.readAsF32(name),
          want = a.map((x, i) => x - g[i]);
        const got = saved.readAsF32(name);
        // compare the update itself (the adapter moved by −g), not just the parameters
        const moved = got.map((x, i) => x - a[i]),
          step = want.map((x, i) => x - a[i]);
        assert.ok(relErr(moved, step) <= 1e-3, `${name}: update error ${relErr(moved, step)}`);
      }
      const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'adapter_config.json'), 'utf8'));
      assert.equal(cfg.use_dora, kind === 'dora');
      assert.equal(cfg.r, 4);
      // the run's adapter works with --adapter
      const lg = openelm(['logits', '-m', BASE, '--adapter', path.join(dir, 'out'), '--ids', ids.join(','), '--json']);
      assert.equal(lg.status, 0, lg.stderr);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test(`finetune --method dpo (${kind}): the step-1 loss is the reference's, sigmoid and hinge`, () => {
    const dir = tmp();
    try {
      const d = expected[kind].dpo,
        P = d.prompt_len;
      fs.writeFileSync(
        path.join(dir, 'dpo.jsonl'),
        JSON.stringify({ prompt_ids: d.chosen_ids.slice(0, P), chosen_ids: d.chosen_ids.slice(P), rejected_ids: d.rejected_ids.slice(P) }) + '\n',
      );
      for (const loss of ['sigmoid', 'hinge'] as const) {
        const out = path.join(dir, loss);
        const r = openelm([
          'finetune',
          '--model',
          BASE,
          '--init-adapter',
          path.join(PEFT, kind),
          '--data',
          path.join(dir, 'dpo.jsonl'),
          '--method',
          'dpo',
          '--dpo-loss',
          loss,
          '--beta',
          String(d.beta),
          '--optimizer',
          'sgd',
          '--lr',
          '1',
          '--steps',
          '1',
          '--batch-size',
          '1',
          '--log',
          path.join(out, 'log.jsonl'),
          '--out',
          out,
          '--quiet',
        ]);
        assert.equal(r.status, 0, r.stderr);
        const [rec] = readLog(path.join(out, 'log.jsonl'));
        const want = loss === 'sigmoid' ? d.loss_sigmoid : d.loss_hinge;
        assert.ok(Math.abs(rec.loss - want) < 1e-3, `${loss}: ${rec.loss} vs ${want}`);
        const margin = d.beta * (d.policy_logp[0] - d.reference_logp[0] - (d.policy_logp[1] - d.reference_logp[1]));
        assert.ok(Math.abs(rec.reward_margin - margin) < 1e-3, `margin ${rec.reward_margin} vs ${margin}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('malformed records stop before any step, naming the file, line and field', () => {
  const dir = tmp();
  try {
    const f = path.join(dir, 'bad.jsonl');
    const cases: [string, string, RegExp][] = [
      [
        'sft',
        '{"prompt_ids": [1, 2], "completion_ids": [3]}\n{"prompt_ids": [1], "completion_ids": [9999]}\n',
        /bad\.jsonl:2: "completion_ids" element 0 \(9999\) is not a token id in \[0, 512\)/,
      ],
      ['sft', '{"prompt_ids": [1, 2], "completion_ids": [3]}\nnot json\n', /bad\.jsonl:2: this line is not valid JSON/],
      ['sft', '{"prompt": "a"}\n', /bad\.jsonl:1: "completion" is missing/],
      ['sft', '{"messages": [{"role": "bot", "content": "x"}]}\n', /bad\.jsonl:1: "messages" element 0: role must be system, user or assistant/],
      ['dpo', '{"prompt_ids": [1, 2], "chosen_ids": [3]}\n', /bad\.jsonl:1: "rejected_ids" is missing/],
      ['dpo', '{"text": "x"}\n', /bad\.jsonl:1: a DPO record has "prompt", "chosen" and "rejected"/],
    ];
    for (const [method, text, re] of cases) {
      fs.writeFileSync(f, text);
      const out = path.join(dir, 'out');
      const r = openelm([
        'finetune',
        '--model',
        BASE,
        '--data',
        f,
        '--method',
        method,
        '--peft',
        'lora',
        '--lr',
        '0.1',
        '--steps',
        '1',
        '--out',
        out,
        '--quiet',
      ]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, re);
      assert.ok(!fs.existsSync(path.join(out, 'checkpoints')), 'nothing written');
    }
    const r = openelm(['finetune', '--model', BASE, '--data', f, '--rank', '4', '--lr', '0.1', '--steps', '1', '--out', path.join(dir, 'o')]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /--rank needs --peft lora\|dora/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

function maxDiff(a: number[][], b: number[][]): number {
  let m = 0;
  a.forEach((row, t) =>
    row.forEach((x, j) => {
      m = Math.max(m, Math.abs(x - b[t][j]));
    }),
  );
  return m;
}

for (const kind of ['lora', 'dora'] as const) {
  test(`logits --adapter (${kind}) equal PEFT's; merge then logits equal the adapter's`, () => {
    const dir = tmp();
    try {
      const ids = (expected.input_ids as number[]).join(',');
      const a = openelm(['logits', '-m', BASE, '--adapter', path.join(PEFT, kind), '--ids', ids, '--json']);
      assert.equal(a.status, 0, a.stderr);
      const adapted = JSON.parse(a.stdout).logits;
      assert.ok(maxDiff(adapted, expected[kind].logits) <= 1e-3);
      const m = openelm(['merge', '-m', BASE, '--adapter', path.join(PEFT, kind), '--out', path.join(dir, 'merged'), '--json']);
      assert.equal(m.status, 0, m.stderr);
      const b = openelm(['logits', '-m', path.join(dir, 'merged'), '--ids', ids, '--json']);
      assert.equal(b.status, 0, b.stderr);
      const d = maxDiff(JSON.parse(b.stdout).logits, adapted);
      assert.ok(d <= 1e-3, `merged vs adapter: ${d}`);
      // merge refuses to overwrite: the folder now holds a model
      const again = openelm(['merge', '-m', BASE, '--adapter', path.join(PEFT, kind), '--out', path.join(dir, 'merged')]);
      assert.equal(again.status, 2);
      assert.match(again.stderr, /exists and is not an empty folder/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('an adapter trained on the embedding too: merge unties the head and computes the same', () => {
  const dir = tmp();
  try {
    fs.writeFileSync(
      path.join(dir, 'sft.jsonl'),
      [
        [1, 5, 9, 33, 7],
        [1, 8, 2, 90, 4, 6],
      ]
        .map((r) => JSON.stringify({ prompt_ids: r.slice(0, 2), completion_ids: r.slice(2) }))
        .join('\n') + '\n',
    );
    const r = openelm([
      'finetune',
      '-m',
      BASE,
      '--data',
      path.join(dir, 'sft.jsonl'),
      '--peft',
      'lora',
      '--rank',
      '2',
      '--targets',
      'qkv_proj,proj_2,token_embeddings',
      '--lr',
      '0.05',
      '--steps',
      '3',
      '--batch-size',
      '2',
      '--out',
      path.join(dir, 'run'),
      '--quiet',
      '--json',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const log = readLog(path.join(dir, 'run', 'train.jsonl'));
    assert.ok(log[2].loss < log[0].loss, `loss falls: ${log.map((x) => x.loss)}`);
    const ids = '1,5,9,33,7,8';
    const a = JSON.parse(openelm(['logits', '-m', BASE, '--adapter', path.join(dir, 'run'), '--ids', ids, '--json']).stdout).logits;
    const m = openelm(['merge', '-m', BASE, '--adapter', path.join(dir, 'run'), '--out', path.join(dir, 'merged'), '--json']);
    assert.equal(m.status, 0, m.stderr);
    assert.equal(JSON.parse(m.stdout).untied_head, true);
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'merged', 'config.json'), 'utf8')).share_input_output_layers, false);
    const b = JSON.parse(openelm(['logits', '-m', path.join(dir, 'merged'), '--ids', ids, '--json']).stdout).logits;
    assert.ok(maxDiff(a, b) <= 1e-4, `${maxDiff(a, b)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a LoRA run with dropout killed after a checkpoint and resumed logs the same losses and ends with the same adapter', () => {
  const dir = tmp();
  try {
    const rows = Array.from({ length: 12 }, (_, i) => Array.from({ length: 6 + (i % 5) }, (_, t) => 1 + ((i * 37 + t * 11) % 500)));
    fs.writeFileSync(path.join(dir, 'sft.jsonl'), rows.map((r) => JSON.stringify({ prompt_ids: r.slice(0, 3), completion_ids: r.slice(3) })).join('\n') + '\n');
    const args = (out: string, steps: number) => [
      'finetune',
      '-m',
      BASE,
      '--data',
      path.join(dir, 'sft.jsonl'),
      '--peft',
      'dora',
      '--rank',
      '4',
      '--dropout',
      '0.2',
      '--lr',
      '0.01',
      '--steps',
      String(steps),
      '--batch-size',
      '3',
      '--save-every',
      '2',
      '--eval-every',
      '2',
      '--val-fraction',
      '0.2',
      '--out',
      out,
      '--quiet',
    ];
    // the uninterrupted run, and one that stops after step 4 (as a kill after that checkpoint leaves it) then resumes to 6
    assert.equal(openelm(args(path.join(dir, 'a'), 6)).status, 0);
    assert.equal(openelm(args(path.join(dir, 'b'), 4)).status, 0);
    const r = openelm([...args(path.join(dir, 'b'), 6), '--resume']);
    assert.equal(r.status, 0, r.stderr);
    const la = readLog(path.join(dir, 'a', 'train.jsonl')),
      lb = readLog(path.join(dir, 'b', 'train.jsonl'));
    assert.deepEqual(
      lb.map((x) => [x.step, x.loss, x.val_loss]),
      la.map((x) => [x.step, x.loss, x.val_loss]),
    );
    const A = openSafetensors(path.join(dir, 'a', 'adapter_model.safetensors')),
      B = openSafetensors(path.join(dir, 'b', 'adapter_model.safetensors'));
    for (const name of A.tensors.keys()) assert.deepEqual(B.readAsF32(name), A.readAsF32(name), name);
    // refuses to start over a run without --resume
    const again = openelm(args(path.join(dir, 'a'), 6));
    assert.equal(again.status, 1);
    assert.match(again.stderr, /already holds checkpoints of a run: add --resume/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test("the shipped fine-tuning recipes load: the paper's PEFT settings and Apple's DPO settings per size", async () => {
  const { loadFinetuneRecipe } = await import('../src/train/finetune/recipe.ts');
  const { loadRecipe, resolveTrainOptions } = await import('../src/train/recipe.ts');
  const lora = loadFinetuneRecipe(path.join(ROOT, 'recipes/finetune-lora.yaml'));
  assert.deepEqual(lora.lora, { r: 32, alpha: 32, dropout: 0.1, rslora: false, targets: ['qkv_proj', 'out_proj', 'proj_1', 'proj_2', 'token_embeddings'] });
  assert.equal(lora.peft, 'lora');
  const o = resolveTrainOptions(loadRecipe(path.join(ROOT, 'recipes/finetune-lora.yaml')), {
    init: BASE,
    data: { paths: ['x'], seqLen: 8 },
    steps: 4375,
    out: 'x',
  });
  assert.equal(o.schedule.lr, 3e-4);
  assert.equal(o.schedule.minLr, 3e-5);
  assert.equal(o.schedule.warmup, 1000);
  assert.equal(o.optimizer.weightDecay, 0);
  assert.equal(o.gradClip, 1);
  assert.equal(o.gradAccum, 2);
  assert.equal(loadFinetuneRecipe(path.join(ROOT, 'recipes/finetune-dora.yaml')).peft, 'dora');
  const want = { '270M': ['hinge', 5, 2e-5], '450M': ['hinge', 8, 3e-5], '1_1B': ['sigmoid', 5, 5e-5], '3B': ['hinge', 10, 1e-4] } as const;
  for (const [size, [loss, epochs, lr]] of Object.entries(want)) {
    const f = path.join(ROOT, `recipes/dpo-${size}.yaml`);
    const ft = loadFinetuneRecipe(f);
    assert.deepEqual([ft.method, ft.dpo?.loss, ft.dpo?.beta, ft.epochs, ft.peft], ['dpo', loss, 0.01, epochs, 'none']);
    assert.equal(resolveTrainOptions(loadRecipe(f), { init: BASE, data: { paths: ['x'], seqLen: 8 }, steps: 10, out: 'x' }).schedule.lr, lr);
  }
  // and one runs: full DPO with the 270M recipe on the tiny model
  const dir = tmp();
  try {
    fs.writeFileSync(path.join(dir, 'p.jsonl'), JSON.stringify({ prompt_ids: [1, 5, 6], chosen_ids: [7, 8], rejected_ids: [9, 10, 11] }) + '\n');
    const r = openelm([
      'finetune',
      '-m',
      BASE,
      '--config',
      path.join(ROOT, 'recipes/dpo-270M.yaml'),
      '--data',
      path.join(dir, 'p.jsonl'),
      '--out',
      path.join(dir, 'o'),
      '--json',
    ]);
    assert.equal(r.status, 0, r.stderr);
    const s = JSON.parse(r.stdout.trim().split('\n').pop()!);
    assert.equal(s.adapter, false);
    assert.ok(Math.abs(s.loss - 1) < 1e-6, 'hinge loss of a policy equal to its reference is 1');
    assert.ok(fs.existsSync(path.join(dir, 'o', 'model.safetensors')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('QLoRA-style (a q8_0 base, a float adapter) and full SFT both learn; the full run writes a model', () => {
  const dir = tmp();
  try {
    const rows = Array.from({ length: 8 }, (_, i) => [1, 20 + i, 30 + i, 40 + i, 50 + i, 60 + i, 2]);
    fs.writeFileSync(path.join(dir, 'sft.jsonl'), rows.map((r) => JSON.stringify({ prompt_ids: r.slice(0, 2), completion_ids: r.slice(2) })).join('\n') + '\n');
    const common = ['-m', BASE, '--data', path.join(dir, 'sft.jsonl'), '--steps', '6', '--batch-size', '4', '--quiet'];
    const q = openelm(['finetune', ...common, '--peft', 'lora', '--rank', '4', '--dtype', 'q8_0', '--lr', '0.02', '--out', path.join(dir, 'q')]);
    assert.equal(q.status, 0, q.stderr);
    const lq = readLog(path.join(dir, 'q', 'train.jsonl'));
    assert.ok(lq[5].loss < lq[0].loss - 0.1, `QLoRA loss falls: ${lq.map((x) => x.loss.toFixed(3))}`);
    const f = openelm(['finetune', ...common, '--lr', '0.003', '--out', path.join(dir, 'f')]);
    assert.equal(f.status, 0, f.stderr);
    const lf = readLog(path.join(dir, 'f', 'train.jsonl'));
    assert.ok(lf[5].loss < lf[0].loss - 0.1, `full SFT loss falls: ${lf.map((x) => x.loss.toFixed(3))}`);
    assert.ok(fs.existsSync(path.join(dir, 'f', 'model.safetensors')) && !fs.existsSync(path.join(dir, 'f', 'adapter_model.safetensors')));
    const bad = openelm(['finetune', ...common, '--dtype', 'q8_0', '--lr', '0.01', '--out', path.join(dir, 'x')]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--dtype sets the frozen base's storage of an adapter run/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('chat and generate take --adapter; a wrong adapter is named', async () => {
  const dir = tmp();
  try {
    const missing = openelm(['generate', '-m', BASE, '--adapter', path.join(dir, 'nope'), '--prompt-ids', '1,2', '-n', '2']);
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /--adapter .*nope: .*not an adapter folder \(no adapter_config\.json\)/);
    // an adapter for another model: shapes named
    const vocab = path.join(ROOT, 'test/fixtures/openelm/tiny-vocab32k-bf16');
    const other = openelm(['generate', '-m', vocab, '--adapter', path.join(PEFT, 'lora'), '--prompt-ids', '1,2', '-n', '2']);
    assert.equal(other.status, 1);
    assert.match(other.stderr, /--adapter .*has shape \[.*\] but this model and r=4 need \[.*\] \(an adapter for another model\?\)/);
    // chat with the built-in model and an adapter made for it (B random, so it changes the reply)
    const { Adapter, parseAdapterConfig } = await import('../src/peft/index.ts');
    const { RefKernels } = await import('../src/kernels/ref.ts');
    const { checkpointSource } = await import('../src/load.ts');
    const { OpenELM } = await import('../src/model/openelm.ts');
    const k = new RefKernels();
    const builtin = OpenELM.load(checkpointSource(path.join(ROOT, 'builtin/openelm-sotu')), { kernels: k });
    const a = new Adapter(parseAdapterConfig({ r: 2, lora_alpha: 64, target_modules: ['proj_2'] }, 'x'), builtin.config, k);
    a.init(3, builtin.weights);
    for (const l of a.tensors().linears)
      (l.B.data as Float32Array).forEach((_, i, b) => {
        b[i] = ((i * 7919) % 13) / 13 - 0.5;
      });
    a.save(path.join(dir, 'ad'));
    const chat = (extra: string[]) =>
      spawnSync(process.execPath, [...CLI, 'chat', '-m', 'builtin', ...extra, '--temperature', '0', '-n', '8'], {
        input: 'Who are you?\n',
        encoding: 'utf8',
        cwd: ROOT,
      });
    const plain = chat([]),
      adapted = chat(['--adapter', path.join(dir, 'ad')]);
    assert.equal(plain.status, 0, plain.stderr);
    assert.equal(adapted.status, 0, adapted.stderr);
    assert.notEqual(adapted.stdout, plain.stdout);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('eval --adapter scores what the merged model scores (the cached-context batched path included)', async () => {
  const dir = tmp();
  try {
    const { Adapter, parseAdapterConfig } = await import('../src/peft/index.ts');
    const { RefKernels } = await import('../src/kernels/ref.ts');
    const { checkpointSource } = await import('../src/load.ts');
    const { OpenELM } = await import('../src/model/openelm.ts');
    const k = new RefKernels();
    const builtin = OpenELM.load(checkpointSource(path.join(ROOT, 'builtin/openelm-sotu')), { kernels: k });
    const a = new Adapter(
      parseAdapterConfig({ r: 2, lora_alpha: 8, use_dora: true, target_modules: ['qkv_proj', 'out_proj', 'proj_1', 'proj_2'] }, 'x'),
      builtin.config,
      k,
    );
    a.init(5, builtin.weights);
    for (const l of a.tensors().linears)
      (l.B.data as Float32Array).forEach((_, i, b) => {
        b[i] = ((i * 7919) % 17) / 170 - 0.05;
      });
    a.save(path.join(dir, 'ad'));
    const items = [
      { context: 'The Congress of the United States', choices: ['shall make laws', 'is a fish', 'met in Washington'], label: 0 },
      { context: 'Fellow citizens, the state of the Union is', choices: ['strong', 'purple today'], label: 0 },
    ];
    fs.writeFileSync(path.join(dir, 'mc.jsonl'), items.map((x) => JSON.stringify(x)).join('\n') + '\n');
    const evalJson = (args: string[]) => {
      const r = openelm(['eval', ...args, '--tasks', path.join(dir, 'mc.jsonl'), '--json', '--per-item']);
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    const plain = evalJson(['-m', 'builtin']);
    const adapted = evalJson(['-m', 'builtin', '--adapter', path.join(dir, 'ad')]);
    assert.equal(openelm(['merge', '-m', 'builtin', '--adapter', path.join(dir, 'ad'), '--out', path.join(dir, 'merged')]).status, 0);
    const merged = evalJson(['-m', path.join(dir, 'merged')]);
    const ll = (r: { items: { loglik: number[] }[] }) => r.items.flatMap((x) => x.loglik);
    ll(adapted).forEach((x, i) => assert.ok(Math.abs(x - ll(merged)[i]) < 2e-3, `choice ${i}: adapter ${x} vs merged ${ll(merged)[i]}`));
    assert.ok(
      ll(adapted).some((x, i) => Math.abs(x - ll(plain)[i]) > 1e-2),
      'the adapter changes the scores',
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
