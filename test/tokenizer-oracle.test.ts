/// <reference types="node" />
// Our tokenizer against real SentencePiece: the C++ library compiled to wasm (npm package
// @agnai/sentencepiece-js) loaded with the LLaMA-2 tokenizer.model. Encode and decode must agree
// exactly on hand-picked texts in many scripts and on thousands of seeded random strings.
// Skipped when ../shared/fixtures/tokenizer/llama2-tokenizer.model is absent (it is not ours to ship).

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { defaultTokenizer } from '../src/tokenizer/index.ts';
import { FIXED_TEXTS, randomTexts, rng } from './fixtures/tokenizer/corpus.ts';

const MODEL = fileURLToPath(new URL('../../shared/fixtures/tokenizer/llama2-tokenizer.model', import.meta.url));
const skip = existsSync(MODEL) ? false : `reference model absent: ${MODEL}`;

interface Oracle {
  load(path: string): Promise<void>;
  encodeIds(text: string): number[];
  encodePieces(text: string): string[];
  decodeIds(ids: number[]): string;
}

async function oracle(): Promise<Oracle> {
  const require = createRequire(import.meta.url);
  const { SentencePieceProcessor } = require('@agnai/sentencepiece-js') as { SentencePieceProcessor: new () => Oracle };
  const sp = new SentencePieceProcessor();
  await sp.load(MODEL);
  return sp;
}

// The oracle's JS -> UTF-8 bridge (emscripten stringToUTF8) pairs a lone high surrogate with
// whatever follows, so such strings cannot be compared; ours turns lone surrogates into U+FFFD.
// Its UTF-8 -> JS bridge (emscripten UTF8ToString) decodes the output NUL-separated segment by
// segment, and segments over 16 bytes go through a TextDecoder without ignoreBOM, which drops a
// leading U+FEFF that SentencePiece itself keeps (U+FEFF is LLaMA piece 30143). Mirror that.
const utf8Length = (s: string): number => new TextEncoder().encode(s).length;
const asOracleSees = (s: string): string =>
  s
    .split('\u0000')
    .map((seg) => (seg.startsWith('\ufeff') && utf8Length(seg) > 16 ? seg.slice(1) : seg))
    .join('\u0000');
const hasLoneSurrogate = (s: string): boolean => /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);

function compareEncode(sp: Oracle, tok: Awaited<ReturnType<typeof defaultTokenizer>>, texts: string[]): number {
  let compared = 0;
  for (const text of texts) {
    if (hasLoneSurrogate(text)) continue;
    const ours = tok.encode(text);
    const theirs = sp.encodeIds(text);
    assert.deepEqual(ours, theirs, `encode ${JSON.stringify(text)}`);
    assert.equal(asOracleSees(tok.decode(ours)), sp.decodeIds(theirs), `decode(encode(${JSON.stringify(text)}))`);
    compared++;
  }
  return compared;
}

test('encode/decode = SentencePiece on hand-picked texts in many scripts', { skip }, async () => {
  const [sp, tok] = await Promise.all([oracle(), defaultTokenizer()]);
  const n = compareEncode(sp, tok, FIXED_TEXTS);
  assert.equal(n, FIXED_TEXTS.length);
});

test('encode/decode = SentencePiece on runs of 1..48 spaces (the -1e9 whitespace pieces)', { skip }, async () => {
  const [sp, tok] = await Promise.all([oracle(), defaultTokenizer()]);
  const texts: string[] = [];
  for (let n = 1; n <= 48; n++) {
    const run = ' '.repeat(n);
    texts.push(run, `a${run}`, `${run}b`, `a${run}b`, `x${run}y${' '.repeat(49 - n)}z`, `\n${run}if (x) {`, `\u2581${run}\u2581`);
  }
  assert.equal(compareEncode(sp, tok, texts), texts.length);
});

test('encode/decode = SentencePiece on 6000 seeded random strings', { skip }, async () => {
  const [sp, tok] = await Promise.all([oracle(), defaultTokenizer()]);
  const texts = [...randomTexts(1, 3000, 12), ...randomTexts(2, 2500, 60), ...randomTexts(3, 500, 600)];
  assert.equal(compareEncode(sp, tok, texts), texts.length);
});

test('encode = SentencePiece on long texts', { skip }, async () => {
  const [sp, tok] = await Promise.all([oracle(), defaultTokenizer()]);
  const long = [FIXED_TEXTS.join('\n').repeat(20), randomTexts(4, 1, 0)[0] + randomTexts(5, 3, 5000).join(' ')];
  assert.equal(compareEncode(sp, tok, long), long.length);
});

test('decode = SentencePiece on random id sequences (byte pieces, invalid UTF-8, BOS/EOS/UNK)', { skip }, async () => {
  const [sp, tok] = await Promise.all([oracle(), defaultTokenizer()]);
  const r = rng(7);
  // ids biased towards byte pieces (3..258) so that valid and broken UTF-8 both occur often
  const utf8Ish = [0xe4, 0xbd, 0xa0, 0xf0, 0x9f, 0x98, 0x80, 0xc3, 0xa9, 0xed, 0xa0, 0x80, 0xc0, 0xaf, 0xf4, 0x90, 0xff, 0x41];
  const randomId = (): number => {
    const x = r();
    if (x < 0.35) return 3 + utf8Ish[Math.floor(r() * utf8Ish.length)];
    if (x < 0.5) return 3 + Math.floor(r() * 256);
    if (x < 0.6) return Math.floor(r() * 3); // <unk> <s> </s>
    if (x < 0.7) return [29871, 259, 1678, 268][Math.floor(r() * 4)]; // "▁", "▁▁", "▁▁▁", "▁▁▁▁"
    return 259 + Math.floor(r() * (32000 - 259));
  };
  for (let k = 0; k < 10000; k++) {
    const ids = Array.from({ length: 1 + Math.floor(r() * 12) }, randomId);
    assert.equal(asOracleSees(tok.decode(ids)), sp.decodeIds(ids), `decode ${JSON.stringify(ids)}`);
  }
});
