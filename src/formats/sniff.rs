//! Telling a model file from what a server may send in its place: pickle checkpoints (refused:
//! loading them runs code), Git LFS pointers, HTML error pages, JSON bodies, other text.

use super::FormatError;
use super::safetensors::MAX_SAFETENSORS_HEADER;

pub(crate) enum Kind {
    Gguf,
    Safetensors,
}

pub(crate) const GGUF_MAGIC: &[u8; 4] = b"GGUF";

const PICKLE_EXTENSIONS: &[&str] = &[".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"];

fn snippet(prefix: &[u8]) -> String {
    let text = String::from_utf8_lossy(&prefix[..prefix.len().min(60)]);
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect::<String>().trim().to_owned()
}

pub(crate) fn sniff(prefix: &[u8], file_len: u64, file_name: &str) -> Result<Kind, FormatError> {
    if file_len == 0 {
        return Err(FormatError::Empty);
    }
    if prefix.len() < 8 && (prefix.len() as u64) < file_len {
        return Err(FormatError::NeedMoreBytes { needed: file_len.min(8) });
    }
    if prefix.starts_with(GGUF_MAGIC) {
        return Ok(Kind::Gguf);
    }
    if prefix.starts_with(b"PK\x03\x04") {
        return Err(FormatError::UnsafeFormat { what: "a zip archive (PyTorch checkpoint)" });
    }
    // Pickle protocol 2–5 starts with the PROTO opcode.
    if prefix.len() >= 2 && prefix[0] == 0x80 && (2..=5).contains(&prefix[1]) {
        return Err(FormatError::UnsafeFormat { what: "a pickle file" });
    }
    if prefix.starts_with(b"version https://git-lfs") {
        return Err(FormatError::LfsPointer);
    }
    let text = prefix.iter().take(8).all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace());
    if text {
        let trimmed = prefix.trim_ascii_start();
        return Err(match trimmed.first() {
            Some(b'<') => FormatError::HtmlPage,
            Some(b'{' | b'[') => FormatError::JsonDocument { snippet: snippet(trimmed) },
            _ => FormatError::Text { snippet: snippet(prefix) },
        });
    }
    let lower = file_name.to_ascii_lowercase();
    if PICKLE_EXTENSIONS.iter().any(|ext| lower.ends_with(ext)) {
        return Err(FormatError::UnsafeFormat { what: "a PyTorch checkpoint (.bin/.pt/.pth/.ckpt)" });
    }
    // A plausible safetensors header length (within the cap and the file) or a '{' after it is
    // enough to let the safetensors reader give the precise error.
    let header_len = prefix.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    let plausible = header_len.is_some_and(|n| n <= MAX_SAFETENSORS_HEADER && n.saturating_add(8) <= file_len)
        || prefix.get(8) == Some(&b'{');
    if plausible || lower.ends_with(".safetensors") {
        return Ok(Kind::Safetensors);
    }
    let first_bytes = prefix.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ");
    Err(FormatError::UnknownFormat { first_bytes })
}
