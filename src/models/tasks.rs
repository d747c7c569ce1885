//! The encoder tasks over one interface, whichever model and device: a checkpoint is loaded by
//! its `model_type` (vit, clip, audio-spectrogram-transformer, bert) onto the GPU or the CPU
//! fallback, and answered by task. Shared by the wasm API (`api::encoder_model`), the CLI and the
//! benchmarks.

use std::rc::Rc;

use crate::backend::Backend;
use crate::cpu::backend::Cpu;
use crate::formats::TensorTable;
use crate::gpu::GpuContext;
use crate::gpu::backend::Gpu;
use crate::models::bert::Bert;
use crate::models::clip::Clip;
use crate::models::sentence::SentenceModules;
use crate::models::vit::{Ast, Vit, softmax, top_k};
use crate::models::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;

/// The registry of encoders: `model_type` of a hub `config.json` to its architecture. Adding one
/// is its file in `models/`, a variant and a line here, and its tests.
pub enum Net<B: Backend> {
    Vit(Vit<B>),
    Ast(Ast<B>),
    Clip(Clip<B>),
    Bert(Bert<B>),
}

/// The `model_type`s `Net::load` takes.
pub const ENCODER_MODEL_TYPES: [&str; 9] = ["vit", "clip", "audio-spectrogram-transformer", "bert", "distilbert", "roberta", "xlm-roberta", "mpnet", "modernbert"];

/// A model on the GPU or on the CPU fallback (candle matmuls, wasm SIMD in the browser).
#[allow(clippy::large_enum_variant)] // one per loaded model
pub enum Engine {
    Gpu(Net<Gpu>),
    Cpu(Net<Cpu>),
}

/// `$body` with `$net` bound to the engine's `Net`, whichever its backend.
macro_rules! on_net {
    ($engine:expr, $net:ident => $body:expr) => {
        match $engine {
            Engine::Gpu($net) => $body,
            Engine::Cpu($net) => $body,
        }
    };
}

/// The tasks each architecture answers.
pub fn tasks_of(architecture: &str) -> &'static [&'static str] {
    match architecture {
        "vit" => &["image-classification"],
        "clip" => &["zero-shot-image-classification", "image-feature-extraction"],
        "audio-spectrogram-transformer" => &["audio-classification"],
        "bert" | "distilbert" | "roberta" | "xlm-roberta" | "mpnet" | "modernbert" => &["fill-mask", "text-classification"],
        _ => &[],
    }
}

/// The `k` most probable labels of `logits` (softmax, or each label's sigmoid with `sigmoid`),
/// best first; `LABEL_{i}` where `labels` has no name. What the classification tasks answer.
pub fn ranked(labels: &[String], logits: &[f32], k: usize, sigmoid: bool) -> Vec<(String, f32)> {
    let scores: Vec<f32> = if sigmoid { logits.iter().map(|&x| 1.0 / (1.0 + (-x).exp())).collect() } else { softmax(logits) };
    top_k(&scores, k.max(1)).into_iter().map(|(i, score)| (labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")), score)).collect()
}

/// The tokens fill-mask replaces: BERT's and RoBERTa's.
pub const MASK_TOKENS: [&str; 2] = ["[MASK]", "<mask>"];

/// The id of the tokenizer's mask token, if it has one.
pub fn mask_token(tokenizer: &Tokenizer) -> Option<u32> {
    MASK_TOKENS.iter().find_map(|t| tokenizer.token_to_id(t))
}

/// Tokens of `prompt` at the start of a prompted text: its ids with special tokens, less a trailing
/// special one (sentence-transformers' `prompt_length`).
fn prompt_tokens(tokenizer: &Tokenizer, prompt: &str) -> Result<u32, ModelError> {
    let with = tokenizer.encode(prompt, true).map_err(|e| ModelError::Input(e.to_string()))?;
    let without = tokenizer.encode(prompt, false).map_err(|e| ModelError::Input(e.to_string()))?;
    let n = if with.ends_with(&without) { with.len() } else { with.len().saturating_sub(1) };
    Ok(n as u32)
}

fn unsupported(what: &str) -> ModelError {
    ModelError::Config(format!("this model cannot {what}"))
}

impl<B: Backend> Net<B> {
    /// Loads the checkpoint (`config.json`, its safetensors table and bytes) onto `backend`.
    pub async fn load(backend: B, config: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let model_type = super::model_type(config)?;
        Ok(match model_type.as_str() {
            "vit" => Net::Vit(Vit::load(backend, config, table, read).await?),
            "clip" => Net::Clip(Clip::load(backend, config, table, read).await?),
            "audio-spectrogram-transformer" => Net::Ast(Ast::load(backend, config, table, read).await?),
            "bert" | "distilbert" | "roberta" | "xlm-roberta" | "mpnet" | "modernbert" => Net::Bert(Bert::load(backend, config, table, read).await?),
            _ => return Err(ModelError::Config(format!("model_type {model_type:?} is not an encoder hugrt runs ({})", ENCODER_MODEL_TYPES.join(", ")))),
        })
    }

    pub fn backend(&self) -> &B {
        match self {
            Net::Vit(m) => &m.backend,
            Net::Ast(m) => &m.backend,
            Net::Clip(m) => &m.backend,
            Net::Bert(m) => &m.backend,
        }
    }

    pub fn architecture(&self) -> &'static str {
        match self {
            Net::Vit(_) => "vit",
            Net::Clip(_) => "clip",
            Net::Ast(_) => "audio-spectrogram-transformer",
            Net::Bert(m) => m.config.model_type,
        }
    }

    /// Refuses a task the checkpoint cannot answer (a ViT for fill-mask; a BERT without the head).
    pub fn check_task(&self, task: &str) -> Result<(), ModelError> {
        let arch = self.architecture();
        if !tasks_of(arch).contains(&task) {
            return Err(ModelError::Config(format!("a {arch} model does not do {task} (it does {})", tasks_of(arch).join(", "))));
        }
        let (mlm, classifier) = match self {
            Net::Bert(b) => (b.has_masked_lm(), b.has_classifier()),
            _ => (true, true),
        };
        match task {
            "fill-mask" if !mlm => Err(unsupported("fill masks: the checkpoint has no masked-LM head (cls.predictions.*)")),
            "text-classification" if !classifier => Err(unsupported("classify text: the checkpoint has no classifier")),
            _ => Ok(()),
        }
    }

    /// `{ architecture, labels, adapter, device }`.
    pub fn info(&self) -> serde_json::Value {
        let b = self.backend();
        serde_json::json!({ "architecture": self.architecture(), "labels": self.labels(), "adapter": b.adapter(), "device": b.device() })
    }

    /// Whether the classifier's scores are sigmoids (one label, or multi-label), not a softmax.
    pub fn sigmoid_scores(&self) -> bool {
        matches!(self, Net::Bert(m) if m.config.sigmoid)
    }

    /// Class names of a classification head (empty otherwise).
    pub fn labels(&self) -> &[String] {
        match self {
            Net::Vit(m) => &m.labels,
            Net::Ast(m) => &m.labels,
            Net::Bert(m) => &m.config.labels,
            Net::Clip(_) => &[],
        }
    }

    /// Values of one image or one clip of features (None for text models).
    pub fn input_len(&self) -> Option<usize> {
        let image = |(c, h, w): (u32, u32, u32)| Some((c * h * w) as usize);
        match self {
            Net::Vit(m) => image(m.image_shape()),
            Net::Clip(m) => image(m.image_shape()),
            Net::Ast(m) => Some((m.max_length * m.mel_bins) as usize),
            Net::Bert(_) => None,
        }
    }

    /// Seconds of sound one clip of an audio model covers (frames of 10 ms).
    pub fn input_seconds(&self) -> Option<f64> {
        match self {
            Net::Ast(m) => Some(f64::from(m.max_length) * 0.01),
            _ => None,
        }
    }

    /// Token ids of `text` for this model (special tokens, truncation to its positions).
    pub fn tokenize(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ModelError> {
        let batch = match self {
            Net::Bert(m) => m.tokenize(tokenizer, &[text])?,
            Net::Clip(m) => m.tokenize(tokenizer, &[text])?,
            _ => return Err(unsupported("take text")),
        };
        batch.into_iter().next().ok_or_else(|| ModelError::Input("no tokens".into()))
    }

    /// Class logits of each image of `pixels` ((batch, 3, H, W)).
    pub async fn classify_pixels(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Vit(m) => m.classify(pixels).await,
            _ => Err(unsupported("classify images")),
        }
    }

    /// CLIP's normalised image embeddings of `pixels`.
    pub async fn image_embeds(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Clip(m) => m.image_embeds(pixels).await,
            _ => Err(unsupported("embed images")),
        }
    }

    /// Class logits of each clip of log-mel `features`.
    pub async fn classify_features(&mut self, features: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Ast(m) => m.classify(features).await,
            _ => Err(unsupported("classify sounds")),
        }
    }

    /// Zero-shot logits of each image of `pixels` against `texts` (CLIP's `logits_per_image`).
    pub async fn zero_shot(&mut self, tokenizer: &Tokenizer, pixels: &[f32], texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Clip(m) => {
                let ids = m.tokenize(tokenizer, texts)?;
                let text = m.text_embeds(&ids).await?;
                let images = m.image_embeds(pixels).await?;
                Ok(m.logits_per_image(&images, &text))
            }
            _ => Err(unsupported("score images against texts")),
        }
    }

    /// L2-normalised image embeddings (CLIP's `image_embeds`: the projected pooled output) of
    /// pre-processed `pixels`, one per image.
    pub async fn image_embeddings(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Clip(m) => m.image_embeds(pixels).await,
            _ => Err(unsupported("embed images")),
        }
    }

    /// L2-normalised text embeddings of CLIP's text tower (`text_embeds`), one per text: the same
    /// space as `image_embeddings`.
    pub async fn text_embeddings(&mut self, tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Clip(m) => {
                let ids = m.tokenize(tokenizer, texts)?;
                m.text_embeds(&ids).await
            }
            _ => Err(unsupported("embed texts in an image space")),
        }
    }

    /// Masked-LM logits at each mask of one sequence.
    pub async fn fill_mask(&mut self, ids: &[u32], mask: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Net::Bert(m) => Ok(m.fill_mask(&[ids.to_vec()], mask).await?.into_iter().next().unwrap_or_default()),
            _ => Err(unsupported("fill masks")),
        }
    }

    /// Classifier logits of one sequence.
    pub async fn classify_ids(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self {
            Net::Bert(m) => Ok(m.classify(&[ids.to_vec()]).await?.into_iter().next().unwrap_or_default()),
            _ => Err(unsupported("classify text")),
        }
    }

    /// Classifier logits of the text pair (`text`, `text_pair`): a cross-encoder's relevance of a
    /// passage to a query.
    pub async fn classify_pair(&mut self, tokenizer: &Tokenizer, text: &str, text_pair: &str) -> Result<Vec<f32>, ModelError> {
        match self {
            Net::Bert(m) => {
                let (ids, types) = m.tokenize_pair(tokenizer, text, text_pair)?;
                Ok(m.classify_typed(&[ids], Some(&[types])).await?.into_iter().next().unwrap_or_default())
            }
            _ => Err(unsupported("classify text pairs")),
        }
    }

    /// Takes a sentence-transformers pipeline's `max_seq_length`.
    pub fn use_sentence_modules(&mut self, modules: &SentenceModules) -> Result<(), ModelError> {
        let bert = self.bert()?;
        if let Some(n) = modules.max_seq_length {
            bert.set_max_seq_len(n);
        }
        Ok(())
    }

    /// The sentence embeddings of `texts` as sentence-transformers' `encode(texts, prompt=…)`
    /// gives them: `prompt` put before each text, the sequence pooled as `modules` says (the
    /// prompt's tokens left out where its Pooling excludes them), then its Dense and Normalize.
    pub async fn embed_sentences<S: AsRef<str>>(&mut self, tokenizer: &Tokenizer, texts: &[S], modules: &SentenceModules, prompt: &str) -> Result<Vec<Vec<f32>>, ModelError> {
        let bert = self.bert()?;
        let prompted: Vec<String> = texts.iter().map(|t| format!("{prompt}{}", t.as_ref())).collect();
        let batch = bert.tokenize(tokenizer, &prompted)?;
        let skip = if prompt.is_empty() { 0 } else { prompt_tokens(tokenizer, prompt)? };
        let pooled = bert.pool(&batch, &modules.pooling, skip).await?;
        Ok(modules.finish(pooled))
    }

    /// The sentence-embedding model (a BERT), for `feature-extraction`.
    pub fn bert(&mut self) -> Result<&mut Bert<B>, ModelError> {
        match self {
            Net::Bert(m) => Ok(m),
            _ => Err(unsupported("embed sentences")),
        }
    }
}

impl Engine {
    /// Loads the checkpoint (`config.json`, its safetensors table and bytes) onto `gpu`, or the
    /// CPU without one.
    pub async fn load(gpu: Option<GpuContext>, config: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        Ok(match gpu {
            Some(ctx) => Engine::Gpu(Net::load(Gpu::new(Rc::new(ctx)), config, table, read).await?),
            None => Engine::Cpu(Net::load(Cpu, config, table, read).await?),
        })
    }

    /// Loads a BERT checkpoint for sentence embeddings onto `gpu`, or the CPU without one.
    pub async fn load_bert(gpu: Option<GpuContext>, config: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        Ok(match gpu {
            Some(ctx) => Engine::Gpu(Net::Bert(Bert::load(Gpu::new(Rc::new(ctx)), config, table, read).await?)),
            None => Engine::Cpu(Net::Bert(Bert::load(Cpu, config, table, read).await?)),
        })
    }

    pub fn architecture(&self) -> &'static str {
        on_net!(self, n => n.architecture())
    }

    pub fn check_task(&self, task: &str) -> Result<(), ModelError> {
        on_net!(self, n => n.check_task(task))
    }

    pub fn info(&self) -> serde_json::Value {
        on_net!(self, n => n.info())
    }

    pub fn labels(&self) -> &[String] {
        on_net!(self, n => n.labels())
    }

    pub fn sigmoid_scores(&self) -> bool {
        on_net!(self, n => n.sigmoid_scores())
    }

    pub async fn classify_pair(&mut self, tokenizer: &Tokenizer, text: &str, text_pair: &str) -> Result<Vec<f32>, ModelError> {
        on_net!(self, n => n.classify_pair(tokenizer, text, text_pair).await)
    }

    pub fn input_len(&self) -> Option<usize> {
        on_net!(self, n => n.input_len())
    }

    pub fn input_seconds(&self) -> Option<f64> {
        on_net!(self, n => n.input_seconds())
    }

    pub fn tokenize(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ModelError> {
        on_net!(self, n => n.tokenize(tokenizer, text))
    }

    pub async fn classify_pixels(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.classify_pixels(pixels).await)
    }

    pub async fn image_embeds(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.image_embeds(pixels).await)
    }

    pub async fn classify_features(&mut self, features: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.classify_features(features).await)
    }

    pub async fn zero_shot(&mut self, tokenizer: &Tokenizer, pixels: &[f32], texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.zero_shot(tokenizer, pixels, texts).await)
    }

    pub async fn image_embeddings(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.image_embeddings(pixels).await)
    }

    pub async fn text_embeddings(&mut self, tokenizer: &Tokenizer, texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.text_embeddings(tokenizer, texts).await)
    }

    pub async fn fill_mask(&mut self, ids: &[u32], mask: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.fill_mask(ids, mask).await)
    }

    pub async fn classify_ids(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        on_net!(self, n => n.classify_ids(ids).await)
    }

    /// Takes a sentence-transformers pipeline's sequence length (`max_seq_length`) for
    /// `embed_sentences`.
    pub fn use_sentence_modules(&mut self, modules: &SentenceModules) -> Result<(), ModelError> {
        on_net!(self, n => n.use_sentence_modules(modules))
    }

    /// A BERT's token ids of `texts` (special tokens, truncation).
    pub fn tokenize_texts<S: AsRef<str>>(&mut self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        on_net!(self, n => n.bert()?.tokenize(tokenizer, texts))
    }

    /// A BERT's sentence embeddings (mean-pooled, L2-normalised) of token-id sequences.
    pub async fn embed(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.bert()?.embed(batch).await)
    }

    /// The sentence embeddings of `texts`, each after `prompt`, through `modules`.
    pub async fn embed_sentences<S: AsRef<str>>(&mut self, tokenizer: &Tokenizer, texts: &[S], modules: &SentenceModules, prompt: &str) -> Result<Vec<Vec<f32>>, ModelError> {
        on_net!(self, n => n.embed_sentences(tokenizer, texts, modules, prompt).await)
    }

    /// A BERT's `config.json` (None for other models).
    pub fn bert_config(&self) -> Option<&crate::models::bert::BertConfig> {
        on_net!(self, n => match n {
            Net::Bert(m) => Some(&m.config),
            _ => None,
        })
    }

    /// A BERT's weight bytes read per pass.
    pub fn bert_weight_bytes(&mut self) -> Result<u64, ModelError> {
        on_net!(self, n => Ok(n.bert()?.weight_bytes_per_pass()))
    }

    /// A BERT's products over `tokens` rows in one pass, as (m, k, n).
    pub fn bert_dense_shapes(&mut self, tokens: usize) -> Result<Vec<(usize, usize, usize)>, ModelError> {
        on_net!(self, n => Ok(n.bert()?.dense_shapes(tokens)))
    }

    /// Dispatches of the last pass on the GPU (None on the CPU).
    pub fn last_pass_dispatches(&self) -> Option<u64> {
        match self {
            Engine::Gpu(n) => Some(n.backend().last_pass_dispatches),
            Engine::Cpu(_) => None,
        }
    }

    pub fn adapter(&self) -> String {
        on_net!(self, n => n.backend().adapter())
    }

    pub fn device(&self) -> &'static str {
        on_net!(self, n => n.backend().device())
    }
}
