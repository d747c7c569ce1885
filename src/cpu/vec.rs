//! Row operations of the CPU models, in plain Rust written so that LLVM vectorises it (f32x4 on
//! wasm32 simd128, AVX natively): dot products and sums in 8 lanes, softmax, LayerNorm, GELU.

/// A LayerNorm's gain and bias, (hidden) each.
pub(crate) struct LayerNorm {
    pub g: Vec<f32>,
    pub b: Vec<f32>,
}

/// Σ aᵢ·bᵢ in 8 lanes (vectorised: f32x4 pairs on wasm32 simd128, AVX natively).
#[inline]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Σ xᵢ in 8 lanes.
#[inline]
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = x.chunks_exact(8);
    let tail: f32 = c.remainder().iter().sum();
    for v in c {
        for k in 0..8 {
            acc[k] += v[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// y += a·x
#[inline]
pub(crate) fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// x += b
#[inline]
pub(crate) fn add(x: &mut [f32], b: &[f32]) {
    for (x, b) in x.iter_mut().zip(b) {
        *x += b;
    }
}

/// In-place softmax.
pub(crate) fn softmax(s: &mut [f32]) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        total += *v;
    }
    let inv = 1.0 / total;
    for v in s.iter_mut() {
        *v *= inv;
    }
}

/// In-place LayerNorm of each `norm.g.len()`-value row.
pub(crate) fn layer_norm_rows(x: &mut [f32], norm: &LayerNorm, eps: f32) {
    let n = norm.g.len();
    for row in x.chunks_exact_mut(n) {
        let mean = sum(row) / n as f32;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let var = dot(row, row) / n as f32;
        let r = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&norm.g).zip(&norm.b) {
            *v = *v * r * g + b;
        }
    }
}

/// x = LayerNorm(x + y + bias), row by row.
pub(crate) fn residual_layer_norm(x: &mut [f32], y: &[f32], bias: &[f32], norm: &LayerNorm, eps: f32) {
    let n = bias.len();
    for (xr, yr) in x.chunks_exact_mut(n).zip(y.chunks_exact(n)) {
        for ((x, y), b) in xr.iter_mut().zip(yr).zip(bias) {
            *x += y + b;
        }
    }
    layer_norm_rows(x, norm, eps);
}

/// x = GELU(x + bias): the erf form, or the tanh approximation.
pub(crate) fn bias_gelu(x: &mut [f32], bias: &[f32], tanh: bool) {
    if tanh {
        const C: f32 = 0.797_884_6; // √(2/π)
        for (v, b) in x.iter_mut().zip(bias) {
            let u = *v + b;
            *v = 0.5 * u * (1.0 + (C * (u + 0.044_715 * u * u * u)).tanh());
        }
    } else {
        for (v, b) in x.iter_mut().zip(bias) {
            let u = *v + b;
            *v = 0.5 * u * (1.0 + erf(u * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

/// The activations of the encoders' MLPs (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Act {
    /// "gelu": x·Φ(x) with erf.
    GeluErf,
    /// "gelu_new", "gelu_pytorch_tanh": the tanh approximation.
    GeluTanh,
    /// CLIP's "quick_gelu": x·σ(1.702·x).
    QuickGelu,
}

impl Act {
    /// The CPU form of a GPU activation op, `None` for ops that are not an MLP activation.
    pub(crate) fn of(op: crate::gpu::ops::elementwise::Elementwise) -> Option<Self> {
        use crate::gpu::ops::elementwise::Elementwise as E;
        match op {
            E::GeluErf => Some(Act::GeluErf),
            E::GeluTanh => Some(Act::GeluTanh),
            E::QuickGelu => Some(Act::QuickGelu),
            _ => None,
        }
    }
}

/// x = act(x + bias)
pub(crate) fn bias_act(x: &mut [f32], bias: &[f32], act: Act) {
    match act {
        Act::GeluErf => bias_gelu(x, bias, false),
        Act::GeluTanh => bias_gelu(x, bias, true),
        Act::QuickGelu => {
            for (v, b) in x.iter_mut().zip(bias) {
                let u = *v + b;
                *v = u / (1.0 + (-1.702 * u).exp());
            }
        }
    }
}

/// x = tanh(x + bias) (BERT's pooler).
pub(crate) fn bias_tanh(x: &mut [f32], bias: &[f32]) {
    for (v, b) in x.iter_mut().zip(bias) {
        *v = (*v + b).tanh();
    }
}

/// Each `n`-value row of `x` divided by its L2 norm (at least 1e-12, as the GPU's pooling and
/// torch's `F.normalize` divide).
pub(crate) fn l2_normalize_rows(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        let r = 1.0 / dot(row, row).sqrt().max(1e-12);
        for v in row.iter_mut() {
            *v *= r;
        }
    }
}

/// erf in f32 by a rational approximation on [−4, 4] (Eigen's and XLA's, within a few ulp; erf
/// is ±1 in f32 beyond): multiplies, adds and one division, so a loop of it vectorises.
#[inline]
pub(crate) fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2 * -2.726_142_3e-10 + 2.770_681_4e-8;
    p = x2 * p - 2.101_024e-6;
    p = x2 * p - 5.692_506_4e-5;
    p = x2 * p - 7.349_906_3e-4;
    p = x2 * p - 2.954_600_2e-3;
    p = x2 * p - 1.609_603_3e-2;
    let mut q = x2 * -1.456_607_2e-5 - 2.133_740_6e-4;
    q = x2 * q - 1.682_827e-3;
    q = x2 * q - 7.373_329_4e-3;
    q = x2 * q - 1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_is_within_a_few_ulp_of_f64() {
        let worst = (-6000..=6000)
            .map(|i| i as f32 * 1e-3)
            .map(|x| (f64::from(erf(x)) - candle_core::cpu::erf::erf_f64(f64::from(x))).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-7, "max |erf error| {worst:e}");
    }
}
