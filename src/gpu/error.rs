//! Errors of the GPU layer. Every failure a user can hit (no WebGPU, a lost device, a shader the
//! browser's compiler rejects, a tensor over the binding limit) is a variant with its facts.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GpuError {
    /// `navigator.gpu` is missing (browser without WebGPU, or WebGPU disabled).
    #[error("WebGPU is not available in this browser (navigator.gpu is missing)")]
    WebGpuUnavailable,
    /// No adapter matched (no GPU driver, or the browser refused to give one).
    #[error("no GPU adapter found: {detail}")]
    NoAdapter { detail: String },
    /// The adapter refused the device we asked for.
    #[error("the GPU adapter refused to create a device: {detail}")]
    RequestDevice { detail: String },
    /// The device was lost (driver reset, `device.destroy()`, GPU process crash).
    #[error("the GPU device was lost: {reason}")]
    DeviceLost { reason: String },
    /// A WebGPU validation error caught in an error scope around `op`.
    #[error("GPU validation error in {op}: {message}")]
    Validation { op: String, message: String },
    /// Out of GPU memory while running `op`.
    #[error("GPU out of memory in {op}: {message}")]
    OutOfMemory { op: String, message: String },
    /// Any other error caught in an error scope around `op`.
    #[error("GPU internal error in {op}: {message}")]
    Internal { op: String, message: String },
    /// The arguments of an op do not fit together.
    #[error("{op}: bad shape: {detail}")]
    Shape { op: &'static str, detail: String },
    /// A buffer is larger than one storage binding may be on this device.
    #[error("{op}: {what} needs {bytes} bytes in one binding, the device allows {limit}")]
    BindingTooLarge { op: &'static str, what: &'static str, bytes: u64, limit: u64 },
    /// The work needs an optional device feature this device lacks (e.g. f16 products without
    /// shader-f16).
    #[error("{op}: the device lacks the {feature} feature")]
    MissingFeature { op: &'static str, feature: &'static str },
    /// Reading a result back to the CPU failed.
    #[error("reading GPU results back failed: {detail}")]
    Readback { detail: String },
}

impl GpuError {
    /// Converts an error caught by a popped error scope into the typed error for `op`.
    pub fn from_scope(op: &str, err: wgpu::Error) -> Self {
        let op = op.to_owned();
        match err {
            wgpu::Error::OutOfMemory { source } => GpuError::OutOfMemory { op, message: source.to_string() },
            wgpu::Error::Validation { description, .. } => GpuError::Validation { op, message: description },
            wgpu::Error::Internal { description, .. } => GpuError::Internal { op, message: description },
        }
    }

    /// A stable code for the JS error classes (`err.code`).
    pub fn code(&self) -> &'static str {
        match self {
            GpuError::WebGpuUnavailable | GpuError::NoAdapter { .. } => "WebGpuUnavailable",
            GpuError::RequestDevice { .. } => "WebGpuUnavailable",
            GpuError::DeviceLost { .. } => "DeviceLost",
            GpuError::OutOfMemory { .. } => "OutOfMemory",
            GpuError::Shape { .. } | GpuError::BindingTooLarge { .. } | GpuError::MissingFeature { .. } => "Unsupported",
            GpuError::Validation { .. } | GpuError::Internal { .. } | GpuError::Readback { .. } => "GpuError",
        }
    }
}
