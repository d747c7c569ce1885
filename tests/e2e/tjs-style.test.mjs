// End to end: every pipeline called as transformers.js 4.3.1 calls its own, in Chromium on the CPU
// backend, from the local hub mirror: the option names it takes and the shapes it returns, as its
// sources define them (node_modules/@huggingface/transformers/src/pipelines/*.js, `_call`):
// text-generation `[{ generated_text }]` (the prompt + continuation for text, the messages + the
// answer for chat; a list per input when batched); feature-extraction a Tensor `{ type, data,
// dims, tolist() }` of dims [texts, hidden]; image/audio classification `[{ label, score }]` best
// first (`top_k` 5), a list per input when batched; zero-shot `[{ score, label }]` for every label,
// best first; fill-mask `[{ score, token, token_str, sequence }]` (`top_k` 5); text-classification
// flat with `top_k` 1 and a list per text otherwise; speech `{ text }` or `{ text, chunks: [{
// timestamp, text }] }`; `progress_callback` events initiate → download → progress → done per
// file, then ready. The values are the pipelines' own (checked against transformers and
// sentence-transformers in the other end-to-end tests): here they must equal hugrt's own calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();
const png = [...readFileSync('tests/fixtures/pipelines/sample.png')];
const wav = [...readFileSync('tests/fixtures/pipelines/sample.wav')];

test('every pipeline is callable as transformers.js documents it', { timeout: 900_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}index.html`);
  const r = await page.evaluate(async ({ png, wav }) => {
    const { pipeline, Tensor } = await import('./pkg/index.js');
    const options = { endpoint: location.origin, device: 'wasm' };
    const out = {};
    const events = [];
    const gen = await pipeline('text-generation', 'hugrt-test/tiny-llama', { ...options, progress_callback: (e) => events.push(e) });
    out.events = events;
    out.callable = typeof gen === 'function' && typeof gen.generate === 'function' && gen.task === 'text-generation';
    const own = await gen.generate('Hello', { maxTokens: 5, temperature: 0 });
    out.gen = { one: await gen('Hello', { max_new_tokens: 5 }), own: own.text, bare: await gen('Hello', { max_new_tokens: 5, return_full_text: false }),
      batch: await gen(['Hello', 'Hi'], { max_new_tokens: 3 }), chat: await gen([{ role: 'user', content: 'Hello' }], { max_new_tokens: 3 }),
      sampled: await gen('Hello', { max_new_tokens: 5, do_sample: true, temperature: 1.5, top_k: 5, seed: 3 }) };
    gen.dispose();
    const extractor = await pipeline('feature-extraction', 'sentence-transformers/all-MiniLM-L6-v2', options);
    const tensor = await extractor(['A cat sits.', 'A dog runs.'], { pooling: 'mean', normalize: true });
    const mine = await extractor.embed(['A cat sits.', 'A dog runs.']);
    const single = await extractor('A cat sits.', { pooling: 'mean', normalize: true });
    out.embed = { isTensor: tensor instanceof Tensor, type: tensor.type, dims: tensor.dims, size: tensor.size, rows: tensor.tolist().map((row) => row.length),
      same: tensor.data.every((v, i) => v === mine.data[i]), singleDims: single.dims, firstRow: Array.from(single.data.slice(0, 4)), ownFirst: Array.from(mine.data.slice(0, 4)) };
    for (const pooling of ['none', 'cls']) { try { await extractor('x', { pooling }); out.embed[pooling] = 'accepted'; } catch (e) { out.embed[pooling] = e.code; } }
    extractor.dispose();
    const image = new Blob([new Uint8Array(png)], { type: 'image/png' });
    const vit = await pipeline('image-classification', 'hugrt-test/tiny-vit', options);
    out.vit = { one: await vit(image), own: await vit.classify(image, { topK: 5 }), top1: await vit(image, { top_k: 1 }), batch: await vit([image, image], { top_k: 2 }) };
    vit.dispose();
    const clip = await pipeline('zero-shot-image-classification', 'hugrt-test/tiny-clip', options);
    out.clip = { one: await clip(image, ['cat', 'dog', 'car']), own: await clip.classify(image, ['cat', 'dog', 'car'], { hypothesisTemplate: 'This is a photo of {}' }) };
    clip.dispose();
    const ast = await pipeline('audio-classification', 'hugrt-test/tiny-ast', options);
    out.ast = { one: await ast(new Uint8Array(wav)), own: await ast.classify(new Uint8Array(wav), { topK: 5 }) };
    ast.dispose();
    const mlm = await pipeline('fill-mask', 'hugrt-test/tiny-bert-mlm', options);
    out.mlm = { one: await mlm('paris is the [MASK] of france.'), own: await mlm.fill('paris is the [MASK] of france.', { topK: 5 }),
      batch: await mlm(['paris is the [MASK] of france.', 'the [MASK] sat.'], { top_k: 2 }) };
    mlm.dispose();
    const cls = await pipeline('text-classification', 'hugrt-test/tiny-bert-cls', options);
    out.cls = { one: await cls('a good film'), two: await cls('a good film', { top_k: 2 }), batch: await cls(['a good film', 'a bad film']),
      batch2: await cls(['a good film', 'a bad film'], { top_k: 2 }), all: await cls('a good film', { top_k: null }), own: await cls.classify('a good film', { topK: 2 }), labels: cls.info.labels };
    cls.dispose();
    const asr = await pipeline('automatic-speech-recognition', 'hugrt-test/tiny-whisper', options);
    const audio = new Float32Array(16000).map((_, i) => Math.sin(i / 7) * 0.1);
    out.asr = { one: await asr(audio, { max_new_tokens: 8 }), own: (await asr.transcribe(audio, { maxNewTokens: 8 })).text,
      timed: await asr(audio, { return_timestamps: true, language: 'de', max_new_tokens: 8 }) };
    asr.dispose();
    return out;
  }, { png, wav });
  console.log(JSON.stringify({ gen: r.gen, cls: r.cls, asr: r.asr, events: r.events.slice(0, 6) }).slice(0, 3000));
  assert.equal(r.callable, true, 'the pipeline is a function with its methods');
  // progress_callback: per file initiate → download → progress… → done, then ready last.
  const files = [...new Set(r.events.filter((e) => e.file).map((e) => e.file))];
  assert.ok(files.includes('model.safetensors'), JSON.stringify(files));
  for (const file of files) {
    const seq = r.events.filter((e) => e.file === file).map((e) => e.status);
    assert.deepEqual(seq.slice(0, 2), ['initiate', 'download'], file);
    assert.equal(seq.at(-1), 'done', file);
    assert.ok(seq.slice(2, -1).every((s) => s === 'progress') && seq.includes('progress'), `${file}: ${seq}`);
    const last = r.events.filter((e) => e.file === file && e.status === 'progress').at(-1);
    assert.equal(last.progress, 100);
  }
  assert.deepEqual(r.events.at(-1), { status: 'ready', task: 'text-generation', model: 'hugrt-test/tiny-llama' });
  // text-generation
  assert.deepEqual(r.gen.one, [{ generated_text: `Hello${r.gen.own}` }]);
  assert.deepEqual(r.gen.bare, [{ generated_text: r.gen.own }]);
  assert.equal(r.gen.batch.length, 2);
  for (const [i, p] of ['Hello', 'Hi'].entries()) {
    assert.equal(r.gen.batch[i].length, 1);
    assert.ok(r.gen.batch[i][0].generated_text.startsWith(p));
  }
  assert.equal(r.gen.chat.length, 1);
  assert.deepEqual(r.gen.chat[0].generated_text.slice(0, 1), [{ role: 'user', content: 'Hello' }]);
  assert.equal(r.gen.chat[0].generated_text[1].role, 'assistant');
  assert.equal(typeof r.gen.chat[0].generated_text[1].content, 'string');
  assert.ok(r.gen.sampled[0].generated_text.startsWith('Hello'));
  // feature-extraction
  assert.deepEqual({ isTensor: r.embed.isTensor, type: r.embed.type, dims: r.embed.dims, size: r.embed.size, rows: r.embed.rows, same: r.embed.same },
    { isTensor: true, type: 'float32', dims: [2, 384], size: 768, rows: [384, 384], same: true });
  assert.deepEqual(r.embed.singleDims, [1, 384]);
  assert.deepEqual(r.embed.firstRow, r.embed.ownFirst);
  assert.equal(r.embed.none, 'Unsupported');
  assert.equal(r.embed.cls, 'Unsupported');
  // classification: [{ label, score }], best first, top_k 5 by default; a list per input in a batch
  const labelScores = (list, n) => {
    assert.equal(list.length, n, JSON.stringify(list));
    for (const x of list) assert.deepEqual(Object.keys(x).sort(), ['label', 'score']);
    for (let i = 1; i < list.length; i++) assert.ok(list[i - 1].score >= list[i].score);
  };
  labelScores(r.vit.one, Math.min(5, r.vit.own.length));
  assert.deepEqual(r.vit.one, r.vit.own);
  labelScores(r.vit.top1, 1);
  assert.equal(r.vit.batch.length, 2);
  r.vit.batch.forEach((l) => labelScores(l, 2));
  labelScores(r.clip.one, 3);
  assert.deepEqual(r.clip.one, r.clip.own);
  labelScores(r.ast.one, Math.min(5, r.ast.own.length));
  assert.deepEqual(r.ast.one, r.ast.own);
  // fill-mask
  assert.equal(r.mlm.one.length, 5);
  for (const x of r.mlm.one) assert.deepEqual(Object.keys(x).sort(), ['score', 'sequence', 'token', 'token_str']);
  assert.deepEqual(r.mlm.one, r.mlm.own);
  assert.deepEqual(r.mlm.batch.map((l) => l.length), [2, 2]);
  // text-classification: top_k 1 flat (one text: an array of one), else a list per text
  labelScores(r.cls.one, 1);
  assert.deepEqual(r.cls.one[0], r.cls.own[0]);
  labelScores(r.cls.two, 2);
  assert.deepEqual(r.cls.two, r.cls.own);
  assert.equal(r.cls.batch.length, 2);
  r.cls.batch.forEach((x) => assert.deepEqual(Object.keys(x).sort(), ['label', 'score']));
  assert.equal(r.cls.batch2.length, 2);
  r.cls.batch2.forEach((l) => labelScores(l, 2));
  labelScores(r.cls.all, r.cls.labels.length);
  // speech
  assert.deepEqual(Object.keys(r.asr.one), ['text']);
  assert.equal(r.asr.one.text, r.asr.own);
  assert.deepEqual(Object.keys(r.asr.timed), ['text', 'chunks']);
  for (const c of r.asr.timed.chunks) {
    assert.deepEqual(Object.keys(c), ['timestamp', 'text']);
    assert.equal(c.timestamp.length, 2);
  }
  assert.deepEqual(problems, []);
  await page.close();
});
