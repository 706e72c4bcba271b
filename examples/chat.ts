// A scripted multi-turn conversation with an -Instruct model; the KV cache is reused between turns.
//   node --import tsx examples/chat.ts <model folder or hub repo id>
import { type ChatMessage, encodeChat, generateText, loadModel } from '../src/index.ts';

const source = process.argv[2] ?? 'apple/OpenELM-270M-Instruct';
const { model, tokenizer, dispose } = await loadModel(source);
try {
  const messages: ChatMessage[] = [{ role: 'system', content: 'You are a helpful assistant. Answer briefly.' }];
  for (const question of ['What is the capital of France?', 'And of Italy?']) {
    messages.push({ role: 'user', content: question });
    const r = await generateText(model, tokenizer, { ids: encodeChat(tokenizer, messages) }, { maxNewTokens: 48, temperature: 0, repetitionPenalty: 1.2 });
    console.log(`> ${question}\n${r.text.trim()}  (${r.cachedTokens} prompt tokens reused from the cache)\n`);
    messages.push({ role: 'assistant', content: r.text });
  }
} finally {
  dispose();
}
