//! Seeded, platform-independent test data.
//!
//! ChaCha8 rather than `rand::rngs::SmallRng`: SmallRng's stream may differ between platforms and
//! versions, and a kernel check must draw the same numbers natively and on wasm32.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A seeded stream of uniform floats.
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

    /// `len` uniform floats in [-1, 1).
    pub fn signed_unit_vec(&mut self, len: usize) -> Vec<f32> {
        (0..len).map(|_| self.next_signed_unit()).collect()
    }
}
