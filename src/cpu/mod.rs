//! The CPU fallback on candle-core: the same models as `models/`, for when no WebGPU adapter
//! exists, the device is lost, or the caller asks for the CPU.
//!
//! Weights stay in their GGUF block types as candle `QTensor`s (candle's quantized matmul
//! quantizes the activations to the block type's dot-product partner and runs integer dot
//! products; on wasm32 with `+simd128` its Q4_0, Q8_0, Q2_K, Q4_K and Q6_K dot products are
//! SIMD). Each tensor is built from the bytes of its range in the file, read through the same
//! `RangeReader` as the GPU path and checked against the already-validated tensor table, rather
//! than by candle's own GGUF reader (which wants a `Read + Seek` of the whole file).
//!
//! Nothing here may panic on input: candle errors become `ModelError::Cpu`, and every shape and
//! byte count is checked before candle sees it.

pub mod llama;

// Without simd128, candle compiles its scalar dot products on wasm32 (several times slower).
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!("build wasm32 with `-C target-feature=+simd128` (.cargo/config.toml sets it; run cargo from the crate root)");

use crate::formats::{DType, TensorTable};
use crate::models::llama::{ModelError, RangeReader};
use candle_core::quantized::{GgmlDType, QStorage, QTensor};

/// A candle error as a model error.
pub(crate) fn cpu_err(e: candle_core::Error) -> ModelError {
    ModelError::Cpu(e.to_string())
}

/// The candle block type of a GGUF tensor type, or `None` for types candle cannot multiply.
pub fn ggml_dtype(dtype: DType) -> Option<GgmlDType> {
    Some(match dtype {
        DType::F32 => GgmlDType::F32,
        DType::F16 => GgmlDType::F16,
        DType::BF16 => GgmlDType::BF16,
        DType::Q4_0 => GgmlDType::Q4_0,
        DType::Q4_1 => GgmlDType::Q4_1,
        DType::Q5_0 => GgmlDType::Q5_0,
        DType::Q5_1 => GgmlDType::Q5_1,
        DType::Q8_0 => GgmlDType::Q8_0,
        DType::Q2_K => GgmlDType::Q2K,
        DType::Q3_K => GgmlDType::Q3K,
        DType::Q4_K => GgmlDType::Q4K,
        DType::Q5_K => GgmlDType::Q5K,
        DType::Q6_K => GgmlDType::Q6K,
        _ => return None,
    })
}

/// Reads tensor `name` of the table, which must have `shape`, into a `QTensor` in its own block
/// type. At most this tensor's bytes (twice, while they are copied into blocks) are held.
pub async fn read_qtensor(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<QTensor, ModelError> {
    let bad = |problem: String| ModelError::Tensor { name: name.into(), problem };
    let t = table.get(name).ok_or_else(|| bad("missing".into()))?;
    let want: Vec<u64> = shape.iter().map(|&d| u64::from(d)).collect();
    if t.shape != want {
        return Err(bad(format!("shape {:?}, expected {want:?}", t.shape)));
    }
    let dtype = ggml_dtype(t.dtype).ok_or_else(|| bad(format!("type {} has no CPU matmul", t.dtype)))?;
    let cols = want.last().copied().unwrap_or(1);
    let block = dtype.block_size() as u64;
    if cols % block != 0 {
        return Err(bad(format!("{cols} columns are not whole {block}-value blocks of {}", t.dtype)));
    }
    let blocks = t.elems() / block;
    let expected = blocks.checked_mul(dtype.type_size() as u64).ok_or_else(|| bad("size overflows".into()))?;
    if t.range.end.checked_sub(t.range.start) != Some(expected) {
        return Err(bad(format!("{} bytes in the file, expected {expected}", t.range.end.saturating_sub(t.range.start))));
    }
    let bytes = read.read_range(t.range.clone()).await.map_err(ModelError::Read)?;
    if bytes.len() as u64 != expected {
        return Err(ModelError::Read(format!("{name}: read {} bytes, expected {expected}", bytes.len())));
    }
    // candle reinterprets the bytes as blocks (of alignment up to 4) and asserts the alignment:
    // copy into 8-byte-aligned words when the allocator handed back a less aligned buffer.
    let storage = if bytes.as_ptr().align_offset(8) == 0 {
        QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), &candle_core::Device::Cpu, dtype)
    } else {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(&bytes);
        drop(bytes);
        let aligned = &bytemuck::cast_slice::<u64, u8>(&words)[..expected as usize];
        QStorage::from_data(std::borrow::Cow::Borrowed(aligned), &candle_core::Device::Cpu, dtype)
    }
    .map_err(cpu_err)?;
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    QTensor::new(storage, dims).map_err(cpu_err)
}

/// `x` (tokens, cols) times the transpose of `w` (rows, cols): (tokens, rows).
pub fn matmul(w: &candle_core::quantized::QMatMul, x: &[f32], cols: usize) -> Result<Vec<f32>, ModelError> {
    use candle_core::Module;
    if cols == 0 || x.is_empty() || !x.len().is_multiple_of(cols) {
        return Err(ModelError::Cpu(format!("{} values are not rows of {cols}", x.len())));
    }
    let x = candle_core::Tensor::from_slice(x, (x.len() / cols, cols), &candle_core::Device::Cpu).map_err(cpu_err)?;
    w.forward(&x).and_then(|y| y.flatten_all()).and_then(|y| y.to_vec1::<f32>()).map_err(cpu_err)
}
