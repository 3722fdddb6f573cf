// The TypeScript definitions of the installed package: a usage file
// compiles under --strict, and common mistakes fail to compile.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
const { PEERWIRE_APP } = process.env;
const flags = ['--noEmit', '--strict', '--target', 'es2022', '--lib', 'esnext,dom', '--module', 'es2022', '--moduleResolution', 'bundler'];

function compile(file) {
  assert.ok(PEERWIRE_APP, 'run through tests/run.sh (it installs the package into a scratch app)');
  copyFileSync(join(here, 'types', file), join(PEERWIRE_APP, file));
  return spawnSync(process.execPath, [tsc, ...flags, file], { cwd: PEERWIRE_APP, encoding: 'utf8' });
}

test('the definitions type an app under --strict', () => {
  const r = compile('usage.ts');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('misspelt options and events, wrong hubs, and Node from the lite entry do not compile', () => {
  const r = compile('misuse.ts');
  assert.notEqual(r.status, 0);
  for (const needle of ["'brokr' does not exist", '"mesage"', "'reasn' does not exist", "number' is not assignable", "Type 'number' is not assignable to type 'string | (() => string | Promise<string>) | undefined'", `'"peerwire/lite"' has no exported member 'NetworkHub'`]) {
    assert.ok(r.stdout.includes(needle), `expected ${needle} in:\n${r.stdout}`);
  }
});
