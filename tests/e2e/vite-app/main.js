// A consumer's app: `npm install hugrt` (the packed tarball), bundled by Vite. `?worker` runs the
// engine in a Worker. The end-to-end test reads window.result.
import { pipeline, capabilities, Aborted, HugrtError } from 'hugrt';

const out = {};
try {
  out.capabilities = await capabilities();
  const worker = new URLSearchParams(location.search).has('worker');
  const gen = await pipeline('text-generation', 'HuggingFaceTB/SmolLM2-135M-Instruct', {
    endpoint: location.origin, file: 'SmolLM2-135M-Instruct.Q4_1.gguf', context: 256, worker,
  });
  const r = await gen.generate('The capital of France is', { maxTokens: 2 });
  out.ids = r.ids;
  out.text = r.text;
  out.worker = gen.info.worker ?? false;
  gen.dispose();
  out.errorClasses = new Aborted('x') instanceof HugrtError;
} catch (err) {
  out.error = `${err.code ?? err.name}: ${err.message}`;
}
document.getElementById('out').textContent = JSON.stringify(out, null, 1);
window.result = out;
document.body.dataset.status = 'done';
