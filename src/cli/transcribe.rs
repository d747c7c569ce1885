//! `hugrt transcribe --model DIR --audio FILE.wav [--timestamps] [--language L] [--task transcribe|translate]
//! [--chunk-length S] [--stride-length S] [--temperature T --seed N] [--device gpu|cpu] [--json]`:
//! speech recognition with a Whisper checkpoint folder laid out as on the hub (config.json,
//! generation_config.json, preprocessor_config.json, tokenizer.json, model.safetensors), on the
//! native GPU or the CPU fallback. `--json` prints `{text, chunks?, language, windows: [{start_s,
//! length_s, tokens, prompt_len}], timings: {audio_s, features_ms, encode_ms, decode_ms, total_ms,
//! tokens, real_time_factor}, device, adapter}`.

use std::path::PathBuf;
use std::rc::Rc;

use serde_json::json;

use super::CliError;
use super::classify::model_error;
use crate::generate::whisper::{DecodeOptions, Task};
use crate::gpu::ops::sample::Sampling;
use crate::models::speech::{SpeechFiles, TranscribeOptions, Transcriber};

#[derive(clap::Args)]
pub struct Args {
    /// A Whisper checkpoint folder.
    #[arg(long)]
    pub model: PathBuf,
    /// A WAV file.
    #[arg(long)]
    pub audio: PathBuf,
    /// Timed chunks (`chunks` in the JSON).
    #[arg(long)]
    pub timestamps: bool,
    /// The spoken language (multilingual models): a name, code or token; detected when absent.
    #[arg(long)]
    pub language: Option<String>,
    /// transcribe or translate (into English; multilingual models).
    #[arg(long)]
    pub task: Option<String>,
    /// Window length in seconds for long audio (at most 30; default 30 past 30 s of audio).
    #[arg(long)]
    pub chunk_length: Option<f64>,
    /// Overlap on each side of a window in seconds (default chunk length / 6).
    #[arg(long)]
    pub stride_length: Option<f64>,
    /// Sample at this temperature (greedy without it).
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// "gpu" (wgpu) or "cpu" (the candle fallback).
    #[arg(long, default_value = "gpu")]
    pub device: String,
    #[arg(long)]
    pub json: bool,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError { code: if e.kind() == std::io::ErrorKind::NotFound { "NotFound" } else { "Io" }, message: format!("{}: {e}", path.display()) })
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let usage = |m: String| CliError { code: "Usage", message: m };
    let task = match args.task.as_deref() {
        None => None,
        Some("transcribe") => Some(Task::Transcribe),
        Some("translate") => Some(Task::Translate),
        Some(other) => return Err(usage(format!("--task {other:?} (transcribe or translate)"))),
    };
    let sampling = match args.temperature {
        Some(t) if t > 0.0 && t.is_finite() => Some(Sampling::at_temperature(t)),
        Some(t) => return Err(usage(format!("--temperature {t} (a positive number)"))),
        None => None,
    };
    let gpu = super::classify::gpu_for(&args.device)?.map(Rc::new);
    let dir = &args.model;
    let (config, generation_config, preprocessor_config, tokenizer) = (read(&dir.join("config.json"))?, read(&dir.join("generation_config.json"))?, read(&dir.join("preprocessor_config.json"))?, read(&dir.join("tokenizer.json"))?);
    let audio = crate::preprocess::audio::decode_wav(&read(&args.audio)?).map_err(|e| CliError { code: "BadInput", message: e.to_string() })?;
    let (table, mut file) = super::open_weights(dir)?;
    let files = SpeechFiles { config: &config, generation_config: &generation_config, preprocessor_config: &preprocessor_config, tokenizer: &tokenizer };
    let mut model = pollster::block_on(Transcriber::load(gpu, files, &table, &mut file)).map_err(model_error)?;
    let opts = TranscribeOptions {
        decode: DecodeOptions { language: args.language.clone(), task, timestamps: args.timestamps, sampling, seed: args.seed, max_new_tokens: None },
        chunk_length_s: args.chunk_length,
        stride_length_s: args.stride_length,
    };
    let out = pollster::block_on(model.transcribe(&audio, &opts, &mut |_| {}, &|| false)).map_err(model_error)?;
    if let Some(e) = model.take_uncaptured_errors().into_iter().next() {
        return Err(CliError { code: "GpuError", message: e });
    }
    if !args.json {
        return Ok(format!("{}\n", out.text.trim()));
    }
    let mut v = serde_json::to_value(&out).map_err(|e| CliError { code: "Internal", message: e.to_string() })?;
    v["device"] = json!(model.device());
    v["adapter"] = json!(model.adapter());
    if out.chunks.is_none() {
        v.as_object_mut().map(|o| o.remove("chunks"));
    }
    Ok(format!("{v}\n"))
}
