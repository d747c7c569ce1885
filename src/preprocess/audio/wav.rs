//! WAV files: RIFF/WAVE with PCM integer samples in 8, 16, 24 or 32-bit containers (format 1),
//! IEEE float 32 or 64 (format 3), or either inside WAVE_FORMAT_EXTENSIBLE (0xFFFE), mixed down to
//! mono f32.
//!
//! A small parser over the byte slice rather than `hound` (the first choice, and safe on hostile
//! input): hound reads a 24-bit sample in a 32-bit container from the container's low bytes, while
//! the WAVE_FORMAT_EXTENSIBLE spec, ffmpeg (which transformers' pipelines decode bytes with) and
//! libsndfile left-align it; it does not skip the pad byte after an odd-sized chunk, nor the extra
//! bytes of a fmt chunk longer than 40; and it keeps the container size private, which the size
//! checks below need. The whole file is in memory (a fetch, a `File`), so every read is a bounds-
//! checked subslice and nothing is allocated from a header's word alone.
//!
//! Integers are scaled by 2^(bits−1) of the container (8-bit is unsigned: (u − 128) / 128), as
//! ffmpeg, libsndfile and torchaudio's loaders do; `wValidBitsPerSample` is informational (the spec:
//! the data is represented in the container's precision). A data chunk sized 0xFFFFFFFF is the
//! "length unknown" of streaming writers (ffmpeg or sox into a pipe) and runs to the end of the file;
//! any other size beyond the file is an error.

use super::{Audio, MAX_SAMPLES, check_rate};
use crate::preprocess::PreprocessError;

const FORMAT_PCM: u16 = 1;
const FORMAT_FLOAT: u16 = 3;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// KSDATAFORMAT_SUBTYPE_* GUIDs share these bytes after the 2-byte format code.
const KSDATAFORMAT_SUFFIX: [u8; 14] = [0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];
/// A data chunk size meaning "to the end of the file".
const STREAMING_LEN: u32 = u32::MAX;

fn decode_err(detail: impl Into<String>) -> PreprocessError {
    PreprocessError::Decode { format: "WAV", detail: detail.into() }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    /// Unsigned 8-bit, offset 128.
    U8,
    /// Signed little-endian in a container of 2, 3 or 4 bytes.
    Int(usize),
    F32,
    F64,
}

impl Encoding {
    fn bytes(self) -> usize {
        match self {
            Encoding::U8 => 1,
            Encoding::Int(n) => n,
            Encoding::F32 => 4,
            Encoding::F64 => 8,
        }
    }

    /// One sample from exactly `self.bytes()` bytes.
    fn decode(self, b: &[u8]) -> f32 {
        match (self, b) {
            (Encoding::U8, [u]) => (f32::from(*u) - 128.0) / 128.0,
            (Encoding::Int(2), [a, b]) => f32::from(i16::from_le_bytes([*a, *b])) / 32768.0,
            // The 3 bytes into the top of an i32 sign-extend it; the quotient is exact.
            (Encoding::Int(3), [a, b, c]) => (i32::from_le_bytes([0, *a, *b, *c]) >> 8) as f32 / 8_388_608.0,
            (Encoding::Int(4), [a, b, c, d]) => i32::from_le_bytes([*a, *b, *c, *d]) as f32 / 2_147_483_648.0,
            (Encoding::F32, [a, b, c, d]) => f32::from_le_bytes([*a, *b, *c, *d]),
            (Encoding::F64, b) => b.try_into().map_or(f32::NAN, |b| f64::from_le_bytes(b) as f32),
            _ => f32::NAN, // unreachable: chunks are sized by bytes()
        }
    }
}

/// What the fmt chunk says.
#[derive(Debug)]
struct Format {
    channels: u16,
    sample_rate: u32,
    encoding: Encoding,
}

fn parse_fmt(body: &[u8]) -> Result<Format, PreprocessError> {
    let short = || decode_err(format!("fmt chunk of {} bytes, at least 16 needed", body.len()));
    let tag = u16_at(body, 0).ok_or_else(short)?;
    let channels = u16_at(body, 2).ok_or_else(short)?;
    let sample_rate = u32_at(body, 4).ok_or_else(short)?;
    let block_align = u16_at(body, 12).ok_or_else(short)?;
    let bits = u16_at(body, 14).ok_or_else(short)?;
    if channels == 0 {
        return Err(decode_err("fmt chunk declares 0 channels"));
    }
    if sample_rate == 0 {
        return Err(decode_err("fmt chunk declares a sample rate of 0 Hz"));
    }
    let format = if tag == FORMAT_EXTENSIBLE {
        // WAVEFORMATEXTENSIBLE: cbSize (16), valid bits (18), channel mask (20), SubFormat (24..40).
        let sub = body.get(24..40).ok_or_else(|| decode_err("WAVE_FORMAT_EXTENSIBLE fmt chunk shorter than 40 bytes"))?;
        let code = u16_at(sub, 0).unwrap_or(0);
        if sub.get(2..) != Some(&KSDATAFORMAT_SUFFIX[..]) {
            return Err(decode_err("WAVE_FORMAT_EXTENSIBLE with an unknown SubFormat GUID"));
        }
        code
    } else {
        tag
    };
    let encoding = match (format, bits) {
        (FORMAT_PCM, 8) => Encoding::U8,
        (FORMAT_PCM, 16 | 24 | 32) => Encoding::Int(usize::from(bits / 8)),
        (FORMAT_FLOAT, 32) => Encoding::F32,
        (FORMAT_FLOAT, 64) => Encoding::F64,
        (FORMAT_PCM | FORMAT_FLOAT, _) => {
            return Err(decode_err(format!("{bits}-bit {} samples are not supported", if format == FORMAT_PCM { "integer" } else { "float" })));
        }
        _ => return Err(decode_err(format!("format {format:#06x} is not PCM or IEEE float (compressed WAV is not supported)"))),
    };
    let frame = usize::from(channels) * encoding.bytes();
    if usize::from(block_align) != frame {
        return Err(decode_err(format!("block align {block_align} for {channels} channels of {bits} bits ({frame} expected)")));
    }
    Ok(Format { channels, sample_rate, encoding })
}

/// Decodes a WAV file of at most [`MAX_SAMPLES`] samples per channel; see [`decode_wav_limited`].
pub fn decode_wav(bytes: &[u8]) -> Result<Audio, PreprocessError> {
    decode_wav_limited(bytes, MAX_SAMPLES)
}

/// Decodes a WAV file to mono (the channels' mean) at its own sample rate.
///
/// Errors: not a RIFF/WAVE file, a missing, short or unsupported fmt chunk, zero channels, a zero
/// sample rate, no data chunk, a data chunk longer than the file or not a whole number of frames
/// (`Decode`); more than `max_samples` samples per channel (`TooLarge`); no samples, NaN or
/// infinite float samples, a rate outside the accepted range (`Input`).
pub fn decode_wav_limited(bytes: &[u8], max_samples: usize) -> Result<Audio, PreprocessError> {
    match (bytes.get(0..4), bytes.get(8..12)) {
        (Some(b"RIFF"), Some(b"WAVE")) => {}
        (Some(b"RIFX" | b"RF64"), _) => return Err(decode_err("big-endian (RIFX) and RF64 files are not supported")),
        _ => return Err(decode_err("not a RIFF/WAVE file")),
    }
    // The RIFF size field is not trusted (writers that stream leave it wrong); chunks are bounded
    // by the slice.
    let mut at = 12usize;
    let mut format = None;
    let data = loop {
        let rest = bytes.get(at..).unwrap_or(&[]);
        let (Some(id), Some(size)) = (rest.get(0..4), u32_at(rest, 4)) else {
            return Err(decode_err(if format.is_some() { "no data chunk (file truncated?)" } else { "no fmt chunk" }));
        };
        let body_start = at + 8;
        let left = bytes.len() - body_start;
        match id {
            b"fmt " => {
                let body = bytes.get(body_start..body_start.saturating_add(size as usize)).ok_or_else(|| {
                    decode_err(format!("fmt chunk claims {size} bytes, {left} left in the file"))
                })?;
                format = Some(parse_fmt(body)?);
            }
            b"data" => {
                let Some(f) = &format else { return Err(decode_err("data chunk before the fmt chunk")) };
                let len = if size == STREAMING_LEN { left - left % (usize::from(f.channels) * f.encoding.bytes()) } else { size as usize };
                break bytes.get(body_start..body_start.saturating_add(len)).ok_or_else(|| {
                    decode_err(format!("the data chunk claims {size} bytes, {left} left in the file (truncated)"))
                })?;
            }
            _ => {}
        }
        // Chunks are padded to even sizes; a pad byte missing at the very end is tolerated.
        at = body_start.saturating_add(size as usize).saturating_add(size as usize & 1);
    };
    let Some(Format { channels, sample_rate, encoding }) = format else {
        return Err(decode_err("no fmt chunk"));
    };
    check_rate(sample_rate)?;
    let frame_bytes = usize::from(channels) * encoding.bytes();
    if data.len() % frame_bytes != 0 {
        return Err(decode_err(format!("data chunk of {} bytes is not whole {frame_bytes}-byte frames", data.len())));
    }
    let frames = data.len() / frame_bytes;
    if frames > max_samples {
        return Err(PreprocessError::TooLarge { what: "audio", detail: format!("{frames} samples per channel, at most {max_samples}") });
    }
    if frames == 0 {
        return Err(PreprocessError::Input("the WAV file has no samples".into()));
    }
    let n = f32::from(channels);
    // (frames,): bounded by max_samples and by the file's size.
    let mut mono = Vec::with_capacity(frames);
    for (t, frame) in data.chunks_exact(frame_bytes).enumerate() {
        let mut sum = 0f32;
        for (c, sample) in frame.chunks_exact(encoding.bytes()).enumerate() {
            let v = encoding.decode(sample);
            if !v.is_finite() {
                return Err(PreprocessError::Input(format!("sample {t} of channel {c} is {v}")));
            }
            sum += v;
        }
        mono.push(sum / n); // numpy's mean: the sum, then one division
    }
    Ok(Audio { sample_rate, channels, samples: mono })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_encodings() {
        assert_eq!(Encoding::U8.decode(&[0]), -1.0);
        assert_eq!(Encoding::U8.decode(&[255]), 127.0 / 128.0);
        assert_eq!(Encoding::Int(2).decode(&(-32768i16).to_le_bytes()), -1.0);
        assert_eq!(Encoding::Int(3).decode(&[0xff, 0xff, 0xff]), -1.0 / 8_388_608.0);
        assert_eq!(Encoding::Int(3).decode(&[0, 0, 0x80]), -1.0);
        assert_eq!(Encoding::Int(3).decode(&[0xff, 0xff, 0x7f]), 8_388_607.0 / 8_388_608.0);
        assert_eq!(Encoding::Int(4).decode(&i32::MIN.to_le_bytes()), -1.0);
        assert_eq!(Encoding::F64.decode(&0.25f64.to_le_bytes()), 0.25);
        assert!(Encoding::F64.decode(&1e300f64.to_le_bytes()).is_infinite());
    }
}
