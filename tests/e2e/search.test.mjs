// End to end: the semantic-search space with the real all-MiniLM-L6-v2 from the local hub mirror
// (downloaded into IndexedDB, loaded from the store onto WebGPU on SwiftShader): the embeddings of
// three reference sentences match sentence-transformers' (cosine ≥ 0.999, as natively), and a
// query about cooking pasta ranks the pasta sentence first.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();

test('search space: MiniLM in the browser ranks the known pair first and matches sentence-transformers', { timeout: 600_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  // SwiftShader embeds a sentence in seconds: 6 sentences of the corpus (a baking distractor among them).
  await page.goto(`${spaces.url}search.html?autorun&n=6`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 590_000 });
  await page.screenshot({ path: `${ARTIFACTS}/search.png`, fullPage: true });
  const status = await page.textContent('#status');
  console.log(`status: ${status}\nstats: ${await page.textContent('#stats')}`);
  assert.equal(await page.evaluate(() => document.body.dataset.status), 'done', status);
  const ranked = await page.evaluate(() => window.searchResult);
  assert.equal(ranked[0].text, 'Boil the spaghetti in salted water for about ten minutes.');
  assert.ok(ranked[0].score - ranked[1].score > 0.1, JSON.stringify(ranked.slice(0, 3)));

  const reference = JSON.parse(readFileSync('tests/fixtures/bert/minilm/expected.json', 'utf8'));
  const cosines = await page.evaluate(async ({ texts, embeddings }) => {
    const { pipeline } = await import('./pkg/index.js');
    const embedder = await pipeline('feature-extraction', 'sentence-transformers/all-MiniLM-L6-v2', { endpoint: location.origin });
    const { data, dims: [n, d] } = await embedder.embed(texts);
    embedder.dispose();
    return Array.from({ length: n }, (_, i) => {
      const row = data.subarray(i * d, (i + 1) * d);
      const want = embeddings[i];
      const dot = row.reduce((s, v, j) => s + v * want[j], 0);
      const norm = Math.sqrt(want.reduce((s, v) => s + v * v, 0)) * Math.sqrt(row.reduce((s, v) => s + v * v, 0));
      return dot / norm;
    });
  }, { texts: reference.texts.slice(0, 3), embeddings: reference.embeddings.slice(0, 3) });
  console.log(`cosines: ${cosines.map((c) => c.toFixed(6)).join(' ')}`);
  assert.equal(cosines.length, 3);
  for (const c of cosines) assert.ok(c >= 0.999, `cosine ${c}`);
  assert.deepEqual(problems, []);
  await page.close();
});
