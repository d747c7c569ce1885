//! CLIP (`CLIPModel`) of `models::clip` on the CPU: the vision tower is `cpu::vit`'s patch
//! encoder (with CLIP's `pre_layrnorm`), the text tower `cpu::encoder`'s stack with the causal
//! mask over each text's own tokens (packed, no padding), its state at the end-of-text token
//! normalised and projected. The same config parsing, checks and end-of-text rule (`ClipSpec`)
//! as the GPU model.

use super::cpu_err;
use super::encoder::{CpuEncoder, Linear, layer_norm};
use super::vec::{LayerNorm, l2_normalize_rows, layer_norm_rows};
use super::vit::CpuPatchEncoder;
use crate::formats::TensorTable;
use crate::models::clip::{ClipSpec, logit_scale, logits_per_image};
use crate::models::encoder::{LayerNames, Tensors};
use crate::models::llama::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;

/// Tokens per text pass, as the GPU's (texts are at most `max_positions` long; a pass holds whole
/// texts).
const TOKENS_PER_PASS: usize = crate::models::bert::TOKENS_PER_PASS as usize;

/// The text tower.
struct TextTower {
    /// (vocab, hidden)
    token: Vec<f32>,
    /// (max_positions, hidden)
    position: Vec<f32>,
    encoder: CpuEncoder,
    final_norm: LayerNorm,
    projection: Linear,
}

/// A CLIP model on the CPU.
pub struct CpuClip {
    pub projection_dim: u32,
    /// `exp(logit_scale)`: the factor of cosine similarities in zero-shot logits.
    pub logit_scale: f32,
    spec: ClipSpec,
    vision: CpuPatchEncoder,
    visual_projection: Linear,
    text: TextTower,
}

impl CpuClip {
    /// Loads as `Clip::load` does, in its order.
    pub async fn load(config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let spec = ClipSpec::parse(config_json)?;
        let projection_dim = spec.projection_dim;
        let top = Tensors { table, prefixes: &[""] };
        let vt = Tensors { table, prefixes: &["vision_model."] };
        let patches = spec.patches;
        let vision_hidden = spec.vision_shape.hidden;
        let vision = CpuPatchEncoder::load(vt, read, patches, patches.chw(), spec.vision_shape.clone(), &ClipSpec::VISION_NAMES, LayerNames::clip).await?;
        let visual_projection = Linear::load(top, read, "visual_projection", projection_dim, vision_hidden, false).await?;

        let h = spec.text_shape.hidden;
        let tt = Tensors { table, prefixes: &["text_model."] };
        let token = tt.values(read, "embeddings.token_embedding.weight", &[spec.vocab, h]).await?;
        let position = tt.values(read, "embeddings.position_embedding.weight", &[spec.max_positions, h]).await?;
        let encoder = CpuEncoder::load(spec.text_shape.clone(), tt, read, LayerNames::clip).await?;
        let final_norm = layer_norm(tt, read, "final_layer_norm", h).await?;
        let projection = Linear::load(top, read, "text_projection", projection_dim, h, false).await?;
        let text = TextTower { token, position, encoder, final_norm, projection };
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
    pub fn image_embeds(&self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let cls = self.vision.run(pixels, 1)?;
        let n = cls.len() / self.vision.hidden();
        let mut y = self.visual_projection.matmul(&cls, n).map_err(cpu_err)?;
        let dim = self.projection_dim as usize;
        l2_normalize_rows(&mut y, dim);
        Ok(y.chunks_exact(dim).map(<[f32]>::to_vec).collect())
    }

    /// Token ids of each text, as CLIP's tokenizer makes them (start and end of text), truncated
    /// to `max_text_len` keeping the end-of-text token.
    pub fn tokenize<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        crate::models::bert::tokenize(tokenizer, texts, self.spec.max_positions)
    }

    /// L2-normalised text embeddings (projection_dim values each) of token-id sequences.
    pub fn text_embeds(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.spec.check_texts(batch)?;
        let mut out = Vec::with_capacity(batch.len());
        let mut start = 0;
        while start < batch.len() {
            // Whole texts up to the token budget, at least one.
            let mut end = start + 1;
            let mut tokens = batch[start].len();
            while end < batch.len() && tokens + batch[end].len() <= TOKENS_PER_PASS {
                tokens += batch[end].len();
                end += 1;
            }
            out.extend(self.text_pass(&batch[start..end])?);
            start = end;
        }
        Ok(out)
    }

    /// One pass over checked texts, packed: x is (tokens, hidden).
    fn text_pass(&self, texts: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let t = &self.text;
        let h = self.spec.text_shape.hidden as usize;
        let lengths: Vec<usize> = texts.iter().map(Vec::len).collect();
        let mut x = Vec::with_capacity(lengths.iter().sum::<usize>() * h);
        for ids in texts {
            for (p, &id) in ids.iter().enumerate() {
                let (id, p) = (id as usize, p);
                let (tok, pos) = (t.token.get(id * h..(id + 1) * h), t.position.get(p * h..(p + 1) * h));
                let (Some(tok), Some(pos)) = (tok, pos) else {
                    return Err(ModelError::Input(format!("token id {id} at position {p} is out of range")));
                };
                x.extend(tok.iter().zip(pos).map(|(a, b)| a + b));
            }
        }
        t.encoder.forward(&mut x, &lengths, true).map_err(cpu_err)?;
        let mut picked = Vec::with_capacity(texts.len() * h);
        let mut start = 0;
        for ids in texts {
            let row = start + self.spec.eos_row(ids) as usize;
            picked.extend_from_slice(&x[row * h..(row + 1) * h]);
            start += ids.len();
        }
        layer_norm_rows(&mut picked, &t.final_norm, self.spec.text_shape.eps);
        let mut y = t.projection.matmul(&picked, texts.len()).map_err(cpu_err)?;
        let dim = self.projection_dim as usize;
        l2_normalize_rows(&mut y, dim);
        Ok(y.chunks_exact(dim).map(<[f32]>::to_vec).collect())
    }

    /// Zero-shot logits: `exp(logit_scale) · (image · text)` for each image (rows) and text
    /// (columns), as `CLIPModel`'s `logits_per_image`.
    pub fn logits_per_image(&self, image_embeds: &[Vec<f32>], text_embeds: &[Vec<f32>]) -> Vec<Vec<f32>> {
        logits_per_image(self.logit_scale, image_embeds, text_embeds)
    }

    /// Bytes of weights a vision pass reads (the patch projection and the encoder, as f32).
    pub fn vision_weight_bytes(&self) -> u64 {
        self.vision.weight_bytes() + self.visual_projection.bytes()
    }
}
