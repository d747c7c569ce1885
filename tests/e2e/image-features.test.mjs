// End to end: CLIP's embeddings through pipeline('image-feature-extraction') in Chromium, from the
// local hub mirror: the tiny CLIP's image and text embeddings equal transformers' CLIPModel
// image_embeds / text_embeds (float64; tests/fixtures/pipelines/clip_features.json, made by
// scripts/fixtures/make_clip_features_fixture.py) within 1e-4, on WebGPU (SwiftShader), on the CPU
// and in Worker mode; the transformers.js call gives a Tensor of the same values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();
const png = [...readFileSync('tests/fixtures/pipelines/sample.png')];
const want = JSON.parse(readFileSync('tests/fixtures/pipelines/clip_features.json', 'utf8'));
const TOL = 1e-4;

function close(what, got, expected) {
  assert.equal(got.length, expected.length, what);
  const worst = Math.max(...expected.map((w, i) => Math.abs(got[i] - w)));
  assert.ok(worst <= TOL, `${what}: max |error| ${worst}`);
}

for (const [device, worker] of [['webgpu', false], ['cpu', false], ['cpu', true]]) {
  test(`CLIP image and text embeddings as transformers (${device}${worker ? ', worker' : ''})`, { timeout: 300_000 }, async () => {
    const page = await spaces.browser.newPage();
    await page.goto(`${spaces.url}index.html`);
    const r = await page.evaluate(async ({ png, texts, device, worker }) => {
      const { pipeline } = await import('./pkg/index.js');
      const clip = await pipeline('image-feature-extraction', 'hugrt-test/tiny-clip', { endpoint: location.origin, device, worker });
      const image = new Blob([new Uint8Array(png)], { type: 'image/png' });
      const img = await clip.embed(image);
      const txt = await clip.embedTexts(texts);
      const tensor = await clip(image);
      let empty;
      try { await clip.embedTexts([]); } catch (e) { empty = e.code; }
      clip.dispose();
      return { image: Array.from(img.data), imageDims: img.dims, texts: Array.from(txt.data), textDims: txt.dims, tensor: { dims: tensor.dims, data: Array.from(tensor.data) }, empty, device: clip.info.device };
    }, { png, texts: want.texts, device, worker });
    const d = want.image_embeds.length;
    assert.deepEqual(r.imageDims, [1, d]);
    close('image_embeds', r.image, want.image_embeds);
    assert.deepEqual(r.textDims, [want.texts.length, d]);
    want.text_embeds.forEach((row, i) => close(`text_embeds[${i}]`, r.texts.slice(i * d, (i + 1) * d), row));
    assert.deepEqual(r.tensor, { dims: [1, d], data: r.image });
    assert.equal(r.empty, 'Usage');
    await page.close();
  });
}
