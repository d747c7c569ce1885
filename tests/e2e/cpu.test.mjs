// End to end: a browser without WebGPU (navigator.gpu removed before any script runs) falls back
// to the CPU path (candle, wasm SIMD) with `device: 'auto'`, says so in the capability report
// and the model info, and the chat space answers with llama.cpp's greedy tokens for the chat
// prompt (the CPU rounds activations to 8 bits as llama.cpp does; the GPU, in f32, takes the
// other side of a near-tie at the first step), equal to `hugrt generate --device cpu --chat`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { openBrowser, ARTIFACTS, serveWithModels } from './browser.mjs';

// llama-cpp-python 0.3.36, greedy, on the rendered chat prompt: [60, 23, 39614, 1141, 552, 28] "L'Étoile,"
const LLAMACPP_IDS = [60, 23, 39614, 1141];

let server, browser, url;

before(async () => {
  ({ server, url } = await serveWithModels());
  browser = await openBrowser();
});

after(async () => {
  await browser?.close();
  server?.close();
});

test('without WebGPU the chat space runs on the CPU and says why', { timeout: 300_000 }, async () => {
  const context = await browser.newContext();
  await context.addInitScript(() => { delete Navigator.prototype.gpu; });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${url}chat.html?autorun&max=4`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 280_000 });
  await page.screenshot({ path: `${ARTIFACTS}/chat-cpu.png`, fullPage: true });
  const status = await page.textContent('#status');
  const r = await page.evaluate(async () => {
    const { capabilities } = await import('./pkg/index.js');
    return { ids: window.chatResult?.ids, info: window.chatPipeline?.info, caps: await capabilities(), gpu: 'gpu' in navigator };
  });
  console.log(`status: ${status}\nstats: ${await page.textContent('#stats')}\ninfo: ${JSON.stringify(r.info)}`);
  assert.equal(r.gpu, false);
  assert.equal(r.caps.webgpu, false);
  assert.equal(r.caps.device, 'cpu');
  assert.match(r.caps.fallbackReason, /navigator\.gpu/);
  assert.equal(r.info.device, 'cpu');
  assert.ok(r.info.fallbackReason, 'the model info says why it is on the CPU');
  assert.deepEqual(r.ids, LLAMACPP_IDS);
  assert.deepEqual(problems, []);
  await context.close();
});
