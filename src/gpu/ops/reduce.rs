//! Softmax and argmax over rows (shaders/reduce.wgsl). Argmax lets greedy decoding read back
//! 4 bytes per step instead of the logits.

use crate::check::{Comparison, TRANSCENDENTAL, Tolerance};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "reduce";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct ReduceParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ReduceParams {
    pub rows: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub _pad: u32,
}

#[allow(clippy::too_many_arguments)]
async fn encode(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    entry_point: &'static str,
    rows: u32,
    cols: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    idx: &wgpu::Buffer,
) -> Result<(), GpuError> {
    if cols == 0 {
        return Err(GpuError::Shape { op: OP, detail: "rows of 0 values".into() });
    }
    check_len(OP, "x", x, u64::from(rows) * u64::from(cols))?;
    let groups = grid(ctx, OP, u64::from(rows))?;
    let params = ReduceParams { rows, cols, groups_x: groups.0, _pad: 0 };
    Dispatch { shader: ShaderId::Reduce, entry_point, workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &[x, y, idx], groups }.encode(ctx, encoder).await
}

/// Records `y = softmax(x)` per row. `scratch` is any buffer of ≥ 4 bytes (argmax's output slot,
/// unused here).
pub async fn encode_softmax(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, rows: u32, cols: u32, x: &wgpu::Buffer, y: &wgpu::Buffer, scratch: &wgpu::Buffer) -> Result<(), GpuError> {
    check_len(OP, "y", y, u64::from(rows) * u64::from(cols))?;
    encode(ctx, encoder, "softmax", rows, cols, x, y, scratch).await
}

/// Records `out[row] = argmax(x[row])` (u32; the first of equal maxima; NaN and -inf never win).
/// `scratch` is any writable buffer (softmax's output slot, unused here).
pub async fn encode_argmax(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, rows: u32, cols: u32, x: &wgpu::Buffer, out: &wgpu::Buffer, scratch: &wgpu::Buffer) -> Result<(), GpuError> {
    check_len(OP, "out", out, u64::from(rows))?;
    encode(ctx, encoder, "argmax", rows, cols, x, scratch, out).await
}

/// CPU softmax in f64 (max-subtracted).
pub fn softmax_reference(x: &[f32], cols: usize) -> Vec<f64> {
    x.chunks_exact(cols)
        .flat_map(|row| {
            let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
            let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

/// CPU argmax: first index of the largest finite or +inf value (0 for a row without one).
pub fn argmax_reference(row: &[f32]) -> u32 {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in row.iter().enumerate() {
        if !v.is_nan() && v != f32::NEG_INFINITY && best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map_or(0, |(i, _)| i as u32)
}

/// Softmax of seeded random rows scaled by `range` (large ranges test the max subtraction).
pub async fn check_softmax(ctx: &GpuContext, rows: usize, cols: usize, range: f32, seed: u64) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let x: Vec<f32> = rng.signed_unit_vec(rows * cols).iter().map(|v| v * range).collect();
    let x_buf = ctx.storage_from(OP, "x", &x)?;
    let y_buf = ctx.storage_output(OP, "y", x.len() as u64 * 4)?;
    let scratch = ctx.storage_output(OP, "scratch", 4)?;
    let mut encoder = new_encoder(ctx, OP);
    encode_softmax(ctx, &mut encoder, rows as u32, cols as u32, &x_buf, &y_buf, &scratch).await?;
    submit(ctx, OP, encoder).await?;
    let y = ctx.read_f32(&y_buf, x.len()).await?;
    // Relative: probabilities span many orders of magnitude.
    Ok(Comparison::within(&y, &softmax_reference(&x, cols), Tolerance { abs: 1e-12, ..TRANSCENDENTAL }))
}

/// Argmax of each row of `x` on the GPU.
pub async fn argmax(ctx: &GpuContext, x: &[f32], cols: usize) -> Result<Vec<u32>, GpuError> {
    let rows = x.len() / cols.max(1);
    let x_buf = ctx.storage_from(OP, "x", x)?;
    let out = ctx.storage_output(OP, "argmax", rows as u64 * 4)?;
    let scratch = ctx.storage_output(OP, "scratch", 4)?;
    let mut encoder = new_encoder(ctx, OP);
    encode_argmax(ctx, &mut encoder, rows as u32, cols as u32, &x_buf, &out, &scratch).await?;
    submit(ctx, OP, encoder).await?;
    Ok(ctx.read_f32(&out, rows).await?.into_iter().map(f32::to_bits).collect())
}
