//! `hugrt bench kernels [--quick] [--json]`: kernel micro-benchmarks on the native GPU adapter.

use super::CliError;
use crate::gpu::GpuContext;
use crate::gpu::bench::{bench_kernels, table};

#[derive(clap::Args)]
pub struct Args {
    /// What to benchmark (only "kernels" so far).
    #[arg(default_value = "kernels")]
    pub what: String,
    /// Fewer iterations (CPU adapters such as lavapipe are slow).
    #[arg(long)]
    pub quick: bool,
    /// Print JSON: {adapter, rows: [{kernel, shape, ms, gbPerS, gflopPerS, ofCopyBandwidth}]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> Result<String, CliError> {
    if args.what != "kernels" {
        return Err(CliError { code: "Usage", message: format!("unknown benchmark {:?} (try: kernels)", args.what) });
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
