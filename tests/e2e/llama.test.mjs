// End to end: Llama-family checkpoints in the hub's own format (config.json, safetensors,
// tokenizer.json, tokenizer_config.json with the chat template) — the tiny random Llama (F16,
// llama3 RoPE scaling), Qwen2 (BF16, Q/K/V biases), Qwen3 (BF16, q/k norms), SmolLM3 (a layer
// without RoPE), Mistral (a sliding window shorter than the prompt), Phi-3 (fused weights,
// partial rotary, LongRoPE past its original context), Gemma 2 (soft-capping, a
// sliding layer) and Gemma 3 (q/k norms, local and global RoPE) fixtures in the local hub mirror — through
// pipeline() in Chromium, on WebGPU (SwiftShader) and on the CPU fallback: the chat prompt as
// transformers renders and tokenizes it, and transformers' greedy continuation
// (tests/fixtures/{llama,qwen2,qwen3,smollm3,mistral,phi3,gemma,gemma2,gemma3}/expected.json, scripts/fixtures/make_llama_fixtures.py).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { servedSpacesAndBrowser } from './browser.mjs';

const spaces = servedSpacesAndBrowser();

for (const arch of ['llama', 'qwen2', 'qwen3', 'smollm3', 'mistral', 'phi3', 'gemma', 'gemma2', 'gemma3']) {
  const expected = JSON.parse(readFileSync(new URL(`../fixtures/${arch}/expected.json`, import.meta.url))).chat;
  // Compared up to transformers' first near-tie.
  const sure = expected.margins.findIndex((m) => m < 0.01);
  const steps = sure < 0 ? expected.greedy.length : sure;
  for (const device of ['webgpu', 'cpu']) {
    test(`tiny ${arch} from safetensors chats like transformers on ${device}`, { timeout: 180_000 }, async () => {
      const page = await spaces.browser.newPage();
      await page.goto(`${spaces.url}index.html`);
      const result = await page.evaluate(async ({ arch, device, messages, maxTokens }) => {
        const { pipeline } = await import('./pkg/index.js');
        const gen = await pipeline('text-generation', `hugrt-test/tiny-${arch}`, { endpoint: location.origin, device });
        const prompt = await gen.applyChatTemplate(messages);
        const r = await gen.generate(messages, { maxTokens });
        const info = gen.info;
        gen.dispose();
        return { prompt, ids: r.ids, promptIds: r.promptIds, architecture: info.architecture, device: info.device, hasChatTemplate: info.hasChatTemplate };
      }, { arch, device, messages: expected.messages, maxTokens: expected.greedy.length });
      assert.equal(result.architecture, arch);
      assert.equal(result.device, device);
      assert.equal(result.hasChatTemplate, true);
      assert.equal(result.prompt, expected.text);
      assert.deepEqual(result.promptIds, expected.ids);
      assert.ok(steps >= 8, `near-tie at step ${steps}`);
      assert.deepEqual(result.ids.slice(0, steps), expected.greedy.slice(0, steps));
      await page.close();
    });
  }
}

// A generation_config.json that samples: its settings are the defaults of the options a call
// leaves out (info.generationDefaults), and top-1 sampling gives transformers' greedy tokens.
test('generation_config.json sampling settings are the defaults of pipeline() calls', { timeout: 180_000 }, async () => {
  const expected = JSON.parse(readFileSync(new URL('../fixtures/llama/expected.json', import.meta.url))).chat;
  const sure = expected.margins.findIndex((m) => m < 0.01);
  const steps = sure < 0 ? expected.greedy.length : sure;
  const page = await spaces.browser.newPage();
  await page.goto(`${spaces.url}index.html`);
  const result = await page.evaluate(async ({ messages, maxTokens }) => {
    const { pipeline } = await import('./pkg/index.js');
    const gen = await pipeline('text-generation', 'hugrt-test/tiny-llama-sampling', { endpoint: location.origin, device: 'cpu' });
    const r = await gen.generate(messages, { maxTokens });
    const defaults = gen.info.generationDefaults;
    const bad = await gen.generate(messages, { maxTokens: 2, topP: 0 }).then(() => null, (e) => e.name);
    gen.dispose();
    return { ids: r.ids, defaults, bad };
  }, { messages: expected.messages, maxTokens: steps });
  assert.deepEqual(result.defaults, { temperature: 0.7, topK: 1, topP: 0.9 });
  assert.deepEqual(result.ids, expected.greedy.slice(0, steps));
  assert.equal(result.bad, 'Usage');
  await page.close();
});

// A sharded checkpoint (model.safetensors.index.json and three shards, as transformers writes
// them): every shard downloaded into the store and read as one; the Llama's greedy tokens.
for (const device of ['webgpu', 'cpu']) {
  test(`a sharded checkpoint loads through pipeline() on ${device}`, { timeout: 180_000 }, async () => {
    const expected = JSON.parse(readFileSync(new URL('../fixtures/llama/expected.json', import.meta.url))).chat;
    const sure = expected.margins.findIndex((m) => m < 0.01);
    const steps = sure < 0 ? expected.greedy.length : sure;
    const page = await spaces.browser.newPage();
    await page.goto(`${spaces.url}index.html`);
    const result = await page.evaluate(async ({ messages, maxTokens, device }) => {
      const { pipeline } = await import('./pkg/index.js');
      const files = new Set();
      const gen = await pipeline('text-generation', 'hugrt-test/tiny-llama-sharded', {
        endpoint: location.origin, device, onProgress: (p) => { if (p.file) p.file.split(', ').forEach((f) => files.add(f)); },
      });
      const r = await gen.generate(messages, { maxTokens });
      gen.dispose();
      return { ids: r.ids, files: [...files].sort() };
    }, { messages: expected.messages, maxTokens: steps, device });
    assert.deepEqual(result.ids, expected.greedy.slice(0, steps));
    for (const k of [1, 2, 3]) assert.ok(result.files.includes(`model-0000${k}-of-00003.safetensors`), JSON.stringify(result.files));
    await page.close();
  });
}
