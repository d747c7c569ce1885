//! Shared by the test files that run on both targets.

/// Declares `name` as a native `#[test]` (blocking on the future) and a browser test: for any
/// async test, GPU or not.
#[macro_export]
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

/// A line in the test's output: stderr natively, the browser console (which the runner prints).
#[allow(dead_code)] // not every test file logs
pub fn log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

/// The two backends every model test runs on.
#[allow(dead_code)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Gpu,
    Cpu,
}

/// Declares a test on the GPU and one on the CPU from one async function of the device
/// (`both!(name_on_the_gpu, name_on_the_cpu, check)`), each a native test and a browser test.
#[macro_export]
macro_rules! both {
    ($gpu:ident, $cpu:ident, $body:expr) => {
        gpu_test!($gpu, ($body)($crate::common::Device::Gpu));
        gpu_test!($cpu, ($body)($crate::common::Device::Cpu));
    };
}

/// `$f(backend, args…).await` with `device`'s backend (`Gpu` over a new context, or `Cpu`): for
/// test bodies generic over `hugrt::backend::Backend`.
#[macro_export]
macro_rules! on_backend {
    ($device:expr, $f:ident($($arg:expr),* $(,)?)) => {
        match $device {
            $crate::common::Device::Gpu => {
                let ctx = $crate::common::gpu_for($crate::common::Device::Gpu).await.expect("a GPU");
                $f(hugrt::gpu::backend::Gpu::new(ctx) $(, $arg)*).await
            }
            $crate::common::Device::Cpu => $f(hugrt::cpu::backend::Cpu $(, $arg)*).await,
        }
    };
}

/// The GPU context (lavapipe natively, WebGPU in the browser) for `device`, or none.
#[allow(dead_code)]
pub async fn gpu_for(device: Device) -> Option<std::rc::Rc<hugrt::gpu::GpuContext>> {
    match device {
        Device::Gpu => Some(std::rc::Rc::new(hugrt::gpu::GpuContext::new().await.expect("a GPU"))),
        Device::Cpu => None,
    }
}

/// A model file's tensor table (the file in memory).
#[allow(dead_code)]
pub fn table(name: &str, bytes: &[u8]) -> hugrt::formats::TensorTable {
    hugrt::formats::read_table(bytes, bytes.len() as u64, name).expect("reads the table")
}

/// A decoder from a GGUF file (`config` None) or a hub checkpoint, on `device`.
#[allow(dead_code)]
pub async fn decoder(device: Device, config: Option<&[u8]>, name: &str, bytes: &[u8], context: Option<u32>) -> Result<hugrt::models::AnyDecoder, hugrt::models::ModelError> {
    let t = table(name, bytes);
    hugrt::models::AnyDecoder::load(gpu_for(device).await, config, &t, context, &mut { bytes }).await
}

/// Fails the test if the GPU reported errors that no error scope caught.
#[allow(dead_code)]
pub fn assert_no_gpu_errors(model: &hugrt::models::AnyDecoder) {
    if let Some(gpu) = model.gpu() {
        assert_eq!(gpu.ctx.take_uncaptured_errors(), Vec::<String>::new());
    }
}
