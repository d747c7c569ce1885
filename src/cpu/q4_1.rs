//! Q4_1 weights times Q8_1-rounded activations, as llama.cpp computes them
//! (`ggml_vec_dot_q4_1_q8_1`): candle 0.11 has only a scalar Q4_1 dot product, which took two
//! thirds of a SmolLM2 decode step (a Q4_1 model) natively and has no simd128 path on wasm32.
//!
//! Blocks of 32 values: value = d·q + m with q in 0..16 (low nibbles are values 0..16 of the
//! block, high nibbles 16..32). The scales are widened to f32 once at load (structure of arrays),
//! so the inner loop converts no f16. Activations are rounded per block of 32 to
//! q = round(x / d), d = max|x| / 127, with s = d·Σq for the minimum term, and d, s held as f16
//! as llama.cpp holds them. Per block: Σ d_w·d_x·Σ(q_w·q_x) + m_w·s_x.

use crate::models::llama::ModelError;
use half::f16;

const QK: usize = 32;
const BLOCK_BYTES: usize = 20;

/// A (rows, cols) Q4_1 matrix.
pub struct Q4_1Matrix {
    pub rows: usize,
    pub cols: usize,
    /// (rows, cols / 32)
    d: Vec<f32>,
    /// (rows, cols / 32)
    m: Vec<f32>,
    /// (rows, cols / 2): 16 bytes a block.
    qs: Vec<u8>,
}

/// One row of activations rounded to Q8_1.
struct Q8_1Row {
    d: Vec<f32>,
    s: Vec<f32>,
    qs: Vec<i8>,
}

impl Q4_1Matrix {
    /// From the GGUF bytes of a (rows, cols) Q4_1 tensor.
    pub fn from_blocks(bytes: &[u8], rows: usize, cols: usize) -> Result<Self, ModelError> {
        let blocks = rows.checked_mul(cols / QK).filter(|_| cols.is_multiple_of(QK));
        if blocks.and_then(|b| b.checked_mul(BLOCK_BYTES)) != Some(bytes.len()) {
            return Err(ModelError::Cpu(format!("{} bytes are not a ({rows}, {cols}) Q4_1 matrix", bytes.len())));
        }
        let half = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
        let blocks = bytes.chunks_exact(BLOCK_BYTES);
        Ok(Self {
            rows,
            cols,
            d: blocks.clone().map(|b| half(&b[0..2])).collect(),
            m: blocks.clone().map(|b| half(&b[2..4])).collect(),
            qs: blocks.flat_map(|b| b[4..].iter().copied()).collect(),
        })
    }

    pub fn bytes(&self) -> u64 {
        (self.d.len() * 8 + self.qs.len()) as u64
    }

    /// `x` (n, cols) times the transpose of this matrix: (n, rows).
    pub fn matmul(&self, x: &[f32]) -> Result<Vec<f32>, ModelError> {
        if self.cols == 0 || !x.len().is_multiple_of(self.cols) {
            return Err(ModelError::Cpu(format!("{} values are not rows of {}", x.len(), self.cols)));
        }
        let acts: Vec<Q8_1Row> = x.chunks_exact(self.cols).map(quantize_q8_1).collect();
        let n = acts.len();
        let nb = self.cols / QK;
        // Rows of W are split across candle's thread pool (none on wasm32); each output value is
        // written by exactly one worker, as its bits in an atomic (no unsafe aliasing).
        let out: Vec<std::sync::atomic::AtomicU32> = (0..n * self.rows).map(|_| Default::default()).collect();
        candle_core::utils::barrier_pool().execute_chunked(self.rows, |range| {
            for r in range {
                let (d, m, qs) = (&self.d[r * nb..(r + 1) * nb], &self.m[r * nb..(r + 1) * nb], &self.qs[r * nb * 16..(r + 1) * nb * 16]);
                for (t, a) in acts.iter().enumerate() {
                    out[t * self.rows + r].store(dot(d, m, qs, a).to_bits(), std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        Ok(out.into_iter().map(|v| f32::from_bits(v.into_inner())).collect())
    }

    /// Rows `ids`, dequantized: (ids, cols).
    pub fn rows_f32(&self, ids: &[u32]) -> Result<Vec<f32>, ModelError> {
        let nb = self.cols / QK;
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        for &id in ids {
            let r = id as usize;
            if r >= self.rows {
                return Err(ModelError::Token { id, vocab: self.rows as u32 });
            }
            for b in r * nb..(r + 1) * nb {
                let q = &self.qs[b * 16..(b + 1) * 16];
                let value = |q: u8| f32::from(q) * self.d[b] + self.m[b];
                out.extend(q.iter().map(|&q| value(q & 15)));
                out.extend(q.iter().map(|&q| value(q >> 4)));
            }
        }
        Ok(out)
    }
}

/// llama.cpp's `quantize_row_q8_1`.
fn quantize_q8_1(x: &[f32]) -> Q8_1Row {
    let nb = x.len() / QK;
    let mut row = Q8_1Row { d: Vec::with_capacity(nb), s: Vec::with_capacity(nb), qs: Vec::with_capacity(x.len()) };
    for block in x.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let start = row.qs.len();
        row.qs.extend(block.iter().map(|v| (v * id).round() as i8));
        let sum: i32 = row.qs[start..].iter().map(|&q| i32::from(q)).sum();
        row.d.push(f16::from_f32(d).to_f32());
        row.s.push(f16::from_f32(sum as f32 * d).to_f32());
    }
    row
}

/// One row of W (`d`, `m`, `qs` of its blocks) against one row of activations.
#[cfg(not(target_feature = "simd128"))]
fn dot(d: &[f32], m: &[f32], qs: &[u8], a: &Q8_1Row) -> f32 {
    let mut sum = 0f32;
    for (b, (q, y)) in qs.chunks_exact(16).zip(a.qs.chunks_exact(QK)).enumerate() {
        let mut sumi = 0i32;
        for j in 0..16 {
            sumi += i32::from(q[j] & 15) * i32::from(y[j]) + i32::from(q[j] >> 4) * i32::from(y[j + 16]);
        }
        sum += sumi as f32 * (d[b] * a.d[b]) + m[b] * a.s[b];
    }
    sum
}

/// One row of W (`d`, `m`, `qs` of its blocks) against one row of activations: per block, 16
/// weight bytes give two u8x16 of nibbles, widened to i16 against the i8 activations and summed
/// pairwise into i32x4 (`i32x4.dot_i16x8_s`).
#[cfg(target_feature = "simd128")]
fn dot(d: &[f32], m: &[f32], qs: &[u8], a: &Q8_1Row) -> f32 {
    use core::arch::wasm32::*;
    let nb = d.len().min(m.len()).min(qs.len() / 16).min(a.qs.len() / QK).min(a.d.len()).min(a.s.len());
    let mut acc = f32x4_splat(0.0);
    let mut min_term = 0f32;
    for b in 0..nb {
        // SAFETY: b < nb keeps the 16 bytes at qs[16 b..] and the 32 at a.qs[32 b..] in bounds;
        // v128.load has no alignment requirement.
        let (x, y0, y1) = unsafe {
            (
                v128_load(qs.as_ptr().add(b * 16).cast::<v128>()),
                v128_load(a.qs.as_ptr().add(b * QK).cast::<v128>()),
                v128_load(a.qs.as_ptr().add(b * QK + 16).cast::<v128>()),
            )
        };
        let lo = v128_and(x, u8x16_splat(0x0F));
        let hi = u8x16_shr(x, 4);
        let p = i32x4_add(
            i32x4_add(i32x4_dot_i16x8(u16x8_extend_low_u8x16(lo), i16x8_extend_low_i8x16(y0)), i32x4_dot_i16x8(u16x8_extend_high_u8x16(lo), i16x8_extend_high_i8x16(y0))),
            i32x4_add(i32x4_dot_i16x8(u16x8_extend_low_u8x16(hi), i16x8_extend_low_i8x16(y1)), i32x4_dot_i16x8(u16x8_extend_high_u8x16(hi), i16x8_extend_high_i8x16(y1))),
        );
        acc = f32x4_add(acc, f32x4_mul(f32x4_convert_i32x4(p), f32x4_splat(d[b] * a.d[b])));
        min_term += m[b] * a.s[b];
    }
    f32x4_extract_lane::<0>(acc) + f32x4_extract_lane::<1>(acc) + f32x4_extract_lane::<2>(acc) + f32x4_extract_lane::<3>(acc) + min_term
}
