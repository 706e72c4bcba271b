// Random initialisation of a fresh OpenELM, as Hugging Face's OpenELMPreTrainedModel._init_weights
// does it: every Linear and the embedding ~ N(0, initializer_range²), RMSNorm weights = 1.
// Seeded, so `openelm init --seed S` always writes the same checkpoint.
import type { OpenELMConfig } from '../config/config.ts';
import { expectedTensors } from '../config/config.ts';
import { Rng } from '../generate/rng.ts';

export interface InitTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Yields the tensors one at a time (so a large model never sits in memory twice). */
export function* initTensors(cfg: OpenELMConfig, seed = 0): Generator<InitTensor> {
  const rng = new Rng(seed);
  const std = cfg.initializer_range;
  for (const [name, shape] of expectedTensors(cfg)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (shape.length === 1)
      data.fill(1); // norms
    else for (let i = 0; i < n; i++) data[i] = rng.normal() * std;
    yield { name, shape, data };
  }
}
