// The byte ranges of a JSON array's top-level elements, found by scanning the file in chunks
// (strings, escapes and nesting tracked; nothing parsed), so a large .json file is indexed without
// holding it in memory. Each element is parsed later, alone.

const WS = new Uint8Array(256);
for (const b of [0x20, 0x09, 0x0a, 0x0d]) WS[b] = 1;

/**
 * @param readAt fills buf from an absolute file position, returns the bytes read (0 at the end)
 * @param start the offset of the opening "["
 * @param onElement [start, end) of each element, whitespace trimmed
 */
export function scanJsonArray(
  readAt: (buf: Buffer, position: number) => number,
  start: number,
  name: string,
  onElement: (start: number, end: number) => void,
): void {
  const buf = Buffer.allocUnsafe(1 << 20);
  let depth = 1; // inside the array
  let inString = false;
  let escaped = false;
  let elemStart = -1;
  let lastByte = -1; // last non-whitespace byte of the current element
  let afterComma = false;
  let pos = start + 1;
  for (;;) {
    const n = readAt(buf, pos);
    if (n <= 0) break;
    for (let i = 0; i < n; i++, pos++) {
      const b = buf[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (b === 0x5c) escaped = true;
        else if (b === 0x22) inString = false;
        lastByte = pos;
        continue;
      }
      if (WS[b]) continue;
      if (depth === 0) throw new Error(`${name}: byte ${pos}: unexpected data after the top-level array`);
      if (depth === 1) {
        if (b === 0x2c) {
          if (elemStart < 0) throw new Error(`${name}: byte ${pos}: empty element in the top-level array`);
          onElement(elemStart, lastByte + 1);
          elemStart = -1;
          afterComma = true;
          continue;
        }
        if (b === 0x5d) {
          if (elemStart >= 0) onElement(elemStart, lastByte + 1);
          else if (afterComma) throw new Error(`${name}: byte ${pos}: trailing comma in the top-level array`);
          depth = 0;
          continue;
        }
        if (elemStart < 0) elemStart = pos;
        afterComma = false;
      }
      if (b === 0x22) inString = true;
      else if (b === 0x7b || b === 0x5b) depth++;
      else if (b === 0x7d || b === 0x5d) depth--;
      lastByte = pos;
    }
  }
  if (depth !== 0) throw new Error(`${name}: the top-level array is not closed (is the file truncated?)`);
}
