// The package in a Vite 8 app with no Vite config and no init() call: the
// production build (`vite build`, served by the broker) and the dev server
// (started here, stopped by pid; it pre-bundles the package into
// node_modules/.vite/deps, where the package's new URL(..., import.meta.url)
// must still find the .wasm). And Vite 7's dev server with the one line of
// config the README gives for it. Two pages connect through the broker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, startVite, launch, exchangeBetweenPages } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_VITE_APP, PEERWIRE_VITE7_APP } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_VITE_APP && PEERWIRE_VITE7_APP, 'run through tests/run.sh (it installs and builds the Vite apps)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, `${PEERWIRE_VITE_APP}/dist`);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('a Vite production build connects two pages', async () => {
  await exchangeBetweenPages(browser, `${broker.url}/index.html`, broker.ws, 'vite-build');
});

test('the Vite dev server serves an app that connects two pages', async (t) => {
  const started = Date.now();
  const vite = await startVite(PEERWIRE_VITE_APP);
  try {
    t.diagnostic(`vite dev server at ${vite.url} after ${Date.now() - started} ms`);
    // The case that breaks elsewhere: the package is served pre-bundled
    // from .vite/deps, and its .wasm still comes from the package.
    const context = await browser.newContext();
    const page = await context.newPage();
    const served = [];
    page.on('response', (r) => served.push({ path: new URL(r.url()).pathname, status: r.status(), type: r.headers()['content-type'] }));
    await page.goto(`${vite.url}/`);
    await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
    await context.close();
    assert.ok(served.some((r) => r.path === '/node_modules/.vite/deps/peerwire.js' && r.status === 200), JSON.stringify(served));
    assert.deepEqual(served.filter((r) => r.path.endsWith('.wasm')), [{ path: '/node_modules/peerwire/peerwire_bg.wasm', status: 200, type: 'application/wasm' }]);
    await exchangeBetweenPages(browser, `${vite.url}/`, broker.ws, 'vite-dev');
  } finally {
    await vite.stop();
  }
});

test('Vite 7, whose esbuild pre-bundling breaks the .wasm URL, works with optimizeDeps.exclude', async () => {
  const vite = await startVite(PEERWIRE_VITE7_APP);
  try {
    await exchangeBetweenPages(browser, `${vite.url}/`, broker.ws, 'vite7-dev');
  } finally {
    await vite.stop();
  }
});
