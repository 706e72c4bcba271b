// LoRA and DoRA adapters in PEFT's layout: logits of the adapted model against PEFT's (golden
// vectors from the PyTorch reference), over float and quantized bases, on both backends; reading
// and writing PEFT's files.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createKernels } from '../src/kernels/index.ts';
import type { Kernels } from '../src/kernels/types.ts';
import { checkpointSource } from '../src/load.ts';
import { OpenELM } from '../src/model/openelm.ts';
import { Adapter, attachAdapter, loadAdapter, parseAdapterConfig } from '../src/peft/index.ts';

const BASE = fileURLToPath(new URL('./fixtures/openelm/tiny-f32/', import.meta.url));
const PEFT = fileURLToPath(new URL('./fixtures/openelm/tiny-f32-peft/', import.meta.url));
const expected = JSON.parse(fs.readFileSync(path.join(PEFT, 'expected.json'), 'utf8'));

function maxAbsDiff(a: Float32Array, rows: number[][]): number {
  const V = rows[0].length;
  let m = 0;
  rows.forEach((row, t) =>
    row.forEach((v, j) => {
      m = Math.max(m, Math.abs(v - a[t * V + j]));
    }),
  );
  return m;
}

for (const backend of ['ref', 'wasm'] as const) {
  for (const kind of ['lora', 'dora'] as const) {
    test(`${kind} logits match PEFT (${backend})`, async () => {
      const k: Kernels = await createKernels(backend, { threads: 2 });
      try {
        const model = OpenELM.load(checkpointSource(BASE), { kernels: k });
        const adapter = loadAdapter(path.join(PEFT, kind), model.config, k);
        assert.equal(adapter.scale, expected.scaling);
        const base = model.forwardAll(expected.input_ids);
        attachAdapter(model, adapter);
        model.reset();
        const got = model.forwardAll(expected.input_ids);
        assert.ok(maxAbsDiff(got, expected[kind].logits) <= 1e-3, `max diff ${maxAbsDiff(got, expected[kind].logits)}`);
        assert.ok(maxAbsDiff(base, expected[kind].logits) > 1e-2, 'the adapter changes the logits');
        // token by token through the KV cache = all at once
        model.reset();
        const V = model.config.vocab_size,
          ids = expected.input_ids as number[];
        for (let t = 0; t < ids.length; t++) {
          const row = model.step(ids[t]);
          let m = 0;
          for (let j = 0; j < V; j++) m = Math.max(m, Math.abs(row[j] - got[t * V + j]));
          assert.ok(m < 1e-4, `position ${t}: ${m}`);
        }
        attachAdapter(model, null);
        model.reset();
        assert.deepEqual(model.forwardAll(expected.input_ids), base);
      } finally {
        k.dispose?.();
      }
    });
  }
}

test("adapters over a quantized base (q8_0, q4_0): the error is the quantization's, not more", async () => {
  const k = await createKernels('wasm', { threads: 2 });
  try {
    const f32 = OpenELM.load(checkpointSource(BASE), { kernels: k });
    const V = f32.config.vocab_size;
    const exact = chunkRows(f32.forwardAll(expected.input_ids), V);
    for (const dtype of ['q8_0', 'q4_0'] as const) {
      const q = OpenELM.load(checkpointSource(BASE), { kernels: k, dtype });
      const baseErr = maxAbsDiff(q.forwardAll(expected.input_ids), exact);
      for (const kind of ['lora', 'dora'] as const) {
        attachAdapter(q, loadAdapter(path.join(PEFT, kind), q.config, k));
        q.reset();
        const d = maxAbsDiff(q.forwardAll(expected.input_ids), expected[kind].logits);
        assert.ok(d > 0 && d < 2 * baseErr, `${dtype} ${kind}: ${d} against the base's own error ${baseErr}`);
      }
    }
  } finally {
    k.dispose?.();
  }
});

function chunkRows(a: Float32Array, V: number): number[][] {
  const rows: number[][] = [];
  for (let t = 0; t < a.length / V; t++) rows.push(Array.from(a.subarray(t * V, (t + 1) * V)));
  return rows;
}

test("an adapter written by openelm reads back identically, in PEFT's layout", async () => {
  const k = await createKernels('ref');
  const model = OpenELM.load(checkpointSource(BASE), { kernels: k });
  const a = loadAdapter(path.join(PEFT, 'dora'), model.config, k);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-peft-'));
  try {
    a.save(path.join(dir, 'out'));
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'adapter_config.json'), 'utf8'));
    assert.equal(cfg.peft_type, 'LORA');
    assert.equal(cfg.use_dora, true);
    assert.equal(cfg.r, 4);
    assert.deepEqual(cfg.target_modules, ['qkv_proj', 'out_proj', 'proj_1', 'proj_2']);
    const b = loadAdapter(path.join(dir, 'out'), model.config, k);
    assert.deepEqual(b.params, a.params);
    const names = fs.readdirSync(path.join(dir, 'out')).sort();
    assert.deepEqual(names, ['adapter_config.json', 'adapter_model.safetensors']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('adapter configs: bad settings are named', () => {
  const bad = (o: object, re: RegExp) => assert.throws(() => parseAdapterConfig(o, 'x.json'), re);
  bad({ r: 0 }, /"r" must be an integer/);
  bad({ r: 4, lora_dropout: 1 }, /"lora_dropout"/);
  bad({ r: 4, target_modules: ['q_proj'] }, /"target_modules" names "q_proj"/);
  bad({ r: 4, bias: 'all' }, /"bias"/);
  bad({ r: 4, fan_in_fan_out: true }, /"fan_in_fan_out"/);
  bad({ r: 4, rank_pattern: { qkv_proj: 8 } }, /"rank_pattern"/);
  bad({ peft_type: 'IA3' }, /"peft_type"/);
  const c = parseAdapterConfig({ r: 16, lora_alpha: 32, use_rslora: true, target_modules: 'transformer\\.layers\\.[01]\\..*\\.qkv_proj' }, 'x.json');
  assert.equal(c.r, 16);
  assert.equal(typeof c.target_modules, 'string');
});

test('a fresh adapter starts equal to the base model (B = 0) and covers the targets asked for', async () => {
  const k = await createKernels('ref');
  const model = OpenELM.load(checkpointSource(BASE), { kernels: k });
  const base = model.forwardAll(expected.input_ids);
  for (const dora of [false, true]) {
    const cfg = parseAdapterConfig(
      {
        r: 2,
        lora_alpha: 4,
        use_dora: dora,
        target_modules: dora ? ['qkv_proj', 'proj_2'] : ['qkv_proj', 'proj_2', 'token_embeddings'],
        layers_to_transform: [0, 2],
      },
      'x',
    );
    const a = new Adapter(cfg, model.config, k);
    a.init(1, model.weights);
    const t = a.tensors();
    assert.deepEqual(
      t.linears.map((l) => `${l.layer}.${l.target}`),
      ['0.qkv_proj', '0.proj_2', '2.qkv_proj', '2.proj_2'],
    );
    assert.equal(t.embedding !== null, !dora);
    attachAdapter(model, a);
    model.reset();
    const got = model.forwardAll(expected.input_ids);
    let m = 0;
    for (let i = 0; i < got.length; i++) m = Math.max(m, Math.abs(got[i] - base[i]));
    assert.ok(m < 1e-5, `dora=${dora}: ${m}`);
    attachAdapter(model, null);
    model.reset();
  }
  const tooDeep = parseAdapterConfig({ r: 2, layers_to_transform: [9] }, 'x');
  assert.throws(() => new Adapter(tooDeep, model.config, k), /layers_to_transform names layer\(s\) 9 but the model has 4/);
});

// ---- training: gradients of the adapter, SFT and DPO losses ----

import { openSafetensors } from '../src/io/safetensors.ts';
import { Backprop } from '../src/train/backprop.ts';
import { type Batch, IGNORE } from '../src/train/options.ts';
import { relErr } from './helpers/train.ts';

/** Rows padded to a common length; targets only from position `promptLen` on (the response). */
function responseBatch(rows: number[][], promptLen: number): Batch {
  const S = Math.max(...rows.map((r) => r.length)) - 1,
    B = rows.length;
  const inputs = new Int32Array(B * S),
    targets = new Int32Array(B * S).fill(IGNORE);
  rows.forEach((r, b) => {
    for (let t = 0; t + 1 < r.length; t++) {
      inputs[b * S + t] = r[t];
      if (t + 1 >= promptLen) targets[b * S + t] = r[t + 1];
    }
  });
  return { batchSize: B, seqLen: S, inputs, targets };
}

for (const backend of ['ref', 'wasm'] as const) {
  for (const kind of ['lora', 'dora'] as const) {
    test(`${kind}: SFT loss and adapter gradients match PEFT, DPO losses too (${backend})`, async () => {
      const k = await createKernels(backend, { threads: 2 });
      try {
        const model = OpenELM.load(checkpointSource(BASE), { kernels: k });
        const adapter = loadAdapter(path.join(PEFT, kind), model.config, k);
        const e = expected[kind];
        for (const checkpointing of [false, true]) {
          const batch = responseBatch([expected.input_ids], e.sft.prompt_len);
          const bp = new Backprop(model.config, k, { batchSize: 1, seqLen: batch.seqLen, adapter, activationCheckpointing: checkpointing });
          const grads = k.f32(adapter.layout.size);
          const r = bp.step(model.weights, null, batch, 0, 1, { adapterGrads: adapter.tensors(grads) });
          assert.ok(Math.abs(r.loss - e.sft.loss) < 1e-4, `loss ${r.loss} vs ${e.sft.loss}`);
          const ref = openSafetensors(path.join(PEFT, e.sft.grads_file));
          for (const t of adapter.layout.tensors) {
            const want = ref.readAsF32(t.name);
            const err = relErr(adapter.layout.view(grads, t.name), want);
            assert.ok(err <= 1e-3, `${t.name}: relative error ${err}`);
          }
          // the sequence-level path (per-row coefficients) with the mean's coefficients gives the same gradients
          const g2 = k.f32(adapter.layout.size);
          bp.step(model.weights, null, batch, 0, 1, { adapterGrads: adapter.tensors(g2), rowCoef: (_nll, tok) => Float64Array.from(tok, () => 1 / r.tokens) });
          assert.ok(relErr(g2, grads) < 1e-6);
        }
        // DPO: summed response log-probs of policy (base + adapter) and reference (base alone)
        const d = e.dpo;
        const batch = responseBatch([d.chosen_ids, d.rejected_ids], d.prompt_len);
        const bp = new Backprop(model.config, k, { batchSize: 2, seqLen: batch.seqLen, adapter });
        const pol = Array.from(bp.loss(model.weights, batch).rowNll, (x) => -x);
        const ref = Array.from(bp.loss(model.weights, batch, 0, { noAdapter: true }).rowNll, (x) => -x);
        for (let i = 0; i < 2; i++) {
          assert.ok(Math.abs(pol[i] - d.policy_logp[i]) < 2e-3, `policy ${pol[i]} vs ${d.policy_logp[i]}`);
          assert.ok(Math.abs(ref[i] - d.reference_logp[i]) < 2e-3, `reference ${ref[i]} vs ${d.reference_logp[i]}`);
        }
      } finally {
        k.dispose?.();
      }
    });
  }
}

test('DoRA with gradient accumulation: the later micro-batches of a step reuse the row norms, with the same gradients', async () => {
  const k = await createKernels('ref');
  const model = OpenELM.load(checkpointSource(BASE), { kernels: k });
  const adapter = loadAdapter(path.join(PEFT, 'dora'), model.config, k);
  const e = expected.dora;
  const batch = responseBatch([expected.input_ids], e.sft.prompt_len);
  const bp = new Backprop(model.config, k, { batchSize: 1, seqLen: batch.seqLen, adapter });
  const twoMicroBatches = (reuse: boolean) => {
    const g = k.f32(adapter.layout.size);
    bp.step(model.weights, null, batch, 0, 0.5, { adapterGrads: adapter.tensors(g) });
    bp.step(model.weights, null, batch, 0, 0.5, { adapterGrads: adapter.tensors(g), sameAdapter: reuse });
    return g;
  };
  const fresh = twoMicroBatches(false),
    reused = twoMicroBatches(true);
  assert.deepEqual(reused, fresh);
  // the norms are really kept: after a change of B (which only a new step may make) a pass told
  // sameAdapter runs on the old norms, one without it on the new ones
  const m = adapter.tensors().linears.find((a) => a.magnitude)!;
  bp.loss(model.weights, batch);
  (m.B.data as Float32Array).fill(0.05);
  const stale = bp.step(model.weights, null, batch, 0, 1, { sameAdapter: true }).loss;
  const fresh2 = bp.step(model.weights, null, batch, 0, 1).loss;
  assert.notEqual(stale, fresh2);
  assert.equal(bp.step(model.weights, null, batch, 0, 1, { sameAdapter: true }).loss, fresh2);
});
