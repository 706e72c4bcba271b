// The built-in model: a small layer-wise-scaled OpenELM that openelm trained itself (with
// `openelm train` and recipes/builtin.yaml on the built-in corpus) and ships in the package, so
// generation works offline on a fresh install. Its folder holds the checkpoint (config.json +
// model.safetensors in bf16), the recipe, the training log and the loss curve.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

/** The name that selects the built-in model where a model is expected (`-m builtin`). */
export const BUILTIN_MODEL = 'builtin';

/** The built-in model's folder, or null when this installation lacks it. */
export function builtinModelDir(): string | null {
  const dir = fileURLToPath(new URL('../builtin/openelm-sotu/', import.meta.url));
  return fs.existsSync(dir + 'model.safetensors') ? dir : null;
}
