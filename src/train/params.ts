// Trainable parameters as llm.c keeps them: one flat f32 buffer (in kernel memory) with a named
// view per tensor, in the Hugging Face checkpoint's names and order (config.expectedTensors).
// Gradients and the optimizer's moments are more buffers with the same layout, so the optimizer
// and the gradient norm run over flat arrays while the model reads tensors by name.
import type { OpenELMConfig } from '../config/config.ts';
import { expectedTensors } from '../config/config.ts';
import { bf16BitsToF32, f16BitsToF32 } from '../kernels/half.ts';
import type { Kernels, Weight } from '../kernels/types.ts';
import { initTensors } from '../model/init.ts';
import { assembleWeights, type ModelWeights, type TensorSource } from '../model/weights.ts';

export interface ParamTensor {
  name: string;
  shape: number[];
  /** first element in the flat buffer */
  offset: number;
  size: number;
  /** weight decay applies (2-D and larger tensors; never norms) */
  decay: boolean;
}

/**
 * Where named tensors sit in one flat f32 buffer (16-element aligned). The optimizer, clipping and
 * checkpoints work on any layout: a model's parameters (ParamLayout) or an adapter's (src/peft).
 */
export class FlatLayout {
  readonly tensors: ParamTensor[] = [];
  readonly size: number;
  private readonly byName = new Map<string, ParamTensor>();

  constructor(list: Iterable<{ name: string; shape: number[]; decay?: boolean }>) {
    let offset = 0;
    for (const { name, shape, decay } of list) {
      const size = shape.reduce((a, b) => a * b, 1);
      // 16-element alignment keeps every tensor on a 64-byte boundary for the SIMD kernels
      const t = { name, shape, offset, size, decay: decay ?? shape.length >= 2 };
      this.tensors.push(t);
      this.byName.set(name, t);
      offset += Math.ceil(size / 16) * 16;
    }
    this.size = offset;
  }

  get(name: string): ParamTensor {
    const t = this.byName.get(name);
    if (!t) throw new Error(`no parameter named "${name}"`);
    return t;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  /** Number of real (unpadded) parameters. */
  get count(): number {
    return this.tensors.reduce((a, t) => a + t.size, 0);
  }

  view(buf: Float32Array, name: string): Float32Array {
    const t = this.get(name);
    return buf.subarray(t.offset, t.offset + t.size);
  }

  /** The tensors of buf for writing a checkpoint (views, no copies). */
  *entries(buf: Float32Array): Generator<{ name: string; shape: number[]; data: Float32Array }> {
    for (const t of this.tensors) yield { name: t.name, shape: t.shape, data: this.view(buf, t.name) };
  }
}

/** Where every tensor of a model config sits in a flat buffer, in the checkpoint's names and order. */
export class ParamLayout extends FlatLayout {
  constructor(readonly config: OpenELMConfig) {
    super([...expectedTensors(config)].map(([name, shape]) => ({ name, shape })));
  }

  /**
   * The buffer seen as model weights (f32 `Weight` views sharing its memory): the inference model
   * can run on the parameters being trained, and gradients get the same named structure.
   */
  weights(buf: Float32Array): ModelWeights {
    const cfg = this.config;
    const mat = (name: string): Weight => {
      const t = this.get(name);
      return { dtype: 'f32', rows: t.shape[0], cols: t.shape[1], data: this.view(buf, name) };
    };
    return assembleWeights(cfg, (name) => this.view(buf, name), mat);
  }

  /** Fills buf from a checkpoint (any float dtype; quantized checkpoints cannot be trained). */
  load(buf: Float32Array, src: TensorSource, where = 'checkpoint'): void {
    for (const t of this.tensors) {
      const info = src.info(t.name);
      if (!info) throw new Error(`${where}: tensor "${t.name}" is missing`);
      const dest = this.view(buf, t.name);
      if (info.dtype === 'F32') {
        src.readInto(t.name, new Uint8Array(dest.buffer, dest.byteOffset, t.size * 4));
      } else if (info.dtype === 'BF16' || info.dtype === 'F16') {
        const raw = new Uint16Array(t.size);
        src.readInto(t.name, new Uint8Array(raw.buffer));
        const conv = info.dtype === 'BF16' ? bf16BitsToF32 : f16BitsToF32;
        for (let i = 0; i < t.size; i++) dest[i] = conv(raw[i]);
      } else {
        throw new Error(
          `${where}: tensor "${t.name}" is quantized (${info.dtype}); training needs float weights (f32, bf16 or f16): use the original checkpoint`,
        );
      }
    }
  }

  /** Fills buf with Hugging Face's initialisation (N(0, initializer_range²), norms 1), seeded. */
  init(buf: Float32Array, seed: number): void {
    for (const t of initTensors(this.config, seed)) this.view(buf, t.name).set(t.data);
  }
}

/** A flat buffer of the layout's size in kernel memory (parameters, gradients, moments). */
export function allocParams(k: Kernels, layout: FlatLayout): Float32Array {
  return k.f32(layout.size);
}
