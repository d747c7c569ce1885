//! Pre-processing shared by the native build and wasm: images (decode, resize, rescale,
//! normalise as a checkpoint's `preprocessor_config.json` says) and audio (WAV, resampling,
//! Kaldi-compatible log-mel filter banks). Pure CPU code with no GPU dependency; every bad input is
//! a typed `PreprocessError`, never a panic, and no allocation is sized by an unchecked header.

pub mod audio;
pub mod image;

/// Why an image or a sound could not be turned into model input.
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    /// The bytes are not a file of a supported format, or are cut short or corrupt.
    #[error("decoding {format}: {detail}")]
    Decode { format: &'static str, detail: String },
    /// The input is well-formed but beyond what we accept (dimensions, duration, sample count).
    #[error("{what} is too large: {detail}")]
    TooLarge { what: &'static str, detail: String },
    /// The input holds nothing to process (zero pixels, zero samples) or values that are not
    /// numbers (NaN or infinite samples).
    #[error("bad input: {0}")]
    Input(String),
    /// `preprocessor_config.json` is malformed or asks for something not implemented.
    #[error("preprocessor_config.json: {0}")]
    Config(String),
}
