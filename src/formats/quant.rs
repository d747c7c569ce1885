//! CPU dequantization of every type the readers accept: the reference the GPU kernels are tested
//! against, and the loader's path for types a kernel does not read directly.
//!
//! Written by hand, mirroring the arithmetic order of llama.cpp's `gguf-py` (`quants.py`) so that
//! results are bit-identical to it (tests compare f32 bits on fixtures made with gguf-py). candle's
//! k-quant code would do, but it reads blocks through unaligned `#[repr(C)]` casts and its
//! expression order differs; the block layouts are needed here anyway to repack for the GPU.

use half::f16;
use thiserror::Error;

use super::DType;
use super::dtype::QK_K;

#[derive(Clone, Debug, Error, PartialEq)]
pub enum QuantError {
    #[error("{dtype}: {len} bytes is not a whole number of {block}-byte blocks")]
    PartialBlock { dtype: DType, len: usize, block: u64 },
    #[error("{dtype}: dequantization to f32 is not supported")]
    Unsupported { dtype: DType },
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// Dequantizes `bytes` of `dtype` to f32, appending to `out`.
pub fn dequantize_into(dtype: DType, bytes: &[u8], out: &mut Vec<f32>) -> Result<(), QuantError> {
    let block = dtype.block_bytes() as usize;
    if !bytes.len().is_multiple_of(block) {
        return Err(QuantError::PartialBlock { dtype, len: bytes.len(), block: dtype.block_bytes() });
    }
    out.reserve(bytes.len() / block * dtype.block_elems() as usize);
    let blocks = bytes.chunks_exact(block);
    match dtype {
        DType::F32 => out.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        DType::F16 => out.extend(blocks.map(|b| f16_at(b, 0))),
        DType::BF16 => out.extend(blocks.map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))),
        DType::F64 => out.extend(blocks.map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)),
        DType::I8 => out.extend(blocks.map(|b| f32::from(b[0] as i8))),
        DType::U8 | DType::Bool => out.extend(blocks.map(|b| f32::from(b[0]))),
        DType::I16 => out.extend(blocks.map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])))),
        DType::U16 => out.extend(blocks.map(|b| f32::from(u16::from_le_bytes([b[0], b[1]])))),
        DType::I32 => out.extend(blocks.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)),
        DType::Q4_0 => blocks.for_each(|b| q4_0(b, out)),
        DType::Q4_1 => blocks.for_each(|b| q4_1(b, out)),
        DType::Q5_0 => blocks.for_each(|b| q5_0(b, out)),
        DType::Q5_1 => blocks.for_each(|b| q5_1(b, out)),
        DType::Q8_0 => blocks.for_each(|b| q8_0(b, out)),
        DType::Q2_K => blocks.for_each(|b| q2_k(b, out)),
        DType::Q3_K => blocks.for_each(|b| q3_k(b, out)),
        DType::Q4_K => blocks.for_each(|b| q4_k(b, out)),
        DType::Q5_K => blocks.for_each(|b| q5_k(b, out)),
        DType::Q6_K => blocks.for_each(|b| q6_k(b, out)),
        DType::Q8_K => blocks.for_each(|b| q8_k(b, out)),
        DType::U32 | DType::U64 | DType::I64 | DType::F8_E4M3 | DType::F8_E5M2 => {
            return Err(QuantError::Unsupported { dtype });
        }
    }
    Ok(())
}

/// Dequantizes `bytes` of `dtype` to a new vector.
pub fn dequantize(dtype: DType, bytes: &[u8]) -> Result<Vec<f32>, QuantError> {
    let mut out = Vec::new();
    dequantize_into(dtype, bytes, &mut out)?;
    Ok(out)
}

/// Low nibbles of all 16 bytes, then high nibbles: the 32-value order of Q4_0/Q4_1/Q5_x.
fn nibble(qs: &[u8], j: usize) -> u8 {
    if j < 16 { qs[j] & 0x0F } else { qs[j - 16] >> 4 }
}

// block_q4_0 { f16 d; u8 qs[16] }: x = d * (q - 8)
fn q4_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend((0..32).map(|j| d * f32::from(nibble(&b[2..], j) as i8 - 8)));
}

// block_q4_1 { f16 d; f16 m; u8 qs[16] }: x = d * q + m
fn q4_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    out.extend((0..32).map(|j| d * f32::from(nibble(&b[4..], j)) + m));
}

/// The 5-bit value j of a Q5 block: nibble j, plus bit j of `qh` as bit 4.
fn q5(qh: u32, qs: &[u8], j: usize) -> u8 {
    nibble(qs, j) | ((((qh >> j) & 1) as u8) << 4)
}

// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16] }: x = d * (q - 16)
fn q5_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    out.extend((0..32).map(|j| d * f32::from(q5(qh, &b[6..], j) as i8 - 16)));
}

// block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16] }: x = d * q + m
fn q5_1(b: &[u8], out: &mut Vec<f32>) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    out.extend((0..32).map(|j| d * f32::from(q5(qh, &b[8..], j)) + m));
}

// block_q8_0 { f16 d; i8 qs[32] }: x = q * d
fn q8_0(b: &[u8], out: &mut Vec<f32>) {
    let d = f16_at(b, 0);
    out.extend(b[2..34].iter().map(|&q| f32::from(q as i8) * d));
}

// block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }: 16 sub-blocks of 16;
// x = (d * (sc & 15)) * q - (dmin * (sc >> 4)). Value i = 128g + 32s + l is bits 2s of qs[32g + l].
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for i in 0..QK_K as usize {
        let (g, s, l) = (i / 128, (i % 128) / 32, i % 32);
        let q = (qs[32 * g + l] >> (2 * s)) & 3;
        let sc = scales[i / 16];
        let dl = d * f32::from(sc & 0x0F);
        let ml = dmin * f32::from(sc >> 4);
        out.push(dl * f32::from(q) - ml);
    }
}

// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }: 16 sub-blocks of 16 with 6-bit
// signed scales; x = (d * (sc - 32)) * (q_low - 4 * !hbit).
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let mut dl = [0f32; 16];
    for (k, dl) in dl.iter_mut().enumerate() {
        let low = (packed[k % 8] >> (4 * (k / 8))) & 0x0F;
        let high = (packed[8 + k % 4] >> (2 * (k / 4))) & 0x03;
        *dl = d * f32::from(((low | (high << 4)) as i8) - 32);
    }
    for i in 0..QK_K as usize {
        let (g, s, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = ((qs[32 * g + l] >> (2 * s)) & 3) as i8;
        let hbit = (hmask[i % 32] >> (i / 32)) & 1;
        let q = low - (((hbit ^ 1) << 2) as i8);
        out.push(dl[i / 16] * f32::from(q));
    }
}

/// The eight 6-bit (scale, min) pairs of Q4_K/Q5_K, packed in 12 bytes.
fn k_scale_min(p: &[u8]) -> ([u8; 8], [u8; 8]) {
    let (mut sc, mut mn) = ([0u8; 8], [0u8; 8]);
    for j in 0..4 {
        sc[j] = p[j] & 0x3F;
        mn[j] = p[4 + j] & 0x3F;
        sc[4 + j] = (p[8 + j] & 0x0F) | ((p[j] >> 2) & 0x30);
        mn[4 + j] = (p[8 + j] >> 4) | ((p[4 + j] >> 2) & 0x30);
    }
    (sc, mn)
}

// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }: 8 sub-blocks of 32;
// x = (d * sc) * q - (dmin * m). Value i = 64g + 32h + l is nibble h of qs[32g + l].
fn q4_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let qs = &b[16..144];
    for i in 0..QK_K as usize {
        let (g, h, l) = (i / 64, (i % 64) / 32, i % 32);
        let q = (qs[32 * g + l] >> (4 * h)) & 0x0F;
        let j = i / 32;
        out.push((d * f32::from(sc[j])) * f32::from(q) - dmin * f32::from(mn[j]));
    }
}

// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: as Q4_K plus a fifth
// bit: bit (i / 32) of qh[i % 32].
fn q5_k(b: &[u8], out: &mut Vec<f32>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (sc, mn) = k_scale_min(&b[4..16]);
    let (qh, qs) = (&b[16..48], &b[48..176]);
    for i in 0..QK_K as usize {
        let (g, h, l) = (i / 64, (i % 64) / 32, i % 32);
        let q = ((qs[32 * g + l] >> (4 * h)) & 0x0F) | (((qh[i % 32] >> (i / 32)) & 1) << 4);
        let j = i / 32;
        out.push((d * f32::from(sc[j])) * f32::from(q) - dmin * f32::from(mn[j]));
    }
}

// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }: 16 sub-blocks of 16;
// x = (d * sc) * (q - 32). Value i = 128g + 32s + l: low nibble (s / 2) of ql[64g + 32(s % 2) + l],
// high bits 2s of qh[32g + l].
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[0..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for i in 0..QK_K as usize {
        let (g, s, l) = (i / 128, (i % 128) / 32, i % 32);
        let low = (ql[64 * g + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0x0F;
        let high = (qh[32 * g + l] >> (2 * s)) & 0x03;
        let q = ((low | (high << 4)) as i8) - 32;
        out.push((d * f32::from(scales[i / 16] as i8)) * f32::from(q));
    }
}

// block_q8_K { f32 d; i8 qs[256]; i16 bsums[16] }: x = d * q (bsums are a dot-product aid).
fn q8_k(b: &[u8], out: &mut Vec<f32>) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    out.extend(b[4..260].iter().map(|&q| d * f32::from(q as i8)));
}

/// Byte offsets of the f16 scale fields (d, m, dmin) inside one block of `dtype`: what test-data
/// generators must keep finite when they fill a block with random bytes.
pub fn f16_scale_offsets(dtype: DType) -> &'static [usize] {
    match dtype {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4_K | DType::Q5_K => &[0, 2],
        DType::Q2_K => &[80, 82],
        DType::Q3_K => &[108],
        DType::Q6_K => &[208],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_by_hand() {
        // d = 2.0 (f16 0x4000); qs[0] = 0x9F: value 0 = 15 - 8 = 7, value 16 = 9 - 8 = 1.
        let mut b = vec![0x00, 0x40];
        b.extend([0x9F]);
        b.extend([0x88; 15]);
        let x = dequantize(DType::Q4_0, &b).unwrap();
        assert_eq!(x.len(), 32);
        assert_eq!((x[0], x[16], x[1]), (14.0, 2.0, 0.0));
    }

    #[test]
    fn q8_k_by_hand() {
        let mut b = 0.5f32.to_le_bytes().to_vec();
        b.extend((0..256).map(|i| (i as i8).wrapping_sub(100) as u8));
        b.extend([0u8; 32]);
        let x = dequantize(DType::Q8_K, &b).unwrap();
        assert_eq!(x[0], -50.0);
        assert_eq!(x[255], -50.5); // (255 as i8) - 100 = -101
    }

    #[test]
    fn partial_blocks_are_errors() {
        assert!(matches!(dequantize(DType::Q6_K, &[0; 209]), Err(QuantError::PartialBlock { .. })));
        assert!(matches!(dequantize(DType::F8_E4M3, &[0; 4]), Err(QuantError::Unsupported { .. })));
    }
}
