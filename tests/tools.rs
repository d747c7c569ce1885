//! Tool calls on a tiny random Qwen2.5-style checkpoint with Qwen2.5-Instruct's chat template
//! (tests/fixtures/tools, scripts/fixtures/make_tools_fixture.py): the template renders tools, a
//! call and the tool's answer as transformers' `apply_chat_template(..., tools=...)` does; calls
//! made under `tool_choice` parse and their arguments validate against the tool's schema (the
//! `jsonschema` crate), on both backends; what cannot be done is a typed error.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use hugrt::generate::chat::{ChatTemplate, Message};
use hugrt::generate::tools::parse_calls;
use hugrt::generate::{FinishReason, GenerateOptions, Generation};
use hugrt::tokenizer::Tokenizer;
use serde_json::{Value, json};

use common::{Device, log};

const CONFIG: &[u8] = include_bytes!("fixtures/tools/config.json");
const WEIGHTS: &[u8] = include_bytes!("fixtures/tools/model.safetensors");
const EXPECTED: &str = include_str!("fixtures/tools/expected.json");

fn tokenizer() -> Tokenizer {
    Tokenizer::from_json(include_bytes!("fixtures/tools/tokenizer.json"))
        .and_then(|t| t.with_config(include_bytes!("fixtures/tools/tokenizer_config.json")))
        .expect("the fixture's tokenizer")
}

fn template(tok: &Tokenizer) -> ChatTemplate {
    let name = |id: Option<u32>| id.and_then(|i| tok.id_to_token(i)).unwrap_or_default();
    ChatTemplate::new(tok.chat_template.as_deref().expect("a template"), &name(tok.bos_id), &name(tok.eos_id)).expect("parses")
}

fn messages(v: &Value) -> Vec<Message> {
    serde_json::from_value(v.clone()).expect("messages")
}

#[test]
fn the_qwen25_template_renders_tools_as_transformers() {
    let want: Value = serde_json::from_str(EXPECTED).expect("fixture");
    let tok = tokenizer();
    let t = template(&tok);
    assert!(t.supports_tools());
    let tools: Vec<Value> = serde_json::from_value(want["tools"].clone()).expect("tools");
    let conversation = messages(&want["conversation"]);
    assert_eq!(t.render_with_tools(&conversation, Some(&tools), true).expect("renders"), want["with_tools"].as_str().expect("text"));
    assert_eq!(t.render_with_tools(&conversation, None, true).expect("renders"), want["without_tools"].as_str().expect("text"));
    assert_eq!(t.render_with_tools(&messages(&want["first"]), Some(&tools), true).expect("renders"), want["first_with_tools"].as_str().expect("text"));
    // OpenAI sends a call's arguments as a JSON string: rendered as the object it holds.
    let mut openai = want["conversation"].clone();
    let args = &mut openai[1]["tool_calls"][0]["function"]["arguments"];
    *args = Value::String(args.to_string());
    openai[1]["content"] = Value::Null;
    assert_eq!(t.render_with_tools(&messages(&openai), Some(&tools), true).expect("renders"), want["with_tools"].as_str().expect("text"));
    // A ChatML template without tools says so.
    let plain = ChatTemplate::new("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}", "", "").expect("parses");
    assert!(!plain.supports_tools());
}

/// Generates under `tools` and `tool_choice` after the fixture's first turn.
async fn call(device: Device, choice: Value, seed: u64, temperature: f32, parallel: bool) -> (String, Generation) {
    let want: Value = serde_json::from_str(EXPECTED).expect("fixture");
    let tok = tokenizer();
    let prompt = tok.encode(want["first_with_tools"].as_str().expect("text"), false).expect("encodes");
    let mut model = common::decoder(device, Some(CONFIG), "model.safetensors", WEIGHTS, Some(1024)).await.expect("loads");
    let options = GenerateOptions {
        max_tokens: 200,
        temperature,
        seed,
        tools: serde_json::from_value(want["tools"].clone()).expect("tools"),
        tool_choice: serde_json::from_value(choice).expect("a choice"),
        parallel_tool_calls: parallel,
        ..GenerateOptions::default()
    };
    let mut g = Generation::with_tokenizer(prompt, options, &tok).expect("compiles");
    let text = g.run(&mut model, &tok).await.expect("generates");
    (text, g)
}

fn check_calls(text: &str, only: Option<&str>) {
    let want: Value = serde_json::from_str(EXPECTED).expect("fixture");
    let calls = parse_calls(text).unwrap_or_else(|| panic!("no calls in {text:?}"));
    for c in calls {
        let tool = want["tools"].as_array().expect("tools").iter().find(|t| t["function"]["name"] == c.name).unwrap_or_else(|| panic!("unknown tool {}", c.name));
        assert!(only.is_none_or(|o| o == c.name), "{} called, {only:?} asked", c.name);
        let validator = jsonschema::validator_for(&tool["function"]["parameters"]).expect("a validator");
        let errors: Vec<String> = validator.iter_errors(&c.arguments).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{}({}) does not validate: {errors:?}", c.name, c.arguments);
    }
}

fn on(device: Device) {
    pollster::block_on(async {
        for (seed, temperature) in [(0, 0.0), (1, 1.0), (2, 1.0)] {
            let (text, g) = call(device, json!("required"), seed, temperature, false).await;
            log(&format!("{device:?} required t={temperature}: {text:?}"));
            assert_eq!(g.finish_reason(), Some(FinishReason::Stop), "{text:?}");
            check_calls(&text, None);
        }
        let (text, g) = call(device, json!({ "type": "function", "function": { "name": "lookup" } }), 3, 1.0, false).await;
        log(&format!("{device:?} named: {text:?}"));
        assert_eq!(g.finish_reason(), Some(FinishReason::Stop), "{text:?}");
        check_calls(&text, Some("lookup"));
        // Parallel calls (this random model keeps calling): at most MAX_PARALLEL_CALLS, each valid.
        let (text, g) = call(device, json!("required"), 4, 0.0, true).await;
        if g.finish_reason() == Some(FinishReason::Stop) {
            let n = parse_calls(&text).map_or(0, |c| c.len());
            assert!((1..=hugrt::generate::tools::MAX_PARALLEL_CALLS).contains(&n), "{n} calls: {text:?}");
            check_calls(&text, None);
        }
        for seed in 0..3 {
            let (text, _) = call(device, json!("auto"), seed, 1.0, false).await;
            log(&format!("{device:?} auto: {text:?}"));
            if text.starts_with('<') {
                check_calls(&text, None);
            }
        }
    });
}

#[test]
fn calls_validate_on_the_cpu() {
    on(Device::Cpu);
}

#[test]
fn calls_validate_on_the_gpu() {
    on(Device::Gpu);
}

#[test]
fn what_cannot_be_done_is_a_typed_error() {
    let tok = tokenizer();
    let want: Value = serde_json::from_str(EXPECTED).expect("fixture");
    let tools: Vec<Value> = serde_json::from_value(want["tools"].clone()).expect("tools");
    let with = |choice: Value, format: Option<Value>| GenerateOptions {
        tools: tools.clone(),
        tool_choice: serde_json::from_value(choice).expect("a choice"),
        response_format: format.map(|f| serde_json::from_value(f).expect("a format")),
        ..GenerateOptions::default()
    };
    let code = |tok: &Tokenizer, o: GenerateOptions| Generation::with_tokenizer(vec![1], o, tok).err().map(|e| e.code());
    assert_eq!(code(&tok, with(json!({ "type": "function", "function": { "name": "nope" } }), None)), Some("Usage"), "an unknown tool");
    assert_eq!(code(&tok, with(json!("sometimes"), None)), Some("Usage"), "an unknown tool_choice");
    assert_eq!(code(&tok, with(Value::Null, Some(json!({ "type": "json_object" })))), Some("Usage"), "tools and a response format");
    assert_eq!(code(&tok, with(json!("none"), None)), None, "tool_choice none: no constraint");
    // The qwen2 fixture's ChatML template writes no tool calls.
    let chatml = Tokenizer::from_json(include_bytes!("fixtures/qwen2/tokenizer.json"))
        .and_then(|t| t.with_config(include_bytes!("fixtures/qwen2/tokenizer_config.json")))
        .expect("tokenizer");
    assert_eq!(code(&chatml, with(json!("auto"), None)), Some("Unsupported"));
}
