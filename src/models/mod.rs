//! Model architectures, one file each, written against the op set of `gpu::ops`, and how their
//! files are read: by byte range, one tensor at a time.

pub mod bert;
pub mod clip;
pub mod encoder;
pub mod error;
pub mod gpt2;
pub mod llama;
#[cfg(feature = "cpu")]
pub mod tasks;
pub mod vit;

use crate::formats::{DType, FormatError, TensorTable, grow_prefix, read_table};
pub use error::ModelError;

/// Where a model file's bytes come from: the weight store, a file, an HTTP server, a buffer.
/// Tensors are read one at a time, so no more than one tensor is ever in memory.
#[allow(async_fn_in_trait)]
pub trait RangeReader {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String>;
}

/// A model file held in memory (tests).
impl RangeReader for &[u8] {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        self.get(range.start as usize..range.end as usize).map(<[u8]>::to_vec).ok_or_else(|| format!("bytes {range:?} past the end"))
    }
}

/// A file natively.
#[cfg(not(target_arch = "wasm32"))]
impl RangeReader for std::fs::File {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        use std::io::{Read, Seek, SeekFrom};
        self.seek(SeekFrom::Start(range.start)).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        self.read_exact(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf)
    }
}

/// A stored file (IndexedDB in the browser, a folder natively).
impl<S: crate::store::ChunkStore> RangeReader for crate::store::StoredFile<'_, S> {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        self.read(range).await.map_err(|e| e.to_string())
    }
}

/// The tensor table of a `file_len`-byte file read through `read`, starting from `prefix` (its
/// first bytes, already at hand) and growing it as the format reader asks.
pub async fn read_table_ranged(read: &mut impl RangeReader, mut prefix: Vec<u8>, file_len: u64, name: &str) -> Result<TensorTable, ModelError> {
    loop {
        match read_table(&prefix, file_len, name) {
            Err(FormatError::NeedMoreBytes { needed }) => {
                let have = prefix.len() as u64;
                let want = grow_prefix(have, needed, file_len)?;
                prefix.extend(read.read_range(have..want).await.map_err(ModelError::Read)?);
            }
            other => return Ok(other?),
        }
    }
}

/// Most bytes of a matrix read at once on its way to the GPU: wasm memory only grows, so a whole
/// embedding table read (and repacked) in one piece would set its high-water mark.
const UPLOAD_SLICE_BYTES: u64 = 4 << 20;

/// Uploads tensor `t`, which must be a (rows, cols) matrix, to the GPU in slices of whole rows.
pub(crate) async fn upload_matrix(ctx: &crate::gpu::GpuContext, t: &crate::formats::TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<crate::gpu::weights::GpuWeight, ModelError> {
    let problem = |problem: String| ModelError::Tensor { name: t.name.clone(), problem };
    if t.shape != [u64::from(rows), u64::from(cols)] {
        return Err(problem(format!("shape {:?}, expected [{rows}, {cols}]", t.shape)));
    }
    upload_rows(ctx, t, read, rows, cols).await
}

/// Uploads tensor `t` as a (rows, cols) matrix whatever its shape (a convolution's
/// (out, in, kh, kw) kernel is the (out, in·kh·kw) matrix of its im2col product): the caller checks
/// the shape.
pub(crate) async fn upload_rows(ctx: &crate::gpu::GpuContext, t: &crate::formats::TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<crate::gpu::weights::GpuWeight, ModelError> {
    let problem = |problem: String| ModelError::Tensor { name: t.name.clone(), problem };
    let row_bytes = t.dtype.bytes_for(u64::from(cols)).filter(|&b| b > 0).ok_or_else(|| problem(format!("{cols} columns are not whole {} blocks", t.dtype)))?;
    if t.range.end.checked_sub(t.range.start) != Some(u64::from(rows) * row_bytes) {
        return Err(problem(format!("{} bytes in the file for {rows} rows of {row_bytes}", t.range.end.saturating_sub(t.range.start))));
    }
    // The F16/BF16 kernels read values in pairs: rows of an odd length go to the GPU as F32.
    let widen = matches!(t.dtype, DType::F16 | DType::BF16) && cols % 2 == 1;
    let gpu_dtype = if widen { DType::F32 } else { t.dtype };
    let w = crate::gpu::weights::GpuWeight::new(ctx, &t.name, gpu_dtype, u64::from(rows), u64::from(cols), None)?;
    let per_read = (UPLOAD_SLICE_BYTES / row_bytes).max(1);
    let mut row = 0u64;
    while row < u64::from(rows) {
        let n = per_read.min(u64::from(rows) - row);
        let bytes = read.read_range(t.range.start + row * row_bytes..t.range.start + (row + n) * row_bytes).await.map_err(ModelError::Read)?;
        if bytes.len() as u64 != n * row_bytes {
            return Err(ModelError::Read(format!("{}: read {} bytes, expected {}", t.name, bytes.len(), n * row_bytes)));
        }
        if widen {
            let values = crate::formats::quant::dequantize(t.dtype, &bytes).map_err(|e| problem(e.to_string()))?;
            w.write_rows(ctx, row, bytemuck::cast_slice(&values))?;
        } else {
            w.write_rows(ctx, row, &bytes)?;
        }
        row += n;
    }
    Ok(w)
}

/// Tensor `name` of `shape` as f32 values, whatever its type (small tensors: norms, biases).
pub(crate) async fn read_values(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
    let t = table.get(name).ok_or_else(|| ModelError::Tensor { name: name.into(), problem: "missing".into() })?;
    tensor_values(t, read, shape).await
}

/// Tensor `t`, which must have `shape`, as f32 values (the model loaders find `t` by their own
/// naming rules).
pub(crate) async fn tensor_values(t: &crate::formats::TensorInfo, read: &mut impl RangeReader, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
    let problem = |problem: String| ModelError::Tensor { name: t.name.clone(), problem };
    let want: Vec<u64> = shape.iter().map(|&d| u64::from(d)).collect();
    if t.shape != want {
        return Err(problem(format!("shape {:?}, expected {want:?}", t.shape)));
    }
    let bytes = read.read_range(t.range.clone()).await.map_err(ModelError::Read)?;
    let expected = t.dtype.bytes_for(t.elems());
    if expected != Some(bytes.len() as u64) {
        return Err(ModelError::Read(format!("{}: read {} bytes, expected {expected:?}", t.name, bytes.len())));
    }
    crate::formats::quant::dequantize(t.dtype, &bytes).map_err(|e| problem(e.to_string()))
}

/// Where a decoder's LM head answers a `Pick`: the logits it wrote, and the token the argmax or
/// the sampler writes from them.
pub(crate) struct PickBuffers<'a> {
    pub vocab: u32,
    pub logits: &'a wgpu::Buffer,
    pub token: &'a wgpu::Buffer,
    pub scratch: &'a wgpu::Buffer,
}

impl PickBuffers<'_> {
    /// Records the argmax or the sampler draw (nothing for `Pick::Logits`) after the LM head.
    pub async fn encode(&self, ctx: &crate::gpu::GpuContext, e: &mut wgpu::CommandEncoder, pick: crate::generate::Pick) -> Result<(), crate::gpu::GpuError> {
        use crate::generate::Pick;
        match pick {
            Pick::Greedy => crate::gpu::ops::reduce::encode_argmax(ctx, e, 1, self.vocab, self.logits, self.token, self.scratch).await,
            Pick::Sample(sampling, u) => sampling.encode(ctx, e, self.vocab, self.logits, self.token, u).await,
            Pick::Logits => Ok(()),
        }
    }

    /// Reads the answer back once the pass was submitted: 4 bytes, or the logits.
    pub async fn read(&self, ctx: &crate::gpu::GpuContext, pick: crate::generate::Pick) -> Result<crate::generate::Next, crate::gpu::GpuError> {
        use crate::generate::{Next, Pick};
        Ok(match pick {
            Pick::Logits => Next::Logits(ctx.read_f32(self.logits, self.vocab as usize).await?),
            _ => Next::Token(ctx.read_f32(self.token, 1).await?[0].to_bits()),
        })
    }
}

/// A text decoder of any supported architecture, on the GPU.
pub enum Decoder {
    Llama(llama::Llama),
    Gpt2(gpt2::Gpt2),
}

/// `model_type` of a hub checkpoint's `config.json`.
pub fn model_type(config_json: &[u8]) -> Result<String, ModelError> {
    let v: serde_json::Value = serde_json::from_slice(config_json).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
    v["model_type"].as_str().map(String::from).ok_or_else(|| ModelError::Config("config.json has no model_type".into()))
}

/// The Llama-family `model_type`s (one decoder, `llama::Llama`).
pub const LLAMA_FAMILY: [&str; 3] = ["llama", "qwen2", "mistral"];

impl Decoder {
    /// Loads a GGUF file (`config_json` None) or a hub checkpoint by its `model_type`.
    pub async fn load(ctx: &crate::gpu::GpuContext, config_json: Option<&[u8]>, table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let Some(config) = config_json else {
            return Ok(Decoder::Llama(llama::Llama::load(ctx, table, context, read).await?));
        };
        match model_type(config)?.as_str() {
            "gpt2" => Ok(Decoder::Gpt2(gpt2::Gpt2::load(ctx, config, table, context, read).await?)),
            t if LLAMA_FAMILY.contains(&t) => Ok(Decoder::Llama(llama::Llama::load_hub(ctx, config, table, context, read).await?)),
            other => Err(ModelError::Config(format!("model_type {other:?} is not supported (llama, qwen2, mistral, gpt2)"))),
        }
    }

    /// `{ architecture, layers, hidden, heads, kvHeads?, vocab, context, weightBytes?, dispatchesPerToken? }`.
    pub fn info(&self) -> serde_json::Value {
        match self {
            Decoder::Llama(m) => {
                let c = &m.config;
                serde_json::json!({
                    "architecture": c.arch, "layers": c.n_layers, "hidden": c.hidden, "heads": c.heads, "kvHeads": c.kv_heads,
                    "vocab": c.vocab, "context": m.context, "weightBytes": m.weight_bytes_per_token(), "dispatchesPerToken": m.dispatches_per_token(),
                })
            }
            Decoder::Gpt2(m) => {
                let c = &m.config;
                serde_json::json!({ "architecture": "gpt2", "layers": c.n_layer, "hidden": c.n_embd, "heads": c.n_head, "vocab": c.vocab_size, "context": m.context })
            }
        }
    }

    /// This model with its device, as a `LanguageModel` for the generation loop.
    pub fn on<'a>(&'a mut self, ctx: &'a crate::gpu::GpuContext) -> DecoderOnGpu<'a> {
        match self {
            Decoder::Llama(m) => DecoderOnGpu::Llama(m.on(ctx)),
            Decoder::Gpt2(m) => DecoderOnGpu::Gpt2(m.on(ctx)),
        }
    }
}

pub enum DecoderOnGpu<'a> {
    Llama(llama::GpuLlama<'a>),
    Gpt2(gpt2::OnGpu<'a>),
}

impl crate::generate::LanguageModel for DecoderOnGpu<'_> {
    fn context(&self) -> u32 {
        match self {
            Self::Llama(m) => m.context(),
            Self::Gpt2(m) => m.context(),
        }
    }

    fn cached(&self) -> &[u32] {
        match self {
            Self::Llama(m) => m.cached(),
            Self::Gpt2(m) => m.cached(),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            Self::Llama(m) => m.truncate(len),
            Self::Gpt2(m) => m.truncate(len),
        }
    }

    async fn forward(&mut self, tokens: &[u32], pick: crate::generate::Pick) -> Result<crate::generate::Next, ModelError> {
        match self {
            Self::Llama(m) => m.forward(tokens, pick).await,
            Self::Gpt2(m) => m.forward(tokens, pick).await,
        }
    }
}

/// A text decoder of any supported architecture on the CPU fallback.
#[cfg(feature = "cpu")]
pub enum CpuModel {
    Llama(crate::cpu::llama::CpuLlama),
    Gpt2(crate::cpu::gpt2::CpuGpt2),
}

#[cfg(feature = "cpu")]
impl From<crate::cpu::llama::CpuLlama> for CpuModel {
    fn from(m: crate::cpu::llama::CpuLlama) -> Self {
        Self::Llama(m)
    }
}

#[cfg(feature = "cpu")]
impl From<crate::cpu::gpt2::CpuGpt2> for CpuModel {
    fn from(m: crate::cpu::gpt2::CpuGpt2) -> Self {
        Self::Gpt2(m)
    }
}

#[cfg(feature = "cpu")]
impl CpuModel {
    /// KV-cache capacity in tokens.
    pub fn context(&self) -> u32 {
        match self {
            Self::Llama(m) => m.context,
            Self::Gpt2(m) => m.context,
        }
    }

    /// Keeps the first `position` tokens of the KV cache.
    fn set_position(&mut self, position: u32) {
        match self {
            Self::Llama(m) => m.position = position,
            Self::Gpt2(m) => m.position = position,
        }
    }

    /// The logits after `tokens` fed at the current position.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self {
            Self::Llama(m) => m.logits(tokens),
            Self::Gpt2(m) => m.logits(tokens),
        }
    }
}

/// The CPU fallback's decoder (Llama family or GPT-2) with the tokens in its KV cache, as a
/// `LanguageModel` (the sampler runs on the CPU with the GPU sampler's rules, from the logits).
#[cfg(feature = "cpu")]
pub struct CpuDecoder {
    pub model: CpuModel,
    tokens: Vec<u32>,
}

#[cfg(feature = "cpu")]
impl CpuDecoder {
    pub fn new(model: impl Into<CpuModel>) -> Self {
        Self { model: model.into(), tokens: Vec::new() }
    }

    /// Loads a GGUF file (`config_json` None), or a Llama-family or GPT-2 hub checkpoint by its
    /// `model_type`, on the CPU.
    pub async fn load(config_json: Option<&[u8]>, table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        use crate::cpu::{gpt2::CpuGpt2, llama::CpuLlama};
        let model: CpuModel = match config_json {
            None => CpuLlama::load(table, context, read).await?.into(),
            Some(config) => match model_type(config)?.as_str() {
                "gpt2" => CpuGpt2::load(config, table, context, read).await?.into(),
                t if LLAMA_FAMILY.contains(&t) => CpuLlama::load_hub(config, table, context, read).await?.into(),
                other => return Err(ModelError::Config(format!("model_type {other:?} is not supported (llama, qwen2, mistral, gpt2)"))),
            },
        };
        Ok(Self::new(model))
    }

    /// `{ architecture, layers, hidden, heads, kvHeads?, vocab, context, weightBytes }`.
    pub fn info(&self) -> serde_json::Value {
        match &self.model {
            CpuModel::Llama(m) => {
                let c = &m.config;
                serde_json::json!({
                    "architecture": c.arch, "layers": c.n_layers, "hidden": c.hidden, "heads": c.heads, "kvHeads": c.kv_heads,
                    "vocab": c.vocab, "context": m.context, "weightBytes": m.weight_bytes_per_token(),
                })
            }
            CpuModel::Gpt2(m) => {
                let c = &m.config;
                serde_json::json!({
                    "architecture": "gpt2", "layers": c.n_layer, "hidden": c.n_embd, "heads": c.n_head, "vocab": c.vocab_size,
                    "context": m.context, "weightBytes": m.weight_bytes_per_token(),
                })
            }
        }
    }
}

#[cfg(feature = "cpu")]
impl crate::generate::LanguageModel for CpuDecoder {
    fn context(&self) -> u32 {
        self.model.context()
    }

    fn cached(&self) -> &[u32] {
        &self.tokens
    }

    fn truncate(&mut self, len: usize) {
        self.tokens.truncate(len);
        self.model.set_position(self.tokens.len() as u32);
    }

    async fn forward(&mut self, tokens: &[u32], pick: crate::generate::Pick) -> Result<crate::generate::Next, ModelError> {
        use crate::generate::{Next, Pick, sampling};
        let logits = self.model.logits(tokens)?;
        self.tokens.extend_from_slice(tokens);
        Ok(match pick {
            Pick::Logits => Next::Logits(logits),
            Pick::Greedy => Next::Token(sampling::argmax(&logits)),
            Pick::Sample(s, u) => Next::Token(sampling::sample(&logits, Some(&s), u)),
        })
    }
}
