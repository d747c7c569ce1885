//! The errors of loading and running a model, on either backend.

use crate::gpu::error::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model metadata: {0}")]
    Config(String),
    #[error("tensor {name:?}: {problem}")]
    Tensor { name: String, problem: String },
    #[error("reading weights: {0}")]
    Read(String),
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
