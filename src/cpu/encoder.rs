//! The encoder stack of `models::encoder` on the CPU: the same `EncoderShape` and `LayerNames`,
//! post-LN (BERT) or pre-LN (ViT, AST, CLIP), GELU (erf or tanh) or quick GELU, and an optional
//! causal mask (CLIP's text tower).
//!
//! As `cpu::bert` always did: the dense layers are candle-core's f32 matmul with the weights
//! widened to f32 and transposed once at load (so that `x·Wᵀ` reads them row by row), Q, K and V
//! one product (their weights concatenated). Bias adds, residuals, LayerNorm, the activation and
//! attention are plain Rust over packed rows (`cpu::vec`): the real tokens of a pass's sequences
//! are packed into one (tokens, hidden) matrix, so neither the matmuls nor attention see padding,
//! and no padding mask is needed (attention runs per sequence and head over its own tokens).

use super::cpu_err;
use super::vec::{Act, LayerNorm, add, axpy, bias_act, dot, layer_norm_rows, residual_layer_norm, softmax};
use crate::models::encoder::{EncoderShape, LayerNames, Placement, Tensors};
use crate::models::llama::{ModelError, RangeReader};
use candle_core::{Device, Tensor};

/// A dense layer `y = x·Wᵀ (+ b)`, holding `Wᵀ` (cols, rows) contiguous.
pub(crate) struct Linear {
    wt: Tensor,
    pub b: Option<Vec<f32>>,
}

impl Linear {
    /// `{prefix}.weight` (rows, cols) and, when `bias`, `{prefix}.bias`, under `t`'s prefixes.
    pub async fn load(t: Tensors<'_>, read: &mut impl RangeReader, prefix: &str, rows: u32, cols: u32, bias: bool) -> Result<Self, ModelError> {
        let w = t.values(read, &format!("{prefix}.weight"), &[rows, cols]).await?;
        let b = if bias { Some(t.values(read, &format!("{prefix}.bias"), &[rows]).await?) } else { None };
        Self::from_rows(w, rows as usize, cols as usize, b)
    }

    /// From W as (rows, cols) row-major values.
    pub fn from_rows(w: Vec<f32>, rows: usize, cols: usize, b: Option<Vec<f32>>) -> Result<Self, ModelError> {
        let wt = Tensor::from_vec(w, (rows, cols), &Device::Cpu).and_then(|t| t.t()?.contiguous()).map_err(cpu_err)?;
        Ok(Self { wt, b })
    }

    /// Output values per row.
    pub fn rows(&self) -> usize {
        self.wt.dims().get(1).copied().unwrap_or(0)
    }

    /// Input values per row.
    pub fn cols(&self) -> usize {
        self.wt.dims().first().copied().unwrap_or(0)
    }

    /// `x` (n, cols) times `Wᵀ`, without the bias: (n, rows).
    pub fn matmul(&self, x: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
        Tensor::from_slice(x, (n, self.cols()), &Device::Cpu)?.matmul(&self.wt)?.flatten_all()?.to_vec1::<f32>()
    }

    /// `x·Wᵀ + b` for `n` rows of `x`.
    pub fn forward(&self, x: &[f32], n: usize) -> candle_core::Result<Vec<f32>> {
        let mut y = self.matmul(x, n)?;
        if let Some(b) = &self.b {
            for row in y.chunks_exact_mut(b.len()) {
                add(row, b);
            }
        }
        Ok(y)
    }

    /// Bytes of the weight (f32).
    pub fn bytes(&self) -> u64 {
        (self.wt.elem_count() * 4) as u64
    }
}

/// `{prefix}.weight` and `{prefix}.bias`, `len` values each.
pub(crate) async fn layer_norm(t: Tensors<'_>, read: &mut impl RangeReader, prefix: &str, len: u32) -> Result<LayerNorm, ModelError> {
    Ok(LayerNorm { g: t.values(read, &format!("{prefix}.weight"), &[len]).await?, b: t.values(read, &format!("{prefix}.bias"), &[len]).await? })
}

struct Layer {
    /// Q, K and V in one: Wᵀ (hidden, 3·hidden), the biases concatenated when the model has them.
    qkv: Linear,
    out: Linear,
    norm1: LayerNorm,
    up: Linear,
    down: Linear,
    norm2: LayerNorm,
}

/// An encoder stack on the CPU.
pub(crate) struct CpuEncoder {
    pub shape: EncoderShape,
    act: Act,
    layers: Vec<Layer>,
}

impl CpuEncoder {
    /// Loads `shape.layers` layers named by `names`, in the GPU `Encoder::load`'s order (so that a
    /// checkpoint's first bad tensor is the same error on both).
    pub async fn load(shape: EncoderShape, t: Tensors<'_>, read: &mut impl RangeReader, names: impl Fn(u32) -> LayerNames) -> Result<Self, ModelError> {
        let act = Act::of(shape.activation).ok_or_else(|| ModelError::Config(format!("{:?} is not an encoder activation", shape.activation)))?;
        let (h, i, qb) = (shape.hidden, shape.intermediate, shape.qkv_bias);
        let hidden = h as usize;
        let mut layers = Vec::with_capacity(shape.layers as usize);
        for l in 0..shape.layers {
            let n = names(l);
            let mut w = Vec::with_capacity(3 * hidden * hidden);
            let mut b = Vec::with_capacity(if qb { 3 * hidden } else { 0 });
            for name in [&n.q, &n.k, &n.v] {
                w.extend(t.values(read, &format!("{name}.weight"), &[h, h]).await?);
                if qb {
                    b.extend(t.values(read, &format!("{name}.bias"), &[h]).await?);
                }
            }
            layers.push(Layer {
                qkv: Linear::from_rows(w, 3 * hidden, hidden, qb.then_some(b))?,
                out: Linear::load(t, read, &n.out, h, h, true).await?,
                norm1: layer_norm(t, read, &n.norm1, h).await?,
                up: Linear::load(t, read, &n.up, i, h, true).await?,
                down: Linear::load(t, read, &n.down, h, i, true).await?,
                norm2: layer_norm(t, read, &n.norm2, h).await?,
            });
        }
        Ok(Self { shape, act, layers })
    }

    /// Runs the stack over `x` (tokens, hidden): the packed tokens of sequences of `lengths`
    /// tokens each, in place. `causal` lets each token see only itself and earlier tokens.
    pub fn forward(&self, x: &mut [f32], lengths: &[usize], causal: bool) -> candle_core::Result<()> {
        let s = &self.shape;
        let (hidden, eps) = (s.hidden as usize, s.eps);
        let tokens: usize = lengths.iter().sum();
        if x.len() != tokens * hidden {
            return Err(candle_core::Error::Msg(format!("{} values are not {tokens} tokens of {hidden}", x.len())));
        }
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let mut attn = vec![0f32; tokens * hidden];
        let mut scores = vec![0f32; longest];
        for l in &self.layers {
            match s.placement {
                Placement::Post => {
                    let qkv = l.qkv.forward(x, tokens)?;
                    self.attention(&qkv, lengths, causal, &mut attn, &mut scores);
                    let o = l.out.matmul(&attn, tokens)?;
                    residual_layer_norm(x, &o, bias(&l.out), &l.norm1, eps);
                    let up = self.mlp_up(l, x, tokens)?;
                    let down = l.down.matmul(&up, tokens)?;
                    residual_layer_norm(x, &down, bias(&l.down), &l.norm2, eps);
                }
                Placement::Pre => {
                    let mut h = x.to_vec();
                    layer_norm_rows(&mut h, &l.norm1, eps);
                    let qkv = l.qkv.forward(&h, tokens)?;
                    self.attention(&qkv, lengths, causal, &mut attn, &mut scores);
                    let o = l.out.forward(&attn, tokens)?;
                    add(x, &o);
                    h.copy_from_slice(x);
                    layer_norm_rows(&mut h, &l.norm2, eps);
                    let up = self.mlp_up(l, &h, tokens)?;
                    let down = l.down.forward(&up, tokens)?;
                    add(x, &down);
                }
            }
        }
        Ok(())
    }

    /// act(x·W_upᵀ + b): (tokens, intermediate).
    fn mlp_up(&self, l: &Layer, x: &[f32], tokens: usize) -> candle_core::Result<Vec<f32>> {
        let mut up = l.up.matmul(x, tokens)?;
        for row in up.chunks_exact_mut(l.up.rows()) {
            bias_act(row, bias(&l.up), self.act);
        }
        Ok(up)
    }

    /// `out` = softmax(q·kᵀ / √d) · v per sequence and head over the sequence's own tokens (only
    /// the earlier ones and itself when `causal`), from packed (tokens, 3·hidden) Q|K|V rows.
    fn attention(&self, qkv: &[f32], lengths: &[usize], causal: bool, out: &mut [f32], scores: &mut [f32]) {
        let s = &self.shape;
        let (hidden, heads, hd) = (s.hidden as usize, s.heads as usize, s.head_dim as usize);
        let scale = 1.0 / (hd as f32).sqrt();
        out.fill(0.0);
        let mut start = 0;
        for &n in lengths {
            let rows = &qkv[start * 3 * hidden..(start + n) * 3 * hidden];
            let out = &mut out[start * hidden..(start + n) * hidden];
            for h in 0..heads {
                let (qo, ko, vo) = (h * hd, hidden + h * hd, 2 * hidden + h * hd);
                for i in 0..n {
                    let q = &rows[i * 3 * hidden + qo..][..hd];
                    let seen = if causal { i + 1 } else { n };
                    let s = &mut scores[..seen];
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = dot(q, &rows[j * 3 * hidden + ko..][..hd]) * scale;
                    }
                    softmax(s);
                    let o = &mut out[i * hidden + h * hd..][..hd];
                    for (j, &p) in s.iter().enumerate() {
                        axpy(o, p, &rows[j * 3 * hidden + vo..][..hd]);
                    }
                }
            }
            start += n;
        }
    }

    /// Bytes of weights one pass reads (every matrix once, as f32).
    pub fn weight_bytes(&self) -> u64 {
        self.layers.iter().map(|l| l.qkv.bytes() + l.out.bytes() + l.up.bytes() + l.down.bytes()).sum()
    }

    /// The f32 matmul products of one pass over `tokens` packed tokens, as (m, k, n): fused QKV,
    /// attention output, up and down, once per layer.
    pub fn dense_shapes(&self, tokens: usize) -> Vec<(usize, usize, usize)> {
        let (h, i) = (self.shape.hidden as usize, self.shape.intermediate as usize);
        let layer = [(tokens, h, 3 * h), (tokens, h, h), (tokens, h, i), (tokens, i, h)];
        (0..self.layers.len()).flat_map(|_| layer).collect()
    }
}

/// A layer's bias: the attention output, up and down layers always have one (loaded with
/// `bias: true`), so this is never the empty slice for them.
fn bias(l: &Linear) -> &[f32] {
    l.b.as_deref().unwrap_or(&[])
}
