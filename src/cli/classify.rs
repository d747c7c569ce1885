//! `hugrt classify --model DIR (--image FILE | --audio FILE.wav | --text T [--text-pair P])… [--labels a,b,c]
//! [--top-k N] [--device gpu|cpu] [--json]`: the encoder tasks on a checkpoint folder laid out as
//! on the hub — image classification (ViT), zero-shot image classification (CLIP, with
//! `--labels`), audio classification (AST), fill-mask (BERT, a text with `[MASK]`) and text
//! classification (BERT with a classifier) — on the native GPU or the CPU fallback. Inputs are
//! decoded and pre-processed as in the browser (`preprocess`).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::CliError;
use crate::gpu::GpuContext;
use crate::models::llama::ModelError;
use crate::models::tasks::{self, Engine};
use crate::preprocess::PreprocessError;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint folder (config.json, model.safetensors, and preprocessor_config.json /
    /// tokenizer.json as the task needs).
    #[arg(long)]
    pub model: PathBuf,
    /// A PNG or JPEG image (repeatable).
    #[arg(long)]
    pub image: Vec<PathBuf>,
    /// A WAV file (repeatable).
    #[arg(long)]
    pub audio: Vec<PathBuf>,
    /// A text (repeatable): fill-mask when it has a mask token, else text classification.
    #[arg(long)]
    pub text: Vec<String>,
    /// The second text of a pair for each --text (repeatable, in order): a cross-encoder scores
    /// the passage `--text-pair` against the query `--text`.
    #[arg(long)]
    pub text_pair: Vec<String>,
    /// Zero-shot labels for CLIP, comma-separated.
    #[arg(long)]
    pub labels: Option<String>,
    /// The text CLIP embeds for each label, `{}` standing for the label.
    #[arg(long, default_value = "a photo of a {}")]
    pub template: String,
    #[arg(long, default_value_t = 5)]
    pub top_k: u32,
    /// "gpu" (wgpu) or "cpu" (the candle fallback).
    #[arg(long, default_value = "gpu")]
    pub device: String,
    /// Print JSON: {task, architecture, results: [[{label, score}]], logits, timings, adapter, device}.
    #[arg(long)]
    pub json: bool,
}

pub(crate) fn model_error(e: ModelError) -> CliError {
    let code = match &e {
        // On the command line an input the model cannot take is a usage error.
        ModelError::Input(_) | ModelError::Token { .. } | ModelError::ContextFull { .. } => "Usage",
        other => other.code(),
    };
    CliError { code, message: e.to_string() }
}

fn input_error(e: PreprocessError) -> CliError {
    CliError { code: if matches!(e, PreprocessError::Config(_)) { "BadModelFile" } else { "BadInput" }, message: e.to_string() }
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError { code: "Io", message: format!("{}: {e}", path.display()) })
}

/// Loads the checkpoint folder onto the GPU or the CPU.
pub(crate) fn load(dir: &Path, device: &str) -> Result<Engine, CliError> {
    let config = read(&dir.join("config.json"))?;
    let (table, mut file) = super::open_weights(dir)?;
    pollster::block_on(Engine::load(gpu_for(device)?, &config, &table, &mut file)).map_err(model_error)
}

/// A GPU context for `--device gpu`, none for `cpu`.
pub(crate) fn gpu_for(device: &str) -> Result<Option<GpuContext>, CliError> {
    match device {
        "gpu" => Ok(Some(pollster::block_on(GpuContext::new()).map_err(|e| CliError { code: e.code(), message: e.to_string() })?)),
        "cpu" => Ok(None),
        other => Err(CliError { code: "Usage", message: format!("--device {other:?} (gpu or cpu)") }),
    }
}

/// `{label, score}` for the `k` most probable of `logits`.
fn ranked(labels: &[String], logits: &[f32], k: usize, sigmoid: bool) -> serde_json::Value {
    tasks::ranked(labels, logits, k, sigmoid).into_iter().map(|(label, score)| json!({ "label": label, "score": score })).collect()
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let t0 = Instant::now();
    let mut engine = load(&args.model, &args.device)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let arch = engine.architecture();
    let tokenizer = || -> Result<Tokenizer, CliError> {
        Tokenizer::from_json(&read(&args.model.join("tokenizer.json"))?).map_err(|e| CliError { code: "BadModelFile", message: e.to_string() })
    };
    let t1 = Instant::now();
    let usage = |m: &str| CliError { code: "Usage", message: m.into() };
    let (task, logits, labels): (&str, Vec<Vec<f32>>, Vec<String>) = match arch {
        "vit" | "clip" => {
            if args.image.is_empty() {
                return Err(usage("this model takes --image"));
            }
            let processor = crate::preprocess::image::ImageProcessor::from_config(&read(&args.model.join("preprocessor_config.json"))?).map_err(input_error)?;
            let mut pixels = Vec::new();
            for path in &args.image {
                let image = crate::preprocess::image::Image::decode(&read(path)?).map_err(input_error)?;
                pixels.extend(processor.preprocess(&image).map_err(input_error)?.data);
            }
            if arch == "vit" {
                engine.check_task("image-classification").map_err(model_error)?;
                let logits = pollster::block_on(engine.classify_pixels(&pixels)).map_err(model_error)?;
                ("image-classification", logits, engine.labels().to_vec())
            } else {
                let labels: Vec<String> = args.labels.as_deref().ok_or_else(|| usage("CLIP takes --labels a,b,c"))?.split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
                let texts: Vec<String> = labels.iter().map(|l| args.template.replace("{}", l)).collect();
                let logits = pollster::block_on(engine.zero_shot(&tokenizer()?, &pixels, &texts)).map_err(model_error)?;
                ("zero-shot-image-classification", logits, labels)
            }
        }
        "audio-spectrogram-transformer" => {
            if args.audio.is_empty() {
                return Err(usage("this model takes --audio FILE.wav"));
            }
            let extractor = crate::preprocess::audio::AstFeatureExtractor::from_json(&read(&args.model.join("preprocessor_config.json"))?).map_err(input_error)?;
            let mut features = Vec::new();
            for path in &args.audio {
                let audio = crate::preprocess::audio::decode_wav(&read(path)?).map_err(input_error)?;
                features.extend(extractor.extract(&audio).map_err(input_error)?);
            }
            let logits = pollster::block_on(engine.classify_features(&features)).map_err(model_error)?;
            ("audio-classification", logits, engine.labels().to_vec())
        }
        _ => {
            if args.text.is_empty() {
                return Err(usage("this model takes --text"));
            }
            let tok = tokenizer()?;
            let mask = tasks::mask_token(&tok);
            let fill = mask.is_some() && args.text.iter().all(|t| tasks::MASK_TOKENS.iter().any(|m| t.contains(m)));
            let task = if fill { "fill-mask" } else { "text-classification" };
            engine.check_task(task).map_err(model_error)?;
            if !args.text_pair.is_empty() && (fill || args.text_pair.len() != args.text.len()) {
                return Err(usage("--text-pair pairs each --text with a second text: give as many, without mask tokens"));
            }
            let mut logits = Vec::new();
            for (i, text) in args.text.iter().enumerate() {
                if let Some(pair) = args.text_pair.get(i) {
                    logits.push(pollster::block_on(engine.classify_pair(&tok, text, pair)).map_err(model_error)?);
                    continue;
                }
                let ids = engine.tokenize(&tok, text).map_err(model_error)?;
                if let (true, Some(m)) = (fill, mask) {
                    logits.extend(pollster::block_on(engine.fill_mask(&ids, m)).map_err(model_error)?);
                } else {
                    logits.push(pollster::block_on(engine.classify_ids(&ids)).map_err(model_error)?);
                }
            }
            let labels = if fill { (0..tok.vocab_size() as u32).map(|i| tok.id_to_token(i).unwrap_or_default()).collect() } else { engine.labels().to_vec() };
            (task, logits, labels)
        }
    };
    let run_ms = t1.elapsed().as_secs_f64() * 1e3;
    let k = if task == "zero-shot-image-classification" { labels.len() } else { args.top_k as usize };
    let sigmoid = task == "text-classification" && engine.sigmoid_scores();
    let results: Vec<serde_json::Value> = logits.iter().map(|l| ranked(&labels, l, k, sigmoid)).collect();
    let info = engine.info();
    if args.json {
        let report = json!({
            "task": task, "architecture": arch, "results": results, "logits": logits,
            "timings": { "loadMs": load_ms, "runMs": run_ms }, "adapter": info["adapter"], "device": info["device"],
        });
        return Ok(format!("{report}\n"));
    }
    let mut out = format!("{task} with {arch} on {} ({:.0} ms to load, {:.0} ms to run)\n", info["adapter"], load_ms, run_ms);
    for (i, r) in results.iter().enumerate() {
        out += &format!("input {i}:\n");
        for item in r.as_array().into_iter().flatten() {
            out += &format!("  {:.4}  {}\n", item["score"].as_f64().unwrap_or(0.0), item["label"].as_str().unwrap_or(""));
        }
    }
    Ok(out)
}

/// `hugrt bench encoder --model DIR|vit-base|ast-base [--device gpu|cpu] [--batch N]`: images/s
/// (ViT, CLIP's image tower) or seconds of audio per second (AST: a clip is max_length frames of
/// 10 ms) on seeded random inputs of the model's input size, after one warm-up batch; the model
/// alone (decoding and pre-processing are timed by their own tests). `vit-base` and `ast-base`
/// are random base-sized checkpoints made in memory (`synthetic`).
pub fn bench(model: &Path, device: &str, batch: usize, iterations: u32, json: bool) -> Result<String, CliError> {
    let t0 = Instant::now();
    let mut engine = match model.to_str() {
        Some(name @ ("vit-base" | "ast-base")) if !model.exists() => {
            let (config, bytes) = synthetic(name)?;
            let table = crate::formats::read_table(&bytes, bytes.len() as u64, name).map_err(|e| CliError { code: "Internal", message: e.to_string() })?;
            pollster::block_on(Engine::load(gpu_for(device)?, &config, &table, &mut &bytes[..])).map_err(model_error)?
        }
        _ => load(model, device)?,
    };
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let arch = engine.architecture();
    let per = engine.input_len().ok_or_else(|| CliError { code: "Usage", message: format!("bench encoder takes an image or audio model, not {arch}") })?;
    let mut rng = crate::rng::SeededRng::new(7);
    let inputs = rng.signed_unit_vec(per * batch);
    let step = |engine: &mut Engine| -> Result<(), CliError> {
        match arch {
            "vit" => pollster::block_on(engine.classify_pixels(&inputs)).map(|_| ()),
            "clip" => pollster::block_on(engine.image_embeds(&inputs)).map(|_| ()),
            _ => pollster::block_on(engine.classify_features(&inputs)).map(|_| ()),
        }
        .map_err(model_error)
    };
    step(&mut engine)?;
    let t1 = Instant::now();
    for _ in 0..iterations {
        step(&mut engine)?;
    }
    let seconds = t1.elapsed().as_secs_f64();
    let per_s = (batch as f64 * f64::from(iterations)) / seconds;
    let info = engine.info();
    let (unit, rate) = if arch == "audio-spectrogram-transformer" {
        ("audioSecondsPerS", per_s * engine.input_seconds().unwrap_or(0.0))
    } else {
        ("imagesPerS", per_s)
    };
    if json {
        return Ok(format!("{}\n", json!({ "architecture": arch, "batch": batch, "iterations": iterations, "loadMs": load_ms, unit: rate, "inputsPerS": per_s, "adapter": info["adapter"], "device": info["device"] })));
    }
    Ok(format!("{arch} on {} ({}): batch {batch}, {iterations} iterations: {rate:.2} {unit} ({per_s:.2} inputs/s; load {load_ms:.0} ms)\n", info["adapter"], info["device"]))
}

/// A random base-sized checkpoint (`config.json` bytes, safetensors bytes) for benchmarks when no
/// real one is at hand: "vit-base" (ViT-B/16 at 224², 1000 labels) or "ast-base" (AST over 128 mel
/// bins × 1024 frames, patches every 10, 527 labels). Weights are F16 with trained-like magnitudes
/// (±0.05; norm gains about 1): uniform ±1 weights would make attention scores in the hundreds
/// whose softmax tails are f32 subnormals, which CPUs multiply slowly.
pub(crate) fn synthetic(name: &str) -> Result<(Vec<u8>, Vec<u8>), CliError> {
    let (h, i, layers) = (768u64, 3072u64, 12u32);
    let (config, prefix, patch, positions, labels): (&[u8], &[&str], Vec<u64>, u64, u64) = match name {
        "vit-base" => (br#"{"model_type":"vit","num_labels":1000}"#, &["embeddings.cls_token"], vec![h, 3, 16, 16], 197, 1000),
        "ast-base" => (
            br#"{"model_type":"audio-spectrogram-transformer","num_labels":527}"#,
            &["embeddings.cls_token", "embeddings.distillation_token"],
            vec![h, 1, 16, 16],
            1214,
            527,
        ),
        other => return Err(CliError { code: "Usage", message: format!("--synthetic {other:?} (vit-base or ast-base)") }),
    };
    let mut shapes: Vec<(String, Vec<u64>)> = prefix.iter().map(|n| (n.to_string(), vec![1, 1, h])).collect();
    shapes.push(("embeddings.position_embeddings".into(), vec![1, positions, h]));
    shapes.push(("embeddings.patch_embeddings.projection.weight".into(), patch));
    shapes.push(("embeddings.patch_embeddings.projection.bias".into(), vec![h]));
    for n in ["layernorm.weight", "layernorm.bias"] {
        shapes.push((n.into(), vec![h]));
    }
    if name == "vit-base" {
        shapes.push(("classifier.weight".into(), vec![labels, h]));
        shapes.push(("classifier.bias".into(), vec![labels]));
    } else {
        shapes.push(("classifier.layernorm.weight".into(), vec![h]));
        shapes.push(("classifier.layernorm.bias".into(), vec![h]));
        shapes.push(("classifier.dense.weight".into(), vec![labels, h]));
        shapes.push(("classifier.dense.bias".into(), vec![labels]));
    }
    for l in 0..layers {
        for (part, rows, cols) in [
            ("attention.attention.query", h, h),
            ("attention.attention.key", h, h),
            ("attention.attention.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            shapes.push((format!("encoder.layer.{l}.{part}.weight"), vec![rows, cols]));
            shapes.push((format!("encoder.layer.{l}.{part}.bias"), vec![rows]));
        }
        for norm in ["layernorm_before", "layernorm_after"] {
            shapes.push((format!("encoder.layer.{l}.{norm}.weight"), vec![h]));
            shapes.push((format!("encoder.layer.{l}.{norm}.bias"), vec![h]));
        }
    }
    let mut rng = crate::rng::SeededRng::new(7);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = shapes
        .into_iter()
        .map(|(n, s)| {
            let gain = n.contains("layernorm") && n.ends_with(".weight");
            let values = rng.signed_unit_vec(s.iter().product::<u64>() as usize);
            let bytes = values.iter().flat_map(|&v| half::f16::from_f32(if gain { 1.0 + 0.1 * v } else { 0.05 * v }).to_le_bytes()).collect();
            (n, s.iter().map(|&d| d as usize).collect(), bytes)
        })
        .collect();
    let views = data
        .iter()
        .map(|(n, s, b)| safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError { code: "Internal", message: e.to_string() })?;
    let bytes = safetensors::serialize(views, None).map_err(|e| CliError { code: "Internal", message: e.to_string() })?;
    Ok((config.to_vec(), bytes))
}
