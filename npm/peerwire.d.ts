// The entry's types: everything the wasm-bindgen glue exports, and `init`
// (the module is already instantiated when the import resolves).
export * from './peerwire_glue.js';
export { default, default as init } from './peerwire_glue.js';
