// --adapter DIR on the commands that run a model (generate, chat, logits, eval, serve): a LoRA /
// DoRA adapter in PEFT's layout applied over the loaded base, whatever its dtype.
import type { OpenELM } from '../model/openelm.ts';
import { attachAdapter, loadAdapter } from '../peft/index.ts';
import type { Options } from './args.ts';

export const ADAPTER_OPTION: Options = { adapter: { type: 'string' } };

export const ADAPTER_HELP = `      --adapter DIR      apply a LoRA / DoRA adapter (PEFT's adapter_config.json +
                         adapter_model.safetensors, e.g. an 'openelm finetune --peft' run's --out)`;

/** Attaches the adapter named by --adapter, if any; returns its folder. */
export function applyAdapterOption(model: OpenELM, values: Record<string, unknown>): string | undefined {
  const dir = values.adapter as string | undefined;
  if (dir === undefined) return undefined;
  try {
    attachAdapter(model, loadAdapter(dir, model.config, model.kernels));
  } catch (e) {
    throw new Error(`--adapter ${dir}: ${(e as Error).message}`);
  }
  return dir;
}
