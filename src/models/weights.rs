//! A checkpoint's tensors as a model file asks for them: found by name under the checkpoint's
//! prefixes (a task model such as `ViTForImageClassification` prefixes its encoder with `vit.`,
//! the bare model does not), read one at a time by byte range, and placed on a backend.

use crate::backend::Backend;
use crate::formats::{DType, TensorInfo, TensorTable};

use super::{ModelError, RangeReader};

pub struct Weights<'a, R> {
    pub table: &'a TensorTable,
    pub read: &'a mut R,
    /// Tried in order; "" is the bare name.
    pub prefixes: &'a [&'a str],
}

impl<'a, R: RangeReader> Weights<'a, R> {
    /// The tensors of `table` under their bare names.
    pub fn new(table: &'a TensorTable, read: &'a mut R) -> Self {
        Self { table, read, prefixes: &[""] }
    }

    pub fn with_prefixes(table: &'a TensorTable, read: &'a mut R, prefixes: &'a [&'a str]) -> Self {
        Self { table, read, prefixes }
    }

    /// The same checkpoint under other prefixes (a task model's heads sit at the top, its
    /// encoder under `vit.`).
    pub fn under<'b>(&'b mut self, prefixes: &'b [&'b str]) -> Weights<'b, R> {
        Weights { table: self.table, read: &mut *self.read, prefixes }
    }

    pub fn find(&self, name: &str) -> Result<&'a TensorInfo, ModelError> {
        let table = self.table;
        self.prefixes.iter().find_map(|p| table.get(&format!("{p}{name}"))).ok_or_else(|| {
            let looked = if self.prefixes == [""] { String::new() } else { format!(" (looked under {:?})", self.prefixes) };
            ModelError::Tensor { name: name.into(), problem: format!("missing{looked}") }
        })
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Tensor `name`, which must be (rows, cols), as a matrix on `b`.
    pub async fn matrix<B: Backend>(&mut self, b: &B, name: &str, rows: u32, cols: u32) -> Result<B::Matrix, ModelError> {
        let t = self.find(name)?;
        b.matrix(t, self.read, rows, cols).await
    }

    /// Tensor `name`, which must be (Σ parts, cols), as one matrix per block of `parts[i]`
    /// consecutive rows: a fused weight's parts (Phi-3's `qkv_proj` and `gate_up_proj`,
    /// ModernBERT's `Wqkv` and `Wi`). Rows are contiguous in every format (quantization blocks
    /// run along a row), so each part is one byte range.
    pub async fn matrix_parts<B: Backend, const N: usize>(&mut self, b: &B, name: &str, parts: [u32; N], cols: u32) -> Result<[B::Matrix; N], ModelError> {
        let t = self.find(name)?;
        let bad = |problem: String| ModelError::Tensor { name: t.name.clone(), problem };
        let total: u64 = parts.iter().map(|&r| u64::from(r)).sum();
        if t.shape != [total, u64::from(cols)] {
            return Err(bad(format!("shape {:?}: ({total}, {cols}) expected, rows {parts:?}", t.shape)));
        }
        let row_bytes = t.dtype.bytes_for(u64::from(cols)).ok_or_else(|| bad(format!("rows of {cols} {} values", t.dtype)))?;
        let mut infos = Vec::with_capacity(N);
        let mut start = t.range.start;
        for rows in parts {
            let end = start + u64::from(rows) * row_bytes;
            infos.push(TensorInfo { name: t.name.clone(), dtype: t.dtype, shape: vec![u64::from(rows), u64::from(cols)], range: start..end });
            start = end;
        }
        // Parts of one tensor multiply the same input: one joint matrix where the backend can.
        let refs: Vec<&TensorInfo> = infos.iter().collect();
        let out = b.matrices(&refs, self.read, &parts, cols).await?;
        out.try_into().map_err(|_| bad(format!("not {N} parts")))
    }

    /// Tensors `names[i]`, each (rows[i], cols), as matrices that multiply the same input
    /// (`Backend::matrices`).
    pub async fn matrices<B: Backend>(&mut self, b: &B, names: &[&str], rows: &[u32], cols: u32) -> Result<Vec<B::Matrix>, ModelError> {
        let ts = names.iter().map(|n| self.find(n)).collect::<Result<Vec<_>, _>>()?;
        b.matrices(&ts, self.read, rows, cols).await
    }

    /// Tensor `name`, which must be (rows, cols), as an embedding table on `b`.
    pub async fn table<B: Backend>(&mut self, b: &B, name: &str, rows: u32, cols: u32) -> Result<B::Matrix, ModelError> {
        let t = self.find(name)?;
        b.table(t, self.read, rows, cols).await
    }

    /// Tensor `name` of `shape` as f32 values, whatever its type (norms, biases, tables).
    pub async fn values(&mut self, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
        let t = self.find(name)?;
        super::tensor_values(t, self.read, shape).await
    }

    /// Tensor `name`, a float vector of `len`, on `b`.
    pub async fn vector<B: Backend>(&mut self, b: &B, name: &str, len: u32) -> Result<B::Vector, ModelError> {
        let v = self.float_values(name, &[len]).await?;
        b.vector(&v)
    }

    /// Like `values`, for tensors that must hold floats (F32, F16 or BF16).
    pub async fn float_values(&mut self, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
        let t = self.find(name)?;
        if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
            return Err(ModelError::Tensor { name: t.name.clone(), problem: format!("dtype {} (F32, F16 or BF16 expected)", t.dtype) });
        }
        super::tensor_values(t, self.read, shape).await
    }
}
