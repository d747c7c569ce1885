// End to end: a browser without WebGPU (navigator.gpu removed before any script runs) falls back
// to the CPU path (candle, wasm SIMD) with `device: 'auto'`, says so in the capability report
// and the model info, and the chat space answers with llama.cpp's greedy tokens for the chat
// prompt (the CPU rounds activations to 8 bits as llama.cpp does; the GPU, in f32, takes the
// other side of a near-tie at the first step), equal to `hugrt generate --device cpu --chat`.
// The search space embeds with all-MiniLM-L6-v2 on the CPU too: sentence-transformers'
// embeddings (cosine ≥ 0.999), the pasta sentence ranked first, and the throughput of a batch of
// 32 short sentences (embeddings/s) and one sentence's latency in the log. With WebGPU present,
// `device: 'cpu'` still runs on the CPU; `device: 'webgpu'` without it is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';

// llama-cpp-python 0.3.36, greedy, on the rendered chat prompt: [60, 23, 39614, 1141, 552, 28] "L'Étoile,"
const LLAMACPP_IDS = [60, 23, 39614, 1141];

const spaces = servedSpacesAndBrowser();

test('without WebGPU the chat space runs on the CPU and says why', { timeout: 300_000 }, async () => {
  const context = await spaces.browser.newContext();
  await context.addInitScript(() => { delete Navigator.prototype.gpu; });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}chat.html?autorun&max=4`);
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

// The sentences of `hugrt bench embed` (6 to 14 words), 4 times: a batch of 32.
const BENCH_SENTENCES = [
  'The cat sits outside.',
  'A man is playing guitar.',
  'The new movie is awesome and everyone should see it.',
  'Sentence embeddings help semantic search.',
  'I love pasta with tomato sauce and fresh basil.',
  'The weather is lovely today.',
  'How do I reset my password?',
  'Stock markets rose sharply after the announcement on Monday.',
];

test('without WebGPU the search space embeds on the CPU and matches sentence-transformers', { timeout: 300_000 }, async () => {
  const context = await spaces.browser.newContext();
  await context.addInitScript(() => { delete Navigator.prototype.gpu; });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}search.html?autorun`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 280_000 });
  await page.screenshot({ path: `${ARTIFACTS}/search-cpu.png`, fullPage: true });
  const status = await page.textContent('#status');
  console.log(`status: ${status}\nstats: ${await page.textContent('#stats')}`);
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'done', status);
  const ranked = await page.evaluate(() => window.searchResult);
  assert.equal(ranked[0].text, 'Boil the spaghetti in salted water for about ten minutes.');
  assert.ok(ranked[0].score - ranked[1].score > 0.1, JSON.stringify(ranked.slice(0, 3)));

  const reference = JSON.parse(readFileSync('tests/fixtures/bert/minilm/expected.json', 'utf8'));
  const r = await page.evaluate(async ({ texts, embeddings, bench }) => {
    const { pipeline } = await import('./pkg/index.js');
    const embedder = await pipeline('feature-extraction', 'sentence-transformers/all-MiniLM-L6-v2', { endpoint: location.origin });
    const { data, dims: [n, d] } = await embedder.embed(texts);
    const cosines = Array.from({ length: n }, (_, i) => {
      const row = data.subarray(i * d, (i + 1) * d);
      const want = embeddings[i];
      const dot = row.reduce((s, v, j) => s + v * want[j], 0);
      const norm = Math.sqrt(want.reduce((s, v) => s + v * v, 0)) * Math.sqrt(row.reduce((s, v) => s + v * v, 0));
      return dot / norm;
    });
    // Throughput: a batch of 32 short sentences (after one warm-up batch), best of 3; one sentence, median of 5.
    const batch = Array.from({ length: 32 }, (_, i) => bench[i % bench.length]);
    await embedder.embed(batch);
    let batchMs = Infinity;
    for (let k = 0; k < 3; k++) {
      const t = performance.now();
      await embedder.embed(batch);
      batchMs = Math.min(batchMs, performance.now() - t);
    }
    const one = [];
    for (let k = 0; k < 5; k++) {
      const t = performance.now();
      await embedder.embed(bench[0]);
      one.push(performance.now() - t);
    }
    one.sort((a, b) => a - b);
    const info = embedder.info;
    embedder.dispose();
    return { cosines, info, batchMs, oneMs: one[2] };
  }, { texts: reference.texts, embeddings: reference.embeddings, bench: BENCH_SENTENCES });
  console.log(`info: ${JSON.stringify(r.info)}`);
  console.log(`cosines: ${r.cosines.map((c) => c.toFixed(6)).join(' ')}`);
  console.log(`CPU (wasm, 1 thread): batch of 32 short sentences ${r.batchMs.toFixed(0)} ms = ${(32_000 / r.batchMs).toFixed(1)} embeddings/s; one sentence ${r.oneMs.toFixed(1)} ms`);
  assert.equal(r.info.device, 'cpu');
  assert.match(r.info.fallbackReason ?? '', /./, 'the model info says why it is on the CPU');
  assert.equal(r.cosines.length, reference.texts.length);
  for (const c of r.cosines) assert.ok(c >= 0.999, `cosine ${c}`);
  assert.deepEqual(problems, []);
  await context.close();
});

test("feature-extraction takes device: 'cpu' on request, and 'webgpu' without WebGPU is refused", { timeout: 120_000 }, async () => {
  const reference = JSON.parse(readFileSync('tests/fixtures/bert/minilm/expected.json', 'utf8'));
  const run = async (removeGpu, device) => {
    const context = await spaces.browser.newContext();
    if (removeGpu) await context.addInitScript(() => { delete Navigator.prototype.gpu; });
    const page = await context.newPage();
    await page.goto(`${spaces.url}style.css`); // a page of the origin that runs nothing itself
    const r = await page.evaluate(async ({ text, want, device }) => {
      const { pipeline } = await import('./pkg/index.js');
      try {
        const embedder = await pipeline('feature-extraction', 'sentence-transformers/all-MiniLM-L6-v2', { endpoint: location.origin, device });
        const { data } = await embedder.embed(text);
        const dot = data.reduce((s, v, j) => s + v * want[j], 0) / Math.sqrt(want.reduce((s, v) => s + v * v, 0));
        const info = embedder.info;
        embedder.dispose();
        return { info, cosine: dot, gpu: 'gpu' in navigator };
      } catch (e) {
        return { error: e.name, gpu: 'gpu' in navigator };
      }
    }, { text: reference.texts[0], want: reference.embeddings[0], device });
    await context.close();
    return r;
  };
  const cpu = await run(false, 'cpu');
  console.log(`device 'cpu' with WebGPU present: ${JSON.stringify(cpu)}`);
  assert.equal(cpu.gpu, true);
  assert.equal(cpu.info.device, 'cpu');
  assert.equal(cpu.info.fallbackReason, null);
  assert.ok(cpu.cosine >= 0.999, `cosine ${cpu.cosine}`);
  const refused = await run(true, 'webgpu');
  assert.deepEqual(refused, { error: 'WebGpuUnavailable', gpu: false });
});

// On SwiftShader (a software WebGPU adapter, as headless Chromium without a GPU has), device
// 'auto' takes the CPU backend and says why; 'webgpu' still takes the adapter.
test("device 'auto' leaves a software WebGPU adapter for the CPU backend; 'webgpu' still uses it", { timeout: 180_000 }, async () => {
  const page = await spaces.browser.newPage();
  await page.goto(`${spaces.url}style.css`);
  const r = await page.evaluate(async () => {
    const { pipeline, capabilities } = await import('./pkg/index.js');
    const caps = await capabilities();
    const load = async (device) => {
      const gen = await pipeline('text-generation', 'hugrt-test/tiny-llama', { endpoint: location.origin, ...(device ? { device } : {}) });
      const info = gen.info;
      const { ids } = await gen.generate('The capital', { maxTokens: 3 });
      gen.dispose();
      return { device: info.device, adapter: info.adapter, fallbackReason: info.fallbackReason, ids };
    };
    return { caps, auto: await load(undefined), webgpu: await load('webgpu') };
  });
  console.log(JSON.stringify(r.caps), JSON.stringify(r.auto));
  assert.equal(r.caps.webgpu, true);
  assert.match(r.caps.adapter, /swiftshader/i);
  assert.equal(r.caps.device, 'cpu');
  assert.match(r.caps.fallbackReason, /emulates a GPU on the CPU/);
  assert.equal(r.auto.device, 'cpu');
  assert.match(r.auto.fallbackReason, /swiftshader/i);
  assert.equal(r.webgpu.device, 'webgpu');
  assert.equal(r.webgpu.fallbackReason, null);
  assert.equal(r.auto.ids.length, 3);
  assert.equal(r.webgpu.ids.length, 3);
  await page.close();
});
