//! Kaldi-compatible log-mel filter banks: `torchaudio.compliance.kaldi.fbank` with the options
//! `ASTFeatureExtractor` passes (`window_type="hanning"`, `num_mel_bins`, `sample_frequency`) and
//! the defaults it leaves: 25 ms frames every 10 ms with `snip_edges` (only whole frames), dither 0,
//! per-frame DC removal, pre-emphasis 0.97 (`x[i] -= 0.97·x[i-1]`, `x[0] -= 0.97·x[0]`), a
//! symmetric Hann window (not Kaldi's own default "povey", Hann^0.85), zero padding to the next
//! power of two (400 → 512 at 16 kHz), the power spectrum |rfft|², triangular filters on Kaldi's
//! mel scale (1127·ln(1 + f/700)) from 20 Hz to Nyquist, and ln(max(energy, f32::EPSILON)).
//!
//! The frames are computed in f64 (torchaudio computes in the waveform's dtype, f32 in
//! transformers); the filter weights in f32 with torchaudio's operation order, which is what both
//! its f32 and f64 runs apply (it builds them in the default dtype, then casts).

use std::sync::Arc;

use realfft::RealToComplex;

use crate::preprocess::PreprocessError;

/// torchaudio's `EPSILON`, `numeric_limits<float>::epsilon()`: the floor under the mel energies.
const EPSILON: f64 = f32::EPSILON as f64;
const PREEMPHASIS: f64 = 0.97;
const FRAME_LENGTH_MS: f64 = 25.0;
const FRAME_SHIFT_MS: f64 = 10.0;
const LOW_FREQ: f64 = 20.0;
/// Most mel bins accepted (allocation bound; AST uses 128).
pub const MAX_MEL_BINS: usize = 1024;

fn config_err(detail: impl Into<String>) -> PreprocessError {
    PreprocessError::Config(detail.into())
}

fn mel_scale(f: f64) -> f64 {
    1127.0 * (1.0 + f / 700.0).ln()
}

/// torchaudio's `get_mel_banks(num_bins, padded_window, sample_rate, low_freq, high_freq, …)` without
/// VTLN warping: (num_bins, padded_window / 2) triangular weights, row-major, in f32 as torchaudio
/// computes them (the scalars in f64, then every tensor operation in f32). `high_freq <= 0` counts
/// down from Nyquist. The FFT's Nyquist bin has no weight (torchaudio pads a zero column).
pub fn kaldi_mel_banks(
    num_bins: usize,
    padded_window: usize,
    sample_rate: f64,
    low_freq: f64,
    high_freq: f64,
) -> Result<Vec<f32>, PreprocessError> {
    if !(4..=MAX_MEL_BINS).contains(&num_bins) {
        return Err(config_err(format!("{num_bins} mel bins: Kaldi needs more than 3, at most {MAX_MEL_BINS} here")));
    }
    if padded_window < 2 || !padded_window.is_multiple_of(2) || padded_window > 1 << 20 {
        return Err(config_err(format!("padded window of {padded_window} samples (must be even, 2..=2^20)")));
    }
    let nyquist = 0.5 * sample_rate;
    let high_freq = if high_freq <= 0.0 { high_freq + nyquist } else { high_freq };
    if !(0.0 <= low_freq && low_freq < nyquist && 0.0 < high_freq && high_freq <= nyquist && low_freq < high_freq) {
        return Err(config_err(format!("mel range {low_freq}..{high_freq} Hz with Nyquist at {nyquist} Hz")));
    }
    let num_fft_bins = padded_window / 2;
    let fft_bin_width = sample_rate / padded_window as f64;
    let mel_low = mel_scale(low_freq);
    let mel_high = mel_scale(high_freq);
    let delta = (mel_high - mel_low) / (num_bins + 1) as f64;
    // torch: `mel_low + bin * delta` with an int64 `bin` and Python floats: f32 arithmetic.
    let (mel_low32, delta32) = (mel_low as f32, delta as f32);
    // (num_fft_bins,): mel_scale(fft_bin_width * arange) in f32.
    let mel: Vec<f32> = (0..num_fft_bins)
        .map(|k| {
            let f = fft_bin_width as f32 * k as f32;
            1127.0f32 * (1.0f32 + f / 700.0f32).ln()
        })
        .collect();
    let mut banks = Vec::with_capacity(num_bins * num_fft_bins);
    for b in 0..num_bins {
        let left = mel_low32 + b as f32 * delta32;
        let center = mel_low32 + (b as f32 + 1.0) * delta32;
        let right = mel_low32 + (b as f32 + 2.0) * delta32;
        for &m in &mel {
            let up = (m - left) / (center - left);
            let down = (right - m) / (right - center);
            banks.push(up.min(down).max(0.0));
        }
    }
    Ok(banks)
}

/// One mel filter: its first FFT bin and its non-zero weights.
#[derive(Debug, Clone)]
struct MelFilter {
    start: usize,
    weights: Vec<f32>,
}

/// The Kaldi fbank of `ASTFeatureExtractor` at one sample rate and mel bin count.
#[derive(Clone)]
pub struct KaldiFbank {
    num_mel_bins: usize,
    /// Samples per frame (400 at 16 kHz) and between frame starts (160).
    window_size: usize,
    window_shift: usize,
    /// FFT length: the next power of two ≥ window_size (512).
    padded: usize,
    /// (window_size,) symmetric Hann: 0.5 − 0.5·cos(2πn / (window_size − 1)).
    window: Vec<f64>,
    /// (num_mel_bins,) sparse rows of the (num_mel_bins, padded / 2) filter bank.
    filters: Vec<MelFilter>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for KaldiFbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KaldiFbank")
            .field("num_mel_bins", &self.num_mel_bins)
            .field("window_size", &self.window_size)
            .field("window_shift", &self.window_shift)
            .field("padded", &self.padded)
            .finish_non_exhaustive()
    }
}

impl KaldiFbank {
    /// The filter bank for `sample_rate` Hz and `num_mel_bins` bins.
    pub fn new(sample_rate: u32, num_mel_bins: usize) -> Result<KaldiFbank, PreprocessError> {
        if sample_rate == 0 || sample_rate > super::MAX_SAMPLE_RATE {
            return Err(config_err(format!("sampling_rate {sample_rate}")));
        }
        let rate = f64::from(sample_rate);
        // torchaudio: int(sample_frequency * frame_length * MILLISECONDS_TO_SECONDS), same order.
        let window_size = (rate * FRAME_LENGTH_MS * 0.001) as usize;
        let window_shift = (rate * FRAME_SHIFT_MS * 0.001) as usize;
        if window_size < 2 || window_shift == 0 {
            return Err(config_err(format!("sampling_rate {sample_rate} gives {window_size}-sample frames")));
        }
        let padded = window_size.next_power_of_two();
        let banks = kaldi_mel_banks(num_mel_bins, padded, rate, LOW_FREQ, 0.0)?;
        let filters = banks
            .chunks(padded / 2)
            .map(|row| {
                let start = row.iter().position(|w| *w > 0.0).unwrap_or(0);
                let end = row.iter().rposition(|w| *w > 0.0).map_or(start, |e| e + 1);
                MelFilter { start, weights: row.get(start..end).unwrap_or(&[]).to_vec() }
            })
            .collect();
        let denom = (window_size - 1) as f64;
        let window = (0..window_size)
            .map(|n| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / denom).cos())
            .collect();
        let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(padded);
        Ok(KaldiFbank { num_mel_bins, window_size, window_shift, padded, window, filters, fft })
    }

    pub fn num_mel_bins(&self) -> usize {
        self.num_mel_bins
    }

    /// Samples per frame and between frames.
    pub fn frame_geometry(&self) -> (usize, usize) {
        (self.window_size, self.window_shift)
    }

    /// Whole frames in `len` samples: 1 + (len − window) / shift, 0 when shorter than a frame.
    pub fn num_frames(&self, len: usize) -> usize {
        if len < self.window_size { 0 } else { 1 + (len - self.window_size) / self.window_shift }
    }

    /// The log-mel energies of the first `out.len() / num_mel_bins` frames of `samples` into `out`
    /// ((frames, num_mel_bins), row-major); returns how many frames there were (at most that many).
    pub fn compute_into(&self, samples: &[f32], out: &mut [f32]) -> Result<usize, PreprocessError> {
        let frames = self.num_frames(samples.len()).min(out.len() / self.num_mel_bins);
        let mut buf = self.fft.make_input_vec(); // (padded,)
        let mut spectrum = self.fft.make_output_vec(); // (padded / 2 + 1,)
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; self.padded / 2 + 1];
        for (f, row) in out.chunks_mut(self.num_mel_bins).take(frames).enumerate() {
            let start = f * self.window_shift;
            let frame = samples.get(start..start + self.window_size).unwrap_or(&[]);
            let (head, tail) = buf.split_at_mut(self.window_size.min(self.padded));
            for (b, s) in head.iter_mut().zip(frame) {
                *b = f64::from(*s);
            }
            tail.fill(0.0);
            let mean = head.iter().sum::<f64>() / self.window_size as f64;
            head.iter_mut().for_each(|b| *b -= mean);
            for i in (1..head.len()).rev() {
                let prev = head.get(i - 1).copied().unwrap_or(0.0);
                if let Some(b) = head.get_mut(i) {
                    *b -= PREEMPHASIS * prev;
                }
            }
            if let Some(b) = head.first_mut() {
                *b -= PREEMPHASIS * *b;
            }
            head.iter_mut().zip(&self.window).for_each(|(b, w)| *b *= w);
            self.fft
                .process_with_scratch(&mut buf, &mut spectrum, &mut scratch)
                .map_err(|e| PreprocessError::Input(format!("FFT: {e}")))?;
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (y, filter) in row.iter_mut().zip(&self.filters) {
                let bins = power.get(filter.start..filter.start + filter.weights.len()).unwrap_or(&[]);
                let energy: f64 = bins.iter().zip(&filter.weights).map(|(p, w)| p * f64::from(*w)).sum();
                *y = energy.max(EPSILON).ln() as f32;
            }
        }
        Ok(frames)
    }

    /// All frames of `samples`: ((frames, num_mel_bins) row-major, frames).
    pub fn compute(&self, samples: &[f32]) -> Result<(Vec<f32>, usize), PreprocessError> {
        let frames = self.num_frames(samples.len());
        let size = frames
            .checked_mul(self.num_mel_bins)
            .ok_or_else(|| PreprocessError::TooLarge { what: "filter bank", detail: format!("{frames} frames") })?;
        let mut out = vec![0f32; size];
        let n = self.compute_into(samples, &mut out)?;
        Ok((out, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32s(bytes: &[u8]) -> Vec<f32> {
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// torchaudio 2.11.1's `get_mel_banks(128, 512, 16000, 20, 0, 100, -500, 1)`
    /// (scripts/fixtures/make_audio_fixtures.py).
    const MEL_BANKS: &[u8] = include_bytes!("../../../tests/fixtures/audio/mel_banks.bin");

    #[test]
    fn mel_banks_match_torchaudio() {
        let ours = kaldi_mel_banks(128, 512, 16000.0, 20.0, 0.0).unwrap();
        let reference = f32s(MEL_BANKS);
        assert_eq!(ours.len(), reference.len());
        let (mut worst, mut at) = (0f32, 0);
        for (i, (a, b)) in ours.iter().zip(&reference).enumerate() {
            if (a - b).abs() > worst {
                (worst, at) = ((a - b).abs(), i);
            }
        }
        // Same f32 operations; a last-place difference in ln (|mel| ~ 2840, ulp 2.4e-4) moves a
        // weight by ulp / delta_mel ~ 1.1e-5.
        eprintln!("mel banks vs torchaudio: max |diff| {worst:.2e} (filter {}, FFT bin {})", at / 256, at % 256);
        assert!(worst <= 2e-5, "max |diff| {worst} at bin {} fft bin {}", at / 256, at % 256);
        // No filter weighs FFT bin 0 (below 20 Hz). Filter 3 is empty in torchaudio too: it spans
        // 62.96..93.01 Hz, between FFT bins 2 (62.5 Hz) and 3 (93.75 Hz), so AST's fourth mel bin
        // is always ln(EPSILON).
        let empty: Vec<usize> = ours.chunks(256).enumerate().filter(|(_, r)| r.iter().all(|w| *w == 0.0)).map(|(b, _)| b).collect();
        assert_eq!(empty, vec![3]);
        assert!(ours.chunks(256).all(|r| r[0] == 0.0));
    }

    #[test]
    fn mel_bank_hand_values() {
        // Filter 0 spans mel_low + [0, 2]·delta, delta = (mel(8000) − mel(20)) / 129 ≈ 21.77 mel:
        // 31.75..75.29 mel ≈ 20.0..48.4 Hz (centre 34.0 Hz), which holds FFT bin 1 (31.25 Hz) alone,
        // on its rising slope; bin 2 (62.5 Hz) is past the right edge.
        let banks = kaldi_mel_banks(128, 512, 16000.0, 20.0, 0.0).unwrap();
        let (lo, delta) = (mel_scale(20.0), (mel_scale(8000.0) - mel_scale(20.0)) / 129.0);
        let up = (mel_scale(31.25) - lo) / delta;
        assert!((banks[1] as f64 - up).abs() < 1e-5, "{} vs {up}", banks[1]);
        let down = (lo + 2.0 * delta - mel_scale(62.5)) / delta;
        assert!(down < 0.0 && banks[2] == 0.0, "62.5 Hz is past filter 0's right edge: {down}");
        // The last filter ends at Nyquist: its last FFT bin (7968.75 Hz) has weight.
        assert!(banks[127 * 256 + 255] > 0.0);
    }

    #[test]
    fn bad_bank_options_are_config_errors() {
        for (bins, padded, low, high) in [(3, 512, 20.0, 0.0), (128, 511, 20.0, 0.0), (128, 512, 9000.0, 0.0), (128, 512, 20.0, 9000.0), (128, 512, 20.0, -8000.0)] {
            assert!(matches!(kaldi_mel_banks(bins, padded, 16000.0, low, high), Err(PreprocessError::Config(_))), "{bins} {padded} {low} {high}");
        }
    }

    #[test]
    fn frames_and_geometry() {
        let fb = KaldiFbank::new(16000, 128).unwrap();
        assert_eq!(fb.frame_geometry(), (400, 160));
        assert_eq!(fb.padded, 512);
        assert_eq!((fb.num_frames(399), fb.num_frames(400), fb.num_frames(559), fb.num_frames(560)), (0, 1, 1, 2));
        let fb = KaldiFbank::new(8000, 23).unwrap();
        assert_eq!((fb.frame_geometry(), fb.padded), ((200, 80), 256));
    }

    #[test]
    fn silence_is_the_log_floor() {
        let fb = KaldiFbank::new(16000, 128).unwrap();
        let (out, frames) = fb.compute(&[0.0; 800]).unwrap();
        assert_eq!(frames, 3);
        assert!(out.iter().all(|v| *v == (f32::EPSILON as f64).ln() as f32));
        // A constant is removed with the DC offset: silence too.
        let (out, _) = fb.compute(&[0.3; 800]).unwrap();
        assert!(out.iter().all(|v| *v == (f32::EPSILON as f64).ln() as f32));
    }

    #[test]
    fn a_tone_lights_its_own_mel_bin() {
        let fb = KaldiFbank::new(16000, 128).unwrap();
        let x: Vec<f32> = (0..1600).map(|n| (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / 16000.0).sin()).collect();
        let (out, frames) = fb.compute(&x).unwrap();
        let row = &out[(frames - 1) * 128..];
        let peak = row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        // 1 kHz = 1127 ln(1 + 1000/700) ≈ 1000 mel; bins are ~21.8 mel apart from 31.7 mel.
        let expected = ((1127.0f64 * (1.0f64 + 1000.0 / 700.0).ln() - mel_scale(20.0)) / ((mel_scale(8000.0) - mel_scale(20.0)) / 129.0)).round() as usize - 1;
        assert!(peak.abs_diff(expected) <= 1, "peak {peak}, expected ~{expected}");
    }
}
