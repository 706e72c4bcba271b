// The few Python string semantics the harness's task templates rely on, where JavaScript's
// built-ins differ: which characters are whitespace (str.strip / rstrip / lstrip), what
// str.capitalize() does, and that len() counts code points, not UTF-16 units.

/** Python's str.isspace() set (Unicode White_Space plus the ASCII separators \x1c–\x1f; not U+FEFF). */
const PY_SPACE = /[\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/;

export function isPySpace(ch: string): boolean {
  return PY_SPACE.test(ch);
}

/** str.rstrip() */
export function pyRstrip(s: string): string {
  let end = s.length;
  while (end > 0 && isPySpace(s[end - 1])) end--;
  return s.slice(0, end);
}

/** str.lstrip() */
export function pyLstrip(s: string): string {
  let start = 0;
  while (start < s.length && isPySpace(s[start])) start++;
  return s.slice(start);
}

/** str.strip() */
export function pyStrip(s: string): string {
  return pyLstrip(pyRstrip(s));
}

/** len(s): code points (an emoji is 1, not 2). */
export function pyLen(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

// Title case differs from upper case for the Latin digraphs (and ß → "Ss", not "SS").
const TITLE: Record<string, string> = {
  ǆ: 'ǅ',
  ǅ: 'ǅ',
  Ǆ: 'ǅ',
  ǉ: 'ǈ',
  ǈ: 'ǈ',
  Ǉ: 'ǈ',
  ǌ: 'ǋ',
  ǋ: 'ǋ',
  Ǌ: 'ǋ',
  ǳ: 'ǲ',
  ǲ: 'ǲ',
  Ǳ: 'ǲ',
  ß: 'Ss',
};

/**
 * str.capitalize() (Python ≥ 3.8): the first character in title case, **the rest lower-cased**
 * ("walking THE dog" → "Walking the dog"), not just the first letter raised.
 */
export function pyCapitalize(s: string): string {
  if (s === '') return s;
  const first = String.fromCodePoint(s.codePointAt(0)!);
  const rest = s.slice(first.length);
  return (TITLE[first] ?? first.toUpperCase()) + rest.toLowerCase();
}
