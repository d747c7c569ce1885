//! GPU kernels against their CPU references, written once and run on both targets:
//! natively (`cargo test`: wgpu on Vulkan, lavapipe on a machine without a GPU) and in headless
//! Chromium (`cargo test --target wasm32-unknown-unknown`: WebGPU on SwiftShader).
//! A missing adapter fails the test: it never passes by skipping.

use hugrt::formats::DType;
use hugrt::gpu::ops::{Reduction, matmul, matvec, product};
use hugrt::gpu::{GpuContext, Precision};

/// Every weight type the GPU kernels decode.
const WEIGHT_TYPES: [DType; 13] = [
    DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0,
    DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K,
];

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

mod common;
use common::log;

async fn context() -> GpuContext {
    match GpuContext::new().await {
        Ok(ctx) => {
            log(&format!("adapter: {:?}", ctx.report));
            ctx
        }
        Err(e) => panic!("no GPU for the kernel tests: {e}"),
    }
}

async fn check_matvec(ctx: &GpuContext, dtype: DType, rows: usize, cols: usize, seed: u64, max_part_bytes: Option<u64>) {
    check_matmul(ctx, dtype, rows, cols, 1, seed, max_part_bytes).await;
}

async fn check_matmul(ctx: &GpuContext, dtype: DType, rows: usize, cols: usize, tokens: usize, seed: u64, max_part_bytes: Option<u64>) -> matvec::MatvecCheck {
    let report = matvec::check_against_reference(ctx, dtype, rows, cols, tokens, seed, max_part_bytes)
        .await
        .unwrap_or_else(|e| panic!("matvec {dtype} {rows}x{cols}, {tokens} tokens: {e}"));
    log(&format!("matvec {dtype} {rows}x{cols}, {tokens} tokens: {report}"));
    assert!(report.comparison.passed, "matvec {dtype} {rows}x{cols}, {tokens} tokens: {report}");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
    report
}

/// The f16 tests' precision: F16 where the device has shader-f16 (lavapipe natively), and the
/// runtime's choice there too; where it has not (SwiftShader in Chromium) the runtime's choice is
/// F32 and asking for F16 is a typed error. Either way the context is left on that precision.
fn f16_where_present(ctx: &GpuContext) -> Precision {
    let want = if ctx.report.shader_f16 { Precision::F16 } else { Precision::F32 };
    assert_eq!(ctx.preferred_precision(), want, "the runtime's choice");
    if !ctx.report.shader_f16 {
        let err = ctx.set_precision(Precision::F16).expect_err("F16 without shader-f16");
        assert!(matches!(err, hugrt::gpu::GpuError::MissingFeature { feature: "shader-f16", .. }), "{err:?}");
    }
    ctx.set_precision(want).expect("the preferred precision");
    assert_eq!(ctx.precision(), want);
    want
}

/// Runs one case on the f32 path and, where there is one, on the f16 path (each under its own
/// bound), asserting the path each run reports; returns the two max |err|/Σ|w·x|.
async fn check_both_paths(ctx: &GpuContext, dtype: DType, rows: usize, cols: usize, tokens: usize, seed: u64) -> (f64, Option<f64>) {
    let f16 = f16_where_present(ctx);
    ctx.set_precision(Precision::F32).expect("F32 is always there");
    let f32_run = check_matmul(ctx, dtype, rows, cols, tokens, seed, None).await;
    assert_eq!(f32_run.precision, Precision::F32, "{dtype}: the f32 path");
    ctx.set_precision(f16).expect("the preferred precision");
    if f16 == Precision::F32 {
        return (f32_run.max_rel_err, None);
    }
    let f16_run = check_matmul(ctx, dtype, rows, cols, tokens, seed, None).await;
    let want = if matvec::f16_pays(dtype) { Precision::F16 } else { Precision::F32 };
    assert_eq!(f16_run.precision, want, "{dtype}: the path taken with f16 products on");
    (f32_run.max_rel_err, Some(f16_run.max_rel_err))
}

gpu_test!(matvec_f32_awkward_sizes, async {
    let ctx = context().await;
    // 1×1; sizes that are not multiples of the workgroup size; primes; one row longer than the
    // workgroup many times over; more rows than one grid dimension holds (2-D fold).
    for (i, &(rows, cols)) in [(1, 1), (7, 13), (1, 257), (1021, 1031), (257, 4099), (70_001, 3)].iter().enumerate() {
        check_matvec(&ctx, DType::F32, rows, cols, 0x5eed + i as u64, None).await;
    }
});

gpu_test!(matvec_f32_4096x4097, async {
    let ctx = context().await;
    check_matvec(&ctx, DType::F32, 4096, 4097, 42, None).await;
});

gpu_test!(matvec_every_weight_type, async {
    let ctx = context().await;
    for (i, dtype) in WEIGHT_TYPES[1..].iter().copied().enumerate() {
        let block = dtype.block_elems().max(2) as usize;
        // One block per row; a prime number of blocks per row and of rows; more blocks per row
        // than invocations per workgroup.
        for (j, &(rows, blocks)) in [(1, 1), (13, 7), (3, 67)].iter().enumerate() {
            check_matvec(&ctx, dtype, rows, blocks * block, (100 * i + j) as u64, None).await;
        }
    }
});

gpu_test!(matvec_f16_every_weight_type_at_awkward_sizes, async {
    let ctx = context().await;
    // With shader-f16 (lavapipe) every case runs on both paths and the f16 one must have run;
    // without it (SwiftShader) the f32 path must have been chosen, and is checked.
    let f16 = f16_where_present(&ctx);
    log(&format!("shader-f16: {}; the runtime's precision: {f16:?}", ctx.report.shader_f16));
    for (i, dtype) in WEIGHT_TYPES.into_iter().enumerate() {
        let block = dtype.block_elems().max(2) as usize;
        let (mut worst32, mut worst16) = (0f64, 0f64);
        // One block, one token; prime numbers of rows, blocks and tokens (5: a partial tile);
        // 67 blocks per row.
        for (j, &(rows, blocks, tokens)) in [(1, 1, 1), (13, 7, 1), (3, 67, 1), (7, 7, 5)].iter().enumerate() {
            let (e32, e16) = check_both_paths(&ctx, dtype, rows, blocks * block, tokens, (1000 + 10 * i + j) as u64).await;
            worst32 = worst32.max(e32);
            worst16 = worst16.max(e16.unwrap_or(0.0));
        }
        let with_f16 = match f16 {
            Precision::F32 => "no f16 path on this device".to_owned(),
            Precision::F16 if !matvec::f16_pays(dtype) => "f16 on: the f32 path is kept for these weights".to_owned(),
            Precision::F16 => format!("f16 path {worst16:.2e}"),
        };
        log(&format!("{dtype}: max |err|/Σ|w·x| f32 path {worst32:.2e}; {with_f16}"));
    }
    assert_eq!(ctx.precision(), f16);
});

gpu_test!(matvec_f16_vocabulary_projection, async {
    let ctx = context().await;
    let f16 = f16_where_present(&ctx);
    // 151936 × 1024 Q8_0 (165 MB, split on lavapipe) and Q4_K: the f16 path's staging once per
    // call and its dispatch per part.
    for (i, dtype) in [DType::Q8_0, DType::Q4_K].into_iter().enumerate() {
        let report = check_matmul(&ctx, dtype, 151_936, 1024, 1, 77 + i as u64, None).await;
        assert_eq!(report.precision, f16, "{dtype}");
    }
});

gpu_test!(matmul_token_tiles, async {
    let ctx = context().await;
    // Token counts around the tile of 8: 1, a partial tile, two tiles and a bit.
    for (i, &tokens) in [2usize, 7, 8, 17].iter().enumerate() {
        check_matmul(&ctx, DType::Q4_1, 13, 96, tokens, 300 + i as u64, None).await;
        check_matmul(&ctx, DType::F32, 5, 33, tokens, 400 + i as u64, None).await;
        check_matmul(&ctx, DType::Q6_K, 3, 512, tokens, 500 + i as u64, Some(2 * 53 * 2 * 4)).await;
    }
});

gpu_test!(matvec_weight_split_across_bindings, async {
    let ctx = context().await;
    // Parts of at most 5 rows: 37 rows in 8 parts, each dispatch writing its own rows of y.
    check_matvec(&ctx, DType::Q4_1, 37, 96, 7, Some(5 * 3 * 20)).await;
    check_matvec(&ctx, DType::F32, 37, 13, 8, Some(5 * 13 * 4)).await;
});

gpu_test!(matvec_vocabulary_projection_150mb, async {
    let ctx = context().await;
    // A 151936 × 1024 Q8_0 projection (165 MB): more than lavapipe's 128 MiB binding limit, so
    // it is split there; more rows than one grid dimension holds.
    check_matvec(&ctx, DType::Q8_0, 151_936, 1024, 151_936, None).await;
});

gpu_test!(matvec_rejects_bad_shapes_with_typed_errors, async {
    let ctx = context().await;
    let w = hugrt::gpu::weights::GpuWeight::new(&ctx, "W", DType::F32, 3, 5, None).expect("valid shape");
    let err = matvec::run(&ctx, &w, &[0.0; 4]).await.expect_err("x not whole rows of 5");
    assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
    let err = w.write_rows(&ctx, 2, &[0u8; 40]).expect_err("rows past the end");
    assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
    let err = hugrt::gpu::weights::GpuWeight::new(&ctx, "W", DType::Q4_0, 3, 33, None).expect_err("not whole blocks");
    assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
    let limit = ctx.limits.max_storage_buffer_binding_size;
    let err = ctx.check_binding("matvec", "W", limit + 4).expect_err("over the binding limit");
    assert!(matches!(err, hugrt::gpu::GpuError::BindingTooLarge { bytes, .. } if bytes == limit + 4), "{err:?}");
});

gpu_test!(elementwise_ops, async {
    use hugrt::gpu::ops::elementwise::{Elementwise::*, check_against_reference};
    let ctx = context().await;
    let ops = [Scale(-0.37), Add, Mul, AddRow { cols: 7 }, MulRow { cols: 7 }, Silu, SwiGlu, GeluTanh, GeluErf, QuickGelu, Tanh, Relu];
    for (i, op) in ops.into_iter().enumerate() {
        // A few values; a prime count; for one op, more than one grid dimension of workgroups
        // (65535 × 256 elements: the 2-D fold).
        let sizes: &[usize] = if op == Add { &[7, 1_000_003, 16_777_223] } else { &[7, 1_000_003] };
        for (j, &n) in sizes.iter().enumerate() {
            let n = if matches!(op, AddRow { .. } | MulRow { .. }) { n / 7 * 7 } else { n };
            let report = check_against_reference(&ctx, op, n, 8.0, (10 * i + j) as u64).await.unwrap_or_else(|e| panic!("{op:?}: {e}"));
            log(&format!("{op:?} n={n}: {report}"));
            assert!(report.passed, "{op:?} n={n}: {report}");
        }
    }
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(patches_im2col, async {
    use hugrt::gpu::ops::patches::{Layout, Patches, check_against_reference};
    let ctx = context().await;
    // ViT-like: 3 channels, non-overlapping 6×6 patches of a 30×30 image, one prefix row; an
    // awkward one: 5×7 patches every 3×2 of a 2×23×17 input (overlapping, a remainder dropped);
    // AST-like: a (frames, mel) spectrogram read as (mel, frames), 16×16 patches every 4×5, two
    // prefix rows.
    let vit = Patches::new(3, (30, 30), (6, 6), (6, 6), 1).unwrap();
    let odd = Patches::new(2, (23, 17), (5, 7), (3, 2), 0).unwrap();
    let ast = Patches::new(1, (24, 40), (16, 16), (4, 5), 2).unwrap();
    let ast_layout = Layout { c: 0, y: 1, x: 24, image: 24 * 40 };
    // Whisper's Conv1d (kernel 3, padding 1) over (mel, frames) features, and the strided one over
    // the first's (time, channels) output read as channels × 1 × time: zero columns at both ends.
    let conv1 = Patches::padded(5, (1, 13), (1, 3), (1, 1), 0, 1).unwrap();
    let conv2 = Patches::padded(6, (1, 11), (1, 3), (1, 2), 0, 1).unwrap();
    let conv2_layout = Layout { c: 1, y: 0, x: 6, image: 66 };
    assert_eq!((conv1.out_w(), conv2.out_w()), (13, 6));
    for (i, (p, batch, layout)) in [(vit, 3, vit.chw()), (odd, 2, odd.chw()), (ast, 2, ast_layout), (conv1, 1, conv1.chw()), (conv2, 2, conv2_layout)].into_iter().enumerate() {
        let report = check_against_reference(&ctx, &p, batch, layout, i as u64).await.unwrap_or_else(|e| panic!("{p:?}: {e}"));
        log(&format!("im2col {p:?} ×{batch}: {report}"));
        assert!(report.passed, "{p:?}: {report}");
    }
    assert_eq!((ast.out_h(), ast.out_w(), ast.rows(), ast.cols()), (3, 5, 17, 256));
    assert!(Patches::new(3, (5, 5), (6, 6), (6, 6), 0).is_err(), "a kernel larger than the input");
    assert!(Patches::padded(3, (1, 5), (1, 3), (1, 1), 0, 3).is_err(), "padding as wide as the kernel");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(norms, async {
    use hugrt::gpu::ops::norm::{Norm, check_against_reference};
    let ctx = context().await;
    // RMSNorm, LayerNorm, and LayerNorm without a bias (ModernBERT's), by a workgroup per row
    // (GPUs) and by an invocation per row (CPU adapters; 17 rows: a workgroup of 16 and one more).
    for reduction in [Reduction::Workgroup, Reduction::PerInvocation] {
        for (norm, biased) in [(Norm::Rms { eps: 1e-5 }, false), (Norm::Layer { eps: 1e-12 }, true), (Norm::Layer { eps: 1e-5 }, false)] {
            for (i, &(rows, cols, offset)) in [(1, 1, 0.0), (3, 384, 0.0), (7, 577, 3.0), (2, 4099, -1.0), (17, 6, 0.5)].iter().enumerate() {
                let report = check_against_reference(&ctx, reduction, norm, rows, cols, offset, biased, i as u64).await.unwrap_or_else(|e| panic!("{norm:?}: {e}"));
                log(&format!("{norm:?} (bias: {biased}, {reduction:?}) {rows}x{cols}: {report}"));
                assert!(report.passed, "{norm:?} (bias: {biased}, {reduction:?}) {rows}x{cols}: {report}");
            }
        }
    }
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(rope_layouts_positions_and_scaling, async {
    use hugrt::gpu::ops::rope::{RopeLayout, RopeScaling, check_against_reference};
    let ctx = context().await;
    let llama3 = RopeScaling::Llama3 { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position: 8192.0 };
    let cases = [
        // (tokens, heads, head_dim, rot_dim, pos0, scaling)
        (1, 1, 2, 2, 0, RopeScaling::None),
        (5, 9, 64, 64, 0, RopeScaling::None),
        (3, 3, 64, 32, 8000, RopeScaling::Linear { factor: 4.0 }),
        (1, 32, 128, 128, 131_000, llama3),
    ];
    for layout in [RopeLayout::Normal, RopeLayout::NeoX] {
        for (i, &(tokens, heads, head_dim, rot_dim, pos0, scaling)) in cases.iter().enumerate() {
            let report = check_against_reference(&ctx, layout, tokens, heads, head_dim, rot_dim, pos0, scaling, i as u64)
                .await
                .unwrap_or_else(|e| panic!("{layout:?}: {e}"));
            log(&format!("rope {layout:?} case {i}: {report}"));
            assert!(report.passed, "rope {layout:?} case {i}: {report}");
        }
        // q and k in one dispatch: 9 and 3 heads (SmolLM2's), 7 tokens at 40; 5 and 1, a part of
        // each head rotated.
        for (i, &(tokens, heads, head_dim, rot_dim, pos0)) in [(7, [9, 3], 64, 64, 40), (2, [5, 1], 96, 32, 3)].iter().enumerate() {
            let report = hugrt::gpu::ops::rope::check_pair_against_reference(&ctx, layout, tokens, heads, head_dim, rot_dim, pos0, RopeScaling::None, 50 + i as u64)
                .await
                .unwrap_or_else(|e| panic!("{layout:?}: {e}"));
            log(&format!("rope q and k {layout:?} case {i}: {report}"));
            assert!(report.passed, "rope q and k {layout:?} case {i}: {report}");
        }
    }
});

gpu_test!(softmax_and_argmax, async {
    use hugrt::gpu::ops::reduce::{argmax, argmax_reference, check_softmax};
    let ctx = context().await;
    for (i, &(rows, cols, range)) in [(1, 1, 1.0), (3, 17, 1.0), (9, 1031, 30.0), (2, 151_936, 1000.0)].iter().enumerate() {
        let report = check_softmax(&ctx, rows, cols, range, i as u64).await.expect("softmax");
        log(&format!("softmax {rows}x{cols} ±{range}: {report}"));
        assert!(report.passed, "softmax {rows}x{cols}: {report}");
    }
    let mut rng = hugrt::rng::SeededRng::new(5);
    for cols in [1usize, 7, 257, 151_936] {
        let x = rng.signed_unit_vec(3 * cols);
        let want: Vec<u32> = x.chunks_exact(cols).map(argmax_reference).collect();
        assert_eq!(argmax(&ctx, &x, cols).await.expect("argmax"), want, "cols {cols}");
    }
    // Ties go to the first index; NaN never wins; an all-NaN row gives 0.
    let tied = [1.0, 5.0, f32::NAN, 5.0, -2.0, f32::NAN, f32::NAN, f32::NAN, f32::NAN, f32::NAN, f32::NEG_INFINITY, f32::NEG_INFINITY, f32::NAN, f32::NEG_INFINITY, 0.0];
    assert_eq!(argmax(&ctx, &tied, 5).await.expect("argmax"), vec![1, 0, 4]);
    assert_eq!(tied.chunks_exact(5).map(argmax_reference).collect::<Vec<_>>(), vec![1, 0, 4]);
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(attention_decode_prefill_and_encoder, async {
    use hugrt::gpu::ops::attention::{Attention, check_against_reference};
    let ctx = context().await;
    let base = Attention { batch: 1, q_len: 1, kv_len: 1, heads: 9, kv_heads: 3, head_dim: 64, q_pos0: 0, q_pos_from_lengths: false, causal: true, window: 0, scale: 0.125, softcap: 0.0, rel_span: 0 };
    let cases: Vec<(&str, Attention, Vec<u32>)> = vec![
        ("decode, 1 key", base, vec![1]),
        // Decode at position 36 of a 64-slot cache: keys past 37 are stale and must be ignored.
        ("decode, GQA 9/3, 37 of 64 slots", Attention { kv_len: 64, q_pos0: 36, ..base }, vec![37]),
        ("decode, 1025 keys", Attention { kv_len: 1025, q_pos0: 1024, heads: 4, kv_heads: 4, ..base }, vec![1025]),
        // Split over the keys (flash-decoding): one key into a second split; a cache 3001 of
        // 4096 full with stale slots past it; head_dim 128; and a cache whose valid length is
        // below the query's position.
        ("split decode, 257 keys", Attention { kv_len: 300, q_pos0: 256, ..base }, vec![300]),
        ("decode at the lengths' position", Attention { kv_len: 64, q_pos0: 36, q_pos_from_lengths: true, ..base }, vec![37]),
        ("split decode at the lengths' position", Attention { kv_len: 4096, q_pos0: 3000, q_pos_from_lengths: true, ..base }, vec![3001]),
        ("prefill of 5 at the lengths' position 20", Attention { q_len: 5, kv_len: 40, q_pos0: 20, q_pos_from_lengths: true, ..base }, vec![25]),
        ("split decode, GQA 9/3, 3001 of 4096 slots", Attention { kv_len: 4096, q_pos0: 3000, ..base }, vec![3001]),
        ("split decode, head_dim 128, 700 of 1024", Attention { kv_len: 1024, q_pos0: 699, heads: 8, kv_heads: 2, head_dim: 128, ..base }, vec![700]),
        ("split decode, 600 valid of position 900", Attention { kv_len: 1024, q_pos0: 900, ..base }, vec![600]),
        ("prefill 17, causal", Attention { q_len: 17, kv_len: 17, heads: 4, kv_heads: 2, head_dim: 32, ..base }, vec![17]),
        ("prefill chunk of 5 at 12", Attention { q_len: 5, kv_len: 24, q_pos0: 12, heads: 2, kv_heads: 1, head_dim: 16, ..base }, vec![17]),
        // Sliding windows: a query sees its last `window` keys. Decode far past the window (one
        // workgroup per head), split decode over a window wider than a split, prefill chunks
        // whose queries each start at another key.
        ("decode, window 100 at position 3000", Attention { kv_len: 4096, q_pos0: 3000, window: 100, ..base }, vec![3001]),
        ("split decode, window 600 at position 3000", Attention { kv_len: 4096, q_pos0: 3000, window: 600, ..base }, vec![3001]),
        ("prefill 17, window 5", Attention { q_len: 17, kv_len: 17, heads: 4, kv_heads: 2, head_dim: 32, window: 5, ..base }, vec![17]),
        ("prefill chunk of 20 at 40, window 16", Attention { q_len: 20, kv_len: 64, q_pos0: 40, heads: 2, kv_heads: 1, head_dim: 16, window: 16, ..base }, vec![60]),
        // Gemma 2's soft-capped scores (a cap of 0.3 bends every score of these inputs): decode,
        // split decode and a windowed prefill chunk.
        ("decode, soft cap 0.3", Attention { kv_len: 64, q_pos0: 36, softcap: 0.3, ..base }, vec![37]),
        ("split decode, soft cap 0.3, 700 of 1024", Attention { kv_len: 1024, q_pos0: 699, softcap: 0.3, ..base }, vec![700]),
        ("prefill chunk of 20 at 40, window 16, soft cap 0.5", Attention { q_len: 20, kv_len: 64, q_pos0: 40, heads: 2, kv_heads: 1, head_dim: 16, window: 16, softcap: 0.5, ..base }, vec![60]),
        ("encoder, padded batch of 3", Attention { batch: 3, q_len: 7, kv_len: 7, heads: 2, kv_heads: 2, head_dim: 16, causal: false, scale: 0.25, ..base }, vec![7, 3, 1]),
        // ModernBERT's local layers: keys within 2 of each query on both sides, padded.
        ("encoder, bidirectional window 3, padded batch of 3", Attention { batch: 3, q_len: 9, kv_len: 9, heads: 2, kv_heads: 2, head_dim: 16, causal: false, scale: 0.25, window: 3, ..base }, vec![9, 4, 1]),
        // MPNet's relative position bias, over a padded batch and a span wider than the batch.
        ("encoder with relative position bias, padded batch of 3", Attention { batch: 3, q_len: 7, kv_len: 7, heads: 3, kv_heads: 3, head_dim: 16, causal: false, scale: 0.25, rel_span: 7, ..base }, vec![7, 5, 1]),
        // Long encoder passes (Whisper's 1500 frames, shortened): many workgroups of queries, and a
        // head_dim that is not a multiple of 16 (where the per-invocation choice takes the
        // workgroup kernel: attention_rows' first version gave zeros here on lavapipe).
        ("encoder, 600 tokens, 6 heads of 64", Attention { batch: 1, q_len: 600, kv_len: 600, heads: 6, kv_heads: 6, head_dim: 64, causal: false, scale: 0.125, ..base }, vec![600]),
        ("encoder, 600 tokens, 6 heads of 72", Attention { batch: 1, q_len: 600, kv_len: 600, heads: 6, kv_heads: 6, head_dim: 72, causal: false, scale: 0.125, ..base }, vec![600]),
        ("encoder with relative position bias, span 40 over 13", Attention { batch: 2, q_len: 13, kv_len: 13, heads: 2, kv_heads: 2, head_dim: 8, causal: false, scale: 0.35, rel_span: 40, ..base }, vec![13, 11]),
    ];
    // Both kinds of reduction: a workgroup per query (GPUs), an invocation per query (CPU
    // adapters: attention_queries for several queries of head_dim up to 64, attention_rows
    // otherwise), the latter loading every row or sharing rows through subgroups.
    let default = ctx.subgroup_sharing();
    let mut runs = vec![(Reduction::Workgroup, 0)];
    runs.extend(sharing_modes(&ctx).into_iter().map(|shared| (Reduction::PerInvocation, shared)));
    for (reduction, shared) in runs {
        ctx.set_subgroup_sharing(shared).expect("a mode the adapter has");
        for (i, (name, attn, lengths)) in cases.iter().enumerate() {
            assert_eq!(attn.decode_splits().is_some(), name.starts_with("split") || *name == "decode, 1025 keys", "{name}: the kernel chosen");
            let report = check_against_reference(&ctx, reduction, *attn, lengths, i as u64).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            log(&format!("attention {name} ({reduction:?}, shared {shared}): {report}"));
            assert!(report.passed, "attention {name} ({reduction:?}, shared {shared}): {report}");
        }
    }
    ctx.set_subgroup_sharing(default).expect("the default mode");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(mean_pool_and_normalize, async {
    use hugrt::gpu::ops::pool::check_against_reference;
    let ctx = context().await;
    for (i, (lengths, seq_len, hidden, normalize)) in [(vec![1u32], 1usize, 1usize, true), (vec![5, 2, 9], 9, 384, true), (vec![3], 4, 257, false)].into_iter().enumerate() {
        let report = check_against_reference(&ctx, &lengths, seq_len, hidden, normalize, i as u64).await.expect("pool");
        log(&format!("mean pool {lengths:?} {hidden}: {report}"));
        assert!(report.passed, "mean pool {lengths:?}: {report}");
    }
});

gpu_test!(matvec_on_fixture_blocks, async {
    // Every tensor of tests/fixtures/quant/quant.gguf (gguf-py's quantizer, random k-quant blocks,
    // real SmolLM2 Q4_1 and Q8_0 rows) against the dequantize-then-f64 CPU reference.
    const QUANT: &[u8] = include_bytes!("fixtures/quant/quant.gguf");
    let ctx = context().await;
    let table = hugrt::formats::read_table(QUANT, QUANT.len() as u64, "quant.gguf").expect("fixture");
    let mut rng = hugrt::rng::SeededRng::new(9);
    for t in &table.tensors {
        let (rows, cols) = (t.shape[0], t.shape[1]);
        let bytes = &QUANT[t.range.start as usize..t.range.end as usize];
        if cols % 2 == 1 && matches!(t.dtype, DType::F16 | DType::BF16) {
            continue; // odd rows of 16-bit values are not word-aligned on the GPU: refused, tested below
        }
        let w = hugrt::gpu::weights::GpuWeight::upload(&ctx, &t.name, t.dtype, rows, cols, bytes).expect("upload");
        let x = rng.signed_unit_vec(cols as usize);
        let (want, abs) = matvec::reference(t.dtype, bytes, &x).expect("reference");
        let tpr = matvec::threads_per_row(t.dtype, cols as u32, matvec::min_steps_per_thread(&ctx));
        // The f32 path, then the f16 path where the device has one.
        for precision in [Precision::F32, ctx.preferred_precision()] {
            ctx.set_precision(precision).expect("F32 or the preferred precision");
            let (y, path) = matvec::run_reporting(&ctx, &w, &x).await.expect("matvec");
            let report = match path {
                Precision::F32 => hugrt::check::Comparison::elementwise(&y, &want, matvec::error_bound(t.dtype, cols as u32, tpr, &abs)),
                Precision::F16 => {
                    let sums = matvec::f16_sums(t.dtype, bytes, &x, cols as usize).expect("sums");
                    hugrt::check::Comparison::elementwise(&y, &want, matvec::error_bound_f16(t.dtype, cols as u32, tpr, &sums))
                }
            };
            log(&format!("fixture {} ({path:?} path): {report}", t.name));
            assert!(report.passed, "fixture {} ({path:?} path): {report}", t.name);
        }
    }
    let odd = hugrt::gpu::weights::GpuWeight::new(&ctx, "odd", DType::BF16, 7, 13, None).expect_err("odd BF16 rows");
    assert!(matches!(odd, hugrt::gpu::GpuError::Shape { .. }), "{odd:?}");
});

gpu_test!(embedding_lookup_every_weight_type, async {
    use hugrt::gpu::ops::embedding::check_against_reference;
    let ctx = context().await;
    for (i, dtype) in WEIGHT_TYPES.into_iter().enumerate() {
        let cols = 2 * dtype.block_elems().max(2) as usize;
        // Repeated ids, the first and last rows, a table split into parts of 3 rows.
        let ids = [0u32, 10, 3, 3, 16, 7];
        let part = Some(3 * hugrt::formats::DType::bytes_for(dtype, cols as u64).unwrap() * 2);
        let report = check_against_reference(&ctx, dtype, 17, cols, &ids, i as u64, part).await.unwrap_or_else(|e| panic!("{dtype}: {e}"));
        log(&format!("embedding {dtype}: {report}"));
        assert!(report.passed, "embedding {dtype}: {report}");
    }
    let err = check_against_reference(&ctx, DType::Q8_0, 17, 32, &[17], 0, None).await.expect_err("id past the vocabulary");
    assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(sampling_filters_and_draws, async {
    use hugrt::gpu::ops::sample::{Sampling, sample};
    let ctx = context().await;
    let mut rng = hugrt::rng::SeededRng::new(77);
    let vocab = 1031;
    let logits: Vec<f32> = rng.signed_unit_vec(vocab).iter().map(|v| v * 6.0).collect();
    let plain = Sampling { temperature: 0.8, top_k: 0, top_p: 1.0, min_p: 0.0 };
    // top_k = 1 is the argmax, whatever u.
    let argmax = hugrt::gpu::ops::reduce::argmax_reference(&logits);
    for u in [0.0, 0.5, 0.999] {
        assert_eq!(sample(&ctx, &logits, Sampling { top_k: 1, ..plain }, u).await.expect("sample"), argmax);
    }
    let settings = [
        ("temperature only", plain),
        ("top-k 40", Sampling { top_k: 40, ..plain }),
        ("top-p 0.9", Sampling { top_p: 0.9, ..plain }),
        ("min-p 0.05", Sampling { min_p: 0.05, ..plain }),
        ("all together", Sampling { temperature: 1.3, top_k: 50, top_p: 0.95, min_p: 0.02 }),
    ];
    for (name, s) in settings {
        let mut exact = 0;
        for i in 0..48 {
            let u = (i as f64 + 0.5) / 48.0;
            let got = sample(&ctx, &logits, s, u as f32).await.unwrap_or_else(|e| panic!("{name}: {e}"));
            let (keep, want, margin) = s.reference(&logits, f64::from(u as f32));
            assert!(keep[got as usize], "{name}, u {u}: token {got} is outside the kept set");
            // Away from a CDF boundary the draw is exactly the reference's.
            if margin > 1e-4 {
                assert_eq!(got as usize, want, "{name}, u {u}");
                exact += 1;
            }
        }
        log(&format!("sampling {name}: {exact} of 48 draws compared exactly, all inside the kept set"));
        assert!(exact >= 40, "{name}: only {exact} draws away from boundaries");
    }
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(buffer_pool_reuses_buffers, async {
    let ctx = context().await;
    let a = ctx.pool.take(&ctx, 1000).expect("take");
    assert_eq!(a.size(), 1024);
    let a_again = a.clone();
    ctx.pool.give(a);
    assert_eq!(ctx.pool.idle_bytes(), 1024);
    let b = ctx.pool.take(&ctx, 700).expect("take");
    assert_eq!(b, a_again, "the idle buffer of the same class is handed out again");
    let c = ctx.pool.take(&ctx, 700).expect("take");
    assert_ne!(c, b, "a busy buffer is never handed out twice");
    ctx.pool.give(b);
    ctx.pool.give(c);
    ctx.pool.clear();
    assert_eq!(ctx.pool.idle_bytes(), 0);
    let err = ctx.pool.take(&ctx, ctx.limits.max_storage_buffer_binding_size + 1).expect_err("over the binding limit");
    assert!(matches!(err, hugrt::gpu::GpuError::BindingTooLarge { .. }), "{err:?}");
});

#[allow(clippy::too_many_arguments)]
async fn check_tiled(ctx: &GpuContext, tile: Option<matmul::Tile>, dtype: DType, rows: usize, cols: usize, tokens: usize, seed: u64, max_part_bytes: Option<u64>) -> matmul::MatmulCheck {
    check_product(ctx, tile.map(matmul::Product::Tiled), dtype, rows, cols, tokens, seed, max_part_bytes).await
}

#[allow(clippy::too_many_arguments)]
async fn check_product(ctx: &GpuContext, product: Option<matmul::Product>, dtype: DType, rows: usize, cols: usize, tokens: usize, seed: u64, max_part_bytes: Option<u64>) -> matmul::MatmulCheck {
    let what = format!("matmul {dtype} {rows}x{cols}, {tokens} tokens, {product:?}");
    let report = matmul::check_against_reference(ctx, product, dtype, rows, cols, tokens, seed, max_part_bytes)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    log(&format!("{what}: {report}"));
    assert!(report.comparison.passed, "{what}: {report}");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
    report
}

gpu_test!(matmul_tiled_every_weight_type_at_awkward_sizes, async {
    let ctx = context().await;
    for (i, dtype) in WEIGHT_TYPES.into_iter().enumerate() {
        // Columns: a prime for F32 (a partial K-step of 32), a prime number of pairs for
        // F16/BF16, a prime number of blocks otherwise; 67 rows (a tile of 64 and 3 more).
        let cols = match dtype {
            DType::F32 => 131,
            DType::F16 | DType::BF16 => 2 * 67,
            _ if dtype.block_elems() == 256 => 256 * 3,
            _ => 32 * 7,
        };
        // One token; a partial tile; a tile of 32 and one more; two tiles of 64 and one more.
        for (j, &tokens) in [1usize, 7, 33, 129].iter().enumerate() {
            check_tiled(&ctx, None, dtype, 67, cols, tokens, (2000 + 10 * i + j) as u64, None).await;
        }
    }
});

/// The CPU adapters' kernels' modes on this adapter: every invocation loading what it reads (0),
/// and loads shared through subgroups between 4 and 8 lanes where the subgroups allow. Each mode
/// is switched on in turn by the caller, which restores the adapter's default after.
fn sharing_modes(ctx: &GpuContext) -> Vec<u32> {
    let default = ctx.subgroup_sharing();
    let modes: Vec<u32> = [0, 4, 8].into_iter().filter(|&lanes| ctx.set_subgroup_sharing(lanes).is_ok()).collect();
    ctx.set_subgroup_sharing(default).expect("the default mode");
    assert_eq!(default, *modes.last().expect("0 always"), "the default shares between the most lanes allowed");
    assert!(matches!(ctx.set_subgroup_sharing(3), Err(hugrt::gpu::GpuError::Shape { .. })), "3 lanes");
    assert!(matches!(ctx.set_subgroup_sharing(16), Err(hugrt::gpu::GpuError::Shape { .. })), "16 lanes");
    // The test adapters: lavapipe's subgroups are its SIMD lanes (8 with AVX2). Chromium's
    // SwiftShader offers subgroups of 4, but wgpu 30's WebGPU backend does not map the
    // "subgroups" feature, so a device made through it never has them.
    if ctx.report.name.contains("llvmpipe") {
        assert_eq!(modes, [0, 4, 8], "lavapipe");
    }
    if cfg!(target_arch = "wasm32") {
        assert_eq!(modes, [0], "the browser, through wgpu 30");
    }
    modes
}

gpu_test!(matmul_blocked_every_weight_type_at_awkward_sizes, async {
    let ctx = context().await;
    let default = ctx.subgroup_sharing();
    for shared in sharing_modes(&ctx) {
        ctx.set_subgroup_sharing(shared).expect("a mode the adapter has");
        log(&format!("blocked kernel, X shared between {shared} lanes"));
        blocked_every_weight_type(&ctx).await;
    }
    ctx.set_subgroup_sharing(default).expect("the default mode");
});

async fn blocked_every_weight_type(ctx: &GpuContext) {
    use matmul::Product::Blocked;
    for (i, dtype) in WEIGHT_TYPES.into_iter().enumerate() {
        // Columns: 4 × a prime for F32 and F16/BF16, a prime number of blocks otherwise; 67 rows
        // (8 invocations of 8 rows and 3 more: the last block clamped).
        let cols = match dtype {
            DType::F32 => 4 * 37,
            DType::F16 | DType::BF16 => 4 * 29,
            _ if dtype.block_elems() == 256 => 256 * 3,
            _ => 32 * 7,
        };
        // One token (`token1`); 2; a partial block of 8 and a prime over several.
        for (j, &tokens) in [1usize, 2, 7, 8, 131].iter().enumerate() {
            check_product(ctx, Some(Blocked), dtype, 67, cols, tokens, (5000 + 10 * i + j) as u64, None).await;
        }
    }
    // Fewer rows than one invocation's 8; one row; weights in parts of 5 rows (each dispatch
    // writing its own columns of Y).
    check_product(ctx, Some(Blocked), DType::Q4_1, 3, 64, 9, 5200, None).await;
    check_product(ctx, Some(Blocked), DType::F32, 1, 4, 1, 5201, None).await;
    check_product(ctx, Some(Blocked), DType::Q4_K, 37, 512, 33, 5202, Some(5 * 2 * 36 * 4)).await;
    check_product(ctx, Some(Blocked), DType::F32, 37, 12, 1, 5203, Some(5 * 12 * 4)).await;
    // F16/BF16 weights whose size is whole vec4s (67 rows above are not): read through the
    // kernel's vec4 view of W; rows of 58 words start alternately at either half of a vec4.
    check_product(ctx, Some(Blocked), DType::F16, 64, 4 * 29, 9, 5204, None).await;
    check_product(ctx, Some(Blocked), DType::BF16, 64, 4 * 29, 1, 5205, None).await;
    // F16 rows of a multiple of 8 values start at a vec4: `tokens8` reads 8 values a load.
    check_product(ctx, Some(Blocked), DType::F16, 64, 8 * 13, 9, 5206, None).await;
    check_product(ctx, Some(Blocked), DType::F16, 5, 8 * 13, 131, 5207, None).await;
    // Columns that are not a multiple of 4 are refused, typed.
    let w = hugrt::gpu::weights::GpuWeight::new(ctx, "W", DType::F32, 3, 5, None).expect("valid shape");
    let err = matmul::run(ctx, Blocked, &w, &[0.0; 5]).await.expect_err("5 columns");
    assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
}

gpu_test!(matmul_tiled_weight_split_and_other_tiles, async {
    use matmul::Tile;
    let ctx = context().await;
    // Parts of at most 5 rows: 37 rows in 8 parts, each dispatch writing its own columns of Y.
    check_tiled(&ctx, None, DType::Q4_K, 37, 512, 33, 3000, Some(5 * 2 * 36 * 4)).await;
    check_tiled(&ctx, None, DType::F32, 37, 13, 129, 3001, Some(5 * 13 * 4)).await;
    check_tiled(&ctx, None, DType::Q8_0, 37, 96, 7, 3002, Some(5 * 3 * 9 * 4)).await;
    // Other tiles: 32 × 32; tall and wide ones; a tile of one invocation.
    let tiles = [Tile::SMALL, Tile { bm: 32, bn: 128 }, Tile { bm: 128, bn: 32 }, Tile { bm: 4, bn: 4 }];
    for (i, tile) in tiles.into_iter().enumerate() {
        check_tiled(&ctx, Some(tile), DType::Q6_K, 41, 512, 45, 3100 + i as u64, Some(7 * 2 * 53 * 4)).await;
        check_tiled(&ctx, Some(tile), DType::F16, 41, 70, 45, 3200 + i as u64, None).await;
    }
});

gpu_test!(matmul_rejects_bad_shapes_and_tiles_with_typed_errors, async {
    use hugrt::gpu::GpuError;
    use matmul::Tile;
    let ctx = context().await;
    let w = hugrt::gpu::weights::GpuWeight::new(&ctx, "W", DType::F32, 3, 5, None).expect("valid shape");
    let err = matmul::run(&ctx, matmul::Product::Tiled(Tile::DEFAULT), &w, &[0.0; 4]).await.expect_err("x not whole rows of 5");
    assert!(matches!(err, GpuError::Shape { .. }), "{err:?}");
    let small = ctx.storage_output("test", "small", 16).expect("buffer");
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    for (tokens, why) in [(0, "no tokens"), (2, "x and y too small"), (1 << 30, "u32 indexing overflows")] {
        let err = matmul::encode(&ctx, &mut encoder, &w, tokens, &small, &small).await.expect_err(why);
        assert!(matches!(err, GpuError::Shape { .. }), "{why}: {err:?}");
    }
    for tile in [
        Tile { bm: 0, bn: 64 },
        Tile { bm: 64, bn: 30 },
        // 2048 and 4096 invocations (lavapipe: 1024; SwiftShader: 256).
        Tile { bm: 256, bn: 128 },
        Tile { bm: 256, bn: 256 },
        // 256 invocations, but 65 KiB of workgroup memory.
        Tile { bm: 512, bn: 8 },
    ] {
        let err = tile.check(&ctx).expect_err("a tile the shader or the device cannot take");
        assert!(matches!(err, GpuError::Shape { .. }), "{tile:?}: {err:?}");
    }
    assert_eq!(matmul::Tile::for_device(&ctx).expect("a tile"), Tile::DEFAULT);
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

gpu_test!(matmul_encode_auto_picks_by_token_count, async {
    use matmul::{Kernel, MIN_TILED_TOKENS, MIN_TILED_TOKENS_F16, Product, Tile, min_tiled_tokens, pick};
    let ctx = context().await;
    let mut rng = hugrt::rng::SeededRng::new(4000);
    // A CPU adapter (lavapipe natively, SwiftShader in Chromium) takes the blocked kernel for
    // every token count where the columns are a multiple of 4, as a GPU never does; elsewhere
    // the token count decides, as below for F32 weights of 63 columns.
    let software = ctx.report.is_software();
    for tokens in [1, 7, 1214] {
        assert_eq!(pick(&ctx, DType::Q4_0, 64, tokens) == Kernel::Blocked, software, "{tokens} tokens");
    }
    assert_ne!(pick(&ctx, DType::F32, 63, 1), Kernel::Blocked, "63 columns");
    if software {
        let (rows, cols, tokens) = (19usize, 64usize, 9u32);
        let bytes = rng.tensor_bytes(DType::Q4_0, rows * cols);
        let w = hugrt::gpu::weights::GpuWeight::upload(&ctx, "W", DType::Q4_0, rows as u64, cols as u64, &bytes).expect("upload");
        let x = rng.signed_unit_vec(tokens as usize * cols);
        let xb = ctx.storage_from("test", "x", &x).expect("x");
        let yb = ctx.storage_output("test", "y", (tokens as usize * rows * 4) as u64).expect("y");
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        matmul::encode_auto(&ctx, &mut encoder, &w, tokens, &xb, &yb).await.expect("encode_auto");
        ctx.queue.submit([encoder.finish()]);
        let auto = ctx.read_f32(&yb, tokens as usize * rows).await.expect("read");
        assert_eq!(auto, matmul::run(&ctx, Product::Blocked, &w, &x).await.expect("blocked"));
    }
    let (rows, cols) = (19usize, 63usize);
    let bytes = rng.tensor_bytes(DType::F32, rows * cols);
    let w = hugrt::gpu::weights::GpuWeight::upload(&ctx, "W", DType::F32, rows as u64, cols as u64, &bytes).expect("upload");
    // On each precision the device has: the threshold of the path matvec would take, and just
    // below and at it, the output is bit for bit that of the kernel picked.
    let f16 = f16_where_present(&ctx);
    for precision in [Precision::F32, f16] {
        ctx.set_precision(precision).expect("F32 or the preferred precision");
        assert_eq!(min_tiled_tokens(&ctx, DType::Q4_0), if precision == Precision::F16 { MIN_TILED_TOKENS_F16 } else { MIN_TILED_TOKENS });
        let min = min_tiled_tokens(&ctx, DType::F32);
        assert_eq!(min, MIN_TILED_TOKENS, "F32 weights never take the f16 path");
        assert_eq!(pick(&ctx, DType::F32, 63, 1), Kernel::Matvec);
        assert_eq!(pick(&ctx, DType::F32, 63, 1214), Kernel::Tiled);
        for tokens in [min - 1, min] {
            let x = rng.signed_unit_vec(tokens as usize * cols);
            let xb = ctx.storage_from("test", "x", &x).expect("x");
            let yb = ctx.storage_output("test", "y", (tokens as usize * rows * 4) as u64).expect("y");
            let mut encoder = ctx.device.create_command_encoder(&Default::default());
            matmul::encode_auto(&ctx, &mut encoder, &w, tokens, &xb, &yb).await.expect("encode_auto");
            ctx.queue.submit([encoder.finish()]);
            let auto = ctx.read_f32(&yb, tokens as usize * rows).await.expect("read");
            let kernel = pick(&ctx, DType::F32, 63, tokens);
            assert_eq!(kernel, if tokens < min { Kernel::Matvec } else { Kernel::Tiled });
            let want = match kernel {
                Kernel::Matvec => matvec::run(&ctx, &w, &x).await.expect("matvec"),
                _ => matmul::run(&ctx, Product::Tiled(Tile::for_device(&ctx).expect("tile")), &w, &x).await.expect("matmul"),
            };
            assert_eq!(auto, want, "{precision:?}, {tokens} tokens: {kernel:?}");
        }
    }
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
});

#[allow(clippy::too_many_arguments)]
async fn check_fused(ctx: &GpuContext, kernel: matmul::Kernel, dtype: DType, rows: usize, cols: usize, tokens: usize, case: product::FusedCase, seed: u64) {
    let what = format!("fused {dtype} {rows}x{cols}, {tokens} tokens, {kernel:?} {case:?}");
    let report = product::check_against_reference(ctx, kernel, dtype, rows, cols, tokens, case, seed).await.unwrap_or_else(|e| panic!("{what}: {e}"));
    log(&format!("{what}: {report}"));
    assert!(report.comparison.passed, "{what}: {report}");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
}

gpu_test!(products_fuse_bias_residual_segments_norm_and_gating, async {
    use matmul::Kernel::{Blocked, Matvec, Tiled};
    use product::{FusedCase, Gate};
    let ctx = context().await;
    let epilogue = [
        FusedCase { bias: true, ..Default::default() },
        FusedCase { residual: true, ..Default::default() },
        // Q, K and V of 67 rows: 29 + 19 + 19, with their biases.
        FusedCase { bias: true, splits: Some([29, 48]), ..Default::default() },
        // Two segments (the second split at the end), and a residual.
        FusedCase { residual: true, splits: Some([40, 67]), ..Default::default() },
    ];
    // Every kernel runs the epilogue: one token, a partial tile, past one tile of 64.
    for (k, kernel) in [Matvec, Tiled, Blocked].into_iter().enumerate() {
        for (i, &case) in epilogue.iter().enumerate() {
            for (j, (dtype, cols)) in [(DType::F32, 4 * 37), (DType::Q4_K, 256 * 3), (DType::Q8_0, 32 * 7)].into_iter().enumerate() {
                for &tokens in &[1usize, 7, 67] {
                    check_fused(&ctx, kernel, dtype, 67, cols, tokens, case, (7000 + 100 * k + 10 * i + j) as u64 + tokens as u64).await;
                }
            }
        }
    }
    // The blocked kernel's own fusions: RMSNorm of X; [gate; up] rows (2 × 37: 9 invocations of 4
    // and 1 more); both, with a residual; a norm before a split Q/K/V with biases.
    let blocked = [
        FusedCase { rms_norm: Some(1e-5), ..Default::default() },
        FusedCase { gated: Some(Gate::Silu), ..Default::default() },
        FusedCase { gated: Some(Gate::GeluTanh), bias: true, ..Default::default() },
        FusedCase { rms_norm: Some(1e-6), gated: Some(Gate::Silu), residual: true, ..Default::default() },
        FusedCase { rms_norm: Some(1e-5), bias: true, splits: Some([36, 55]), ..Default::default() },
    ];
    let default = ctx.subgroup_sharing();
    for shared in sharing_modes(&ctx) {
        ctx.set_subgroup_sharing(shared).expect("a mode the adapter has");
        for (i, &case) in blocked.iter().enumerate() {
            for (j, dtype) in [DType::F32, DType::F16, DType::Q4_1, DType::Q4_K, DType::Q6_K].into_iter().enumerate() {
                let cols = if dtype.block_elems() == 256 { 512 } else { 4 * 53 };
                let cols = if dtype.block_elems() == 32 { 32 * 5 } else { cols };
                for &tokens in &[1usize, 9] {
                    check_fused(&ctx, Blocked, dtype, 74, cols, tokens, case, (7500 + 10 * i + j) as u64 + tokens as u64).await;
                }
            }
        }
    }
    ctx.set_subgroup_sharing(default).expect("the default mode");
    // The other kernels refuse the norm and the gating, typed.
    for kernel in [Matvec, Tiled] {
        for case in [FusedCase { rms_norm: Some(1e-5), ..Default::default() }, FusedCase { gated: Some(Gate::Silu), ..Default::default() }] {
            let err = product::check_against_reference(&ctx, kernel, DType::F32, 8, 8, 1, case, 1).await.expect_err("not fused there");
            assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
        }
    }
});
