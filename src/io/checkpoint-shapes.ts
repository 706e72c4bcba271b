// Which config.json fields decide each tensor's shape, spelled out for shape-mismatch errors:
//   explainShape(cfg, 'transformer.layers.2.attn.qkv_proj.weight')
//   → '= [(num_query_heads[2] + 2·num_kv_heads[2])·head_dim, model_dim] = [(4 + 2·2)·32, 128]; …'
import type { OpenELMConfig } from '../config/config.ts';

const HEADS = 'num_query_heads/num_kv_heads come from qkv_multipliers, model_dim, head_dim and num_gqa_groups';
const FFN = 'ffn_dims come from ffn_multipliers, model_dim and ffn_dim_divisor';

export function explainShape(cfg: OpenELMConfig, name: string): string {
  const d = cfg.model_dim;
  const hd = cfg.head_dim;
  if (name === 'transformer.token_embeddings.weight' || name === 'lm_head.weight') return `= [vocab_size, model_dim] = [${cfg.vocab_size}, ${d}]`;
  if (name === 'transformer.norm.weight') return `= [model_dim] = [${d}]`;
  const m = /^transformer\.layers\.(\d+)\.(.+)$/.exec(name);
  if (!m) return '';
  const i = Number(m[1]);
  const q = cfg.num_query_heads[i];
  const kv = cfg.num_kv_heads[i];
  const f = cfg.ffn_dims[i];
  switch (m[2]) {
    case 'attn_norm.weight':
    case 'ffn_norm.weight':
      return `= [model_dim] = [${d}]`;
    case 'attn.q_norm.weight':
    case 'attn.k_norm.weight':
      return `= [head_dim] = [${hd}]`;
    case 'attn.qkv_proj.weight':
      return `= [(num_query_heads[${i}] + 2·num_kv_heads[${i}])·head_dim, model_dim] = [(${q} + 2·${kv})·${hd}, ${d}]; ${HEADS}`;
    case 'attn.out_proj.weight':
      return `= [model_dim, num_query_heads[${i}]·head_dim] = [${d}, ${q}·${hd}]; ${HEADS}`;
    case 'ffn.proj_1.weight':
      return cfg.ffn_with_glu
        ? `= [2·ffn_dims[${i}], model_dim] = [2·${f}, ${d}] (ffn_with_glu); ${FFN}`
        : `= [ffn_dims[${i}], model_dim] = [${f}, ${d}]; ${FFN}`;
    case 'ffn.proj_2.weight':
      return `= [model_dim, ffn_dims[${i}]] = [${d}, ${f}]; ${FFN}`;
    default:
      return '';
  }
}
