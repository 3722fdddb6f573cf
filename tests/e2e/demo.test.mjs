// The demo page (www/index.html) as a person uses it in two tabs: a chat
// message, a 5 MiB file (checked by SHA-256), a rest fetch from one tab
// to the other, and a video call with Chromium's fake camera (frames
// decoded on both sides), all peer to peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { startBroker, launch } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_SITE } = process.env;
let broker, browser;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_SITE, 'run through tests/run.sh');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_SITE);
  browser = await launch(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', '--autoplay-policy=no-user-gesture-required']);
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
  await page.waitForFunction(() => window.demo?.ready === true, null, { timeout: 20000 });
  return { page, errors, id: (await page.textContent('#status')).replace('registered as ', '') };
}

test('the demo chats, sends a 5 MiB file and fetches rest between two tabs', async () => {
  const one = await tab();
  const two = await tab();
  await one.page.waitForFunction(() => document.querySelector('#peers').textContent.includes('(open)'), null, { timeout: 10000 });
  await two.page.waitForFunction(() => document.querySelector('#peers').textContent.includes('(open)'), null, { timeout: 10000 });

  // Chat, both ways.
  await two.page.fill('#text', 'hello from tab two');
  await two.page.click('#send');
  await one.page.waitForFunction(() => document.querySelector('#log').textContent.includes('hello from tab two'), null, { timeout: 5000 });
  await one.page.fill('#text', 'hi back');
  await one.page.click('#send');
  await two.page.waitForFunction(() => document.querySelector('#log').textContent.includes('hi back'), null, { timeout: 5000 });

  // A 5 MiB file from tab one to tab two, with progress.
  const bytes = randomBytes(5 * 1024 * 1024);
  const digest = createHash('sha256').update(bytes).digest('hex');
  await one.page.setInputFiles('#file', { name: 'five.bin', mimeType: 'application/octet-stream', buffer: bytes });
  await one.page.waitForFunction(() => !document.querySelector('#sendfile').disabled, null, { timeout: 5000 });
  await one.page.click('#sendfile');
  await two.page.waitForFunction(() => window.demo.received.length === 1, null, { timeout: 30000 });
  const got = await two.page.evaluate(() => window.demo.received[0]);
  assert.deepEqual(got, { from: one.id, name: 'five.bin', size: bytes.length, sha256: digest });
  assert.equal(await one.page.evaluate(() => document.querySelector('#progress').value), 1);
  assert.match(await one.page.textContent('#rate'), /MiB\/s/);

  // Rest: tab two fetches tab one's note.
  await one.page.fill('#note', 'note served by tab one');
  await two.page.fill('#url', `rest://${one.id}/note`);
  await two.page.click('#dofetch');
  await two.page.waitForFunction(() => document.querySelector('#response').textContent.includes('note served by tab one'), null, { timeout: 10000 });
  assert.match(await two.page.textContent('#response'), /^200 text\/plain/);

  assert.deepEqual([...one.errors, ...two.errors], []);
});

// Frames shown by a <video>: its size, and its clock moving by `seconds`,
// checked on the video's own events (loadeddata, resize, timeupdate), 20 s
// at most.
async function playing(page, selector, seconds = 1) {
  return page.evaluate(({ selector, seconds }) => new Promise((resolve, reject) => {
    const v = document.querySelector(selector);
    const events = ['loadeddata', 'resize', 'timeupdate'];
    let start = null;
    const done = () => { clearTimeout(timer); for (const e of events) v.removeEventListener(e, check); };
    const check = () => {
      if (!(v.videoWidth > 0 && v.currentTime > 0)) return;
      start ??= v.currentTime;
      if (v.currentTime >= start + seconds) { done(); resolve({ width: v.videoWidth, height: v.videoHeight }); }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(start === null ? `${selector} shows no frames` : `${selector} stalled at ${v.currentTime}`));
    }, 20000);
    for (const e of events) v.addEventListener(e, check);
    check();
  }), { selector, seconds });
}

test('the demo makes a video call between two tabs: each shows the other camera, hang-up ends it', async () => {
  const one = await tab();
  const two = await tab();
  await one.page.waitForFunction((id) => [...document.querySelector('#to').options].some((o) => o.value === id), two.id, { timeout: 10000 });
  await one.page.selectOption('#to', two.id);
  await one.page.click('#call');
  await two.page.waitForSelector('#incoming:not([hidden])', { timeout: 10000 });
  assert.equal(await two.page.textContent('#caller'), one.id);
  await two.page.click('#answer');
  for (const t of [one, two]) {
    const size = await playing(t.page, '#remotevideo');
    assert.ok(size.width > 0 && size.height > 0, JSON.stringify(size));
  }
  assert.match(await one.page.textContent('#callstate'), new RegExp(`in a call with ${two.id}`));

  // Hanging up on tab one ends the call on tab two; the chat link stays.
  await one.page.click('#hangup');
  await two.page.waitForFunction((id) => document.querySelector('#callstate').textContent === `${id} hung up`, one.id, { timeout: 10000 });
  assert.equal(await two.page.evaluate(() => document.querySelector('#remotevideo').srcObject), null);
  await two.page.fill('#text', 'still here');
  await two.page.click('#send');
  await one.page.waitForFunction(() => document.querySelector('#log').textContent.includes('still here'), null, { timeout: 5000 });
  assert.deepEqual([...one.errors, ...two.errors], []);
});
