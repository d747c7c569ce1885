// End to end: aborting while the weights download stops the transfer with an `Aborted` error and
// leaves no complete file in the store; a later load resumes and works; `dispose()` of a Worker
// pipeline ends it (its calls are refused).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { servedSpacesAndBrowser } from './browser.mjs';
import { continuation } from './reference.mjs';

// llama.cpp's greedy continuation (tests/fixtures/smollm2/llamacpp_greedy.json): the resumed
// load's 2 tokens must be its first 2, which come before its first near-tie.
const REF = continuation('The capital of France is');
assert.ok(REF.clear >= 2, `llama.cpp has a near-tie at step ${REF.clear}`);

const spaces = servedSpacesAndBrowser();

test('abort during download, then resume; dispose ends a Worker pipeline', { timeout: 300_000 }, async () => {
  const context = await spaces.browser.newContext();
  const page = await context.newPage();
  await page.goto(`${spaces.url}index.html`);
  const r = await page.evaluate(async () => {
    const { pipeline, cache, Aborted } = await import('./pkg/index.js');
    const opts = { endpoint: location.origin, file: 'SmolLM2-135M-Instruct.Q4_1.gguf', context: 64, device: 'cpu' };
    const out = {};
    const ac = new AbortController();
    let seen = 0;
    try {
      await pipeline('text-generation', 'HuggingFaceTB/SmolLM2-135M-Instruct', {
        ...opts, signal: ac.signal,
        onProgress: (p) => { if (p.status === 'download' && p.fileLoaded > 0 && !ac.signal.aborted) { seen = p.fileLoaded; ac.abort(); } },
      });
      out.first = 'loaded';
    } catch (err) {
      out.first = { code: err.code, isClass: err instanceof Aborted, seen };
    }
    out.afterAbort = (await cache.list()).map((r) => r.completeFiles);
    const gen = await pipeline('text-generation', 'HuggingFaceTB/SmolLM2-135M-Instruct', { ...opts, worker: true });
    out.second = (await gen.generate('The capital of France is', { maxTokens: 2 })).ids;
    gen.dispose();
    try { await gen.generate('x', { maxTokens: 1 }); out.afterDispose = 'answered'; } catch (err) { out.afterDispose = err.code; }
    return out;
  });
  console.log(JSON.stringify(r));
  assert.equal(r.first.code, 'Aborted');
  assert.equal(r.first.isClass, true);
  assert.ok(r.first.seen > 0);
  assert.deepEqual(r.afterAbort.filter((n) => n > 0), [], 'no complete file after the abort');
  assert.deepEqual(r.second, REF.ids.slice(0, 2));
  assert.equal(r.afterDispose, 'Aborted');
  await context.close();
});
