//! Model architectures, one file each, written against the op set of `gpu::ops`.

pub mod bert;
pub mod llama;
