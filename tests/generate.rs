//! The generation loop: streamed text, stop strings, end tokens, the context policy and prefix
//! reuse (with a scripted model, on the real SmolLM2 vocabulary), chat templates (against
//! Jinja2's rendering of SmolLM2's template) and their sandbox, and generation on the GPU Llama
//! (greedy equal to the model's own argmax loop, seeded sampling reproducible, repetition
//! penalty applied). Natively and in headless Chromium.

use hugrt::formats::Metadata;
use hugrt::generate::chat::{ChatTemplate, ChatTemplateError, Message};
use hugrt::generate::stop::{StopCheck, StopStrings};
use hugrt::generate::stream::TextStream;
use hugrt::generate::{FinishReason, GenerateError, GenerateOptions, Generation, LanguageModel, Next, Pick};
use hugrt::models::ModelError;
use hugrt::tokenizer::Tokenizer;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;

fn smollm2() -> Tokenizer {
    const GGUF: &[u8] = include_bytes!("fixtures/tokenizer/smollm2/tokenizer.gguf");
    let table = hugrt::formats::read_table(GGUF, GGUF.len() as u64, "tokenizer.gguf").expect("reads");
    let Metadata::Gguf { metadata, .. } = &table.metadata else { panic!("not GGUF") };
    Tokenizer::from_gguf(metadata).expect("builds")
}

/// A model that answers a fixed script of tokens, one per forward pass, and records what it was fed.
struct Scripted {
    script: Vec<u32>,
    calls: usize,
    cached: Vec<u32>,
    context: u32,
    fed: Vec<Vec<u32>>,
}

impl Scripted {
    fn new(script: Vec<u32>, context: u32) -> Self {
        Self { script, calls: 0, cached: Vec::new(), context, fed: Vec::new() }
    }
}

impl LanguageModel for Scripted {
    fn context(&self) -> u32 {
        self.context
    }
    fn cached(&self) -> &[u32] {
        &self.cached
    }
    fn truncate(&mut self, len: usize) {
        self.cached.truncate(len);
    }
    async fn forward(&mut self, tokens: &[u32], _pick: Pick) -> Result<Next, ModelError> {
        if self.cached.len() + tokens.len() > self.context as usize {
            return Err(ModelError::ContextFull { ctx: self.context, pos: (self.cached.len() + tokens.len()) as u32 });
        }
        self.cached.extend_from_slice(tokens);
        self.fed.push(tokens.to_vec());
        let next = self.script.get(self.calls).copied().unwrap_or(0);
        self.calls += 1;
        Ok(Next::Token(next))
    }
}

fn opts(max_tokens: u32, stop: &[&str]) -> GenerateOptions {
    GenerateOptions { max_tokens, stop: stop.iter().map(|s| s.to_string()).collect(), ..GenerateOptions::default() }
}

async fn pieces(g: &mut Generation, model: &mut impl LanguageModel, tok: &Tokenizer) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(p) = g.step(model, tok).await.expect("step") {
        out.push(p);
    }
    out
}

gpu_test!(streamed_text_never_splits_a_character, async {
    let tok = smollm2();
    let text = "Grüße 👋🏽 from Zürich: 東京は晴れ، مرحبا — ½ ∑ naïve café 🇫🇷!";
    let ids = tok.encode(text, false).unwrap();
    let mut stream = TextStream::new();
    let mut shown = String::new();
    let mut held = 0;
    for &id in &ids {
        let piece = stream.push(&tok, id).unwrap();
        assert!(!piece.contains('\u{FFFD}'), "a broken character was shown: {piece:?}");
        held += usize::from(piece.is_empty());
        shown.push_str(&piece);
    }
    shown.push_str(&stream.flush(&tok).unwrap());
    assert_eq!(shown, tok.decode(&ids, true).unwrap());
    assert_eq!(shown, text);
    assert!(held > 0, "no token ended inside a character: the test text does not exercise the hold-back");
});

gpu_test!(stop_strings_are_held_back_and_cut, async {
    let mut s = StopStrings::new(&["o W".to_string(), "".to_string()]);
    assert_eq!(s.push("Hel"), StopCheck::Continue("Hel".into()));
    assert_eq!(s.push("lo W"), StopCheck::Stopped("l".into()));
    let mut s = StopStrings::new(&["</answer>".to_string()]);
    assert_eq!(s.push("42 </ans"), StopCheck::Continue("42 ".into()));
    assert_eq!(s.push("wer? no"), StopCheck::Continue("</answer? no".into()));
    assert_eq!(s.push(" <"), StopCheck::Continue(" ".into()));
    assert_eq!(s.finish(), "<");
});

// generation_config.json's eos_token_id (one id or a list) replaces the end-of-turn heuristics, as
// in transformers; its bos_token_id is taken; ids past the vocabulary are refused.
gpu_test!(generation_config_sets_the_end_ids, async {
    let tok = smollm2();
    let heuristic = tok.end_ids();
    assert!(heuristic.len() > 1, "SmolLM2's vocabulary has several end-of-turn tokens: {heuristic:?}");
    let eos = tok.eos_id;
    let listed = tok.clone().with_generation_config(br#"{"eos_token_id": [7, 9], "bos_token_id": 5}"#).unwrap();
    let mut want: Vec<u32> = eos.into_iter().chain([7, 9]).collect();
    want.sort_unstable();
    want.dedup();
    assert_eq!((listed.end_ids(), listed.bos_id), (want, Some(5)));
    let one = tok.clone().with_generation_config(br#"{"eos_token_id": 11}"#).unwrap();
    assert!(one.end_ids().contains(&11) && one.end_ids().len() <= 2, "{:?}", one.end_ids());
    assert_eq!(tok.clone().with_generation_config(br#"{"temperature": 0.7}"#).unwrap().end_ids(), heuristic, "no eos_token_id: the heuristics stay");
    for bad in [&br#"{"eos_token_id": [2, 99999999]}"#[..], br#"{"eos_token_id": "</s>"}"#, br#"{"bos_token_id": -1}"#, b"{"] {
        assert!(tok.clone().with_generation_config(bad).is_err(), "{}", String::from_utf8_lossy(bad));
    }
});

// generation_config.json's sampling settings are the defaults of the options a caller leaves out,
// read as transformers' `generate` reads them: `do_sample` false (or absent) is greedy whatever
// the temperature; true samples with `top_k` 50 unless the file says otherwise; a caller's own
// option wins; `repetition_penalty` and `max_new_tokens` apply either way.
gpu_test!(generation_config_sampling_defaults_follow_transformers, async {
    use hugrt::generate::OptionDefaults;
    use serde_json::json;
    let read = |config: serde_json::Value| OptionDefaults::from_generation_config(&config).unwrap_or_else(|e| panic!("{config}: {e}"));
    let none = json!({});
    let greedy = read(json!({ "temperature": 0.6, "top_p": 0.9, "repetition_penalty": 1.1, "max_new_tokens": 7 })).options(none.clone()).unwrap();
    assert_eq!((greedy.temperature, greedy.top_p, greedy.repetition_penalty, greedy.max_tokens), (0.0, 1.0, 1.1, 7));
    // Qwen3's own generation_config.json.
    let qwen3 = read(json!({ "do_sample": true, "temperature": 0.6, "top_k": 20, "top_p": 0.95, "eos_token_id": [151645, 151643] }));
    let o = qwen3.options(none.clone()).unwrap();
    assert_eq!((o.temperature, o.top_k, o.top_p, o.min_p, o.max_tokens), (0.6, 20, 0.95, 0.0, GenerateOptions::default().max_tokens));
    let o = qwen3.options(json!({ "temperature": 0, "topK": 0, "maxTokens": 3 })).unwrap();
    assert_eq!((o.temperature, o.top_k, o.top_p, o.max_tokens), (0.0, 0, 0.95, 3), "the caller's options win, the rest stay");
    let o = read(json!({ "do_sample": true })).options(none.clone()).unwrap();
    assert_eq!((o.temperature, o.top_k, o.top_p), (1.0, 50, 1.0), "transformers' defaults when sampling");
    let o = read(json!({ "do_sample": true, "min_p": 0.05, "top_k": null })).options(none.clone()).unwrap();
    assert_eq!((o.top_k, o.min_p), (50, 0.05));
    assert_eq!(OptionDefaults::default().options(serde_json::Value::Null).unwrap(), GenerateOptions::default());
    for bad in [json!({ "do_sample": "yes" }), json!({ "do_sample": true, "temperature": -1 }), json!({ "do_sample": true, "top_p": 0 }), json!({ "do_sample": true, "top_k": 2.5 }), json!({ "repetition_penalty": 0 }), json!({ "max_new_tokens": -3 })] {
        let e = OptionDefaults::from_generation_config(&bad).err().unwrap_or_else(|| panic!("{bad} accepted"));
        assert!(e.starts_with("generation_config.json"), "{bad}: {e}");
    }
    // Through the tokenizer that reads the file, and a caller's unknown option is still refused.
    let tok = smollm2().with_generation_config(br#"{"do_sample": true, "temperature": 0.7, "top_k": 1}"#).unwrap();
    assert_eq!(tok.generation_defaults.options(none).unwrap().temperature, 0.7);
    assert!(matches!(tok.generation_defaults.options(json!({ "temprature": 1 })), Err(GenerateError::BadOption(_))));
    assert!(smollm2().with_generation_config(br#"{"do_sample": true, "top_p": 2}"#).is_err());
    // GGUF general.sampling.* as llama.cpp reads them, each only where present.
    use hugrt::formats::gguf::{GgufMetadata, GgufValue};
    let mut meta = GgufMetadata::default();
    meta.push("general.sampling.temp".into(), GgufValue::F32(0.25)).unwrap();
    meta.push("general.sampling.top_k".into(), GgufValue::I32(40)).unwrap();
    let o = OptionDefaults::from_gguf(&meta).unwrap().options(json!({})).unwrap();
    assert_eq!((o.temperature, o.top_k, o.top_p), (0.25, 40, 1.0));
    meta.push("general.sampling.top_p".into(), GgufValue::F32(1.5)).unwrap();
    assert!(OptionDefaults::from_gguf(&meta).is_err(), "top_p 1.5");
});

gpu_test!(generation_stops_on_strings_end_tokens_and_length, async {
    let tok = smollm2();
    let script = tok.encode("Hello world. The end is near", false).unwrap();
    let prompt = tok.encode("Say:", false).unwrap();
    let end = tok.end_ids();
    assert!(end.contains(&2) && !end.is_empty(), "SmolLM2 ends turns with <|im_end|> = 2: {end:?}");

    // A stop string spanning tokens: output cut before it, finish reason "stop".
    let mut g = Generation::new(prompt.clone(), opts(64, &["world."]), end.clone()).unwrap();
    let text = pieces(&mut g, &mut Scripted::new(script.clone(), 64), &tok).await.concat();
    assert_eq!((text.as_str(), g.finish_reason()), ("Hello ", Some(FinishReason::Stop)));

    // max_tokens.
    let mut g = Generation::new(prompt.clone(), opts(3, &[]), end.clone()).unwrap();
    let text = pieces(&mut g, &mut Scripted::new(script.clone(), 64), &tok).await.concat();
    assert_eq!(text, tok.decode(&script[..3], true).unwrap());
    assert_eq!((g.tokens(), g.finish_reason()), (&script[..3], Some(FinishReason::Length)));

    // An end-of-turn token ends generation and is not part of the output.
    let mut with_end = script[..2].to_vec();
    with_end.push(2);
    with_end.extend_from_slice(&script[2..]);
    let mut g = Generation::new(prompt.clone(), opts(64, &[]), end.clone()).unwrap();
    let text = pieces(&mut g, &mut Scripted::new(with_end, 64), &tok).await.concat();
    assert_eq!((g.tokens(), g.finish_reason()), (&script[..2], Some(FinishReason::Stop)));
    assert_eq!(text, tok.decode(&script[..2], true).unwrap());
});

gpu_test!(context_policy_and_prefix_reuse, async {
    let tok = smollm2();
    let script: Vec<u32> = (100..140).collect();
    // A prompt longer than the context is refused up front.
    let mut g = Generation::new(vec![5; 9], opts(4, &[]), vec![]).unwrap();
    let err = g.step(&mut Scripted::new(script.clone(), 8), &tok).await.expect_err("too long");
    assert!(matches!(err, GenerateError::PromptTooLong { tokens: 9, context: 8 }), "{err}");
    // A full cache ends generation with "length": 6 prompt tokens, room for 2 fed tokens → 3 out.
    let mut model = Scripted::new(script.clone(), 8);
    let mut g = Generation::new(vec![5; 6], opts(10, &[]), vec![]).unwrap();
    pieces(&mut g, &mut model, &tok).await;
    assert_eq!((g.tokens(), g.finish_reason()), (&script[..3], Some(FinishReason::Length)));
    assert_eq!(model.cached.len(), 8);

    // A second turn that extends the first reuses its cache: only the new tokens are fed.
    let mut model = Scripted::new(script.clone(), 64);
    let first: Vec<u32> = vec![7, 8, 9, 10];
    let mut g = Generation::new(first.clone(), opts(3, &[]), vec![]).unwrap();
    pieces(&mut g, &mut model, &tok).await;
    let mut second = model.cached.clone();
    second.extend([11, 12]);
    let mut g = Generation::new(second.clone(), opts(1, &[]), vec![]).unwrap();
    model.fed.clear();
    pieces(&mut g, &mut model, &tok).await;
    assert_eq!(model.fed, vec![vec![11, 12]]);
    assert_eq!(g.usage.cached_tokens, second.len() - 2);
    // A different conversation recomputes from the first differing token.
    let mut g = Generation::new(vec![7, 99, 1], opts(1, &[]), vec![]).unwrap();
    model.fed.clear();
    pieces(&mut g, &mut model, &tok).await;
    assert_eq!(model.fed, vec![vec![99, 1]]);
    // Bad options are typed errors.
    for bad in [GenerateOptions { temperature: -1.0, ..opts(1, &[]) }, GenerateOptions { top_p: 0.0, ..opts(1, &[]) }, GenerateOptions { min_p: 1.0, ..opts(1, &[]) }] {
        assert!(matches!(Generation::new(vec![1], bad, vec![]), Err(GenerateError::BadOption(_))));
    }
    assert!(matches!(Generation::new(vec![], opts(1, &[]), vec![]), Err(GenerateError::EmptyPrompt)));
});

gpu_test!(chat_template_renders_like_jinja2, async {
    let tok = smollm2();
    let expected: serde_json::Value = serde_json::from_str(include_str!("fixtures/tokenizer/smollm2/chat_expected.json")).unwrap();
    let messages: Vec<Message> = serde_json::from_value(expected["messages"].clone()).unwrap();
    let template = ChatTemplate::new(tok.chat_template.as_deref().unwrap(), "<|im_start|>", "<|im_end|>").unwrap();
    assert_eq!(template.render(&messages, true).unwrap(), expected["rendered"].as_str().unwrap());
    // Python string methods, as real templates use them.
    let t = ChatTemplate::new("{% for m in messages %}{{ m.role.upper() }}:{{ m.content.strip() }}|{% endfor %}{{ bos_token }}", "<s>", "</s>").unwrap();
    let m = vec![Message::new("user", "  hi  ")];
    assert_eq!(t.render(&m, false).unwrap(), "USER:hi|<s>");
});

gpu_test!(chat_templates_are_sandboxed, async {
    let m = vec![Message::new("user", "x")];
    let spin = ChatTemplate::new("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}", "", "").unwrap();
    assert!(matches!(spin.render(&m, true), Err(ChatTemplateError::Render(_))), "a template that runs forever is stopped");
    let raise = ChatTemplate::new("{{ raise_exception('Only user and assistant roles') }}", "", "").unwrap();
    assert!(matches!(raise.render(&m, true), Err(ChatTemplateError::Render(e)) if e.contains("Only user and assistant roles")));
    assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(ChatTemplateError::Syntax(_))));
    assert!(matches!(ChatTemplate::new(&"x".repeat(300_000), "", ""), Err(ChatTemplateError::TooLarge(_))));
    let include = ChatTemplate::new("{% include '/etc/passwd' %}", "", "").and_then(|t| t.render(&m, true));
    assert!(include.is_err(), "no filesystem: {include:?}");
    let wide = ChatTemplate::new("{% for i in range(90000) %}{{ messages[0].content * 100 }}{% endfor %}", "", "").unwrap();
    assert!(wide.render(&m, true).is_err(), "output is bounded");
});
