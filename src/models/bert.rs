//! The BERT encoder for sentence embeddings (all-MiniLM-L6-v2, BERT-base-like checkpoints) from a
//! hub `config.json` and safetensors weights (F32, F16 or BF16; names with or without `bert.`).
//!
//! Post-LayerNorm blocks: self-attention over the sequence with a padding mask, then a GELU MLP,
//! each added back and layer-normalised. Sentences of a batch are padded to the longest of their
//! pass and masked by their lengths; token types are all 0. `embed` mean-pools the real tokens of
//! each sentence and L2-normalises, as sentence-transformers' `Pooling` (mean) + `Normalize` do.
//!
//! A batch runs in passes of at most `TOKENS_PER_PASS` padded tokens (sentences sorted by length,
//! so little padding), each pass one command buffer; activations are sized by the largest pass
//! seen and reused.

use serde::Deserialize;

use crate::formats::{DType, TensorInfo, TensorTable};
use crate::gpu::GpuContext;
use crate::gpu::ops::attention::Attention;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::norm::Norm;
use crate::gpu::ops::{embedding, matvec, new_encoder, pool, submit};
use crate::gpu::weights::GpuWeight;
use crate::models::llama::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;

/// Padded tokens per forward pass (a longer sentence runs alone in its pass).
pub const TOKENS_PER_PASS: u32 = 1024;

/// Bounds on config values: beyond them a config is refused before anything is allocated.
const MAX_VOCAB: u64 = 4_000_000;
const MAX_HIDDEN: u64 = 16_384;
const MAX_LAYERS: u64 = 256;
const MAX_INTERMEDIATE: u64 = 65_536;
const MAX_POSITIONS: u64 = 65_536;
const MAX_TYPES: u64 = 1024;

/// `config.json` as written by `transformers` for `BertModel` (unknown keys ignored).
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: Option<u64>,
    hidden_size: Option<u64>,
    num_hidden_layers: Option<u64>,
    num_attention_heads: Option<u64>,
    intermediate_size: Option<u64>,
    max_position_embeddings: Option<u64>,
    type_vocab_size: Option<u64>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    position_embedding_type: Option<String>,
}

/// Hyperparameters, from `config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct BertConfig {
    pub vocab: u32,
    pub hidden: u32,
    pub layers: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub intermediate: u32,
    pub max_positions: u32,
    pub type_vocab: u32,
    pub layer_norm_eps: f32,
    /// `Elementwise::GeluErf` ("gelu") or `GeluTanh` ("gelu_new", "gelu_pytorch_tanh").
    pub activation: Elementwise,
}

impl BertConfig {
    /// Parses and checks a `config.json`: required sizes present, positive, within bounds and
    /// consistent; an activation and position embedding type this encoder implements.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::Config(format!("config.json: {m}"));
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if let Some(t) = raw.model_type.as_deref().filter(|t| *t != "bert") {
            return Err(bad(format!("model_type {t:?} is not \"bert\"")));
        }
        if let Some(p) = raw.position_embedding_type.as_deref().filter(|p| *p != "absolute") {
            return Err(bad(format!("position_embedding_type {p:?} is not supported (only \"absolute\")")));
        }
        let size = |name: &str, v: Option<u64>, default: Option<u64>, max: u64| -> Result<u32, ModelError> {
            let v = v.or(default).ok_or_else(|| bad(format!("{name} is missing")))?;
            if v == 0 || v > max {
                return Err(bad(format!("{name} = {v} is outside 1..={max}")));
            }
            Ok(v as u32)
        };
        let hidden = size("hidden_size", raw.hidden_size, None, MAX_HIDDEN)?;
        let heads = size("num_attention_heads", raw.num_attention_heads, None, MAX_HIDDEN)?;
        if !hidden.is_multiple_of(heads) {
            return Err(bad(format!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}")));
        }
        let eps = raw.layer_norm_eps.unwrap_or(1e-12);
        if !(eps.is_finite() && (0.0..=1.0).contains(&eps)) {
            return Err(bad(format!("layer_norm_eps = {eps} is not in [0, 1]")));
        }
        let activation = match raw.hidden_act.as_deref().unwrap_or("gelu") {
            "gelu" => Elementwise::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Elementwise::GeluTanh,
            other => return Err(bad(format!("hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh)"))),
        };
        Ok(Self {
            vocab: size("vocab_size", raw.vocab_size, None, MAX_VOCAB)?,
            hidden,
            layers: size("num_hidden_layers", raw.num_hidden_layers, None, MAX_LAYERS)?,
            heads,
            head_dim: hidden / heads,
            intermediate: size("intermediate_size", raw.intermediate_size, None, MAX_INTERMEDIATE)?,
            max_positions: size("max_position_embeddings", raw.max_position_embeddings, None, MAX_POSITIONS)?,
            type_vocab: size("type_vocab_size", raw.type_vocab_size, Some(2), MAX_TYPES)?,
            layer_norm_eps: eps as f32,
            activation,
        })
    }
}

/// `max_seq_length` of a sentence-transformers `sentence_bert_config.json`.
pub fn max_seq_length(sentence_bert_config: &[u8]) -> Result<u32, ModelError> {
    #[derive(Deserialize)]
    struct SentenceBertConfig {
        max_seq_length: u64,
    }
    let c: SentenceBertConfig =
        serde_json::from_slice(sentence_bert_config).map_err(|e| ModelError::Config(format!("sentence_bert_config.json: {e}")))?;
    u32::try_from(c.max_seq_length)
        .ok()
        .filter(|&n| n >= 2)
        .ok_or_else(|| ModelError::Config(format!("sentence_bert_config.json: max_seq_length = {} is not in 2..2^32", c.max_seq_length)))
}

/// Token ids of each text with `[CLS]`/`[SEP]`, truncated as sentence-transformers truncates
/// one sentence: the first `max_seq_len − 1` ids and the final `[SEP]`. Shared by the GPU and the
/// CPU encoder.
pub fn tokenize<S: AsRef<str>>(tokenizer: &Tokenizer, texts: &[S], max_seq_len: u32) -> Result<Vec<Vec<u32>>, ModelError> {
    let max = max_seq_len as usize;
    texts
        .iter()
        .map(|t| {
            let mut ids = tokenizer.encode(t.as_ref(), true).map_err(|e| ModelError::Input(e.to_string()))?;
            if ids.len() > max {
                let last = ids.last().copied().unwrap_or(0);
                ids.truncate(max.saturating_sub(1));
                ids.push(last);
            }
            Ok(ids)
        })
        .collect()
}

/// Refuses a batch an encoder cannot run: an empty sequence, one past `max_seq_len`, a token id
/// past the vocabulary.
pub(crate) fn check_input(config: &BertConfig, max_seq_len: u32, batch: &[Vec<u32>]) -> Result<(), ModelError> {
    for (i, ids) in batch.iter().enumerate() {
        if ids.is_empty() {
            return Err(ModelError::Input(format!("sequence {i} has no tokens")));
        }
        if ids.len() > max_seq_len as usize {
            return Err(ModelError::Input(format!("sequence {i} has {} tokens, more than the model's {max_seq_len}", ids.len())));
        }
        if let Some(&bad) = ids.iter().find(|&&id| id >= config.vocab) {
            return Err(ModelError::Input(format!("sequence {i}: token id {bad} is not below the vocabulary size {}", config.vocab)));
        }
    }
    Ok(())
}

/// One pass: sentences (indices into the batch) padded to `len` tokens.
pub(crate) struct Pass {
    pub members: Vec<usize>,
    pub len: u32,
}

/// Groups sentences into passes: longest first, each pass padded to its first (longest)
/// member, as many members as fit in `TOKENS_PER_PASS` padded tokens and are at least about
/// half as long as the pass (`2·len + 16 ≥ pass length`), so padding stays a bounded share.
pub(crate) fn passes(batch: &[Vec<u32>]) -> Vec<Pass> {
    let mut order: Vec<usize> = (0..batch.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(batch[i].len()));
    let mut passes: Vec<Pass> = Vec::new();
    for i in order {
        let len = batch[i].len() as u32;
        match passes.last_mut() {
            Some(p) if (p.members.len() as u32 + 1) * p.len <= TOKENS_PER_PASS && 2 * len + 16 >= p.len => p.members.push(i),
            _ => passes.push(Pass { members: vec![i], len }),
        }
    }
    passes
}

/// The position embeddings (max_positions × hidden) with token type 0's row added to each, as
/// f32: every token has type 0, so its embedding is folded into the position table.
pub(crate) async fn position_type0(c: &BertConfig, table: &TensorTable, read: &mut impl RangeReader) -> Result<Vec<f32>, ModelError> {
    let positions = values(table, read, "embeddings.position_embeddings.weight", &[c.max_positions, c.hidden]).await?;
    let types = values(table, read, "embeddings.token_type_embeddings.weight", &[c.type_vocab, c.hidden]).await?;
    let type0 = types.get(..c.hidden as usize).ok_or_else(|| ModelError::Tensor { name: "token_type_embeddings".into(), problem: "no row 0".into() })?;
    Ok(positions.chunks_exact(type0.len()).flat_map(|row| row.iter().zip(type0).map(|(p, t)| p + t)).collect())
}

/// A LayerNorm's gain and bias.
struct LayerNorm {
    g: wgpu::Buffer,
    b: wgpu::Buffer,
}

/// A dense layer `y = x·Wᵀ + b`.
struct Linear {
    w: GpuWeight,
    b: wgpu::Buffer,
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// Buffers for one pass, with the capacities they were made for.
struct Activations {
    tokens: u64,
    batch: u64,
    scores_elems: u64,
    x: wgpu::Buffer,
    x2: wgpu::Buffer,
    h: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    attn: wgpu::Buffer,
    f1: wgpu::Buffer,
    f2: wgpu::Buffer,
    ids: wgpu::Buffer,
    positions: wgpu::Buffer,
    lengths: wgpu::Buffer,
    scores: wgpu::Buffer,
    pooled: wgpu::Buffer,
}

impl Activations {
    fn new(ctx: &GpuContext, c: &BertConfig, tokens: u64, batch: u64, scores_elems: u64) -> Result<Self, ModelError> {
        let buf = |what: &'static str, elems: u64| ctx.storage_output("bert", what, elems.max(1) * 4);
        let (th, ti) = (tokens * u64::from(c.hidden), tokens * u64::from(c.intermediate));
        Ok(Self {
            tokens,
            batch,
            scores_elems,
            x: buf("x", th)?,
            x2: buf("x2", th)?,
            h: buf("h", th)?,
            q: buf("q", th)?,
            k: buf("k", th)?,
            v: buf("v", th)?,
            attn: buf("attn", th)?,
            f1: buf("ffn 1", ti)?,
            f2: buf("ffn 2", ti)?,
            ids: buf("token ids", tokens)?,
            positions: buf("position ids", tokens)?,
            lengths: buf("lengths", batch)?,
            scores: buf("scores", scores_elems)?,
            pooled: buf("pooled", batch * u64::from(c.hidden))?,
        })
    }
}

/// What a forward pass returns per sentence.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// Mean over the real tokens, L2-normalised (hidden values).
    Pooled,
    /// The last hidden state of the real tokens (length × hidden values).
    Hidden,
}

/// A BERT encoder on the GPU.
pub struct Bert {
    pub config: BertConfig,
    /// Longest sequence `embed` takes (`max_position_embeddings`, or less when set); text is
    /// truncated to it.
    pub max_seq_len: u32,
    word: GpuWeight,
    /// Position embeddings plus token type 0's embedding, as F32.
    position_type0: GpuWeight,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    act: Option<Activations>,
}

impl Bert {
    /// Loads a BERT encoder: `config_json` is the checkpoint's `config.json`, `table` its
    /// safetensors header, `read` the file's bytes by range (one tensor at a time).
    pub async fn load(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = BertConfig::from_json(config_json)?;
        let c = &config;
        let word = matrix(ctx, table, read, "embeddings.word_embeddings.weight", c.vocab, c.hidden).await?;
        let folded: Vec<u8> = position_type0(c, table, read).await?.into_iter().flat_map(f32::to_le_bytes).collect();
        let position_type0 =
            GpuWeight::upload(ctx, "position + type embeddings", DType::F32, u64::from(c.max_positions), u64::from(c.hidden), &folded)?;
        let emb_norm = layer_norm(ctx, table, read, "embeddings.LayerNorm", c.hidden).await?;
        let mut layers = Vec::with_capacity(c.layers as usize);
        for l in 0..c.layers {
            let p = |s: &str| format!("encoder.layer.{l}.{s}");
            layers.push(Layer {
                q: linear(ctx, table, read, &p("attention.self.query"), c.hidden, c.hidden).await?,
                k: linear(ctx, table, read, &p("attention.self.key"), c.hidden, c.hidden).await?,
                v: linear(ctx, table, read, &p("attention.self.value"), c.hidden, c.hidden).await?,
                attn_out: linear(ctx, table, read, &p("attention.output.dense"), c.hidden, c.hidden).await?,
                attn_norm: layer_norm(ctx, table, read, &p("attention.output.LayerNorm"), c.hidden).await?,
                up: linear(ctx, table, read, &p("intermediate.dense"), c.intermediate, c.hidden).await?,
                down: linear(ctx, table, read, &p("output.dense"), c.hidden, c.intermediate).await?,
                out_norm: layer_norm(ctx, table, read, &p("output.LayerNorm"), c.hidden).await?,
            });
        }
        let max_seq_len = config.max_positions;
        Ok(Self { config, max_seq_len, word, position_type0, emb_norm, layers, act: None })
    }

    /// Caps sequences at `max_seq_length` from a sentence-transformers `sentence_bert_config.json`
    /// (at most the model's positions).
    pub fn apply_sentence_bert_config(&mut self, json: &[u8]) -> Result<(), ModelError> {
        self.max_seq_len = max_seq_length(json)?.min(self.config.max_positions);
        Ok(())
    }

    /// Token ids of each text with `[CLS]`/`[SEP]`, truncated to `max_seq_len` (see `tokenize`).
    pub fn tokenize<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        tokenize(tokenizer, texts, self.max_seq_len)
    }

    /// Sentence embeddings of `texts` (tokenized with `tokenize`).
    pub async fn embed_texts<S: AsRef<str>>(&mut self, ctx: &GpuContext, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = self.tokenize(tokenizer, texts)?;
        self.embed(ctx, &batch).await
    }

    /// Mean-pooled, L2-normalised embeddings (`hidden` values each) of a batch of token-id
    /// sequences of any lengths from 1 to `max_seq_len`.
    pub async fn embed(&mut self, ctx: &GpuContext, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(ctx, batch, Output::Pooled).await
    }

    /// The last hidden state of each sequence's tokens (length × hidden values, row-major): for
    /// tests and token-level features.
    pub async fn last_hidden_state(&mut self, ctx: &GpuContext, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(ctx, batch, Output::Hidden).await
    }

    /// Compute dispatches in one pass: 2 embedding lookups, an add and a LayerNorm; per layer 6
    /// matvecs (times their parts), 6 bias adds, attention, 2 residual adds, GELU, 2 LayerNorms;
    /// then pooling.
    pub fn dispatches_per_pass(&self) -> u32 {
        let parts = |w: &GpuWeight| w.parts.len() as u32;
        let per_layer: u32 = self
            .layers
            .iter()
            .map(|l| [&l.q, &l.k, &l.v, &l.attn_out, &l.up, &l.down].iter().map(|lin| parts(&lin.w)).sum::<u32>() + 12)
            .sum();
        parts(&self.word) + parts(&self.position_type0) + 2 + per_layer + 1
    }

    /// Bytes of weights one pass reads (every matrix once).
    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.layers.iter().map(|l| [&l.q, &l.k, &l.v, &l.attn_out, &l.up, &l.down].iter().map(|lin| lin.w.gpu_bytes()).sum::<u64>()).sum()
    }

    async fn run(&mut self, ctx: &GpuContext, batch: &[Vec<u32>], output: Output) -> Result<Vec<Vec<f32>>, ModelError> {
        check_input(&self.config, self.max_seq_len, batch)?;
        let mut results = vec![Vec::new(); batch.len()];
        for pass in passes(batch) {
            let outs = self.forward(ctx, batch, &pass, output).await?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    /// Makes sure the activations hold a pass of `n` sentences of `len` tokens.
    fn ensure_activations(&mut self, ctx: &GpuContext, n: u64, len: u64) -> Result<(), ModelError> {
        let c = &self.config;
        let scores = n * len * len * u64::from(c.heads);
        let tokens = n * len;
        if let Some(a) = &self.act
            && a.tokens >= tokens
            && a.batch >= n
            && a.scores_elems >= scores
        {
            return Ok(());
        }
        let (t0, b0, s0) = self.act.as_ref().map_or((0, 0, 0), |a| (a.tokens, a.batch, a.scores_elems));
        self.act = None;
        self.act = Some(Activations::new(ctx, c, tokens.max(t0), n.max(b0), scores.max(s0))?);
        Ok(())
    }

    async fn forward(&mut self, ctx: &GpuContext, batch: &[Vec<u32>], pass: &Pass, output: Output) -> Result<Vec<Vec<f32>>, ModelError> {
        let (n, len) = (pass.members.len() as u32, pass.len);
        self.ensure_activations(ctx, u64::from(n), u64::from(len))?;
        let Some(a) = self.act.as_ref() else {
            return Err(ModelError::Config("no activations".into()));
        };
        let c = &self.config;
        let tokens = n * len;
        let mut ids = Vec::with_capacity(tokens as usize);
        let mut lengths = Vec::with_capacity(n as usize);
        for &i in &pass.members {
            let seq = batch.get(i).map_or(&[][..], Vec::as_slice);
            ids.extend_from_slice(seq);
            ids.resize(ids.len() + (len as usize).saturating_sub(seq.len()), 0);
            lengths.push(seq.len() as u32);
        }
        let positions: Vec<u32> = (0..n).flat_map(|_| 0..len).collect();
        ctx.queue.write_buffer(&a.ids, 0, bytemuck::cast_slice(&ids));
        ctx.queue.write_buffer(&a.positions, 0, bytemuck::cast_slice(&positions));
        ctx.queue.write_buffer(&a.lengths, 0, bytemuck::cast_slice(&lengths));

        let (h, nh, ni) = (c.hidden, u64::from(tokens) * u64::from(c.hidden), u64::from(tokens) * u64::from(c.intermediate));
        let norm = Norm::Layer { eps: c.layer_norm_eps };
        let bias = Elementwise::AddRow { cols: h };
        let up_bias = Elementwise::AddRow { cols: c.intermediate };
        let attn = Attention {
            batch: n,
            q_len: len,
            kv_len: len,
            heads: c.heads,
            kv_heads: c.heads,
            head_dim: c.head_dim,
            q_pos0: 0,
            causal: false,
            scale: 1.0 / (c.head_dim as f32).sqrt(),
        };
        let mut e = new_encoder(ctx, "bert forward");
        embedding::encode(ctx, &mut e, &self.word, tokens, &a.ids, &a.x).await?;
        embedding::encode(ctx, &mut e, &self.position_type0, tokens, &a.positions, &a.h).await?;
        Elementwise::Add.encode(ctx, &mut e, nh, &a.x, &a.h, &a.x2).await?;
        norm.encode(ctx, &mut e, tokens, h, &a.x2, &self.emb_norm.g, &self.emb_norm.b, &a.x).await?;
        for l in &self.layers {
            for (lin, out) in [(&l.q, &a.q), (&l.k, &a.k), (&l.v, &a.v)] {
                matvec::encode(ctx, &mut e, &lin.w, tokens, &a.x, &a.h).await?;
                bias.encode(ctx, &mut e, nh, &a.h, &lin.b, out).await?;
            }
            attn.encode(ctx, &mut e, &a.q, &a.k, &a.v, &a.lengths, &a.scores, &a.attn).await?;
            matvec::encode(ctx, &mut e, &l.attn_out.w, tokens, &a.attn, &a.h).await?;
            bias.encode(ctx, &mut e, nh, &a.h, &l.attn_out.b, &a.q).await?;
            Elementwise::Add.encode(ctx, &mut e, nh, &a.q, &a.x, &a.x2).await?;
            norm.encode(ctx, &mut e, tokens, h, &a.x2, &l.attn_norm.g, &l.attn_norm.b, &a.x).await?;
            matvec::encode(ctx, &mut e, &l.up.w, tokens, &a.x, &a.f1).await?;
            up_bias.encode(ctx, &mut e, ni, &a.f1, &l.up.b, &a.f2).await?;
            c.activation.encode(ctx, &mut e, ni, &a.f2, &a.f2, &a.f1).await?;
            matvec::encode(ctx, &mut e, &l.down.w, tokens, &a.f1, &a.h).await?;
            bias.encode(ctx, &mut e, nh, &a.h, &l.down.b, &a.q).await?;
            Elementwise::Add.encode(ctx, &mut e, nh, &a.q, &a.x, &a.x2).await?;
            norm.encode(ctx, &mut e, tokens, h, &a.x2, &l.out_norm.g, &l.out_norm.b, &a.x).await?;
        }
        if output == Output::Pooled {
            pool::encode(ctx, &mut e, n, len, h, true, &a.x, &a.lengths, &a.pooled).await?;
        }
        submit(ctx, "bert forward", e).await?;
        let hidden = h as usize;
        Ok(match output {
            Output::Pooled => ctx.read_f32(&a.pooled, n as usize * hidden).await?.chunks_exact(hidden).map(<[f32]>::to_vec).collect(),
            Output::Hidden => {
                let all = ctx.read_f32(&a.x, tokens as usize * hidden).await?;
                all.chunks_exact(len as usize * hidden).zip(&lengths).map(|(seq, &l)| seq[..l as usize * hidden].to_vec()).collect()
            }
        })
    }
}

/// The tensor `name`, or `bert.{name}` (checkpoints of task models prefix the encoder).
fn find<'t>(table: &'t TensorTable, name: &str) -> Result<&'t TensorInfo, ModelError> {
    table
        .get(name)
        .or_else(|| table.get(&format!("bert.{name}")))
        .ok_or_else(|| ModelError::Tensor { name: name.into(), problem: "missing (also as bert.*)".into() })
}

/// A tensor's values as f32 (small tensors: norms, biases, position tables); F32, F16 or BF16.
pub(crate) async fn values(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
    let t = find(table, name)?;
    if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(ModelError::Tensor { name: t.name.clone(), problem: format!("dtype {} (F32, F16 or BF16 expected)", t.dtype) });
    }
    super::tensor_values(t, read, shape).await
}

async fn vector(ctx: &GpuContext, table: &TensorTable, read: &mut impl RangeReader, name: &str, len: u32) -> Result<wgpu::Buffer, ModelError> {
    let v = values(table, read, name, &[len]).await?;
    Ok(ctx.storage_from("bert", "vector", &v)?)
}

async fn matrix(ctx: &GpuContext, table: &TensorTable, read: &mut impl RangeReader, name: &str, rows: u32, cols: u32) -> Result<GpuWeight, ModelError> {
    super::upload_matrix(ctx, find(table, name)?, read, rows, cols).await
}

async fn linear(ctx: &GpuContext, table: &TensorTable, read: &mut impl RangeReader, prefix: &str, rows: u32, cols: u32) -> Result<Linear, ModelError> {
    Ok(Linear { w: matrix(ctx, table, read, &format!("{prefix}.weight"), rows, cols).await?, b: vector(ctx, table, read, &format!("{prefix}.bias"), rows).await? })
}

async fn layer_norm(ctx: &GpuContext, table: &TensorTable, read: &mut impl RangeReader, prefix: &str, len: u32) -> Result<LayerNorm, ModelError> {
    Ok(LayerNorm { g: vector(ctx, table, read, &format!("{prefix}.weight"), len).await?, b: vector(ctx, table, read, &format!("{prefix}.bias"), len).await? })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"model_type":"bert","vocab_size":30522,"hidden_size":384,"num_hidden_layers":6,
        "num_attention_heads":12,"intermediate_size":1536,"max_position_embeddings":512,"type_vocab_size":2,
        "layer_norm_eps":1e-12,"hidden_act":"gelu","position_embedding_type":"absolute"}"#;

    #[test]
    fn reads_a_minilm_config() {
        let c = BertConfig::from_json(MINI.as_bytes()).unwrap();
        assert_eq!((c.vocab, c.hidden, c.layers, c.heads, c.head_dim, c.intermediate, c.max_positions, c.type_vocab), (30522, 384, 6, 12, 32, 1536, 512, 2));
        assert_eq!(c.activation, Elementwise::GeluErf);
        assert_eq!(c.layer_norm_eps, 1e-12);
    }

    #[test]
    fn passes_group_by_length_within_the_token_budget() {
        let batch: Vec<Vec<u32>> = [3usize, 700, 5, 700, 2, 400, 300, 100, 60, 60].iter().map(|&n| vec![1; n]).collect();
        let passes = passes(&batch);
        let shape: Vec<(Vec<usize>, u32)> = passes.into_iter().map(|p| (p.members, p.len)).collect();
        // 700 + 700 exceed the budget; 300 joins 400; 100 is too short for 400; 5, 3, 2 make one.
        assert_eq!(shape, vec![(vec![1], 700), (vec![3], 700), (vec![5, 6], 400), (vec![7, 8, 9], 100), (vec![2, 0, 4], 5)]);
    }

    #[test]
    fn sentence_bert_config_gives_max_seq_length() {
        assert_eq!(max_seq_length(br#"{"max_seq_length": 256, "do_lower_case": false}"#).unwrap(), 256);
        assert!(matches!(max_seq_length(br#"{"max_seq_length": -1}"#), Err(ModelError::Config(_))));
        assert!(matches!(max_seq_length(b"{}"), Err(ModelError::Config(_))));
    }
}
