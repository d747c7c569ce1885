//! CLIP (`CLIPModel`): a vision tower (a patch encoder with a LayerNorm before the encoder, the
//! [CLS] state normalised after it) and a causal text tower (the state at each text's end-of-text
//! token), each projected into one space; image and text embeddings are L2-normalised on the GPU,
//! and zero-shot scores are `exp(logit_scale) · cos` between them.

use serde::Deserialize;

use super::bert::{Pass, passes};
use super::encoder::{Encoder, EncoderShape, LayerNames, LayerNorm, Linear, MAX_POSITIONS, MAX_VOCAB, Placement, config_error, l2_normalize, size};
use super::vit::{Defaults, PatchEncoder, PatchNames, RawPatchConfig};
use super::weights::Weights;
use crate::backend::{Backend, Patches};
use crate::formats::TensorTable;
use crate::models::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;

const MAX_PROJECTION: u64 = 65_536;

#[derive(Deserialize, Default)]
struct RawTextConfig {
    vocab_size: Option<u64>,
    hidden_size: Option<u64>,
    intermediate_size: Option<u64>,
    num_hidden_layers: Option<u64>,
    num_attention_heads: Option<u64>,
    max_position_embeddings: Option<u64>,
    hidden_act: Option<String>,
    layer_norm_eps: Option<f64>,
    eos_token_id: Option<u32>,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default)]
    text_config: RawTextConfig,
    #[serde(default)]
    vision_config: RawPatchConfig,
    projection_dim: Option<u64>,
}

/// CLIPVisionConfig's defaults (ViT-B/32).
const VISION: Defaults = Defaults { hidden: 768, layers: 12, heads: 12, intermediate: 3072, eps: 1e-5, act: "quick_gelu" };

/// The text tower.
struct TextTower<B: Backend> {
    token: B::Matrix,
    position: B::Matrix,
    encoder: Encoder<B>,
    final_norm: LayerNorm<B>,
    projection: Linear<B>,
}

/// A CLIP model on backend `B`.
pub struct Clip<B: Backend> {
    pub projection_dim: u32,
    /// `exp(logit_scale)`: the factor of cosine similarities in zero-shot logits.
    pub logit_scale: f32,
    spec: ClipSpec,
    vision: PatchEncoder<B>,
    visual_projection: Linear<B>,
    text: TextTower<B>,
    pub backend: B,
}

/// What a CLIP `config.json` says, checked.
pub(crate) struct ClipSpec {
    pub projection_dim: u32,
    pub vision_shape: EncoderShape,
    pub patches: Patches,
    pub text_shape: EncoderShape,
    pub vocab: u32,
    pub max_positions: u32,
    /// `eos_token_id` (see `eos_row`).
    pub eos: u32,
}

impl ClipSpec {
    pub fn parse(config_json: &[u8]) -> Result<Self, ModelError> {
        let raw: RawConfig = serde_json::from_slice(config_json).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        if raw.model_type.as_deref() != Some("clip") {
            return Err(ModelError::Config(format!("config.json: model_type {:?} is not \"clip\"", raw.model_type)));
        }
        let projection_dim = size("config.json", "projection_dim", raw.projection_dim.or(Some(512)), MAX_PROJECTION)?;
        let vision_what = "config.json vision_config";
        let v = &raw.vision_config;
        let vision_shape = v.shape(vision_what, &VISION)?;
        let patches = v.image(vision_what, 224, 32)?;

        let what = "config.json text_config";
        let tc = &raw.text_config;
        let text_shape = EncoderShape::new(
            what,
            tc.num_hidden_layers.or(Some(12)),
            tc.hidden_size.or(Some(512)),
            tc.num_attention_heads.or(Some(8)),
            tc.intermediate_size.or(Some(2048)),
            tc.layer_norm_eps.or(Some(1e-5)),
            tc.hidden_act.as_deref(),
            "quick_gelu",
            Placement::Pre,
            true,
        )?;
        let vocab = size(what, "vocab_size", tc.vocab_size.or(Some(49408)), MAX_VOCAB)?;
        let max_positions = size(what, "max_position_embeddings", tc.max_position_embeddings.or(Some(77)), MAX_POSITIONS)?;
        let eos = tc.eos_token_id.unwrap_or(49407);
        Ok(Self { projection_dim, vision_shape, patches, text_shape, vocab, max_positions, eos })
    }

    /// The vision tower's tensor names (under `vision_model.`).
    pub const VISION_NAMES: PatchNames<'static> = PatchNames {
        proj: "embeddings.patch_embedding",
        proj_bias: false,
        prefix: &["embeddings.class_embedding"],
        positions: "embeddings.position_embedding.weight",
        pre_norm: Some("pre_layrnorm"),
        final_norm: "post_layernorm",
    };

    /// Refuses texts the text tower cannot run: empty, longer than its positions, an id past
    /// the vocabulary.
    pub fn check_texts(&self, batch: &[Vec<u32>]) -> Result<(), ModelError> {
        for (i, ids) in batch.iter().enumerate() {
            if ids.is_empty() || ids.len() > self.max_positions as usize {
                return Err(ModelError::Input(format!("text {i} has {} tokens (1..={} allowed)", ids.len(), self.max_positions)));
            }
            if let Some(&bad) = ids.iter().find(|&&id| id >= self.vocab) {
                return Err(ModelError::Input(format!("text {i}: token id {bad} is not below the vocabulary size {}", self.vocab)));
            }
        }
        Ok(())
    }

    /// The row whose state represents `ids`: its first end-of-text token, or (the configs
    /// written before transformers fixed `eos_token_id`, which say 2) its highest id; the last
    /// token when there is none.
    pub fn eos_row(&self, ids: &[u32]) -> u32 {
        let last = ids.len().saturating_sub(1) as u32;
        if self.eos == 2 {
            let max = ids.iter().copied().max().unwrap_or(0);
            return ids.iter().position(|&i| i == max).map_or(last, |p| p as u32);
        }
        ids.iter().position(|&i| i == self.eos).map_or(last, |p| p as u32)
    }
}

/// `exp(logit_scale)` of a checkpoint.
async fn logit_scale(top: &mut Weights<'_, impl RangeReader>) -> Result<f32, ModelError> {
    let scale = top.float_values("logit_scale", &[]).await?;
    scale.first().map(|s| s.exp()).filter(|s| s.is_finite()).ok_or_else(|| config_error("logit_scale", "not a finite number".into()))
}

/// Zero-shot logits: `scale · (image · text)` for each image (rows) and text (columns).
fn logits_per_image(scale: f32, image_embeds: &[Vec<f32>], text_embeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
    image_embeds.iter().map(|i| text_embeds.iter().map(|t| scale * i.iter().zip(t).map(|(a, b)| a * b).sum::<f32>()).collect()).collect()
}

impl<B: Backend> Clip<B> {
    pub async fn load(backend: B, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let spec = ClipSpec::parse(config_json)?;
        let be = &backend;
        let projection_dim = spec.projection_dim;
        let top = &mut Weights::new(table, read);
        let patches = spec.patches;
        let vt = &mut top.under(&["vision_model."]);
        let vision = PatchEncoder::load(be, vt, patches, patches.chw(), spec.vision_shape.clone(), &ClipSpec::VISION_NAMES, LayerNames::clip).await?;
        let visual_projection = Linear::load(be, top, "visual_projection", projection_dim, spec.vision_shape.hidden, false).await?;

        let (vocab, max_positions, h, eps) = (spec.vocab, spec.max_positions, spec.text_shape.hidden, spec.text_shape.eps);
        let tt = &mut top.under(&["text_model."]);
        let token = tt.table(be, "embeddings.token_embedding.weight", vocab, h).await?;
        let position = tt.table(be, "embeddings.position_embedding.weight", max_positions, h).await?;
        let encoder = Encoder::load(be, tt, spec.text_shape.clone(), LayerNames::clip).await?;
        let final_norm = LayerNorm::load(be, tt, "final_layer_norm", h, eps).await?;
        let projection = Linear::load(be, top, "text_projection", projection_dim, h, false).await?;
        let text = TextTower { token, position, encoder, final_norm, projection };
        let logit_scale = logit_scale(top).await?;
        Ok(Self { projection_dim, logit_scale, spec, vision, visual_projection, text, backend })
    }

    /// (channels, height, width) of one input image.
    pub fn image_shape(&self) -> (u32, u32, u32) {
        let p = &self.vision.patches;
        (p.channels, p.height, p.width)
    }

    /// Longest text in tokens (`max_position_embeddings`).
    pub fn max_text_len(&self) -> u32 {
        self.spec.max_positions
    }

    /// L2-normalised image embeddings (projection_dim values each) of `pixels` ((batch, 3, H, W)).
    pub async fn image_embeds(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = self.vision.input_len();
        let be = &mut self.backend;
        let mut out = Vec::new();
        for (first, n) in self.vision.passes(pixels)? {
            let cls = self.vision.forward(be, &pixels[first * per..(first + n) * per], n as u32, 1).await?;
            let projected = self.visual_projection.forward(be, &cls).await?;
            let normed = l2_normalize(be, &projected, n as u32).await?;
            out.extend(be.read(&normed).await?.chunks_exact(self.projection_dim as usize).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    /// Token ids of each text, as CLIP's tokenizer makes them (start and end of text), truncated
    /// to `max_text_len` keeping the end-of-text token.
    pub fn tokenize<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        crate::models::bert::tokenize(tokenizer, texts, self.spec.max_positions)
    }

    /// L2-normalised text embeddings (projection_dim values each) of token-id sequences.
    pub async fn text_embeds(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.spec.check_texts(batch)?;
        let mut results = vec![Vec::new(); batch.len()];
        for pass in passes(batch) {
            let outs = self.text_pass(batch, &pass).await?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    async fn text_pass(&mut self, batch: &[Vec<u32>], pass: &Pass) -> Result<Vec<Vec<f32>>, ModelError> {
        let texts: Vec<&[u32]> = pass.members.iter().map(|&i| batch[i].as_slice()).collect();
        let lengths: Vec<u32> = texts.iter().map(|t| t.len() as u32).collect();
        let picks: Vec<(u32, u32)> = texts.iter().enumerate().map(|(s, ids)| (s as u32, self.spec.eos_row(ids))).collect();
        let ids = texts.concat();
        let positions: Vec<u32> = lengths.iter().flat_map(|&n| 0..n).collect();
        let (t, be) = (&self.text, &mut self.backend);
        let rows = be.batch(&lengths)?;
        let x = be.embed_batch(&t.token, &ids, &rows).await?;
        let p = be.embed_batch(&t.position, &positions, &rows).await?;
        let x = be.add(&x, &p).await?;
        let x = t.encoder.forward(be, x, &rows, true, None).await?;
        let eos = be.rows(&x, &rows, &picks).await?;
        let normed = t.final_norm.forward(be, &eos).await?;
        let projected = t.projection.forward(be, &normed).await?;
        let embeds = l2_normalize(be, &projected, texts.len() as u32).await?;
        Ok(be.read(&embeds).await?.chunks_exact(self.projection_dim as usize).map(<[f32]>::to_vec).collect())
    }

    /// Zero-shot logits: `exp(logit_scale) · (image · text)` for each image (rows) and text
    /// (columns), as `CLIPModel`'s `logits_per_image`.
    pub fn logits_per_image(&self, image_embeds: &[Vec<f32>], text_embeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
        logits_per_image(self.logit_scale, image_embeds, text_embeds)
    }

    /// Bytes of weights a vision pass reads.
    pub fn vision_weight_bytes(&self) -> u64 {
        self.vision.weight_bytes(&self.backend) + self.backend.matrix_bytes(&self.visual_projection.w)
    }
}
