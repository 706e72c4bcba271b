// The lowest level: a checkpoint as a tensor source, the model, and raw logits.
//   node --import tsx examples/logits.ts <model folder>
import { argmax, checkpointSource, createKernels, OpenELM } from '../src/index.ts';

const dir = process.argv[2] ?? 'test/fixtures/openelm/tiny-f32';
const kernels = await createKernels('wasm', { threads: 2 });
try {
  const model = OpenELM.load(checkpointSource(dir), { kernels });
  const ids = [1, 5, 7, 9];
  const logits = model.forwardAll(ids); // [ids.length, vocab]
  const V = model.config.vocab_size;
  for (let t = 0; t < ids.length; t++) console.log(`position ${t}: next token ${argmax(logits.subarray(t * V, (t + 1) * V))}`);
  console.log('layer-wise scaling:', model.config.num_query_heads, 'query heads,', model.config.ffn_dims, 'FFN widths');
} finally {
  kernels.dispose?.();
}
