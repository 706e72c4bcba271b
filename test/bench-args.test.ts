// The benchmarks answer --help with their usage and name a bad option without a stack trace.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '..');
const scripts = Object.entries(JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>)
  .filter(([name]) => name === 'bench' || name.startsWith('bench:'))
  .map(([name, cmd]) => [name, /bench\/[\w-]+\.ts/.exec(cmd)?.[0]] as const);

test('every npm bench script prints its usage on --help and exits 0; an unknown option exits 2 naming it', () => {
  assert.ok(scripts.length >= 7);
  for (const [name, file] of scripts) {
    assert.ok(file, name);
    const help = spawnSync(process.execPath, ['--import', 'tsx', file, '--help'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(help.status, 0, `${name}: ${help.stderr}`);
    assert.ok(help.stdout.length > 80 && !help.stdout.includes('//'), `${name}: ${help.stdout}`);
    const bad = spawnSync(process.execPath, ['--import', 'tsx', file, '--no-such-option'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(bad.status, 2, name);
    assert.match(bad.stderr, /--no-such-option/);
    assert.doesNotMatch(bad.stderr, /at .*\.ts:\d+/);
  }
});
