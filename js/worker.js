// The engine in a dedicated Worker (pipeline(…, { worker: true })): the page thread stays free.
// Messages: { id, op, args } in; { id, progress | text | result | error } out.
import { pipeline, toHugrtError, kBackend } from './index.js';

let pipe = null;
let loaded = null; // the load's { task, model, options }, for a reload after a lost device
const running = new Map(); // id -> AbortController

self.onmessage = async ({ data: { id, op, args } }) => {
  try {
    switch (op) {
      case 'load': {
        pipe = await pipeline(args.task, args.model, { ...args.options, worker: false, onProgress: (p) => self.postMessage({ id, progress: p }) });
        loaded = args;
        return self.postMessage({ id, result: pipe.info });
      }
      case 'reload': { // the page's pipeline met a lost device: the same commit again
        const commit = pipe.info.commit;
        pipe.dispose();
        pipe = await pipeline(loaded.task, loaded.model, { ...loaded.options, revision: commit, worker: false });
        return self.postMessage({ id, result: pipe.info });
      }
      case 'generate': {
        const abort = new AbortController();
        running.set(id, abort);
        try {
          const onText = (text, logprobs) => self.postMessage({ id, text, logprobs });
          const result = await pipe[kBackend].generate(args.text, args.options, args.templated, onText, abort.signal);
          return self.postMessage({ id, result });
        } finally {
          running.delete(id);
        }
      }
      case 'transcribe': {
        const abort = new AbortController();
        running.set(id, abort);
        try {
          const onText = (text) => self.postMessage({ id, text });
          return self.postMessage({ id, result: await pipe[kBackend].transcribe(args.input, args.options, onText, abort.signal) });
        } finally {
          running.delete(id);
        }
      }
      case 'abort':
        running.get(args.target)?.abort();
        return self.postMessage({ id, result: null });
      case 'applyChatTemplate':
        return self.postMessage({ id, result: await pipe[kBackend].applyChatTemplate(args.messages, args.add, args.tools) });
      case 'invoke':
        return self.postMessage({ id, result: await pipe[kBackend][args.method](...args.args) });
      case 'embed':
        return self.postMessage({ id, result: await pipe[kBackend].embed(args.texts, args.promptName, args.prompt) });
      default:
        throw new Error(`unknown op ${op}`);
    }
  } catch (err) {
    const e = toHugrtError(err);
    self.postMessage({ id, error: { code: e.detail ?? e.code, message: e.message } }); // the finest code: the same class on the other side
  }
};
