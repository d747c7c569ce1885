//! Speech recognition over one interface, whichever device: a Whisper checkpoint (its config,
//! generation and preprocessor configs, tokenizer and weights) on the GPU or the CPU fallback, and
//! a recording transcribed as transformers' ASR pipeline does it — resampled to 16 kHz, cut into
//! 30 s windows with strides when longer (`chunk_length_s`, `stride_length_s`), each window's
//! features encoded and decoded (`Whisper::decode`), the windows merged (`merge_windows`). Text
//! is reported as it grows. Shared by the wasm API, the CLI and the benchmarks.

use std::rc::Rc;

use crate::backend::Backend;
use crate::clock::now_ms;
use crate::cpu::backend::Cpu;
use crate::formats::TensorTable;
use crate::generate::whisper::{DecodeOptions, WhisperGeneration, WindowOutput, chunk_windows, merge_windows};
use crate::gpu::GpuContext;
use crate::gpu::backend::Gpu;
use crate::models::whisper::{Whisper, WindowTokens};
use crate::models::{ModelError, RangeReader};
use crate::preprocess::audio::{Audio, WhisperFeatureExtractor};
use crate::tokenizer::Tokenizer;

/// A Whisper model on the GPU or on the CPU fallback.
#[allow(clippy::large_enum_variant)] // one per loaded model
pub enum SpeechEngine {
    Gpu(Whisper<Gpu>),
    Cpu(Whisper<Cpu>),
}

/// How to transcribe a recording.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TranscribeOptions {
    pub decode: DecodeOptions,
    /// Window length in seconds for audio cut into overlapping windows (at most the model's 30 s).
    /// `None`: one window when the audio fits in one, else 30 s windows.
    pub chunk_length_s: Option<f64>,
    /// Overlap on each side of a window; `None`: chunk_length_s / 6 (transformers' default).
    pub stride_length_s: Option<f64>,
}

/// A piece of the transcript with its time span (with timestamps asked).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Chunk {
    pub text: String,
    /// Seconds from the start; the end is `None` when the audio ended inside the piece.
    pub timestamp: (Option<f64>, Option<f64>),
}

/// Milliseconds spent, and the real-time factor.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SpeechTimings {
    pub audio_s: f64,
    pub features_ms: f64,
    pub encode_ms: f64,
    pub decode_ms: f64,
    pub total_ms: f64,
    /// Generated tokens over all windows.
    pub tokens: usize,
    /// Seconds of audio per second of compute.
    pub real_time_factor: f64,
}

/// What one window produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct WindowReport {
    /// Where the window starts and how long it is, in seconds.
    pub start_s: f64,
    pub length_s: f64,
    /// The prompt and generated tokens.
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Transcript {
    pub text: String,
    /// The timed pieces, with timestamps asked.
    pub chunks: Option<Vec<Chunk>>,
    /// The language code, given or detected (multilingual models).
    pub language: Option<String>,
    pub windows: Vec<WindowReport>,
    pub timings: SpeechTimings,
    /// Stopped before the end (`should_stop`).
    pub stopped: bool,
}

pub struct Transcriber {
    pub engine: SpeechEngine,
    pub features: WhisperFeatureExtractor,
    pub rules: WhisperGeneration,
    pub tokenizer: Tokenizer,
}

/// `$body` with `$m` bound to the engine's `Whisper`, whichever its backend.
macro_rules! on_model {
    ($engine:expr, $m:ident => $body:expr) => {
        match $engine {
            SpeechEngine::Gpu($m) => $body,
            SpeechEngine::Cpu($m) => $body,
        }
    };
}

/// The files of a Whisper checkpoint besides its weights.
pub struct SpeechFiles<'a> {
    pub config: &'a [u8],
    pub generation_config: &'a [u8],
    pub preprocessor_config: &'a [u8],
    pub tokenizer: &'a [u8],
}

fn text(tokenizer: &Tokenizer, tokens: &[u32]) -> Result<String, ModelError> {
    tokenizer.decode(tokens, false).map_err(|e| ModelError::Config(format!("decoding: {e}")))
}

/// Tokens that are neither text nor timestamps (the end token, languages, tasks).
fn special(rules: &WhisperGeneration, t: u32) -> bool {
    t >= rules.eos_token_id && t < rules.timestamp_begin()
}

async fn window<B: Backend>(m: &mut Whisper<B>, rules: &WhisperGeneration, features: &[f32], opts: &DecodeOptions, on_token: &mut dyn FnMut(u32) -> bool, t: &mut SpeechTimings) -> Result<WindowTokens, ModelError> {
    let t0 = now_ms();
    let cross = m.encode(features).await?;
    let t1 = now_ms();
    let out = m.decode(rules, &cross, opts, |_, token| on_token(token)).await?;
    t.encode_ms += t1 - t0;
    t.decode_ms += now_ms() - t1;
    Ok(out)
}

impl Transcriber {
    /// Loads the checkpoint onto `gpu`, or the CPU without one.
    pub async fn load(gpu: Option<Rc<GpuContext>>, files: SpeechFiles<'_>, table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let engine = match gpu {
            Some(ctx) => SpeechEngine::Gpu(Whisper::load(Gpu::new(ctx), files.config, table, read).await?),
            None => SpeechEngine::Cpu(Whisper::load(Cpu, files.config, table, read).await?),
        };
        let shape = on_model!(&engine, m => m.shape);
        let rules = WhisperGeneration::from_json(files.generation_config, shape.vocab)?;
        let features = WhisperFeatureExtractor::from_json(files.preprocessor_config).map_err(|e| ModelError::Config(e.to_string()))?;
        if features.config().feature_size != shape.mel_bins as usize || features.config().frames() != shape.frames as usize {
            return Err(ModelError::Config(format!(
                "preprocessor_config.json gives {} mel bins × {} frames, the model takes {} × {}",
                features.config().feature_size,
                features.config().frames(),
                shape.mel_bins,
                shape.frames
            )));
        }
        let tokenizer = Tokenizer::from_json(files.tokenizer).map_err(|e| ModelError::Config(format!("tokenizer.json: {e}")))?;
        Ok(Self { engine, features, rules, tokenizer })
    }

    pub fn device(&self) -> &'static str {
        on_model!(&self.engine, m => m.backend.device())
    }

    pub fn adapter(&self) -> String {
        on_model!(&self.engine, m => m.backend.adapter())
    }

    /// Errors the GPU reported outside any op.
    pub fn take_uncaptured_errors(&self) -> Vec<String> {
        on_model!(&self.engine, m => m.backend.take_uncaptured_errors())
    }

    /// Transcribes `audio`. `on_text` sees the transcript so far as it grows (after each token);
    /// `should_stop` is asked between tokens (an abort: the text so far is returned, `stopped`).
    pub async fn transcribe(&mut self, audio: &Audio, opts: &TranscribeOptions, on_text: &mut dyn FnMut(&str), should_stop: &dyn Fn() -> bool) -> Result<Transcript, ModelError> {
        let Self { engine, features, rules, tokenizer } = self;
        rules.check(&opts.decode)?;
        let start = now_ms();
        let rate = features.config().sampling_rate;
        let window_len = features.config().n_samples();
        let resampled;
        let samples: &[f32] = if audio.sample_rate == rate {
            &audio.samples
        } else {
            resampled = audio.resampled(rate).map_err(|e| ModelError::Input(e.to_string()))?.samples;
            &resampled
        };
        let mut timings = SpeechTimings { audio_s: samples.len() as f64 / f64::from(rate), ..Default::default() };
        let chunked = opts.chunk_length_s.is_some() || samples.len() > window_len;
        let cuts = if chunked {
            let chunk_s = opts.chunk_length_s.unwrap_or(window_len as f64 / f64::from(rate));
            let stride_s = opts.stride_length_s.unwrap_or(chunk_s / 6.0);
            let at = |s: f64| (s * f64::from(rate)).round() as usize;
            let (chunk, stride) = (at(chunk_s), at(stride_s));
            if !(chunk_s.is_finite() && stride_s.is_finite()) || chunk == 0 || chunk > window_len || stride_s < 0.0 || chunk <= 2 * stride {
                return Err(ModelError::Input(format!("chunk_length_s {chunk_s} with stride_length_s {stride_s}: the window must be at most {} s and longer than both strides", window_len / rate as usize)));
            }
            chunk_windows(samples.len(), chunk, stride, stride)
        } else {
            vec![(0, samples.len(), 0, 0)]
        };
        let secs = |n: usize| n as f64 / f64::from(rate);
        let timestamps = opts.decode.timestamps;
        let merge = |outputs: &[WindowOutput]| merge_windows(outputs, rules.timestamp_begin(), |t| special(rules, t), timestamps);
        let mut outputs: Vec<WindowOutput> = Vec::new();
        let mut windows = Vec::new();
        let mut language = None;
        let mut stopped = false;
        // The windows so far merged into timed pieces, and their text.
        let mut pieces: Vec<Chunk> = Vec::new();
        let mut merged_text = String::new();
        for (first, len, left, right) in cuts {
            let t0 = now_ms();
            let feats = features.extract(&samples[first..first + len]).map_err(|e| ModelError::Input(e.to_string()))?;
            timings.features_ms += now_ms() - t0;
            let mut generated: Vec<u32> = Vec::new();
            let mut asked_to_stop = false;
            let mut on_token = |token: u32| -> bool {
                generated.push(token);
                let words: Vec<u32> = generated.iter().copied().filter(|&t| t < rules.eos_token_id).collect();
                if let Ok(t) = text(tokenizer, &words) {
                    on_text(&format!("{merged_text}{t}"));
                }
                asked_to_stop = should_stop();
                !asked_to_stop
            };
            let out = on_model!(&mut *engine, m => window(m, rules, &feats, &opts.decode, &mut on_token, &mut timings).await)?;
            stopped = asked_to_stop;
            timings.tokens += out.tokens.len() - out.prompt_len;
            language = language.or(out.language.and_then(|l| rules.language_of(l)));
            outputs.push(WindowOutput { tokens: out.generated().to_vec(), stride: chunked.then(|| (secs(len), secs(left), secs(right))) });
            windows.push(WindowReport { start_s: secs(first), length_s: secs(len), tokens: out.tokens, prompt_len: out.prompt_len });
            pieces = merge(&outputs).into_iter().map(|c| Ok(Chunk { text: text(tokenizer, &c.tokens)?, timestamp: c.timestamp })).collect::<Result<_, ModelError>>()?;
            merged_text = pieces.iter().map(|c| c.text.as_str()).collect();
            if stopped {
                break;
            }
        }
        timings.total_ms = now_ms() - start;
        timings.real_time_factor = if timings.total_ms > 0.0 { timings.audio_s / (timings.total_ms / 1000.0) } else { 0.0 };
        Ok(Transcript { text: merged_text, chunks: opts.decode.timestamps.then_some(pieces), language, windows, timings, stopped })
    }
}
