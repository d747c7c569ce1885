//! `hugrt bench kernels [--quick] [--json] [--matmul-tokens 1,8,64]`: kernel micro-benchmarks on
//! the native GPU adapter, then matvec against the tiled matmul (`hugrt bench matmul`: only those).
//! `hugrt bench model --model FILE [--device gpu|cpu] [--precision auto|f32|f16]`: one GGUF
//! Llama end to end, on the GPU or on the CPU fallback (candle). `hugrt bench embed --model DIR [--device gpu|cpu]`: a BERT
//! checkpoint folder's sentence embeddings (one sentence, a batch of short ones). `hugrt bench
//! encoder --model DIR [--device gpu|cpu]`: images/s of a ViT or CLIP, seconds of audio/s of an AST.

use super::CliError;
use crate::gpu::GpuContext;
use crate::gpu::bench::{MATMUL_TOKENS, bench_kernels, bench_matmul, matmul_table, table};

#[derive(clap::Args)]
pub struct Args {
    /// What to benchmark: "kernels", "matmul" (only the matvec-against-tiled-matmul rows of
    /// "kernels"), "model" (with --model) or "embed" (with --model).
    #[arg(default_value = "kernels")]
    pub what: String,
    /// A text model (GGUF file or checkpoint folder), for `bench model`; a BERT checkpoint folder,
    /// for `bench embed`.
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
    /// For `bench model` on the GPU: how the matrix products multiply: "auto" (f16 block
    /// products where the device has shader-f16, else f32), "f32" (reference-grade) or "f16".
    #[arg(long, default_value = "auto")]
    pub precision: String,
    /// Token counts of the matvec-against-tiled-matmul rows of `bench kernels`.
    #[arg(long, value_delimiter = ',', default_values_t = MATMUL_TOKENS)]
    pub matmul_tokens: Vec<u32>,
    /// Fewer iterations (CPU adapters such as lavapipe are slow).
    #[arg(long)]
    pub quick: bool,
    /// Print JSON: {adapter, rows: [{kernel, shape, ms, gbPerS, gflopPerS, ofCopyBandwidth}],
    /// matmul: [{dtype, shape, tokens, matvecGflopPerS, matvecF16GflopPerS, tiledGflopPerS, …}]}.
    #[arg(long)]
    pub json: bool,
    /// Also print GPU time per kernel entry point (each dispatch submitted and waited for on its
    /// own, so the benchmark's own figures are slower then): a table, or with --json a second
    /// line {"gpuProfile": {entryPoint: {dispatches, ms}}}.
    #[arg(long)]
    pub profile: bool,
}

pub fn run(args: &Args) -> Result<String, CliError> {
    crate::gpu::context::profile(args.profile);
    let out = run_benchmark(args)?;
    if !args.profile {
        return Ok(out);
    }
    let totals = crate::gpu::context::take_profile();
    crate::gpu::context::profile(false);
    if args.json {
        return Ok(format!("{out}{}\n", serde_json::json!({ "gpuProfile": totals })));
    }
    let mut by_time: Vec<_> = totals.into_iter().collect();
    by_time.sort_by(|a, b| b.1.ms.total_cmp(&a.1.ms));
    let mut table = format!("{out}\nGPU time per kernel (each dispatch alone):\n{:<28} {:>10} {:>12}\n", "entry point", "dispatches", "ms");
    for (k, t) in by_time {
        table += &format!("{k:<28} {:>10} {:>12.1}\n", t.dispatches, t.ms);
    }
    Ok(table)
}

fn run_benchmark(args: &Args) -> Result<String, CliError> {
    match (args.what.as_str(), &args.model) {
        ("kernels" | "matmul", _) => {}
        ("model", Some(path)) if args.device == "cpu" || args.device == "gpu" => return bench_model(args, path),
        ("model", Some(_)) => return Err(CliError { code: "Usage", message: format!("unknown device {:?} (gpu or cpu)", args.device) }),
        ("embed", Some(dir)) => return super::embed::bench(dir, &args.device, args.batch.max(1), if args.quick { 3 } else { 10 }, args.json),
        ("encoder", Some(dir)) => return super::classify::bench(dir, &args.device, args.batch.max(1), if args.quick { 2 } else { 5 }, args.json),
        _ => {
            return Err(CliError {
                code: "Usage",
                message: format!("unknown benchmark {:?} (try: kernels, matmul, model --model FILE [--device cpu], embed --model DIR, or encoder --model DIR)", args.what),
            });
        }
    }
    let gpu_err = |e: crate::gpu::GpuError| CliError { code: e.code(), message: e.to_string() };
    pollster::block_on(async {
        // `--precision` does not apply: the matvec rows are measured on both paths where the
        // device has two.
        let ctx = GpuContext::new().await.map_err(gpu_err)?;
        // `bench matmul`: only the matvec-against-tiled rows.
        let rows = if args.what == "kernels" { bench_kernels(&ctx, args.quick).await.map_err(gpu_err)? } else { Vec::new() };
        // matvec against the tiled matmul at 1 … 1024 tokens (GFLOP/s).
        let matmul = bench_matmul(&ctx, args.quick, &args.matmul_tokens).await.map_err(gpu_err)?;
        if args.json {
            Ok(format!("{}\n", serde_json::json!({ "adapter": ctx.report, "rows": rows, "matmul": matmul })))
        } else {
            Ok(format!(
                "adapter: {} ({}, {})\n{}\nmatvec and the tiled matmul, GFLOP/s:\n{}",
                ctx.report.name, ctx.report.backend, ctx.report.device_type, table(&rows), matmul_table(&matmul)
            ))
        }
    })
}

/// One text model (a GGUF file or a checkpoint folder) on the GPU or the CPU fallback: load time,
/// prefill and decode tok/s, dispatches (GPU) and weight bytes per token, the achieved fraction of
/// the measured copy bandwidth (the roofline of a decode step that reads every weight once), and
/// the process's peak resident memory (with lavapipe, GPU buffers are host memory too).
fn bench_model(args: &Args, path: &std::path::Path) -> Result<String, CliError> {
    use crate::generate::{LanguageModel, Next, Pick};
    use std::time::Instant;
    let name = path.display().to_string();
    let cli_err = |(code, message): (&'static str, String)| CliError { code, message: format!("{name}: {message}") };
    let model_err = |e: crate::models::ModelError| CliError { code: "Model", message: e.to_string() };
    // Prefill, then decode steps, through the generation loop's view of the model.
    async fn time(model: &mut impl LanguageModel, prompt: &[u32], steps: u32) -> Result<(f64, f64, f64), crate::models::ModelError> {
        let token = |n: Next| match n {
            Next::Token(t) => t,
            Next::Logits(l) => crate::generate::sampling::argmax(&l),
        };
        // A first pass compiles the pipelines (on lavapipe seconds of it): timed apart, then the
        // cache emptied and the prompt run again for the prefill figure.
        let t = Instant::now();
        model.forward(prompt, Pick::Greedy).await?;
        let first_s = t.elapsed().as_secs_f64();
        model.truncate(0);
        let t = Instant::now();
        let mut next = token(model.forward(prompt, Pick::Greedy).await?);
        let prefill_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        for _ in 0..steps {
            next = token(model.forward(&[next], Pick::Greedy).await?);
        }
        Ok((first_s, prefill_s, t.elapsed().as_secs_f64() / f64::from(steps.max(1))))
    }
    let t0 = Instant::now();
    let (checkpoint, _) = super::generate::Checkpoint::open(path).map_err(cli_err)?;
    let context = args.prompt_tokens + args.decode_tokens + 1;
    let prompt = |vocab: u32| (0..args.prompt_tokens).map(|i| (i * 7919 + 13) % vocab).collect::<Vec<u32>>();
    let (mut out, adapter, load_s, (first_s, prefill_s, decode_s)) = pollster::block_on(async {
        if args.device == "cpu" {
            let mut model = checkpoint.load(crate::cpu::backend::Cpu, Some(context)).await.map_err(model_err)?;
            let load_s = t0.elapsed().as_secs_f64();
            let info = model.info();
            let times = time(&mut model, &prompt(info["vocab"].as_u64().unwrap_or(1) as u32), args.decode_tokens).await.map_err(model_err)?;
            let mut info = info;
            info["peakRssMb"] = peak_rss_mb().into();
            info["copyGbPerS"] = copy_bandwidth_gb_per_s().into();
            info["threads"] = candle_core::utils::get_num_threads().into();
            let adapter = format!("the CPU (candle, {} threads)", candle_core::utils::get_num_threads());
            Ok::<_, CliError>((info, adapter, load_s, times))
        } else {
            let ctx = super::gpu_context(&args.precision).await?;
            let ctx = std::rc::Rc::new(ctx);
            let mut model = checkpoint.load(crate::gpu::backend::Gpu::new(ctx.clone()), Some(context)).await.map_err(model_err)?;
            let load_s = t0.elapsed().as_secs_f64();
            let prompt = prompt(model.vocab());
            let times = time(&mut model, &prompt, args.decode_tokens).await.map_err(model_err)?;
            let mut info = model.info();
            // Counted on the last decode step.
            info["dispatchesPerToken"] = model.backend.last_pass_dispatches.into();
            info["peakRssMb"] = peak_rss_mb().into();
            info["precision"] = serde_json::to_value(ctx.precision()).unwrap_or_default();
            info["copyGbPerS"] = bench_kernels(&ctx, true).await.map_err(|e| CliError { code: e.code(), message: e.to_string() })?[0].gb_per_s.into();
            Ok((info, ctx.report.name.clone(), load_s, times))
        }
    })?;
    let prefill = f64::from(args.prompt_tokens) / prefill_s;
    out["model"] = name.clone().into();
    out["device"] = args.device.clone().into();
    out["adapter"] = adapter.clone().into();
    out["loadS"] = load_s.into();
    out["prefillTokPerS"] = prefill.into();
    out["firstPassS"] = first_s.into();
    out["decodeTokPerS"] = (1.0 / decode_s).into();
    let bytes = out["weightBytes"].as_f64();
    let copy = out["copyGbPerS"].as_f64().unwrap_or(f64::NAN);
    if let Some(bytes) = bytes {
        out["achievedGbPerS"] = (bytes / decode_s / 1e9).into();
        out["ofCopyBandwidth"] = (bytes / decode_s / 1e9 / copy).into();
    }
    if args.json {
        return Ok(format!("{out}\n"));
    }
    let products = out["precision"].as_str().map(|p| format!(", {p} products")).unwrap_or_default();
    let mut text = format!(
        "{name} ({}) on {adapter}{products}\nload {load_s:.2} s; first pass {first_s:.2} s (compiling pipelines); prefill {} tokens: {prefill:.1} tok/s; decode: {:.2} tok/s\n",
        out["architecture"].as_str().unwrap_or("?"), args.prompt_tokens, 1.0 / decode_s
    );
    if let Some(dispatches) = out["dispatchesPerToken"].as_u64() {
        text += &format!("{dispatches} dispatches per decode step\n");
    }
    if let Some(bytes) = bytes {
        let gbs = bytes / decode_s / 1e9;
        text += &format!("{:.1} MB of weights per token: {gbs:.2} GB/s, {:.1}% of the {copy:.1} GB/s copy bandwidth\n", bytes / 1e6, 100.0 * gbs / copy);
    }
    if let Some(mb) = out["peakRssMb"].as_f64() {
        text += &format!("peak resident memory {mb:.0} MB (before the bandwidth measurement)\n");
    }
    Ok(text)
}

/// The process's peak resident set (Linux `VmHWM`), in MB.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1e3)
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
