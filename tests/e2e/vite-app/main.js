// A bundled app: Vite resolves `peerwire` from node_modules and emits the
// .wasm as an asset (the package loads it with new URL(..., import.meta.url)).
// No init() call and no Vite config: the import is all it takes.
import * as peerwire from 'peerwire';

window.peerwire = peerwire;
window.ready = true;
