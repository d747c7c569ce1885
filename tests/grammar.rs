//! Constrained decoding on the real SmolLM2-135M-Instruct (CPU backend): outputs under random JSON
//! schemas and regexes, greedy and sampled, checked by independent validators (the `jsonschema`
//! and `regex` crates); a Lark grammar; logprobs and OpenAI's penalties against a reference
//! computed here from the model's raw logits; typed errors for what cannot be compiled.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use hugrt::formats::{Metadata, TensorTable};
use hugrt::generate::chat::{ChatTemplate, Message};
use hugrt::generate::{FinishReason, GenerateError, GenerateOptions, Generation, LanguageModel, Next, Pick};
use hugrt::models::AnyDecoder;
use hugrt::rng::SeededRng;
use hugrt::tokenizer::Tokenizer;
use serde_json::{Value, json};

use common::log;

/// The real SmolLM2-135M-Instruct Q4_1 (scripts/models.sh) on the CPU, and its tokenizer.
fn smollm2() -> (AnyDecoder, Tokenizer) {
    smollm2_on(common::Device::Cpu)
}

fn smollm2_on(device: common::Device) -> (AnyDecoder, Tokenizer) {
    let out = std::process::Command::new("bash").arg("scripts/models.sh").current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("runs scripts/models.sh");
    assert!(out.status.success(), "scripts/models.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let path = std::path::Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let mut file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let table: TensorTable = hugrt::formats::read_table_from(&mut file, "SmolLM2-135M-Instruct.Q4_1.gguf").expect("reads the GGUF");
    let Metadata::Gguf { metadata, .. } = &table.metadata else { panic!("a GGUF") };
    let tokenizer = Tokenizer::from_gguf(metadata).expect("its tokenizer");
    let model = pollster::block_on(AnyDecoder::load(pollster::block_on(common::gpu_for(device)), None, &table, Some(512), &mut file)).expect("loads");
    (model, tokenizer)
}

/// `request` as the user's message, by the model's chat template.
fn chat_prompt(tokenizer: &Tokenizer, request: &str) -> Vec<u32> {
    let name = |id: Option<u32>| id.and_then(|i| tokenizer.id_to_token(i)).unwrap_or_default();
    let template = ChatTemplate::new(tokenizer.chat_template.as_deref().expect("a chat template"), &name(tokenizer.bos_id), &name(tokenizer.eos_id)).expect("compiles");
    let text = template.render(&[Message::new("user", request)], true).expect("renders");
    tokenizer.encode(&text, false).expect("encodes")
}

fn run(model: &mut AnyDecoder, tokenizer: &Tokenizer, prompt: &[u32], options: GenerateOptions) -> Result<(String, Generation), GenerateError> {
    let mut g = Generation::with_tokenizer(prompt.to_vec(), options, tokenizer)?;
    let text = pollster::block_on(g.run(model, tokenizer))?;
    Ok((text, g))
}

/// A random JSON schema node of at most `depth` levels of nesting.
fn schema_node(rng: &mut SeededRng, depth: u32) -> Value {
    let pick = |rng: &mut SeededRng, n: usize| ((rng.next_unit() * n as f32) as usize).min(n - 1);
    let kinds = if depth == 0 { 6 } else { 8 };
    match pick(rng, kinds) {
        0 => {
            let patterns = ["^[a-z]{2,6}$", "^[A-Z][a-z]{1,7}$", "^[0-9]{3}-[0-9]{4}$", "^(yes|no|maybe)$", "^#[0-9a-f]{6}$"];
            if rng.next_unit() < 0.5 {
                json!({ "type": "string", "pattern": patterns[pick(rng, patterns.len())] })
            } else {
                json!({ "type": "string", "minLength": pick(rng, 3), "maxLength": 3 + pick(rng, 12) })
            }
        }
        1 => {
            let lo = pick(rng, 200) as i64 - 100;
            json!({ "type": "integer", "minimum": lo, "maximum": lo + 1 + pick(rng, 1000) as i64 })
        }
        // Sampled digits of an unbounded fraction can run past any token budget: the precision
        // is bounded as a schema would bound it.
        2 => {
            let step = [0.5, 0.01, 0.125][pick(rng, 3)];
            json!({ "type": "number", "minimum": -10, "maximum": 10, "multipleOf": step })
        }
        3 => json!({ "type": "boolean" }),
        4 => {
            let enums = [json!(["red", "green", "blue"]), json!([1, 2, 3, 5, 8]), json!(["a", 1, null, true])];
            json!({ "enum": enums[pick(rng, enums.len())] })
        }
        5 => json!({ "type": "null" }),
        6 => {
            let min = pick(rng, 2);
            json!({ "type": "array", "items": schema_node(rng, depth - 1), "minItems": min, "maxItems": min + 1 + pick(rng, 3) })
        }
        _ => object_schema(rng, depth - 1),
    }
}

/// An object with 1–4 properties (some required), no others (as OpenAI's strict mode wants).
fn object_schema(rng: &mut SeededRng, depth: u32) -> Value {
    const NAMES: [&str; 8] = ["name", "age", "tags", "color", "score", "active", "address", "items"];
    let n = 1 + ((rng.next_unit() * 4.0) as usize).min(3);
    let start = ((rng.next_unit() * NAMES.len() as f32) as usize).min(NAMES.len() - 1);
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for k in 0..n {
        let name = NAMES[(start + k) % NAMES.len()];
        properties.insert(name.into(), schema_node(rng, depth));
        if rng.next_unit() < 0.6 {
            required.push(name);
        }
    }
    json!({ "type": "object", "properties": properties, "required": required, "additionalProperties": false })
}

#[test]
fn outputs_under_random_json_schemas_and_regexes_validate() {
    let (mut model, tokenizer) = smollm2();
    let prompt = chat_prompt(&tokenizer, "Describe a person as a JSON object.");
    let mut rng = SeededRng::new(2026);
    let mut masks = Vec::new();
    let mut runs = 0;
    for case in 0..10 {
        let schema = object_schema(&mut rng, if case < 5 { 1 } else { 2 });
        let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{schema}: the validator refuses it: {e}"));
        for (mode, temperature) in [("greedy", 0.0), ("sampled", 1.0)] {
            let format = json!({ "type": "json_schema", "json_schema": { "name": "case", "schema": schema, "strict": true } });
            let options = GenerateOptions { max_tokens: 200, temperature, seed: case, response_format: Some(serde_json::from_value(format).expect("a format")), ..GenerateOptions::default() };
            let (text, g) = run(&mut model, &tokenizer, &prompt, options).unwrap_or_else(|e| panic!("{schema}: {e}"));
            log(&format!("{mode} {schema}\n  -> {text}"));
            assert_eq!(g.finish_reason(), Some(FinishReason::Stop), "{mode}, {schema}: ended by length: {text}");
            let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{mode}, {schema}: not JSON ({e}): {text}"));
            let errors: Vec<String> = validator.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{mode}, {schema}: {text} does not validate: {errors:?}");
            masks.extend_from_slice(g.mask_times());
            runs += 1;
        }
    }
    const REGEXES: [&str; 5] = [r"[A-Z][a-z]{2,8} [A-Z][a-z]{2,8}", r"(cat|dog|bird)s? \d{1,3}", r"\d{4}-\d{2}-\d{2}", r"(yes|no)(, because [a-z ]{3,20})?\.", r"[a-f0-9]{8}"];
    let prompt = chat_prompt(&tokenizer, "Answer briefly.");
    for (i, pattern) in REGEXES.iter().enumerate() {
        let full = regex::Regex::new(&format!("^(?:{pattern})$")).expect("a regex");
        for temperature in [0.0, 1.0] {
            let format = json!({ "type": "regex", "pattern": pattern });
            let options = GenerateOptions { max_tokens: 64, temperature, seed: i as u64, response_format: Some(serde_json::from_value(format).expect("a format")), ..GenerateOptions::default() };
            let (text, g) = run(&mut model, &tokenizer, &prompt, options).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            log(&format!("regex {pattern} t={temperature} -> {text:?} ({:?})", g.finish_reason()));
            assert_eq!(g.finish_reason(), Some(FinishReason::Stop), "{pattern}: ended by length: {text:?}");
            assert!(full.is_match(&text), "{pattern} t={temperature}: {text:?} does not match");
            masks.extend_from_slice(g.mask_times());
        }
    }
    masks.sort_by(f64::total_cmp);
    log(&format!("{runs} schema runs; grammar mask per token: median {:.3} ms, worst {:.3} ms over {} tokens", masks[masks.len() / 2], masks[masks.len() - 1], masks.len()));
}

#[test]
fn a_schema_on_the_gpu() {
    // The GPU backend reads the logits back for the mask (lavapipe without a GPU).
    let (mut model, tokenizer) = smollm2_on(common::Device::Gpu);
    let schema = json!({ "type": "object", "properties": { "name": { "type": "string", "maxLength": 12 }, "age": { "type": "integer", "minimum": 0, "maximum": 120 },
        "city": { "enum": ["Paris", "Rome", "Berlin"] } }, "required": ["name", "age", "city"], "additionalProperties": false });
    let format = json!({ "type": "json_schema", "json_schema": { "name": "person", "schema": schema, "strict": true } });
    let options = GenerateOptions { max_tokens: 40, response_format: Some(serde_json::from_value(format).expect("a format")), logprobs: true, ..GenerateOptions::default() };
    let (text, g) = run(&mut model, &tokenizer, &chat_prompt(&tokenizer, "Describe a person."), options).expect("generates");
    log(&format!("GPU -> {text}"));
    assert_eq!(g.finish_reason(), Some(FinishReason::Stop), "{text}");
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    let validator = jsonschema::validator_for(&schema).expect("a validator");
    assert!(validator.is_valid(&value), "{text}");
    assert_eq!(g.logprobs().len(), g.tokens().len());
}

#[test]
fn a_lark_grammar_and_any_json_object() {
    let (mut model, tokenizer) = smollm2();
    let prompt = chat_prompt(&tokenizer, "Write a short list of fruits.");
    // A bracketed list of 1–4 lowercase words: the output is checked by a regex of the same language.
    let lark = r#"start: "[" item ("," " " item)~0..3 "]"
item: /[a-z]{2,10}/"#;
    let same = regex::Regex::new(r"^\[[a-z]{2,10}(, [a-z]{2,10}){0,3}\]$").expect("a regex");
    for temperature in [0.0, 1.0] {
        let options = GenerateOptions { max_tokens: 64, temperature, seed: 3, response_format: Some(serde_json::from_value(json!({ "type": "grammar", "grammar": lark })).expect("a format")), ..GenerateOptions::default() };
        let (text, g) = run(&mut model, &tokenizer, &prompt, options).expect("generates");
        log(&format!("lark t={temperature} -> {text:?}"));
        assert_eq!(g.finish_reason(), Some(FinishReason::Stop));
        assert!(same.is_match(&text), "{text:?}");
    }
    let options = GenerateOptions { max_tokens: 120, response_format: Some(serde_json::from_value(json!({ "type": "json_object" })).expect("a format")), ..GenerateOptions::default() };
    let (text, g) = run(&mut model, &tokenizer, &chat_prompt(&tokenizer, "Give me a JSON object about a cat."), options).expect("generates");
    log(&format!("json_object -> {text}"));
    if g.finish_reason() == Some(FinishReason::Stop) {
        assert!(serde_json::from_str::<Value>(&text).expect("JSON").is_object(), "{text}");
    } else {
        // Cut by max_tokens: still a prefix of an object.
        assert!(text.starts_with('{'), "{text}");
    }
}

#[test]
fn what_cannot_be_compiled_is_a_typed_error() {
    let (_, tokenizer) = smollm2();
    let strict = |schema: Value| json!({ "type": "json_schema", "json_schema": { "name": "x", "schema": schema, "strict": true } });
    for (what, format) in [
        ("a regex that does not parse", json!({ "type": "regex", "pattern": "(unclosed" })),
        ("a Lark grammar without start", json!({ "type": "grammar", "grammar": "item: \"a\"" })),
        ("an unknown schema type", strict(json!({ "type": "fraction" }))),
        ("an unsatisfiable schema", strict(json!({ "type": "integer", "minimum": 5, "maximum": 1 }))),
    ] {
        let options = GenerateOptions { response_format: Some(serde_json::from_value(format).expect("a format")), ..GenerateOptions::default() };
        let err = Generation::with_tokenizer(vec![1, 2], options, &tokenizer).err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert_eq!(err.code(), "Usage", "{what}: {err}");
        log(&format!("{what}: {err}"));
    }
    // Bad options are refused before anything runs.
    for bad in [GenerateOptions { frequency_penalty: 2.5, ..Default::default() }, GenerateOptions { top_logprobs: 3, ..Default::default() }, GenerateOptions { logprobs: true, top_logprobs: 21, ..Default::default() }] {
        assert!(matches!(Generation::with_tokenizer(vec![1], bad.clone(), &tokenizer), Err(GenerateError::BadOption(_))), "{bad:?}");
    }
    // A response format needs the vocabulary: the plain constructor says so.
    let options = GenerateOptions { response_format: Some(serde_json::from_value(json!({ "type": "json_object" })).expect("a format")), ..Default::default() };
    assert!(matches!(Generation::new(vec![1], options, vec![2]), Err(GenerateError::BadOption(_))));
    // Unknown response format types and fields are refused by the options' parser.
    assert!(serde_json::from_value::<GenerateOptions>(json!({ "responseFormat": { "type": "xml" } })).is_err());
}

/// log-softmax in f64.
fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln() + m;
    logits.iter().map(|&l| l as f64 - z).collect()
}

#[test]
fn logprobs_are_the_log_softmax_of_the_penalized_logits() {
    let (mut model, tokenizer) = smollm2();
    let prompt = chat_prompt(&tokenizer, "Count: one, two, three, one, two, three,");
    let (frequency, presence) = (0.7f32, 0.4f32);
    for (temperature, top_logprobs) in [(0.0, 5), (0.8, 3)] {
        let options = GenerateOptions { max_tokens: 12, temperature, seed: 11, frequency_penalty: frequency, presence_penalty: presence, logprobs: true, top_logprobs, ..GenerateOptions::default() };
        // From an empty cache, so that the reference below feeds the model the same chunks (a
        // many-token prefill and a one-token step quantize activations differently).
        model.truncate(0);
        let (text, g) = run(&mut model, &tokenizer, &prompt, options).expect("generates");
        let (ids, entries) = (g.tokens().to_vec(), g.logprobs().to_vec());
        assert_eq!(entries.len(), ids.len(), "one entry per output token");
        log(&format!("t={temperature}: {text:?}"));
        // The reference: the model's raw logits at each position, penalised here by OpenAI's formula
        // (mu[j] -= c[j] * frequency + (c[j] > 0) * presence over the tokens generated before).
        model.truncate(0);
        let mut logits = match pollster::block_on(model.forward(&prompt, Pick::Logits)).expect("prefill") {
            Next::Logits(l) => l,
            Next::Token(_) => panic!("logits asked"),
        };
        for (k, (&id, entry)) in ids.iter().zip(&entries).enumerate() {
            let mut penalized = logits.clone();
            let mut counts = std::collections::HashMap::new();
            for &t in &ids[..k] {
                *counts.entry(t).or_insert(0u32) += 1;
            }
            for (&t, &c) in &counts {
                penalized[t as usize] -= c as f32 * frequency + presence;
            }
            let want = log_softmax(&penalized);
            assert!((entry.logprob as f64 - want[id as usize]).abs() < 1e-3, "step {k}: logprob {} vs {}", entry.logprob, want[id as usize]);
            let bytes = tokenizer.decode(&[id], false).expect("decodes");
            if !bytes.contains('\u{FFFD}') {
                assert_eq!(entry.token, bytes, "step {k}: the token's text");
            }
            let mut order: Vec<usize> = (0..want.len()).collect();
            order.sort_by(|&a, &b| want[b].total_cmp(&want[a]));
            assert_eq!(entry.top_logprobs.len(), top_logprobs as usize);
            for (top, &j) in entry.top_logprobs.iter().zip(&order) {
                assert!((top.logprob as f64 - want[j]).abs() < 1e-3, "step {k}: top logprob {} vs {}", top.logprob, want[j]);
            }
            if temperature == 0.0 {
                assert_eq!(id as usize, order[0], "step {k}: greedy picks the most likely penalised token");
            }
            logits = match pollster::block_on(model.forward(&[id], Pick::Logits)).expect("decode") {
                Next::Logits(l) => l,
                Next::Token(_) => panic!("logits asked"),
            };
        }
        // The penalties change the greedy output here (the prompt invites repetition).
        if temperature == 0.0 {
            let plain = GenerateOptions { max_tokens: 12, ..GenerateOptions::default() };
            let (plain_text, _) = run(&mut model, &tokenizer, &prompt, plain).expect("generates");
            log(&format!("without penalties: {plain_text:?}"));
        }
    }
}

/// Bad grammars, regexes and schemas are errors, never a panic (in the browser a panic ends the
/// wasm instance): random text made of the grammars' own punctuation, and random JSON as schemas.
#[test]
fn random_response_formats_are_refused_or_compiled_without_panicking() {
    use proptest::prelude::*;
    let (_, tokenizer) = smollm2();
    let compile = |format: Value| {
        let Ok(format) = serde_json::from_value(format) else { return };
        let options = GenerateOptions { response_format: Some(format), ..GenerateOptions::default() };
        if let Err(e) = Generation::with_tokenizer(vec![1], options, &tokenizer) {
            assert!(["Usage", "Grammar"].contains(&e.code()), "{e}");
        }
    };
    let text = "[a-z0-9 :|()\\[\\]{}*+?~.,\"'/\\\\^$%#<>=-]{0,40}";
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config { cases: 300, failure_persistence: None, ..Default::default() });
    runner
        .run(&(text, text), |(a, b)| {
            compile(json!({ "type": "regex", "pattern": a }));
            compile(json!({ "type": "grammar", "grammar": format!("start: {a}\n{b}") }));
            Ok(())
        })
        .expect("no panic");
    let leaf = prop_oneof![Just(json!(null)), any::<bool>().prop_map(Value::from), any::<i32>().prop_map(Value::from), "[a-z]{0,8}".prop_map(Value::from)];
    let keys = prop_oneof![Just("type"), Just("properties"), Just("items"), Just("enum"), Just("minimum"), Just("maxLength"), Just("pattern"), Just("anyOf"), Just("$ref"), Just("required")];
    let value = leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from), proptest::collection::vec((keys.clone(), inner), 0..4).prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))]
    });
    runner
        .run(&value, |schema| {
            compile(json!({ "type": "json_schema", "json_schema": { "schema": schema, "strict": true } }));
            compile(json!({ "type": "json_schema", "json_schema": { "schema": schema } }));
            Ok(())
        })
        .expect("no panic");
}
