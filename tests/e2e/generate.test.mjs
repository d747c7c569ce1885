// End to end: the real SmolLM2-135M-Instruct (Q4_1 GGUF from its PyPI package) fetched tensor by
// tensor into WebGPU on SwiftShader, greedy-decoding a fixed prompt, as a person sees the page.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();
before(() => mkdir(ARTIFACTS, { recursive: true }));

test('SmolLM2 continues "The capital of France is" with Paris, on WebGPU', { timeout: 300_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}generate.html?autorun`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 290_000 });
  await page.screenshot({ path: `${ARTIFACTS}/generate.png`, fullPage: true });
  const status = await page.textContent('#status');
  const output = await page.textContent('#output');
  console.log(`status: ${status}\noutput: ${JSON.stringify(output)}`);
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'done', status);
  const result = await page.evaluate(() => window.generateResult);
  // The same greedy tokens as `hugrt generate` gives natively on lavapipe for this prompt.
  assert.deepEqual(result.promptIds, [504, 3575, 282, 4649, 314]);
  assert.deepEqual(result.ids, [7042, 30, 198, 198, 504, 2988, 314, 42]);
  assert.match(output, /^ Paris\./);
  assert.deepEqual(problems, []);
  await page.close();
});
