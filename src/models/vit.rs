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

use crate::formats::TensorTable;
use crate::gpu::GpuContext;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::patches::{Layout, Patches};
use crate::gpu::ops::{new_encoder, pool, submit};
use crate::gpu::weights::GpuWeight;
use crate::models::encoder::{Activations, Encoder, EncoderShape, LayerNames, LayerNorm, Linear, Placement, Tensors, config_error, copy_rows, fixed_passes, labels, size};
use crate::models::llama::{ModelError, RangeReader};

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

/// A patch-embedding encoder on the GPU.
pub(crate) struct PatchEncoder {
    pub patches: Patches,
    layout: Layout,
    /// The Conv2d kernel as a (hidden, channels·kh·kw) matrix.
    proj: GpuWeight,
    /// (rows, hidden): prefix tokens and positions, with the Conv2d bias folded into the patch rows.
    tokens: wgpu::Buffer,
    pre_norm: Option<LayerNorm>,
    encoder: Encoder,
    final_norm: LayerNorm,
    act: Option<Activations>,
}

impl PatchEncoder {
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        ctx: &GpuContext,
        t: Tensors<'_>,
        read: &mut impl RangeReader,
        patches: Patches,
        layout: Layout,
        shape: EncoderShape,
        names: &PatchNames<'_>,
        layer_names: impl Fn(u32) -> LayerNames,
    ) -> Result<Self, ModelError> {
        let hidden = shape.hidden;
        let kernel = t.find(&format!("{}.weight", names.proj))?;
        let want = [hidden, patches.channels, patches.kh, patches.kw].map(u64::from);
        if kernel.shape != want {
            return Err(ModelError::Tensor { name: kernel.name.clone(), problem: format!("shape {:?}, expected {want:?}", kernel.shape) });
        }
        let proj = super::upload_rows(ctx, kernel, read, hidden, patches.cols()).await?;
        let table = token_table(t, read, names, &patches, hidden).await?;
        let tokens = ctx.storage_from("patch encoder", "token table", &table)?;
        let pre_norm = match names.pre_norm {
            Some(n) => Some(t.layer_norm(ctx, read, n, hidden).await?),
            None => None,
        };
        let final_norm = t.layer_norm(ctx, read, names.final_norm, hidden).await?;
        let encoder = Encoder::load(ctx, shape, t, read, layer_names).await?;
        Ok(Self { patches, layout, proj, tokens, pre_norm, encoder, final_norm, act: None })
    }

    pub fn hidden(&self) -> u32 {
        self.encoder.shape.hidden
    }

    /// Values of one input.
    pub fn input_len(&self) -> usize {
        self.layout.image as usize
    }

    /// Runs `n` inputs (`n · input_len()` values) through the encoder and records into `e` the
    /// copy of the first `count` rows of each (after the final LayerNorm) to a new (n, count,
    /// hidden) buffer, which it returns.
    pub async fn encode(&mut self, ctx: &GpuContext, e: &mut wgpu::CommandEncoder, inputs: &[f32], n: u32, count: u32) -> Result<wgpu::Buffer, ModelError> {
        let (p, hidden) = (self.patches, self.hidden());
        let len = p.rows();
        Activations::ensure(&mut self.act, ctx, &self.encoder.shape, u64::from(n), u64::from(len))?;
        let Some(a) = self.act.as_ref() else {
            return Err(ModelError::Config("no activations".into()));
        };
        let tokens = n * len;
        let nh = u64::from(tokens) * u64::from(hidden);
        let x = ctx.storage_from("patch encoder", "inputs", inputs)?;
        let cols = ctx.storage_output("patch encoder", "patches", u64::from(tokens) * u64::from(p.cols()) * 4)?;
        ctx.queue.write_buffer(&a.lengths, 0, bytemuck::cast_slice(&vec![len; n as usize]));
        p.encode(ctx, e, n, self.layout, &x, &cols).await?;
        crate::gpu::ops::matvec::encode(ctx, e, &self.proj, tokens, &cols, &a.h).await?;
        let table_out = if self.pre_norm.is_some() { &a.x2 } else { &a.x };
        Elementwise::AddRow { cols: len * hidden }.encode(ctx, e, nh, &a.h, &self.tokens, table_out).await?;
        if let Some(norm) = &self.pre_norm {
            norm.encode(ctx, e, self.encoder.shape.eps, tokens, hidden, &a.x2, &a.x).await?;
        }
        self.encoder.encode(ctx, e, a, n, len, false).await?;
        let rows: Vec<u64> = (0..u64::from(n)).flat_map(|b| (0..u64::from(count)).map(move |r| b * u64::from(len) + r)).collect();
        let picked = ctx.storage_output("patch encoder", "head rows", rows.len() as u64 * u64::from(hidden) * 4)?;
        let out = ctx.storage_output("patch encoder", "head rows", rows.len() as u64 * u64::from(hidden) * 4)?;
        copy_rows(e, &a.x, &picked, hidden, &rows);
        self.final_norm.encode(ctx, e, self.encoder.shape.eps, rows.len() as u32, hidden, &picked, &out).await?;
        Ok(out)
    }

    /// Splits `inputs` into passes and checks their length.
    pub fn passes(&self, inputs: &[f32]) -> Result<Vec<(usize, usize)>, ModelError> {
        input_passes(inputs, self.input_len(), &self.patches)
    }

    pub fn dispatches(&self) -> u32 {
        3 + u32::from(self.pre_norm.is_some()) + self.proj.parts.len() as u32 + self.encoder.dispatches() + 1
    }

    pub fn weight_bytes(&self) -> u64 {
        self.proj.gpu_bytes() + self.encoder.weight_bytes()
    }
}

/// Checks `inputs` (whole inputs of `per` finite values) and splits them into passes of at most
/// `TOKENS_PER_PASS` tokens: `(first, count)`. Shared by the GPU and the CPU patch encoders.
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
/// positions, then the patches' positions with the Conv2d bias folded in. Shared by the GPU and
/// the CPU patch encoders.
pub(crate) async fn token_table(t: Tensors<'_>, read: &mut impl RangeReader, names: &PatchNames<'_>, patches: &Patches, hidden: u32) -> Result<Vec<f32>, ModelError> {
    let rows = patches.rows();
    let elems = |n: u32| -> u64 { u64::from(n) * u64::from(hidden) };
    let mut table = Vec::with_capacity(elems(rows) as usize);
    for name in names.prefix {
        table.extend(values_any_shape(t, read, name, elems(1)).await?);
    }
    let mut positions = values_any_shape(t, read, names.positions, elems(rows)).await?;
    if names.proj_bias {
        let bias = t.values(read, &format!("{}.bias", names.proj), &[hidden]).await?;
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
pub(crate) async fn values_any_shape(t: Tensors<'_>, read: &mut impl RangeReader, name: &str, elems: u64) -> Result<Vec<f32>, ModelError> {
    let info = t.find(name)?;
    if info.elems() != elems {
        return Err(ModelError::Tensor { name: info.name.clone(), problem: format!("shape {:?}, expected {elems} values", info.shape) });
    }
    let shape: Vec<u32> = info.shape.iter().map(|&d| d as u32).collect();
    t.values(read, name, &shape).await
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
pub struct Vit {
    pub labels: Vec<String>,
    encoder: PatchEncoder,
    classifier: Option<Linear>,
}

const VIT: Defaults = Defaults { hidden: 768, layers: 12, heads: 12, intermediate: 3072, eps: 1e-12, act: "gelu" };

/// What a ViT's `config.json` says, checked: shared by `Vit` and the CPU's `CpuVit`.
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

    /// The encoder's tensors: under `vit.` in a `ViTForImageClassification`, at the top in a
    /// `ViTModel`.
    pub fn tensors(table: &TensorTable) -> Tensors<'_> {
        Tensors { table, prefixes: &["vit.", ""] }
    }

    pub const NAMES: PatchNames<'static> = PatchNames {
        proj: "embeddings.patch_embeddings.projection",
        proj_bias: true,
        prefix: &["embeddings.cls_token"],
        positions: "embeddings.position_embeddings",
        pre_norm: None,
        final_norm: "layernorm",
    };
}

impl Vit {
    pub async fn load(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let VitSpec { shape, patches, labels } = VitSpec::parse(config_json)?;
        let t = VitSpec::tensors(table);
        let hidden = shape.hidden;
        let encoder = PatchEncoder::load(ctx, t, read, patches, patches.chw(), shape, &VitSpec::NAMES, LayerNames::vit).await?;
        let classifier = if table.get("classifier.weight").is_some() {
            Some(Tensors { table, prefixes: &[""] }.linear(ctx, read, "classifier", labels.len() as u32, hidden, true).await?)
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
    pub async fn classify(&mut self, ctx: &GpuContext, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.classifier.is_none() {
            return Err(ModelError::Config("this checkpoint has no classifier (a bare ViTModel)".into()));
        }
        self.run(ctx, pixels, true).await
    }

    /// The final-normalised [CLS] state (hidden values) of each image.
    pub async fn embed(&mut self, ctx: &GpuContext, pixels: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(ctx, pixels, false).await
    }

    async fn run(&mut self, ctx: &GpuContext, pixels: &[f32], classify: bool) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = self.encoder.input_len();
        let mut out = Vec::new();
        for (first, n) in self.encoder.passes(pixels)? {
            let mut e = new_encoder(ctx, "vit forward");
            let n32 = n as u32;
            let cls = self.encoder.encode(ctx, &mut e, &pixels[first * per..(first + n) * per], n32, 1).await?;
            let (result, width) = match (&self.classifier, classify) {
                (Some(head), true) => {
                    let labels = head.w.rows;
                    let scratch = ctx.storage_output("vit", "logits", u64::from(n32 * labels) * 4)?;
                    let logits = ctx.storage_output("vit", "logits", u64::from(n32 * labels) * 4)?;
                    head.encode(ctx, &mut e, n32, &cls, &scratch, &logits).await?;
                    (logits, labels)
                }
                _ => (cls, self.encoder.hidden()),
            };
            submit(ctx, "vit forward", e).await?;
            out.extend(ctx.read_f32(&result, n * width as usize).await?.chunks_exact(width as usize).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    pub fn dispatches_per_pass(&self) -> u32 {
        self.encoder.dispatches() + self.classifier.as_ref().map_or(0, Linear::dispatches)
    }

    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes()
    }
}

/// `ASTForAudioClassification`: log-mel features (max_length frames × num_mel_bins) to class
/// logits.
pub struct Ast {
    pub labels: Vec<String>,
    /// Frames and mel bins of one input.
    pub max_length: u32,
    pub mel_bins: u32,
    encoder: PatchEncoder,
    classifier_norm: LayerNorm,
    classifier: Linear,
    eps: f32,
}

const AST: Defaults = Defaults { hidden: 768, layers: 12, heads: 12, intermediate: 3072, eps: 1e-12, act: "gelu" };

/// What an AST's `config.json` says, checked: shared by `Ast` and the CPU's `CpuAst`.
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

    /// The encoder's tensors: under `audio_spectrogram_transformer.` in the task model.
    pub fn tensors(table: &TensorTable) -> Tensors<'_> {
        Tensors { table, prefixes: &["audio_spectrogram_transformer.", ""] }
    }

    pub const NAMES: PatchNames<'static> = PatchNames {
        proj: "embeddings.patch_embeddings.projection",
        proj_bias: true,
        prefix: &["embeddings.cls_token", "embeddings.distillation_token"],
        positions: "embeddings.position_embeddings",
        pre_norm: None,
        final_norm: "layernorm",
    };
}

impl Ast {
    pub async fn load(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let AstSpec { shape, patches, layout, max_length, mel_bins, labels } = AstSpec::parse(config_json)?;
        let t = AstSpec::tensors(table);
        let (hidden, eps) = (shape.hidden, shape.eps);
        let encoder = PatchEncoder::load(ctx, t, read, patches, layout, shape, &AstSpec::NAMES, LayerNames::vit).await?;
        let top = Tensors { table, prefixes: &[""] };
        let classifier_norm = top.layer_norm(ctx, read, "classifier.layernorm", hidden).await?;
        let classifier = top.linear(ctx, read, "classifier.dense", labels.len() as u32, hidden, true).await?;
        Ok(Self { labels, max_length, mel_bins, encoder, classifier_norm, classifier, eps })
    }

    /// Class logits of each clip of `features` ((batch, max_length, mel_bins) values, as
    /// `preprocess::audio` computes them).
    pub async fn classify(&mut self, ctx: &GpuContext, features: &[f32]) -> Result<Vec<Vec<f32>>, ModelError> {
        let per = self.encoder.input_len();
        let hidden = self.encoder.hidden();
        let labels = self.classifier.w.rows;
        let mut out = Vec::new();
        for (first, n) in self.encoder.passes(features)? {
            let n32 = n as u32;
            let mut e = new_encoder(ctx, "ast forward");
            let rows = self.encoder.encode(ctx, &mut e, &features[first * per..(first + n) * per], n32, 2).await?;
            let buf = |what: &'static str, elems: u32| ctx.storage_output("ast", what, u64::from(elems.max(1)) * 4);
            let (pooled, normed) = (buf("pooled", n32 * hidden)?, buf("normed", n32 * hidden)?);
            let lengths = ctx.storage_from("ast", "lengths", &vec![2u32; n])?;
            // (CLS + distillation) / 2, as ASTModel's pooler output.
            pool::encode(ctx, &mut e, n32, 2, hidden, false, &rows, &lengths, &pooled).await?;
            self.classifier_norm.encode(ctx, &mut e, self.eps, n32, hidden, &pooled, &normed).await?;
            let (scratch, logits) = (buf("scratch", n32 * labels)?, buf("logits", n32 * labels)?);
            self.classifier.encode(ctx, &mut e, n32, &normed, &scratch, &logits).await?;
            submit(ctx, "ast forward", e).await?;
            out.extend(ctx.read_f32(&logits, n * labels as usize).await?.chunks_exact(labels as usize).map(<[f32]>::to_vec));
        }
        Ok(out)
    }

    pub fn dispatches_per_pass(&self) -> u32 {
        self.encoder.dispatches() + 2 + self.classifier.dispatches()
    }

    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes()
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
