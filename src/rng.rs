//! Seeded, platform-independent test data.
//!
//! ChaCha8 rather than `rand::rngs::SmallRng`: SmallRng's stream may differ between platforms and
//! versions, and a kernel check must draw the same numbers natively and on wasm32.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::formats::DType;
use crate::formats::quant::f16_scale_offsets;

/// A seeded stream of uniform floats and bytes.
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    pub fn new(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in [-1, 1), with 24 random mantissa bits (exactly representable in f32).
    pub fn next_signed_unit(&mut self) -> f32 {
        let bits = self.0.next_u32() >> 8; // 24 bits
        (bits as f32) * (2.0 / 16_777_216.0) - 1.0
    }

    /// Uniform in [0, 1), with 24 random bits.
    pub fn next_unit(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 / 16_777_216.0
    }

    /// `len` uniform floats in [-1, 1).
    pub fn signed_unit_vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next_signed_unit()).collect()
    }

    /// The file bytes of `elems` values of `dtype`: plain types hold uniform values in [-1, 1);
    /// quantized blocks are random bytes with every f16 scale set to a finite value in ±1/64, so
    /// every bit pattern of the quants is exercised and no block decodes to NaN or infinity.
    pub fn tensor_bytes(&mut self, dtype: DType, elems: usize) -> Vec<u8> {
        match dtype {
            DType::F32 => self.signed_unit_vec(elems).iter().flat_map(|v| v.to_le_bytes()).collect(),
            DType::F16 => (0..elems).flat_map(|_| half::f16::from_f32(self.next_signed_unit()).to_le_bytes()).collect(),
            DType::BF16 => (0..elems).flat_map(|_| half::bf16::from_f32(self.next_signed_unit()).to_le_bytes()).collect(),
            _ => {
                let blocks = elems / dtype.block_elems() as usize;
                let mut bytes = vec![0u8; blocks * dtype.block_bytes() as usize];
                self.0.fill_bytes(&mut bytes);
                for block in bytes.chunks_exact_mut(dtype.block_bytes() as usize) {
                    for &at in f16_scale_offsets(dtype) {
                        let scale = half::f16::from_f32(self.next_signed_unit() / 64.0);
                        block[at..at + 2].copy_from_slice(&scale.to_le_bytes());
                    }
                }
                bytes
            }
        }
    }
}
