//! The BERT encoder against `transformers` (tests/fixtures/bert/, made by
//! scripts/fixtures/make_bert_fixtures.py): a tiny random BertModel with its own WordPiece
//! tokenizer, in F32, F16 (names prefixed `bert.`) and BF16, natively and in Chromium; bad
//! configs, tensors and inputs give typed errors; natively also the real all-MiniLM-L6-v2
//! against sentence-transformers.

use hugrt::backend::Backend;
use hugrt::formats::{TensorTable, read_table};
use hugrt::models::ModelError;
use hugrt::models::bert::{Bert, TOKENS_PER_PASS};
use hugrt::tokenizer::Tokenizer;

use crate::{both, gpu_test, on_backend};

const CONFIG: &[u8] = include_bytes!("../fixtures/bert/tiny/config.json");
const TOKENIZER: &[u8] = include_bytes!("../fixtures/bert/tiny/tokenizer.json");
const EXPECTED: &str = include_str!("../fixtures/bert/tiny/expected.json");
const F32: &[u8] = include_bytes!("../fixtures/bert/tiny/model.safetensors");
const F16: &[u8] = include_bytes!("../fixtures/bert/tiny/model-f16.safetensors");
const BF16: &[u8] = include_bytes!("../fixtures/bert/tiny/model-bf16.safetensors");

/// |f32 − transformers f64| allowed on the last hidden state (LayerNorm outputs of order 1;
/// transformers' own f32 forward lands within 2e-6 of its f64 one).
const HIDDEN_TOL: f64 = 2e-5;
/// The same on the unit-length pooled embeddings.
const EMBED_TOL: f64 = 5e-6;

fn expected() -> serde_json::Value {
    serde_json::from_str(EXPECTED).expect("expected.json")
}

fn floats(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array().expect("array").iter().map(|row| row.as_array().expect("row").iter().map(|x| x.as_f64().expect("number")).collect()).collect()
}

fn table(bytes: &[u8]) -> TensorTable {
    read_table(bytes, bytes.len() as u64, "model.safetensors").expect("reads")
}

async fn load<B: Backend>(be: &B, config: &[u8], bytes: &[u8]) -> Result<Bert<B>, ModelError> {
    Bert::load(be.another(), config, &table(bytes), &mut &bytes[..]).await
}

fn max_abs_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "lengths");
    got.iter().zip(want).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max)
}

async fn matches_transformers<B: Backend>(be: B, variant: &str, bytes: &[u8]) {
    let exp = expected();
    let v = &exp["variants"][variant];
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).expect("texts");
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).expect("ids");
    let device = be.device();
    let mut model = load(&be, CONFIG, bytes).await.expect("loads");
    let tok = Tokenizer::from_json(TOKENIZER).expect("tokenizer");
    let ids = model.tokenize(&tok, &texts).expect("tokenizes");
    assert_eq!(ids, want_ids, "token ids equal the Python tokenizer's");

    let hidden = model.last_hidden_state(&ids).await.expect("runs");
    let (mut worst_hidden, mut worst_emb) = (0f64, 0f64);
    for (i, (got, want)) in hidden.iter().zip(floats(&v["last_hidden_state"])).enumerate() {
        let err = max_abs_diff(got, &want);
        assert!(err <= HIDDEN_TOL, "{device} {variant} text {i}: last hidden state off by {err:.2e} > {HIDDEN_TOL:.0e}");
        worst_hidden = worst_hidden.max(err);
    }
    let want_emb = floats(&v["embeddings"]);
    let emb = model.embed_texts(&tok, &texts).await.expect("embeds");
    assert_eq!(emb.len(), texts.len());
    for (i, (got, want)) in emb.iter().zip(&want_emb).enumerate() {
        let err = max_abs_diff(got, want);
        assert!(err <= EMBED_TOL, "{device} {variant} text {i}: embedding off by {err:.2e} > {EMBED_TOL:.0e}");
        worst_emb = worst_emb.max(err);
    }
    crate::log(&format!("tiny BERT {variant} on {device}: max |error| {worst_hidden:.2e} (last hidden state), {worst_emb:.2e} (embeddings)"));

    // Padding does not leak: each text alone gives its batched embedding.
    for (i, one) in ids.iter().enumerate() {
        let alone = model.embed(std::slice::from_ref(one)).await.expect("alone");
        let err = max_abs_diff(&alone[0], &emb[i].iter().map(|&x| f64::from(x)).collect::<Vec<_>>());
        assert!(err <= 1e-6, "{device} {variant} text {i}: alone vs batched differ by {err:.2e}");
    }

    // A batch over several passes (and in another order) gives every text its reference.
    let big: Vec<Vec<u32>> = (0..150).map(|k| ids[(k * 5) % ids.len()].clone()).collect();
    let longest = ids.iter().map(Vec::len).max().unwrap_or(0) as u32;
    assert!(150 * longest > TOKENS_PER_PASS, "the batch needs more than one pass");
    let out = model.embed(&big).await.expect("big batch");
    for (k, got) in out.iter().enumerate() {
        let err = max_abs_diff(got, &want_emb[(k * 5) % ids.len()]);
        assert!(err <= EMBED_TOL, "{device} {variant} big batch item {k}: off by {err:.2e}");
    }
    assert_eq!(model.embed(&[]).await.expect("empty batch"), Vec::<Vec<f32>>::new());
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(tiny_bert_f32_matches_transformers, cpu_tiny_bert_f32_matches_transformers, |d| async move { on_backend!(d, matches_transformers("f32", F32)) });
both!(tiny_bert_f16_matches_transformers, cpu_tiny_bert_f16_matches_transformers, |d| async move { on_backend!(d, matches_transformers("f16", F16)) });
both!(tiny_bert_bf16_matches_transformers, cpu_tiny_bert_bf16_matches_transformers, |d| async move { on_backend!(d, matches_transformers("bf16", BF16)) });

/// The tiny config with one key replaced (or removed, for `null`).
fn config_with(key: &str, value: serde_json::Value) -> Vec<u8> {
    let mut c: serde_json::Value = serde_json::from_slice(CONFIG).expect("config");
    let map = c.as_object_mut().expect("object");
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.into(), value);
    }
    serde_json::to_vec(&c).expect("json")
}

async fn refuses_bad_configs_and_tensors<B: Backend>(be: B) {
    use serde_json::json;
    let config_cases: Vec<(&str, Vec<u8>)> = vec![
        ("not JSON", b"{\"hidden_size\": 32,".to_vec()),
        ("missing hidden_size", config_with("hidden_size", json!(null))),
        ("missing vocab_size", config_with("vocab_size", json!(null))),
        ("hidden_size 0", config_with("hidden_size", json!(0))),
        ("negative vocab", config_with("vocab_size", json!(-5))),
        ("vocab as a string", config_with("vocab_size", json!("200"))),
        ("absurd vocab", config_with("vocab_size", json!(1u64 << 40))),
        ("absurd layers", config_with("num_hidden_layers", json!(100_000))),
        ("heads not dividing hidden", config_with("num_attention_heads", json!(5))),
        ("NaN-like eps", config_with("layer_norm_eps", json!(1e300))),
        ("unknown activation", config_with("hidden_act", json!("swish"))),
        ("another architecture", config_with("model_type", json!("gpt2"))),
        ("relative positions", config_with("position_embedding_type", json!("relative_key"))),
    ];
    for (what, config) in &config_cases {
        match load(&be, config, F32).await {
            Err(ModelError::Config(msg)) => assert!(msg.contains("config.json"), "{what}: {msg}"),
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(_) => panic!("{what}: loaded"),
        }
    }
    // Sizes that disagree with the tensors: the error names the tensor and both shapes.
    let tensor_cases = [
        ("intermediate_size", json!(65), "encoder.layer.0.intermediate.dense.weight"),
        ("vocab_size", json!(201), "embeddings.word_embeddings.weight"),
        ("max_position_embeddings", json!(512), "embeddings.position_embeddings.weight"),
        ("num_hidden_layers", json!(3), "encoder.layer.2.attention.self.query.weight"),
    ];
    for (key, value, tensor) in tensor_cases {
        match load(&be, &config_with(key, value.clone()), F32).await {
            Err(ModelError::Tensor { name, problem }) => {
                assert!(name.ends_with(tensor), "{key} = {value}: tensor {name}");
                assert!(problem.contains("shape") || problem.contains("missing"), "{key}: {problem}");
            }
            Err(e) => panic!("{key} = {value}: wrong error {e}"),
            Ok(_) => panic!("{key} = {value}: loaded"),
        }
    }
    // A reader that fails is a read error.
    struct Failing;
    impl hugrt::models::RangeReader for Failing {
        async fn read_range(&mut self, _: std::ops::Range<u64>) -> Result<Vec<u8>, hugrt::models::ReadError> {
            Err(hugrt::models::ReadError::new("NetworkError", "connection reset"))
        }
    }
    let err = Bert::load(be.another(), CONFIG, &table(F32), &mut Failing).await.err().expect("fails");
    assert!(matches!(err, ModelError::Read(ref m) if m.message == "connection reset" && m.code == "NetworkError"), "{err}");
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(bert_refuses_bad_configs_and_tensors, cpu_bert_refuses_bad_configs_and_tensors, |d| async move { on_backend!(d, refuses_bad_configs_and_tensors()) });

async fn refuses_bad_inputs<B: Backend>(be: B) {
    let mut model = load(&be, CONFIG, F32).await.expect("loads");
    let (vocab, positions) = (model.config.vocab, model.config.max_positions);
    assert_eq!((vocab, positions), (200, 40));
    let bad: Vec<(&str, Vec<Vec<u32>>)> = vec![
        ("id past the vocabulary", vec![vec![2, 5, 3], vec![2, vocab, 3]]),
        ("id u32::MAX", vec![vec![2, u32::MAX, 3]]),
        ("empty sequence", vec![vec![2, 3], vec![]]),
        ("longer than the positions", vec![vec![5; positions as usize + 1]]),
    ];
    for (what, batch) in &bad {
        match model.embed(batch).await {
            Err(ModelError::Input(msg)) => assert!(!msg.is_empty(), "{what}"),
            Err(e) => panic!("{what}: wrong error {e}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
    // Exactly max_position_embeddings tokens run.
    let full = model.embed(&[vec![7; positions as usize]]).await.expect("40 tokens");
    assert_eq!(full[0].len(), 32);
    // Text is truncated to max_seq_len as sentence-transformers truncates: [CLS] … [SEP].
    let tok = Tokenizer::from_json(TOKENIZER).expect("tokenizer");
    let long = "the cat sat on the mat ".repeat(20);
    let ids = model.tokenize(&tok, &[&long]).expect("tokenizes");
    let (cls, sep) = (tok.token_to_id("[CLS]").expect("cls"), tok.token_to_id("[SEP]").expect("sep"));
    assert_eq!(ids[0].len(), positions as usize);
    assert_eq!((ids[0][0], ids[0][positions as usize - 1]), (cls, sep));
    assert_eq!(ids[0][..positions as usize - 1], tok.encode(&long, true).expect("ids")[..positions as usize - 1]);
    model.set_max_seq_len(16);
    assert_eq!(model.max_seq_len, 16);
    assert_eq!(model.tokenize(&tok, &[&long]).expect("tokenizes")[0].len(), 16);
    assert!(matches!(model.embed(&[vec![7; 17]]).await, Err(ModelError::Input(_))));
    model.set_max_seq_len(4096);
    assert_eq!(model.max_seq_len, positions, "never past the positions");
    assert!(matches!(hugrt::models::sentence::max_seq_length(b"[]"), Err(ModelError::Config(_))));
    // The model still works after refusing inputs.
    assert_eq!(model.embed(&[vec![2, 9, 3]]).await.expect("runs")[0].len(), 32);
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(bert_refuses_bad_inputs, cpu_bert_refuses_bad_inputs, |d| async move { on_backend!(d, refuses_bad_inputs()) });

/// The real all-MiniLM-L6-v2's folder (from its PyPI package, fetched by scripts/models.sh) and
/// sentence-transformers' texts, ids and embeddings for it.
#[cfg(not(target_arch = "wasm32"))]
type MinilmReference = (std::path::PathBuf, Vec<String>, Vec<Vec<u32>>, Vec<Vec<f64>>);

#[cfg(not(target_arch = "wasm32"))]
fn minilm_reference() -> MinilmReference {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new("bash").arg("scripts/models.sh").current_dir(root).output().expect("runs scripts/models.sh");
    assert!(out.status.success(), "scripts/models.sh: {}", String::from_utf8_lossy(&out.stderr));
    let dir = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("all-MiniLM-L6-v2");
    let exp: serde_json::Value = serde_json::from_str(include_str!("../fixtures/bert/minilm/expected.json")).expect("expected.json");
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).expect("texts");
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).expect("ids");
    (dir, texts, want_ids, floats(&exp["embeddings"]))
}

/// The smallest cosine between `got` and `want` rows; asserts each is ≥ 0.999.
#[cfg(not(target_arch = "wasm32"))]
fn min_cosine(got: &[Vec<f32>], want: &[Vec<f64>], texts: &[String]) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut min_cos = f64::INFINITY;
    for (i, (got, want)) in got.iter().zip(want).enumerate() {
        let dot: f64 = got.iter().zip(want).map(|(a, b)| f64::from(*a) * b).sum();
        let norms = got.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt() * want.iter().map(|b| b * b).sum::<f64>().sqrt();
        let cos = dot / norms;
        assert!(cos >= 0.999, "text {i} {:?}: cosine {cos}", texts[i]);
        min_cos = min_cos.min(cos);
    }
    min_cos
}

/// The real all-MiniLM-L6-v2 against sentence-transformers: token ids equal, cosine ≥ 0.999 for
/// every sentence.
#[cfg(not(target_arch = "wasm32"))]
async fn minilm_matches<B: Backend>(be: B) {
    use hugrt::models::sentence::{Dir, PoolMode, SentenceModules};
    let (dir, texts, want_ids, want) = minilm_reference();
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()));
    let path = dir.join("model.safetensors");
    let mut file = std::fs::File::open(&path).expect("model.safetensors");
    let table = hugrt::formats::read_table_from(&mut file, "model.safetensors").expect("reads");
    let device = be.device();
    let mut model = Bert::load(be, &read("config.json"), &table, &mut file).await.expect("loads");
    // Its modules.json: Transformer, Pooling (mean), Normalize; max_seq_length 256.
    let modules = SentenceModules::load(&mut Dir(&dir), model.config.hidden).await.expect("sentence-transformers modules");
    assert_eq!((modules.pooling.modes.as_slice(), modules.normalized(), modules.max_seq_length, modules.dims), (&[PoolMode::Mean][..], true, Some(256), 384));
    model.set_max_seq_len(256);
    let tok = Tokenizer::from_json(&read("tokenizer.json")).expect("tokenizer");
    let ids = model.tokenize(&tok, &texts).expect("tokenizes");
    assert_eq!(ids, want_ids, "ids equal sentence-transformers' (the long text truncated to 256)");
    let emb = modules.finish(model.pool(&ids, &modules.pooling, 0).await.expect("embeds"));
    let direct = model.embed(&ids).await.expect("embeds");
    min_cosine(&direct, &want, &texts);
    let min_cos = min_cosine(&emb, &want, &texts);
    println!("all-MiniLM-L6-v2 on {device} vs sentence-transformers: min cosine {min_cos:.9} (1 − cos = {:.1e}) over {} texts", 1.0 - min_cos, texts.len());
    assert_eq!(model.backend.take_uncaptured_errors(), Vec::<String>::new());
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn minilm_matches_sentence_transformers() {
    pollster::block_on(async { on_backend!(crate::common::Device::Gpu, minilm_matches()) });
}

#[cfg(not(target_arch = "wasm32"))]
#[test]
fn cpu_minilm_matches_sentence_transformers() {
    pollster::block_on(async { on_backend!(crate::common::Device::Cpu, minilm_matches()) });
}

// The CPU backend's embeddings equal the GPU backend's.
gpu_test!(cpu_bert_equals_gpu_bert, async {
    let gpu_backend = hugrt::gpu::backend::Gpu::new(crate::common::gpu_for(crate::common::Device::Gpu).await.expect("a GPU"));
    let mut gpu = load(&gpu_backend, CONFIG, F32).await.expect("loads");
    let mut cpu = load(&hugrt::cpu::backend::Cpu, CONFIG, F32).await.expect("loads on the CPU");
    let batch: Vec<Vec<u32>> = (1..=12).map(|n| (0..n).map(|i| (i * 37 + n * 11) as u32 % 200).collect()).collect();
    let (g, c) = (gpu.embed(&batch).await.expect("gpu"), cpu.embed(&batch).await.expect("cpu"));
    for (i, (g, c)) in g.iter().zip(&c).enumerate() {
        let err = max_abs_diff(c, &g.iter().map(|&x| f64::from(x)).collect::<Vec<_>>());
        assert!(err <= 2e-6, "sequence {i}: CPU and GPU differ by {err:.2e}");
    }
});

const RERANKER_CONFIG: &[u8] = include_bytes!("../fixtures/reranker/config.json");
const RERANKER: &[u8] = include_bytes!("../fixtures/reranker/model.safetensors");
const RERANKER_TOKENIZER: &[u8] = include_bytes!("../fixtures/reranker/tokenizer.json");
const RERANKER_EXPECTED: &str = include_str!("../fixtures/reranker/expected.json");

/// A tiny cross-encoder (one label) against sentence-transformers' `CrossEncoder.predict` and
/// transformers' text-classification pipeline (tests/fixtures/reranker, made by
/// scripts/fixtures/make_reranker_fixtures.py): each query-passage pair's ids and token types
/// (`[CLS] A [SEP] B [SEP]`, longest-first truncation for the long pair), its logit (f64 reference),
/// its sigmoid score and label; one text alone scored by the same sigmoid. Bad token types are
/// input errors.
async fn reranker_matches<B: Backend>(be: B) {
    let exp: serde_json::Value = serde_json::from_str(RERANKER_EXPECTED).expect("expected.json");
    let pairs: Vec<(String, String)> = serde_json::from_value(exp["pairs"].clone()).expect("pairs");
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).expect("ids");
    let want_types: Vec<Vec<u32>> = serde_json::from_value(exp["type_ids"].clone()).expect("type ids");
    let device = be.device();
    let mut model = load(&be, RERANKER_CONFIG, RERANKER).await.expect("loads");
    assert!(model.config.sigmoid, "one label: sigmoid scores");
    let tok = Tokenizer::from_json(RERANKER_TOKENIZER).expect("tokenizer");
    let mut worst = 0f64;
    for (i, (a, b)) in pairs.iter().enumerate() {
        let (ids, types) = model.tokenize_pair(&tok, a, b).expect("tokenizes");
        assert_eq!((&ids, &types), (&want_ids[i], &want_types[i]), "pair {i}: ids and token types as the Python tokenizer's");
        let logit = model.classify_typed(&[ids], Some(&[types])).await.expect("classifies")[0][0];
        let want = exp["logits"][i].as_f64().expect("logit");
        let err = (f64::from(logit) - want).abs();
        assert!(err <= HIDDEN_TOL, "{device} pair {i}: logit {logit} vs transformers {want}");
        worst = worst.max(err);
        let scored = hugrt::models::tasks::ranked(&model.config.labels, &[logit], 1, model.config.sigmoid);
        let (cross, piped) = (exp["cross_encoder"][i].as_f64().expect("score"), &exp["pipeline"][i]);
        assert!((f64::from(scored[0].1) - cross).abs() <= 1e-5, "{device} pair {i}: score {} vs CrossEncoder {cross}", scored[0].1);
        assert_eq!(scored[0].0, piped["label"].as_str().expect("label"));
        assert!((f64::from(scored[0].1) - piped["score"].as_f64().expect("score")).abs() <= 1e-5);
    }
    // All pairs in one batch give the same logits (token types follow their sequences into passes).
    let encoded: Vec<(Vec<u32>, Vec<u32>)> = pairs.iter().map(|(a, b)| model.tokenize_pair(&tok, a, b).expect("tokenizes")).collect();
    let (ids, types): (Vec<Vec<u32>>, Vec<Vec<u32>>) = encoded.into_iter().unzip();
    let batched = model.classify_typed(&ids, Some(&types)).await.expect("batch");
    for (i, l) in batched.iter().enumerate() {
        assert!((f64::from(l[0]) - exp["logits"][i].as_f64().expect("logit")).abs() <= HIDDEN_TOL, "{device} batched pair {i}");
    }
    let single = &exp["single"];
    let ids = model.tokenize(&tok, &[single["text"].as_str().expect("text")]).expect("tokenizes");
    let logit = model.classify(&ids).await.expect("classifies")[0][0];
    let scored = hugrt::models::tasks::ranked(&model.config.labels, &[logit], 1, true);
    assert!((f64::from(scored[0].1) - single["score"].as_f64().expect("score")).abs() <= 1e-5, "{device} one text: {} vs {}", scored[0].1, single["score"]);
    let bad_type = vec![vec![0, 0, 2]];
    assert!(matches!(model.classify_typed(&[vec![2, 9, 3]], Some(&bad_type)).await, Err(ModelError::Input(_))), "type 2 of 2");
    assert!(matches!(model.classify_typed(&[vec![2, 9, 3]], Some(&[vec![0, 1]])).await, Err(ModelError::Input(_))), "types of another length");
    crate::log(&format!("tiny cross-encoder on {device}: max |logit error| {worst:.2e}"));
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(reranker_matches_cross_encoder, cpu_reranker_matches_cross_encoder, |d| async move { on_backend!(d, reranker_matches()) });

const DISTIL_CLS_CONFIG: &[u8] = include_bytes!("../fixtures/distilbert/cls/config.json");
const DISTIL_CLS: &[u8] = include_bytes!("../fixtures/distilbert/cls/model.safetensors");
const DISTIL_MLM_CONFIG: &[u8] = include_bytes!("../fixtures/distilbert/mlm/config.json");
const DISTIL_MLM: &[u8] = include_bytes!("../fixtures/distilbert/mlm/model.safetensors");
const DISTIL_EXPECTED: &str = include_str!("../fixtures/distilbert/expected.json");

/// Tiny random DistilBERTs against transformers in float64 (tests/fixtures/distilbert, made by
/// scripts/fixtures/make_distilbert_fixtures.py): the encoder's last hidden state, the
/// classification head (pre_classifier + ReLU) and its pipeline scores, a text pair read as one
/// sequence (no token types), and the masked-LM head's logits at the mask.
async fn distilbert_matches<B: Backend>(be: B) {
    let exp: serde_json::Value = serde_json::from_str(DISTIL_EXPECTED).expect("expected.json");
    let texts: Vec<String> = serde_json::from_value(exp["texts"].clone()).expect("texts");
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).expect("ids");
    let device = be.device();
    let tok = Tokenizer::from_json(TOKENIZER).expect("tokenizer");
    let mut model = load(&be, DISTIL_CLS_CONFIG, DISTIL_CLS).await.expect("loads the classifier");
    assert!(model.config.distil && model.config.labels == ["negative", "neutral", "positive"], "{:?}", model.config);
    let ids = model.tokenize(&tok, &texts).expect("tokenizes");
    assert_eq!(ids, want_ids);
    let hidden = model.last_hidden_state(&ids).await.expect("runs");
    let mut worst = 0f64;
    for (i, (got, want)) in hidden.iter().zip(floats(&exp["last_hidden_state"])).enumerate() {
        let err = max_abs_diff(got, &want);
        assert!(err <= HIDDEN_TOL, "{device} DistilBERT text {i}: last hidden state off by {err:.2e}");
        worst = worst.max(err);
    }
    let logits = model.classify(&ids).await.expect("classifies");
    for (i, (got, want)) in logits.iter().zip(floats(&exp["logits"])).enumerate() {
        let err = max_abs_diff(got, &want);
        assert!(err <= HIDDEN_TOL, "{device} DistilBERT text {i}: logits off by {err:.2e}");
        let ranked = hugrt::models::tasks::ranked(&model.config.labels, got, 3, model.config.sigmoid);
        for (r, w) in ranked.iter().zip(exp["pipeline"][i].as_array().expect("pipeline")) {
            assert_eq!(r.0, w["label"].as_str().expect("label"), "{device} text {i}: label order");
            assert!((f64::from(r.1) - w["score"].as_f64().expect("score")).abs() <= 1e-5, "{device} text {i}: {} vs {}", r.1, w["score"]);
        }
    }
    let pair = &exp["pair"];
    let (pair_ids, types) = model.tokenize_pair(&tok, pair["texts"][0].as_str().expect("a"), pair["texts"][1].as_str().expect("b")).expect("pair");
    assert_eq!(pair_ids, serde_json::from_value::<Vec<u32>>(pair["ids"].clone()).expect("pair ids"));
    let got = model.classify_typed(&[pair_ids], Some(&[types])).await.expect("a pair");
    assert!(max_abs_diff(&got[0], &floats(&serde_json::json!([pair["logits"]]))[0]) <= HIDDEN_TOL, "{device} pair");

    let mut mlm = load(&be, DISTIL_MLM_CONFIG, DISTIL_MLM).await.expect("loads the masked LM");
    let fill = &exp["fill_mask"];
    let masked = mlm.tokenize(&tok, &[fill["text"].as_str().expect("text")]).expect("tokenizes");
    assert_eq!(masked[0], serde_json::from_value::<Vec<u32>>(fill["ids"].clone()).expect("ids"));
    let mask_id = tok.token_to_id("[MASK]").expect("[MASK]");
    let at_mask = mlm.fill_mask(&masked, mask_id).await.expect("fills");
    let err = max_abs_diff(&at_mask[0][0], &floats(&serde_json::json!([fill["logits"]]))[0]);
    assert!(err <= HIDDEN_TOL, "{device} DistilBERT masked LM: off by {err:.2e}");
    let best = hugrt::models::tasks::ranked(&[], &at_mask[0][0], 1, false);
    assert_eq!(best[0].0, format!("LABEL_{}", fill["results"][0]["token"]), "{device}: the pipeline's top token");
    crate::log(&format!("tiny DistilBERT on {device}: max |error| {worst:.2e} (last hidden state), {err:.2e} (masked LM)"));
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(distilbert_matches_transformers, cpu_distilbert_matches_transformers, |d| async move { on_backend!(d, distilbert_matches()) });

const ROBERTA_EXPECTED: &str = include_str!("../fixtures/roberta/expected.json");

/// A tiny random RoBERTa (masked LM, byte-level BPE, F32, names under `roberta.`) and XLM-RoBERTa
/// (one-label classifier as rerankers have it, SentencePiece Unigram, BF16) against transformers
/// in float64 (tests/fixtures/roberta, made by scripts/fixtures/make_roberta_fixtures.py): ids as
/// transformers' tokenizer gives them, positions past `pad_token_id`, the last hidden state, the
/// mean-pooled embedding, the masked-LM logits at `<mask>`, the classifier's logits, and
/// query-passage pairs encoded `<s> A </s></s> B </s>` with CrossEncoder's sigmoid scores.
async fn roberta_matches<B: Backend>(be: B) {
    let exp: serde_json::Value = serde_json::from_str(ROBERTA_EXPECTED).expect("expected.json");
    let device = be.device();
    let mut worst = 0f64;
    for key in ["mlm", "xlmr_cls"] {
        let e = &exp[key];
        let (config, weights, tokenizer) = match key {
            "mlm" => (&include_bytes!("../fixtures/roberta/mlm/config.json")[..], &include_bytes!("../fixtures/roberta/mlm/model.safetensors")[..], &include_bytes!("../fixtures/roberta/mlm/tokenizer.json")[..]),
            _ => (&include_bytes!("../fixtures/roberta/xlmr-cls/config.json")[..], &include_bytes!("../fixtures/roberta/xlmr-cls/model.safetensors")[..], &include_bytes!("../fixtures/roberta/xlmr-cls/tokenizer.json")[..]),
        };
        let tok = Tokenizer::from_json(tokenizer).expect("tokenizer");
        let mut model = load(&be, config, weights).await.expect("loads");
        assert_eq!(model.config.position_offset, 2, "{key}: positions start past pad_token_id 1");
        let (ids, err) = same_encodings(&mut model, &tok, e, key).await;
        worst = worst.max(err);
        if key == "mlm" {
            let fill = &e["fill_mask"];
            let masked = model.tokenize(&tok, &[fill["text"].as_str().expect("text")]).expect("tokenizes");
            assert_eq!(masked[0], serde_json::from_value::<Vec<u32>>(fill["ids"].clone()).expect("ids"));
            let mask_id = hugrt::models::tasks::mask_token(&tok).expect("<mask>");
            let at_mask = model.fill_mask(&masked, mask_id).await.expect("fills");
            let err = max_abs_diff(&at_mask[0][0], &floats(&serde_json::json!([fill["logits"]]))[0]);
            assert!(err <= HIDDEN_TOL, "{device} RoBERTa masked LM: off by {err:.2e}");
            let best = hugrt::models::tasks::ranked(&[], &at_mask[0][0], 1, false);
            assert_eq!(best[0].0, format!("LABEL_{}", fill["results"][0]["token"]), "{device}: the pipeline's top token");
        } else {
            assert!(model.config.sigmoid, "one label: sigmoid scores");
            let logits = model.classify(&ids).await.expect("classifies");
            for (i, (got, want)) in logits.iter().zip(floats(&e["logits"])).enumerate() {
                assert!(max_abs_diff(got, &want) <= HIDDEN_TOL, "{device} XLM-R text {i}: logits {got:?} vs {want:?}");
            }
            for (i, pair) in e["pairs"].as_array().expect("pairs").iter().enumerate() {
                let (pair_ids, types) = model.tokenize_pair(&tok, pair["texts"][0].as_str().expect("a"), pair["texts"][1].as_str().expect("b")).expect("pair");
                assert_eq!(pair_ids, serde_json::from_value::<Vec<u32>>(pair["ids"].clone()).expect("pair ids"), "pair {i}: <s> A </s></s> B </s>");
                let got = model.classify_typed(&[pair_ids], Some(&[types])).await.expect("a pair");
                assert!(max_abs_diff(&got[0], &floats(&serde_json::json!([pair["logits"]]))[0]) <= HIDDEN_TOL, "{device} pair {i}");
                let scored = hugrt::models::tasks::ranked(&model.config.labels, &got[0], 1, model.config.sigmoid);
                assert!((f64::from(scored[0].1) - pair["score"].as_f64().expect("score")).abs() <= 1e-5, "{device} pair {i}: score {} vs {}", scored[0].1, pair["score"]);
            }
        }
    }
    crate::log(&format!("tiny RoBERTa and XLM-R on {device}: max |error| {worst:.2e} (last hidden state)"));
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(roberta_matches_transformers, cpu_roberta_matches_transformers, |d| async move { on_backend!(d, roberta_matches()) });

/// A fixture's texts through `model` against transformers' float64 outputs in `e` (`texts`,
/// `ids`, `last_hidden_state`, `embeddings`): the ids, then the last hidden state within
/// HIDDEN_TOL and the mean-pooled embeddings within EMBED_TOL. Answers the ids and the worst
/// hidden-state error.
async fn same_encodings<B: Backend>(model: &mut Bert<B>, tok: &Tokenizer, e: &serde_json::Value, what: &str) -> (Vec<Vec<u32>>, f64) {
    let device = model.backend.device();
    let texts: Vec<String> = serde_json::from_value(e["texts"].clone()).expect("texts");
    let ids = model.tokenize(tok, &texts).expect("tokenizes");
    assert_eq!(ids, serde_json::from_value::<Vec<Vec<u32>>>(e["ids"].clone()).expect("ids"), "{what}: ids");
    let hidden = model.last_hidden_state(&ids).await.expect("runs");
    let mut worst = 0f64;
    for (i, (got, want)) in hidden.iter().zip(floats(&e["last_hidden_state"])).enumerate() {
        let err = max_abs_diff(got, &want);
        assert!(err <= HIDDEN_TOL, "{device} {what} text {i}: last hidden state off by {err:.2e}");
        worst = worst.max(err);
    }
    for (i, (got, want)) in model.embed(&ids).await.expect("embeds").iter().zip(floats(&e["embeddings"])).enumerate() {
        let err = max_abs_diff(got, &want);
        assert!(err <= EMBED_TOL, "{device} {what} text {i}: embedding off by {err:.2e}");
    }
    (ids, worst)
}

/// A tiny random MPNet (masked LM; the encoder of all-mpnet-base-v2: no token types, positions
/// past `pad_token_id`, a relative position bias of 32 buckets in every layer) against
/// transformers in float64 (tests/fixtures/roberta/mpnet-mlm): the buckets of relative positions
/// −300..300, ids, the last hidden state of texts up to 39 tokens (distances in the logarithmic
/// buckets), the mean-pooled embeddings and the masked-LM logits at `<mask>`.
async fn mpnet_matches<B: Backend>(be: B) {
    let exp: serde_json::Value = serde_json::from_str(ROBERTA_EXPECTED).expect("expected.json");
    let e = &exp["mpnet"];
    let device = be.device();
    let buckets = &e["buckets"];
    for (d, want) in buckets["relative"].as_array().expect("relative").iter().zip(buckets["bucket"].as_array().expect("bucket")) {
        let d = d.as_i64().expect("d");
        assert_eq!(i64::from(hugrt::models::bert::relative_position_bucket(d, 32)), want.as_i64().expect("bucket"), "bucket of relative position {d}");
    }
    let tok = Tokenizer::from_json(include_bytes!("../fixtures/roberta/mpnet-mlm/tokenizer.json")).expect("tokenizer");
    let mut model = load(&be, include_bytes!("../fixtures/roberta/mpnet-mlm/config.json"), include_bytes!("../fixtures/roberta/mpnet-mlm/model.safetensors")).await.expect("loads");
    assert_eq!((model.config.model_type, model.config.type_vocab, model.config.relative_buckets), ("mpnet", 0, 32));
    let (_, worst) = same_encodings(&mut model, &tok, e, "MPNet").await;
    let masked: Vec<u32> = serde_json::from_value(e["masked_ids"].clone()).expect("masked ids");
    let mask_id = hugrt::models::tasks::mask_token(&tok).expect("<mask>");
    let at_mask = model.fill_mask(&[masked], mask_id).await.expect("fills");
    let err = max_abs_diff(&at_mask[0][0], &floats(&serde_json::json!([e["mask_logits"]]))[0]);
    assert!(err <= HIDDEN_TOL, "{device} MPNet masked LM: off by {err:.2e}");
    crate::log(&format!("tiny MPNet on {device}: max |error| {worst:.2e} (last hidden state), {err:.2e} (masked LM)"));
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(mpnet_matches_transformers, cpu_mpnet_matches_transformers, |d| async move { on_backend!(d, mpnet_matches()) });

/// A tiny random ModernBERT (tests/fixtures/roberta/modernbert-{mlm,cls}) against transformers in
/// float64: four layers (global, local, local, global) with a local window of 4 on each side
/// under texts of up to 39 tokens, RoPE bases per layer kind, fused Wqkv and Wi (GeGLU), norms
/// without biases; the last hidden state, the mean-pooled embeddings, the masked-LM logits and a
/// 3-label classifier pooling the mean. Without its local window the model's output moves by far
/// more than the tolerance (the fixture exercises it).
async fn modernbert_matches<B: Backend>(be: B) {
    let exp: serde_json::Value = serde_json::from_str(ROBERTA_EXPECTED).expect("expected.json");
    let e = &exp["modernbert"];
    let device = be.device();
    let config = include_bytes!("../fixtures/roberta/modernbert-mlm/config.json");
    let weights = include_bytes!("../fixtures/roberta/modernbert-mlm/model.safetensors");
    let tok = Tokenizer::from_json(include_bytes!("../fixtures/roberta/modernbert-mlm/tokenizer.json")).expect("tokenizer");
    let mut model = load(&be, config, weights).await.expect("loads");
    assert_eq!(model.config.model_type, "modernbert");
    let (ids, worst) = same_encodings(&mut model, &tok, e, "ModernBERT").await;
    let masked: Vec<u32> = serde_json::from_value(e["masked_ids"].clone()).expect("masked ids");
    let mask_id = hugrt::models::tasks::mask_token(&tok).expect("<mask>");
    let at_mask = model.fill_mask(&[masked], mask_id).await.expect("fills");
    let mlm_err = max_abs_diff(&at_mask[0][0], &floats(&serde_json::json!([e["mask_logits"]]))[0]);
    assert!(mlm_err <= HIDDEN_TOL, "{device} ModernBERT masked LM: off by {mlm_err:.2e}");
    let mut cls = load(&be, include_bytes!("../fixtures/roberta/modernbert-cls/config.json"), include_bytes!("../fixtures/roberta/modernbert-cls/model.safetensors")).await.expect("loads the classifier");
    for (i, (got, want)) in cls.classify(&ids).await.expect("classifies").iter().zip(floats(&e["cls_logits"])).enumerate() {
        assert!(max_abs_diff(got, &want) <= HIDDEN_TOL, "{device} ModernBERT classifier text {i}: {got:?} vs {want:?}");
    }
    let mut all_global: serde_json::Value = serde_json::from_slice(config).expect("config");
    all_global["layer_types"] = serde_json::json!(["full_attention", "full_attention", "full_attention", "full_attention"]);
    let mut global = load(&be, &serde_json::to_vec(&all_global).expect("json"), weights).await.expect("loads");
    let moved = max_abs_diff(&global.last_hidden_state(&ids[2..3]).await.expect("runs")[0], &floats(&e["last_hidden_state"])[2]);
    assert!(moved > 1e-2, "{device}: the local window made no difference ({moved:.2e})");
    crate::log(&format!("tiny ModernBERT on {device}: max |error| {worst:.2e} (last hidden state), {mlm_err:.2e} (masked LM); {moved:.2} without the window"));
    assert_eq!(be.take_uncaptured_errors(), Vec::<String>::new());
}

both!(modernbert_matches_transformers, cpu_modernbert_matches_transformers, |d| async move { on_backend!(d, modernbert_matches()) });

gpu_test!(encoder_config_errors_name_the_file, async {
    // RoBERTa-family and ModernBERT configs this encoder cannot honour: typed errors that name
    // config.json.
    let with = |bytes: &[u8], key: &str, value: serde_json::Value| {
        let mut c: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        c[key] = value;
        serde_json::to_vec(&c).unwrap()
    };
    let roberta: &[u8] = include_bytes!("../fixtures/roberta/mlm/config.json");
    let modern: &[u8] = include_bytes!("../fixtures/roberta/modernbert-mlm/config.json");
    let cases = [
        ("positions that end at the padding id", with(roberta, "max_position_embeddings", 2.into())),
        ("an unknown model type", with(roberta, "model_type", "deberta-v2".into())),
        ("a ModernBERT pooling mode it lacks", with(modern, "classifier_pooling", "max".into())),
        ("ModernBERT layer types of the wrong length", with(modern, "layer_types", serde_json::json!(["full_attention"]))),
        ("ModernBERT's scaled RoPE", with(modern, "rope_parameters", serde_json::json!({"full_attention": {"rope_type": "yarn", "rope_theta": 1e4}}))),
        ("an unknown activation", with(modern, "hidden_activation", "swish".into())),
    ];
    for (what, json) in cases {
        match hugrt::models::bert::BertConfig::from_json(&json) {
            Err(ModelError::Config(m)) => assert!(m.starts_with("config.json"), "{what}: {m}"),
            other => panic!("{what}: {:?}", other.map(|c| c.model_type)),
        }
    }
});
