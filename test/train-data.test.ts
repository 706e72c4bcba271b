// The training data pipeline (src/train/data): sources, CoreNet's filters and framing, packing,
// truncate-and-pad, seeded order, state/restore, the validation split, bounded memory, --data-ids.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { defaultTokenizer, type Tokenizer } from '../src/tokenizer/index.ts';
import { Corpus, type DataRunOptions, openDataset, PAD_ID, processedLength, type TrainData } from '../src/train/data/index.ts';
import { type DataOptions, IGNORE } from '../src/train/options.ts';

const FIXTURES = fileURLToPath(new URL('./fixtures/train-data/', import.meta.url));
let tok: Tokenizer;
let dir: string;
let cacheDir: string;

before(async () => {
  tok = await defaultTokenizer();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-train-data-'));
  cacheDir = path.join(dir, 'cache');
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** a file in the temp folder */
function write(name: string, content: string | Buffer): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, content);
  return p;
}

/** n words of deterministic English-like text, every word tagged with `tag` */
function words(tag: string, n: number, from = 0): string {
  const vocab = ['the', 'nation', 'congress', 'peace', 'trade', 'law', 'people', 'war', 'year', 'union'];
  return Array.from({ length: n }, (_, i) => `${vocab[(i + from) % vocab.length]}${tag}w${i + from}`).join(' ');
}

function options(paths: string[], over: Partial<DataOptions> = {}): DataOptions {
  return { paths, seqLen: 32, packing: true, minChars: 0, minTokens: 0, valFraction: 0, ...over };
}
const runOpts = (over: Partial<DataRunOptions> = {}): DataRunOptions => ({ seed: 0, cacheDir, ...over });

function batches(data: TrainData, n: number, b = 2) {
  return Array.from({ length: n }, () => data.nextBatch(b));
}
/** the text of packed rows: their targets back to back (a packed stream, without its first token) */
function streamText(list: { targets: Int32Array }[]): string {
  return tok.decode(list.flatMap((b) => Array.from(b.targets).filter((id) => id !== IGNORE)));
}

// ---- sources ----

test('sources: text, markdown, JSON lines, JSON arrays, .gz, folders (sorted, recursive), in order', async () => {
  const src = path.join(dir, 'sources');
  write('sources/a.txt', '\ufeffA text file is one document.\nEven with lines.');
  write('sources/sub/b.md', '# Markdown\n\nis one document too.');
  write('sources/c.jsonl', '{"text": "line one", "id": 1}\n\n  \n{"text": "line two"}\r\n');
  write('sources/d.jsonl.gz', gzipSync('{"text": "gz one"}\n{"text": "gz two"}'));
  write('sources/e.json', ' [ {"text": "element [0] \\" {"}, "element one" ]\n');
  write('sources/f.json.gz', gzipSync('{"text": "CoreNet json.gz is JSON lines"}\n'));
  write('sources/.hidden.txt', 'skipped');
  write('sources/notes.csv', 'skipped');
  const corpus = await Corpus.open([src], { cacheDir });
  const texts = Array.from({ length: corpus.count }, (_, i) => corpus.text(i));
  assert.deepEqual(texts, [
    'A text file is one document.\nEven with lines.', // the byte order mark is dropped
    'line one',
    'line two',
    'gz one',
    'gz two',
    'element [0] " {',
    'element one',
    'CoreNet json.gz is JSON lines',
    '# Markdown\n\nis one document too.',
  ]);
  assert.equal(corpus.where(0), path.join(src, 'a.txt'));
  assert.equal(corpus.where(2), `${path.join(src, 'c.jsonl')}:4`);
  assert.equal(corpus.where(6), `${path.join(src, 'e.json')}: element 1`);
  corpus.close();
  // the .gz files were decompressed once into the cache, and are reused
  const cached = fs.readdirSync(cacheDir).sort();
  assert.equal(cached.length, 2);
  (await Corpus.open([src], { cacheDir })).close();
  assert.deepEqual(fs.readdirSync(cacheDir).sort(), cached);
});

test('sources: Parquet "text" column (row groups, snappy) and the built-in corpus', async () => {
  const parquetText = (i: number) => `Parquet row ${i}: ` + Array.from({ length: 60 }, (_, k) => `word${(i * 7 + k) % 23}`).join(' ') + ' café.';
  const corpus = await Corpus.open([path.join(FIXTURES, 'texts.parquet')], { cacheDir });
  assert.equal(corpus.count, 5);
  for (let i = 0; i < 5; i++) assert.equal(corpus.text(i), parquetText(i));
  assert.equal(corpus.where(3), `${path.join(FIXTURES, 'texts.parquet')}: row 3`);
  corpus.close();

  const sotu = await Corpus.open(['builtin:sotu']);
  assert.equal(sotu.count, 233);
  assert.match(sotu.text(0), /^Fellow-Citizens of the Senate and House of Representatives/);
  assert.equal(sotu.where(5), 'builtin:sotu #5');
  sotu.close();
});

test('errors name the file, the line and what is wrong', async () => {
  const rejects = (paths: string[], re: RegExp) => assert.rejects(Corpus.open(paths, { cacheDir }), re);
  await rejects([write('bad.jsonl', '{"text": "ok"}\n{"text": oops}\n')], /bad\.jsonl:2: not JSON/);
  await rejects([write('notext.jsonl', '{"body": "x", "id": 3}\n')], /notext\.jsonl:1: no "text" field \(fields: body, id\)/);
  await rejects([write('num.jsonl', '{"text": 5}\n')], /num\.jsonl:1: "text" is number, expected a string/);
  await rejects([write('arr.json', '[{"text": "a"}, 7]')], /arr\.json: element 1: expected an object with a "text" string/);
  await rejects([write('open.json', '[{"text": "a"}, ')], /open\.json: the top-level array is not closed/);
  await rejects([write('what.json', 'text: 1')], /what\.json: expected a JSON array/);
  await rejects([write('bad.jsonl.gz', 'not gzip')], /bad\.jsonl\.gz: cannot decompress/);
  await rejects([path.join(FIXTURES, 'body.parquet')], /body\.parquet: no "text" column \(columns: body\)/);
  await rejects([path.join(dir, 'missing.txt')], /missing\.txt: no such file or folder/);
  await rejects([write('table.csv', 'a,b')], /table\.csv: unknown kind of file; expected one of \.txt/);
  fs.mkdirSync(path.join(dir, 'empty-folder'), { recursive: true });
  await rejects([path.join(dir, 'empty-folder')], /empty-folder: no files with a known extension/);
  await rejects(['builtin:nope'], /builtin:nope: no such built-in corpus \(known: builtin:sotu\)/);
  await assert.rejects(openDataset(options([write('blank.jsonl', '\n\n')]), tok, runOpts()), /blank\.jsonl: no documents/);
  await assert.rejects(openDataset(options([write('one.txt', 'x')], { valFraction: 1 }), tok, runOpts()), /--val-fraction must be in \[0, 1\)/);
});

// ---- CoreNet's steps ----

test("processedLength is len(_process_text(text)) of CoreNet's base_lm.py", () => {
  assert.equal(processedLength('  Hello, World!  '), 11); // "hello world"
  assert.equal(processedLength('a , b'), 3); // punctuation goes first, then the whitespace run collapses
  assert.equal(processedLength('a\t\n\u00a0\u3000b'), 3); // Python's Unicode whitespace
  assert.equal(processedLength('\u0130'), 2); // "İ".lower() is two code points
  assert.equal(processedLength('😀 😀'), 3); // code points, not UTF-16 units
  assert.equal(processedLength('...!!!'), 0);
  const long = processedLength('x'.repeat(10000), 200);
  assert.ok(long >= 200 && long < 10000, 'stops at the limit');
});

test('pieces of 2048 words (CoreNet) are split at spaces, which changes no token', async () => {
  const corpus = await Corpus.open(['builtin:sotu'], { splitWords: 50 });
  const sotu = await Corpus.open(['builtin:sotu']);
  for (const i of [0, 40, 100, 232]) {
    const doc = corpus.open(i);
    const ids: number[] = [];
    let pieces = 0;
    for (let p = doc.begin; p < doc.end; pieces++) {
      const piece = doc.piece(p);
      ids.push(...tok.encode(piece.text.normalize('NFC')));
      p = piece.next;
    }
    const text = sotu.text(i);
    assert.equal(corpus.text(i), text, 'the pieces rejoined with " " are the document');
    assert.ok(pieces > 20);
    assert.deepEqual(ids, tok.encode(text.normalize('NFC')), `document ${i}: tokens of the pieces = tokens of the whole`);
  }
  corpus.close();
  sotu.close();
});

test('pieces stay bounded: text without spaces, or with long words, is cut at a character boundary / the last space', async () => {
  const LONE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
  const dense = 'é日😀x'.repeat(40_000); // 160 k UTF-16 units, 400 kB of UTF-8, no space
  const longWords = Array.from({ length: 3000 }, (_, i) => String(i).padStart(100, 'y')).join(' ');
  const paths = [write('caps/dense.txt', dense), write('caps/dense.jsonl', JSON.stringify({ text: dense })), write('caps/long.txt', longWords)];
  const corpus = await Corpus.open(paths);
  for (let d = 0; d < 3; d++) {
    const doc = corpus.open(d);
    let pieces = 0;
    for (let p = doc.begin; p < doc.end; pieces++) {
      const piece = doc.piece(p);
      assert.ok(piece.next - p <= 1 << 16, 'at most PIECE_CAP units');
      assert.ok(!piece.text.includes('\ufffd') && !LONE.test(piece.text), 'no character is split');
      p = piece.next;
    }
    assert.ok(pieces > 2, `${corpus.where(d)}: ${pieces} pieces`);
    assert.equal(corpus.text(d), d < 2 ? dense : longWords);
  }
  corpus.close();
});

test('truncate-and-pad: BOS + NFC text + EOS, its first seqLen + 1 tokens, pads ignored in the loss', async () => {
  const short = 'Caf\u0065\u0301 society met in the hall.'; // NFD "é"
  const long = words('L', 120);
  const data = await openDataset(options([write('trunc/a.txt', short), write('trunc/b.txt', long)], { packing: false }), tok, runOpts());
  const S = 32;
  const rows = new Map<string, { inputs: number[]; targets: number[] }>();
  const batch = data.nextBatch(2);
  for (let r = 0; r < 2; r++) {
    const inputs = Array.from(batch.inputs.subarray(r * S, (r + 1) * S));
    const targets = Array.from(batch.targets.subarray(r * S, (r + 1) * S));
    rows.set(inputs[1] === tok.encode(long)[0] ? 'long' : 'short', { inputs, targets });
  }
  const sample = [tok.bosId, ...tok.encode(short.normalize('NFC')), tok.eosId];
  assert.ok(sample.length < S);
  const pads = S + 1 - sample.length;
  // CoreNet: content = sample padded to S + 1, inputs = content[:-1], targets = content[1:]
  assert.deepEqual(rows.get('short')!.inputs, [...sample, ...Array(pads - 1).fill(PAD_ID)]);
  assert.deepEqual(rows.get('short')!.targets, [...sample.slice(1), ...Array(pads).fill(IGNORE)]);
  const longIds = [tok.bosId, ...tok.encode(long)];
  assert.deepEqual(rows.get('long')!.inputs, longIds.slice(0, S));
  assert.deepEqual(rows.get('long')!.targets, longIds.slice(1, S + 1));
  assert.equal(data.stats().padded, pads);
  data.close();

  // a document longer than a piece gives one row per piece, each framed BOS ... (CoreNet's split)
  const split = await openDataset(options([write('trunc3/c.txt', words('P', 30))], { packing: false, seqLen: 8 }), tok, runOpts({ splitWords: 10 }));
  const b = split.nextBatch(3);
  for (let r = 0; r < 3; r++) {
    assert.equal(b.inputs[r * 8], tok.bosId);
    assert.deepEqual(Array.from(b.inputs.subarray(r * 8 + 1, r * 8 + 8)), tok.encode(words('P', 10, r * 10)).slice(0, 7));
  }
  split.close();
});

test('packing: documents BOS + text + EOS back to back, rows of seqLen + 1 overlapping by one token', async () => {
  const texts = [words('A', 40), words('B', 7), words('C', 90)];
  const paths = texts.map((t, i) => write(`pack/${i}.txt`, t));
  // splitWords 16: the documents are read in pieces, the stream is the same as whole
  const data = await openDataset(options(paths, { seqLen: 16 }), tok, runOpts({ splitWords: 16 }));
  const docs = texts.map((t) => [tok.bosId, ...tok.encode(t), tok.eosId]);
  const total = docs.reduce((n, d) => n + d.length, 0);
  const stream: number[] = [];
  let prevLast = -1;
  while (stream.length < total + 1) {
    const { inputs, targets } = data.nextBatch(1);
    assert.ok(!targets.includes(IGNORE), 'no padding');
    for (let i = 0; i + 1 < 16; i++) assert.equal(targets[i], inputs[i + 1], 'targets are the inputs shifted by one');
    if (prevLast >= 0) assert.equal(inputs[0], prevLast, "a row starts with the previous row's last token");
    if (stream.length === 0) stream.push(inputs[0]);
    stream.push(...targets);
    prevLast = targets[15];
  }
  // the first epoch is the three documents in some order
  const epoch = stream.slice(0, total);
  const starts = epoch.flatMap((id, i) => (id === tok.bosId ? [i] : []));
  const found = starts.map((s, k) => epoch.slice(s, starts[k + 1] ?? total));
  assert.deepEqual(
    [...found].sort((a, b) => a.length - b.length),
    [...docs].sort((a, b) => a.length - b.length),
  );
  assert.equal(data.stats().documentsRead, 4, 'into the second epoch');
  data.close();
});

test('filters: documents under --min-chars or --min-tokens are dropped and counted; an empty corpus is a clear error', async () => {
  const paths = [
    write('filt/short.txt', 'Too short to keep.'), // < 200 characters
    write('filt/few.txt', 'Tokens are few here: ' + 'abcdefghij '.repeat(20)), // > 200 characters, few tokens
    write('filt/long.txt', words('K', 300)),
  ];
  assert.ok(tok.encode(fs.readFileSync(paths[1], 'utf8')).length + 2 < 256 - 100);
  for (const packing of [true, false]) {
    const data = await openDataset(options(paths, { packing, minChars: 200, minTokens: 100, seqLen: 64 }), tok, runOpts());
    batches(data, 40);
    const s = data.stats();
    assert.ok(s.epoch >= 2);
    // each epoch drops both: the counts are per document (packing) or text (truncate) read
    assert.ok(Math.abs(s.filtered.minChars - s.filtered.minTokens) <= 1);
    assert.ok(s.filtered.minChars >= 2 && s.filtered.minTokens >= 2);
    assert.match(data.describe(), /dropped \d+ by --min-chars 200 and \d+ by --min-tokens 100/);
    data.close();
  }
  const empty = await openDataset(options(paths.slice(0, 2), { minChars: 200, minTokens: 1000 }), tok, runOpts());
  assert.throws(
    () => empty.nextBatch(1),
    /no training data passes the filters: of \d+ documents read, \d+ were dropped by --min-chars 200 .* and \d+ by --min-tokens 1000 .*; lower --min-chars \/ --min-tokens/,
  );
  empty.close();
});

// ---- order and state ----

test('order: the same seed gives the same batches, another seed others; every epoch is reshuffled', async () => {
  const paths = Array.from({ length: 12 }, (_, i) => write(`order/${String(i).padStart(2, '0')}.txt`, `Document ${i}. ` + words(`D${i}`, 20)));
  const open = (seed: number) => openDataset(options(paths, { packing: false, seqLen: 8 }), tok, runOpts({ seed }));
  const [a, b, c] = [await open(7), await open(7), await open(8)];
  const first = (d: TrainData) => Array.from({ length: 3 }, () => Array.from(d.nextBatch(12).inputs.filter((_, i) => i % 8 === 3)));
  const ea = first(a);
  assert.deepEqual(first(b), ea);
  assert.notDeepEqual(first(c), ea);
  // one row per document: each epoch holds every document once, in its own order
  assert.deepEqual([...ea[1]].sort(), [...ea[0]].sort());
  assert.notDeepEqual(ea[1], ea[0]);
  assert.notDeepEqual(ea[2], ea[1]);
  for (const d of [a, b, c]) d.close();
});

test('state/restore: the stream continues bit for bit (mid-document, mid-piece, across epochs, after JSON)', async () => {
  const paths = [
    write('state/a.txt', words('S', 70)),
    write('state/b.jsonl', [words('J', 25), words('K', 130), 'tiny'].map((t) => JSON.stringify({ text: t })).join('\n')),
  ];
  for (const packing of [true, false]) {
    const open = () => openDataset(options(paths, { packing, seqLen: 16, minChars: 10 }), tok, runOpts({ seed: 3, splitWords: 20 }));
    const ref = await open();
    const reference = batches(ref, 40, 4);
    assert.ok(ref.stats().epoch >= 2, 'the reference crosses epoch boundaries');
    ref.close();
    let midPiece = 0;
    for (const k of [0, 1, 4, 7, 12, 19, 26, 33]) {
      const first = await open();
      batches(first, k, 4);
      const state = JSON.parse(JSON.stringify(first.state()));
      if (state.piece > 0 && state.token > 0) midPiece++;
      first.close();
      const second = await open();
      second.restore(state);
      assert.deepEqual(batches(second, 40 - k, 4), reference.slice(k), `${packing ? 'packing' : 'truncate'}: restored after ${k} batches`);
      assert.equal(second.stats().rows, ref.stats().rows, 'the statistics continue too');
      second.close();
    }
    if (packing) assert.ok(midPiece > 0, 'some states are inside a piece');
  }
  const data = await openDataset(options(paths, { seqLen: 16 }), tok, runOpts({ seed: 3 }));
  const other = await openDataset(options(paths, { seqLen: 16 }), tok, runOpts({ seed: 4 }));
  assert.throws(() => other.restore(data.state()), /data state belongs to another corpus, data options or seed/);
  data.close();
  other.close();
});

// ---- validation ----

test('validation: held-out documents, disjoint from training, the same batches every call and every seed', async () => {
  const paths = Array.from({ length: 20 }, (_, i) => write(`val/${String(i).padStart(2, '0')}.txt`, words(`Z${i}Z`, 30)));
  const open = (seed: number) => openDataset(options(paths, { seqLen: 24, valFraction: 0.1 }), tok, runOpts({ seed }));
  const data = await open(0);
  assert.equal(data.stats().validationDocuments, 2);
  assert.equal(data.stats().trainDocuments, 18);
  const val = data.validationBatches(2, 100);
  assert.equal(data.validationBatches(2, 100), val, 'kept');
  const again = await open(99);
  assert.deepEqual(again.validationBatches(2, 100), val, 'independent of the seed');
  const tagsOf = (texts: string[]) => new Set(texts.flatMap((t) => [...t.matchAll(/Z(\d+)Z/g)].map((m) => Number(m[1]))));
  const valTags = tagsOf([streamText(val)]);
  const trainTags = tagsOf([streamText(batches(data, 80, 4))]);
  assert.equal(valTags.size, 2);
  assert.equal(trainTags.size, 18);
  assert.ok(
    [...valTags].every((t) => !trainTags.has(t)),
    'disjoint',
  );
  // the last batch ends in pad rows; maxBatches caps
  const last = val[val.length - 1];
  assert.equal(last.batchSize, 2);
  assert.equal(data.validationBatches(2, 1).length, 1);
  data.close();
  again.close();

  // never all: at least one document is left for training
  const greedy = await openDataset(options(paths.slice(0, 3), { valFraction: 0.9 }), tok, runOpts());
  assert.deepEqual([greedy.stats().trainDocuments, greedy.stats().validationDocuments], [1, 2]);
  assert.match(greedy.stats().warnings.join(), /would leave no training data/);
  greedy.close();
  const none = await openDataset(options(paths.slice(0, 3)), tok, runOpts());
  assert.deepEqual(none.validationBatches(2, 10), []);
  none.close();
});

test('validation of a single document: its tail is held out, the head trained on', async () => {
  const file = write('single/book.txt', words('', 400));
  const data = await openDataset(options([file], { seqLen: 32, valFraction: 0.25, minChars: 200, minTokens: 256 }), tok, runOpts());
  assert.equal(data.stats().heldOutTail, true);
  const wordNumbers = (text: string) => [...text.matchAll(/w(\d+)\b/g)].map((m) => Number(m[1]));
  const val = wordNumbers(streamText(data.validationBatches(4, 100)));
  const train = wordNumbers(streamText(batches(data, 20, 4)));
  const cut = Math.min(...val);
  assert.ok(cut > 250 && cut < 320, `the tail starts near 75 % of the text (word ${cut})`);
  assert.equal(Math.max(...val), 399);
  assert.ok(Math.max(...train) < cut, 'training never reads the tail');
  assert.equal(Math.min(...train), 0);
  data.close();
});

// ---- scale ----

test('bounded memory: a 128 MB JSON-lines corpus is indexed and read without loading it', async (t) => {
  const file = path.join(dir, 'big.jsonl');
  const lines = Array.from({ length: 64 }, (_, i) => JSON.stringify({ id: i, text: words(`B${i}`, 150) }) + '\n').join('');
  const block = Buffer.from(lines.repeat(Math.ceil((1 << 20) / lines.length)));
  const fd = fs.openSync(file, 'w');
  for (let written = 0; written < 128 << 20; written += block.length) fs.writeSync(fd, block);
  fs.closeSync(fd);
  const size = fs.statSync(file).size;
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const t0 = performance.now();
  const data = await openDataset(options([file], { seqLen: 256, valFraction: 0.001, minChars: 200, minTokens: 100 }), tok, runOpts());
  const opened = performance.now() - t0;
  for (let i = 0; i < 10; i++) data.nextBatch(8);
  data.validationBatches(8, 2);
  const grown = process.memoryUsage().rss - rss0;
  const docs = data.stats().documents;
  data.close();
  fs.rmSync(file);
  t.diagnostic(`${docs} documents, ${(size / 2 ** 20).toFixed(0)} MB: indexed in ${opened.toFixed(0)} ms, RSS +${(grown / 2 ** 20).toFixed(0)} MB`);
  assert.ok(docs > 50_000, `${docs} documents`);
  assert.ok(grown < size / 3, `RSS grew ${(grown / 2 ** 20).toFixed(0)} MB for a ${(size / 2 ** 20).toFixed(0)} MB corpus`);
  assert.ok(opened < 15_000, `indexed in ${opened.toFixed(0)} ms`);
});

test('the built-in corpus with the defaults: packed rows, a small validation split', async () => {
  const data = await openDataset({ paths: ['builtin:sotu'], seqLen: 128, packing: true, minChars: 200, minTokens: 256, valFraction: 0.01 }, tok, runOpts());
  const b = data.nextBatch(4);
  assert.equal(b.inputs.length, 4 * 128);
  assert.equal(b.inputs[0], tok.bosId);
  assert.ok(b.inputs.every((id) => id >= 0 && id < tok.vocabSize));
  assert.ok(data.validationBatches(4, 2).length === 2);
  assert.match(data.describe(), /233 documents .* 231 train \/ 2 validation; packed rows of 128\+1 tokens/);
  data.close();
});

// ---- --data-ids ----

test('--data-ids: rows in order, row[:-1] in and row[1:] out, wrapping; state/restore; errors', async () => {
  const file = write(
    'ids.json',
    JSON.stringify([
      [1, 2, 3, 4],
      [5, 6, 7, 8],
      [9, 10, 11, 12],
    ]),
  );
  const data = await openDataset({ ...options([]), idsFile: file }, tok, runOpts());
  const b = data.nextBatch(2);
  assert.deepEqual([b.batchSize, b.seqLen], [2, 3]);
  assert.deepEqual(Array.from(b.inputs), [1, 2, 3, 5, 6, 7]);
  assert.deepEqual(Array.from(b.targets), [2, 3, 4, 6, 7, 8]);
  const state = JSON.parse(JSON.stringify(data.state()));
  const next = data.nextBatch(2);
  assert.deepEqual(Array.from(next.inputs), [9, 10, 11, 1, 2, 3], 'wraps around');
  assert.equal(data.stats().epoch, 1);
  data.restore(state);
  assert.deepEqual(data.nextBatch(2), next);
  assert.deepEqual(data.validationBatches(2, 4), []);
  const bad = (rows: unknown, re: RegExp) =>
    assert.rejects(openDataset({ ...options([]), idsFile: write('bad-ids.json', JSON.stringify(rows)) }, tok, runOpts()), re);
  await bad(
    [
      [1, 2, 3],
      [4, 5],
    ],
    /row 1 has 2 ids, row 0 has 3/,
  );
  await bad(
    [
      [1, 2],
      [3, -1],
    ],
    /row 1, position 1: -1 is not a token id/,
  );
  await bad([[1, 40000]], /row 0, position 1: 40000 is not a token id in \[0, 32000\)/);
  await bad({ rows: [] }, /expected a non-empty JSON array/);
});
