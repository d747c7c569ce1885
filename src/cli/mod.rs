//! The native CLI. Every subcommand prints machine-readable JSON with `--json`; errors go to
//! stderr (as `{"error": {"code", "message"}}` with `--json`) with a non-zero exit status.

mod bench;
mod classify;
mod embed;
mod generate;
mod inspect;
mod tokenize;
mod transcribe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "hugrt", version, about = "Hub models on WebGPU: native tools and test instruments")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the tensor table and metadata of a safetensors or GGUF file.
    Inspect(inspect::Args),
    /// Encode text with a tokenizer.json or a GGUF file's vocabulary.
    Tokenize(tokenize::Args),
    /// Greedy generation with a GGUF Llama-family model on the native GPU.
    Generate(generate::Args),
    /// Sentence embeddings with a BERT checkpoint folder (all-MiniLM-L6-v2) on the native GPU or the CPU.
    Embed(embed::Args),
    /// Image, zero-shot, audio and text classification and fill-mask with an encoder checkpoint folder.
    Classify(classify::Args),
    /// Speech recognition with a Whisper checkpoint folder (WAV input) on the native GPU or the CPU.
    Transcribe(transcribe::Args),
    /// Kernel micro-benchmarks on the native GPU (wgpu: Vulkan/Metal; lavapipe without a GPU).
    Bench(bench::Args),
}

/// The native GPU with the matrix products' precision `precision` asks for: "auto" (f16 where
/// the device has shader-f16, the runtime's default), "f32" or "f16" (an error without shader-f16).
pub(crate) async fn gpu_context(precision: &str) -> Result<crate::gpu::GpuContext, CliError> {
    let gpu_err = |e: crate::gpu::GpuError| CliError { code: e.code(), message: e.to_string() };
    let ctx = crate::gpu::GpuContext::new().await.map_err(gpu_err)?;
    let p = match precision {
        "auto" => ctx.preferred_precision(),
        other => crate::gpu::Precision::from_name(other)
            .ok_or_else(|| CliError { code: "Usage", message: format!("unknown precision {other:?} (auto, f32 or f16)") })?,
    };
    ctx.set_precision(p).map_err(gpu_err)?;
    Ok(ctx)
}

/// The weights of a model on disk, read as one file: a `.gguf` or `.safetensors` file, or a
/// checkpoint folder's `model.safetensors`, or its shards as `model.safetensors.index.json` maps
/// them (each shard's table checked against the index, then joined).
pub(crate) fn open_weights(path: &std::path::Path) -> Result<(crate::formats::TensorTable, crate::models::Shards<std::fs::File>), CliError> {
    use crate::formats::index::ShardIndex;
    let open = |p: &std::path::Path| -> Result<(crate::formats::TensorTable, std::fs::File, u64), CliError> {
        let mut file = std::fs::File::open(p).map_err(|e| CliError { code: "NotFound", message: format!("{}: {e}", p.display()) })?;
        let len = file.metadata().map_err(|e| CliError { code: "Io", message: format!("{}: {e}", p.display()) })?.len();
        let table = crate::formats::read_table_from(&mut file, &p.display().to_string()).map_err(|e| CliError { code: "BadModelFile", message: e.to_string() })?;
        Ok((table, file, len))
    };
    let (single, index) = if path.is_dir() { (path.join("model.safetensors"), path.join("model.safetensors.index.json")) } else { (path.to_path_buf(), std::path::PathBuf::new()) };
    if single.exists() || !index.exists() {
        let (table, file, len) = open(&single)?;
        return Ok((table, crate::models::Shards::new([(file, len)])));
    }
    let bad = |m: String| CliError { code: "BadModelFile", message: format!("{}: {m}", index.display()) };
    let json = std::fs::read_to_string(&index).map_err(|e| bad(e.to_string()))?;
    let shards = ShardIndex::parse(&json).map_err(|e| bad(e.to_string()))?;
    let mut tables = Vec::new();
    let mut files = Vec::new();
    for name in &shards.shards {
        let (table, file, len) = open(&path.join(name))?;
        tables.push((name.clone(), table, len));
        files.push((file, len));
    }
    let table = shards.join(tables).map_err(|e| bad(e.to_string()))?;
    Ok((table, crate::models::Shards::new(files)))
}

/// A failure to report: a stable code and a message.
pub struct CliError {
    pub code: &'static str,
    pub message: String,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let (json, result) = match cli.command {
        Command::Inspect(args) => (args.json, inspect::run(&args)),
        Command::Tokenize(args) => (args.json, tokenize::run(&args)),
        Command::Bench(args) => (args.json, bench::run(&args)),
        Command::Generate(args) => (args.json, generate::run(&args)),
        Command::Embed(args) => (args.json, embed::run(&args)),
        Command::Classify(args) => (args.json, classify::run(&args)),
        Command::Transcribe(args) => (args.json, transcribe::run(&args)),
    };
    match result {
        Ok(report) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), report.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            if json {
                let body = serde_json::json!({ "error": { "code": e.code, "message": e.message } });
                eprintln!("{body}");
            } else {
                eprintln!("error: {}", e.message);
            }
            ExitCode::from(2)
        }
    }
}
