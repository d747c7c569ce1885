//! Elementwise ops on f32 vectors (shaders/elementwise.wgsl).

use crate::check::{Comparison, TRANSCENDENTAL, Tolerance, F32_UNIT_ROUNDOFF};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "elementwise";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct EltParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EltParams {
    pub n: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub s: f32,
}

/// An elementwise op. Binary ops read `b`; `*Row` ops broadcast a `cols`-long `b` over rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Elementwise {
    Scale(f32),
    Add,
    Mul,
    AddRow { cols: u32 },
    MulRow { cols: u32 },
    Silu,
    SwiGlu,
    GeluTanh,
    GeluErf,
    /// CLIP's `quick_gelu`: x·σ(1.702·x).
    QuickGelu,
    Tanh,
    Relu,
}

impl Elementwise {
    fn entry_point(self) -> &'static str {
        match self {
            Elementwise::Scale(_) => "scale",
            Elementwise::Add => "add",
            Elementwise::Mul => "mul",
            Elementwise::AddRow { .. } => "add_row",
            Elementwise::MulRow { .. } => "mul_row",
            Elementwise::Silu => "silu",
            Elementwise::SwiGlu => "swiglu",
            Elementwise::GeluTanh => "gelu_tanh",
            Elementwise::GeluErf => "gelu_erf",
            Elementwise::QuickGelu => "quick_gelu",
            Elementwise::Tanh => "tanh_op",
            Elementwise::Relu => "relu",
        }
    }

    /// Length of `b` for `n` elements, or `None` for unary ops.
    pub fn b_len(self, n: u64) -> Option<u64> {
        match self {
            Elementwise::Add | Elementwise::Mul | Elementwise::SwiGlu => Some(n),
            Elementwise::AddRow { cols } | Elementwise::MulRow { cols } => Some(u64::from(cols)),
            _ => None,
        }
    }

    /// Records `y = op(a[, b])` over `n` elements. Unary ops ignore `b` (pass `a`).
    pub async fn encode(
        self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        n: u64,
        a: &wgpu::Buffer,
        b: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<(), GpuError> {
        check_len(OP, "a", a, n)?;
        check_len(OP, "y", y, n)?;
        if let Some(len) = self.b_len(n) {
            check_len(OP, "b", b, len)?;
        }
        let cols = match self {
            Elementwise::AddRow { cols } | Elementwise::MulRow { cols } if cols == 0 || !n.is_multiple_of(u64::from(cols)) => {
                return Err(GpuError::Shape { op: OP, detail: format!("{n} values are not whole rows of {cols}") });
            }
            Elementwise::AddRow { cols } | Elementwise::MulRow { cols } => cols,
            _ => 1,
        };
        let n32 = u32::try_from(n).map_err(|_| GpuError::Shape { op: OP, detail: format!("{n} elements") })?;
        let groups = grid(ctx, OP, n.div_ceil(u64::from(WORKGROUP)))?;
        let s = if let Elementwise::Scale(s) = self { s } else { 0.0 };
        let params = EltParams { n: n32, cols, groups_x: groups.0, s };
        Dispatch { shader: ShaderId::Elementwise, entry_point: self.entry_point(), workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &[a, b, y], groups }
            .encode(ctx, encoder)
            .await
    }

    /// CPU reference in f64.
    pub fn reference(self, a: &[f32], b: &[f32]) -> Vec<f64> {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        a.iter()
            .enumerate()
            .map(|(i, &x)| {
                let x = f64::from(x);
                let bi = |j: usize| b.get(j).copied().map_or(0.0, f64::from);
                match self {
                    Elementwise::Scale(s) => x * f64::from(s),
                    Elementwise::Add => x + bi(i),
                    Elementwise::Mul => x * bi(i),
                    Elementwise::AddRow { cols } => x + bi(i % cols as usize),
                    Elementwise::MulRow { cols } => x * bi(i % cols as usize),
                    Elementwise::Silu => x * sig(x),
                    Elementwise::SwiGlu => x * sig(x) * bi(i),
                    Elementwise::GeluTanh => 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh()),
                    Elementwise::GeluErf => 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2)),
                    Elementwise::QuickGelu => x * sig(1.702 * x),
                    Elementwise::Tanh => x.tanh(),
                    Elementwise::Relu => x.max(0.0),
                }
            })
            .collect()
    }

    /// The tolerance of this op: one rounding for arithmetic, `TRANSCENDENTAL` otherwise.
    pub fn tolerance(self) -> Tolerance {
        match self {
            Elementwise::Scale(_) | Elementwise::Add | Elementwise::Mul | Elementwise::AddRow { .. } | Elementwise::MulRow { .. } | Elementwise::Relu => {
                Tolerance { rel: F32_UNIT_ROUNDOFF, abs: 1e-37 }
            }
            _ => TRANSCENDENTAL,
        }
    }
}

/// erf to ~1e-16 by its Taylor series near 0 and its continued fraction beyond (the reference
/// only: f64 has no erf in std).
pub fn erf(x: f64) -> f64 {
    if x.abs() < 2.5 {
        let (mut term, mut sum, x2) = (x, x, x * x);
        for n in 1..60 {
            term *= -x2 / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc(x) = exp(-x²)/√π · 1/(x + 1/2/(x + 1/(x + 3/2/(x + …))))
        let ax = x.abs();
        let mut f = ax;
        for k in (1..80).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / f;
        (1.0 - erfc).copysign(x)
    }
}

/// Runs `op` on seeded random inputs of `n` values in [-range, range) and compares with the
/// CPU reference.
pub async fn check_against_reference(ctx: &GpuContext, op: Elementwise, n: usize, range: f32, seed: u64) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let a: Vec<f32> = rng.signed_unit_vec(n).iter().map(|v| v * range).collect();
    let b: Vec<f32> = rng.signed_unit_vec(op.b_len(n as u64).unwrap_or(1) as usize).iter().map(|v| v * range).collect();
    let a_buf = ctx.storage_from(OP, "a", &a)?;
    let b_buf = ctx.storage_from(OP, "b", &b)?;
    let y_buf = ctx.storage_output(OP, "y", n as u64 * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    op.encode(ctx, &mut encoder, n as u64, &a_buf, &b_buf, &y_buf).await?;
    submit(ctx, OP, encoder).await?;
    let y = ctx.read_f32(&y_buf, n).await?;
    Ok(Comparison::within(&y, &op.reference(&a, &b), op.tolerance()))
}

#[cfg(test)]
mod tests {
    use super::erf;

    #[test]
    fn erf_reference_is_accurate() {
        // erf(0.5), erf(1), erf(3) to 15 digits (Abramowitz & Stegun table 7.1).
        for (x, want) in [(0.5, 0.520499877813047), (1.0, 0.842700792949715), (3.0, 0.999977909503001), (-1.0, -0.842700792949715)] {
            assert!((erf(x) - want).abs() < 1e-13, "erf({x}) = {}", erf(x));
        }
    }
}
