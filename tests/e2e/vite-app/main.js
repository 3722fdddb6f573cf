// A bundled app: Vite resolves `peerwire` from node_modules and emits the
// .wasm as an asset (the package loads it with new URL(..., import.meta.url)).
import init, * as peerwire from 'peerwire';

await init();
window.peerwire = peerwire;
window.ready = true;
