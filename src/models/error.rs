//! The errors of loading and running a model, on either backend.

use crate::gpu::error::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model metadata: {0}")]
    Config(String),
    #[error("tensor {name:?}: {problem}")]
    Tensor { name: String, problem: String },
    #[error("reading weights: {0}")]
    Read(ReadError),
    #[error(transparent)]
    Format(#[from] crate::formats::FormatError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error("the context of {ctx} tokens is full (position {pos}); start a new sequence")]
    ContextFull { ctx: u32, pos: u32 },
    /// Inputs the model cannot take: a token id past the vocabulary, a sequence longer than the
    /// model's positions, an empty sequence.
    #[error("bad input: {0}")]
    Input(String),
    #[error("token id {id} is not in the vocabulary of {vocab}")]
    Token { id: u32, vocab: u32 },
    /// The CPU fallback (candle) failed.
    #[error("CPU: {0}")]
    Cpu(String),
}

impl ModelError {
    /// The stable code callers see (the JS error classes, the CLI's JSON).
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::Config(_) | ModelError::Tensor { .. } | ModelError::Format(_) => "BadModelFile",
            ModelError::Read(e) => e.code,
            ModelError::Gpu(g) => g.code(),
            ModelError::ContextFull { .. } => "ContextFull",
            ModelError::Input(_) | ModelError::Token { .. } => "BadInput",
            ModelError::Cpu(_) => "Internal",
        }
    }
}

/// A model file's bytes could not be read: the reader's error code (the store's, `NetworkError`
/// for HTTP, `BadModelFile` for a file shorter than its header says) and what happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ReadError {
    pub code: &'static str,
    pub message: String,
}

impl ReadError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    /// Fewer bytes than the file's header promised: the file is cut short.
    pub fn truncated(message: impl Into<String>) -> Self {
        Self::new("BadModelFile", message)
    }
}
