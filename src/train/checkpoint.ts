// Training checkpoints: everything an exact resume needs, in files other tools read.
//
//   OUT/checkpoints/step-00000100/
//     config.json, model.safetensors   the fp32 master weights in Hugging Face layout (openelm and
//                                      transformers' OpenELM code load the folder as a model)
//     optimizer.safetensors            the optimizer's buffers per parameter ("exp_avg.<name>", …)
//     trainer_state.json               step, tokens seen, data position, RNG state, the options
//   OUT/config.json, OUT/model.safetensors
//                                      the newest checkpoint's weights (hard links), so
//                                      `openelm generate -m OUT` runs the latest model
//
// A checkpoint is written into a temporary folder and renamed into place, so a folder named
// step-N is complete; a run killed while writing leaves only a temporary folder, removed later.
// model.safetensors is the last file touched, so it is the newest file of the checkpoint.
import fs from 'node:fs';
import path from 'node:path';
import type { OpenELMConfig } from '../config/config.ts';
import { writeCheckpoint } from '../io/checkpoint-write.ts';
import { openSafetensors, writeSafetensors } from '../io/safetensors.ts';
import { syncDir } from '../io/safetensors-write.ts';
import type { OptimizerState } from './optim.ts';
import type { FlatLayout, ParamLayout } from './params.ts';

export const CHECKPOINTS_DIR = 'checkpoints';
const STEP_DIR = /^step-(\d{8})$/;
export const STATE_FILE = 'trainer_state.json';
const OPTIMIZER_FILE = 'optimizer.safetensors';

export interface TrainerState {
  format: 'openelm-trainer-state';
  version: 1;
  /** optimizer steps completed */
  step: number;
  /** training tokens consumed (counted targets) */
  tokens: number;
  optimizer: { name: string; step: number };
  /** the data pipeline's reading position (opaque to the trainer) */
  data: unknown;
  /** any RNG states the run uses (opaque) */
  rng: unknown;
  /** the options of the run, for the record and for resume checks */
  options: unknown;
  /** seconds spent training so far */
  elapsed: number;
}

export function checkpointDir(out: string, step: number): string {
  return path.join(out, CHECKPOINTS_DIR, `step-${String(step).padStart(8, '0')}`);
}

/** Complete checkpoints under OUT, oldest first. */
export function listCheckpoints(out: string): { step: number; dir: string }[] {
  const root = path.join(out, CHECKPOINTS_DIR);
  if (!fs.existsSync(root)) return [];
  return fs
    .readdirSync(root)
    .map((name) => ({ m: STEP_DIR.exec(name), name }))
    .filter((e) => e.m && fs.existsSync(path.join(root, e.name, STATE_FILE)))
    .map((e) => ({ step: Number(e.m![1]), dir: path.join(root, e.name) }))
    .sort((a, b) => a.step - b.step);
}

/** How a checkpoint's weights are written: a full model (HF layout) or an adapter (PEFT layout). */
export interface CheckpointWeights {
  /** writes the weight files into a new folder */
  write(dir: string): Promise<void> | void;
  /** the files OUT links to the newest checkpoint */
  files: string[];
  /** the file touched last (the checkpoint's newest) */
  newest: string;
}

/** The weights of a full model in HF layout (config.json + model.safetensors, fp32). */
export function modelWeights(config: OpenELMConfig, layout: ParamLayout, params: Float32Array): CheckpointWeights {
  return {
    files: ['config.json', 'model.safetensors'],
    newest: 'model.safetensors',
    write: (dir) => writeCheckpoint(dir, config, layout.entries(params), { dtype: 'f32' }),
  };
}

/** Writes a checkpoint atomically, points OUT's weight files at it, keeps the newest `keep`. */
export async function saveCheckpoint(
  out: string,
  weights: CheckpointWeights,
  layout: FlatLayout,
  opt: OptimizerState,
  state: TrainerState,
  keep = 2,
): Promise<string> {
  const dir = checkpointDir(out, state.step);
  const root = path.dirname(dir);
  fs.mkdirSync(root, { recursive: true });
  // leftovers of a run killed while saving
  for (const name of fs.readdirSync(root)) if (name.includes('.tmp')) fs.rmSync(path.join(root, name), { recursive: true, force: true });
  const tmp = `${dir}.tmp`;
  fs.rmSync(tmp, { recursive: true, force: true });
  if (fs.existsSync(dir)) fs.rmSync(dir, { recursive: true, force: true }); // the same step saved again (Ctrl-C right after a save)
  await weights.write(tmp);
  const tensors = [];
  for (const [buf, data] of Object.entries(opt.buffers)) {
    for (const t of layout.tensors) tensors.push({ name: `${buf}.${t.name}`, dtype: 'F32' as const, shape: t.shape, data: layout.view(data, t.name) });
  }
  writeSafetensors(path.join(tmp, OPTIMIZER_FILE), tensors, { optimizer: state.optimizer.name, step: String(opt.step) });
  writeJsonSynced(path.join(tmp, STATE_FILE), state);
  const now = new Date();
  fs.utimesSync(path.join(tmp, weights.newest), now, now);
  syncDir(tmp);
  fs.renameSync(tmp, dir);
  syncDir(root);
  // OUT/model.safetensors and OUT/config.json: the newest weights, replaced atomically
  for (const f of weights.files) {
    const link = path.join(out, `.${f}.tmp`);
    fs.rmSync(link, { force: true });
    try {
      fs.linkSync(path.join(dir, f), link);
    } catch {
      fs.copyFileSync(path.join(dir, f), link); // file systems without hard links
    }
    fs.renameSync(link, path.join(out, f));
  }
  syncDir(out);
  const all = listCheckpoints(out);
  for (const c of all.slice(0, Math.max(0, all.length - keep))) fs.rmSync(c.dir, { recursive: true, force: true });
  return dir;
}

export interface LoadedTrainerState {
  dir: string;
  state: TrainerState;
  /** reads the optimizer buffers into the given ones (same names) */
  readOptimizer(into: Record<string, Float32Array>, layout: FlatLayout): void;
}

export function readTrainerState(dir: string): LoadedTrainerState {
  const file = path.join(dir, STATE_FILE);
  let state: TrainerState;
  try {
    state = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: cannot read the trainer state: ${(e as Error).message}`);
  }
  if (state?.format !== 'openelm-trainer-state' || state.version !== 1 || !Number.isInteger(state.step)) {
    throw new Error(`${file}: not an openelm trainer state (format ${JSON.stringify(state?.format)}, version ${JSON.stringify(state?.version)})`);
  }
  return {
    dir,
    state,
    readOptimizer(into, layout) {
      const f = openSafetensors(path.join(dir, OPTIMIZER_FILE));
      for (const [buf, data] of Object.entries(into)) {
        for (const t of layout.tensors) {
          const name = `${buf}.${t.name}`;
          const info = f.tensors.get(name);
          if (!info) throw new Error(`${f.path}: tensor "${name}" is missing (was the run started with another optimizer or model?)`);
          if (info.dtype !== 'F32' || info.byteLength !== t.size * 4)
            throw new Error(`${f.path}: tensor "${name}" is ${info.dtype} [${info.shape}], expected F32 [${t.shape}]`);
          f.readInto(name, layout.view(data, t.name));
        }
      }
    },
  };
}

function writeJsonSynced(file: string, v: unknown): void {
  const fd = fs.openSync(file, 'w');
  try {
    fs.writeFileSync(fd, JSON.stringify(v, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
