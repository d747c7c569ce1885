//! Whisper (`model_type` "whisper", transformers' `WhisperForConditionalGeneration`), written once
//! over the op set: an encoder over 30 s of log-mel features and a decoder that attends to it.
//!
//! Encoder: two Conv1d (kernel 3, padding 1; the second with stride 2) each followed by exact
//! GELU, as im2col products (`Backend::patches` over the features, `tensor_patches` over the first
//! convolution's output); the stored sinusoidal positions added; pre-LN blocks (`encoder::Encoder`,
//! K without a bias); a final LayerNorm. Decoder: token embeddings plus learned positions; per
//! block causal self-attention over a KV cache, cross-attention over the encoder's output (its K
//! and V computed once per window: `CrossKv`), an MLP, each pre-LN with a residual; a final
//! LayerNorm; logits from the token embeddings (tied). Decoding rules (prompt, suppression,
//! timestamps, language detection) are in `generate::whisper`.

use serde::Deserialize;

use super::encoder::{Encoder, EncoderShape, LayerNames, LayerNorm, Linear, Placement, size};
use super::weights::Weights;
use crate::backend::{Activation, Backend, CachedAttention, Layout, Patches};
use crate::formats::TensorTable;
use crate::generate::whisper::{DecodeOptions, WhisperGeneration};
use crate::generate::{Next, Pick};
use crate::rng::SeededRng;
use crate::models::{ModelError, RangeReader};

/// Whisper's LayerNorms (PyTorch's default eps).
const EPS: f32 = 1e-5;

/// The fields of `config.json` the model reads.
#[derive(Debug, Clone, Deserialize)]
pub struct WhisperConfig {
    pub model_type: Option<String>,
    pub d_model: u64,
    pub encoder_layers: u64,
    pub decoder_layers: u64,
    pub encoder_attention_heads: u64,
    pub decoder_attention_heads: u64,
    pub encoder_ffn_dim: u64,
    pub decoder_ffn_dim: u64,
    #[serde(default = "default_mels")]
    pub num_mel_bins: u64,
    pub vocab_size: u64,
    #[serde(default = "default_source")]
    pub max_source_positions: u64,
    #[serde(default = "default_target")]
    pub max_target_positions: u64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default)]
    pub scale_embedding: bool,
}

fn default_mels() -> u64 {
    80
}
fn default_source() -> u64 {
    1500
}
fn default_target() -> u64 {
    448
}
fn default_act() -> String {
    "gelu".into()
}

impl WhisperConfig {
    pub fn parse(config_json: &[u8]) -> Result<Self, ModelError> {
        let c: WhisperConfig = serde_json::from_slice(config_json).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        if let Some(t) = &c.model_type
            && t != "whisper"
        {
            return Err(ModelError::Config(format!("config.json: model_type {t:?}, not whisper")));
        }
        Ok(c)
    }
}

/// A dimension from a config: positive and at most `max`.
fn dim(name: &str, v: u64, max: u64) -> Result<u32, ModelError> {
    size("config.json", name, Some(v), max)
}

struct DecoderLayer<B: Backend> {
    self_norm: LayerNorm<B>,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    out: Linear<B>,
    cross_norm: LayerNorm<B>,
    cross_q: Linear<B>,
    cross_k: Linear<B>,
    cross_v: Linear<B>,
    cross_out: Linear<B>,
    mlp_norm: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The cross-attention K and V of each decoder layer over one window's encoder output.
pub struct CrossKv<B: Backend> {
    k: Vec<B::Tensor>,
    v: Vec<B::Tensor>,
}

/// The sizes the passes use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhisperShape {
    pub d_model: u32,
    pub mel_bins: u32,
    /// Feature frames per window (2 × encoder positions: 3000).
    pub frames: u32,
    pub encoder_positions: u32,
    /// Decoder positions: the most tokens one window's decoding holds (448).
    pub decoder_positions: u32,
    pub vocab: u32,
    pub decoder_heads: u32,
    pub decoder_layers: u32,
}

/// One window's decoding.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowTokens {
    /// The prompt, then the generated tokens (the end token included when one was chosen).
    pub tokens: Vec<u32>,
    pub prompt_len: usize,
    /// The language token, given or detected (multilingual models).
    pub language: Option<u32>,
}

impl WindowTokens {
    pub fn generated(&self) -> &[u32] {
        &self.tokens[self.prompt_len..]
    }
}

pub struct Whisper<B: Backend> {
    pub shape: WhisperShape,
    conv1: Linear<B>,
    conv2: Linear<B>,
    encoder_positions: B::Vector,
    encoder: Encoder<B>,
    encoder_norm: LayerNorm<B>,
    embed: B::Matrix,
    decoder_positions: B::Matrix,
    layers: Vec<DecoderLayer<B>>,
    decoder_norm: LayerNorm<B>,
    activation: Activation,
    embed_scale: f32,
    pub backend: B,
}

impl<B: Backend> Whisper<B> {
    /// Prefixes of the bare `WhisperModel` and of `WhisperForConditionalGeneration`.
    const PREFIXES: &'static [&'static str] = &["model.", ""];

    pub async fn load(backend: B, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let c = WhisperConfig::parse(config_json)?;
        let d = dim("d_model", c.d_model, super::encoder::MAX_HIDDEN)?;
        let mels = dim("num_mel_bins", c.num_mel_bins, 512)?;
        let source = dim("max_source_positions", c.max_source_positions, 1 << 16)?;
        let target = dim("max_target_positions", c.max_target_positions, 1 << 16)?;
        let vocab = dim("vocab_size", c.vocab_size, super::encoder::MAX_VOCAB)?;
        let activation = super::encoder::activation("config.json", &c.activation_function)?;
        let heads = |name, v: u64| -> Result<u32, ModelError> {
            let h = dim(name, v, 1024)?;
            if !d.is_multiple_of(h) {
                return Err(ModelError::Config(format!("config.json: d_model {d} is not a multiple of {name} {h}")));
            }
            Ok(h)
        };
        let encoder_heads = heads("encoder_attention_heads", c.encoder_attention_heads)?;
        let encoder_shape = EncoderShape {
            layers: dim("encoder_layers", c.encoder_layers, super::encoder::MAX_LAYERS)?,
            hidden: d,
            heads: encoder_heads,
            head_dim: d / encoder_heads,
            intermediate: dim("encoder_ffn_dim", c.encoder_ffn_dim, super::encoder::MAX_INTERMEDIATE)?,
            eps: EPS,
            activation,
            placement: Placement::Pre,
            qkv_bias: true,
            k_bias: false,
        };
        let decoder_heads = heads("decoder_attention_heads", c.decoder_attention_heads)?;
        let decoder_layers = dim("decoder_layers", c.decoder_layers, super::encoder::MAX_LAYERS)?;
        let ffn = dim("decoder_ffn_dim", c.decoder_ffn_dim, super::encoder::MAX_INTERMEDIATE)?;
        let be = &backend;
        let mut w = Weights::with_prefixes(table, read, Self::PREFIXES);
        let conv = async |w: &mut Weights<'_, _>, name: &str, cin: u32| -> Result<Linear<B>, ModelError> {
            let kernel = w.float_values(&format!("{name}.weight"), &[d, cin, 3]).await?;
            Ok(Linear { w: be.matrix_from_values(name, &kernel, d, cin * 3)?, b: Some(w.vector(be, &format!("{name}.bias"), d).await?) })
        };
        let conv1 = conv(&mut w, "encoder.conv1", mels).await?;
        let conv2 = conv(&mut w, "encoder.conv2", d).await?;
        let encoder_positions = be.vector(&w.float_values("encoder.embed_positions.weight", &[source, d]).await?)?;
        let encoder = Encoder::load(be, &mut w, encoder_shape, |l| {
            let p = |s: &str| format!("encoder.layers.{l}.{s}");
            LayerNames {
                q: p("self_attn.q_proj"),
                k: p("self_attn.k_proj"),
                v: p("self_attn.v_proj"),
                out: p("self_attn.out_proj"),
                norm1: p("self_attn_layer_norm"),
                up: p("fc1"),
                down: p("fc2"),
                norm2: p("final_layer_norm"),
            }
        })
        .await?;
        let encoder_norm = LayerNorm::load(be, &mut w, "encoder.layer_norm", d, EPS).await?;
        let embed = w.table(be, "decoder.embed_tokens.weight", vocab, d).await?;
        let decoder_positions = w.table(be, "decoder.embed_positions.weight", target, d).await?;
        let mut layers = Vec::with_capacity(decoder_layers as usize);
        for l in 0..decoder_layers {
            let p = |s: &str| format!("decoder.layers.{l}.{s}");
            let qkv = w.matrices(be, &[&p("self_attn.q_proj.weight"), &p("self_attn.k_proj.weight"), &p("self_attn.v_proj.weight")], &[d, d, d], d).await?;
            let Ok([q, k, v]) = <[B::Matrix; 3]>::try_from(qkv) else {
                return Err(ModelError::Config(format!("decoder layer {l}: Q, K and V did not load as three matrices")));
            };
            let cross_kv = w.matrices(be, &[&p("encoder_attn.k_proj.weight"), &p("encoder_attn.v_proj.weight")], &[d, d], d).await?;
            let Ok([ck, cv]) = <[B::Matrix; 2]>::try_from(cross_kv) else {
                return Err(ModelError::Config(format!("decoder layer {l}: cross K and V did not load as two matrices")));
            };
            layers.push(DecoderLayer {
                self_norm: LayerNorm::load(be, &mut w, &p("self_attn_layer_norm"), d, EPS).await?,
                q: Linear { w: q, b: Some(w.vector(be, &p("self_attn.q_proj.bias"), d).await?) },
                k: Linear { w: k, b: None },
                v: Linear { w: v, b: Some(w.vector(be, &p("self_attn.v_proj.bias"), d).await?) },
                out: Linear::load(be, &mut w, &p("self_attn.out_proj"), d, d, true).await?,
                cross_norm: LayerNorm::load(be, &mut w, &p("encoder_attn_layer_norm"), d, EPS).await?,
                cross_q: Linear::load(be, &mut w, &p("encoder_attn.q_proj"), d, d, true).await?,
                cross_k: Linear { w: ck, b: None },
                cross_v: Linear { w: cv, b: Some(w.vector(be, &p("encoder_attn.v_proj.bias"), d).await?) },
                cross_out: Linear::load(be, &mut w, &p("encoder_attn.out_proj"), d, d, true).await?,
                mlp_norm: LayerNorm::load(be, &mut w, &p("final_layer_norm"), d, EPS).await?,
                fc1: Linear::load(be, &mut w, &p("fc1"), ffn, d, true).await?,
                fc2: Linear::load(be, &mut w, &p("fc2"), d, ffn, true).await?,
            });
        }
        let decoder_norm = LayerNorm::load(be, &mut w, "decoder.layer_norm", d, EPS).await?;
        let shape = WhisperShape { d_model: d, mel_bins: mels, frames: 2 * source, encoder_positions: source, decoder_positions: target, vocab, decoder_heads, decoder_layers };
        let embed_scale = if c.scale_embedding { (d as f32).sqrt() } else { 1.0 };
        Ok(Self { shape, conv1, conv2, encoder_positions, encoder, encoder_norm, embed, decoder_positions, layers, decoder_norm, activation, embed_scale, backend })
    }

    /// The encoder over one window of features ((mel bins, frames) row-major, as
    /// `WhisperFeatureExtractor` gives them): (encoder positions, d_model), the pass not ended.
    async fn encoder_states(&mut self, features: &[f32]) -> Result<B::Tensor, ModelError> {
        let s = self.shape;
        if features.len() != (s.mel_bins * s.frames) as usize {
            return Err(ModelError::Input(format!("{} feature values for a window of {} mel bins × {} frames", features.len(), s.mel_bins, s.frames)));
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::Input(format!("feature {i} is not a finite number")));
        }
        let be = &mut self.backend;
        let shape_err = |e: crate::gpu::GpuError| ModelError::Config(format!("Whisper's convolutions: {e}"));
        let conv1 = Patches::padded(s.mel_bins, (1, s.frames), (1, 3), (1, 1), 0, 1).map_err(shape_err)?;
        let x = be.patches(features, 1, conv1, conv1.chw()).await?;
        let x = self.conv1.forward(be, &x).await?;
        let x = be.activation(&x, self.activation).await?;
        // The first convolution's (frames, d) output read as d channels × 1 × frames.
        let conv2 = Patches::padded(s.d_model, (1, s.frames), (1, 3), (1, 2), 0, 1).map_err(shape_err)?;
        let layout = Layout { c: 1, y: 0, x: s.d_model, image: s.frames * s.d_model };
        let x = be.tensor_patches(&x, conv2, layout).await?;
        let x = self.conv2.forward(be, &x).await?;
        let x = be.activation(&x, self.activation).await?;
        let x = be.add_tiled(&x, &self.encoder_positions).await?;
        let batch = be.batch(&[s.encoder_positions])?;
        let x = self.encoder.forward(be, x, &batch, false, None).await?;
        self.encoder_norm.forward(be, &x).await
    }

    /// The encoder's output over one window: (encoder positions, d_model) row-major.
    pub async fn encode_output(&mut self, features: &[f32]) -> Result<Vec<f32>, ModelError> {
        let x = self.encoder_states(features).await?;
        self.backend.read(&x).await
    }

    /// Encodes one window and computes every decoder layer's cross-attention K and V over it.
    pub async fn encode(&mut self, features: &[f32]) -> Result<CrossKv<B>, ModelError> {
        let x = self.encoder_states(features).await?;
        let be = &mut self.backend;
        let (mut k, mut v) = (Vec::with_capacity(self.layers.len()), Vec::with_capacity(self.layers.len()));
        for l in &self.layers {
            let kv = be.linear_many(&x, &[(&l.cross_k.w, None), (&l.cross_v.w, l.cross_v.b.as_ref())]).await?;
            let [lk, lv]: [B::Tensor; 2] = kv.try_into().map_err(|_| ModelError::Config("cross K and V: not two products".into()))?;
            k.push(lk);
            v.push(lv);
        }
        be.finish().await?;
        Ok(CrossKv { k, v })
    }

    /// A KV cache for one window's decoding (`decoder_positions` tokens).
    pub fn kv_caches(&self) -> Result<Vec<B::KvCache>, ModelError> {
        let s = self.shape;
        self.backend.kv_caches(s.decoder_layers, s.decoder_heads, s.d_model / s.decoder_heads, s.decoder_positions)
    }

    /// Decoder pass over `tokens` at positions `pos0..`, answering `pick` from the last token's
    /// logits.
    pub async fn step(&mut self, cross: &CrossKv<B>, cache: &mut [B::KvCache], tokens: &[u32], pos0: u32, pick: Pick) -> Result<Next, ModelError> {
        let s = self.shape;
        let n = tokens.len() as u32;
        if tokens.is_empty() || pos0.checked_add(n).is_none_or(|end| end > s.decoder_positions) {
            return Err(ModelError::Input(format!("{n} tokens at position {pos0}: the decoder holds {}", s.decoder_positions)));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t >= s.vocab) {
            return Err(ModelError::Input(format!("token {t} is outside the vocabulary of {}", s.vocab)));
        }
        if cache.len() != self.layers.len() || cross.k.len() != self.layers.len() {
            return Err(ModelError::Input("a KV cache or cross K/V of another model".into()));
        }
        let heads = s.decoder_heads;
        let head_dim = s.d_model / heads;
        let scale = 1.0 / (head_dim as f32).sqrt();
        let be = &mut self.backend;
        let mut x = be.embed(&self.embed, tokens).await?;
        if self.embed_scale != 1.0 {
            x = be.scale(&x, self.embed_scale).await?;
        }
        let positions: Vec<u32> = (pos0..pos0 + n).collect();
        let p = be.embed(&self.decoder_positions, &positions).await?;
        x = be.add(&x, &p).await?;
        let a = CachedAttention { pos0, heads, kv_heads: heads, head_dim, scale, window: None, softcap: None };
        for ((l, cache), (ck, cv)) in self.layers.iter().zip(cache.iter_mut()).zip(cross.k.iter().zip(&cross.v)) {
            let h = l.self_norm.forward(be, &x).await?;
            let qkv = be.linear_many(&h, &[(&l.q.w, l.q.b.as_ref()), (&l.k.w, None), (&l.v.w, l.v.b.as_ref())]).await?;
            let [q, k, v] = &qkv[..] else { return Err(ModelError::Config("Q, K and V: not three products".into())) };
            let o = be.cached_attention(q, k, v, cache, a).await?;
            x = l.out.forward_add(be, &o, &x).await?;
            let h = l.cross_norm.forward(be, &x).await?;
            let q = l.cross_q.forward(be, &h).await?;
            let o = be.cross_attention(&q, ck, cv, heads, head_dim, scale).await?;
            x = l.cross_out.forward_add(be, &o, &x).await?;
            let h = l.mlp_norm.forward(be, &x).await?;
            let h = l.fc1.forward(be, &h).await?;
            let h = be.activation(&h, self.activation).await?;
            x = l.fc2.forward_add(be, &h, &x).await?;
        }
        let x = be.last_row(&x).await?;
        let x = self.decoder_norm.forward(be, &x).await?;
        let logits = be.linear(&x, &self.embed, None).await?;
        be.pick(&logits, pick).await
    }

    /// Decodes one encoded window with `rules` (`generate::whisper`). `on_step` sees each
    /// step's raw logits and the token chosen from them; it returns false to stop (abort).
    pub async fn decode(&mut self, rules: &WhisperGeneration, cross: &CrossKv<B>, opts: &DecodeOptions, mut on_step: impl FnMut(&[f32], u32) -> bool) -> Result<WindowTokens, ModelError> {
        rules.check(opts)?;
        let mut cache = self.kv_caches()?;
        let mut rng = SeededRng::new(opts.seed);
        let mut fed = 0usize; // tokens already in the cache
        let language = match &opts.language {
            Some(l) => Some(rules.language_id(l)?),
            None if rules.detects_language(opts) => {
                // The start token alone; the prompt that follows reuses its cache entry.
                let Next::Logits(logits) = self.step(cross, &mut cache, &[rules.decoder_start_token_id], 0, Pick::Logits).await? else {
                    return Err(ModelError::Config("a logits pass answered a token".into()));
                };
                fed = 1;
                Some(rules.detect(&logits).ok_or_else(|| ModelError::Config("no language tokens to detect".into()))?)
            }
            None => None,
        };
        let mut tokens = rules.prompt(language, opts)?;
        let prompt_len = tokens.len();
        let total = rules.max_total(prompt_len, self.shape.decoder_positions, opts) as usize;
        while tokens.len() < total {
            let Next::Logits(raw) = self.step(cross, &mut cache, &tokens[fed..], fed as u32, Pick::Logits).await? else {
                return Err(ModelError::Config("a logits pass answered a token".into()));
            };
            fed = tokens.len();
            let mut logits = raw.clone();
            rules.process(&mut logits, &tokens[prompt_len..], opts.timestamps);
            let next = crate::generate::sampling::sample(&logits, opts.sampling.as_ref(), rng.next_unit());
            tokens.push(next);
            if !on_step(&raw, next) || next == rules.eos_token_id {
                break;
            }
        }
        Ok(WindowTokens { tokens, prompt_len, language })
    }
}
