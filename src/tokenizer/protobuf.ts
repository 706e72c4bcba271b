// A minimal protobuf wire-format reader: enough to walk a SentencePiece ModelProto.
// Each message is read as a flat list of (field number, wire type, value) records; nested messages
// are byte ranges that the caller reads again. Errors name the file and the byte offset.

export const WireType = { VARINT: 0, I64: 1, LEN: 2, I32: 5 } as const;

export interface ProtoField {
  field: number;
  wire: number;
  /** VARINT: the value (as a JS number; SentencePiece's ints and bools fit) */
  varint: number;
  /** LEN: the payload; I32: the 4 raw bytes; I64: the 8 raw bytes */
  bytes: Uint8Array;
  /** byte offset of the record's tag within the whole file, for error messages */
  offset: number;
}

export class ProtoReader {
  private pos: number;

  /**
   * @param buf the message bytes
   * @param file file name used in error messages
   * @param base offset of `buf` within the file, so errors point into the file
   */
  constructor(
    private readonly buf: Uint8Array,
    private readonly file: string,
    private readonly base = 0,
  ) {
    this.pos = 0;
  }

  private fail(what: string): never {
    throw new Error(`${this.file}: corrupt protobuf at byte ${this.base + this.pos}: ${what}`);
  }

  private readVarint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) this.fail('truncated varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    return this.fail('varint longer than 10 bytes');
  }

  private take(n: number, what: string): Uint8Array {
    if (n > this.buf.length - this.pos) {
      this.fail(`${what} needs ${n} bytes but only ${this.buf.length - this.pos} remain (file truncated?)`);
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /** All records of this message, in file order. */
  fields(): ProtoField[] {
    const out: ProtoField[] = [];
    while (this.pos < this.buf.length) {
      const offset = this.base + this.pos;
      const tag = this.readVarint();
      const field = Math.floor(tag / 8);
      const wire = tag % 8;
      if (field === 0) this.fail('field number 0');
      let varint = 0;
      let bytes: Uint8Array = EMPTY;
      if (wire === WireType.VARINT) varint = this.readVarint();
      else if (wire === WireType.I64) bytes = this.take(8, `field ${field} (fixed64)`);
      else if (wire === WireType.I32) bytes = this.take(4, `field ${field} (fixed32)`);
      else if (wire === WireType.LEN) {
        const len = this.readVarint();
        bytes = this.take(len, `field ${field} (length-delimited)`);
      } else this.fail(`field ${field} has unsupported wire type ${wire}`);
      out.push({ field, wire, varint, bytes, offset });
    }
    return out;
  }

  /** A reader for a nested message held in `f.bytes`. */
  nested(f: ProtoField): ProtoReader {
    const start = f.bytes.byteOffset - this.buf.byteOffset;
    return new ProtoReader(f.bytes, this.file, this.base + start);
  }
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }); // keep U+FEFF: it is a LLaMA piece (id 30143);

/** Decode a string field, rejecting invalid UTF-8 (a sign of corruption). */
export function protoString(f: ProtoField, file: string, what: string): string {
  if (f.wire !== WireType.LEN) throw new Error(`${file}: ${what} at byte ${f.offset} is not a string (wire type ${f.wire})`);
  try {
    return utf8.decode(f.bytes);
  } catch {
    throw new Error(`${file}: ${what} at byte ${f.offset} is not valid UTF-8`);
  }
}

/** Decode a `float` field (fixed32, little-endian). */
export function protoFloat(f: ProtoField, file: string, what: string): number {
  if (f.wire !== WireType.I32) throw new Error(`${file}: ${what} at byte ${f.offset} is not a float (wire type ${f.wire})`);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, 4).getFloat32(0, true);
}

/** Decode an int/enum/bool field. */
export function protoVarint(f: ProtoField, file: string, what: string): number {
  if (f.wire !== WireType.VARINT) throw new Error(`${file}: ${what} at byte ${f.offset} is not a varint (wire type ${f.wire})`);
  return f.varint;
}
