//! sentence-transformers' modules over the tiny random BERT against sentence-transformers itself
//! (tests/fixtures/sentence/, made by scripts/fixtures/make_sentence_fixtures.py): each pooling mode
//! (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken; several concatenated), Dense
//! layers (Tanh, Identity without bias, ReLU with a residual), Normalize only where listed,
//! `max_seq_length` truncation, prompts (named, default, left out of the pool), in both layouts
//! (the older `sentence_transformers.models.*` with pooling flags, and 6.x's); on both backends.
//! Configurations it cannot honour are typed errors naming the file.

use std::collections::BTreeMap;

use hugrt::backend::Backend;
use hugrt::formats::read_table;
use hugrt::models::ModelError;
use hugrt::models::sentence::SentenceModules;
use hugrt::models::tasks::Net;
use hugrt::tokenizer::Tokenizer;

use crate::{both, gpu_test, on_backend};

const CONFIG: &[u8] = include_bytes!("../fixtures/bert/tiny/config.json");
const TOKENIZER: &[u8] = include_bytes!("../fixtures/bert/tiny/tokenizer.json");
const WEIGHTS: &[u8] = include_bytes!("../fixtures/bert/tiny/model.safetensors");
const EXPECTED: &str = include_str!("../fixtures/sentence/expected.json");

/// Each fixture folder's files (the transformer's come from bert/tiny).
macro_rules! folder {
    ($dir:literal: $($file:literal),* $(,)?) => {
        &[$(($file, include_bytes!(concat!("../fixtures/sentence/", $dir, "/", $file)) as &[u8])),*]
    };
}
const ST6_CLS_DENSE: &[(&str, &[u8])] = folder!("st6-cls-dense": "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "tokenizer_config.json",
    "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors", "3_Normalize/config.json");
const LEGACY_MAX: &[(&str, &[u8])] = folder!("legacy-max": "modules.json", "sentence_bert_config.json", "1_Pooling/config.json");
const LEGACY_CONCAT: &[(&str, &[u8])] = folder!("legacy-concat": "modules.json", "sentence_bert_config.json", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors");
const ST6_WEIGHTED_LAST: &[(&str, &[u8])] = folder!("st6-weighted-last": "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json",
    "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors");

/// |hugrt f32 − sentence-transformers f64| allowed, relative to max(1, |value|): the encoder's
/// last hidden state is within 2e-5 of transformers' (tests/models/bert.rs); pooling, Dense and
/// Normalize add rounding of their own.
const TOL: f64 = 1e-5;

/// A folder's files by name.
type Files = BTreeMap<String, Vec<u8>>;

fn files(list: &[(&str, &[u8])]) -> Files {
    list.iter().map(|(name, bytes)| ((*name).to_string(), bytes.to_vec())).collect()
}

fn floats(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array().expect("array").iter().map(|row| row.as_array().expect("row").iter().map(|x| x.as_f64().expect("number")).collect()).collect()
}

fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f64>]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: count");
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what} text {i}: dims");
        for (d, (g, w)) in g.iter().zip(w).enumerate() {
            let err = (f64::from(*g) - w).abs() / w.abs().max(1.0);
            assert!(err <= TOL, "{what} text {i} value {d}: {g} vs sentence-transformers {w} ({err:.2e} > {TOL:.0e})");
            worst = worst.max(err);
        }
    }
    worst
}

async fn matches_sentence_transformers<B: Backend>(be: B, name: &str, list: &[(&str, &[u8])]) {
    let all: serde_json::Value = serde_json::from_str(EXPECTED).expect("expected.json");
    let exp = &all["folders"][name];
    let texts: Vec<String> = serde_json::from_value(all["texts"].clone()).expect("texts");
    let device = be.device();
    let table = read_table(WEIGHTS, WEIGHTS.len() as u64, "model.safetensors").expect("table");
    let mut net = Net::load(be, CONFIG, &table, &mut &WEIGHTS[..]).await.expect("loads");
    let modules = SentenceModules::load(&mut files(list), 32).await.expect("modules");
    net.use_sentence_modules(&modules).expect("applies");
    let tok = Tokenizer::from_json(TOKENIZER).expect("tokenizer");
    assert_eq!(u64::from(modules.dims), exp["dims"].as_u64().expect("dims"), "{name}: dims");
    let ids: Vec<Vec<u32>> = serde_json::from_value(exp["ids"].clone()).expect("ids");
    assert_eq!(net.bert().expect("bert").tokenize(&tok, &texts).expect("tokenizes"), ids, "{name}: ids (truncated to max_seq_length) as sentence-transformers'");

    let plain = modules.prompt(None, Some("")).expect("no prompt");
    let got = net.embed_sentences(&tok, &texts, &modules, plain).await.expect("embeds");
    let mut worst = assert_close(&format!("{device} {name}"), &got, &floats(&exp["embeddings"]));
    if !exp["query_embeddings"].is_null() {
        let prompt = modules.prompt(Some("query"), None).expect("query prompt").to_string();
        let prompted: Vec<String> = texts.iter().map(|t| format!("{prompt}{t}")).collect();
        let want_ids: Vec<Vec<u32>> = serde_json::from_value(exp["query_ids"].clone()).expect("query ids");
        assert_eq!(net.bert().expect("bert").tokenize(&tok, &prompted).expect("tokenizes"), want_ids, "{name}: prompted ids");
        let got = net.embed_sentences(&tok, &texts, &modules, &prompt).await.expect("embeds with the query prompt");
        worst = worst.max(assert_close(&format!("{device} {name} (prompt \"query\")"), &got, &floats(&exp["query_embeddings"])));
    }
    if !exp["default_prompt_embeddings"].is_null() {
        let prompt = modules.prompt(None, None).expect("default prompt").to_string();
        assert!(!prompt.is_empty(), "{name}: the default prompt applies without one");
        let got = net.embed_sentences(&tok, &texts, &modules, &prompt).await.expect("embeds with the default prompt");
        worst = worst.max(assert_close(&format!("{device} {name} (default prompt)"), &got, &floats(&exp["default_prompt_embeddings"])));
    }
    assert!(matches!(modules.prompt(Some("passage"), None), Err(ModelError::Input(_))), "an unknown prompt name is an input error");
    crate::log(&format!("sentence-transformers {name} on {device}: max relative error {worst:.2e}"));
}

both!(st6_cls_dense_matches_sentence_transformers, cpu_st6_cls_dense_matches_sentence_transformers, |d| async move {
    on_backend!(d, matches_sentence_transformers("st6-cls-dense", ST6_CLS_DENSE))
});
both!(legacy_max_matches_sentence_transformers, cpu_legacy_max_matches_sentence_transformers, |d| async move {
    on_backend!(d, matches_sentence_transformers("legacy-max", LEGACY_MAX))
});
both!(legacy_concat_matches_sentence_transformers, cpu_legacy_concat_matches_sentence_transformers, |d| async move {
    on_backend!(d, matches_sentence_transformers("legacy-concat", LEGACY_CONCAT))
});
both!(st6_weighted_last_matches_sentence_transformers, cpu_st6_weighted_last_matches_sentence_transformers, |d| async move {
    on_backend!(d, matches_sentence_transformers("st6-weighted-last", ST6_WEIGHTED_LAST))
});

/// `base` with `file` replaced (or removed, for None).
fn with(base: &[(&str, &[u8])], file: &str, bytes: Option<&[u8]>) -> Files {
    let mut f = files(base);
    match bytes {
        Some(b) => f.insert(file.into(), b.to_vec()),
        None => f.remove(file),
    };
    f
}

async fn refuses_configurations_it_cannot_honour() {
    let dense_config = |json: &str| with(ST6_CLS_DENSE, "2_Dense/config.json", Some(json.as_bytes()));
    let modules_with = |kind: &str| {
        let json = format!(r#"[{{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"}},{{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"}},{{"idx":2,"name":"2","path":"2_X","type":"{kind}"}}]"#);
        with(LEGACY_MAX, "modules.json", Some(json.as_bytes()))
    };
    let cases: Vec<(&str, Files, &str)> = vec![
        ("a pooling mode it does not know", with(LEGACY_MAX, "1_Pooling/config.json", Some(br#"{"pooling_mode": "median"}"#)), "1_Pooling/config.json"),
        ("the pooling config missing", with(LEGACY_MAX, "1_Pooling/config.json", None), "1_Pooling/config.json"),
        ("a pooling config for another hidden size", with(LEGACY_MAX, "1_Pooling/config.json", Some(br#"{"word_embedding_dimension": 768}"#)), "1_Pooling/config.json"),
        ("a module it does not run", modules_with("sentence_transformers.models.WordWeights"), "modules.json"),
        ("a module from elsewhere", modules_with("my_package.Pooler"), "modules.json"),
        ("modules.json not JSON", with(LEGACY_MAX, "modules.json", Some(b"[{")), "modules.json"),
        ("a module path out of the repo", with(LEGACY_MAX, "modules.json", Some(br#"[{"path":"","type":"sentence_transformers.models.Transformer"},{"path":"../1_Pooling","type":"sentence_transformers.models.Pooling"}]"#)), "modules.json"),
        ("no Pooling", with(LEGACY_MAX, "modules.json", Some(br#"[{"path":"","type":"sentence_transformers.models.Transformer"}]"#)), "modules.json"),
        ("a Dense activation it does not know", dense_config(r#"{"in_features": 32, "out_features": 16, "activation_function": "torch.nn.modules.activation.Hardswish"}"#), "2_Dense/config.json"),
        ("a Dense over another width", dense_config(r#"{"in_features": 64, "out_features": 16}"#), "2_Dense/config.json"),
        ("a Dense whose weights are a pickle", with(ST6_CLS_DENSE, "2_Dense/model.safetensors", None), "2_Dense/model.safetensors"),
        ("Dense weights of the wrong shape", dense_config(r#"{"in_features": 32, "out_features": 8}"#), "2_Dense/model.safetensors"),
        ("max_seq_length 0", with(LEGACY_MAX, "sentence_bert_config.json", Some(br#"{"max_seq_length": 0}"#)), "sentence_bert_config.json"),
        ("a default prompt that is not among the prompts", with(ST6_CLS_DENSE, "config_sentence_transformers.json", Some(br#"{"prompts": {"query": "q: "}, "default_prompt_name": "doc"}"#)), "config_sentence_transformers.json"),
    ];
    for (what, mut folder, file) in cases {
        let e = SentenceModules::load(&mut folder, 32).await.err().unwrap_or_else(|| panic!("{what}: loaded"));
        assert_eq!(e.code(), "BadModelFile", "{what}: {e}");
        assert!(e.to_string().contains(file), "{what}: the error names {file}: {e}");
    }
    // Without modules.json: mean pooling and L2 normalisation over the hidden size.
    let bare = SentenceModules::load(&mut BTreeMap::new(), 32).await.expect("defaults");
    assert_eq!((bare.dims, bare.normalized(), bare.max_seq_length), (32, true, None));
}

gpu_test!(sentence_modules_refuse_configurations_they_cannot_honour, refuses_configurations_it_cannot_honour());
