// End to end, recovery from a lost GPU device for every pipeline, in Chromium on WebGPU
// (SwiftShader): the engine's test hook (`testLoseDeviceAfter(n)`) destroys the device at the n-th
// compute dispatch, in the middle of a pass. The call that meets the loss rejects with a typed
// DeviceLost (a generation also with `finishReason: 'device_lost'` and the text it had streamed,
// a prefix of the answer); the next call loads the model again from the stored commit onto a new
// device and gives the same answer as before the loss; `info` counts the recovery.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();

test('every pipeline recovers from a device lost mid-pass: DeviceLost, then the same answer on a new device', { timeout: 600_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}playground.html`);
  await page.waitForFunction(() => document.body.dataset.status === 'idle-ready');
  const out = await page.evaluate(async () => {
    const { pipeline, kBackend } = await import('./pkg/index.js');
    const { testLoseDeviceAfter } = await import('./pkg/hugrt.js');
    const options = { endpoint: location.origin, device: 'webgpu' };
    /** `call()` before the loss, `call()` meeting a loss armed `n` dispatches ahead, `call()` after. */
    async function around(pipe, n, call) {
      const before = await call();
      testLoseDeviceAfter(n);
      let lost;
      try { await call(); } catch (e) { lost = { code: e.code, name: e.name, finishReason: e.finishReason, text: e.text }; }
      testLoseDeviceAfter(0);
      const after = await call();
      return { before, lost, after, info: { ...pipe.info } };
    }
    const r = {};

    const llm = await pipeline('text-generation', 'hugrt-test/tiny-llama', options);
    const gen = async () => (await llm.generate('The capital of France is', { maxTokens: 12, temperature: 0 })).text;
    await gen();
    // A decode step is `dispatchesPerToken` dispatches (the engine's count of its last pass): the
    // loss comes a few steps in.
    const perToken = llm[kBackend].info().dispatchesPerToken;
    r.llm = await around(llm, perToken * 4 + 2, gen);
    llm.dispose();

    const embedder = await pipeline('feature-extraction', 'hugrt-test/tiny-mpnet', options);
    r.embed = await around(embedder, 5, async () => Array.from((await embedder.embed(['a lost device', 'comes back'])).data));
    embedder.dispose();

    const size = 64, rgba = new Uint8Array(size * size * 4).map((_, i) => (i * 37) % 251);
    const vit = await pipeline('image-classification', 'hugrt-test/tiny-vit', options);
    r.vit = await around(vit, 5, () => vit.classify({ data: rgba, width: size, height: size }, { topK: 3 }));
    vit.dispose();

    const audio = new Float32Array(16000).map((_, i) => 0.3 * Math.sin(i * 0.05) * Math.sin(i * 0.0007));
    const asr = await pipeline('automatic-speech-recognition', 'hugrt-test/tiny-whisper', options);
    r.asr = await around(asr, 5, async () => (await asr.transcribe(audio, { samplingRate: 16000, language: 'en', maxNewTokens: 8 })).text);
    asr.dispose();
    return r;
  });
  for (const [name, r] of Object.entries(out)) {
    console.log(`${name}: lost ${JSON.stringify(r.lost)}, recoveries ${r.info.recoveries}, device ${r.info.device}, answer ${JSON.stringify(r.after).slice(0, 80)}`);
    assert.equal(r.lost?.code, 'DeviceLost', `${name}: ${JSON.stringify(r.lost)}`);
    assert.deepEqual(r.after, r.before, `${name}: the same answer after the recovery`);
    assert.equal(r.info.recoveries, 1, name);
    assert.equal(r.info.device, 'webgpu', `${name}: on WebGPU again`);
    assert.match(r.info.lostReason, /lost/, name);
  }
  assert.equal(out.llm.lost.finishReason, 'device_lost');
  assert.ok(out.llm.lost.text.length > 0 && out.llm.before.startsWith(out.llm.lost.text) && out.llm.lost.text !== out.llm.before,
    `a generation cut short says so, with a prefix of the answer: ${JSON.stringify(out.llm.lost.text)} of ${JSON.stringify(out.llm.before)}`);
  assert.deepEqual(problems, []);
  await page.close();
});

test("a GPU that computes garbage fails the text model's self-check: 'webgpu' refuses to load, and loads once it computes right", { timeout: 300_000 }, async () => {
  const page = await spaces.browser.newPage();
  await page.goto(`${spaces.url}playground.html`);
  await page.waitForFunction(() => document.body.dataset.status === 'idle-ready');
  const out = await page.evaluate(async () => {
    const { pipeline } = await import('./pkg/index.js');
    const { testBreakKernels } = await import('./pkg/hugrt.js');
    const options = { endpoint: location.origin, device: 'webgpu' };
    const r = {};
    testBreakKernels(true); // every kernel dispatched over half its grid: wrong numbers, no error
    try { await pipeline('text-generation', 'hugrt-test/tiny-llama', options); } catch (e) { r.broken = { code: e.code, message: e.message }; }
    testBreakKernels(false);
    const llm = await pipeline('text-generation', 'hugrt-test/tiny-llama', options);
    r.info = { device: llm.info.device, selfCheck: llm.info.selfCheck };
    llm.dispose();
    return r;
  });
  console.log(JSON.stringify(out));
  assert.equal(out.broken?.code, 'GpuError', JSON.stringify(out.broken));
  assert.match(out.broken.message, /self-check/);
  assert.equal(out.info.device, 'webgpu');
  assert.ok(out.info.selfCheck.passed && out.info.selfCheck.relativeError <= out.info.selfCheck.bound, JSON.stringify(out.info.selfCheck));
  await page.close();
});
