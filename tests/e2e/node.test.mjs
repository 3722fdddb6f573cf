// Node.js loads the package installed in the scratch app: `import
// 'peerwire'` (and 'peerwire/lite') picks the "node" export condition, which
// reads the .wasm with fs and instantiates it at import. Each entry's
// createPeer then runs in wasm (and refuses options without a broker), and
// a Node on the in-page hub gets an address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

const { PEERWIRE_APP } = process.env;

function run(args, script) {
  assert.ok(PEERWIRE_APP, 'run through tests/run.sh (it installs the package into a scratch app)');
  const r = spawnSync(process.execPath, [...args, '-e', script], { cwd: PEERWIRE_APP, encoding: 'utf8', timeout: 30000 });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

test('Node.js imports both entries with no init() call', () => {
  const out = run(['--input-type=module'], `
    const out = {};
    for (const entry of ['peerwire', 'peerwire/lite']) {
      const m = await import(entry);
      const refused = await m.createPeer('node-peer', {}).then(() => null, (e) => ({ name: e.name, code: e.code }));
      out[entry] = { refused, hasNode: typeof m.Node === 'function', init: typeof m.init };
    }
    const { Node } = await import('peerwire');
    out.address = await new Node().address();
    console.log(JSON.stringify(out));
  `);
  const refused = { name: 'InvalidArgumentError', code: 'invalid-argument' };
  assert.deepEqual(out.peerwire, { refused, hasNode: true, init: 'function' });
  assert.deepEqual(out['peerwire/lite'], { refused, hasNode: false, init: 'function' });
  assert.match(out.address, /\S/);
});

test('Node.js can require() the package (require of ES modules)', () => {
  const out = run(['--experimental-require-module', '--no-warnings'], `
    const m = require('peerwire');
    console.log(JSON.stringify({ createPeer: typeof m.createPeer, node: typeof new m.Node() }));
  `);
  assert.deepEqual(out, { createPeer: 'function', node: 'object' });
});

test('peerwire/manual loads nothing at import; init() takes the bytes from the exported .wasm', () => {
  const out = run(['--input-type=module'], `
    import { readFileSync } from 'node:fs';
    const manual = await import('peerwire/manual');
    const bytes = readFileSync(new URL(import.meta.resolve('peerwire/peerwire_bg.wasm')));
    const exports = await manual.default({ module_or_path: bytes });
    const refused = await manual.createPeer('manual-peer', {}).then(() => null, (e) => e.name);
    console.log(JSON.stringify({ memory: exports.memory instanceof WebAssembly.Memory, refused }));
  `);
  assert.deepEqual(out, { memory: true, refused: 'InvalidArgumentError' });
});

test('every target of the exports map is in the installed package', () => {
  const out = run(['--input-type=module'], `
    import { existsSync, readFileSync } from 'node:fs';
    const dir = new URL('./node_modules/peerwire/', 'file://' + process.cwd() + '/');
    const pkg = JSON.parse(readFileSync(new URL('package.json', dir), 'utf8'));
    const targets = Object.values(pkg.exports).flatMap((t) => typeof t === 'string' ? [t] : Object.values(t));
    targets.push(pkg.main, pkg.module, pkg.types);
    console.log(JSON.stringify({ count: targets.length, missing: targets.filter((t) => !existsSync(new URL(t, dir))) }));
  `);
  assert.deepEqual(out.missing, []);
  assert.ok(out.count >= 16, `${out.count} targets`);
});
