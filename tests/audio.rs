//! Audio pre-processing for AST (src/preprocess/audio/) against transformers' reference chain
//! (tests/fixtures/audio/, made by scripts/fixtures/make_audio_fixtures.py: torchaudio 2.11.1's
//! `functional.resample`, then `ASTFeatureExtractor` of transformers 5.24 on its torchaudio path),
//! and against crafted and hostile WAV files and sample buffers. Runs natively and in headless
//! Chromium: same bytes, same numbers, same typed errors, never a panic.

#[path = "common/mod.rs"]
mod common;

use hugrt::preprocess::PreprocessError;
use hugrt::preprocess::audio::{
    Audio, AstFeatureConfig, AstFeatureExtractor, MAX_SAMPLES, decode_wav, decode_wav_limited, resample,
};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A test that runs natively and in the browser.
macro_rules! both {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    )*};
}

// ---------- tolerances ----------

/// Resampled samples (|x| ≤ 1) against torchaudio's float32 output: its kernel is built in f32
/// (ours in f64), which moves samples by up to ~1e-5 (meta.json `resample_f32_vs_f64_max_abs`).
const RESAMPLE_ATOL: f32 = 2e-5;
/// Normalised features against the float64 run of the reference chain: what is left is the f32
/// rounding of the resampled signal (the extractor's input is f32, as in transformers), which
/// matters only in near-empty bins (measured: 9e-5 in mel bin 126 of the clip upsampled from 8 kHz,
/// whose content stops at 4 kHz; ≤ 1e-5 elsewhere).
const FEATURES_F64_ATOL: f32 = 2e-4;
/// Normalised features against the float32 extractor itself: its own distance from float64 on the
/// same signal (meta.json `features_f32_vs_f64_max_abs`, 4e-5..6e-3: its float32 FFT and resampler
/// have a noise floor that dominates near-silent bins) plus this margin.
const FEATURES_F32_MARGIN: f32 = 1e-4;
/// Against transformers' numpy path (no torchaudio): float64 throughout, with its own mel filters
/// (float64; ours are torchaudio's f32 ones). Measured 7e-6.
const FEATURES_NUMPY_ATOL: f32 = 5e-5;

// ---------- fixtures ----------

const META: &str = include_str!("fixtures/audio/meta.json");

struct Fixture {
    name: &'static str,
    wav: &'static [u8],
    features: &'static [u8],
    features_f64: &'static [u8],
    resampled: &'static [u8],
}

macro_rules! fixture {
    ($name:literal) => {
        Fixture {
            name: $name,
            wav: include_bytes!(concat!("fixtures/audio/", $name, ".wav")),
            features: include_bytes!(concat!("fixtures/audio/", $name, ".features.bin")),
            features_f64: include_bytes!(concat!("fixtures/audio/", $name, ".features_f64.bin")),
            resampled: include_bytes!(concat!("fixtures/audio/", $name, ".resampled.bin")),
        }
    };
}

const FIXTURES: [Fixture; 5] = [
    fixture!("chirp_16k"),
    fixture!("tone_44k1"),
    fixture!("noise_22k05"),
    fixture!("sweep_48k"),
    fixture!("long_8k"),
];

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

fn meta(name: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_str(META).expect("meta.json");
    all["signals"][name].clone()
}

fn usizes(v: &serde_json::Value) -> Vec<usize> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("int") as usize).collect()
}

fn extractor() -> AstFeatureExtractor {
    let all: serde_json::Value = serde_json::from_str(META).expect("meta.json");
    AstFeatureExtractor::from_json(all["config"].to_string().as_bytes()).expect("AST config")
}

/// Largest |a − b| and where.
fn max_diff(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).enumerate().fold((0.0, 0), |(m, at), (i, (x, y))| if (x - y).abs() > m { ((x - y).abs(), i) } else { (m, at) })
}

/// The stored rows (meta `frames`) of a (1024, 128) output.
fn rows(values: &[f32], frames: &[usize]) -> Vec<f32> {
    frames.iter().flat_map(|f| values[f * 128..(f + 1) * 128].iter().copied()).collect()
}

// ---------- WAV writing for crafted files ----------

const PCM_GUID: [u8; 16] = [1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];
const FLOAT_GUID: [u8; 16] = [3, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71];

/// A WAV file: format tag 1 or 3 (16-byte fmt), or 0xFFFE with `guid` (40-byte fmt, valid bits =
/// container bits unless `valid_bits`), and a data chunk of `data` whose size field is `data_len`
/// (the real length unless given).
struct Wav {
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    valid_bits: Option<u16>,
    guid: [u8; 16],
    data_len: Option<u32>,
}

impl Wav {
    fn pcm(channels: u16, rate: u32, bits: u16) -> Wav {
        Wav { tag: 1, channels, rate, bits, valid_bits: None, guid: PCM_GUID, data_len: None }
    }

    fn bytes(&self, data: &[u8]) -> Vec<u8> {
        let block = self.channels.wrapping_mul(self.bits / 8);
        let mut fmt = Vec::new();
        fmt.extend(self.tag.to_le_bytes());
        fmt.extend(self.channels.to_le_bytes());
        fmt.extend(self.rate.to_le_bytes());
        fmt.extend(self.rate.wrapping_mul(u32::from(block)).to_le_bytes());
        fmt.extend(block.to_le_bytes());
        fmt.extend(self.bits.to_le_bytes());
        if self.tag == 0xFFFE {
            fmt.extend(22u16.to_le_bytes());
            fmt.extend(self.valid_bits.unwrap_or(self.bits).to_le_bytes());
            fmt.extend(0x4u32.to_le_bytes());
            fmt.extend(self.guid);
        }
        let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        out.extend((fmt.len() as u32).to_le_bytes());
        out.extend(fmt);
        out.extend(b"data");
        out.extend(self.data_len.unwrap_or(data.len() as u32).to_le_bytes());
        out.extend(data);
        let riff = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff.to_le_bytes());
        out
    }
}

fn i16_data(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|s| s.to_le_bytes()).collect()
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("present")
}

fn decode_err(r: Result<Audio, PreprocessError>) -> PreprocessError {
    r.expect_err("should be refused")
}

both! {
// ---------- the reference chain ----------

fn fixtures_decode_to_their_declared_shape() {
    for f in &FIXTURES {
        let m = meta(f.name);
        let audio = decode_wav(f.wav).expect(f.name);
        assert_eq!(audio.sample_rate as u64, m["sample_rate"].as_u64().unwrap(), "{}", f.name);
        assert_eq!(audio.channels as u64, m["channels"].as_u64().unwrap(), "{}", f.name);
        assert_eq!(audio.samples.len() as u64, m["samples_per_channel"].as_u64().unwrap(), "{}", f.name);
        assert!(audio.samples.iter().all(|s| s.abs() <= 1.0));
    }
}

fn resampling_matches_torchaudio() {
    for f in &FIXTURES {
        let m = meta(f.name);
        let audio = decode_wav(f.wav).expect(f.name);
        let ours = resample(&audio.samples, audio.sample_rate, 16000).expect("resamples");
        assert_eq!(ours.len() as u64, m["resampled_len"].as_u64().unwrap(), "{}", f.name);
        let windows: Vec<Vec<usize>> = m["windows"].as_array().unwrap().iter().map(usizes).collect();
        let ours: Vec<f32> = windows.iter().flat_map(|w| ours[w[0]..w[0] + w[1]].iter().copied()).collect();
        let (err, at) = max_diff(&ours, &f32s(f.resampled));
        common::log(&format!("resample {} {} Hz -> 16 kHz: max |diff| {err:.2e} (at {at}) vs torchaudio f32", f.name, audio.sample_rate));
        assert!(err <= RESAMPLE_ATOL, "{}: {err} at {at}", f.name);
    }
}

fn features_match_the_ast_feature_extractor() {
    let fe = extractor();
    for f in &FIXTURES {
        let m = meta(f.name);
        let audio = decode_wav(f.wav).expect(f.name);
        let values = fe.extract(&audio).expect("features");
        assert_eq!(values.len(), 1024 * 128);
        let frames = usizes(&m["frames"]);
        let n_frames = m["n_frames"].as_u64().unwrap() as usize;
        let ours = rows(&values, &frames);

        let (e64, at64) = max_diff(&ours, &f32s(f.features_f64));
        let (e32, at32) = max_diff(&ours, &f32s(f.features));
        let ref_noise = m["features_f32_vs_f64_max_abs"].as_f64().unwrap() as f32;
        common::log(&format!(
            "features {}: {n_frames} frames; max |diff| {e64:.2e} vs the f64 chain (frame {}, mel {}), {e32:.2e} vs transformers f32 (frame {}, mel {}; its own f32-vs-f64 {ref_noise:.2e})",
            f.name, frames[at64 / 128], at64 % 128, frames[at32 / 128], at32 % 128
        ));
        assert!(e64 <= FEATURES_F64_ATOL, "{} vs f64: {e64}", f.name);
        assert!(e32 <= ref_noise + FEATURES_F32_MARGIN, "{} vs f32: {e32}", f.name);

        // Rows past the signal are zeros normalised: (0 − mean) / (2·std), exactly as numpy does it.
        let pad = (0.0f32 - -4.2677393f64 as f32) / (4.5689974f64 * 2.0) as f32;
        if let Some(reference_pad) = m["padding_row_value"].as_f64() {
            assert_eq!(pad, reference_pad as f32);
        }
        assert!(values[n_frames.min(1024) * 128..].iter().all(|v| *v == pad), "{}", f.name);
    }
}

fn long_input_is_truncated_to_max_length() {
    let fe = extractor();
    let long = &FIXTURES[4];
    let audio = decode_wav(long.wav).unwrap();
    let x16 = resample(&audio.samples, audio.sample_rate, 16000).unwrap();
    assert_eq!(fe.num_frames(x16.len()), 1058);
    let values = fe.extract_resampled(&x16).unwrap();
    assert_eq!(values.len(), 1024 * 128);
    // The last kept frame is real signal, and it is the same frame as in a longer output.
    let wide = AstFeatureExtractor::new(AstFeatureConfig { max_length: 1058, ..fe.config().clone() }).unwrap();
    let all = wide.extract_resampled(&x16).unwrap();
    assert_eq!(&all[..1024 * 128], &values[..]);
    // extract() resamples only the 10.24 s the frames see: the same numbers.
    assert!(fe.extract(&audio).unwrap() == values);
    // And a 16 kHz signal past 10.24 s.
    let at16k = Audio::mono(x16.clone(), 16000).unwrap();
    assert!(fe.extract(&at16k).unwrap() == values);
}

fn features_match_the_numpy_path_too() {
    const NUMPY: &[u8] = include_bytes!("fixtures/audio/chirp_16k.numpy_features.bin");
    let audio = decode_wav(FIXTURES[0].wav).unwrap();
    let values = extractor().extract(&audio).unwrap();
    let reference = f32s(NUMPY);
    let (err, at) = max_diff(&values[..reference.len()], &reference);
    common::log(&format!("features chirp_16k vs transformers' numpy path: max |diff| {err:.2e} (frame {}, mel {})", at / 128, at % 128));
    assert!(err <= FEATURES_NUMPY_ATOL, "{err}");
}

fn web_audio_channels_give_the_wav_path_result() {
    // The stereo fixture as a page would hand it over: planar f32 channels.
    let tone = &FIXTURES[1];
    let frames = meta(tone.name)["samples_per_channel"].as_u64().unwrap() as usize;
    let data = &tone.wav[tone.wav.len() - frames * 4..]; // the data chunk ends the file
    let (mut left, mut right) = (Vec::new(), Vec::new());
    for frame in data.chunks_exact(4) {
        left.push(i16::from_le_bytes([frame[0], frame[1]]) as f32 / 32768.0);
        right.push(i16::from_le_bytes([frame[2], frame[3]]) as f32 / 32768.0);
    }
    let planar = Audio::from_channels(&[&left, &right], 44100).unwrap();
    assert!(planar == decode_wav(tone.wav).unwrap(), "planar channels and the WAV differ");
    let fe = extractor();
    assert_eq!(fe.extract(&planar).unwrap(), fe.extract(&decode_wav(tone.wav).unwrap()).unwrap());
}

// ---------- formats ----------

fn every_sample_format_decodes_exactly() {
    // Two frames of stereo: (full-scale negative, half-scale positive), (zero, small negative).
    let expect = [-1.0f32, 0.5, 0.0, -0.25];
    let mix = vec![(-1.0f32 + 0.5) / 2.0, (0.0f32 - 0.25) / 2.0];
    let u8s: Vec<u8> = [0u8, 192, 128, 96].to_vec();
    let i16s = i16_data(&[-32768, 16384, 0, -8192]);
    let i24s: Vec<u8> = [-(1i32 << 23), 1 << 22, 0, -(1 << 21)].iter().flat_map(|v| v.to_le_bytes()[..3].to_vec()).collect();
    let i32s: Vec<u8> = [i32::MIN, 1 << 30, 0, -(1 << 29)].iter().flat_map(|v| v.to_le_bytes()).collect();
    let f32s_: Vec<u8> = expect.iter().flat_map(|v| v.to_le_bytes()).collect();
    let i24_in_32: Vec<u8> = [-(1i32 << 23), 1 << 22, 0, -(1 << 21)].iter().flat_map(|v| (v << 8).to_le_bytes()).collect();
    let cases: Vec<(&str, Wav, Vec<u8>)> = vec![
        ("pcm u8", Wav::pcm(2, 8000, 8), u8s),
        ("pcm s16", Wav::pcm(2, 8000, 16), i16s.clone()),
        ("pcm s24", Wav::pcm(2, 8000, 24), i24s.clone()),
        ("pcm s32", Wav::pcm(2, 8000, 32), i32s.clone()),
        ("float32", Wav { tag: 3, ..Wav::pcm(2, 8000, 32) }, f32s_.clone()),
        ("extensible s16", Wav { tag: 0xFFFE, ..Wav::pcm(2, 8000, 16) }, i16s),
        ("extensible s24", Wav { tag: 0xFFFE, ..Wav::pcm(2, 8000, 24) }, i24s),
        ("extensible s24 in 32", Wav { tag: 0xFFFE, valid_bits: Some(24), ..Wav::pcm(2, 8000, 32) }, i24_in_32),
        ("extensible float32", Wav { tag: 0xFFFE, guid: FLOAT_GUID, ..Wav::pcm(2, 8000, 32) }, f32s_),
        ("float64", Wav { tag: 3, ..Wav::pcm(2, 8000, 64) }, expect.iter().flat_map(|v| f64::from(*v).to_le_bytes()).collect()),
    ];
    for (what, wav, data) in cases {
        let audio = decode_wav(&wav.bytes(&data)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((audio.sample_rate, audio.channels), (8000, 2), "{what}");
        assert_eq!(audio.samples, mix, "{what}");
    }
}

fn unknown_and_odd_sized_chunks_are_skipped() {
    let data = i16_data(&[100, -200, 300, -400]);
    let plain = Wav::pcm(2, 16000, 16).bytes(&data);
    let expected = decode_wav(&plain).unwrap();
    // An odd-sized chunk is followed by a pad byte; chunks may come before and after fmt.
    let at = find(&plain, b"data");
    let mut odd = plain[..at].to_vec();
    odd.extend(b"junk\x03\0\0\0abc\0LIST\x04\0\0\0INFO");
    odd.extend(&plain[at..]);
    assert_eq!(decode_wav(&odd).unwrap(), expected);
    let mut first = plain[..12].to_vec();
    first.extend(b"bext\x01\0\0\0x\0");
    first.extend(&plain[12..]);
    assert_eq!(decode_wav(&first).unwrap(), expected);
    // A WAVE_FORMAT_EXTENSIBLE fmt chunk with extra bytes past its 40 (cbSize 24).
    let ext = Wav { tag: 0xFFFE, ..Wav::pcm(2, 16000, 16) }.bytes(&data);
    let fmt = find(&ext, b"fmt ");
    let mut long = ext[..fmt + 4].to_vec();
    long.extend(42u32.to_le_bytes());
    long.extend(&ext[fmt + 8..fmt + 8 + 40]);
    long.extend([0, 0]);
    long.extend(&ext[fmt + 8 + 40..]);
    assert_eq!(decode_wav(&long).unwrap(), expected);
}

// ---------- hostile WAV files ----------

fn every_truncation_is_a_decode_error() {
    let wav = Wav::pcm(2, 16000, 16).bytes(&i16_data(&[1, 2, 3, 4, 5, 6]));
    for cut in 0..wav.len() {
        match decode_wav(&wav[..cut]) {
            Err(PreprocessError::Decode { format: "WAV", .. }) => {}
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    assert_eq!(decode_wav(&wav).unwrap().samples.len(), 3);
    // The fixtures, cut inside their data.
    for f in &FIXTURES {
        assert!(matches!(decode_wav(&f.wav[..f.wav.len() - 3]), Err(PreprocessError::Decode { .. })), "{}", f.name);
    }
}

fn a_data_chunk_claiming_4_gb_allocates_nothing() {
    for data_len in [u32::MAX - 1, u32::MAX - 3, 1 << 31, 9] {
        let wav = Wav { data_len: Some(data_len), ..Wav::pcm(2, 16000, 16) }.bytes(&i16_data(&[1, 2, 3, 4]));
        match decode_err(decode_wav(&wav)) {
            PreprocessError::Decode { detail, .. } => assert!(detail.contains("claims"), "{detail}"),
            e => panic!("{data_len}: {e:?}"),
        }
    }
    // 0xFFFFFFFF is a streaming writer's "length unknown": the data runs to the end of the file
    // (whole frames).
    let mut data = i16_data(&[1, 2, 3, 4]);
    data.push(7);
    let wav = Wav { data_len: Some(u32::MAX), ..Wav::pcm(2, 16000, 16) }.bytes(&data);
    assert_eq!(decode_wav(&wav).unwrap().samples, vec![1.5 / 32768.0, 3.5 / 32768.0]);
    // A data chunk that is not whole frames.
    let wav = Wav::pcm(2, 16000, 16).bytes(&i16_data(&[1, 2, 3]));
    assert!(matches!(decode_wav(&wav), Err(PreprocessError::Decode { .. })));
}

fn zero_channels_or_rate_are_decode_errors() {
    let data = i16_data(&[1, 2]);
    for wav in [Wav::pcm(0, 16000, 16), Wav::pcm(1, 0, 16), Wav { tag: 0xFFFE, ..Wav::pcm(0, 16000, 16) }] {
        let e = decode_err(decode_wav(&wav.bytes(&data)));
        assert!(matches!(e, PreprocessError::Decode { format: "WAV", .. }), "{e:?}");
    }
    // A rate that is no audio rate: Input, as for PCM buffers.
    assert!(matches!(decode_wav(&Wav::pcm(1, 400, 16).bytes(&data)), Err(PreprocessError::Input(_))));
    assert!(matches!(decode_wav(&Wav::pcm(1, 4_000_000, 16).bytes(&data)), Err(PreprocessError::Input(_))));
}

fn unsupported_or_foreign_files_are_decode_errors() {
    let data = [0u8; 16];
    let cases = [
        Wav { tag: 2, ..Wav::pcm(1, 16000, 16) }.bytes(&data),                         // ADPCM
        Wav { tag: 3, ..Wav::pcm(1, 16000, 16) }.bytes(&data),                         // float16
        Wav { tag: 1, ..Wav::pcm(1, 16000, 64) }.bytes(&data),                         // int64
        Wav { tag: 0xFFFE, guid: [3, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9], ..Wav::pcm(1, 16000, 32) }.bytes(&data),
        Wav { tag: 0xFFFE, guid: [9; 16], ..Wav::pcm(1, 16000, 16) }.bytes(&data),     // unknown subformat
        Wav::pcm(1, 16000, 12).bytes(&data),                                           // not whole bytes
        Wav::pcm(1, 16000, 0).bytes(&data),
        b"ID3\x04\0\0\0\0\0\0".to_vec(),                                                 // an MP3
        b"RIFF\x04\0\0\0AVI ".to_vec(),
        Vec::new(),
    ];
    for (i, wav) in cases.iter().enumerate() {
        let e = decode_err(decode_wav(wav));
        assert!(matches!(e, PreprocessError::Decode { format: "WAV", .. }), "case {i}: {e:?}");
    }
}

fn empty_and_non_finite_audio_are_input_errors() {
    assert!(matches!(decode_wav(&Wav::pcm(2, 16000, 16).bytes(&[])), Err(PreprocessError::Input(_))));
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let data: Vec<u8> = [0.5f32, bad, 0.25].iter().flat_map(|v| v.to_le_bytes()).collect();
        let e = decode_err(decode_wav(&Wav { tag: 3, ..Wav::pcm(1, 16000, 32) }.bytes(&data)));
        assert!(matches!(e, PreprocessError::Input(ref m) if m.contains("sample 1")), "{bad}: {e:?}");
    }
}

fn too_long_audio_is_too_large() {
    let wav = Wav::pcm(2, 16000, 16).bytes(&i16_data(&[0; 20]));
    assert_eq!(decode_wav_limited(&wav, 10).unwrap().samples.len(), 10);
    assert!(matches!(decode_wav_limited(&wav, 9), Err(PreprocessError::TooLarge { what: "audio", .. })));
    // Resampling up past the cap.
    let x = vec![0f32; MAX_SAMPLES / 700];
    assert!(matches!(resample(&x, 1000, 768_000), Err(PreprocessError::TooLarge { .. })));
}

fn mutated_files_never_panic() {
    // A deterministic mutation run over a small valid file of each kind: any result but a panic.
    let seeds = [
        Wav::pcm(2, 16000, 16).bytes(&i16_data(&[1, -2, 3, -4, 5, -6, 7, -8])),
        Wav { tag: 0xFFFE, guid: FLOAT_GUID, ..Wav::pcm(1, 44100, 32) }.bytes(&[0, 0, 128, 63, 0, 0, 0, 191]),
        Wav::pcm(1, 8000, 8).bytes(&[1, 2, 3, 250]),
    ];
    let mut state = 0x9e37_79b9_u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    let mut ok = 0;
    for seed in &seeds {
        for _ in 0..700 {
            let mut m = seed.clone();
            for _ in 0..1 + next() % 4 {
                let i = next() as usize % m.len();
                m[i] = match next() % 4 {
                    0 => next() as u8,
                    1 => 0,
                    2 => 0xff,
                    _ => m[i] ^ (1 << (next() % 8)),
                };
            }
            let cut = if next() % 4 == 0 { next() as usize % m.len() } else { m.len() };
            if decode_wav(&m[..cut]).is_ok() {
                ok += 1;
            }
        }
    }
    common::log(&format!("mutated WAV files: {ok} of 2100 still decode"));
}

// ---------- PCM sample buffers (Web Audio) ----------

fn pcm_buffers_are_checked() {
    assert!(matches!(Audio::from_channels(&[], 48000), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::from_channels(&[&[]], 48000), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::from_channels(&[&[0.1, 0.2], &[0.1]], 48000), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::from_channels(&[&[0.1, f32::NAN]], 48000), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::from_channels(&[&[0.1], &[f32::INFINITY]], 48000), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::from_channels(&[&[0.1]], 0), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::mono(vec![], 16000), Err(PreprocessError::Input(_))));
    assert!(matches!(Audio::mono(vec![f32::NAN], 16000), Err(PreprocessError::Input(_))));
    let a = Audio::from_channels(&[&[0.5, -1.0], &[0.25, 1.0]], 48000).unwrap();
    assert_eq!((a.channels, a.samples.clone()), (2, vec![0.375, 0.0]));
    assert!((a.duration_s() - 2.0 / 48000.0).abs() < 1e-12);

    // Shorter than one 25 ms frame after resampling, and a NaN handed straight to the extractor.
    let fe = extractor();
    assert!(matches!(fe.extract(&Audio::mono(vec![0.1; 1000], 48000).unwrap()), Err(PreprocessError::Input(_))));
    assert!(fe.extract(&Audio::mono(vec![0.1; 1200], 48000).unwrap()).is_ok());
    assert!(matches!(fe.extract_resampled(&[f32::NAN; 500]), Err(PreprocessError::Input(_))));
}
}
