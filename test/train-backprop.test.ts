// The backward pass against PyTorch: loss and every parameter's gradient of tiny-f32 on a 2×16
// batch (../shared/fixtures: grads.safetensors), through both kernel backends, with and without
// activation checkpointing.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openSafetensors } from '../src/io/safetensors.ts';
import { createKernels } from '../src/kernels/index.ts';
import type { Kernels } from '../src/kernels/types.ts';
import { checkpointSource } from '../src/load.ts';
import { Backprop } from '../src/train/backprop.ts';
import { IGNORE } from '../src/train/options.ts';
import { ParamLayout } from '../src/train/params.ts';
import { batchFromRows, relErr } from './helpers/train.ts';

const DIR = fileURLToPath(new URL('./fixtures/openelm/tiny-f32/', import.meta.url));
const expected = JSON.parse(fs.readFileSync(DIR + 'expected.json', 'utf8')).train;

async function gradsFor(k: Kernels, checkpointing: boolean) {
  const src = checkpointSource(DIR);
  const layout = new ParamLayout(src.config);
  const params = k.f32(layout.size),
    grads = k.f32(layout.size);
  layout.load(params, src);
  const batch = batchFromRows(expected.batch_ids);
  const bp = new Backprop(src.config, k, { batchSize: batch.batchSize, seqLen: batch.seqLen, activationCheckpointing: checkpointing, logitsChunk: 7 });
  const r = bp.step(layout.weights(params), layout.weights(grads), batch);
  return { layout, grads, r, bp, params, batch };
}

for (const backend of ['ref', 'wasm'] as const) {
  for (const checkpointing of [false, true]) {
    test(`gradients equal PyTorch's (${backend}, checkpointing ${checkpointing})`, async () => {
      const k = await createKernels(backend, { threads: 2 });
      try {
        const { layout, grads, r } = await gradsFor(k, checkpointing);
        assert.ok(Math.abs(r.loss - expected.loss) < 1e-4, `loss ${r.loss} vs ${expected.loss}`);
        assert.equal(r.tokens, 30);
        const ref = openSafetensors(DIR + 'grads.safetensors');
        for (const t of layout.tensors) {
          const want = ref.readAsF32(t.name);
          const e = relErr(layout.view(grads, t.name), want);
          assert.ok(e <= 1e-3, `${t.name}: relative error ${e}`);
        }
        assert.equal(ref.tensors.size, layout.tensors.length);
      } finally {
        k.dispose?.();
      }
    });
  }
}

test('loss-only forward equals the training forward; ignored targets drop out of the loss', async () => {
  const k = await createKernels('ref');
  const { layout, params, bp, batch, r } = await gradsFor(k, false);
  const w = layout.weights(params);
  assert.equal(bp.loss(w, batch).loss, r.loss);
  // ignoring a target removes its term: the mean over the rest
  const t2 = Int32Array.from(batch.targets);
  t2[3] = IGNORE;
  const r2 = bp.loss(w, { ...batch, targets: t2 });
  assert.equal(r2.tokens, 29);
  assert.ok(Math.abs(r2.loss - r.loss) > 1e-6 && Number.isFinite(r2.loss));
});

test('five AdamW steps reproduce PyTorch (losses, grad norms before clipping, final parameters)', async () => {
  const { Optimizer, clipGradNorm } = await import('../src/train/optim.ts');
  const { DEFAULT_OPTIMIZER } = await import('../src/train/options.ts');
  for (const backend of ['ref', 'wasm'] as const) {
    const k = await createKernels(backend, { threads: 2 });
    try {
      const { layout, params, grads, bp, batch } = await gradsFor(k, false);
      const a = expected.adamw;
      const opt = new Optimizer(k, layout, { ...DEFAULT_OPTIMIZER, beta1: a.betas[0], beta2: a.betas[1], eps: a.eps, weightDecay: a.weight_decay });
      const w = layout.weights(params),
        g = layout.weights(grads);
      for (let s = 0; s < a.steps; s++) {
        grads.fill(0);
        const r = bp.step(w, g, batch);
        const norm = clipGradNorm(k, grads, layout, a.clip_grad_norm);
        assert.ok(Math.abs(r.loss - a.losses[s]) <= 1e-4 * Math.max(1, a.losses[s]), `${backend} step ${s + 1}: loss ${r.loss} vs ${a.losses[s]}`);
        assert.ok(
          Math.abs(norm - a.grad_norms_before_clip[s]) <= 1e-4 * a.grad_norms_before_clip[s],
          `${backend} step ${s + 1}: grad norm ${norm} vs ${a.grad_norms_before_clip[s]}`,
        );
        opt.update(params, grads, a.lr);
      }
      const ref = openSafetensors(DIR + a.final_params_file);
      for (const t of layout.tensors) {
        const e = relErr(layout.view(params, t.name), ref.readAsF32(t.name));
        assert.ok(e <= 1e-4, `${backend} ${t.name}: relative error ${e} after ${a.steps} steps`);
      }
    } finally {
      k.dispose?.();
    }
  }
});
