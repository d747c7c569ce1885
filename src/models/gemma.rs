//! Gemma 1, Gemma 2 and Gemma 3 (text) from GGUF or the hub's `config.json` + safetensors, on
//! any `Backend`: embeddings scaled by √hidden, RMSNorm with gain (1 + w), GeGLU (tanh GELU),
//! rotary attention with grouped-query heads over a KV cache, scaled by
//! `query_pre_attn_scalar`^-½; Gemma 2 and 3 add a norm after attention and after the MLP (four
//! per block) and interleave sliding-window layers with global ones; Gemma 2 soft-caps the
//! attention scores and the final logits; Gemma 3 normalises q and k per head and gives its local
//! layers their own RoPE base (its global layers may scale positions linearly).

use crate::backend::{Activation, Backend, CachedAttention, Norm};
use crate::formats::GgufMetadata;
use crate::generate::{Next, Pick};
use crate::gpu::ops::rope::{self, RopeLayout, RopeScaling};

use super::decoder::{Architecture, Config, GgufKeys, HubSizes, sliding_layers};
use super::llama::HubRope;
use super::weights::Weights;
use super::{ModelError, RangeReader};

/// The model types of the hub's `config.json` this file loads.
pub const HUB_MODEL_TYPES: &[&str] = &["gemma", "gemma2", "gemma3_text"];
/// The GGUF architectures this file loads.
pub const GGUF_ARCHITECTURES: &[&str] = &["gemma", "gemma2", "gemma3"];

/// Which generation of Gemma: what a block holds beyond Gemma 1's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Generation {
    /// Two norms per block, every layer global.
    Gemma1,
    /// Four norms per block, sliding layers, soft-capping.
    Gemma2,
    /// Four norms per block, per-head q/k norms, local layers with their own RoPE base.
    Gemma3,
}

/// How one layer attends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerKind {
    /// Sliding window (keys per query) of a local layer; `None` on a global one.
    pub window: Option<u32>,
}

/// Hyperparameters, from GGUF `{arch}.*` metadata or the hub's `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmaConfig {
    pub generation: Generation,
    pub n_layers: u32,
    pub hidden: u32,
    pub ffn: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub rms_eps: f32,
    /// Positions the model was trained for.
    pub context: u32,
    /// The attention scores' scale: `query_pre_attn_scalar`^-½.
    pub attention_scale: f32,
    /// Gemma 2's attention logit soft-cap.
    pub attn_softcap: Option<f32>,
    /// The final logits' soft-cap (Gemma 2; Gemma 3 where its config sets one).
    pub final_softcap: Option<f32>,
    /// MLP activation: tanh GELU (`gelu_pytorch_tanh`), or erf GELU where a config says `gelu`.
    pub activation: Activation,
    /// RoPE of the global layers.
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// RoPE base of the local (sliding) layers: Gemma 3's `rope_local_base_freq`, else the
    /// global one.
    pub rope_local_theta: f32,
    /// Added to every stored norm gain: 1 for the hub's files (Gemma's RMSNorm multiplies by
    /// 1 + w), 0 for GGUF (llama.cpp's converter adds the 1 to the stored gains).
    pub norm_shift: f32,
    /// `blk.{l}.attn_q.weight` (GGUF) or `model.layers.{l}.self_attn.q_proj.weight` (hub).
    pub gguf_names: bool,
    pub layers: Vec<LayerKind>,
}

/// The fields of a Gemma `config.json` this runtime reads (transformers 5 and older layouts).
#[derive(Debug, serde::Deserialize)]
struct HubConfig {
    #[serde(flatten)]
    sizes: HubSizes,
    /// The MLP's activation: Gemma 2 and 3 read `hidden_activation`, Gemma 1 `hidden_act`
    /// (where transformers takes its legacy "gelu" for the tanh form).
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
    query_pre_attn_scalar: Option<f32>,
    attn_logit_softcapping: Option<f32>,
    final_logit_softcapping: Option<f32>,
    sliding_window: Option<u32>,
    /// `full_attention` or `sliding_attention` per layer (transformers 5).
    layer_types: Option<Vec<String>>,
    /// Gemma 3 before transformers 5: every `sliding_window_pattern`-th layer is global.
    sliding_window_pattern: Option<u32>,
    rope_theta: Option<f32>,
    rope_scaling: Option<HubRope>,
    /// Gemma 3 before transformers 5: the local layers' RoPE base.
    rope_local_base_freq: Option<f32>,
    /// transformers 5: one set of RoPE parameters, or one per layer type.
    rope_parameters: Option<serde_json::Value>,
    attention_bias: Option<bool>,
    use_bidirectional_attention: Option<bool>,
}

/// A positive finite value, or `what` named in the error.
fn positive(v: f32, what: &str) -> Result<f32, String> {
    if v.is_finite() && v > 0.0 { Ok(v) } else { Err(format!("{what} {v} (a positive number expected)")) }
}

impl HubConfig {
    /// RoPE of the global layers and of the local ones: (theta, scaling) and theta.
    fn ropes(&self) -> Result<(f32, RopeScaling, f32), String> {
        let parse = |v: &serde_json::Value| serde_json::from_value::<HubRope>(v.clone()).map_err(|e| format!("rope_parameters: {e}"));
        let default_theta = if self.sizes.model_type == "gemma3_text" { 1_000_000.0 } else { 10_000.0 };
        let (global, local) = match &self.rope_parameters {
            Some(p) if p.get("full_attention").is_some() || p.get("sliding_attention").is_some() => {
                let global = p.get("full_attention").map(parse).transpose()?.unwrap_or_default();
                let local = p.get("sliding_attention").map(parse).transpose()?;
                (global, local)
            }
            Some(p) => (parse(p)?, None),
            None => (self.rope_scaling.clone().unwrap_or_default(), None),
        };
        let theta = positive(global.rope_theta.or(self.rope_theta).unwrap_or(default_theta), "rope_theta")?;
        let scaling = global.scaling()?;
        let local_theta = match local {
            Some(local) if local.scaling()? != RopeScaling::None => return Err("scaled RoPE on sliding layers is not supported".into()),
            Some(local) => local.rope_theta.or(self.rope_local_base_freq).unwrap_or(10_000.0),
            None if self.sizes.model_type == "gemma3_text" => self.rope_local_base_freq.unwrap_or(10_000.0),
            None => theta,
        };
        Ok((theta, scaling, positive(local_theta, "the local RoPE base")?))
    }

    /// Each layer's window, as transformers derives them from these fields.
    fn layers(&self) -> Result<Vec<LayerKind>, String> {
        let n = self.sizes.num_hidden_layers;
        let sliding: Vec<bool> = match (&self.layer_types, self.sizes.model_type.as_str()) {
            (Some(types), _) => sliding_layers(types, n as usize)?,
            (None, "gemma") => vec![false; n as usize],
            // Gemma 2: every other layer slides, the first among them.
            (None, "gemma2") => (0..n).map(|l| l % 2 == 0).collect(),
            (None, _) => {
                let every = self.sliding_window_pattern.unwrap_or(6);
                if every == 0 {
                    return Err("sliding_window_pattern 0".into());
                }
                (0..n).map(|l| !(l + 1).is_multiple_of(every)).collect()
            }
        };
        let window = match (self.sliding_window, sliding.contains(&true)) {
            (Some(0), true) => return Err("sliding_window 0".into()),
            (None, true) => return Err("sliding layers without a sliding_window".into()),
            (w, _) => w,
        };
        Ok(sliding.into_iter().map(|s| LayerKind { window: window.filter(|_| s) }).collect())
    }
}

/// A soft-cap from a config: `None` for absent, null or 0.
fn softcap(v: Option<f32>, what: &str) -> Result<Option<f32>, String> {
    v.filter(|&c| c != 0.0).map(|c| positive(c, what)).transpose()
}

impl GemmaConfig {
    /// The configuration of a hub checkpoint's `config.json` and the KV-cache capacity.
    pub fn from_hub(config_json: &[u8], context: Option<u32>) -> Result<(Self, u32), ModelError> {
        let bad = |what: String| ModelError::Config(format!("config.json: {what}"));
        let c: HubConfig = serde_json::from_slice(config_json).map_err(|e| bad(e.to_string()))?;
        let generation = match c.sizes.model_type.as_str() {
            "gemma" => Generation::Gemma1,
            "gemma2" => Generation::Gemma2,
            "gemma3_text" => Generation::Gemma3,
            other => return Err(bad(format!("model_type {other:?} is not a Gemma text model ({})", HUB_MODEL_TYPES.join(", ")))),
        };
        if c.attention_bias == Some(true) || c.use_bidirectional_attention == Some(true) {
            return Err(bad("attention biases and bidirectional attention (EmbeddingGemma) are not supported".into()));
        }
        let (key, name) = match generation {
            Generation::Gemma1 => ("hidden_act", c.hidden_act.as_deref().map(|a| if a == "gelu" { "gelu_pytorch_tanh" } else { a })),
            _ => ("hidden_activation", c.hidden_activation.as_deref()),
        };
        let activation = match name {
            None | Some("gelu_pytorch_tanh" | "gelu_new" | "gelu_fast") => Activation::GeluTanh,
            Some("gelu") => Activation::GeluErf,
            Some(other) => return Err(bad(format!("{key} {other:?} is not supported (gelu_pytorch_tanh, gelu)"))),
        };
        let (rope_theta, rope_scaling, rope_local_theta) = c.ropes().map_err(bad)?;
        let layers = c.layers().map_err(bad)?;
        let heads = c.sizes.num_attention_heads;
        let head_dim = c.sizes.head_dim.unwrap_or(256);
        let query = positive(c.query_pre_attn_scalar.unwrap_or(head_dim as f32), "query_pre_attn_scalar").map_err(bad)?;
        let config = Self {
            generation,
            n_layers: c.sizes.num_hidden_layers,
            hidden: c.sizes.hidden_size,
            ffn: c.sizes.intermediate_size,
            heads,
            kv_heads: c.sizes.num_key_value_heads.unwrap_or(heads),
            head_dim,
            vocab: c.sizes.vocab_size,
            rms_eps: c.sizes.rms_norm_eps,
            context: c.sizes.max_position_embeddings,
            attention_scale: 1.0 / query.sqrt(),
            attn_softcap: softcap(c.attn_logit_softcapping, "attn_logit_softcapping").map_err(bad)?,
            final_softcap: softcap(c.final_logit_softcapping, "final_logit_softcapping").map_err(bad)?,
            activation,
            rope_theta,
            rope_scaling,
            rope_local_theta,
            norm_shift: 1.0,
            gguf_names: false,
            layers,
        };
        config.check()?;
        Ok(config.with_context(context))
    }

    /// As llama.cpp reads a GGUF of `general.architecture` gemma, gemma2 or gemma3, with its
    /// defaults where a key is missing: Gemma 2 slides every other layer (window 4096) and Gemma 3
    /// five of every six, Gemma 3's local layers use RoPE base 10000 unscaled, and (no key holds
    /// it) the attention scale is 1/√head_dim but for the 27B models' 1/√(hidden/heads).
    pub fn from_gguf(meta: &GgufMetadata) -> Result<Self, ModelError> {
        let bad = |what: String| ModelError::Config(what);
        let arch = meta.get_str("general.architecture").ok_or_else(|| bad("no general.architecture".into()))?;
        let generation = match arch {
            "gemma" => Generation::Gemma1,
            "gemma2" => Generation::Gemma2,
            "gemma3" => Generation::Gemma3,
            other => return Err(bad(format!("GGUF architecture {other:?} is not a Gemma ({})", GGUF_ARCHITECTURES.join(", ")))),
        };
        let keys = GgufKeys { meta, arch };
        let get = |key: &str| keys.required(key);
        let optional_u32 = |key: &str| keys.optional(key);
        let optional_f32 = |key: &str| keys.float(key);
        let hidden = get("embedding_length")?;
        let heads = get("attention.head_count")?;
        let n_layers = get("block_count")?;
        let head_dim = optional_u32("attention.key_length")?.unwrap_or(hidden / heads);
        let vocab = keys.vocab()?;
        let rope_scaling = match meta.get_str(&format!("{arch}.rope.scaling.type")) {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: optional_f32("rope.scaling.factor").filter(|f| f.is_finite() && *f > 0.0).ok_or_else(|| bad("linear RoPE scaling without a factor".into()))?,
            },
            Some(other) => return Err(bad(format!("RoPE scaling {other:?} is not supported (linear)"))),
        };
        // Sliding layers: Gemma 2's window defaults to 4096, Gemma 3 slides only with a window.
        let window = match (generation, optional_u32("attention.sliding_window")?) {
            (_, Some(0)) if generation == Generation::Gemma2 => return Err(bad(format!("{arch}.attention.sliding_window 0"))),
            (Generation::Gemma1, _) | (Generation::Gemma3, None | Some(0)) => None,
            (Generation::Gemma2, None) => Some(4096),
            (_, w) => w,
        };
        // Which layers slide: `attention.sliding_window_pattern` as one flag per layer, or n (all
        // but every n-th; 0 for all), default 2 (Gemma 2) or 6 (Gemma 3).
        let pattern_key = format!("{arch}.attention.sliding_window_pattern");
        let sliding: Vec<bool> = match (meta.get_array(&pattern_key), meta.get_u64(&pattern_key)) {
            (Some(flags), _) => {
                let flags: Option<Vec<bool>> = flags.iter().map(|f| f.as_bool()).collect();
                flags.filter(|f| f.len() == n_layers as usize).ok_or_else(|| bad(format!("{pattern_key}: one flag per layer of {n_layers} expected")))?
            }
            (None, every) => {
                let every = every.unwrap_or(if generation == Generation::Gemma2 { 2 } else { 6 });
                (0..u64::from(n_layers)).map(|l| every == 0 || l % every < every - 1).collect()
            }
        };
        let layers = sliding.into_iter().map(|s| LayerKind { window: window.filter(|_| s) }).collect();
        // llama.cpp's LLM_TYPE_27B: 46 layers (Gemma 2), 62 (Gemma 3).
        let is_27b = matches!((generation, n_layers), (Generation::Gemma2, 46) | (Generation::Gemma3, 62));
        let query = if is_27b { (hidden / heads) as f32 } else { head_dim as f32 };
        let rope_theta = optional_f32("rope.freq_base").unwrap_or(10_000.0);
        let rope_local_theta = optional_f32("rope.freq_base_swa").unwrap_or(if generation == Generation::Gemma3 { 10_000.0 } else { rope_theta });
        let config = Self {
            generation,
            n_layers,
            hidden,
            ffn: get("feed_forward_length")?,
            heads,
            kv_heads: optional_u32("attention.head_count_kv")?.unwrap_or(heads),
            head_dim,
            vocab,
            rms_eps: optional_f32("attention.layer_norm_rms_epsilon").unwrap_or(1e-6),
            context: get("context_length")?,
            attention_scale: 1.0 / query.sqrt(),
            attn_softcap: softcap(optional_f32("attn_logit_softcapping"), "attn_logit_softcapping").map_err(bad)?,
            final_softcap: softcap(optional_f32("final_logit_softcapping"), "final_logit_softcapping").map_err(bad)?,
            activation: Activation::GeluTanh,
            rope_theta,
            rope_scaling,
            rope_local_theta,
            norm_shift: 0.0,
            gguf_names: true,
            layers,
        };
        config.check()?;
        Ok(config)
    }

    /// `(self, capacity)`: the KV cache's capacity for `context` (`decoder::capacity`).
    fn with_context(self, context: Option<u32>) -> (Self, u32) {
        let capacity = super::decoder::capacity(self.context, context);
        (self, capacity)
    }

    fn check(&self) -> Result<(), ModelError> {
        let sizes = [self.n_layers, self.hidden, self.ffn, self.heads, self.kv_heads, self.head_dim, self.vocab, self.context];
        let ok = sizes.iter().all(|&v| v > 0) && self.n_layers <= 1024 && self.heads.is_multiple_of(self.kv_heads) && self.head_dim.is_multiple_of(2) && self.layers.len() == self.n_layers as usize;
        let finite = [self.rope_theta, self.rope_local_theta, self.attention_scale].iter().all(|v| v.is_finite() && *v > 0.0) && self.rms_eps.is_finite() && self.rms_eps >= 0.0;
        if !ok || !finite {
            return Err(ModelError::Config(format!("inconsistent hyperparameters {self:?}")));
        }
        Ok(())
    }

    /// Norm gain `name` as the kernels take it: the stored values plus `norm_shift`.
    async fn norm_gain<B: Backend>(&self, b: &B, w: &mut Weights<'_, impl RangeReader>, name: &str, len: u32) -> Result<B::Vector, ModelError> {
        let mut g = w.float_values(name, &[len]).await?;
        g.iter_mut().for_each(|v| *v += self.norm_shift);
        b.vector(&g)
    }

    /// The file's name of tensor `part` (GGUF spelling) of layer `layer`, or of the model.
    pub fn name(&self, layer: Option<u32>, part: &str) -> String {
        if self.gguf_names {
            return layer.map_or_else(|| part.to_owned(), |l| format!("blk.{l}.{part}"));
        }
        let (base, suffix) = part.split_once('.').unwrap_or((part, "weight"));
        let hub = match base {
            "token_embd" => "model.embed_tokens",
            "output_norm" => "model.norm",
            "output" => "lm_head",
            "attn_norm" => "input_layernorm",
            "attn_q" => "self_attn.q_proj",
            "attn_k" => "self_attn.k_proj",
            "attn_v" => "self_attn.v_proj",
            "attn_output" => "self_attn.o_proj",
            "attn_q_norm" => "self_attn.q_norm",
            "attn_k_norm" => "self_attn.k_norm",
            // Gemma 1 has no norm after attention: its `post_attention_layernorm` is the MLP's.
            "ffn_norm" if self.generation == Generation::Gemma1 => "post_attention_layernorm",
            "post_attention_norm" => "post_attention_layernorm",
            "ffn_norm" => "pre_feedforward_layernorm",
            "post_ffw_norm" => "post_feedforward_layernorm",
            "ffn_gate" => "mlp.gate_proj",
            "ffn_up" => "mlp.up_proj",
            "ffn_down" => "mlp.down_proj",
            other => other,
        };
        layer.map_or_else(|| format!("{hub}.{suffix}"), |l| format!("model.layers.{l}.{hub}.{suffix}"))
    }
}

struct Layer<B: Backend> {
    attn_norm: B::Vector,
    wq: B::Matrix,
    wk: B::Matrix,
    wv: B::Matrix,
    /// Per-head norm gains of q and k (Gemma 3).
    qk_norm: Option<[B::Vector; 2]>,
    wo: B::Matrix,
    /// The norm of the attention's output before the residual (Gemma 2 and 3).
    post_attention_norm: Option<B::Vector>,
    ffn_norm: B::Vector,
    w_gate: B::Matrix,
    w_up: B::Matrix,
    w_down: B::Matrix,
    /// The norm of the MLP's output before the residual (Gemma 2 and 3).
    post_ffw_norm: Option<B::Vector>,
    cache: B::KvCache,
}

/// A Gemma model on backend `B`, with its KV cache.
pub struct Gemma<B: Backend> {
    pub config: GemmaConfig,
    /// KV-cache capacity in tokens.
    pub context: u32,
    token_embd: B::Matrix,
    output_norm: B::Vector,
    /// `output.weight` where a file has one; Gemma ties its head to the embeddings.
    output: Option<B::Matrix>,
    layers: Vec<Layer<B>>,
    /// RoPE inverse frequencies of the global and of the local layers.
    inv_freq: [Vec<f32>; 2],
}

impl<B: Backend> Gemma<B> {
    pub async fn from_config(b: &B, config: GemmaConfig, context: u32, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError> {
        let c = &config;
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let mut caches = b.kv_caches(c.n_layers, c.kv_heads, c.head_dim, context)?.into_iter();
        let token_embd = w.table(b, &c.name(None, "token_embd.weight"), c.vocab, c.hidden).await?;
        let output_name = c.name(None, "output.weight");
        let output = if w.has(&output_name) { Some(w.matrix(b, &output_name, c.vocab, c.hidden).await?) } else { None };
        let four_norms = c.generation != Generation::Gemma1;
        let mut layers = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let p = |s: &str| c.name(Some(l), &format!("{s}.weight"));
            let mut norm = async |part: &str, len: u32| c.norm_gain(b, w, &p(part), len).await;
            let qk_norm = if c.generation == Generation::Gemma3 { Some([norm("attn_q_norm", c.head_dim).await?, norm("attn_k_norm", c.head_dim).await?]) } else { None };
            let attn_norm = norm("attn_norm", c.hidden).await?;
            let post_attention_norm = if four_norms { Some(norm("post_attention_norm", c.hidden).await?) } else { None };
            let ffn_norm = norm("ffn_norm", c.hidden).await?;
            let post_ffw_norm = if four_norms { Some(norm("post_ffw_norm", c.hidden).await?) } else { None };
            let qkv = w.matrices(b, &[&p("attn_q"), &p("attn_k"), &p("attn_v")], &[qd, kvd, kvd], c.hidden).await?;
            let [wq, wk, wv] = qkv.try_into().map_err(|_| ModelError::Config("Q, K and V: not three matrices".into()))?;
            let gate_up = w.matrices(b, &[&p("ffn_gate"), &p("ffn_up")], &[c.ffn, c.ffn], c.hidden).await?;
            let [w_gate, w_up] = gate_up.try_into().map_err(|_| ModelError::Config("gate and up: not two matrices".into()))?;
            layers.push(Layer {
                attn_norm,
                wq,
                wk,
                wv,
                qk_norm,
                wo: w.matrix(b, &p("attn_output"), c.hidden, qd).await?,
                post_attention_norm,
                ffn_norm,
                w_gate,
                w_up,
                w_down: w.matrix(b, &p("ffn_down"), c.hidden, c.ffn).await?,
                post_ffw_norm,
                cache: caches.next().ok_or_else(|| ModelError::Config("a layer without a cache".into()))?,
            });
        }
        let output_norm = c.norm_gain(b, w, &c.name(None, "output_norm.weight"), c.hidden).await?;
        let inv_freq = [rope::inv_freq(c.head_dim, c.rope_theta, c.rope_scaling), rope::inv_freq(c.head_dim, c.rope_local_theta, RopeScaling::None)];
        Ok(Self { config, context, token_embd, output_norm, output, layers, inv_freq })
    }

    /// Bytes of weights a decode step reads (every matrix once, the embedding row aside).
    pub fn weight_bytes_per_token(&self, b: &B) -> u64 {
        let layers: u64 = self.layers.iter().map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|m| b.matrix_bytes(m)).sum::<u64>()).sum();
        layers + b.matrix_bytes(self.output.as_ref().unwrap_or(&self.token_embd))
    }
}

impl<B: Backend> Architecture<B> for Gemma<B> {
    async fn load(b: &B, config: Config<'_>, context: Option<u32>, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError> {
        let (config, context) = match config {
            Config::Gguf(meta) => GemmaConfig::from_gguf(meta)?.with_context(context),
            Config::Hub(json) => GemmaConfig::from_hub(json, context)?,
        };
        Self::from_config(b, config, context, w).await
    }

    fn vocab(&self) -> u32 {
        self.config.vocab
    }

    fn context(&self) -> u32 {
        self.context
    }

    fn info(&self, b: &B) -> serde_json::Value {
        let c = &self.config;
        let arch = match c.generation {
            Generation::Gemma1 => "gemma",
            Generation::Gemma2 => "gemma2",
            Generation::Gemma3 => "gemma3",
        };
        serde_json::json!({
            "architecture": arch, "layers": c.n_layers, "hidden": c.hidden, "heads": c.heads, "kvHeads": c.kv_heads,
            "vocab": c.vocab, "context": self.context, "weightBytes": self.weight_bytes_per_token(b),
        })
    }

    /// Embeddings · √hidden; per block: norm → Q, K, V → per-head q/k norms → RoPE (the
    /// layer's) → attention over the cache (or its window; soft-capped scores) → output
    /// projection → post-attention norm → residual; norm → GeGLU MLP → post-MLP norm →
    /// residual; then the final norm, the tied LM head and the logits' soft-cap.
    async fn forward(&mut self, b: &mut B, pos0: u32, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError> {
        let c = &self.config;
        let n = ids.len() as u32;
        let norm = Norm::Rms { eps: c.rms_eps };
        let attention = CachedAttention { pos0, heads: c.heads, kv_heads: c.kv_heads, head_dim: c.head_dim, scale: c.attention_scale, window: None, softcap: c.attn_softcap };
        let global = b.rope_table(&self.inv_freq[0], 1.0, pos0, n)?;
        let local = if c.rope_local_theta != c.rope_theta || c.rope_scaling != RopeScaling::None { Some(b.rope_table(&self.inv_freq[1], 1.0, pos0, n)?) } else { None };
        let x = b.embed(&self.token_embd, ids).await?;
        let mut x = b.scale(&x, (c.hidden as f32).sqrt()).await?;
        for (layer, kind) in self.layers.iter_mut().zip(&c.layers) {
            let qkv = b.norm_linear_many(&x, norm, &layer.attn_norm, &[(&layer.wq, None), (&layer.wk, None), (&layer.wv, None)]).await?;
            let [q, k, v]: [B::Tensor; 3] = qkv.try_into().map_err(|_| ModelError::Config("Q, K and V: not three products".into()))?;
            let (q, k) = match &layer.qk_norm {
                Some([qn, kn]) => (b.head_norm(&q, norm, qn, c.heads).await?, b.head_norm(&k, norm, kn, c.kv_heads).await?),
                None => (q, k),
            };
            let table = match (&local, kind.window) {
                (Some(local), Some(_)) => local,
                _ => &global,
            };
            let (q, k) = b.rope_qk(q, k, table, RopeLayout::NeoX, c.heads, c.kv_heads, c.head_dim).await?;
            let attn = b.cached_attention(&q, &k, &v, &mut layer.cache, CachedAttention { window: kind.window, ..attention }).await?;
            x = match &layer.post_attention_norm {
                Some(g) => {
                    let o = b.linear(&attn, &layer.wo, None).await?;
                    let o = b.norm(&o, norm, g, None).await?;
                    b.add(&x, &o).await?
                }
                None => b.linear_add(&attn, &layer.wo, None, &x).await?,
            };
            let ffn = b.gated_linear(&x, Some((norm, &layer.ffn_norm)), &layer.w_gate, &layer.w_up, c.activation).await?;
            x = match &layer.post_ffw_norm {
                Some(g) => {
                    let down = b.linear(&ffn, &layer.w_down, None).await?;
                    let down = b.norm(&down, norm, g, None).await?;
                    b.add(&x, &down).await?
                }
                None => b.linear_add(&ffn, &layer.w_down, None, &x).await?,
            };
        }
        let Some(pick) = head else {
            b.finish().await?;
            return Ok(None);
        };
        let last = b.last_row(&x).await?;
        let head = self.output.as_ref().unwrap_or(&self.token_embd);
        let mut logits = b.norm_linear_many(&last, norm, &self.output_norm, &[(head, None)]).await?.pop().ok_or_else(|| ModelError::Config("no logits".into()))?;
        if let Some(cap) = c.final_softcap {
            let capped = b.scale(&logits, 1.0 / cap).await?;
            let capped = b.activation(&capped, Activation::Tanh).await?;
            logits = b.scale(&capped, cap).await?;
        }
        Ok(Some(b.pick(&logits, pick).await?))
    }
}
