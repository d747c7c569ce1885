//! Whisper against transformers (tests/fixtures/whisper/, made by
//! scripts/fixtures/make_whisper_fixtures.py): `WhisperFeatureExtractor` on seeded signals, and a
//! tiny random WhisperForConditionalGeneration (multilingual, timestamps) against transformers'
//! float64 run — encoder output, the raw logits of every decoding step, and `generate()`'s greedy
//! tokens with the language detected, forced, translated and with timestamps — on the GPU
//! (lavapipe natively, SwiftShader in Chromium) and on the CPU backend.

use hugrt::formats::{TensorTable, read_table};
use hugrt::generate::whisper::{DecodeOptions, Task, WhisperGeneration};
use hugrt::models::whisper::Whisper;
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

// ---------- the tiny random model against transformers' float64 run ----------

/// |hugrt − transformers f64| relative to the largest |reference| value of the case: the
/// encoder's output (1500 positions; values of order 1–5) and the decoder's logits (order 1–10).
/// Both include the features' own error (≤ 3.3e-6 on this signal). Measured on lavapipe 1.1e-6
/// and 5.7e-7, on the CPU backend 8.0e-7 and 4.9e-7.
const ENCODER_TOL: f64 = 1e-5;
const LOGIT_TOL: f64 = 1e-5;

async fn tiny_whisper<B: hugrt::backend::Backend>(be: B) -> (Whisper<B>, WhisperGeneration) {
    let bytes = fixture!("tiny/model.safetensors");
    let model = Whisper::load(be, fixture!("tiny/config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    let rules = WhisperGeneration::from_json(fixture!("tiny/generation_config.json"), model.shape.vocab).expect("generation config");
    (model, rules)
}

fn max_rel(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, w| m.max(f64::from(w.abs())));
    got.iter().zip(want).map(|(g, w)| f64::from((g - w).abs())).fold(0.0, f64::max) / scale
}

async fn tiny_matches_transformers_on<B: hugrt::backend::Backend>(be: B) {
    let device = be.device();
    let exp: serde_json::Value = serde_json::from_str(include_str!("fixtures/whisper/expected.json")).unwrap();
    let arrays = fixture!("expected.safetensors");
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect() };
    let (mut model, rules) = tiny_whisper(be).await;
    let features = extractor().extract(&tensor(fixture!("features.safetensors"), "signal.speechlike")).unwrap();

    // Encoder: every 10th row.
    let d = model.shape.d_model as usize;
    let enc = model.encode_output(&features).await.expect("encodes");
    let rows: Vec<f32> = (0..1500).step_by(10).flat_map(|r| enc[r * d..(r + 1) * d].to_vec()).collect();
    let err = max_rel(&rows, &tensor(arrays, "encoder"));
    log(&format!("whisper tiny encoder on {device}: max relative error {err:.2e}"));
    assert!(err <= ENCODER_TOL, "encoder on {device}: {err:.2e}");

    // Language detected, transcribe, no timestamps: the raw logits of every step and the tokens.
    let cross = model.encode(&features).await.expect("encodes");
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let opts = DecodeOptions::default();
    let out = model.decode(&rules, &cross, &opts, |logits, _| {
        steps.push(logits.to_vec());
        true
    })
    .await
    .expect("decodes");
    assert_eq!(out.language, Some(exp["detected_language"].as_u64().unwrap() as u32), "detected language on {device}");
    assert_eq!(out.tokens, ids(&exp["detect_transcribe"]), "greedy tokens on {device}");
    let want = tensor(arrays, "detect_transcribe_logits");
    let vocab = model.shape.vocab as usize;
    // The reference's last row predicts past the length limit: compare the steps decoded.
    let got: Vec<f32> = steps.concat();
    let err = max_rel(&got, &want[..got.len()]);
    log(&format!("whisper tiny logits over {} steps on {device}: max relative error {err:.2e}", got.len() / vocab));
    assert!(err <= LOGIT_TOL, "logits on {device}: {err:.2e}");

    // German forced with timestamps; English translation.
    for (name, opts) in [
        ("de_timestamps", DecodeOptions { language: Some("german".into()), timestamps: true, ..Default::default() }),
        ("en_translate", DecodeOptions { language: Some("en".into()), task: Some(Task::Translate), ..Default::default() }),
    ] {
        let out = model.decode(&rules, &cross, &opts, |_, _| true).await.expect("decodes");
        assert_eq!(out.tokens, ids(&exp[name]), "{name} on {device}");
    }
    assert_eq!(model.backend.take_uncaptured_errors(), Vec::<String>::new());
}

both!(tiny_matches_transformers, cpu_tiny_matches_transformers, |d| async move { on_backend!(d, tiny_matches_transformers_on()) });

// ---------- the transcriber: windows, options and bad audio ----------

async fn tiny_transcriber(device: common::Device) -> hugrt::models::speech::Transcriber {
    use hugrt::models::speech::{SpeechFiles, Transcriber};
    let bytes = fixture!("tiny/model.safetensors");
    let files = SpeechFiles { config: fixture!("tiny/config.json"), generation_config: fixture!("tiny/generation_config.json"), preprocessor_config: fixture!("tiny/preprocessor_config.json"), tokenizer: fixture!("tiny/tokenizer.json") };
    let gpu = match device {
        common::Device::Gpu => Some(common::gpu_for(device).await.expect("a GPU")),
        common::Device::Cpu => None,
    };
    Transcriber::load(gpu, files, &table(bytes), &mut &bytes[..]).await.expect("loads")
}

async fn transcriber_handles_bad_audio_and_options_on(device: common::Device) {
    use hugrt::models::ModelError;
    use hugrt::models::speech::TranscribeOptions;
    use hugrt::preprocess::audio::Audio;
    let mut model = tiny_transcriber(device).await;
    let signal = tensor(fixture!("features.safetensors"), "signal.speechlike");
    let audio = Audio::mono(signal.clone(), 16000).unwrap();
    let run = async |model: &mut hugrt::models::speech::Transcriber, audio: &Audio, opts: TranscribeOptions| model.transcribe(audio, &opts, &mut |_| {}, &|| false).await;
    // Options the model cannot take: typed input errors, before any work.
    let bad = [
        TranscribeOptions { chunk_length_s: Some(45.0), ..Default::default() },
        TranscribeOptions { chunk_length_s: Some(0.0), ..Default::default() },
        TranscribeOptions { chunk_length_s: Some(10.0), stride_length_s: Some(5.0), ..Default::default() },
        TranscribeOptions { chunk_length_s: Some(f64::NAN), ..Default::default() },
        TranscribeOptions { decode: DecodeOptions { language: Some("klingon".into()), ..Default::default() }, ..Default::default() },
    ];
    for opts in bad {
        let err = run(&mut model, &audio, opts.clone()).await.expect_err("refused");
        assert!(matches!(err, ModelError::Input(_)), "{opts:?}: {err:?}");
    }
    // The model is still usable, and silence or a single sample is a transcript (of anything).
    let one = run(&mut model, &Audio::mono(vec![0.0], 16000).unwrap(), TranscribeOptions::default()).await.expect("one sample");
    assert_eq!(one.windows.len(), 1);
    let silence = run(&mut model, &Audio::mono(vec![0.0; 16000], 16000).unwrap(), TranscribeOptions::default()).await.expect("silence");
    assert!(silence.timings.tokens <= 40, "{silence:?}");
    // Another rate is resampled: 1.3 s at 44.1 kHz is one window.
    let at_44k = Audio::mono(vec![0.01; 57330], 44100).unwrap();
    assert_eq!(run(&mut model, &at_44k, TranscribeOptions::default()).await.expect("44.1 kHz").windows.len(), 1);
    // Stopping after the third token ends the window there, with the text so far.
    let stop_after = std::cell::Cell::new(0);
    let stopped = model.transcribe(&audio, &TranscribeOptions::default(), &mut |_| stop_after.set(stop_after.get() + 1), &|| stop_after.get() >= 3).await.expect("stops");
    assert!(stopped.stopped && stopped.timings.tokens == 3, "{:?}", stopped.timings);
    // Past 30 s: windows as transformers' chunk_iter cuts 30 s every 20 s (95 s: 0, 20, 40, 60, 80 s; the
    // last 15 s long).
    if device == common::Device::Cpu {
        let long = Audio::mono(signal.iter().copied().cycle().take(95 * 16000).collect(), 16000).unwrap();
        let out = run(&mut model, &long, TranscribeOptions { decode: DecodeOptions { language: Some("de".into()), timestamps: true, ..Default::default() }, ..Default::default() }).await.expect("95 s");
        let starts: Vec<f64> = out.windows.iter().map(|w| w.start_s).collect();
        assert_eq!(starts, [0.0, 20.0, 40.0, 60.0, 80.0]);
        assert_eq!(out.windows.last().map(|w| w.length_s), Some(15.0));
        assert_eq!(out.language.as_deref(), Some("de"));
        // Timed chunks placed by each window's offset (a random model's timestamps may run past
        // its window's audio, as transformers would place them too).
        let chunks = out.chunks.as_ref().expect("chunks");
        assert!(!chunks.is_empty());
        for c in chunks {
            let (a, b) = c.timestamp;
            assert!(a.is_some_and(|a| a >= 0.0) && b.is_none_or(|b| b >= a.unwrap_or(0.0)), "{c:?}");
        }
    }
    assert_eq!(model.take_uncaptured_errors(), Vec::<String>::new());
}

both!(transcriber_handles_bad_audio_and_options, cpu_transcriber_handles_bad_audio_and_options, |d| async move { transcriber_handles_bad_audio_and_options_on(d).await });

/// Sampled decoding: the same seed gives the same tokens, another seed other tokens; every token
/// obeys the rules (no suppressed token; at a high temperature the draws are near uniform over
/// what the rules leave, so a rule not applied would show).
async fn sampling_is_seeded_and_follows_the_rules_on<B: hugrt::backend::Backend>(be: B) {
    use hugrt::gpu::ops::sample::Sampling;
    let (mut model, rules) = tiny_whisper(be).await;
    let features = extractor().extract(&tensor(fixture!("features.safetensors"), "signal.speechlike")).unwrap();
    let cross = model.encode(&features).await.expect("encodes");
    let hot = |seed| DecodeOptions { sampling: Some(Sampling { temperature: 5.0, top_k: 0, top_p: 1.0, min_p: 0.0 }), seed, language: Some("fr".into()), ..Default::default() };
    let a = model.decode(&rules, &cross, &hot(1), |_, _| true).await.unwrap();
    let b = model.decode(&rules, &cross, &hot(1), |_, _| true).await.unwrap();
    let c = model.decode(&rules, &cross, &hot(2), |_, _| true).await.unwrap();
    assert_eq!(a.tokens, b.tokens, "same seed");
    assert_ne!(a.tokens, c.tokens, "another seed");
    for out in [&a, &c] {
        let generated = out.generated();
        assert!(generated.iter().all(|t| !rules.suppress_tokens.contains(t)), "{generated:?}");
        assert!(!rules.begin_suppress_tokens.contains(&generated[0]), "{generated:?}");
    }
}

both!(sampling_is_seeded_and_follows_the_rules, cpu_sampling_is_seeded_and_follows_the_rules, |d| async move { on_backend!(d, sampling_is_seeded_and_follows_the_rules_on()) });

// Overlapping windows merged as transformers' ASR pipeline merges them (`_decode_asr` on three
// hand-made windows of a 70 s recording: tests/fixtures/whisper/merge_expected.json, made by
// scripts/fixtures/make_whisper_merge_fixture.py): the same text, and with timestamps the same
// timed chunks.
gpu_test!(windows_merge_as_transformers_does, async {
    use hugrt::generate::whisper::{WindowOutput, merge_windows};
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/whisper/merge_expected.json")).unwrap();
    let tokenizer = hugrt::tokenizer::Tokenizer::from_json(fixture!("tiny/tokenizer.json")).unwrap();
    let (eos, timestamp_begin) = (280, 291);
    for (case, timestamps) in [("timestamps", true), ("text", false)] {
        let e = &expected[case];
        let windows: Vec<WindowOutput> = e["windows"]
            .as_array()
            .unwrap()
            .iter()
            .zip(e["strides"].as_array().unwrap())
            .map(|(w, s)| {
                let s: Vec<f64> = s.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                WindowOutput { tokens: w.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect(), stride: Some((s[0], s[1], s[2])) }
            })
            .collect();
        let chunks = merge_windows(&windows, timestamp_begin, |t| t >= eos && t < timestamp_begin, timestamps);
        let texts: Vec<String> = chunks.iter().map(|c| tokenizer.decode(&c.tokens, false).unwrap()).collect();
        assert_eq!(texts.concat(), e["text"].as_str().unwrap(), "{case}: text");
        if timestamps {
            let want = e["chunks"].as_array().unwrap();
            assert_eq!(chunks.len(), want.len(), "{case}: {texts:?}");
            for ((c, text), w) in chunks.iter().zip(&texts).zip(want) {
                assert_eq!(text, w["text"].as_str().unwrap());
                let (a, b) = (w["timestamp"][0].as_f64(), w["timestamp"][1].as_f64());
                assert_eq!(c.timestamp, (a, b), "{text}");
            }
        }
    }
});
