//! ModernBERT's encoder stack (answerdotai/ModernBERT, gte-modernbert, modernbert-embed): token
//! embeddings and a LayerNorm (no positions), then pre-norm layers — fused Wqkv, rotary
//! attention that is global every `global_attn_every_n_layers` layers (RoPE base
//! `global_rope_theta`) and local elsewhere (a bidirectional window of `local_attention` / 2 on
//! each side, base `local_rope_theta`), GeGLU MLP — and a final LayerNorm; no biases unless the
//! config asks. The embeddings, pooling and heads are `bert::Bert`'s, which holds this stack for
//! `model_type` modernbert.

use serde::Deserialize;

use super::encoder::{LayerNorm, Linear, MAX_HIDDEN, MAX_INTERMEDIATE, MAX_LAYERS, MAX_POSITIONS};
use super::weights::Weights;
use crate::backend::{Activation, Backend, BatchAttention};
use crate::gpu::ops::rope::{self, RopeLayout, RopeScaling};
use crate::models::{ModelError, RangeReader};

/// The fields of a ModernBERT `config.json` beyond BERT's (transformers 5 and older layouts).
#[derive(Deserialize)]
struct RawConfig {
    vocab_size: Option<u64>,
    hidden_size: Option<u64>,
    intermediate_size: Option<u64>,
    num_hidden_layers: Option<u64>,
    num_attention_heads: Option<u64>,
    max_position_embeddings: Option<u64>,
    norm_eps: Option<f64>,
    #[serde(default)]
    norm_bias: bool,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default)]
    mlp_bias: bool,
    hidden_activation: Option<String>,
    classifier_activation: Option<String>,
    #[serde(default)]
    classifier_bias: bool,
    classifier_pooling: Option<String>,
    decoder_bias: Option<bool>,
    global_attn_every_n_layers: Option<u64>,
    local_attention: Option<u64>,
    layer_types: Option<Vec<String>>,
    global_rope_theta: Option<f32>,
    local_rope_theta: Option<f32>,
    /// transformers 5: `{ full_attention: { rope_theta }, sliding_attention: { rope_theta } }`.
    rope_parameters: Option<serde_json::Value>,
}

/// How a sequence-classification head pools the last hidden state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClassifierPooling {
    /// The first token's row.
    Cls,
    /// The mean of the real tokens' rows.
    Mean,
}

/// ModernBERT's hyperparameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ModernConfig {
    pub vocab: u32,
    pub hidden: u32,
    pub intermediate: u32,
    pub layers: u32,
    pub heads: u32,
    pub max_positions: u32,
    pub eps: f32,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    pub activation: Activation,
    pub classifier_activation: Activation,
    pub classifier_bias: bool,
    pub classifier_pooling: ClassifierPooling,
    pub decoder_bias: bool,
    /// Per layer: the local window (keys nearer than it on either side), `None` on global layers.
    pub windows: Vec<Option<u32>>,
    pub global_theta: f32,
    pub local_theta: f32,
}

fn activation(name: Option<&str>, what: &str) -> Result<Activation, ModelError> {
    match name.unwrap_or("gelu") {
        "gelu" => Ok(Activation::GeluErf),
        "gelu_new" | "gelu_pytorch_tanh" => Ok(Activation::GeluTanh),
        "silu" => Ok(Activation::Silu),
        "relu" => Ok(Activation::Relu),
        other => Err(ModelError::Config(format!("config.json: {what} {other:?} is not supported (gelu, gelu_pytorch_tanh, silu, relu)"))),
    }
}

impl ModernConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::Config(format!("config.json: {m}"));
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let size = |name: &str, v: Option<u64>, default: Option<u64>, max: u64| super::encoder::size("config.json", name, v.or(default), max);
        let hidden = size("hidden_size", raw.hidden_size, None, MAX_HIDDEN)?;
        let heads = size("num_attention_heads", raw.num_attention_heads, None, MAX_HIDDEN)?;
        if !hidden.is_multiple_of(heads) || !(hidden / heads).is_multiple_of(2) {
            return Err(bad(format!("hidden_size {hidden} over {heads} heads: an even head size expected")));
        }
        let layers = size("num_hidden_layers", raw.num_hidden_layers, None, MAX_LAYERS)?;
        let eps = raw.norm_eps.unwrap_or(1e-5);
        if !(eps.is_finite() && (0.0..=1.0).contains(&eps)) {
            return Err(bad(format!("norm_eps = {eps} is not in [0, 1]")));
        }
        // Local layers see keys within local_attention / 2 on each side (transformers'
        // bidirectional sliding window: |q − k| ≤ local_attention / 2).
        let half = size("local_attention", raw.local_attention, Some(128), MAX_POSITIONS)? / 2;
        let local: Vec<bool> = match &raw.layer_types {
            Some(types) if types.len() != layers as usize => return Err(bad(format!("layer_types has {} entries for {layers} layers", types.len()))),
            Some(types) => types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(false),
                    "sliding_attention" => Ok(true),
                    other => Err(bad(format!("layer type {other:?} is not supported (full_attention, sliding_attention)"))),
                })
                .collect::<Result<_, _>>()?,
            None => {
                let every = size("global_attn_every_n_layers", raw.global_attn_every_n_layers, Some(3), MAX_LAYERS)?;
                (0..layers).map(|l| !l.is_multiple_of(every)).collect()
            }
        };
        let theta = |kind: &str, flat: Option<f32>, default: f32| -> Result<f32, ModelError> {
            let nested = raw.rope_parameters.as_ref().and_then(|p| p.get(kind)).and_then(|p| p.get("rope_theta")).and_then(serde_json::Value::as_f64).map(|v| v as f32);
            let kind_type = raw.rope_parameters.as_ref().and_then(|p| p.get(kind)).and_then(|p| p.get("rope_type")).and_then(serde_json::Value::as_str);
            if kind_type.is_some_and(|t| t != "default") {
                return Err(bad(format!("RoPE type {kind_type:?} for {kind} is not supported (default)")));
            }
            let v = nested.or(flat).unwrap_or(default);
            if v.is_finite() && v > 0.0 { Ok(v) } else { Err(bad(format!("RoPE base {v}"))) }
        };
        Ok(Self {
            vocab: size("vocab_size", raw.vocab_size, None, super::encoder::MAX_VOCAB)?,
            hidden,
            intermediate: size("intermediate_size", raw.intermediate_size, None, MAX_INTERMEDIATE)?,
            layers,
            heads,
            max_positions: size("max_position_embeddings", raw.max_position_embeddings, Some(8192), MAX_POSITIONS)?,
            eps: eps as f32,
            norm_bias: raw.norm_bias,
            attention_bias: raw.attention_bias,
            mlp_bias: raw.mlp_bias,
            activation: activation(raw.hidden_activation.as_deref(), "hidden_activation")?,
            classifier_activation: activation(raw.classifier_activation.as_deref(), "classifier_activation")?,
            classifier_bias: raw.classifier_bias,
            classifier_pooling: match raw.classifier_pooling.as_deref().unwrap_or("cls") {
                "cls" => ClassifierPooling::Cls,
                "mean" => ClassifierPooling::Mean,
                other => return Err(bad(format!("classifier_pooling {other:?} is not supported (cls, mean)"))),
            },
            decoder_bias: raw.decoder_bias.unwrap_or(true),
            windows: local.into_iter().map(|l| l.then_some(half + 1)).collect(),
            global_theta: theta("full_attention", raw.global_rope_theta, 160_000.0)?,
            local_theta: theta("sliding_attention", raw.local_rope_theta, 10_000.0)?,
        })
    }

    pub fn head_dim(&self) -> u32 {
        self.hidden / self.heads
    }
}

struct Layer<B: Backend> {
    /// None on layer 0 (its input is the normed embeddings).
    attn_norm: Option<LayerNorm<B>>,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    out: Linear<B>,
    mlp_norm: LayerNorm<B>,
    /// Wi's two halves: the activated input and its gate.
    input: Linear<B>,
    gate: Linear<B>,
    down: Linear<B>,
}

/// The layers and the final norm.
pub struct ModernStack<B: Backend> {
    pub config: ModernConfig,
    layers: Vec<Layer<B>>,
    final_norm: LayerNorm<B>,
    /// RoPE's inverse frequencies of the global and of the local layers.
    inv_freq: [Vec<f32>; 2],
}

/// The `N` dense layers of `rows` rows each that a fused weight `name` (and its bias) holds in
/// turn.
async fn parts<B: Backend, const N: usize>(be: &B, w: &mut Weights<'_, impl RangeReader>, name: &str, rows: u32, cols: u32, bias: bool) -> Result<[Linear<B>; N], ModelError> {
    let matrices = w.matrix_parts(be, &format!("{name}.weight"), [rows; N], cols).await?;
    let biases = if bias { Some(w.float_values(&format!("{name}.bias"), &[rows * N as u32]).await?) } else { None };
    let mut out = Vec::with_capacity(N);
    for (i, m) in matrices.into_iter().enumerate() {
        let b = biases.as_ref().map(|v| be.vector(&v[i * rows as usize..(i + 1) * rows as usize])).transpose()?;
        out.push(Linear { w: m, b });
    }
    out.try_into().map_err(|_| ModelError::Config(format!("{name}: not {N} parts")))
}

impl<B: Backend> ModernStack<B> {
    pub async fn load(be: &B, w: &mut Weights<'_, impl RangeReader>, config: ModernConfig) -> Result<Self, ModelError> {
        let c = &config;
        let (h, i) = (c.hidden, c.intermediate);
        let mut layers = Vec::with_capacity(c.layers as usize);
        for l in 0..c.layers {
            let p = |s: &str| format!("layers.{l}.{s}");
            let [q, k, v] = parts(be, w, &p("attn.Wqkv"), h, h, c.attention_bias).await?;
            let [input, gate] = parts(be, w, &p("mlp.Wi"), i, h, c.mlp_bias).await?;
            layers.push(Layer {
                attn_norm: if l == 0 { None } else { Some(LayerNorm::load_with(be, w, &p("attn_norm"), h, c.eps, c.norm_bias).await?) },
                q,
                k,
                v,
                out: Linear::load(be, w, &p("attn.Wo"), h, h, c.attention_bias).await?,
                mlp_norm: LayerNorm::load_with(be, w, &p("mlp_norm"), h, c.eps, c.norm_bias).await?,
                input,
                gate,
                down: Linear::load(be, w, &p("mlp.Wo"), h, i, c.mlp_bias).await?,
            });
        }
        let final_norm = LayerNorm::load_with(be, w, "final_norm", h, c.eps, c.norm_bias).await?;
        let hd = c.head_dim();
        let inv_freq = [rope::inv_freq(hd, c.global_theta, RopeScaling::None), rope::inv_freq(hd, c.local_theta, RopeScaling::None)];
        Ok(Self { config, layers, final_norm, inv_freq })
    }

    /// The layers and the final norm over `x`, the normed embeddings of `batch`'s rows.
    pub async fn forward(&self, be: &mut B, mut x: B::Tensor, batch: &B::Batch) -> Result<B::Tensor, ModelError> {
        let c = &self.config;
        let (heads, hd) = (c.heads, c.head_dim());
        let tables = [be.batch_rope_table(&self.inv_freq[0], batch)?, be.batch_rope_table(&self.inv_freq[1], batch)?];
        for (l, window) in self.layers.iter().zip(&c.windows) {
            let normed;
            let h = match &l.attn_norm {
                Some(norm) => {
                    normed = norm.forward(be, &x).await?;
                    &normed
                }
                None => &x,
            };
            let qkv = be.linear_many(h, &[(&l.q.w, l.q.b.as_ref()), (&l.k.w, l.k.b.as_ref()), (&l.v.w, l.v.b.as_ref())]).await?;
            let [q, k, v] = <[B::Tensor; 3]>::try_from(qkv).map_err(|_| ModelError::Config("Q, K and V: not three products".into()))?;
            let table = &tables[usize::from(window.is_some())];
            let (q, k) = be.rope_qk(q, k, table, RopeLayout::NeoX, heads, heads, hd).await?;
            let a = BatchAttention { heads, head_dim: hd, causal: false, scale: 1.0 / (hd as f32).sqrt(), window: *window };
            let attn = be.attention(&q, &k, &v, batch, a, None).await?;
            x = l.out.forward_add(be, &attn, &x).await?;
            let h = l.mlp_norm.forward(be, &x).await?;
            let input = l.input.forward(be, &h).await?;
            let gate = l.gate.forward(be, &h).await?;
            let mlp = be.gated(&input, &gate, c.activation).await?;
            x = l.down.forward_add(be, &mlp, &x).await?;
        }
        self.final_norm.forward(be, &x).await
    }

    /// Bytes of weights one pass reads.
    pub fn weight_bytes(&self, be: &B) -> u64 {
        self.layers.iter().flat_map(|l| [&l.q, &l.k, &l.v, &l.out, &l.input, &l.gate, &l.down]).map(|lin| be.matrix_bytes(&lin.w)).sum()
    }

    /// The products of one pass over `tokens` rows, as (m, k, n).
    pub fn dense_shapes(&self, tokens: usize) -> Vec<(usize, usize, usize)> {
        let (h, i) = (self.config.hidden as usize, self.config.intermediate as usize);
        let layer = [(tokens, h, 3 * h), (tokens, h, h), (tokens, h, 2 * i), (tokens, i, h)];
        (0..self.layers.len()).flat_map(|_| layer).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_config_layouts() {
        let old = br#"{"model_type":"modernbert","vocab_size":300,"hidden_size":32,"intermediate_size":40,"num_hidden_layers":4,
            "num_attention_heads":4,"global_attn_every_n_layers":3,"local_attention":8,"global_rope_theta":160000.0,"local_rope_theta":10000.0}"#;
        let c = ModernConfig::from_json(old).unwrap();
        assert_eq!(c.windows, vec![None, Some(5), Some(5), None]);
        assert_eq!((c.global_theta, c.local_theta, c.activation), (160_000.0, 10_000.0, Activation::GeluErf));
        let new = br#"{"model_type":"modernbert","vocab_size":300,"hidden_size":32,"intermediate_size":40,"num_hidden_layers":2,
            "num_attention_heads":4,"local_attention":8,"layer_types":["sliding_attention","full_attention"],
            "rope_parameters":{"full_attention":{"rope_theta":1000.0,"rope_type":"default"},"sliding_attention":{"rope_theta":50.0,"rope_type":"default"}}}"#;
        let c = ModernConfig::from_json(new).unwrap();
        assert_eq!(c.windows, vec![Some(5), None]);
        assert_eq!((c.global_theta, c.local_theta), (1000.0, 50.0));
    }
}
