//! CLIP (`CLIPModel`): a vision tower (a patch encoder with a LayerNorm before the encoder, the
//! [CLS] state normalised after it) and a causal text tower (the state at each text's end-of-text
//! token), each projected into one space; image and text embeddings are L2-normalised on the GPU,
//! and zero-shot scores are `exp(logit_scale) · cos` between them.

use serde::Deserialize;

use crate::formats::TensorTable;
use crate::gpu::GpuContext;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::{embedding, new_encoder, pool, submit};
use crate::gpu::weights::GpuWeight;
use crate::models::bert::{Pass, passes};
use crate::models::encoder::{MAX_POSITIONS, MAX_VOCAB, Activations, Encoder, EncoderShape, LayerNames, LayerNorm, Linear, Placement, Tensors, config_error, copy_rows, size};
use crate::models::llama::{ModelError, RangeReader};
use crate::models::vit::{Defaults, PatchEncoder, PatchNames, RawPatchConfig};
use crate::gpu::ops::patches::Patches;
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
struct TextTower {
    token: GpuWeight,
    position: GpuWeight,
    encoder: Encoder,
    final_norm: LayerNorm,
    projection: Linear,
    act: Option<Activations>,
}

/// A CLIP model on the GPU.
pub struct Clip {
    pub projection_dim: u32,
    /// `exp(logit_scale)`: the factor of cosine similarities in zero-shot logits.
    pub logit_scale: f32,
    spec: ClipSpec,
    vision: PatchEncoder,
    visual_projection: Linear,
    text: TextTower,
}

/// What a CLIP `config.json` says, checked: shared by `Clip` and the CPU's `CpuClip`.
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
pub(crate) async fn logit_scale(top: Tensors<'_>, read: &mut impl RangeReader) -> Result<f32, ModelError> {
    let scale = top.values(read, "logit_scale", &[]).await?;
    scale.first().map(|s| s.exp()).filter(|s| s.is_finite()).ok_or_else(|| config_error("logit_scale", "not a finite number".into()))
}

/// Zero-shot logits: `scale · (image · text)` for each image (rows) and text (columns).
pub(crate) fn logits_per_image(scale: f32, image_embeds: &[Vec<f32>], text_embeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
    image_embeds.iter().map(|i| text_embeds.iter().map(|t| scale * i.iter().zip(t).map(|(a, b)| a * b).sum::<f32>()).collect()).collect()
}

impl Clip {
    pub async fn load(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let spec = ClipSpec::parse(config_json)?;
        let projection_dim = spec.projection_dim;
        let top = Tensors { table, prefixes: &[""] };
        let vision_hidden = spec.vision_shape.hidden;
        let vt = Tensors { table, prefixes: &["vision_model."] };
        let patches = spec.patches;
        let vision = PatchEncoder::load(ctx, vt, read, patches, patches.chw(), spec.vision_shape.clone(), &ClipSpec::VISION_NAMES, LayerNames::clip).await?;
        let visual_projection = top.linear(ctx, read, "visual_projection", projection_dim, vision_hidden, false).await?;

        let (vocab, max_positions, h) = (spec.vocab, spec.max_positions, spec.text_shape.hidden);
        let tt = Tensors { table, prefixes: &["text_model."] };
        let token = tt.matrix(ctx, read, "embeddings.token_embedding.weight", vocab, h).await?;
        let position = tt.matrix(ctx, read, "embeddings.position_embedding.weight", max_positions, h).await?;
        let encoder = Encoder::load(ctx, spec.text_shape.clone(), tt, read, LayerNames::clip).await?;
        let final_norm = tt.layer_norm(ctx, read, "final_layer_norm", h).await?;
        let projection = top.linear(ctx, read, "text_projection", projection_dim, h, false).await?;
        let text = TextTower { token, position, encoder, final_norm, projection, act: None };
        let logit_scale = logit_scale(top, read).await?;
        Ok(Self { projection_dim, logit_scale, spec, vision, visual_projection, text })
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
    pub async fn image_embeds(&mut self, ctx: &GpuContext, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = self.vision.input_len();
        let dim = self.projection_dim;
        let mut out = Vec::new();
        for (first, n) in self.vision.passes(pixels)? {
            let n32 = n as u32;
            let mut e = new_encoder(ctx, "clip vision");
            let cls = self.vision.encode(ctx, &mut e, &pixels[first * per..(first + n) * per], n32, 1).await?;
            let projected = ctx.storage_output("clip", "image embeds", u64::from(n32 * dim) * 4)?;
            self.visual_projection.encode(ctx, &mut e, n32, &cls, &cls, &projected).await?;
            out.extend(normalize_and_read(ctx, e, &projected, n32, dim).await?);
        }
        Ok(out)
    }

    /// Token ids of each text, as CLIP's tokenizer makes them (start and end of text), truncated
    /// to `max_text_len` keeping the end-of-text token.
    pub fn tokenize<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        crate::models::bert::tokenize(tokenizer, texts, self.spec.max_positions)
    }

    /// L2-normalised text embeddings (projection_dim values each) of token-id sequences.
    pub async fn text_embeds(&mut self, ctx: &GpuContext, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.spec.check_texts(batch)?;
        let mut results = vec![Vec::new(); batch.len()];
        for pass in passes(batch) {
            let outs = self.text_pass(ctx, batch, &pass).await?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    async fn text_pass(&mut self, ctx: &GpuContext, batch: &[Vec<u32>], pass: &Pass) -> Result<Vec<Vec<f32>>, ModelError> {
        let (n, len) = (pass.members.len() as u32, pass.len);
        let rows: Vec<u64> = pass.members.iter().enumerate().map(|(b, &i)| b as u64 * u64::from(len) + u64::from(self.spec.eos_row(&batch[i]))).collect();
        let t = &mut self.text;
        let shape = &self.spec.text_shape;
        Activations::ensure(&mut t.act, ctx, shape, u64::from(n), u64::from(len))?;
        let Some(a) = t.act.as_ref() else {
            return Err(ModelError::Config("no activations".into()));
        };
        let (tokens, h) = (n * len, shape.hidden);
        let mut ids = Vec::with_capacity(tokens as usize);
        let mut lengths = Vec::with_capacity(n as usize);
        for &i in &pass.members {
            let seq = &batch[i];
            ids.extend_from_slice(seq);
            ids.resize(ids.len() + (len as usize).saturating_sub(seq.len()), 0);
            lengths.push(seq.len() as u32);
        }
        let positions: Vec<u32> = (0..n).flat_map(|_| 0..len).collect();
        let ids_buf = ctx.storage_from("clip", "token ids", &ids)?;
        let positions_buf = ctx.storage_from("clip", "position ids", &positions)?;
        ctx.queue.write_buffer(&a.lengths, 0, bytemuck::cast_slice(&lengths));
        let mut e = new_encoder(ctx, "clip text");
        embedding::encode(ctx, &mut e, &t.token, tokens, &ids_buf, &a.x2).await?;
        embedding::encode(ctx, &mut e, &t.position, tokens, &positions_buf, &a.h).await?;
        Elementwise::Add.encode(ctx, &mut e, u64::from(tokens) * u64::from(h), &a.x2, &a.h, &a.x).await?;
        t.encoder.encode(ctx, &mut e, a, n, len, true).await?;
        let buf = |what: &'static str, elems: u32| ctx.storage_output("clip", what, u64::from(elems.max(1)) * 4);
        let (picked, normed) = (buf("eos rows", n * h)?, buf("eos rows", n * h)?);
        copy_rows(&mut e, &a.x, &picked, h, &rows);
        t.final_norm.encode(ctx, &mut e, shape.eps, n, h, &picked, &normed).await?;
        let projected = buf("text embeds", n * self.projection_dim)?;
        t.projection.encode(ctx, &mut e, n, &normed, &picked, &projected).await?;
        normalize_and_read(ctx, e, &projected, n, self.projection_dim).await
    }

    /// Zero-shot logits: `exp(logit_scale) · (image · text)` for each image (rows) and text
    /// (columns), as `CLIPModel`'s `logits_per_image`.
    pub fn logits_per_image(&self, image_embeds: &[Vec<f32>], text_embeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
        logits_per_image(self.logit_scale, image_embeds, text_embeds)
    }
}

/// Records the L2 normalisation of `n` rows of `dim` (a mean over one row, normalised), submits
/// and reads them back.
async fn normalize_and_read(ctx: &GpuContext, mut e: wgpu::CommandEncoder, x: &wgpu::Buffer, n: u32, dim: u32) -> Result<Vec<Vec<f32>>, ModelError> {
    let ones = ctx.storage_from("clip", "lengths", &vec![1u32; n as usize])?;
    let out = ctx.storage_output("clip", "normalised", u64::from(n * dim) * 4)?;
    pool::encode(ctx, &mut e, n, 1, dim, true, x, &ones, &out).await?;
    submit(ctx, "clip", e).await?;
    Ok(ctx.read_f32(&out, (n * dim) as usize).await?.chunks_exact(dim as usize).map(<[f32]>::to_vec).collect())
}
