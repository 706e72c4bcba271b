import fs from 'node:fs';
import path from 'node:path';
import { numParameters, type OpenELMConfig, parseConfig, presetConfig } from '../../config/index.ts';
import { openCheckpoint, writeCheckpoint } from '../../io/checkpoint.ts';
import { normalizeDType } from '../../io/dtype.ts';
import { readJsonFile } from '../../io/json.ts';
import { checkOutputDir, OutputPathError } from '../../io/output.ts';
import { ProgressBar } from '../../io/progress.ts';
import { initTensors } from '../../model/init.ts';
import { num, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

export const initCommand: Command = {
  name: 'init',
  summary: 'write a randomly initialised checkpoint (HF layout) for a preset or config',
  help: `Usage: openelm init (--preset P | --config FILE) --out DIR [--dtype f32|bf16|f16] [--seed S] [--json]

Writes config.json + model.safetensors with weights ~ N(0, initializer_range²) and RMSNorm
weights 1 (Hugging Face's OpenELM initialisation), seeded. For tests, benchmarks and training
from scratch. The write is atomic: DIR appears complete or not at all.

Options:
      --preset P      OpenELM-270M, OpenELM-450M, OpenELM-1_1B or OpenELM-3B
      --config FILE   a config.json to use instead of a preset
  -o, --out DIR       output folder (must not exist, or be empty)
      --dtype D       f32 (default), bf16 or f16
      --seed S        random seed (default 0)
      --exist-ok      if DIR already holds a checkpoint, keep it and succeed (for scripts)
      --json          print {"out", "num_parameters", ...} when done`,
  async run(argv) {
    const { values: v } = parse(argv, {
      preset: { type: 'string' },
      config: { type: 'string' },
      out: { type: 'string', short: 'o' },
      dtype: { type: 'string' },
      seed: { type: 'string' },
      'exist-ok': { type: 'boolean' },
    });
    if ((v.preset === undefined) === (v.config === undefined)) throw new UsageError('give exactly one of --preset P or --config FILE');
    if (!v.out) throw new UsageError('--out DIR is required');
    const dtype = normalizeDType((v.dtype as string | undefined) ?? 'f32');
    if (dtype !== 'f32' && dtype !== 'bf16' && dtype !== 'f16')
      throw new UsageError(`--dtype must be f32, bf16 or f16, got "${v.dtype}" (quantize an initialised checkpoint with 'openelm quantize')`);
    const seed = num(v.seed as string | undefined, 'seed', { int: true }) ?? 0;
    let cfg: OpenELMConfig;
    if (v.preset) cfg = presetConfig(v.preset as string);
    else {
      const file = v.config as string;
      cfg = parseConfig(readJsonFile(file, 1024 * 1024), file);
    }
    const out = v.out as string;
    if (v['exist-ok'] && fs.existsSync(path.join(out, 'config.json'))) {
      const existing = openCheckpoint(out); // validates config and weights
      if (v.json) printJson({ out, num_parameters: numParameters(existing.config), existed: true });
      else process.stderr.write(`${out} already holds a checkpoint; keeping it\n`);
      return;
    }
    try {
      checkOutputDir(out, '--out');
    } catch (e) {
      throw e instanceof OutputPathError ? new UsageError(e.message) : e;
    }
    const total = numParameters(cfg);
    const bar = v.json ? undefined : new ProgressBar({ label: 'init', total, unit: 'items' });
    let done = 0;
    const tensors = (function* () {
      for (const t of initTensors(cfg, seed)) {
        yield t;
        done += t.data.length;
        bar?.update(done);
      }
    })();
    await writeCheckpoint(out, cfg, tensors, { dtype });
    bar?.finish();
    if (v.json) printJson({ out, num_parameters: total, dtype, seed });
    else process.stderr.write(`wrote ${out} (${total.toLocaleString('en-US')} parameters, ${dtype}, seed ${seed})\n`);
  },
};
