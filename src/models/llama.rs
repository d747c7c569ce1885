//! The Llama family (Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral with its sliding window, Qwen2
//! with its Q/K/V biases, Qwen3 with its per-head q/k RMSNorms and free head_dim, SmolLM3 with its
//! layers without RoPE, Phi-3/3.5/4-mini with fused Q/K/V and gate/up weights, LongRoPE and
//! partial rotary dimensions) from GGUF or the hub's `config.json` + safetensors: RMSNorm, rotary
//! attention with grouped-query heads over a KV cache, SwiGLU; on any `Backend`.

use crate::backend::{Activation, Backend, CachedAttention, Norm};
use crate::formats::{GgufMetadata, TensorTable};
use crate::generate::{Next, Pick};
use crate::gpu::ops::rope::{self, RopeLayout, RopeScaling};
use super::decoder::{GgufKeys, HubSizes, sliding_layers};
use super::weights::Weights;

pub use super::{ModelError, RangeReader};


/// How a checkpoint names its tensors; the GGUF spelling (`attn_q.weight`) is the one the
/// loaders ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// GGUF: `blk.{l}.attn_q.weight`, `token_embd.weight`, `output.weight`.
    Gguf,
    /// The hub's safetensors: `model.layers.{l}.self_attn.q_proj.weight`, `lm_head.weight`.
    Hub,
}

impl Naming {
    /// The file's name for tensor `part` (GGUF spelling) of layer `layer`, or of the model.
    pub fn name(self, layer: Option<u32>, part: &str) -> String {
        match self {
            Naming::Gguf => layer.map_or_else(|| part.to_owned(), |l| format!("blk.{l}.{part}")),
            Naming::Hub => {
                let (base, suffix) = part.split_once('.').unwrap_or((part, "weight"));
                let hub = match base {
                    "token_embd" => "model.embed_tokens",
                    "output_norm" => "model.norm",
                    "output" => "lm_head",
                    "attn_norm" => "input_layernorm",
                    "ffn_norm" => "post_attention_layernorm",
                    "attn_q" => "self_attn.q_proj",
                    "attn_k" => "self_attn.k_proj",
                    "attn_v" => "self_attn.v_proj",
                    "attn_output" => "self_attn.o_proj",
                    "attn_q_norm" => "self_attn.q_norm",
                    "attn_k_norm" => "self_attn.k_norm",
                    "attn_qkv" => "self_attn.qkv_proj",
                    "ffn_gate_up" => "mlp.gate_up_proj",
                    "ffn_gate" => "mlp.gate_proj",
                    "ffn_up" => "mlp.up_proj",
                    "ffn_down" => "mlp.down_proj",
                    other => other,
                };
                layer.map_or_else(|| format!("{hub}.{suffix}"), |l| format!("model.layers.{l}.{hub}.{suffix}"))
            }
        }
    }
}

/// The model types of the hub's `config.json` this file loads.
pub const HUB_MODEL_TYPES: &[&str] = &["llama", "qwen2", "qwen3", "mistral", "smollm3", "phi3"];
/// The GGUF architectures this file loads.
pub const GGUF_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3"];

/// LongRoPE (Phi-3, Phi-3.5, Phi-4-mini): the frequencies divided per dimension by short or
/// long factors, and cos and sin scaled by an attention factor.
#[derive(Clone, Debug, PartialEq)]
pub struct LongRope {
    /// `[short, long]` factors of a hub config (rot_dim / 2 each); a GGUF holds them as the
    /// tensors `rope_factors_short.weight` and `rope_factors_long.weight`.
    pub factors: Option<[Vec<f32>; 2]>,
    /// Positions the model was pretrained for: past them the long factors apply.
    pub original_context: u32,
    pub attention_factor: f32,
    /// Long factors for a sequence longer than `original_context`, as transformers chooses them
    /// (its generation recomputes the KV cache when a sequence passes that length; so does
    /// `Decoder`); else, as llama.cpp does for a GGUF, for a KV cache longer than it.
    pub by_length: bool,
}

/// How one layer attends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerAttention {
    /// Whether q and k are rotated (SmolLM3 skips RoPE on every fourth layer).
    pub rope: bool,
    /// Sliding window: each query sees its last `window` keys (Mistral; Qwen2/SmolLM3 where the
    /// config turns it on).
    pub window: Option<u32>,
}

/// Hyperparameters, from GGUF `{arch}.*` metadata or the hub's `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `llama`, `qwen2`, `qwen3`, `mistral` or `smollm3`.
    pub arch: String,
    pub n_layers: u32,
    pub hidden: u32,
    pub ffn: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Dimensions of each head RoPE rotates: head_dim, or a part (`partial_rotary_factor`).
    pub rot_dim: u32,
    pub long_rope: Option<LongRope>,
    /// Which dimensions RoPE pairs: GGUF Llama's Q/K rows are permuted for adjacent pairs by
    /// llama.cpp's converter; the hub's files and GGUF Qwen2 pair `i` with `i + head_dim/2`.
    pub rope_layout: RopeLayout,
    pub rms_eps: f32,
    /// Positions the model was trained for.
    pub context: u32,
    pub naming: Naming,
    /// Per layer: RoPE or not, sliding window or not.
    pub layers: Vec<LayerAttention>,
}

/// `rope_scaling` (before transformers 5) or `rope_parameters` of a `config.json`.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub(crate) struct HubRope {
    rope_type: Option<String>,
    /// The older spelling of `rope_type` (transformers 5 writes both).
    #[serde(rename = "type")]
    legacy_type: Option<String>,
    pub(crate) rope_theta: Option<f32>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<f32>,
    short_factor: Option<Vec<f32>>,
    long_factor: Option<Vec<f32>>,
    attention_factor: Option<f32>,
    partial_rotary_factor: Option<f32>,
}

impl HubRope {
    fn kind(&self) -> Option<&str> {
        self.rope_type.as_deref().or(self.legacy_type.as_deref())
    }

    fn is_long_rope(&self) -> bool {
        matches!(self.kind(), Some("longrope" | "su"))
    }

    /// The scaling these parameters name (`None`/`default`, `linear`, `llama3`); an error message
    /// otherwise.
    pub(crate) fn scaling(&self) -> Result<RopeScaling, String> {
        Ok(match self.kind() {
            None | Some("default") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear { factor: self.factor.filter(|f| f.is_finite() && *f > 0.0).ok_or("linear RoPE scaling without a positive factor")? },
            Some("llama3") => match (self.factor, self.low_freq_factor, self.high_freq_factor, self.original_max_position_embeddings) {
                (Some(factor), Some(low_freq_factor), Some(high_freq_factor), Some(original_max_position)) if high_freq_factor > low_freq_factor => {
                    RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position }
                }
                _ => return Err("llama3 RoPE scaling needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings".into()),
            },
            Some(other) => return Err(format!("RoPE scaling {other:?} is not supported (linear, llama3)")),
        })
    }
}

/// The fields of a Llama-family `config.json` this runtime reads.
#[derive(Debug, serde::Deserialize)]
struct HubConfig {
    #[serde(flatten)]
    sizes: HubSizes,
    rope_theta: Option<f32>,
    rope_scaling: Option<HubRope>,
    rope_parameters: Option<HubRope>,
    hidden_act: Option<String>,
    #[serde(default)]
    mlp_bias: bool,
    /// Phi-3: positions it was pretrained for (LongRoPE), the rotated part of each head.
    original_max_position_embeddings: Option<u32>,
    partial_rotary_factor: Option<f32>,
    /// The sliding window: Mistral's on every layer; Qwen2's, Qwen3's and SmolLM3's where
    /// `use_sliding_window` and the layer types say.
    sliding_window: Option<u32>,
    use_sliding_window: Option<bool>,
    /// Qwen2/Qwen3 before transformers 5 wrote `layer_types`: layers from this one on slide.
    max_window_layers: Option<u32>,
    /// `full_attention` or `sliding_attention` per layer (transformers 5).
    layer_types: Option<Vec<String>>,
    /// SmolLM3: per layer, 1 where RoPE is applied, 0 where not; else every
    /// `no_rope_layer_interval`-th layer has none.
    no_rope_layers: Option<Vec<u8>>,
    no_rope_layer_interval: Option<u32>,
}

impl HubConfig {
    /// Each layer's RoPE and window, as transformers derives them from these fields.
    fn layers(&self) -> Result<Vec<LayerAttention>, String> {
        let n = self.sizes.num_hidden_layers as usize;
        let rope: Vec<bool> = match (&self.no_rope_layers, self.sizes.model_type.as_str()) {
            (Some(flags), "smollm3") if flags.len() == n && flags.iter().all(|&f| f <= 1) => flags.iter().map(|&f| f == 1).collect(),
            (Some(flags), "smollm3") => return Err(format!("no_rope_layers {flags:?}: one 0 or 1 per layer of {n}")),
            (None, "smollm3") => {
                let every = self.no_rope_layer_interval.unwrap_or(4);
                if every == 0 {
                    return Err("no_rope_layer_interval 0".into());
                }
                (0..n as u32).map(|l| !(l + 1).is_multiple_of(every)).collect()
            }
            _ => vec![true; n],
        };
        // Mistral slides whenever it has a window; the others only where `use_sliding_window`.
        let on = if matches!(self.sizes.model_type.as_str(), "mistral" | "phi3") { self.use_sliding_window != Some(false) } else { self.use_sliding_window == Some(true) };
        let window = self.sliding_window.filter(|_| on);
        if window == Some(0) {
            return Err("sliding_window 0".into());
        }
        let sliding: Vec<bool> = match &self.layer_types {
            Some(types) => sliding_layers(types, n)?,
            None => match self.sizes.model_type.as_str() {
                "mistral" | "llama" | "phi3" => vec![true; n],
                "smollm3" => rope.iter().map(|r| !r).collect(),
                _ => (0..n as u32).map(|l| l >= self.max_window_layers.unwrap_or(28)).collect(),
            },
        };
        Ok(rope.into_iter().zip(sliding).map(|(rope, sliding)| LayerAttention { rope, window: window.filter(|_| sliding) }).collect())
    }
}

impl HubConfig {
    /// LongRoPE's parameters as transformers reads them: `original_max_position_embeddings` from
    /// the RoPE parameters or the config, the factor `max_position_embeddings / original` unless
    /// given, the attention factor √(1 + ln factor / ln original) unless given (1 for a factor
    /// ≤ 1), and rot_dim / 2 short and long factors.
    fn long_rope(&self, rope: &HubRope, rot_dim: u32) -> Result<LongRope, String> {
        let original = rope.original_max_position_embeddings.map(|v| v as u32).or(self.original_max_position_embeddings).filter(|&v| v > 1).ok_or("LongRoPE without original_max_position_embeddings")?;
        let factor = rope.factor.unwrap_or(self.sizes.max_position_embeddings as f32 / original as f32);
        let attention_factor = match rope.attention_factor {
            Some(a) => a,
            None if factor <= 1.0 => 1.0,
            None => (1.0 + f64::from(factor).ln() / f64::from(original).ln()).sqrt() as f32,
        };
        let half = (rot_dim / 2) as usize;
        let factors = |v: &Option<Vec<f32>>, what: &str| match v {
            Some(v) if v.len() == half && v.iter().all(|f| f.is_finite() && *f > 0.0) => Ok(v.clone()),
            _ => Err(format!("LongRoPE {what}: {half} positive values expected")),
        };
        if !(attention_factor.is_finite() && attention_factor > 0.0) {
            return Err(format!("LongRoPE attention factor {attention_factor}"));
        }
        Ok(LongRope { factors: Some([factors(&rope.short_factor, "short_factor")?, factors(&rope.long_factor, "long_factor")?]), original_context: original, attention_factor, by_length: true })
    }
}

impl LlamaConfig {
    /// The configuration of a hub checkpoint's `config.json` and the KV-cache capacity (as
    /// `with_context`).
    pub fn from_hub(config_json: &[u8], context: Option<u32>) -> Result<(Self, u32), ModelError> {
        let bad = |what: String| ModelError::Config(format!("config.json: {what}"));
        let c: HubConfig = serde_json::from_slice(config_json).map_err(|e| bad(e.to_string()))?;
        if !HUB_MODEL_TYPES.contains(&c.sizes.model_type.as_str()) {
            return Err(bad(format!("model_type {:?} is not a Llama-family model ({})", c.sizes.model_type, HUB_MODEL_TYPES.join(", "))));
        }
        if c.hidden_act.as_deref().is_some_and(|a| a != "silu") || c.mlp_bias {
            return Err(bad(format!("activation {:?}{} is not supported", c.hidden_act, if c.mlp_bias { " with MLP biases" } else { "" })));
        }
        let layers = c.layers().map_err(bad)?;
        let rope = c.rope_parameters.clone().or(c.rope_scaling.clone()).unwrap_or_default();
        let heads = c.sizes.num_attention_heads;
        let head_dim = c.sizes.head_dim.unwrap_or_else(|| c.sizes.hidden_size.checked_div(heads).unwrap_or(0));
        let partial = rope.partial_rotary_factor.or(c.partial_rotary_factor).unwrap_or(1.0);
        if !(partial > 0.0 && partial <= 1.0) {
            return Err(bad(format!("partial_rotary_factor {partial}")));
        }
        // As transformers: int(head_dim · factor).
        let rot_dim = (f64::from(head_dim) * f64::from(partial)) as u32;
        let (rope_scaling, long_rope) = if rope.is_long_rope() {
            (RopeScaling::None, Some(c.long_rope(&rope, rot_dim).map_err(bad)?))
        } else {
            (rope.scaling().map_err(bad)?, None)
        };
        let config = Self {
            arch: c.sizes.model_type,
            n_layers: c.sizes.num_hidden_layers,
            hidden: c.sizes.hidden_size,
            ffn: c.sizes.intermediate_size,
            heads,
            kv_heads: c.sizes.num_key_value_heads.unwrap_or(heads),
            head_dim,
            vocab: c.sizes.vocab_size,
            rope_theta: rope.rope_theta.or(c.rope_theta).unwrap_or(10_000.0),
            rope_scaling,
            rot_dim,
            long_rope,
            rope_layout: RopeLayout::NeoX,
            rms_eps: c.sizes.rms_norm_eps,
            context: c.sizes.max_position_embeddings,
            naming: Naming::Hub,
            layers,
        };
        config.check()?;
        Ok(config.with_context(context))
    }

    /// `(self, capacity)`: the KV cache's capacity for `context` (`decoder::capacity`).
    fn with_context(self, context: Option<u32>) -> (Self, u32) {
        let capacity = super::decoder::capacity(self.context, context);
        (self, capacity)
    }

    /// Sizes that fit together (the kernels and the loaders rely on them).
    fn check(&self) -> Result<(), ModelError> {
        let sizes = [self.n_layers, self.hidden, self.ffn, self.heads, self.kv_heads, self.head_dim, self.vocab, self.context];
        let ok = sizes.iter().all(|&v| v > 0) && self.n_layers <= 1024 && self.heads.is_multiple_of(self.kv_heads) && self.head_dim.is_multiple_of(2) && self.layers.len() == self.n_layers as usize;
        let rope = self.rot_dim > 0 && self.rot_dim.is_multiple_of(2) && self.rot_dim <= self.head_dim;
        let finite = self.rope_theta.is_finite() && self.rope_theta > 0.0 && self.rms_eps.is_finite() && self.rms_eps >= 0.0;
        let ok = ok && rope;
        if !ok || !finite {
            return Err(ModelError::Config(format!("inconsistent hyperparameters {self:?}")));
        }
        Ok(())
    }

    pub fn from_gguf(meta: &GgufMetadata) -> Result<Self, ModelError> {
        let arch = meta.get_str("general.architecture").ok_or_else(|| ModelError::Config("no general.architecture".into()))?;
        // llama.cpp's converter permutes Llama's (and Mistral's, SmolLM3's) Q/K rows for
        // adjacent-pair RoPE; Qwen2's it leaves as they are (llama.cpp runs it with NeoX RoPE).
        let rope_layout = match arch {
            "llama" | "mistral" | "smollm3" => RopeLayout::Normal,
            "qwen2" | "qwen3" | "phi3" => RopeLayout::NeoX,
            other => return Err(ModelError::Config(format!("GGUF architecture {other:?} is not supported ({})", GGUF_ARCHITECTURES.join(", ")))),
        };
        let keys = GgufKeys { meta, arch };
        let get = |key: &str| keys.required(key);
        let optional = |key: &str| keys.optional(key);
        let hidden = get("embedding_length")?;
        let heads = get("attention.head_count")?;
        let kv_heads = optional("attention.head_count_kv")?.unwrap_or(heads);
        let vocab = keys.vocab()?;
        let rope_scaling = match meta.get_str(&format!("{arch}.rope.scaling.type")) {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: keys.float("rope.scaling.factor").filter(|f| *f > 0.0).ok_or_else(|| ModelError::Config("linear RoPE scaling without a factor".into()))?,
            },
            Some(other) => return Err(ModelError::Config(format!("RoPE scaling {other:?} is not supported (linear; llama3 comes as rope_freqs)"))),
        };
        let n_layers = get("block_count")?;
        let head_dim = optional("attention.key_length")?.unwrap_or(hidden / heads);
        // Phi-3's LongRoPE: factor tensors (read at load), llama.cpp's choice by the context.
        let long_rope = match (arch, optional("rope.scaling.original_context_length")?) {
            ("phi3", Some(0)) => return Err(ModelError::Config(format!("{arch}.rope.scaling.original_context_length 0"))),
            ("phi3", Some(original_context)) => {
                Some(LongRope { factors: None, original_context, attention_factor: keys.float("rope.scaling.attn_factor").unwrap_or(1.0), by_length: false })
            }
            _ => None,
        };
        // llama.cpp writes no sliding window for these architectures and runs none (it turns
        // Phi-3's off); SmolLM3's
        // layers without RoPE are every fourth, as llama.cpp fixes them (no metadata key).
        let layers = (0..n_layers).map(|l| LayerAttention { rope: arch != "smollm3" || !(l + 1).is_multiple_of(4), window: None }).collect();
        let config = Self {
            arch: arch.to_owned(),
            n_layers,
            hidden,
            ffn: get("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim,
            vocab,
            rope_theta: keys.float("rope.freq_base").unwrap_or(10_000.0),
            rope_scaling,
            rot_dim: optional("rope.dimension_count")?.unwrap_or(head_dim),
            long_rope,
            rope_layout,
            rms_eps: keys.float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
            context: get("context_length")?,
            naming: Naming::Gguf,
            layers,
        };
        config.check()?;
        Ok(config)
    }

    /// The file's name of tensor `part` (GGUF spelling) of layer `layer`.
    pub fn name(&self, layer: u32, part: &str) -> String {
        self.naming.name(Some(layer), part)
    }

    /// The file's name of model-level tensor `part` (GGUF spelling).
    pub fn model_name(&self, part: &str) -> String {
        self.naming.name(None, part)
    }

    /// Whether the file has Q/K/V biases (Qwen2): all three in layer 0, or none.
    pub fn qkv_bias(&self, table: &TensorTable) -> Result<bool, ModelError> {
        let have = ["attn_q.bias", "attn_k.bias", "attn_v.bias"].map(|p| table.get(&self.name(0, p)).is_some());
        match have {
            [true, true, true] => Ok(true),
            [false, false, false] => Ok(false),
            _ => Err(ModelError::Config(format!("some of layer 0's Q/K/V biases are missing ({have:?})"))),
        }
    }

    /// Whether the file has per-head q/k RMSNorms (Qwen3, which must have them): both in layer 0,
    /// or neither.
    pub fn qk_norm(&self, table: &TensorTable) -> Result<bool, ModelError> {
        let have = ["attn_q_norm.weight", "attn_k_norm.weight"].map(|p| table.get(&self.name(0, p)).is_some());
        match have {
            [true, true] => Ok(true),
            [false, false] if self.arch != "qwen3" => Ok(false),
            _ => Err(ModelError::Config(format!("layer 0's q/k norms: {have:?} ({} has both)", if self.arch == "qwen3" { "qwen3" } else { "a model" }))),
        }
    }

    /// RoPE's inverse frequencies: from `rope_theta` and the scaling, divided by the file's
    /// per-frequency factors when it has them (GGUF `rope_freqs.weight`: llama3 scaling); with
    /// LongRoPE, the short and the long ones.
    pub async fn inv_freq(&self, w: &mut Weights<'_, impl RangeReader>) -> Result<(Vec<f32>, Option<Vec<f32>>), ModelError> {
        let base = rope::inv_freq(self.rot_dim, self.rope_theta, self.rope_scaling);
        let half = self.rot_dim / 2;
        let by = |factors: &[f32]| base.iter().zip(factors).map(|(f, factor)| f / factor).collect::<Vec<f32>>();
        let llama3_factors = self.naming == Naming::Gguf && w.has("rope_freqs.weight");
        // A GGUF's factor tensor (checked: the config's were checked when parsed).
        let mut divided = async |name: &str| -> Result<Vec<f32>, ModelError> {
            let factors = w.values(name, &[half]).await?;
            if factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
                return Err(ModelError::Tensor { name: name.into(), problem: "factors must be positive".into() });
            }
            Ok(by(&factors))
        };
        match &self.long_rope {
            Some(LongRope { factors: Some([short, long]), .. }) => Ok((by(short), Some(by(long)))),
            Some(LongRope { factors: None, .. }) => Ok((divided("rope_factors_short.weight").await?, Some(divided("rope_factors_long.weight").await?))),
            None if llama3_factors => Ok((divided("rope_freqs.weight").await?, None)),
            None => Ok((base, None)),
        }
    }
}

struct Layer<B: Backend> {
    attn_norm: B::Vector,
    wq: B::Matrix,
    wk: B::Matrix,
    wv: B::Matrix,
    /// Q, K and V biases (Qwen2).
    qkv_bias: Option<[B::Vector; 3]>,
    /// Per-head RMSNorm gains of q and k, head_dim values each (Qwen3).
    qk_norm: Option<[B::Vector; 2]>,
    wo: B::Matrix,
    ffn_norm: B::Vector,
    w_gate: B::Matrix,
    w_up: B::Matrix,
    w_down: B::Matrix,
    cache: B::KvCache,
}

/// A Llama-family model on backend `B`, with its KV cache.
pub struct Llama<B: Backend> {
    pub config: LlamaConfig,
    /// KV-cache capacity in tokens.
    pub context: u32,
    token_embd: B::Matrix,
    output_norm: B::Vector,
    /// `output.weight`, or the embedding table when tied.
    output: Option<B::Matrix>,
    layers: Vec<Layer<B>>,
    /// RoPE's inverse frequencies (LongRoPE's short ones).
    inv_freq: Vec<f32>,
    /// LongRoPE's long ones, and whether they are the ones in use.
    inv_freq_long: Option<Vec<f32>>,
    long: bool,
}

impl<B: Backend> Llama<B> {
    /// Loads the tensors `config` names with a KV cache of `context` tokens.
    pub async fn from_config(b: &B, config: LlamaConfig, context: u32, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError> {
        let c = &config;
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        // The caches first: one the device cannot hold is refused before any tensor is read.
        let mut caches = b.kv_caches(c.n_layers, c.kv_heads, c.head_dim, context)?.into_iter();
        let token_embd = w.table(b, &c.model_name("token_embd.weight"), c.vocab, c.hidden).await?;
        let output_name = c.model_name("output.weight");
        let output = if w.has(&output_name) { Some(w.matrix(b, &output_name, c.vocab, c.hidden).await?) } else { None };
        let qkv_bias = c.qkv_bias(w.table)?;
        let qk_norm = c.qk_norm(w.table)?;
        let mut layers = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let p = |s: &str| c.name(l, &format!("{s}.weight"));
            let qkv_bias = if qkv_bias {
                Some([w.vector(b, &c.name(l, "attn_q.bias"), qd).await?, w.vector(b, &c.name(l, "attn_k.bias"), kvd).await?, w.vector(b, &c.name(l, "attn_v.bias"), kvd).await?])
            } else {
                None
            };
            let qk_norm = if qk_norm { Some([w.vector(b, &p("attn_q_norm"), c.head_dim).await?, w.vector(b, &p("attn_k_norm"), c.head_dim).await?]) } else { None };
            // Phi-3 fuses Q, K and V into one weight, and gate and up into another (a GGUF
            // names the latter `ffn_up`, with twice the rows): their rows are read as parts.
            let [wq, wk, wv] = if w.has(&p("attn_qkv")) {
                w.matrix_parts(b, &p("attn_qkv"), [qd, kvd, kvd], c.hidden).await?
            } else {
                let qkv = w.matrices(b, &[&p("attn_q"), &p("attn_k"), &p("attn_v")], &[qd, kvd, kvd], c.hidden).await?;
                qkv.try_into().map_err(|_| ModelError::Config("Q, K and V: not three matrices".into()))?
            };
            let fused = [p("ffn_gate_up"), p("ffn_up")].into_iter().find(|name| !w.has(&p("ffn_gate")) && w.has(name));
            let [w_gate, w_up] = match fused {
                Some(name) => w.matrix_parts(b, &name, [c.ffn, c.ffn], c.hidden).await?,
                None => {
                    let gate_up = w.matrices(b, &[&p("ffn_gate"), &p("ffn_up")], &[c.ffn, c.ffn], c.hidden).await?;
                    gate_up.try_into().map_err(|_| ModelError::Config("gate and up: not two matrices".into()))?
                }
            };
            layers.push(Layer {
                qk_norm,
                attn_norm: w.vector(b, &p("attn_norm"), c.hidden).await?,
                wq,
                wk,
                wv,
                qkv_bias,
                wo: w.matrix(b, &p("attn_output"), c.hidden, qd).await?,
                ffn_norm: w.vector(b, &p("ffn_norm"), c.hidden).await?,
                w_gate,
                w_up,
                w_down: w.matrix(b, &p("ffn_down"), c.hidden, c.ffn).await?,
                cache: caches.next().ok_or_else(|| ModelError::Config("a layer without a cache".into()))?,
            });
        }
        let output_norm = w.vector(b, &c.model_name("output_norm.weight"), c.hidden).await?;
        let (inv_freq, inv_freq_long) = config.inv_freq(w).await?;
        // llama.cpp's choice for a GGUF: by the KV cache's capacity; transformers' by the length.
        let long = config.long_rope.as_ref().is_some_and(|r| !r.by_length && context > r.original_context);
        Ok(Self { config, context, token_embd, output_norm, output, layers, inv_freq, inv_freq_long, long })
    }

    /// Bytes of weights a decode step reads (every matrix once, the embedding row aside).
    pub fn weight_bytes_per_token(&self, b: &B) -> u64 {
        let layers: u64 = self.layers.iter().map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|m| b.matrix_bytes(m)).sum::<u64>()).sum();
        layers + b.matrix_bytes(self.output.as_ref().unwrap_or(&self.token_embd))
    }
}

impl<B: Backend> super::decoder::Architecture<B> for Llama<B> {
    async fn load(b: &B, config: super::decoder::Config<'_>, context: Option<u32>, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError> {
        let (config, context) = match config {
            super::decoder::Config::Gguf(meta) => LlamaConfig::from_gguf(meta)?.with_context(context),
            super::decoder::Config::Hub(json) => LlamaConfig::from_hub(json, context)?,
        };
        Self::from_config(b, config, context, w).await
    }

    fn vocab(&self) -> u32 {
        self.config.vocab
    }

    fn context(&self) -> u32 {
        self.context
    }

    /// LongRoPE chosen by length: the long factors once the sequence passes the original
    /// context, the short ones below it; keys cached with the other ones are stale.
    fn begin(&mut self, len: u32) -> bool {
        match &self.config.long_rope {
            Some(r) if r.by_length => {
                let long = len > r.original_context;
                std::mem::replace(&mut self.long, long) == long
            }
            _ => true,
        }
    }

    fn info(&self, b: &B) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "architecture": c.arch, "layers": c.n_layers, "hidden": c.hidden, "heads": c.heads, "kvHeads": c.kv_heads,
            "vocab": c.vocab, "context": self.context, "weightBytes": self.weight_bytes_per_token(b),
        })
    }

    /// Norm → Q, K, V (+ biases) → per-head q/k norms → RoPE (where the layer has it) → attention
    /// over the cache (or its window) → output projection →
    /// residual; norm → SwiGLU MLP → residual; then the final norm and the LM head on the last
    /// token when `head` asks for an answer.
    async fn forward(&mut self, b: &mut B, pos0: u32, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError> {
        let c = &self.config;
        let n = ids.len() as u32;
        let norm = Norm::Rms { eps: c.rms_eps };
        let attention = CachedAttention { pos0, heads: c.heads, kv_heads: c.kv_heads, head_dim: c.head_dim, scale: 1.0 / (c.head_dim as f32).sqrt(), window: None, softcap: None };
        let (inv_freq, rope_scale) = match (&self.inv_freq_long, &c.long_rope) {
            (Some(long), Some(r)) => (if self.long { long } else { &self.inv_freq }, r.attention_factor),
            _ => (&self.inv_freq, 1.0),
        };
        let rope = b.rope_table(inv_freq, rope_scale, pos0, n)?;
        let mut x = b.embed(&self.token_embd, ids).await?;
        for (layer, kind) in self.layers.iter_mut().zip(&c.layers) {
            let [bq, bk, bv] = match &layer.qkv_bias {
                Some([q, k, v]) => [Some(q), Some(k), Some(v)],
                None => [None; 3],
            };
            let qkv = b.norm_linear_many(&x, norm, &layer.attn_norm, &[(&layer.wq, bq), (&layer.wk, bk), (&layer.wv, bv)]).await?;
            let [q, k, v]: [B::Tensor; 3] = qkv.try_into().map_err(|_| ModelError::Config("Q, K and V: not three products".into()))?;
            let (q, k) = match &layer.qk_norm {
                Some([qn, kn]) => (b.head_norm(&q, norm, qn, c.heads).await?, b.head_norm(&k, norm, kn, c.kv_heads).await?),
                None => (q, k),
            };
            let (q, k) = if kind.rope { b.rope_qk(q, k, &rope, c.rope_layout, c.heads, c.kv_heads, c.head_dim).await? } else { (q, k) };
            let attn = b.cached_attention(&q, &k, &v, &mut layer.cache, CachedAttention { window: kind.window, ..attention }).await?;
            x = b.linear_add(&attn, &layer.wo, None, &x).await?;
            let ffn = b.gated_linear(&x, Some((norm, &layer.ffn_norm)), &layer.w_gate, &layer.w_up, Activation::Silu).await?;
            x = b.linear_add(&ffn, &layer.w_down, None, &x).await?;
        }
        let Some(pick) = head else {
            b.finish().await?;
            return Ok(None);
        };
        let last = b.last_row(&x).await?;
        let head = self.output.as_ref().unwrap_or(&self.token_embd);
        let logits = b.norm_linear_many(&last, norm, &self.output_norm, &[(head, None)]).await?.pop().ok_or_else(|| ModelError::Config("no logits".into()))?;
        Ok(Some(b.pick(&logits, pick).await?))
    }
}
