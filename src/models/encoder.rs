//! The transformer encoder stack shared by BERT, ViT, the Audio Spectrogram Transformer and both
//! CLIP towers, written once over the op set (`crate::backend`): per layer self-attention and a
//! two-layer MLP, each added back to the residual stream, with LayerNorm after each (BERT,
//! "post-LN") or before each (ViT, AST, CLIP, "pre-LN"). The models differ only in their
//! embeddings, their heads and their tensor names (`LayerNames`).
//!
//! Also here: what their loaders share — dense layers and LayerNorms on a backend, `config.json`
//! size checks and `id2label`.

use std::collections::BTreeMap;

use super::weights::Weights;
use crate::backend::{Activation, Backend, BatchAttention, Norm};
use crate::models::{ModelError, RangeReader};

/// A dense layer `y = x·Wᵀ (+ b)`.
pub struct Linear<B: Backend> {
    pub w: B::Matrix,
    pub b: Option<B::Vector>,
}

impl<B: Backend> Linear<B> {
    /// `{prefix}.weight` (rows, cols) and, when `bias`, `{prefix}.bias`.
    pub async fn load(be: &B, w: &mut Weights<'_, impl RangeReader>, prefix: &str, rows: u32, cols: u32, bias: bool) -> Result<Self, ModelError> {
        let m = w.matrix(be, &format!("{prefix}.weight"), rows, cols).await?;
        let b = if bias { Some(w.vector(be, &format!("{prefix}.bias"), rows).await?) } else { None };
        Ok(Self { w: m, b })
    }

    pub async fn forward(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor, ModelError> {
        be.linear(x, &self.w, self.b.as_ref()).await
    }

    /// `forward` plus `residual` (one kernel where the backend fuses it).
    pub async fn forward_add(&self, be: &mut B, x: &B::Tensor, residual: &B::Tensor) -> Result<B::Tensor, ModelError> {
        be.linear_add(x, &self.w, self.b.as_ref(), residual).await
    }
}

/// A LayerNorm's gain and bias (ModernBERT's have none).
pub struct LayerNorm<B: Backend> {
    pub g: B::Vector,
    pub b: Option<B::Vector>,
    pub eps: f32,
}

impl<B: Backend> LayerNorm<B> {
    /// `{prefix}.weight` and `{prefix}.bias`, `len` values each.
    pub async fn load(be: &B, w: &mut Weights<'_, impl RangeReader>, prefix: &str, len: u32, eps: f32) -> Result<Self, ModelError> {
        Self::load_with(be, w, prefix, len, eps, true).await
    }

    /// `{prefix}.weight` and, when `bias`, `{prefix}.bias`.
    pub async fn load_with(be: &B, w: &mut Weights<'_, impl RangeReader>, prefix: &str, len: u32, eps: f32, bias: bool) -> Result<Self, ModelError> {
        let g = w.vector(be, &format!("{prefix}.weight"), len).await?;
        let b = if bias { Some(w.vector(be, &format!("{prefix}.bias"), len).await?) } else { None };
        Ok(Self { g, b, eps })
    }

    pub async fn forward(&self, be: &mut B, x: &B::Tensor) -> Result<B::Tensor, ModelError> {
        be.norm(x, Norm::Layer { eps: self.eps }, &self.g, self.b.as_ref()).await
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
    pub activation: Activation,
    pub placement: Placement,
    /// Q, K and V have biases (ViT's and AST's `qkv_bias`; always in BERT and CLIP).
    pub qkv_bias: bool,
    /// With `qkv_bias`, K has one too (Whisper's `k_proj` has none).
    pub k_bias: bool,
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
            k_bias: qkv_bias,
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

/// The activation of a `hidden_act`.
pub(crate) fn activation(what: &str, name: &str) -> Result<Activation, ModelError> {
    match name {
        "gelu" => Ok(Activation::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
        "quick_gelu" => Ok(Activation::QuickGelu),
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

    /// MPNet: `encoder.layer.{l}.attention.attn.q`, `attention.LayerNorm`, `intermediate.dense`, …
    pub fn mpnet(l: u32) -> Self {
        let p = |s: &str| format!("encoder.layer.{l}.{s}");
        Self {
            q: p("attention.attn.q"),
            k: p("attention.attn.k"),
            v: p("attention.attn.v"),
            out: p("attention.attn.o"),
            norm1: p("attention.LayerNorm"),
            up: p("intermediate.dense"),
            down: p("output.dense"),
            norm2: p("output.LayerNorm"),
        }
    }

    /// DistilBERT: `transformer.layer.{l}.attention.q_lin`, `sa_layer_norm`, `ffn.lin1`, …
    pub fn distilbert(l: u32) -> Self {
        let p = |s: &str| format!("transformer.layer.{l}.{s}");
        Self {
            q: p("attention.q_lin"),
            k: p("attention.k_lin"),
            v: p("attention.v_lin"),
            out: p("attention.out_lin"),
            norm1: p("sa_layer_norm"),
            up: p("ffn.lin1"),
            down: p("ffn.lin2"),
            norm2: p("output_layer_norm"),
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

struct Layer<B: Backend> {
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    out: Linear<B>,
    norm1: LayerNorm<B>,
    up: Linear<B>,
    down: Linear<B>,
    norm2: LayerNorm<B>,
}

/// An encoder stack.
pub struct Encoder<B: Backend> {
    pub shape: EncoderShape,
    layers: Vec<Layer<B>>,
}

impl<B: Backend> Encoder<B> {
    /// Loads `shape.layers` layers named by `names`.
    pub async fn load(be: &B, w: &mut Weights<'_, impl RangeReader>, shape: EncoderShape, names: impl Fn(u32) -> LayerNames) -> Result<Self, ModelError> {
        let (h, i, qb, eps) = (shape.hidden, shape.intermediate, shape.qkv_bias, shape.eps);
        let mut layers = Vec::with_capacity(shape.layers as usize);
        for l in 0..shape.layers {
            let n = names(l);
            // Q, K and V multiply the same rows: held so that a backend may run them as one product.
            let qkv = w.matrices(be, &[&format!("{}.weight", n.q), &format!("{}.weight", n.k), &format!("{}.weight", n.v)], &[h, h, h], h).await?;
            let mut linears = Vec::with_capacity(3);
            for (m, name) in qkv.into_iter().zip([&n.q, &n.k, &n.v]) {
                let b = if qb && (shape.k_bias || name != &n.k) { Some(w.vector(be, &format!("{name}.bias"), h).await?) } else { None };
                linears.push(Linear { w: m, b });
            }
            let Ok([q, k, v]) = <[Linear<B>; 3]>::try_from(linears) else {
                return Err(ModelError::Config(format!("layer {l}: Q, K and V did not load as three matrices")));
            };
            layers.push(Layer {
                q,
                k,
                v,
                out: Linear::load(be, w, &n.out, h, h, true).await?,
                norm1: LayerNorm::load(be, w, &n.norm1, h, eps).await?,
                up: Linear::load(be, w, &n.up, i, h, true).await?,
                down: Linear::load(be, w, &n.down, h, i, true).await?,
                norm2: LayerNorm::load(be, w, &n.norm2, h, eps).await?,
            });
        }
        Ok(Self { shape, layers })
    }

    /// The stack over `x`, the rows of `batch`'s sequences. `causal` lets each token see only
    /// itself and the tokens before it (CLIP's text tower); `bias` is a relative position bias
    /// every layer adds to its attention scores (MPNet; `Backend::attention`).
    pub async fn forward(&self, be: &mut B, mut x: B::Tensor, batch: &B::Batch, causal: bool, bias: Option<&B::Vector>) -> Result<B::Tensor, ModelError> {
        let s = &self.shape;
        let a = BatchAttention { heads: s.heads, head_dim: s.head_dim, causal, scale: 1.0 / (s.head_dim as f32).sqrt(), window: None };
        for l in &self.layers {
            // Each sublayer's output projection adds the residual `r` in its epilogue.
            let attend = async |be: &mut B, h: &B::Tensor, r: &B::Tensor| -> Result<B::Tensor, ModelError> {
                let qkv = be.linear_many(h, &[(&l.q.w, l.q.b.as_ref()), (&l.k.w, l.k.b.as_ref()), (&l.v.w, l.v.b.as_ref())]).await?;
                let [q, k, v] = &qkv[..] else { return Err(ModelError::Config("Q, K and V: not three products".into())) };
                let attn = be.attention(q, k, v, batch, a, bias).await?;
                l.out.forward_add(be, &attn, r).await
            };
            let mlp = async |be: &mut B, h: &B::Tensor, r: &B::Tensor| -> Result<B::Tensor, ModelError> {
                let up = l.up.forward(be, h).await?;
                let up = be.activation(&up, s.activation).await?;
                l.down.forward_add(be, &up, r).await
            };
            x = match s.placement {
                Placement::Post => {
                    let sum = attend(be, &x, &x).await?;
                    let x = l.norm1.forward(be, &sum).await?;
                    let sum = mlp(be, &x, &x).await?;
                    l.norm2.forward(be, &sum).await?
                }
                Placement::Pre => {
                    let h = l.norm1.forward(be, &x).await?;
                    let x = attend(be, &h, &x).await?;
                    let h = l.norm2.forward(be, &x).await?;
                    mlp(be, &h, &x).await?
                }
            };
        }
        Ok(x)
    }

    /// Bytes of weights one pass reads (every matrix once, as the backend holds it).
    pub fn weight_bytes(&self, be: &B) -> u64 {
        self.layers.iter().flat_map(|l| [&l.q, &l.k, &l.v, &l.out, &l.up, &l.down]).map(|lin| be.matrix_bytes(&lin.w)).sum()
    }

    /// The products of one pass over `tokens` rows, as (m, k, n): Q, K and V (one product where
    /// the backend joins them), the attention output, up and down, once per layer.
    pub fn dense_shapes(&self, tokens: usize) -> Vec<(usize, usize, usize)> {
        let (h, i) = (self.shape.hidden as usize, self.shape.intermediate as usize);
        let layer = [(tokens, h, 3 * h), (tokens, h, h), (tokens, h, i), (tokens, i, h)];
        (0..self.layers.len()).flat_map(|_| layer).collect()
    }
}

/// L2-normalised rows of `x` (n rows): each row a sequence of one for the mean-pool op.
pub async fn l2_normalize<B: Backend>(be: &mut B, x: &B::Tensor, n: u32) -> Result<B::Tensor, ModelError> {
    let ones = be.batch(&vec![1; n as usize])?;
    be.mean_pool(x, &ones, true).await
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
