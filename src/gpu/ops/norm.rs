//! RMSNorm and LayerNorm over rows (shaders/norm.wgsl).

use crate::check::{Comparison, NORMALISED};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, PER_INVOCATION_WG, Reduction, check_len, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "norm";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct NormParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct NormParams {
    pub rows: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub eps: f32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Norm {
    /// x / sqrt(mean(x²) + eps) · g
    Rms { eps: f32 },
    /// (x − mean) / sqrt(var + eps) · g + b
    Layer { eps: f32 },
}

impl Norm {
    fn eps(self) -> f32 {
        match self {
            Norm::Rms { eps } | Norm::Layer { eps } => eps,
        }
    }

    /// Records `y = norm(x)` for `rows` rows of `cols`: `g` (cols), `b` (cols; LayerNorm only,
    /// `None` for a LayerNorm without bias), by the device's kind of reduction.
    #[allow(clippy::too_many_arguments)]
    pub async fn encode(self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, rows: u32, cols: u32, x: &wgpu::Buffer, g: &wgpu::Buffer, b: Option<&wgpu::Buffer>, y: &wgpu::Buffer) -> Result<(), GpuError> {
        self.encode_with(Reduction::for_device(ctx), ctx, encoder, rows, cols, x, g, b, y).await
    }

    /// `encode` by the given kind of reduction (tests run both).
    #[allow(clippy::too_many_arguments)]
    pub async fn encode_with(
        self,
        reduction: Reduction,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        rows: u32,
        cols: u32,
        x: &wgpu::Buffer,
        g: &wgpu::Buffer,
        b: Option<&wgpu::Buffer>,
        y: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        let n = u64::from(rows) * u64::from(cols);
        if cols == 0 {
            return Err(GpuError::Shape { op: OP, detail: "rows of 0 values".into() });
        }
        check_len(OP, "x", x, n)?;
        check_len(OP, "y", y, n)?;
        check_len(OP, "g", g, u64::from(cols))?;
        if let Some(b) = b.filter(|_| matches!(self, Norm::Layer { .. })) {
            check_len(OP, "b", b, u64::from(cols))?;
        }
        let (workgroup_size, groups) = match reduction {
            Reduction::Workgroup => (WORKGROUP, grid(ctx, OP, u64::from(rows))?),
            Reduction::PerInvocation => (PER_INVOCATION_WG, grid(ctx, OP, u64::from(rows.div_ceil(PER_INVOCATION_WG)))?),
        };
        let entry_point = match (self, b, reduction) {
            (Norm::Rms { .. }, _, Reduction::Workgroup) => "rms_norm",
            (Norm::Layer { .. }, Some(_), Reduction::Workgroup) => "layer_norm",
            (Norm::Layer { .. }, None, Reduction::Workgroup) => "layer_norm_unbiased",
            (Norm::Rms { .. }, _, Reduction::PerInvocation) => "rms_norm_rows",
            (Norm::Layer { .. }, Some(_), Reduction::PerInvocation) => "layer_norm_rows",
            (Norm::Layer { .. }, None, Reduction::PerInvocation) => "layer_norm_unbiased_rows",
        };
        let b = b.unwrap_or(g); // bound, not read
        let params = NormParams { rows, cols, groups_x: groups.0, eps: self.eps() };
        Dispatch { shader: ShaderId::Norm, entry_point, workgroup_size, kind: None, threads_per_row: None, fuse: None, params, buffers: &[x, g, b, y], groups }
            .encode(ctx, encoder)
            .await
    }

    /// CPU reference in f64 (`b` empty: no bias).
    pub fn reference(self, x: &[f32], g: &[f32], b: &[f32], cols: usize) -> Vec<f64> {
        let mut out = Vec::with_capacity(x.len());
        for row in x.chunks_exact(cols) {
            let n = cols as f64;
            let (mean, center) = match self {
                Norm::Rms { .. } => (0.0, false),
                Norm::Layer { .. } => (row.iter().map(|&v| f64::from(v)).sum::<f64>() / n, true),
            };
            let var = row.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
            let inv = 1.0 / (var + f64::from(self.eps())).sqrt();
            for (c, &v) in row.iter().enumerate() {
                let mut y = (f64::from(v) - mean) * inv * f64::from(g[c]);
                if center && !b.is_empty() {
                    y += f64::from(b[c]);
                }
                out.push(y);
            }
        }
        out
    }
}

/// Normalises seeded random rows (values offset by `offset`, to exercise the mean) by
/// `reduction` and compares with the reference.
/// `biased` false: a LayerNorm without bias.
#[allow(clippy::too_many_arguments)]
pub async fn check_against_reference(ctx: &GpuContext, reduction: Reduction, norm: Norm, rows: usize, cols: usize, offset: f32, biased: bool, seed: u64) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let x: Vec<f32> = rng.signed_unit_vec(rows * cols).iter().map(|v| v + offset).collect();
    let g = rng.signed_unit_vec(cols);
    let b = if biased { rng.signed_unit_vec(cols) } else { Vec::new() };
    let (x_buf, g_buf) = (ctx.storage_from(OP, "x", &x)?, ctx.storage_from(OP, "g", &g)?);
    let b_buf = if biased { Some(ctx.storage_from(OP, "b", &b)?) } else { None };
    let y_buf = ctx.storage_output(OP, "y", (rows * cols) as u64 * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    norm.encode_with(reduction, ctx, &mut encoder, rows as u32, cols as u32, &x_buf, &g_buf, b_buf.as_ref(), &y_buf).await?;
    submit(ctx, OP, encoder).await?;
    let y = ctx.read_f32(&y_buf, rows * cols).await?;
    Ok(Comparison::within(&y, &norm.reference(&x, &g, &b, cols), NORMALISED))
}
