//! Weights on the GPU: blocks repacked into aligned u32 words (see shaders/quant_decode.wgsl), and split
//! by rows into parts when a tensor is larger than one storage binding (lavapipe and many GPUs
//! allow 128 MiB; a 151936-row vocabulary projection is more).
//!
//! Rows are written as they arrive (`write_rows`), so a loader can stream a tensor from the
//! weight store in pieces without ever holding it whole in wasm memory.

use crate::formats::DType;

use super::context::GpuContext;
use super::error::GpuError;

/// How a dtype's blocks sit in GPU words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuLayout {
    /// Values per block (1 for F32; 2 for F16/BF16, two to a word).
    pub block_elems: u64,
    /// Words per repacked block.
    pub block_words: u64,
    /// Bytes inserted after a block's leading f16 scale so the quants start on a word.
    pad_after_scale: bool,
}

impl GpuLayout {
    pub fn of(dtype: DType) -> Option<Self> {
        let l = |block_elems, block_words, pad_after_scale| Some(Self { block_elems, block_words, pad_after_scale });
        match dtype {
            DType::F32 => l(1, 1, false),
            DType::F16 | DType::BF16 => l(2, 1, false),
            DType::Q4_0 => l(32, 5, true),
            DType::Q4_1 => l(32, 5, false),
            DType::Q5_0 => l(32, 6, true),
            DType::Q5_1 => l(32, 6, false),
            DType::Q8_0 => l(32, 9, true),
            DType::Q2_K => l(256, 21, false),
            DType::Q3_K => l(256, 28, false),
            DType::Q4_K => l(256, 36, false),
            DType::Q5_K => l(256, 44, false),
            DType::Q6_K => l(256, 53, false),
            _ => None,
        }
    }

    /// Bytes of one file block (a pair of values for F16/BF16).
    fn file_block_bytes(&self, dtype: DType) -> usize {
        (dtype.block_bytes() * self.block_elems / dtype.block_elems()) as usize
    }

    /// Repacks whole file blocks into words, appending to `out`.
    pub fn repack(&self, dtype: DType, bytes: &[u8], out: &mut Vec<u32>) {
        let block = self.file_block_bytes(dtype);
        let mut word_bytes = Vec::with_capacity(self.block_words as usize * 4);
        for b in bytes.chunks_exact(block) {
            word_bytes.clear();
            if self.pad_after_scale {
                word_bytes.extend_from_slice(&b[..2]);
                word_bytes.extend_from_slice(&[0, 0]);
                word_bytes.extend_from_slice(&b[2..]);
            } else {
                word_bytes.extend_from_slice(b);
            }
            word_bytes.resize(self.block_words as usize * 4, 0);
            out.extend(word_bytes.chunks_exact(4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]])));
        }
    }
}

/// Rows `first_row .. first_row + rows` of a weight, in one buffer.
#[derive(Debug)]
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub first_row: u32,
    pub rows: u32,
}

/// A (rows, cols) weight matrix on the GPU.
#[derive(Debug)]
pub struct GpuWeight {
    pub name: String,
    pub dtype: DType,
    pub rows: u32,
    pub cols: u32,
    pub layout: GpuLayout,
    /// Words per row.
    pub row_words: u64,
    pub parts: Vec<WeightPart>,
}

impl GpuWeight {
    /// Allocates an uninitialised (rows, cols) weight of `dtype`, split into parts of at most
    /// `max_part_bytes` (default: the device's storage binding limit).
    pub fn new(ctx: &GpuContext, name: &str, dtype: DType, rows: u64, cols: u64, max_part_bytes: Option<u64>) -> Result<Self, GpuError> {
        let shape_err = |detail: String| GpuError::Shape { op: "weight upload", detail: format!("{name}: {detail}") };
        let layout = GpuLayout::of(dtype).ok_or_else(|| shape_err(format!("{dtype} weights are not supported on the GPU")))?;
        if rows == 0 || cols == 0 || !cols.is_multiple_of(layout.block_elems) {
            return Err(shape_err(format!("({rows}, {cols}) is not whole {dtype} blocks of {} per row", layout.block_elems)));
        }
        let (Ok(rows32), Ok(cols32)) = (u32::try_from(rows), u32::try_from(cols)) else {
            return Err(shape_err(format!("({rows}, {cols}) exceeds 2^32 per dimension")));
        };
        let row_words = cols / layout.block_elems * layout.block_words;
        let row_bytes = row_words * 4;
        let limit = ctx.limits.max_storage_buffer_binding_size.min(ctx.limits.max_buffer_size);
        let limit = max_part_bytes.map_or(limit, |m| m.min(limit));
        let rows_per_part = (limit / row_bytes).min(u64::from(u32::MAX));
        if rows_per_part == 0 {
            return Err(GpuError::BindingTooLarge { op: "weight upload", what: "one row", bytes: row_bytes, limit });
        }
        // Words indexed by the shaders are u32: a part holds < 2^32 words.
        let rows_per_part = rows_per_part.min((u64::from(u32::MAX) / row_words).max(1));
        let mut parts = Vec::new();
        let mut first = 0u64;
        while first < rows {
            let n = rows_per_part.min(rows - first);
            let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: n * row_bytes,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            parts.push(WeightPart { buffer, first_row: first as u32, rows: n as u32 });
            first += n;
        }
        Ok(Self { name: name.to_owned(), dtype, rows: rows32, cols: cols32, layout, row_words, parts })
    }

    /// Writes whole rows from their file bytes, starting at `first_row`.
    pub fn write_rows(&self, ctx: &GpuContext, first_row: u64, bytes: &[u8]) -> Result<(), GpuError> {
        let file_row_bytes = self.dtype.bytes_for(u64::from(self.cols)).unwrap_or(u64::MAX);
        let shape_err = |detail: String| GpuError::Shape { op: "weight upload", detail: format!("{}: {detail}", self.name) };
        if !(bytes.len() as u64).is_multiple_of(file_row_bytes) {
            return Err(shape_err(format!("{} bytes are not whole rows of {file_row_bytes}", bytes.len())));
        }
        let n_rows = bytes.len() as u64 / file_row_bytes;
        if first_row.checked_add(n_rows).is_none_or(|end| end > u64::from(self.rows)) {
            return Err(shape_err(format!("rows {first_row}..+{n_rows} past {}", self.rows)));
        }
        let mut words = Vec::new();
        for part in &self.parts {
            let (p0, p1) = (u64::from(part.first_row), u64::from(part.first_row) + u64::from(part.rows));
            let (r0, r1) = (first_row.max(p0), (first_row + n_rows).min(p1));
            if r0 >= r1 {
                continue;
            }
            let src = &bytes[((r0 - first_row) * file_row_bytes) as usize..((r1 - first_row) * file_row_bytes) as usize];
            words.clear();
            self.layout.repack(self.dtype, src, &mut words);
            ctx.queue.write_buffer(&part.buffer, (r0 - p0) * self.row_words * 4, bytemuck::cast_slice(&words));
        }
        Ok(())
    }

    /// Uploads a whole (rows, cols) tensor from its file bytes.
    pub fn upload(ctx: &GpuContext, name: &str, dtype: DType, rows: u64, cols: u64, bytes: &[u8]) -> Result<Self, GpuError> {
        let w = Self::new(ctx, name, dtype, rows, cols, None)?;
        w.write_rows(ctx, 0, bytes)?;
        Ok(w)
    }

    pub fn gpu_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repack_moves_quants_onto_word_boundaries() {
        let l = GpuLayout::of(DType::Q8_0).unwrap();
        let mut block = vec![0x34, 0x12];
        block.extend(1..=32u8);
        let mut out = Vec::new();
        l.repack(DType::Q8_0, &block, &mut out);
        assert_eq!(out.len(), 9);
        assert_eq!(out[0], 0x1234);
        assert_eq!(out[1], u32::from_le_bytes([1, 2, 3, 4]));
        assert_eq!(out[8], u32::from_le_bytes([29, 30, 31, 32]));
    }

    #[test]
    fn every_gpu_layout_holds_its_block() {
        for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            let l = GpuLayout::of(dtype).unwrap();
            let file = l.file_block_bytes(dtype) as u64 + if l.pad_after_scale { 2 } else { 0 };
            assert!(l.block_words * 4 >= file && l.block_words * 4 < file + 4, "{dtype}");
        }
    }
}
