// The browser half of scripts/big-model.sh: node scripts/big-model-browser.mjs MIRROR FILE.
// A persistent Chromium profile in a temporary folder (IndexedDB on disk, not in memory), the
// mirror on the page's origin, one pipeline: download into the store, load onto WebGPU, a prefill
// and one decode step; the figures as one JSON line.
import { chromium } from 'playwright-core';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM, CHROMIUM_ARGS } from '../tests/e2e/browser.mjs';
import { startServer } from './serve.mjs';

const [mirror, file] = process.argv.slice(2);
const REPO = 'hugrt-test/big-7b';
const bytes = (await stat(join(mirror, REPO, file))).size;
const site = await startServer({ root: 'www', mirror });
const profile = await mkdtemp(join(tmpdir(), 'hugrt-big-'));
const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS });
try {
  const page = await context.newPage();
  page.on('console', (m) => console.log(`page: ${m.text()}`));
  await page.goto(`${site.url}playground.html`);
  const r = await page.evaluate(async ({ repo, file }) => {
    const { pipeline, wasmMemoryBytes } = await import('./pkg/index.js');
    const t = { start: performance.now() };
    let last = 0;
    const onProgress = (p) => {
      if (p.status === 'upload' && !t.downloaded) t.downloaded = performance.now();
      if (p.status === 'download' && p.loaded - last > 1e9) { last = p.loaded; console.log(`downloaded ${(p.loaded / 1e9).toFixed(1)} GB`); }
    };
    const llm = await pipeline('text-generation', repo, { endpoint: location.origin, file, device: 'webgpu', context: 64, onProgress });
    t.loaded = performance.now();
    const afterLoad = await wasmMemoryBytes();
    const g = await llm.generate('w1 w2 w3 w4', { maxTokens: 2, temperature: 0 });
    t.generated = performance.now();
    const peak = await wasmMemoryBytes();
    const info = llm.info;
    llm.dispose();
    return { downloadS: (t.downloaded - t.start) / 1e3, loadS: (t.loaded - t.downloaded) / 1e3, selfCheckMs: info.selfCheck?.ms,
      compileMs: info.compileMs, prefillMs: g.usage.prefillMs, decodeMs: g.usage.decodeMs, promptTokens: g.usage.promptTokens,
      completionTokens: g.usage.completionTokens, wasmAfterLoad: afterLoad, wasmPeak: peak, layers: info.layers, weightBytes: info.weightBytes,
      adapter: info.adapter, device: info.device, finishReason: g.finishReason };
  }, { repo: REPO, file });
  console.log(JSON.stringify({ fileBytes: bytes, ...r, wasmPeakOfFile: +(r.wasmPeak / bytes).toFixed(4) }));
} finally {
  await context.close();
  site.server.close();
  await rm(profile, { recursive: true, force: true });
}
