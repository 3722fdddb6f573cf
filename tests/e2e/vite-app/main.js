// A bundled app: Vite resolves `peerwire` from node_modules and emits the
// .wasm as an asset (the package loads it with new URL(..., import.meta.url)).
// No init() call and no Vite config: the import is all it takes. Named
// imports only, so tree-shaking goes by the package's "sideEffects".
import { createPeer, Node } from 'peerwire';

window.peerwire = { createPeer, Node };
window.ready = true;
