//! Models against an f64 CPU reference of the same architecture on the same weights, natively
//! (lavapipe) and in headless Chromium (SwiftShader): a tiny random Llama written as GGUF, with
//! F32 and Q8_0 weights; logits at every step within tolerance, greedy tokens equal.

use hugrt::formats::gguf::{self, GgufValue};
use hugrt::formats::{DType, TensorTable, quant};
use hugrt::gpu::GpuContext;
use hugrt::gpu::ops::rope;
use hugrt::models::llama::Llama;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;

/// BERT (tests/models/bert.rs).
#[path = "models/bert.rs"]
mod bert;

const HIDDEN: usize = 64;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 96;
const LAYERS: usize = 2;
const VOCAB: usize = 97;
const THETA: f32 = 10_000.0;
const EPS: f32 = 1e-5;

/// A random Llama as GGUF bytes: matrices in `dtype` (norms F32), tied output embedding.
fn tiny_llama(dtype: DType, seed: u64) -> Vec<u8> {
    let mut rng = hugrt::rng::SeededRng::new(seed);
    let meta: Vec<(String, GgufValue)> = vec![
        ("general.architecture".into(), GgufValue::String("llama".into())),
        ("llama.block_count".into(), GgufValue::U32(LAYERS as u32)),
        ("llama.embedding_length".into(), GgufValue::U32(HIDDEN as u32)),
        ("llama.feed_forward_length".into(), GgufValue::U32(FFN as u32)),
        ("llama.attention.head_count".into(), GgufValue::U32(HEADS as u32)),
        ("llama.attention.head_count_kv".into(), GgufValue::U32(KV_HEADS as u32)),
        ("llama.context_length".into(), GgufValue::U32(64)),
        ("llama.rope.freq_base".into(), GgufValue::F32(THETA)),
        ("llama.attention.layer_norm_rms_epsilon".into(), GgufValue::F32(EPS)),
        ("llama.vocab_size".into(), GgufValue::U32(VOCAB as u32)),
    ];
    let mut tensors = Vec::new();
    let mut matrix = |name: String, rows: usize, cols: usize, rng: &mut hugrt::rng::SeededRng| {
        let values: Vec<f32> = rng.signed_unit_vec(rows * cols).iter().map(|v| v * 0.3).collect();
        let bytes = match dtype {
            DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            _ => quantize_q8_0(&values),
        };
        tensors.push((name, dtype, vec![rows as u64, cols as u64], bytes));
    };
    matrix("token_embd.weight".into(), VOCAB, HIDDEN, &mut rng);
    let mut norms = Vec::new();
    for l in 0..LAYERS {
        let p = |s: &str| format!("blk.{l}.{s}.weight");
        matrix(p("attn_q"), HEADS * HEAD_DIM, HIDDEN, &mut rng);
        matrix(p("attn_k"), KV_HEADS * HEAD_DIM, HIDDEN, &mut rng);
        matrix(p("attn_v"), KV_HEADS * HEAD_DIM, HIDDEN, &mut rng);
        matrix(p("attn_output"), HIDDEN, HEADS * HEAD_DIM, &mut rng);
        matrix(p("ffn_gate"), FFN, HIDDEN, &mut rng);
        matrix(p("ffn_up"), FFN, HIDDEN, &mut rng);
        matrix(p("ffn_down"), HIDDEN, FFN, &mut rng);
        norms.push(p("attn_norm"));
        norms.push(p("ffn_norm"));
    }
    norms.push("output_norm.weight".into());
    for name in norms {
        let g: Vec<f32> = rng.signed_unit_vec(HIDDEN).iter().map(|v| 1.0 + 0.2 * v).collect();
        tensors.push((name, DType::F32, vec![HIDDEN as u64], g.iter().flat_map(|v| v.to_le_bytes()).collect()));
    }
    gguf::write(&meta, &tensors, 32)
}

/// Q8_0 as ggml quantizes: d = max|x| / 127 (as f16), q = round(x / d).
fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for block in values.chunks(32) {
        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend(half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|&v| (v * id).round() as i8 as u8));
    }
    out
}

/// The reference: the same forward pass in f64 on the dequantized weights.
struct Reference {
    w: std::collections::HashMap<String, Vec<f64>>,
    k_cache: Vec<Vec<f64>>,
    v_cache: Vec<Vec<f64>>,
}

impl Reference {
    fn new(bytes: &[u8], table: &TensorTable) -> Self {
        let w = table
            .tensors
            .iter()
            .map(|t| {
                let v = quant::dequantize(t.dtype, &bytes[t.range.start as usize..t.range.end as usize]).unwrap();
                (t.name.clone(), v.into_iter().map(f64::from).collect())
            })
            .collect();
        Self { w, k_cache: vec![Vec::new(); LAYERS], v_cache: vec![Vec::new(); LAYERS] }
    }

    fn matvec(&self, name: &str, x: &[f64]) -> Vec<f64> {
        self.w[name].chunks_exact(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| a * b).sum()).collect()
    }

    fn rms_norm(&self, name: &str, x: &[f64]) -> Vec<f64> {
        let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
        let inv = 1.0 / (ms + f64::from(EPS)).sqrt();
        x.iter().zip(&self.w[name]).map(|(v, g)| v * inv * g).collect()
    }

    /// Logits after `token` at `pos`.
    #[allow(clippy::needless_range_loop)]
    fn step(&mut self, token: u32, pos: u32) -> Vec<f64> {
        let table = rope::cos_sin_table(&rope::inv_freq(HEAD_DIM as u32, THETA, rope::RopeScaling::None), pos, 1);
        let rot = |v: &mut [f64]| {
            for head in v.chunks_exact_mut(HEAD_DIM) {
                for i in 0..HEAD_DIM / 2 {
                    let [c, s] = table[i].map(f64::from);
                    let (a, b) = (head[2 * i], head[2 * i + 1]);
                    head[2 * i] = a * c - b * s;
                    head[2 * i + 1] = a * s + b * c;
                }
            }
        };
        let mut x: Vec<f64> = self.w["token_embd.weight"][token as usize * HIDDEN..(token as usize + 1) * HIDDEN].to_vec();
        for l in 0..LAYERS {
            let p = |s: &str| format!("blk.{l}.{s}.weight");
            let h = self.rms_norm(&p("attn_norm"), &x);
            let (mut q, mut k, v) = (self.matvec(&p("attn_q"), &h), self.matvec(&p("attn_k"), &h), self.matvec(&p("attn_v"), &h));
            rot(&mut q);
            rot(&mut k);
            self.k_cache[l].extend(k);
            self.v_cache[l].extend(v);
            let n = pos as usize + 1;
            let mut attn = vec![0.0; HEADS * HEAD_DIM];
            for hh in 0..HEADS {
                let g = hh / (HEADS / KV_HEADS);
                let qh = &q[hh * HEAD_DIM..(hh + 1) * HEAD_DIM];
                let kv = |cache: &Vec<f64>, p: usize| cache[(p * KV_HEADS + g) * HEAD_DIM..(p * KV_HEADS + g + 1) * HEAD_DIM].to_vec();
                let s: Vec<f64> = (0..n).map(|p| kv(&self.k_cache[l], p).iter().zip(qh).map(|(a, b)| a * b).sum::<f64>() / (HEAD_DIM as f64).sqrt()).collect();
                let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for p in 0..n {
                    let vp = kv(&self.v_cache[l], p);
                    for d in 0..HEAD_DIM {
                        attn[hh * HEAD_DIM + d] += e[p] / z * vp[d];
                    }
                }
            }
            let o = self.matvec(&p("attn_output"), &attn);
            x.iter_mut().zip(o).for_each(|(a, b)| *a += b);
            let h = self.rms_norm(&p("ffn_norm"), &x);
            let (g, u) = (self.matvec(&p("ffn_gate"), &h), self.matvec(&p("ffn_up"), &h));
            let a: Vec<f64> = g.iter().zip(&u).map(|(g, u)| g / (1.0 + (-g).exp()) * u).collect();
            let d = self.matvec(&p("ffn_down"), &a);
            x.iter_mut().zip(d).for_each(|(a, b)| *a += b);
        }
        let h = self.rms_norm("output_norm.weight", &x);
        self.matvec("token_embd.weight", &h)
    }
}

fn argmax(v: &[f64]) -> u32 {
    v.iter().enumerate().fold(0, |best, (i, &x)| if x > v[best] { i } else { best }) as u32
}

async fn check(dtype: DType, seed: u64) {
    let bytes = tiny_llama(dtype, seed);
    let table = hugrt::formats::read_table(&bytes, bytes.len() as u64, "tiny.gguf").expect("reads");
    let ctx = GpuContext::new().await.expect("a GPU");
    let mut model = Llama::load(&ctx, &table, Some(48), &mut bytes.as_slice()).await.expect("loads");
    let mut reference = Reference::new(&bytes, &table);

    // A prompt of 11 tokens in one prefill chunk; the reference steps through it.
    let prompt: Vec<u32> = (0..11).map(|i| (i * 37 + 5) % VOCAB as u32).collect();
    let mut want = Vec::new();
    for (pos, &t) in prompt.iter().enumerate() {
        want = reference.step(t, pos as u32);
    }
    let mut got = model.logits(&ctx, &prompt).await.expect("prefill");
    let mut agreed = 0;
    for step in 0..12u32 {
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        let tol = 2e-3 * scale;
        let max_err = got.iter().zip(&want).map(|(g, w)| (f64::from(*g) - w).abs()).fold(0.0, f64::max);
        assert!(max_err <= tol, "{dtype} step {step}: max |logit error| {max_err:.2e} > {tol:.2e}");
        let next = argmax(&want);
        let gpu_next = got.iter().enumerate().fold(0, |b, (i, &x)| if x > got[b] { i } else { b }) as u32;
        let mut sorted = want.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        // Greedy tokens must agree unless the reference's top two are within the tolerance.
        if sorted[0] - sorted[1] > 2.0 * tol {
            assert_eq!(gpu_next, next, "{dtype} step {step}: greedy token");
            agreed += 1;
        }
        // Both continue with the reference's token, so one near-tie cannot derail the rest.
        want = reference.step(next, prompt.len() as u32 + step);
        got = model.logits(&ctx, &[next]).await.expect("decode");
    }
    assert!(agreed >= 10, "{dtype}: only {agreed} of 12 steps had a clear greedy token");
    assert_eq!(model.position(), prompt.len() as u32 + 12);
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
}

gpu_test!(tiny_llama_f32_matches_reference, check(DType::F32, 1));
gpu_test!(tiny_llama_q8_0_matches_reference, check(DType::Q8_0, 2));

gpu_test!(llama_context_overflow_is_an_error, async {
    let bytes = tiny_llama(DType::F32, 3);
    let table = hugrt::formats::read_table(&bytes, bytes.len() as u64, "tiny.gguf").expect("reads");
    let ctx = GpuContext::new().await.expect("a GPU");
    let mut model = Llama::load(&ctx, &table, Some(8), &mut bytes.as_slice()).await.expect("loads");
    model.next_token(&ctx, &[1, 2, 3, 4, 5, 6]).await.expect("fits");
    let err = model.next_token(&ctx, &[7, 8, 9]).await.expect_err("past the context");
    assert!(matches!(err, hugrt::models::llama::ModelError::ContextFull { ctx: 8, pos: 9 }), "{err}");
    assert_eq!(model.position(), 6, "nothing was written past the context");
    let err = model.next_token(&ctx, &[VOCAB as u32]).await.expect_err("token past the vocabulary");
    assert!(matches!(err, hugrt::models::llama::ModelError::Gpu(_)), "{err}");
    model.reset();
    assert_eq!(model.position(), 0);
});

// The generation loop on the GPU model: greedy output equals the model's own argmax loop;
// seeded sampling (drawn on the GPU) is reproducible and follows the seed; a sampled step with
// a near-zero temperature is greedy; a repetition penalty (logits read back, CPU draw) is applied.
gpu_test!(generation_on_the_gpu_llama, async {
    use hugrt::generate::{GenerateOptions, Generation};
    const GGUF: &[u8] = include_bytes!("fixtures/tokenizer/smollm2/tokenizer.gguf");
    let vocab_table = hugrt::formats::read_table(GGUF, GGUF.len() as u64, "tokenizer.gguf").expect("reads");
    let hugrt::formats::Metadata::Gguf { metadata, .. } = &vocab_table.metadata else { panic!("not GGUF") };
    let tok = hugrt::tokenizer::Tokenizer::from_gguf(metadata).expect("tokenizer");

    let bytes = tiny_llama(DType::F32, 4);
    let table = hugrt::formats::read_table(&bytes, bytes.len() as u64, "tiny.gguf").expect("reads");
    let ctx = GpuContext::new().await.expect("a GPU");
    let mut model = Llama::load(&ctx, &table, Some(48), &mut bytes.as_slice()).await.expect("loads");
    let prompt: Vec<u32> = vec![3, 14, 15, 92, 65];
    let steps = 16;

    let mut want = vec![model.next_token(&ctx, &prompt).await.unwrap()];
    while want.len() < steps {
        let last = *want.last().unwrap();
        want.push(model.next_token(&ctx, &[last]).await.unwrap());
    }
    model.reset();
    async fn generate(model: &mut Llama, ctx: &GpuContext, tok: &hugrt::tokenizer::Tokenizer, prompt: &[u32], opts: GenerateOptions) -> (Vec<u32>, String) {
        let mut g = Generation::new(prompt.to_vec(), opts, vec![]).unwrap();
        let text = g.run(&mut model.on(ctx), tok).await.expect("generates");
        (g.tokens().to_vec(), text)
    }
    let n = steps as u32;
    macro_rules! run {
        ($opts:expr) => {
            generate(&mut model, &ctx, &tok, &prompt, GenerateOptions { max_tokens: n, ..$opts }).await
        };
    }
    let (greedy, text) = run!(GenerateOptions::default());
    assert_eq!(greedy, want);
    assert_eq!(text, tok.decode(&want, true).unwrap());
    let cold = GenerateOptions { temperature: 1e-4, seed: 9, ..GenerateOptions::default() };
    assert_eq!(run!(cold).0, want, "a near-zero temperature samples the argmax");
    let hot = |seed| GenerateOptions { temperature: 1.5, seed, ..GenerateOptions::default() };
    let (a, b, c) = (run!(hot(1)).0, run!(hot(1)).0, run!(hot(2)).0);
    assert_eq!(a, b, "the same seed draws the same tokens");
    assert_ne!(a, c, "another seed draws other tokens");
    assert_ne!(a, want);
    let penalized = run!(GenerateOptions { repetition_penalty: 1e6, ..GenerateOptions::default() }).0;
    let mut seen: Vec<u32> = prompt.clone();
    for t in &penalized {
        assert!(!seen.contains(t), "token {t} repeated under a huge repetition penalty: {penalized:?}");
        seen.push(*t);
    }
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});
