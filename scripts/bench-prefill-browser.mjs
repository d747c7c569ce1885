// SmolLM2-135M-Instruct Q4_1 prefill and decode on WebGPU (SwiftShader here) in headless Chromium,
// through the published API, with a prompt of 128+ tokens and the pipelines compiled first: a
// warm-up turn, then a timed turn whose chat starts with another system message (so no cached
// prefix is reused beyond the template's first tokens). Each package in a fresh page, in turn,
// `--runs` times, so that builds can be compared side by side in one run:
//   node scripts/bench-prefill-browser.mjs [--runs N] [--pkg pkg] [--pkg pkg-old]
// (each --pkg a folder under www/ holding a built package; default pkg). Prints figures only.
import { openBrowser, serveWithModels } from '../tests/e2e/browser.mjs';

const args = process.argv.slice(2);
const valuesOf = (flag) => args.flatMap((a, i) => (a === flag && args[i + 1] ? [args[i + 1]] : []));
const pkgs = valuesOf('--pkg').length ? valuesOf('--pkg') : ['pkg'];
const runs = Number(valuesOf('--runs')[0] ?? 1);

const story = 'A dragon lived above a small village in the mountains. Every morning the villagers '
  + 'baked bread in a stone oven by the river, and every morning the smell drifted up to the cave. '
  + 'The dragon wanted to learn, but its fire burned every loaf to ash. The baker, an old woman '
  + 'with flour on her sleeves, offered to teach it patience: how to breathe gently, how to wait '
  + 'for the dough to rise, how to listen for the hollow sound of a crust that is done. ';
const turn = (system) => [
  { role: 'system', content: system },
  { role: 'user', content: `${story}Continue the story in the same style, with the first loaf the dragon bakes well.` },
];

const { server, url } = await serveWithModels();
const browser = await openBrowser();
const rows = [];
try {
  for (let run = 0; run < runs; run++) {
    for (const pkg of pkgs) {
      const page = await browser.newPage();
      await page.goto(`${url}search-corpus.json`);
      const row = await page.evaluate(async ({ pkg, warm, timed }) => {
        const { pipeline } = await import(`./${pkg}/index.js`);
        const p = await pipeline('text-generation', 'HuggingFaceTB/SmolLM2-135M-Instruct', { endpoint: location.origin, device: 'webgpu' });
        const t0 = performance.now();
        await p.generate(warm, { maxTokens: 2, stop: [] });
        const warmS = (performance.now() - t0) / 1000;
        const r = await p.generate(timed, { maxTokens: 8, stop: [] });
        const out = {
          adapter: p.info.adapter, warmUpS: +warmS.toFixed(1), promptTokens: r.usage.promptTokens,
          prefillTokPerS: +(r.usage.promptTokens / r.usage.prefillMs * 1000).toFixed(2),
          decodeTokPerS: +(r.usage.completionTokens / r.usage.decodeMs * 1000).toFixed(2),
        };
        p.dispose();
        return out;
      }, { pkg, warm: turn('You are a helpful assistant.'), timed: turn('You write short stories for children.') });
      rows.push({ pkg, run, ...row });
      console.log(JSON.stringify(rows.at(-1)));
      await page.close();
    }
  }
  console.table(rows);
} finally {
  await browser.close();
  server.close();
}
