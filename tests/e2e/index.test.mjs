// End to end: serve www/, open the device report page in headless Chromium (WebGPU on
// SwiftShader), and check what a person would see: the adapter and the kernel check passing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { openBrowser, ARTIFACTS } from './browser.mjs';
import { startServer } from '../../scripts/serve.mjs';

let server, browser, url;

before(async () => {
  ({ server, url } = await startServer({ root: 'www' }));
  browser = await openBrowser();
  await mkdir(ARTIFACTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  server?.close();
});

test('device report page shows the adapter and a passing matvec check', { timeout: 300_000 }, async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`); });

  await page.goto(url);
  await page.waitForFunction(() => ['passed', 'failed', 'error'].includes(document.body.dataset.status), null, { timeout: 240_000 });
  await page.screenshot({ path: `${ARTIFACTS}/index.png`, fullPage: true });

  const status = await page.evaluate(() => document.body.dataset.status);
  const adapter = await page.textContent('#adapter-status');
  const kernel = await page.textContent('#kernel-status');
  console.log(`adapter: ${adapter}\nkernel: ${kernel}`);
  assert.equal(status, 'passed', `page status ${status}: ${kernel} ${problems.join('; ')}`);
  assert.match(adapter, /swiftshader/i, 'the page names the SwiftShader adapter');
  assert.equal(await page.locator('#kernel tbody tr.pass').count(), 8, 'eight kernel rows pass');
  assert.ok(Number(await page.locator('#limits tr').count()) >= 5, 'limits are listed');
  assert.deepEqual(problems, []);
  await page.close();
});
