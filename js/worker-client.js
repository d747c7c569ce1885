// The page side of Worker mode: the same pipeline classes, with a backend that forwards to the
// engine in js/worker.js. `dispose()` terminates the Worker, which frees its GPU memory.
import { TextGenerationPipeline, FeatureExtractionPipeline, AutomaticSpeechRecognitionPipeline, kEncoderPipelines, toHugrtError } from './index.js';

/**
 * The engine's Worker. A page may not start a Worker from another origin's script (the package
 * served by a CDN): there the Worker is a same-origin blob module that imports the package's
 * worker.js (fetched with CORS, as the package's other files are).
 */
function startWorker() {
  // Written out in full and only here: bundlers (Vite) find and emit the Worker by this very
  // expression (and would rewrite any other `new URL('./worker.js', import.meta.url)`).
  if (new URL(import.meta.url).origin === globalThis.location?.origin) return new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
  const url = new URL(import.meta.url.replace(/[^/]*$/, 'worker.js'));
  // The blob URL stays valid for the page's life (a few bytes): the Worker loads it asynchronously.
  // A dynamic import (Chromium refuses a blob module's static import of another origin's module
  // here): messages that arrive before worker.js has installed its handler are kept and given to
  // it; a failed import is rethrown so that the Worker's error event reports it.
  const shim = URL.createObjectURL(new Blob([`const early = []; self.onmessage = (e) => early.push(e.data);
import(${JSON.stringify(url.href)}).then(() => { for (const data of early) self.onmessage({ data }); }, (e) => setTimeout(() => { throw e; }));`],
  { type: 'text/javascript' }));
  return new Worker(shim, { type: 'module' });
}

export async function workerPipeline(task, model, options) {
  const worker = startWorker();
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
  // After a lost device the Worker loads the model again; the page keeps the same proxy.
  const reload = rest.device === 'cpu' ? undefined : async (old) => ({ backend: old, info: { ...(await call('reload', {})), worker: true } });
  if (kEncoderPipelines[task]) {
    const invoke = (method) => (...args) => call('invoke', { method, args });
    const backend = Object.fromEntries(['classifyImage', 'zeroShotImage', 'classifyAudio', 'fillMask', 'classifyText', 'embedImage', 'embedTexts'].map((m) => [m, invoke(m)]));
    return new kEncoderPipelines[task]({ ...backend, dispose }, { ...info, worker: true }, reload);
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
    return new AutomaticSpeechRecognitionPipeline(backend, { ...info, worker: true }, reload);
  }
  if (task === 'feature-extraction') {
    return new FeatureExtractionPipeline({ embed: (texts, promptName, prompt) => call('embed', { texts, promptName, prompt }), dispose }, { ...info, worker: true }, reload);
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
  return new TextGenerationPipeline(backend, { ...info, worker: true }, reload);
}
