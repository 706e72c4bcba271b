// CoreNet's character filter: a text is dropped when its "processed" length is below
// --min-chars. CoreNet (corenet/data/datasets/language_modeling/base_lm.py, `_process_text`,
// after SlimPajama) lowercases the text, deletes ASCII punctuation (Python's string.punctuation),
// collapses whitespace runs to one space and strips both ends, then takes len() in code points.
// processedLength counts that length without building the string, and stops at `limit`.
//
//   processedLength('  Hello, World!  ')   // 11: "hello world"

const PUNCTUATION = new Uint8Array(128);
for (const c of '!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~') PUNCTUATION[c.charCodeAt(0)] = 1;

/** Python's str.isspace() (what `\s` and strip() match in CoreNet's regex). */
function isPythonSpace(cp: number): boolean {
  return (
    (cp >= 0x09 && cp <= 0x0d) ||
    (cp >= 0x1c && cp <= 0x20) ||
    cp === 0x85 ||
    cp === 0xa0 ||
    cp === 0x1680 ||
    (cp >= 0x2000 && cp <= 0x200a) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    cp === 0x202f ||
    cp === 0x205f ||
    cp === 0x3000
  );
}

/** code points of the lowercase form (Python's and JavaScript's lower() agree: 'İ' becomes 2) */
function lowerLength(cp: number): number {
  let n = 0;
  for (const _ of String.fromCodePoint(cp).toLowerCase()) n++;
  return n;
}

/**
 * len(_process_text(text)) as CoreNet computes it, or any value ≥ `limit` once it is reached.
 * @param text the text (already NFC-normalized by the caller)
 */
export function processedLength(text: string, limit = Infinity): number {
  let n = 0;
  let gap = false; // whitespace seen after some kept character: one space if more follows
  for (let i = 0; i < text.length && n < limit; i++) {
    let cp = text.charCodeAt(i);
    if (cp < 0x80) {
      if (PUNCTUATION[cp]) continue;
      if (isPythonSpace(cp)) {
        if (n > 0) gap = true;
        continue;
      }
      if (gap) n++;
      gap = false;
      n++;
      continue;
    }
    if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
      const lo = text.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) {
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i++;
      }
    }
    if (isPythonSpace(cp)) {
      if (n > 0) gap = true;
      continue;
    }
    if (gap) n++;
    gap = false;
    n += lowerLength(cp);
  }
  return n;
}
