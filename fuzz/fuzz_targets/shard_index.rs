//! Raw bytes as a `model.safetensors.index.json`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hugrt::formats::index::ShardIndex::parse(text);
    }
});
