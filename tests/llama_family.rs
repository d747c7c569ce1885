//! The Llama family and Gemma 2 and 3 against HF transformers on tiny random checkpoints made by transformers
//! (scripts/fixtures/make_llama_fixtures.py): Llama (llama3 RoPE scaling, untied LM head, 4 heads
//! over 2 KV heads), Qwen2 (Q/K/V biases, tied head, theta 1e6) and Qwen3 (per-head q/k RMSNorms,
//! head_dim 32 independent of hidden/heads, tied head), SmolLM3 (four layers, the fourth without
//! RoPE), Mistral (a sliding window of 6 keys, run far past), Gemma 2 (attention and final
//! soft caps, query_pre_attn_scalar, a sliding layer before a global one), Gemma 1 (two norms
//! per block, its legacy hidden_act "gelu" read as the tanh form) and Gemma 3 (per-head
//! q/k norms, five local layers with their RoPE base before a global one with linear scaling),
//! Phi-3 (fused Q/K/V and gate/up, 3/4 of each head rotated, LongRoPE whose long factors take
//! over when the greedy run passes the original context of 16), each in the hub's format (F16
//! and BF16 safetensors, `config.json` in transformers 5's and the older layout) and, Mistral
//! aside (llama.cpp converts it as `llama`, without its window), as GGUF Q8_0 and Q4_K_M
//! (llama.cpp's quantizer: Q4_K with Q6_K). For every file: the logits after a
//! prompt, and 32 greedy tokens, against transformers' float64 run of that file's own weights
//! (GGUFs dequantized), on the GPU (lavapipe natively, SwiftShader in Chromium) and on the CPU
//! fallback (candle).

use hugrt::generate::{LanguageModel, Next, Pick};
use hugrt::cpu::backend::Cpu;
use hugrt::models::ModelError;
use hugrt::models::decoder::{Architecture, Config};
use hugrt::models::llama::Llama;
use hugrt::models::weights::Weights;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::{Device, decoder, log, table};

struct Fixture {
    name: &'static str,
    config: &'static [u8],
    expected: &'static str,
    files: &'static [(&'static str, &'static [u8])],
}

const LLAMA: Fixture = Fixture {
    name: "llama",
    config: include_bytes!("fixtures/llama/config.json"),
    expected: include_str!("fixtures/llama/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/llama/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/llama/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/llama/model-q4_k_m.gguf")),
    ],
};

const QWEN2: Fixture = Fixture {
    name: "qwen2",
    config: include_bytes!("fixtures/qwen2/config.json"),
    expected: include_str!("fixtures/qwen2/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/qwen2/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/qwen2/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/qwen2/model-q4_k_m.gguf")),
    ],
};

const QWEN3: Fixture = Fixture {
    name: "qwen3",
    config: include_bytes!("fixtures/qwen3/config.json"),
    expected: include_str!("fixtures/qwen3/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/qwen3/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/qwen3/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/qwen3/model-q4_k_m.gguf")),
    ],
};

const SMOLLM3: Fixture = Fixture {
    name: "smollm3",
    config: include_bytes!("fixtures/smollm3/config.json"),
    expected: include_str!("fixtures/smollm3/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/smollm3/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/smollm3/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/smollm3/model-q4_k_m.gguf")),
    ],
};

const PHI3: Fixture = Fixture {
    name: "phi3",
    config: include_bytes!("fixtures/phi3/config.json"),
    expected: include_str!("fixtures/phi3/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/phi3/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/phi3/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/phi3/model-q4_k_m.gguf")),
    ],
};

const GEMMA: Fixture = Fixture {
    name: "gemma",
    config: include_bytes!("fixtures/gemma/config.json"),
    expected: include_str!("fixtures/gemma/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/gemma/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/gemma/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/gemma/model-q4_k_m.gguf")),
    ],
};

const GEMMA2: Fixture = Fixture {
    name: "gemma2",
    config: include_bytes!("fixtures/gemma2/config.json"),
    expected: include_str!("fixtures/gemma2/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/gemma2/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/gemma2/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/gemma2/model-q4_k_m.gguf")),
    ],
};

const GEMMA3: Fixture = Fixture {
    name: "gemma3",
    config: include_bytes!("fixtures/gemma3/config.json"),
    expected: include_str!("fixtures/gemma3/expected.json"),
    files: &[
        ("model.safetensors", include_bytes!("fixtures/gemma3/model.safetensors")),
        ("model-q8_0.gguf", include_bytes!("fixtures/gemma3/model-q8_0.gguf")),
        ("model-q4_k_m.gguf", include_bytes!("fixtures/gemma3/model-q4_k_m.gguf")),
    ],
};

const MISTRAL: Fixture = Fixture {
    name: "mistral",
    config: include_bytes!("fixtures/mistral/config.json"),
    expected: include_str!("fixtures/mistral/expected.json"),
    files: &[("model.safetensors", include_bytes!("fixtures/mistral/model.safetensors"))],
};

/// How close a device's run of `file` must come to transformers' float64 run of the file's own
/// weights: the largest |logit error| allowed, and how many greedy steps must agree.
///
/// The GPU dequantizes in registers and computes in f32: it is held to 2e-5 of the largest
/// |logit| and to every greedy step up to the reference's first near-tie; so is the CPU fallback
/// on F16/BF16 files (candle in f32). On GGUF files the CPU's quantized products first round each
/// matrix's input to 8 bits (Q8_0 / Q8_K blocks), as llama.cpp's do, which moves these random
/// models' logits by 2-4% of the largest (`q8_input_effect`: transformers' run with that rounding
/// emulated; llama.cpp's own run differs from transformers' as much, and candle's x86 AVX-512
/// tiles round Q8_0 inputs in blocks of 256, not 32). There the bound is twice that effect, and
/// greedy tokens agree only up to the first top-2 margin within that bound (a step or a few on
/// these models; the CPU's greedy decoding of a real checkpoint is checked against llama.cpp in
/// tests/models.rs).
fn tolerance(fixture: &Fixture, file: &str, device: Device, scale: f32) -> (f32, usize) {
    if device == Device::Cpu && file.ends_with(".gguf") {
        let v: serde_json::Value = serde_json::from_str(fixture.expected).unwrap();
        (2.0 * v["files"][file]["q8_input_effect"].as_f64().unwrap() as f32, 0)
    } else {
        (2e-5 * scale, 16)
    }
}

fn expected(fixture: &Fixture, file: &str) -> Expected {
    let v: serde_json::Value = serde_json::from_str(fixture.expected).unwrap();
    let ints = |x: &serde_json::Value| x.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
    let floats = |x: &serde_json::Value| x.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect();
    let f = &v["files"][file];
    Expected { prompt: ints(&v["prompt"]), logits: floats(&f["logits"]), greedy: ints(&f["greedy"]), margins: floats(&f["margins"]) }
}

struct Expected {
    prompt: Vec<u32>,
    logits: Vec<f32>,
    greedy: Vec<u32>,
    margins: Vec<f32>,
}

/// The logits after the prompt and the greedy continuation, through the generation loop's view
/// of the model (prefill in one call, then one token per call: the KV-cache path).
async fn run(model: &mut impl LanguageModel, prompt: &[u32], steps: usize) -> (Vec<f32>, Vec<u32>) {
    let Next::Logits(logits) = model.forward(prompt, Pick::Logits).await.expect("prefill") else { panic!("logits asked") };
    let mut tokens = vec![hugrt::generate::sampling::argmax(&logits)];
    while tokens.len() < steps {
        match model.forward(&tokens[tokens.len() - 1..], Pick::Greedy).await.expect("decode step") {
            Next::Token(t) => tokens.push(t),
            Next::Logits(_) => panic!("a token asked"),
        }
    }
    (logits, tokens)
}

async fn check(fixture: &Fixture, device: Device) {
    for &(file, bytes) in fixture.files {
        let want = expected(fixture, file);
        let config = file.ends_with(".safetensors").then_some(fixture.config);
        let mut model = decoder(device, config, file, bytes, Some(64)).await.expect("loads");
        let (logits, greedy) = run(&mut model, &want.prompt, want.greedy.len()).await;
        common::assert_no_gpu_errors(&model);
        let scale = want.logits.iter().fold(0f32, |m, v| m.max(v.abs()));
        let (tolerance, at_least) = tolerance(fixture, file, device, scale);
        let (at, worst) = logits.iter().zip(&want.logits).map(|(g, w)| (g - w).abs()).enumerate().fold((0, 0f32), |a, (i, d)| if d > a.1 { (i, d) } else { a });
        // Greedy tokens are compared up to the reference's first near-tie: a top-2 margin that
        // twice the allowed error could flip.
        let sure = want.margins.iter().position(|&m| m < 2.0 * tolerance).unwrap_or(want.margins.len());
        log(&format!("{} {file} on {device:?}: max |logit error| {worst:.2e} at {at} (allowed {tolerance:.2e}, largest logit {scale:.2}); greedy compared for {sure} steps", fixture.name));
        assert!(worst <= tolerance, "{} {file} on {device:?}: logit {at} is {} where transformers has {}", fixture.name, logits[at], want.logits[at]);
        assert!(sure >= at_least, "{} {file}: transformers has a near-tie at step {sure}", fixture.name);
        assert_eq!(&greedy[..sure], &want.greedy[..sure], "{} {file} on {device:?}: greedy tokens", fixture.name);
    }
}

both!(llama_matches_transformers_on_the_gpu, llama_matches_transformers_on_the_cpu, |d| check(&LLAMA, d));
both!(qwen2_matches_transformers_on_the_gpu, qwen2_matches_transformers_on_the_cpu, |d| check(&QWEN2, d));
both!(qwen3_matches_transformers_on_the_gpu, qwen3_matches_transformers_on_the_cpu, |d| check(&QWEN3, d));
both!(smollm3_matches_transformers_on_the_gpu, smollm3_matches_transformers_on_the_cpu, |d| check(&SMOLLM3, d));
both!(mistral_matches_transformers_on_the_gpu, mistral_matches_transformers_on_the_cpu, |d| check(&MISTRAL, d));
both!(phi3_matches_transformers_on_the_gpu, phi3_matches_transformers_on_the_cpu, |d| check(&PHI3, d));
both!(gemma_matches_transformers_on_the_gpu, gemma_matches_transformers_on_the_cpu, |d| check(&GEMMA, d));
both!(gemma2_matches_transformers_on_the_gpu, gemma2_matches_transformers_on_the_cpu, |d| check(&GEMMA2, d));
both!(gemma3_matches_transformers_on_the_gpu, gemma3_matches_transformers_on_the_cpu, |d| check(&GEMMA3, d));

/// The fixture's `config.json` with `key` set to `value`.
fn config_with(fixture: &Fixture, key: &str, value: serde_json::Value) -> Vec<u8> {
    let mut c: serde_json::Value = serde_json::from_slice(fixture.config).unwrap();
    c[key] = value;
    serde_json::to_vec(&c).unwrap()
}

both!(configured_features_change_the_model_on_the_gpu, configured_features_change_the_model_on_the_cpu, |device| async move {
    // The windowed and NoPE fixtures test what they claim only if the window and the skipped
    // RoPE change the output: without them the logits must leave transformers' by far more than
    // the tolerance.
    let global_rope = serde_json::json!({"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0});
    let cases = [
        (&MISTRAL, "sliding_window", serde_json::Value::Null),
        (&SMOLLM3, "no_rope_layers", serde_json::json!([1, 1, 1, 1])),
        // Gemma 2's soft caps, its attention scale and its window; Gemma 3's local RoPE base
        // and its global layer's linear scaling.
        (&GEMMA2, "attn_logit_softcapping", serde_json::Value::Null),
        (&GEMMA2, "final_logit_softcapping", serde_json::Value::Null),
        (&GEMMA2, "query_pre_attn_scalar", 64.into()),
        (&GEMMA2, "layer_types", serde_json::json!(["full_attention", "full_attention"])),
        (&GEMMA3, "rope_parameters", serde_json::json!({"full_attention": global_rope, "sliding_attention": {"rope_theta": 1000000.0}})),
        (&GEMMA3, "rope_parameters", serde_json::json!({"full_attention": {"rope_theta": 1000000.0}, "sliding_attention": {"rope_theta": 10000.0}})),
    ];
    for (fixture, key, value) in cases {
        let (file, bytes) = fixture.files[0];
        let want = expected(fixture, file);
        let config = config_with(fixture, key, value);
        let mut model = decoder(device, Some(&config), file, bytes, Some(64)).await.expect("loads");
        let (logits, _) = run(&mut model, &want.prompt, 1).await;
        let worst = logits.iter().zip(&want.logits).map(|(g, w)| (g - w).abs()).fold(0f32, f32::max);
        log(&format!("{} without its {key} on {device:?}: max |logit change| {worst:.3}", fixture.name));
        assert!(worst > 0.1, "{}: {key} made no difference ({worst})", fixture.name);
    }
});

gpu_test!(hub_config_errors_are_typed, async {
    let (_, bytes) = LLAMA.files[0];
    let config: serde_json::Value = serde_json::from_slice(LLAMA.config).unwrap();
    let with = |key: &str, value: serde_json::Value| {
        let mut c = config.clone();
        c[key] = value;
        serde_json::to_vec(&c).unwrap()
    };
    let cases: [(&str, Vec<u8>); 14] = [
        ("not JSON", b"{".to_vec()),
        ("a GPT-2 config", with("model_type", "gpt2".into())),
        ("heads not a multiple of KV heads", with("num_key_value_heads", 3.into())),
        ("unsupported RoPE scaling", with("rope_parameters", serde_json::json!({"rope_type": "yarn", "factor": 2.0, "rope_theta": 10000.0}))),
        ("GELU MLP", with("hidden_act", "gelu".into())),
        ("zero layers", with("num_hidden_layers", 0.into())),
        ("a Qwen3 without its q/k norms", with("model_type", "qwen3".into())),
        ("a Mistral window of 0", config_with(&MISTRAL, "sliding_window", 0.into())),
        ("layer types of the wrong length", with("layer_types", serde_json::json!(["full_attention"]))),
        ("an unknown layer type", with("layer_types", serde_json::json!(["full_attention", "chunked_attention"]))),
        ("SmolLM3 no_rope_layers of the wrong length", config_with(&SMOLLM3, "no_rope_layers", serde_json::json!([1, 0]))),
        ("LongRoPE factors of the wrong length", config_with(&PHI3, "rope_parameters", serde_json::json!({"rope_type": "longrope", "short_factor": [1.0], "long_factor": [1.0]}))),
        ("LongRoPE without its original context", { let mut c: serde_json::Value = serde_json::from_slice(PHI3.config).unwrap(); c.as_object_mut().unwrap().remove("original_max_position_embeddings"); c["rope_parameters"].as_object_mut().unwrap().remove("original_max_position_embeddings"); serde_json::to_vec(&c).unwrap() }),
        ("a partial rotary factor of 0", { let mut c: serde_json::Value = serde_json::from_slice(PHI3.config).unwrap(); c["rope_parameters"]["partial_rotary_factor"] = 0.0.into(); serde_json::to_vec(&c).unwrap() }),
    ];
    for (what, json) in cases {
        // The Llama family's own loader (the registry would hand a GPT-2 config to GPT-2).
        let (t, cpu) = (table("model.safetensors", bytes), Cpu);
        let err = Llama::load(&cpu, Config::Hub(&json), None, &mut Weights::new(&t, &mut { bytes })).await.err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(matches!(err, ModelError::Config(_)), "{what}: {err}");
    }
    // Sizes that disagree with the file are a tensor error, on both devices.
    let vocab = with("vocab_size", 251.into());
    for device in [Device::Cpu, Device::Gpu] {
        let err = decoder(device, Some(&vocab), "model.safetensors", bytes, None).await.err().expect("251 rows are not 250");
        assert!(matches!(err, ModelError::Tensor { .. }), "{device:?}: {err}");
    }
    // A GGUF whose Q/K/V biases are incomplete is refused, not half-applied.
    let (_, gguf) = QWEN2.files[1];
    let mut t = table("model-q8_0.gguf", gguf);
    t.tensors.retain(|x| x.name != "blk.0.attn_k.bias");
    let err = hugrt::models::AnyDecoder::load(None, None, &t, None, &mut { gguf }).await.err().expect("a missing bias");
    assert!(matches!(err, ModelError::Config(_)), "{err}");
    // So is a Qwen3 GGUF with only one of a layer's q/k norms.
    let (_, gguf) = QWEN3.files[1];
    let mut t = table("model-q8_0.gguf", gguf);
    t.tensors.retain(|x| x.name != "blk.0.attn_k_norm.weight");
    let err = hugrt::models::AnyDecoder::load(None, None, &t, None, &mut { gguf }).await.err().expect("a missing k norm");
    assert!(matches!(err, ModelError::Config(_)), "{err}");
});


gpu_test!(gemma_config_errors_are_typed, async {
    use hugrt::models::gemma::Gemma;
    let (_, bytes) = GEMMA2.files[0];
    let with = |fixture: &Fixture, key: &str, value: serde_json::Value| config_with(fixture, key, value);
    let cases: [(&str, Vec<u8>); 9] = [
        ("a Llama config", with(&GEMMA2, "model_type", "llama".into())),
        ("an unknown activation", with(&GEMMA2, "hidden_activation", "swish".into())),
        ("a window of 0", with(&GEMMA2, "sliding_window", 0.into())),
        ("sliding layers without a window", with(&GEMMA2, "sliding_window", serde_json::Value::Null)),
        ("layer types of the wrong length", with(&GEMMA2, "layer_types", serde_json::json!(["full_attention"]))),
        ("a negative soft cap", with(&GEMMA2, "attn_logit_softcapping", (-1.0).into())),
        ("bidirectional attention (EmbeddingGemma)", with(&GEMMA3, "use_bidirectional_attention", true.into())),
        ("scaled RoPE on sliding layers", with(&GEMMA3, "rope_parameters", serde_json::json!({"sliding_attention": {"rope_type": "linear", "factor": 2.0}}))),
        ("an unknown RoPE type", with(&GEMMA3, "rope_parameters", serde_json::json!({"full_attention": {"rope_type": "yarn", "factor": 2.0}}))),
    ];
    for (what, json) in cases {
        let (t, cpu) = (table("model.safetensors", bytes), Cpu);
        let err = Gemma::load(&cpu, Config::Hub(&json), None, &mut Weights::new(&t, &mut { bytes })).await.err().unwrap_or_else(|| panic!("{what}: accepted"));
        log(&format!("gemma config, {what}: {err}"));
        assert!(matches!(err, ModelError::Config(_)), "{what}: {err}");
    }
    // A Gemma 3 GGUF without a layer's k norm is a tensor error naming it.
    let (_, gguf) = GEMMA3.files[1];
    let mut t = table("model-q8_0.gguf", gguf);
    t.tensors.retain(|x| x.name != "blk.3.attn_k_norm.weight");
    let err = hugrt::models::AnyDecoder::load(None, None, &t, None, &mut { gguf }).await.err().expect("a missing k norm");
    assert!(matches!(&err, ModelError::Tensor { name, .. } if name == "blk.3.attn_k_norm.weight"), "{err}");
});

gpu_test!(bad_inputs_give_the_same_error_on_both_backends, async {
    // Each bad input, on every file of both fixtures: the same error variant on the GPU and the
    // CPU, and nothing cached by the refused call.
    for fixture in [&LLAMA, &QWEN2] {
        for &(file, bytes) in fixture.files {
            let config = file.ends_with(".safetensors").then_some(fixture.config);
            let mut codes = Vec::new();
            for device in [Device::Gpu, Device::Cpu] {
                let mut model = decoder(device, config, file, bytes, Some(8)).await.expect("loads");
                let vocab = model.vocab();
                model.forward(&[1, 2, 3], Pick::Greedy).await.expect("fits");
                let cases: [(&str, Vec<u32>); 4] = [("no tokens", vec![]), ("an id past the vocabulary", vec![1, vocab]), ("past the context", vec![1; 6]), ("far past the context", vec![1; 1000])];
                let mut got = Vec::new();
                for (what, ids) in cases {
                    let err = model.forward(&ids, Pick::Greedy).await.err().unwrap_or_else(|| panic!("{file} on {device:?}: {what} accepted"));
                    assert_eq!(model.cached().len(), 3, "{file} on {device:?}: {what} changed the cache");
                    got.push(match err {
                        ModelError::Input(_) => "Input",
                        ModelError::Token { id, vocab: v } if id == vocab && v == vocab => "Token",
                        ModelError::ContextFull { ctx: 8, .. } => "ContextFull",
                        other => panic!("{file} on {device:?}: {what}: {other}"),
                    });
                }
                codes.push(got);
            }
            log(&format!("{} {file}: {:?}", fixture.name, codes[0]));
            assert_eq!(codes[0], ["Input", "Token", "ContextFull", "ContextFull"]);
            assert_eq!(codes[0], codes[1], "{file}: the GPU's and the CPU's errors");
        }
    }
});

gpu_test!(the_gpu_self_check_agrees_with_the_cpu_and_catches_broken_kernels, async {
    // The probe (first layer, final norm, LM head) on the GPU against the CPU backend, for every
    // file of every fixture; then with the test switch that dispatches every kernel over half its
    // grid (a GPU computing garbage without an error): the check must fail.
    for fixture in [&LLAMA, &QWEN2, &QWEN3, &SMOLLM3, &MISTRAL, &PHI3, &GEMMA, &GEMMA2, &GEMMA3] {
        for &(file, bytes) in fixture.files {
            let config = file.ends_with(".safetensors").then_some(fixture.config);
            let t = table(file, bytes);
            let gpu = common::gpu_for(Device::Gpu).await.expect("a GPU");
            let ok = hugrt::models::decoder::gpu_self_check(gpu.clone(), config, &t, &mut { bytes }).await.expect("runs");
            hugrt::gpu::context::break_kernels(true);
            let broken = hugrt::models::decoder::gpu_self_check(gpu, config, &t, &mut { bytes }).await;
            hugrt::gpu::context::break_kernels(false);
            let broken = broken.expect("runs");
            log(&format!("{} {file}: self-check relative error {:.2e}, with broken kernels {:.2e} (bound {})", fixture.name, ok.relative_error, broken.relative_error, ok.bound));
            assert!(ok.passed, "{} {file}: {ok:?}", fixture.name);
            assert!(!broken.passed, "{} {file}: broken kernels passed: {broken:?}", fixture.name);
        }
    }
});
