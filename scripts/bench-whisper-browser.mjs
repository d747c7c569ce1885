// Whisper's real-time factor in headless Chromium through pipeline('automatic-speech-recognition')
// (the local hub mirror, weights streamed into IndexedDB): per device and clip, seconds of audio
// per second of compute, the text, and the load time. A benchmark, not a test.
//   node scripts/bench-whisper-browser.mjs DEVICE:CLIP… (e.g. cpu:fox webgpu:fox); clips of tests/fixtures/whisper/speech
import { readFileSync } from 'node:fs';
import { openBrowser, serveWithModels } from '../tests/e2e/browser.mjs';

const speech = 'tests/fixtures/whisper/speech';
const runs = process.argv.slice(2).map((a) => a.split(':'));
const { server, url } = await serveWithModels();
const browser = await openBrowser();
try {
  for (const [device, clip] of runs) {
    const page = await browser.newPage();
    await page.goto(`${url}search-corpus.json`);
    const row = await page.evaluate(async ({ device, wav }) => {
      const { pipeline } = await import('./pkg/index.js');
      const t0 = performance.now();
      const asr = await pipeline('automatic-speech-recognition', 'openai/whisper-tiny.en', { endpoint: location.origin, device });
      const loadS = (performance.now() - t0) / 1000;
      const r = await asr.transcribe(new Uint8Array(wav));
      asr.dispose();
      return { device: `${asr.info.device} (${asr.info.adapter})`, loadS: +loadS.toFixed(2), audioS: +r.timings.audio_s.toFixed(1), realTimeFactor: +r.timings.real_time_factor.toFixed(3), encodeMs: Math.round(r.timings.encode_ms), decodeMs: Math.round(r.timings.decode_ms), tokens: r.timings.tokens, text: r.text };
    }, { device, wav: [...readFileSync(`${speech}/${clip}.wav`)] });
    console.log(JSON.stringify({ where: 'chromium', clip, ...row }));
    await page.close();
  }
} finally {
  await browser.close();
  server.close();
}
