// End to end: the chat space and the JS package over the local hub mirror (scripts/serve.mjs
// --mirror): the real SmolLM2-135M-Instruct resolved, downloaded into IndexedDB (verified),
// loaded from the store onto WebGPU (SwiftShader), answering through its chat template with
// llama.cpp's greedy tokens (tests/e2e/reference.mjs); then the API itself: stop strings, abort
// mid-stream, the OpenAI-style chat API, the cache manager, and Worker mode.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';
import { chatAnswer, continuation, text } from './reference.mjs';

// llama.cpp's greedy answer (tests/fixtures/smollm2/llamacpp_chat.json). Not the chat space's
// default "What is the capital of France?": there llama.cpp's first step is a near-tie. Here
// every step up to the end token is clear, so the whole answer is pinned.
const QUESTION = 'What is the capital of France? Answer in one sentence.';
const REF = chatAnswer(QUESTION);
assert.ok(REF.complete, `llama.cpp's answer has a near-tie at step ${REF.clear} of ${REF.ids.length + 1}`);
const REF_TEXT = text(REF.ids);
const SAY = `say=${encodeURIComponent(QUESTION)}`;

const spaces = servedSpacesAndBrowser();
before(() => mkdir(ARTIFACTS, { recursive: true }));

async function open(context, path) {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  await page.goto(`${spaces.url}${path}`);
  await page.waitForFunction(() => ['done', 'error', 'stopped'].includes(document.body.dataset.status), null, { timeout: 400_000 });
  return { page, problems };
}

test("chat space: SmolLM2 answers with llama.cpp's greedy tokens, then the API works", { timeout: 900_000 }, async () => {
  const context = await spaces.browser.newContext();
  const { page, problems } = await open(context, `chat.html?autorun&${SAY}`);
  await page.screenshot({ path: `${ARTIFACTS}/chat.png`, fullPage: true });
  const status = await page.textContent('#status');
  const stats = await page.textContent('#stats');
  console.log(`status: ${status}\nstats: ${stats}`);
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'done', `${status} / ${stats}`);
  const result = await page.evaluate(() => window.chatResult);
  assert.deepEqual(result.promptIds, REF.promptIds, 'the prompt llama.cpp answered');
  assert.deepEqual(result.ids, REF.ids);
  assert.equal(result.text, REF_TEXT);
  assert.equal(result.finishReason, 'stop');
  assert.equal(await page.textContent('#conversation .assistant'), REF_TEXT);
  assert.equal(await page.evaluate(() => document.getElementById('bar-ready').value > 0), true);

  const api = await page.evaluate(async (question) => {
    const hugrt = await import('./pkg/index.js');
    const chat = window.chatPipeline;
    const out = {};
    // Stop strings: cut before the string; the next prompt reuses the KV cache's prefix.
    const stopped = await chat.generate('The capital of France is', { maxTokens: 8, stop: ['.'] });
    out.stopped = { text: stopped.text, finish: stopped.finishReason };
    const again = await chat.generate('The capital of France is', { maxTokens: 1 });
    out.cachedTokens = again.usage.cachedTokens;
    // Abort in the middle of a stream.
    const abort = new AbortController();
    const pieces = [];
    try {
      for await (const piece of chat.stream('Once upon a time', { maxTokens: 40, signal: abort.signal })) {
        pieces.push(piece);
        if (pieces.length === 2) abort.abort();
      }
      out.abort = 'not aborted';
    } catch (err) {
      out.abort = { code: err.code, isClass: err instanceof hugrt.Aborted, pieces: pieces.length };
    }
    // Breaking out of a stream stops generation too (and the model is free again).
    for await (const piece of chat.stream('Hello', { maxTokens: 40 })) { if (piece) break; }
    // The OpenAI-style API, streaming.
    const chunks = [];
    const s = await chat.chat.completions.create({ messages: [{ role: 'user', content: question }], stream: true, max_completion_tokens: 3, stream_options: { include_usage: true } });
    for await (const c of s) chunks.push(c);
    out.chunks = { first: chunks[0].choices[0].delta, last: chunks.at(-2).choices[0].finish_reason, usageChoices: chunks.at(-1).choices,
      content: chunks.slice(0, -1).map((c) => c.choices[0].delta.content ?? '').join(''), object: chunks[0].object, usage: chunks.at(-1).usage,
      usageBefore: chunks.slice(0, -1).some((c) => 'usage' in c) };
    // Without include_usage, no chunk carries usage; n > 1 and what is not supported yet are typed errors.
    const plain = [];
    for await (const c of await chat.chat.completions.create({ messages: [{ role: 'user', content: question }], stream: true, max_tokens: 1 })) plain.push(c);
    out.plainUsage = plain.some((c) => 'usage' in c);
    const code = async (request) => { try { await chat.chat.completions.create({ messages: [{ role: 'user', content: question }], max_tokens: 1, ...request }); return 'none'; } catch (e) { return e.code; } };
    out.refused = { n: await code({ n: 2 }), tools: await code({ tools: [{ type: 'function', function: { name: 'f' } }] }), json: await code({ response_format: { type: 'json_object' } }),
      penalty: await code({ frequency_penalty: 0.5 }), zeroPenalty: await code({ frequency_penalty: 0, n: 1 }) };
    // Bad options are typed errors.
    try { await chat.generate('x', { temperature: -1 }); out.badOption = 'accepted'; } catch (err) { out.badOption = err.code; }
    out.cache = await hugrt.cache.list();
    out.capabilities = await hugrt.capabilities();
    return out;
  }, QUESTION);
  console.log(JSON.stringify(api, null, 1).slice(0, 2000));
  // llama.cpp's continuation of the plain prompt, cut before the stop string, which it must
  // reach before its first near-tie and within the 8 tokens.
  const plain = continuation('The capital of France is');
  const plainText = text(plain.ids.slice(0, Math.min(plain.clear, 8)));
  assert.ok(plainText.includes('.'), `no '.' in llama.cpp's ${JSON.stringify(plainText)} before its first near-tie`);
  assert.deepEqual(api.stopped, { text: plainText.slice(0, plainText.indexOf('.')), finish: 'stop' });
  assert.ok(api.cachedTokens >= 4, `the second prompt reused ${api.cachedTokens} cached tokens`);
  assert.deepEqual(api.abort, { code: 'Aborted', isClass: true, pieces: 2 });
  assert.deepEqual(api.chunks.first, { role: 'assistant', content: '' });
  assert.equal(api.chunks.object, 'chat.completion.chunk');
  assert.equal(api.chunks.content, text(REF.ids.slice(0, 3)));
  assert.equal(api.chunks.last, 'length');
  assert.equal(api.chunks.usage.completion_tokens, 3);
  assert.deepEqual(api.chunks.usageChoices, [], 'the usage chunk has no choices (OpenAI stream_options.include_usage)');
  assert.equal(api.chunks.usageBefore, false);
  assert.equal(api.plainUsage, false, 'no usage without stream_options.include_usage');
  assert.deepEqual(api.refused, { n: 'Usage', tools: 'Unsupported', json: 'Unsupported', penalty: 'Unsupported', zeroPenalty: 'none' });
  assert.equal(api.badOption, 'Usage');
  const cached = api.cache.find((r) => r.repo === 'HuggingFaceTB/SmolLM2-135M-Instruct');
  assert.ok(cached && cached.completeFiles === 1 && cached.bytes > 90e6, JSON.stringify(api.cache));
  assert.equal(api.capabilities.webgpu, true);
  assert.deepEqual(problems, []);
  await page.close();

  // Worker mode, same browser profile: the model comes from the cache this time.
  const worker = await open(context, `chat.html?autorun&worker&max=4&${SAY}`);
  await worker.page.screenshot({ path: `${ARTIFACTS}/chat-worker.png`, fullPage: true });
  const w = await worker.page.evaluate(() => ({ status: document.body.dataset.status, ids: window.chatResult?.ids, info: window.chatPipeline?.info }));
  assert.equal(w.status, 'done', await worker.page.textContent('#status'));
  assert.deepEqual(w.ids, REF.ids.slice(0, 4));
  assert.equal(w.info.worker, true);
  assert.deepEqual(worker.problems, []);
  await worker.page.close();

  // The playground: the cache manager lists the model; Delete frees its storage.
  const pg = await context.newPage();
  await pg.goto(`${spaces.url}playground.html`);
  await pg.waitForFunction(() => document.body.dataset.status === 'idle-ready' && document.body.dataset.cache === '1', null, { timeout: 60_000 });
  const before = await pg.evaluate(async () => (await navigator.storage.estimate()).usage);
  await pg.screenshot({ path: `${ARTIFACTS}/playground.png`, fullPage: true });
  await pg.click('#cache tbody button');
  await pg.waitForFunction(() => document.body.dataset.cache === '0', null, { timeout: 60_000 });
  const afterDelete = await pg.evaluate(async () => (await navigator.storage.estimate()).usage);
  console.log(`storage before delete ${before}, after ${afterDelete}`);
  assert.ok(before - afterDelete > 90e6, `delete freed ${before - afterDelete} bytes`);
  assert.match(await pg.textContent('#capabilities'), /swiftshader/);

  // Model output is rendered inert: the spaces append it as text.
  const inert = await pg.evaluate(async () => {
    const { appendText } = await import('./spaces.js');
    const node = document.createElement('div');
    document.body.append(node);
    const hostile = '<img src=x onerror="window.pwned=1"> ![x](http://127.0.0.1:9/x.png) <script>window.pwned=2</script>';
    appendText(node, hostile);
    await new Promise((r) => setTimeout(r, 200));
    return { images: node.querySelectorAll('img, script').length, text: node.textContent === hostile, pwned: window.pwned ?? null };
  });
  assert.deepEqual(inert, { images: 0, text: true, pwned: null });
  await context.close();
});
