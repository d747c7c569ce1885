//! Model architectures, one file each, written against the op set of `gpu::ops`, and how their
//! files are read: by byte range, one tensor at a time.

pub mod bert;
pub mod clip;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod gemma;
pub mod gpt2;
pub mod llama;
pub mod modernbert;
pub mod sentence;
#[cfg(feature = "cpu")]
pub mod speech;
#[cfg(feature = "cpu")]
pub mod tasks;
pub mod vit;
pub mod weights;
pub mod whisper;

use crate::formats::{DType, FormatError, TensorTable, grow_prefix, read_table};
pub use decoder::{AnyDecoder, Decoder, PREFILL_CHUNK};
pub use error::{ModelError, ReadError};

/// Where a model file's bytes come from: the weight store, a file, an HTTP server, a buffer.
/// Tensors are read one at a time, so no more than one tensor is ever in memory.
#[allow(async_fn_in_trait)]
pub trait RangeReader {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError>;
}

/// A model file held in memory (tests).
impl RangeReader for &[u8] {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        self.get(range.start as usize..range.end as usize).map(<[u8]>::to_vec).ok_or_else(|| ReadError::truncated(format!("bytes {range:?} past the end")))
    }
}

/// A file natively.
#[cfg(not(target_arch = "wasm32"))]
impl RangeReader for std::fs::File {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        use std::io::{ErrorKind, Read, Seek, SeekFrom};
        let failed = |e: std::io::Error| match e.kind() {
            ErrorKind::UnexpectedEof => ReadError::truncated(format!("bytes {range:?}: {e}")),
            _ => ReadError::new("StorageError", format!("bytes {range:?}: {e}")),
        };
        self.seek(SeekFrom::Start(range.start)).map_err(failed)?;
        let mut buf = vec![0u8; (range.end - range.start) as usize];
        self.read_exact(&mut buf).map_err(failed)?;
        Ok(buf)
    }
}

/// A stored file (IndexedDB in the browser, a folder natively).
impl<S: crate::store::ChunkStore> RangeReader for crate::store::StoredFile<'_, S> {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        self.read(range).await.map_err(|e| ReadError::new(e.code(), e.to_string()))
    }
}

/// Files read as one: the shards of a sharded checkpoint, one after another (the byte ranges of
/// `formats::index::ShardIndex::join`'s table). A read stays within one shard, as a tensor does.
pub struct Shards<R> {
    /// (first byte, length, reader) of each file.
    parts: Vec<(u64, u64, R)>,
}

impl<R> Shards<R> {
    /// `files` (a reader and its length each) in order.
    pub fn new(files: impl IntoIterator<Item = (R, u64)>) -> Self {
        let mut base = 0;
        let parts = files
            .into_iter()
            .map(|(r, len)| {
                let start = base;
                base += len;
                (start, len, r)
            })
            .collect();
        Self { parts }
    }
}

impl<R: RangeReader> RangeReader for Shards<R> {
    async fn read_range(&mut self, range: std::ops::Range<u64>) -> Result<Vec<u8>, ReadError> {
        let part = self.parts.iter_mut().find(|(start, len, _)| range.start >= *start && range.end <= start + len);
        let Some((start, _, reader)) = part else {
            return Err(ReadError::truncated(format!("bytes {range:?} are not within one shard")));
        };
        let start = *start;
        reader.read_range(range.start - start..range.end - start).await
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
    check_matrix_shape(t, rows, cols)?;
    upload_rows(ctx, t, read, rows, cols).await
}

/// Refuses tensor `t` unless it is a (rows, cols) matrix.
pub(crate) fn check_matrix_shape(t: &crate::formats::TensorInfo, rows: u32, cols: u32) -> Result<(), ModelError> {
    if t.shape != [u64::from(rows), u64::from(cols)] {
        return Err(ModelError::Tensor { name: t.name.clone(), problem: format!("shape {:?}, expected [{rows}, {cols}]", t.shape) });
    }
    Ok(())
}

/// Uploads tensor `t` as a (rows, cols) matrix whatever its shape (a convolution's
/// (out, in, kh, kw) kernel is the (out, in·kh·kw) matrix of its im2col product): the caller checks
/// the shape.
pub(crate) async fn upload_rows(ctx: &crate::gpu::GpuContext, t: &crate::formats::TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<crate::gpu::weights::GpuWeight, ModelError> {
    let w = crate::gpu::weights::GpuWeight::new(ctx, &t.name, gpu_dtype(t.dtype, cols), u64::from(rows), u64::from(cols), None)?;
    write_tensor_rows(ctx, t, read, &w, 0, rows).await?;
    Ok(w)
}

/// The type a (rows, cols) matrix of `dtype` has on the GPU: the F16/BF16 kernels read values in
/// pairs, so rows of an odd length go as F32.
pub(crate) fn gpu_dtype(dtype: DType, cols: u32) -> DType {
    if matches!(dtype, DType::F16 | DType::BF16) && cols % 2 == 1 { DType::F32 } else { dtype }
}

/// Writes tensor `t`, `rows` rows of `w.cols`, into `w` from row `first_row` on, in slices of
/// whole rows (several tensors stacked in one weight: Q, K and V).
pub(crate) async fn write_tensor_rows(ctx: &crate::gpu::GpuContext, t: &crate::formats::TensorInfo, read: &mut impl RangeReader, w: &crate::gpu::weights::GpuWeight, first_row: u64, rows: u32) -> Result<(), ModelError> {
    let problem = |problem: String| ModelError::Tensor { name: t.name.clone(), problem };
    let cols = w.cols;
    let row_bytes = t.dtype.bytes_for(u64::from(cols)).filter(|&b| b > 0).ok_or_else(|| problem(format!("{cols} columns are not whole {} blocks", t.dtype)))?;
    if t.range.end.checked_sub(t.range.start) != Some(u64::from(rows) * row_bytes) {
        return Err(problem(format!("{} bytes in the file for {rows} rows of {row_bytes}", t.range.end.saturating_sub(t.range.start))));
    }
    let widen = w.dtype != t.dtype;
    let per_read = (UPLOAD_SLICE_BYTES / row_bytes).max(1);
    let mut row = 0u64;
    while row < u64::from(rows) {
        let n = per_read.min(u64::from(rows) - row);
        let bytes = read.read_range(t.range.start + row * row_bytes..t.range.start + (row + n) * row_bytes).await.map_err(ModelError::Read)?;
        if bytes.len() as u64 != n * row_bytes {
            return Err(ModelError::Read(ReadError::truncated(format!("{}: read {} bytes, expected {}", t.name, bytes.len(), n * row_bytes))));
        }
        if widen {
            let values = crate::formats::quant::dequantize(t.dtype, &bytes).map_err(|e| problem(e.to_string()))?;
            w.write_rows(ctx, first_row + row, bytemuck::cast_slice(&values))?;
        } else {
            w.write_rows(ctx, first_row + row, &bytes)?;
        }
        row += n;
    }
    Ok(())
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
        return Err(ModelError::Read(ReadError::truncated(format!("{}: read {} bytes, expected {expected:?}", t.name, bytes.len()))));
    }
    crate::formats::quant::dequantize(t.dtype, &bytes).map_err(|e| problem(e.to_string()))
}

/// `model_type` of a hub checkpoint's `config.json`.
pub fn model_type(config_json: &[u8]) -> Result<String, ModelError> {
    let v: serde_json::Value = serde_json::from_slice(config_json).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
    v["model_type"].as_str().map(String::from).ok_or_else(|| ModelError::Config("config.json has no model_type".into()))
}
