// A checkpoint folder as the model's tensor source.
import type { FileDType, TensorSource } from '../model/weights.ts';
import { openCheckpoint } from './checkpoint.ts';
import { readQuantizedLayout } from './quantized.ts';

/**
 * Opens a checkpoint folder as a tensor source (validated: shapes, dtypes, offsets). A quantized
 * checkpoint (docs/quantized-format.md) reports its q8_0 / q4_0 matrices as Q8_0 / Q4_0 with
 * their logical [rows, cols] shape, so they load into q8_0 / q4_0 weights with one copy.
 */
export function checkpointSource(dir: string): TensorSource {
  const ck = openCheckpoint(dir, { validate: false });
  const quant = readQuantizedLayout(ck);
  if (!quant) ck.validate();
  return {
    config: ck.config,
    info: (name) => {
      const q = quant?.get(name);
      if (q) return { dtype: q.type === 'q8_0' ? 'Q8_0' : 'Q4_0', shape: [q.rows, q.cols] };
      const t = ck.tensors.get(name);
      return t ? { dtype: t.dtype as FileDType, shape: t.shape } : undefined;
    },
    readInto: (name, dest) => ck.readInto(name, dest),
    readRangeInto: (name, offset, dest) => ck.readRangeInto(name, offset, dest),
  };
}
