import { ADAPTER_HELP, ADAPTER_OPTION, applyAdapterOption } from '../adapter-option.ts';
import { idList, parse, printJson, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.ts';

export const logitsCommand: Command = {
  name: 'logits',
  summary: 'print the logits of every position for a list of token ids',
  help: `Usage: openelm logits --model M --ids 1,2,3 [--json] [--top N]

Runs the ids through the model (no BOS is added) and prints the next-token logits at every
position. With --json: {"logits": [[...vocab floats...], ...]} (float32 values, one row per
position); otherwise the top N (default 5) tokens per position.

${MODEL_HELP}
${ADAPTER_HELP}`,
  async run(argv) {
    const { values: v } = parse(argv, { ...MODEL_OPTIONS, ...ADAPTER_OPTION, ids: { type: 'string' }, top: { type: 'string' } });
    if (v.ids === undefined) throw new UsageError('--ids is required (comma separated token ids)');
    const ids = idList(v.ids as string, 'ids');
    const top = v.top === undefined ? 5 : Number(v.top);
    const { model, tokenizer, dispose } = await openModel(v, true);
    try {
      applyAdapterOption(model, v);
      const V = model.config.vocab_size;
      const all = model.forwardAll(ids);
      if (v.json) {
        const rows: number[][] = [];
        for (let t = 0; t < ids.length; t++) rows.push(Array.from(all.subarray(t * V, (t + 1) * V)));
        printJson({ logits: rows });
        return;
      }
      for (let t = 0; t < ids.length; t++) {
        const row = all.subarray(t * V, (t + 1) * V);
        const best = Array.from(row.keys())
          .sort((a, b) => row[b] - row[a])
          .slice(0, top);
        const piece = (id: number) => (id < tokenizer.vocabSize ? JSON.stringify(tokenizer.idToPiece(id)) : `#${id}`);
        process.stdout.write(`${String(t).padStart(4)} ${piece(ids[t]).padEnd(16)} → ${best.map((b) => `${piece(b)} ${row[b].toFixed(3)}`).join('  ')}\n`);
      }
    } finally {
      dispose();
    }
  },
};
