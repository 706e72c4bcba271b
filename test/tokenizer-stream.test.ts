/// <reference types="node" />
// StreamDecoder: pushing ids one by one yields exactly decode(ids), never emits part of a UTF-8
// character, holds back no more than an unfinished character, and costs O(1) per id.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultTokenizer, StreamDecoder, type Tokenizer } from '../src/tokenizer/index.ts';
import { FIXED_TEXTS, randomTexts, rng } from './fixtures/tokenizer/corpus.ts';

/** Streams `ids`, checking after each push that the text so far is decode(prefix) minus held bytes. */
function streamAndCheck(tok: Tokenizer, ids: number[], skipSpecial = true): string[] {
  const sd = new StreamDecoder(tok, { skipSpecial });
  const chunks: string[] = [];
  let soFar = '';
  for (let k = 0; k < ids.length; k++) {
    const chunk = sd.push(ids[k]);
    chunks.push(chunk);
    soFar += chunk;
    const full = tok.decode(ids.slice(0, k + 1), { skipSpecial });
    assert.ok(full.startsWith(soFar), `after ${k + 1} ids: ${JSON.stringify(soFar)} is not a prefix of ${JSON.stringify(full)}`);
    // what is still held is an unfinished character: at most 3 bytes, each U+FFFD if cut here
    assert.match(full.slice(soFar.length), /^\uFFFD{0,3}$/, `after ${k + 1} ids of ${JSON.stringify(ids)}`);
  }
  chunks.push(sd.flush());
  assert.equal(chunks.join(''), tok.decode(ids, { skipSpecial }), `stream vs decode of ${JSON.stringify(ids)}`);
  return chunks;
}

test('stream = decode on 3000 random id sequences (byte pieces, invalid UTF-8, BOS/EOS/UNK, "▁" pieces)', async () => {
  const tok = await defaultTokenizer();
  const r = rng(99);
  const utf8Ish = [0xe4, 0xbd, 0xa0, 0xf0, 0x9f, 0x98, 0x80, 0xc3, 0xa9, 0xed, 0xa0, 0xc0, 0xaf, 0xf4, 0x90, 0xff, 0x41, 0x0a];
  const randomId = (): number => {
    const x = r();
    if (x < 0.4) return 3 + utf8Ish[Math.floor(r() * utf8Ish.length)];
    if (x < 0.5) return 3 + Math.floor(r() * 256);
    if (x < 0.6) return Math.floor(r() * 3);
    if (x < 0.7) return [29871, 259, 1678, 268][Math.floor(r() * 4)];
    return 259 + Math.floor(r() * (32000 - 259));
  };
  for (let k = 0; k < 3000; k++) {
    const ids = Array.from({ length: 1 + Math.floor(r() * 16) }, randomId);
    streamAndCheck(tok, ids, k % 5 !== 0);
  }
});

test('stream of real text with emoji and CJK: equals the text, and no chunk holds a broken character', async () => {
  const tok = await defaultTokenizer();
  const texts = [...FIXED_TEXTS, ...randomTexts(5, 300, 40)].filter((t) => !t.includes('\uFFFD') && !t.includes('\u2581'));
  let heldBack = 0;
  for (const text of texts) {
    const ids = tok.encode(text, { bos: true, eos: true });
    const chunks = streamAndCheck(tok, ids);
    assert.equal(chunks.join(''), text);
    for (const c of chunks) assert.ok(!c.includes('\uFFFD'), `chunk ${JSON.stringify(c)} of ${JSON.stringify(text)}`);
    heldBack += chunks.filter((c, i) => c === '' && tok.table.types[ids[i]] === 6).length;
  }
  assert.ok(heldBack > 100, `byte pieces were actually held back (${heldBack} times)`);
});

test('stream: leading-space rule of the first piece, as decode', async () => {
  const tok = await defaultTokenizer();
  for (const ids of [
    [29871, 15043, 3186],
    [15043, 3186],
    [1, 15043],
    [29871, 1, 15043],
    [243, 162, 155, 131, 15043],
  ]) {
    streamAndCheck(tok, ids);
  }
  const sd = new StreamDecoder(tok);
  assert.deepEqual(
    [29871, 15043, 3186].map((id) => sd.push(id)),
    ['', ' Hello', ' world'],
  );
});

test('stream is incremental: ~80k ids in linear time', async () => {
  const tok = await defaultTokenizer();
  const ids = tok.encode(FIXED_TEXTS.join('\n').repeat(60));
  const sd = new StreamDecoder(tok);
  const t0 = performance.now();
  let n = 0;
  for (const id of ids) n += sd.push(id).length;
  n += sd.flush().length;
  const ms = performance.now() - t0;
  console.log(`# stream-decoded ${ids.length} ids in ${ms.toFixed(0)} ms`);
  assert.equal(n, tok.decode(ids).length);
  assert.ok(ms < 2000, `${ms} ms`);
});

test('stream: out-of-range id throws naming the id', async () => {
  const tok = await defaultTokenizer();
  assert.throws(() => new StreamDecoder(tok).push(32000), /token id 32000 is out of range/);
});
