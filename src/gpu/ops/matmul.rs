//! `Y = X·Wᵀ` for many tokens (prefill, encoder passes): a shared-memory tiled matrix product
//! (shaders/matmul.wgsl). Each workgroup decodes a BN × 32 slice of W into workgroup memory once
//! and multiplies it with a BM × 32 slice of X, so a weight value is decoded once per BM tokens
//! (64 by default), where `matvec` decodes it once per 8.
//!
//! `encode` always multiplies in f32 (the weights are decoded to f32 in workgroup memory), on
//! every device; `encode_auto` picks between it and `matvec` (which for a few tokens reads each
//! weight once and may use f16 products) by the token count (`pick`: from `MIN_TILED_TOKENS`
//! tokens on, or `MIN_TILED_TOKENS_F16` where matvec would take its f16 path). On an adapter
//! that emulates a GPU on the CPU it takes `encode_blocked` instead, for every token count
//! (shaders/matmul_blocked.wgsl: 8 rows × 8 tokens per invocation in registers, no workgroup
//! memory; why, and the measurements, are in the shader's header).

use serde::Serialize;

use crate::check::{Comparison, gamma_f32};
use crate::formats::{DType, quant};
use crate::gpu::context::{GpuContext, Precision};
use crate::gpu::error::GpuError;
use crate::gpu::ops::product::{Epilogue, PartsDispatch};
use crate::gpu::ops::{matvec, new_encoder, submit};
use crate::gpu::shaders::ShaderId;
use crate::gpu::weights::GpuWeight;

const OP: &str = "matmul";

/// Values of the K dimension per step (the shader's `BK`): one block of the 32-value formats,
/// a sub-block of the K-quants.
pub const K_STEP: u32 = 32;

/// Tokens and rows one invocation handles (4 × 4 outputs, a vec4 of rows per token).
pub const PER_THREAD: u32 = 4;

/// The tile overrides of matmul.wgsl: a workgroup computes `bm` tokens × `bn` rows of Y (both
/// multiples of 4), each of its (bm / 4)·(bn / 4) invocations 4 × 4 of them. Part of the
/// pipeline key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Tile {
    pub bm: u32,
    pub bn: u32,
}

impl Tile {
    /// 64 × 64 outputs: 256 invocations and 16 KiB of workgroup memory, what WebGPU guarantees
    /// every device (and SwiftShader's maximum of invocations).
    pub const DEFAULT: Tile = Tile { bm: 64, bn: 64 };
    /// 32 × 32 outputs: 64 invocations, 8 KiB.
    pub const SMALL: Tile = Tile { bm: 32, bn: 32 };

    /// Invocations per workgroup.
    pub fn invocations(self) -> u32 {
        (self.bm / PER_THREAD) * (self.bn / PER_THREAD)
    }

    /// Bytes of workgroup memory (the X and W tiles, f32).
    pub fn workgroup_bytes(self) -> u64 {
        (u64::from(self.bm) + u64::from(self.bn)) * u64::from(K_STEP) * 4
    }

    /// The overrides in the order the pipeline cache sets them.
    pub fn overrides(self) -> [(&'static str, f64); 2] {
        [("BM", f64::from(self.bm)), ("BN", f64::from(self.bn))]
    }

    /// Whether the tile is well formed (bm, bn non-zero multiples of 4) and fits `ctx`'s limits
    /// on invocations and workgroup memory.
    pub fn check(self, ctx: &GpuContext) -> Result<(), GpuError> {
        let err = |detail: String| Err(GpuError::Shape { op: OP, detail: format!("tile {self:?}: {detail}") });
        if self.bm == 0 || self.bn == 0 || !self.bm.is_multiple_of(PER_THREAD) || !self.bn.is_multiple_of(PER_THREAD) {
            return err(format!("bm and bn must be non-zero multiples of {PER_THREAD}"));
        }
        let inv = u64::from(self.bm / PER_THREAD) * u64::from(self.bn / PER_THREAD);
        let l = &ctx.limits;
        let max_inv = l.max_compute_invocations_per_workgroup.min(l.max_compute_workgroup_size_x);
        if inv > u64::from(max_inv) {
            return err(format!("{inv} invocations (device: {max_inv})"));
        }
        if self.workgroup_bytes() > u64::from(l.max_compute_workgroup_storage_size) {
            return err(format!("{} bytes of workgroup memory (device: {})", self.workgroup_bytes(), l.max_compute_workgroup_storage_size));
        }
        Ok(())
    }

    /// The tile `encode` uses on `ctx`: `DEFAULT`, or `SMALL` where the device allows less.
    pub fn for_device(ctx: &GpuContext) -> Result<Tile, GpuError> {
        if Tile::DEFAULT.check(ctx).is_ok() { Ok(Tile::DEFAULT) } else { Tile::SMALL.check(ctx).map(|_| Tile::SMALL) }
    }
}

/// From this many tokens on, `encode_auto` takes the tiled kernel where matvec would multiply in
/// f32; below, matvec. Measured with `hugrt bench matmul --matmul-tokens 8,16,24,32,48,64` on
/// lavapipe (2 shared cores, 1024 × 1024 weights): the tiled kernel overtook f32 matvec between
/// 16 and 24 tokens for F32, F16, Q4_K and Q8_0 (1.5–2.5x at 24, 4–7x at 64 for F32/F16).
pub const MIN_TILED_TOKENS: u32 = 24;

/// The same where matvec would take its f16 path (block formats on a device with shader-f16):
/// there the tiled kernel (f32) overtook it between 32 and 48 tokens (Q4_K 0.87x at 32, 1.2x at
/// 48; Q8_0 0.86x, 1.5x).
pub const MIN_TILED_TOKENS_F16: u32 = 48;

/// The token count from which `pick` takes the tiled kernel for weights of `dtype` on `ctx`.
pub fn min_tiled_tokens(ctx: &GpuContext, dtype: DType) -> u32 {
    match matvec::path(ctx, dtype) {
        Precision::F16 => MIN_TILED_TOKENS_F16,
        Precision::F32 => MIN_TILED_TOKENS,
    }
}

/// Which kernel `encode_auto` records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// `matvec::encode`: one weight row per workgroup, tokens in tiles of 8.
    Matvec,
    /// `matmul::encode`: workgroup tiles of tokens × rows over weights decoded into workgroup memory.
    Tiled,
    /// `matmul::encode_blocked`: 8 rows × 8 tokens (or 1) per invocation, for CPU adapters.
    Blocked,
}

/// The kernel for `tokens` rows of activations times `cols`-column weights of `dtype` on `ctx`:
/// on an adapter that emulates a GPU on the CPU (`AdapterReport::is_software`) the blocked
/// kernel wherever `cols` is a multiple of 4; elsewhere matvec below `min_tiled_tokens` (a few
/// tokens read every weight about once either way, matvec spreads a row over many invocations
/// and may use f16 products, while a 64-token tile would be mostly padding), the tiled kernel
/// from there on.
pub fn pick(ctx: &GpuContext, dtype: DType, cols: u32, tokens: u32) -> Kernel {
    if ctx.report.is_software() && cols.is_multiple_of(BLOCKED_K_STEP) {
        Kernel::Blocked
    } else if tokens < min_tiled_tokens(ctx, dtype) {
        Kernel::Matvec
    } else {
        Kernel::Tiled
    }
}

/// `Y = X·Wᵀ` by the kernel `pick` chooses; same arguments and result as `matvec::encode`.
pub async fn encode_auto(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Precision, GpuError> {
    encode_fused(ctx, encoder, w, tokens, x, y, &Epilogue::default()).await
}

/// `encode_auto` with an epilogue; a norm or gating only where `pick` takes the blocked kernel
/// (`Kernel::fuses_loop`), refused elsewhere.
pub async fn encode_fused(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    epi: &Epilogue<'_>,
) -> Result<Precision, GpuError> {
    match pick(ctx, w.dtype, w.cols, tokens) {
        Kernel::Matvec => matvec::encode_with(ctx, encoder, w, tokens, x, y, epi).await,
        Kernel::Tiled => encode_with_tile(ctx, encoder, Tile::for_device(ctx)?, w, tokens, x, y, epi).await,
        Kernel::Blocked => encode_blocked(ctx, encoder, w, tokens, x, y, epi).await,
    }
}

impl Kernel {
    /// Whether the kernel runs an epilogue's norm and gating (`Epilogue::loop_fusions`).
    pub fn fuses_loop(self) -> bool {
        self == Kernel::Blocked
    }
}

/// Values of K per step of the blocked kernel: `cols` must be a multiple of it.
pub const BLOCKED_K_STEP: u32 = 4;
/// Weight rows, and tokens (`tokens8`), per invocation of the blocked kernel.
pub const BLOCKED_ROWS: u32 = 8;
pub const BLOCKED_TOKENS: u32 = 8;
/// Invocations per workgroup of the blocked kernel (16 measured faster than 64 on SwiftShader).
pub const BLOCKED_WG: u32 = 16;

/// Records `Y = X·Wᵀ` by the blocked kernel (shaders/matmul_blocked.wgsl): `token1` for one
/// token, `tokens8` for more; one dispatch per part of `w`. Always the f32 path; `w.cols` must
/// be a multiple of `BLOCKED_K_STEP`.
pub async fn encode_blocked(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    epi: &Epilogue<'_>,
) -> Result<Precision, GpuError> {
    epi.check(OP, true, w, tokens, x, y)?;
    if !w.cols.is_multiple_of(BLOCKED_K_STEP) {
        return Err(GpuError::Shape { op: OP, detail: format!("{} columns, not a multiple of {BLOCKED_K_STEP}", w.cols) });
    }
    let kind = matvec::kind(w.dtype)?;
    let (entry_point, token_groups) = if tokens == 1 { ("token1", 1) } else { ("tokens8", tokens.div_ceil(BLOCKED_TOKENS)) };
    if token_groups > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(GpuError::Shape { op: OP, detail: format!("{tokens} tokens exceed the dispatch grid") });
    }
    // Gated: an invocation stores 4 outputs from 4 gate and 4 up rows.
    let per_invocation = if epi.gated.is_some() { BLOCKED_ROWS / 2 } else { BLOCKED_ROWS };
    let gated = epi.gated.is_some();
    let groups_for_rows = |rows: u32| {
        let outputs = if gated { rows / 2 } else { rows };
        u64::from(outputs.div_ceil(per_invocation).div_ceil(BLOCKED_WG))
    };
    let gain = epi.rms_norm.map_or(&ctx.placeholder, |(g, _)| g);
    let shader = if ctx.subgroup_sharing() > 0 { ShaderId::MatmulBlockedSubgroups } else { ShaderId::MatmulBlocked };
    let parts = PartsDispatch { op: OP, shader, entry_point, workgroup_size: BLOCKED_WG, threads_per_row: None, tile: None, groups_for_rows: &groups_for_rows, token_groups, extra: Some(gain) };
    parts.encode(ctx, encoder, w, kind, tokens, x, y, epi).await?;
    Ok(Precision::F32)
}

/// Records `Y = X·Wᵀ` for `tokens` rows of `x` (tokens, cols) into `y` (tokens, rows) with the
/// device's tile (`Tile::for_device`): one dispatch per part of `w`. Always the f32 path.
pub async fn encode(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Precision, GpuError> {
    encode_with_tile(ctx, encoder, Tile::for_device(ctx)?, w, tokens, x, y, &Epilogue::default()).await
}

/// `encode` with a given tile (benchmarks and tests of other tiles) and an epilogue (bias,
/// residual, output segments; not the norm or gating).
#[allow(clippy::too_many_arguments)]
pub async fn encode_with_tile(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    tile: Tile,
    w: &GpuWeight,
    tokens: u32,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    epi: &Epilogue<'_>,
) -> Result<Precision, GpuError> {
    tile.check(ctx)?;
    epi.check(OP, false, w, tokens, x, y)?;
    let kind = matvec::kind(w.dtype)?;
    let token_tiles = tokens.div_ceil(tile.bm);
    if token_tiles > ctx.limits.max_compute_workgroups_per_dimension {
        return Err(GpuError::Shape { op: OP, detail: format!("{tokens} tokens exceed the dispatch grid") });
    }
    let groups_for_rows = |rows: u32| u64::from(rows.div_ceil(tile.bn));
    let parts = PartsDispatch { op: OP, shader: ShaderId::Matmul, entry_point: "matmul", workgroup_size: tile.invocations(), threads_per_row: None, tile: Some(tile), groups_for_rows: &groups_for_rows, token_groups: token_tiles, extra: None };
    parts.encode(ctx, encoder, w, kind, tokens, x, y, epi).await?;
    Ok(Precision::F32)
}

/// The many-token kernel `run` and `check_against_reference` take: the tiled one with a tile, or
/// the blocked one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    Tiled(Tile),
    Blocked,
}

impl Product {
    /// Records `Y = X·Wᵀ` (and `epi`) by this kernel.
    #[allow(clippy::too_many_arguments)]
    pub async fn encode(self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, w: &GpuWeight, tokens: u32, x: &wgpu::Buffer, y: &wgpu::Buffer, epi: &Epilogue<'_>) -> Result<Precision, GpuError> {
        match self {
            Product::Tiled(tile) => encode_with_tile(ctx, encoder, tile, w, tokens, x, y, epi).await,
            Product::Blocked => encode_blocked(ctx, encoder, w, tokens, x, y, epi).await,
        }
    }
}

/// Uploads `x` (tokens × cols), runs `X·Wᵀ` by `product` and reads `Y` (tokens × rows) back: for
/// tests, checks and benchmarks.
pub async fn run(ctx: &GpuContext, product: Product, w: &GpuWeight, x: &[f32]) -> Result<Vec<f32>, GpuError> {
    if x.is_empty() || !x.len().is_multiple_of(w.cols as usize) {
        return Err(GpuError::Shape { op: OP, detail: format!("x has {} values, W has {} columns", x.len(), w.cols) });
    }
    let tokens = u32::try_from(x.len() / w.cols as usize).map_err(|_| GpuError::Shape { op: OP, detail: "more than 2^32 tokens".into() })?;
    let x_buf = ctx.storage_from(OP, "x", x)?;
    let y_buf = ctx.storage_output(OP, "y", u64::from(tokens) * u64::from(w.rows) * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    product.encode(ctx, &mut encoder, w, tokens, &x_buf, &y_buf, &Epilogue::default()).await?;
    submit(ctx, OP, encoder).await?;
    ctx.read_f32(&y_buf, tokens as usize * w.rows as usize).await
}

/// The bound on |GPU − exact| per output: every output is one invocation's running f32 sum of
/// its row's `cols` products in column order (zeros padded past the last column add exactly),
/// so the chain is `cols` multiply-adds; the decode of a value (value_of) adds at most 3
/// roundings relative to that value, as matvec's bound counts. Higham's γ(cols + 3) times
/// Σ|W·x|, plus one f32 underflow per product: rigorous for any rounding mode and fused
/// multiply-adds, so a pass is never luck and a wrong index fails.
pub fn error_bound(cols: u32, abs_sums: &[f64]) -> impl Fn(usize) -> f64 + '_ {
    let gamma = gamma_f32(u64::from(cols) + 3);
    let flush = f64::from(cols) * f64::from(f32::MIN_POSITIVE);
    move |i| gamma * abs_sums[i] + flush
}

/// CPU reference: `X·Wᵀ` in f64 from the weights dequantized row by row (each row once, never
/// the whole matrix), for `x` of (tokens, cols); returns Y (tokens, rows) and Σ|W·x| per output.
pub fn reference(dtype: DType, w_bytes: &[u8], x: &[f32], cols: usize) -> Result<(Vec<f64>, Vec<f64>), GpuError> {
    let bad = |detail: String| GpuError::Shape { op: OP, detail };
    let row_bytes = dtype.bytes_for(cols as u64).filter(|&b| b > 0).ok_or_else(|| bad(format!("{cols} columns are not whole {dtype} blocks")))? as usize;
    if cols == 0 || !x.len().is_multiple_of(cols) || !w_bytes.len().is_multiple_of(row_bytes) {
        return Err(bad(format!("x has {} values and W {} bytes for {cols} columns", x.len(), w_bytes.len())));
    }
    let (rows, tokens) = (w_bytes.len() / row_bytes, x.len() / cols);
    let (mut y, mut abs_sums) = (vec![0f64; tokens * rows], vec![0f64; tokens * rows]);
    let mut row = Vec::with_capacity(cols);
    for (r, rb) in w_bytes.chunks_exact(row_bytes).enumerate() {
        row.clear();
        quant::dequantize_into(dtype, rb, &mut row).map_err(|e| bad(e.to_string()))?;
        for (t, xt) in x.chunks_exact(cols).enumerate() {
            let (mut sum, mut abs_sum) = (0f64, 0f64);
            for (&wv, &xv) in row.iter().zip(xt) {
                let p = f64::from(wv) * f64::from(xv);
                sum += p;
                abs_sum += p.abs();
            }
            y[t * rows + r] = sum;
            abs_sums[t * rows + r] = abs_sum;
        }
    }
    Ok((y, abs_sums))
}

/// The outcome of `check_against_reference`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MatmulCheck {
    /// Against `error_bound`.
    #[serde(flatten)]
    pub comparison: Comparison,
    pub product: Product,
    /// The largest |GPU − exact| / Σ|W·x| over the outputs.
    pub max_rel_err: f64,
}

impl std::fmt::Display for MatmulCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.product {
            Product::Tiled(t) => write!(f, "tile {}x{}", t.bm, t.bn)?,
            Product::Blocked => write!(f, "blocked")?,
        }
        write!(f, ", max |err|/Σ|w·x| {:.2e}: {}", self.max_rel_err, self.comparison)
    }
}

/// Runs a seeded random `tokens × cols` by `rows × cols` product of `dtype` through `product`
/// (the tiled kernel with the device's tile when None), weights split into parts of at most
/// `max_part_bytes` when given, and compares it with the CPU reference under `error_bound`.
/// Shared by the native and browser tests.
#[allow(clippy::too_many_arguments)]
pub async fn check_against_reference(
    ctx: &GpuContext,
    product: Option<Product>,
    dtype: DType,
    rows: usize,
    cols: usize,
    tokens: usize,
    seed: u64,
    max_part_bytes: Option<u64>,
) -> Result<MatmulCheck, GpuError> {
    let product = match product {
        Some(p) => p,
        None => Product::Tiled(Tile::for_device(ctx)?),
    };
    let mut rng = crate::rng::SeededRng::new(seed);
    let w_bytes = rng.tensor_bytes(dtype, rows * cols);
    let x = rng.signed_unit_vec(tokens * cols);
    let w = GpuWeight::new(ctx, "W", dtype, rows as u64, cols as u64, max_part_bytes)?;
    w.write_rows(ctx, 0, &w_bytes)?;
    let y = run(ctx, product, &w, &x).await?;
    let (expected, abs_sums) = reference(dtype, &w_bytes, &x, cols)?;
    let comparison = Comparison::elementwise(&y, &expected, error_bound(w.cols, &abs_sums));
    let max_rel_err = crate::check::max_relative_error(&y, &expected, &abs_sums);
    Ok(MatmulCheck { comparison, product, max_rel_err })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_on_a_known_case() {
        // W = [[1, 2, 3], [-4, 5, -6]]; X = [[1, 0.5, -1], [0, 1, 2]] → Y = [[-1, 4.5], [8, -7]]
        let w: Vec<u8> = [1.0f32, 2.0, 3.0, -4.0, 5.0, -6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (y, abs) = reference(DType::F32, &w, &[1.0, 0.5, -1.0, 0.0, 1.0, 2.0], 3).unwrap();
        assert_eq!(y, vec![-1.0, 4.5, 8.0, -7.0]);
        assert_eq!(abs, vec![5.0, 12.5, 8.0, 17.0]);
    }

    #[test]
    fn reference_agrees_with_matvec_per_token() {
        let mut rng = crate::rng::SeededRng::new(3);
        let (rows, cols, tokens) = (5, 64, 3);
        let w = rng.tensor_bytes(DType::Q4_1, rows * cols);
        let x = rng.signed_unit_vec(tokens * cols);
        let (y, _) = reference(DType::Q4_1, &w, &x, cols).unwrap();
        for (t, xt) in x.chunks_exact(cols).enumerate() {
            let (yt, _) = matvec::reference(DType::Q4_1, &w, xt).unwrap();
            assert_eq!(&y[t * rows..(t + 1) * rows], &yt[..]);
        }
    }

    #[test]
    fn reference_rejects_ragged_inputs() {
        assert!(reference(DType::F32, &[0u8; 12], &[0.0; 4], 3).is_err());
        assert!(reference(DType::Q8_0, &[0u8; 34], &[0.0; 32], 31).is_err());
    }

    #[test]
    fn tiles_count_invocations_and_memory() {
        assert_eq!(Tile::DEFAULT.invocations(), 256);
        assert_eq!(Tile::DEFAULT.workgroup_bytes(), 16 * 1024);
        assert_eq!(Tile::SMALL.invocations(), 64);
        assert_eq!(Tile { bm: 64, bn: 128 }.workgroup_bytes(), 24 * 1024);
    }
}
