// The numbers the compiled kernels switch on for a weight dtype or an activation: the
// AssemblyScript kernels (wasm/assembly/kernels.as: F32 = 0 ... Q4 = 4, ffn_act's `act`) and the
// WGSL shaders (webgpu/shaders.ts) use the same ones, so both backends take them from here.
import type { Activation, WeightDType } from './types.ts';

export const DTYPE_CODE: Record<WeightDType, number> = { f32: 0, bf16: 1, f16: 2, q8_0: 3, q4_0: 4 };

export const ACT_CODE: Record<Activation, number> = {
  swish: 0,
  silu: 0,
  gelu: 1,
  gelu_new: 2,
  gelu_pytorch_tanh: 2,
  gelu_fast: 2,
  quick_gelu: 3,
  relu: 4,
  sigmoid: 5,
  tanh: 6,
};
