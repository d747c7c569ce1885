//! Audio input for the Audio Spectrogram Transformer (AST), as transformers prepares it:
//!
//! ```text
//! WAV bytes ──decode_wav──┐
//!                         ├─> Audio (mono f32, any rate) ──resample──> 16 kHz ──AstFeatureExtractor
//! Web Audio channels ─────┘                                  (Kaldi log-mel fbank, pad/truncate,
//!   (Audio::from_channels)                                    normalise) ──> (max_length, num_mel_bins)
//! ```
//!
//! - [`wav`]: RIFF/WAVE from a byte slice; PCM 8/16/24/32-bit, IEEE float 32/64, WAVE_FORMAT_EXTENSIBLE.
//! - [`resample`]: torchaudio's `functional.resample` (windowed sinc, Hann, 6 zero crossings, rolloff
//!   0.99), which transformers' audio pipelines call, evaluated per phase so any pair of rates works.
//! - [`fbank`]: `torchaudio.compliance.kaldi.fbank` with the extractor's options.
//! - [`ast`]: `ASTFeatureExtractor` (`preprocessor_config.json`) and a benchmark hook.
//!
//! Every size taken from input is checked before it is allocated; bad input is a typed
//! [`PreprocessError`], never a panic.

pub mod ast;
pub mod fbank;
pub mod resample;
pub mod wav;
pub mod whisper;

pub use ast::{AstFeatureConfig, AstFeatureExtractor, AudioBench, bench_ast_features};
pub use fbank::{KaldiFbank, kaldi_mel_banks};
pub use resample::resample;
pub use wav::{decode_wav, decode_wav_limited};
pub use whisper::{WhisperFeatureConfig, WhisperFeatureExtractor};

use super::PreprocessError;

/// The longest input accepted, in samples per channel: 10 minutes at 48 kHz. The mono signal is then
/// at most 115 MB of f32 (wasm32 has 4 GiB in all); AST itself looks at the first 10.24 s.
pub const MAX_SAMPLES: usize = 48_000 * 60 * 10;
/// Sample rates accepted, in Hz. Below 1 kHz is not audio one would classify; above 768 kHz no
/// converter records, and the resampler's work per output sample grows with the rate ratio.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// A sound as the models take it: one channel of f32 samples, nominally in [-1, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Samples per second of `samples`.
    pub sample_rate: u32,
    /// Channels of the source, averaged into `samples`.
    pub channels: u16,
    /// (n,) the channels' mean per instant.
    pub samples: Vec<f32>,
}

impl Audio {
    /// From planar channels, as a page's Web Audio `AudioBuffer.getChannelData(i)` gives them:
    /// averaged to mono (what transformers' ffmpeg decoding with `-ac 1`, and librosa's `to_mono`,
    /// do). Errors: no channel or no sample, channels of different lengths, NaN or infinite samples
    /// (`Input`); more than [`MAX_SAMPLES`] samples or 65,535 channels (`TooLarge`); a rate outside
    /// [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`] (`Input`).
    pub fn from_channels(channels: &[&[f32]], sample_rate: u32) -> Result<Audio, PreprocessError> {
        check_rate(sample_rate)?;
        let n_channels = u16::try_from(channels.len())
            .map_err(|_| PreprocessError::TooLarge { what: "channel count", detail: format!("{} channels", channels.len()) })?;
        let Some(first) = channels.first() else {
            return Err(PreprocessError::Input("audio with no channel".into()));
        };
        let len = first.len();
        if let Some((i, c)) = channels.iter().enumerate().find(|(_, c)| c.len() != len) {
            return Err(PreprocessError::Input(format!("channel {i} has {} samples, channel 0 has {len}", c.len())));
        }
        check_len(len)?;
        let mut samples = Vec::with_capacity(len);
        let n = f32::from(n_channels);
        for t in 0..len {
            let mut sum = 0f32;
            for c in channels {
                sum += c.get(t).copied().unwrap_or(0.0);
            }
            samples.push(sum / n); // numpy's mean: the sum, then one division
        }
        check_finite(&samples)?;
        Ok(Audio { sample_rate, channels: n_channels, samples })
    }

    /// A mono signal as it is.
    pub fn mono(samples: Vec<f32>, sample_rate: u32) -> Result<Audio, PreprocessError> {
        check_rate(sample_rate)?;
        check_len(samples.len())?;
        check_finite(&samples)?;
        Ok(Audio { sample_rate, channels: 1, samples })
    }

    /// Seconds of sound.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate.max(1))
    }

    /// The same sound at `rate` Hz ([`resample`]); a copy when the rate is already `rate`.
    pub fn resampled(&self, rate: u32) -> Result<Audio, PreprocessError> {
        Ok(Audio { sample_rate: rate, channels: self.channels, samples: resample(&self.samples, self.sample_rate, rate)? })
    }
}

/// `Input` unless `rate` is within [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`].
pub(crate) fn check_rate(rate: u32) -> Result<(), PreprocessError> {
    if (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(PreprocessError::Input(format!(
            "sample rate {rate} Hz is outside {MIN_SAMPLE_RATE}..={MAX_SAMPLE_RATE} Hz"
        )))
    }
}

/// `Input` for no samples, `TooLarge` past [`MAX_SAMPLES`].
pub(crate) fn check_len(len: usize) -> Result<(), PreprocessError> {
    if len == 0 {
        return Err(PreprocessError::Input("audio with no samples".into()));
    }
    if len > MAX_SAMPLES {
        return Err(PreprocessError::TooLarge {
            what: "audio",
            detail: format!("{len} samples per channel, at most {MAX_SAMPLES} (10 minutes at 48 kHz)"),
        });
    }
    Ok(())
}

/// `Input` naming the first NaN or infinite sample.
pub(crate) fn check_finite(samples: &[f32]) -> Result<(), PreprocessError> {
    match samples.iter().position(|s| !s.is_finite()) {
        None => Ok(()),
        Some(i) => Err(PreprocessError::Input(format!("sample {i} is {}", samples.get(i).copied().unwrap_or(f32::NAN)))),
    }
}
