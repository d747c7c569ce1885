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

use crate::formats::{DType, TensorTable};
use crate::gpu::GpuContext;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::{embedding, matvec, new_encoder, pool, submit};
use crate::gpu::weights::GpuWeight;
use crate::models::encoder::{MAX_HIDDEN, MAX_INTERMEDIATE, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, Activations, Encoder, EncoderShape, LayerNames, LayerNorm, Linear, Placement, Tensors, copy_rows};
use crate::models::llama::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;

/// Padded tokens per forward pass (a longer sentence runs alone in its pass).
pub const TOKENS_PER_PASS: u32 = 1024;

/// Bounds on config values: beyond them a config is refused before anything is allocated.
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
    id2label: Option<std::collections::BTreeMap<String, String>>,
    num_labels: Option<u64>,
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
    /// Class names of a sequence-classification head (`id2label`).
    pub labels: Vec<String>,
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
        let size = |name: &str, v: Option<u64>, default: Option<u64>, max: u64| super::encoder::size("config.json", name, v.or(default), max);
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
            labels: super::encoder::labels(raw.id2label.as_ref(), raw.num_labels)?,
        })
    }
}

impl BertConfig {
    /// The encoder stack's shape (post-LN, biases everywhere).
    pub fn shape(&self) -> EncoderShape {
        EncoderShape {
            layers: self.layers,
            hidden: self.hidden,
            heads: self.heads,
            head_dim: self.head_dim,
            intermediate: self.intermediate,
            eps: self.layer_norm_eps,
            activation: self.activation,
            placement: Placement::Post,
            qkv_bias: true,
        }
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

/// The positions of `mask_id` in each sequence; a sequence without one is an input error.
pub(crate) fn mask_positions(batch: &[Vec<u32>], mask_id: u32) -> Result<Vec<Vec<u32>>, ModelError> {
    let positions: Vec<Vec<u32>> = batch.iter().map(|ids| (0..ids.len() as u32).filter(|&p| ids[p as usize] == mask_id).collect()).collect();
    if let Some(i) = positions.iter().position(Vec::is_empty) {
        return Err(ModelError::Input(format!("sequence {i} has no mask token")));
    }
    Ok(positions)
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

/// Where BERT checkpoints keep their tensors: at the top (`BertModel`) or under `bert.` (task
/// models); heads (`cls.predictions.*`, `classifier.*`) at the top.
pub(crate) fn tensors(table: &TensorTable) -> Tensors<'_> {
    Tensors { table, prefixes: &["", "bert."] }
}

/// A tensor's values as f32 (small tensors: norms, biases, position tables); F32, F16 or BF16.
pub(crate) async fn values(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
    tensors(table).values(read, name, shape).await
}

/// `BertForMaskedLM`'s head: dense, activation, LayerNorm, then the vocabulary projection (the
/// word embeddings when tied, as checkpoints usually are).
struct MaskedLmHead {
    transform: Linear,
    norm: LayerNorm,
    /// `cls.predictions.decoder.weight` when the file has it; otherwise the word embeddings.
    decoder: Option<GpuWeight>,
    bias: wgpu::Buffer,
}

/// `BertForSequenceClassification`'s head: the pooler (dense + tanh on [CLS]) and the classifier.
struct ClassifierHead {
    pooler: Linear,
    classifier: Linear,
}

/// What a forward pass returns per sentence.
#[derive(Clone, PartialEq)]
enum Output {
    /// Mean over the real tokens, L2-normalised (hidden values).
    Pooled,
    /// The last hidden state of the real tokens (length × hidden values).
    Hidden,
    /// The masked-LM logits at the given positions of each sequence (positions × vocab values).
    MaskedLm(Vec<Vec<u32>>),
    /// The classifier's logits (labels values).
    Classes,
}

/// A BERT encoder on the GPU, with the heads its checkpoint has.
pub struct Bert {
    pub config: BertConfig,
    /// Longest sequence `embed` takes (`max_position_embeddings`, or less when set); text is
    /// truncated to it.
    pub max_seq_len: u32,
    word: GpuWeight,
    /// Position embeddings plus token type 0's embedding, as F32.
    position_type0: GpuWeight,
    emb_norm: LayerNorm,
    encoder: Encoder,
    mlm: Option<MaskedLmHead>,
    classifier: Option<ClassifierHead>,
    act: Option<Activations>,
}

impl Bert {
    /// Loads a BERT encoder: `config_json` is the checkpoint's `config.json`, `table` its
    /// safetensors header, `read` the file's bytes by range (one tensor at a time). A masked-LM
    /// head (`cls.predictions.*`) and a sequence-classification head (`classifier.*` with the
    /// pooler) are loaded when the file has them.
    pub async fn load(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = BertConfig::from_json(config_json)?;
        let c = &config;
        let t = tensors(table);
        let word = t.matrix(ctx, read, "embeddings.word_embeddings.weight", c.vocab, c.hidden).await?;
        let folded: Vec<u8> = position_type0(c, table, read).await?.into_iter().flat_map(f32::to_le_bytes).collect();
        let position_type0 =
            GpuWeight::upload(ctx, "position + type embeddings", DType::F32, u64::from(c.max_positions), u64::from(c.hidden), &folded)?;
        let emb_norm = t.layer_norm(ctx, read, "embeddings.LayerNorm", c.hidden).await?;
        let encoder = Encoder::load(ctx, c.shape(), t, read, LayerNames::bert).await?;
        let mlm = if t.has("cls.predictions.transform.dense.weight") {
            let decoder = if t.has("cls.predictions.decoder.weight") {
                Some(t.matrix(ctx, read, "cls.predictions.decoder.weight", c.vocab, c.hidden).await?)
            } else {
                None
            };
            let bias = if t.has("cls.predictions.bias") { "cls.predictions.bias" } else { "cls.predictions.decoder.bias" };
            Some(MaskedLmHead {
                transform: t.linear(ctx, read, "cls.predictions.transform.dense", c.hidden, c.hidden, true).await?,
                norm: t.layer_norm(ctx, read, "cls.predictions.transform.LayerNorm", c.hidden).await?,
                decoder,
                bias: t.vector(ctx, read, bias, c.vocab).await?,
            })
        } else {
            None
        };
        let classifier = if t.has("classifier.weight") {
            let labels = c.labels.len() as u32;
            Some(ClassifierHead {
                pooler: t.linear(ctx, read, "pooler.dense", c.hidden, c.hidden, true).await?,
                classifier: t.linear(ctx, read, "classifier", labels, c.hidden, true).await?,
            })
        } else {
            None
        };
        let max_seq_len = config.max_positions;
        Ok(Self { config, max_seq_len, word, position_type0, emb_norm, encoder, mlm, classifier, act: None })
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

    /// Whether the checkpoint has a masked-LM head (`fill_mask` works).
    pub fn has_masked_lm(&self) -> bool {
        self.mlm.is_some()
    }

    /// Whether the checkpoint has a sequence-classification head (`classify` works).
    pub fn has_classifier(&self) -> bool {
        self.classifier.is_some()
    }

    /// The masked-LM logits (vocab values each) at every position of each sequence that holds
    /// `mask_id`, in order: one `Vec` of positions per sequence.
    pub async fn fill_mask(&mut self, ctx: &GpuContext, batch: &[Vec<u32>], mask_id: u32) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        if self.mlm.is_none() {
            return Err(ModelError::Config("this checkpoint has no masked-LM head (cls.predictions.*)".into()));
        }
        let positions = mask_positions(batch, mask_id)?;
        let vocab = self.config.vocab as usize;
        let flat = self.run(ctx, batch, Output::MaskedLm(positions)).await?;
        Ok(flat.into_iter().map(|logits| logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect()).collect())
    }

    /// The sequence-classification logits (one per label of `config.labels`) of each sequence.
    pub async fn classify(&mut self, ctx: &GpuContext, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.classifier.is_none() {
            return Err(ModelError::Config("this checkpoint has no classification head (classifier.*)".into()));
        }
        self.run(ctx, batch, Output::Classes).await
    }

    /// Compute dispatches in one pass: 2 embedding lookups, an add and a LayerNorm, the encoder,
    /// then pooling.
    pub fn dispatches_per_pass(&self) -> u32 {
        self.word.parts.len() as u32 + self.position_type0.parts.len() as u32 + 2 + self.encoder.dispatches() + 1
    }

    /// Bytes of weights one pass reads (every matrix once).
    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes()
    }

    async fn run(&mut self, ctx: &GpuContext, batch: &[Vec<u32>], output: Output) -> Result<Vec<Vec<f32>>, ModelError> {
        check_input(&self.config, self.max_seq_len, batch)?;
        let mut results = vec![Vec::new(); batch.len()];
        for pass in passes(batch) {
            let outs = self.forward(ctx, batch, &pass, &output).await?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    async fn forward(&mut self, ctx: &GpuContext, batch: &[Vec<u32>], pass: &Pass, output: &Output) -> Result<Vec<Vec<f32>>, ModelError> {
        let (n, len) = (pass.members.len() as u32, pass.len);
        Activations::ensure(&mut self.act, ctx, &self.encoder.shape, u64::from(n), u64::from(len))?;
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
        let ids_buf = ctx.storage_from("bert", "token ids", &ids)?;
        let positions_buf = ctx.storage_from("bert", "position ids", &positions)?;
        ctx.queue.write_buffer(&a.lengths, 0, bytemuck::cast_slice(&lengths));

        let (h, nh) = (c.hidden, u64::from(tokens) * u64::from(c.hidden));
        let mut e = new_encoder(ctx, "bert forward");
        embedding::encode(ctx, &mut e, &self.word, tokens, &ids_buf, &a.x).await?;
        embedding::encode(ctx, &mut e, &self.position_type0, tokens, &positions_buf, &a.h).await?;
        Elementwise::Add.encode(ctx, &mut e, nh, &a.x, &a.h, &a.x2).await?;
        self.emb_norm.encode(ctx, &mut e, c.layer_norm_eps, tokens, h, &a.x2, &a.x).await?;
        self.encoder.encode(ctx, &mut e, a, n, len, false).await?;
        let hidden = h as usize;
        match output {
            Output::Pooled => {
                let pooled = ctx.storage_output("bert", "pooled", u64::from(n) * u64::from(h) * 4)?;
                pool::encode(ctx, &mut e, n, len, h, true, &a.x, &a.lengths, &pooled).await?;
                submit(ctx, "bert forward", e).await?;
                Ok(ctx.read_f32(&pooled, n as usize * hidden).await?.chunks_exact(hidden).map(<[f32]>::to_vec).collect())
            }
            Output::Hidden => {
                submit(ctx, "bert forward", e).await?;
                let all = ctx.read_f32(&a.x, tokens as usize * hidden).await?;
                Ok(all.chunks_exact(len as usize * hidden).zip(&lengths).map(|(seq, &l)| seq[..l as usize * hidden].to_vec()).collect())
            }
            Output::MaskedLm(positions) => {
                let Some(head) = &self.mlm else { return Err(ModelError::Config("no masked-LM head".into())) };
                let rows: Vec<u64> = pass
                    .members
                    .iter()
                    .enumerate()
                    .flat_map(|(b, &i)| positions.get(i).into_iter().flatten().map(move |&p| b as u64 * u64::from(len) + u64::from(p)))
                    .collect();
                let m = rows.len() as u32;
                let vocab = c.vocab;
                let buf = |what: &'static str, elems: u64| ctx.storage_output("bert", what, elems.max(1) * 4);
                let (x, t1, t2) = (buf("masked rows", u64::from(m) * u64::from(h))?, buf("mlm 1", u64::from(m) * u64::from(h))?, buf("mlm 2", u64::from(m) * u64::from(h))?);
                let logits = buf("mlm logits", u64::from(m) * u64::from(vocab))?;
                let scratch = buf("mlm scratch", u64::from(m) * u64::from(vocab))?;
                copy_rows(&mut e, &a.x, &x, h, &rows);
                head.transform.encode(ctx, &mut e, m, &x, &t1, &t2).await?;
                c.activation.encode(ctx, &mut e, u64::from(m) * u64::from(h), &t2, &t2, &t1).await?;
                head.norm.encode(ctx, &mut e, c.layer_norm_eps, m, h, &t1, &t2).await?;
                matvec::encode(ctx, &mut e, head.decoder.as_ref().unwrap_or(&self.word), m, &t2, &scratch).await?;
                Elementwise::AddRow { cols: vocab }.encode(ctx, &mut e, u64::from(m) * u64::from(vocab), &scratch, &head.bias, &logits).await?;
                submit(ctx, "bert forward", e).await?;
                let all = ctx.read_f32(&logits, m as usize * vocab as usize).await?;
                let mut chunks = all.chunks_exact(vocab as usize);
                Ok(pass
                    .members
                    .iter()
                    .map(|&i| positions.get(i).map_or(0, Vec::len))
                    .map(|count| chunks.by_ref().take(count).flatten().copied().collect())
                    .collect())
            }
            Output::Classes => {
                let Some(head) = &self.classifier else { return Err(ModelError::Config("no classification head".into())) };
                let labels = head.classifier.w.rows;
                let rows: Vec<u64> = (0..u64::from(n)).map(|b| b * u64::from(len)).collect();
                let buf = |what: &'static str, elems: u64| ctx.storage_output("bert", what, elems.max(1) * 4);
                let (x, t1, t2) = (buf("cls rows", u64::from(n) * u64::from(h))?, buf("pooler 1", u64::from(n) * u64::from(h))?, buf("pooler 2", u64::from(n) * u64::from(h))?);
                let logits = buf("class logits", u64::from(n) * u64::from(labels))?;
                copy_rows(&mut e, &a.x, &x, h, &rows);
                head.pooler.encode(ctx, &mut e, n, &x, &t1, &t2).await?;
                Elementwise::Tanh.encode(ctx, &mut e, u64::from(n) * u64::from(h), &t2, &t2, &t1).await?;
                head.classifier.encode(ctx, &mut e, n, &t1, &t2, &logits).await?;
                submit(ctx, "bert forward", e).await?;
                Ok(ctx.read_f32(&logits, n as usize * labels as usize).await?.chunks_exact(labels as usize).map(<[f32]>::to_vec).collect())
            }
        }
    }
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
