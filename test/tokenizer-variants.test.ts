/// <reference types="node" />
// Model variants against real SentencePiece: the LLaMA-2 pieces rewritten with UNUSED pieces,
// USER_DEFINED pieces (longest match first), no dummy prefix, remove_extra_whitespaces, and no
// byte fallback. Each variant is written as a tokenizer.model, loaded by both us and the oracle
// (@agnai/sentencepiece-js), and compared on hand-picked and random texts; Tokenizer.minTokens
// (the server's early length check) is checked to bound every encoding from below.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { fromSentencePieceModel, PieceType, parseSentencePieceModel } from '../src/tokenizer/index.ts';
import { FIXED_TEXTS, randomTexts } from './fixtures/tokenizer/corpus.ts';
import { type SpModelSpec, writeSpModel } from './fixtures/tokenizer/sp-model-writer.ts';

const MODEL = fileURLToPath(new URL('../../shared/fixtures/tokenizer/llama2-tokenizer.model', import.meta.url));
const skip = existsSync(MODEL) ? false : `reference model absent: ${MODEL}`;

interface Oracle {
  load(path: string): Promise<void>;
  encodeIds(text: string): number[];
  decodeIds(ids: number[]): string;
}

const USER = ['<|im_start|>', '<|im', '⟦x⟧', '☃☃'];
const TEXTS = [
  ...FIXED_TEXTS,
  '<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n',
  '<|im <|im_ <|im_start| ⟦x⟧⟦x ☃☃☃ a☃☃b',
  '  lots   of   spaces   ',
  'the thing is interesting: the ring, the sing, a tea at the tent',
  ...randomTexts(11, 600, 30),
].filter((s) => !s.includes('\ufeff')); // see tokenizer-oracle.test.ts: its bridge drops some U+FEFF

function variant(name: string, edit: (spec: SpModelSpec) => void): void {
  test(`variant "${name}" encodes/decodes like SentencePiece`, { skip }, async () => {
    const base = parseSentencePieceModel(readFileSync(MODEL));
    const spec: SpModelSpec = {
      pieces: base.pieces.map((piece, i) => ({ piece, score: base.scores[i], type: base.types[i] })),
      byteFallback: true,
      addDummyPrefix: true,
      removeExtraWhitespaces: false,
    };
    edit(spec);
    const dir = mkdtempSync(join(tmpdir(), 'openelm-sp-'));
    try {
      const path = join(dir, 'tokenizer.model');
      const bytes = writeSpModel(spec);
      writeFileSync(path, bytes);
      const require = createRequire(import.meta.url);
      const { SentencePieceProcessor } = require('@agnai/sentencepiece-js') as { SentencePieceProcessor: new () => Oracle };
      const sp = new SentencePieceProcessor();
      await sp.load(path);
      const tok = fromSentencePieceModel(bytes, path);
      for (const text of TEXTS) {
        const ids = tok.encode(text);
        assert.deepEqual(ids, sp.encodeIds(text), `${name}: encode ${JSON.stringify(text)}`);
        assert.equal(tok.decode(ids), sp.decodeIds(ids), `${name}: decode ${JSON.stringify(ids)}`);
        // the server's early check of a prompt's length (Tokenizer.minTokens) is a lower bound
        const min = tok.minTokens(text);
        assert.ok(min <= ids.length && (ids.length === 0) === (min === 0), `${name}: minTokens ${min} vs ${ids.length} for ${JSON.stringify(text)}`);
      }
      // and far from loose where it matters: a long text (byte fallback: its length over the longest piece's)
      const long = TEXTS.join(' ').repeat(4);
      const n = tok.encode(long).length,
        min = tok.minTokens(long);
      assert.ok(min <= n && (spec.byteFallback ? min >= n / 16 : min === 1), `${name}: minTokens ${min} of a ${long.length}-character text of ${n} tokens`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

const idOf = (spec: SpModelSpec, piece: string): number => {
  const i = spec.pieces.findIndex((p) => p.piece === piece);
  assert.ok(i >= 0, piece);
  return i;
};

variant('unused pieces', (spec) => {
  for (const p of ['▁the', 'ing', '▁a', 'er', '▁t', 'in', '▁th', 'ou', '▁▁', '▁▁▁▁']) spec.pieces[idOf(spec, p)].type = PieceType.UNUSED;
});

variant('user-defined pieces', (spec) => {
  // overwrite some late normal pieces with user-defined ones (score 0, as the trainer writes them)
  USER.forEach((piece, k) => (spec.pieces[31000 + k] = { piece, score: 0, type: PieceType.USER_DEFINED }));
});

variant('add_dummy_prefix=false', (spec) => {
  spec.addDummyPrefix = false;
});

variant('remove_extra_whitespaces=true', (spec) => {
  spec.removeExtraWhitespaces = true;
});

variant('byte_fallback=false', (spec) => {
  spec.byteFallback = false;
  for (let i = 3; i < 259; i++) spec.pieces[i].type = PieceType.UNUSED;
});
