//! Patch encoders: the Vision Transformer (`ViTForImageClassification`, `ViTModel`), the Audio
//! Spectrogram Transformer (`ASTForAudioClassification`) and, in `models::clip`, CLIP's vision
//! tower. Each cuts its input into patches (`gpu::ops::patches`, im2col), projects them with the
//! Conv2d kernel as one `matvec` product, adds its prefix tokens ([CLS], AST's distillation token)
//! and position embeddings from one table, runs a pre-LN encoder and normalises the rows its head
//! reads.
//!
//! Inputs come pre-processed (`preprocess::image`, `preprocess::audio`): pixel values (batch, 3,
//! H, W) or log-mel features (batch, frames, mel bins), f32 row-major.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::encoder::{Encoder, EncoderShape, LayerNames, LayerNorm, Linear, Placement, config_error, fixed_passes, labels, size};
use super::weights::Weights;
use crate::backend::{Backend, Layout, Patches};
use crate::formats::TensorTable;
use crate::models::{ModelError, RangeReader};

/// Tokens per forward pass (a longer input runs alone in its pass).
pub const TOKENS_PER_PASS: u32 = 1024;
/// Largest image side or spectrogram length a config may ask for.
const MAX_SIDE: u64 = 8192;

/// Tensor names of a patch embedding.
pub(crate) struct PatchNames<'a> {
    /// The Conv2d: `{proj}.weight` (hidden, channels, kh, kw) and, when `proj_bias`, `{proj}.bias`.
    pub proj: &'a str,
    pub proj_bias: bool,
    /// The prefix tokens, in order (hidden values each, any shape).
    pub prefix: &'a [&'a str],
    /// The position table (rows × hidden values, any shape).
    pub positions: &'a str,
    /// A LayerNorm over the embeddings before the encoder (CLIP's `pre_layrnorm`).
    pub pre_norm: Option<&'a str>,
    /// The LayerNorm after the encoder, applied to the rows the head reads.
    pub final_norm: &'a str,
}

/// A patch-embedding encoder.
pub(crate) struct PatchEncoder<B: Backend> {
    pub patches: Patches,
    layout: Layout,
    /// The Conv2d kernel as a (hidden, channels·kh·kw) matrix.
    proj: B::Matrix,
    /// (rows, hidden): prefix tokens and positions, with the Conv2d bias folded into the patch rows.
    tokens: B::Vector,
    pre_norm: Option<LayerNorm<B>>,
    encoder: Encoder<B>,
    final_norm: LayerNorm<B>,
}

impl<B: Backend> PatchEncoder<B> {
    pub async fn load(
        be: &B,
        w: &mut Weights<'_, impl RangeReader>,
        patches: Patches,
        layout: Layout,
        shape: EncoderShape,
        names: &PatchNames<'_>,
        layer_names: impl Fn(u32) -> LayerNames,
    ) -> Result<Self, ModelError> {
        let (hidden, eps) = (shape.hidden, shape.eps);
        let kernel_name = format!("{}.weight", names.proj);
        let kernel = w.float_values(&kernel_name, &[hidden, patches.channels, patches.kh, patches.kw]).await?;
        let proj = be.matrix_from_values(&kernel_name, &kernel, hidden, patches.cols())?;
        let table = token_table(w, names, &patches, hidden).await?;
        let tokens = be.vector(&table)?;
        let pre_norm = match names.pre_norm {
            Some(n) => Some(LayerNorm::load(be, w, n, hidden, eps).await?),
            None => None,
        };
        let final_norm = LayerNorm::load(be, w, names.final_norm, hidden, eps).await?;
        let encoder = Encoder::load(be, w, shape, layer_names).await?;
        Ok(Self { patches, layout, proj, tokens, pre_norm, encoder, final_norm })
    }

    pub fn hidden(&self) -> u32 {
        self.encoder.shape.hidden
    }

    /// Values of one input.
    pub fn input_len(&self) -> usize {
        self.layout.image as usize
    }

    /// Runs `n` inputs (`n · input_len()` values) through the encoder: the first `count` rows of
    /// each after the final LayerNorm, (n · count, hidden).
    pub async fn forward(&self, be: &mut B, inputs: &[f32], n: u32, count: u32) -> Result<B::Tensor, ModelError> {
        let len = self.patches.rows();
        let rows = be.batch(&vec![len; n as usize])?;
        let cols = be.patches(inputs, n, self.patches, self.layout).await?;
        let x = be.linear(&cols, &self.proj, None).await?;
        let mut x = be.add_tiled(&x, &self.tokens).await?;
        if let Some(norm) = &self.pre_norm {
            x = norm.forward(be, &x).await?;
        }
        let x = self.encoder.forward(be, x, &rows, false, None).await?;
        let picks: Vec<(u32, u32)> = (0..n).flat_map(|s| (0..count).map(move |p| (s, p))).collect();
        let head = be.rows(&x, &rows, &picks).await?;
        self.final_norm.forward(be, &head).await
    }

    /// Splits `inputs` into passes and checks their length.
    pub fn passes(&self, inputs: &[f32]) -> Result<Vec<(usize, usize)>, ModelError> {
        input_passes(inputs, self.input_len(), &self.patches)
    }

    pub fn weight_bytes(&self, be: &B) -> u64 {
        be.matrix_bytes(&self.proj) + self.encoder.weight_bytes(be)
    }
}

/// Checks `inputs` (whole inputs of `per` finite values) and splits them into passes of at most
/// `TOKENS_PER_PASS` tokens: `(first, count)`.
pub(crate) fn input_passes(inputs: &[f32], per: usize, patches: &Patches) -> Result<Vec<(usize, usize)>, ModelError> {
    if inputs.is_empty() || !inputs.len().is_multiple_of(per) {
        return Err(ModelError::Input(format!("{} input values are not whole inputs of {per}", inputs.len())));
    }
    if let Some(i) = inputs.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::Input(format!("input value {i} is {}", inputs[i])));
    }
    Ok(fixed_passes(inputs.len() / per, patches.rows(), TOKENS_PER_PASS))
}

/// The token table (rows, hidden) added to the patch embeddings: the prefix tokens plus their
/// positions, then the patches' positions with the Conv2d bias folded in.
async fn token_table(w: &mut Weights<'_, impl RangeReader>, names: &PatchNames<'_>, patches: &Patches, hidden: u32) -> Result<Vec<f32>, ModelError> {
    let rows = patches.rows();
    let elems = |n: u32| -> u64 { u64::from(n) * u64::from(hidden) };
    let mut table = Vec::with_capacity(elems(rows) as usize);
    for name in names.prefix {
        table.extend(values_any_shape(w, name, elems(1)).await?);
    }
    let mut positions = values_any_shape(w, names.positions, elems(rows)).await?;
    if names.proj_bias {
        let bias = w.float_values(&format!("{}.bias", names.proj), &[hidden]).await?;
        for row in positions.chunks_exact_mut(hidden as usize).skip(patches.prefix as usize) {
            row.iter_mut().zip(&bias).for_each(|(p, b)| *p += b);
        }
    }
    for (i, v) in table.iter_mut().enumerate() {
        *v += positions[i];
    }
    table.extend_from_slice(&positions[table.len()..]);
    Ok(table)
}

/// `elems` values of tensor `name`, whatever its shape ((1, 1, hidden), (1, rows, hidden) or
/// (rows, hidden) all occur).
async fn values_any_shape(w: &mut Weights<'_, impl RangeReader>, name: &str, elems: u64) -> Result<Vec<f32>, ModelError> {
    let info = w.find(name)?;
    if info.elems() != elems {
        return Err(ModelError::Tensor { name: info.name.clone(), problem: format!("shape {:?}, expected {elems} values", info.shape) });
    }
    let shape: Vec<u32> = info.shape.iter().map(|&d| d as u32).collect();
    w.float_values(name, &shape).await
}

/// `image_size` and `patch_size`: one number or a (height, width) pair.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Side {
    One(u64),
    Pair([u64; 2]),
}

impl Side {
    fn pair(self) -> (u64, u64) {
        match self {
            Side::One(s) => (s, s),
            Side::Pair([h, w]) => (h, w),
        }
    }
}

fn sides(what: &str, name: &str, v: Option<Side>, default: u64) -> Result<(u32, u32), ModelError> {
    let (h, w) = v.map_or((default, default), Side::pair);
    Ok((size(what, name, Some(h), MAX_SIDE)?, size(what, name, Some(w), MAX_SIDE)?))
}

/// The keys of `config.json` the patch encoders read (each model takes its own defaults, as
/// transformers' config classes do).
#[derive(Deserialize, Default)]
pub(crate) struct RawPatchConfig {
    pub model_type: Option<String>,
    hidden_size: Option<u64>,
    num_hidden_layers: Option<u64>,
    num_attention_heads: Option<u64>,
    intermediate_size: Option<u64>,
    layer_norm_eps: Option<f64>,
    hidden_act: Option<String>,
    qkv_bias: Option<bool>,
    image_size: Option<Side>,
    patch_size: Option<Side>,
    num_channels: Option<u64>,
    // AST
    frequency_stride: Option<u64>,
    time_stride: Option<u64>,
    max_length: Option<u64>,
    num_mel_bins: Option<u64>,
    // Heads
    id2label: Option<BTreeMap<String, String>>,
    num_labels: Option<u64>,
}

/// Defaults of a config class: hidden, layers, heads, intermediate, layer_norm_eps, hidden_act.
pub(crate) struct Defaults {
    pub hidden: u64,
    pub layers: u64,
    pub heads: u64,
    pub intermediate: u64,
    pub eps: f64,
    pub act: &'static str,
}

impl RawPatchConfig {
    pub fn shape(&self, what: &str, d: &Defaults) -> Result<EncoderShape, ModelError> {
        EncoderShape::new(
            what,
            self.num_hidden_layers.or(Some(d.layers)),
            self.hidden_size.or(Some(d.hidden)),
            self.num_attention_heads.or(Some(d.heads)),
            self.intermediate_size.or(Some(d.intermediate)),
            self.layer_norm_eps.or(Some(d.eps)),
            self.hidden_act.as_deref(),
            d.act,
            Placement::Pre,
            self.qkv_bias.unwrap_or(true),
        )
    }

    /// The image geometry: (channels, (height, width), (patch h, patch w)).
    pub fn image(&self, what: &str, image_default: u64, patch_default: u64) -> Result<Patches, ModelError> {
        let channels = size(what, "num_channels", self.num_channels.or(Some(3)), 16)?;
        let image = sides(what, "image_size", self.image_size, image_default)?;
        let patch = sides(what, "patch_size", self.patch_size, patch_default)?;
        Patches::new(channels, image, patch, patch, 1).map_err(|_| config_error(what, format!("patch_size {patch:?} does not fit image_size {image:?}")))
    }
}

fn parse(config_json: &[u8], model_type: &str) -> Result<RawPatchConfig, ModelError> {
    let raw: RawPatchConfig = serde_json::from_slice(config_json).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
    match raw.model_type.as_deref() {
        Some(t) if t == model_type => Ok(raw),
        other => Err(ModelError::Config(format!("config.json: model_type {other:?} is not {model_type:?}"))),
    }
}

/// Index and score of the `k` highest of `scores` (ties to the lower index), for top-k labels.
pub fn top_k(scores: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.into_iter().take(k).map(|i| (i, scores[i])).collect()
}

/// Softmax of `logits` in f64 (max-subtracted), as f32.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| (f64::from(l) - f64::from(max)).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| (e / sum) as f32).collect()
}

/// `ViTForImageClassification` (or a bare `ViTModel`, which has no classifier: `embed` only).
pub struct Vit<B: Backend> {
    pub labels: Vec<String>,
    encoder: PatchEncoder<B>,
    classifier: Option<Linear<B>>,
    pub backend: B,
}

const VIT: Defaults = Defaults { hidden: 768, layers: 12, heads: 12, intermediate: 3072, eps: 1e-12, act: "gelu" };

/// What a ViT's `config.json` says, checked.
pub(crate) struct VitSpec {
    pub shape: EncoderShape,
    pub patches: Patches,
    pub labels: Vec<String>,
}

impl VitSpec {
    pub fn parse(config_json: &[u8]) -> Result<Self, ModelError> {
        let raw = parse(config_json, "vit")?;
        Ok(Self { shape: raw.shape("config.json", &VIT)?, patches: raw.image("config.json", 224, 16)?, labels: labels(raw.id2label.as_ref(), raw.num_labels)? })
    }

    /// Where the encoder's tensors are: under `vit.` in a `ViTForImageClassification`, at the
    /// top in a `ViTModel`.
    pub const PREFIXES: &'static [&'static str] = &["vit.", ""];

    pub const NAMES: PatchNames<'static> = PatchNames {
        proj: "embeddings.patch_embeddings.projection",
        proj_bias: true,
        prefix: &["embeddings.cls_token"],
        positions: "embeddings.position_embeddings",
        pre_norm: None,
        final_norm: "layernorm",
    };
}

impl<B: Backend> Vit<B> {
    pub async fn load(backend: B, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let VitSpec { shape, patches, labels } = VitSpec::parse(config_json)?;
        let be = &backend;
        let hidden = shape.hidden;
        let w = &mut Weights::with_prefixes(table, read, VitSpec::PREFIXES);
        let encoder = PatchEncoder::load(be, w, patches, patches.chw(), shape, &VitSpec::NAMES, LayerNames::vit).await?;
        let top = &mut w.under(&[""]);
        let classifier = if top.has("classifier.weight") { Some(Linear::load(be, top, "classifier", labels.len() as u32, hidden, true).await?) } else { None };
        Ok(Self { labels, encoder, classifier, backend })
    }

    /// (channels, height, width) of one input image.
    pub fn image_shape(&self) -> (u32, u32, u32) {
        let p = &self.encoder.patches;
        (p.channels, p.height, p.width)
    }

    /// Class logits (one per label) of each image of `pixels` ((batch, 3, H, W) values).
    pub async fn classify(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.classifier.is_none() {
            return Err(ModelError::Config("this checkpoint has no classifier (a bare ViTModel)".into()));
        }
        self.run(pixels, true).await
    }

    /// The final-normalised [CLS] state (hidden values) of each image.
    pub async fn embed(&mut self, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(pixels, false).await
    }

    async fn run(&mut self, pixels: &[f32], classify: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = self.encoder.input_len();
        let be = &mut self.backend;
        let mut out = Vec::new();
        for (first, n) in self.encoder.passes(pixels)? {
            let cls = self.encoder.forward(be, &pixels[first * per..(first + n) * per], n as u32, 1).await?;
            let (result, width) = match (&self.classifier, classify) {
                (Some(head), true) => (head.forward(be, &cls).await?, self.labels.len()),
                _ => (cls, self.encoder.hidden() as usize),
            };
            out.extend(be.read(&result).await?.chunks_exact(width).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes(&self.backend)
    }
}

/// `ASTForAudioClassification`: log-mel features (max_length frames × num_mel_bins) to class
/// logits.
pub struct Ast<B: Backend> {
    pub labels: Vec<String>,
    /// Frames and mel bins of one input.
    pub max_length: u32,
    pub mel_bins: u32,
    encoder: PatchEncoder<B>,
    classifier_norm: LayerNorm<B>,
    classifier: Linear<B>,
    pub backend: B,
}

const AST: Defaults = Defaults { hidden: 768, layers: 12, heads: 12, intermediate: 3072, eps: 1e-12, act: "gelu" };

/// What an AST's `config.json` says, checked.
pub(crate) struct AstSpec {
    pub shape: EncoderShape,
    pub patches: Patches,
    /// Where feature (mel bin, frame) sits in a clip's (frames, mel) row-major values.
    pub layout: Layout,
    pub max_length: u32,
    pub mel_bins: u32,
    pub labels: Vec<String>,
}

impl AstSpec {
    pub fn parse(config_json: &[u8]) -> Result<Self, ModelError> {
        let what = "config.json";
        let raw = parse(config_json, "audio-spectrogram-transformer")?;
        let shape = raw.shape(what, &AST)?;
        let patch = size(what, "patch_size", raw.patch_size.map(|s| s.pair().0).or(Some(16)), MAX_SIDE)?;
        let mel_bins = size(what, "num_mel_bins", raw.num_mel_bins.or(Some(128)), MAX_SIDE)?;
        let max_length = size(what, "max_length", raw.max_length.or(Some(1024)), MAX_SIDE)?;
        let fs = size(what, "frequency_stride", raw.frequency_stride.or(Some(10)), MAX_SIDE)?;
        let ts = size(what, "time_stride", raw.time_stride.or(Some(10)), MAX_SIDE)?;
        // The features are (frames, mel) row-major; the Conv2d sees them as (1, mel, frames).
        let patches = Patches::new(1, (mel_bins, max_length), (patch, patch), (fs, ts), 2)
            .map_err(|_| config_error(what, format!("patch_size {patch} does not fit {mel_bins} mel bins × {max_length} frames")))?;
        let layout = Layout { c: 0, y: 1, x: mel_bins, image: mel_bins * max_length };
        Ok(Self { shape, patches, layout, max_length, mel_bins, labels: labels(raw.id2label.as_ref(), raw.num_labels)? })
    }

    /// Where the encoder's tensors are: under `audio_spectrogram_transformer.` in the task model.
    pub const PREFIXES: &'static [&'static str] = &["audio_spectrogram_transformer.", ""];

    pub const NAMES: PatchNames<'static> = PatchNames {
        proj: "embeddings.patch_embeddings.projection",
        proj_bias: true,
        prefix: &["embeddings.cls_token", "embeddings.distillation_token"],
        positions: "embeddings.position_embeddings",
        pre_norm: None,
        final_norm: "layernorm",
    };
}

impl<B: Backend> Ast<B> {
    pub async fn load(backend: B, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let AstSpec { shape, patches, layout, max_length, mel_bins, labels } = AstSpec::parse(config_json)?;
        let be = &backend;
        let (hidden, eps) = (shape.hidden, shape.eps);
        let w = &mut Weights::with_prefixes(table, read, AstSpec::PREFIXES);
        let encoder = PatchEncoder::load(be, w, patches, layout, shape, &AstSpec::NAMES, LayerNames::vit).await?;
        let top = &mut w.under(&[""]);
        let classifier_norm = LayerNorm::load(be, top, "classifier.layernorm", hidden, eps).await?;
        let classifier = Linear::load(be, top, "classifier.dense", labels.len() as u32, hidden, true).await?;
        Ok(Self { labels, max_length, mel_bins, encoder, classifier_norm, classifier, backend })
    }

    /// Class logits of each clip of `features` ((batch, max_length, mel_bins) values, as
    /// `preprocess::audio` computes them).
    pub async fn classify(&mut self, features: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = self.encoder.input_len();
        let be = &mut self.backend;
        let mut out = Vec::new();
        for (first, n) in self.encoder.passes(features)? {
            let rows = self.encoder.forward(be, &features[first * per..(first + n) * per], n as u32, 2).await?;
            // (CLS + distillation) / 2, as ASTModel's pooler output.
            let pairs = be.batch(&vec![2; n])?;
            let pooled = be.mean_pool(&rows, &pairs, false).await?;
            let normed = self.classifier_norm.forward(be, &pooled).await?;
            let logits = self.classifier.forward(be, &normed).await?;
            out.extend(be.read(&logits).await?.chunks_exact(self.labels.len()).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes(&self.backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_score_then_index() {
        assert_eq!(top_k(&[0.1, 0.7, 0.7, -1.0], 3), vec![(1, 0.7), (2, 0.7), (0, 0.1)]);
        assert_eq!(top_k(&[1.0], 5), vec![(0, 1.0)]);
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    }

    #[test]
    fn configs_take_class_defaults_and_refuse_bad_geometry() {
        let raw = parse(br#"{"model_type":"vit"}"#, "vit").unwrap();
        let s = raw.shape("c", &VIT).unwrap();
        assert_eq!((s.hidden, s.layers, s.heads, s.intermediate), (768, 12, 12, 3072));
        let p = raw.image("c", 224, 16).unwrap();
        assert_eq!((p.patches(), p.rows(), p.cols()), (196, 197, 768));
        let bad = parse(br#"{"model_type":"vit","image_size":8,"patch_size":16}"#, "vit").unwrap();
        assert!(matches!(bad.image("c", 224, 16), Err(ModelError::Config(_))));
        assert!(matches!(parse(br#"{"model_type":"bert"}"#, "vit"), Err(ModelError::Config(_))));
        let pair = parse(br#"{"model_type":"vit","image_size":[32, 48],"patch_size":16}"#, "vit").unwrap();
        assert_eq!(pair.image("c", 224, 16).unwrap().patches(), 6);
    }
}
