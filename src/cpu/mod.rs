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

pub mod backend;
pub mod q4_1;
pub(crate) mod vec;

// Without simd128, candle compiles its scalar dot products on wasm32 (several times slower).
#[cfg(all(target_arch = "wasm32", not(target_feature = "simd128")))]
compile_error!("build wasm32 with `-C target-feature=+simd128` (.cargo/config.toml sets it; run cargo from the crate root)");

use crate::formats::{DType, TensorTable};
use crate::models::llama::{ModelError, RangeReader};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};

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

/// A weight matrix (rows, cols): candle's quantized matmul over the file's blocks, for Q4_1
/// (which candle multiplies with scalar code) `q4_1`'s SIMD one, and for float files (F32, F16,
/// BF16) the f32 transpose, held contiguous so that `x·Wᵀ` reads it row by row (candle's matmul
/// over a transposed view runs 1.1–1.5x slower at encoder sizes: 16 tokens × 384 × 1536).
pub enum Matrix {
    Candle(QMatMul),
    Q4_1(q4_1::Q4_1Matrix),
    /// Wᵀ: (cols, rows) f32.
    Transposed(Tensor),
    /// Rows `start..start + rows` of W, one of several matrices held as one `Transposed`
    /// (`wt`: the joint Wᵀ, shared): products over them all are one matmul (`Backend::linear_many`).
    Part { wt: Tensor, start: usize, rows: usize },
}

impl Matrix {
    /// Reads tensor `name`, which must be (rows, cols), in its own block type.
    pub async fn read(table: &TensorTable, read: &mut impl RangeReader, name: &str, rows: u32, cols: u32) -> Result<Self, ModelError> {
        let t = table.get(name).ok_or_else(|| ModelError::Tensor { name: name.into(), problem: "missing".into() })?;
        Self::read_tensor(t, read, rows, cols).await
    }

    /// Reads tensor `t`, which must be (rows, cols), in its own block type; a float one
    /// transposed for products.
    pub async fn read_tensor(t: &crate::formats::TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<Self, ModelError> {
        Self::read_as(t, read, rows, cols, true).await
    }

    /// Reads tensor `t` as a lookup table: a float one kept in rows (gathering a row of the
    /// transpose is a strided walk: 2.6 ms for 378 tokens of a 30522 × 384 table, against a copy).
    pub async fn read_table(t: &crate::formats::TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<Self, ModelError> {
        Self::read_as(t, read, rows, cols, false).await
    }

    async fn read_as(t: &crate::formats::TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32, transpose: bool) -> Result<Self, ModelError> {
        let (dtype, bytes) = tensor_bytes(t, read, &[rows, cols]).await?;
        match dtype {
            GgmlDType::Q4_1 => Ok(Matrix::Q4_1(q4_1::Q4_1Matrix::from_blocks(&bytes, rows as usize, cols as usize)?)),
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16 if transpose => Self::transposed(qtensor(dtype, bytes, &[rows, cols])?.dequantize(&Device::Cpu).map_err(cpu_err)?),
            _ => QMatMul::from_qtensor(qtensor(dtype, bytes, &[rows, cols])?).map(Matrix::Candle).map_err(cpu_err),
        }
    }

    /// W (rows, cols) f32, held transposed.
    pub fn transposed(w: Tensor) -> Result<Self, ModelError> {
        w.t().and_then(|t| t.contiguous()).map(Matrix::Transposed).map_err(cpu_err)
    }

    /// Output values per row of a product (W's rows).
    pub fn rows(&self) -> usize {
        match self {
            Matrix::Candle(QMatMul::QTensor(q)) => q.shape().dims().first().copied().unwrap_or(0),
            Matrix::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.dims().first().copied().unwrap_or(0),
            Matrix::Q4_1(w) => w.rows,
            Matrix::Transposed(t) => t.dims().get(1).copied().unwrap_or(0),
            Matrix::Part { rows, .. } => *rows,
        }
    }

    /// `x` (n, cols) times the transpose: (n, rows).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor, ModelError> {
        match self {
            Matrix::Candle(w) => w.forward(x).map_err(cpu_err),
            Matrix::Q4_1(w) => {
                let n = x.dims2().map_err(cpu_err)?.0;
                let y = w.matmul(&x.flatten_all().and_then(|x| x.to_vec1::<f32>()).map_err(cpu_err)?)?;
                Tensor::from_vec(y, (n, w.rows), &Device::Cpu).map_err(cpu_err)
            }
            Matrix::Transposed(wt) => x.matmul(wt).map_err(cpu_err),
            Matrix::Part { wt, start, rows } => wt.narrow(1, *start, *rows).and_then(|w| x.matmul(&w.contiguous()?)).map_err(cpu_err),
        }
    }

    /// `x` (n, cols) times the transpose: (n, rows), on plain slices.
    pub fn matmul(&self, x: &[f32], cols: usize) -> Result<Vec<f32>, ModelError> {
        if cols == 0 || x.is_empty() || !x.len().is_multiple_of(cols) {
            return Err(ModelError::Cpu(format!("{} values are not rows of {cols}", x.len())));
        }
        let x = Tensor::from_slice(x, (x.len() / cols, cols), &Device::Cpu).map_err(cpu_err)?;
        self.forward(&x)?.flatten_all().and_then(|y| y.to_vec1::<f32>()).map_err(cpu_err)
    }

    /// Rows `ids` as f32: (ids, cols). An id past the rows is an error.
    pub fn embedding(&self, ids: &[u32]) -> Result<Tensor, ModelError> {
        match self {
            Matrix::Candle(w) => Tensor::new(ids, &Device::Cpu).and_then(|ids| w.embedding(&ids)).map_err(cpu_err),
            Matrix::Q4_1(w) => Tensor::from_vec(w.rows_f32(ids)?, (ids.len(), w.cols), &Device::Cpu).map_err(cpu_err),
            Matrix::Transposed(wt) => {
                let rows = wt.dims().get(1).copied().unwrap_or(0);
                if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
                    return Err(ModelError::Token { id: bad, vocab: rows as u32 });
                }
                Tensor::new(ids, &Device::Cpu).and_then(|ids| wt.index_select(&ids, 1)?.t()?.contiguous()).map_err(cpu_err)
            }
            Matrix::Part { .. } => Err(ModelError::Cpu("row lookups in a part of a joint matrix".into())),
        }
    }

    /// Bytes held (and read by a product): quantized blocks, or f32 for F32/F16/BF16 files
    /// (candle widens those at load).
    pub fn bytes(&self) -> u64 {
        match self {
            Matrix::Candle(QMatMul::QTensor(q)) => q.storage_size_in_bytes() as u64,
            Matrix::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => (t.elem_count() * t.dtype().size_in_bytes()) as u64,
            Matrix::Q4_1(w) => w.bytes(),
            Matrix::Transposed(t) => (t.elem_count() * 4) as u64,
            Matrix::Part { wt, rows, .. } => (wt.dims().first().copied().unwrap_or(0) * rows * 4) as u64,
        }
    }
}

/// Reads tensor `name` of the table, which must have `shape`, into a `QTensor` in its own block
/// type (norm vectors, and matrices for tests).
pub async fn read_qtensor(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<QTensor, ModelError> {
    let (dtype, bytes) = read_tensor(table, read, name, shape).await?;
    qtensor(dtype, bytes, shape)
}

/// The bytes of tensor `name`, checked against `shape` and its type's block layout.
async fn read_tensor(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<(GgmlDType, Vec<u8>), ModelError> {
    let t = table.get(name).ok_or_else(|| ModelError::Tensor { name: name.into(), problem: "missing".into() })?;
    tensor_bytes(t, read, shape).await
}

/// The bytes of tensor `t`, checked against `shape` and its type's block layout.
async fn tensor_bytes(t: &crate::formats::TensorInfo, read: &mut impl RangeReader, shape: &[u32]) -> Result<(GgmlDType, Vec<u8>), ModelError> {
    let name = t.name.as_str();
    let bad = |problem: String| ModelError::Tensor { name: name.into(), problem };
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
    let expected = (t.elems() / block).checked_mul(dtype.type_size() as u64).ok_or_else(|| bad("size overflows".into()))?;
    if t.range.end.checked_sub(t.range.start) != Some(expected) {
        return Err(bad(format!("{} bytes in the file, expected {expected}", t.range.end.saturating_sub(t.range.start))));
    }
    let bytes = read.read_range(t.range.clone()).await.map_err(ModelError::Read)?;
    if bytes.len() as u64 != expected {
        return Err(ModelError::Read(crate::models::ReadError::truncated(format!("{name}: read {} bytes, expected {expected}", bytes.len()))));
    }
    Ok((dtype, bytes))
}

/// Checked bytes as a `QTensor` of `shape`.
fn qtensor(dtype: GgmlDType, bytes: Vec<u8>, shape: &[u32]) -> Result<QTensor, ModelError> {
    // candle reinterprets the bytes as blocks (of alignment up to 4) and asserts the alignment:
    // copy into 8-byte-aligned words when the allocator handed back a less aligned buffer.
    let storage = if bytes.as_ptr().align_offset(8) == 0 {
        QStorage::from_data(std::borrow::Cow::Borrowed(&bytes), &Device::Cpu, dtype)
    } else {
        let len = bytes.len();
        let mut words = vec![0u64; len.div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len].copy_from_slice(&bytes);
        drop(bytes);
        QStorage::from_data(std::borrow::Cow::Borrowed(&bytemuck::cast_slice::<u64, u8>(&words)[..len]), &Device::Cpu, dtype)
    }
    .map_err(cpu_err)?;
    QTensor::new(storage, shape.iter().map(|&d| d as usize).collect::<Vec<_>>()).map_err(cpu_err)
}

/// How reports name the CPU fallback: the wasm SIMD build, or candle's threads natively.
pub fn adapter_name() -> String {
    if cfg!(target_arch = "wasm32") { "cpu (wasm simd128)".into() } else { format!("cpu (candle, {} threads)", candle_core::utils::get_num_threads()) }
}

/// Times candle's f32 matmul (bias-free) on `shapes` (m, k, n), `reps` times over, on random
/// operands: `(milliseconds for one run over all shapes, GFLOP/s)`. For benchmarks: which share
/// of an encoder pass the dense layers take on this machine.
pub fn time_matmuls(shapes: &[(usize, usize, usize)], reps: u32) -> Result<(f64, f64), ModelError> {
    let dev = &Device::Cpu;
    let operands: Vec<(Tensor, Tensor)> = shapes
        .iter()
        .map(|&(m, k, n)| Ok((Tensor::rand(-1f32, 1f32, (m, k), dev)?, Tensor::rand(-1f32, 1f32, (k, n), dev)?)))
        .collect::<candle_core::Result<_>>()
        .map_err(cpu_err)?;
    let flops: f64 = shapes.iter().map(|&(m, k, n)| 2.0 * (m * k * n) as f64).sum();
    let run = || -> candle_core::Result<()> {
        for (a, b) in &operands {
            std::hint::black_box(a.matmul(b)?);
        }
        Ok(())
    };
    run().map_err(cpu_err)?;
    let reps = reps.max(1);
    let t = crate::clock::now_ms();
    for _ in 0..reps {
        run().map_err(cpu_err)?;
    }
    let ms = (crate::clock::now_ms() - t) / f64::from(reps);
    Ok((ms, flops / (ms * 1e6)))
}
