//! Raw bytes as a safetensors file, whole and as a prefix of a longer claimed file.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hugrt::formats::read_table(data, data.len() as u64, "model.safetensors");
    if let Some((&extra, rest)) = data.split_first() {
        let claimed = rest.len() as u64 + (u64::from(extra) << 20);
        let _ = hugrt::formats::read_table(rest, claimed, "model.safetensors");
    }
});
