// A webpack 5 app with no webpack config: `webpack --mode production` takes
// src/index.js, bundles the package and emits its .wasm as an asset (found
// through the package's new URL(..., import.meta.url)). Named imports only:
// webpack then skips modules the package's "sideEffects" says it may, so a
// wrong list would drop the entry's load at import.
import { createPeer, Node } from 'peerwire';

window.peerwire = { createPeer, Node };
window.ready = true;
