//! The patch encoders of `models::vit` on the CPU: ViT (`CpuVit`), the Audio Spectrogram
//! Transformer (`CpuAst`) and, in `cpu::clip`, CLIP's vision tower. The same `config.json`
//! parsing and checks (`VitSpec`, `AstSpec`), tensor names, token table and input checks as the
//! GPU models, so that configs, checkpoints and inputs are refused with the same errors.
//!
//! The patch embedding is im2col (`Patches::reference`, the GPU kernel's CPU reference) and one
//! candle matmul with the Conv2d kernel as a (hidden, channels·kh·kw) matrix, transposed at load;
//! the encoder stack is `cpu::encoder`'s (pre-LN). Inputs run in passes of at most
//! `TOKENS_PER_PASS` tokens, as on the GPU, which bounds the activations.

use super::cpu_err;
use super::encoder::{CpuEncoder, Linear, layer_norm};
use super::vec::{LayerNorm, add, layer_norm_rows};
use crate::formats::TensorTable;
use crate::gpu::ops::patches::{Layout, Patches};
use crate::models::encoder::{EncoderShape, LayerNames, Tensors};
use crate::models::llama::{ModelError, RangeReader};
use crate::models::vit::{AstSpec, PatchNames, VitSpec, input_passes, token_table};

/// A patch-embedding encoder on the CPU.
pub(crate) struct CpuPatchEncoder {
    pub patches: Patches,
    layout: Layout,
    /// The Conv2d kernel as a (hidden, channels·kh·kw) matrix, without bias (folded into `tokens`).
    proj: Linear,
    /// (rows, hidden): prefix tokens and positions, with the Conv2d bias folded into the patch rows.
    tokens: Vec<f32>,
    pre_norm: Option<LayerNorm>,
    encoder: CpuEncoder,
    final_norm: LayerNorm,
}

impl CpuPatchEncoder {
    /// Loads as `PatchEncoder::load` does, in its order.
    pub async fn load(
        t: Tensors<'_>,
        read: &mut impl RangeReader,
        patches: Patches,
        layout: Layout,
        shape: EncoderShape,
        names: &PatchNames<'_>,
        layer_names: impl Fn(u32) -> LayerNames,
    ) -> Result<Self, ModelError> {
        let hidden = shape.hidden;
        let kernel = t.values(read, &format!("{}.weight", names.proj), &[hidden, patches.channels, patches.kh, patches.kw]).await?;
        let proj = Linear::from_rows(kernel, hidden as usize, patches.cols() as usize, None)?;
        let tokens = token_table(t, read, names, &patches, hidden).await?;
        let pre_norm = match names.pre_norm {
            Some(n) => Some(layer_norm(t, read, n, hidden).await?),
            None => None,
        };
        let final_norm = layer_norm(t, read, names.final_norm, hidden).await?;
        let encoder = CpuEncoder::load(shape, t, read, layer_names).await?;
        Ok(Self { patches, layout, proj, tokens, pre_norm, encoder, final_norm })
    }

    pub fn hidden(&self) -> usize {
        self.encoder.shape.hidden as usize
    }

    /// Values of one input.
    pub fn input_len(&self) -> usize {
        self.layout.image as usize
    }

    /// Checks `inputs` and splits them into passes (as the GPU encoder does).
    pub fn passes(&self, inputs: &[f32]) -> Result<Vec<(usize, usize)>, ModelError> {
        input_passes(inputs, self.input_len(), &self.patches)
    }

    /// Runs `n` checked inputs (`n · input_len()` values) through the encoder: the first `count`
    /// rows of each after the final LayerNorm, (n·count, hidden).
    pub fn forward(&self, inputs: &[f32], n: usize, count: usize) -> Result<Vec<f32>, ModelError> {
        let (p, hidden) = (self.patches, self.hidden());
        let len = p.rows() as usize;
        if inputs.len() != n * self.input_len() || count > len {
            return Err(ModelError::Input(format!("{} values are not {n} inputs of {}", inputs.len(), self.input_len())));
        }
        // (n·rows, cols), the prefix rows zero: after the product they hold just their tokens.
        let cols = p.reference(n as u32, self.layout, inputs);
        let mut x = self.proj.matmul(&cols, n * len).map_err(cpu_err)?;
        for image in x.chunks_exact_mut(len * hidden) {
            add(image, &self.tokens);
        }
        if let Some(norm) = &self.pre_norm {
            layer_norm_rows(&mut x, norm, self.encoder.shape.eps);
        }
        self.encoder.forward(&mut x, &vec![len; n], false).map_err(cpu_err)?;
        let mut out: Vec<f32> = x.chunks_exact(len * hidden).flat_map(|image| image[..count * hidden].iter().copied()).collect();
        layer_norm_rows(&mut out, &self.final_norm, self.encoder.shape.eps);
        Ok(out)
    }

    /// Runs every input of `inputs` in passes: the `count` head rows of each, (inputs·count,
    /// hidden).
    pub fn run(&self, inputs: &[f32], count: usize) -> Result<Vec<f32>, ModelError> {
        let per = self.input_len();
        let mut out = Vec::new();
        for (first, n) in self.passes(inputs)? {
            out.extend(self.forward(&inputs[first * per..(first + n) * per], n, count)?);
        }
        Ok(out)
    }

    pub fn weight_bytes(&self) -> u64 {
        self.proj.bytes() + self.encoder.weight_bytes()
    }
}

/// `ViTForImageClassification` (or a bare `ViTModel`: `embed` only) on the CPU.
pub struct CpuVit {
    pub labels: Vec<String>,
    encoder: CpuPatchEncoder,
    classifier: Option<Linear>,
}

impl CpuVit {
    pub async fn load(config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let VitSpec { shape, patches, labels } = VitSpec::parse(config_json)?;
        let hidden = shape.hidden;
        let encoder = CpuPatchEncoder::load(VitSpec::tensors(table), read, patches, patches.chw(), shape, &VitSpec::NAMES, LayerNames::vit).await?;
        let classifier = if table.get("classifier.weight").is_some() {
            Some(Linear::load(Tensors { table, prefixes: &[""] }, read, "classifier", labels.len() as u32, hidden, true).await?)
        } else {
            None
        };
        Ok(Self { labels, encoder, classifier })
    }

    /// (channels, height, width) of one input image.
    pub fn image_shape(&self) -> (u32, u32, u32) {
        let p = &self.encoder.patches;
        (p.channels, p.height, p.width)
    }

    /// Class logits (one per label) of each image of `pixels` ((batch, 3, H, W) values).
    pub fn classify(&self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let Some(head) = &self.classifier else {
            return Err(ModelError::Config("this checkpoint has no classifier (a bare ViTModel)".into()));
        };
        let cls = self.encoder.run(pixels, 1)?;
        let n = cls.len() / self.encoder.hidden();
        let logits = head.forward(&cls, n).map_err(cpu_err)?;
        Ok(logits.chunks_exact(head.rows()).map(<[f32]>::to_vec).collect())
    }

    /// The final-normalised [CLS] state (hidden values) of each image.
    pub fn embed(&self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(self.encoder.run(pixels, 1)?.chunks_exact(self.encoder.hidden()).map(<[f32]>::to_vec).collect())
    }

    /// Bytes of weights one pass reads (the patch projection and the encoder, as f32).
    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes()
    }
}

/// `ASTForAudioClassification` on the CPU: log-mel features (max_length frames × num_mel_bins)
/// to class logits.
pub struct CpuAst {
    pub labels: Vec<String>,
    /// Frames and mel bins of one input.
    pub max_length: u32,
    pub mel_bins: u32,
    encoder: CpuPatchEncoder,
    classifier_norm: LayerNorm,
    classifier: Linear,
    eps: f32,
}

impl CpuAst {
    pub async fn load(config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let AstSpec { shape, patches, layout, max_length, mel_bins, labels } = AstSpec::parse(config_json)?;
        let (hidden, eps) = (shape.hidden, shape.eps);
        let encoder = CpuPatchEncoder::load(AstSpec::tensors(table), read, patches, layout, shape, &AstSpec::NAMES, LayerNames::vit).await?;
        let top = Tensors { table, prefixes: &[""] };
        let classifier_norm = layer_norm(top, read, "classifier.layernorm", hidden).await?;
        let classifier = Linear::load(top, read, "classifier.dense", labels.len() as u32, hidden, true).await?;
        Ok(Self { labels, max_length, mel_bins, encoder, classifier_norm, classifier, eps })
    }

    /// Class logits of each clip of `features` ((batch, max_length, mel_bins) values, as
    /// `preprocess::audio` computes them).
    pub fn classify(&self, features: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let hidden = self.encoder.hidden();
        let rows = self.encoder.run(features, 2)?;
        // (CLS + distillation) / 2, as ASTModel's pooler output.
        let mut pooled: Vec<f32> = rows.chunks_exact(2 * hidden).flat_map(|r| r[..hidden].iter().zip(&r[hidden..]).map(|(a, b)| (a + b) / 2.0)).collect();
        layer_norm_rows(&mut pooled, &self.classifier_norm, self.eps);
        let logits = self.classifier.forward(&pooled, pooled.len() / hidden).map_err(cpu_err)?;
        Ok(logits.chunks_exact(self.classifier.rows()).map(<[f32]>::to_vec).collect())
    }

    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes()
    }
}
