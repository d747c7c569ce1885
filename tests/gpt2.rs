//! GPT-2 from its hub format (config.json + safetensors with Conv1D weights) against HF
//! transformers on a tiny random checkpoint (scripts/fixtures/make_gpt2_fixture.py): the logits
//! after a prompt, and 32 greedy tokens up to the first near-tie; natively and in Chromium.

use hugrt::generate::{GenerateOptions, Generation};
use hugrt::gpu::GpuContext;
use hugrt::models::gpt2::Gpt2;
use hugrt::models::llama::ModelError;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;

const CONFIG: &[u8] = include_bytes!("fixtures/gpt2/config.json");
const WEIGHTS: &[u8] = include_bytes!("fixtures/gpt2/model.safetensors");

struct Expected {
    prompt: Vec<u32>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
    margins: Vec<f32>,
}

fn expected() -> Expected {
    let v: serde_json::Value = serde_json::from_str(include_str!("fixtures/gpt2/expected.json")).unwrap();
    let ints = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let floats = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    Expected { prompt: ints("prompt"), logits: floats("logits"), greedy: ints("greedy"), margins: floats("margins") }
}

async fn load(context: Option<u32>) -> (GpuContext, Gpt2) {
    let table = hugrt::formats::read_table(WEIGHTS, WEIGHTS.len() as u64, "model.safetensors").expect("reads");
    let ctx = GpuContext::new().await.expect("a GPU");
    let model = Gpt2::load(&ctx, CONFIG, &table, context, &mut { WEIGHTS }).await.expect("loads");
    (ctx, model)
}

gpu_test!(gpt2_matches_transformers, async {
    let want = expected();
    let (ctx, mut model) = load(None).await;
    let got = model.logits(&ctx, &want.prompt).await.expect("prefill");
    let scale = want.logits.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(&want.logits).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    assert!(worst <= 1e-4 * scale.max(1.0), "max |logit error| {worst:.2e} (largest logit {scale})");

    // Greedy continuation through the generation loop, equal to transformers' until a near-tie.
    model.reset();
    let mut g = Generation::new(want.prompt.clone(), GenerateOptions { max_tokens: 32, ..GenerateOptions::default() }, vec![]).unwrap();
    let tok = hugrt::tokenizer::Tokenizer::from_json(include_bytes!("fixtures/tokenizer/minilm/tokenizer.json")).expect("any tokenizer decodes ids");
    g.run(&mut model.on(&ctx), &tok).await.expect("generates");
    let sure = want.margins.iter().position(|&m| m < 1e-3).unwrap_or(want.margins.len());
    assert!(sure >= 16, "the fixture has a near-tie at step {sure}");
    assert_eq!(&g.tokens()[..sure], &want.greedy[..sure]);
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(gpt2_bad_input_is_typed, async {
    let (ctx, mut model) = load(Some(8)).await;
    let err = model.logits(&ctx, &[1000]).await.expect_err("token past the vocabulary");
    assert!(matches!(err, ModelError::Gpu(_)), "{err}");
    let err = model.logits(&ctx, &[1; 9]).await.expect_err("past the context");
    assert!(matches!(err, ModelError::ContextFull { ctx: 8, pos: 9 }), "{err}");
    let table = hugrt::formats::read_table(WEIGHTS, WEIGHTS.len() as u64, "model.safetensors").unwrap();
    let bad_config = br#"{"vocab_size": 1000, "n_positions": 64, "n_embd": 30, "n_layer": 2, "n_head": 4}"#;
    let err = Gpt2::load(&ctx, bad_config, &table, None, &mut { WEIGHTS }).await.err().expect("30 is not a multiple of 4 heads");
    assert!(matches!(err, ModelError::Config(_)), "{err}");
    let wrong_shape = br#"{"vocab_size": 999, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4}"#;
    let err = Gpt2::load(&ctx, wrong_shape, &table, None, &mut { WEIGHTS }).await.err().expect("wte has 1000 rows");
    assert!(matches!(err, ModelError::Tensor { .. }), "{err}");
    let err = Gpt2::load(&ctx, b"{not json", &table, None, &mut { WEIGHTS }).await.err().expect("not JSON");
    assert!(matches!(err, ModelError::Config(_)), "{err}");
});
