//! `hugrt embed --model DIR --text T [--text T2 ...] [--device gpu|cpu] [--json]`: sentence
//! embeddings with a BERT checkpoint folder (config.json, tokenizer.json, model.safetensors, and
//! the sentence-transformers modules when present: modules.json, pooling, Dense, Normalize,
//! max_seq_length, prompts) on the native GPU or on the CPU fallback (candle). Also
//! `hugrt bench embed [--device cpu]` (mean pooling, as all-MiniLM-L6-v2).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::CliError;

use crate::gpu::GpuContext;
use crate::models::sentence::{Dir, SentenceModules};
use crate::models::tasks::Engine;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint folder laid out as on the hub (all-MiniLM-L6-v2, a BERT-base-like model).
    #[arg(long)]
    pub model: PathBuf,
    /// A text to embed (repeatable).
    #[arg(long, required = true)]
    pub text: Vec<String>,
    /// Where the encoder runs: "gpu" (wgpu) or "cpu" (the candle fallback).
    #[arg(long, default_value = "gpu")]
    pub device: String,
    /// A prompt of the model's `config_sentence_transformers.json` to put before each text (its
    /// default prompt applies without one).
    #[arg(long)]
    pub prompt_name: Option<String>,
    /// A prompt text to put before each text (instead of a named one).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Print JSON: {dims: [n, d], embeddings: [[…]], timings: {loadMs, embedMs}, tokens, pooling, adapter, device}.
    #[arg(long)]
    pub json: bool,
}

use super::classify::model_error;

/// A loaded checkpoint folder.
struct Loaded {
    encoder: Engine,
    tokenizer: Tokenizer,
    modules: SentenceModules,
}

/// Reads the folder's files and loads the weights (tensor by tensor from the file) onto
/// `device` ("gpu" or "cpu").
fn load(dir: &Path, device: &str) -> Result<Loaded, CliError> {
    if !matches!(device, "gpu" | "cpu") {
        return Err(CliError { code: "Usage", message: format!("unknown device {device:?} (gpu or cpu)") });
    }
    let path = |name: &str| dir.join(name);
    let read = |name: &str| {
        std::fs::read(path(name)).map_err(|e| CliError { code: "NotFound", message: format!("{}: {e}", path(name).display()) })
    };
    let config = read("config.json")?;
    let tokenizer =
        Tokenizer::from_json(&read("tokenizer.json")?).map_err(|e| CliError { code: "BadModelFile", message: format!("tokenizer.json: {e}") })?;
    let (table, mut file) = super::open_weights(dir)?;
    let encoder = pollster::block_on(async {
        let gpu = match device {
            "gpu" => Some(GpuContext::new().await.map_err(|e| CliError { code: e.code(), message: e.to_string() })?),
            _ => None,
        };
        let mut encoder = Engine::load_bert(gpu, &config, &table, &mut file).await.map_err(model_error)?;
        let hidden = encoder.bert_config().map_or(0, |c| c.hidden);
        let modules = SentenceModules::load(&mut Dir(dir), hidden).await.map_err(model_error)?;
        encoder.use_sentence_modules(&modules).map_err(model_error)?;
        Ok::<_, CliError>((encoder, modules))
    })?;
    let (encoder, modules) = encoder;
    Ok(Loaded { encoder, tokenizer, modules })
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let t0 = Instant::now();
    let Loaded { mut encoder, tokenizer, modules } = load(&args.model, &args.device)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let prompt = modules.prompt(args.prompt_name.as_deref(), args.prompt.as_deref()).map_err(model_error)?.to_string();
    let embeddings = pollster::block_on(encoder.embed_sentences(&tokenizer, &args.text, &modules, &prompt)).map_err(model_error)?;
    let embed_ms = t1.elapsed().as_secs_f64() * 1e3;
    let dims = [embeddings.len(), modules.dims as usize];
    let prompted: Vec<String> = args.text.iter().map(|t| format!("{prompt}{t}")).collect();
    let tokens: Vec<usize> = encoder.tokenize_texts(&tokenizer, &prompted).map_err(model_error)?.iter().map(Vec::len).collect();
    let adapter = encoder.adapter();
    let pooling: Vec<&str> = modules.pooling.modes.iter().map(|m| m.name()).collect();
    if args.json {
        return Ok(format!(
            "{}\n",
            json!({ "dims": dims, "embeddings": embeddings, "tokens": tokens, "pooling": pooling, "prompt": prompt, "adapter": adapter, "device": device_name(&encoder),
                    "timings": { "loadMs": load_ms, "embedMs": embed_ms } })
        ));
    }
    let mut out = String::new();
    for ((text, e), n) in args.text.iter().zip(&embeddings).zip(&tokens) {
        let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:+.4}")).collect();
        out.push_str(&format!("{text:?} ({n} tokens): [{}, …]\n", head.join(", ")));
    }
    out.push_str(&format!("-- {} × {} embeddings ({} pooling) on {adapter}; load {load_ms:.0} ms, embed {embed_ms:.1} ms\n", dims[0], dims[1], pooling.join(" + ")));
    Ok(out)
}

/// Short sentences of 6 to 14 words for the throughput figure.
const BENCH_SENTENCES: [&str; 8] = [
    "The cat sits outside.",
    "A man is playing guitar.",
    "The new movie is awesome and everyone should see it.",
    "Sentence embeddings help semantic search.",
    "I love pasta with tomato sauce and fresh basil.",
    "The weather is lovely today.",
    "How do I reset my password?",
    "Stock markets rose sharply after the announcement on Monday.",
];

/// `hugrt bench embed --model DIR [--device cpu]`: load time, the median time of one sentence,
/// and embeddings per second on a batch of `batch` short sentences.
pub fn bench(dir: &Path, device: &str, batch: usize, iterations: u32, json_out: bool) -> Result<String, CliError> {
    let t0 = Instant::now();
    let Loaded { mut encoder, tokenizer, .. } = load(dir, device)?;
    let load_s = t0.elapsed().as_secs_f64();
    let texts: Vec<&str> = (0..batch).map(|i| BENCH_SENTENCES[i % BENCH_SENTENCES.len()]).collect();
    let iterations = iterations.max(1);
    let one = encoder.tokenize_texts(&tokenizer, &texts[..1]).map_err(model_error)?;
    let many = encoder.tokenize_texts(&tokenizer, &texts).map_err(model_error)?;
    let mut embed = |ids: &[Vec<u32>]| pollster::block_on(encoder.embed(ids)).map_err(model_error);
    // Warm-up: pipelines compiled, activations allocated.
    embed(&many)?;
    let mut one_ms = Vec::new();
    for _ in 0..iterations {
        let t = Instant::now();
        embed(&one)?;
        one_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    one_ms.sort_by(f64::total_cmp);
    let one_median = one_ms[one_ms.len() / 2];
    let t = Instant::now();
    for _ in 0..iterations {
        embed(&many)?;
    }
    let batch_s = t.elapsed().as_secs_f64() / f64::from(iterations);
    let tokens: usize = many.iter().map(Vec::len).sum();
    let padded = many.iter().map(Vec::len).max().unwrap_or(0) * many.len();
    let dispatches = encoder.last_pass_dispatches();
    let weight_bytes = encoder.bert_weight_bytes().map_err(model_error)?;
    let shapes = encoder.bert_dense_shapes(tokens).map_err(model_error)?;
    // On the CPU: the dense layers' matmuls alone, on the batch's token count.
    let matmuls = match &encoder {
        Engine::Cpu(_) => Some(crate::cpu::time_matmuls(&shapes, iterations.min(3)).map_err(model_error)?),
        Engine::Gpu(_) => None,
    };
    let adapter = encoder.adapter();
    let out = json!({
        "adapter": adapter, "device": device_name(&encoder), "model": dir.display().to_string(), "loadS": load_s,
        "oneSentenceMs": one_median, "oneSentenceTokens": one[0].len(),
        "batch": batch, "batchTokens": tokens, "batchPaddedTokens": padded, "batchMs": batch_s * 1e3,
        "embeddingsPerS": batch as f64 / batch_s, "tokensPerS": tokens as f64 / batch_s,
        "dispatchesPerPass": dispatches, "weightBytesPerPass": weight_bytes,
        "matmulMs": matmuls.map(|m| m.0), "matmulGflopPerS": matmuls.map(|m| m.1),
    });
    if json_out {
        return Ok(format!("{out}\n"));
    }
    let per_pass = match dispatches {
        Some(d) => format!("{d} dispatches and {:.1} MB of weights per pass", weight_bytes as f64 / 1e6),
        None => format!("{:.1} MB of weights (f32) per pass", weight_bytes as f64 / 1e6),
    };
    let per_pass = match matmuls {
        Some((ms, gflops)) => format!("{per_pass}; the dense layers' matmuls alone: {ms:.1} ms ({gflops:.1} GFLOP/s) of the batch's {:.1} ms", batch_s * 1e3),
        None => per_pass,
    };
    Ok(format!(
        "{} on {adapter}\nload {load_s:.2} s; one sentence ({} tokens): {one_median:.1} ms (median of {iterations}); batch of {batch} ({tokens} tokens): {:.1} ms, {:.1} embeddings/s, {:.0} tokens/s\n{per_pass}\n",
        dir.display(), one[0].len(), batch_s * 1e3, batch as f64 / batch_s, tokens as f64 / batch_s,
    ))
}

/// "gpu" or "cpu", as `--device` names it.
fn device_name(encoder: &Engine) -> &'static str {
    match encoder {
        Engine::Gpu(_) => "gpu",
        Engine::Cpu(_) => "cpu",
    }
}
