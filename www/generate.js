// Greedy generation with a GGUF model fetched tensor by tensor (HTTP ranges) onto WebGPU, with the
// engine's TextModel directly (no weight store, no pipeline()).
// `?autorun` starts at once (the end-to-end test uses it). Output is set as text, never HTML.
import init, { TextModel } from './pkg/hugrt.js';

const $ = (id) => document.getElementById(id);
let loaded = { url: null, model: null };

async function run(event) {
  event?.preventDefault();
  $('go').disabled = true;
  document.body.dataset.status = 'running';
  try {
    await init();
    const url = $('model').value;
    if (loaded.url !== url) {
      loaded.model?.dispose();
      $('status').textContent = `Loading ${url}…`;
      const t0 = performance.now();
      loaded = { url, model: await TextModel.load(url, 512, 'webgpu') };
      $('status').textContent = `Loaded in ${((performance.now() - t0) / 1000).toFixed(1)} s. Generating…`;
    }
    const prompt = $('prompt').value;
    $('prompt-echo').textContent = prompt;
    $('output').textContent = '';
    const onText = (piece) => { $('output').textContent += piece; };
    const result = await loaded.model.generate(prompt, { maxTokens: Number($('max').value) }, false, onText);
    const u = result.usage;
    $('status').textContent = `${u.promptTokens} prompt tokens in ${u.prefillMs.toFixed(0)} ms; ` +
      `${u.completionTokens} generated at ${(Math.max(u.completionTokens - 1, 0) / (u.decodeMs / 1000)).toFixed(2)} tok/s (${result.finishReason}).`;
    window.generateResult = result;
    document.body.dataset.status = 'done';
  } catch (err) {
    $('status').textContent = `${err.code ?? err.name}: ${err.message}`;
    document.body.dataset.status = 'error';
  } finally {
    $('go').disabled = false;
  }
}

$('form').addEventListener('submit', run);
if (new URLSearchParams(location.search).has('autorun')) run();
