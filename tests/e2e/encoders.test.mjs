// End to end: the encoder tasks through pipeline() in Chromium, from the local hub mirror (the tiny
// random checkpoints of tests/fixtures, downloaded into IndexedDB): a PNG and a WAV decoded and
// pre-processed in the engine give transformers' own pipeline scores (its PIL image processors and
// ASTFeatureExtractor, float64; tests/fixtures/pipelines/expected.json) within 1e-3, the same
// label order; fill-mask and text classification likewise; feature extraction through each
// sentence-transformers module folder of tests/fixtures/sentence gives sentence-transformers'
// embeddings within 1e-5 (pooling modes, Dense, Normalize, max_seq_length, prompts), and a tiny
// cross-encoder's query-passage pairs ({ text, text_pair }) the pipeline's sigmoid scores; a tiny
// RoBERTa's fill-mask, a tiny XLM-R's pair scores and mean-pooled embeddings, and a tiny MPNet's
// embeddings (relative position bias) and a tiny ModernBERT's (RoPE, local windows); on WebGPU (SwiftShader), on the CPU
// fallback and in Worker mode. Then the vision and sound spaces run and show their results
// (screenshots in artifacts/e2e/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();
const expected = JSON.parse(readFileSync('tests/fixtures/pipelines/expected.json', 'utf8'));
const png = [...readFileSync('tests/fixtures/pipelines/sample.png')];
const wav = [...readFileSync('tests/fixtures/pipelines/sample.wav')];
const SCORE_TOL = 1e-3;
// sentence-transformers' own embeddings (float64) of its module folders over the tiny BERT
// (tests/fixtures/sentence, scripts/fixtures/make_sentence_fixtures.py).
const sentence = JSON.parse(readFileSync('tests/fixtures/sentence/expected.json', 'utf8'));
const EMBED_TOL = 1e-5;
// A tiny cross-encoder's query-passage scores by transformers' pipeline and CrossEncoder
// (tests/fixtures/reranker, scripts/fixtures/make_reranker_fixtures.py).
const reranker = JSON.parse(readFileSync('tests/fixtures/reranker/expected.json', 'utf8'));
// Tiny random DistilBERTs' pipeline scores by transformers (tests/fixtures/distilbert).
const distil = JSON.parse(readFileSync('tests/fixtures/distilbert/expected.json', 'utf8'));
// A tiny random RoBERTa (masked LM) and XLM-R (one-label reranker) by transformers (tests/fixtures/roberta).
const roberta = JSON.parse(readFileSync('tests/fixtures/roberta/expected.json', 'utf8'));

function sameEmbeddings(what, got, want) {
  assert.deepEqual(got.dims, [want.length, want[0].length], `${what}: dims`);
  for (const [i, row] of want.entries()) {
    for (const [d, w] of row.entries()) {
      const g = got.data[i * row.length + d];
      assert.ok(Math.abs(g - w) <= EMBED_TOL * Math.max(1, Math.abs(w)), `${what} text ${i} value ${d}: ${g} vs ${w}`);
    }
  }
}

function sameScores(what, got, want) {
  assert.equal(got.length, want.length, `${what}: ${JSON.stringify(got)}`);
  for (const [i, w] of want.entries()) {
    assert.equal(got[i].label ?? got[i].token_str, w.label ?? w.token_str, `${what} #${i}: ${JSON.stringify(got)}`);
    assert.ok(Math.abs(got[i].score - w.score) <= SCORE_TOL, `${what} #${i}: ${got[i].score} vs ${w.score}`);
  }
}

async function runAll(device, worker) {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}index.html`);
  const out = await page.evaluate(async ({ png, wav, zs, mask, text, device, worker, folders, texts, pairs, distilTexts, distilMask, robertaMask, xlmrTexts, xlmrPairs, mpnetTexts, modernTexts }) => {
    const { pipeline } = await import('./pkg/index.js');
    const options = { endpoint: location.origin, device, worker };
    const r = {};
    const vit = await pipeline('image-classification', 'hugrt-test/tiny-vit', options);
    r.image = await vit.classify(new Blob([new Uint8Array(png)], { type: 'image/png' }), { topK: 5 });
    r.vitInfo = vit.info;
    vit.dispose();
    const clip = await pipeline('zero-shot-image-classification', 'hugrt-test/tiny-clip', options);
    r.zeroShot = await clip.classify(new Uint8Array(png), zs.labels, { hypothesisTemplate: zs.template });
    clip.dispose();
    const ast = await pipeline('audio-classification', 'hugrt-test/tiny-ast', options);
    r.audio = await ast.classify(new Uint8Array(wav), { topK: 5 });
    try { await ast.classify(new Float32Array([NaN, 1, 2])); } catch (e) { r.nanError = e.code ?? e.name; }
    ast.dispose();
    const mlm = await pipeline('fill-mask', 'hugrt-test/tiny-bert-mlm', options);
    r.fill = await mlm.fill(mask, { topK: 5 });
    try { await mlm.fill('no mask here'); } catch (e) { r.noMaskError = e.code ?? e.name; }
    mlm.dispose();
    const cls = await pipeline('text-classification', 'hugrt-test/tiny-bert-cls', options);
    r.text = await cls.classify(text, { topK: 3 });
    cls.dispose();
    const reranker = await pipeline('text-classification', 'hugrt-test/tiny-reranker', options);
    r.rerank = await reranker.classify(pairs.map(([a, b]) => ({ text: a, text_pair: b })));
    r.rerankOne = await reranker.classify(pairs[0][0]);
    reranker.dispose();
    const distilCls = await pipeline('text-classification', 'hugrt-test/tiny-distilbert-cls', options);
    r.distil = await distilCls.classify(distilTexts, { topK: 3 });
    r.distilInfo = distilCls.info;
    distilCls.dispose();
    const distilMlm = await pipeline('fill-mask', 'hugrt-test/tiny-distilbert-mlm', options);
    r.distilFill = await distilMlm.fill(distilMask, { topK: 5 });
    distilMlm.dispose();
    const robertaMlm = await pipeline('fill-mask', 'hugrt-test/tiny-roberta-mlm', options);
    r.robertaFill = await robertaMlm.fill(robertaMask, { topK: 5 });
    r.robertaInfo = robertaMlm.info;
    robertaMlm.dispose();
    const xlmr = await pipeline('text-classification', 'hugrt-test/tiny-xlmr-cls', options);
    r.xlmrPairs = await xlmr.classify(xlmrPairs.map(([a, b]) => ({ text: a, text_pair: b })));
    r.xlmrInfo = xlmr.info;
    xlmr.dispose();
    const plain = ({ data, dims }) => ({ data: Array.from(data), dims });
    const xlmrEmbed = await pipeline('feature-extraction', 'hugrt-test/tiny-xlmr-cls', options);
    r.xlmrEmbeddings = plain(await xlmrEmbed.embed(xlmrTexts));
    xlmrEmbed.dispose();
    const mpnet = await pipeline('feature-extraction', 'hugrt-test/tiny-mpnet', options);
    r.mpnetEmbeddings = plain(await mpnet.embed(mpnetTexts));
    r.mpnetInfo = mpnet.info;
    mpnet.dispose();
    const modern = await pipeline('feature-extraction', 'hugrt-test/tiny-modernbert', options);
    r.modernEmbeddings = plain(await modern.embed(modernTexts));
    modern.dispose();
    r.sentence = {};
    for (const name of folders) {
      const st = await pipeline('feature-extraction', `hugrt-test/tiny-st-${name}`, options);
      const e = { info: st.info, plain: plain(await st.embed(texts, { prompt: '' })) };
      if (st.info.prompts?.query) e.query = plain(await st.embed(texts, { promptName: 'query' }));
      if (st.info.defaultPromptName) e.default = plain(await st.embed(texts));
      try { await st.embed(texts, { promptName: 'no-such-prompt' }); } catch (err) { e.badPrompt = err.code ?? err.name; }
      st.dispose();
      r.sentence[name] = e;
    }
    return r;
  }, { png, wav, zs: expected['zero-shot-image-classification'], mask: expected['fill-mask'].text, text: expected['text-classification'].text, device, worker,
       folders: Object.keys(sentence.folders), texts: sentence.texts, pairs: reranker.pairs,
       distilTexts: distil.texts, distilMask: distil.fill_mask.text,
       robertaMask: roberta.mlm.fill_mask.text, xlmrTexts: roberta.xlmr_cls.texts, xlmrPairs: roberta.xlmr_cls.pairs.map((p) => p.texts),
       mpnetTexts: roberta.mpnet.texts, modernTexts: roberta.modernbert.texts });
  console.log(`${device}${worker ? ' (worker)' : ''}: ${out.vitInfo.adapter}; image ${JSON.stringify(out.image[0])}, audio ${JSON.stringify(out.audio[0])}`);
  sameScores('image-classification', out.image, expected['image-classification']);
  sameScores('zero-shot', out.zeroShot, expected['zero-shot-image-classification'].results);
  sameScores('audio-classification', out.audio, expected['audio-classification']);
  sameScores('fill-mask', out.fill, expected['fill-mask'].results);
  for (const [i, w] of expected['fill-mask'].results.entries()) assert.equal(out.fill[i].sequence, w.sequence);
  sameScores('text-classification', out.text, expected['text-classification'].results);
  for (const [i, want] of reranker.pipeline.entries()) sameScores(`rerank pair ${i}`, out.rerank[i], [want]);
  sameScores('rerank one text', out.rerankOne, [reranker.single]);
  assert.equal(out.distilInfo.architecture, 'distilbert');
  for (const [i, want] of distil.pipeline.entries()) sameScores(`DistilBERT text ${i}`, out.distil[i], want);
  sameScores('DistilBERT fill-mask', out.distilFill, distil.fill_mask.results);
  assert.equal(out.robertaInfo.architecture, 'roberta');
  sameScores('RoBERTa fill-mask', out.robertaFill, roberta.mlm.fill_mask.results);
  assert.equal(out.xlmrInfo.architecture, 'xlm-roberta');
  for (const [i, p] of roberta.xlmr_cls.pairs.entries()) sameScores(`XLM-R pair ${i}`, out.xlmrPairs[i], [{ label: 'LABEL_0', score: p.score }]);
  sameEmbeddings(`XLM-R mean-pooled (${device})`, out.xlmrEmbeddings, roberta.xlmr_cls.embeddings);
  sameEmbeddings(`MPNet mean-pooled (${device})`, out.mpnetEmbeddings, roberta.mpnet.embeddings);
  sameEmbeddings(`ModernBERT mean-pooled (${device})`, out.modernEmbeddings, roberta.modernbert.embeddings);
  for (const [name, want] of Object.entries(sentence.folders)) {
    const got = out.sentence[name];
    assert.equal(got.info.dims, want.dims, `${name}: info.dims`);
    assert.equal(got.info.maxSeqLength, want.max_seq_length, `${name}: info.maxSeqLength`);
    sameEmbeddings(`${name} (${device})`, got.plain, want.embeddings);
    if (want.query_embeddings) sameEmbeddings(`${name} with prompt "query" (${device})`, got.query, want.query_embeddings);
    if (want.default_prompt_embeddings) sameEmbeddings(`${name} with its default prompt (${device})`, got.default, want.default_prompt_embeddings);
    assert.equal(got.badPrompt, 'BadInput', `${name}: an unknown prompt name`);
  }
  assert.equal(out.vitInfo.device, device === 'cpu' ? 'cpu' : 'webgpu');
  assert.ok(out.nanError, 'NaN samples are refused');
  assert.ok(out.noMaskError, 'a text without a mask is refused');
  assert.deepEqual(problems, []);
  await page.close();
}

test('encoder pipelines on WebGPU match transformers end to end', { timeout: 600_000 }, () => runAll('webgpu', false));
test('encoder pipelines on the CPU fallback match transformers end to end', { timeout: 600_000 }, () => runAll('cpu', false));
// Worker mode on WebGPU, named: 'auto' takes the CPU on this software adapter (tests/e2e/cpu.test.mjs).
test('encoder pipelines in Worker mode match transformers end to end', { timeout: 600_000 }, () => runAll('webgpu', true));

for (const [name, url, result] of [
  ['vision space (ViT)', 'vision.html?autorun', 'visionResult'],
  ['vision space (CLIP zero-shot)', 'vision.html?mode=clip&autorun', 'visionResult'],
  ['sound space (AST)', 'sound.html?autorun', 'soundResult'],
]) {
  test(`${name} loads, runs and shows its result`, { timeout: 600_000 }, async () => {
    const page = await spaces.browser.newPage();
    const problems = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    await page.goto(`${spaces.url}${url}`);
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 590_000 });
    await page.screenshot({ path: `${ARTIFACTS}/${name.replace(/[^a-z]+/gi, '-')}.png`, fullPage: true });
    const status = `${await page.textContent('#status')} / ${await page.textContent('#stats')}`;
    assert.equal(await page.evaluate(() => document.body.dataset.status), 'done', status);
    const shown = await page.$$eval('#results tbody tr', (rows) => rows.map((r) => r.textContent));
    const got = await page.evaluate((k) => window[k], result);
    assert.ok(got.length >= 1 && shown.length === got.length, `${shown.length} rows for ${got.length} results`);
    const sum = got.reduce((s, r) => s + r.score, 0);
    assert.ok(sum <= 1 + 1e-5 && got.every((r, i) => i === 0 || r.score <= got[i - 1].score), JSON.stringify(got));
    assert.deepEqual(problems, []);
    await page.close();
  });
}
