// The demo page (www/index.html) as a person uses it: two tabs, a chat
// message typed in one appears in the other, carried peer to peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_SITE } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_SITE, 'run through tests/run.sh');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_SITE);
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

async function tab() {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${broker.url}/`);
  await page.waitForSelector('#text:not([disabled])', { timeout: 15000 });
  return { page, errors };
}

test('the demo chats between two tabs', async () => {
  const one = await tab();
  const two = await tab();
  // Each tab lists the other as connected.
  await one.page.waitForFunction(() => document.querySelectorAll('#peers li').length === 2 && document.querySelector('#peers').textContent.includes('(open)'), null, { timeout: 10000 });
  await two.page.waitForFunction(() => document.querySelector('#peers').textContent.includes('(open)'), null, { timeout: 10000 });

  await two.page.fill('#text', 'hello from tab two');
  await two.page.click('#send');
  await one.page.waitForFunction(() => document.querySelector('#log').textContent.includes('hello from tab two'), null, { timeout: 5000 });
  await one.page.fill('#text', 'hi back');
  await one.page.click('#send');
  await two.page.waitForFunction(() => document.querySelector('#log').textContent.includes('hi back'), null, { timeout: 5000 });
  assert.deepEqual([...one.errors, ...two.errors], []);
});
