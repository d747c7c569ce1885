//! GPT-2 from its hub format (config.json + safetensors with Conv1D weights) against HF
//! transformers on a tiny random checkpoint (scripts/fixtures/make_gpt2_fixture.py): the logits
//! after a prompt, and 32 greedy tokens up to the first near-tie; on the GPU and on the CPU
//! backend, natively and in Chromium.

use hugrt::generate::{GenerateOptions, Generation, LanguageModel};
use hugrt::models::ModelError;
use hugrt::models::decoder::{Architecture, Config};
use hugrt::models::gpt2::Gpt2;
use hugrt::models::weights::Weights;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{Device, decoder};

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

async fn load(device: Device, config: &[u8], context: Option<u32>) -> hugrt::models::AnyDecoder {
    decoder(device, Some(config), "model.safetensors", WEIGHTS, context).await.expect("loads")
}

fn table() -> hugrt::formats::TensorTable {
    common::table("model.safetensors", WEIGHTS)
}

/// Logits within 1e-4 of the largest reference logit (f32 throughout, as transformers).
fn assert_close(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
    common::log(&format!("max |logit error| {worst:.2e} (largest logit {scale})"));
    assert!(worst <= 1e-4 * scale.max(1.0), "max |logit error| {worst:.2e} (largest logit {scale})");
}

async fn matches_transformers(device: Device) {
    let want = expected();
    let mut model = load(device, CONFIG, None).await;
    assert_eq!(model.context(), 64, "n_positions");
    assert_eq!(model.info()["architecture"], "gpt2");
    assert_close(&model.logits(&want.prompt).await.expect("prefill"), &want.logits);

    // Greedy continuation through the generation loop, equal to transformers' until a near-tie.
    model.truncate(0);
    let mut g = Generation::new(want.prompt.clone(), GenerateOptions { max_tokens: 32, ..GenerateOptions::default() }, vec![]).unwrap();
    let tok = hugrt::tokenizer::Tokenizer::from_json(include_bytes!("fixtures/tokenizer/minilm/tokenizer.json")).expect("any tokenizer decodes ids");
    g.run(&mut model, &tok).await.expect("generates");
    let sure = want.margins.iter().position(|&m| m < 1e-3).unwrap_or(want.margins.len());
    assert!(sure >= 16, "the fixture has a near-tie at step {sure}");
    assert_eq!(&g.tokens()[..sure], &want.greedy[..sure]);
    common::assert_no_gpu_errors(&model);
}

both!(gpt2_matches_transformers, gpt2_on_the_cpu_matches_transformers, matches_transformers);

async fn prefill_equals_token_by_token(device: Device) {
    // The whole context: 3 tokens, then 61 in one call (causal attention within the call, after
    // cached positions), against 64 calls of one token.
    let ids: Vec<u32> = (0..64u32).map(|i| (i * 37 + 11) % 1000).collect();
    let mut whole = load(device, CONFIG, None).await;
    let mut steps = load(device, CONFIG, None).await;
    whole.logits(&ids[..3]).await.expect("a first turn");
    let a = whole.logits(&ids[3..]).await.expect("the rest at once");
    let mut b = Vec::new();
    for &id in &ids {
        b = steps.logits(&[id]).await.expect("a step");
    }
    let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-4, "chunked and stepwise logits differ by {worst:.2e}");
    assert_eq!((whole.cached().len(), steps.cached().len()), (64, 64));
}

both!(gpt2_on_the_gpu_prefill_equals_token_by_token, gpt2_on_the_cpu_prefill_equals_token_by_token, prefill_equals_token_by_token);

async fn bad_input_is_typed(device: Device) {
    let t = table();
    let mut model = load(device, CONFIG, Some(8)).await;
    let err = model.logits(&[1000]).await.expect_err("token past the vocabulary");
    assert!(matches!(err, ModelError::Token { id: 1000, vocab: 1000 }), "{err}");
    let err = model.logits(&[1; 9]).await.expect_err("past the context");
    assert!(matches!(err, ModelError::ContextFull { ctx: 8, pos: 9 }), "{err}");
    let err = model.logits(&[]).await.expect_err("no tokens");
    assert!(matches!(err, ModelError::Input(_)), "{err}");
    assert_eq!(model.cached().len(), 0, "refused calls leave the cache as it was");
    model.logits(&[1; 8]).await.expect("fills the context");
    let err = model.logits(&[1]).await.expect_err("the cache is full");
    assert!(matches!(err, ModelError::ContextFull { ctx: 8, pos: 9 }), "{err}");
    // The context is at most the learned positions.
    let model = load(device, CONFIG, Some(1 << 20)).await;
    assert_eq!(model.context(), 64);
    // GPT-2's own loader (these configs have no model_type for the registry).
    let gpu = common::gpu_for(device).await;
    async fn gpt2(gpu: &Option<std::rc::Rc<hugrt::gpu::GpuContext>>, config: &[u8], t: &hugrt::formats::TensorTable, bytes: &[u8]) -> Result<(), ModelError> {
        let mut read = bytes;
        let mut w = Weights::new(t, &mut read);
        match gpu {
            Some(ctx) => Gpt2::load(&hugrt::gpu::backend::Gpu::new(ctx.clone()), Config::Hub(config), None, &mut w).await.map(|_| ()),
            None => Gpt2::load(&hugrt::cpu::backend::Cpu, Config::Hub(config), None, &mut w).await.map(|_| ()),
        }
    }
    let bad_config = br#"{"vocab_size": 1000, "n_positions": 64, "n_embd": 30, "n_layer": 2, "n_head": 4}"#;
    let err = gpt2(&gpu, bad_config, &t, WEIGHTS).await.expect_err("30 is not a multiple of 4 heads");
    assert!(matches!(err, ModelError::Config(_)), "{err}");
    let wrong_shape = br#"{"vocab_size": 999, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4}"#;
    let err = gpt2(&gpu, wrong_shape, &t, WEIGHTS).await.expect_err("wte has 1000 rows");
    assert!(matches!(err, ModelError::Tensor { .. }), "{err}");
    let err = gpt2(&gpu, b"{not json", &t, WEIGHTS).await.expect_err("not JSON");
    assert!(matches!(err, ModelError::Config(_)), "{err}");
    let err = hugrt::models::AnyDecoder::load(gpu.clone(), Some(CONFIG), &t, None, &mut &WEIGHTS[..1000]).await.err().expect("a truncated file");
    assert!(matches!(err, ModelError::Read(_)), "{err}");
    // The registry chooses GPT-2 by model_type.
    let lm = load(device, CONFIG, Some(16)).await;
    assert_eq!((lm.info()["architecture"].as_str(), lm.info()["context"].as_u64()), (Some("gpt2"), Some(16)));
}

both!(gpt2_bad_input_is_typed, gpt2_on_the_cpu_bad_input_is_typed, bad_input_is_typed);

gpu_test!(gpt2_exact_gelu_agrees_on_both_devices, async {
    // `activation_function: "gelu"` is HF's exact (erf) GELU, not the tanh form: the CPU and the
    // GPU agree on it, and it moves the logits away from the `gelu_new` reference.
    let want = expected();
    let config = String::from_utf8(CONFIG.to_vec()).unwrap().replace("\"gelu_new\"", "\"gelu\"");
    assert_ne!(config.as_bytes(), CONFIG);
    let on_cpu = load(Device::Cpu, config.as_bytes(), None).await.logits(&want.prompt).await.expect("CPU prefill");
    let on_gpu = load(Device::Gpu, config.as_bytes(), None).await.logits(&want.prompt).await.expect("GPU prefill");
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    common::log(&format!("erf GELU: CPU vs GPU {:.2e}, vs the tanh reference {:.2e}", diff(&on_cpu, &on_gpu), diff(&on_cpu, &want.logits)));
    assert!(diff(&on_cpu, &on_gpu) < 4e-4, "CPU and GPU differ by {:.2e}", diff(&on_cpu, &on_gpu));
    assert!(diff(&on_cpu, &want.logits) > 1e-5, "erf and tanh GELU gave the same logits");
});

gpu_test!(gpt2_passes_the_gpu_self_check_and_broken_kernels_fail_it, async {
    // GPT-2's config names its layer count `n_layer`: the probe is cut to one layer there too.
    let t = common::table("model.safetensors", WEIGHTS);
    let gpu = common::gpu_for(Device::Gpu).await.expect("a GPU");
    let ok = hugrt::models::decoder::gpu_self_check(gpu.clone(), Some(CONFIG), &t, &mut { WEIGHTS }).await.expect("runs");
    hugrt::gpu::context::break_kernels(true);
    let broken = hugrt::models::decoder::gpu_self_check(gpu, Some(CONFIG), &t, &mut { WEIGHTS }).await;
    hugrt::gpu::context::break_kernels(false);
    let broken = broken.expect("runs");
    assert!(ok.passed && ok.relative_error < 1e-4, "{ok:?}");
    assert!(!broken.passed, "{broken:?}");
});
