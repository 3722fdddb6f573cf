// The package in a webpack 5 production build with no webpack config
// (`webpack --mode production`: src/index.js in, dist/main.js and the .wasm
// as an asset out) and no init() call: two pages connect through the broker.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, exchangeBetweenPages } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_WEBPACK_APP } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_WEBPACK_APP, 'run through tests/run.sh (it installs and builds the webpack app)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_WEBPACK_APP);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('a webpack 5 production build connects two pages', async () => {
  await exchangeBetweenPages(browser, `${broker.url}/index.html`, broker.ws, 'webpack');
});
