// A webpack 5 app with no webpack config: `webpack --mode production` takes
// src/index.js, bundles the package and emits its .wasm as an asset (found
// through the package's new URL(..., import.meta.url)).
import * as peerwire from 'peerwire';

window.peerwire = peerwire;
window.ready = true;
