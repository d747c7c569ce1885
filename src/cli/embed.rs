//! `hugrt embed --model DIR --text T [--text T2 ...] [--json]`: sentence embeddings with a BERT
//! checkpoint folder (config.json, tokenizer.json, model.safetensors, and sentence-transformers'
//! sentence_bert_config.json when present) on the native GPU. Also `hugrt bench embed`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::CliError;
use crate::formats::{TensorTable, read_table_from};
use crate::gpu::GpuContext;
use crate::models::bert::Bert;
use crate::models::llama::ModelError;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// A checkpoint folder laid out as on the hub (all-MiniLM-L6-v2, a BERT-base-like model).
    #[arg(long)]
    pub model: PathBuf,
    /// A text to embed (repeatable).
    #[arg(long, required = true)]
    pub text: Vec<String>,
    /// Print JSON: {dims: [n, d], embeddings: [[…]], timings: {loadMs, embedMs}, tokens, adapter}.
    #[arg(long)]
    pub json: bool,
}

fn model_error(e: ModelError) -> CliError {
    let code = match &e {
        ModelError::Config(_) | ModelError::Tensor { .. } | ModelError::Format(_) => "BadModelFile",
        ModelError::Read(_) => "Io",
        ModelError::Gpu(g) => g.code(),
        ModelError::Input(_) | ModelError::Token { .. } | ModelError::ContextFull { .. } => "Usage",
        ModelError::Cpu(_) => "Cpu",
    };
    CliError { code, message: e.to_string() }
}

/// A loaded checkpoint folder.
struct Loaded {
    ctx: GpuContext,
    model: Bert,
    tokenizer: Tokenizer,
}

/// Reads the folder's files and uploads the weights (tensor by tensor from the file).
fn load(dir: &Path) -> Result<Loaded, CliError> {
    let path = |name: &str| dir.join(name);
    let read = |name: &str| {
        std::fs::read(path(name)).map_err(|e| CliError { code: "NotFound", message: format!("{}: {e}", path(name).display()) })
    };
    let config = read("config.json")?;
    let tokenizer =
        Tokenizer::from_json(&read("tokenizer.json")?).map_err(|e| CliError { code: "BadModelFile", message: format!("tokenizer.json: {e}") })?;
    let weights = path("model.safetensors");
    let mut file = std::fs::File::open(&weights).map_err(|e| CliError { code: "NotFound", message: format!("{}: {e}", weights.display()) })?;
    let table: TensorTable = read_table_from(&mut file, &weights.display().to_string())
        .map_err(|e| CliError { code: "BadModelFile", message: e.to_string() })?;
    let sentence_config = std::fs::read(path("sentence_bert_config.json")).ok();
    pollster::block_on(async {
        let ctx = GpuContext::new().await.map_err(|e| CliError { code: e.code(), message: e.to_string() })?;
        let mut model = Bert::load(&ctx, &config, &table, &mut file).await.map_err(model_error)?;
        if let Some(json) = sentence_config {
            model.apply_sentence_bert_config(&json).map_err(model_error)?;
        }
        Ok(Loaded { ctx, model, tokenizer })
    })
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let t0 = Instant::now();
    let Loaded { ctx, mut model, tokenizer } = load(&args.model)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let t1 = Instant::now();
    let ids = model.tokenize(&tokenizer, &args.text).map_err(model_error)?;
    let embeddings = pollster::block_on(model.embed(&ctx, &ids)).map_err(model_error)?;
    let embed_ms = t1.elapsed().as_secs_f64() * 1e3;
    let dims = [embeddings.len(), model.config.hidden as usize];
    let tokens: Vec<usize> = ids.iter().map(Vec::len).collect();
    if args.json {
        return Ok(format!(
            "{}\n",
            json!({ "dims": dims, "embeddings": embeddings, "tokens": tokens, "adapter": ctx.report.name,
                    "timings": { "loadMs": load_ms, "embedMs": embed_ms } })
        ));
    }
    let mut out = String::new();
    for ((text, e), n) in args.text.iter().zip(&embeddings).zip(&tokens) {
        let head: Vec<String> = e.iter().take(6).map(|v| format!("{v:+.4}")).collect();
        out.push_str(&format!("{text:?} ({n} tokens): [{}, …]\n", head.join(", ")));
    }
    out.push_str(&format!(
        "-- {} × {} embeddings (mean-pooled, L2-normalised) on {}; load {load_ms:.0} ms, embed {embed_ms:.1} ms\n",
        dims[0], dims[1], ctx.report.name
    ));
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

/// `hugrt bench embed --model DIR`: load time, the median time of one sentence, and embeddings
/// per second on a batch of `batch` short sentences.
pub fn bench(dir: &Path, batch: usize, iterations: u32, json_out: bool) -> Result<String, CliError> {
    let t0 = Instant::now();
    let Loaded { ctx, mut model, tokenizer } = load(dir)?;
    let load_s = t0.elapsed().as_secs_f64();
    let texts: Vec<&str> = (0..batch).map(|i| BENCH_SENTENCES[i % BENCH_SENTENCES.len()]).collect();
    let iterations = iterations.max(1);
    pollster::block_on(async {
        let one = model.tokenize(&tokenizer, &texts[..1]).map_err(model_error)?;
        let many = model.tokenize(&tokenizer, &texts).map_err(model_error)?;
        // Warm-up: pipelines compiled, activations allocated.
        model.embed(&ctx, &many).await.map_err(model_error)?;
        let mut one_ms = Vec::new();
        for _ in 0..iterations {
            let t = Instant::now();
            model.embed(&ctx, &one).await.map_err(model_error)?;
            one_ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        one_ms.sort_by(f64::total_cmp);
        let one_median = one_ms[one_ms.len() / 2];
        let t = Instant::now();
        for _ in 0..iterations {
            model.embed(&ctx, &many).await.map_err(model_error)?;
        }
        let batch_s = t.elapsed().as_secs_f64() / f64::from(iterations);
        let tokens: usize = many.iter().map(Vec::len).sum();
        let padded = many.iter().map(Vec::len).max().unwrap_or(0) * many.len();
        let out = json!({
            "adapter": ctx.report.name, "model": dir.display().to_string(), "loadS": load_s,
            "oneSentenceMs": one_median, "oneSentenceTokens": one[0].len(),
            "batch": batch, "batchTokens": tokens, "batchPaddedTokens": padded, "batchMs": batch_s * 1e3,
            "embeddingsPerS": batch as f64 / batch_s, "tokensPerS": tokens as f64 / batch_s,
            "dispatchesPerPass": model.dispatches_per_pass(), "weightBytesPerPass": model.weight_bytes_per_pass(),
        });
        if json_out {
            return Ok(format!("{out}\n"));
        }
        Ok(format!(
            "{} on {}\nload {load_s:.2} s; one sentence ({} tokens): {one_median:.1} ms (median of {iterations}); batch of {batch} ({tokens} tokens): {:.1} ms, {:.1} embeddings/s, {:.0} tokens/s\n{} dispatches and {:.1} MB of weights per pass\n",
            dir.display(), ctx.report.name, one[0].len(), batch_s * 1e3, batch as f64 / batch_s, tokens as f64 / batch_s,
            model.dispatches_per_pass(), model.weight_bytes_per_pass() as f64 / 1e6
        ))
    })
}
