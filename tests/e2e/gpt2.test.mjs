// End to end: a checkpoint in the hub's own format (config.json, tokenizer.json, safetensors) —
// the tiny random GPT-2 fixture in the local hub mirror — through pipeline() in Chromium:
// downloaded into IndexedDB, loaded from the store onto WebGPU, the same greedy tokens as the
// native CLI (`hugrt generate --model tests/fixtures/gpt2 --prompt "Hello world" --max-tokens 12`).
// With `device: 'cpu'` the same model runs on the CPU fallback (candle, wasm SIMD) while WebGPU is
// present, and gives the same tokens.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { servedSpacesAndBrowser } from './browser.mjs';

// `hugrt generate --model tests/fixtures/gpt2 --prompt "Hello world" --max-tokens 12` (GPU and CPU alike).
const NATIVE_IDS = [682, 796, 682, 710, 710, 710, 710, 710, 308, 332, 697, 796];

const spaces = servedSpacesAndBrowser();

test('GPT-2 from safetensors generates the native tokens in the browser', { timeout: 180_000 }, async () => {
  const page = await spaces.browser.newPage();
  await page.goto(`${spaces.url}index.html`);
  const result = await page.evaluate(async () => {
    const { pipeline } = await import('./pkg/index.js');
    const phases = new Set();
    const gen = await pipeline('text-generation', 'hugrt-test/tiny-gpt2', { endpoint: location.origin, onProgress: (p) => phases.add(p.status) });
    const r = await gen.generate('Hello world', { maxTokens: 12 });
    const info = gen.info;
    gen.dispose();
    return { ids: r.ids, promptIds: r.promptIds, finish: r.finishReason, architecture: info.architecture, phases: [...phases], compileMs: info.compileMs };
  });
  assert.deepEqual(result.promptIds, [352, 350]);
  assert.deepEqual(result.ids, NATIVE_IDS);
  assert.equal(result.finish, 'length');
  assert.equal(result.architecture, 'gpt2');
  assert.ok(result.compileMs > 0, `compile pass ${result.compileMs} ms`);
  for (const phase of ['resolve', 'download', 'upload', 'compile', 'ready']) assert.ok(result.phases.includes(phase), `${phase} in ${result.phases}`);
  await page.close();
});

test('GPT-2 on the CPU fallback generates the same tokens in the browser', { timeout: 180_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}index.html`);
  const result = await page.evaluate(async () => {
    const { pipeline } = await import('./pkg/index.js');
    const gen = await pipeline('text-generation', 'hugrt-test/tiny-gpt2', { endpoint: location.origin, device: 'cpu' });
    const r = await gen.generate('Hello world', { maxTokens: 12 });
    const info = gen.info;
    gen.dispose();
    return { ids: r.ids, promptIds: r.promptIds, finish: r.finishReason, info, gpu: 'gpu' in navigator, usage: r.usage };
  });
  console.log(`info: ${JSON.stringify(result.info)}\nusage: ${JSON.stringify(result.usage)}`);
  assert.equal(result.gpu, true, 'WebGPU is present; the CPU was asked for');
  assert.equal(result.info.device, 'cpu');
  assert.equal(result.info.architecture, 'gpt2');
  assert.equal(result.info.fallbackReason, null);
  assert.deepEqual(result.promptIds, [352, 350]);
  assert.deepEqual(result.ids, NATIVE_IDS);
  assert.equal(result.finish, 'length');
  assert.deepEqual(problems, []);
  await page.close();
});
