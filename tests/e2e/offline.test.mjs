// End to end: offline first. Models loaded once through pipeline() from the local hub mirror load
// again in a fresh page with the mirror unreachable (its requests dropped unanswered, as with no
// network): `main` falls back to the revision last used, a pinned commit loads from the store, and
// answers are the same; with the mirror back, a pinned commit stored whole asks nothing of it (no
// revision API call, no file request); a repo never stored is a NetworkError.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();

// One browser profile (one IndexedDB), a new page for each step.
let context;
async function inFreshPage(fn, arg) {
  context ??= await spaces.browser.newContext();
  const page = await context.newPage();
  await page.goto(`${spaces.url}index.html`);
  try { return await page.evaluate(fn, arg); } finally { await page.close(); }
}

// Loads a text model (no `file`: the listing picks it) and an encoder, and uses them.
const run = async ({ revision }) => {
  const { pipeline } = await import('./pkg/index.js');
  const base = { endpoint: location.origin, device: 'cpu' };
  const out = {};
  try {
    const gen = await pipeline('text-generation', 'hugrt-test/tiny-llama', { ...base, ...(revision ? { revision } : {}) });
    out.text = (await gen.generate('Hello', { maxTokens: 6 })).text;
    out.commit = gen.info.commit;
    gen.dispose();
    const cls = await pipeline('text-classification', 'hugrt-test/tiny-bert-cls', base);
    out.scores = await cls.classify('a good film', { topK: 3 });
    cls.dispose();
  } catch (e) {
    out.error = `${e.code}: ${e.message}`;
  }
  try { await pipeline('text-classification', 'hugrt-test/tiny-distilbert-cls', base); out.never = 'loaded'; } catch (e) { out.never = e.code; }
  return out;
};

test('a stored model loads with the hub unreachable, and a pinned commit asks nothing of it', { timeout: 300_000 }, async () => {
  const online = await inFreshPage(run, {});
  assert.equal(online.error, undefined, online.error);
  assert.equal(online.never, 'loaded', 'the third repo loads online');
  // The third repo is deleted from the store: the one never stored while offline.
  await inFreshPage(async () => {
    const { cache } = await import('./pkg/index.js');
    for (const r of await cache.list()) if (r.repo === 'hugrt-test/tiny-distilbert-cls') await cache.delete(r.repo, r.commit);
  });
  spaces.hub.offline = true;
  try {
    const offline = await inFreshPage(run, {});
    assert.equal(offline.error, undefined, offline.error);
    assert.deepEqual({ text: offline.text, commit: offline.commit, scores: offline.scores }, { text: online.text, commit: online.commit, scores: online.scores });
    assert.equal(offline.never, 'NetworkError');
    const pinned = await inFreshPage(run, { revision: online.commit });
    assert.equal(pinned.error, undefined, pinned.error);
    assert.equal(pinned.text, online.text);
  } finally {
    spaces.hub.offline = false;
  }
  spaces.hub.requests.length = 0;
  const pinned = await inFreshPage(async (commit) => {
    const { pipeline } = await import('./pkg/index.js');
    const gen = await pipeline('text-generation', 'hugrt-test/tiny-llama', { endpoint: location.origin, device: 'cpu', revision: commit });
    const text = (await gen.generate('Hello', { maxTokens: 6 })).text;
    gen.dispose();
    return text;
  }, online.commit);
  assert.equal(pinned, online.text);
  assert.deepEqual(spaces.hub.requests.filter((p) => p.includes('tiny-llama')), [], 'a stored commit is not asked of the hub');
});
