// peerwire's entry in Node.js (the "node" export condition): the .wasm is
// read from disk (Node's fetch has no file: URLs) and instantiated at import,
// synchronously, so the entry can also be require()d where Node allows it.
import { readFileSync } from 'node:fs';
import init, { initSync } from './peerwire_glue.js';
export * from './peerwire_glue.js';
export { init as default, init };
initSync({ module: readFileSync(new URL('peerwire_bg.wasm', import.meta.url)) });
