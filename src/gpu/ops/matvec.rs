//! `Y = X·Wᵀ` for every weight type: matrix-vector products at decode time and small matrix
//! products at prefill (one weight row per workgroup, tokens in tiles of 8, weights decoded in
//! registers; see shaders/matvec.wgsl).
//!
//! Two paths, chosen per call from the context's `Precision` (and the weight type): f32 products
//! (quant_dot.wgsl) on every device, or, with shader-f16, activations staged to f16 in groups of
//! 32 with a power-of-two scale (stage_f16.wgsl) and weight blocks decoded to f16 and multiplied
//! in vec4<f16> (quant_dot_f16.wgsl), blocks still added in f32. `encode` says which it took.

use serde::Serialize;

use crate::check::{Comparison, F16_MIN_NORMAL, gamma_f16, gamma_f32};
use crate::formats::{DType, quant};
use crate::gpu::context::{GpuContext, Precision};
use crate::gpu::error::GpuError;
use crate::gpu::ops::product::{Epilogue, PartsDispatch};
use crate::gpu::ops::{Dispatch, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;
use crate::gpu::weights::GpuWeight;

const OP: &str = "matvec";

/// Uniforms of `shaders/stage_f16.wgsl` (`struct StageParams`); a test checks the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StageParams {
    /// Activations to stage: tokens · cols, even.
    pub n: u32,
    /// ceil(n / STAGE_GROUP).
    pub groups: u32,
    pub groups_x: u32,
    pub _pad: u32,
}

/// Activations per power-of-two scale in the f16 path (stage_f16.wgsl).
pub const STAGE_GROUP: u32 = 32;

/// Whether f16 products are used for weights of `dtype` when the context asks for them: the
/// block formats, whose decoding is where a decode step's arithmetic goes. F32, F16 and BF16
/// weights keep f32 products: F32's and BF16's values do not fit f16 (24-bit mantissas; an 8-bit
/// exponent), and F16 weights have nothing to decode, while reading them as f16 would need a
/// u32 → vec2<f16> bitcast that naga does not type (the f16 kernel had to unpack to f32 and
/// convert back, and measured slower on lavapipe: 112–120 ms against 95–103 for 4096×4096).
pub fn f16_pays(dtype: DType) -> bool {
    !matches!(dtype, DType::F32 | DType::F16 | DType::BF16)
}

/// The path `encode` takes for weights of `dtype` on `ctx`.
pub fn path(ctx: &GpuContext, dtype: DType) -> Precision {
    if ctx.precision() == Precision::F16 && f16_pays(dtype) { Precision::F16 } else { Precision::F32 }
}

/// Tokens per workgroup (the shader's `TM`).
pub const TOKEN_TILE: u32 = 8;

/// Values one invocation handles per step: an element, a pair (F16/BF16) or a block.
fn step_elems(dtype: DType) -> u64 {
    match dtype {
        DType::F32 => 1,
        DType::F16 | DType::BF16 => 2,
        other => other.block_elems(),
    }
}

/// Steps (blocks) each invocation should take at least. CPU adapters (lavapipe, SwiftShader)
/// pay a large fixed cost per workgroup, so they want few long-running invocations; GPUs want
/// many invocations in flight.
pub fn min_steps_per_thread(ctx: &GpuContext) -> u64 {
    let cpu = matches!(ctx.report.device_type.as_str(), "Cpu" | "fallback") || ctx.report.architecture == "swiftshader";
    if cpu { 16 } else { 2 }
}

/// Threads per row for rows of `cols` values: enough that each takes at least `min_steps`
/// steps, a power of two from 1 to the workgroup size.
pub fn threads_per_row(dtype: DType, cols: u32, min_steps: u64) -> u32 {
    let steps = u64::from(cols).div_ceil(step_elems(dtype));
    (steps.div_ceil(min_steps).next_power_of_two().min(u64::from(WORKGROUP))) as u32
}

/// Invocations per workgroup.
pub const WORKGROUP: u32 = 64;

/// The shaders' `KIND` for a weight type (matvec.wgsl, quant_decode.wgsl).
pub fn kind(dtype: DType) -> Result<u32, GpuError> {
    Ok(match dtype {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::Q4_0 => 3,
        DType::Q4_1 => 4,
        DType::Q5_0 => 5,
        DType::Q5_1 => 6,
        DType::Q8_0 => 7,
        DType::Q2_K => 8,
        DType::Q3_K => 9,
        DType::Q4_K => 10,
        DType::Q5_K => 11,
        DType::Q6_K => 12,
        other => return Err(GpuError::Shape { op: OP, detail: format!("no matvec for {other}") }),
    })
}

/// Records `Y = X·Wᵀ` for `tokens` rows of `x` (tokens, cols) into `y` (tokens, rows): one
/// dispatch per part of `w`, after one that stages `x` to f16 on the f16 path. Returns the path
/// taken (`path`).
pub async fn encode(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Precision, GpuError> {
    encode_with(ctx, encoder, w, tokens, x, y, &Epilogue::default()).await
}

/// `encode` with an epilogue (bias, residual, output segments; not the norm or gating).
pub async fn encode_with(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    epi: &Epilogue<'_>,
) -> Result<Precision, GpuError> {
    epi.check(OP, false, w, tokens, x, y)?;
    let kind = kind(w.dtype)?;
    let tpr = threads_per_row(w.dtype, w.cols, min_steps_per_thread(ctx));
    let rows_per_group = WORKGROUP / tpr;
    let tiles = tokens.div_ceil(TOKEN_TILE);
    if tiles > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(GpuError::Shape { op: OP, detail: format!("{tokens} tokens exceed the dispatch grid") });
    }
    let precision = path(ctx, w.dtype);
    let staged = match precision {
        Precision::F16 => Some(stage(ctx, encoder, tokens * w.cols, x).await?),
        Precision::F32 => None,
    };
    let groups_for_rows = |rows: u32| u64::from(rows.div_ceil(rows_per_group));
    let (shader, x, extra) = match &staged {
        // Staged x (tokens · cols / 4) vec4<f16> at binding 2, its scales (tokens · cols / 32) at 6.
        Some((xh, xs)) => (ShaderId::MatvecF16, xh, Some(xs)),
        None => (ShaderId::Matvec, x, None),
    };
    let parts = PartsDispatch { op: OP, shader, entry_point: "matvec", workgroup_size: WORKGROUP, threads_per_row: Some(tpr), tile: None, groups_for_rows: &groups_for_rows, token_groups: tiles, extra };
    parts.encode(ctx, encoder, w, kind, tokens, x, y, epi).await?;
    Ok(precision)
}

/// Records the staging of the first `n` values of `x` for the f16 path (stage_f16.wgsl) into the
/// context's scratch buffers, returned: (n / 2) f16 pairs and (n / 32) scales.
async fn stage(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, n: u32, x: &wgpu::Buffer) -> Result<(wgpu::Buffer, wgpu::Buffer), GpuError> {
    if !n.is_multiple_of(2) {
        return Err(GpuError::Shape { op: OP, detail: format!("{n} activations: the f16 path stages pairs") });
    }
    let groups = n.div_ceil(STAGE_GROUP);
    // Whole vec4<f16>s: the f16 module reads four values at a time.
    let xh = ctx.pool.scratch(ctx, "matvec f16 x", (u64::from(n) * 2).next_multiple_of(8))?;
    let xs = ctx.pool.scratch(ctx, "matvec f16 scales", u64::from(groups) * 4)?;
    let (gx, gy, _) = grid(ctx, OP, u64::from(groups.div_ceil(WORKGROUP)))?;
    Dispatch {
        shader: ShaderId::StageF16,
        entry_point: "stage",
        workgroup_size: WORKGROUP,
        kind: None,
        threads_per_row: None,
        fuse: None,
        params: StageParams { n, groups, groups_x: gx, _pad: 0 },
        buffers: &[x, &xh, &xs],
        groups: (gx, gy, 1),
    }
    .encode(ctx, encoder)
    .await?;
    Ok((xh, xs))
}

/// Uploads `x` (tokens × cols), runs `X·Wᵀ` and reads `Y` (tokens × rows) back: for tests,
/// checks and benchmarks.
pub async fn run(ctx: &GpuContext, w: &GpuWeight, x: &[f32]) -> Result<Vec<f32>, GpuError> {
    Ok(run_reporting(ctx, w, x).await?.0)
}

/// `run`, and the path it took.
pub async fn run_reporting(ctx: &GpuContext, w: &GpuWeight, x: &[f32]) -> Result<(Vec<f32>, Precision), GpuError> {
    if x.is_empty() || !x.len().is_multiple_of(w.cols as usize) {
        return Err(GpuError::Shape { op: OP, detail: format!("x has {} values, W has {} columns", x.len(), w.cols) });
    }
    let tokens = (x.len() / w.cols as usize) as u32;
    let x_buf = ctx.storage_from(OP, "x", x)?;
    let y_buf = ctx.storage_output(OP, "y", u64::from(tokens) * u64::from(w.rows) * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    let precision = encode(ctx, &mut encoder, w, tokens, &x_buf, &y_buf).await?;
    submit(ctx, OP, encoder).await?;
    Ok((ctx.read_f32(&y_buf, tokens as usize * w.rows as usize).await?, precision))
}

/// The bound on |GPU − exact| per row: the longest chain of f32 operations any one result went
/// through (the products one invocation accumulates in sequence, the tree of log2(WG) levels, and
/// a few roundings of the decode itself) times Σ|W·x|. Rigorous for any rounding mode and
/// fused multiply-adds, so a pass is never luck and a wrong index fails.
pub fn error_bound(dtype: DType, cols: u32, tpr: u32, abs_sums: &[f64]) -> impl Fn(usize) -> f64 + '_ {
    let per_step = step_elems(dtype);
    let steps = u64::from(cols).div_ceil(per_step).div_ceil(u64::from(tpr));
    let depth = steps * per_step + u64::from(tpr.trailing_zeros()) + 3;
    let gamma = gamma_f32(depth);
    let flush = f64::from(cols) * f64::from(f32::MIN_POSITIVE);
    move |row| gamma * abs_sums[row] + flush
}

/// The f16 operations one weight value goes through in quant_dot_f16.wgsl: the rounding of its
/// staged activation, its product, and the sum over its (sub-)block (32 values; 16 for Q2_K,
/// Q3_K and Q6_K).
fn f16_chain(dtype: DType) -> u64 {
    2 + match dtype {
        DType::Q2_K | DType::Q3_K | DType::Q6_K => 16,
        _ => 32,
    }
}

/// The bound on |GPU − exact| per row on the f16 path, from `f16_sums`. Each f16 operation is
/// off by at most u·|result| (u = 2^-11) plus, when the result is subnormal, f16's smallest
/// normal 2^-14. A block's f16 sums of q·ξ (and Σ ξ) then carry γ_f16(chain) relative to
/// Σ|d·q·x| + |m·x| ≤ `magnitude` and the underflow terms in `underflow`; their f32 life after
/// (block scales and min, the group scale, up to 16 sub-blocks per block, the blocks one
/// invocation adds, the tree) is the f32 bound's γ on the same magnitude, counted twice for the
/// (1 + γ_f16) growth. Rigorous like the f32 bound for any rounding mode and fused multiply-add.
pub fn error_bound_f16(dtype: DType, cols: u32, tpr: u32, sums: &[F16Sums]) -> impl Fn(usize) -> f64 + '_ {
    let per_step = step_elems(dtype);
    let steps = u64::from(cols).div_ceil(per_step).div_ceil(u64::from(tpr));
    let depth32 = steps + u64::from(tpr.trailing_zeros()) + 21;
    let rel = gamma_f16(f16_chain(dtype)) + 2.0 * gamma_f32(depth32);
    let flush = f64::from(cols) * f64::from(f32::MIN_POSITIVE);
    move |row| rel * sums[row].magnitude + 2.0 * F16_MIN_NORMAL * sums[row].underflow + flush
}

/// What `error_bound_f16` needs of one output value.
#[derive(Clone, Copy, Debug, Default)]
pub struct F16Sums {
    /// Σ w̃ᵢ·|xᵢ|, w̃ᵢ = |d·q| + |m| of value i (`magnitudes`): ≥ |wᵢ·xᵢ|, and what the f16 sums
    /// of q·ξ and ξ are relative to even where d·q and m cancel.
    pub magnitude: f64,
    /// Σ over the staging groups g the row meets of s_g·(Σ_{i∈g} w̃ᵢ + 3·32·c_g): s_g is the
    /// group's scale (as stage_f16.wgsl computes it), c_g the largest w̃ᵢ of the group. A staged
    /// ξᵢ that underflows carries 2^-14 into the sum times w̃ᵢ; each of the ≤ 3·32 products and
    /// additions of a group's f16 sums, times the block scale applied after (≤ c_g where any q
    /// of the sub-block is non-zero; an all-zero sub-block's sum is exact).
    pub underflow: f64,
}

/// The weights of one row as `F16Sums` sees them: w̃ = |d·q| + |m| elementwise, the row
/// dequantized after every block's scale d was made positive and its min made to add (Q4_1's and
/// Q5_1's m positive; Q2_K's, Q4_K's and Q5_K's dmin negative, as they subtract dmin·m).
pub fn magnitudes(dtype: DType, row_bytes: &[u8]) -> Result<Vec<f32>, GpuError> {
    let mut bytes = row_bytes.to_vec();
    let offsets = quant::f16_scale_offsets(dtype);
    if !offsets.is_empty() {
        for block in bytes.chunks_exact_mut(dtype.block_bytes() as usize) {
            block[offsets[0] + 1] &= 0x7F;
            if let Some(&m) = offsets.get(1) {
                match dtype {
                    DType::Q4_1 | DType::Q5_1 => block[m + 1] &= 0x7F,
                    _ => block[m + 1] |= 0x80,
                }
            }
        }
    }
    let mut row = quant::dequantize(dtype, &bytes).map_err(|e| GpuError::Shape { op: OP, detail: e.to_string() })?;
    row.iter_mut().for_each(|v| *v = v.abs());
    Ok(row)
}

/// `F16Sums` for every token of `x` (tokens × cols, flat, as the staging groups are taken) and
/// every row of `w_bytes` (a block format), in the order of `Y`.
pub fn f16_sums(dtype: DType, w_bytes: &[u8], x: &[f32], cols: usize) -> Result<Vec<F16Sums>, GpuError> {
    let g = STAGE_GROUP as usize;
    // The group scales as stage_f16.wgsl computes them: 2^e for max|x| = f·2^e, f in [0.5, 1).
    let scales: Vec<f64> = x
        .chunks(g)
        .map(|c| {
            let m = c.iter().fold(0f32, |m, v| m.max(v.abs()));
            if m == 0.0 { 1.0 } else { 2f64.powi(((m.to_bits() >> 23) & 0xFF).max(1) as i32 - 126) }
        })
        .collect();
    let row_bytes = dtype.bytes_for(cols as u64).filter(|&b| b > 0).ok_or_else(|| GpuError::Shape { op: OP, detail: "bad row".into() })? as usize;
    let rows = w_bytes.len() / row_bytes;
    let tokens = x.len() / cols;
    let mut sums = vec![F16Sums::default(); tokens * rows];
    for (r, row_bytes) in w_bytes.chunks_exact(row_bytes).enumerate() {
        let wt = magnitudes(dtype, row_bytes)?;
        for t in 0..tokens {
            let s = &mut sums[t * rows + r];
            let xt = &x[t * cols..(t + 1) * cols];
            s.magnitude = wt.iter().zip(xt).map(|(&w, &x)| f64::from(w) * f64::from(x.abs())).sum();
            // The groups this token's row meets, by flat index.
            let mut i = 0;
            while i < cols {
                let flat = t * cols + i;
                let end = (flat / g + 1) * g - t * cols;
                let part = &wt[i..end.min(cols)];
                let c = part.iter().fold(0f32, |m, &v| m.max(v));
                let sum: f64 = part.iter().map(|&w| f64::from(w)).sum();
                s.underflow += scales[flat / g] * (sum + 3.0 * g as f64 * f64::from(c));
                i = end;
            }
        }
    }
    Ok(sums)
}

/// CPU reference for one token: `W·x` in f64 (`matmul::reference` of one token: the weights
/// dequantized row by row, never the whole matrix at once), and Σ|W·x| per row for the error bound.
pub fn reference(dtype: DType, w_bytes: &[u8], x: &[f32]) -> Result<(Vec<f64>, Vec<f64>), GpuError> {
    super::matmul::reference(dtype, w_bytes, x, x.len())
}

/// The outcome of `check_against_reference`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatvecCheck {
    /// Against the bound of the path taken (`error_bound` or `error_bound_f16`).
    #[serde(flatten)]
    pub comparison: Comparison,
    /// The path `encode` took.
    pub precision: Precision,
    /// The largest |GPU − exact| / Σ|W·x| over the outputs: the error relative to the row's
    /// magnitude, comparable across paths and weight types.
    pub max_rel_err: f64,
}

impl std::fmt::Display for MatvecCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} path, max |err|/Σ|w·x| {:.2e}: {}", self.precision, self.max_rel_err, self.comparison)
    }
}

/// Runs a seeded random `tokens × cols` by `rows × cols` product of `dtype` on the GPU (weights
/// split into parts of at most `max_part_bytes` when given), on the path the context's precision
/// gives, and compares it with the CPU reference under that path's bound. Shared by the native
/// and browser tests and by the demo page.
pub async fn check_against_reference(
    ctx: &GpuContext,
    dtype: DType,
    rows: usize,
    cols: usize,
    tokens: usize,
    seed: u64,
    max_part_bytes: Option<u64>,
) -> Result<MatvecCheck, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let w_bytes = rng.tensor_bytes(dtype, rows * cols);
    let x = rng.signed_unit_vec(tokens * cols);
    let w = GpuWeight::new(ctx, "W", dtype, rows as u64, cols as u64, max_part_bytes)?;
    w.write_rows(ctx, 0, &w_bytes)?;
    let (y, precision) = run_reporting(ctx, &w, &x).await?;
    let (expected, abs_sums) = super::matmul::reference(dtype, &w_bytes, &x, cols)?;
    let tpr = threads_per_row(dtype, w.cols, min_steps_per_thread(ctx));
    let comparison = match precision {
        Precision::F32 => Comparison::elementwise(&y, &expected, error_bound(dtype, w.cols, tpr, &abs_sums)),
        Precision::F16 => {
            let sums = f16_sums(dtype, &w_bytes, &x, cols)?;
            Comparison::elementwise(&y, &expected, error_bound_f16(dtype, w.cols, tpr, &sums))
        }
    };
    let max_rel_err = crate::check::max_relative_error(&y, &expected, &abs_sums);
    Ok(MatvecCheck { comparison, precision, max_rel_err })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_on_a_known_case() {
        // [[1, 2, 3], [-4, 5, -6]] · [1, 0.5, -1] = [-1, 4.5]
        let w: Vec<u8> = [1.0f32, 2.0, 3.0, -4.0, 5.0, -6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (y, abs) = reference(DType::F32, &w, &[1.0, 0.5, -1.0]).unwrap();
        assert_eq!(y, vec![-1.0, 4.5]);
        assert_eq!(abs, vec![5.0, 12.5]);
    }

    #[test]
    fn magnitudes_add_the_scale_and_the_min() {
        let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
        // Q4_1, d = -2, m = -3: value 0 has q = 1 (w = -5), value 16 has q = 0 (w = -3).
        let mut b = [f16(-2.0), f16(-3.0)].concat();
        b.extend([0x01u8; 16]);
        let m = magnitudes(DType::Q4_1, &b).unwrap();
        assert_eq!((m[0], m[16]), (5.0, 3.0));
        // Q4_K, d = 1, dmin = 2, sub-block 0 with sc = 3, m = 5, value 0 with q = 2:
        // w = 3·2 − 2·5 = −4, w̃ = 3·2 + 2·5 = 16.
        let mut b = [f16(1.0), f16(2.0)].concat();
        b.extend([3, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0]);
        b.extend([0x02u8]);
        b.extend([0u8; 127]);
        let w = quant::dequantize(DType::Q4_K, &b).unwrap();
        let m = magnitudes(DType::Q4_K, &b).unwrap();
        assert_eq!((w[0], m[0]), (-4.0, 16.0));
    }

    #[test]
    fn f16_sums_use_the_staging_scales() {
        // One Q8_0 row (d = 0.5, q = 1, 2, 0, …: w = 0.5, 1, 0, …), two tokens, a group each.
        let mut w = half::f16::from_f32(0.5).to_le_bytes().to_vec();
        w.extend([1u8, 2]);
        w.extend([0u8; 30]);
        let mut x = vec![0f32; 64];
        // Token 0: max |x| = 0.75 = 0.75·2^0, s = 1. Token 1: max |x| = 1 = 0.5·2^1, s = 2.
        (x[0], x[1]) = (0.25, -0.75);
        (x[32], x[33]) = (1.0, 0.0);
        let sums = f16_sums(DType::Q8_0, &w, &x, 32).unwrap();
        assert_eq!(sums[0].magnitude, 0.5 * 0.25 + 1.0 * 0.75);
        assert_eq!(sums[1].magnitude, 0.5);
        // s·(Σ w̃ + 3·32·max w̃)
        assert_eq!(sums[0].underflow, 1.5 + 96.0);
        assert_eq!(sums[1].underflow, 2.0 * (1.5 + 96.0));
    }

    #[test]
    fn reference_handles_large_values_without_overflow() {
        let big = f32::MAX / 2.0;
        let w: Vec<u8> = [big, big, -big].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (y, _) = reference(DType::F32, &w, &[2.0, 2.0, 2.0]).unwrap();
        assert!(y[0].is_finite() && (y[0] - f64::from(big) * 2.0).abs() < 1e30);
    }
}
