import fs from 'node:fs';
import path from 'node:path';
import { checkpointSource } from '../../io/checkpoint-source.ts';
import { writeCheckpoint } from '../../io/checkpoint-write.ts';
import { resolveModel } from '../../io/hub.ts';
import { createKernels } from '../../kernels/index.ts';
import { loadAdapter } from '../../peft/adapter.ts';
import { mergeAdapter } from '../../peft/merge.ts';
import { ParamLayout } from '../../train/params.ts';
import { parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { modelSource } from '../model-options.ts';

/** Files of a model folder besides its weights that a merged copy keeps (the tokenizer's). */
const KEEP = ['tokenizer.json', 'tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json'];

export const mergeCommand: Command = {
  name: 'merge',
  summary: 'fold a LoRA / DoRA adapter into a full checkpoint',
  help: `Usage: openelm merge --model M --adapter DIR --out DIR [--dtype f32|bf16|f16] [--json]

Writes a Hugging Face checkpoint whose weights are the base's with the adapter folded in
(LoRA: W + s·BA; DoRA: m / ‖W + s·BA‖ ⊙ (W + s·BA)), as PEFT's merge_and_unload: it computes
what the base with --adapter computes, without the adapter at run time. An adapted embedding on a
model with a tied output head unties the head (lm_head.weight keeps the base embedding, as the
adapted model reads it). The base must be a float checkpoint (quantize after merging).

  -m, --model M       the base the adapter was trained on (folder, hub repo id or builtin)
      --adapter DIR   the adapter (adapter_config.json + adapter_model.safetensors)
  -o, --out DIR       the merged checkpoint (a new or empty folder)
      --dtype D       storage of the merged weights: f32 (default), bf16 or f16
      --json          print {"out", "tensors", "untied_head"}

Example:
  openelm merge -m builtin --adapter runs/chat-lora --out merged && openelm chat -m merged`,
  async run(argv) {
    const { values: v } = parse(argv, {
      model: { type: 'string', short: 'm' },
      adapter: { type: 'string' },
      out: { type: 'string', short: 'o' },
      dtype: { type: 'string' },
      revision: { type: 'string' },
      offline: { type: 'boolean' },
    });
    if (!v.adapter) throw new UsageError('--adapter DIR is required');
    if (!v.out) throw new UsageError('--out DIR is required');
    const dtype = ((v.dtype as string | undefined) ?? 'f32') as 'f32' | 'bf16' | 'f16';
    if (!['f32', 'bf16', 'f16'].includes(dtype)) throw new UsageError(`--dtype must be f32, bf16 or f16, got "${v.dtype}"`);
    const out = path.resolve(v.out as string);
    const dir = await resolveModel(modelSource(v), { revision: v.revision as string | undefined, offline: v.offline as boolean | undefined });
    for (const [what, p] of [
      ['--model', dir],
      ['--adapter', v.adapter as string],
    ] as const) {
      if (path.resolve(p) === out) throw new UsageError(`--out ${v.out} is the ${what} folder; write the merged model to a new folder`);
    }
    if (fs.existsSync(out) && (!fs.statSync(out).isDirectory() || fs.readdirSync(out).length > 0)) {
      throw new UsageError(`--out ${v.out} exists and is not an empty folder; choose a new folder`);
    }
    const src = checkpointSource(dir);
    const kernels = await createKernels('ref');
    const adapter = loadAdapter(v.adapter as string, src.config, kernels);
    const layout = new ParamLayout(src.config);
    const params = new Float32Array(layout.size);
    layout.load(params, src, dir);
    const { config, untiedHead } = mergeAdapter(adapter, layout, params);
    const tensors = [...layout.entries(params)];
    if (untiedHead) tensors.push({ name: 'lm_head.weight', shape: [config.vocab_size, config.model_dim], data: untiedHead });
    if (fs.existsSync(out)) fs.rmdirSync(out);
    await writeCheckpoint(out, config, tensors, { dtype });
    for (const f of KEEP) if (fs.existsSync(path.join(dir, f))) fs.copyFileSync(path.join(dir, f), path.join(out, f));
    if (v.json) printJson({ out: v.out, tensors: tensors.length, untied_head: !!untiedHead });
    else
      process.stderr.write(
        `merged ${adapter.config.use_dora ? 'DoRA' : 'LoRA'} r=${adapter.r} (${adapter.tensors().linears.length} layers${adapter.tensors().embedding ? ' + embedding' : ''}) into ${v.out}${untiedHead ? ' (output head untied)' : ''}\n`,
      );
    return 0;
  },
};
