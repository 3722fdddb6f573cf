// Vite 7 and older pre-bundle dependencies with esbuild, which leaves the
// package's new URL('peerwire_bg.wasm', import.meta.url) pointing into
// node_modules/.vite/deps. The one line the README gives for them:
export default { optimizeDeps: { exclude: ['peerwire'] } };
