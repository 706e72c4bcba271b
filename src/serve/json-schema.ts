// JSON Schema → a character-level recognizer of the JSON texts that validate against it.
//
// compileSchema() turns a schema into a small tree of nodes (object, array, string, number,
// literals, unions); it refuses, naming them, the keywords it cannot enforce while decoding.
// JsonRecognizer follows text one character at a time with a stack of frames (one per open value)
// and says whether the text can still become a valid document; done() once the root value closed.
// Every state it accepts can be completed (no dead ends), with single ASCII characters if need be,
// so a constrained model always has a token to pick.
//
//   const r = new JsonRecognizer(compileSchema({ type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] }));
//   r.feed('{"a": 12}') === true && r.done() === true
//
// What an output looks like: objects carry only their declared properties (each at most once, any
// order, every required one before the object may close; an object without `properties` takes any
// keys and values, unless additionalProperties is false); at most one space or newline in a row
// between tokens; numbers of at most 24 characters or so, exponents of two digits (always finite); property names and enum strings written
// with non-ASCII characters as \uXXXX.

export type SchemaNode =
  | { k: 'object'; props: { key: string; node: SchemaNode }[]; required: number[]; free: boolean }
  | { k: 'array'; items: SchemaNode; min: number; max: number }
  | { k: 'string'; min: number; max: number }
  | { k: 'number'; int: boolean }
  | { k: 'lits'; values: string[] } // the exact serializations allowed (enum, const, true/false, null)
  | { k: 'union'; alts: SchemaNode[] }; // alternatives start with different characters

export class SchemaError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${message} (at ${path})`);
    this.name = 'SchemaError';
  }
}

const ANNOTATIONS = new Set([
  'title',
  'description',
  'default',
  'examples',
  '$schema',
  '$id',
  '$comment',
  'deprecated',
  'readOnly',
  'writeOnly',
  '$defs',
  'definitions',
  'strict',
]);
const BY_TYPE: Record<string, string[]> = {
  object: ['properties', 'required', 'additionalProperties'],
  array: ['items', 'minItems', 'maxItems'],
  string: ['minLength', 'maxLength'],
  number: [],
  integer: [],
  boolean: [],
  null: [],
};
export const SUPPORTED_KEYWORDS = ['type', 'enum', 'const', 'anyOf', 'oneOf', '$ref', ...new Set(Object.values(BY_TYPE).flat())];

/** JSON text of a value with every non-ASCII character escaped (reachable with ASCII tokens). */
function asciiJson(v: unknown): string {
  return JSON.stringify(v).replace(/[\u0080-\uffff]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Any JSON value (free-form objects and arrays hold any values). */
export const ANY: SchemaNode = { k: 'union', alts: [] };
const ANY_OBJECT: SchemaNode = { k: 'object', props: [], required: [], free: true };
(ANY as { alts: SchemaNode[] }).alts.push(
  ANY_OBJECT,
  { k: 'array', items: ANY, min: 0, max: Infinity },
  { k: 'string', min: 0, max: Infinity },
  { k: 'number', int: false },
  { k: 'lits', values: ['true', 'false', 'null'] },
);
/** Any JSON object: response_format json_object. */
export const ANY_OBJECT_ROOT = ANY_OBJECT;

/** The characters a value of this node can start with. */
function firsts(n: SchemaNode): string {
  switch (n.k) {
    case 'object':
      return '{';
    case 'array':
      return '[';
    case 'string':
      return '"';
    case 'number':
      return '-0123456789';
    case 'lits':
      return [...new Set(n.values.map((v) => v[0]))].join('');
    case 'union':
      return n.alts.map(firsts).join('');
    default:
      throw new SchemaError('#', 'a recursive $ref directly inside anyOf / oneOf is not supported');
  }
}

/** Compiles a JSON Schema; throws SchemaError naming the path and the keywords it cannot enforce. */
export function compileSchema(schema: unknown): SchemaNode {
  const root = schema;
  const refs = new Map<string, SchemaNode>();

  const compile = (s: unknown, path: string): SchemaNode => {
    if (s === true) return ANY;
    if (!isObj(s)) throw new SchemaError(path, 'a schema must be an object');
    if (typeof s.$ref === 'string') {
      const others = Object.keys(s).filter((k) => k !== '$ref' && !ANNOTATIONS.has(k));
      if (others.length) throw new SchemaError(path, `keywords beside $ref are not supported: ${others.join(', ')}`);
      return resolveRef(s.$ref, path);
    }
    const types: string[] = s.type === undefined ? [] : Array.isArray(s.type) ? (s.type as string[]) : [s.type as string];
    for (const t of types) if (!(t in BY_TYPE)) throw new SchemaError(path, `unknown type ${JSON.stringify(t)}`);
    const allowed = new Set(['type', 'enum', 'const', 'anyOf', 'oneOf', ...ANNOTATIONS]);
    const implied = types.length ? types : Object.keys(BY_TYPE);
    for (const t of implied) for (const k of BY_TYPE[t]) allowed.add(k);
    const bad = Object.keys(s).filter((k) => !allowed.has(k));
    if (bad.length) {
      throw new SchemaError(
        path,
        `unsupported JSON Schema keyword${bad.length > 1 ? 's' : ''} ${bad.map((k) => `'${k}'`).join(', ')}` + ` (supported: ${SUPPORTED_KEYWORDS.join(', ')})`,
      );
    }
    if (s.enum !== undefined || s.const !== undefined) {
      const vals = s.const !== undefined ? [s.const] : s.enum;
      if (!Array.isArray(vals) || vals.length === 0) throw new SchemaError(path, 'enum must be a non-empty list');
      const ok = vals.filter((v) => !types.length || types.some((t) => matchesType(v, t)));
      if (ok.length === 0) throw new SchemaError(path, `no enum value has the type ${types.join(' or ')}`);
      return { k: 'lits', values: [...new Set(ok.map(asciiJson))] };
    }
    const alts = s.anyOf ?? s.oneOf;
    if (alts !== undefined) {
      const key = s.anyOf !== undefined ? 'anyOf' : 'oneOf';
      if (!Array.isArray(alts) || alts.length === 0) throw new SchemaError(path, `${key} must be a non-empty list of schemas`);
      if (types.length) throw new SchemaError(path, `'type' beside ${key} is not supported: put it in each alternative`);
      return union(
        alts.map((a, i) => compile(a, `${path}/${key}/${i}`)),
        path,
      );
    }
    if (types.length === 0) {
      if (s.properties !== undefined || s.required !== undefined || s.additionalProperties !== undefined) return object(s, path);
      if (s.items !== undefined) return array(s, path);
      return ANY;
    }
    const set = new Set(types);
    if (set.has('integer') && set.has('number')) set.delete('integer');
    return union(
      [...set].map((t) => {
        switch (t) {
          case 'object':
            return object(s, path);
          case 'array':
            return array(s, path);
          case 'string': {
            const min = count(s, 'minLength', 0, path),
              max = count(s, 'maxLength', Infinity, path);
            if (min > max) throw new SchemaError(path, `minLength ${min} > maxLength ${max}`);
            return { k: 'string', min, max } as SchemaNode;
          }
          case 'number':
          case 'integer':
            return { k: 'number', int: t === 'integer' } as SchemaNode;
          case 'boolean':
            return { k: 'lits', values: ['true', 'false'] } as SchemaNode;
          default:
            return { k: 'lits', values: ['null'] } as SchemaNode;
        }
      }),
      path,
    );
  };

  const object = (s: Record<string, unknown>, path: string): SchemaNode => {
    const props = s.properties ?? {};
    if (!isObj(props)) throw new SchemaError(path, 'properties must be an object');
    const names = Object.keys(props);
    const req = s.required ?? [];
    if (!Array.isArray(req) || !req.every((r) => typeof r === 'string')) throw new SchemaError(path, 'required must be a list of property names');
    const missing = req.filter((r) => !names.includes(r as string));
    if (missing.length && names.length) throw new SchemaError(path, `required ${missing.map((m) => `'${m}'`).join(', ')} not in properties`);
    const ap = s.additionalProperties;
    if (ap !== undefined && typeof ap !== 'boolean' && !isObj(ap)) throw new SchemaError(path, 'additionalProperties must be a boolean or a schema');
    if (names.length === 0) {
      if (req.length && ap === false) throw new SchemaError(path, 'required properties with additionalProperties false and no properties');
      if (req.length) throw new SchemaError(path, `required without properties is not supported: declare ${req.map((m) => `'${m}'`).join(', ')}`);
      return { k: 'object', props: [], required: [], free: ap !== false };
    }
    const node: SchemaNode = { k: 'object', props: [], required: [], free: false };
    node.props.push(...names.map((name) => ({ key: asciiJson(name).slice(1, -1), node: compile(props[name], `${path}/properties/${name}`) })));
    node.required.push(...(req as string[]).map((r) => names.indexOf(r)));
    return node;
  };

  const array = (s: Record<string, unknown>, path: string): SchemaNode => {
    const min = count(s, 'minItems', 0, path),
      max = count(s, 'maxItems', Infinity, path);
    if (min > max) throw new SchemaError(path, `minItems ${min} > maxItems ${max}`);
    const items = s.items === undefined ? ANY : compile(s.items, `${path}/items`);
    return { k: 'array', items, min, max };
  };

  const resolveRef = (ref: string, path: string): SchemaNode => {
    const hit = refs.get(ref);
    if (hit) return hit;
    const m = /^#\/(\$defs|definitions)\/([^/]+)$/.exec(ref);
    const defs = m && isObj(root) ? root[m[1]] : undefined;
    const name = m ? m[2].replace(/~1/g, '/').replace(/~0/g, '~') : '';
    if (ref === '#') {
      const node = {} as SchemaNode;
      refs.set(ref, node);
      return Object.assign(node, compile(root, '#'));
    }
    if (!m || !isObj(defs) || !(name in defs))
      throw new SchemaError(path, `$ref ${JSON.stringify(ref)}: only local #/$defs/NAME or #/definitions/NAME references that exist are supported`);
    const node = {} as SchemaNode; // filled below; a recursive reference sees this object
    refs.set(ref, node);
    return Object.assign(node, compile(defs[name], ref));
  };

  const union = (alts: SchemaNode[], path: string): SchemaNode => {
    if (alts.length === 1) return alts[0];
    const seen = new Map<string, number>();
    alts.forEach((a, i) => {
      for (const c of firsts(a)) {
        if (seen.has(c) && seen.get(c) !== i)
          throw new SchemaError(
            path,
            `alternatives that can start with the same character (${JSON.stringify(c)}) are not supported: each alternative must be a different type`,
          );
        seen.set(c, i);
      }
    });
    return { k: 'union', alts };
  };

  const node = compile(schema, '#');
  const top = node.k === 'union' && node === ANY ? ANY_OBJECT : node;
  if (top.k !== 'object' && top.k !== 'array') throw new SchemaError('#', 'the root of the schema must be an object or an array');
  return top;
}

function count(s: Record<string, unknown>, key: string, dflt: number, path: string): number {
  const v = s[key];
  if (v === undefined) return dflt;
  if (!(Number.isInteger(v) && (v as number) >= 0)) throw new SchemaError(path, `${key} must be an integer ≥ 0`);
  return v as number;
}

function matchesType(v: unknown, t: string): boolean {
  switch (t) {
    case 'object':
      return isObj(v);
    case 'array':
      return Array.isArray(v);
    case 'string':
      return typeof v === 'string';
    case 'number':
      return typeof v === 'number';
    case 'integer':
      return Number.isInteger(v);
    case 'boolean':
      return typeof v === 'boolean';
    default:
      return v === null;
  }
}

// ---- the recognizer ----

const enum F {
  Value,
  Obj,
  Key,
  Arr,
  Str,
  Num,
  Lit,
}
// object states: before '{', after '{', after ',', in a key, before ':', in a value, after a value
const enum O {
  Open,
  KeyOrEnd,
  Key,
  InKey,
  Colon,
  InValue,
  After,
}
// array states
const enum A {
  Open,
  ValOrEnd,
  InValue,
  After,
}

interface Frame {
  f: F;
  node: SchemaNode;
  st: number; // O / A state; for strings: -1 before the opening quote, else 0
  ws: number; // whitespace characters in a row
  seen: string; // objects: indices of the properties written (as char codes)
  cur: number; // objects: the property being written; keys: the property matched
  n: number; // arrays: items so far; strings: characters so far
  esc: number; // strings: 0 none, 1 after '\', 2..5 hex digits of \uXXXX still expected + 1
  utf: number; // strings: UTF-8 continuation bytes still expected
  s: string; // numbers, literals, keys: the text so far
}

const frame = (f: F, node: SchemaNode, st = 0): Frame => ({ f, node, st, ws: 0, seen: '', cur: -1, n: 0, esc: 0, utf: 0, s: '' });

const MAX_NUMBER = 24;
const FAIL = 0,
  OK = 1,
  DONE = 2,
  REFEED = 3,
  AGAIN = 4;
const INT_PARTIAL = /^-?(0|[1-9]\d*)?$/,
  INT_DONE = /^-?(0|[1-9]\d*)$/;
const NUM_PARTIAL = /^-?$|^-?(0|[1-9]\d*)(\.\d*|(\.\d+)?[eE][+-]?\d{0,2})?$/,
  NUM_DONE = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d{1,2})?$/;

export class JsonRecognizer {
  private stack: Frame[];
  private owned: number; // frames at index ≥ owned belong to this stack (the others are shared: copy before writing)

  constructor(root: SchemaNode, from?: JsonRecognizer) {
    this.stack = from ? from.stack.slice() : [frame(F.Value, root)];
    this.owned = from ? this.stack.length : 0;
    if (from) from.owned = from.stack.length; // both now share every frame
  }

  /** A copy that shares frames until one of the two writes to them. */
  fork(): JsonRecognizer {
    return new JsonRecognizer(this.stack[0]?.node ?? ANY, this);
  }

  /** The root value is complete. */
  done(): boolean {
    return this.stack.length === 0;
  }

  private top(): Frame {
    const i = this.stack.length - 1;
    if (i < this.owned) {
      this.stack[i] = { ...this.stack[i] };
      this.owned = i;
    }
    return this.stack[i];
  }

  /** Feeds text; false (and a state to throw away) when no valid document continues this way. */
  feed(text: string): boolean {
    for (const c of text) if (!this.char(c)) return false;
    return true;
  }

  /** Feeds one raw byte ≥ 0x80 of a multi-byte UTF-8 character (allowed inside strings only). */
  byte(b: number): boolean {
    if (this.stack.length === 0) return false;
    const fr = this.top();
    if (fr.f !== F.Str || fr.st !== 0 || fr.esc !== 0) return false;
    if (b < 0xc0) {
      if (fr.utf === 0) return false;
      if (--fr.utf === 0) fr.n++;
      return true;
    }
    if (fr.utf !== 0 || b < 0xc2 || b > 0xf4 || fr.n >= (fr.node as { max: number }).max) return false;
    fr.utf = b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : 1;
    return true;
  }

  private char(c: string): boolean {
    for (;;) {
      if (this.stack.length === 0) return false;
      const r = this.step(this.top(), c);
      if (r === FAIL) return false;
      if (r === OK) return true;
      if (r === AGAIN) continue;
      const child = this.stack.pop()!;
      if (this.owned > this.stack.length) this.owned = this.stack.length;
      if (this.stack.length) this.childDone(this.top(), child);
      if (r === DONE) return true;
    }
  }

  private childDone(p: Frame, child: Frame): void {
    if (p.f === F.Obj) {
      if (p.st === O.InKey) {
        p.cur = child.cur;
        p.st = O.Colon;
      } else {
        if (p.cur >= 0) p.seen += String.fromCharCode(p.cur);
        p.st = O.After;
      }
    } else if (p.f === F.Arr) {
      p.n++;
      p.st = A.After;
    }
    p.ws = 0;
  }

  private step(fr: Frame, c: string): number {
    const ws = c === ' ' || c === '\n';
    switch (fr.f) {
      case F.Value: {
        if (ws) return fr.ws++ < 1 ? OK : FAIL;
        const node = pick(fr.node, c);
        if (!node) return FAIL;
        this.stack[this.stack.length - 1] =
          node.k === 'object'
            ? frame(F.Obj, node)
            : node.k === 'array'
              ? frame(F.Arr, node)
              : node.k === 'string'
                ? frame(F.Str, node, -1)
                : node.k === 'number'
                  ? frame(F.Num, node)
                  : frame(F.Lit, node);
        return AGAIN;
      }
      case F.Obj: {
        const node = fr.node as Extract<SchemaNode, { k: 'object' }>;
        if (fr.st === O.Open) {
          if (c !== '{') return FAIL;
          fr.st = O.KeyOrEnd;
          return OK;
        }
        if (ws) return fr.ws++ < 1 ? OK : FAIL;
        fr.ws = 0;
        const more = node.free || fr.seen.length < node.props.length;
        const closable = node.required.every((i) => fr.seen.includes(String.fromCharCode(i)));
        if ((fr.st === O.KeyOrEnd || fr.st === O.After) && c === '}' && closable) return DONE;
        if ((fr.st === O.KeyOrEnd || fr.st === O.Key) && c === '"' && more) {
          fr.st = O.InKey;
          fr.cur = -1;
          this.stack.push(node.free ? frame(F.Str, { k: 'string', min: 0, max: Infinity }) : frame(F.Key, node));
          return OK;
        }
        if (fr.st === O.Colon && c === ':') {
          fr.st = O.InValue;
          this.stack.push(frame(F.Value, node.free ? ANY : node.props[fr.cur].node));
          return OK;
        }
        if (fr.st === O.After && c === ',' && more) {
          fr.st = O.Key;
          return OK;
        }
        return FAIL;
      }
      case F.Key: {
        // a declared property not written yet; fr.s is the escaped name so far
        const node = fr.node as Extract<SchemaNode, { k: 'object' }>;
        const parent = this.stack[this.stack.length - 2];
        const open = (i: number) => !parent.seen.includes(String.fromCharCode(i));
        if (c === '"') {
          const i = node.props.findIndex((p, j) => p.key === fr.s && open(j));
          if (i >= 0) {
            fr.cur = i;
            return DONE;
          }
        }
        const t = fr.s + c;
        if (!node.props.some((p, j) => open(j) && p.key.startsWith(t))) return FAIL;
        fr.s = t;
        return OK;
      }
      case F.Arr: {
        const node = fr.node as Extract<SchemaNode, { k: 'array' }>;
        if (fr.st === A.Open) {
          if (c !== '[') return FAIL;
          fr.st = A.ValOrEnd;
          return OK;
        }
        if (ws) return fr.ws++ < 1 ? OK : FAIL;
        fr.ws = 0;
        if (c === ']' && fr.n >= node.min) return DONE;
        if (fr.st === A.ValOrEnd && node.max > 0 && pick(node.items, c)) {
          fr.st = A.InValue;
          this.stack.push(frame(F.Value, node.items));
          return AGAIN;
        }
        if (fr.st === A.After && c === ',' && fr.n < node.max) {
          fr.st = A.InValue;
          this.stack.push(frame(F.Value, node.items));
          return OK;
        }
        return FAIL;
      }
      case F.Str: {
        const node = fr.node as Extract<SchemaNode, { k: 'string' }>;
        if (fr.st < 0) {
          if (c !== '"') return FAIL;
          fr.st = 0;
          return OK;
        }
        if (fr.utf) return FAIL;
        if (fr.esc === 1) {
          if (c === 'u') {
            fr.esc = 5;
            return OK;
          }
          if (!'"\\/bfnrt'.includes(c)) return FAIL;
          fr.esc = 0;
          fr.n++;
          return OK;
        }
        if (fr.esc > 1) {
          if (!/[0-9a-fA-F]/.test(c)) return FAIL;
          if (--fr.esc === 1) {
            fr.esc = 0;
            fr.n++;
          }
          return OK;
        }
        if (c === '"') return fr.n >= node.min ? DONE : FAIL;
        if (c < ' ' || fr.n >= node.max) return FAIL;
        if (c === '\\') {
          fr.esc = 1;
          return OK;
        }
        fr.n++;
        return OK;
      }
      case F.Num: {
        const node = fr.node as Extract<SchemaNode, { k: 'number' }>;
        const t = fr.s + c;
        const complete = node.int ? INT_DONE : NUM_DONE;
        // at most MAX_NUMBER characters (the last ones only to complete the number), so a model cannot write digits forever
        if (/[-+0-9.eE]/.test(c) && (node.int ? INT_PARTIAL : NUM_PARTIAL).test(t) && (t.length <= MAX_NUMBER || (!complete.test(fr.s) && complete.test(t)))) {
          fr.s = t;
          return OK;
        }
        return complete.test(fr.s) ? REFEED : FAIL;
      }
      case F.Lit: {
        const values = (fr.node as Extract<SchemaNode, { k: 'lits' }>).values;
        const t = fr.s + c;
        if (values.some((v) => v.startsWith(t))) {
          fr.s = t;
          return values.some((v) => v.length > t.length && v.startsWith(t)) ? OK : DONE;
        }
        return values.includes(fr.s) ? REFEED : FAIL;
      }
    }
  }
}

/** The alternative of a node that a value starting with c belongs to. */
function pick(n: SchemaNode, c: string): SchemaNode | null {
  if (n.k === 'union') {
    for (const a of n.alts) {
      const p = pick(a, c);
      if (p) return p;
    }
    return null;
  }
  return firsts(n).includes(c) ? n : null;
}
