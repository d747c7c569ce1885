//! The Llama decoder (Llama 2/3, SmolLM/SmolLM2, TinyLlama, Mistral, Qwen2 without its QKV bias
//! yet) from GGUF: RMSNorm, rotary attention with grouped-query heads and a KV cache, SwiGLU.
//!
//! A forward pass over a chunk of tokens is recorded into one command encoder; the next token is
//! chosen on the GPU (argmax or `Sampling`) so one u32 comes back per step.

use crate::formats::{GgufMetadata, Metadata, TensorTable};
use crate::gpu::error::GpuError;
use crate::gpu::ops::attention::Attention;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::norm::Norm;
use crate::gpu::ops::rope::{self, RopeLayout, RopeScaling};
use crate::gpu::ops::{embedding, matvec, new_encoder, submit};
use crate::gpu::weights::GpuWeight;
use crate::gpu::GpuContext;
use crate::generate::{LanguageModel, Next, Pick};
use super::PickBuffers;

pub use super::RangeReader;

/// Prefill processes prompts in chunks of at most this many tokens (bounds the scores scratch).
pub const PREFILL_CHUNK: u32 = 64;

pub use super::error::ModelError;

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

/// Hyperparameters, from GGUF `{arch}.*` metadata or the hub's `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct LlamaConfig {
    /// `llama`, `qwen2` or `mistral`.
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
    /// Which dimensions RoPE pairs: GGUF Llama's Q/K rows are permuted for adjacent pairs by
    /// llama.cpp's converter; the hub's files and GGUF Qwen2 pair `i` with `i + head_dim/2`.
    pub rope_layout: RopeLayout,
    pub rms_eps: f32,
    /// Positions the model was trained for.
    pub context: u32,
    pub naming: Naming,
}

/// `rope_scaling` (before transformers 5) or `rope_parameters` of a `config.json`.
#[derive(Debug, Default, serde::Deserialize)]
struct HubRope {
    #[serde(alias = "type")]
    rope_type: Option<String>,
    rope_theta: Option<f32>,
    factor: Option<f32>,
    low_freq_factor: Option<f32>,
    high_freq_factor: Option<f32>,
    original_max_position_embeddings: Option<f32>,
}

/// The fields of a Llama-family `config.json` this runtime reads.
#[derive(Debug, serde::Deserialize)]
struct HubConfig {
    model_type: String,
    hidden_size: u32,
    intermediate_size: u32,
    num_hidden_layers: u32,
    num_attention_heads: u32,
    num_key_value_heads: Option<u32>,
    head_dim: Option<u32>,
    vocab_size: u32,
    max_position_embeddings: u32,
    #[serde(default = "default_rms_eps")]
    rms_norm_eps: f32,
    rope_theta: Option<f32>,
    rope_scaling: Option<HubRope>,
    rope_parameters: Option<HubRope>,
    hidden_act: Option<String>,
    #[serde(default)]
    mlp_bias: bool,
    /// Mistral's sliding window: the context is capped at it (attention over a longer history
    /// would differ from the model's).
    sliding_window: Option<u32>,
    use_sliding_window: Option<bool>,
}

fn default_rms_eps() -> f32 {
    1e-6
}

impl LlamaConfig {
    /// The configuration of a GGUF file's table and the KV-cache capacity: `context`, by default
    /// the model's at most 4096, within 1..=the model's.
    pub fn from_table(table: &TensorTable, context: Option<u32>) -> Result<(Self, u32), ModelError> {
        let Metadata::Gguf { metadata, .. } = &table.metadata else {
            return Err(ModelError::Config("not a GGUF file".into()));
        };
        Ok(Self::from_gguf(metadata)?.with_context(context))
    }

    /// The configuration of a hub checkpoint's `config.json` and the KV-cache capacity (as
    /// `from_table`).
    pub fn from_hub(config_json: &[u8], context: Option<u32>) -> Result<(Self, u32), ModelError> {
        let bad = |what: String| ModelError::Config(format!("config.json: {what}"));
        let c: HubConfig = serde_json::from_slice(config_json).map_err(|e| bad(e.to_string()))?;
        if !["llama", "qwen2", "mistral"].contains(&c.model_type.as_str()) {
            return Err(bad(format!("model_type {:?} is not a Llama-family model (llama, qwen2, mistral)", c.model_type)));
        }
        if c.hidden_act.as_deref().is_some_and(|a| a != "silu") || c.mlp_bias {
            return Err(bad(format!("activation {:?}{} is not supported", c.hidden_act, if c.mlp_bias { " with MLP biases" } else { "" })));
        }
        let rope = c.rope_parameters.or(c.rope_scaling).unwrap_or_default();
        let rope_scaling = match rope.rope_type.as_deref() {
            None | Some("default") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear { factor: rope.factor.ok_or_else(|| bad("linear RoPE scaling without a factor".into()))? },
            Some("llama3") => match (rope.factor, rope.low_freq_factor, rope.high_freq_factor, rope.original_max_position_embeddings) {
                (Some(factor), Some(low_freq_factor), Some(high_freq_factor), Some(original_max_position)) if high_freq_factor > low_freq_factor => {
                    RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position }
                }
                _ => return Err(bad("llama3 RoPE scaling needs factor, low_freq_factor < high_freq_factor and original_max_position_embeddings".into())),
            },
            Some(other) => return Err(bad(format!("RoPE scaling {other:?} is not supported (linear, llama3)"))),
        };
        let window = c.sliding_window.filter(|_| c.use_sliding_window.unwrap_or(c.model_type == "mistral"));
        let heads = c.num_attention_heads;
        let config = Self {
            arch: c.model_type,
            n_layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            ffn: c.intermediate_size,
            heads,
            kv_heads: c.num_key_value_heads.unwrap_or(heads),
            head_dim: c.head_dim.unwrap_or_else(|| c.hidden_size.checked_div(heads).unwrap_or(0)),
            vocab: c.vocab_size,
            rope_theta: rope.rope_theta.or(c.rope_theta).unwrap_or(10_000.0),
            rope_scaling,
            rope_layout: RopeLayout::NeoX,
            rms_eps: c.rms_norm_eps,
            context: c.max_position_embeddings.min(window.unwrap_or(u32::MAX)),
            naming: Naming::Hub,
        };
        config.check()?;
        Ok(config.with_context(context))
    }

    /// `(self, capacity)`: `context` (default the model's, at most 4096) within 1..=the model's.
    fn with_context(self, context: Option<u32>) -> (Self, u32) {
        let context = context.unwrap_or(self.context.min(4096)).clamp(1, self.context);
        (self, context)
    }

    /// Sizes that fit together (the kernels and the loaders rely on them).
    fn check(&self) -> Result<(), ModelError> {
        let sizes = [self.n_layers, self.hidden, self.ffn, self.heads, self.kv_heads, self.head_dim, self.vocab, self.context];
        let ok = sizes.iter().all(|&v| v > 0) && self.n_layers <= 1024 && self.heads.is_multiple_of(self.kv_heads) && self.head_dim.is_multiple_of(2);
        let finite = self.rope_theta.is_finite() && self.rope_theta > 0.0 && self.rms_eps.is_finite() && self.rms_eps >= 0.0;
        if !ok || !finite {
            return Err(ModelError::Config(format!("inconsistent hyperparameters {self:?}")));
        }
        Ok(())
    }

    pub fn from_gguf(meta: &GgufMetadata) -> Result<Self, ModelError> {
        let arch = meta.get_str("general.architecture").ok_or_else(|| ModelError::Config("no general.architecture".into()))?;
        // llama.cpp's converter permutes Llama's (and Mistral's) Q/K rows for adjacent-pair RoPE;
        // Qwen2's it leaves as they are (llama.cpp runs it with NeoX RoPE).
        let rope_layout = match arch {
            "llama" | "mistral" => RopeLayout::Normal,
            "qwen2" => RopeLayout::NeoX,
            other => return Err(ModelError::Config(format!("GGUF architecture {other:?} is not supported (llama, mistral, qwen2)"))),
        };
        let get = |key: &str| -> Result<u32, ModelError> {
            meta.get_u64(&format!("{arch}.{key}"))
                .and_then(|v| u32::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| ModelError::Config(format!("{arch}.{key} missing or not a positive integer")))
        };
        let optional = |key: &str| meta.get_u64(&format!("{arch}.{key}")).map(|v| u32::try_from(v).map_err(|_| ModelError::Config(format!("{arch}.{key} out of range")))).transpose();
        let hidden = get("embedding_length")?;
        let heads = get("attention.head_count")?;
        let kv_heads = optional("attention.head_count_kv")?.unwrap_or(heads);
        let vocab = meta
            .get_u64(&format!("{arch}.vocab_size"))
            .or_else(|| meta.get_array("tokenizer.ggml.tokens").map(|t| t.len() as u64))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| ModelError::Config("no vocabulary size".into()))?;
        let rope_scaling = match meta.get_str(&format!("{arch}.rope.scaling.type")) {
            None | Some("none") => RopeScaling::None,
            Some("linear") => RopeScaling::Linear {
                factor: meta.get_f64(&format!("{arch}.rope.scaling.factor")).filter(|f| *f > 0.0).ok_or_else(|| ModelError::Config("linear RoPE scaling without a factor".into()))? as f32,
            },
            Some(other) => return Err(ModelError::Config(format!("RoPE scaling {other:?} is not supported (linear; llama3 comes as rope_freqs)"))),
        };
        let config = Self {
            arch: arch.to_owned(),
            n_layers: get("block_count")?,
            hidden,
            ffn: get("feed_forward_length")?,
            heads,
            kv_heads,
            head_dim: optional("attention.key_length")?.unwrap_or(hidden / heads),
            vocab,
            rope_theta: meta.get_f64(&format!("{arch}.rope.freq_base")).unwrap_or(10_000.0) as f32,
            rope_scaling,
            rope_layout,
            rms_eps: meta.get_f64(&format!("{arch}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-5) as f32,
            context: get("context_length")?,
            naming: Naming::Gguf,
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

    /// RoPE's inverse frequencies: from `rope_theta` and the scaling, divided by the file's
    /// per-frequency factors when it has them (GGUF `rope_freqs.weight`: llama3 scaling).
    pub async fn inv_freq(&self, table: &TensorTable, read: &mut impl RangeReader) -> Result<Vec<f32>, ModelError> {
        let mut inv_freq = rope::inv_freq(self.head_dim, self.rope_theta, self.rope_scaling);
        if self.naming == Naming::Gguf && table.get("rope_freqs.weight").is_some() {
            let factors = super::read_values(table, read, "rope_freqs.weight", &[self.head_dim / 2]).await?;
            if factors.iter().any(|f| !f.is_finite() || *f <= 0.0) {
                return Err(ModelError::Tensor { name: "rope_freqs.weight".into(), problem: "factors must be positive".into() });
            }
            inv_freq.iter_mut().zip(factors).for_each(|(f, factor)| *f /= factor);
        }
        Ok(inv_freq)
    }
}

struct Layer {
    attn_norm: wgpu::Buffer,
    wq: GpuWeight,
    wk: GpuWeight,
    wv: GpuWeight,
    /// Q, K and V biases (Qwen2).
    qkv_bias: Option<[wgpu::Buffer; 3]>,
    wo: GpuWeight,
    ffn_norm: wgpu::Buffer,
    w_gate: GpuWeight,
    w_up: GpuWeight,
    w_down: GpuWeight,
    k_cache: wgpu::Buffer,
    v_cache: wgpu::Buffer,
}

/// Buffers for one chunk of up to `PREFILL_CHUNK` tokens.
struct Activations {
    x: wgpu::Buffer,
    x2: wgpu::Buffer,
    h: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    attn: wgpu::Buffer,
    gate: wgpu::Buffer,
    up: wgpu::Buffer,
    /// SwiGLU output (it may not overwrite its own inputs within one dispatch).
    ffn: wgpu::Buffer,
    last: wgpu::Buffer,
    logits: wgpu::Buffer,
    token: wgpu::Buffer,
    scores: wgpu::Buffer,
    lengths: wgpu::Buffer,
    cos_sin: wgpu::Buffer,
    ids: wgpu::Buffer,
    scratch: wgpu::Buffer,
}

/// A Llama model on the GPU with its KV cache.
pub struct Llama {
    pub config: LlamaConfig,
    /// KV-cache capacity in tokens.
    pub context: u32,
    token_embd: GpuWeight,
    output_norm: wgpu::Buffer,
    /// `output.weight`, or the embedding table when tied.
    output: Option<GpuWeight>,
    layers: Vec<Layer>,
    act: Activations,
    inv_freq: Vec<f32>,
    /// The tokens in the KV cache, in order.
    tokens: Vec<u32>,
}

impl Llama {
    /// Loads a GGUF Llama. `read` returns the bytes of a byte range of the file (the store, a
    /// file). `context` caps the KV cache (default: the model's, at most 4096).
    pub async fn load(ctx: &GpuContext, table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let (config, context) = LlamaConfig::from_table(table, context)?;
        Self::from_config(ctx, config, context, table, read).await
    }

    /// Loads a Llama-family checkpoint in the hub's format: its `config.json` and the table of
    /// its safetensors file (F32, F16 or BF16 matrices).
    pub async fn load_hub(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let (config, context) = LlamaConfig::from_hub(config_json, context)?;
        Self::from_config(ctx, config, context, table, read).await
    }

    /// Loads the tensors `config` names with a KV cache of `context` tokens.
    pub async fn from_config(ctx: &GpuContext, config: LlamaConfig, context: u32, table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let c = &config;
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let token_embd = Self::matrix(ctx, table, read, &c.model_name("token_embd.weight"), c.vocab, c.hidden).await?;
        let output_name = c.model_name("output.weight");
        let output = if table.get(&output_name).is_some() { Some(Self::matrix(ctx, table, read, &output_name, c.vocab, c.hidden).await?) } else { None };
        let qkv_bias = c.qkv_bias(table)?;
        let mut layers = Vec::with_capacity(c.n_layers as usize);
        let cache_bytes = u64::from(context) * u64::from(kvd) * 4;
        for l in 0..c.n_layers {
            let p = |s: &str| c.name(l, &format!("{s}.weight"));
            let bias = async |read: &mut _, part: &str, len: u32| -> Result<wgpu::Buffer, ModelError> {
                Ok(ctx.storage_from("llama", "bias", &super::read_values(table, read, &c.name(l, part), &[len]).await?)?)
            };
            let bias = if qkv_bias { Some([bias(read, "attn_q.bias", qd).await?, bias(read, "attn_k.bias", kvd).await?, bias(read, "attn_v.bias", kvd).await?]) } else { None };
            layers.push(Layer {
                attn_norm: Self::vector(ctx, table, &p("attn_norm"), c.hidden, read).await?,
                wq: Self::matrix(ctx, table, read, &p("attn_q"), qd, c.hidden).await?,
                wk: Self::matrix(ctx, table, read, &p("attn_k"), kvd, c.hidden).await?,
                wv: Self::matrix(ctx, table, read, &p("attn_v"), kvd, c.hidden).await?,
                qkv_bias: bias,
                wo: Self::matrix(ctx, table, read, &p("attn_output"), c.hidden, qd).await?,
                ffn_norm: Self::vector(ctx, table, &p("ffn_norm"), c.hidden, read).await?,
                w_gate: Self::matrix(ctx, table, read, &p("ffn_gate"), c.ffn, c.hidden).await?,
                w_up: Self::matrix(ctx, table, read, &p("ffn_up"), c.ffn, c.hidden).await?,
                w_down: Self::matrix(ctx, table, read, &p("ffn_down"), c.hidden, c.ffn).await?,
                k_cache: ctx.storage_output("llama", "k cache", cache_bytes)?,
                v_cache: ctx.storage_output("llama", "v cache", cache_bytes)?,
            });
        }
        let output_norm = Self::vector(ctx, table, &c.model_name("output_norm.weight"), c.hidden, read).await?;
        let t = u64::from(PREFILL_CHUNK);
        let buf = |what: &'static str, elems: u64| ctx.storage_output("llama", what, elems.max(1) * 4);
        let act = Activations {
            x: buf("x", t * u64::from(c.hidden))?,
            x2: buf("x2", t * u64::from(c.hidden))?,
            h: buf("h", t * u64::from(c.hidden))?,
            q: buf("q", t * u64::from(qd))?,
            k: buf("k", t * u64::from(kvd))?,
            v: buf("v", t * u64::from(kvd))?,
            attn: buf("attn", t * u64::from(qd))?,
            gate: buf("gate", t * u64::from(c.ffn))?,
            up: buf("up", t * u64::from(c.ffn))?,
            ffn: buf("ffn", t * u64::from(c.ffn))?,
            last: buf("last", u64::from(c.hidden))?,
            logits: buf("logits", u64::from(c.vocab))?,
            token: buf("token", 1)?,
            scores: buf("scores", t * u64::from(c.heads) * u64::from(context))?,
            lengths: buf("lengths", 1)?,
            cos_sin: buf("cos/sin", t * u64::from(c.head_dim))?,
            ids: buf("ids", t)?,
            scratch: buf("scratch", 1)?,
        };
        let inv_freq = config.inv_freq(table, read).await?;
        Ok(Self { config, context, token_embd, output_norm, output, layers, act, inv_freq, tokens: Vec::new() })
    }

    async fn matrix(ctx: &GpuContext, table: &TensorTable, read: &mut impl RangeReader, name: &str, rows: u32, cols: u32) -> Result<GpuWeight, ModelError> {
        let t = table.get(name).ok_or_else(|| ModelError::Tensor { name: name.into(), problem: "missing".into() })?;
        super::upload_matrix(ctx, t, read, rows, cols).await
    }

    async fn vector(ctx: &GpuContext, table: &TensorTable, name: &str, len: u32, read: &mut impl RangeReader) -> Result<wgpu::Buffer, ModelError> {
        Ok(ctx.storage_from("llama", "norm weight", &super::read_values(table, read, name, &[len]).await?)?)
    }

    /// Bytes of weights a decode step reads (every matrix once, the embedding row aside).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let layers: u64 = self
            .layers
            .iter()
            .map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|w| w.gpu_bytes()).sum::<u64>())
            .sum();
        layers + self.output.as_ref().unwrap_or(&self.token_embd).gpu_bytes()
    }

    /// Compute dispatches in one decode step: per layer 2 norms, 7 matvecs, (3 bias adds,) 2 RoPE,
    /// attention (2 dispatches past `SPLIT_KEYS` cached tokens: split over the keys), 2 residual
    /// adds, SwiGLU; then embedding, final norm, LM head, argmax.
    pub fn dispatches_per_token(&self) -> u32 {
        let matvec_parts = |w: &GpuWeight| w.parts.len() as u32;
        let per_layer: u32 = self
            .layers
            .iter()
            .map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].iter().map(|w| matvec_parts(w)).sum::<u32>() + 8 + if l.qkv_bias.is_some() { 3 } else { 0 })
            .sum();
        per_layer + 1 + self.token_embd.parts.len() as u32 + matvec_parts(self.output.as_ref().unwrap_or(&self.token_embd)) + 1
    }

    /// Tokens in the KV cache.
    pub fn position(&self) -> u32 {
        self.tokens.len() as u32
    }

    /// Forgets the sequence (the KV cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Feeds `tokens` at the current position (in chunks of `PREFILL_CHUNK`) and answers `pick`
    /// for the position after them; only the last chunk runs the LM head.
    pub async fn forward(&mut self, ctx: &GpuContext, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        let mut chunks = tokens.chunks(PREFILL_CHUNK as usize).peekable();
        while let Some(chunk) = chunks.next() {
            let head = chunks.peek().is_none().then_some(pick);
            if let Some(next) = self.forward_chunk(ctx, chunk, head).await? {
                return Ok(next);
            }
        }
        Err(ModelError::Config("no tokens".into()))
    }

    /// Feeds `tokens` and returns the greedy next token.
    pub async fn next_token(&mut self, ctx: &GpuContext, tokens: &[u32]) -> Result<u32, ModelError> {
        match self.forward(ctx, tokens, Pick::Greedy).await? {
            Next::Token(id) => Ok(id),
            Next::Logits(_) => Err(ModelError::Config("logits where a token was asked".into())),
        }
    }

    /// The logits after the last token of `tokens` (for tests), leaving the cache advanced.
    pub async fn logits(&mut self, ctx: &GpuContext, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self.forward(ctx, tokens, Pick::Logits).await? {
            Next::Logits(l) => Ok(l),
            Next::Token(_) => Err(ModelError::Config("a token where logits were asked".into())),
        }
    }

    /// This model with its device, as a `LanguageModel` for the generation loop.
    pub fn on<'a>(&'a mut self, ctx: &'a GpuContext) -> GpuLlama<'a> {
        GpuLlama { ctx, model: self }
    }

    /// Runs one chunk; with `head`, also the final norm and LM head, and answers it.
    async fn forward_chunk(&mut self, ctx: &GpuContext, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError> {
        let c = self.config.clone();
        let n = ids.len() as u32;
        let pos0 = self.position();
        if pos0 + n > self.context {
            return Err(ModelError::ContextFull { ctx: self.context, pos: pos0 + n });
        }
        let a = &self.act;
        if let Some(&bad) = ids.iter().find(|&&id| id >= c.vocab) {
            return Err(GpuError::Shape { op: "llama", detail: format!("token id {bad} ≥ vocabulary {}", c.vocab) }.into());
        }
        ctx.queue.write_buffer(&a.ids, 0, bytemuck::cast_slice(ids));
        ctx.queue.write_buffer(&a.lengths, 0, bytemuck::bytes_of(&(pos0 + n)));
        let table = rope::cos_sin_table(&self.inv_freq, pos0, n);
        ctx.queue.write_buffer(&a.cos_sin, 0, bytemuck::cast_slice(&table));

        let (hd, qd, kvd) = (c.head_dim, c.heads * c.head_dim, c.kv_heads * c.head_dim);
        let mut e = new_encoder(ctx, "llama forward");
        embedding::encode(ctx, &mut e, &self.token_embd, n, &a.ids, &a.x).await?;
        let (mut x, mut x_next) = (&a.x, &a.x2);
        let norm = Norm::Rms { eps: c.rms_eps };
        let attn = Attention { batch: 1, q_len: n, kv_len: self.context, heads: c.heads, kv_heads: c.kv_heads, head_dim: hd, q_pos0: pos0, causal: true, scale: 1.0 / (hd as f32).sqrt() };
        let nh = u64::from(n) * u64::from(c.hidden);
        for layer in &self.layers {
            norm.encode(ctx, &mut e, n, c.hidden, x, &layer.attn_norm, &layer.attn_norm, &a.h).await?;
            match &layer.qkv_bias {
                None => {
                    matvec::encode(ctx, &mut e, &layer.wq, n, &a.h, &a.q).await?;
                    matvec::encode(ctx, &mut e, &layer.wk, n, &a.h, &a.k).await?;
                    matvec::encode(ctx, &mut e, &layer.wv, n, &a.h, &a.v).await?;
                }
                // y = W·x into `attn` (free until attention writes it), then + bias.
                Some([bq, bk, bv]) => {
                    for (w, bias, out, rows) in [(&layer.wq, bq, &a.q, qd), (&layer.wk, bk, &a.k, kvd), (&layer.wv, bv, &a.v, kvd)] {
                        matvec::encode(ctx, &mut e, w, n, &a.h, &a.attn).await?;
                        Elementwise::AddRow { cols: rows }.encode(ctx, &mut e, u64::from(n) * u64::from(rows), &a.attn, bias, out).await?;
                    }
                }
            }
            rope::encode(ctx, &mut e, c.rope_layout, n, c.heads, hd, hd, &a.cos_sin, &a.q).await?;
            rope::encode(ctx, &mut e, c.rope_layout, n, c.kv_heads, hd, hd, &a.cos_sin, &a.k).await?;
            let at = u64::from(pos0) * u64::from(kvd) * 4;
            let len = u64::from(n) * u64::from(kvd) * 4;
            e.copy_buffer_to_buffer(&a.k, 0, &layer.k_cache, at, len);
            e.copy_buffer_to_buffer(&a.v, 0, &layer.v_cache, at, len);
            attn.encode(ctx, &mut e, &a.q, &layer.k_cache, &layer.v_cache, &a.lengths, &a.scores, &a.attn).await?;
            matvec::encode(ctx, &mut e, &layer.wo, n, &a.attn, &a.h).await?;
            Elementwise::Add.encode(ctx, &mut e, nh, x, &a.h, x_next).await?;
            std::mem::swap(&mut x, &mut x_next);
            norm.encode(ctx, &mut e, n, c.hidden, x, &layer.ffn_norm, &layer.ffn_norm, &a.h).await?;
            matvec::encode(ctx, &mut e, &layer.w_gate, n, &a.h, &a.gate).await?;
            matvec::encode(ctx, &mut e, &layer.w_up, n, &a.h, &a.up).await?;
            let nf = u64::from(n) * u64::from(c.ffn);
            Elementwise::SwiGlu.encode(ctx, &mut e, nf, &a.gate, &a.up, &a.ffn).await?;
            matvec::encode(ctx, &mut e, &layer.w_down, n, &a.ffn, &a.h).await?;
            Elementwise::Add.encode(ctx, &mut e, nh, x, &a.h, x_next).await?;
            std::mem::swap(&mut x, &mut x_next);
        }
        let Some(pick) = head else {
            submit(ctx, "llama forward", e).await?;
            self.tokens.extend_from_slice(ids);
            return Ok(None);
        };
        let row = u64::from(c.hidden) * 4;
        e.copy_buffer_to_buffer(x, u64::from(n - 1) * row, &a.h, 0, row);
        norm.encode(ctx, &mut e, 1, c.hidden, &a.h, &self.output_norm, &self.output_norm, &a.last).await?;
        let output = self.output.as_ref().unwrap_or(&self.token_embd);
        matvec::encode(ctx, &mut e, output, 1, &a.last, &a.logits).await?;
        let answer = PickBuffers { vocab: c.vocab, logits: &a.logits, token: &a.token, scratch: &a.scratch };
        answer.encode(ctx, &mut e, pick).await?;
        submit(ctx, "llama forward", e).await?;
        let next = answer.read(ctx, pick).await?;
        self.tokens.extend_from_slice(ids);
        Ok(Some(next))
    }
}

/// A `Llama` with its device: the generation loop's view of it.
pub struct GpuLlama<'a> {
    pub ctx: &'a GpuContext,
    pub model: &'a mut Llama,
}

impl LanguageModel for GpuLlama<'_> {
    fn context(&self) -> u32 {
        self.model.context
    }

    fn cached(&self) -> &[u32] {
        &self.model.tokens
    }

    fn truncate(&mut self, len: usize) {
        self.model.tokens.truncate(len);
    }

    async fn forward(&mut self, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        self.model.forward(self.ctx, tokens, pick).await
    }
}
