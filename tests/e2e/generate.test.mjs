// End to end: the real SmolLM2-135M-Instruct (Q4_1 GGUF from its PyPI package) fetched tensor by
// tensor into WebGPU on SwiftShader, greedy-decoding a fixed prompt, as a person sees the page.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';
import { continuation, text } from './reference.mjs';

// llama.cpp's greedy continuation (tests/fixtures/smollm2/llamacpp_greedy.json), compared before
// its first near-tie.
const REF = continuation('The capital of France is');

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
  // llama.cpp's greedy tokens for this prompt, up to its first near-tie (the page asks for 8).
  assert.deepEqual(result.promptIds, REF.promptIds);
  assert.ok(REF.clear >= 4, `llama.cpp has a near-tie at step ${REF.clear}`);
  assert.equal(result.ids.length, 8);
  const clear = Math.min(REF.clear, result.ids.length);
  assert.deepEqual(result.ids.slice(0, clear), REF.ids.slice(0, clear));
  assert.ok(output.startsWith(text(REF.ids.slice(0, clear))), `${JSON.stringify(output)} starts with llama.cpp's text`);
  assert.deepEqual(problems, []);
  await page.close();
});
