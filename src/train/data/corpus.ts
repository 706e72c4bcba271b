// A corpus: its sources (sources.ts) and an index of their documents, whose texts are read only
// when asked for. The index holds, per document, its source, byte offset, byte length and line /
// element number (20 bytes: ~20 MB for a million documents); the texts stay on disk.
//
//   const corpus = await Corpus.open(['data/', 'more.jsonl.gz']);
//   corpus.count;            // documents
//   corpus.text(0);          // the first one's text
//   corpus.where(0);         // "data/a.jsonl:1"
//   corpus.close();
//
// JSON lines and JSON arrays are parsed once while indexing, so a bad line fails at once, naming
// the file and line, instead of hours into a run.
import * as fs from 'node:fs';
import { DOCUMENT_SPLIT_WORDS, type DocText, FileText, PIECE_CAP, StringText } from './doc-text.ts';
import { scanJsonArray } from './json-scan.ts';
import { DEFAULT_CACHE_DIR, resolveSources, type SourceFile } from './sources.ts';

export interface CorpusOptions {
  /** where decompressed .gz and converted .parquet files are kept (default $TMPDIR/openelm-data-cache) */
  cacheDir?: string;
  /** words per piece (CoreNet's document_split_size, default 2048); small values are for tests */
  splitWords?: number;
}

/** Growable columns of the document index. */
class DocIndex {
  count = 0;
  source = new Uint32Array(1024);
  offset = new Float64Array(1024);
  length = new Float64Array(1024);
  /** 1-based line (JSON lines), 0-based element (JSON array), record (built-in); 0 for a text file */
  ordinal = new Uint32Array(1024);

  push(source: number, offset: number, length: number, ordinal: number): void {
    if (this.count === this.source.length) {
      const grow = <T extends Uint32Array | Float64Array>(a: T): T => {
        const b = new (a.constructor as new (n: number) => T)(a.length * 2);
        b.set(a);
        return b;
      };
      this.source = grow(this.source);
      this.offset = grow(this.offset);
      this.length = grow(this.length);
      this.ordinal = grow(this.ordinal);
    }
    const i = this.count++;
    this.source[i] = source;
    this.offset[i] = offset;
    this.length[i] = length;
    this.ordinal[i] = ordinal;
  }
}

const MAX_OPEN_FILES = 16;

export class Corpus {
  private readonly index = new DocIndex();
  /** source -> fd, least recently used first */
  private readonly fds = new Map<number, number>();
  /** [PIECE_CAP] text-file pieces are read here */
  private readonly scratch = Buffer.allocUnsafe(PIECE_CAP);
  private lineBuf = Buffer.allocUnsafe(1 << 16);
  readonly splitWords: number;

  private constructor(
    readonly sources: SourceFile[],
    opts: CorpusOptions,
  ) {
    this.splitWords = opts.splitWords ?? DOCUMENT_SPLIT_WORDS;
    if (!Number.isInteger(this.splitWords) || this.splitWords < 1) throw new Error(`splitWords must be a positive integer, got ${this.splitWords}`);
  }

  /** Resolves the paths (sources.ts) and indexes every document. */
  static async open(paths: string[], opts: CorpusOptions = {}): Promise<Corpus> {
    const corpus = new Corpus(await resolveSources(paths, opts.cacheDir ?? DEFAULT_CACHE_DIR), opts);
    try {
      corpus.sources.forEach((s, i) => corpus.indexSource(i, s));
    } catch (e) {
      corpus.close();
      throw e;
    }
    return corpus;
  }

  get count(): number {
    return this.index.count;
  }

  /** "file:line", "file: element 3", "file.parquet: row 7", "builtin:sotu #12", or the file name */
  where(doc: number): string {
    const s = this.sources[this.index.source[doc]];
    const k = this.index.ordinal[doc];
    if (s.format === 'text') return s.name;
    if (s.format === 'builtin') return `${s.name} #${k}`;
    if (s.unit === 'row') return `${s.name}: row ${k - 1}`;
    if (k >= 0x80000000) return `${s.name}: element ${k - 0x80000000}`;
    return `${s.name}:${k}`;
  }

  /** The document's text, to be read piece by piece. */
  open(doc: number): DocText {
    if (!(doc >= 0 && doc < this.index.count)) throw new RangeError(`document ${doc} out of range [0, ${this.index.count})`);
    const src = this.index.source[doc];
    const s = this.sources[src];
    const offset = this.index.offset[doc];
    const length = this.index.length[doc];
    if (s.format === 'text') {
      const readAt = (buf: Buffer, n: number, pos: number) => fs.readSync(this.fd(src), buf, 0, n, pos);
      return new FileText(readAt, offset, this.splitWords, 0, length, this.scratch);
    }
    if (s.format === 'builtin') return new StringText(s.texts![offset], this.splitWords);
    if (this.lineBuf.length < length) this.lineBuf = Buffer.allocUnsafe(Math.max(length, this.lineBuf.length * 2));
    const got = fs.readSync(this.fd(src), this.lineBuf, 0, length, offset);
    let value: unknown;
    try {
      if (got !== length) throw new Error('short read');
      value = JSON.parse(this.lineBuf.toString('utf8', 0, length));
    } catch (e) {
      throw new Error(`${this.where(doc)}: cannot be read again (${(e as Error).message}); was the file changed while training?`);
    }
    return new StringText(textOf(value, this.where(doc)), this.splitWords);
  }

  /** The whole text of a document (for tests and inspection; training reads pieces). */
  text(doc: number): string {
    const t = this.open(doc);
    let text = '';
    for (let p = t.begin; ; ) {
      const piece = t.piece(p);
      text += piece.text;
      if (piece.next >= t.end) return text;
      // the space a piece ended at is not in its text
      if (piece.next > piece.end) text += ' ';
      p = piece.next;
    }
  }

  close(): void {
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  private fd(src: number): number {
    let fd = this.fds.get(src);
    if (fd !== undefined) {
      this.fds.delete(src);
      this.fds.set(src, fd);
      return fd;
    }
    if (this.fds.size >= MAX_OPEN_FILES) {
      const [oldest, oldFd] = this.fds.entries().next().value!;
      fs.closeSync(oldFd);
      this.fds.delete(oldest);
    }
    fd = fs.openSync(this.sources[src].file, 'r');
    this.fds.set(src, fd);
    return fd;
  }

  // ---- indexing ----

  private indexSource(src: number, s: SourceFile): void {
    if (s.format === 'builtin') {
      s.texts!.forEach((t, i) => this.index.push(src, i, t.length, i));
      return;
    }
    const fd = this.fd(src);
    const size = fs.fstatSync(fd).size;
    if (s.format === 'text') {
      const head = Buffer.alloc(3);
      const n = fs.readSync(fd, head, 0, 3, 0);
      const bom = n === 3 && head[0] === 0xef && head[1] === 0xbb && head[2] === 0xbf ? 3 : 0;
      this.index.push(src, bom, size - bom, 0);
      return;
    }
    if (s.format === 'json') {
      const first = firstByte(fd, size);
      if (first.byte === 0x5b) {
        let k = 0;
        scanJsonArray(
          (buf, pos) => fs.readSync(fd, buf, 0, buf.length, pos),
          first.pos,
          s.name,
          (start, end) => {
            const where = `${s.name}: element ${k}`;
            this.checkDocument(fd, start, end - start, where);
            // bit 31 marks an element number (vs. a line number)
            this.index.push(src, start, end - start, (k++ | 0x80000000) >>> 0);
          },
        );
        return;
      }
      if (first.byte >= 0 && first.byte !== 0x7b && first.byte !== 0x22) {
        throw new Error(
          `${s.name}: expected a JSON array of objects with a "text" field (or of strings), or JSON lines; the file starts with ${JSON.stringify(String.fromCharCode(first.byte))}`,
        );
      }
    }
    this.indexLines(src, s, fd);
  }

  /** one document per non-blank line */
  private indexLines(src: number, s: SourceFile, fd: number): void {
    let buf = Buffer.allocUnsafe(1 << 20);
    let filePos = 0; // file offset of buf[0]
    let have = 0; // valid bytes in buf
    let line = 1;
    for (;;) {
      const n = fs.readSync(fd, buf, have, buf.length - have, filePos + have);
      have += n;
      let start = 0;
      for (;;) {
        const nl = buf.indexOf(0x0a, start);
        if (nl < 0 || nl >= have) break;
        this.indexLine(src, s, buf, start, nl, filePos + start, line++);
        start = nl + 1;
      }
      if (n === 0) {
        if (start < have) this.indexLine(src, s, buf, start, have, filePos + start, line);
        return;
      }
      // keep the partial last line, growing the buffer if it fills it
      buf.copy(buf, 0, start, have);
      filePos += start;
      have -= start;
      if (have === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, have);
        buf = bigger;
      }
    }
  }

  private indexLine(src: number, s: SourceFile, buf: Buffer, start: number, end: number, offset: number, line: number): void {
    if (end > start && buf[end - 1] === 0x0d) end--;
    let blank = true;
    for (let i = start; i < end && blank; i++) blank = buf[i] === 0x20 || buf[i] === 0x09;
    if (blank) return;
    const where = s.unit === 'row' ? `${s.name}: row ${line - 1}` : `${s.name}:${line}`;
    let value: unknown;
    try {
      value = JSON.parse(buf.toString('utf8', start, end));
    } catch (e) {
      const hint = s.format === 'json' ? '; a .json file holds an array, or one object per line' : '';
      throw new Error(`${where}: not JSON (${(e as Error).message})${hint}`);
    }
    textOf(value, where);
    this.index.push(src, offset, end - start, line);
  }

  private checkDocument(fd: number, offset: number, length: number, where: string): void {
    if (this.lineBuf.length < length) this.lineBuf = Buffer.allocUnsafe(Math.max(length, this.lineBuf.length * 2));
    fs.readSync(fd, this.lineBuf, 0, length, offset);
    let value: unknown;
    try {
      value = JSON.parse(this.lineBuf.toString('utf8', 0, length));
    } catch (e) {
      throw new Error(`${where}: not JSON (${(e as Error).message})`);
    }
    textOf(value, where);
  }
}

/** the text of a parsed document: an object's "text" string, or a string */
function textOf(value: unknown, where: string): string {
  if (typeof value === 'string') return value;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new Error(
      `${where}: expected an object with a "text" string (or a string), got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`,
    );
  }
  const text = (value as Record<string, unknown>).text;
  if (typeof text === 'string') return text;
  if (text === undefined) throw new Error(`${where}: no "text" field (fields: ${Object.keys(value).join(', ') || 'none'})`);
  throw new Error(`${where}: "text" is ${text === null ? 'null' : typeof text}, expected a string`);
}

/** the first non-whitespace byte of a file and its offset (-1 for an empty file) */
function firstByte(fd: number, size: number): { byte: number; pos: number } {
  const buf = Buffer.allocUnsafe(4096);
  for (let pos = 0; pos < size; ) {
    const n = fs.readSync(fd, buf, 0, buf.length, pos);
    if (n <= 0) break;
    for (let i = 0; i < n; i++) {
      const b = buf[i];
      // a UTF-8 byte order mark, then whitespace
      if (pos + i < 3 && (b === 0xef || b === 0xbb || b === 0xbf)) continue;
      if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return { byte: b, pos: pos + i };
    }
    pos += n;
  }
  return { byte: -1, pos: -1 };
}
