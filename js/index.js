// hugrt's JS face: `pipeline()` over the wasm engine (js/index.d.ts has the types).
//
// The engine (wasm-bindgen's `hugrt.js` + `hugrt_bg.wasm`, loaded relative to this module) does
// the work: the hub client and weight store (IndexedDB), the model files, WebGPU. This layer
// adds what wasm-bindgen cannot express: async iterables, error classes, an OpenAI-style chat
// API, one generation at a time per model, and Worker mode.

import initWasm, * as wasm from './hugrt.js';

// ---------------------------------------------------------------------------------------------
// Errors: one class per stable code, so callers can use `instanceof` or `err.code`.

export class HugrtError extends Error {
  constructor(message, options) {
    super(message, options);
    this.name = 'HugrtError';
    this.code = 'Internal';
  }
}
const errorClass = (code) => ({ [code]: class extends HugrtError {
  constructor(message, options) { super(message, options); this.name = code; this.code = code; }
} })[code];
// The families: a caller's `code`.
export const WebGpuUnavailable = errorClass('WebGpuUnavailable');
export const DeviceLost = errorClass('DeviceLost');
export const QuotaExceeded = errorClass('QuotaExceeded');
export const IntegrityError = errorClass('IntegrityError');
export const BadModelFile = errorClass('BadModelFile');
export const NetworkError = errorClass('NetworkError');
export const Aborted = errorClass('Aborted');
export const Unsupported = errorClass('Unsupported');
export const BadInput = errorClass('BadInput');
export const UsageError = errorClass('Usage');
export const ContextFull = errorClass('ContextFull');
export const Busy = errorClass('Busy');
export const TokenizerError = errorClass('Tokenizer');
export const ChatTemplate = errorClass('ChatTemplate');
export const GrammarError = errorClass('Grammar');
export const StorageError = errorClass('StorageError');
export const StoreClosed = errorClass('StoreClosed');
export const InvalidArgument = errorClass('InvalidArgument');
export const GpuError = errorClass('GpuError');
export const Internal = errorClass('Internal');
const CLASSES = { WebGpuUnavailable, DeviceLost, QuotaExceeded, IntegrityError, BadModelFile, NetworkError, Aborted, Unsupported,
  BadInput, Usage: UsageError, ContextFull, Busy, Tokenizer: TokenizerError, ChatTemplate, Grammar: GrammarError, StorageError, StoreClosed, InvalidArgument, GpuError, Internal };
// The engine's finer codes within a family: `code` is the family's, `detail` the engine's code.
const detailClass = (detail, Family) => ({ [detail]: class extends Family {
  constructor(message, options) { super(message, options); this.name = detail; this.detail = detail; }
} })[detail];
export const NotFound = detailClass('NotFound', NetworkError);
export const Unauthorized = detailClass('Unauthorized', NetworkError);
export const RateLimited = detailClass('RateLimited', NetworkError);
export const BadResponse = detailClass('BadResponse', NetworkError);
export const StoreCorrupt = detailClass('StoreCorrupt', IntegrityError);
export const OutOfMemory = detailClass('OutOfMemory', DeviceLost);
const DETAILS = { NotFound, Unauthorized, RateLimited, BadResponse, StoreCorrupt, OutOfMemory, AbortError: Aborted };

/** Any thrown value as a HugrtError (`code` stable; the engine's own code kept as `detail`). */
export function toHugrtError(err) {
  if (err instanceof HugrtError) return err;
  const raw = err?.code ?? err?.name;
  const message = err?.message ?? String(err);
  const Class = CLASSES[raw] ?? DETAILS[raw];
  const out = Class ? new Class(message, { cause: err }) : Object.assign(new HugrtError(message, { cause: err }), { code: raw ?? 'Internal' });
  if (raw && raw !== out.code) out.detail = raw;
  // QuotaExceeded before a download: the bytes needed and available (navigator.storage.estimate()).
  for (const k of ['needed', 'available']) if (typeof err?.[k] === 'number') out[k] = err[k];
  // The hub's own code for a refusal (`GatedRepo`, `RepoNotFound`, `EntryNotFound`, ...).
  if (typeof err?.hubCode === 'string') out.hubCode = err.hubCode;
  return out;
}

const rethrow = (err) => { throw toHugrtError(err); };

// ---------------------------------------------------------------------------------------------
// Settings and the engine.

/** Defaults for every pipeline (a mirror, the IndexedDB database, a cache budget). */
export const env = {
  endpoint: 'https://huggingface.co',
  db: 'hugrt',
  /** Largest total bytes the cache may hold; least-recently used revisions go first. */
  budget: undefined,
};

let ready;
/** Loads the wasm module once (relative to this file). */
export function init(moduleOrPath) {
  ready ??= initWasm(moduleOrPath ? { module_or_path: moduleOrPath } : undefined).catch((e) => { ready = undefined; throw e; });
  return ready;
}

/**
 * Bytes of the engine's wasm linear memory. It grows and never shrinks, so this is its peak so
 * far: what loading and running models cost in wasm memory (weights go to the GPU or the CPU
 * fallback's buffers inside it; the store streams them tensor by tensor).
 */
export async function wasmMemoryBytes() {
  const exports = await init();
  return exports.memory.buffer.byteLength;
}

/** What this browser offers, and which device a pipeline with `device: 'auto'` would use. */
export async function capabilities() {
  await init();
  const report = { webgpu: false, adapter: null, features: [], limits: {}, device: 'cpu', fallbackReason: null };
  if (!globalThis.navigator?.gpu) {
    report.fallbackReason = 'navigator.gpu is missing (no WebGPU in this browser or context)';
    return report;
  }
  try {
    const gpu = await wasm.Gpu.create();
    const r = gpu.report();
    const features = [['shader-f16', r.shaderF16], ['subgroups', r.subgroups], ['timestamp-query', r.timestampQuery]].filter(([, on]) => on).map(([f]) => f);
    Object.assign(report, { webgpu: true, adapter: r.name || r.architecture || r.vendor, architecture: r.architecture, vendor: r.vendor, features, limits: r.limits, device: 'webgpu' });
    // A software adapter (SwiftShader, llvmpipe) counts as no GPU for 'auto': the CPU backend is faster.
    const softwareReason = gpu.autoFallbackReason();
    if (softwareReason) Object.assign(report, { device: 'cpu', fallbackReason: softwareReason });
    gpu.free();
  } catch (err) {
    report.fallbackReason = `no WebGPU device: ${err?.message ?? err}`;
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Loading: hub → weight store (IndexedDB, verified) → GPU.

const PHASES = { resolve: 'resolve', download: 'download', verify: 'verify', cacheHit: 'cache', done: 'cache' };

async function openStore(db) {
  await init();
  return wasm.WeightStore.open(db).catch(rethrow);
}

/**
 * What to download for a text model: a GGUF file (`quant` picks among several), or a checkpoint in
 * the hub's format (config.json, tokenizer.json, model.safetensors or its shards, and tokenizer_config.json and
 * generation_config.json when the repository has them: the chat template, the end ids).
 */
async function chooseTextFiles(repo, quant, options) {
  const names = await repoFiles(repo, options);
  const ggufs = names.filter((f) => f.endsWith('.gguf'));
  const want = (quant ?? 'Q4_K_M').toLowerCase();
  const gguf = ggufs.find((f) => f.toLowerCase().includes(want)) ?? ggufs[0];
  if (gguf) return { gguf };
  const files = withWeights(SAFETENSORS_TEXT, names);
  if (files.every((f) => names.includes(f))) return { files: files.concat(names.filter((f) => f === 'tokenizer_config.json' || f === 'generation_config.json')) };
  throw new Unsupported(`${repo}@${revision} has neither a .gguf file nor ${SAFETENSORS_TEXT.join(', ')}`);
}

/**
 * The file names of `repo@revision`, offline first (the engine's `WeightStore.listFiles`): a
 * commit stored whole is listed from the store without asking the network; otherwise the hub's
 * revision API (with the token), and when the hub cannot be reached, the revision the store would
 * load offline (the commit the branch last resolved to here).
 */
async function repoFiles(repo, { revision = 'main', endpoint = env.endpoint, token, signal, db = env.db } = {}) {
  const store = await openStore(db);
  try {
    return (await store.listFiles(repo, revision, { endpoint, token, signal }).catch(rethrow)).files;
  } finally {
    store.free();
  }
}
const SAFETENSORS_TEXT = ['config.json', 'tokenizer.json', 'model.safetensors'];

/**
 * `files` with `model.safetensors` replaced by `model.safetensors.index.json` and its shards
 * (transformers' `model-0000k-of-0000n.safetensors`) where the repo listing `names` is sharded.
 * The engine checks the shards against the index.
 */
function withWeights(files, names) {
  if (names.includes('model.safetensors') || !names.includes('model.safetensors.index.json')) return files;
  const shards = names.filter((f) => /^model-\d+-of-\d+\.safetensors$/.test(f));
  return files.flatMap((f) => (f === 'model.safetensors' ? ['model.safetensors.index.json', ...shards] : [f]));
}

/**
 * The sentence-transformers files of a repo listing: those at the root, and the config and
 * safetensors weights of its module folders (`1_Pooling/`, `2_Dense/`, …), which the engine
 * reads as `modules.json` names them.
 */
const isSentenceTransformersFile = (f) =>
  ['modules.json', 'sentence_bert_config.json', 'config_sentence_transformers.json', 'tokenizer_config.json'].includes(f)
  || /^\d+_[A-Za-z]+\/(config\.json|model\.safetensors)$/.test(f);

async function download(repo, files, options) {
  const { revision = 'main', endpoint = env.endpoint, db = env.db, budget = env.budget, token, signal, onProgress } = options;
  const store = await openStore(db);
  onProgress?.({ status: 'resolve', repo, file: files.join(', '), loaded: 0, total: 0 });
  try {
    const report = await store.download(repo, revision, files, {
      endpoint, token, signal, budget,
      onProgress: onProgress && ((p) => onProgress({ ...p, status: PHASES[p.status] ?? p.status, repo })),
    }).catch(rethrow);
    return { report, db };
  } finally {
    store.free();
  }
}

// ---------------------------------------------------------------------------------------------
// Text generation.

/** The engine object behind a pipeline (for js/worker.js). */
export const kBackend = Symbol('hugrt.backend');

/** Runs async jobs one after another (a model generates one sequence at a time). */
/**
 * Downloads a checkpoint's files into the store and loads it from there: the repo's listing
 * (`known` when it cannot be had: offline, the store loads a cached revision of the files every
 * such checkpoint has), `files(names)` downloaded, then `fromStore(db, repo, commit, device)`,
 * with upload and ready progress. Resolves to `{ model, report, reload }` (`reload(old)`: the
 * model loaded again after a lost device, for `Pipeline`).
 */
async function loadFromStore(repo, options, known, files, fromStore) {
  const { revision = 'main', endpoint = env.endpoint, onProgress, device = 'auto' } = options;
  if (device === 'webgpu' && !globalThis.navigator?.gpu) throw new WebGpuUnavailable('this browser has no WebGPU (navigator.gpu is missing)');
  const names = await repoFiles(repo, { ...options, revision, endpoint }).catch(() => known);
  const { report, db } = await download(repo, files(names), { ...options, revision, endpoint });
  if (options.signal?.aborted) throw new Aborted('aborted before the model was loaded');
  onProgress?.({ status: 'upload', repo, loaded: 0, total: report.bytes });
  const load = () => fromStore(db, report.repo, report.commit, device).catch(rethrow);
  const model = await load();
  onProgress?.({ status: 'ready', repo, loaded: report.bytes, total: report.bytes });
  // After a lost device: the same commit from the store again (no network), onto `device` again.
  const reload = device === 'cpu' ? undefined : async (old) => {
    old.dispose();
    const backend = await load();
    return { backend, info: backend.info?.() ?? {} };
  };
  return { model, report, reload };
}

class Queue {
  #tail = Promise.resolve();
  run(job) {
    const result = this.#tail.then(job);
    this.#tail = result.catch(() => {});
    return result;
  }
}

/**
 * What every pipeline shares: its engine object (`backend`: the engine's model, or its Worker
 * proxy), its `info`, one call at a time, and recovery from a lost GPU device. The call that meets
 * the loss rejects with `DeviceLost`; the next call first loads the model again with `reload(old)`
 * (from the stored commit, no network; device 'auto': WebGPU again, else the CPU; 'webgpu':
 * WebGPU again) and `info` then says so (`recoveries`, `lostReason`, the new `device`). A reload
 * that fails rejects that call and is tried again by the next.
 */
class Pipeline {
  #model; #queue = new Queue(); #reload; #lost = null;

  constructor(backend, info, reload) {
    this.#model = backend;
    this.info = info;
    this.#reload = reload;
  }

  get [kBackend]() { return this.#model; }

  /** Runs `job(backend)` after the calls before it; a lost device is recovered from first. */
  _run(job) {
    return this.#queue.run(async () => {
      if (this.#lost) {
        const { backend, info } = await this.#reload(this.#model).catch(rethrow);
        const recoveries = (this.info.recoveries ?? 0) + 1;
        Object.assign(this.info, info, { recoveries, lostReason: this.#lost.message });
        this.#model = backend;
        this.#lost = null;
      }
      try {
        return await job(this.#model);
      } catch (err) {
        const e = toHugrtError(err);
        if (e.code === 'DeviceLost' && e.detail !== 'OutOfMemory' && this.#reload) this.#lost = e;
        throw e;
      }
    });
  }

  /** Frees the model's GPU memory. */
  dispose() { this.#model.dispose(); }
}

const GENERATE_KEYS = ['maxTokens', 'temperature', 'topK', 'topP', 'minP', 'repetitionPenalty', 'seed', 'stop',
  'frequencyPenalty', 'presencePenalty', 'logprobs', 'topLogprobs', 'responseFormat', 'tools', 'toolChoice', 'parallelToolCalls'];
function engineOptions(opts = {}) {
  const out = {};
  for (const k of GENERATE_KEYS) if (opts[k] !== undefined) out[k] = opts[k];
  if (typeof out.stop === 'string') out.stop = [out.stop];
  // Sampling without a seed draws a fresh one, as other runtimes do (also where the model's
  // generation defaults sample); a given seed reproduces.
  if (out.seed === undefined) out.seed = Math.floor(Math.random() * 2 ** 32);
  return out;
}

/**
 * A text-generation model. `backend` is the engine's `TextModel` (or its Worker proxy):
 * `generate(text, options, templated, onText, signal)`, `applyChatTemplate(messages, add, tools)`, `dispose()`.
 */
export class TextGenerationPipeline extends Pipeline {
  task = 'text-generation';

  /** `info`: `{ repo, commit, file, architecture, layers, vocab, context, adapter, device, … }`. */
  constructor(backend, info, reload) {
    super(backend, info, reload);
    /** OpenAI-style chat completions over the model's chat template. */
    this.chat = { completions: { create: (request) => this.#createCompletion(request) } };
  }

  static async load(repo, options = {}) {
    const { revision = 'main', endpoint = env.endpoint, quant, context, onProgress, signal, device = 'auto' } = options;
    if (device === 'webgpu' && !globalThis.navigator?.gpu) throw new WebGpuUnavailable('this browser has no WebGPU (navigator.gpu is missing)');
    const chosen = options.file ? { gguf: options.file } : await chooseTextFiles(repo, quant, { ...options, revision, endpoint });
    const file = chosen.gguf;
    const { report, db } = await download(repo, file ? [file] : chosen.files, { ...options, revision, endpoint });
    if (signal?.aborted) throw new Aborted('aborted before the model was loaded');
    onProgress?.({ status: 'upload', repo, file, loaded: 0, total: report.bytes });
    const load = () => wasm.TextModel.fromStore(db, report.repo, report.commit, file, context, device).catch(rethrow);
    const model = await load();
    const info = { repo: report.repo, commit: report.commit, file, ...model.info() };
    onProgress?.({ status: 'compile', repo, file, loaded: report.bytes, total: report.bytes });
    info.compileMs = await model.warmup().catch(rethrow);
    onProgress?.({ status: 'ready', repo, file, loaded: report.bytes, total: report.bytes });
    const reload = device === 'cpu' ? undefined : async (old) => {
      old.dispose();
      const backend = await load();
      return { backend, info: { ...backend.info(), compileMs: await backend.warmup().catch(rethrow) } };
    };
    return new TextGenerationPipeline(model, info, reload);
  }

  /** The prompt that `messages` make with the model's chat template. */
  async applyChatTemplate(messages, { addGenerationPrompt = true, tools } = {}) {
    try { return await this[kBackend].applyChatTemplate(messages, addGenerationPrompt, tools); } catch (e) { rethrow(e); }
  }

  /** Generates after `prompt` (a string, or chat `messages`); resolves to the whole result. */
  generate(prompt, options = {}) {
    return this.#run(prompt, options, options.onText);
  }

  /** The same, as an async iterable of text pieces (`break` stops generation). */
  stream(prompt, options = {}) {
    const s = this.#stream(prompt, options);
    return { result: s.result, async *[Symbol.asyncIterator]() { for await (const { text } of s) yield text; } };
  }

  /** `stream` whose items are `{ text, logprobs }` (the entries of the tokens that made `text`). */
  #stream(prompt, options) {
    const pieces = [];
    let wake = () => {}, done = false, failure = null;
    const stop = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
    const finished = this.#run(prompt, { ...options, signal }, (text, logprobs) => { pieces.push({ text, logprobs }); wake(); })
      .then((result) => result, (err) => { failure = err; })
      .finally(() => { done = true; wake(); });
    return {
      result: finished,
      async *[Symbol.asyncIterator]() {
        try {
          while (true) {
            // After an abort no more text is given, even if the engine had produced some.
            if (signal.aborted) { await finished; throw failure ?? new Aborted('generation was aborted'); }
            if (pieces.length) { yield pieces.shift(); continue; }
            if (done) { if (failure) throw failure; return; }
            await new Promise((r) => { wake = r; });
          }
        } finally {
          if (!done) { stop.abort(); await finished; }
        }
      },
    };
  }

  #run(prompt, options, onText) {
    const templated = typeof prompt !== 'string';
    const opts = engineOptions(options);
    const signal = options.signal;
    let streamed = '';
    const collect = (piece, ...rest) => { streamed += piece; return onText?.(piece, ...rest); };
    return this._run(async (model) => {
      if (signal?.aborted) throw new Aborted('aborted before generation started');
      const text = templated ? await this.applyChatTemplate(prompt, { tools: options.tools?.length ? options.tools : undefined }) : prompt;
      const r = await model.generate(text, opts, templated, collect, signal).catch((err) => {
        // A generation cut short by a lost device says so, with the text it had streamed.
        const e = toHugrtError(err);
        if (e.code === 'DeviceLost') Object.assign(e, { finishReason: 'device_lost', text: streamed });
        throw e;
      });
      const u = r.usage;
      return { ...r, tokensPerSecond: { prefill: (u.promptTokens - u.cachedTokens) / Math.max(u.prefillMs / 1e3, 1e-9),
        decode: Math.max(u.completionTokens - 1, 0) / Math.max(u.decodeMs / 1e3, 1e-9) } };
    });
  }

  #createCompletion(request) {
    const { messages, stream = false, max_tokens, max_completion_tokens, temperature, top_p, stop, seed, signal, n, stream_options,
      frequency_penalty, presence_penalty, logprobs = false, top_logprobs, response_format, tools, tool_choice, parallel_tool_calls } = request;
    // What the OpenAI API has and this engine does not do yet is refused by name, not ignored.
    if (n !== undefined && n !== null && n !== 1) return Promise.reject(new UsageError(`n = ${n}: one choice per request (n = 1)`));
    const unsupported = ['functions', 'function_call', 'logit_bias'].filter((k) => request[k] !== undefined && request[k] !== null);
    if (unsupported.length) return Promise.reject(new Unsupported(`not supported yet: ${unsupported.join(', ')}`));
    if (top_logprobs != null && !logprobs) return Promise.reject(new UsageError('top_logprobs needs logprobs: true'));
    const opts = { maxTokens: max_completion_tokens ?? max_tokens, temperature, topP: top_p, stop, seed, signal,
      frequencyPenalty: frequency_penalty ?? undefined, presencePenalty: presence_penalty ?? undefined,
      logprobs: logprobs || undefined, topLogprobs: logprobs ? (top_logprobs ?? 0) : undefined,
      responseFormat: response_format && response_format.type !== 'text' ? response_format : undefined,
      tools: tools?.length ? tools : undefined, toolChoice: tools?.length ? tool_choice ?? undefined : undefined, parallelToolCalls: parallel_tool_calls ?? undefined };
    const callsTools = Boolean(tools?.length) && tool_choice !== 'none';
    // OpenAI's shape of the calls: ids of our own, arguments as a JSON string.
    const toolCalls = (calls) => calls.map((c, index) => ({ index, id: `call_${Math.random().toString(36).slice(2, 14)}`, type: 'function',
      function: { name: c.name, arguments: JSON.stringify(c.arguments) } }));
    const id = `chatcmpl-${Math.random().toString(36).slice(2)}`;
    const created = Math.floor(Date.now() / 1000);
    const model = this.info.repo;
    const usage = (u) => ({ prompt_tokens: u.promptTokens, completion_tokens: u.completionTokens, total_tokens: u.promptTokens + u.completionTokens });
    // OpenAI's shape: `{ content: [{ token, logprob, bytes, top_logprobs }] }`, or null when not asked.
    const logprobsOut = (entries) => (logprobs ? { content: entries ?? [], refusal: null } : null);
    if (!stream) {
      return this.generate(messages, opts).then((r) => {
        const calls = callsTools && r.toolCalls ? toolCalls(r.toolCalls).map(({ index, ...call }) => call) : null;
        const message = calls ? { role: 'assistant', content: null, tool_calls: calls, refusal: null } : { role: 'assistant', content: r.text, refusal: null };
        return { id, object: 'chat.completion', created, model,
          choices: [{ index: 0, message, logprobs: logprobsOut(r.logprobs), finish_reason: calls ? 'tool_calls' : r.finishReason }],
          usage: usage(r.usage) };
      });
    }
    const s = this.#stream(messages, opts);
    const chunk = (delta, finish_reason = null, entries) => ({ id, object: 'chat.completion.chunk', created, model,
      choices: [{ index: 0, delta, logprobs: entries ? logprobsOut(entries) : null, finish_reason }] });
    return Promise.resolve({
      async *[Symbol.asyncIterator]() {
        yield chunk({ role: 'assistant', content: '' });
        // With tools, an answer that opens with '<' may be a call: held back until it is known.
        let held = null;
        for await (const piece of s) {
          if (held !== null || (callsTools && piece.text.trimStart().startsWith('<') && piece.text.trim())) { held = (held ?? '') + piece.text; continue; }
          yield chunk({ content: piece.text }, null, piece.logprobs);
        }
        const r = await s.result;
        if (!r) return;
        if (callsTools && r.toolCalls) {
          yield chunk({ tool_calls: toolCalls(r.toolCalls) });
          yield chunk({}, 'tool_calls');
        } else {
          if (held) yield chunk({ content: held });
          yield chunk({}, r.finishReason);
        }
        // As OpenAI: usage only when asked, in a last chunk without choices.
        if (stream_options?.include_usage) yield { id, object: 'chat.completion.chunk', created, model, choices: [], usage: usage(r.usage) };
      },
    });
  }

  /**
   * transformers.js's call: `await generator(text | text[] | messages | messages[], { max_new_tokens,
   * do_sample, temperature, top_k, top_p, repetition_penalty, return_full_text, tools })` →
   * `[{ generated_text }]` (a string: the prompt and its continuation unless `return_full_text`
   * is false; for chat messages, the messages with the assistant's answer appended), an array of
   * those for a batch.
   */
  async _call(inputs, { max_new_tokens, do_sample = false, temperature, top_k, top_p, repetition_penalty, return_full_text, tools, seed, signal } = {}) {
    const isChat = (x) => Array.isArray(x) && x.every((m) => m !== null && typeof m === 'object' && 'role' in m);
    const batched = Array.isArray(inputs) && (inputs.every((x) => typeof x === 'string') || inputs.every(isChat));
    const opts = { maxTokens: max_new_tokens, temperature: do_sample ? (temperature ?? 1) : 0, topK: do_sample ? top_k : undefined,
      topP: do_sample ? top_p : undefined, repetitionPenalty: repetition_penalty, tools, seed, signal };
    const out = [];
    for (const input of batched ? inputs : [inputs]) {
      if (typeof input !== 'string' && !isChat(input)) throw new UsageError('input must be a string, an array of strings, chat messages, or an array of them');
      const r = await this.generate(input, opts);
      const generated_text = typeof input === 'string' ? ((return_full_text ?? true) ? input + r.text : r.text) : [...input, { role: 'assistant', content: r.text }];
      out.push([{ generated_text }]);
    }
    return batched ? out : out[0];
  }
}

/** transformers.js's Tensor, as far as its pipelines' results use it. */
export class Tensor {
  constructor(type, data, dims) { this.type = type; this.data = data; this.dims = dims; }
  get size() { return this.data.length; }
  /** Nested arrays of `dims`' shape. */
  tolist() {
    const build = (offset, d) => (d === this.dims.length - 1
      ? Array.from(this.data.subarray(offset, offset + this.dims[d]))
      : Array.from({ length: this.dims[d] }, (_, i) => build(offset + i * this.dims.slice(d + 1).reduce((a, b) => a * b, 1), d + 1)));
    return this.dims.length ? build(0, 0) : [];
  }
}

// ---------------------------------------------------------------------------------------------
// Feature extraction (sentence embeddings).

/**
 * Sentence embeddings, as the repo's sentence-transformers modules define them (`modules.json`: its
 * Pooling, Dense and Normalize; its sequence length and prompts), mean-pooled and L2-normalised
 * where it has none. `backend`: the engine's `EmbeddingModel` (or its Worker proxy):
 * `embed(texts, promptName, prompt)`, `dispose()`. `info`: `{ repo, commit, architecture, layers,
 * hidden, dims, pooling, normalized, prompts, defaultPromptName, maxSeqLength, adapter, device,
 * fallbackReason }`.
 */
export class FeatureExtractionPipeline extends Pipeline {
  task = 'feature-extraction';

  static async load(repo, options = {}) {
    if (!wasm.EmbeddingModel) throw new Unsupported('feature extraction is not in this build');
    const files = (names) => withWeights(SAFETENSORS_TEXT, names).concat(names.filter(isSentenceTransformersFile));
    const { model, report, reload } = await loadFromStore(repo, options, SAFETENSORS_TEXT, files, (...a) => wasm.EmbeddingModel.fromStore(...a));
    return new FeatureExtractionPipeline(model, { repo: report.repo, commit: report.commit, ...(model.info?.() ?? {}) }, reload);
  }

  /**
   * Embeds one text or a batch: `{ data: Float32Array, dims: [n, d] }`. `options.promptName`: one
   * of `info.prompts` (e.g. 'query') put before each text; `options.prompt`: a prompt text; the
   * model's default prompt applies without either.
   */
  embed(texts, options = {}) {
    const batch = typeof texts === 'string' ? [texts] : [...texts];
    const { promptName, prompt } = options;
    return this._run((model) => model.embed(batch, promptName, prompt));
  }

  /**
   * transformers.js's call: `await extractor(text | text[], { pooling, normalize })` → a Tensor of
   * dims [texts, dims]. The embedding is the one the repo's sentence-transformers modules define
   * (`info.pooling`): a `pooling` other than that one is `Unsupported` (token embeddings, pooling
   * 'none', are not exposed); `normalize: true` L2-normalises where the modules do not.
   */
  async _call(texts, { pooling = 'none', normalize = false } = {}) {
    const own = this.info.pooling ?? ['mean'];
    const name = { first_token: 'cls', last_token: 'lasttoken' }[pooling] ?? pooling;
    if (!(own.length === 1 && own[0] === name)) {
      throw new Unsupported(`pooling ${JSON.stringify(pooling)}: this model's embedding is ${own.join(' + ')} pooled (its sentence-transformers modules)`);
    }
    const { data, dims } = await this.embed(texts);
    if (normalize && !this.info.normalized) {
      for (let r = 0; r < dims[0]; r++) {
        const row = data.subarray(r * dims[1], (r + 1) * dims[1]);
        const norm = Math.hypot(...row) || 1;
        for (let k = 0; k < row.length; k++) row[k] /= norm;
      }
    }
    return new Tensor('float32', data, dims);
  }
}

// ---------------------------------------------------------------------------------------------
// Encoders beyond embeddings: image, zero-shot image, audio and text classification, fill-mask.

/** The files each encoder task downloads (those marked optional only when the repo has them). */
const ENCODER_FILES = {
  'image-classification': ['config.json', 'model.safetensors', 'preprocessor_config.json'],
  'zero-shot-image-classification': ['config.json', 'model.safetensors', 'preprocessor_config.json', 'tokenizer.json'],
  'image-feature-extraction': ['config.json', 'model.safetensors', 'preprocessor_config.json', 'tokenizer.json'],
  'audio-classification': ['config.json', 'model.safetensors', 'preprocessor_config.json'],
  'fill-mask': ['config.json', 'model.safetensors', 'tokenizer.json'],
  'text-classification': ['config.json', 'model.safetensors', 'tokenizer.json'],
};

const isBytes = (x) => x instanceof ArrayBuffer || ArrayBuffer.isView(x);
const asBytes = (x) => (x instanceof ArrayBuffer ? new Uint8Array(x) : new Uint8Array(x.buffer, x.byteOffset, x.byteLength));

/**
 * An image as the engine takes it: `{ bytes }` (a PNG or JPEG file, decoded in the engine as
 * natively) or `{ rgba, width, height }` (pixels the browser decoded or drew).
 */
async function toImageInput(image, signal) {
  if (typeof image === 'string' || image instanceof URL) {
    const res = await fetch(image, { signal }).catch(rethrow);
    if (!res.ok) throw new NetworkError(`${image}: HTTP ${res.status}`);
    return { bytes: new Uint8Array(await res.arrayBuffer()) };
  }
  if (isBytes(image)) return { bytes: asBytes(image) };
  if (typeof Blob !== 'undefined' && image instanceof Blob) return { bytes: new Uint8Array(await image.arrayBuffer()) };
  if (image && typeof image.width === 'number' && image.data && image.data.length === image.width * image.height * 4) {
    return { rgba: new Uint8Array(image.data.buffer, image.data.byteOffset, image.data.byteLength), width: image.width, height: image.height };
  }
  // ImageBitmap, <img>, <canvas>, VideoFrame, OffscreenCanvas: draw it, read the pixels.
  const width = image?.naturalWidth || image?.displayWidth || image?.width;
  const height = image?.naturalHeight || image?.displayHeight || image?.height;
  if (typeof OffscreenCanvas !== 'undefined' && width > 0 && height > 0) {
    const ctx = new OffscreenCanvas(width, height).getContext('2d');
    ctx.drawImage(image, 0, 0, width, height);
    const data = ctx.getImageData(0, 0, width, height).data;
    return { rgba: new Uint8Array(data.buffer), width, height };
  }
  throw new HugrtError('an image is a URL, a Blob, PNG/JPEG bytes, an ImageData, an ImageBitmap, an <img> or a <canvas>');
}

/**
 * Sound as the engine takes it: `{ bytes }` (a WAV file) or `{ samples, sampleRate, channels }`
 * (interleaved-free: channel after channel, from an AudioBuffer or a Float32Array).
 */
async function toAudioInput(audio, samplingRate, signal) {
  if (typeof audio === 'string' || audio instanceof URL) {
    const res = await fetch(audio, { signal }).catch(rethrow);
    if (!res.ok) throw new NetworkError(`${audio}: HTTP ${res.status}`);
    return { bytes: new Uint8Array(await res.arrayBuffer()) };
  }
  if (audio instanceof Float32Array) return { samples: audio, sampleRate: samplingRate ?? 16000, channels: 1 };
  if (isBytes(audio)) return { bytes: asBytes(audio) };
  if (typeof Blob !== 'undefined' && audio instanceof Blob) return { bytes: new Uint8Array(await audio.arrayBuffer()) };
  if (audio && typeof audio.getChannelData === 'function') {
    const channels = audio.numberOfChannels, n = audio.length;
    const samples = new Float32Array(channels * n);
    for (let c = 0; c < channels; c++) samples.set(audio.getChannelData(c), c * n);
    return { samples, sampleRate: audio.sampleRate, channels };
  }
  throw new HugrtError('audio is a URL, a Blob, WAV bytes, an AudioBuffer or a Float32Array (with { samplingRate })');
}

/**
 * The encoder tasks. `backend`: the engine's `EncoderModel` (or its Worker proxy):
 * `classifyImage`, `zeroShotImage`, `classifyAudio`, `fillMask`, `classifyText`, `info`, `dispose`
 * (`SpeechModel`'s `transcribe` for speech recognition, which shares this queue and plumbing).
 */
class EncoderPipeline extends Pipeline {

  static async load(task, repo, options = {}) {
    if (!wasm.EncoderModel) throw new Unsupported(`${task} is not in this build`);
    const files = (names) => withWeights(ENCODER_FILES[task], names);
    const { model, report, reload } = await loadFromStore(repo, options, ENCODER_FILES[task], files, (db, r, c, device) => wasm.EncoderModel.fromStore(db, r, c, task, device));
    return new PIPELINES[task](model, { repo: report.repo, commit: report.commit, task, ...model.info() }, reload);
  }

  /** Runs `fn(backend, item)` for one input or each of an array, one call at a time. */
  _each(inputs, fn) {
    const many = Array.isArray(inputs);
    return this._run(async (m) => {
      const out = [];
      for (const item of many ? inputs : [inputs]) out.push(await fn(m, item));
      return many ? out : out[0];
    });
  }
}

/** `classify(image | image[], { topK = 5 })` → `[{ label, score }]` (softmax over the model's labels). */
export class ImageClassificationPipeline extends EncoderPipeline {
  task = 'image-classification';
  classify(images, { topK = 5, signal } = {}) {
    return this._each(images, async (m, image) => m.classifyImage(await toImageInput(image, signal), topK));
  }
  /** transformers.js's call: `(image | image[], { top_k = 5 })`, the same results. */
  _call(images, { top_k = 5 } = {}) { return this.classify(images, { topK: top_k ?? this.info.labels?.length ?? 1000 }); }
}

/**
 * `classify(image | image[], labels, { hypothesisTemplate = 'a photo of a {}' })` →
 * `[{ label, score }]`, best first (CLIP: softmax over the labels of the scaled cosines).
 */
export class ZeroShotImageClassificationPipeline extends EncoderPipeline {
  task = 'zero-shot-image-classification';
  classify(images, labels, { hypothesisTemplate = 'a photo of a {}', signal } = {}) {
    if (!Array.isArray(labels) || labels.length === 0) return Promise.reject(new HugrtError('zero-shot classification needs a non-empty array of labels'));
    return this._each(images, async (m, image) => m.zeroShotImage(await toImageInput(image, signal), labels, hypothesisTemplate));
  }
  /** transformers.js's call: `(image | image[], candidate_labels, { hypothesis_template })`, whose default is 'This is a photo of {}'. */
  _call(images, candidate_labels, { hypothesis_template = 'This is a photo of {}' } = {}) {
    return this.classify(images, candidate_labels, { hypothesisTemplate: hypothesis_template });
  }
}

/**
 * CLIP's embeddings, the two halves of an image search: `embed(image | image[])` → `{ data:
 * Float32Array, dims: [images, d] }` (`image_embeds`: the projected pooled output, L2-normalised)
 * and `embedTexts(text | text[])` → the same for texts by the text tower, in the same space (a
 * dot product is the cosine CLIP's zero-shot scores scale).
 */
export class ImageFeatureExtractionPipeline extends EncoderPipeline {
  task = 'image-feature-extraction';
  async embed(images, { signal } = {}) {
    const rows = await this._each(Array.isArray(images) ? images : [images], async (m, image) => m.embedImage(await toImageInput(image, signal)));
    return stack(rows);
  }
  embedTexts(texts) {
    const list = (Array.isArray(texts) ? texts : [texts]).map(String);
    return this._run((m) => m.embedTexts(list));
  }
  /** transformers.js's call: `(image | image[])` → a Tensor of dims [images, d] (here L2-normalised). */
  async _call(images) {
    const { data, dims } = await this.embed(images);
    return new Tensor('float32', data, dims);
  }
}

/** Rows of equal length as one `{ data, dims }`. */
function stack(rows) {
  const d = rows[0]?.length ?? 0;
  const data = new Float32Array(rows.length * d);
  rows.forEach((r, i) => data.set(r, i * d));
  return { data, dims: [rows.length, d] };
}

/** `classify(audio | audio[], { topK = 5, samplingRate })` → `[{ label, score }]`. */
export class AudioClassificationPipeline extends EncoderPipeline {
  task = 'audio-classification';
  classify(audio, { topK = 5, samplingRate, signal } = {}) {
    return this._each(audio, async (m, a) => m.classifyAudio(await toAudioInput(a, samplingRate, signal), topK));
  }
  /** transformers.js's call: `(audio | audio[], { top_k = 5 })` (Float32Array at 16 kHz, or a URL/Blob). */
  _call(audio, { top_k = 5 } = {}) { return this.classify(audio, { topK: top_k ?? this.info.labels?.length ?? 1000 }); }
}

/**
 * `fill(text | text[], { topK = 5 })` → `[{ score, token, token_str, sequence }]` for a text with
 * one mask token (`[MASK]`), an array of such lists for several.
 */
export class FillMaskPipeline extends EncoderPipeline {
  task = 'fill-mask';
  fill(texts, { topK = 5 } = {}) {
    return this._each(texts, (m, text) => m.fillMask(String(text), topK));
  }
  /** transformers.js's call: `(text | text[], { top_k = 5 })`; as there, the first mask of each text. */
  async _call(texts, { top_k = 5 } = {}) {
    const first = (r) => (Array.isArray(r[0]) ? r[0] : r);
    const out = await this.fill(texts, { topK: top_k });
    return Array.isArray(texts) ? out.map(first) : first(out);
  }
}

/**
 * `classify(text | { text, text_pair } | an array of them, { topK = 1 })` → `[{ label, score }]`:
 * a softmax over the labels, or each label's sigmoid for a one-label model (a cross-encoder
 * scoring the passage `text_pair` against the query `text`) or a multi-label one.
 */
export class TextClassificationPipeline extends EncoderPipeline {
  task = 'text-classification';
  classify(texts, { topK = 1 } = {}) {
    return this._each(texts, (m, t) => (t !== null && typeof t === 'object' && 'text' in t
      ? m.classifyText(String(t.text), topK, t.text_pair == null ? undefined : String(t.text_pair))
      : m.classifyText(String(t), topK)));
  }
  /**
   * transformers.js's call: `(text | text[], { top_k = 1 })`. As there: with `top_k` 1 one
   * `{ label, score }` per text in a flat array (one text: an array of one); otherwise a list per
   * text (one text: its list); `top_k: null` is every label.
   */
  async _call(texts, { top_k = 1 } = {}) {
    const k = top_k ?? this.info.labels?.length ?? 1000;
    const out = await this.classify(texts, { topK: k });
    const lists = Array.isArray(texts) ? out : [out];
    if (k === 1) return lists.map((l) => l[0]);
    return Array.isArray(texts) ? lists : lists[0];
  }
}

const PIPELINES = {
  'image-classification': ImageClassificationPipeline,
  'zero-shot-image-classification': ZeroShotImageClassificationPipeline,
  'image-feature-extraction': ImageFeatureExtractionPipeline,
  'audio-classification': AudioClassificationPipeline,
  'fill-mask': FillMaskPipeline,
  'text-classification': TextClassificationPipeline,
};
export const ENCODER_TASKS = Object.keys(PIPELINES);
export { PIPELINES as kEncoderPipelines };

// ---------------------------------------------------------------------------------------------
// Speech recognition (Whisper).

const SPEECH_FILES = ['config.json', 'generation_config.json', 'preprocessor_config.json', 'tokenizer.json', 'model.safetensors'];

const isWav = (b) => b.length >= 12 && String.fromCharCode(...b.subarray(0, 4)) === 'RIFF' && String.fromCharCode(...b.subarray(8, 12)) === 'WAVE';

/**
 * Sound for speech recognition: as `toAudioInput`, with containers other than WAV (MP3, Ogg,
 * FLAC, WebM/Opus from a MediaRecorder) decoded by the browser's `decodeAudioData` (on the page:
 * a Worker has no AudioContext).
 */
async function toSpeechInput(audio, samplingRate, signal) {
  const input = await toAudioInput(audio, samplingRate, signal);
  if (!input.bytes || isWav(input.bytes)) return input;
  const Ctx = globalThis.OfflineAudioContext;
  if (!Ctx) throw new HugrtError('only WAV audio can be decoded here (no OfflineAudioContext to decode other formats)');
  let buffer;
  try {
    buffer = await new Ctx(1, 1, 16000).decodeAudioData(input.bytes.slice().buffer);
  } catch (e) {
    throw new BadInput(`the browser could not decode this audio: ${e?.message ?? e}`);
  }
  return toAudioInput(buffer, undefined, signal);
}

/**
 * `transcribe(audio | audio[], options)` → `{ text, chunks?, language, timings }` (an array for
 * several): Whisper as transformers' ASR pipeline runs it (greedy, or sampled with
 * `temperature`). `audio`: a URL, a Blob, file bytes (WAV natively; MP3/Ogg/WebM through the
 * browser), an `AudioBuffer`, or a `Float32Array` with `samplingRate`. `options`: `{
 * returnTimestamps, language, task: 'transcribe' | 'translate', chunkLengthS, strideLengthS,
 * temperature, seed, maxNewTokens, samplingRate, signal, onText }`; `onText(text)` gets the
 * transcript so far as it grows; `chunks` (with `returnTimestamps`) are `[{ text, timestamp:
 * [start, end] }]` in seconds.
 */
export class AutomaticSpeechRecognitionPipeline extends EncoderPipeline {
  task = 'automatic-speech-recognition';

  static async load(repo, options = {}) {
    if (!wasm.SpeechModel) throw new Unsupported('automatic-speech-recognition is not in this build');
    const files = (names) => withWeights(SPEECH_FILES, names);
    const { model, report, reload } = await loadFromStore(repo, options, SPEECH_FILES, files, (...a) => wasm.SpeechModel.fromStore(...a));
    return new AutomaticSpeechRecognitionPipeline(model, { repo: report.repo, commit: report.commit, task: 'automatic-speech-recognition', ...model.info() }, reload);
  }

  transcribe(audio, { samplingRate, signal, onText, ...options } = {}) {
    return this._each(audio, async (m, a) => {
      if (signal?.aborted) throw new Aborted('transcription was aborted');
      const r = await m.transcribe(await toSpeechInput(a, samplingRate, signal), options, onText, signal);
      return { text: r.text, ...(r.chunks ? { chunks: r.chunks.map((c) => ({ text: c.text, timestamp: c.timestamp })) } : {}), language: r.language ?? null, timings: r.timings };
    });
  }

  /**
   * transformers.js's call: `(audio | audio[], { return_timestamps, language, task,
   * chunk_length_s, stride_length_s, max_new_tokens })` → `{ text }`, with `chunks: [{ timestamp,
   * text }]` when timestamps are asked.
   */
  async _call(audio, { return_timestamps, language, task, chunk_length_s, stride_length_s, max_new_tokens, temperature, signal } = {}) {
    const out = await this.transcribe(audio, { returnTimestamps: Boolean(return_timestamps), language: language ?? undefined, task: task ?? undefined,
      chunkLengthS: chunk_length_s, strideLengthS: stride_length_s, maxNewTokens: max_new_tokens, temperature, signal });
    const shape = (r) => (r.chunks ? { text: r.text, chunks: r.chunks.map((c) => ({ timestamp: c.timestamp, text: c.text })) } : { text: r.text });
    return Array.isArray(audio) ? out.map(shape) : shape(out);
  }
}

/**
 * The pipeline as transformers.js hands it out: callable (`await pipe(input, options)`, its
 * `_call`), with the pipeline's own methods and fields as well.
 */
function callable(pipe) {
  return new Proxy((...args) => pipe._call(...args), {
    get: (_, key) => { const v = Reflect.get(pipe, key); return typeof v === 'function' ? v.bind(pipe) : v; },
    set: (_, key, value) => Reflect.set(pipe, key, value),
    has: (_, key) => key in pipe,
    getPrototypeOf: () => Object.getPrototypeOf(pipe),
  });
}

/** transformers.js's `dtype` as the GGUF quantization it picks (`quant`). */
const DTYPE_QUANT = { q4: 'Q4_K_M', q4f16: 'Q4_K_M', q8: 'Q8_0', int8: 'Q8_0', uint8: 'Q8_0', fp16: 'F16', fp32: 'F32' };

/**
 * transformers.js's `progress_callback` events from hugrt's `onProgress`: per file `initiate`,
 * `download`, `progress` (`progress` in percent, `loaded`, `total`) and `done`, then `ready`.
 */
function progressEvents(task, model, progress_callback, onProgress) {
  if (!progress_callback) return onProgress;
  const started = new Set(), finished = new Set();
  return (p) => {
    onProgress?.(p);
    const file = p.file;
    if ((p.status === 'download' || p.status === 'cache') && file && !finished.has(file)) {
      if (!started.has(file)) {
        started.add(file);
        progress_callback({ status: 'initiate', name: model, file });
        progress_callback({ status: 'download', name: model, file });
      }
      const total = p.fileTotal ?? p.total, loaded = p.fileLoaded ?? p.loaded;
      progress_callback({ status: 'progress', name: model, file, progress: total ? (100 * loaded) / total : 100, loaded, total });
      if (loaded === total && !finished.has(file)) { finished.add(file); progress_callback({ status: 'done', name: model, file }); }
    }
    if (p.status === 'ready') progress_callback({ status: 'ready', task, model });
  };
}

// ---------------------------------------------------------------------------------------------
// The entry point.

/**
 * Loads `model` (a hub repo id) for `task` and resolves to its pipeline.
 * `options`: `{ revision, endpoint, file, quant, context, device, token, signal, onProgress, worker }`.
 */
export async function pipeline(task, model, options = {}) {
  // transformers.js's option names beside hugrt's.
  const { progress_callback, dtype, revision, device, ...rest } = options;
  options = { ...rest, revision: revision ?? undefined, device: device === 'wasm' ? 'cpu' : device,
    quant: options.quant ?? DTYPE_QUANT[dtype], onProgress: progressEvents(task, model, progress_callback, options.onProgress) };
  if (options.device === undefined) delete options.device;
  if (options.revision === undefined) delete options.revision;
  if (options.worker) {
    const { workerPipeline } = await import('./worker-client.js');
    return callable(await workerPipeline(task, model, options));
  }
  if (task === 'text-generation') return callable(await TextGenerationPipeline.load(model, options));
  if (task === 'feature-extraction') return callable(await FeatureExtractionPipeline.load(model, options));
  if (task === 'automatic-speech-recognition') return callable(await AutomaticSpeechRecognitionPipeline.load(model, options));
  if (PIPELINES[task]) return callable(await EncoderPipeline.load(task, model, options));
  throw new Unsupported(`unknown task ${JSON.stringify(task)} (${['text-generation', 'feature-extraction', 'automatic-speech-recognition', ...ENCODER_TASKS].join(', ')})`);
}

// ---------------------------------------------------------------------------------------------
// The cache manager.

export const cache = {
  /** `[{ repo, commit, files, bytes, completeFiles, lastUsed }]`. */
  async list({ db = env.db } = {}) {
    const store = await openStore(db);
    try { return await store.list().catch(rethrow); } finally { store.free(); }
  },
  /** Deletes one revision; resolves to the bytes freed. */
  async delete(repo, commit, { db = env.db } = {}) {
    const store = await openStore(db);
    try { return await store.deleteRevision(repo, commit).catch(rethrow); } finally { store.free(); }
  },
  async clear({ db = env.db } = {}) {
    const store = await openStore(db);
    try { await store.clear().catch(rethrow); } finally { store.free(); }
  },
  /** The browser's `{ usage, quota }` for this origin (bytes). */
  async estimate() {
    const e = await globalThis.navigator?.storage?.estimate?.();
    return { usage: e?.usage ?? 0, quota: e?.quota ?? 0 };
  },
};
