//! `WhisperFeatureExtractor` (transformers 5.25, `feature_extraction_whisper.py`, the torch path it
//! takes when torch is installed): a mono 16 kHz signal padded with zeros or cut to `n_samples`
//! (30 s), a centred STFT (reflect padding of n_fft/2 each side) with a periodic Hann window of
//! `n_fft` (400) every `hop_length` (160) samples, the power spectrum |X|², `feature_size` (80, or
//! 128 for large-v3) Slaney-normalised triangular filters on the Slaney mel scale from 0 to 8 kHz,
//! log10 of max(energy, 1e-10), the last frame dropped, every value raised to at least the
//! window's maximum − 8, then (x + 4) / 4. Output: `input_features[0]`, (feature_size, frames)
//! row-major (a row per mel bin), frames = n_samples / hop_length (3000).
//!
//! On the CPU for both targets: a 30 s window is 3000 FFTs of 400 points and ~1.3 M filter weights
//! applied (the filters are sparse), a few milliseconds; not worth a GPU pass. Computed in f64 and
//! stored as f32 (transformers computes in f32: the two agree to ~1e-6).

use std::sync::Arc;

use realfft::RealToComplex;

use super::check_finite;
use crate::preprocess::PreprocessError;

/// Most mel bins accepted (large-v3 uses 128).
const MAX_MEL_BINS: usize = 512;
/// Most samples per window accepted (allocation bound: 10 minutes at 16 kHz).
const MAX_WINDOW_SAMPLES: usize = 16_000 * 600;

/// `preprocessor_config.json` of a Whisper checkpoint. Missing fields take
/// `WhisperFeatureExtractor`'s defaults; unknown fields (the stored `mel_filters`) are ignored.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct WhisperFeatureConfig {
    /// "WhisperFeatureExtractor" when present; another extractor's config is refused.
    pub feature_extractor_type: Option<String>,
    /// Mel bins.
    pub feature_size: usize,
    pub sampling_rate: u32,
    pub hop_length: usize,
    /// Seconds per window.
    pub chunk_length: usize,
    pub n_fft: usize,
    /// Read for completeness: Whisper pads with zeros.
    pub padding_value: f64,
    /// Gaussian noise added before the STFT; only 0 (transformers' default) is supported.
    pub dither: f64,
}

impl Default for WhisperFeatureConfig {
    fn default() -> Self {
        WhisperFeatureConfig { feature_extractor_type: None, feature_size: 80, sampling_rate: 16000, hop_length: 160, chunk_length: 30, n_fft: 400, padding_value: 0.0, dither: 0.0 }
    }
}

impl WhisperFeatureConfig {
    pub fn from_json(bytes: &[u8]) -> Result<WhisperFeatureConfig, PreprocessError> {
        let config: WhisperFeatureConfig = serde_json::from_slice(bytes).map_err(|e| PreprocessError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Samples per window: chunk_length × sampling_rate.
    pub fn n_samples(&self) -> usize {
        self.chunk_length * self.sampling_rate as usize
    }

    /// Frames per window: n_samples / hop_length.
    pub fn frames(&self) -> usize {
        self.n_samples() / self.hop_length
    }

    /// `Config` for anything the extractor cannot do or would allocate without bound.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let bad = |m: String| Err(PreprocessError::Config(m));
        if let Some(kind) = &self.feature_extractor_type
            && kind != "WhisperFeatureExtractor"
        {
            return bad(format!("feature_extractor_type {kind:?}, not WhisperFeatureExtractor"));
        }
        if !(1..=MAX_MEL_BINS).contains(&self.feature_size) {
            return bad(format!("feature_size {} (1..={MAX_MEL_BINS})", self.feature_size));
        }
        if super::check_rate(self.sampling_rate).is_err() || self.sampling_rate < 16_000 {
            return bad(format!("sampling_rate {} (the filters reach 8 kHz)", self.sampling_rate));
        }
        if !(2..=65_536).contains(&self.n_fft) || self.hop_length == 0 || self.hop_length > self.n_fft {
            return bad(format!("n_fft {} with hop_length {}", self.n_fft, self.hop_length));
        }
        if self.chunk_length == 0 || self.n_samples() > MAX_WINDOW_SAMPLES || self.n_samples() < self.n_fft {
            return bad(format!("chunk_length {} s", self.chunk_length));
        }
        if self.dither != 0.0 {
            return bad(format!("dither {} (only 0 is supported)", self.dither));
        }
        Ok(())
    }
}

/// The Slaney mel scale (librosa's default, `mel_scale="slaney"`): linear below 1 kHz, logarithmic
/// above.
fn hz_to_mel(f: f64) -> f64 {
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    let logstep = 27.0 / 6.4f64.ln();
    if f >= MIN_LOG_HZ { MIN_LOG_MEL + (f / MIN_LOG_HZ).ln() * logstep } else { 3.0 * f / 200.0 }
}

fn mel_to_hz(m: f64) -> f64 {
    const MIN_LOG_HZ: f64 = 1000.0;
    const MIN_LOG_MEL: f64 = 15.0;
    let logstep = 6.4f64.ln() / 27.0;
    if m >= MIN_LOG_MEL { MIN_LOG_HZ * (logstep * (m - MIN_LOG_MEL)).exp() } else { 200.0 * m / 3.0 }
}

/// One triangular filter: its weights over FFT bins `first..first + weights.len()`.
#[derive(Debug, Clone)]
struct Filter {
    first: usize,
    weights: Vec<f64>,
}

/// transformers' `mel_filter_bank(1 + n_fft/2, n_mels, 0, 8000, rate, norm="slaney",
/// mel_scale="slaney")`, each filter kept as its non-zero run.
fn mel_filters(n_fft: usize, n_mels: usize, rate: u32) -> Vec<Filter> {
    let bins = n_fft / 2 + 1;
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(8000.0));
    let freqs: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let nyquist = f64::from(rate) / 2.0;
    let fft_freq = |k: usize| nyquist * k as f64 / (bins - 1) as f64;
    (0..n_mels)
        .map(|m| {
            let (left, centre, right) = (freqs[m], freqs[m + 1], freqs[m + 2]);
            let enorm = 2.0 / (right - left);
            let w: Vec<f64> = (0..bins)
                .map(|k| {
                    let f = fft_freq(k);
                    let down = (f - left) / (centre - left);
                    let up = (right - f) / (right - centre);
                    down.min(up).max(0.0) * enorm
                })
                .collect();
            let first = w.iter().position(|&x| x > 0.0).unwrap_or(0);
            let last = w.iter().rposition(|&x| x > 0.0).map_or(first, |i| i + 1);
            Filter { first, weights: w[first..last.max(first)].to_vec() }
        })
        .collect()
}

/// The extractor of one checkpoint: config, filters, window and FFT plan, built once.
#[derive(Clone)]
pub struct WhisperFeatureExtractor {
    config: WhisperFeatureConfig,
    filters: Vec<Filter>,
    window: Vec<f64>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl std::fmt::Debug for WhisperFeatureExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperFeatureExtractor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl WhisperFeatureExtractor {
    pub fn new(config: WhisperFeatureConfig) -> Result<Self, PreprocessError> {
        config.validate()?;
        let n = config.n_fft;
        // torch.hann_window(n): periodic.
        let window = (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos()).collect();
        let filters = mel_filters(n, config.feature_size, config.sampling_rate);
        let fft = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(n);
        Ok(Self { config, filters, window, fft })
    }

    pub fn from_json(bytes: &[u8]) -> Result<Self, PreprocessError> {
        Self::new(WhisperFeatureConfig::from_json(bytes)?)
    }

    pub fn config(&self) -> &WhisperFeatureConfig {
        &self.config
    }

    /// The output's shape: (mel bins, frames).
    pub fn shape(&self) -> (usize, usize) {
        (self.config.feature_size, self.config.frames())
    }

    /// `input_features[0]` of one window: `samples` (at `sampling_rate`) zero-padded or cut to
    /// n_samples. (mel bins, frames) row-major. Errors: NaN or infinite samples (`Input`).
    pub fn extract(&self, samples: &[f32]) -> Result<Vec<f32>, PreprocessError> {
        check_finite(samples)?;
        let c = &self.config;
        let (n, hop, len) = (c.n_fft, c.hop_length, c.n_samples());
        let signal = &samples[..samples.len().min(len)];
        // The padded window's sample i (reflect padding of n/2 around the zero-padded signal).
        let half = n / 2;
        let at = |i: usize| -> f64 {
            let j = i as isize - half as isize;
            let j = if j < 0 { -j } else if j >= len as isize { 2 * (len as isize - 1) - j } else { j };
            signal.get(j as usize).map_or(0.0, |&s| f64::from(s))
        };
        let frames = c.frames();
        let bins = n / 2 + 1;
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0f64; bins];
        let mels = self.filters.len();
        let mut out = vec![0f64; mels * frames];
        // Frames past the signal's reach see only zeros: their log-mel is log10(1e-10).
        let signal_frames = (signal.len() + half).div_ceil(hop).min(frames);
        for t in 0..frames {
            if t >= signal_frames {
                for m in 0..mels {
                    out[m * frames + t] = -10.0;
                }
                continue;
            }
            for (k, x) in input.iter_mut().enumerate() {
                *x = at(t * hop + k) * self.window[k];
            }
            if self.fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch).is_err() {
                return Err(PreprocessError::Input("FFT length mismatch".into())); // sizes come from the plan
            }
            for (p, s) in power.iter_mut().zip(&spectrum) {
                *p = s.norm_sqr();
            }
            for (m, f) in self.filters.iter().enumerate() {
                let e: f64 = f.weights.iter().zip(&power[f.first..]).map(|(w, p)| w * p).sum();
                out[m * frames + t] = e.max(1e-10).log10();
            }
        }
        let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(out.into_iter().map(|v| ((v.max(max - 8.0) + 4.0) / 4.0) as f32).collect())
    }

    /// Frames of real signal in `len` samples (the rest of a window is padding).
    pub fn signal_frames(&self, len: usize) -> usize {
        len.min(self.config.n_samples()).div_ceil(self.config.hop_length).min(self.config.frames())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_is_linear_below_1khz() {
        for f in [0.0, 200.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(f)) - f).abs() < 1e-9, "{f}");
        }
        assert_eq!(hz_to_mel(600.0), 9.0);
        assert_eq!(hz_to_mel(1000.0), 15.0);
    }

    #[test]
    fn filters_are_slaney_normalised_triangles() {
        let f = mel_filters(400, 80, 16000);
        assert_eq!(f.len(), 80);
        // Each filter's area on the Hz axis is 1 (Slaney: 2 / width × height-1 triangle of that
        // width / 2): Σ w · Δf ≈ 1 for the wider filters.
        let df = 8000.0 / 200.0;
        let area: f64 = f[79].weights.iter().sum::<f64>() * df;
        assert!((area - 1.0).abs() < 0.05, "{area}");
        assert!(f.iter().all(|x| x.weights.iter().all(|&w| w >= 0.0)));
    }

    #[test]
    fn silence_is_the_floor_and_a_tone_lights_its_bin() {
        let x = WhisperFeatureExtractor::new(WhisperFeatureConfig::default()).unwrap();
        let silent = x.extract(&[0.0; 1600]).unwrap();
        assert_eq!(silent.len(), 80 * 3000);
        assert!(silent.iter().all(|&v| v == (-10.0 + 4.0) / 4.0));
        let tone: Vec<f32> = (0..16000).map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin()).collect();
        let feats = x.extract(&tone).unwrap();
        let frame = 50;
        let column: Vec<f32> = (0..80).map(|m| feats[m * 3000 + frame]).collect();
        let best = (0..80).max_by(|&a, &b| column[a].total_cmp(&column[b])).unwrap();
        let centre = |m: usize| mel_to_hz(hz_to_mel(8000.0) * (m + 1) as f64 / 81.0);
        assert!((centre(best) - 440.0).abs() < 60.0, "bin {best} at {} Hz", centre(best));
        assert!(x.extract(&[f32::NAN]).is_err());
    }
}
