//! GPU kernels against their CPU references, written once and run on both targets:
//! natively (`cargo test`: wgpu on Vulkan, lavapipe on a machine without a GPU) and in headless
//! Chromium (`cargo test --target wasm32-unknown-unknown`: WebGPU on SwiftShader).
//! A missing adapter fails the test: it never passes by skipping.

use hugrt::gpu::GpuContext;
use hugrt::gpu::ops::matvec;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Declares `name` as a native `#[test]` (blocking on the future) and a browser test.
macro_rules! gpu_test {
    ($name:ident, $body:expr) => {
        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on($body)
        }
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() {
            $body.await
        }
    };
}

fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

async fn context() -> GpuContext {
    match GpuContext::new().await {
        Ok(ctx) => {
            log(&format!("adapter: {:?}", ctx.report));
            ctx
        }
        Err(e) => panic!("no GPU for the kernel tests: {e}"),
    }
}

async fn check_matvec(ctx: &GpuContext, rows: usize, cols: usize, seed: u64) {
    let report = matvec::check_against_reference(ctx, rows, cols, seed)
        .await
        .unwrap_or_else(|e| panic!("matvec {rows}x{cols}: {e}"));
    log(&format!("matvec {rows}x{cols}: {report}"));
    assert!(report.passed, "matvec {rows}x{cols}: {report}");
    assert_eq!(ctx.take_uncaptured_errors(), Vec::<String>::new());
}

gpu_test!(matvec_f32_awkward_sizes, async {
    let ctx = context().await;
    // 1×1; sizes that are not multiples of the workgroup size; primes; one row longer than the
    // workgroup many times over; more rows than one grid dimension holds (2-D fold).
    for (i, &(rows, cols)) in [(1, 1), (7, 13), (1, 257), (1021, 1031), (257, 4099), (70_001, 3)].iter().enumerate() {
        check_matvec(&ctx, rows, cols, 0x5eed + i as u64).await;
    }
});

gpu_test!(matvec_f32_4096x4097, async {
    let ctx = context().await;
    check_matvec(&ctx, 4096, 4097, 42).await;
});

gpu_test!(matvec_rejects_bad_shapes_with_typed_errors, async {
    let ctx = context().await;
    let op = matvec::Matvec::new(3, 5).expect("valid shape");
    let err = op.run(&ctx, &[0.0; 14], &[0.0; 5]).await.expect_err("W one value short");
    assert!(matches!(err, hugrt::gpu::GpuError::Shape { .. }), "{err:?}");
    let limit = ctx.limits.max_storage_buffer_binding_size;
    let err = ctx.check_binding("matvec", "W", limit + 4).expect_err("over the binding limit");
    assert!(matches!(err, hugrt::gpu::GpuError::BindingTooLarge { bytes, .. } if bytes == limit + 4), "{err:?}");
});
