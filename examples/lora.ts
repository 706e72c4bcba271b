// LoRA fine-tuning from code: an adapter on the built-in model trained on a few chat records with
// the same Trainer `openelm finetune` uses, then applied to the loaded model to answer.
//   node --import tsx examples/lora.ts [out folder]
import fs from 'node:fs';
import {
  Adapter,
  attachAdapter,
  builtinModelDir,
  checkpointSource,
  createKernels,
  ExampleData,
  encodeChat,
  fitSeqLen,
  generateText,
  loadTokenizer,
  OpenELM,
  parseAdapterConfig,
  readRecords,
  resolveTrainOptions,
  type TrainData,
  Trainer,
} from '../src/index.ts';

const out = process.argv[2] ?? fs.mkdtempSync('/tmp/openelm-lora-');
const dir = builtinModelDir()!;
const src = checkpointSource(dir);
const tokenizer = await loadTokenizer(dir);
const kernels = await createKernels('wasm');

// records → rows with the loss on the assistant replies; 10 % held out
const records = readRecords('examples/finetune/sotu-chat.jsonl', 'sft', tokenizer, src.config.vocab_size);
const data = new ExampleData(records, { seed: 0, seqLen: fitSeqLen(records, 256), valFraction: 0.1 });

// the adapter (PEFT's LoRA: r 16, alpha 32 on the four linear layers of every layer)
const adapter = new Adapter(
  parseAdapterConfig({ r: 16, lora_alpha: 32, target_modules: ['qkv_proj', 'out_proj', 'proj_1', 'proj_2'] }, 'example'),
  src.config,
  kernels,
);
const options = resolveTrainOptions(undefined, {
  init: dir,
  out,
  steps: 40,
  batchSize: 8,
  data: { paths: ['examples/finetune/sotu-chat.jsonl'], seqLen: data.seqLen },
  schedule: { name: 'cosine', lr: 2e-3, minLr: 2e-4, warmup: 4 },
  optimizer: { weightDecay: 0 },
  evalEvery: 10,
});
const trainer = new Trainer({ config: src.config, init: src, kernels, data: data as unknown as TrainData, options, adapter });
adapter.init(0, trainer.weights);
await trainer.run({
  onStep: (r) => {
    if (r.val_loss !== undefined) console.log(`step ${r.step}: loss ${r.loss.toFixed(3)}, validation ${r.val_loss.toFixed(3)}`);
  },
});
console.log(`adapter saved in ${out} (openelm chat -m builtin --adapter ${out})`);

// use it: an inference model on the trainer's base weights (shared, read-only), the adapter attached
const model = new OpenELM(src.config, trainer.weights, kernels);
attachAdapter(model, adapter);
const prompt = { ids: encodeChat(tokenizer, [{ role: 'user', content: 'Who gave the State of the Union address of 1935?' }]) };
console.log((await generateText(model, tokenizer, prompt, { maxNewTokens: 24, temperature: 0 })).text.trim());
kernels.dispose?.();
