// The TypeScript definitions of the installed package: a usage file
// compiles under --strict with and without esnext in `lib`, and each line of
// a misuse file fails to compile with the error it is marked with; the same
// for peerwire/signaller's (signaller-usage.ts, signaller-misuse.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const tsc = join(here, 'node_modules', 'typescript', 'bin', 'tsc');
const { PEERWIRE_APP } = process.env;

/** Strict settings a careful app has; `lib` without esnext unless asked. */
function flags(lib) {
  return ['--noEmit', '--pretty', 'false', '--strict', '--noUncheckedIndexedAccess', '--exactOptionalPropertyTypes',
    '--target', 'es2020', '--lib', lib, '--module', 'es2022', '--moduleResolution', 'bundler'];
}

function compile(file, lib = 'es2020,dom') {
  assert.ok(PEERWIRE_APP, 'run through tests/run.sh (it installs the package into a scratch app)');
  copyFileSync(join(here, 'types', file), join(PEERWIRE_APP, file));
  return spawnSync(process.execPath, [tsc, ...flags(lib), file], { cwd: PEERWIRE_APP, encoding: 'utf8' });
}

/** tsc's errors as { file, line, text }, continuation lines joined. */
function errors(output) {
  const found = [];
  for (const line of output.split('\n')) {
    const m = line.match(/^(.+?)\((\d+),\d+\): error (TS\d+: .*)$/);
    if (m) found.push({ file: m[1], line: Number(m[2]), text: m[3] });
    else if (/^\s/.test(line) && found.length) found.at(-1).text += '\n' + line.trim();
  }
  return found;
}

test('the definitions type an app under --strict with lib es2020 and dom (no esnext)', () => {
  const r = compile('usage.ts');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('the definitions also compile with lib esnext (Symbol.dispose declared by both)', () => {
  const r = compile('usage.ts', 'esnext,dom');
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

test('each entry is typed under moduleResolution node (no exports map: typesVersions)', () => {
  assert.ok(PEERWIRE_APP, 'run through tests/run.sh (it installs the package into a scratch app)');
  copyFileSync(join(here, 'types', 'node10.ts'), join(PEERWIRE_APP, 'node10.ts'));
  const old = ['--noEmit', '--pretty', 'false', '--strict', '--target', 'es2020', '--lib', 'es2020,dom', '--module', 'es2022',
    '--moduleResolution', 'node', 'node10.ts'];
  const r = spawnSync(process.execPath, [tsc, ...old], { cwd: PEERWIRE_APP, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

/** Each line of `file` marked `// error: text` fails with that text, and nothing else fails. */
function checkMisuse(file) {
  const r = compile(file);
  assert.notEqual(r.status, 0, `${file} compiled`);
  const found = errors(r.stdout);
  assert.ok(found.length > 0, r.stdout + r.stderr);
  const elsewhere = found.filter((e) => e.file !== file);
  assert.deepEqual(elsewhere, [], `errors outside ${file} (in the definitions?)`);

  const source = readFileSync(join(here, 'types', file), 'utf8').split('\n');
  const expected = new Map();
  source.forEach((text, i) => {
    const m = text.match(/\/\/ error: (.+)$/);
    if (m) expected.set(i + 1, m[1].trim());
  });
  assert.ok(expected.size >= 10, `${file} marks its lines`);
  for (const [line, needle] of expected) {
    const onLine = found.filter((e) => e.line === line).map((e) => e.text);
    assert.ok(onLine.some((t) => t.includes(needle)),
      `${file}:${line} (${source[line - 1].trim()}) should fail with "${needle}"; tsc said: ${onLine.join(' / ') || 'nothing'}`);
  }
  const unexpected = found.filter((e) => !expected.has(e.line));
  assert.deepEqual(unexpected, [], 'errors on lines not marked as mistakes');
}

test('each misuse fails to compile with its own error, and nothing else does', () => checkMisuse('misuse.ts'));

test('peerwire/signaller: the definitions type an app under --strict, and each misuse fails with its own error', () => {
  const r = compile('signaller-usage.ts');
  assert.equal(r.status, 0, r.stdout + r.stderr);
  checkMisuse('signaller-misuse.ts');
});
