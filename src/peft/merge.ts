// Folding an adapter into the base weights, as PEFT's merge_and_unload:
//   LoRA: W' = W + s · B A
//   DoRA: W' = m / ‖W + s B A‖_row ⊙ (W + s B A)
//   embedding: E'[id, :] = E[id, :] + s · B · A[:, id]
// A merged model computes what base + adapter computes. With a tied output head, adapting the
// embedding would change the head too (PEFT leaves the head on the base weights), so the merged
// checkpoint unties it: lm_head.weight keeps the base embedding.
import type { OpenELMConfig } from '../config/config.ts';
import type { ParamLayout } from '../train/params.ts';
import type { Adapter } from './adapter.ts';
import { modulePath } from './config.ts';

/**
 * Merges the adapter into a model's parameters (a flat f32 buffer of `layout`), in place. Returns
 * the config of the merged model and its parameters' layout (different only when the head is untied).
 */
export function mergeAdapter(adapter: Adapter, layout: ParamLayout, params: Float32Array): { config: OpenELMConfig; untiedHead: Float32Array | null } {
  const t = adapter.tensors(),
    s = adapter.scale,
    r = adapter.r;
  for (const a of t.linears) {
    const W = layout.view(params, modulePath(a.target, a.layer) + '.weight');
    const A = a.A.data as Float32Array,
      B = a.B.data as Float32Array,
      inF = a.in;
    const row = new Float64Array(inF);
    for (let o = 0; o < a.out; o++) {
      for (let i = 0; i < inF; i++) row[i] = W[o * inF + i];
      for (let k = 0; k < r; k++) {
        const b = s * B[o * r + k];
        if (b !== 0) for (let i = 0; i < inF; i++) row[i] += b * A[k * inF + i];
      }
      let g = 1;
      if (a.magnitude) {
        let sum = 0;
        for (let i = 0; i < inF; i++) sum += row[i] * row[i];
        g = a.magnitude[o] / Math.sqrt(sum);
      }
      for (let i = 0; i < inF; i++) W[o * inF + i] = row[i] * g;
    }
  }
  const cfg = layout.config;
  let untiedHead: Float32Array | null = null;
  if (t.embedding) {
    const E = layout.view(params, 'transformer.token_embeddings.weight');
    if (cfg.share_input_output_layers) untiedHead = E.slice();
    const { A, B, vocab, dim } = t.embedding;
    for (let id = 0; id < vocab; id++) {
      for (let j = 0; j < dim; j++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += B[j * r + k] * A[k * vocab + id];
        if (acc !== 0) E[id * dim + j] = Math.fround(E[id * dim + j] + s * acc);
      }
    }
  }
  return { config: untiedHead ? { ...cfg, share_input_output_layers: false } : cfg, untiedHead };
}
