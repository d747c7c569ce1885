//! The BERT encoder for sentence embeddings (all-MiniLM-L6-v2, BERT-base-like checkpoints) from a
//! hub `config.json` and safetensors weights (F32, F16 or BF16; names with or without `bert.`),
//! and DistilBERT, the same post-LayerNorm stack under other names (`transformer.layer.{l}.…`,
//! `distilbert.`), without token types, with its own heads (`pre_classifier` + ReLU on [CLS];
//! `vocab_transform`, `vocab_layer_norm`, `vocab_projector`), and RoBERTa and XLM-RoBERTa, BERT's
//! stack with positions counted from `pad_token_id` + 1, one token type, and their heads
//! (`lm_head.*`; `classifier.dense` + tanh and `classifier.out_proj` on `<s>`), and MPNet
//! (all-mpnet-base-v2): RoBERTa's positions and heads, no token types, and a relative position
//! bias (`encoder.relative_attention_bias`, by bucket and head) added to every layer's scores;
//! and ModernBERT, whose own stack (`modernbert.rs`: RoPE, local and global layers, GeGLU, no
//! biases) runs under these embeddings, pooling and heads (`head.*` + `decoder`; `head.*` +
//! `classifier` on the CLS row or the mean).
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

use super::encoder::{Encoder, EncoderShape, LayerNames, LayerNorm, Linear, MAX_HIDDEN, MAX_INTERMEDIATE, MAX_LAYERS, MAX_POSITIONS, MAX_VOCAB, Placement};
use super::modernbert::{ClassifierPooling, ModernConfig, ModernStack};
use super::weights::Weights;
use crate::backend::{Activation, Backend};
use crate::formats::TensorTable;
use crate::models::sentence::{PoolMode, Pooling, pool_rows};
use crate::models::{ModelError, RangeReader};
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
    pad_token_id: Option<u64>,
    relative_attention_num_buckets: Option<u64>,
    id2label: Option<std::collections::BTreeMap<String, String>>,
    num_labels: Option<u64>,
    problem_type: Option<String>,
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
    /// `GeluErf` ("gelu") or `GeluTanh` ("gelu_new", "gelu_pytorch_tanh").
    pub activation: Activation,
    /// Class names of a sequence-classification head (`id2label`).
    pub labels: Vec<String>,
    /// Scores are each label's sigmoid, not a softmax over them: one label (a regression or
    /// relevance score: cross-encoders) or `problem_type` multi_label_classification, as
    /// transformers' text-classification pipeline decides.
    pub sigmoid: bool,
    /// A DistilBERT (`model_type` "distilbert": its tensor names and heads; no token types).
    pub distil: bool,
    /// `bert`, `distilbert`, `roberta` or `xlm-roberta`.
    pub model_type: &'static str,
    /// Position of a sequence's first token: RoBERTa's and MPNet's `pad_token_id` + 1, else 0.
    pub position_offset: u32,
    /// MPNet's relative attention buckets (0: no relative position bias).
    pub relative_buckets: u32,
    /// ModernBERT's stack (its `activation` above is then its heads' `classifier_activation`).
    pub modern: Option<ModernConfig>,
}

/// `config.json` as written by `transformers` for DistilBERT (unknown keys ignored).
#[derive(Deserialize)]
struct RawDistilConfig {
    vocab_size: Option<u64>,
    dim: Option<u64>,
    n_layers: Option<u64>,
    n_heads: Option<u64>,
    hidden_dim: Option<u64>,
    max_position_embeddings: Option<u64>,
    activation: Option<String>,
    id2label: Option<std::collections::BTreeMap<String, String>>,
    num_labels: Option<u64>,
    problem_type: Option<String>,
}

impl BertConfig {
    /// Parses and checks a `config.json`: required sizes present, positive, within bounds and
    /// consistent; an activation and position embedding type this encoder implements.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::Config(format!("config.json: {m}"));
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if raw.model_type.as_deref() == Some("distilbert") {
            return Self::from_distil_json(bytes);
        }
        if raw.model_type.as_deref() == Some("modernbert") {
            let m = ModernConfig::from_json(bytes)?;
            let labels = super::encoder::labels(raw.id2label.as_ref(), raw.num_labels)?;
            return Ok(Self {
                vocab: m.vocab,
                hidden: m.hidden,
                layers: m.layers,
                heads: m.heads,
                head_dim: m.head_dim(),
                intermediate: m.intermediate,
                max_positions: m.max_positions,
                type_vocab: 0,
                layer_norm_eps: m.eps,
                activation: m.classifier_activation,
                sigmoid: labels.len() == 1 || raw.problem_type.as_deref() == Some("multi_label_classification"),
                labels,
                distil: false,
                model_type: "modernbert",
                position_offset: 0,
                relative_buckets: 0,
                modern: Some(m),
            });
        }
        let model_type = match raw.model_type.as_deref() {
            None | Some("bert") => "bert",
            Some("roberta") => "roberta",
            Some("xlm-roberta") => "xlm-roberta",
            Some("mpnet") => "mpnet",
            Some(t) => return Err(bad(format!("model_type {t:?} is not bert, distilbert, roberta, xlm-roberta, mpnet or modernbert"))),
        };
        let mpnet = model_type == "mpnet";
        let roberta = model_type != "bert";
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
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => return Err(bad(format!("hidden_act {other:?} is not supported (gelu, gelu_new, gelu_pytorch_tanh)"))),
        };
        // RoBERTa counts positions from past its padding id (transformers'
        // `create_position_ids_from_input_ids`; its inputs here hold no padding).
        let position_offset = if roberta { size("pad_token_id", raw.pad_token_id, Some(1), MAX_POSITIONS)? + 1 } else { 0 };
        let max_positions = size("max_position_embeddings", raw.max_position_embeddings, None, MAX_POSITIONS)?;
        if max_positions <= position_offset {
            return Err(bad(format!("max_position_embeddings {max_positions} leaves no position past pad_token_id")));
        }
        Ok(Self {
            vocab: size("vocab_size", raw.vocab_size, None, MAX_VOCAB)?,
            hidden,
            layers: size("num_hidden_layers", raw.num_hidden_layers, None, MAX_LAYERS)?,
            heads,
            head_dim: hidden / heads,
            intermediate: size("intermediate_size", raw.intermediate_size, None, MAX_INTERMEDIATE)?,
            max_positions,
            // MPNet has no token type embeddings.
            type_vocab: if mpnet { 0 } else { size("type_vocab_size", raw.type_vocab_size, Some(if roberta { 1 } else { 2 }), MAX_TYPES)? },
            layer_norm_eps: eps as f32,
            activation,
            sigmoid: false,
            distil: false,
            model_type,
            position_offset,
            relative_buckets: if mpnet { size("relative_attention_num_buckets", raw.relative_attention_num_buckets, Some(32), 1024)? } else { 0 },
            modern: None,
            labels: super::encoder::labels(raw.id2label.as_ref(), raw.num_labels)?,
        })
        .map(|mut c| {
            c.sigmoid = c.labels.len() == 1 || raw.problem_type.as_deref() == Some("multi_label_classification");
            c
        })
    }

    /// A DistilBERT `config.json` (`dim`, `n_layers`, `n_heads`, `hidden_dim`; LayerNorm eps
    /// 1e-12 as `DistilBertModel` fixes it).
    fn from_distil_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::Config(format!("config.json: {m}"));
        let raw: RawDistilConfig = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let size = |name: &str, v: Option<u64>, max: u64| super::encoder::size("config.json", name, v, max);
        let hidden = size("dim", raw.dim, MAX_HIDDEN)?;
        let heads = size("n_heads", raw.n_heads, MAX_HIDDEN)?;
        if !hidden.is_multiple_of(heads) {
            return Err(bad(format!("dim {hidden} is not a multiple of n_heads {heads}")));
        }
        let activation = match raw.activation.as_deref().unwrap_or("gelu") {
            "gelu" => Activation::GeluErf,
            "relu" => Activation::Relu,
            other => return Err(bad(format!("activation {other:?} is not supported (gelu, relu)"))),
        };
        let labels = super::encoder::labels(raw.id2label.as_ref(), raw.num_labels)?;
        Ok(Self {
            vocab: size("vocab_size", raw.vocab_size, MAX_VOCAB)?,
            hidden,
            layers: size("n_layers", raw.n_layers, MAX_LAYERS)?,
            heads,
            head_dim: hidden / heads,
            intermediate: size("hidden_dim", raw.hidden_dim, MAX_INTERMEDIATE)?,
            max_positions: size("max_position_embeddings", raw.max_position_embeddings.or(Some(512)), MAX_POSITIONS)?,
            type_vocab: 0,
            layer_norm_eps: 1e-12,
            activation,
            sigmoid: labels.len() == 1 || raw.problem_type.as_deref() == Some("multi_label_classification"),
            distil: true,
            model_type: "distilbert",
            position_offset: 0,
            relative_buckets: 0,
            modern: None,
            labels,
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
            k_bias: true,
        }
    }
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

/// Refuses token types that do not fit their sequences: one per token, each below `type_vocab_size`.
fn check_types(config: &BertConfig, batch: &[Vec<u32>], types: &[Vec<u32>]) -> Result<(), ModelError> {
    if types.len() != batch.len() {
        return Err(ModelError::Input(format!("{} token type sequences for {} sequences", types.len(), batch.len())));
    }
    for (i, (ids, t)) in batch.iter().zip(types).enumerate() {
        if t.len() != ids.len() {
            return Err(ModelError::Input(format!("sequence {i}: {} token types for {} tokens", t.len(), ids.len())));
        }
        // A model without token types (DistilBERT) reads a pair as one sequence, as transformers does.
        if let Some(&bad) = t.iter().find(|&&t| t >= config.type_vocab).filter(|_| config.type_vocab > 0) {
            return Err(ModelError::Input(format!("sequence {i}: token type {bad} is not below type_vocab_size {}", config.type_vocab)));
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
/// f32 (most sequences are all type 0, so its embedding is folded into the position table), and
/// each type's row less type 0's (type_vocab × hidden; row 0 is zeros): what a token of another
/// type (a pair's second text) adds.
async fn position_type0(c: &BertConfig, w: &mut Weights<'_, impl RangeReader>) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
    let positions = w.float_values("embeddings.position_embeddings.weight", &[c.max_positions, c.hidden]).await?;
    if c.type_vocab == 0 {
        return Ok((positions, Vec::new()));
    }
    let types = w.float_values("embeddings.token_type_embeddings.weight", &[c.type_vocab, c.hidden]).await?;
    let type0 = types.get(..c.hidden as usize).ok_or_else(|| ModelError::Tensor { name: "token_type_embeddings".into(), problem: "no row 0".into() })?;
    let folded = positions.chunks_exact(type0.len()).flat_map(|row| row.iter().zip(type0).map(|(p, t)| p + t)).collect();
    let deltas = types.chunks_exact(type0.len()).flat_map(|row| row.iter().zip(type0).map(|(t, t0)| t - t0)).collect();
    Ok((folded, deltas))
}

/// Where BERT checkpoints keep their tensors: at the top (`BertModel`) or under `bert.` (task
/// models; `distilbert.`, `roberta.` for theirs); heads (`cls.predictions.*`, `classifier.*`,
/// `lm_head.*`) at the top.
const PREFIXES: &[&str] = &["", "bert.", "distilbert.", "roberta.", "mpnet.", "model."];

/// The heads' tensor names: BERT's, or DistilBERT's.
struct HeadNames {
    mlm_transform: &'static str,
    mlm_norm: &'static str,
    mlm_decoder: &'static str,
    mlm_biases: [&'static str; 2],
    /// The dense layer on [CLS] before the classifier, and its activation.
    pre_classifier: &'static str,
    pre_activation: Activation,
    classifier: &'static str,
}

const BERT_HEADS: HeadNames = HeadNames {
    mlm_transform: "cls.predictions.transform.dense",
    mlm_norm: "cls.predictions.transform.LayerNorm",
    mlm_decoder: "cls.predictions.decoder.weight",
    mlm_biases: ["cls.predictions.bias", "cls.predictions.decoder.bias"],
    pre_classifier: "pooler.dense",
    pre_activation: Activation::Tanh,
    classifier: "classifier",
};

const ROBERTA_HEADS: HeadNames = HeadNames {
    mlm_transform: "lm_head.dense",
    mlm_norm: "lm_head.layer_norm",
    mlm_decoder: "lm_head.decoder.weight",
    mlm_biases: ["lm_head.bias", "lm_head.decoder.bias"],
    pre_classifier: "classifier.dense",
    pre_activation: Activation::Tanh,
    classifier: "classifier.out_proj",
};

/// ModernBERT's: `head` (dense, activation, norm) before the vocabulary projection or the
/// classifier.
const MODERNBERT_HEADS: HeadNames = HeadNames {
    mlm_transform: "head.dense",
    mlm_norm: "head.norm",
    mlm_decoder: "decoder.weight",
    mlm_biases: ["decoder.bias", "decoder.bias"],
    pre_classifier: "head.dense",
    pre_activation: Activation::GeluErf, // replaced by the config's classifier_activation
    classifier: "classifier",
};

const DISTILBERT_HEADS: HeadNames = HeadNames {
    mlm_transform: "vocab_transform",
    mlm_norm: "vocab_layer_norm",
    mlm_decoder: "vocab_projector.weight",
    mlm_biases: ["vocab_projector.bias", "vocab_projector.bias"],
    pre_classifier: "pre_classifier",
    pre_activation: Activation::Relu,
    classifier: "classifier",
};

/// `BertForMaskedLM`'s head: dense, activation, LayerNorm, then the vocabulary projection (the
/// word embeddings when tied, as checkpoints usually are).
struct MaskedLmHead<B: Backend> {
    transform: Linear<B>,
    norm: LayerNorm<B>,
    /// `cls.predictions.decoder.weight` when the file has it; otherwise the word embeddings.
    decoder: Option<B::Matrix>,
    bias: B::Vector,
}

/// `BertForSequenceClassification`'s head: the pooler (dense + tanh on [CLS]) and the classifier
/// (DistilBERT's: `pre_classifier` + ReLU; ModernBERT's: dense, activation and a norm on the CLS
/// row or the mean).
struct ClassifierHead<B: Backend> {
    pooler: Linear<B>,
    activation: Activation,
    norm: Option<LayerNorm<B>>,
    mean: bool,
    classifier: Linear<B>,
}

/// The layers under the embeddings: BERT's post-LN stack (BERT, DistilBERT, RoBERTa, MPNet) or
/// ModernBERT's.
enum Stack<B: Backend> {
    Bert(Encoder<B>),
    Modern(ModernStack<B>),
}

/// What a forward pass returns per sentence.
#[derive(Clone, PartialEq)]
enum Output {
    /// Mean over the real tokens, L2-normalised (hidden values).
    Pooled,
    /// sentence-transformers' `Pooling` (its modes concatenated), the first `skip` tokens (a
    /// prompt) left out.
    Pool(Pooling, u32),
    /// The last hidden state of the real tokens (length × hidden values).
    Hidden,
    /// The masked-LM logits at the given positions of each sequence (positions × vocab values).
    MaskedLm(Vec<Vec<u32>>),
    /// The classifier's logits (labels values).
    Classes,
}

/// A BERT encoder on backend `B`, with the heads its checkpoint has.
pub struct Bert<B: Backend> {
    pub config: BertConfig,
    /// Longest sequence `embed` takes (`max_position_embeddings`, or less when set); text is
    /// truncated to it.
    pub max_seq_len: u32,
    word: B::Matrix,
    /// Position embeddings plus token type 0's embedding, as F32 (None: ModernBERT's RoPE).
    position_type0: Option<B::Matrix>,
    /// Each token type's embedding less type 0's (added for tokens of another type; None
    /// without token types: DistilBERT).
    type_deltas: Option<B::Matrix>,
    emb_norm: LayerNorm<B>,
    stack: Stack<B>,
    /// MPNet's relative attention bias, (buckets, heads) values.
    relative_bias: Option<Vec<f32>>,
    mlm: Option<MaskedLmHead<B>>,
    classifier: Option<ClassifierHead<B>>,
    pub backend: B,
}

impl<B: Backend> Bert<B> {
    /// Loads a BERT encoder onto `backend`: `config_json` is the checkpoint's `config.json`,
    /// `table` its safetensors header, `read` the file's bytes by range (one tensor at a time). A
    /// masked-LM head (`cls.predictions.*`) and a sequence-classification head (`classifier.*`
    /// with the pooler) are loaded when the file has them.
    pub async fn load(backend: B, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = BertConfig::from_json(config_json)?;
        let (c, be) = (&config, &backend);
        let w = &mut Weights::with_prefixes(table, read, PREFIXES);
        let (word, position_type0, type_deltas, emb_norm, stack) = match &c.modern {
            // ModernBERT: token embeddings and a norm; positions by RoPE in its stack.
            Some(m) => (
                w.table(be, "embeddings.tok_embeddings.weight", c.vocab, c.hidden).await?,
                None,
                None,
                LayerNorm::load_with(be, w, "embeddings.norm", c.hidden, m.eps, m.norm_bias).await?,
                Stack::Modern(ModernStack::load(be, w, m.clone()).await?),
            ),
            None => {
                let word = w.table(be, "embeddings.word_embeddings.weight", c.vocab, c.hidden).await?;
                let (folded, deltas) = position_type0(c, w).await?;
                let position_type0 = be.table_from_values("position + type embeddings", &folded, c.max_positions, c.hidden)?;
                let type_deltas = if c.type_vocab > 0 { Some(be.table_from_values("token type embeddings less type 0", &deltas, c.type_vocab, c.hidden)?) } else { None };
                let emb_norm = LayerNorm::load(be, w, "embeddings.LayerNorm", c.hidden, c.layer_norm_eps).await?;
                let layer_names: fn(u32) -> LayerNames = match c.model_type {
                    "distilbert" => LayerNames::distilbert,
                    "mpnet" => LayerNames::mpnet,
                    _ => LayerNames::bert,
                };
                (word, Some(position_type0), type_deltas, emb_norm, Stack::Bert(Encoder::load(be, w, c.shape(), layer_names).await?))
            }
        };
        let heads = match c.model_type {
            "distilbert" => &DISTILBERT_HEADS,
            "roberta" | "xlm-roberta" | "mpnet" => &ROBERTA_HEADS,
            "modernbert" => &MODERNBERT_HEADS,
            _ => &BERT_HEADS,
        };
        // ModernBERT's heads have biases where its config says; BERT's always.
        let (head_bias, norm_bias) = c.modern.as_ref().map_or((true, true), |m| (m.classifier_bias, m.norm_bias));
        let relative_bias = if c.relative_buckets > 0 { Some(w.float_values("encoder.relative_attention_bias.weight", &[c.relative_buckets, c.heads]).await?) } else { None };
        let mlm = if w.has(&format!("{}.weight", heads.mlm_transform)) && (c.modern.is_none() || w.has("decoder.bias") || w.has("decoder.weight")) {
            let decoder = if w.has(heads.mlm_decoder) { Some(w.matrix(be, heads.mlm_decoder, c.vocab, c.hidden).await?) } else { None };
            let bias = if w.has(heads.mlm_biases[0]) { heads.mlm_biases[0] } else { heads.mlm_biases[1] };
            let bias = if c.modern.as_ref().is_some_and(|m| !m.decoder_bias) { be.vector(&vec![0.0; c.vocab as usize])? } else { w.vector(be, bias, c.vocab).await? };
            Some(MaskedLmHead {
                transform: Linear::load(be, w, heads.mlm_transform, c.hidden, c.hidden, head_bias).await?,
                norm: LayerNorm::load_with(be, w, heads.mlm_norm, c.hidden, c.layer_norm_eps, norm_bias).await?,
                decoder,
                bias,
            })
        } else {
            None
        };
        let classifier = if w.has(&format!("{}.weight", heads.classifier)) {
            let labels = c.labels.len() as u32;
            Some(ClassifierHead {
                pooler: Linear::load(be, w, heads.pre_classifier, c.hidden, c.hidden, head_bias).await?,
                activation: if c.modern.is_some() { c.activation } else { heads.pre_activation },
                norm: if c.modern.is_some() { Some(LayerNorm::load_with(be, w, heads.mlm_norm, c.hidden, c.layer_norm_eps, norm_bias).await?) } else { None },
                mean: c.modern.as_ref().is_some_and(|m| m.classifier_pooling == ClassifierPooling::Mean),
                classifier: Linear::load(be, w, heads.classifier, labels, c.hidden, true).await?,
            })
        } else {
            None
        };
        let max_seq_len = config.max_positions - config.position_offset;
        Ok(Self { config, max_seq_len, word, position_type0, type_deltas, emb_norm, stack, relative_bias, mlm, classifier, backend })
    }

    /// Caps sequences at `n` tokens (sentence-transformers' `max_seq_length`; at most the model's
    /// positions).
    pub fn set_max_seq_len(&mut self, n: u32) {
        self.max_seq_len = n.clamp(2, self.config.max_positions - self.config.position_offset);
    }

    /// Token ids of each text with `[CLS]`/`[SEP]`, truncated to `max_seq_len` (see `tokenize`).
    pub fn tokenize<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        tokenize(tokenizer, texts, self.max_seq_len)
    }

    /// Sentence embeddings of `texts` (tokenized with `tokenize`).
    pub async fn embed_texts<S: AsRef<str>>(&mut self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = self.tokenize(tokenizer, texts)?;
        self.embed(&batch).await
    }

    /// Mean-pooled, L2-normalised embeddings (`hidden` values each) of a batch of token-id
    /// sequences of any lengths from 1 to `max_seq_len`.
    pub async fn embed(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(batch, Output::Pooled).await
    }

    /// Each sequence pooled as sentence-transformers' `pooling` pools it (`pooling.dims(hidden)`
    /// values), the first `skip` tokens of each (a prompt) left out where `pooling` says so.
    pub async fn pool(&mut self, batch: &[Vec<u32>], pooling: &Pooling, skip: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        let skip = if pooling.include_prompt { 0 } else { skip };
        self.run(batch, Output::Pool(pooling.clone(), skip)).await
    }

    /// The last hidden state of each sequence's tokens (length × hidden values, row-major): for
    /// tests and token-level features.
    pub async fn last_hidden_state(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(batch, Output::Hidden).await
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
    pub async fn fill_mask(&mut self, batch: &[Vec<u32>], mask_id: u32) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        if self.mlm.is_none() {
            return Err(ModelError::Config("this checkpoint has no masked-LM head (cls.predictions.*)".into()));
        }
        let positions = mask_positions(batch, mask_id)?;
        let vocab = self.config.vocab as usize;
        let flat = self.run(batch, Output::MaskedLm(positions)).await?;
        Ok(flat.into_iter().map(|logits| logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect()).collect())
    }

    /// The sequence-classification logits (one per label of `config.labels`) of each sequence.
    pub async fn classify(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.classify_typed(batch, None).await
    }

    /// The same for sequences with token types (`tokenize_pair`'s: a text pair, a query and a
    /// passage for a cross-encoder); `types` None is all type 0.
    pub async fn classify_typed(&mut self, batch: &[Vec<u32>], types: Option<&[Vec<u32>]>) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.classifier.is_none() {
            return Err(ModelError::Config("this checkpoint has no classification head (classifier.*)".into()));
        }
        self.run_typed(batch, types, Output::Classes).await
    }

    /// Token ids and token type ids of the pair (`a`, `b`) as the tokenizer encodes a pair, the
    /// texts truncated longest first to `max_seq_len` together.
    pub fn tokenize_pair(&self, tokenizer: &Tokenizer, a: &str, b: &str) -> Result<(Vec<u32>, Vec<u32>), ModelError> {
        tokenizer.encode_pair(a, b, self.max_seq_len as usize).map_err(|e| ModelError::Input(e.to_string()))
    }

    /// Bytes of weights one pass reads (every matrix of the encoder once).
    pub fn weight_bytes_per_pass(&self) -> u64 {
        match &self.stack {
            Stack::Bert(e) => e.weight_bytes(&self.backend),
            Stack::Modern(m) => m.weight_bytes(&self.backend),
        }
    }

    /// The products of one pass over `tokens` rows, as (m, k, n).
    pub fn dense_shapes(&self, tokens: usize) -> Vec<(usize, usize, usize)> {
        match &self.stack {
            Stack::Bert(e) => e.dense_shapes(tokens),
            Stack::Modern(m) => m.dense_shapes(tokens),
        }
    }

    async fn run(&mut self, batch: &[Vec<u32>], output: Output) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run_typed(batch, None, output).await
    }

    async fn run_typed(&mut self, batch: &[Vec<u32>], types: Option<&[Vec<u32>]>, output: Output) -> Result<Vec<Vec<f32>>, ModelError> {
        check_input(&self.config, self.max_seq_len, batch)?;
        if let Some(types) = types {
            check_types(&self.config, batch, types)?;
        }
        let mut results = vec![Vec::new(); batch.len()];
        for pass in passes(batch) {
            let outs = self.forward(batch, types, &pass, &output).await?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    /// One pass over checked sequences.
    async fn forward(&mut self, batch: &[Vec<u32>], types: Option<&[Vec<u32>]>, pass: &Pass, output: &Output) -> Result<Vec<Vec<f32>>, ModelError> {
        let seqs: Vec<&[u32]> = pass.members.iter().map(|&i| batch.get(i).map_or(&[][..], Vec::as_slice)).collect();
        let lengths: Vec<u32> = seqs.iter().map(|s| s.len() as u32).collect();
        let ids: Vec<u32> = seqs.concat();
        let be = &mut self.backend;
        let rows = be.batch(&lengths)?;
        let mut x = be.embed_batch(&self.word, &ids, &rows).await?;
        if let Some(table) = &self.position_type0 {
            let offset = self.config.position_offset;
            let positions: Vec<u32> = lengths.iter().flat_map(|&n| offset..offset + n).collect();
            let p = be.embed_batch(table, &positions, &rows).await?;
            x = be.add(&x, &p).await?;
        }
        if let (Some(types), Some(deltas)) = (types, &self.type_deltas) {
            let t: Vec<u32> = pass.members.iter().flat_map(|&i| types.get(i).map_or(&[][..], Vec::as_slice)).copied().collect();
            let t = be.embed_batch(deltas, &t, &rows).await?;
            x = be.add(&x, &t).await?;
        }
        let x = self.emb_norm.forward(be, &x).await?;
        let bias = match &self.relative_bias {
            Some(table) => Some(be.vector(&relative_bias_table(table, self.config.relative_buckets, self.config.heads, pass.len))?),
            None => None,
        };
        let x = match &self.stack {
            Stack::Bert(e) => e.forward(be, x, &rows, false, bias.as_ref()).await?,
            Stack::Modern(m) => m.forward(be, x, &rows).await?,
        };
        let hidden = self.config.hidden as usize;
        match output {
            Output::Pooled => {
                let pooled = be.mean_pool(&x, &rows, true).await?;
                Ok(be.read(&pooled).await?.chunks_exact(hidden).map(<[f32]>::to_vec).collect())
            }
            Output::Hidden => hidden_rows(be, &x, &rows, &lengths, hidden).await,
            Output::Pool(pooling, skip) if pooling.on_backend(*skip) => {
                let mut parts = Vec::with_capacity(pooling.modes.len());
                for &mode in &pooling.modes {
                    let pooled = match mode {
                        PoolMode::Mean => be.mean_pool(&x, &rows, false).await?,
                        _ => {
                            let picks: Vec<(u32, u32)> = lengths.iter().enumerate().map(|(s, &n)| (s as u32, Pooling::row_of(mode, n, *skip))).collect();
                            be.rows(&x, &rows, &picks).await?
                        }
                    };
                    parts.push(be.read(&pooled).await?);
                }
                Ok((0..lengths.len()).map(|s| parts.iter().flat_map(|p| &p[s * hidden..(s + 1) * hidden]).copied().collect()).collect())
            }
            Output::Pool(pooling, skip) => {
                let all = hidden_rows(be, &x, &rows, &lengths, hidden).await?;
                Ok(all.iter().map(|seq| pool_rows(seq, hidden, pooling, *skip as usize)).collect())
            }
            Output::MaskedLm(positions) => {
                let Some(head) = &self.mlm else { return Err(ModelError::Config("no masked-LM head".into())) };
                let per_seq: Vec<&[u32]> = pass.members.iter().map(|&i| positions.get(i).map_or(&[][..], Vec::as_slice)).collect();
                let picks: Vec<(u32, u32)> = per_seq.iter().enumerate().flat_map(|(s, ps)| ps.iter().map(move |&p| (s as u32, p))).collect();
                let masked = be.rows(&x, &rows, &picks).await?;
                let t = head.transform.forward(be, &masked).await?;
                let t = be.activation(&t, self.config.activation).await?;
                let t = head.norm.forward(be, &t).await?;
                let logits = be.linear(&t, head.decoder.as_ref().unwrap_or(&self.word), Some(&head.bias)).await?;
                let all = be.read(&logits).await?;
                let mut chunks = all.chunks_exact(self.config.vocab as usize);
                Ok(per_seq.iter().map(|ps| chunks.by_ref().take(ps.len()).flatten().copied().collect()).collect())
            }
            Output::Classes => {
                let Some(head) = &self.classifier else { return Err(ModelError::Config("no classification head".into())) };
                let cls = if head.mean {
                    be.mean_pool(&x, &rows, false).await?
                } else {
                    let picks: Vec<(u32, u32)> = (0..lengths.len() as u32).map(|s| (s, 0)).collect();
                    be.rows(&x, &rows, &picks).await?
                };
                let pooled = head.pooler.forward(be, &cls).await?;
                let mut pooled = be.activation(&pooled, head.activation).await?;
                if let Some(norm) = &head.norm {
                    pooled = norm.forward(be, &pooled).await?;
                }
                let logits = head.classifier.forward(be, &pooled).await?;
                let labels = self.config.labels.len();
                Ok(be.read(&logits).await?.chunks_exact(labels).map(<[f32]>::to_vec).collect())
            }
        }
    }
}

/// MPNet's bucket of relative position `relative` (key − query) among `buckets`, as transformers'
/// `MPNetEncoder.relative_position_bucket` computes it (bidirectional, max distance 128; the
/// logarithmic part in f32 as there).
pub fn relative_position_bucket(relative: i64, buckets: u32) -> u32 {
    const MAX_DISTANCE: f64 = 128.0;
    let half = i64::from(buckets / 2);
    let n = -relative;
    let mut bucket = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    bucket += if n < max_exact {
        n
    } else {
        let log_ratio = (n as f32 / max_exact as f32).ln() / ((MAX_DISTANCE / max_exact as f64).ln() as f32);
        (max_exact + (log_ratio * (half - max_exact) as f32) as i64).min(half - 1)
    };
    bucket as u32
}

/// The relative position bias of a pass of sequences of at most `span` tokens, laid out for
/// `Backend::attention`: per head, relative positions −(span − 1) ..= span − 1, each its
/// bucket's value of `table` (buckets × heads).
fn relative_bias_table(table: &[f32], buckets: u32, heads: u32, span: u32) -> Vec<f32> {
    let span = i64::from(span);
    (0..heads as usize)
        .flat_map(|h| (1 - span..span).map(move |d| table.get(relative_position_bucket(d, buckets) as usize * heads as usize + h).copied().unwrap_or(0.0)))
        .collect()
}

/// The last hidden state of each sequence of `rows` (length × hidden values each).
async fn hidden_rows<B: Backend>(be: &mut B, x: &B::Tensor, rows: &B::Batch, lengths: &[u32], hidden: usize) -> Result<Vec<Vec<f32>>, ModelError> {
    let picks: Vec<(u32, u32)> = lengths.iter().enumerate().flat_map(|(s, &n)| (0..n).map(move |p| (s as u32, p))).collect();
    let all = be.rows(x, rows, &picks).await?;
    let all = be.read(&all).await?;
    let mut rest = all.as_slice();
    Ok(lengths
        .iter()
        .map(|&n| {
            let (seq, tail) = rest.split_at(n as usize * hidden);
            rest = tail;
            seq.to_vec()
        })
        .collect())
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
        assert_eq!(c.activation, Activation::GeluErf);
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
}
