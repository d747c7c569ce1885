//! The `hugrt` binary as a user and a test harness run it: `inspect --json` on real and crafted
//! files; bad files give exit status 2 and a typed JSON error, never a panic.
#![cfg(not(target_arch = "wasm32"))]

use std::process::Command;

use hugrt::formats::gguf;
use hugrt::formats::{DType, GgufValue};

fn inspect(bytes: &[u8], name: &str) -> (i32, serde_json::Value, String) {
    let dir = std::env::temp_dir().join(format!("hugrt-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_hugrt")).arg("inspect").arg(&path).arg("--json").output().expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(if out.status.success() { &stdout } else { &stderr }).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[test]
fn inspect_json_lists_tensors() {
    let meta = vec![("general.architecture".to_owned(), GgufValue::String("llama".into()))];
    let bytes = gguf::write(&meta, &[("w".into(), DType::Q8_0, vec![2, 32], vec![0; 68])], 32);
    let (code, json, _) = inspect(&bytes, "m.gguf");
    assert_eq!(code, 0);
    assert_eq!(json["format"], "gguf");
    assert_eq!(json["metadata"]["kv"]["general.architecture"], "llama");
    assert_eq!(json["tensors"][0]["name"], "w");
    assert_eq!(json["tensors"][0]["dtype"], "Q8_0");
    assert_eq!(json["tensors"][0]["shape"], serde_json::json!([2, 32]));
    assert_eq!(json["tensors"][0]["end"].as_u64().unwrap() - json["tensors"][0]["start"].as_u64().unwrap(), 68);
}

#[test]
fn inspect_refuses_bad_files_with_a_typed_error() {
    let good = gguf::write(&[], &[("w".into(), DType::F32, vec![8], vec![0; 32])], 32);
    let mut cases: Vec<(Vec<u8>, &str)> = vec![
        (b"version https://git-lfs.github.com/spec/v1\n".to_vec(), "model.safetensors"),
        (b"<html>404</html>".to_vec(), "model.gguf"),
        (b"PK\x03\x04rest-of-zip".to_vec(), "pytorch_model.bin"),
        (Vec::new(), "empty.gguf"),
        (good[..good.len() - 5].to_vec(), "truncated.gguf"),
    ];
    // Every single-byte truncation and a sweep of byte flips over the header.
    for cut in (0..good.len()).step_by(7) {
        cases.push((good[..cut].to_vec(), "cut.gguf"));
    }
    for at in 0..96 {
        let mut b = good.clone();
        b[at] ^= 0xA5;
        cases.push((b, "flip.gguf"));
    }
    for (bytes, name) in &cases {
        let (code, json, stderr) = inspect(bytes, name);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(code == 0 || code == 2, "{name}: exit {code}");
        if code == 2 {
            assert_eq!(json["error"]["code"], "BadModelFile", "{name}: {stderr}");
        }
    }
    assert_eq!(inspect(&cases[0].0, cases[0].1).0, 2);
}

/// `hugrt generate` on a checkpoint folder in the hub's format (the tiny GPT-2 fixture): greedy
/// output equals the library's, on the GPU and the CPU; sampling is reproducible by seed, stop
/// strings cut the text.
#[test]
fn generate_runs_a_checkpoint_folder() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gpt2");
    let run = |extra: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_hugrt"))
            .args(["generate", "--model", dir, "--prompt", "Hello world", "--max-tokens", "12", "--json"])
            .args(extra)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("JSON")
    };
    let greedy = run(&[]);
    assert_eq!(greedy["promptIds"], serde_json::json!([352, 350]), "the fixture tokenizer");
    let ids: Vec<u32> = greedy["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(ids.len(), 12);
    assert_eq!(greedy["finishReason"], "length");
    // The CPU fallback: the same tokens.
    let cpu = run(&["--device", "cpu"]);
    assert_eq!((cpu["device"].as_str(), cpu["adapter"].as_str()), (Some("cpu"), Some("cpu")));
    assert_eq!(cpu["ids"], greedy["ids"], "--device cpu gives the GPU's greedy tokens");
    assert_eq!(cpu["text"], greedy["text"]);
    // The same continuation from the library, step by step.
    let want = pollster::block_on(async {
        let weights = std::fs::read(format!("{dir}/model.safetensors")).unwrap();
        let config = std::fs::read(format!("{dir}/config.json")).unwrap();
        let table = hugrt::formats::read_table(&weights, weights.len() as u64, "model.safetensors").unwrap();
        let ctx = std::rc::Rc::new(hugrt::gpu::GpuContext::new().await.unwrap());
        let mut model = hugrt::models::AnyDecoder::load(Some(ctx), Some(&config), &table, None, &mut weights.as_slice()).await.unwrap();
        let mut next = vec![352, 350];
        let mut out = Vec::new();
        for _ in 0..12 {
            let logits = model.logits(&next).await.unwrap();
            let id = hugrt::generate::sampling::argmax(&logits);
            out.push(id);
            next = vec![id];
        }
        out
    });
    assert_eq!(ids, want);
    let sampled = |seed: &str| run(&["--temperature", "1.2", "--seed", seed])["ids"].clone();
    assert_eq!(sampled("3"), sampled("3"));
    assert_ne!(sampled("3"), sampled("4"));
    let text = greedy["text"].as_str().unwrap();
    let cut = text.char_indices().nth(3).map(|(i, _)| i).unwrap_or(text.len());
    let stop = &text[cut..(cut + 2).min(text.len())];
    assert!(!stop.trim().is_empty() && !text[..cut].contains(stop), "pick another stop string for {text:?}");
    let stopped = run(&["--stop", stop]);
    assert_eq!(stopped["text"].as_str().unwrap(), &text[..cut]);
    assert_eq!(stopped["finishReason"], "stop");
}

/// `hugrt generate --chat` on the decoder fixture folders (the Llama family, Gemma 2 and 3) (config.json, safetensors,
/// tokenizer.json, tokenizer_config.json), on the GPU and the CPU: the prompt transformers renders
/// and tokenizes from the same files, and its greedy continuation up to the first near-tie.
#[test]
fn generate_chats_with_decoder_folders() {
    for (name, expected) in [
        ("llama", include_str!("fixtures/llama/expected.json")),
        ("qwen2", include_str!("fixtures/qwen2/expected.json")),
        ("qwen3", include_str!("fixtures/qwen3/expected.json")),
        ("smollm3", include_str!("fixtures/smollm3/expected.json")),
        ("mistral", include_str!("fixtures/mistral/expected.json")),
        ("phi3", include_str!("fixtures/phi3/expected.json")),
        ("gemma", include_str!("fixtures/gemma/expected.json")),
        ("gemma2", include_str!("fixtures/gemma2/expected.json")),
        ("gemma3", include_str!("fixtures/gemma3/expected.json")),
        // The Llama's weights as transformers shards them (three files and their index).
        ("llama-sharded", include_str!("fixtures/llama/expected.json")),
    ] {
        let dir = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let expected: serde_json::Value = serde_json::from_str(expected).unwrap();
        let chat = &expected["chat"];
        let ids = |v: &serde_json::Value| v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect::<Vec<_>>();
        let (prompt_ids, greedy) = (ids(&chat["ids"]), ids(&chat["greedy"]));
        let sure = chat["margins"].as_array().unwrap().iter().position(|m| m.as_f64().unwrap() < 0.01).unwrap_or(greedy.len());
        assert!(sure >= 8, "{name}: the reference has a near-tie at step {sure}");
        for device in ["gpu", "cpu"] {
            let out = Command::new(env!("CARGO_BIN_EXE_hugrt"))
                .args(["generate", "--model", &dir, "--chat", "--prompt", chat["messages"][0]["content"].as_str().unwrap()])
                .args(["--max-tokens", &greedy.len().to_string(), "--device", device, "--json"])
                .output()
                .expect("runs");
            assert!(out.status.success(), "{name} on {device}: {}", String::from_utf8_lossy(&out.stderr));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            assert_eq!(ids(&json["promptIds"]), prompt_ids, "{name} on {device}: the chat prompt as transformers renders and tokenizes it");
            assert_eq!(&ids(&json["ids"])[..sure], &greedy[..sure], "{name} on {device}: greedy tokens");
        }
    }
}

/// A `generation_config.json` whose `eos_token_id` list holds the token transformers' greedy run
/// picks at step 4 ends generation there (the token not in the output, as transformers stops),
/// on both devices; an id past the vocabulary in it is a typed error.
#[test]
fn generation_config_eos_ids_end_generation() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama");
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/llama/expected.json")).unwrap();
    let chat = &expected["chat"];
    let greedy: Vec<u64> = chat["greedy"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let margins: Vec<f64> = chat["margins"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(margins[..5].iter().all(|&m| m >= 0.01) && !greedy[..4].contains(&greedy[4]) && !greedy[..4].contains(&2), "pick another step: {greedy:?}");
    let dir = std::env::temp_dir().join(format!("hugrt-cli-genconfig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let run = |device: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_hugrt"))
            .args(["generate", "--model"])
            .arg(&dir)
            .args(["--chat", "--prompt", chat["messages"][0]["content"].as_str().unwrap(), "--max-tokens", "12", "--device", device, "--json"])
            .output()
            .expect("runs");
        let body = if out.status.success() { out.stdout } else { out.stderr };
        (out.status.code(), String::from_utf8_lossy(&body).lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).unwrap_or_default())
    };
    std::fs::write(dir.join("generation_config.json"), format!(r#"{{"bos_token_id": 1, "eos_token_id": [2, {}], "do_sample": false}}"#, greedy[4])).unwrap();
    for device in ["gpu", "cpu"] {
        let (code, json) = run(device);
        assert_eq!(code, Some(0), "{device}: {json}");
        let ids: Vec<u64> = json["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        assert_eq!(ids, greedy[..4], "{device}: generation ends at the listed id");
        assert_eq!(json["finishReason"], "stop", "{device}");
    }
    std::fs::write(dir.join("generation_config.json"), br#"{"eos_token_id": [2, 100000]}"#).unwrap();
    let (code, json) = run("cpu");
    assert_eq!((code, json["error"]["code"].as_str()), (Some(2), Some("BadModelFile")), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A sharded checkpoint whose index and shards disagree is a typed error naming the index: a
/// shard missing, shards overlapping, a tensor mapped to a shard without it, a shard name
/// outside the folder; nothing is half-loaded.
#[test]
fn sharded_checkpoints_with_bad_indices_are_refused() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama-sharded");
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture.join("model.safetensors.index.json")).unwrap()).unwrap();
    let map = index["weight_map"].as_object().unwrap();
    let first = "model-00001-of-00003.safetensors";
    let in_first = map.iter().find(|(_, s)| *s == first).map(|(t, _)| t.clone()).unwrap();
    let dir = std::env::temp_dir().join(format!("hugrt-cli-shards-{}", std::process::id()));
    let reset = || {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&fixture).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
        }
    };
    let with_index = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut i = index.clone();
        edit(&mut i);
        std::fs::write(dir.join("model.safetensors.index.json"), serde_json::to_vec(&i).unwrap()).unwrap();
    };
    let run = || {
        let out = Command::new(env!("CARGO_BIN_EXE_hugrt")).args(["generate", "--model"]).arg(&dir).args(["--prompt", "Hello", "--max-tokens", "2", "--device", "cpu", "--json"]).output().expect("runs");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
        let body = if out.status.success() { out.stdout } else { out.stderr };
        (out.status.code(), String::from_utf8_lossy(&body).lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).unwrap_or_default())
    };
    let cases: [(&str, &dyn Fn(), &str); 5] = [
        ("a shard missing", &|| std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap(), "NotFound"),
        ("a tensor mapped to a shard without it", &|| with_index(&|i| i["weight_map"][&in_first] = "model-00002-of-00003.safetensors".into()), "BadModelFile"),
        ("shards overlapping (the first's tensors in the third too)", &|| std::fs::copy(dir.join(first), dir.join("model-00003-of-00003.safetensors")).map(drop).unwrap(), "BadModelFile"),
        ("an unknown tensor mapped", &|| with_index(&|i| i["weight_map"]["model.extra.weight"] = first.into()), "BadModelFile"),
        ("a shard outside the folder", &|| with_index(&|i| i["weight_map"][&in_first] = "../model-00001-of-00003.safetensors".into()), "BadModelFile"),
    ];
    for (what, break_it, code) in cases {
        reset();
        assert_eq!(run().0, Some(0), "the intact copy loads");
        break_it();
        let (status, json) = run();
        assert_eq!((status, json["error"]["code"].as_str()), (Some(2), Some(code)), "{what}: {json}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `generation_config.json` that samples is the default of the options left out: its
/// temperature and top_k are the ones used, and top-1 sampling gives transformers' greedy tokens
/// (the most likely token is the only one left); flags override it; a bad value in the file is a
/// typed error.
#[test]
fn generation_config_sampling_settings_are_the_defaults() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama");
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/llama/expected.json")).unwrap();
    let chat = &expected["chat"];
    let greedy: Vec<u64> = chat["greedy"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    let sure = chat["margins"].as_array().unwrap().iter().position(|m| m.as_f64().unwrap() < 0.01).unwrap_or(greedy.len());
    assert!(sure >= 8, "a near-tie at step {sure}");
    let dir = std::env::temp_dir().join(format!("hugrt-cli-sampling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let run = |flags: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hugrt"))
            .args(["generate", "--model"])
            .arg(&dir)
            .args(["--chat", "--prompt", chat["messages"][0]["content"].as_str().unwrap(), "--device", "cpu", "--json"])
            .args(flags)
            .output()
            .expect("runs");
        let body = if out.status.success() { out.stdout } else { out.stderr };
        (out.status.code(), String::from_utf8_lossy(&body).lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).unwrap_or_default())
    };
    std::fs::write(dir.join("generation_config.json"), format!(r#"{{"do_sample": true, "temperature": 0.7, "top_k": 1, "max_new_tokens": {sure}}}"#)).unwrap();
    let (code, json) = run(&["--seed", "5"]);
    assert_eq!(code, Some(0), "{json}");
    let o = &json["options"];
    assert_eq!((o["temperature"].as_f64(), o["topK"].as_u64(), o["maxTokens"].as_u64()), (Some(0.699999988079071), Some(1), Some(sure as u64)), "{o}");
    let ids: Vec<u64> = json["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(ids, greedy[..sure], "top-1 sampling is greedy decoding");
    let (_, json) = run(&["--temperature", "0", "--max-tokens", "2"]);
    assert_eq!((json["options"]["temperature"].as_f64(), json["options"]["topK"].as_u64(), json["ids"].as_array().map(Vec::len)), (Some(0.0), Some(1), Some(2)), "flags win");
    std::fs::write(dir.join("generation_config.json"), br#"{"do_sample": true, "top_p": 0}"#).unwrap();
    let (code, json) = run(&[]);
    assert_eq!((code, json["error"]["code"].as_str()), (Some(2), Some("BadModelFile")), "{json}");
    assert!(json["error"]["message"].as_str().unwrap_or("").contains("generation_config.json"), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hugrt embed` runs with, and as, the exit status and JSON a caller sees.
fn embed(dir: &std::path::Path, texts: &[&str]) -> (i32, serde_json::Value) {
    embed_on("gpu", dir, texts)
}

/// The same on `device` ("gpu" or "cpu").
fn embed_on(device: &str, dir: &std::path::Path, texts: &[&str]) -> (i32, serde_json::Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hugrt"));
    cmd.arg("embed").arg("--model").arg(dir).arg("--json").arg("--device").arg(device);
    for t in texts {
        cmd.arg("--text").arg(t);
    }
    let out = cmd.output().expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let body = if out.status.success() { out.stdout } else { out.stderr };
    let json = String::from_utf8_lossy(&body).lines().rev().find_map(|l| serde_json::from_str(l).ok()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn embed_json_gives_the_reference_embeddings() {
    embed_json_matches("gpu");
}

#[test]
fn embed_json_on_the_cpu_gives_the_reference_embeddings() {
    embed_json_matches("cpu");
}

fn embed_json_matches(device: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/tiny");
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/bert/tiny/expected.json")).expect("expected.json");
    let texts: Vec<&str> = expected["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text")).collect();
    let (code, json) = embed_on(device, &dir, &[texts[2], texts[0]]);
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["device"], device);
    assert_eq!(json["dims"], serde_json::json!([2, 32]));
    for (row, k) in [(0, 2), (1, 0)] {
        let got = json["embeddings"][row].as_array().expect("row");
        let want = expected["variants"]["f32"]["embeddings"][k].as_array().expect("want");
        assert_eq!(got.len(), 32);
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.as_f64().expect("number"), w.as_f64().expect("number"));
            assert!((g - w).abs() < 1e-5, "text {k}: {g} vs {w}");
        }
    }
    assert!(json["timings"]["loadMs"].as_f64().is_some() && json["timings"]["embedMs"].as_f64().is_some());
}

/// A sentence-transformers repo as the hub lays it out: the tiny BERT's files beside the module
/// files of tests/fixtures/sentence/`name`, in a temporary folder.
fn sentence_repo(name: &str) -> std::path::PathBuf {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = std::env::temp_dir().join(format!("hugrt-cli-st-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("dir");
        for e in std::fs::read_dir(from).expect("read dir").map(|e| e.expect("entry")) {
            if e.file_type().expect("type").is_dir() {
                copy_tree(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
            }
        }
    }
    copy_tree(&fixtures.join("sentence").join(name), &dir);
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixtures.join("bert/tiny").join(f), dir.join(f)).expect("copy");
    }
    dir
}

/// `hugrt embed --json` through a sentence-transformers folder's modules (CLS pooling, Dense,
/// Normalize; its "query" prompt by `--prompt-name`) gives sentence-transformers' embeddings, on
/// both devices.
#[test]
fn embed_json_follows_the_sentence_transformers_modules() {
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/sentence/expected.json")).expect("expected.json");
    let texts: Vec<&str> = expected["texts"].as_array().expect("texts").iter().map(|t| t.as_str().expect("text")).collect();
    let dir = sentence_repo("st6-cls-dense");
    let want = &expected["folders"]["st6-cls-dense"];
    for device in ["gpu", "cpu"] {
        for (args, key) in [(&[][..], "embeddings"), (&["--prompt-name", "query"][..], "query_embeddings")] {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_hugrt"));
            cmd.arg("embed").arg("--model").arg(&dir).arg("--json").arg("--device").arg(device).args(args);
            for t in &texts[..2] {
                cmd.arg("--text").arg(t);
            }
            // The folder has no default prompt: without --prompt-name no prompt applies.
            let out = cmd.output().expect("runs");
            assert!(out.status.success(), "{device} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
            assert_eq!((json["dims"].clone(), json["pooling"].clone()), (serde_json::json!([2, 16]), serde_json::json!(["cls"])), "{json}");
            for k in 0..2 {
                for (g, w) in json["embeddings"][k].as_array().expect("row").iter().zip(want[key][k].as_array().expect("want")) {
                    let (g, w) = (g.as_f64().expect("number"), w.as_f64().expect("number"));
                    assert!((g - w).abs() < 1e-5, "{device} {args:?} text {k}: {g} vs sentence-transformers {w}");
                }
            }
        }
        let (code, json) = {
            let out = Command::new(env!("CARGO_BIN_EXE_hugrt")).args(["embed", "--json", "--device", device, "--prompt-name", "passage", "--text", "hi", "--model"]).arg(&dir).output().expect("runs");
            (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).unwrap_or_default())
        };
        assert_eq!((code, json["error"]["code"].as_str()), (2, Some("Usage")), "an unknown prompt name (on the command line, a usage error): {json}");
    }
    std::fs::write(dir.join("1_Pooling/config.json"), br#"{"pooling_mode": "median"}"#).expect("write");
    let (code, json) = embed(&dir, &["hi"]);
    assert_eq!((code, json["error"]["code"].as_str()), (2, Some("BadModelFile")), "an unknown pooling mode: {json}");
    assert!(json["error"]["message"].as_str().unwrap_or("").contains("1_Pooling/config.json"), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn embed_refuses_missing_and_bad_models_with_a_typed_error() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/tiny");
    let dir = std::env::temp_dir().join(format!("hugrt-cli-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (code, json) = embed(&dir, &["hi"]);
    assert_eq!((code, json["error"]["code"].as_str()), (2, Some("NotFound")), "{json}");
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), dir.join(f)).expect("copy");
    }
    // A config whose sizes disagree with the weights, then one that is not a BERT config.
    for config in [r#"{"model_type":"bert","vocab_size":200,"hidden_size":64,"num_hidden_layers":2,"num_attention_heads":4,"intermediate_size":64,"max_position_embeddings":40}"#, r#"{"hidden_size": "big"}"#] {
        std::fs::write(dir.join("config.json"), config).expect("write");
        let (code, json) = embed(&dir, &["hi"]);
        assert_eq!((code, json["error"]["code"].as_str()), (2, Some("BadModelFile")), "{json}");
    }
    std::fs::copy(fixture.join("config.json"), dir.join("config.json")).expect("copy");
    std::fs::write(dir.join("model.safetensors"), b"<html>not found</html>").expect("write");
    let (code, json) = embed(&dir, &["hi"]);
    assert_eq!((code, json["error"]["code"].as_str()), (2, Some("BadModelFile")), "{json}");
    let (code, json) = embed_on("cpu", &dir, &["hi"]);
    assert_eq!((code, json["error"]["code"].as_str()), (2, Some("BadModelFile")), "{json}");
    let (code, json) = embed_on("tpu", &fixture, &["hi"]);
    assert_eq!((code, json["error"]["code"].as_str()), (2, Some("Usage")), "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hugrt bench model --json` on a checkpoint folder, on the GPU and the CPU: the figures the
/// README's table is made of, each present and sane (the speeds themselves are not asserted).
#[test]
fn bench_model_reports_its_figures() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/qwen2");
    for device in ["gpu", "cpu"] {
        let out = Command::new(env!("CARGO_BIN_EXE_hugrt"))
            .args(["bench", "model", "--model", dir, "--device", device, "--prompt-tokens", "8", "--decode-tokens", "2", "--json"])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{device}: {}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(json["architecture"], "qwen2");
        assert_eq!(json["device"], device);
        for key in ["loadS", "prefillTokPerS", "decodeTokPerS", "achievedGbPerS", "copyGbPerS", "ofCopyBandwidth", "peakRssMb"] {
            let v = json[key].as_f64().unwrap_or_else(|| panic!("{device}: {key} in {json}"));
            assert!(v.is_finite() && v > 0.0, "{device}: {key} = {v}");
        }
        // Every matrix of both layers and the tied head, read once per token.
        let bytes = json["weightBytes"].as_u64().expect("weightBytes");
        assert!(bytes > 1_000_000, "{device}: {bytes} bytes of weights per token");
        if device == "gpu" {
            // lavapipe takes the blocked kernel, which fuses: per layer norm + Q/K/V (+ biases),
            // RoPE of q and k, attention, output + residual, norm + gate/up + SwiGLU, down +
            // residual; then embedding, final norm + head, argmax.
            assert_eq!(json["dispatchesPerToken"], 2 * 6 + 3, "6 dispatches per layer and 3 more");
        }
    }
}

/// `hugrt classify --json` with `args` on `device`: (exit code, stdout or stderr JSON).
fn classify(device: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_hugrt")).arg("classify").args(args).args(["--device", device, "--json"]).output().expect("runs");
    let text = if out.status.success() { out.stdout } else { out.stderr };
    (out.status.code().unwrap_or(-1), serde_json::from_slice(&text).unwrap_or(serde_json::Value::Null))
}

/// Each encoder task on the sample PNG and WAV (tests/fixtures/pipelines) gives the labels and
/// scores of transformers' own processors and models within 1e-3 (as the browser does).
fn classify_matches_transformers(device: &str) {
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/pipelines/expected.json")).expect("expected.json");
    let p = "tests/fixtures/pipelines";
    let (png, wav) = (format!("{p}/sample.png"), format!("{p}/sample.wav"));
    let cases: Vec<(&str, Vec<String>, &serde_json::Value)> = vec![
        ("image-classification", vec!["--model".into(), "tests/fixtures/vit".into(), "--image".into(), png.clone()], &expected["image-classification"]),
        ("zero-shot-image-classification", vec!["--model".into(), "tests/fixtures/clip".into(), "--image".into(), png, "--labels".into(), "cat,dog,bird,fish".into()], &expected["zero-shot-image-classification"]["results"]),
        ("audio-classification", vec!["--model".into(), "tests/fixtures/ast".into(), "--audio".into(), wav], &expected["audio-classification"]),
        ("fill-mask", vec!["--model".into(), "tests/fixtures/bert-mlm".into(), "--text".into(), expected["fill-mask"]["text"].as_str().unwrap().into()], &expected["fill-mask"]["results"]),
        ("text-classification", vec!["--model".into(), "tests/fixtures/bert-cls".into(), "--top-k".into(), "3".into(), "--text".into(), expected["text-classification"]["text"].as_str().unwrap().into()], &expected["text-classification"]["results"]),
    ];
    for (task, args, want) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, json) = classify(device, &args);
        assert_eq!(code, 0, "{task} on {device}: {json}");
        assert_eq!(json["task"], task);
        let got = json["results"][0].as_array().expect("results");
        let want = want.as_array().expect("expected");
        assert_eq!(got.len(), want.len(), "{task}: {json}");
        for (g, w) in got.iter().zip(want) {
            let w_label = w.get("label").or_else(|| w.get("token_str")).expect("label");
            assert_eq!(&g["label"], w_label, "{task} on {device}: {json}");
            let (gs, ws) = (g["score"].as_f64().unwrap(), w["score"].as_f64().unwrap());
            assert!((gs - ws).abs() <= 1e-3, "{task} on {device}: {gs} vs {ws}");
        }
    }
}

#[test]
fn classify_json_matches_transformers_on_the_gpu() {
    classify_matches_transformers("gpu");
}

#[test]
fn classify_refuses_bad_inputs_with_a_typed_error() {
    let dir = std::env::temp_dir().join(format!("hugrt-cli-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let png = std::fs::read("tests/fixtures/pipelines/sample.png").expect("png");
    let cut = dir.join("cut.png");
    std::fs::write(&cut, &png[..png.len() / 2]).expect("write");
    let wav = dir.join("lying.wav");
    let mut lying = std::fs::read("tests/fixtures/pipelines/sample.wav").expect("wav");
    lying[40..44].copy_from_slice(&0x7fff_0000u32.to_le_bytes()); // the data chunk claims 2 GB
    std::fs::write(&wav, &lying).expect("write");
    let cut = cut.to_str().unwrap();
    let wav = wav.to_str().unwrap();
    for (args, code) in [
        (vec!["--model", "tests/fixtures/vit", "--image", cut], "BadInput"),
        (vec!["--model", "tests/fixtures/ast", "--audio", wav], "BadInput"),
        (vec!["--model", "tests/fixtures/vit", "--text", "hello"], "Usage"),
        (vec!["--model", "tests/fixtures/clip", "--image", "tests/fixtures/pipelines/sample.png"], "Usage"),
        (vec!["--model", "tests/fixtures/bert-mlm", "--text", "no mask here"], "BadModelFile"),
        (vec!["--model", "tests/fixtures", "--image", cut], "Io"),
    ] {
        let (status, json) = classify("gpu", &args);
        assert_eq!(status, 2, "{args:?}: {json}");
        assert_eq!(json["error"]["code"], code, "{args:?}: {json}");
    }
}

#[test]
fn classify_json_matches_transformers_on_the_cpu() {
    classify_matches_transformers("cpu");
}

#[test]
fn bench_encoder_reports_images_and_audio_seconds_per_second() {
    for (dir, device, unit) in [("tests/fixtures/vit", "gpu", "imagesPerS"), ("tests/fixtures/ast", "cpu", "audioSecondsPerS")] {
        let out = Command::new(env!("CARGO_BIN_EXE_hugrt")).args(["bench", "encoder", "--model", dir, "--device", device, "--batch", "3", "--quick", "--json"]).output().expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(json[unit].as_f64().is_some_and(|r| r > 0.0), "{json}");
        assert_eq!(json["batch"], 3);
        assert_eq!(json["device"], if device == "gpu" { "webgpu" } else { "cpu" });
    }
}

/// `hugrt classify --text Q --text-pair P` with a cross-encoder scores each pair as
/// sentence-transformers' `CrossEncoder.predict` does (the sigmoid of its one logit), on both
/// devices; a --text-pair without its --text is a usage error.
#[test]
fn classify_scores_text_pairs_with_a_cross_encoder() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reranker");
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/reranker/expected.json")).unwrap();
    let pairs = expected["pairs"].as_array().unwrap();
    let mut args: Vec<&str> = vec!["--model", dir];
    for p in pairs {
        args.extend(["--text", p[0].as_str().unwrap(), "--text-pair", p[1].as_str().unwrap()]);
    }
    for device in ["gpu", "cpu"] {
        let (code, json) = classify(device, &args);
        assert_eq!(code, 0, "{device}: {json}");
        for (i, want) in expected["cross_encoder"].as_array().unwrap().iter().enumerate() {
            let got = json["results"][i][0]["score"].as_f64().unwrap_or(f64::NAN);
            assert!((got - want.as_f64().unwrap()).abs() < 1e-5, "{device} pair {i}: {got} vs CrossEncoder {want}");
            assert_eq!(json["results"][i][0]["label"], "LABEL_0");
        }
    }
    let (code, json) = classify("cpu", &["--model", dir, "--text", "a", "--text", "b", "--text-pair", "p"]);
    assert_eq!((code, json["error"]["code"].as_str()), (2, Some("Usage")), "{json}");
}

/// `hugrt embed` and `hugrt classify` on the RoBERTa-family folders (tests/fixtures/roberta) on
/// both devices: the XLM-R, MPNet and ModernBERT folders' mean-pooled embeddings, XLM-R's
/// query-passage scores (the sigmoid of its one logit, as CrossEncoder gives it), RoBERTa's
/// fill-mask top token, all against transformers float64.
#[test]
fn roberta_and_xlmr_folders_embed_and_classify() {
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/roberta/expected.json")).unwrap();
    let xlmr = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roberta/xlmr-cls");
    let e = &expected["xlmr_cls"];
    let texts: Vec<&str> = e["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    for device in ["gpu", "cpu"] {
        let (code, json) = embed_on(device, &xlmr, &texts);
        assert_eq!(code, 0, "{device}: {json}");
        for (i, want) in e["embeddings"].as_array().unwrap().iter().enumerate() {
            for (g, w) in json["embeddings"][i].as_array().unwrap().iter().zip(want.as_array().unwrap()) {
                let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                assert!((g - w).abs() < 1e-5, "{device} XLM-R text {i}: {g} vs {w}");
            }
        }
        let mut args: Vec<String> = vec!["--model".into(), xlmr.display().to_string()];
        for p in e["pairs"].as_array().unwrap() {
            args.extend(["--text".into(), p["texts"][0].as_str().unwrap().into(), "--text-pair".into(), p["texts"][1].as_str().unwrap().into()]);
        }
        let (code, json) = classify(device, &args.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(code, 0, "{device}: {json}");
        for (i, p) in e["pairs"].as_array().unwrap().iter().enumerate() {
            let got = json["results"][i][0]["score"].as_f64().unwrap_or(f64::NAN);
            assert!((got - p["score"].as_f64().unwrap()).abs() < 1e-5, "{device} pair {i}: {got} vs {}", p["score"]);
        }
        // MPNet's and ModernBERT's folders: `hugrt embed` gives transformers' mean-pooled embeddings.
        for (key, folder) in [("mpnet", "mpnet-mlm"), ("modernbert", "modernbert-mlm")] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/roberta").join(folder);
            let texts: Vec<&str> = expected[key]["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
            let (code, json) = embed_on(device, &dir, &texts);
            assert_eq!(code, 0, "{device} {key}: {json}");
            for (i, want) in expected[key]["embeddings"].as_array().unwrap().iter().enumerate() {
                for (g, w) in json["embeddings"][i].as_array().unwrap().iter().zip(want.as_array().unwrap()) {
                    let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
                    assert!((g - w).abs() < 1e-5, "{device} {key} text {i}: {g} vs {w}");
                }
            }
        }
        let mlm = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/roberta/mlm");
        let fill = &expected["mlm"]["fill_mask"];
        let (code, json) = classify(device, &["--model", mlm, "--text", fill["text"].as_str().unwrap()]);
        assert_eq!(code, 0, "{device}: {json}");
        let top = &json["results"][0][0];
        assert!((top["score"].as_f64().unwrap_or(f64::NAN) - fill["results"][0]["score"].as_f64().unwrap()).abs() < 1e-5, "{device} fill-mask: {top} vs {}", fill["results"][0]);
    }
}

/// A mono IEEE-float WAV of `samples` at `rate`.
fn float_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * 4).to_le_bytes());
    w.extend_from_slice(&4u16.to_le_bytes());
    w.extend_from_slice(&32u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

/// `hugrt transcribe --json` on the tiny random multilingual Whisper (tests/fixtures/whisper/tiny)
/// and its seeded signal, on the GPU and the CPU: transformers' tokens with the language detected,
/// and with German forced and timestamps (one window, prompt first); a bad task and a WAV cut
/// short are typed errors.
#[test]
fn transcribe_json_gives_transformers_tokens() {
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/whisper/expected.json")).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u64> { v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect() };
    let features = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/whisper/features.safetensors")).unwrap();
    let table = hugrt::formats::read_table(&features, features.len() as u64, "features").unwrap();
    let t = table.get("signal.speechlike").unwrap();
    let signal: Vec<f32> = features[t.range.start as usize..t.range.end as usize].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let dir = std::env::temp_dir().join(format!("hugrt-cli-transcribe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wav = dir.join("speechlike.wav");
    let bytes = float_wav(&signal, 16000);
    std::fs::write(&wav, &bytes).unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/whisper/tiny");
    let run = |extra: &[&str], audio: &std::path::Path| Command::new(env!("CARGO_BIN_EXE_hugrt")).args(["transcribe", "--json", "--model", model, "--audio"]).arg(audio).args(extra).output().expect("runs");
    for device in ["gpu", "cpu"] {
        for (extra, want) in [(vec![], "detect_transcribe"), (vec!["--language", "de", "--timestamps"], "de_timestamps")] {
            let out = run(&[&["--device", device][..], &extra].concat(), &wav);
            assert!(out.status.success(), "{device} {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
            let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(ids(&json["windows"][0]["tokens"]), ids(&expected[want]), "{device} {extra:?}");
            assert_eq!(json["device"], if device == "gpu" { "webgpu" } else { "cpu" });
            assert!(json["timings"]["real_time_factor"].as_f64().unwrap() > 0.0);
            assert_eq!(json.get("chunks").is_some(), extra.contains(&"--timestamps"));
        }
    }
    let out = run(&["--device", "cpu", "--task", "summarize"], &wav);
    assert_eq!(out.status.code(), Some(2));
    let cut = dir.join("cut.wav");
    std::fs::write(&cut, &bytes[..40]).unwrap();
    let out = run(&["--device", "cpu"], &cut);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!((out.status.code(), err["error"]["code"].as_str()), (Some(2), Some("BadInput")));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}
