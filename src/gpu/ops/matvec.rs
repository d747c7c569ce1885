//! `Y = X·Wᵀ` for every weight type: matrix-vector products at decode time and small matrix
//! products at prefill (one weight row per workgroup, tokens in tiles of 8, weights decoded in
//! registers; see shaders/matvec.wgsl).

use crate::check::{Comparison, gamma_f32};
use crate::formats::{DType, quant};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;
use crate::gpu::weights::GpuWeight;

const OP: &str = "matvec";

/// Uniforms of `shaders/matvec.wgsl` (`struct MatvecParams`); a test checks the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatvecParams {
    pub rows: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub row_offset: u32,
    pub tokens: u32,
    pub out_stride: u32,
    pub _pad0: u32,
    pub _pad1: u32,
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
/// dispatch per part of `w`.
pub async fn encode(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<(), GpuError> {
    check_len(OP, "x", x, u64::from(tokens) * u64::from(w.cols))?;
    check_len(OP, "y", y, u64::from(tokens) * u64::from(w.rows))?;
    if u64::from(tokens) * u64::from(w.cols.max(w.rows)) > u64::from(u32::MAX) {
        return Err(GpuError::Shape { op: OP, detail: format!("{tokens} tokens of {} values overflow u32 indexing", w.cols) });
    }
    let kind = kind(w.dtype)?;
    let tpr = threads_per_row(w.dtype, w.cols, min_steps_per_thread(ctx));
    let rows_per_group = WORKGROUP / tpr;
    let tiles = tokens.div_ceil(TOKEN_TILE);
    if tiles > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(GpuError::Shape { op: OP, detail: format!("{tokens} tokens exceed the dispatch grid") });
    }
    for part in &w.parts {
        let (gx, gy, _) = grid(ctx, OP, u64::from(part.rows.div_ceil(rows_per_group)))?;
        let params = MatvecParams {
            rows: part.rows,
            cols: w.cols,
            groups_x: gx,
            row_offset: part.first_row,
            tokens,
            out_stride: w.rows,
            _pad0: 0,
            _pad1: 0,
        };
        Dispatch {
            shader: ShaderId::Matvec,
            entry_point: "matvec",
            workgroup_size: WORKGROUP,
            kind: Some(kind),
            threads_per_row: Some(tpr),
            params,
            buffers: &[&part.buffer, x, y],
            groups: (gx, gy, tiles),
        }
        .encode(ctx, encoder)
        .await?;
    }
    Ok(())
}

/// Uploads `x` (tokens × cols), runs `X·Wᵀ` and reads `Y` (tokens × rows) back: for tests,
/// checks and benchmarks.
pub async fn run(ctx: &GpuContext, w: &GpuWeight, x: &[f32]) -> Result<Vec<f32>, GpuError> {
    if x.is_empty() || !x.len().is_multiple_of(w.cols as usize) {
        return Err(GpuError::Shape { op: OP, detail: format!("x has {} values, W has {} columns", x.len(), w.cols) });
    }
    let tokens = (x.len() / w.cols as usize) as u32;
    let x_buf = ctx.storage_from(OP, "x", x)?;
    let y_buf = ctx.storage_output(OP, "y", u64::from(tokens) * u64::from(w.rows) * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    encode(ctx, &mut encoder, w, tokens, &x_buf, &y_buf).await?;
    submit(ctx, OP, encoder).await?;
    ctx.read_f32(&y_buf, tokens as usize * w.rows as usize).await
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

/// CPU reference for one token: `W·x` in f64 from the weights dequantized row by row (never the
/// whole matrix at once), and Σ|W·x| per row for the error bound.
pub fn reference(dtype: DType, w_bytes: &[u8], x: &[f32]) -> Result<(Vec<f64>, Vec<f64>), GpuError> {
    let cols = x.len() as u64;
    let row_bytes = dtype.bytes_for(cols).filter(|&b| b > 0).ok_or_else(|| GpuError::Shape { op: OP, detail: "bad row".into() })? as usize;
    let mut y = Vec::with_capacity(w_bytes.len() / row_bytes);
    let mut abs_sums = Vec::with_capacity(w_bytes.len() / row_bytes);
    let mut row = Vec::with_capacity(x.len());
    for row_bytes in w_bytes.chunks_exact(row_bytes) {
        row.clear();
        quant::dequantize_into(dtype, row_bytes, &mut row).map_err(|e| GpuError::Shape { op: OP, detail: e.to_string() })?;
        let (mut sum, mut abs_sum) = (0.0f64, 0.0f64);
        for (&wv, &xv) in row.iter().zip(x) {
            let p = f64::from(wv) * f64::from(xv);
            sum += p;
            abs_sum += p.abs();
        }
        y.push(sum);
        abs_sums.push(abs_sum);
    }
    Ok((y, abs_sums))
}

/// Runs a seeded random `tokens × cols` by `rows × cols` product of `dtype` on the GPU (weights
/// split into parts of at most `max_part_bytes` when given) and compares it with the CPU
/// reference. Shared by the native and browser tests and by the demo page.
pub async fn check_against_reference(
    ctx: &GpuContext,
    dtype: DType,
    rows: usize,
    cols: usize,
    tokens: usize,
    seed: u64,
    max_part_bytes: Option<u64>,
) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let w_bytes = rng.tensor_bytes(dtype, rows * cols);
    let x = rng.signed_unit_vec(tokens * cols);
    let w = GpuWeight::new(ctx, "W", dtype, rows as u64, cols as u64, max_part_bytes)?;
    w.write_rows(ctx, 0, &w_bytes)?;
    let y = run(ctx, &w, &x).await?;
    let (mut expected, mut abs_sums) = (Vec::with_capacity(y.len()), Vec::with_capacity(y.len()));
    for xt in x.chunks_exact(cols) {
        let (e, a) = reference(dtype, &w_bytes, xt)?;
        expected.extend(e);
        abs_sums.extend(a);
    }
    let tpr = threads_per_row(dtype, w.cols, min_steps_per_thread(ctx));
    Ok(Comparison::elementwise(&y, &expected, error_bound(dtype, w.cols, tpr, &abs_sums)))
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
    fn reference_handles_large_values_without_overflow() {
        let big = f32::MAX / 2.0;
        let w: Vec<u8> = [big, big, -big].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (y, _) = reference(DType::F32, &w, &[2.0, 2.0, 2.0]).unwrap();
        assert!(y[0].is_finite() && (y[0] - f64::from(big) * 2.0).abs() < 1e30);
    }
}
