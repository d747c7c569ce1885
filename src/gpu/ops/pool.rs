//! Mean pooling over valid tokens and L2 normalisation (shaders/pool.wgsl): sentence embeddings.

use crate::check::{Comparison, NORMALISED};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "mean pool";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct PoolParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct PoolParams {
    pub seq_len: u32,
    pub hidden: u32,
    pub normalize: u32,
    pub _pad: u32,
}

/// Records `out[b] = normalize(mean(x[b, ..lengths[b]]))` for x (batch, seq_len, hidden).
#[allow(clippy::too_many_arguments)]
pub async fn encode(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    batch: u32,
    seq_len: u32,
    hidden: u32,
    normalize: bool,
    x: &wgpu::Buffer,
    lengths: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<(), GpuError> {
    if batch == 0 || seq_len == 0 || hidden == 0 || batch > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(GpuError::Shape { op: OP, detail: format!("batch {batch}, seq_len {seq_len}, hidden {hidden}") });
    }
    check_len(OP, "x", x, u64::from(batch) * u64::from(seq_len) * u64::from(hidden))?;
    check_len(OP, "lengths", lengths, u64::from(batch))?;
    check_len(OP, "out", out, u64::from(batch) * u64::from(hidden))?;
    let params = PoolParams { seq_len, hidden, normalize: u32::from(normalize), _pad: 0 };
    Dispatch { shader: ShaderId::Pool, entry_point: "mean_pool", workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &[x, lengths, out], groups: (batch, 1, 1) }
        .encode(ctx, encoder)
        .await
}

/// CPU reference in f64.
pub fn reference(x: &[f32], lengths: &[u32], seq_len: usize, hidden: usize, normalize: bool) -> Vec<f64> {
    let mut out = Vec::new();
    for (b, &len) in lengths.iter().enumerate() {
        let n = (len as usize).clamp(1, seq_len);
        let mean: Vec<f64> = (0..hidden)
            .map(|d| (0..n).map(|t| f64::from(x[(b * seq_len + t) * hidden + d])).sum::<f64>() / n as f64)
            .collect();
        let norm = if normalize { mean.iter().map(|m| m * m).sum::<f64>().sqrt().max(1e-12) } else { 1.0 };
        out.extend(mean.iter().map(|m| m / norm));
    }
    out
}

pub async fn check_against_reference(ctx: &GpuContext, lengths: &[u32], seq_len: usize, hidden: usize, normalize: bool, seed: u64) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let batch = lengths.len();
    let x = rng.signed_unit_vec(batch * seq_len * hidden);
    let (x_buf, len_buf) = (ctx.storage_from(OP, "x", &x)?, ctx.storage_from(OP, "lengths", lengths)?);
    let out = ctx.storage_output(OP, "out", (batch * hidden) as u64 * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    encode(ctx, &mut encoder, batch as u32, seq_len as u32, hidden as u32, normalize, &x_buf, &len_buf, &out).await?;
    submit(ctx, OP, encoder).await?;
    let y = ctx.read_f32(&out, batch * hidden).await?;
    Ok(Comparison::within(&y, &reference(&x, lengths, seq_len, hidden, normalize), NORMALISED))
}
