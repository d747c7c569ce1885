//! `hugrt generate --model FILE.gguf --prompt TEXT [--max-tokens N] [--context N] [--json]`:
//! greedy generation with a GGUF Llama on the native GPU.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;

use super::CliError;
use crate::formats::{Metadata, read_table_from};
use crate::gpu::GpuContext;
use crate::models::llama::Llama;
use crate::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// A GGUF Llama-family model (llama, SmolLM, TinyLlama, Mistral).
    #[arg(long)]
    pub model: PathBuf,
    /// The prompt, used as is (no chat template yet).
    #[arg(long)]
    pub prompt: String,
    #[arg(long, default_value_t = 32)]
    pub max_tokens: u32,
    /// KV-cache capacity in tokens (default: the model's, at most 4096).
    #[arg(long)]
    pub context: Option<u32>,
    /// Print JSON: {promptIds, ids, text, timings: {loadMs, prefillTokPerS, decodeTokPerS}}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let name = args.model.display().to_string();
    let bad = |code: &'static str| {
        let name = name.clone();
        move |e: String| CliError { code, message: format!("{name}: {e}") }
    };
    let t0 = Instant::now();
    let mut file = std::fs::File::open(&args.model).map_err(|e| bad("NotFound")(e.to_string()))?;
    let table = read_table_from(&mut file, &name).map_err(|e| bad("BadModelFile")(e.error.to_string()))?;
    let Metadata::Gguf { metadata, .. } = &table.metadata else {
        return Err(bad("Unsupported")("only GGUF models can generate yet".into()));
    };
    let tok = Tokenizer::from_gguf(metadata).map_err(|e| bad("BadModelFile")(e.to_string()))?;
    let prompt_ids = tok.encode(&args.prompt, true).map_err(|e| bad("Tokenizer")(e.to_string()))?;
    if prompt_ids.is_empty() {
        return Err(bad("Usage")("the prompt encodes to no tokens".into()));
    }
    let gpu = |e: crate::gpu::GpuError| CliError { code: e.code(), message: e.to_string() };
    let model_err = |e: crate::models::llama::ModelError| CliError { code: "Model", message: e.to_string() };
    pollster::block_on(async {
        let ctx = GpuContext::new().await.map_err(gpu)?;
        let mut model = Llama::load(&ctx, &table, args.context, &mut file).await.map_err(model_err)?;
        let load_ms = t0.elapsed().as_secs_f64() * 1e3;
        let t1 = Instant::now();
        let mut next = model.next_token(&ctx, &prompt_ids).await.map_err(model_err)?;
        let prefill_s = t1.elapsed().as_secs_f64();
        let stop: Vec<u32> = tok.eos_id.into_iter().collect();
        let mut ids = Vec::new();
        let t2 = Instant::now();
        while (ids.len() as u32) < args.max_tokens && !stop.contains(&next) {
            ids.push(next);
            if ids.len() as u32 == args.max_tokens {
                break;
            }
            next = model.next_token(&ctx, &[next]).await.map_err(model_err)?;
        }
        let decode_s = t2.elapsed().as_secs_f64();
        let text = tok.decode(&ids, true).map_err(|e| CliError { code: "Tokenizer", message: e.to_string() })?;
        let prefill_tps = prompt_ids.len() as f64 / prefill_s;
        let decode_tps = ids.len().saturating_sub(1) as f64 / decode_s.max(1e-9);
        if args.json {
            return Ok(format!(
                "{}\n",
                json!({ "promptIds": prompt_ids, "ids": ids, "text": text, "adapter": ctx.report.name,
                        "timings": { "loadMs": load_ms, "prefillTokPerS": prefill_tps, "decodeTokPerS": decode_tps } })
            ));
        }
        Ok(format!(
            "{}{}\n-- {} prompt tokens, {} generated on {}; load {:.0} ms, prefill {:.1} tok/s, decode {:.1} tok/s\n",
            args.prompt, text, prompt_ids.len(), ids.len(), ctx.report.name, load_ms, prefill_tps, decode_tps
        ))
    })
}
