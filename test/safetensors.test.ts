// safetensors reading and writing: the fixtures read back through an independent header parser,
// byte-identical rewrites of files the reference (Rust) implementation wrote, and every kind of
// corruption rejected with a message naming the file and the tensor or field at fault.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { f32ToBf16 } from '../src/io/dtype.ts';
import { openSafetensors, SafetensorsError, type SafetensorsTensorToWrite, SafetensorsWriter, writeSafetensors } from '../src/io/safetensors.ts';

const FIX = fileURLToPath(new URL('./fixtures/openelm/', import.meta.url));
const F32_FILE = path.join(FIX, 'tiny-f32/model.safetensors');
const BF16_SHARD = path.join(FIX, 'tiny-bf16-sharded/model-00002-of-00002.safetensors');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'openelm-safetensors-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let counter = 0;
const tmpFile = (name = 'x.safetensors') => path.join(tmp, `${counter++}-${name}`);

interface Entry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}
/** Independent parse: header object and data section. */
function split(file: string): { header: Record<string, Entry> & { __metadata__?: Record<string, string> }; data: Buffer } {
  const b = fs.readFileSync(file);
  const n = Number(b.readBigUInt64LE(0));
  return { header: JSON.parse(b.subarray(8, 8 + n).toString('utf8')), data: b.subarray(8 + n) };
}
/** A file from a header (object or raw text) and data, with the header length it declares. */
function build(header: unknown, data: Uint8Array, declaredLength?: bigint): string {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(declaredLength ?? BigInt(h.length));
  const f = tmpFile();
  fs.writeFileSync(f, Buffer.concat([len, h, data]));
  return f;
}
function rejects(file: string, re: RegExp, tensor?: string): SafetensorsError {
  let err: unknown;
  assert.throws(
    () => openSafetensors(file),
    (e) => ((err = e), true),
  );
  assert.ok(err instanceof SafetensorsError, `expected a SafetensorsError, got ${err}`);
  assert.ok(err.message.startsWith(file + ': '), `message must start with the file: ${err.message}`);
  assert.match(err.message, re);
  if (tensor) {
    assert.equal(err.tensor, tensor);
    assert.ok(err.message.includes(`"${tensor}"`), `message must name tensor ${tensor}: ${err.message}`);
  }
  return err;
}

describe('reading', () => {
  test('the fixtures: header, metadata, order and every tensor match an independent parse', () => {
    for (const file of [
      F32_FILE,
      BF16_SHARD,
      path.join(FIX, 'tiny-vocab32k-bf16/model.safetensors'),
      path.join(FIX, 'tiny-f32-peft/lora/adapter_model.safetensors'),
    ]) {
      const f = openSafetensors(file);
      const { header, data } = split(file);
      const { __metadata__: meta, ...entries } = header;
      assert.deepEqual(f.metadata, meta ?? {});
      assert.equal(f.tensors.size, Object.keys(entries).length);
      assert.equal(f.dataStart + data.length, fs.statSync(file).size);
      for (const [name, e] of Object.entries(entries)) {
        const t = f.info(name);
        assert.equal(t.dtype, e.dtype);
        assert.deepEqual(t.shape, e.shape);
        assert.deepEqual(t.dataOffsets, e.data_offsets);
        const raw = new Uint8Array(t.byteLength);
        f.readInto(name, raw);
        assert.ok(Buffer.from(raw).equals(data.subarray(...e.data_offsets)), name);
      }
    }
  });

  test('read gives typed arrays; readAsF32 widens bf16 exactly', () => {
    const f = openSafetensors(F32_FILE);
    const norm = f.read('transformer.norm.weight');
    assert.ok(norm instanceof Float32Array && norm.length === 128);
    assert.deepEqual(f.readAsF32('transformer.norm.weight'), norm);
    // numpy: float(a[-1]) of the same tensor
    assert.equal(norm[127], 0.7641831636428833);

    const b = openSafetensors(BF16_SHARD);
    const bits = b.read('transformer.token_embeddings.weight') as Uint16Array;
    assert.ok(bits instanceof Uint16Array && bits.length === 512 * 192);
    const wide = b.readAsF32('transformer.token_embeddings.weight');
    for (let i = 0; i < bits.length; i += 97) assert.equal(new Uint32Array(wide.buffer)[i], bits[i] * 65536);
    const back = new Uint16Array(bits.length);
    f32ToBf16(wide, back);
    assert.deepEqual(back, bits);
    assert.equal(wide[wide.length - 1], 0.037109375); // numpy
  });

  test('readInto checks the destination size and the tensor name', () => {
    const f = openSafetensors(F32_FILE);
    assert.throws(
      () => f.readInto('transformer.norm.weight', new Uint8Array(100)),
      /model\.safetensors: tensor "transformer\.norm\.weight" has 512 bytes \(F32 \[128\]\) but the destination buffer has 100/,
    );
    assert.throws(() => f.read('nope'), /model\.safetensors: no tensor "nope"/);
    assert.throws(() => f.readF32Into('transformer.norm.weight', new Float32Array(3)), /has 128 elements but the destination has 3/);
  });

  test('a file changed after opening is detected when reading', () => {
    const copy = tmpFile();
    fs.copyFileSync(F32_FILE, copy);
    const f = openSafetensors(copy);
    fs.truncateSync(copy, 1000);
    assert.throws(
      () => f.read('transformer.norm.weight'),
      /changed since it was opened \(2728952 → 1000 bytes\) while reading tensor "transformer\.norm\.weight"/,
    );
  });
});

describe('corrupt files are rejected naming file and tensor', () => {
  const { header, data } = split(F32_FILE);
  const orig = fs.readFileSync(F32_FILE);
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const byOffset = [...names].sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  const withEntry = (name: string, patch: Partial<Entry> | unknown) =>
    build({ ...header, [name]: patch && typeof patch === 'object' && !Array.isArray(patch) ? { ...header[name], ...patch } : patch }, data);
  const NORM = 'transformer.norm.weight';

  test('shorter than 8 bytes', () => {
    const f = tmpFile();
    fs.writeFileSync(f, orig.subarray(0, 5));
    rejects(f, /only 5 bytes: too short/);
  });

  test('truncated at several points', () => {
    const n = 8 + Number(orig.readBigUInt64LE(0));
    for (const cut of [0, 7, 8, 100, n - 1]) {
      const f = tmpFile();
      fs.writeFileSync(f, orig.subarray(0, cut));
      rejects(f, cut < 8 ? /too short/ : /header length 3568 runs past the end of the file/);
    }
    for (const keep of [0, 1, 1000, data.length / 2, data.length - 1]) {
      const f = tmpFile();
      fs.writeFileSync(f, orig.subarray(0, n + keep));
      const e = rejects(f, new RegExp(`truncated: tensor "[^"]+" needs bytes \\d+\\.\\.\\d+ but the file has only ${keep} data bytes`));
      assert.ok(header[e.tensor!].data_offsets[1] > keep, `${e.tensor} really is cut`);
    }
  });

  test('header length absurd, too long, too short', () => {
    rejects(build(header, data, 1n << 62n), /header length 4611686018427387904 is absurd/);
    rejects(build(header, data, BigInt(orig.length)), /runs past the end of the file/);
    rejects(build(header, data, BigInt(JSON.stringify(header).length - 10)), /header is not valid JSON/);
  });

  test('header not UTF-8, not JSON, not an object', () => {
    const bad = Buffer.from('{"a\xff":1}', 'latin1');
    const f = tmpFile();
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(bad.length));
    fs.writeFileSync(f, Buffer.concat([len, bad]));
    rejects(f, /header is not valid UTF-8/);
    rejects(build('{"x": [1, 2', new Uint8Array()), /header is not valid JSON/);
    rejects(build('[1, 2]', new Uint8Array()), /header must be a JSON object/);
    rejects(build('null', new Uint8Array()), /header must be a JSON object/);
    rejects(build({ __metadata__: { format: 1 } }, new Uint8Array()), /"__metadata__"\."format" must be a string/);
  });

  test('unknown dtype', () => {
    rejects(withEntry(NORM, { dtype: 'F33' }), /tensor "transformer\.norm\.weight": unknown dtype "F33"/, NORM);
  });

  test('bad shape', () => {
    for (const shape of [[128.5], [-128], '128', [null], undefined]) {
      rejects(withEntry(NORM, { shape }), /shape must be a list of non-negative integers/, NORM);
    }
    rejects(withEntry(NORM, 'garbage'), /header entry must be an object/, NORM);
  });

  test('bad data_offsets', () => {
    const [b, e] = header[NORM].data_offsets;
    rejects(withEntry(NORM, { data_offsets: [b] }), /data_offsets must be \[begin, end\]/, NORM);
    rejects(withEntry(NORM, { data_offsets: [b, -1] }), /data_offsets must be \[begin, end\]/, NORM);
    rejects(withEntry(NORM, { data_offsets: [e, b] }), /have begin > end/, NORM);
  });

  test('byte length does not match shape × dtype size', () => {
    rejects(withEntry(NORM, { shape: [64] }), /data_offsets \[\d+, \d+\] span 512 bytes but shape \[64\] of F32 needs 64 × 4 = 256/, NORM);
    rejects(withEntry(NORM, { dtype: 'BF16' }), /span 512 bytes but shape \[128\] of BF16 needs 128 × 2 = 256/, NORM);
  });

  test('overlapping tensors name both', () => {
    const q = 'transformer.layers.0.attn.q_norm.weight';
    const k = 'transformer.layers.0.attn.k_norm.weight';
    const e = rejects(withEntry(q, { data_offsets: header[k].data_offsets }), /tensors "[^"]+" \(bytes 0\.\.128\) and "[^"]+" \(bytes 0\.\.128\) overlap/);
    assert.ok(e.message.includes(q) && e.message.includes(k));
  });

  test('holes and trailing bytes: the tensors must cover the data section', () => {
    const { [byOffset[1]]: _gone, ...rest } = header;
    const e = rejects(
      build(rest, data),
      new RegExp(`hole in the data section: bytes 128\\.\\.\\d+ after tensor "${byOffset[0].replace(/\./g, '\\.')}" belong to no tensor`),
    );
    assert.equal(e.tensor, byOffset[2]);
    const { [byOffset[0]]: _first, ...rest2 } = header;
    rejects(build(rest2, data), /bytes 0\.\.128 at the start of the data section belong to no tensor/);
    rejects(build(header, Buffer.concat([data, Buffer.alloc(3)])), /the tensors cover only \d+: 3 trailing bytes belong to no tensor/);
  });
});

describe('writing', () => {
  function tensorsOf(file: string): SafetensorsTensorToWrite[] {
    const f = openSafetensors(file);
    return [...f.tensors.values()].map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: f.read(t.name) }));
  }

  test('rewriting files the reference implementation wrote gives identical bytes (layout, padding, metadata)', () => {
    for (const file of [F32_FILE, BF16_SHARD, path.join(FIX, 'tiny-f32/grads.safetensors')]) {
      const out = tmpFile();
      const meta = openSafetensors(file).metadata;
      // shuffled input order: the layout is the writer's own (dtype, then name)
      writeSafetensors(out, tensorsOf(file).reverse(), Object.keys(meta).length ? meta : undefined);
      assert.ok(fs.readFileSync(out).equals(fs.readFileSync(file)), `${file} rewritten differs`);
    }
  });

  test('round trip of every dtype; widest dtype first; header padded to 8 with spaces', () => {
    const tensors: SafetensorsTensorToWrite[] = [
      { name: 'a.u8', dtype: 'U8', shape: [3], data: new Uint8Array([1, 2, 255]) },
      { name: 'b.f16', dtype: 'F16', shape: [2], data: new Uint16Array([0x3c00, 0xc000]) },
      { name: 'c.bf16', dtype: 'BF16', shape: [1, 2], data: new Uint16Array([0x3f80, 0x7fc0]) },
      { name: 'd.f32', dtype: 'F32', shape: [2, 2], data: new Float32Array([1.5, -2, 3e-40, Infinity]) },
      { name: 'e.i64', dtype: 'I64', shape: [1], data: new BigInt64Array([-5n]) },
      { name: 'f.i32', dtype: 'I32', shape: [2], data: new Int32Array([-1, 7]) },
      { name: 'g.f64', dtype: 'F64', shape: [1], data: new Float64Array([Math.PI]) },
      { name: 'h.i8', dtype: 'I8', shape: [2], data: new Int8Array([-128, 127]) },
      { name: 'i.empty', dtype: 'F32', shape: [0, 4], data: new Float32Array(0) },
      { name: 'j.scalar', dtype: 'F32', shape: [], data: new Float32Array([42]) },
    ];
    const out = tmpFile();
    writeSafetensors(out, tensors, { format: 'pt', note: 'ünïcode' });
    const f = openSafetensors(out);
    assert.equal(f.headerLength % 8, 0);
    assert.match(fs.readFileSync(out).subarray(8, f.dataStart).toString('utf8'), /^\{"__metadata__":\{"format":"pt","note":"ünïcode"\},.*\} *$/);
    assert.deepEqual(f.metadata, { format: 'pt', note: 'ünïcode' });
    assert.deepEqual([...f.tensors.keys()], ['e.i64', 'g.f64', 'd.f32', 'i.empty', 'j.scalar', 'f.i32', 'c.bf16', 'b.f16', 'h.i8', 'a.u8']);
    for (const t of tensors) {
      assert.deepEqual(f.info(t.name).shape, t.shape);
      assert.deepEqual(f.read(t.name), t.data, t.name);
    }
    assert.deepEqual([...f.readAsF32('b.f16')], [1, -2]);
    assert.deepEqual([...f.readAsF32('c.bf16')], [1, NaN]);
    assert.throws(() => f.readAsF32('f.i32'), /tensor "f\.i32" is I32, not a float dtype/);
  });

  test('lazy data is produced in layout order, one tensor at a time', () => {
    const calls: string[] = [];
    const lazy = (name: string, n: number) => ({ name, dtype: 'F32' as const, shape: [n], data: () => (calls.push(name), new Float32Array(n).fill(n)) });
    const out = tmpFile();
    writeSafetensors(out, [lazy('z', 3), lazy('a', 1), lazy('m', 2)]);
    assert.deepEqual(calls, ['a', 'm', 'z']);
    assert.deepEqual([...openSafetensors(out).read('z')], [3, 3, 3]);
  });

  test('the streaming writer takes tensors in any order and in chunks', () => {
    const out = tmpFile();
    const w = new SafetensorsWriter(out, [
      { name: 'a', dtype: 'F32', shape: [4] },
      { name: 'b', dtype: 'F32', shape: [2] },
    ]);
    w.write('b', new Float32Array([5, 6]));
    w.write('a', new Float32Array([1, 2]));
    w.write('a', new Float32Array([3, 4]));
    assert.throws(() => w.write('a', new Float32Array([9])), /out\.safetensors|tensor "a" \(F32 \[4\]\) takes 16 bytes; writing 4 more after 16 overflows it/);
    assert.ok(!fs.existsSync(out), 'nothing at the final path before finish');
    w.finish();
    const f = openSafetensors(out);
    assert.deepEqual([...f.read('a')], [1, 2, 3, 4]);
    assert.deepEqual([...f.read('b')], [5, 6]);
  });

  test('atomic: a producer throwing midway leaves neither the file nor a temp file', () => {
    const out = tmpFile('atomic.safetensors');
    fs.writeFileSync(out, 'previous contents');
    const tensors: SafetensorsTensorToWrite[] = [
      { name: 'a', dtype: 'F32', shape: [1 << 20], data: new Float32Array(1 << 20) },
      {
        name: 'b',
        dtype: 'F32',
        shape: [2],
        data: () => {
          throw new Error('producer failed');
        },
      },
    ];
    assert.throws(() => writeSafetensors(out, tensors), /producer failed/);
    assert.equal(fs.readFileSync(out, 'utf8'), 'previous contents');
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('atomic') && f.includes('.tmp-')),
      [],
    );

    const w = new SafetensorsWriter(out, [{ name: 'a', dtype: 'F32', shape: [2] }]);
    w.write('a', new Float32Array(1));
    assert.throws(() => w.finish(), /1 tensor\(s\) not fully written, e\.g\. "a" has 4 of 8 bytes/);
    assert.equal(fs.readFileSync(out, 'utf8'), 'previous contents');
    assert.ok(!fs.existsSync(w.tmpPath));
  });

  test('bad input is rejected naming file and tensor', () => {
    const out = tmpFile('bad.safetensors');
    const one = (t: Partial<SafetensorsTensorToWrite>) => () =>
      writeSafetensors(out, [{ name: 'w', dtype: 'F32', shape: [2], data: new Float32Array(2), ...t } as SafetensorsTensorToWrite]);
    assert.throws(one({ data: new Float32Array(3) }), /bad\.safetensors: tensor "w" \(F32 \[2\]\) needs 8 bytes but its data has 12/);
    assert.throws(one({ dtype: 'F17' as 'F32' }), /bad\.safetensors: tensor "w": unknown dtype "F17"/);
    assert.throws(one({ shape: [-2] }), /tensor "w": shape must be non-negative integers/);
    assert.throws(one({ name: '__metadata__' }), /invalid tensor name/);
    assert.throws(
      () =>
        writeSafetensors(out, [
          { name: 'w', dtype: 'F32', shape: [], data: new Float32Array(1) },
          { name: 'w', dtype: 'F32', shape: [], data: new Float32Array(1) },
        ]),
      /tensor "w" is given twice/,
    );
    assert.ok(!fs.existsSync(out));
    assert.deepEqual(
      fs.readdirSync(tmp).filter((f) => f.includes('bad') && f.includes('.tmp-')),
      [],
    );
  });
});
