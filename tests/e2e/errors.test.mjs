// isPeerwireError at run time, in a page with the installed package: true
// for errors the SDK really throws (and of the name asked), false for
// look-alikes and for anything that is not an Error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, launch, openPage } from './harness.mjs';

const { PEERWIRE_BROKER_BIN, PEERWIRE_APP } = process.env;
let broker, browser, page;

before(async () => {
  assert.ok(PEERWIRE_BROKER_BIN && PEERWIRE_APP, 'run through tests/run.sh (it builds, packs and installs the package)');
  broker = await startBroker(PEERWIRE_BROKER_BIN, PEERWIRE_APP);
  browser = await launch();
  ({ page } = await openPage(browser, `${broker.url}/index.html`));
});

after(async () => {
  await browser?.close();
  await broker?.stop();
});

test('isPeerwireError recognises thrown SDK errors by name, and nothing else', async () => {
  const r = await page.evaluate(async (ws) => {
    const { createPeer, isPeerwireError } = window.peerwire;
    const peer = await createPeer('guard-a', { broker: ws });
    let offline, closed, invalid;
    try { await peer.connect('nobody-here'); } catch (e) { offline = e; }
    try { await createPeer('bad id!', { broker: ws }); } catch (e) { invalid = e; }
    peer.close();
    try { await peer.join('lobby'); } catch (e) { closed = e; }
    const lookalike = Object.assign(new Error('x'), { name: 'ClosedError' });
    const withCode = Object.assign(new Error('x'), { code: 'closed' });
    return {
      offline: [offline.name, offline.code, isPeerwireError(offline), isPeerwireError(offline, 'PeerUnavailableError'), isPeerwireError(offline, 'ClosedError')],
      invalid: [invalid.name, isPeerwireError(invalid, 'InvalidIdError')],
      closed: [closed.name, isPeerwireError(closed, 'ClosedError')],
      unknownName: isPeerwireError(offline, 'NoSuchError'),
      noCode: isPeerwireError(lookalike),
      plainErrorWithCode: isPeerwireError(withCode),
      typeError: isPeerwireError(new TypeError('x')),
      plainObject: isPeerwireError({ name: 'ClosedError', code: 'closed', message: 'x' }),
      others: [undefined, null, 'ClosedError', 42].map((v) => isPeerwireError(v)),
    };
  }, broker.ws);
  assert.deepEqual(r, {
    offline: ['PeerUnavailableError', 'unknown-peer', true, true, false],
    invalid: ['InvalidIdError', true],
    closed: ['ClosedError', true],
    unknownName: false,
    noCode: false,
    plainErrorWithCode: false,
    typeError: false,
    plainObject: false,
    others: [false, false, false, false],
  });
});
