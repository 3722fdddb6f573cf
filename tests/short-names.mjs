// Gives the wasm's imports from the glue and its exports (but `memory`) one-
// or two-letter names, in the .wasm and in wasm-bindgen's glue and types:
//   node tests/short-names.mjs DIR      (DIR: wasm-bindgen --target web output)
// wasm-bindgen names each import `__wbg_<name>_<16 hex digits>` and each
// closure export after its full Rust type (200 characters); every name is
// written twice (the .wasm and the glue) and hashes do not compress: 3 KB
// gzip of the lite entry's wasm. The glue's own layout is relied on and
// checked: its import object (`import0`) lists each import once as
// `        name: function(`, and it reaches every export as `wasm.name`; a
// name found any other way fails the build rather than the page.
import { readFileSync, writeFileSync } from 'node:fs';

const dir = process.argv[2];
const MODULE = './peerwire_bg.js';
const wasmFile = `${dir}/peerwire_bg.wasm`, jsFile = `${dir}/peerwire.js`, dtsFile = `${dir}/peerwire.d.ts`;
const fail = (why) => { throw new Error(`short-names: ${why}`); };

// ---- the .wasm: rewrite the import and export sections ------------------
const bytes = readFileSync(wasmFile);
const readLeb = (b, at) => {
  let value = 0, shift = 0, byte;
  do { byte = b[at++]; value += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
  return [value, at];
};
const leb = (n) => {
  const out = [];
  do { let byte = n & 0x7f; n = Math.floor(n / 128); if (n) byte |= 0x80; out.push(byte); } while (n);
  return Buffer.from(out);
};
const name = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([leb(b.length), b]); };
const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_$';
const short = (k) => { let s = ''; do { s += ALPHABET[k % ALPHABET.length]; k = Math.floor(k / ALPHABET.length); } while (k); return s; };
const readName = (b, at) => { const [len, start] = readLeb(b, at); return [b.toString('utf8', start, start + len), start + len]; };

const imports = new Map(), exports = new Map();
const parts = [bytes.subarray(0, 8)];
for (let at = 8; at < bytes.length;) {
  const id = bytes[at];
  const [size, start] = readLeb(bytes, at + 1);
  let body = bytes.subarray(start, start + size);
  at = start + size;
  if (id === 2) {
    let [count, p] = readLeb(body, 0);
    const out = [leb(count)];
    for (let i = 0; i < count; i++) {
      let mod, field;
      [mod, p] = readName(body, p);
      [field, p] = readName(body, p);
      const descStart = p, kind = body[p++];
      if (kind === 0) [, p] = readLeb(body, p); // function: type index
      else if (kind === 1 || kind === 2) { // table (reftype first) or memory: limits
        if (kind === 1) p++;
        let flags; [flags, p] = readLeb(body, p); [, p] = readLeb(body, p);
        if (flags & 1) [, p] = readLeb(body, p);
      } else if (kind === 3) p += 2; // global: valtype, mutability
      else if (kind === 4) { p++; [, p] = readLeb(body, p); } // tag
      else fail(`import kind ${kind}`);
      if (mod === MODULE) {
        if (!imports.has(field)) imports.set(field, short(imports.size));
        field = imports.get(field);
      }
      out.push(name(mod), name(field), body.subarray(descStart, p));
    }
    body = Buffer.concat(out);
  } else if (id === 7) {
    let [count, p] = readLeb(body, 0);
    const out = [leb(count)];
    for (let i = 0; i < count; i++) {
      let field;
      [field, p] = readName(body, p);
      const descStart = p++;
      [, p] = readLeb(body, p);
      // `memory` keeps its name: init() resolves the exports, and its
      // InitOutput type promises `memory` to users.
      const now = field === 'memory' ? field : short(exports.size);
      exports.set(field, now);
      out.push(name(now), body.subarray(descStart, p));
    }
    body = Buffer.concat(out);
  }
  parts.push(Buffer.from([id]), leb(body.length), body);
}

// ---- the glue and its types ---------------------------------------------
let js = readFileSync(jsFile, 'utf8');
let dts = readFileSync(dtsFile, 'utf8');
const escape = (s) => s.replace(/[$]/g, '\\$&');
// The types of the raw exports (what init() resolves) follow the new names.
const INIT_OUTPUT = dts.match(/^export interface InitOutput \{\n[^}]*\n\}/m)?.[0] ?? fail('no InitOutput in the types');
let initOutput = INIT_OUTPUT;
for (const [old, now] of imports) {
  const key = new RegExp(`^( {8})${escape(old)}(: function\\()`, 'gm');
  if ((js.match(key) || []).length !== 1) fail(`import ${old} is not one \`${old}: function(\` line of the glue`);
  js = js.replace(key, (_, indent, rest) => `${indent}${now}${rest}`);
  if (js.includes(old)) fail(`import ${old} is named elsewhere in the glue`);
}
for (const [old, now] of exports) {
  if (old === now) continue;
  const uses = new RegExp(`\\bwasm\\.${escape(old)}\\b`, 'g');
  js = js.replace(uses, () => `wasm.${now}`);
  if (new RegExp(`\\.${escape(old)}\\b|["'\`]${escape(old)}["'\`]`).test(js.replace(/\/\*[\s\S]*?\*\//g, ''))) {
    fail(`export ${old} is reached other than as wasm.${old}`);
  }
  initOutput = initOutput.replace(new RegExp(`^( {4}readonly )${escape(old)}:`, 'm'), (_, head) => `${head}${now}:`);
}
dts = dts.replace(INIT_OUTPUT, initOutput);
writeFileSync(wasmFile, Buffer.concat(parts));
writeFileSync(jsFile, js);
writeFileSync(dtsFile, dts);
