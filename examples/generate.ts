// Stream a continuation from an OpenELM checkpoint.
//   node --import tsx examples/generate.ts <model folder or hub repo id> "Once upon a time"
import { generate, loadModel } from '../src/index.ts';

const [source = 'apple/OpenELM-270M', prompt = 'Once upon a time'] = process.argv.slice(2);
const { model, tokenizer, dispose } = await loadModel(source, { dtype: 'q8_0' });
try {
  const it = generate(model, tokenizer, prompt, { maxNewTokens: 64, temperature: 0.7, topP: 0.9, repetitionPenalty: 1.2, seed: 1 });
  process.stdout.write(prompt);
  let r = await it.next();
  for (; !r.done; r = await it.next()) process.stdout.write(r.value.text);
  const { outputIds, decodeMs, finishReason } = r.value;
  console.log(`\n[${outputIds.length} tokens, ${((outputIds.length / decodeMs) * 1000).toFixed(1)} tok/s, ${finishReason}]`);
} finally {
  dispose();
}
