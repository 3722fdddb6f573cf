// Gives the exported classes of a minified ES module their own names back:
//   node tests/class-names.mjs FILE
// esbuild's --keep-names names every function of wasm-bindgen's glue (each
// of its ~150 imports too: 1 KB gzip); only the classes users see need a
// name (`Peer {…}` in the console rather than `j {…}`). Each exported class
// `class j{` of `export{j as Peer}` becomes `class j{static{N(this,"Peer")}`.
import { readFileSync, writeFileSync } from 'node:fs';

const file = process.argv[2];
let code = readFileSync(file, 'utf8');
const clause = code.match(/export\{([^}]*)\};?\s*$/);
if (!clause) throw new Error(`${file}: no export clause at the end`);
let named = 0;
for (const pair of clause[1].split(',')) {
  const [local, exported = local] = pair.split(/\s+as\s+/).map((s) => s.trim());
  const at = `class ${local}{`;
  if (code.split(at).length !== 2) continue; // not a class, or not one to rename safely
  code = code.replace(at, `${at}static{__peerwireName(this,${JSON.stringify(exported)})}`);
  named++;
}
if (named === 0) throw new Error(`${file}: no exported class found`);
code = `var __peerwireName=(c,n)=>Object.defineProperty(c,"name",{value:n,configurable:!0});${code}`;
writeFileSync(file, code);
