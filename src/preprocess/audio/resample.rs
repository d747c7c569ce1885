//! Sample-rate conversion as `torchaudio.functional.resample(x, from, to)` does it with its defaults
//! (`sinc_interp_hann`, `lowpass_filter_width` 6, `rolloff` 0.99): the reference transformers'
//! audio-classification and speech-recognition pipelines call when a dict input's
//! `sampling_rate` differs from the feature extractor's.
//!
//! With `g = gcd(from, to)`, `orig = from / g` and `new = to / g`, output sample `q·new + j`
//! (phase `j < new`) is
//!
//! ```text
//! y[q·new + j] = Σ_k  h_j[k] · x[q·orig + k − width],   k in 0..2·width + orig,
//! h_j[k] = sinc(π t) · cos²(π t / 12) · base / orig,  t = clamp(((k − width)/orig − j/new) · base, ±6)
//! base = min(orig, new) · 0.99,  width = ⌈6 · orig / base⌉
//! ```
//!
//! with x zero outside the input, and `⌈new · len / orig⌉` samples out. torchaudio builds the whole
//! (new, 2·width + orig) kernel and runs a strided conv1d; for coprime rates (44,101 → 16,000) that
//! kernel is 16,000 × 44,135 floats. Here each phase's taps are made once, only where |t| < 6 (the
//! Hann window is zero beyond), in f64, and applied to every output of that phase: memory
//! O(width), work O(out · width). rubato (an FFT or sinc resampler with its own filter) was the
//! alternative; it would not reproduce the reference's samples.

use super::{MAX_SAMPLES, check_rate};
use crate::preprocess::PreprocessError;

/// Zero crossings of the sinc on each side (torchaudio's `lowpass_filter_width`).
const LOWPASS_FILTER_WIDTH: f64 = 6.0;
/// Cutoff as a fraction of the lower Nyquist frequency (torchaudio's `rolloff`).
const ROLLOFF: f64 = 0.99;

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Output length for `len` input samples: `⌈to · len / from⌉`, as torchaudio truncates.
pub fn resampled_len(len: usize, from: u32, to: u32) -> u64 {
    let g = gcd(from, to).max(1);
    let (orig, new) = (u64::from(from / g), u64::from(to / g));
    new.saturating_mul(len as u64).div_ceil(orig.max(1))
}

/// The reduced rates and the filter's half-width: (orig, new, base, width).
fn geometry(from: u32, to: u32) -> (usize, usize, f64, usize) {
    let g = gcd(from, to).max(1);
    let (orig, new) = ((from / g).max(1) as usize, (to / g).max(1) as usize);
    let base = orig.min(new) as f64 * ROLLOFF;
    let width = (LOWPASS_FILTER_WIDTH * orig as f64 / base).ceil() as usize;
    (orig, new, base, width)
}

/// Taps of phase `j` that can be non-zero: |t| < 6 ⇔ k − width ∈ orig · (j/new ± 6/base), the open
/// interval widened by one for rounding (the formula gives exact zeros at and past its ends).
fn tap_range(j: usize, orig: usize, new: usize, base: f64, width: usize) -> (usize, usize) {
    let taps_len = 2 * width + orig;
    let centre = width as f64 + orig as f64 * j as f64 / new as f64;
    let reach = orig as f64 * LOWPASS_FILTER_WIDTH / base;
    let k_start = ((centre - reach).floor().max(0.0) as usize).min(taps_len);
    let k_end = (((centre + reach).ceil() + 1.0).max(0.0) as usize).min(taps_len);
    (k_start, k_end)
}

/// Input samples that decide the first `out_len` outputs: resampling only that prefix gives those
/// outputs bit for bit (output `q·new + j` reads inputs below `q·orig + k_end(j) − width`).
pub fn input_needed(out_len: usize, from: u32, to: u32) -> usize {
    if from == to || out_len == 0 {
        return out_len;
    }
    let (orig, new, base, width) = geometry(from, to);
    let last = out_len - 1;
    let (_, k_end) = tap_range(last % new, orig, new, base, width);
    (last / new).saturating_mul(orig).saturating_add(k_end).saturating_sub(width)
}

/// `samples` (at `from` Hz) at `to` Hz; a copy when the rates are equal.
///
/// Errors: a rate outside the accepted range (`Input`), more than [`MAX_SAMPLES`] samples out
/// (`TooLarge`). Empty input gives empty output.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, PreprocessError> {
    check_rate(from)?;
    check_rate(to)?;
    if from == to {
        return Ok(samples.to_vec());
    }
    let out_len = resampled_len(samples.len(), from, to);
    if out_len > MAX_SAMPLES as u64 {
        return Err(PreprocessError::TooLarge {
            what: "resampled audio",
            detail: format!("{out_len} samples at {to} Hz, at most {MAX_SAMPLES}"),
        });
    }
    let out_len = out_len as usize;
    let (orig, new, base, width) = geometry(from, to);
    let scale = base / orig as f64;
    let len = samples.len();

    // (out_len,)
    let mut out = vec![0f32; out_len];
    // One phase's non-zero taps: (k_end - k_start,).
    let mut taps: Vec<f64> = Vec::with_capacity(2 * width + 2);
    for j in 0..new.min(out_len) {
        let (k_start, k_end) = tap_range(j, orig, new, base, width);
        taps.clear();
        for k in k_start..k_end {
            let t = ((k as f64 - width as f64) / orig as f64 - j as f64 / new as f64) * base;
            let t = t.clamp(-LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH);
            let window = (t * std::f64::consts::PI / LOWPASS_FILTER_WIDTH / 2.0).cos().powi(2);
            let pt = t * std::f64::consts::PI;
            let sinc = if pt == 0.0 { 1.0 } else { pt.sin() / pt };
            taps.push(sinc * window * scale);
        }
        // Outputs q·new + j; input index of tap k is q·orig + k − width.
        for (q, y) in out.iter_mut().skip(j).step_by(new).enumerate() {
            // Tap i reads padded[first + i] = x[first + i − width] (zero outside 0..len).
            let first = q * orig + k_start;
            let i_lo = width.saturating_sub(first).min(taps.len());
            let i_hi = (len + width).saturating_sub(first).clamp(i_lo, taps.len());
            let x_lo = (first + i_lo).saturating_sub(width);
            let x = samples.get(x_lo..x_lo + (i_hi - i_lo)).unwrap_or(&[]);
            let h = taps.get(i_lo..i_hi).unwrap_or(&[]);
            *y = h.iter().zip(x).map(|(h, x)| h * f64::from(*x)).sum::<f64>() as f32;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_torchaudio() {
        assert_eq!(resampled_len(11200 * 441 / 160, 44100, 16000), 11200);
        assert_eq!(resampled_len(30870, 44100, 16000), 11200);
        assert_eq!(resampled_len(1, 44100, 16000), 1);
        assert_eq!(resampled_len(3, 48000, 16000), 1);
        assert_eq!(resampled_len(4, 48000, 16000), 2);
        assert_eq!(resampled_len(5, 8000, 16000), 10);
    }

    #[test]
    fn same_rate_is_a_copy_and_bad_rates_are_refused() {
        assert_eq!(resample(&[0.5, -1.0], 16000, 16000).unwrap(), vec![0.5, -1.0]);
        assert!(matches!(resample(&[0.5], 0, 16000), Err(PreprocessError::Input(_))));
        assert!(matches!(resample(&[0.5], 16000, u32::MAX), Err(PreprocessError::Input(_))));
        assert!(resample(&[], 44100, 16000).unwrap().is_empty());
    }

    #[test]
    fn dc_passes_with_unit_gain_away_from_the_edges() {
        // A constant is a 0 Hz tone: every phase's taps must sum to ~1 (within the window's ripple).
        for (from, to) in [(44100, 16000), (8000, 16000), (22050, 16000), (48000, 16000), (44101, 16000)] {
            let x = vec![0.25f32; 4000];
            let y = resample(&x, from, to).unwrap();
            let n = y.len();
            for (i, v) in y.iter().enumerate().skip(n / 4).take(n / 2) {
                assert!((v - 0.25).abs() < 2e-3, "{from}->{to} [{i}] = {v}");
            }
        }
    }

    #[test]
    fn a_prefix_gives_the_same_first_outputs() {
        let x: Vec<f32> = (0..30000).map(|n| ((n * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3).collect();
        for (from, to) in [(44100, 16000), (8000, 16000), (22050, 16000), (48000, 16000), (44101, 16000), (16000, 44100)] {
            let full = resample(&x, from, to).unwrap();
            let n = 3000;
            let need = input_needed(n, from, to);
            // Output n sits at input n·from/to; the filter reaches 6·from/(0.99·min(from, to)) past it.
            let centre = n as f64 * from as f64 / to as f64;
            assert!((need as f64) < centre + 6.0 * from as f64 / (0.99 * from.min(to) as f64) + 3.0, "{from}->{to}: {need}");
            let part = resample(&x[..need], from, to).unwrap();
            assert!(full[..n] == part[..n], "{from}->{to}");
        }
    }

    #[test]
    fn output_is_capped() {
        // 1 kHz -> 768 kHz multiplies the length by 768.
        let x = vec![0f32; MAX_SAMPLES / 700];
        assert!(matches!(resample(&x, 1000, 768_000), Err(PreprocessError::TooLarge { .. })));
    }
}
