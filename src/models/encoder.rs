//! The transformer encoder stack shared by BERT, ViT, the Audio Spectrogram Transformer and both
//! CLIP towers: per layer self-attention and a two-layer MLP, each added back to the residual
//! stream, with LayerNorm after each (BERT, "post-LN") or before each (ViT, AST, CLIP, "pre-LN").
//! The models differ only in their embeddings, their heads and their tensor names (`LayerNames`).
//!
//! Also here: what their loaders share — finding a tensor under one of a checkpoint's name
//! prefixes (`Tensors`), dense layers and LayerNorms on the GPU, `config.json` size checks and
//! `id2label`.

use std::collections::BTreeMap;

use crate::formats::{DType, TensorInfo, TensorTable};
use crate::gpu::GpuContext;
use crate::gpu::ops::attention::Attention;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::matvec;
use crate::gpu::ops::norm::Norm;
use crate::gpu::weights::GpuWeight;
use crate::models::llama::{ModelError, RangeReader};

/// A checkpoint's tensors, found under the first of `prefixes` that has them: a task model
/// (`ViTForImageClassification`) prefixes its encoder (`vit.`), the bare model does not.
#[derive(Clone, Copy)]
pub struct Tensors<'t> {
    pub table: &'t TensorTable,
    pub prefixes: &'static [&'static str],
}

impl<'t> Tensors<'t> {
    pub fn find(&self, name: &str) -> Result<&'t TensorInfo, ModelError> {
        self.prefixes
            .iter()
            .find_map(|p| self.table.get(&format!("{p}{name}")))
            .ok_or_else(|| ModelError::Tensor { name: name.into(), problem: format!("missing (looked under {:?})", self.prefixes) })
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// A small tensor's values as f32 (norms, biases, position tables): F32, F16 or BF16.
    pub async fn values(&self, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
        let t = self.find(name)?;
        if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(ModelError::Tensor { name: t.name.clone(), problem: format!("dtype {} (F32, F16 or BF16 expected)", t.dtype) });
        }
        super::tensor_values(t, read, shape).await
    }

    pub async fn vector(&self, ctx: &GpuContext, read: &mut impl RangeReader, name: &str, len: u32) -> Result<wgpu::Buffer, ModelError> {
        let v = self.values(read, name, &[len]).await?;
        Ok(ctx.storage_from("encoder", "vector", &v)?)
    }

    pub async fn matrix(&self, ctx: &GpuContext, read: &mut impl RangeReader, name: &str, rows: u32, cols: u32) -> Result<GpuWeight, ModelError> {
        super::upload_matrix(ctx, self.find(name)?, read, rows, cols).await
    }

    /// `{prefix}.weight` (rows, cols) and, when `bias`, `{prefix}.bias`.
    pub async fn linear(&self, ctx: &GpuContext, read: &mut impl RangeReader, prefix: &str, rows: u32, cols: u32, bias: bool) -> Result<Linear, ModelError> {
        let w = self.matrix(ctx, read, &format!("{prefix}.weight"), rows, cols).await?;
        let b = if bias { Some(self.vector(ctx, read, &format!("{prefix}.bias"), rows).await?) } else { None };
        Ok(Linear { w, b })
    }

    pub async fn layer_norm(&self, ctx: &GpuContext, read: &mut impl RangeReader, prefix: &str, len: u32) -> Result<LayerNorm, ModelError> {
        Ok(LayerNorm {
            g: self.vector(ctx, read, &format!("{prefix}.weight"), len).await?,
            b: self.vector(ctx, read, &format!("{prefix}.bias"), len).await?,
        })
    }
}

/// A LayerNorm's gain and bias.
pub struct LayerNorm {
    pub g: wgpu::Buffer,
    pub b: wgpu::Buffer,
}

impl LayerNorm {
    /// Records `y = LayerNorm(x)` over `rows` rows of `cols`.
    #[allow(clippy::too_many_arguments)]
    pub async fn encode(&self, ctx: &GpuContext, e: &mut wgpu::CommandEncoder, eps: f32, rows: u32, cols: u32, x: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<(), ModelError> {
        Ok(Norm::Layer { eps }.encode(ctx, e, rows, cols, x, &self.g, &self.b, y).await?)
    }
}

/// A dense layer `y = x·Wᵀ (+ b)`.
pub struct Linear {
    pub w: GpuWeight,
    pub b: Option<wgpu::Buffer>,
}

impl Linear {
    /// Records `y = x·Wᵀ + b` for `tokens` rows of `x`; with a bias the product goes through
    /// `scratch` first.
    pub async fn encode(&self, ctx: &GpuContext, e: &mut wgpu::CommandEncoder, tokens: u32, x: &wgpu::Buffer, scratch: &wgpu::Buffer, y: &wgpu::Buffer) -> Result<(), ModelError> {
        match &self.b {
            None => {
                matvec::encode(ctx, e, &self.w, tokens, x, y).await?;
            }
            Some(b) => {
                matvec::encode(ctx, e, &self.w, tokens, x, scratch).await?;
                let n = u64::from(tokens) * u64::from(self.w.rows);
                Elementwise::AddRow { cols: self.w.rows }.encode(ctx, e, n, scratch, b, y).await?;
            }
        }
        Ok(())
    }

    /// Dispatches `encode` records.
    pub fn dispatches(&self) -> u32 {
        self.w.parts.len() as u32 + u32::from(self.b.is_some())
    }
}

/// Where each layer's LayerNorms sit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// `x = LN(x + attn(x)); x = LN(x + mlp(x))` (BERT).
    Post,
    /// `x = x + attn(LN(x)); x = x + mlp(LN(x))` (ViT, AST, CLIP).
    Pre,
}

/// The sizes and choices of an encoder stack.
#[derive(Clone, Debug, PartialEq)]
pub struct EncoderShape {
    pub layers: u32,
    pub hidden: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub intermediate: u32,
    pub eps: f32,
    /// `GeluErf`, `GeluTanh` or `QuickGelu`.
    pub activation: Elementwise,
    pub placement: Placement,
    /// Q, K and V have biases (ViT's and AST's `qkv_bias`; always in BERT and CLIP).
    pub qkv_bias: bool,
}

/// Bounds on config values: beyond them a config is refused before anything is allocated.
pub const MAX_HIDDEN: u64 = 16_384;
pub const MAX_LAYERS: u64 = 256;
pub const MAX_INTERMEDIATE: u64 = 65_536;
pub const MAX_VOCAB: u64 = 4_000_000;
pub const MAX_POSITIONS: u64 = 65_536;

impl EncoderShape {
    /// Checks the sizes `config.json` gave (`what` names the config section in errors).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        what: &str,
        layers: Option<u64>,
        hidden: Option<u64>,
        heads: Option<u64>,
        intermediate: Option<u64>,
        eps: Option<f64>,
        hidden_act: Option<&str>,
        default_act: &str,
        placement: Placement,
        qkv_bias: bool,
    ) -> Result<Self, ModelError> {
        let hidden = size(what, "hidden_size", hidden, MAX_HIDDEN)?;
        let heads = size(what, "num_attention_heads", heads, MAX_HIDDEN)?;
        if !hidden.is_multiple_of(heads) {
            return Err(config_error(what, format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}")));
        }
        let eps = eps.ok_or_else(|| config_error(what, "layer_norm_eps is missing".into()))?;
        if !(eps.is_finite() && (0.0..=1.0).contains(&eps)) {
            return Err(config_error(what, format!("layer_norm_eps = {eps} is not in [0, 1]")));
        }
        Ok(Self {
            layers: size(what, "num_hidden_layers", layers, MAX_LAYERS)?,
            hidden,
            heads,
            head_dim: hidden / heads,
            intermediate: size(what, "intermediate_size", intermediate, MAX_INTERMEDIATE)?,
            eps: eps as f32,
            activation: activation(what, hidden_act.unwrap_or(default_act))?,
            placement,
            qkv_bias,
        })
    }
}

pub(crate) fn config_error(what: &str, m: String) -> ModelError {
    ModelError::Config(format!("{what}: {m}"))
}

/// A required size from a config: present, positive and at most `max`.
pub(crate) fn size(what: &str, name: &str, v: Option<u64>, max: u64) -> Result<u32, ModelError> {
    let v = v.ok_or_else(|| config_error(what, format!("{name} is missing")))?;
    if v == 0 || v > max {
        return Err(config_error(what, format!("{name} = {v} is outside 1..={max}")));
    }
    Ok(v as u32)
}

/// The elementwise op of a `hidden_act`.
pub(crate) fn activation(what: &str, name: &str) -> Result<Elementwise, ModelError> {
    match name {
        "gelu" => Ok(Elementwise::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(Elementwise::GeluTanh),
        "quick_gelu" => Ok(Elementwise::QuickGelu),
        other => Err(config_error(what, format!("hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh, quick_gelu)"))),
    }
}

/// Label names by class index from a config's `id2label` (keys are decimal strings), or
/// `LABEL_{i}` for `num_labels` classes when it has none. Every index below the count must be named.
pub fn labels(id2label: Option<&BTreeMap<String, String>>, num_labels: Option<u64>) -> Result<Vec<String>, ModelError> {
    const MAX_LABELS: usize = 1 << 20;
    let bad = |m: String| ModelError::Config(format!("config.json: {m}"));
    match id2label {
        Some(map) if !map.is_empty() => {
            if map.len() > MAX_LABELS {
                return Err(bad(format!("{} labels", map.len())));
            }
            let mut names = vec![None; map.len()];
            for (k, v) in map {
                let i: usize = k.parse().map_err(|_| bad(format!("id2label key {k:?} is not an index")))?;
                let slot = names.get_mut(i).ok_or_else(|| bad(format!("id2label index {i} is not below its {} entries", map.len())))?;
                *slot = Some(v.clone());
            }
            Ok(names.into_iter().map(Option::unwrap_or_default).collect())
        }
        _ => {
            let n = num_labels.unwrap_or(2) as usize;
            if n == 0 || n > MAX_LABELS {
                return Err(bad(format!("num_labels = {n}")));
            }
            Ok((0..n).map(|i| format!("LABEL_{i}")).collect())
        }
    }
}

/// Tensor names (without `.weight`/`.bias`) of one layer.
pub struct LayerNames {
    pub q: String,
    pub k: String,
    pub v: String,
    pub out: String,
    /// The norm around attention: after it (BERT) or before it.
    pub norm1: String,
    pub up: String,
    pub down: String,
    /// The norm around the MLP.
    pub norm2: String,
}

impl LayerNames {
    /// BERT: `encoder.layer.{l}.attention.self.query`, …
    pub fn bert(l: u32) -> Self {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        Self {
            q: p("attention.self.query"),
            k: p("attention.self.key"),
            v: p("attention.self.value"),
            out: p("attention.output.dense"),
            norm1: p("attention.output.LayerNorm"),
            up: p("intermediate.dense"),
            down: p("output.dense"),
            norm2: p("output.LayerNorm"),
        }
    }

    /// ViT and AST: `encoder.layer.{l}.attention.attention.query`, `layernorm_before`, …
    pub fn vit(l: u32) -> Self {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        Self {
            q: p("attention.attention.query"),
            k: p("attention.attention.key"),
            v: p("attention.attention.value"),
            out: p("attention.output.dense"),
            norm1: p("layernorm_before"),
            up: p("intermediate.dense"),
            down: p("output.dense"),
            norm2: p("layernorm_after"),
        }
    }

    /// CLIP's towers (under `vision_model.`, `text_model.`): `encoder.layers.{l}.self_attn.q_proj`,
    /// `layer_norm1`, `mlp.fc1`, …
    pub fn clip(l: u32) -> Self {
        let p = |s: &str| format!("encoder.layers.{l}.{s}");
        Self {
            q: p("self_attn.q_proj"),
            k: p("self_attn.k_proj"),
            v: p("self_attn.v_proj"),
            out: p("self_attn.out_proj"),
            norm1: p("layer_norm1"),
            up: p("mlp.fc1"),
            down: p("mlp.fc2"),
            norm2: p("layer_norm2"),
        }
    }
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    norm1: LayerNorm,
    up: Linear,
    down: Linear,
    norm2: LayerNorm,
}

/// Buffers for one pass of `tokens` tokens in `batch` sequences, with the capacities they were
/// made for; `x` holds the input and, after `Encoder::encode`, the output.
pub struct Activations {
    tokens: u64,
    batch: u64,
    scores_elems: u64,
    pub x: wgpu::Buffer,
    pub x2: wgpu::Buffer,
    pub h: wgpu::Buffer,
    pub q: wgpu::Buffer,
    pub k: wgpu::Buffer,
    pub v: wgpu::Buffer,
    pub attn: wgpu::Buffer,
    pub f1: wgpu::Buffer,
    pub f2: wgpu::Buffer,
    /// Valid tokens per sequence (u32).
    pub lengths: wgpu::Buffer,
    pub scores: wgpu::Buffer,
}

impl Activations {
    /// Makes sure `slot` holds buffers for `batch` sequences of `len` tokens (keeping larger ones).
    pub fn ensure(slot: &mut Option<Self>, ctx: &GpuContext, s: &EncoderShape, batch: u64, len: u64) -> Result<(), ModelError> {
        let (tokens, scores) = (batch * len, batch * len * len * u64::from(s.heads));
        if let Some(a) = slot
            && a.tokens >= tokens
            && a.batch >= batch
            && a.scores_elems >= scores
        {
            return Ok(());
        }
        let (t0, b0, s0) = slot.as_ref().map_or((0, 0, 0), |a| (a.tokens, a.batch, a.scores_elems));
        *slot = None;
        let (tokens, batch, scores) = (tokens.max(t0), batch.max(b0), scores.max(s0));
        let buf = |what: &'static str, elems: u64| ctx.storage_output("encoder", what, elems.max(1) * 4);
        let (th, ti) = (tokens * u64::from(s.hidden), tokens * u64::from(s.intermediate));
        *slot = Some(Self {
            tokens,
            batch,
            scores_elems: scores,
            x: buf("x", th)?,
            x2: buf("x2", th)?,
            h: buf("h", th)?,
            q: buf("q", th)?,
            k: buf("k", th)?,
            v: buf("v", th)?,
            attn: buf("attn", th)?,
            f1: buf("ffn 1", ti)?,
            f2: buf("ffn 2", ti)?,
            lengths: buf("lengths", batch)?,
            scores: buf("scores", scores)?,
        });
        Ok(())
    }
}

/// An encoder stack on the GPU.
pub struct Encoder {
    pub shape: EncoderShape,
    layers: Vec<Layer>,
}

impl Encoder {
    /// Loads `shape.layers` layers named by `names`.
    pub async fn load(ctx: &GpuContext, shape: EncoderShape, t: Tensors<'_>, read: &mut impl RangeReader, names: impl Fn(u32) -> LayerNames) -> Result<Self, ModelError> {
        let (h, i, qb) = (shape.hidden, shape.intermediate, shape.qkv_bias);
        let mut layers = Vec::with_capacity(shape.layers as usize);
        for l in 0..shape.layers {
            let n = names(l);
            layers.push(Layer {
                q: t.linear(ctx, read, &n.q, h, h, qb).await?,
                k: t.linear(ctx, read, &n.k, h, h, qb).await?,
                v: t.linear(ctx, read, &n.v, h, h, qb).await?,
                out: t.linear(ctx, read, &n.out, h, h, true).await?,
                norm1: t.layer_norm(ctx, read, &n.norm1, h).await?,
                up: t.linear(ctx, read, &n.up, i, h, true).await?,
                down: t.linear(ctx, read, &n.down, h, i, true).await?,
                norm2: t.layer_norm(ctx, read, &n.norm2, h).await?,
            });
        }
        Ok(Self { shape, layers })
    }

    /// Records the stack over `batch` sequences of `len` tokens (padded; `a.lengths` holds the
    /// real lengths), from `a.x` back into `a.x`. `causal` masks later tokens (CLIP's text tower).
    pub async fn encode(&self, ctx: &GpuContext, e: &mut wgpu::CommandEncoder, a: &Activations, batch: u32, len: u32, causal: bool) -> Result<(), ModelError> {
        let s = &self.shape;
        let tokens = batch * len;
        let (h, nh, ni) = (s.hidden, u64::from(tokens) * u64::from(s.hidden), u64::from(tokens) * u64::from(s.intermediate));
        let attn = Attention {
            batch,
            q_len: len,
            kv_len: len,
            heads: s.heads,
            kv_heads: s.heads,
            head_dim: s.head_dim,
            q_pos0: 0,
            causal,
            scale: 1.0 / (s.head_dim as f32).sqrt(),
        };
        for l in &self.layers {
            match s.placement {
                Placement::Post => {
                    for (lin, out) in [(&l.q, &a.q), (&l.k, &a.k), (&l.v, &a.v)] {
                        lin.encode(ctx, e, tokens, &a.x, &a.h, out).await?;
                    }
                    attn.encode(ctx, e, &a.q, &a.k, &a.v, &a.lengths, &a.scores, &a.attn).await?;
                    l.out.encode(ctx, e, tokens, &a.attn, &a.h, &a.q).await?;
                    Elementwise::Add.encode(ctx, e, nh, &a.q, &a.x, &a.x2).await?;
                    l.norm1.encode(ctx, e, s.eps, tokens, h, &a.x2, &a.x).await?;
                    l.up.encode(ctx, e, tokens, &a.x, &a.f1, &a.f2).await?;
                    s.activation.encode(ctx, e, ni, &a.f2, &a.f2, &a.f1).await?;
                    l.down.encode(ctx, e, tokens, &a.f1, &a.h, &a.q).await?;
                    Elementwise::Add.encode(ctx, e, nh, &a.q, &a.x, &a.x2).await?;
                    l.norm2.encode(ctx, e, s.eps, tokens, h, &a.x2, &a.x).await?;
                }
                Placement::Pre => {
                    l.norm1.encode(ctx, e, s.eps, tokens, h, &a.x, &a.x2).await?;
                    for (lin, out) in [(&l.q, &a.q), (&l.k, &a.k), (&l.v, &a.v)] {
                        lin.encode(ctx, e, tokens, &a.x2, &a.h, out).await?;
                    }
                    attn.encode(ctx, e, &a.q, &a.k, &a.v, &a.lengths, &a.scores, &a.attn).await?;
                    l.out.encode(ctx, e, tokens, &a.attn, &a.h, &a.q).await?;
                    Elementwise::Add.encode(ctx, e, nh, &a.q, &a.x, &a.x2).await?;
                    l.norm2.encode(ctx, e, s.eps, tokens, h, &a.x2, &a.h).await?;
                    l.up.encode(ctx, e, tokens, &a.h, &a.f1, &a.f2).await?;
                    s.activation.encode(ctx, e, ni, &a.f2, &a.f2, &a.f1).await?;
                    l.down.encode(ctx, e, tokens, &a.f1, &a.h, &a.q).await?;
                    Elementwise::Add.encode(ctx, e, nh, &a.q, &a.x2, &a.x).await?;
                }
            }
        }
        Ok(())
    }

    /// Compute dispatches `encode` records.
    pub fn dispatches(&self) -> u32 {
        self.layers.iter().map(|l| [&l.q, &l.k, &l.v, &l.out, &l.up, &l.down].iter().map(|lin| lin.dispatches()).sum::<u32>() + 6).sum()
    }

    /// Bytes of weights one pass reads (every matrix once).
    pub fn weight_bytes(&self) -> u64 {
        self.layers.iter().map(|l| [&l.q, &l.k, &l.v, &l.out, &l.up, &l.down].iter().map(|lin| lin.w.gpu_bytes()).sum::<u64>()).sum()
    }
}

/// Copies rows `rows[i]` of `x` (rows of `cols` f32 values) to row `i` of `y`: a [CLS] token of
/// each sequence, the masked positions, an end-of-text token.
pub fn copy_rows(e: &mut wgpu::CommandEncoder, x: &wgpu::Buffer, y: &wgpu::Buffer, cols: u32, rows: &[u64]) {
    let row_bytes = u64::from(cols) * 4;
    for (i, &r) in rows.iter().enumerate() {
        e.copy_buffer_to_buffer(x, r * row_bytes, y, i as u64 * row_bytes, row_bytes);
    }
}

/// Groups `n` inputs of `len` tokens each into passes of at most `max_tokens` tokens (at least
/// one input each): `(first, count)`.
pub fn fixed_passes(n: usize, len: u32, max_tokens: u32) -> Vec<(usize, usize)> {
    let per = (max_tokens / len.max(1)).max(1) as usize;
    (0..n).step_by(per).map(|first| (first, per.min(n - first))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_from_id2label_or_count() {
        let map: BTreeMap<String, String> = [("1".into(), "dog".into()), ("0".into(), "cat".into())].into();
        assert_eq!(labels(Some(&map), None).unwrap(), ["cat", "dog"]);
        assert_eq!(labels(None, Some(3)).unwrap(), ["LABEL_0", "LABEL_1", "LABEL_2"]);
        let gap: BTreeMap<String, String> = [("0".into(), "a".into()), ("5".into(), "b".into())].into();
        assert!(matches!(labels(Some(&gap), None), Err(ModelError::Config(_))));
        let word: BTreeMap<String, String> = [("x".into(), "a".into())].into();
        assert!(matches!(labels(Some(&word), None), Err(ModelError::Config(_))));
    }

    #[test]
    fn passes_cover_every_input_once() {
        assert_eq!(fixed_passes(5, 197, 1024), vec![(0, 5)]);
        assert_eq!(fixed_passes(12, 197, 1024), vec![(0, 5), (5, 5), (10, 2)]);
        assert_eq!(fixed_passes(3, 1214, 1024), vec![(0, 1), (1, 1), (2, 1)]);
        assert_eq!(fixed_passes(0, 10, 100), vec![]);
    }
}
