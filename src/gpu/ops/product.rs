//! What the three product kernels (matvec.wgsl, matmul.wgsl, matmul_blocked.wgsl) share: their
//! uniforms, the epilogue that each output goes through on its way to Y
//! (shaders/product_epilogue.wgsl: bias, residual, output segments, and on the blocked kernel an
//! RMSNorm of X and gated gate/up rows), and the loop that records one dispatch per part of a
//! weight. Fusing these into the product is what brings a decode step's dispatches down: a bias
//! or a residual add, a norm, a split of Q/K/V and a SwiGLU are each a dispatch of their own
//! otherwise.

use serde::Serialize;

use crate::check::{Comparison, F32_UNIT_ROUNDOFF, TRANSCENDENTAL, gamma_f32};
use crate::formats::{DType, quant};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::matmul::{Kernel, Tile};
use crate::gpu::ops::{Dispatch, check_len, grid, matmul, matvec, new_encoder, submit};
use crate::gpu::shaders::ShaderId;
use crate::gpu::weights::GpuWeight;

/// Uniforms of the product kernels (`struct ProductParams`, product_epilogue.wgsl); a test checks
/// the layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ProductParams {
    /// Rows of this dispatch's part of W, and the part's first row in the whole weight.
    pub rows: u32,
    pub cols: u32,
    pub groups_x: u32,
    pub row_offset: u32,
    pub tokens: u32,
    /// Output values per token.
    pub out_stride: u32,
    pub split1: u32,
    pub split2: u32,
    pub flags: u32,
    pub eps: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// `flags` bits (product_epilogue.wgsl's `FUSE_*`).
pub const FUSE_BIAS: u32 = 1;
pub const FUSE_RESIDUAL: u32 = 2;
pub const FUSE_RMS_NORM: u32 = 4;
pub const FUSE_GATED_SILU: u32 = 8;
pub const FUSE_GATED_GELU_TANH: u32 = 16;
/// The blocked kernel's binding 7 is the weight part (read as vec4s of words), not a placeholder.
pub const WEIGHT_VEC4: u32 = 32;

/// The activation of a gated product's gate rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Gate {
    /// SwiGLU.
    Silu,
    /// GeGLU with the tanh GELU (Gemma).
    GeluTanh,
}

/// What a product does besides `X·Wᵀ`. The default is nothing: Y (tokens, rows).
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// A value per row of the weight, added to its sums.
    pub bias: Option<&'a wgpu::Buffer>,
    /// Added to every output, in Y's layout (a residual connection).
    pub residual: Option<&'a wgpu::Buffer>,
    /// The weight's rows split into up to three output segments at these rows (Q, K and V of a
    /// joint matrix), each written to Y as its own (tokens, rows) block, one after the other.
    pub splits: Option<[u32; 2]>,
    /// X taken as RMSNorm(X) with this gain (cols values) and epsilon. Blocked kernel only.
    pub rms_norm: Option<(&'a wgpu::Buffer, f32)>,
    /// The weight is [gate; up] (2F rows) and Y (tokens, F) holds act(gate)·up. Blocked kernel
    /// only.
    pub gated: Option<Gate>,
}

impl Epilogue<'_> {
    /// The fusions that change a kernel's loop (the blocked kernel's `FUSE` override).
    pub fn loop_fusions(&self) -> u32 {
        let norm = if self.rms_norm.is_some() { FUSE_RMS_NORM } else { 0 };
        norm | match self.gated {
            Some(Gate::Silu) => FUSE_GATED_SILU,
            Some(Gate::GeluTanh) => FUSE_GATED_GELU_TANH,
            None => 0,
        }
    }

    /// All the `flags` bits.
    pub fn flags(&self) -> u32 {
        let bias = if self.bias.is_some() { FUSE_BIAS } else { 0 };
        let residual = if self.residual.is_some() { FUSE_RESIDUAL } else { 0 };
        bias | residual | self.loop_fusions()
    }

    /// Outputs per token of a product with `w`.
    pub fn out_cols(&self, w: &GpuWeight) -> u32 {
        if self.gated.is_some() { w.rows / 2 } else { w.rows }
    }

    /// Refuses what the kernel `op` cannot run (`loop_fusions` where `can_fuse_loop` is false) and
    /// buffers too short for `tokens` rows of `x` (tokens, cols) times `w`.
    pub fn check(&self, op: &'static str, can_fuse_loop: bool, w: &GpuWeight, tokens: u32, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<(), GpuError> {
        let refuse = |detail: String| Err(GpuError::Shape { op, detail });
        if tokens == 0 {
            return refuse("no tokens".into());
        }
        if self.loop_fusions() != 0 && !can_fuse_loop {
            return refuse("a norm or gated product on a kernel that does not fuse them".into());
        }
        // The shaders index X by t·cols + c and Y by t·rows + r in u32.
        if u64::from(tokens) * u64::from(w.cols.max(w.rows)) > u64::from(u32::MAX) {
            return refuse(format!("{tokens} tokens of {} values overflow u32 indexing", w.cols.max(w.rows)));
        }
        if self.gated.is_some() && (!w.rows.is_multiple_of(2) || w.parts.len() != 1 || self.splits.is_some()) {
            return refuse(format!("a gated product over {} rows in {} parts", w.rows, w.parts.len()));
        }
        if let Some([a, b]) = self.splits
            && !(a <= b && b <= w.rows)
        {
            return refuse(format!("output segments at rows {a} and {b} of {}", w.rows));
        }
        let out = u64::from(tokens) * u64::from(self.out_cols(w));
        check_len(op, "x", x, u64::from(tokens) * u64::from(w.cols))?;
        check_len(op, "y", y, out)?;
        if let Some(b) = self.bias {
            check_len(op, "the bias", b, u64::from(w.rows))?;
        }
        if let Some(r) = self.residual {
            check_len(op, "the residual", r, out)?;
        }
        if let Some((g, _)) = self.rms_norm {
            check_len(op, "the norm's gain", g, u64::from(w.cols))?;
        }
        Ok(())
    }
}

/// One kernel's dispatch over each part of a weight: its module and entry point, workgroup
/// size and specialisations, and the workgroups along x for a part of `rows` rows.
pub(crate) struct PartsDispatch<'a> {
    pub op: &'static str,
    pub shader: ShaderId,
    pub entry_point: &'static str,
    pub workgroup_size: u32,
    pub threads_per_row: Option<u32>,
    pub tile: Option<Tile>,
    /// Workgroups for a part of this many rows (before folding into an (x, y) grid).
    pub groups_for_rows: &'a dyn Fn(u32) -> u64,
    /// Workgroups along z (token tiles).
    pub token_groups: u32,
    /// Binding 6 where the module has one: the f16 module's scales, the blocked kernel's gain.
    pub extra: Option<&'a wgpu::Buffer>,
}

impl PartsDispatch<'_> {
    /// Records one dispatch per part of `w`: params from `epi`, bindings W part, x, y, bias,
    /// residual (the context's placeholder where absent) and `extra`.
    #[allow(clippy::too_many_arguments)]
    pub async fn encode(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, w: &GpuWeight, kind: u32, tokens: u32, x: &wgpu::Buffer, y: &wgpu::Buffer, epi: &Epilogue<'_>) -> Result<(), GpuError> {
        let out_stride = epi.out_cols(w);
        let [split1, split2] = epi.splits.unwrap_or([out_stride; 2]);
        let fuse = epi.loop_fusions();
        for part in &w.parts {
            let (gx, gy, _) = grid(ctx, self.op, (self.groups_for_rows)(part.rows))?;
            // The blocked kernel reads F32/F16/BF16 weights as vec4s of words (binding 7) where
            // the part's size allows that view (whole vec4s); other formats read words.
            let vec4_weight = self.shader.is_blocked() && kind <= 2 && part.buffer.size().is_multiple_of(16);
            let params = ProductParams {
                rows: part.rows,
                cols: w.cols,
                groups_x: gx,
                row_offset: part.first_row,
                tokens,
                out_stride,
                split1,
                split2,
                flags: epi.flags() | if vec4_weight { WEIGHT_VEC4 } else { 0 },
                eps: epi.rms_norm.map_or(0.0, |(_, eps)| eps),
                _pad0: 0,
                _pad1: 0,
            };
            let mut buffers = vec![&part.buffer, x, y, epi.bias.unwrap_or(&ctx.placeholder), epi.residual.unwrap_or(&ctx.placeholder)];
            buffers.extend(self.extra);
            if self.shader.is_blocked() {
                buffers.push(if vec4_weight { &part.buffer } else { &ctx.placeholder });
            }
            Dispatch {
                shader: self.shader,
                entry_point: self.entry_point,
                workgroup_size: self.workgroup_size,
                kind: Some(kind),
                threads_per_row: self.threads_per_row,
                fuse: self.shader.is_blocked().then_some(fuse),
                params,
                buffers: &buffers,
                groups: (gx, gy, self.token_groups),
            }
            .encode_with_tile(ctx, encoder, self.tile)
            .await?;
        }
        Ok(())
    }
}

/// A fused product for `check_against_reference`: which parts of the epilogue it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FusedCase {
    pub bias: bool,
    pub residual: bool,
    pub splits: Option<[u32; 2]>,
    /// RMSNorm with this epsilon.
    pub rms_norm: Option<f32>,
    pub gated: Option<Gate>,
}

/// The outcome of `check_against_reference`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FusedCheck {
    #[serde(flatten)]
    pub comparison: Comparison,
    pub kernel: Kernel,
    pub case: FusedCase,
}

impl std::fmt::Display for FusedCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.comparison)
    }
}

/// The CPU reference of a fused product, in f64 from first principles: each token's x
/// RMS-normalised with gain `g` (when `case.rms_norm`), the product with W dequantized row by
/// row, bias, gating, residual, then the outputs laid out in their segments. Returns Y and each
/// output's bound on |GPU − exact| (the product's γ(2·cols + 16)·Σ|w·x| for the f32 sum and the
/// f32 1/rms, then what a rounding, the activation (`TRANSCENDENTAL`) and the gating's product
/// with an inexact operand add).
#[allow(clippy::too_many_arguments)]
pub fn reference(dtype: DType, w_bytes: &[u8], cols: usize, x: &[f32], g: &[f32], bias: &[f32], residual: &[f32], case: FusedCase) -> Result<(Vec<f64>, Vec<f64>), GpuError> {
    let bad = |detail: String| GpuError::Shape { op: "fused product", detail };
    let row_bytes = dtype.bytes_for(cols as u64).filter(|&b| b > 0).ok_or_else(|| bad(format!("{cols} columns")))? as usize;
    if cols == 0 || !x.len().is_multiple_of(cols) || !w_bytes.len().is_multiple_of(row_bytes) {
        return Err(bad(format!("x has {} values and W {} bytes for {cols} columns", x.len(), w_bytes.len())));
    }
    let (rows, tokens) = (w_bytes.len() / row_bytes, x.len() / cols);
    // x as the product sees it.
    let xs: Vec<f64> = x
        .chunks_exact(cols)
        .flat_map(|xt| {
            let scale = case.rms_norm.map(|eps| 1.0 / (xt.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / cols as f64 + f64::from(eps)).sqrt());
            xt.iter().enumerate().map(move |(c, &v)| match scale {
                Some(s) => f64::from(v) * f64::from(g[c]) * s,
                None => f64::from(v),
            })
        })
        .collect();
    // z[t][r] = Σ w·x (+ bias), and its bound.
    let gamma = gamma_f32(2 * cols as u64 + 16);
    let u = F32_UNIT_ROUNDOFF;
    let (mut z, mut zb) = (vec![0f64; tokens * rows], vec![0f64; tokens * rows]);
    let mut row = Vec::with_capacity(cols);
    for (r, rb) in w_bytes.chunks_exact(row_bytes).enumerate() {
        row.clear();
        quant::dequantize_into(dtype, rb, &mut row).map_err(|e| bad(e.to_string()))?;
        for t in 0..tokens {
            let xt = &xs[t * cols..(t + 1) * cols];
            let (sum, abs): (f64, f64) = row.iter().zip(xt).map(|(&w, &v)| f64::from(w) * v).fold((0.0, 0.0), |(s, a), p| (s + p, a + p.abs()));
            let b = if case.bias { f64::from(bias[r]) } else { 0.0 };
            z[t * rows + r] = sum + b;
            zb[t * rows + r] = gamma * abs + cols as f64 * f64::from(f32::MIN_POSITIVE) + u * (sum + b).abs();
        }
    }
    let out_cols = if case.gated.is_some() { rows / 2 } else { rows };
    let (mut y, mut bound) = (vec![0f64; tokens * out_cols], vec![0f64; tokens * out_cols]);
    let [s1, s2] = case.splits.map_or([out_cols; 2], |[a, b]| [a as usize, b as usize]);
    for t in 0..tokens {
        for o in 0..out_cols {
            let (mut v, mut e) = match case.gated {
                None => (z[t * rows + o], zb[t * rows + o]),
                Some(gate) => {
                    let (a, b) = (z[t * rows + o], z[t * rows + out_cols + o]);
                    let (ea, eb) = (zb[t * rows + o], zb[t * rows + out_cols + o]);
                    let act = match gate {
                        Gate::Silu => a / (1.0 + (-a).exp()),
                        Gate::GeluTanh => 0.5 * a * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (a + 0.044715 * a.powi(3))).tanh()),
                    };
                    // Both activations' slopes stay below 1.13; their f32 evaluation is within
                    // TRANSCENDENTAL.
                    let act_err = 1.13 * ea + TRANSCENDENTAL.rel * act.abs() + TRANSCENDENTAL.abs;
                    (act * b, act_err * (b.abs() + eb) + act.abs() * eb + u * (act * b).abs())
                }
            };
            // Segment-major layout (out_index of product_epilogue.wgsl).
            let i = if o < s1 {
                t * s1 + o
            } else if o < s2 {
                tokens * s1 + t * (s2 - s1) + (o - s1)
            } else {
                tokens * s2 + t * (out_cols - s2) + (o - s2)
            };
            if case.residual {
                v += f64::from(residual[i]);
                e += u * v.abs();
            }
            y[i] = v;
            bound[i] = e;
        }
    }
    Ok((y, bound))
}

/// Runs a seeded fused product of `dtype` (rows × cols, `tokens` tokens) on `kernel` with the
/// parts of `case`, and compares it with `reference`. Shared by the native and browser tests.
#[allow(clippy::too_many_arguments)]
pub async fn check_against_reference(ctx: &GpuContext, kernel: Kernel, dtype: DType, rows: usize, cols: usize, tokens: usize, case: FusedCase, seed: u64) -> Result<FusedCheck, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let w_bytes = rng.tensor_bytes(dtype, rows * cols);
    let x = rng.signed_unit_vec(tokens * cols);
    let g = rng.signed_unit_vec(cols);
    let bias = rng.signed_unit_vec(rows);
    let out_cols = if case.gated.is_some() { rows / 2 } else { rows };
    let residual = rng.signed_unit_vec(tokens * out_cols);
    let w = GpuWeight::new(ctx, "W", dtype, rows as u64, cols as u64, None)?;
    w.write_rows(ctx, 0, &w_bytes)?;
    let op = "fused product";
    let x_buf = ctx.storage_from(op, "x", &x)?;
    let g_buf = ctx.storage_from(op, "gain", &g)?;
    let b_buf = ctx.storage_from(op, "bias", &bias)?;
    let r_buf = ctx.storage_from(op, "residual", &residual)?;
    let y_buf = ctx.storage_output(op, "y", (tokens * out_cols) as u64 * 4)?;
    let epi = Epilogue {
        bias: case.bias.then_some(&b_buf),
        residual: case.residual.then_some(&r_buf),
        splits: case.splits,
        rms_norm: case.rms_norm.map(|eps| (&g_buf, eps)),
        gated: case.gated,
    };
    let mut encoder = new_encoder(ctx, op);
    let tokens32 = tokens as u32;
    match kernel {
        Kernel::Matvec => matvec::encode_with(ctx, &mut encoder, &w, tokens32, &x_buf, &y_buf, &epi).await?,
        Kernel::Tiled => matmul::encode_with_tile(ctx, &mut encoder, Tile::for_device(ctx)?, &w, tokens32, &x_buf, &y_buf, &epi).await?,
        Kernel::Blocked => matmul::encode_blocked(ctx, &mut encoder, &w, tokens32, &x_buf, &y_buf, &epi).await?,
    };
    submit(ctx, op, encoder).await?;
    let actual = ctx.read_f32(&y_buf, tokens * out_cols).await?;
    let (expected, bound) = reference(dtype, &w_bytes, cols, &x, &g, &bias, &residual, case)?;
    let comparison = Comparison::elementwise(&actual, &expected, |i| bound[i]);
    Ok(FusedCheck { comparison, kernel, case })
}
