//! Raw bytes after a GGUF magic and version, whole and as a prefix; a parsed table is then
//! dequantized tensor by tensor.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = b"GGUF\x03\x00\x00\x00".to_vec();
    file.extend_from_slice(data);
    if let Ok(table) = hugrt::formats::read_table(&file, file.len() as u64, "model.gguf") {
        for t in &table.tensors {
            if let Some(bytes) = file.get(t.range.start as usize..t.range.end as usize) {
                if bytes.len() <= 1 << 20 {
                    let _ = hugrt::formats::quant::dequantize(t.dtype, bytes);
                }
            }
        }
    }
    let half = file.len() / 2;
    let _ = hugrt::formats::read_table(&file[..half], file.len() as u64, "model.gguf");
});
