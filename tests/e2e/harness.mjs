// Shared by the page-level tests: a broker on a free port serving a folder,
// and Chromium started from /usr/bin/chromium (never downloaded).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

export const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-dev-shm-usage', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/**
 * Starts `peerwire-broker --port <port> --static dir ...extra`; resolves
 * { url, ws, port, stop }.
 */
export async function startBroker(binary, dir, extra = [], port = 0) {
  // All test pages connect from 127.0.0.1: raise the per-address limits.
  const args = ['--port', String(port), '--static', dir, '--max-connections-per-ip', '10000', '--ip-rate-limit', '100000', '--ip-rate-burst', '100000', ...extra];
  const proc = spawn(binary, args, {
    env: { ...process.env, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  const [line] = await once(lines, 'line');
  const url = line.match(/http:\/\/[0-9.:]+/)?.[0];
  if (!url) throw new Error(`broker printed: ${line}`);
  return {
    url,
    port: Number(new URL(url).port),
    ws: url.replace('http:', 'ws:') + '/ws',
    stop: async () => { proc.kill('SIGTERM'); await once(proc, 'exit'); },
  };
}

export async function launch() {
  return chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: CHROMIUM_ARGS });
}

/** A page in its own browser context, loaded and initialised. */
export async function openPage(browser, url) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e));
  await page.goto(url);
  await page.waitForFunction(() => window.ready === true, null, { timeout: 15000 });
  return { page, context, errors };
}
