//! The format readers against crafted and hostile files (shared/CHECKLIST.md A–C), run natively
//! and compiled to wasm32 in headless Chromium: same bytes, same typed error, never a panic.

use hugrt::formats::gguf::{self, GgufArray, GgufType};
use hugrt::formats::index::{IndexError, ShardIndex};
use hugrt::formats::{DType, FormatError, GgufValue, Metadata, read_table};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A test that runs natively and in the browser.
macro_rules! both {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    )*};
}

fn parse(bytes: &[u8]) -> Result<hugrt::formats::TensorTable, FormatError> {
    read_table(bytes, bytes.len() as u64, "model")
}

fn err(bytes: &[u8]) -> FormatError {
    parse(bytes).expect_err("should be refused")
}

// ---------- safetensors ----------

/// A safetensors file from a header string and a data section.
fn st(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn st_len(len: u64, rest: &[u8]) -> Vec<u8> {
    let mut out = len.to_le_bytes().to_vec();
    out.extend_from_slice(rest);
    out
}

const GOOD_HEADER: &str = r#"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[3],"data_offsets":[8,14]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;

both! {
fn safetensors_valid_file_gives_absolute_ranges() {
    let bytes = st(GOOD_HEADER, &[0u8; 14]);
    let table = parse(&bytes).unwrap();
    let start = 8 + GOOD_HEADER.len() as u64;
    assert_eq!(table.data_start, start);
    let b = table.get("b").unwrap();
    assert_eq!((b.dtype, b.shape.clone(), b.range.clone()), (DType::F16, vec![3], start + 8..start + 14));
    assert_eq!(table.get("a").unwrap().range, start..start + 8);
    let Metadata::Safetensors { metadata } = &table.metadata else { panic!("format") };
    assert_eq!(metadata.get("format").map(String::as_str), Some("pt"));
}

fn safetensors_header_length_cases() {
    assert_eq!(err(&[1, 2, 3]), FormatError::UnknownFormat { first_bytes: "01 02 03".into() });
    assert_eq!(read_table(&[1, 2, 3], 3, "x.safetensors").unwrap_err(), FormatError::HeaderTooSmall);
    for len in [u64::MAX, 1 << 40, 100_000_001] {
        assert!(matches!(read_table(&st_len(len, b"{}"), 10, "m.safetensors").unwrap_err(), FormatError::HeaderTooLarge { .. }), "{len}");
    }
    assert_eq!(err(&st_len(1000, b"{}")), FormatError::InvalidHeaderLength { len: 1000, file_len: 10 });
}

fn safetensors_header_content_cases() {
    assert_eq!(err(&st(" {}", b"")), FormatError::HeaderNotObject { found: b' ' });
    assert!(matches!(err(&st("[1]", b"")), FormatError::HeaderNotObject { found: b'[' }));
    assert_eq!(err(&st_len(2, &[b'{', 0xff])), FormatError::HeaderNotUtf8);
    assert!(matches!(err(&st("{\"a\":", b"")), FormatError::HeaderNotJson { .. }));
    assert!(matches!(err(&st("{}\0\0", b"")), FormatError::HeaderNotJson { .. }), "NUL padding");
    assert!(matches!(err(&st(r#"{"__metadata__":{"n":1}}"#, b"")), FormatError::InvalidHeader { .. }), "non-string metadata");
    assert!(matches!(err(&st(r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, b"1234")), FormatError::InvalidHeader { .. }));
    // Trailing spaces are the format's own padding.
    assert!(parse(&st("{}   ", b"")).is_ok());
}

fn safetensors_duplicate_and_empty_names() {
    let h = r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#;
    assert_eq!(err(&st(h, b"xy")), FormatError::DuplicateTensor { name: "a".into() });
    let h = r#"{"":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#;
    assert!(matches!(err(&st(h, b"x")), FormatError::BadTensorName { .. }));
}

fn safetensors_offset_cases() {
    let t = |a: (u64, u64), b: (u64, u64)| {
        format!(r#"{{"a":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}},"b":{{"dtype":"U8","shape":[{}],"data_offsets":[{},{}]}}}}"#,
            a.1 - a.0.min(a.1), a.0, a.1, b.1 - b.0.min(b.1), b.0, b.1)
    };
    let gap = st(&t((0, 2), (3, 5)), &[0; 5]);
    assert!(matches!(err(&gap), FormatError::InvalidOffset { problem: "leave a gap before them", .. }));
    let overlap = st(&t((0, 3), (2, 4)), &[0; 4]);
    assert!(matches!(err(&overlap), FormatError::InvalidOffset { problem: "overlap the previous tensor", .. }));
    let alias = st(&t((0, 2), (0, 2)), &[0; 2]);
    assert!(matches!(err(&alias), FormatError::InvalidOffset { .. }), "two tensors aliasing one range");
    let backwards = st(r#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[2,1]}}"#, &[0; 2]);
    assert!(matches!(err(&backwards), FormatError::InvalidOffset { problem: "end before begin", .. }));
    let ok = st(&t((0, 2), (2, 5)), &[0; 5]);
    assert!(parse(&ok).is_ok());
    // Polyglot trailing bytes, and two bytes missing.
    assert_eq!(err(&st(&t((0, 2), (2, 5)), &[0; 7])), FormatError::DataSizeMismatch { data_end: 5, available: 7 });
    assert_eq!(err(&st(&t((0, 2), (2, 5)), &[0; 3])), FormatError::DataSizeMismatch { data_end: 5, available: 3 });
}

fn safetensors_shape_cases() {
    let h = r#"{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#;
    assert!(matches!(err(&st(h, &[0; 12])), FormatError::ShapeMismatch { actual: 12, .. }));
    let h = r#"{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#;
    assert!(matches!(err(&st(h, &[0; 4])), FormatError::Overflow { .. }), "element count overflows u64");
    // 2^31 x 2 F32 elements: 2^34 bytes. Overflows 32 bits but not 64: a shape mismatch on
    // both targets, never an overflow on wasm32 only.
    let h = r#"{"a":{"dtype":"F32","shape":[2147483648,2],"data_offsets":[0,4]}}"#;
    assert!(matches!(err(&st(h, &[0; 4])), FormatError::ShapeMismatch { .. }));
    let h = r#"{"a":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}}"#;
    assert!(matches!(err(&st(h, &[0; 1])), FormatError::UnknownDType { .. }));
}

fn safetensors_offsets_past_4_gib_parse_on_every_target() {
    // A header describing a 6 GB tensor; the file length is given, the data need not exist.
    let elems = 1_500_000_000u64;
    let h = format!(r#"{{"big":{{"dtype":"F32","shape":[{elems}],"data_offsets":[0,{}]}}}}"#, elems * 4);
    let bytes = st(&h, b"");
    let file_len = bytes.len() as u64 + elems * 4;
    let table = read_table(&bytes, file_len, "model.safetensors").unwrap();
    assert_eq!(table.tensors[0].range.end, file_len);
    assert!(table.tensors[0].range.end > u64::from(u32::MAX));
}

// ---------- not model files ----------

fn refuses_what_is_not_a_model_file() {
    assert_eq!(err(b""), FormatError::Empty);
    assert!(matches!(err(b"PK\x03\x04\x14\x00\x00\x00\x08\x00"), FormatError::UnsafeFormat { .. }));
    assert!(matches!(err(b"\x80\x02}q\x00(X\x07\x00\x00\x00"), FormatError::UnsafeFormat { .. }));
    assert!(matches!(read_table(&[0xab; 16], 16, "pytorch_model.bin").unwrap_err(), FormatError::UnsafeFormat { .. }));
    let lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 90868376\n";
    assert_eq!(err(lfs), FormatError::LfsPointer);
    assert_eq!(err(b"<!DOCTYPE html><html><body>Not found</body></html>"), FormatError::HtmlPage);
    assert_eq!(err(b"\n  <html>oops</html>"), FormatError::HtmlPage);
    assert!(matches!(err(br#"{"error":"Repository not found"}"#), FormatError::JsonDocument { .. }));
    assert!(matches!(err(b"Entry not found"), FormatError::Text { .. }));
}

// ---------- GGUF ----------

fn gguf_valid_file_round_trips() {
    let meta = vec![
        ("general.architecture".to_owned(), GgufValue::String("llama".into())),
        ("llama.block_count".to_owned(), GgufValue::U32(2)),
        ("tokenizer.ggml.tokens".to_owned(), GgufValue::Array(GgufArray {
            elem_type: GgufType::String,
            values: vec![GgufValue::String("<s>".into()), GgufValue::String("héllo 👋".into())],
        })),
    ];
    let tensors = vec![
        ("w".to_owned(), DType::Q4_0, vec![3, 64], vec![7u8; 3 * 2 * 18]),
        ("b".to_owned(), DType::F32, vec![5], vec![1u8; 20]),
    ];
    let bytes = gguf::write(&meta, &tensors, 32);
    let table = parse(&bytes).unwrap();
    let Metadata::Gguf { version, alignment, metadata } = &table.metadata else { panic!("format") };
    assert_eq!((*version, *alignment), (3, 32));
    assert_eq!(metadata.get_str("general.architecture"), Some("llama"));
    assert_eq!(metadata.get_u64("llama.block_count"), Some(2));
    assert_eq!(metadata.get_str_array("tokenizer.ggml.tokens").unwrap(), vec!["<s>", "héllo 👋"]);
    let w = table.get("w").unwrap();
    assert_eq!((w.dtype, w.shape.clone()), (DType::Q4_0, vec![3, 64]));
    assert_eq!(&bytes[w.range.start as usize..w.range.end as usize], &tensors[0].3[..]);
    let b = table.get("b").unwrap();
    assert_eq!(b.range.start % 32, 0);
    assert_eq!(&bytes[b.range.start as usize..b.range.end as usize], &tensors[1].3[..]);
}

fn gguf_header_in_pieces_asks_for_more_bytes() {
    let meta = vec![("k".to_owned(), GgufValue::String("x".repeat(5000)))];
    let bytes = gguf::write(&meta, &[("t".into(), DType::F32, vec![1], vec![0; 4])], 32);
    let len = bytes.len() as u64;
    let FormatError::NeedMoreBytes { needed } = read_table(&bytes[..100], len, "m.gguf").unwrap_err() else { panic!() };
    assert!(needed > 5000 && needed <= len);
    assert!(read_table(&bytes[..needed as usize + 64], len, "m.gguf").is_ok() || needed + 64 > len);
    assert!(read_table(&bytes, len, "m.gguf").is_ok());
    // The same prefix with a file that really is that short: truncated, not "need more".
    assert!(matches!(read_table(&bytes[..100], 100, "m.gguf").unwrap_err(), FormatError::LengthPastEnd { len: 5000, .. }));
}

fn gguf_magic_and_version() {
    let mut bytes = gguf::write(&[], &[], 32);
    bytes[4..8].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(err(&bytes), FormatError::UnsupportedVersion { version: 0 });
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert_eq!(err(&bytes), FormatError::UnsupportedVersion { version: 1 });
    bytes[4..8].copy_from_slice(&4u32.to_le_bytes());
    assert_eq!(err(&bytes), FormatError::UnsupportedVersion { version: 4 });
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(err(&bytes), FormatError::BigEndian { .. }));
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert!(parse(&bytes).is_ok(), "version 2 has the v3 layout");
}

}

/// A GGUF header by hand: magic, version 3, counts, then `rest`.
fn gguf_raw(n_tensors: u64, n_kv: u64, rest: &[u8]) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b.extend_from_slice(rest);
    b
}

fn kv(key: &[u8], ty: u32, value: &[u8]) -> Vec<u8> {
    let mut b = (key.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(key);
    b.extend(ty.to_le_bytes());
    b.extend_from_slice(value);
    b
}


both! {
fn gguf_absurd_counts_fail_before_allocating() {
    for (n_tensors, n_kv) in [(u64::MAX, 0), (0, u64::MAX), (1 << 40, 0), (0, 1 << 30)] {
        assert!(matches!(err(&gguf_raw(n_tensors, n_kv, &[0; 64])), FormatError::TooMany { .. }), "{n_tensors} {n_kv}");
    }
    // An array claiming 2^60 u32 elements.
    let mut v = 4u32.to_le_bytes().to_vec();
    v.extend((1u64 << 60).to_le_bytes());
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"a", 9, &v))), FormatError::TooMany { what: "array element", .. }));
}

fn gguf_string_and_key_lengths() {
    let mut v = u64::MAX.to_le_bytes().to_vec();
    v.extend(b"abc");
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"s", 8, &v))), FormatError::LengthPastEnd { .. }));
    let mut huge_key = u64::MAX.to_le_bytes().to_vec();
    huge_key.extend([0; 16]);
    assert!(matches!(err(&gguf_raw(0, 1, &huge_key)), FormatError::LengthPastEnd { .. }));
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"", 4, &[0; 4]))), FormatError::BadKey { problem: "empty", .. }));
    assert!(matches!(err(&gguf_raw(0, 1, &kv("ké".as_bytes(), 4, &[0; 4]))), FormatError::BadKey { .. }));
    let long = vec![b'k'; 70_000];
    assert!(matches!(err(&gguf_raw(0, 1, &kv(&long, 4, &[0; 4]))), FormatError::LengthPastEnd { .. }));
    let mut bad_utf8 = 2u64.to_le_bytes().to_vec();
    bad_utf8.extend([0xc3, 0x28]);
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"s", 8, &bad_utf8))), FormatError::BadValue { .. }));
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"b", 7, &[2]))), FormatError::BadValue { .. }), "bool 2");
}

fn gguf_types_and_nesting() {
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"k", 13, &[0; 8]))), FormatError::UnknownValueType { type_id: 13, .. }));
    // Arrays nested 100000 deep: refused at the depth limit, no stack overflow.
    let mut nested = Vec::new();
    for _ in 0..100_000 {
        nested.extend(9u32.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"k", 9, &nested))), FormatError::BadValue { .. }));
    // One level of nesting is fine.
    let mut one = 9u32.to_le_bytes().to_vec();
    one.extend(1u64.to_le_bytes());
    one.extend(4u32.to_le_bytes());
    one.extend(1u64.to_le_bytes());
    one.extend(7u32.to_le_bytes());
    assert!(parse(&gguf_raw(0, 1, &kv(b"k", 9, &one))).is_ok());
}

fn gguf_duplicate_keys_and_alignment() {
    let mut rest = kv(b"a", 4, &[1, 0, 0, 0]);
    rest.extend(kv(b"a", 4, &[2, 0, 0, 0]));
    assert_eq!(err(&gguf_raw(0, 2, &rest)), FormatError::DuplicateKey { key: "a".into() });
    for a in [0u32, 13] {
        assert!(matches!(err(&gguf_raw(0, 1, &kv(b"general.alignment", 4, &a.to_le_bytes()))), FormatError::BadAlignment { .. }), "{a}");
    }
    assert!(matches!(err(&gguf_raw(0, 1, &kv(b"general.alignment", 5, &32i32.to_le_bytes()))), FormatError::BadAlignment { .. }), "INT32");
    assert!(parse(&gguf_raw(0, 1, &kv(b"general.alignment", 4, &64u32.to_le_bytes()))).is_ok());
}

}

/// A file with one tensor info written by hand, then padding and `data` bytes of tensor data.
fn gguf_tensor(name: &[u8], dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut info = (name.len() as u64).to_le_bytes().to_vec();
    info.extend_from_slice(name);
    info.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        info.extend(d.to_le_bytes());
    }
    info.extend(ty.to_le_bytes());
    info.extend(offset.to_le_bytes());
    let mut b = gguf_raw(1, 0, &info);
    b.resize(b.len().div_ceil(32) * 32 + data, 0);
    b
}


both! {
fn gguf_tensor_info_cases() {
    assert!(parse(&gguf_tensor(b"t", &[32, 2], 2, 0, 36)).is_ok());
    for n in [0usize, 5, 9] {
        let dims = vec![1u64; n];
        assert!(matches!(err(&gguf_tensor(b"t", &dims, 0, 0, 64)), FormatError::BadTensor { .. }), "{n} dims");
    }
    // n_dims = u32::MAX
    let mut b = gguf_tensor(b"t", &[1], 0, 0, 64);
    let at = 24 + 8 + 1;
    b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(err(&b), FormatError::BadTensor { .. }));
    assert!(matches!(err(&gguf_tensor(b"t", &[0], 0, 0, 64)), FormatError::BadTensor { .. }), "zero dim");
    assert!(matches!(err(&gguf_tensor(b"t", &[1 << 63], 0, 0, 64)), FormatError::BadTensor { .. }), "negative as i64");
    assert!(matches!(err(&gguf_tensor(b"t", &[i64::MAX as u64, 2], 0, 0, 64)), FormatError::Overflow { .. }));
    assert!(matches!(err(&gguf_tensor(b"t", &[33], 2, 0, 64)), FormatError::BadTensor { .. }), "not whole blocks");
    assert!(matches!(err(&gguf_tensor(b"t", &[32], 200, 0, 64)), FormatError::UnknownType { type_id: 200, .. }));
    assert!(matches!(err(&gguf_tensor(b"t", &[256], 16, 0, 66)), FormatError::UnsupportedType { type_name: "IQ2_XXS", .. }));
    assert!(matches!(err(&gguf_tensor(b"t", &[4], 0, 8, 64)), FormatError::BadTensor { .. }), "offset not the running offset");
    assert!(matches!(err(&gguf_tensor(b"t", &[4], 0, 0, 8)), FormatError::Truncated { .. }), "data past the end");
    assert!(matches!(err(&gguf_tensor(b"", &[4], 0, 0, 16)), FormatError::BadTensorName { .. }));
    assert!(matches!(err(&gguf_tensor(&[b'n'; 64], &[4], 0, 0, 16)), FormatError::BadTensorName { .. }));
    assert!(parse(&gguf_tensor(&[b'n'; 63], &[4], 0, 0, 16)).is_ok());
}

fn gguf_duplicate_tensor_names_and_data_offset_past_end() {
    let t = |name: &str| (name.to_owned(), DType::F32, vec![4], vec![0u8; 16]);
    let bytes = gguf::write(&[], &[t("a"), t("a")], 32);
    assert_eq!(err(&bytes), FormatError::DuplicateTensor { name: "a".into() });
    // Tensor infos that end exactly at the end of the file: the data section starts past it.
    let b = gguf_tensor(b"t", &[4], 0, 0, 0);
    let cut = &b[..b.len() - 1 - (b.len() % 32)];
    assert!(matches!(err(cut), FormatError::Truncated { .. }));
}

// ---------- sharded index ----------

fn shard_index_cases() {
    let idx = ShardIndex::parse(r#"{"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors","b":"model-00002-of-00002.safetensors"}}"#).unwrap();
    assert_eq!(idx.shards.len(), 2);
    for bad in ["../x.safetensors", "/abs.safetensors", "https://evil/x.safetensors", "a/../../b.safetensors", "x.safetensors?y", "x.bin", "a\\b.safetensors", "%2e%2e/x.safetensors"] {
        let json = format!(r#"{{"weight_map":{{"a":"{}"}}}}"#, bad.replace('\\', "\\\\"));
        assert!(matches!(ShardIndex::parse(&json), Err(IndexError::BadShardName(_))), "{bad}");
    }
    let dup = r#"{"weight_map":{"a":"x.safetensors","a":"y.safetensors"}}"#;
    assert_eq!(ShardIndex::parse(dup), Err(IndexError::DuplicateTensor("a".into())));

    let shard = |names: &[&str]| {
        let header = names.iter().enumerate().map(|(i, n)| format!(r#""{n}":{{"dtype":"U8","shape":[1],"data_offsets":[{i},{}]}}"#, i + 1)).collect::<Vec<_>>().join(",");
        parse(&st(&format!("{{{header}}}"), &vec![0; names.len()])).unwrap()
    };
    let idx = ShardIndex::parse(r#"{"weight_map":{"a":"1.safetensors","b":"2.safetensors"}}"#).unwrap();
    let tables = |x: &[&str], y: &[&str]| [("1.safetensors".to_owned(), shard(x)), ("2.safetensors".to_owned(), shard(y))].into_iter().collect();
    assert_eq!(idx.check(&tables(&["a"], &["b"])), Ok(()));
    assert!(matches!(idx.check(&tables(&["a"], &[])), Err(IndexError::MissingTensor { .. })));
    assert!(matches!(idx.check(&tables(&["a", "b"], &["b"])), Err(IndexError::UnexpectedTensor { .. })), "a tensor in two shards");
    let one: std::collections::BTreeMap<_, _> = [("1.safetensors".to_owned(), shard(&["a"]))].into_iter().collect();
    assert_eq!(idx.check(&one), Err(IndexError::MissingShard("2.safetensors".into())));
}
}

// ---------- quantized blocks against gguf-py ----------

/// tests/fixtures/quant: one tensor per ggml type (and real SmolLM2 blocks) and gguf-py's
/// dequantization of each (scripts/fixtures/make_quant_fixtures.py).
const QUANT: &[u8] = include_bytes!("fixtures/quant/quant.gguf");
const EXPECTED: &[u8] = include_bytes!("fixtures/quant/expected.gguf");

both! {
fn dequantization_is_bit_identical_to_gguf_py() {
    let quant = parse(QUANT).expect("fixture reads");
    let expected = parse(EXPECTED).expect("fixture reads");
    let mut seen = std::collections::HashSet::new();
    for t in &quant.tensors {
        let e = expected.get(&t.name).unwrap_or_else(|| panic!("{} has no expected values", t.name));
        assert_eq!(e.dtype, DType::F32);
        assert_eq!(e.shape, t.shape, "{}", t.name);
        let got = hugrt::formats::quant::dequantize(t.dtype, &QUANT[t.range.start as usize..t.range.end as usize]).expect("dequantizes");
        let want: Vec<f32> = EXPECTED[e.range.start as usize..e.range.end as usize]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(got.len(), want.len(), "{}", t.name);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{} value {i}: {g} vs gguf-py {w}", t.name);
        }
        seen.insert(t.dtype);
    }
    for dtype in [DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K] {
        assert!(seen.contains(&dtype), "no fixture for {dtype}");
    }
    assert!(quant.get("real.Q4_1").is_some() && quant.get("real.Q8_0").is_some(), "real SmolLM2 blocks");
}

fn safetensors_written_by_the_python_package_reads_identically() {
    // The same expected values written by `safetensors.numpy.save_file`: same names, shapes, bytes.
    const ST: &[u8] = include_bytes!("fixtures/quant/expected.safetensors");
    let st = read_table(ST, ST.len() as u64, "expected.safetensors").expect("reads");
    let gg = parse(EXPECTED).expect("reads");
    assert_eq!(st.tensors.len(), gg.tensors.len());
    for t in &gg.tensors {
        let s = st.get(&t.name).unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!((s.dtype, &s.shape), (t.dtype, &t.shape), "{}", t.name);
        assert_eq!(&ST[s.range.start as usize..s.range.end as usize], &EXPECTED[t.range.start as usize..t.range.end as usize], "{}", t.name);
    }
}
}

// ---------- tokenizers against the HF reference ----------

/// Checks `tok` against `expected.json` rows ({text, ids, ids_no_special}) of a fixture.
fn check_ids(name: &str, tok: &hugrt::tokenizer::Tokenizer, expected_json: &str) {
    let rows: serde_json::Value = serde_json::from_str(expected_json).expect("fixture JSON");
    let rows = rows.as_array().expect("rows");
    assert!(rows.len() >= 20, "{name}: the text set");
    let ids = |v: &serde_json::Value| -> Vec<u32> { v.as_array().expect("ids").iter().map(|x| x.as_u64().expect("id") as u32).collect() };
    for row in rows {
        let text = row["text"].as_str().expect("text");
        assert_eq!(tok.encode(text, true).expect("encodes"), ids(&row["ids"]), "{name}, with special tokens: {text:?}");
        assert_eq!(tok.encode(text, false).expect("encodes"), ids(&row["ids_no_special"]), "{name}, without: {text:?}");
        if let Some(decoded) = row["decoded"].as_str() {
            assert_eq!(tok.decode(&ids(&row["ids"]), false).expect("decodes"), decoded, "{name}: decode {text:?}");
        }
    }
}

both! {
fn minilm_tokenizer_json_matches_hf_tokenizers() {
    let tok = hugrt::tokenizer::Tokenizer::from_json(include_bytes!("fixtures/tokenizer/minilm/tokenizer.json")).expect("loads");
    check_ids("MiniLM", &tok, include_str!("fixtures/tokenizer/minilm/expected.json"));
    // The file pads to 128: we do not.
    assert_eq!(tok.encode("hello", true).unwrap().len(), 3);
}

fn smollm2_gguf_vocabulary_matches_transformers_conversion() {
    const GGUF: &[u8] = include_bytes!("fixtures/tokenizer/smollm2/tokenizer.gguf");
    let table = parse(GGUF).expect("reads");
    let Metadata::Gguf { metadata, .. } = &table.metadata else { panic!("format") };
    let tok = hugrt::tokenizer::Tokenizer::from_gguf(metadata).expect("builds");
    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!((tok.bos_id, tok.eos_id), (Some(1), Some(2)));
    assert!(tok.chat_template.as_deref().is_some_and(|t| t.contains("<|im_start|>")));
    check_ids("SmolLM2", &tok, include_str!("fixtures/tokenizer/smollm2/expected.json"));
    // Whitespace before numerals, where llama.cpp's "smollm" pre-tokenizer (digits split first)
    // and transformers' GGUF conversion (plain GPT-2 regex) disagree: we follow llama.cpp.
    check_ids("SmolLM2 digits", &tok, include_str!("fixtures/tokenizer/smollm2/expected_pretok.json"));
}

fn sentencepiece_gguf_vocabulary_matches_sentencepiece() {
    // A llama-style vocabulary (scores, byte fallback, no merges) trained with sentencepiece; the
    // reference ids are sentencepiece's own.
    const GGUF: &[u8] = include_bytes!("fixtures/tokenizer/spm/tokenizer.gguf");
    let Metadata::Gguf { metadata, .. } = parse(GGUF).expect("reads").metadata else { panic!("format") };
    let tok = hugrt::tokenizer::Tokenizer::from_gguf(&metadata).expect("builds");
    check_ids("SentencePiece", &tok, include_str!("fixtures/tokenizer/spm/expected.json"));
}

fn gguf_vocabulary_errors_are_typed() {
    use hugrt::tokenizer::{Tokenizer, TokenizerError};
    let vocab = |extra: Vec<(String, GgufValue)>| {
        let strings = |v: &[&str]| GgufValue::Array(GgufArray { elem_type: GgufType::String, values: v.iter().map(|s| GgufValue::String((*s).into())).collect() });
        let mut meta = vec![
            ("tokenizer.ggml.model".to_owned(), GgufValue::String("llama".into())),
            ("tokenizer.ggml.tokens".to_owned(), strings(&["<unk>", "<s>", "</s>", "<0x0A>", "▁a", "▁", "a"])),
        ];
        meta.extend(extra);
        let bytes = gguf::write(&meta, &[], 32);
        let Metadata::Gguf { metadata, .. } = parse(&bytes).unwrap().metadata else { panic!() };
        Tokenizer::from_gguf(&metadata)
    };
    let f32s = |v: &[f32]| GgufValue::Array(GgufArray { elem_type: GgufType::F32, values: v.iter().map(|&x| GgufValue::F32(x)).collect() });
    let i32s = |v: &[i32]| GgufValue::Array(GgufArray { elem_type: GgufType::I32, values: v.iter().map(|&x| GgufValue::I32(x)).collect() });
    assert!(matches!(vocab(vec![]), Err(TokenizerError::BadGguf { key: "tokenizer.ggml.scores", .. })), "SPM without scores");
    assert!(matches!(vocab(vec![("tokenizer.ggml.scores".into(), f32s(&[0.0; 3]))]), Err(TokenizerError::BadGguf { .. })), "length mismatch");
    let scores = || ("tokenizer.ggml.scores".to_owned(), f32s(&[0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0]));
    let types_bad_byte = i32s(&[2, 3, 3, 6, 6, 1, 1]);
    let err = vocab(vec![scores(), ("tokenizer.ggml.token_type".into(), types_bad_byte)]);
    assert!(matches!(err, Err(TokenizerError::BadGguf { .. })), "byte token '▁a' is not <0xHH>");
    assert!(matches!(vocab(vec![("tokenizer.ggml.bos_token_id".into(), GgufValue::U32(99)), scores()]), Err(TokenizerError::BadGguf { .. })), "bos id out of range");
    let ok = vocab(vec![
        scores(),
        ("tokenizer.ggml.token_type".into(), i32s(&[2, 3, 3, 6, 1, 1, 1])),
        ("tokenizer.ggml.bos_token_id".into(), GgufValue::U32(1)),
        ("tokenizer.ggml.unknown_token_id".into(), GgufValue::U32(0)),
    ])
    .expect("valid SPM vocabulary");
    assert_eq!(ok.encode("a\n", true).unwrap(), vec![1, 4, 3], "BOS, ▁a, byte fallback for the newline");
    let mut unsupported = vec![("tokenizer.ggml.model".to_owned(), GgufValue::String("bert".into()))];
    unsupported.push(("tokenizer.ggml.tokens".into(), GgufValue::Array(GgufArray { elem_type: GgufType::String, values: vec![GgufValue::String("a".into())] })));
    let Metadata::Gguf { metadata, .. } = parse(&gguf::write(&unsupported, &[], 32)).unwrap().metadata else { panic!() };
    assert!(matches!(Tokenizer::from_gguf(&metadata), Err(TokenizerError::Unsupported { .. })));
}
}
