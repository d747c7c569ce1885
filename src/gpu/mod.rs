//! The GPU side: a wgpu device (Vulkan/Metal natively, WebGPU in the browser), its capabilities,
//! the pipeline cache, buffer helpers, and one file per op under `ops/`.

pub mod backend;
pub mod bench;
pub mod buffers;
pub mod context;
pub mod error;
pub mod ops;
pub mod pipelines;
pub mod pool;
pub mod shaders;
pub mod weights;

pub use context::{AdapterReport, GpuContext, LimitsReport, Precision};
pub use error::GpuError;
