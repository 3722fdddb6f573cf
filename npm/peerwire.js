// peerwire's entry: the module is instantiated at import (top-level await),
// so `new Node()` and `createPeer()` work with no setup call. The .wasm
// beside this file is found with new URL(..., import.meta.url), which
// bundlers rewrite. `init` is kept for old `await init()` code.
import init from './peerwire_glue.js';
export * from './peerwire_glue.js';
export { init as default, init };
await init();
