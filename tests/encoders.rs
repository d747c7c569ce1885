//! The encoders beyond sentence embeddings against transformers (tests/fixtures/{vit,ast,clip,
//! bert-mlm,bert-cls}, made by scripts/fixtures/make_encoder_fixtures.py): tiny random
//! ViTForImageClassification (F32 and F16 files), ASTForAudioClassification, CLIPModel (both towers,
//! its own BPE tokenizer) and BERT's fill-mask and sequence-classification heads, natively
//! (lavapipe) and in Chromium (SwiftShader): logits within `LOGIT_TOL` of transformers' float64
//! run on each file's own weights, the same top-1 label; bad inputs and configs are typed errors.
//! Each test body runs on the GPU backend and on the CPU fallback (`both!`).

use hugrt::backend::Backend;
use hugrt::formats::{TensorTable, read_table};
use hugrt::models::ModelError;
use hugrt::models::bert::Bert;
use hugrt::models::clip::Clip;
use hugrt::models::vit::{Ast, Vit, top_k};
use hugrt::tokenizer::Tokenizer;
use serde_json::Value;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::log;

/// |f32 − transformers f64| allowed on logits and unit-length embeddings, relative to the
/// largest |reference| value of the case (transformers' own float32 forward lands within 1.4e-6
/// absolute of its float64 one on these fixtures; logits are of order 1–10).
const LOGIT_TOL: f64 = 2e-5;

macro_rules! fixture {
    ($dir:literal, $file:literal) => {
        include_bytes!(concat!("fixtures/", $dir, "/", $file))
    };
}

fn expected(json: &str) -> Value {
    serde_json::from_str(json).expect("expected.json")
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().expect("array").iter().map(|r| r.as_array().expect("row").iter().map(|x| x.as_f64().expect("number")).collect()).collect()
}

fn table(bytes: &[u8]) -> TensorTable {
    read_table(bytes, bytes.len() as u64, "model.safetensors").expect("reads")
}

/// Max |got − want| over all rows, relative to the largest |want|; asserts the same argmax per row.
fn compare(what: &str, got: &[Vec<f32>], want: &[Vec<f64>]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let scale = want.iter().flatten().fold(0f64, |m, w| m.max(w.abs())).max(1e-30);
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what} row {i}: length");
        let err = g.iter().zip(w).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max) / scale;
        assert!(err <= LOGIT_TOL, "{what} row {i}: off by {err:.2e} (relative) > {LOGIT_TOL:.0e}");
        worst = worst.max(err);
        let top_want = w.iter().enumerate().fold((0, f64::MIN), |b, (j, &v)| if v > b.1 { (j, v) } else { b }).0;
        let top_got = top_k(g, 1)[0].0;
        assert_eq!(top_got, top_want, "{what} row {i}: top-1 label");
    }
    log(&format!("{what}: max relative error {worst:.2e}"));
    worst
}

async fn vit_matches<B: Backend>(be: B, variant: &str, bytes: &[u8]) {
    let exp = expected(include_str!("fixtures/vit/expected.json"));
    let device = be.device();
    let mut vit = Vit::load(be, fixture!("vit", "config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    assert_eq!(vit.labels, ["cat", "dog", "tabby, tabby cat", "bird", "fish"]);
    assert_eq!(vit.image_shape(), (3, 30, 30));
    let pixels = floats(&exp["pixel_values"]);
    let logits = vit.classify(&pixels).await.expect("classifies");
    compare(&format!("ViT {variant} on {device}"), &logits, &rows(&exp["variants"][variant]["logits"]));
    // One image alone gives its batched logits; a batch over several passes gives each its own.
    let one = vit.classify(&pixels[..3 * 30 * 30]).await.expect("one image");
    assert!(one[0].iter().zip(&logits[0]).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0)), "alone vs batched");
    let many: Vec<f32> = (0..100).flat_map(|k| pixels[(k % 2) * 2700..(k % 2 + 1) * 2700].to_vec()).collect();
    let out = vit.classify(&many).await.expect("100 images");
    assert_eq!(out.len(), 100);
    for (k, l) in out.iter().enumerate() {
        assert!(l.iter().zip(&logits[k % 2]).all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0)), "image {k} of 100");
    }
    let embeds = vit.embed(&pixels).await.expect("embeds");
    assert_eq!((embeds.len(), embeds[0].len()), (2, 32));
    assert_eq!(vit.backend.take_uncaptured_errors(), Vec::<String>::new());
}

both!(vit_f32_matches_transformers, cpu_vit_f32_matches_transformers, |d| async move { on_backend!(d, vit_matches("f32", fixture!("vit", "model.safetensors"))) });
both!(vit_f16_matches_transformers, cpu_vit_f16_matches_transformers, |d| async move { on_backend!(d, vit_matches("f16", fixture!("vit", "model-f16.safetensors"))) });

async fn vit_refuses_bad_input_and_configs_on<B: Backend>(be: B) {
    let bytes = fixture!("vit", "model.safetensors");
    let mut vit = Vit::load(be.another(), fixture!("vit", "config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    for (what, input) in [("empty", vec![]), ("a partial image", vec![0.5; 2700 + 5]), ("NaN", vec![f32::NAN; 2700]), ("infinity", vec![f32::INFINITY; 2700])] {
        let err = vit.classify(&input).await.expect_err(what);
        assert!(matches!(err, ModelError::Input(_)), "{what}: {err:?}");
        let err = vit.embed(&input).await.expect_err(what);
        assert!(matches!(err, ModelError::Input(_)), "{what} (embed): {err:?}");
    }
    let load = async |config: &[u8], bytes: &[u8]| Vit::load(be.another(), config, &table(bytes), &mut &bytes[..]).await.err();
    let mut config: Value = serde_json::from_slice(fixture!("vit", "config.json")).unwrap();
    config["patch_size"] = 5.into(); // 30 / 5 = 36 patches: the position table has 26 rows
    let err = load(&serde_json::to_vec(&config).unwrap(), bytes).await.expect("positions mismatch");
    assert!(matches!(err, ModelError::Tensor { .. }), "{err:?}");
    config["patch_size"] = 64.into();
    let err = load(&serde_json::to_vec(&config).unwrap(), bytes).await.expect("patch too big");
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    config["patch_size"] = 6.into();
    config["hidden_act"] = "swish".into();
    let err = load(&serde_json::to_vec(&config).unwrap(), bytes).await.expect("unknown activation");
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    let err = load(fixture!("ast", "config.json"), bytes).await.expect("wrong model type");
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    let cut = &bytes[..bytes.len() - 100];
    let err = Vit::load(be.another(), fixture!("vit", "config.json"), &table(bytes), &mut &cut[..]).await.err().expect("truncated weights");
    assert!(matches!(err, ModelError::Read(_)), "{err:?}");
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(vit_refuses_bad_input_and_configs, cpu_vit_refuses_bad_input_and_configs, |d| async move { on_backend!(d, vit_refuses_bad_input_and_configs_on()) });

async fn ast_matches_transformers_on<B: Backend>(be: B) {
    let exp = expected(include_str!("fixtures/ast/expected.json"));
    let bytes = fixture!("ast", "model.safetensors");
    let err = Ast::load(be.another(), fixture!("vit", "config.json"), &table(bytes), &mut &bytes[..]).await.err().expect("wrong model type");
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    let device = be.device();
    let mut ast = Ast::load(be, fixture!("ast", "config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    assert_eq!((ast.max_length, ast.mel_bins), (40, 24));
    assert_eq!(ast.labels[4], "Silence");
    let values = floats(&exp["input_values"]);
    let logits = ast.classify(&values).await.expect("classifies");
    compare(&format!("AST on {device}"), &logits, &rows(&exp["variants"]["f32"]["logits"]));
    for (what, input) in [("a partial clip", values[..100].to_vec()), ("NaN", vec![f32::NAN; 40 * 24])] {
        let err = ast.classify(&input).await.expect_err(what);
        assert!(matches!(err, ModelError::Input(_)), "{what}: {err:?}");
    }
    assert_eq!(ast.backend.take_uncaptured_errors(), Vec::<String>::new());
}

both!(ast_matches_transformers, cpu_ast_matches_transformers, |d| async move { on_backend!(d, ast_matches_transformers_on()) });

async fn clip_matches_transformers_on<B: Backend>(be: B) {
    let exp = expected(include_str!("fixtures/clip/expected.json"));
    let bytes = fixture!("clip", "model.safetensors");
    let device = be.device();
    let mut clip = Clip::load(be, fixture!("clip", "config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    assert_eq!((clip.image_shape(), clip.max_text_len(), clip.projection_dim), ((3, 30, 30), 16, 16));
    let tok = Tokenizer::from_json(fixture!("clip", "tokenizer.json")).expect("tokenizer");
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).unwrap();
    let ids = clip.tokenize(&tok, &texts).expect("tokenizes");
    assert_eq!(ids, want_ids, "token ids equal CLIPTokenizer's");

    let dim = clip.projection_dim as usize;
    let chunk = |v: &Value| floats(v).chunks_exact(dim).map(|c| c.iter().map(|&x| f64::from(x)).collect()).collect::<Vec<Vec<f64>>>();
    let pixels = floats(&exp["pixel_values"]);
    let images = clip.image_embeds(&pixels).await.expect("image embeds");
    compare(&format!("CLIP image embeds on {device}"), &images, &chunk(&exp["image_embeds"]));
    let text = clip.text_embeds(&ids).await.expect("text embeds");
    compare(&format!("CLIP text embeds on {device}"), &text, &chunk(&exp["text_embeds"]));
    let logits = clip.logits_per_image(&images, &text);
    let want: Vec<Vec<f64>> = floats(&exp["logits_per_image"]).chunks_exact(texts.len()).map(|c| c.iter().map(|&x| f64::from(x)).collect()).collect();
    compare(&format!("CLIP logits per image on {device}"), &logits, &want);

    // Each text alone gives its batched embedding (the causal mask and the padding mask together).
    for (i, one) in ids.iter().enumerate() {
        let alone = clip.text_embeds(std::slice::from_ref(one)).await.expect("alone");
        assert!(alone[0].iter().zip(&text[i]).all(|(a, b)| (a - b).abs() <= 1e-5), "text {i} alone vs batched");
    }
    // Many texts: several passes, each text its own embedding.
    let many: Vec<Vec<u32>> = (0..300).map(|k| ids[k % ids.len()].clone()).collect();
    for (k, e) in clip.text_embeds(&many).await.expect("300 texts").iter().enumerate() {
        assert!(e.iter().zip(&text[k % ids.len()]).all(|(a, b)| (a - b).abs() <= 1e-5), "text {k} of 300");
    }
    for (what, batch) in [("longer than 16 positions", vec![vec![0; 17]]), ("id past the vocabulary", vec![vec![61]]), ("id past the vocabulary, second", vec![vec![59, 61]]), ("empty", vec![vec![]])] {
        let err = clip.text_embeds(&batch).await.expect_err(what);
        assert!(matches!(err, ModelError::Input(_)), "{what}: {err:?}");
    }
    for (what, input) in [("a partial image", pixels[..2700 - 1].to_vec()), ("NaN", vec![f32::NAN; 2700])] {
        let err = clip.image_embeds(&input).await.expect_err(what);
        assert!(matches!(err, ModelError::Input(_)), "{what}: {err:?}");
    }
    assert_eq!(clip.backend.take_uncaptured_errors(), Vec::<String>::new());
}

both!(clip_matches_transformers, cpu_clip_matches_transformers, |d| async move { on_backend!(d, clip_matches_transformers_on()) });

async fn bert_fill_mask_matches_transformers_on<B: Backend>(be: B) {
    let exp = expected(include_str!("fixtures/bert-mlm/expected.json"));
    let bytes = fixture!("bert-mlm", "model.safetensors");
    let device = be.device();
    let mut bert = Bert::load(be, fixture!("bert-mlm", "config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    assert!(bert.has_masked_lm() && !bert.has_classifier());
    let tok = Tokenizer::from_json(fixture!("bert-mlm", "tokenizer.json")).expect("tokenizer");
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).unwrap();
    let ids = bert.tokenize(&tok, &texts).expect("tokenizes");
    assert_eq!(ids, want_ids);
    let mask = exp["mask_id"].as_u64().unwrap() as u32;
    let got = bert.fill_mask(&ids, mask).await.expect("fills");
    // One row per text: the logits at each of its masks, one after the other.
    let per_text: Vec<Vec<f32>> = got.into_iter().map(|masks| masks.concat()).collect();
    compare(&format!("BERT fill-mask on {device}"), &per_text, &rows(&exp["logits"]));
    let err = bert.fill_mask(&[vec![2, 5, 3]], mask).await.expect_err("no mask token");
    assert!(matches!(err, ModelError::Input(_)), "{err:?}");
    let vocab = bert.config.vocab;
    let err = bert.fill_mask(&[vec![2, mask, vocab, 3]], mask).await.expect_err("id past the vocabulary");
    assert!(matches!(err, ModelError::Input(_)), "{err:?}");
    let err = bert.classify(&ids).await.expect_err("no classifier");
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    assert_eq!(bert.backend.take_uncaptured_errors(), Vec::<String>::new());
}

both!(bert_fill_mask_matches_transformers, cpu_bert_fill_mask_matches_transformers, |d| async move { on_backend!(d, bert_fill_mask_matches_transformers_on()) });

async fn bert_text_classification_matches_transformers_on<B: Backend>(be: B) {
    let exp = expected(include_str!("fixtures/bert-cls/expected.json"));
    let bytes = fixture!("bert-cls", "model.safetensors");
    let device = be.device();
    let mut bert = Bert::load(be, fixture!("bert-cls", "config.json"), &table(bytes), &mut &bytes[..]).await.expect("loads");
    assert!(bert.has_classifier() && !bert.has_masked_lm());
    assert_eq!(bert.config.labels, ["negative", "neutral", "positive"]);
    let tok = Tokenizer::from_json(fixture!("bert-cls", "tokenizer.json")).expect("tokenizer");
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).unwrap();
    let ids = bert.tokenize(&tok, &texts).expect("tokenizes");
    let logits = bert.classify(&ids).await.expect("classifies");
    compare(&format!("BERT text classification on {device}"), &logits, &rows(&exp["logits"]));
    let vocab = bert.config.vocab;
    for (what, batch) in [("id past the vocabulary", vec![vec![2, vocab, 3]]), ("empty", vec![vec![]])] {
        let err = bert.classify(&batch).await.expect_err(what);
        assert!(matches!(err, ModelError::Input(_)), "{what}: {err:?}");
    }
    let err = bert.fill_mask(&ids, 4).await.expect_err("no masked-LM head");
    assert!(matches!(err, ModelError::Config(_)), "{err:?}");
    assert_eq!(bert.backend.take_uncaptured_errors(), Vec::<String>::new());
}

both!(bert_text_classification_matches_transformers, cpu_bert_text_classification_matches_transformers, |d| async move {
    on_backend!(d, bert_text_classification_matches_transformers_on())
});
