//! Text decoders of every architecture on either backend: the registry from a checkpoint's
//! `model_type` (hub `config.json`) or GGUF `general.architecture` to its model file, and
//! `Decoder<B>`, the generation loop's `LanguageModel` over any of them.
//!
//! Adding a decoder: its file in `src/models/` implementing `Architecture`, one line in
//! `decoders!` below, and its tests.

use crate::backend::Backend;
use crate::formats::{GgufMetadata, Metadata, TensorTable};
use crate::generate::{LanguageModel, Next, Pick};

use super::weights::Weights;
use super::{ModelError, RangeReader, gemma, gpt2, llama};

/// Prompt tokens per forward pass (bounds the activations and the attention scores).
pub const PREFILL_CHUNK: u32 = 64;

/// Where an architecture reads its hyperparameters.
#[derive(Clone, Copy)]
pub enum Config<'a> {
    /// A GGUF file's metadata.
    Gguf(&'a GgufMetadata),
    /// A hub checkpoint's `config.json`.
    Hub(&'a [u8]),
}

/// What a decoder's model file provides. Token ids, empty input and the context are checked by
/// `Decoder` before `forward` is called, the same way for every architecture and device.
#[allow(async_fn_in_trait)]
pub trait Architecture<B: Backend>: Sized {
    /// Reads the configuration and the weights; `context` caps the KV cache.
    async fn load(b: &B, config: Config<'_>, context: Option<u32>, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError>;
    fn vocab(&self) -> u32;
    /// KV-cache capacity in tokens.
    fn context(&self) -> u32;
    /// Called before a forward call that ends the sequence at `len` tokens: false when the keys
    /// already cached were rotated otherwise than a sequence of `len` tokens needs (LongRoPE
    /// switching factors at its original context), so that `Decoder` recomputes them.
    fn begin(&mut self, _len: u32) -> bool {
        true
    }
    /// `{ architecture, layers, hidden, heads, kvHeads?, vocab, context, weightBytes }`.
    fn info(&self, b: &B) -> serde_json::Value;
    /// Runs `ids` at positions `pos0..`, writing their K and V into the cache; with `head`, ends
    /// with the LM head on the last token and answers it, else ends the pass with no answer.
    async fn forward(&mut self, b: &mut B, pos0: u32, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError>;
}

/// The registry: each architecture's variant, model file, the hub `model_type`s and the GGUF
/// architectures it loads.
macro_rules! decoders {
    ($($variant:ident($model:ty): hub [$($hub:literal),*], gguf [$($gguf:literal),*];)*) => {
        /// A decoder of any registered architecture on backend `B`.
        pub enum Net<B: Backend> {
            $($variant($model),)*
        }

        /// The hub `model_type`s the registry loads.
        pub const HUB_MODEL_TYPES: &[&str] = &[$($($hub,)*)*];
        /// The GGUF architectures the registry loads.
        pub const GGUF_ARCHITECTURES: &[&str] = &[$($($gguf,)*)*];

        impl<B: Backend> Net<B> {
            async fn load(b: &B, config: Config<'_>, context: Option<u32>, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError> {
                let name = match config {
                    Config::Gguf(meta) => meta.get_str("general.architecture").ok_or_else(|| ModelError::Config("no general.architecture".into()))?.to_owned(),
                    Config::Hub(json) => super::model_type(json)?,
                };
                let known: &[&str] = if matches!(config, Config::Gguf(_)) { GGUF_ARCHITECTURES } else { HUB_MODEL_TYPES };
                $(
                    let names: &[&str] = if matches!(config, Config::Gguf(_)) { &[$($gguf),*] } else { &[$($hub),*] };
                    if names.contains(&name.as_str()) {
                        return Ok(Net::$variant(<$model as Architecture<B>>::load(b, config, context, w).await?));
                    }
                )*
                let what = if matches!(config, Config::Gguf(_)) { "GGUF architecture" } else { "model_type" };
                Err(ModelError::Config(format!("{what} {name:?} is not supported ({})", known.join(", "))))
            }

            fn vocab(&self) -> u32 {
                match self { $(Net::$variant(m) => m.vocab(),)* }
            }

            fn context(&self) -> u32 {
                match self { $(Net::$variant(m) => m.context(),)* }
            }

            fn begin(&mut self, len: u32) -> bool {
                match self { $(Net::$variant(m) => m.begin(len),)* }
            }

            fn info(&self, b: &B) -> serde_json::Value {
                match self { $(Net::$variant(m) => m.info(b),)* }
            }

            async fn forward(&mut self, b: &mut B, pos0: u32, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError> {
                match self { $(Net::$variant(m) => m.forward(b, pos0, ids, head).await,)* }
            }
        }
    };
}

decoders! {
    Llama(llama::Llama<B>): hub ["llama", "qwen2", "qwen3", "mistral", "smollm3", "phi3"], gguf ["llama", "mistral", "qwen2", "qwen3", "smollm3", "phi3"];
    Gpt2(gpt2::Gpt2<B>): hub ["gpt2"], gguf [];
    Gemma(gemma::Gemma<B>): hub ["gemma", "gemma2", "gemma3_text"], gguf ["gemma", "gemma2", "gemma3"];
}

/// A decoder on its backend, with the tokens in its KV cache.
pub struct Decoder<B: Backend> {
    pub backend: B,
    pub net: Net<B>,
    tokens: Vec<u32>,
}

impl<B: Backend> Decoder<B> {
    /// Loads a GGUF file (`config_json` None: its metadata is in `table`) or a hub checkpoint
    /// (its `config.json`) by the registry; `context` caps the KV cache.
    pub async fn load(backend: B, config_json: Option<&[u8]>, table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = match config_json {
            Some(json) => Config::Hub(json),
            None => match &table.metadata {
                Metadata::Gguf { metadata, .. } => Config::Gguf(metadata),
                _ => return Err(ModelError::Config("a safetensors file needs its config.json".into())),
            },
        };
        let net = Net::load(&backend, config, context, &mut Weights::new(table, read)).await?;
        Ok(Self { backend, net, tokens: Vec::new() })
    }

    /// The architecture's figures with the device's: `adapter`, `device`, and after a decode step
    /// on the GPU `dispatchesPerToken` (counted, not estimated).
    pub fn info(&self) -> serde_json::Value {
        let mut info = self.net.info(&self.backend);
        info["adapter"] = self.backend.adapter().into();
        info["device"] = self.backend.device().into();
        info
    }

    pub fn vocab(&self) -> u32 {
        self.net.vocab()
    }

    /// Tokens in the KV cache.
    pub fn position(&self) -> u32 {
        self.tokens.len() as u32
    }

    /// Forgets the sequence (the KV cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// The logits after `tokens` (tests), leaving the cache advanced.
    pub async fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self.forward(tokens, Pick::Logits).await? {
            Next::Logits(l) => Ok(l),
            Next::Token(_) => Err(ModelError::Config("a token where logits were asked".into())),
        }
    }

    /// The greedy next token after `tokens`.
    pub async fn next_token(&mut self, tokens: &[u32]) -> Result<u32, ModelError> {
        match self.forward(tokens, Pick::Greedy).await? {
            Next::Token(id) => Ok(id),
            Next::Logits(_) => Err(ModelError::Config("logits where a token was asked".into())),
        }
    }
}

impl<B: Backend> LanguageModel for Decoder<B> {
    fn context(&self) -> u32 {
        self.net.context()
    }

    fn cached(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
    }

    /// Feeds `tokens` after the cached ones, in chunks of `PREFILL_CHUNK`, and answers `pick`
    /// after the last. Refused before anything is cached: no tokens, an id past the vocabulary,
    /// more tokens than the cache has room for.
    async fn forward(&mut self, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        let vocab = self.net.vocab();
        if tokens.is_empty() {
            return Err(ModelError::Input("no tokens".into()));
        }
        if let Some(&id) = tokens.iter().find(|&&id| id >= vocab) {
            return Err(ModelError::Token { id, vocab });
        }
        let context = self.net.context();
        let end = u32::try_from(tokens.len()).ok().and_then(|n| self.position().checked_add(n));
        if end.is_none_or(|end| end > context) {
            return Err(ModelError::ContextFull { ctx: context, pos: end.unwrap_or(u32::MAX) });
        }
        if !self.net.begin(end.unwrap_or(0)) && self.position() > 0 {
            // The cached keys are stale for a sequence of this length: all of it again.
            let mut all = std::mem::take(&mut self.tokens);
            all.extend_from_slice(tokens);
            return self.feed(&all, pick).await;
        }
        self.feed(tokens, pick).await
    }
}

impl<B: Backend> Decoder<B> {
    /// Runs `tokens` after the cached ones, in chunks of `PREFILL_CHUNK`, answering `pick` after
    /// the last.
    async fn feed(&mut self, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        let mut chunks = tokens.chunks(PREFILL_CHUNK as usize).peekable();
        while let Some(chunk) = chunks.next() {
            let head = chunks.peek().is_none().then_some(pick);
            let pos0 = self.position();
            let answer = self.net.forward(&mut self.backend, pos0, chunk, head).await?;
            self.tokens.extend_from_slice(chunk);
            if let Some(next) = answer {
                return Ok(next);
            }
        }
        Err(ModelError::Input("no tokens".into()))
    }
}

impl<B: Backend> Decoder<B> {
    /// The model cut to its first `layers` layers (then its final norm and LM head), with a small
    /// cache: what [`gpu_self_check`] runs on both backends.
    pub async fn load_first_layers(backend: B, config_json: Option<&[u8]>, table: &TensorTable, layers: u32, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        const CONTEXT: u32 = 32;
        match config_json {
            Some(json) => {
                let mut v: serde_json::Value = serde_json::from_slice(json).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
                // `n_layer` in GPT-2's config.
                let key = if v.get("num_hidden_layers").is_some() { "num_hidden_layers" } else { "n_layer" };
                if let Some(n) = v.get(key).and_then(serde_json::Value::as_u64) {
                    v[key] = n.min(u64::from(layers)).into();
                    // Per-layer lists (layer_types, SmolLM3's no_rope_layers, ...) cut alike.
                    if let Some(fields) = v.as_object_mut() {
                        for list in fields.values_mut().filter_map(serde_json::Value::as_array_mut).filter(|l| l.len() as u64 == n) {
                            list.truncate(layers as usize);
                        }
                    }
                }
                let json = serde_json::to_vec(&v).map_err(|e| ModelError::Config(e.to_string()))?;
                Self::load(backend, Some(&json), table, Some(CONTEXT), read).await
            }
            None => {
                let mut cut = table.clone();
                if let Metadata::Gguf { metadata, .. } = &mut cut.metadata {
                    let arch = metadata.get_str("general.architecture").unwrap_or_default().to_string();
                    let key = format!("{arch}.block_count");
                    if let Some(n) = metadata.get_u64(&key) {
                        metadata.set(&key, crate::formats::GgufValue::U32(n.min(u64::from(layers)) as u32));
                        // Per-layer arrays of the architecture's keys cut alike.
                        let prefix = format!("{arch}.");
                        let per_layer: Vec<String> = metadata
                            .entries()
                            .iter()
                            .filter(|(k, v)| k.starts_with(&prefix) && matches!(v, crate::formats::GgufValue::Array(a) if a.values.len() as u64 == n))
                            .map(|(k, _)| k.clone())
                            .collect();
                        for k in per_layer {
                            if let Some(crate::formats::GgufValue::Array(mut a)) = metadata.get(&k).cloned() {
                                a.values.truncate(layers as usize);
                                metadata.set(&k, crate::formats::GgufValue::Array(a));
                            }
                        }
                    }
                }
                Self::load(backend, None, &cut, Some(CONTEXT), read).await
            }
        }
    }
}

/// What [`gpu_self_check`] found.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SelfCheck {
    /// RMS of the GPU's logits minus the CPU's, over the RMS of the CPU's.
    pub relative_error: f32,
    /// The bound it was held to.
    pub bound: f32,
    pub passed: bool,
    pub ms: f64,
}

/// The bound of [`gpu_self_check`]: the CPU backend rounds a GGUF model's activations to 8 bits
/// before its quantized products (as llama.cpp does), which moves the tiny test models' logits by
/// 2–4% of the largest (tests/llama_family.rs); the GPU computes in f32 (or f16 products). A GPU
/// computing garbage (a miscompiled shader, a broken driver) is off by the logits' own size.
pub const SELF_CHECK_BOUND: f32 = 0.15;

/// The most CPU memory the self-check's probe may take: on the CPU backend the probe holds the
/// embedding table widened to f32 while it looks rows up (the largest tensor of a decoder), which
/// in wasm's 4 GiB must stay well clear of the limit (Mistral-7B's 32000 × 4096: 524 MB, checked;
/// Llama-3-8B's 128256 × 4096: 2.1 GB, not).
pub const SELF_CHECK_MAX_CPU_BYTES: u64 = 1 << 30;

/// The f32 bytes of `table`'s largest tensor: what the self-check's CPU probe holds at its peak.
pub fn self_check_cpu_bytes(table: &TensorTable) -> u64 {
    table.tensors.iter().map(|t| t.elems()).max().unwrap_or(0).saturating_mul(4)
}

/// A check against a GPU that computes garbage without an error: the model's first layer (then
/// its final norm and LM head) run on a fixed short probe on the GPU `gpu` and on the CPU backend,
/// from the same weights, and the logits compared ([`SELF_CHECK_BOUND`]).
pub async fn gpu_self_check(gpu: std::rc::Rc<crate::gpu::GpuContext>, config_json: Option<&[u8]>, table: &TensorTable, read: &mut impl RangeReader) -> Result<SelfCheck, ModelError> {
    let t0 = crate::clock::now_ms();
    let mut on_gpu = Decoder::load_first_layers(crate::gpu::backend::Gpu::new(gpu), config_json, table, 1, read).await?;
    let vocab = on_gpu.vocab();
    let probe: Vec<u32> = (0..6u32).map(|i| (i * 7919 + 13) % vocab).collect();
    let got = on_gpu.logits(&probe).await?;
    drop(on_gpu);
    let mut on_cpu = Decoder::load_first_layers(crate::cpu::backend::Cpu, config_json, table, 1, read).await?;
    let want = on_cpu.logits(&probe).await?;
    let rms = |v: &mut dyn Iterator<Item = f32>| {
        let (sum, n) = v.fold((0f64, 0usize), |(s, n), x| (s + f64::from(x) * f64::from(x), n + 1));
        (sum / n.max(1) as f64).sqrt()
    };
    let diff = rms(&mut got.iter().zip(&want).map(|(g, w)| if g.is_finite() { g - w } else { f32::MAX }));
    let relative_error = if got.len() == want.len() { (diff / rms(&mut want.iter().copied()).max(1e-12)) as f32 } else { f32::INFINITY };
    Ok(SelfCheck { relative_error, bound: SELF_CHECK_BOUND, passed: relative_error <= SELF_CHECK_BOUND, ms: crate::clock::now_ms() - t0 })
}

/// A decoder on whichever device was chosen at run time: what the wasm API, the CLI and the
/// tests hold.
#[allow(clippy::large_enum_variant)] // one per model
pub enum AnyDecoder {
    Gpu(Decoder<crate::gpu::backend::Gpu>),
    Cpu(Decoder<crate::cpu::backend::Cpu>),
}

impl AnyDecoder {
    /// Loads on the GPU of `gpu`, or on the CPU without one (as `Decoder::load`).
    pub async fn load(gpu: Option<std::rc::Rc<crate::gpu::GpuContext>>, config_json: Option<&[u8]>, table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        Ok(match gpu {
            Some(ctx) => Self::Gpu(Decoder::load(crate::gpu::backend::Gpu::new(ctx), config_json, table, context, read).await?),
            None => Self::Cpu(Decoder::load(crate::cpu::backend::Cpu, config_json, table, context, read).await?),
        })
    }

    pub fn info(&self) -> serde_json::Value {
        match self {
            Self::Gpu(m) => m.info(),
            Self::Cpu(m) => m.info(),
        }
    }

    pub fn vocab(&self) -> u32 {
        match self {
            Self::Gpu(m) => m.vocab(),
            Self::Cpu(m) => m.vocab(),
        }
    }

    /// The GPU backend, when the model runs there.
    pub fn gpu(&self) -> Option<&crate::gpu::backend::Gpu> {
        match self {
            Self::Gpu(m) => Some(&m.backend),
            Self::Cpu(_) => None,
        }
    }

    /// The logits after `tokens` (tests), leaving the cache advanced.
    pub async fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self {
            Self::Gpu(m) => m.logits(tokens).await,
            Self::Cpu(m) => m.logits(tokens).await,
        }
    }
}

impl LanguageModel for AnyDecoder {
    fn context(&self) -> u32 {
        match self {
            Self::Gpu(m) => m.context(),
            Self::Cpu(m) => m.context(),
        }
    }

    fn cached(&self) -> &[u32] {
        match self {
            Self::Gpu(m) => m.cached(),
            Self::Cpu(m) => m.cached(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Self::Gpu(m) => m.truncate(len),
            Self::Cpu(m) => m.truncate(len),
        }
    }

    async fn forward(&mut self, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        match self {
            Self::Gpu(m) => m.forward(tokens, pick).await,
            Self::Cpu(m) => m.forward(tokens, pick).await,
        }
    }
}

/// The sizes every decoder's `config.json` gives (flattened into each architecture's own fields).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct HubSizes {
    pub model_type: String,
    pub hidden_size: u32,
    pub intermediate_size: u32,
    pub num_hidden_layers: u32,
    pub num_attention_heads: u32,
    pub num_key_value_heads: Option<u32>,
    pub head_dim: Option<u32>,
    pub vocab_size: u32,
    pub max_position_embeddings: u32,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f32,
}

fn default_rms_eps() -> f32 {
    1e-6
}

/// The KV cache's capacity: `requested` (default the model's context, at most 4096) within
/// 1..=the model's context.
pub(crate) fn capacity(model_context: u32, requested: Option<u32>) -> u32 {
    requested.unwrap_or(model_context.min(4096)).clamp(1, model_context)
}

/// Which layers slide, from transformers 5's `layer_types` (one per layer of `n`).
pub(crate) fn sliding_layers(types: &[String], n: usize) -> Result<Vec<bool>, String> {
    if types.len() != n {
        return Err(format!("layer_types has {} entries for {n} layers", types.len()));
    }
    types
        .iter()
        .map(|t| match t.as_str() {
            "full_attention" => Ok(false),
            "sliding_attention" => Ok(true),
            other => Err(format!("layer type {other:?} is not supported (full_attention, sliding_attention)")),
        })
        .collect()
}

/// A GGUF's `{arch}.*` hyperparameters as typed errors naming the key.
pub(crate) struct GgufKeys<'a> {
    pub meta: &'a GgufMetadata,
    pub arch: &'a str,
}

impl GgufKeys<'_> {
    /// A positive integer that must be there.
    pub fn required(&self, key: &str) -> Result<u32, ModelError> {
        self.meta
            .get_u64(&format!("{}.{key}", self.arch))
            .and_then(|v| u32::try_from(v).ok())
            .filter(|&v| v > 0)
            .ok_or_else(|| ModelError::Config(format!("{}.{key} missing or not a positive integer", self.arch)))
    }

    pub fn optional(&self, key: &str) -> Result<Option<u32>, ModelError> {
        self.meta.get_u64(&format!("{}.{key}", self.arch)).map(|v| u32::try_from(v).map_err(|_| ModelError::Config(format!("{}.{key} out of range", self.arch)))).transpose()
    }

    pub fn float(&self, key: &str) -> Option<f32> {
        self.meta.get_f64(&format!("{}.{key}", self.arch)).map(|v| v as f32)
    }

    /// `{arch}.vocab_size`, else the tokenizer's token count.
    pub fn vocab(&self) -> Result<u32, ModelError> {
        self.meta
            .get_u64(&format!("{}.vocab_size", self.arch))
            .or_else(|| self.meta.get_array("tokenizer.ggml.tokens").map(|t| t.len() as u64))
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| ModelError::Config("no vocabulary size".into()))
    }
}
