import fs from 'node:fs';
import path from 'node:path';
import { expectedTensors, layerShape, numParameters, type OpenELMConfig, parseConfig, presetConfig, presetNameOf } from '../../config/index.ts';
import { resolveModel } from '../../io/hub.ts';
import { readJsonFile } from '../../io/json.ts';
import { parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';

async function configOf(what: string, offline?: boolean): Promise<OpenELMConfig> {
  if (fs.existsSync(what) && fs.statSync(what).isFile()) return parseConfig(readJsonFile(what, 1024 * 1024), what);
  if (!fs.existsSync(what) && presetNameOf(what)) return presetConfig(what);
  const dir = await resolveModel(what, { offline });
  const file = path.join(dir, 'config.json');
  if (!fs.existsSync(file)) throw new Error(`${dir}: no config.json`);
  return parseConfig(readJsonFile(file, 1024 * 1024), file);
}

function human(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}B` : n >= 1e6 ? `${(n / 1e6).toFixed(1)}M` : `${(n / 1e3).toFixed(1)}K`;
}

export const inspectCommand: Command = {
  name: 'inspect',
  summary: "show a model's layer-wise scaling: heads and FFN width per layer, parameter count",
  help: `Usage: openelm inspect (MODEL | PRESET | config.json) [--json]

MODEL is a checkpoint folder or hub repo id; PRESET one of OpenELM-270M, -450M, -1_1B, -3B
(optionally -Instruct). With --json prints the config with num_query_heads, num_kv_heads,
ffn_dims and num_parameters.`,
  async run(argv) {
    const { values: v, positionals } = parse(argv, { offline: { type: 'boolean' } }, true);
    if (positionals.length !== 1) throw new UsageError('give one model folder, hub repo id, preset name or config.json');
    const cfg = await configOf(positionals[0], v.offline as boolean | undefined);
    const nParams = numParameters(cfg);
    if (v.json) {
      printJson({ ...cfg, num_parameters: nParams });
      return;
    }
    const L = cfg.num_transformer_layers;
    const lines = [
      `OpenELM · ${L} layers · model_dim ${cfg.model_dim} · head_dim ${cfg.head_dim} · vocab ${cfg.vocab_size} · context ${cfg.max_context_length}`,
      `${human(nParams)} parameters (${nParams.toLocaleString('en-US')})${cfg.share_input_output_layers ? ', tied input/output embeddings' : ''}`,
      `GQA groups ${cfg.num_gqa_groups} · q/k norm ${cfg.normalize_qk_projections ? 'on' : 'off'} · FFN ${cfg.ffn_with_glu ? 'GLU' : 'plain'} ${cfg.activation_fn_name} · RoPE base ${cfg.rope_freq_constant}`,
      '',
      'layer  q heads  kv heads  ffn mult  ffn dim   params',
    ];
    // per-layer parameters: the layer's tensors as the checkpoint holds them
    const layerParams = new Array<number>(L).fill(0);
    for (const [name, shape] of expectedTensors(cfg)) {
      const m = /^transformer\.layers\.(\d+)\./.exec(name);
      if (m) layerParams[Number(m[1])] += shape.reduce((a, b) => a * b, 1);
    }
    for (let i = 0; i < L; i++) {
      const s = layerShape(cfg, i);
      const p = layerParams[i];
      lines.push(
        `${String(i).padStart(5)}  ${String(s.nQ).padStart(7)}  ${String(s.nKV).padStart(8)}  ${cfg.ffn_multipliers[i].toFixed(2).padStart(8)}  ${String(s.ffnDim).padStart(7)}  ${human(p).padStart(7)}`,
      );
    }
    process.stdout.write(lines.join('\n') + '\n');
  },
};
