//! The safetensors header: 8-byte little-endian length, then a JSON object mapping tensor names to
//! `{dtype, shape, data_offsets}` (offsets relative to the end of the header), plus an optional
//! `__metadata__` map of strings.
//!
//! We follow the `safetensors` crate's rules (100 MB header cap, offsets contiguous from 0 in
//! offset order, shape × dtype = byte length, data ending exactly at the end of the file) but
//! parse by hand because that crate does not fit here: its offsets and shapes are `usize` (a
//! valid 6 GB file fails on wasm32), `read_metadata` needs the whole file in memory, and its JSON
//! map keeps the last of duplicate names. The crate stays as a differential reference in tests.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};

use super::{DType, FormatError, Metadata, TensorInfo, TensorTable};

/// The `safetensors` crate's header cap.
pub const MAX_SAFETENSORS_HEADER: u64 = 100_000_000;

#[derive(Deserialize)]
struct RawEntry {
    dtype: String,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// The header's entries in file order, duplicates kept (serde's maps would drop them silently).
struct RawHeader {
    metadata: Option<BTreeMap<String, String>>,
    entries: Vec<(String, RawEntry)>,
    duplicate: Option<String>,
}

impl<'de> Deserialize<'de> for RawHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct HeaderVisitor;
        impl<'de> Visitor<'de> for HeaderVisitor {
            type Value = RawHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object of tensor entries")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawHeader, A::Error> {
                let mut header = RawHeader { metadata: None, entries: Vec::new(), duplicate: None };
                let mut seen = HashSet::new();
                while let Some(key) = map.next_key::<String>()? {
                    if !seen.insert(key.clone()) && header.duplicate.is_none() {
                        header.duplicate = Some(key.clone());
                    }
                    if key == "__metadata__" {
                        header.metadata = Some(map.next_value()?);
                    } else {
                        let entry = map.next_value()?;
                        header.entries.push((key, entry));
                    }
                }
                Ok(header)
            }
        }
        d.deserialize_map(HeaderVisitor)
    }
}

pub(crate) fn read_table(prefix: &[u8], file_len: u64) -> Result<TensorTable, FormatError> {
    if file_len < 8 {
        return Err(FormatError::HeaderTooSmall);
    }
    let len_bytes: [u8; 8] = match prefix.get(..8) {
        Some(b) => b.try_into().map_err(|_| FormatError::HeaderTooSmall)?,
        None => return Err(FormatError::NeedMoreBytes { needed: 8 }),
    };
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_SAFETENSORS_HEADER {
        return Err(FormatError::HeaderTooLarge { len: n, cap: MAX_SAFETENSORS_HEADER });
    }
    let header_end = 8 + n; // n ≤ 10^8: no overflow
    if header_end > file_len {
        return Err(FormatError::InvalidHeaderLength { len: n, file_len });
    }
    let Some(header) = prefix.get(8..header_end as usize) else {
        return Err(FormatError::NeedMoreBytes { needed: header_end });
    };
    match header.first() {
        Some(b'{') => {}
        Some(&found) => return Err(FormatError::HeaderNotObject { found }),
        None => return Err(FormatError::HeaderNotJson { detail: "empty header".into() }),
    }
    let text = std::str::from_utf8(header).map_err(|_| FormatError::HeaderNotUtf8)?;
    let raw: RawHeader = serde_json::from_str(text).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => FormatError::InvalidHeader { detail: e.to_string() },
        _ => FormatError::HeaderNotJson { detail: e.to_string() },
    })?;
    if let Some(name) = raw.duplicate {
        return Err(FormatError::DuplicateTensor { name });
    }

    let mut tensors = Vec::with_capacity(raw.entries.len());
    for (name, entry) in raw.entries {
        if name.is_empty() {
            return Err(FormatError::BadTensorName { problem: "empty".into() });
        }
        let dtype = DType::from_safetensors(&entry.dtype)
            .ok_or_else(|| FormatError::UnknownDType { name: name.clone(), dtype: entry.dtype.clone() })?;
        let (begin, end) = entry.data_offsets;
        if end < begin {
            return Err(FormatError::InvalidOffset { name, begin, end, problem: "end before begin" });
        }
        let overflow = || FormatError::Overflow { name: name.clone(), shape: entry.shape.clone() };
        let elems = entry.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
        let expected = dtype.bytes_for(elems).ok_or_else(overflow)?;
        if end - begin != expected {
            return Err(FormatError::ShapeMismatch {
                name,
                shape: entry.shape,
                dtype,
                expected: expected.to_string(),
                actual: end - begin,
            });
        }
        // header_end + offsets: offsets are checked against file_len below before use.
        let range = header_end.checked_add(begin).zip(header_end.checked_add(end)).ok_or_else(overflow)?;
        tensors.push(TensorInfo { name, dtype, shape: entry.shape, range: range.0..range.1 });
    }

    // Offsets must tile the data section exactly: sorted by offset, each starts where the previous
    // ended (no gap, no overlap, no aliasing), and the last ends at the end of the file.
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| (tensors[i].range.start, tensors[i].range.end));
    let mut cursor = header_end;
    for &i in &order {
        let t = &tensors[i];
        if t.range.start != cursor {
            let problem = if t.range.start > cursor { "leave a gap before them" } else { "overlap the previous tensor" };
            return Err(FormatError::InvalidOffset {
                name: t.name.clone(),
                begin: t.range.start - header_end,
                end: t.range.end - header_end,
                problem,
            });
        }
        cursor = t.range.end;
    }
    if cursor != file_len {
        return Err(FormatError::DataSizeMismatch { data_end: cursor - header_end, available: file_len - header_end });
    }
    Ok(TensorTable {
        metadata: Metadata::Safetensors { metadata: raw.metadata.unwrap_or_default() },
        data_start: header_end,
        tensors,
    })
}
