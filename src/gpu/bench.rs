//! Kernel micro-benchmarks: time, achieved GB/s (bytes a kernel must move / time) and GFLOP/s
//! per kernel and size, with a buffer-copy baseline for the bandwidth ratio. A benchmark, not a
//! test: it prints figures and asserts nothing about speed. Where the device has shader-f16, each
//! matvec/matmul row whose weights take the f16 path is measured on both paths ("… f16" rows).

use serde::Serialize;

use super::context::{GpuContext, Precision};
use super::error::GpuError;
use super::ops::{attention::Attention, matmul, matvec, new_encoder, norm::Norm, wait_idle};
use super::weights::GpuWeight;
use crate::clock::now_ms;
use crate::formats::DType;

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchRow {
    pub kernel: String,
    pub shape: String,
    pub ms: f64,
    pub gb_per_s: f64,
    pub gflop_per_s: f64,
    /// Achieved GB/s over the device's measured buffer-copy GB/s.
    pub of_copy_bandwidth: f64,
}



/// Runs `record` `iters` times in one submission (after one warm-up) and returns ms per run.
async fn time<F, Fut>(ctx: &GpuContext, iters: u32, mut record: F) -> Result<f64, GpuError>
where
    F: FnMut(wgpu::CommandEncoder) -> Fut,
    Fut: std::future::Future<Output = Result<wgpu::CommandEncoder, GpuError>>,
{
    let warm = record(new_encoder(ctx, "bench")).await?;
    ctx.queue.submit([warm.finish()]);
    wait_idle(ctx).await?;
    let mut encoder = new_encoder(ctx, "bench");
    for _ in 0..iters {
        encoder = record(encoder).await?;
    }
    let t0 = now_ms();
    ctx.queue.submit([encoder.finish()]);
    wait_idle(ctx).await?;
    Ok((now_ms() - t0) / f64::from(iters))
}

/// Measures the kernels at model-like sizes. `quick` uses fewer iterations (for slow CPU
/// adapters such as lavapipe and SwiftShader).
pub async fn bench_kernels(ctx: &GpuContext, quick: bool) -> Result<Vec<BenchRow>, GpuError> {
    let iters = if quick { 3 } else { 20 };
    let mut rows = Vec::new();
    let mut rng = crate::rng::SeededRng::new(1);

    // Baseline: a 64 MiB buffer-to-buffer copy reads and writes 128 MiB.
    let copy_bytes = 64u64 << 20;
    let src = ctx.storage_output("bench", "copy src", copy_bytes)?;
    let dst = ctx.storage_output("bench", "copy dst", copy_bytes)?;
    let ms = time(ctx, iters, |mut e| {
        e.copy_buffer_to_buffer(&src, 0, &dst, 0, copy_bytes);
        async { Ok(e) }
    })
    .await?;
    let copy_gbs = 2.0 * copy_bytes as f64 / ms / 1e6;
    rows.push(BenchRow { kernel: "buffer copy".into(), shape: "64 MiB".into(), ms, gb_per_s: copy_gbs, gflop_per_s: 0.0, of_copy_bandwidth: 1.0 });
    let row = |kernel: String, shape: String, ms: f64, bytes: f64, flops: f64| BenchRow {
        kernel,
        shape,
        ms,
        gb_per_s: bytes / ms / 1e6,
        gflop_per_s: flops / ms / 1e6,
        of_copy_bandwidth: bytes / ms / 1e6 / copy_gbs,
    };

    // Matvec / matmul: the weight bytes dominate what moves.
    let cases: &[(DType, u64, u64, u32)] = &[
        (DType::F32, 4096, 4096, 1),
        (DType::F16, 4096, 4096, 1),
        (DType::Q8_0, 4096, 4096, 1),
        (DType::Q4_0, 4096, 4096, 1),
        (DType::Q4_1, 4096, 4096, 1),
        (DType::Q4_K, 4096, 4096, 1),
        (DType::Q6_K, 4096, 4096, 1),
        (DType::Q4_1, 1536, 576, 1),
        (DType::Q4_1, 1536, 576, 64),
        (DType::Q8_0, 49152, 576, 1),
    ];
    let was = ctx.precision();
    let precisions: &[Precision] = if ctx.preferred_precision() == Precision::F16 { &[Precision::F32, Precision::F16] } else { &[Precision::F32] };
    for &(dtype, n, k, tokens) in cases {
        let bytes = rng.tensor_bytes(dtype, (n * k) as usize);
        let w = GpuWeight::upload(ctx, "W", dtype, n, k, &bytes)?;
        let x = ctx.storage_from("bench", "x", &rng.signed_unit_vec((k * u64::from(tokens)) as usize))?;
        let y = ctx.storage_output("bench", "y", n * u64::from(tokens) * 4)?;
        for &precision in precisions {
            // The kernel a model's product takes (`encode_auto`); the f16 path is matvec's.
            let kernel = matmul::pick(ctx, dtype, k as u32, tokens);
            if precision == Precision::F16 && !(matvec::f16_pays(dtype) && kernel == matmul::Kernel::Matvec) {
                continue;
            }
            ctx.set_precision(precision)?;
            let ms = time(ctx, iters, |mut e| {
                let (w, x, y) = (&w, &x, &y);
                async move {
                    matmul::encode_auto(ctx, &mut e, w, tokens, x, y).await?;
                    Ok(e)
                }
            })
            .await;
            ctx.set_precision(was)?;
            // The f16 path also writes and reads its staged activations (2 bytes per value, a
            // scale per 32): counted as moved, as the f32 path's activations are.
            let staged = if precision == Precision::F16 { f64::from(tokens) * k as f64 * (2.0 * 2.0 + 8.0 / 32.0) } else { 0.0 };
            let moved = bytes.len() as f64 + 4.0 * f64::from(tokens) * (n + k) as f64 + staged;
            let kernel = match kernel {
                matmul::Kernel::Matvec => "matvec",
                matmul::Kernel::Tiled => "matmul",
                matmul::Kernel::Blocked => "blocked",
            };
            let name = format!("{kernel} {dtype}{}", if precision == Precision::F16 { " f16" } else { "" });
            rows.push(row(name, format!("{n}x{k}, {tokens} token(s)"), ms?, moved, 2.0 * (n * k) as f64 * f64::from(tokens)));
        }
    }

    // RMSNorm over 64 rows of 4096.
    let (r, c) = (64u32, 4096u32);
    let x = ctx.storage_from("bench", "x", &rng.signed_unit_vec((r * c) as usize))?;
    let g = ctx.storage_from("bench", "g", &rng.signed_unit_vec(c as usize))?;
    let y = ctx.storage_output("bench", "y", u64::from(r * c) * 4)?;
    let ms = time(ctx, iters, |mut e| {
        let (x, g, y) = (&x, &g, &y);
        async move {
            Norm::Rms { eps: 1e-5 }.encode(ctx, &mut e, r, c, x, g, None, y).await?;
            Ok(e)
        }
    })
    .await?;
    rows.push(row("rms_norm".into(), format!("{r}x{c}"), ms, 8.0 * f64::from(r * c), 3.0 * f64::from(r * c)));

    // Decode attention: 9 heads over 1024 cached keys (SmolLM2-like).
    let attn = Attention { batch: 1, q_len: 1, kv_len: 1024, heads: 9, kv_heads: 3, head_dim: 64, q_pos0: 1023, q_pos_from_lengths: false, causal: true, window: 0, scale: 0.125, softcap: 0.0, rel_span: 0 };
    let q = ctx.storage_from("bench", "q", &rng.signed_unit_vec(9 * 64))?;
    let kv: Vec<f32> = rng.signed_unit_vec(1024 * 3 * 64);
    let (k, v) = (ctx.storage_from("bench", "k", &kv)?, ctx.storage_from("bench", "v", &kv)?);
    let lens = ctx.storage_from("bench", "lengths", &[1024u32])?;
    let s = ctx.storage_output("bench", "scores", attn.scratch_bytes())?;
    let o = ctx.storage_output("bench", "out", 9 * 64 * 4)?;
    let ms = time(ctx, iters, |mut e| {
        let (q, k, v, lens, s, o) = (&q, &k, &v, &lens, &s, &o);
        async move {
            attn.encode(ctx, &mut e, q, k, v, lens, s, o, None).await?;
            Ok(e)
        }
    })
    .await?;
    rows.push(row("attention decode".into(), "9 heads (3 kv), 1024 keys, d 64".into(), ms, 2.0 * 4.0 * kv.len() as f64, 4.0 * 9.0 * 1024.0 * 64.0));
    Ok(rows)
}

/// The rows as an aligned text table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = format!("{:<18} {:<32} {:>10} {:>9} {:>9} {:>8}\n", "kernel", "shape", "ms", "GB/s", "GFLOP/s", "of copy");
    for r in rows {
        out += &format!(
            "{:<18} {:<32} {:>10.3} {:>9.2} {:>9.2} {:>7.0}%\n",
            r.kernel, r.shape, r.ms, r.gb_per_s, r.gflop_per_s, 100.0 * r.of_copy_bandwidth
        );
    }
    out
}

/// One shape of `bench_matmul`: the same product by matvec and by the tiled kernel.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatmulRow {
    pub dtype: String,
    /// "rows x cols".
    pub shape: String,
    pub tokens: u32,
    /// matvec on the f32 path (the tiled kernel's arithmetic).
    pub matvec_gflop_per_s: f64,
    /// matvec on the f16 path, where the device has shader-f16 and the weights take it.
    pub matvec_f16_gflop_per_s: Option<f64>,
    pub tiled_gflop_per_s: f64,
    /// The blocked kernel (CPU adapters'), where the columns allow it.
    pub blocked_gflop_per_s: f64,
    /// The blocked kernel with every invocation loading X, where it shares X through subgroups.
    pub blocked_loads_gflop_per_s: Option<f64>,
    /// Tiled over matvec f32.
    pub tiled_over_matvec: f64,
    /// Tiled over the faster matvec path, where there are two.
    pub tiled_over_best_matvec: f64,
}

/// Token counts of `bench_matmul`.
pub const MATMUL_TOKENS: [u32; 5] = [1, 8, 64, 256, 1024];

/// Measures `Y = X·Wᵀ` for a 1024 × 1024 weight (BERT-base-like: 768–3072) of F32, F16, Q4_K and
/// Q8_0 at each of `token_counts` (`MATMUL_TOKENS` in `hugrt bench kernels`), by matvec (each
/// path the device has) and by the tiled matmul with the device's tile. Iterations shrink with
/// the work so a 1024-token product on a CPU adapter stays a few seconds.
pub async fn bench_matmul(ctx: &GpuContext, quick: bool, token_counts: &[u32]) -> Result<Vec<MatmulRow>, GpuError> {
    let (n, k) = (1024u64, 1024u64);
    let mut rng = crate::rng::SeededRng::new(2);
    let was = ctx.precision();
    let f16 = ctx.preferred_precision() == Precision::F16;
    let tile = matmul::Tile::for_device(ctx)?;
    let mut out = Vec::new();
    for dtype in [DType::F32, DType::F16, DType::Q4_1, DType::Q4_K, DType::Q8_0] {
        let bytes = rng.tensor_bytes(dtype, (n * k) as usize);
        let w = GpuWeight::upload(ctx, "W", dtype, n, k, &bytes)?;
        for &tokens in token_counts {
            let flops = 2.0 * (n * k) as f64 * f64::from(tokens);
            // About 2 GFLOP per measurement (quick: 0.5), between 1 and 20 runs.
            let iters = ((if quick { 0.5e9 } else { 2e9 }) / flops).clamp(1.0, if quick { 3.0 } else { 20.0 }) as u32;
            let x = ctx.storage_from("bench", "x", &rng.signed_unit_vec((k * u64::from(tokens)) as usize))?;
            let y = ctx.storage_output("bench", "y", n * u64::from(tokens) * 4)?;
            let gflops = |ms: f64| flops / ms / 1e6;
            let measure = async |kernel: matmul::Kernel, precision: Precision| -> Result<f64, GpuError> {
                ctx.set_precision(precision)?;
                let ms = time(ctx, iters, |mut e| {
                    let (w, x, y) = (&w, &x, &y);
                    async move {
                        match kernel {
                            matmul::Kernel::Tiled => matmul::encode_with_tile(ctx, &mut e, tile, w, tokens, x, y, &Default::default()).await?,
                            matmul::Kernel::Blocked => matmul::encode_blocked(ctx, &mut e, w, tokens, x, y, &Default::default()).await?,
                            matmul::Kernel::Matvec => matvec::encode(ctx, &mut e, w, tokens, x, y).await?,
                        };
                        Ok(e)
                    }
                })
                .await;
                ctx.set_precision(was)?;
                ms
            };
            let mv = gflops(measure(matmul::Kernel::Matvec, Precision::F32).await?);
            let mv16 = if f16 && matvec::f16_pays(dtype) { Some(gflops(measure(matmul::Kernel::Matvec, Precision::F16).await?)) } else { None };
            let tiled = gflops(measure(matmul::Kernel::Tiled, Precision::F32).await?);
            let blocked = gflops(measure(matmul::Kernel::Blocked, Precision::F32).await?);
            let shared = ctx.subgroup_sharing();
            let blocked_loads = if shared > 0 {
                ctx.set_subgroup_sharing(0)?;
                let ms = measure(matmul::Kernel::Blocked, Precision::F32).await;
                ctx.set_subgroup_sharing(shared)?;
                Some(gflops(ms?))
            } else {
                None
            };
            let best = mv16.map_or(mv, |m| m.max(mv));
            out.push(MatmulRow {
                dtype: dtype.to_string(),
                shape: format!("{n}x{k}"),
                tokens,
                matvec_gflop_per_s: mv,
                matvec_f16_gflop_per_s: mv16,
                tiled_gflop_per_s: tiled,
                blocked_gflop_per_s: blocked,
                blocked_loads_gflop_per_s: blocked_loads,
                tiled_over_matvec: tiled / mv,
                tiled_over_best_matvec: tiled / best,
            });
        }
    }
    Ok(out)
}

/// `bench_matmul`'s rows as an aligned text table (GFLOP/s).
pub fn matmul_table(rows: &[MatmulRow]) -> String {
    let mut out = format!("{:<6} {:<10} {:>6} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}\n", "dtype", "W", "tokens", "matvec f32", "matvec f16", "tiled", "blocked", "blocked ld", "tiled/mv", "/best mv");
    for r in rows {
        let f16 = r.matvec_f16_gflop_per_s.map_or("-".to_owned(), |g| format!("{g:.2}"));
        let loads = r.blocked_loads_gflop_per_s.map_or("-".to_owned(), |g| format!("{g:.2}"));
        out += &format!(
            "{:<6} {:<10} {:>6} {:>12.2} {:>12} {:>12.2} {:>12.2} {:>12} {:>9.2} {:>9.2}\n",
            r.dtype, r.shape, r.tokens, r.matvec_gflop_per_s, f16, r.tiled_gflop_per_s, r.blocked_gflop_per_s, loads, r.tiled_over_matvec, r.tiled_over_best_matvec
        );
    }
    out
}
