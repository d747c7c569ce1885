//! Property tests of the format readers (native only: proptest drives them):
//! write → read round trips for both formats, the reader against the `safetensors` crate on
//! mutated files (same accept/reject), and "never panics" on arbitrary bytes.
#![cfg(not(target_arch = "wasm32"))]

use std::collections::HashMap;

use hugrt::formats::gguf::{self, GgufArray, GgufType};
use hugrt::formats::{DType, FormatError, GgufValue, Metadata, read_table};
use proptest::prelude::*;

const PLAIN: &[DType] = &[DType::F32, DType::F16, DType::BF16, DType::I32, DType::U8, DType::I64];
const GGUF_TYPES: &[DType] =
    &[DType::F32, DType::F16, DType::BF16, DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K];

fn st_name(d: DType) -> safetensors::Dtype {
    match d {
        DType::F32 => safetensors::Dtype::F32,
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        DType::I32 => safetensors::Dtype::I32,
        DType::U8 => safetensors::Dtype::U8,
        _ => safetensors::Dtype::I64,
    }
}

/// (name, dtype, shape, bytes) with bytes of the right length.
fn tensor(types: &'static [DType]) -> impl Strategy<Value = (DType, Vec<u64>, Vec<u8>)> {
    (prop::sample::select(types), prop::collection::vec(1u64..5, 1..4), any::<u8>()).prop_map(|(dtype, mut shape, fill)| {
        if let Some(last) = shape.last_mut() {
            *last *= dtype.block_elems();
        }
        let elems: u64 = shape.iter().product();
        let len = dtype.bytes_for(elems).unwrap_or(0) as usize;
        (dtype, shape, (0..len).map(|i| fill.wrapping_add(i as u8)).collect())
    })
}

fn safetensors_bytes(tensors: &[(String, DType, Vec<u64>, Vec<u8>)], meta: &HashMap<String, String>) -> Vec<u8> {
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| {
            let shape = s.iter().map(|&x| x as usize).collect();
            (n.clone(), safetensors::tensor::TensorView::new(st_name(*d), shape, b).expect("consistent view"))
        })
        .collect();
    // safetensors 0.8.0 writes invalid JSON (`{},"__metadata__":{}}`) for no tensors and an
    // empty metadata map, so an empty map is passed as None.
    let meta = (!meta.is_empty()).then(|| meta.clone());
    safetensors::serialize(views, meta).expect("serialize")
}

fn gguf_value() -> impl Strategy<Value = GgufValue> {
    let scalar = prop_oneof![
        any::<u8>().prop_map(GgufValue::U8),
        any::<i32>().prop_map(GgufValue::I32),
        any::<u64>().prop_map(GgufValue::U64),
        any::<f32>().prop_filter("NaN != NaN", |f| !f.is_nan()).prop_map(GgufValue::F32),
        any::<bool>().prop_map(GgufValue::Bool),
        "\\PC{0,12}".prop_map(GgufValue::String),
    ];
    prop_oneof![
        3 => scalar,
        1 => prop::collection::vec("\\PC{0,6}", 0..6).prop_map(|v| GgufValue::Array(GgufArray {
            elem_type: GgufType::String,
            values: v.into_iter().map(GgufValue::String).collect(),
        })),
        1 => prop::collection::vec(any::<i16>(), 0..6).prop_map(|v| GgufValue::Array(GgufArray {
            elem_type: GgufType::I16,
            values: v.into_iter().map(GgufValue::I16).collect(),
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn safetensors_round_trip(tensors in prop::collection::vec(tensor(PLAIN), 0..6), meta in prop::collection::hash_map("[a-z]{1,6}", "\\PC{0,8}", 0..3)) {
        let named: Vec<_> = tensors.into_iter().enumerate().map(|(i, (d, s, b))| (format!("t{i}.weight"), d, s, b)).collect();
        let bytes = safetensors_bytes(&named, &meta);
        let table = read_table(&bytes, bytes.len() as u64, "m.safetensors").expect("reads what safetensors wrote");
        prop_assert_eq!(table.tensors.len(), named.len());
        for (name, dtype, shape, data) in &named {
            let t = table.get(name).expect("present");
            prop_assert_eq!(t.dtype, *dtype);
            prop_assert_eq!(&t.shape, shape);
            prop_assert_eq!(&bytes[t.range.start as usize..t.range.end as usize], &data[..]);
        }
        let Metadata::Safetensors { metadata } = &table.metadata else { panic!("format") };
        prop_assert_eq!(metadata.len(), meta.len());
    }

    #[test]
    fn gguf_round_trip(tensors in prop::collection::vec(tensor(GGUF_TYPES), 0..6), kvs in prop::collection::vec(gguf_value(), 0..6), align_pow in 3u32..8) {
        let alignment = 1u64 << align_pow;
        let mut meta: Vec<(String, GgufValue)> = kvs.into_iter().enumerate().map(|(i, v)| (format!("k.{i}"), v)).collect();
        meta.push(("general.alignment".into(), GgufValue::U32(alignment as u32)));
        let named: Vec<_> = tensors.into_iter().enumerate().map(|(i, (d, s, b))| (format!("blk.{i}.w"), d, s, b)).collect();
        let bytes = gguf::write(&meta, &named, alignment);
        let table = read_table(&bytes, bytes.len() as u64, "m.gguf").expect("reads what it wrote");
        let Metadata::Gguf { metadata, alignment: a, .. } = &table.metadata else { panic!("format") };
        prop_assert_eq!(*a, alignment);
        prop_assert_eq!(metadata.entries(), &meta[..]);
        for (name, dtype, shape, data) in &named {
            let t = table.get(name).expect("present");
            prop_assert_eq!((t.dtype, &t.shape), (*dtype, shape));
            prop_assert_eq!(t.range.start % alignment, 0);
            prop_assert_eq!(&bytes[t.range.start as usize..t.range.end as usize], &data[..]);
        }
        // Re-writing what was read gives the same bytes.
        let again: Vec<_> = table.tensors.iter().map(|t| (t.name.clone(), t.dtype, t.shape.clone(), bytes[t.range.start as usize..t.range.end as usize].to_vec())).collect();
        prop_assert_eq!(gguf::write(metadata.entries(), &again, alignment), bytes);
    }

    /// Mutating bytes of a valid file: we and the `safetensors` crate agree on accept/reject,
    /// except for cases where we are knowingly stricter (duplicate names, empty names).
    #[test]
    fn safetensors_agrees_with_the_reference_crate(tensors in prop::collection::vec(tensor(PLAIN), 1..4), edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let named: Vec<_> = tensors.into_iter().enumerate().map(|(i, (d, s, b))| (format!("t{i}"), d, s, b)).collect();
        let mut bytes = safetensors_bytes(&named, &HashMap::new());
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let ours = read_table(&bytes, bytes.len() as u64, "m.safetensors");
        let theirs = safetensors::SafeTensors::deserialize(&bytes);
        let stricter = matches!(ours, Err(FormatError::DuplicateTensor { .. } | FormatError::BadTensorName { .. }));
        if !stricter {
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "ours {:?} theirs {:?}", ours.err(), theirs.err());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), claimed_extra in 0u64..1 << 40) {
        let _ = read_table(&bytes, bytes.len() as u64, "x");
        let _ = read_table(&bytes, bytes.len() as u64 + claimed_extra, "x.safetensors");
        let mut gguf = b"GGUF\x03\x00\x00\x00".to_vec();
        gguf.extend(&bytes);
        let _ = read_table(&gguf, gguf.len() as u64, "x.gguf");
    }
}
