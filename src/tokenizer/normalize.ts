// SentencePiece's normalizer for an identity charsmap: what happens to text before BPE.
//   "Hello world" -> "▁Hello▁world"   (dummy prefix, spaces escaped as U+2581)
// Only ASCII " " counts as a space here (tabs, NBSP, ideographic space stay as they are).
import type { NormalizerFlags } from './pieces.ts';

export const SPACE_SYMBOL = '\u2581';

// a high surrogate not followed by a low one, or a low one not preceded by a high one
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * @returns the normalized text ("" for empty input); lone UTF-16 surrogates, which have no UTF-8
 * form, become U+FFFD as TextEncoder would write them.
 */
export function normalize(text: string, flags: NormalizerFlags): string {
  let s = text.replace(LONE_SURROGATE, '\uFFFD');
  // SentencePiece drops leading " " and collapses runs of " " before escaping...
  if (flags.removeExtraWhitespaces) s = s.replace(/^ +/, '').replace(/ {2,}/g, ' ');
  if (s.length === 0) return '';
  const space = flags.escapeWhitespaces ? SPACE_SYMBOL : ' ';
  if (flags.escapeWhitespaces) s = s.replaceAll(' ', SPACE_SYMBOL);
  if (flags.addDummyPrefix) s = space + s;
  // ...but strips trailing spaces after escaping, so a literal trailing "▁" goes too
  if (flags.removeExtraWhitespaces) {
    let end = s.length;
    while (end > 0 && s[end - 1] === space) end--;
    s = s.slice(0, end);
  }
  return s;
}
