// The JSON Schema recognizer behind response_format json_schema, on its own: random walks over
// every character it allows always end in a document that ajv (an independent validator) accepts;
// schemas it cannot enforce are refused naming the keyword. The server end to end (the openai
// client, a real model) is in serve.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Ajv } from 'ajv';
import { ANY_OBJECT_ROOT, compileSchema, JsonRecognizer, SchemaError } from '../src/serve/json-schema.ts';

const CHARS = [...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)), '\n', 'é'];

/** Random characters among those allowed until the document closes; throws on a dead end. */
function walk(root: ReturnType<typeof compileSchema>, seed: number, closeAfter = 60): string | null {
  let s = seed;
  const rnd = () => (s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x80000000;
  const r = new JsonRecognizer(root);
  let text = '';
  for (let i = 0; i < 400 && !r.done(); i++) {
    const allowed = CHARS.filter((c) => r.fork().feed(c));
    assert.ok(allowed.length > 0, `dead end after ${JSON.stringify(text)}`);
    const closers = allowed.filter((c) => '}]"'.includes(c)); // steer long walks to an end
    const c = i > closeAfter && closers.length ? closers[0] : allowed[Math.floor(rnd() * allowed.length)];
    assert.ok(r.feed(c));
    text += c;
  }
  return r.done() ? text : null;
}

const SCHEMAS: Record<string, object> = {
  person: {
    type: 'object',
    additionalProperties: false,
    required: ['name', 'age', 'tags', 'address'],
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 8 },
      age: { type: 'integer' },
      height: { type: 'number' },
      student: { type: 'boolean' },
      spouse: { type: 'null' },
      nick: { type: ['string', 'null'] },
      tags: { type: 'array', items: { enum: ['a', 'bé', 'c"d'] }, minItems: 1, maxItems: 3 },
      kind: { enum: [1, 12, 'x', null, true] },
      address: {
        type: 'object',
        properties: { city: { const: 'Paris' }, zip: { anyOf: [{ type: 'integer' }, { type: 'string', maxLength: 5 }] }, extra: {} },
        required: ['city', 'zip'],
      },
    },
  },
  list: { type: 'array', items: { type: 'object', properties: { x: { type: 'number' } }, required: ['x'] }, maxItems: 4 },
  defs: {
    $defs: {
      node: { type: 'object', properties: { v: { type: 'integer' }, kids: { type: 'array', items: { $ref: '#/$defs/node' }, maxItems: 2 } }, required: ['v'] },
    },
    $ref: '#/$defs/node',
  },
  freeform: { type: 'object' },
};

for (const [name, schema] of Object.entries(SCHEMAS)) {
  test(`json schema ${name}: every document the recognizer completes validates (ajv)`, () => {
    const validate = new Ajv({ strict: false }).compile(schema);
    const root = compileSchema(schema);
    let done = 0;
    for (let seed = 1; seed <= 120; seed++) {
      const text = walk(root, seed);
      if (text === null) continue;
      const value = JSON.parse(text);
      assert.ok(validate(value), `${text}\n${JSON.stringify(validate.errors)}`);
      done++;
    }
    assert.ok(done >= 60, `only ${done} walks closed`);
  });
}

test('json schema: text that breaks the schema is refused at the first wrong character', () => {
  const root = compileSchema(SCHEMAS.person);
  const refused = (text: string) => {
    const r = new JsonRecognizer(root);
    return !r.feed(text);
  };
  assert.ok(refused('{"nam":')); // not a property
  assert.ok(refused('{"age": 1.5')); // integer
  assert.ok(refused('{"age": 1, "age"')); // each property once
  assert.ok(refused('{"name": ""')); // minLength 1
  assert.ok(refused('{"name": "123456789"')); // maxLength 8
  assert.ok(refused('{"tags": []')); // minItems 1
  assert.ok(refused('{"tags": ["d"')); // enum
  assert.ok(refused('{"name": "x"}')); // required age, tags, address missing
  assert.ok(refused('{"student": tru,'));
  assert.ok(refused('{  "age": 1')); // two spaces in a row
  const r = new JsonRecognizer(root);
  assert.ok(r.feed('{"name": "Al", "age": -3, "tags": ["a"], "address": {"city": "Paris", "zip": "750"}}'));
  assert.ok(r.done());
  const any = new JsonRecognizer(ANY_OBJECT_ROOT);
  assert.ok(!any.fork().feed('[1]'), 'json_object: the root is an object');
  assert.ok(any.feed('{"a": [1, {"b": null}], "c": "\\u00e9"}') && any.done());
});

test('json schema: keywords it cannot enforce are refused by name', () => {
  const refuses = (schema: unknown, re: RegExp) =>
    assert.throws(
      () => compileSchema(schema),
      (e: Error) => e instanceof SchemaError && re.test(e.message),
      JSON.stringify(schema),
    );
  refuses({ type: 'object', properties: { s: { type: 'string', pattern: '^a' } } }, /'pattern'.*#\/properties\/s/);
  refuses({ type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 9 } } }, /'minimum', 'maximum'/);
  refuses({ type: 'object', properties: { d: { type: 'string', format: 'date' } } }, /'format'/);
  refuses({ type: 'object', allOf: [] }, /'allOf'/);
  refuses({ type: 'object', properties: { a: { anyOf: [{ type: 'string' }, { enum: ['x'] }] } } }, /same character/);
  refuses({ type: 'string' }, /root of the schema must be an object or an array/);
  refuses({ type: 'object', properties: { a: {} }, required: ['b'] }, /required 'b' not in properties/);
  refuses({ $ref: 'https://example.com/s.json' }, /\$ref/);
});
