// The models' benchmark in headless Chromium, through the published API (pipeline() from the
// local hub mirror, weights streamed into IndexedDB, then loaded tensor by tensor): per model and
// device, load time (download, verify, store, upload, compile), prefill and decode tok/s of a chat
// turn, embeddings/s of a batch of 32 sentences, and peak wasm memory. Each run in a fresh page.
// A benchmark, not a test: it prints figures and judges nothing.
//   node scripts/bench-models-browser.mjs [--quick]
import { openBrowser, serveWithModels } from '../tests/e2e/browser.mjs';

const quick = process.argv.includes('--quick');
const { server, url } = await serveWithModels();
const browser = await openBrowser();
const runs = [
  { task: 'text-generation', repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', device: 'cpu', maxTokens: 32 },
  { task: 'text-generation', repo: 'HuggingFaceTB/SmolLM2-135M-Instruct', device: 'webgpu', maxTokens: quick ? 4 : 16 },
  { task: 'feature-extraction', repo: 'sentence-transformers/all-MiniLM-L6-v2', device: 'cpu' },
  { task: 'feature-extraction', repo: 'sentence-transformers/all-MiniLM-L6-v2', device: 'webgpu', batch: quick ? 4 : 32 },
];
const rows = [];
try {
  for (const run of runs) {
    const page = await browser.newPage();
    // A same-origin document that runs nothing itself (the spaces' index page runs GPU self-checks,
    // whose buffers would count in the wasm memory figure).
    await page.goto(`${url}search-corpus.json`);
    const row = await page.evaluate(async (run) => {
      const { pipeline, wasmMemoryBytes, cache } = await import('./pkg/index.js');
      const t0 = performance.now();
      const p = await pipeline(run.task, run.repo, { endpoint: location.origin, device: run.device });
      const loadS = (performance.now() - t0) / 1000;
      const out = { model: run.repo.split('/')[1], device: `${p.info.device} (${p.info.adapter})`, loadS: +loadS.toFixed(2) };
      if (run.task === 'text-generation') {
        const messages = [{ role: 'user', content: 'Write a short story about a dragon who learns to bake bread for the village.' }];
        const r = await p.generate(messages, { maxTokens: run.maxTokens, stop: [] });
        Object.assign(out, {
          promptTokens: r.usage.promptTokens, prefillTokPerS: +(r.usage.promptTokens / r.usage.prefillMs * 1000).toFixed(2),
          generated: r.usage.completionTokens, decodeTokPerS: +(r.usage.completionTokens / r.usage.decodeMs * 1000).toFixed(2),
        });
      } else {
        const batch = Array.from({ length: run.batch ?? 32 }, (_, i) => `Sentence number ${i} is about bread, rivers and small towns.`);
        await p.embed(['warm-up']);
        const t1 = performance.now();
        await p.embed(batch);
        const t2 = performance.now();
        await p.embed(['One sentence.']);
        Object.assign(out, { batch: batch.length, embeddingsPerS: +(batch.length / (t2 - t1) * 1000).toFixed(1), oneSentenceMs: +(performance.now() - t2).toFixed(1) });
      }
      out.fileMb = +((await cache.list()).find((r) => r.repo === run.repo)?.bytes / 1e6).toFixed(1);
      out.wasmMemoryMb = +((await wasmMemoryBytes()) / 1e6).toFixed(1);
      p.dispose();
      return out;
    }, run);
    rows.push(row);
    console.log(JSON.stringify(row));
    await page.close();
  }
  console.table(rows);
} finally {
  await browser.close();
  server.close();
}
