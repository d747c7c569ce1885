//! Whisper against transformers (tests/fixtures/whisper/, made by
//! scripts/fixtures/make_whisper_fixtures.py): `WhisperFeatureExtractor` on seeded signals, and a
//! tiny random WhisperForConditionalGeneration (multilingual, timestamps) against transformers'
//! float64 run — encoder output, the raw logits of every decoding step, and `generate()`'s greedy
//! tokens with the language detected, forced, translated and with timestamps — on the GPU
//! (lavapipe natively, SwiftShader in Chromium) and on the CPU backend.

use hugrt::formats::{TensorTable, read_table};
use hugrt::preprocess::audio::WhisperFeatureExtractor;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::log;

/// |features − transformers| (values of order 1: the scaled log10 mel energies). transformers
/// computes them in f32 (torch's STFT and mel product), hugrt in f64: measured ≤ 3.3e-6, but
/// 4.7e-5 in the chirp's near-silent bins, where a relative f32 error in the energy becomes an
/// absolute one after log10.
const FEATURES_ATOL: f32 = 1e-4;

macro_rules! fixture {
    ($file:literal) => {
        include_bytes!(concat!("fixtures/whisper/", $file))
    };
}

fn table(bytes: &[u8]) -> TensorTable {
    read_table(bytes, bytes.len() as u64, "fixture.safetensors").expect("reads")
}

/// Tensor `name` of safetensors `bytes` as f32 (F32 or I32 stored).
fn tensor(bytes: &[u8], name: &str) -> Vec<f32> {
    let t = table(bytes);
    let info = t.get(name).unwrap_or_else(|| panic!("{name} in fixture"));
    let raw = &bytes[info.range.start as usize..info.range.end as usize];
    raw.chunks_exact(4)
        .map(|c| {
            let b = [c[0], c[1], c[2], c[3]];
            if info.dtype == hugrt::formats::DType::I32 { i32::from_le_bytes(b) as f32 } else { f32::from_le_bytes(b) }
        })
        .collect()
}

fn extractor() -> WhisperFeatureExtractor {
    WhisperFeatureExtractor::from_json(fixture!("tiny/preprocessor_config.json")).expect("config")
}

gpu_test!(features_match_transformers, async {
    let bytes = fixture!("features.safetensors");
    let x = extractor();
    for name in ["speechlike", "chirp", "short", "tiny", "long"] {
        let signal = if name == "long" { tensor(bytes, "signal.short").repeat(61) } else { tensor(bytes, &format!("signal.{name}")) };
        let frames = tensor(bytes, &format!("frames.{name}"));
        let want = tensor(bytes, &format!("features.{name}"));
        let got = x.extract(&signal).expect("extracts");
        assert_eq!(got.len(), 80 * 3000, "{name}: shape");
        let mut worst = 0f32;
        for m in 0..80 {
            for (j, &t) in frames.iter().enumerate() {
                let (g, w) = (got[m * 3000 + t as usize], want[m * frames.len() + j]);
                let err = (g - w).abs();
                assert!(err <= FEATURES_ATOL, "{name}: mel {m} frame {t}: {g} vs {w}");
                worst = worst.max(err);
            }
        }
        log(&format!("whisper features {name} ({} samples): max |error| {worst:.2e}", signal.len()));
    }
});

gpu_test!(features_refuse_bad_audio_and_configs, async {
    let x = extractor();
    assert!(x.extract(&[0.1, f32::NAN, 0.2]).is_err());
    assert!(x.extract(&[f32::INFINITY]).is_err());
    // Empty audio is a window of silence: the floor everywhere.
    assert!(x.extract(&[]).expect("silence").iter().all(|&v| v == -1.5));
    for bad in [r#"{"feature_size": 0}"#, r#"{"n_fft": 0}"#, r#"{"hop_length": 0}"#, r#"{"chunk_length": 100000}"#, r#"{"dither": 1.0}"#, r#"{"feature_extractor_type": "ASTFeatureExtractor"}"#, r#"{"sampling_rate": 8000}"#, "[1]"] {
        assert!(WhisperFeatureExtractor::from_json(bad.as_bytes()).is_err(), "{bad}");
    }
});
