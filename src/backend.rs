//! The op set the models are written against, and the two devices that implement it: the GPU
//! (`gpu::backend::Gpu`: every op records into one command encoder, submitted when the pass asks
//! for its answer) and the CPU (`cpu::backend::Cpu`: candle-core and our own kernels, eager).
//!
//! A model file holds its weights in its backend's types (`Matrix`, `Vector`, `KvCache`) and runs
//! its forward pass as calls on `&mut B`; it does not know which device runs. Each backend keeps
//! its own tricks behind the op: the GPU splits large weights over bindings and chooses its f16
//! path per product; the CPU keeps quantized blocks and rounds activations to 8 bits as
//! llama.cpp does, and runs grouped-query attention without repeating K and V.
//!
//! Activations are `(rows, cols)` f32 matrices: a row per token.

use crate::formats::TensorInfo;
use crate::generate::{Next, Pick};
use crate::models::{ModelError, RangeReader};

pub use crate::gpu::ops::norm::Norm;
pub use crate::gpu::ops::patches::{Layout, Patches};
pub use crate::gpu::ops::rope::RopeLayout;

/// A pointwise nonlinearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    /// Exact GELU (erf).
    GeluErf,
    /// CLIP's x·σ(1.702·x).
    QuickGelu,
    Tanh,
    Relu,
}

/// Attention of `n` new tokens at positions `pos0..pos0 + n` over a KV cache: their K and V are
/// written at those positions first, then each query attends to every cached position up to its
/// own (causal).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CachedAttention {
    pub pos0: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub scale: f32,
    /// Sliding window: each query sees its last `window` keys (itself included), `None` all.
    pub window: Option<u32>,
    /// Each scaled score s becomes c·tanh(s/c) (Gemma 2's attention logit soft-capping).
    pub softcap: Option<f32>,
}

/// Refuses `values` that are not a (rows, cols) matrix: for `matrix_from_values` and
/// `table_from_values` on every backend.
pub(crate) fn check_values(name: &str, values: &[f32], rows: u32, cols: u32) -> Result<(), ModelError> {
    if values.len() as u64 != u64::from(rows) * u64::from(cols) {
        return Err(ModelError::Tensor { name: name.into(), problem: format!("{} values for ({rows}, {cols})", values.len()) });
    }
    Ok(())
}

/// The span of a relative position bias of `len` values over `heads` heads: `len` = heads ×
/// (2·span − 1).
pub fn relative_span(len: u32, heads: u32) -> Option<u32> {
    let per_head = len.checked_div(heads).filter(|&n| heads > 0 && n * heads == len && n % 2 == 1)?;
    Some(per_head.div_ceil(2))
}

/// Self-attention of each sequence of a batch over its own tokens (an encoder's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchAttention {
    pub heads: u32,
    pub head_dim: u32,
    /// Each token sees only itself and the tokens before it (CLIP's text tower).
    pub causal: bool,
    pub scale: f32,
    /// Each token sees only the tokens nearer than this (ModernBERT's local layers: both sides).
    pub window: Option<u32>,
}

/// The operations of a forward pass, on one device. Shapes are checked by the backend and a
/// mismatch is an error, never a panic.
#[allow(async_fn_in_trait)] // futures run on one thread (the browser's); no Send bound wanted
pub trait Backend {
    /// Activations, (rows, cols) f32.
    type Tensor;
    /// A weight matrix (rows, cols) in whatever type the device holds it.
    type Matrix;
    /// A small f32 vector: a norm's gain, a bias.
    type Vector;
    /// One layer's K and V for a fixed number of positions.
    type KvCache;
    /// RoPE's cos/sin table for the positions of a pass.
    type Rope;
    /// The sequences of a batched (encoder) pass and how their rows are laid out: padded to the
    /// longest on the GPU, packed on the CPU (so that no product there sees padding). Ops on
    /// rows (linear, norm, add, activation) do not care; the ops below that take a batch do.
    type Batch;

    /// "webgpu" or "cpu", as reports name the device.
    fn device(&self) -> &'static str;
    /// The adapter's name for reports.
    fn adapter(&self) -> String;
    /// Another backend on the same device, with its own pass (a second model on one GPU).
    fn another(&self) -> Self
    where
        Self: Sized;
    /// Errors the device reported outside any op (the GPU's uncaptured validation errors).
    fn take_uncaptured_errors(&self) -> Vec<String> {
        Vec::new()
    }

    /// Reads tensor `t`, which must be (rows, cols), as a matrix.
    async fn matrix(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<Self::Matrix, ModelError>;
    /// A (rows, cols) matrix from f32 values (weights the loader had to rearrange).
    fn matrix_from_values(&self, name: &str, values: &[f32], rows: u32, cols: u32) -> Result<Self::Matrix, ModelError>;
    /// Matrices that multiply the same input (attention's Q, K and V): tensor `ts[i]` as
    /// (rows[i], cols). A backend may hold them as one matrix, so that `linear_many` over them is
    /// one product.
    async fn matrices(&self, ts: &[&TensorInfo], read: &mut impl RangeReader, rows: &[u32], cols: u32) -> Result<Vec<Self::Matrix>, ModelError> {
        let mut out = Vec::with_capacity(ts.len());
        for (t, &r) in ts.iter().zip(rows) {
            out.push(self.matrix(t, read, r, cols).await?);
        }
        Ok(out)
    }
    /// Tensor `t` as an embedding table: held for row lookups first (`embed`), products second
    /// (a tied LM head).
    async fn table(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<Self::Matrix, ModelError> {
        self.matrix(t, read, rows, cols).await
    }
    /// An embedding table from f32 values.
    fn table_from_values(&self, name: &str, values: &[f32], rows: u32, cols: u32) -> Result<Self::Matrix, ModelError> {
        self.matrix_from_values(name, values, rows, cols)
    }
    fn vector(&self, values: &[f32]) -> Result<Self::Vector, ModelError>;
    /// K and V of `capacity` positions of `kv_heads` heads of `head_dim`, for each of `layers`:
    /// refused as a whole (before anything is allocated) when the device cannot hold them.
    fn kv_caches(&self, layers: u32, kv_heads: u32, head_dim: u32, capacity: u32) -> Result<Vec<Self::KvCache>, ModelError>;
    /// Bytes a product with `m` reads, as held on the device.
    fn matrix_bytes(&self, m: &Self::Matrix) -> u64;

    /// Rows `ids` of `table`: (ids, cols). The caller checks the ids against the rows.
    async fn embed(&mut self, table: &Self::Matrix, ids: &[u32]) -> Result<Self::Tensor, ModelError>;
    /// x·Wᵀ (+ bias): (rows of x, rows of W).
    async fn linear(&mut self, x: &Self::Tensor, w: &Self::Matrix, bias: Option<&Self::Vector>) -> Result<Self::Tensor, ModelError>;
    /// `linear` of `x` with each (W, bias) of `ws`: one product where the backend holds the
    /// matrices as one (`matrices`).
    async fn linear_many(&mut self, x: &Self::Tensor, ws: &[(&Self::Matrix, Option<&Self::Vector>)]) -> Result<Vec<Self::Tensor>, ModelError> {
        let mut out = Vec::with_capacity(ws.len());
        for &(w, b) in ws {
            out.push(self.linear(x, w, b).await?);
        }
        Ok(out)
    }
    /// `linear_many` of `x` normalised by `norm` (gain `g`): a pre-norm block's first product.
    /// One kernel where the backend can (the GPU folds RMSNorm into its CPU-adapter kernel).
    async fn norm_linear_many(&mut self, x: &Self::Tensor, norm: Norm, g: &Self::Vector, ws: &[(&Self::Matrix, Option<&Self::Vector>)]) -> Result<Vec<Self::Tensor>, ModelError> {
        compose::norm_linear_many(self, x, norm, g, ws).await
    }
    /// act(x'·Gateᵀ) · (x'·Upᵀ), x' being `x` normalised by `norm` (gain) when given: a gated
    /// MLP's first half (SwiGLU with `Silu`). One product where the backend holds gate and up as
    /// one matrix (`matrices`).
    async fn gated_linear(&mut self, x: &Self::Tensor, norm: Option<(Norm, &Self::Vector)>, gate: &Self::Matrix, up: &Self::Matrix, act: Activation) -> Result<Self::Tensor, ModelError> {
        compose::gated_linear(self, x, norm, gate, up, act).await
    }
    /// x·Wᵀ (+ bias) + `residual`: a block's last product and its residual connection.
    async fn linear_add(&mut self, x: &Self::Tensor, w: &Self::Matrix, bias: Option<&Self::Vector>, residual: &Self::Tensor) -> Result<Self::Tensor, ModelError> {
        compose::linear_add(self, x, w, bias, residual).await
    }
    /// `rope` of `q` (`heads` heads) and `k` (`kv_heads`) with one table: one kernel where the
    /// backend can.
    #[allow(clippy::too_many_arguments)]
    async fn rope_qk(&mut self, q: Self::Tensor, k: Self::Tensor, table: &Self::Rope, layout: RopeLayout, heads: u32, kv_heads: u32, head_dim: u32) -> Result<(Self::Tensor, Self::Tensor), ModelError> {
        Ok((self.rope(q, table, layout, heads, head_dim).await?, self.rope(k, table, layout, kv_heads, head_dim).await?))
    }
    /// Each row normalised: RMSNorm (gain `g`) or LayerNorm (gain `g`, bias `b`).
    async fn norm(&mut self, x: &Self::Tensor, norm: Norm, g: &Self::Vector, b: Option<&Self::Vector>) -> Result<Self::Tensor, ModelError>;
    /// `x` (tokens, heads · head_dim) with each head's values normalised on their own (RMSNorm
    /// with gain `g` of head_dim values: Qwen3's and Gemma 3's q/k norms).
    async fn head_norm(&mut self, x: &Self::Tensor, norm: Norm, g: &Self::Vector, heads: u32) -> Result<Self::Tensor, ModelError>;
    async fn add(&mut self, a: &Self::Tensor, b: &Self::Tensor) -> Result<Self::Tensor, ModelError>;
    /// `x` · `s` (Gemma's embeddings scaled by √hidden, soft-capping).
    async fn scale(&mut self, x: &Self::Tensor, s: f32) -> Result<Self::Tensor, ModelError>;
    async fn activation(&mut self, x: &Self::Tensor, act: Activation) -> Result<Self::Tensor, ModelError>;
    /// act(gate) · up, elementwise (SwiGLU with `Silu`).
    async fn gated(&mut self, gate: &Self::Tensor, up: &Self::Tensor, act: Activation) -> Result<Self::Tensor, ModelError>;
    /// The cos/sin table of positions `pos0..pos0 + n` for `inv_freq` (rot_dim / 2 frequencies,
    /// rot_dim ≤ head_dim), cos and sin times `scale` (LongRoPE's attention factor, else 1).
    fn rope_table(&mut self, inv_freq: &[f32], scale: f32, pos0: u32, n: u32) -> Result<Self::Rope, ModelError>;
    /// The cos/sin table of a batch's rows (each row at its position in its sequence) for
    /// `inv_freq`: RoPE in an encoder (ModernBERT).
    fn batch_rope_table(&mut self, inv_freq: &[f32], batch: &Self::Batch) -> Result<Self::Rope, ModelError>;
    /// `x` (tokens, heads · head_dim) rotated per head in `layout`: the table's rot_dim first
    /// dimensions of each head (all of them, or a part: Phi-4-mini's `partial_rotary_factor`).
    async fn rope(&mut self, x: Self::Tensor, table: &Self::Rope, layout: RopeLayout, heads: u32, head_dim: u32) -> Result<Self::Tensor, ModelError>;
    /// Writes `k` and `v` into `cache` at `a.pos0` and returns causal attention of `q` over the
    /// cache's first `pos0 + tokens` positions: (tokens, heads · head_dim).
    async fn cached_attention(&mut self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, cache: &mut Self::KvCache, a: CachedAttention) -> Result<Self::Tensor, ModelError>;
    /// The last row of `x`: (1, cols).
    async fn last_row(&mut self, x: &Self::Tensor) -> Result<Self::Tensor, ModelError>;
    /// Ends the pass with `pick` answered from `logits` (1, vocab).
    async fn pick(&mut self, logits: &Self::Tensor, pick: Pick) -> Result<Next, ModelError>;
    /// Ends a pass that answers nothing (a prefill chunk before the last).
    async fn finish(&mut self) -> Result<(), ModelError>;

    /// A batch of sequences of `lengths` tokens (each at least 1) for the ops below.
    fn batch(&mut self, lengths: &[u32]) -> Result<Self::Batch, ModelError>;
    /// Rows `ids` of `table` in `batch`'s layout: `ids` holds each sequence's ids in turn (its
    /// length's worth), as `embed` takes them. The caller checks the ids against the rows.
    async fn embed_batch(&mut self, table: &Self::Matrix, ids: &[u32], batch: &Self::Batch) -> Result<Self::Tensor, ModelError>;
    /// The im2col patches of `n` inputs of `inputs` (each in `layout`): (n · rows, cols) of
    /// `patches`, each input's prefix rows zero. Its batch is `n` sequences of `rows`.
    async fn patches(&mut self, inputs: &[f32], n: u32, patches: Patches, layout: Layout) -> Result<Self::Tensor, ModelError>;
    /// The im2col patches of one input held in `x` (its values row after row, read in `layout`):
    /// (rows, cols) of `patches`. A convolution over activations: Whisper's second Conv1d reads the
    /// first's (time, channels) output as channels × 1 × time.
    async fn tensor_patches(&mut self, x: &Self::Tensor, patches: Patches, layout: Layout) -> Result<Self::Tensor, ModelError>;
    /// Attention of every row of `q` over all rows of `k` and `v`, none masked: an encoder-decoder's
    /// cross-attention (the decoder's tokens over the encoder's output, whose K and V are computed
    /// once per input and kept across passes). q: (n, heads · head_dim), k and v: (keys, heads ·
    /// head_dim); (n, heads · head_dim).
    async fn cross_attention(&mut self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, heads: u32, head_dim: u32, scale: f32) -> Result<Self::Tensor, ModelError>;
    /// `x` plus `t`'s values repeated over it: a bias when `t` is one row long, a (len, cols)
    /// table added to each sequence of `len` rows.
    async fn add_tiled(&mut self, x: &Self::Tensor, t: &Self::Vector) -> Result<Self::Tensor, ModelError>;
    /// Attention of each sequence of `batch` over its own tokens: q, k, v and the result are
    /// (rows, heads · head_dim). `bias` adds to each score a value by head and relative position
    /// (MPNet): heads × (2·span − 1) values for sequences of at most `span` tokens, key p of
    /// query t reading [h][p − t + span − 1] (`relative_span`).
    async fn attention(&mut self, q: &Self::Tensor, k: &Self::Tensor, v: &Self::Tensor, batch: &Self::Batch, a: BatchAttention, bias: Option<&Self::Vector>) -> Result<Self::Tensor, ModelError>;
    /// Row `position` of sequence `sequence` for each `(sequence, position)`: (picks, cols).
    async fn rows(&mut self, x: &Self::Tensor, batch: &Self::Batch, picks: &[(u32, u32)]) -> Result<Self::Tensor, ModelError>;
    /// The mean of each sequence's rows, L2-normalised when `normalize` (divided by
    /// max(‖mean‖, 1e-12)): (sequences, cols).
    async fn mean_pool(&mut self, x: &Self::Tensor, batch: &Self::Batch, normalize: bool) -> Result<Self::Tensor, ModelError>;
    /// Ends the pass with `x`'s values, row after row.
    async fn read(&mut self, x: &Self::Tensor) -> Result<Vec<f32>, ModelError>;
}

/// The fused ops of `Backend` as the ops they fuse: the trait's defaults (the CPU runs these), and
/// what a backend falls back to where its kernels cannot fuse a case.
pub mod compose {
    use super::{Activation, Backend, Norm};
    use crate::models::ModelError;

    pub async fn norm_linear_many<B: Backend + ?Sized>(b: &mut B, x: &B::Tensor, norm: Norm, g: &B::Vector, ws: &[(&B::Matrix, Option<&B::Vector>)]) -> Result<Vec<B::Tensor>, ModelError> {
        let h = b.norm(x, norm, g, None).await?;
        b.linear_many(&h, ws).await
    }

    pub async fn gated_linear<B: Backend + ?Sized>(b: &mut B, x: &B::Tensor, norm: Option<(Norm, &B::Vector)>, gate: &B::Matrix, up: &B::Matrix, act: Activation) -> Result<B::Tensor, ModelError> {
        let h = match norm {
            Some((n, g)) => Some(b.norm(x, n, g, None).await?),
            None => None,
        };
        let both = b.linear_many(h.as_ref().unwrap_or(x), &[(gate, None), (up, None)]).await?;
        let [gate, up] = &both[..] else { return Err(ModelError::Config("gate and up: not two products".into())) };
        b.gated(gate, up, act).await
    }

    pub async fn linear_add<B: Backend + ?Sized>(b: &mut B, x: &B::Tensor, w: &B::Matrix, bias: Option<&B::Vector>, residual: &B::Tensor) -> Result<B::Tensor, ModelError> {
        let y = b.linear(x, w, bias).await?;
        b.add(residual, &y).await
    }
}
