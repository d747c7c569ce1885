//! `hugrt bench kernels [--quick] [--json]`: kernel micro-benchmarks on the native GPU adapter.
//! `hugrt bench model --model FILE [--device gpu|cpu]`: one GGUF Llama end to end, on the GPU or
//! on the CPU fallback (candle). `hugrt bench embed --model DIR [--device gpu|cpu]`: a BERT
//! checkpoint folder's sentence embeddings (one sentence, a batch of short ones).

use super::CliError;
use crate::gpu::GpuContext;
use crate::gpu::bench::{bench_kernels, table};

#[derive(clap::Args)]
pub struct Args {
    /// What to benchmark: "kernels", "model" (with --model) or "embed" (with --model).
    #[arg(default_value = "kernels")]
    pub what: String,
    /// A GGUF Llama-family model, for `bench model`; a BERT checkpoint folder, for `bench embed`.
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// Where `bench model` and `bench embed` run: "gpu" (wgpu) or "cpu" (the candle fallback).
    #[arg(long, default_value = "gpu")]
    pub device: String,
    /// Prompt tokens for the prefill measurement.
    #[arg(long, default_value_t = 64)]
    pub prompt_tokens: u32,
    /// Decode steps to time.
    #[arg(long, default_value_t = 16)]
    pub decode_tokens: u32,
    /// Sentences per batch, for `bench embed`.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Fewer iterations (CPU adapters such as lavapipe are slow).
    #[arg(long)]
    pub quick: bool,
    /// Print JSON: {adapter, rows: [{kernel, shape, ms, gbPerS, gflopPerS, ofCopyBandwidth}]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<String, CliError> {
    match (args.what.as_str(), &args.model) {
        ("kernels", _) => {}
        ("model", Some(path)) if args.device == "cpu" => return bench_model_cpu(args, path),
        ("model", Some(path)) if args.device == "gpu" => return bench_model(args, path),
        ("model", Some(_)) => return Err(CliError { code: "Usage", message: format!("unknown device {:?} (gpu or cpu)", args.device) }),
        ("embed", Some(dir)) => return super::embed::bench(dir, &args.device, args.batch.max(1), if args.quick { 3 } else { 10 }, args.json),
        _ => {
            return Err(CliError {
                code: "Usage",
                message: format!("unknown benchmark {:?} (try: kernels, model --model FILE [--device cpu], or embed --model DIR)", args.what),
            });
        }
    }
    let gpu_err = |e: crate::gpu::GpuError| CliError { code: e.code(), message: e.to_string() };
    pollster::block_on(async {
        let ctx = GpuContext::new().await.map_err(gpu_err)?;
        let rows = bench_kernels(&ctx, args.quick).await.map_err(gpu_err)?;
        if args.json {
            Ok(format!("{}\n", serde_json::json!({ "adapter": ctx.report, "rows": rows })))
        } else {
            Ok(format!("adapter: {} ({}, {})\n{}", ctx.report.name, ctx.report.backend, ctx.report.device_type, table(&rows)))
        }
    })
}

/// Load time, prefill and decode tok/s, dispatches and weight bytes per token, and the achieved
/// fraction of the adapter's copy bandwidth (roofline) of one GGUF Llama.
fn bench_model(args: &Args, path: &std::path::Path) -> Result<String, CliError> {
    use std::time::Instant;
    let name = path.display().to_string();
    let fail = |code: &'static str, e: String| CliError { code, message: format!("{name}: {e}") };
    let t0 = Instant::now();
    let mut file = std::fs::File::open(path).map_err(|e| fail("NotFound", e.to_string()))?;
    let table = crate::formats::read_table_from(&mut file, &name).map_err(|e| fail("BadModelFile", e.error.to_string()))?;
    let model_err = |e: crate::models::llama::ModelError| CliError { code: "Model", message: e.to_string() };
    pollster::block_on(async {
        let ctx = GpuContext::new().await.map_err(|e| CliError { code: e.code(), message: e.to_string() })?;
        let context = args.prompt_tokens + args.decode_tokens + 1;
        let mut model = crate::models::llama::Llama::load(&ctx, &table, Some(context), &mut file).await.map_err(model_err)?;
        let load_s = t0.elapsed().as_secs_f64();
        let vocab = model.config.vocab;
        let prompt: Vec<u32> = (0..args.prompt_tokens).map(|i| (i * 7919 + 13) % vocab).collect();
        let t1 = Instant::now();
        let mut next = model.next_token(&ctx, &prompt).await.map_err(model_err)?;
        let prefill_s = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        for _ in 0..args.decode_tokens {
            next = model.next_token(&ctx, &[next]).await.map_err(model_err)?;
        }
        let decode_s = t2.elapsed().as_secs_f64() / f64::from(args.decode_tokens.max(1));
        let copy = bench_kernels(&ctx, true).await.map_err(|e| CliError { code: e.code(), message: e.to_string() })?[0].gb_per_s;
        let bytes = model.weight_bytes_per_token();
        let gbs = bytes as f64 / decode_s / 1e9;
        let out = serde_json::json!({
            "adapter": ctx.report.name, "model": name, "loadS": load_s,
            "prefillTokPerS": f64::from(args.prompt_tokens) / prefill_s, "decodeTokPerS": 1.0 / decode_s,
            "dispatchesPerToken": model.dispatches_per_token(), "weightBytesPerToken": bytes,
            "achievedGbPerS": gbs, "copyGbPerS": copy, "ofCopyBandwidth": gbs / copy,
        });
        if args.json {
            return Ok(format!("{out}\n"));
        }
        Ok(format!(
            "{name} on {}\nload {:.2} s; prefill {} tokens: {:.1} tok/s; decode: {:.2} tok/s\n{} dispatches and {:.1} MB of weights per token: {:.2} GB/s, {:.1}% of the {:.1} GB/s copy bandwidth\n",
            ctx.report.name, load_s, args.prompt_tokens, f64::from(args.prompt_tokens) / prefill_s, 1.0 / decode_s,
            model.dispatches_per_token(), bytes as f64 / 1e6, gbs, 100.0 * gbs / copy, copy
        ))
    })
}

/// The CPU fallback on one GGUF Llama: load time, prefill and decode tok/s, weight bytes per
/// token and the achieved fraction of the measured memory copy bandwidth.
fn bench_model_cpu(args: &Args, path: &std::path::Path) -> Result<String, CliError> {
    use std::time::Instant;
    let name = path.display().to_string();
    let fail = |code: &'static str, e: String| CliError { code, message: format!("{name}: {e}") };
    let model_err = |e: crate::models::llama::ModelError| CliError { code: "Model", message: e.to_string() };
    let t0 = Instant::now();
    let mut file = std::fs::File::open(path).map_err(|e| fail("NotFound", e.to_string()))?;
    let table = crate::formats::read_table_from(&mut file, &name).map_err(|e| fail("BadModelFile", e.error.to_string()))?;
    let context = args.prompt_tokens + args.decode_tokens + 1;
    let mut model = pollster::block_on(crate::cpu::llama::CpuLlama::load(&table, Some(context), &mut file)).map_err(model_err)?;
    let load_s = t0.elapsed().as_secs_f64();
    let vocab = model.config.vocab;
    let prompt: Vec<u32> = (0..args.prompt_tokens).map(|i| (i * 7919 + 13) % vocab).collect();
    let t1 = Instant::now();
    let mut next = model.next_token(&prompt).map_err(model_err)?;
    let prefill_s = t1.elapsed().as_secs_f64();
    let t2 = Instant::now();
    for _ in 0..args.decode_tokens {
        next = model.next_token(&[next]).map_err(model_err)?;
    }
    let decode_s = t2.elapsed().as_secs_f64() / f64::from(args.decode_tokens.max(1));
    let copy = copy_bandwidth_gb_per_s();
    let bytes = model.weight_bytes_per_token();
    let gbs = bytes as f64 / decode_s / 1e9;
    let threads = candle_core::utils::get_num_threads();
    let prefill = f64::from(args.prompt_tokens) / prefill_s;
    let out = serde_json::json!({
        "device": "cpu", "threads": threads, "model": name, "loadS": load_s,
        "prefillTokPerS": prefill, "decodeTokPerS": 1.0 / decode_s, "weightBytesPerToken": bytes,
        "achievedGbPerS": gbs, "copyGbPerS": copy, "ofCopyBandwidth": gbs / copy,
    });
    if args.json {
        return Ok(format!("{out}\n"));
    }
    Ok(format!(
        "{name} on the CPU (candle, {threads} threads)\nload {load_s:.2} s; prefill {} tokens: {prefill:.1} tok/s; decode: {:.2} tok/s\n{:.1} MB of weights per token: {gbs:.2} GB/s, {:.1}% of the {copy:.1} GB/s copy bandwidth\n",
        args.prompt_tokens, 1.0 / decode_s, bytes as f64 / 1e6, 100.0 * gbs / copy
    ))
}

/// Memory copy bandwidth (GB/s, bytes read) of one thread: the best of 5 copies of 256 MiB.
fn copy_bandwidth_gb_per_s() -> f64 {
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let best = (0..5)
        .map(|_| {
            let t = std::time::Instant::now();
            dst.copy_from_slice(&src);
            std::hint::black_box(&mut dst);
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min);
    n as f64 / best / 1e9
}
