// Opens www/bench.html in headless Chromium (WebGPU on SwiftShader) and prints its table.
import { startServer } from './serve.mjs';
import { openBrowser } from '../tests/e2e/browser.mjs';

const full = process.argv.includes('--full');
const { server, url } = await startServer({ root: 'www' });
const browser = await openBrowser();
try {
  const page = await browser.newPage();
  await page.goto(`${url}bench.html${full ? '?full' : ''}`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 600_000 });
  const status = await page.textContent('#bench-status');
  console.log(status);
  console.log(await page.textContent('#bench-table'));
  if ((await page.evaluate(() => document.body.dataset.status)) !== 'done') process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
