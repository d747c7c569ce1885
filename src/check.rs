//! Comparing a kernel's output with its CPU reference.
//!
//! Every comparison is elementwise against a per-element bound, and a failure names the worst index
//! so that a wrong index in a shader shows up as "row 17: got …, expected …", not as "not close".

use serde::Serialize;

/// The result of comparing `actual` with `expected` under a per-element bound.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub len: usize,
    pub passed: bool,
    /// Largest |actual - expected| seen.
    pub max_abs_err: f64,
    /// Largest |actual - expected| / bound seen: ≤ 1 means every element is within its bound.
    pub worst_ratio: f64,
    /// Index of the element with the largest ratio (the first non-finite element wins).
    pub worst_index: usize,
    pub worst_actual: f64,
    pub worst_expected: f64,
    pub worst_bound: f64,
}

impl Comparison {
    /// Compares elementwise; `bound(i)` is the largest error allowed at index `i`.
    /// A NaN or infinite `actual` always fails. Lengths that differ fail at index `min(len)`.
    pub fn elementwise(actual: &[f32], expected: &[f64], bound: impl Fn(usize) -> f64) -> Self {
        let mut report = Comparison {
            len: expected.len(),
            passed: actual.len() == expected.len(),
            max_abs_err: 0.0,
            worst_ratio: -1.0,
            worst_index: actual.len().min(expected.len()),
            worst_actual: f64::NAN,
            worst_expected: f64::NAN,
            worst_bound: f64::NAN,
        };
        for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
            let a = f64::from(a);
            let err = (a - e).abs();
            let b = bound(i);
            let ratio = if err == 0.0 {
                0.0
            } else if err.is_finite() {
                err / b
            } else {
                f64::INFINITY // NaN or ±∞ on either side
            };
            if ratio > report.worst_ratio {
                report.worst_ratio = ratio;
                report.worst_index = i;
                report.worst_actual = a;
                report.worst_expected = e;
                report.worst_bound = b;
            }
            if err.is_finite() {
                report.max_abs_err = report.max_abs_err.max(err);
            }
        }
        report.worst_ratio = report.worst_ratio.max(0.0);
        report.passed &= report.worst_ratio <= 1.0;
        report
    }
}

impl std::fmt::Display for Comparison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} of {} elements: worst at index {}: got {}, expected {}, |err| {:.3e} vs bound {:.3e} (max |err| {:.3e})",
            if self.passed { "ok" } else { "MISMATCH" },
            self.len,
            self.worst_index,
            self.worst_actual,
            self.worst_expected,
            (self.worst_actual - self.worst_expected).abs(),
            self.worst_bound,
            self.max_abs_err
        )
    }
}

impl Comparison {
    /// Compares under a named tolerance: |actual − expected| ≤ max(rel·|expected|, abs).
    pub fn within(actual: &[f32], expected: &[f64], tol: Tolerance) -> Self {
        Self::elementwise(actual, expected, |i| (tol.rel * expected.get(i).map_or(0.0, |e| e.abs())).max(tol.abs))
    }
}

/// A relative-or-absolute tolerance for ops whose error has no simple closed bound (the GPU's
/// exp, sin and inverseSqrt are only specified to a few ULP).
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rel: f64,
    pub abs: f64,
}

/// Transcendental functions (exp, tanh, erf) on f32.
pub const TRANSCENDENTAL: Tolerance = Tolerance { rel: 2e-5, abs: 2e-6 };
/// Normalisations: a reduction, an inverse square root, a product.
pub const NORMALISED: Tolerance = Tolerance { rel: 2e-5, abs: 2e-6 };

/// Unit roundoff of f32 (2^-24).
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;

/// Unit roundoff of f16 (2^-11).
pub const F16_UNIT_ROUNDOFF: f64 = 1.0 / 2048.0;

/// f16's smallest normal value (2^-14): the most one f16 operation whose result is subnormal can
/// be off by, whether the device keeps subnormals or flushes them to zero (WGSL allows both).
pub const F16_MIN_NORMAL: f64 = 1.0 / 16384.0;

/// γ_k for f16 operations (unit roundoff 2^-11); infinite once k·u reaches 1.
pub fn gamma_f16(k: u64) -> f64 {
    let ku = k as f64 * F16_UNIT_ROUNDOFF;
    if ku >= 1.0 { f64::INFINITY } else { ku / (1.0 - ku) }
}

/// Higham's γ_k = k·u / (1 − k·u): the relative error bound of `k` chained f32 operations, applied
/// to Σ|terms| it bounds the error of any summation order of depth `k`.
pub fn gamma_f32(k: u64) -> f64 {
    let ku = k as f64 * F32_UNIT_ROUNDOFF;
    ku / (1.0 - ku)
}

/// The largest |got − exact| / Σ|terms| over the outputs of a product: its error relative to each
/// output's magnitude, comparable across kernels, paths and weight types.
pub fn max_relative_error(got: &[f32], exact: &[f64], abs_sums: &[f64]) -> f64 {
    got.iter().zip(exact).zip(abs_sums).map(|((&g, &e), &a)| (f64::from(g) - e).abs() / a.max(f64::MIN_POSITIVE)).fold(0.0, f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_worst_index() {
        let c = Comparison::elementwise(&[1.0, 2.5, 3.0], &[1.0, 2.0, 3.0], |_| 0.1);
        assert!(!c.passed);
        assert_eq!(c.worst_index, 1);
        assert!((c.max_abs_err - 0.5).abs() < 1e-12);
    }

    #[test]
    fn nan_fails_and_length_mismatch_fails() {
        assert!(!Comparison::elementwise(&[f32::NAN], &[0.0], |_| 1.0).passed);
        assert!(!Comparison::elementwise(&[0.0], &[0.0, 0.0], |_| 1.0).passed);
        assert!(Comparison::elementwise(&[0.0, 1.0], &[0.0, 1.0], |_| 1e-9).passed);
    }
}
