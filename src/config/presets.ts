// The four published OpenELM sizes. Base and -Instruct share a shape; only the weights differ.
import { type OpenELMConfig, parseConfig } from './config.ts';

const SHAPES = {
  'OpenELM-270M': { num_transformer_layers: 16, model_dim: 1280, head_dim: 64 },
  'OpenELM-450M': { num_transformer_layers: 20, model_dim: 1536, head_dim: 64 },
  'OpenELM-1_1B': { num_transformer_layers: 28, model_dim: 2048, head_dim: 64 },
  'OpenELM-3B': { num_transformer_layers: 36, model_dim: 3072, head_dim: 128 },
} as const;

export type PresetName = keyof typeof SHAPES;
export const PRESET_NAMES = Object.keys(SHAPES) as PresetName[];

/** Normalises "openelm-270m-instruct", "apple/OpenELM-270M" etc. to a preset name, or undefined. */
export function presetNameOf(name: string): PresetName | undefined {
  const base = name
    .replace(/^apple\//i, '')
    .replace(/-instruct$/i, '')
    .toLowerCase()
    .replace(/\./g, '_');
  return PRESET_NAMES.find((p) => p.toLowerCase() === base);
}

/** The config of a preset (defaults: ffn_multipliers [0.5, 4.0], qkv_multipliers [0.5, 1.0], GQA 4). */
export function presetConfig(name: string): OpenELMConfig {
  const p = presetNameOf(name);
  if (!p) throw new Error(`unknown preset "${name}"; expected one of ${PRESET_NAMES.join(', ')} (optionally with -Instruct)`);
  return parseConfig({ model_type: 'openelm', ...SHAPES[p], ffn_multipliers: [0.5, 4.0], qkv_multipliers: [0.5, 1.0] }, `preset ${p}`);
}
