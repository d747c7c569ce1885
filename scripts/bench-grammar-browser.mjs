// Constrained decoding's cost in headless Chromium: SmolLM2-135M-Instruct through
// pipeline('text-generation') (the local hub mirror) on DEVICE, the same request with and without
// a JSON schema, greedy; decode tok/s of each, their ratio, and the grammar mask's median and worst
// milliseconds per token. A benchmark, not a test.   node scripts/bench-grammar-browser.mjs [cpu|webgpu]
import { openBrowser, serveWithModels } from '../tests/e2e/browser.mjs';
import { SCHEMA, REQUEST } from './bench-grammar-workload.mjs';

const device = process.argv[2] ?? 'cpu';
const { server, url } = await serveWithModels();
const browser = await openBrowser();
try {
  const page = await browser.newPage();
  await page.goto(`${url}search-corpus.json`);
  const row = await page.evaluate(async ({ device, schema, request }) => {
    const { pipeline } = await import('./pkg/index.js');
    const chat = await pipeline('text-generation', 'HuggingFaceTB/SmolLM2-135M-Instruct', { endpoint: location.origin, device });
    const messages = [{ role: 'user', content: request }];
    const run = (responseFormat) => chat.generate(messages, { maxTokens: 48, responseFormat });
    await run(undefined); // warm-up
    const free = await run(undefined);
    const constrained = await run({ type: 'json_schema', json_schema: { name: 'person', schema, strict: true } });
    chat.dispose();
    return { device: `${chat.info.device} (${chat.info.adapter ?? 'wasm'})`, freeTokPerS: free.tokensPerSecond.decode, freeTokens: free.usage.completionTokens,
      grammarTokPerS: constrained.tokensPerSecond.decode, grammarTokens: constrained.usage.completionTokens, maskMs: constrained.maskMs, text: constrained.text };
  }, { device, schema: SCHEMA, request: REQUEST });
  console.log(JSON.stringify({ where: 'chromium', ...row, ratio: +(row.grammarTokPerS / row.freeTokPerS).toFixed(2) }));
} finally {
  await browser.close();
  server.close();
}
