// www/cpu-bench.html: loads the model into memory and runs the CPU fallback benchmark.
import init, { bench } from './cpu-bench/pkg/cpu_bench.js';
const params = new URLSearchParams(location.search);
const model = params.get('model') ?? 'SmolLM2-135M-Instruct.Q4_1.gguf';
const promptTokens = Number(params.get('prompt') ?? 64);
const decodeTokens = Number(params.get('decode') ?? 32);
const out = document.getElementById('result');
try {
  await init();
  const response = await fetch(`models/${model}`);
  if (!response.ok) throw new Error(`models/${model}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const result = JSON.parse(await bench(bytes, promptTokens, decodeTokens));
  out.textContent = JSON.stringify({ model, userAgent: navigator.userAgent, ...result }, null, 1);
  document.body.dataset.status = 'done';
} catch (e) {
  out.textContent = `error: ${e.message ?? e}`;
  document.body.dataset.status = 'error';
}
