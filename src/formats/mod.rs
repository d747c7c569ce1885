//! Model file readers: safetensors and GGUF, from the header first and then by byte range.
//!
//! `read_table(prefix, file_len)` takes the first bytes of a file and its total length and returns
//! the tensor table (name, dtype, shape, absolute byte range) and metadata; when the header is
//! longer than `prefix` it answers `FormatError::NeedMoreBytes` and the caller reads further
//! (`TableReader` does that for any `Read + Seek`). Tensor bytes are then read by range from
//! wherever they live (the weight store, a file, a buffer), never the whole file at once.
//!
//! A model file is untrusted input. All offset arithmetic is checked `u64` (usize is 32 bits on
//! wasm32), every count is bounded by the bytes that could hold it before anything is allocated,
//! and every problem is a `FormatError` variant: no panic, whatever the bytes.

pub mod dtype;
pub mod gguf;
pub mod index;
pub mod quant;
pub mod safetensors;
mod sniff;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::ops::Range;

use serde::Serialize;
use thiserror::Error;

pub use dtype::DType;
pub use gguf::{GgufMetadata, GgufValue};

/// Largest header we read: safetensors caps its JSON at 100 MB; a GGUF header (metadata with the
/// vocabulary, tensor infos) is a few MB even for 150k-token vocabularies.
pub const MAX_HEADER_BYTES: u64 = 128 << 20;

/// One tensor of a model file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub dtype: DType,
    /// Outermost dimension first, as PyTorch and safetensors write it. GGUF stores dimensions
    /// innermost first (`ne[0]` = columns); they are reversed here, so `shape.last()` is the
    /// contiguous axis along which quantization blocks run.
    pub shape: Vec<u64>,
    /// Absolute byte range in the file.
    pub range: Range<u64>,
}

impl TensorInfo {
    pub fn elems(&self) -> u64 {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum Metadata {
    /// The `__metadata__` map of a safetensors header.
    Safetensors { metadata: BTreeMap<String, String> },
    /// GGUF key-value metadata, in file order.
    Gguf { version: u32, alignment: u64, metadata: GgufMetadata },
}

/// What a model file's header says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorTable {
    pub metadata: Metadata,
    /// Absolute offset where tensor data starts.
    pub data_start: u64,
    /// In file order.
    pub tensors: Vec<TensorInfo>,
}

impl TensorTable {
    pub fn get(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn format(&self) -> &'static str {
        match self.metadata {
            Metadata::Safetensors { .. } => "safetensors",
            Metadata::Gguf { .. } => "gguf",
        }
    }
}

/// Why a file is not a model file we can read. Structured, so tests and the UI can tell cases
/// apart; `Display` is a sentence for users.
#[derive(Clone, Debug, Error, PartialEq)]
pub enum FormatError {
    /// Not an error for users: the header continues past the bytes given; read `needed` bytes.
    #[error("the header needs the first {needed} bytes")]
    NeedMoreBytes { needed: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("the file is truncated: {what} needs bytes up to offset {needed}, the file has {file_len}")]
    Truncated { what: String, needed: u64, file_len: u64 },
    #[error("refusing {what}: pickle-based checkpoints can run code when loaded; use safetensors or GGUF")]
    UnsafeFormat { what: &'static str },
    #[error("this is a Git LFS pointer, not the model data (the server sent the pointer file instead of the object)")]
    LfsPointer,
    #[error("this is an HTML page, not a model file (an error or login page served in its place?)")]
    HtmlPage,
    #[error("this is a JSON document, not a model file: {snippet}")]
    JsonDocument { snippet: String },
    #[error("this is text, not a model file: {snippet}")]
    Text { snippet: String },
    #[error("unknown file format (first bytes {first_bytes}); expected safetensors or GGUF")]
    UnknownFormat { first_bytes: String },

    // safetensors
    #[error("safetensors: the file is shorter than the 8-byte header length")]
    HeaderTooSmall,
    #[error("header of {len} bytes exceeds the {cap}-byte cap")]
    HeaderTooLarge { len: u64, cap: u64 },
    #[error("safetensors: header length {len} runs past the end of the {file_len}-byte file")]
    InvalidHeaderLength { len: u64, file_len: u64 },
    #[error("safetensors: the header does not start with '{{' (found byte {found:#04x})")]
    HeaderNotObject { found: u8 },
    #[error("safetensors: the header is not valid UTF-8")]
    HeaderNotUtf8,
    #[error("safetensors: the header is not valid JSON: {detail}")]
    HeaderNotJson { detail: String },
    #[error("safetensors: the header has the wrong structure: {detail}")]
    InvalidHeader { detail: String },
    #[error("safetensors: tensor {name:?}: data_offsets {begin}..{end} {problem}")]
    InvalidOffset { name: String, begin: u64, end: u64, problem: &'static str },
    #[error("safetensors: tensor data ends at {data_end} but the file holds {available} bytes of data")]
    DataSizeMismatch { data_end: u64, available: u64 },

    // GGUF
    #[error("GGUF: version {version} is not supported (versions 2 and 3 are)")]
    UnsupportedVersion { version: u32 },
    #[error("GGUF: the file is big-endian (version field reads {version:#x}); only little-endian GGUF is supported")]
    BigEndian { version: u32 },
    #[error("GGUF: {what} count {count} is impossible for a file of this size (at most {max})")]
    TooMany { what: &'static str, count: u64, max: u64 },
    #[error("GGUF: {what} of {len} bytes at offset {at} runs past the end of the file")]
    LengthPastEnd { what: &'static str, len: u64, at: u64 },
    #[error("GGUF: bad metadata key {key:?}: {problem}")]
    BadKey { key: String, problem: &'static str },
    #[error("GGUF: duplicate metadata key {key:?}")]
    DuplicateKey { key: String },
    #[error("GGUF: metadata {key:?} has unknown value type {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("GGUF: metadata {key:?}: {problem}")]
    BadValue { key: String, problem: String },
    #[error("GGUF: general.alignment {problem}")]
    BadAlignment { problem: String },
    #[error("GGUF: tensor {name:?}: {problem}")]
    BadTensor { name: String, problem: String },
    #[error("GGUF: tensor {name:?} has ggml type {type_name}, which hugrt does not read yet")]
    UnsupportedType { name: String, type_name: &'static str },
    #[error("GGUF: tensor {name:?} has unknown ggml type id {type_id}")]
    UnknownType { name: String, type_id: u32 },

    // shared
    #[error("tensor name is {problem}")]
    BadTensorName { problem: String },
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor { name: String },
    #[error("tensor {name:?}: unknown dtype {dtype:?}")]
    UnknownDType { name: String, dtype: String },
    #[error("tensor {name:?}: shape {shape:?} of {dtype} needs {expected} bytes, the file gives {actual}")]
    ShapeMismatch { name: String, shape: Vec<u64>, dtype: DType, expected: String, actual: u64 },
    #[error("tensor {name:?}: element count or byte size of shape {shape:?} overflows 64 bits")]
    Overflow { name: String, shape: Vec<u64> },
}

impl FormatError {
    fn truncated(what: impl Into<String>, needed: u64, file_len: u64) -> Self {
        FormatError::Truncated { what: what.into(), needed, file_len }
    }
}

/// A `FormatError` with the file it is about: what users and the CLI see.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("{file}: {error}")]
pub struct BadModelFile {
    pub file: String,
    pub error: FormatError,
}

/// Parses the header of a safetensors or GGUF file from its first bytes.
///
/// `prefix` is the start of the file (any length), `file_len` its full length, `file_name` is used
/// only to refuse pickle checkpoints by extension. Returns `NeedMoreBytes` when `prefix` is too
/// short to finish the header but the file is long enough.
pub fn read_table(prefix: &[u8], file_len: u64, file_name: &str) -> Result<TensorTable, FormatError> {
    if (prefix.len() as u64) > file_len {
        return Err(FormatError::truncated("the bytes given", prefix.len() as u64, file_len));
    }
    match sniff::sniff(prefix, file_len, file_name)? {
        sniff::Kind::Gguf => gguf::read_table(prefix, file_len),
        sniff::Kind::Safetensors => safetensors::read_table(prefix, file_len),
    }
}

/// How long the prefix should grow when `read_table` asks for `needed` bytes and `current` are
/// held: at least double (a GGUF header asks field by field; growing by what it asks would mean
/// one read per field), within the file and `MAX_HEADER_BYTES`.
pub fn grow_prefix(current: u64, needed: u64, file_len: u64) -> Result<u64, FormatError> {
    if needed > MAX_HEADER_BYTES {
        return Err(FormatError::HeaderTooLarge { len: needed, cap: MAX_HEADER_BYTES });
    }
    if needed <= current {
        return Err(FormatError::truncated("the header", needed, file_len));
    }
    Ok(needed.max(current.saturating_mul(2)).min(file_len).min(MAX_HEADER_BYTES))
}

/// Reads a header from any `Read + Seek` (a file natively, a buffer in tests), growing the
/// prefix as `read_table` asks, up to `MAX_HEADER_BYTES`.
pub fn read_table_from<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    file_name: &str,
) -> Result<TensorTable, BadModelFile> {
    let bad = |error| BadModelFile { file: file_name.to_owned(), error };
    let io = |e: std::io::Error| bad(FormatError::truncated(format!("reading ({e})"), 0, 0));
    let file_len = reader.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    let mut want = file_len.min(1 << 20);
    loop {
        reader.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
        let mut prefix = Vec::new();
        std::io::Read::take(&mut *reader, want).read_to_end(&mut prefix).map_err(io)?;
        match read_table(&prefix, file_len, file_name) {
            Err(FormatError::NeedMoreBytes { needed }) => want = grow_prefix(want, needed, file_len).map_err(bad)?,
            other => return other.map_err(bad),
        }
    }
}

