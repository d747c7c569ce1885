//! `ASTFeatureExtractor` (transformers 5.24, `feature_extraction_audio_spectrogram_transformer.py`):
//! the Kaldi fbank of a mono signal at `sampling_rate`, padded with zero rows or truncated to
//! `max_length` frames, then `(x − mean) / (2·std)` when `do_normalize`. Output: `input_values[0]`,
//! (max_length, num_mel_bins) row-major f32.
//!
//! transformers takes the fbank from `torchaudio.compliance.kaldi.fbank` when torchaudio is
//! installed and from its own numpy `spectrogram()` otherwise; both are the same computation (they
//! differ by ~1e-4 after normalisation on the fixtures). This follows torchaudio's, which AST was
//! trained with.

use super::fbank::{KaldiFbank, MAX_MEL_BINS};
use super::{Audio, check_finite, check_rate};
use crate::preprocess::PreprocessError;

/// Most frames `max_length` may ask for (11 minutes of 10 ms frames); AST uses 1024.
pub const MAX_FRAMES: usize = 1 << 16;
/// Most output values, max_length × num_mel_bins (16 MiB of f32); AST has 1024 × 128 = 131,072.
pub const MAX_FEATURE_VALUES: usize = 1 << 22;

/// `preprocessor_config.json` of an AST checkpoint. Missing fields take `ASTFeatureExtractor`'s
/// defaults (those of MIT/ast-finetuned-audioset-10-10-0.4593); unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default)]
pub struct AstFeatureConfig {
    /// "ASTFeatureExtractor" when present; another extractor's config is refused.
    pub feature_extractor_type: Option<String>,
    /// Channels per time step of the input; must be 1.
    pub feature_size: usize,
    /// The rate the model expects (16000); other rates are resampled to it.
    pub sampling_rate: u32,
    pub num_mel_bins: usize,
    /// Frames out: fewer are padded with zero rows (before normalisation), more are cut.
    pub max_length: usize,
    /// Read for completeness: the AST extractor pads the filter bank with 0, not with this.
    pub padding_value: f64,
    pub do_normalize: bool,
    pub mean: f64,
    pub std: f64,
    /// Read for completeness: the AST extractor returns no attention mask.
    pub return_attention_mask: bool,
}

impl Default for AstFeatureConfig {
    fn default() -> Self {
        AstFeatureConfig {
            feature_extractor_type: None,
            feature_size: 1,
            sampling_rate: 16000,
            num_mel_bins: 128,
            max_length: 1024,
            padding_value: 0.0,
            do_normalize: true,
            mean: -4.2677393,
            std: 4.5689974,
            return_attention_mask: false,
        }
    }
}

impl AstFeatureConfig {
    /// Parses `preprocessor_config.json` and checks it ([`AstFeatureConfig::validate`]).
    pub fn from_json(bytes: &[u8]) -> Result<AstFeatureConfig, PreprocessError> {
        let config: AstFeatureConfig =
            serde_json::from_slice(bytes).map_err(|e| PreprocessError::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// `Config` for anything the extractor cannot do or would allocate without bound.
    pub fn validate(&self) -> Result<(), PreprocessError> {
        let bad = |m: String| Err(PreprocessError::Config(m));
        if let Some(kind) = &self.feature_extractor_type
            && kind != "ASTFeatureExtractor"
        {
            return bad(format!("feature_extractor_type {kind:?}, not ASTFeatureExtractor"));
        }
        if self.feature_size != 1 {
            return bad(format!("feature_size {} (mono input has 1)", self.feature_size));
        }
        if check_rate(self.sampling_rate).is_err() {
            return bad(format!("sampling_rate {}", self.sampling_rate));
        }
        if !(4..=MAX_MEL_BINS).contains(&self.num_mel_bins) {
            return bad(format!("num_mel_bins {} (4..={MAX_MEL_BINS})", self.num_mel_bins));
        }
        if !(1..=MAX_FRAMES).contains(&self.max_length) {
            return bad(format!("max_length {} (1..={MAX_FRAMES})", self.max_length));
        }
        if self.max_length * self.num_mel_bins > MAX_FEATURE_VALUES {
            return bad(format!("max_length {} × num_mel_bins {} is over {MAX_FEATURE_VALUES} values", self.max_length, self.num_mel_bins));
        }
        if self.do_normalize && !(self.mean.is_finite() && self.std.is_finite() && self.std > 0.0) {
            return bad(format!("mean {} / std {}: normalising needs finite values and std > 0", self.mean, self.std));
        }
        Ok(())
    }
}

/// The extractor of one checkpoint: its config, filter bank and FFT plan, built once.
#[derive(Debug, Clone)]
pub struct AstFeatureExtractor {
    config: AstFeatureConfig,
    fbank: KaldiFbank,
}

impl AstFeatureExtractor {
    pub fn new(config: AstFeatureConfig) -> Result<AstFeatureExtractor, PreprocessError> {
        config.validate()?;
        let fbank = KaldiFbank::new(config.sampling_rate, config.num_mel_bins)?;
        Ok(AstFeatureExtractor { config, fbank })
    }

    /// From the bytes of `preprocessor_config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<AstFeatureExtractor, PreprocessError> {
        AstFeatureExtractor::new(AstFeatureConfig::from_json(bytes)?)
    }

    pub fn config(&self) -> &AstFeatureConfig {
        &self.config
    }

    /// The output's shape: (max_length, num_mel_bins).
    pub fn shape(&self) -> (usize, usize) {
        (self.config.max_length, self.config.num_mel_bins)
    }

    /// `input_values[0]` for `audio`, resampled to `sampling_rate` first if needed. Only the start
    /// that the kept frames see is resampled (10.24 s for AST), with the same result as resampling
    /// it all.
    pub fn extract(&self, audio: &Audio) -> Result<Vec<f32>, PreprocessError> {
        let (window, shift) = self.fbank.frame_geometry();
        // Samples at sampling_rate under the first max_length frames.
        let used = (self.config.max_length - 1) * shift + window;
        let rate = self.config.sampling_rate;
        if audio.sample_rate == rate {
            return self.extract_resampled(audio.samples.get(..used).unwrap_or(&audio.samples));
        }
        let prefix = super::resample::input_needed(used, audio.sample_rate, rate);
        let mut x = super::resample(audio.samples.get(..prefix).unwrap_or(&audio.samples), audio.sample_rate, rate)?;
        x.truncate(used);
        self.extract_resampled(&x)
    }

    /// `input_values[0]` for a mono signal already at `sampling_rate`:
    /// (max_length, num_mel_bins) row-major.
    ///
    /// Errors (`Input`): fewer samples than one 25 ms frame (torchaudio refuses those too), NaN or
    /// infinite samples.
    pub fn extract_resampled(&self, samples: &[f32]) -> Result<Vec<f32>, PreprocessError> {
        check_finite(samples)?;
        let (window, _) = self.fbank.frame_geometry();
        if samples.len() < window {
            return Err(PreprocessError::Input(format!(
                "{} samples is shorter than one {window}-sample (25 ms) frame",
                samples.len()
            )));
        }
        let (rows, bins) = self.shape();
        // (max_length, num_mel_bins): at most MAX_FEATURE_VALUES (validated).
        let mut out = vec![0f32; rows * bins];
        self.fbank.compute_into(samples, &mut out)?;
        if self.config.do_normalize {
            // numpy 2 on a float32 array and Python floats: (x − f32(mean)) / f32(std·2), in f32.
            let mean = self.config.mean as f32;
            let den = (self.config.std * 2.0) as f32;
            out.iter_mut().for_each(|v| *v = (*v - mean) / den);
        }
        Ok(out)
    }

    /// Frames of real signal in `len` samples at `sampling_rate` (before padding or truncation).
    pub fn num_frames(&self, len: usize) -> usize {
        self.fbank.num_frames(len)
    }
}

/// Timings of the AST input path on a synthetic signal (for the benchmarks).
#[derive(Debug, Clone, PartialEq)]
pub struct AudioBench {
    /// Length of the signal and its rate before resampling.
    pub seconds: f64,
    pub source_rate: u32,
    /// Milliseconds: resampling to 16 kHz (0 when already there), and the extractor (fbank,
    /// padding, normalisation) with MIT/ast-finetuned-audioset's config.
    pub resample_ms: f64,
    pub features_ms: f64,
    /// Frames of real signal (before padding or truncation to 1024).
    pub frames: usize,
}

/// Resamples and extracts `seconds` of a deterministic chirp plus noise at `source_rate` Hz, timed
/// with [`crate::clock::now_ms`] (works on both targets).
pub fn bench_ast_features(seconds: f64, source_rate: u32) -> Result<AudioBench, PreprocessError> {
    check_rate(source_rate)?;
    let rate = f64::from(source_rate);
    let n = seconds * rate;
    if !(n >= 1.0 && n <= super::MAX_SAMPLES as f64) {
        return Err(PreprocessError::Input(format!("{seconds} s at {source_rate} Hz")));
    }
    let n = n as usize;
    let mut state = 0x2545_f491_u32;
    let x: Vec<f32> = (0..n)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let t = i as f64 / rate;
            (0.5 * (std::f64::consts::PI * 2.0 * (100.0 + 300.0 * t) * t).sin()) as f32 + 0.05 * noise
        })
        .collect();
    let extractor = AstFeatureExtractor::new(AstFeatureConfig::default())?;
    let t0 = crate::clock::now_ms();
    let x16 = super::resample(&x, source_rate, 16000)?;
    let t1 = crate::clock::now_ms();
    let features = extractor.extract_resampled(&x16)?;
    let t2 = crate::clock::now_ms();
    std::hint::black_box(&features);
    Ok(AudioBench {
        seconds,
        source_rate,
        resample_ms: t1 - t0,
        features_ms: t2 - t1,
        frames: extractor.num_frames(x16.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_real_config() {
        let real = br#"{"do_normalize": true, "feature_extractor_type": "ASTFeatureExtractor", "feature_size": 1,
            "max_length": 1024, "mean": -4.2677393, "num_mel_bins": 128, "padding_side": "right",
            "padding_value": 0.0, "return_attention_mask": false, "sampling_rate": 16000, "std": 4.5689974}"#;
        let c = AstFeatureConfig::from_json(real).unwrap();
        assert_eq!(c, AstFeatureConfig { feature_extractor_type: Some("ASTFeatureExtractor".into()), ..Default::default() });
        assert_eq!(AstFeatureConfig::from_json(b"{}").unwrap(), AstFeatureConfig::default());
    }

    #[test]
    fn bad_configs_are_config_errors() {
        for json in [
            r#"{"feature_extractor_type": "WhisperFeatureExtractor"}"#,
            r#"{"feature_size": 2}"#,
            r#"{"sampling_rate": 0}"#,
            r#"{"num_mel_bins": 3}"#,
            r#"{"num_mel_bins": 100000}"#,
            r#"{"max_length": 0}"#,
            r#"{"max_length": 4294967295}"#,
            r#"{"max_length": 65536, "num_mel_bins": 128}"#,
            r#"{"std": 0.0}"#,
            r#"{"max_length": -1}"#,
            r#"{"mean": "x"}"#,
            "[",
        ] {
            assert!(matches!(AstFeatureExtractor::from_json(json.as_bytes()), Err(PreprocessError::Config(_))), "{json}");
        }
        // std 0 is fine when not normalising.
        assert!(AstFeatureConfig::from_json(br#"{"std": 0.0, "do_normalize": false}"#).is_ok());
    }

    #[test]
    fn padding_rows_are_normalised_zeros() {
        let fe = AstFeatureExtractor::new(AstFeatureConfig { max_length: 8, ..Default::default() }).unwrap();
        let x: Vec<f32> = (0..720).map(|n| ((n * 7919) % 200) as f32 / 100.0 - 1.0).collect();
        let out = fe.extract_resampled(&x).unwrap();
        assert_eq!(out.len(), 8 * 128);
        let pad = (0.0 - (-4.2677393f64) as f32) / (4.5689974f64 * 2.0) as f32;
        assert_eq!(fe.num_frames(720), 3);
        assert!(out[3 * 128..].iter().all(|v| *v == pad));
        assert!(out[..3 * 128].iter().all(|v| *v != pad));
    }

    #[test]
    fn short_and_non_finite_input_is_refused() {
        let fe = AstFeatureExtractor::new(AstFeatureConfig::default()).unwrap();
        assert!(matches!(fe.extract_resampled(&[0.1; 399]), Err(PreprocessError::Input(_))));
        assert!(matches!(fe.extract_resampled(&[]), Err(PreprocessError::Input(_))));
        let mut x = vec![0.1; 1000];
        x[500] = f32::NAN;
        assert!(matches!(fe.extract_resampled(&x), Err(PreprocessError::Input(_))));
    }

    #[test]
    fn bench_hook_runs() {
        let b = bench_ast_features(0.5, 44100).unwrap();
        assert_eq!(b.frames, 48);
        let ten = bench_ast_features(10.0, 44100).unwrap();
        eprintln!("AST input, 10 s at 44.1 kHz: resample {:.1} ms, features {:.1} ms ({} frames)", ten.resample_ms, ten.features_ms, ten.frames);
        assert!(b.resample_ms >= 0.0 && b.features_ms >= 0.0);
        assert!(bench_ast_features(f64::NAN, 44100).is_err());
    }
}
