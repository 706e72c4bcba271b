// LoRA and DoRA adapters in Hugging Face PEFT's format: read, write, apply while running, train
// (src/train/finetune), and fold into a full checkpoint (merge.ts).
//
//   const { model } = await loadModel('apple/OpenELM-270M');
//   attachAdapter(model, loadAdapter('my-adapter', model.config, model.kernels));
//   // model.forward(...) now runs base + adapter; attachAdapter(model, null) removes it
import type { OpenELM } from '../model/openelm.ts';
import type { Adapter } from './adapter.ts';
import { AdapterRuntime } from './lora.ts';

export { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, Adapter, type AdapterTensors, isAdapterDir, type LinearAdapter, loadAdapter } from './adapter.ts';
export {
  type AdapterConfig,
  adapterConfigJson,
  adapterScaling,
  DEFAULT_ADAPTER,
  EMBEDDING_TARGET,
  LINEAR_TARGETS,
  type LinearTarget,
  parseAdapterConfig,
} from './config.ts';
export { AdapterRuntime } from './lora.ts';

/** Applies an adapter to the model's forward pass from now on (null removes it). */
export function attachAdapter(model: OpenELM, adapter: Adapter | null): void {
  model.adapter = adapter ? new AdapterRuntime(model.kernels, adapter, model.weights, model.chunkSize) : null;
}
