// Types of hugrt's JS API (js/index.js). Strict: no `any`.

/** The families of errors: a HugrtError's `code`. */
export type ErrorFamily =
  | 'WebGpuUnavailable' | 'DeviceLost' | 'QuotaExceeded' | 'IntegrityError'
  | 'BadModelFile' | 'NetworkError' | 'Aborted' | 'Unsupported'
  | 'BadInput' | 'Usage' | 'ContextFull' | 'Busy' | 'Tokenizer' | 'ChatTemplate' | 'Grammar'
  | 'StorageError' | 'StoreClosed' | 'InvalidArgument' | 'GpuError' | 'Internal';
/** The engine's finer codes within a family: a HugrtError's `detail`. */
export type ErrorDetail = 'NotFound' | 'Unauthorized' | 'RateLimited' | 'BadResponse' | 'StoreCorrupt' | 'OutOfMemory';
/** Every code the engine throws. */
export type ErrorCode = ErrorFamily | ErrorDetail;

/** Every error hugrt throws: one class per code. `code` is the family; `detail` the engine's finer code, if any. */
export class HugrtError extends Error {
  readonly code: ErrorFamily | string;
  detail?: ErrorDetail | string;
}
export class WebGpuUnavailable extends HugrtError { readonly code: 'WebGpuUnavailable'; }
/**
 * The GPU device was lost (driver reset, GPU process crash, `device.destroy()`). The pipeline's next
 * call loads the model again (device 'auto': WebGPU again, else the CPU; 'webgpu': WebGPU again)
 * and its `info` counts it (`recoveries`, `lostReason`). A generation cut short carries
 * `finishReason: 'device_lost'` and the `text` it had streamed.
 */
export class DeviceLost extends HugrtError { readonly code: 'DeviceLost'; readonly finishReason?: 'device_lost'; readonly text?: string; }
/** Not enough storage. Raised before a download that cannot fit, with `needed` and `available`
 * bytes (from `navigator.storage.estimate()` or the cache budget); or mid-write by IndexedDB. */
export class QuotaExceeded extends HugrtError { readonly code: 'QuotaExceeded'; readonly needed?: number; readonly available?: number; }
export class IntegrityError extends HugrtError { readonly code: 'IntegrityError'; }
export class BadModelFile extends HugrtError { readonly code: 'BadModelFile'; }
/**
 * The hub or the network failed. `hubCode` is the hub's own code where it sent one (its
 * `X-Error-Code`): `RepoNotFound`, `RevisionNotFound`, `EntryNotFound`, `GatedRepo` (accept the
 * model's conditions on the hub and pass a `token`).
 */
export class NetworkError extends HugrtError { readonly code: 'NetworkError'; readonly hubCode?: string; }
export class Aborted extends HugrtError { readonly code: 'Aborted'; }
export class Unsupported extends HugrtError { readonly code: 'Unsupported'; }
/** An input the model cannot take: an id past the vocabulary, a sequence past its positions, nothing at all. */
export class BadInput extends HugrtError { readonly code: 'BadInput'; }
/** A call the API refuses: a bad option, a wrong argument type. */
export class UsageError extends HugrtError { readonly code: 'Usage'; }
/** The prompt does not fit the model's context. */
export class ContextFull extends HugrtError { readonly code: 'ContextFull'; }
/** The model is running another call, or was disposed. */
export class Busy extends HugrtError { readonly code: 'Busy'; }
export class TokenizerError extends HugrtError { readonly code: 'Tokenizer'; }
export class ChatTemplate extends HugrtError { readonly code: 'ChatTemplate'; }
/** Constrained decoding failed during generation (the grammar's parser hit its limits, or the
 *  grammar allows no token of the vocabulary). A grammar that cannot be compiled is a `Usage` error. */
export class GrammarError extends HugrtError { readonly code: 'Grammar'; }
/** The weight store (IndexedDB, a folder) failed to read or write. */
export class StorageError extends HugrtError { readonly code: 'StorageError'; }
export class StoreClosed extends HugrtError { readonly code: 'StoreClosed'; }
export class InvalidArgument extends HugrtError { readonly code: 'InvalidArgument'; }
/** A GPU validation or internal error. */
export class GpuError extends HugrtError { readonly code: 'GpuError'; }
export class Internal extends HugrtError { readonly code: 'Internal'; }
export class NotFound extends NetworkError { readonly detail: 'NotFound'; }
export class Unauthorized extends NetworkError { readonly detail: 'Unauthorized'; }
export class RateLimited extends NetworkError { readonly detail: 'RateLimited'; }
export class BadResponse extends NetworkError { readonly detail: 'BadResponse'; }
export class StoreCorrupt extends IntegrityError { readonly detail: 'StoreCorrupt'; }
export class OutOfMemory extends DeviceLost { readonly detail: 'OutOfMemory'; }
export function toHugrtError(err: unknown): HugrtError;

export interface Env {
  /** Hub endpoint (default https://huggingface.co; a mirror's URL). */
  endpoint: string;
  /** IndexedDB database of the weight store. */
  db: string;
  /** Cache budget in bytes; least-recently used revisions are evicted to fit. */
  budget: number | undefined;
}
export const env: Env;

/** Loads the wasm module (done by every other call; call it to load early). */
export function init(moduleOrPath?: string | URL | Response | BufferSource | WebAssembly.Module): Promise<unknown>;

/** Progress of loading a model, by phase. */
export type Progress =
  | { status: 'resolve'; repo: string; file: string; loaded: number; total: number }
  | { status: 'download'; repo: string; file: string; fileLoaded: number; fileTotal: number; loaded: number; total: number }
  | { status: 'verify'; repo: string; file: string; fileLoaded: number; fileTotal: number; loaded: number; total: number }
  | { status: 'cache'; repo: string; file: string; fileLoaded: number; fileTotal: number; loaded: number; total: number }
  | { status: 'upload'; repo: string; file?: string; loaded: number; total: number }
  /** GPU pipelines of a decode step compiled by a one-token warm-up pass (text generation). */
  | { status: 'compile'; repo: string; file?: string; loaded: number; total: number }
  | { status: 'ready'; repo: string; file?: string; loaded: number; total: number };

export interface LoadOptions {
  revision?: string;
  endpoint?: string;
  /** Bearer token for gated repos (sent to the endpoint's origin only). */
  token?: string;
  /** 'auto' (default): WebGPU on a hardware adapter, else the CPU (candle, wasm SIMD): also when the adapter is a software one (SwiftShader, llvmpipe), and after a lost device for embeddings. 'wasm' (transformers.js's name) is 'cpu'. */
  device?: 'auto' | 'webgpu' | 'cpu' | 'wasm';
  /** transformers.js's progress events, beside `onProgress`. */
  progress_callback?: (event: TjsProgress) => void;
  /** transformers.js's dtype: the GGUF quantization a text-generation repo's file is picked by
   *  (q4 → Q4_K_M, q8 → Q8_0, fp16 → F16, fp32 → F32). */
  dtype?: 'q4' | 'q4f16' | 'q8' | 'int8' | 'uint8' | 'fp16' | 'fp32';
  /** Run the engine in a dedicated Worker. */
  worker?: boolean;
  db?: string;
  budget?: number;
  signal?: AbortSignal;
  onProgress?: (progress: Progress) => void;
}

/** Internal (Worker mode): a pipeline's engine backend. */
export const kBackend: unique symbol;
/** Internal (Worker mode): the encoder pipeline classes by task. */
export const kEncoderPipelines: Record<string, unknown>;

/** transformers.js's `progress_callback` events. */
export type TjsProgress =
  | { status: 'initiate' | 'download' | 'done'; name: string; file: string }
  | { status: 'progress'; name: string; file: string; progress: number; loaded: number; total: number }
  | { status: 'ready'; task: string; model: string };

/** transformers.js's Tensor, as its pipelines return it. */
export class Tensor {
  readonly type: 'float32';
  readonly data: Float32Array;
  readonly dims: number[];
  readonly size: number;
  tolist(): number[][];
}

/** transformers.js's generation options (its names). */
export interface TjsGenerationOptions {
  max_new_tokens?: number;
  do_sample?: boolean;
  temperature?: number;
  top_k?: number;
  top_p?: number;
  repetition_penalty?: number;
  /** Plain-text input: the prompt before the continuation (default true). */
  return_full_text?: boolean;
  tools?: Tool[];
  seed?: number;
  signal?: AbortSignal;
}

// The pipelines are callable as transformers.js's are (each also keeps its own methods).
export interface TextGenerationPipeline {
  (text: string, options?: TjsGenerationOptions): Promise<{ generated_text: string }[]>;
  (texts: string[], options?: TjsGenerationOptions): Promise<{ generated_text: string }[][]>;
  (messages: ChatMessage[], options?: TjsGenerationOptions): Promise<{ generated_text: ChatMessage[] }[]>;
  (chats: ChatMessage[][], options?: TjsGenerationOptions): Promise<{ generated_text: ChatMessage[] }[][]>;
}
export interface FeatureExtractionPipeline {
  (texts: string | string[], options?: { pooling?: 'none' | 'mean' | 'cls' | 'first_token' | 'eos' | 'last_token'; normalize?: boolean }): Promise<Tensor>;
}
export interface ImageClassificationPipeline {
  (image: ImageInput, options?: { top_k?: number | null }): Promise<LabelScore[]>;
  (images: ImageInput[], options?: { top_k?: number | null }): Promise<LabelScore[][]>;
}
export interface ZeroShotImageClassificationPipeline {
  (image: ImageInput, candidate_labels: string[], options?: { hypothesis_template?: string }): Promise<LabelScore[]>;
  (images: ImageInput[], candidate_labels: string[], options?: { hypothesis_template?: string }): Promise<LabelScore[][]>;
}
export interface AudioClassificationPipeline {
  (audio: AudioInput, options?: { top_k?: number | null }): Promise<LabelScore[]>;
  (audio: AudioInput[], options?: { top_k?: number | null }): Promise<LabelScore[][]>;
}
export interface FillMaskPipeline {
  (text: string, options?: { top_k?: number }): Promise<FillMaskResult[]>;
  (texts: string[], options?: { top_k?: number }): Promise<FillMaskResult[][]>;
}
export interface TextClassificationPipeline {
  /** `top_k` 1 (default): one `{ label, score }` per text, flat; otherwise a list per text. */
  (texts: string | string[], options?: { top_k?: number | null }): Promise<LabelScore[] | LabelScore[][]>;
}
export interface AutomaticSpeechRecognitionPipeline {
  (audio: AudioInput, options?: TjsTranscribeOptions): Promise<{ text: string; chunks?: { timestamp: [number | null, number | null]; text: string }[] }>;
  (audio: AudioInput[], options?: TjsTranscribeOptions): Promise<{ text: string; chunks?: { timestamp: [number | null, number | null]; text: string }[] }[]>;
}
export interface TjsTranscribeOptions {
  return_timestamps?: boolean;
  language?: string | null;
  task?: 'transcribe' | 'translate' | null;
  chunk_length_s?: number;
  stride_length_s?: number;
  max_new_tokens?: number;
  temperature?: number;
  signal?: AbortSignal;
}

export interface TextGenerationLoadOptions extends LoadOptions {
  /** The GGUF file to load (default: the repo's .gguf whose name contains `quant`). */
  file?: string;
  /** Quantization to pick when `file` is not given (default "Q4_K_M", else the first .gguf). */
  quant?: string;
  /** KV-cache capacity in tokens (default: the model's, at most 4096). */
  context?: number;
}

/** Options left out take the model's `info.generationDefaults` (its `generation_config.json`
 *  as transformers reads it, or GGUF `general.sampling.*`), else greedy decoding of 256 tokens. */
export interface GenerateOptions {
  maxTokens?: number;
  /** 0: greedy. */
  temperature?: number;
  topK?: number;
  topP?: number;
  minP?: number;
  repetitionPenalty?: number;
  /** Fixed seed for reproducible sampling (default: a random one). */
  seed?: number;
  stop?: string | string[];
  /** OpenAI's penalties, each in [-2, 2]: a token's logit less `frequencyPenalty` times the
   *  number of times it was generated, less `presencePenalty` once it was. */
  frequencyPenalty?: number;
  presencePenalty?: number;
  /** Each output token's log-probability in the result (and `topLogprobs` alternatives, ≤ 20). */
  logprobs?: boolean;
  topLogprobs?: number;
  /** What the output must be; the grammar's mask is applied to every token (greedy or sampled).
   *  A schema, regex or grammar that cannot be compiled is a `Usage` error. */
  responseFormat?: ResponseFormat;
  /** Tools the model may call (its chat template must render them: `Unsupported` otherwise; calls
   *  are read in the `<tool_call>` format of Qwen2.5/Qwen3/Hermes templates and constrained to the
   *  tool's parameter schema). */
  tools?: Tool[];
  /** Default "auto": text or calls; "required": calls; a named function: calls of it. */
  toolChoice?: ToolChoice;
  /** Up to 8 calls in one answer (default), else one. */
  parallelToolCalls?: boolean;
  signal?: AbortSignal;
  /** Called with each piece of text as it is generated (with `logprobs`: and its tokens' entries). */
  onText?: (piece: string, logprobs?: TokenLogprob[]) => void;
}

/** OpenAI's `response_format` (`json_object`, `json_schema`), and a regex (Rust `regex` syntax)
 *  or a Lark grammar (llguidance's). JSON comes with ", " and ": " separators and no other
 *  whitespace. `strict: true`: keywords the compiler lacks are an error (otherwise ignored). */
export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object'; schema?: object }
  | { type: 'json_schema'; json_schema: { name?: string; description?: string; schema?: object; strict?: boolean } }
  | { type: 'regex'; pattern: string }
  | { type: 'grammar'; grammar: string };

/** OpenAI's `logprobs.content[]` entry: the log-softmax, at temperature 1, of the logits the
 *  engine chose from (after penalties and the grammar's mask). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool' | string;
  /** Null for an assistant turn that only calls tools. */
  content: string | null;
  /** An assistant turn's calls, as OpenAI returns them (`arguments` a JSON string or an object). */
  tool_calls?: ToolCall[];
  /** A `tool` turn: the call it answers. */
  tool_call_id?: string;
  name?: string;
}

/** OpenAI's tool definition. */
export interface Tool { type: 'function'; function: { name: string; description?: string; parameters?: object; strict?: boolean } }
export type ToolChoice = 'none' | 'auto' | 'required' | { type: 'function'; function: { name: string } };
export interface ToolCall { id: string; type: 'function'; function: { name: string; arguments: string | object } }

export interface Usage {
  promptTokens: number;
  /** Prompt tokens reused from the KV cache (a chat's earlier turns). */
  cachedTokens: number;
  completionTokens: number;
  prefillMs: number;
  decodeMs: number;
  /** Of which computing grammar masks. */
  maskMs: number;
}

export interface GenerateResult {
  text: string;
  ids: number[];
  promptIds: number[];
  finishReason: 'stop' | 'length';
  usage: Usage;
  tokensPerSecond: { prefill: number; decode: number };
  /** With `logprobs`. */
  logprobs?: TokenLogprob[];
  /** With `tools`: the calls made, or null when the answer is text. */
  toolCalls?: { name: string; arguments: object }[] | null;
  /** With a `responseFormat`: the grammar masks' milliseconds per token. */
  maskMs?: { median: number; worst: number; count: number } | null;
}

export interface TextStream extends AsyncIterable<string> {
  /** The whole result once the stream ends (undefined if it failed). */
  result: Promise<GenerateResult | undefined>;
}

export interface ModelInfo {
  repo: string;
  commit: string;
  file?: string;
  architecture?: string;
  layers?: number;
  hidden?: number;
  vocab?: number;
  context?: number;
  adapter?: string;
  device?: 'webgpu' | 'cpu';
  /** Milliseconds of the warm-up pass that compiled the GPU pipelines (text generation). */
  compileMs?: number;
  /** Why `device: 'auto'` chose the CPU, when it did. */
  fallbackReason?: string | null;
  /** Text generation on the GPU: the self-check against the CPU backend before loading there
   *  (`skipped` or `error` when it did not run). */
  selfCheck?: { relativeError: number; bound: number; passed: boolean; ms: number } | { skipped: string } | { error: string } | null;
  /** Times the model was loaded again after a lost GPU device, and why the last one was lost. */
  recoveries?: number;
  lostReason?: string;
  worker?: boolean;
  /** Text generation: the options the checkpoint recommends, used where a call leaves them out
   *  (`{}`: greedy). */
  generationDefaults?: Omit<GenerateOptions, 'signal' | 'onText' | 'stop' | 'seed'>;
  /** Feature extraction: values per embedding, the pooling modes (concatenated), whether a
   *  Normalize module ends the pipeline, the named prompts and the default one, tokens per text. */
  dims?: number;
  pooling?: Array<'cls' | 'max' | 'mean' | 'mean_sqrt_len_tokens' | 'weightedmean' | 'lasttoken'>;
  normalized?: boolean;
  prompts?: Record<string, string>;
  defaultPromptName?: string | null;
  maxSeqLength?: number;
  [key: string]: unknown;
}

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  /** As OpenAI: usage in one last chunk, whose `choices` is empty. */
  stream_options?: { include_usage?: boolean };
  /** `max_tokens`' newer name (it wins when both are given). */
  max_completion_tokens?: number;
  max_tokens?: number;
  /** One choice per request: anything but 1 is a `Usage` error. */
  n?: 1;
  temperature?: number;
  top_p?: number;
  stop?: string | string[];
  seed?: number;
  signal?: AbortSignal;
  /** Each in [-2, 2] (a `Usage` error outside). */
  frequency_penalty?: number;
  presence_penalty?: number;
  logprobs?: boolean;
  /** ≤ 20; needs `logprobs: true`. */
  top_logprobs?: number;
  response_format?: ResponseFormat;
  tools?: Tool[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  /** Not supported yet: given, the request is refused with `Unsupported` rather than ignored. */
  functions?: never; function_call?: never; logit_bias?: never;
}
export interface ChatLogprobs { content: TokenLogprob[]; refusal: null }
export interface ChatCompletionUsage { prompt_tokens: number; completion_tokens: number; total_tokens: number }
export interface ChatCompletion {
  id: string; object: 'chat.completion'; created: number; model: string;
  choices: { index: number; message: { role: 'assistant'; content: string | null; tool_calls?: ToolCall[]; refusal: null }; logprobs: ChatLogprobs | null;
    finish_reason: 'stop' | 'length' | 'tool_calls' }[];
  usage: ChatCompletionUsage;
}
export interface ChatCompletionChunk {
  id: string; object: 'chat.completion.chunk'; created: number; model: string;
  choices: { index: number; delta: { role?: 'assistant'; content?: string; tool_calls?: (ToolCall & { index: number })[] }; logprobs: ChatLogprobs | null;
    finish_reason: 'stop' | 'length' | 'tool_calls' | null }[];
  usage?: ChatCompletionUsage;
}

export class TextGenerationPipeline {
  readonly task: 'text-generation';
  readonly info: ModelInfo;
  readonly chat: {
    completions: {
      create(request: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(request: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
    };
  };
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean; tools?: Tool[] }): Promise<string>;
  /** A prompt string is used as is; messages go through the model's chat template. */
  generate(prompt: string | ChatMessage[], options?: GenerateOptions): Promise<GenerateResult>;
  stream(prompt: string | ChatMessage[], options?: Omit<GenerateOptions, 'onText'>): TextStream;
  dispose(): void;
}

export interface Embeddings {
  /** Row-major [n, d]; each row of unit length where the model ends in Normalize (`info.normalized`). */
  data: Float32Array;
  dims: [number, number];
}

export interface EmbedOptions {
  /** One of `info.prompts` (e.g. 'query'), put before each text. */
  promptName?: string;
  /** A prompt text put before each text (instead of a named one). */
  prompt?: string;
}

export class FeatureExtractionPipeline {
  readonly task: 'feature-extraction';
  readonly info: ModelInfo;
  embed(texts: string | string[], options?: EmbedOptions): Promise<Embeddings>;
  dispose(): void;
}

/** An image: a URL, a Blob/File, PNG or JPEG bytes (decoded by the engine), or pixels the browser has. */
export type ImageInput = string | URL | Blob | ArrayBuffer | ArrayBufferView | ImageData | ImageBitmap
  | HTMLImageElement | HTMLCanvasElement | OffscreenCanvas | VideoFrame | { width: number; height: number; data: Uint8ClampedArray | Uint8Array };
/** Sound: a URL, a Blob/File or bytes of a WAV file, an AudioBuffer, or mono samples (with `samplingRate`). */
export type AudioInput = string | URL | Blob | ArrayBuffer | ArrayBufferView | AudioBuffer | Float32Array;

export interface LabelScore { label: string; score: number }
export interface FillMaskResult {
  score: number;
  /** The vocabulary id. */
  token: number;
  token_str: string;
  /** The text with this token in place of the mask. */
  sequence: string;
}

/** `info` of the encoder pipelines. */
export interface EncoderInfo {
  repo: string;
  commit: string;
  task: string;
  /** "vit", "clip", "audio-spectrogram-transformer" or "bert". */
  architecture: string;
  layers: number;
  hidden: number;
  labels?: string[];
  adapter: string;
  device: 'webgpu' | 'cpu';
  fallbackReason: string | null;
  /** Times the model was loaded again after a lost GPU device, and why the last one was lost. */
  recoveries?: number;
  lostReason?: string;
  worker?: boolean;
}

export class ImageClassificationPipeline {
  readonly task: 'image-classification';
  readonly info: EncoderInfo;
  /** Softmax over the model's labels, the `topK` best (default 5). */
  classify(image: ImageInput, options?: { topK?: number; signal?: AbortSignal }): Promise<LabelScore[]>;
  classify(images: ImageInput[], options?: { topK?: number; signal?: AbortSignal }): Promise<LabelScore[][]>;
  dispose(): void;
}
export class ZeroShotImageClassificationPipeline {
  readonly task: 'zero-shot-image-classification';
  readonly info: EncoderInfo;
  /** Every label scored (softmax over the labels of CLIP's scaled cosines), best first. */
  classify(image: ImageInput, labels: string[], options?: { hypothesisTemplate?: string; signal?: AbortSignal }): Promise<LabelScore[]>;
  classify(images: ImageInput[], labels: string[], options?: { hypothesisTemplate?: string; signal?: AbortSignal }): Promise<LabelScore[][]>;
  dispose(): void;
}
/** CLIP's embeddings: images and texts in one space (L2-normalised; a dot product is the cosine). */
export class ImageFeatureExtractionPipeline {
  readonly task: 'image-feature-extraction';
  readonly info: EncoderInfo;
  /** `image_embeds`: the projected pooled output of the vision tower. */
  embed(images: ImageInput | ImageInput[], options?: { signal?: AbortSignal }): Promise<Embeddings>;
  /** `text_embeds` of the text tower, in the images' space. */
  embedTexts(texts: string | string[]): Promise<Embeddings>;
  dispose(): void;
}
export interface ImageFeatureExtractionPipeline {
  (images: ImageInput | ImageInput[]): Promise<Tensor>;
}
export class AudioClassificationPipeline {
  readonly task: 'audio-classification';
  readonly info: EncoderInfo;
  /** `samplingRate` of Float32Array input (default 16000); others say their own. */
  classify(audio: AudioInput, options?: { topK?: number; samplingRate?: number; signal?: AbortSignal }): Promise<LabelScore[]>;
  classify(audio: AudioInput[], options?: { topK?: number; samplingRate?: number; signal?: AbortSignal }): Promise<LabelScore[][]>;
  dispose(): void;
}
export class FillMaskPipeline {
  readonly task: 'fill-mask';
  readonly info: EncoderInfo;
  /** A text with one mask token gives a list; with several, a list per mask. */
  fill(text: string, options?: { topK?: number }): Promise<FillMaskResult[] | FillMaskResult[][]>;
  fill(texts: string[], options?: { topK?: number }): Promise<(FillMaskResult[] | FillMaskResult[][])[]>;
  dispose(): void;
}
/** A text pair: a cross-encoder's query (`text`) and passage (`text_pair`), as transformers.js takes it. */
export interface TextPair { text: string; text_pair: string }
export class TextClassificationPipeline {
  readonly task: 'text-classification';
  readonly info: EncoderInfo;
  /** Softmax over the labels; each label's sigmoid for a one-label (relevance) or multi-label model. */
  classify(text: string | TextPair, options?: { topK?: number }): Promise<LabelScore[]>;
  classify(texts: Array<string | TextPair>, options?: { topK?: number }): Promise<LabelScore[][]>;
  dispose(): void;
}
export const ENCODER_TASKS: string[];

export interface TranscribeOptions {
  /** Timed chunks (`chunks`), as transformers' `return_timestamps`. */
  returnTimestamps?: boolean;
  /** The spoken language (multilingual models): a name, code or token; detected when absent. */
  language?: string;
  /** `translate` into English (multilingual models); `transcribe` by default. */
  task?: 'transcribe' | 'translate';
  /** Window length for long audio, at most 30 s (default: 30 s windows past 30 s of audio). */
  chunkLengthS?: number;
  /** Overlap on each side of a window (default chunkLengthS / 6). */
  strideLengthS?: number;
  /** Sample at this temperature (greedy without it, or at 0). */
  temperature?: number;
  seed?: number;
  maxNewTokens?: number;
  /** The rate of Float32Array input (default 16000). */
  samplingRate?: number;
  signal?: AbortSignal;
  /** The transcript so far, as it grows. */
  onText?: (text: string) => void;
}
export interface TranscriptChunk { text: string; timestamp: [number | null, number | null] }
export interface Transcript {
  text: string;
  /** With `returnTimestamps`. */
  chunks?: TranscriptChunk[];
  /** The language code, given or detected (multilingual models), else null. */
  language: string | null;
  timings: { audio_s: number; features_ms: number; encode_ms: number; decode_ms: number; total_ms: number; tokens: number; real_time_factor: number };
}
export interface SpeechInfo {
  repo: string;
  commit: string;
  task: 'automatic-speech-recognition';
  architecture: 'whisper';
  multilingual: boolean;
  device: 'webgpu' | 'cpu';
  adapter: string;
  fallbackReason: string | null;
  /** Times the model was loaded again after a lost GPU device, and why the last one was lost. */
  recoveries?: number;
  lostReason?: string;
  worker?: boolean;
}
export class AutomaticSpeechRecognitionPipeline {
  readonly task: 'automatic-speech-recognition';
  readonly info: SpeechInfo;
  /** Whisper: WAV natively, other containers (MP3, Ogg, WebM) through the browser's decodeAudioData. */
  transcribe(audio: AudioInput, options?: TranscribeOptions): Promise<Transcript>;
  transcribe(audio: AudioInput[], options?: TranscribeOptions): Promise<Transcript[]>;
  dispose(): void;
}

export function pipeline(task: 'text-generation', model: string, options?: TextGenerationLoadOptions): Promise<TextGenerationPipeline>;
export function pipeline(task: 'feature-extraction', model: string, options?: LoadOptions): Promise<FeatureExtractionPipeline>;
export function pipeline(task: 'image-classification', model: string, options?: LoadOptions): Promise<ImageClassificationPipeline>;
export function pipeline(task: 'zero-shot-image-classification', model: string, options?: LoadOptions): Promise<ZeroShotImageClassificationPipeline>;
export function pipeline(task: 'image-feature-extraction', model: string, options?: LoadOptions): Promise<ImageFeatureExtractionPipeline>;
export function pipeline(task: 'audio-classification', model: string, options?: LoadOptions): Promise<AudioClassificationPipeline>;
export function pipeline(task: 'automatic-speech-recognition', model: string, options?: LoadOptions): Promise<AutomaticSpeechRecognitionPipeline>;
export function pipeline(task: 'fill-mask', model: string, options?: LoadOptions): Promise<FillMaskPipeline>;
export function pipeline(task: 'text-classification', model: string, options?: LoadOptions): Promise<TextClassificationPipeline>;

export interface Capabilities {
  webgpu: boolean;
  adapter: string | null;
  architecture?: string;
  vendor?: string;
  features: string[];
  limits: Record<string, number>;
  /** The device `device: 'auto'` uses. */
  device: 'webgpu' | 'cpu';
  /** Why there is no WebGPU, when there is none. */
  fallbackReason: string | null;
}
export function capabilities(): Promise<Capabilities>;
/** Bytes of the engine's wasm linear memory: its peak so far (it never shrinks). */
export function wasmMemoryBytes(): Promise<number>;

export interface CachedRevision {
  repo: string;
  commit: string;
  files: string[];
  completeFiles: number;
  bytes: number;
  lastUsed: number;
}
export const cache: {
  list(options?: { db?: string }): Promise<CachedRevision[]>;
  /** Resolves to the bytes freed. */
  delete(repo: string, commit: string, options?: { db?: string }): Promise<number>;
  clear(options?: { db?: string }): Promise<void>;
  estimate(): Promise<{ usage: number; quota: number }>;
};
