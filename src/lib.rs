//! hugrt: hub models in the browser.
//!
//! Data path (see ARCHITECTURE.md): hub → fetch stream → verified IndexedDB chunks → format readers
//! → GPU buffers → WGSL kernels → tokens. This crate builds for `wasm32-unknown-unknown` (the npm
//! package) and natively (tests, CLI, benchmarks on wgpu/Vulkan).

#[cfg(feature = "gpu")]
pub mod backend;
pub mod check;
pub mod clock;
pub mod formats;
#[cfg(feature = "gpu")]
pub mod gpu;
#[cfg(feature = "gpu")]
pub mod generate;
pub mod generation_defaults;
#[cfg(feature = "gpu")]
pub mod models;
#[cfg(feature = "cpu")]
pub mod cpu;
pub mod preprocess;
pub mod rng;
pub mod tokenizer;

#[cfg(all(feature = "gpu", target_arch = "wasm32"))]
pub mod api;

#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod cli;
pub mod hub;
pub mod store;
