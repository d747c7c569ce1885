// Opens www/cpu-bench.html in headless Chromium and prints the CPU fallback's figures (JSON).
//   node scripts/bench-cpu-browser.mjs MODELS_DIR [prompt tokens] [decode tokens]
import { startServer } from './serve.mjs';
import { openBrowser } from '../tests/e2e/browser.mjs';

const [models, prompt = '64', decode = '32'] = process.argv.slice(2);
if (!models) throw new Error('usage: node scripts/bench-cpu-browser.mjs MODELS_DIR [prompt] [decode]');
const { server, url } = await startServer({ root: 'www', models });
const browser = await openBrowser();
try {
  const page = await browser.newPage();
  await page.goto(`${url}cpu-bench.html?prompt=${prompt}&decode=${decode}`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 600_000 });
  console.log(await page.textContent('#result'));
  if ((await page.evaluate(() => document.body.dataset.status)) !== 'done') process.exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
