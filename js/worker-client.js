// The page side of Worker mode: the same pipeline classes, with a backend that forwards to the
// engine in js/worker.js. `dispose()` terminates the Worker, which frees its GPU memory.
import { TextGenerationPipeline, FeatureExtractionPipeline, AutomaticSpeechRecognitionPipeline, kEncoderPipelines, toHugrtError } from './index.js';

export async function workerPipeline(task, model, options) {
  const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const pending = new Map();
  let next = 0;
  worker.onmessage = ({ data }) => {
    const p = pending.get(data.id);
    if (!p) return;
    if (data.progress) return p.onProgress?.(data.progress);
    if (data.text !== undefined) return p.onText?.(data.text, data.logprobs);
    pending.delete(data.id);
    if (data.error) p.reject(toHugrtError(data.error));
    else p.resolve(data.result);
  };
  worker.onerror = (e) => {
    for (const p of pending.values()) p.reject(toHugrtError({ code: 'Internal', message: `worker failed: ${e.message}` }));
    pending.clear();
  };
  let disposed = false;
  const call = (op, args, hooks = {}) => new Promise((resolve, reject) => {
    if (disposed) return reject(toHugrtError({ code: 'Aborted', message: 'the pipeline was disposed' }));
    const id = next++;
    pending.set(id, { resolve, reject, ...hooks });
    worker.postMessage({ id, op, args });
    return id;
  });

  const { onProgress, signal, worker: _, ...rest } = options;
  if (signal?.aborted) throw toHugrtError({ code: 'Aborted', message: 'aborted before loading' });
  const abortLoad = () => { worker.terminate(); for (const p of pending.values()) p.reject(toHugrtError({ code: 'Aborted', message: 'loading was aborted' })); };
  signal?.addEventListener('abort', abortLoad, { once: true });
  let info;
  try {
    info = await call('load', { task, model, options: rest }, { onProgress });
  } catch (err) {
    worker.terminate();
    throw err;
  } finally {
    signal?.removeEventListener('abort', abortLoad);
  }
  const dispose = () => {
    disposed = true;
    worker.terminate();
    for (const p of pending.values()) p.reject(toHugrtError({ code: 'Aborted', message: 'the pipeline was disposed' }));
    pending.clear();
  };
  if (kEncoderPipelines[task]) {
    const invoke = (method) => (...args) => call('invoke', { method, args });
    const backend = Object.fromEntries(['classifyImage', 'zeroShotImage', 'classifyAudio', 'fillMask', 'classifyText'].map((m) => [m, invoke(m)]));
    return new kEncoderPipelines[task]({ ...backend, dispose }, { ...info, worker: true });
  }
  if (task === 'automatic-speech-recognition') {
    const backend = {
      transcribe(input, opts, onText, sig) {
        const id = next;
        const done = call('transcribe', { input, options: opts }, { onText });
        const abort = () => call('abort', { target: id });
        sig?.addEventListener('abort', abort, { once: true });
        return done.finally(() => sig?.removeEventListener('abort', abort));
      },
      dispose,
    };
    return new AutomaticSpeechRecognitionPipeline(backend, { ...info, worker: true });
  }
  if (task === 'feature-extraction') {
    return new FeatureExtractionPipeline({ embed: (texts, promptName, prompt) => call('embed', { texts, promptName, prompt }), dispose }, { ...info, worker: true });
  }
  const backend = {
    applyChatTemplate: (messages, add, tools) => call('applyChatTemplate', { messages, add, tools }),
    generate(text, opts, templated, onText, sig) {
      const id = next;
      const done = call('generate', { text, options: opts, templated }, { onText });
      const abort = () => call('abort', { target: id });
      sig?.addEventListener('abort', abort, { once: true });
      return done.finally(() => sig?.removeEventListener('abort', abort));
    },
    dispose,
  };
  return new TextGenerationPipeline(backend, { ...info, worker: true });
}
