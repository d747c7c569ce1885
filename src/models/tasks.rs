//! The encoder tasks over one interface, whichever model and device: a checkpoint is loaded by
//! its `model_type` (vit, clip, audio-spectrogram-transformer, bert) onto the GPU or the CPU
//! fallback, and answered by task. Shared by the wasm API (`api::encoder_model`), the CLI and the
//! benchmarks.

use crate::formats::TensorTable;
use crate::gpu::GpuContext;
use crate::models::bert::Bert;
use crate::models::clip::Clip;
use crate::models::llama::{ModelError, RangeReader};
use crate::models::vit::{Ast, Vit, softmax, top_k};
use crate::tokenizer::Tokenizer;
use crate::cpu::bert::CpuBert;
use crate::cpu::clip::CpuClip;
use crate::cpu::vit::{CpuAst, CpuVit};

/// A model on the GPU.
#[allow(clippy::large_enum_variant)] // one per loaded model
pub enum Net {
    Vit(Vit),
    Ast(Ast),
    Clip(Clip),
    Bert(Bert),
}

/// A model on the CPU fallback (candle matmuls, wasm SIMD in the browser).
pub enum CpuNet {
    Vit(CpuVit),
    Ast(CpuAst),
    Clip(CpuClip),
    Bert(CpuBert),
}

/// A model on the GPU or on the CPU fallback.
#[allow(clippy::large_enum_variant)]
pub enum Engine {
    Gpu { ctx: GpuContext, net: Net },
    Cpu(CpuNet),
}

/// The tasks each architecture answers.
pub fn tasks_of(architecture: &str) -> &'static [&'static str] {
    match architecture {
        "vit" => &["image-classification"],
        "clip" => &["zero-shot-image-classification"],
        "audio-spectrogram-transformer" => &["audio-classification"],
        "bert" => &["fill-mask", "text-classification"],
        _ => &[],
    }
}

/// The `k` most probable labels of `logits` (softmax), best first; `LABEL_{i}` where `labels` has
/// no name. What the classification tasks answer.
pub fn ranked(labels: &[String], logits: &[f32], k: usize) -> Vec<(String, f32)> {
    top_k(&softmax(logits), k.max(1)).into_iter().map(|(i, score)| (labels.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}")), score)).collect()
}

/// The tokens fill-mask replaces: BERT's and RoBERTa's.
pub const MASK_TOKENS: [&str; 2] = ["[MASK]", "<mask>"];

/// The id of the tokenizer's mask token, if it has one.
pub fn mask_token(tokenizer: &Tokenizer) -> Option<u32> {
    MASK_TOKENS.iter().find_map(|t| tokenizer.token_to_id(t))
}

fn unsupported(what: &str) -> ModelError {
    ModelError::Config(format!("this model cannot {what}"))
}

impl Engine {
    /// Loads the checkpoint (`config.json`, its safetensors table and bytes) onto `gpu`, or the
    /// CPU without one.
    pub async fn load(gpu: Option<GpuContext>, config: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let model_type = super::model_type(config)?;
        let unknown = || ModelError::Config(format!("model_type {model_type:?} is not an encoder hugrt runs (vit, clip, audio-spectrogram-transformer, bert)"));
        Ok(match gpu {
            Some(ctx) => {
                let net = match model_type.as_str() {
                    "vit" => Net::Vit(Vit::load(&ctx, config, table, read).await?),
                    "clip" => Net::Clip(Clip::load(&ctx, config, table, read).await?),
                    "audio-spectrogram-transformer" => Net::Ast(Ast::load(&ctx, config, table, read).await?),
                    "bert" => Net::Bert(Bert::load(&ctx, config, table, read).await?),
                    _ => return Err(unknown()),
                };
                Engine::Gpu { ctx, net }
            }
            None => Engine::Cpu(match model_type.as_str() {
                "vit" => CpuNet::Vit(CpuVit::load(config, table, read).await?),
                "clip" => CpuNet::Clip(CpuClip::load(config, table, read).await?),
                "audio-spectrogram-transformer" => CpuNet::Ast(CpuAst::load(config, table, read).await?),
                "bert" => CpuNet::Bert(CpuBert::load(config, table, read).await?),
                _ => return Err(unknown()),
            }),
        })
    }

    pub fn architecture(&self) -> &'static str {
        match self {
            Engine::Gpu { net: Net::Vit(_), .. } | Engine::Cpu(CpuNet::Vit(_)) => "vit",
            Engine::Gpu { net: Net::Clip(_), .. } | Engine::Cpu(CpuNet::Clip(_)) => "clip",
            Engine::Gpu { net: Net::Ast(_), .. } | Engine::Cpu(CpuNet::Ast(_)) => "audio-spectrogram-transformer",
            Engine::Gpu { net: Net::Bert(_), .. } | Engine::Cpu(CpuNet::Bert(_)) => "bert",
        }
    }

    /// Refuses a task the checkpoint cannot answer (a ViT for fill-mask; a BERT without the head).
    pub fn check_task(&self, task: &str) -> Result<(), ModelError> {
        let arch = self.architecture();
        if !tasks_of(arch).contains(&task) {
            return Err(ModelError::Config(format!("a {arch} model does not do {task} (it does {})", tasks_of(arch).join(", "))));
        }
        let (mlm, classifier) = match self {
            Engine::Gpu { net: Net::Bert(b), .. } => (b.has_masked_lm(), b.has_classifier()),
            Engine::Cpu(CpuNet::Bert(b)) => (b.has_masked_lm(), b.has_classifier()),
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
        let (adapter, device) = match self {
            Engine::Gpu { ctx, .. } => (ctx.report.label(), "webgpu"),
            Engine::Cpu(_) => (crate::cpu::adapter_name(), "cpu"),
        };
        serde_json::json!({ "architecture": self.architecture(), "labels": self.labels(), "adapter": adapter, "device": device })
    }

    /// Class names of a classification head (empty otherwise).
    pub fn labels(&self) -> &[String] {
        match self {
            Engine::Gpu { net: Net::Vit(m), .. } => &m.labels,
            Engine::Gpu { net: Net::Ast(m), .. } => &m.labels,
            Engine::Gpu { net: Net::Bert(m), .. } => &m.config.labels,
            Engine::Cpu(CpuNet::Vit(m)) => &m.labels,
            Engine::Cpu(CpuNet::Ast(m)) => &m.labels,
            Engine::Cpu(CpuNet::Bert(m)) => &m.config.labels,
            Engine::Gpu { net: Net::Clip(_), .. } | Engine::Cpu(CpuNet::Clip(_)) => &[],
        }
    }

    /// Values of one image or one clip of features (None for text models).
    pub fn input_len(&self) -> Option<usize> {
        let image = |(c, h, w): (u32, u32, u32)| Some((c * h * w) as usize);
        match self {
            Engine::Gpu { net: Net::Vit(m), .. } => image(m.image_shape()),
            Engine::Gpu { net: Net::Clip(m), .. } => image(m.image_shape()),
            Engine::Cpu(CpuNet::Vit(m)) => image(m.image_shape()),
            Engine::Cpu(CpuNet::Clip(m)) => image(m.image_shape()),
            Engine::Gpu { net: Net::Ast(m), .. } => Some((m.max_length * m.mel_bins) as usize),
            Engine::Cpu(CpuNet::Ast(m)) => Some((m.max_length * m.mel_bins) as usize),
            _ => None,
        }
    }

    /// Seconds of sound one clip of an audio model covers (frames of 10 ms).
    pub fn input_seconds(&self) -> Option<f64> {
        match self {
            Engine::Gpu { net: Net::Ast(m), .. } => Some(f64::from(m.max_length) * 0.01),
            Engine::Cpu(CpuNet::Ast(m)) => Some(f64::from(m.max_length) * 0.01),
            _ => None,
        }
    }

    /// Token ids of `text` for this model (special tokens, truncation to its positions).
    pub fn tokenize(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>, ModelError> {
        let batch = match self {
            Engine::Gpu { net: Net::Bert(m), .. } => m.tokenize(tokenizer, &[text])?,
            Engine::Gpu { net: Net::Clip(m), .. } => m.tokenize(tokenizer, &[text])?,
            Engine::Cpu(CpuNet::Bert(m)) => m.tokenize(tokenizer, &[text])?,
            Engine::Cpu(CpuNet::Clip(m)) => m.tokenize(tokenizer, &[text])?,
            _ => return Err(unsupported("take text")),
        };
        batch.into_iter().next().ok_or_else(|| ModelError::Input("no tokens".into()))
    }

    /// Class logits of each image of `pixels` ((batch, 3, H, W)).
    pub async fn classify_pixels(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Engine::Gpu { ctx, net: Net::Vit(m) } => m.classify(ctx, pixels).await,
            Engine::Cpu(CpuNet::Vit(m)) => m.classify(pixels),
            _ => Err(unsupported("classify images")),
        }
    }

    /// CLIP's normalised image embeddings of `pixels`.
    pub async fn image_embeds(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Engine::Gpu { ctx, net: Net::Clip(m) } => m.image_embeds(ctx, pixels).await,
            Engine::Cpu(CpuNet::Clip(m)) => m.image_embeds(pixels),
            _ => Err(unsupported("embed images")),
        }
    }

    /// Class logits of each clip of log-mel `features`.
    pub async fn classify_features(&mut self, features: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Engine::Gpu { ctx, net: Net::Ast(m) } => m.classify(ctx, features).await,
            Engine::Cpu(CpuNet::Ast(m)) => m.classify(features),
            _ => Err(unsupported("classify sounds")),
        }
    }

    /// Zero-shot logits of each image of `pixels` against `texts` (CLIP's `logits_per_image`).
    pub async fn zero_shot(&mut self, tokenizer: &Tokenizer, pixels: &[f32], texts: &[String]) -> Result<Vec<Vec<f32>>, ModelError> {
        match self {
            Engine::Gpu { ctx, net: Net::Clip(m) } => {
                let ids = m.tokenize(tokenizer, texts)?;
                let text = m.text_embeds(ctx, &ids).await?;
                let images = m.image_embeds(ctx, pixels).await?;
                Ok(m.logits_per_image(&images, &text))
            }
            Engine::Cpu(CpuNet::Clip(m)) => {
                let ids = m.tokenize(tokenizer, texts)?;
                Ok(m.logits_per_image(&m.image_embeds(pixels)?, &m.text_embeds(&ids)?))
            }
            _ => Err(unsupported("score images against texts")),
        }
    }

    /// Masked-LM logits at each mask of one sequence.
    pub async fn fill_mask(&mut self, ids: &[u32], mask: u32) -> Result<Vec<Vec<f32>>, ModelError> {
        let batch = [ids.to_vec()];
        let out = match self {
            Engine::Gpu { ctx, net: Net::Bert(m) } => m.fill_mask(ctx, &batch, mask).await?,
            Engine::Cpu(CpuNet::Bert(m)) => m.fill_mask(&batch, mask)?,
            _ => return Err(unsupported("fill masks")),
        };
        Ok(out.into_iter().next().unwrap_or_default())
    }

    /// Classifier logits of one sequence.
    pub async fn classify_ids(&mut self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let batch = [ids.to_vec()];
        let out = match self {
            Engine::Gpu { ctx, net: Net::Bert(m) } => m.classify(ctx, &batch).await?,
            Engine::Cpu(CpuNet::Bert(m)) => m.classify(&batch)?,
            _ => return Err(unsupported("classify text")),
        };
        Ok(out.into_iter().next().unwrap_or_default())
    }
}
