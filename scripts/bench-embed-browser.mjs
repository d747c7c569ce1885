// all-MiniLM-L6-v2 embeddings/s in headless Chromium (WebGPU on SwiftShader), hugrt beside
// transformers.js on the same workload in the same run: `pipeline('feature-extraction')` with mean
// pooling and normalisation over the 32 templated sentences of ../shared/peers/tjs.mjs (11-16
// words, 19 tokens padded), one warm-up, then the median of RUNS batches; one sentence's latency.
// hugrt loads from the local hub mirror (scripts/models.sh) through IndexedDB, as a user would.
// With --peer, the transformers.js harness (PEERS_TJS: ../shared/peers/tjs.mjs, set up as its
// README says) runs next, in a fresh browser, with the same RUNS, and the ratio is printed.
// A benchmark, not a test: it prints figures and judges nothing.
//   node scripts/bench-embed-browser.mjs [--device webgpu|cpu] [--peer] [--runs N]
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { openBrowser, serveWithModels } from '../tests/e2e/browser.mjs';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const device = arg('--device', 'webgpu');
const runs = Number(arg('--runs', 3));
const peer = process.argv.includes('--peer');

// The peer harness's workload, built the same way (tjs.mjs: SUBJ, VERB, OBJ, BATCH, ONE).
const SUBJ = ['The young doctor', 'My neighbour', 'A small robot', 'The old fisherman', 'Our new teacher', 'The tired pilot',
  'A curious student', 'The city council'];
const VERB = ['carefully explained the results of', 'quietly walked away from', 'happily talked about', 'finally agreed to review'];
const OBJ = ['the long report before lunch on Monday.', 'the broken bridge near the river.', 'a strange noise in the kitchen last night.',
  'the summer festival in the park.'];
const BATCH = Array.from({ length: 32 }, (_, i) => `${SUBJ[i % 8]} ${VERB[(i >> 3) % 4]} ${OBJ[(i + (i >> 3)) % 4]}`);
const ONE = 'The quick brown fox jumps over the lazy dog near the river bank.';
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

const { server, url } = await serveWithModels();
const browser = await openBrowser();
let hugrt;
try {
  const page = await browser.newPage();
  await page.goto(`${url}search-corpus.json`);
  hugrt = await page.evaluate(async ({ device, runs, batch, one }) => {
    const { pipeline } = await import('./pkg/index.js');
    let t = performance.now();
    const p = await pipeline('feature-extraction', 'sentence-transformers/all-MiniLM-L6-v2', { endpoint: location.origin, device });
    const loadMs = performance.now() - t;
    t = performance.now();
    await p.embed(batch);
    const warmupMs = performance.now() - t;
    const batchMs = [];
    for (let i = 0; i < runs; i++) {
      t = performance.now();
      await p.embed(batch);
      batchMs.push(performance.now() - t);
    }
    await p.embed([one]);
    t = performance.now();
    await p.embed([one]);
    const oneMs = performance.now() - t;
    const info = p.info;
    p.dispose();
    return { device: `${info.device} (${info.adapter})`, loadMs, warmupMs, batchMs, oneMs };
  }, { device, runs, batch: BATCH, one: ONE });
} finally {
  await browser.close();
  server.close();
}
const hugrtPerS = 32000 / median(hugrt.batchMs);
console.log(JSON.stringify({ hugrt: { ...hugrt, embeddingsPerS: +hugrtPerS.toFixed(3) } }));

if (peer) {
  const harness = resolve(process.env.PEERS_TJS ?? '../shared/peers/tjs.mjs');
  if (!existsSync(harness)) throw new Error(`no transformers.js harness at ${harness} (PEERS_TJS)`);
  const out = join(os.tmpdir(), 'hugrt-tjs-results.json');
  const config = device === 'cpu' ? 'wasm-fp32' : 'webgpu-fp32';
  execFileSync('node', [harness, config], { stdio: 'inherit', env: { ...process.env, RUNS: String(runs), LAT_RUNS: '2', OUT: out } });
  const tjs = JSON.parse(readFileSync(out, 'utf8')).configs[config];
  if (tjs.error) throw new Error(`transformers.js: ${tjs.error}`);
  console.table([
    { runtime: 'hugrt', device: hugrt.device, 'embeddings/s': +hugrtPerS.toFixed(3), 'one sentence ms': Math.round(hugrt.oneMs) },
    { runtime: `transformers.js ${tjs.tjs_version} ${config}`, device: tjs.adapter?.arch ?? config, 'embeddings/s': tjs.embeddings_per_s, 'one sentence ms': Math.round(tjs.latency_ms.median) },
  ]);
  console.log(`ratio hugrt / transformers.js: ${(hugrtPerS / tjs.embeddings_per_s).toFixed(2)}x`);
}
