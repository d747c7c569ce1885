//! GGUF (versions 2 and 3, little-endian): magic, version, tensor count, metadata count, the
//! metadata key-values, the tensor infos, padding to `general.alignment`, then tensor data.
//!
//! Written by hand rather than with candle-core's reader: candle's reads counts and lengths
//! straight into allocations (crafted counts have blown it up), keeps going on duplicate keys and
//! names, and needs the whole header in a `Read`; this one bounds every count by the bytes left in
//! the file before allocating, reports `NeedMoreBytes` so the store can fetch the header in pieces,
//! and checks every rule llama.cpp's loader checks (dimensions, block alignment, offsets equal to
//! the running padded offset, data within the file).

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::sniff::GGUF_MAGIC;
use super::{DType, FormatError, Metadata, TensorInfo, TensorTable};

/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
/// ggml's GGML_MAX_NAME (64, including the terminating NUL).
pub const MAX_NAME_BYTES: usize = 63;
/// Longest metadata key.
pub const MAX_KEY_BYTES: u64 = 65_535;
/// Arrays of arrays are allowed this deep (llama.cpp writes none; one level is plenty).
pub const MAX_ARRAY_DEPTH: u32 = 2;

/// GGUF metadata value types, by their ids in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum GgufType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl GgufType {
    fn from_id(id: u32) -> Option<Self> {
        use GgufType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The fewest bytes a value of this type takes (a string: its length; an array: type + count).
    fn min_bytes(self) -> u64 {
        use GgufType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Array(GgufArray),
}

#[derive(Clone, Debug, PartialEq)]
pub struct GgufArray {
    pub elem_type: GgufType,
    pub values: Vec<GgufValue>,
}

impl Serialize for GgufArray {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.values.serialize(s)
    }
}

impl GgufValue {
    pub fn value_type(&self) -> GgufType {
        match self {
            GgufValue::U8(_) => GgufType::U8,
            GgufValue::I8(_) => GgufType::I8,
            GgufValue::U16(_) => GgufType::U16,
            GgufValue::I16(_) => GgufType::I16,
            GgufValue::U32(_) => GgufType::U32,
            GgufValue::I32(_) => GgufType::I32,
            GgufValue::F32(_) => GgufType::F32,
            GgufValue::Bool(_) => GgufType::Bool,
            GgufValue::String(_) => GgufType::String,
            GgufValue::U64(_) => GgufType::U64,
            GgufValue::I64(_) => GgufType::I64,
            GgufValue::F64(_) => GgufType::F64,
            GgufValue::Array(_) => GgufType::Array,
        }
    }

    /// Any integer type, if the value is a non-negative integer that fits in u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v.into()),
            GgufValue::U16(v) => Some(v.into()),
            GgufValue::U32(v) => Some(v.into()),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            GgufValue::I8(v) => Some(v.into()),
            GgufValue::I16(v) => Some(v.into()),
            GgufValue::I32(v) => Some(v.into()),
            GgufValue::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F32(v) => Some(v.into()),
            GgufValue::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[GgufValue]> {
        match self {
            GgufValue::Array(a) => Some(&a.values),
            _ => None,
        }
    }
}

/// Metadata key-values in file order, with lookup by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct GgufMetadata {
    entries: Vec<(String, GgufValue)>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl GgufMetadata {
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    pub fn get_array(&self, key: &str) -> Option<&[GgufValue]> {
        self.get(key)?.as_array()
    }

    /// A string array, if every element is a string.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get_array(key)?.iter().map(GgufValue::as_str).collect()
    }

    pub fn entries(&self) -> &[(String, GgufValue)] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Appends a key-value; `Err` with the key when it is already present.
    pub fn push(&mut self, key: String, value: GgufValue) -> Result<(), String> {
        if self.index.contains_key(&key) {
            return Err(key);
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Sets `key` to `value`, replacing its value where present.
    pub fn set(&mut self, key: &str, value: GgufValue) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                let _ = self.push(key.to_string(), value);
            }
        }
    }
}

/// Reads little-endian values from the prefix, telling "past the prefix" (`NeedMoreBytes`) from
/// "past the end of the file" (`Truncated`/`LengthPastEnd`).
struct Cursor<'a> {
    prefix: &'a [u8],
    pos: u64,
    file_len: u64,
}

impl<'a> Cursor<'a> {
    fn left_in_file(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], FormatError> {
        let end = self.pos.checked_add(n).ok_or(FormatError::LengthPastEnd { what, len: n, at: self.pos })?;
        if end > self.file_len {
            return Err(FormatError::Truncated { what: what.into(), needed: end, file_len: self.file_len });
        }
        if end > self.prefix.len() as u64 {
            return Err(FormatError::NeedMoreBytes { needed: end });
        }
        let bytes = &self.prefix[self.pos as usize..end as usize];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], FormatError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A length-prefixed byte string, its length checked against the file before reading.
    fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], FormatError> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.left_in_file() {
            return Err(FormatError::LengthPastEnd { what, len, at });
        }
        self.take(len, what)
    }

    /// A count of items of at least `min_bytes` each, bounded by the bytes left in the file.
    fn count(&mut self, what: &'static str, min_bytes: u64) -> Result<u64, FormatError> {
        let count = self.u64(what)?;
        let max = self.left_in_file() / min_bytes.max(1);
        if count > max {
            return Err(FormatError::TooMany { what, count, max });
        }
        Ok(count)
    }

    /// A capacity to reserve for `count` items: never more than the prefix could hold.
    fn capacity(&self, count: u64, min_bytes: u64) -> usize {
        let in_prefix = (self.prefix.len() as u64).saturating_sub(self.pos) / min_bytes.max(1);
        count.min(in_prefix) as usize
    }
}

fn read_value(c: &mut Cursor, key: &str, ty: GgufType, depth: u32) -> Result<GgufValue, FormatError> {
    let bad = |problem: String| FormatError::BadValue { key: key.to_owned(), problem };
    Ok(match ty {
        GgufType::U8 => GgufValue::U8(c.array::<1>("a u8 value")?[0]),
        GgufType::I8 => GgufValue::I8(i8::from_le_bytes(c.array("an i8 value")?)),
        GgufType::U16 => GgufValue::U16(u16::from_le_bytes(c.array("a u16 value")?)),
        GgufType::I16 => GgufValue::I16(i16::from_le_bytes(c.array("an i16 value")?)),
        GgufType::U32 => GgufValue::U32(c.u32("a u32 value")?),
        GgufType::I32 => GgufValue::I32(i32::from_le_bytes(c.array("an i32 value")?)),
        GgufType::F32 => GgufValue::F32(f32::from_le_bytes(c.array("an f32 value")?)),
        GgufType::U64 => GgufValue::U64(c.u64("a u64 value")?),
        GgufType::I64 => GgufValue::I64(i64::from_le_bytes(c.array("an i64 value")?)),
        GgufType::F64 => GgufValue::F64(f64::from_le_bytes(c.array("an f64 value")?)),
        GgufType::Bool => match c.array::<1>("a bool value")?[0] {
            0 => GgufValue::Bool(false),
            1 => GgufValue::Bool(true),
            b => return Err(bad(format!("bool byte {b} is neither 0 nor 1"))),
        },
        GgufType::String => {
            let bytes = c.bytes("a string value")?;
            GgufValue::String(String::from_utf8(bytes.to_vec()).map_err(|_| bad("a string is not valid UTF-8".into()))?)
        }
        GgufType::Array => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(bad(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}")));
            }
            let type_id = c.u32("an array element type")?;
            let elem_type =
                GgufType::from_id(type_id).ok_or_else(|| FormatError::UnknownValueType { key: key.to_owned(), type_id })?;
            let count = c.count("array element", elem_type.min_bytes())?;
            let mut values = Vec::with_capacity(c.capacity(count, elem_type.min_bytes()));
            for _ in 0..count {
                values.push(read_value(c, key, elem_type, depth + 1)?);
            }
            GgufValue::Array(GgufArray { elem_type, values })
        }
    })
}

/// Smallest tensor info: name length + 1 byte, n_dims, one dimension, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 8 + 4 + 8;
/// Smallest key-value: key length + 1 byte, type, one byte of value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;

pub(crate) fn read_table(prefix: &[u8], file_len: u64) -> Result<TensorTable, FormatError> {
    let mut c = Cursor { prefix, pos: 0, file_len };
    if c.array::<4>("the magic")? != *GGUF_MAGIC {
        return Err(FormatError::UnknownFormat { first_bytes: "not GGUF".into() });
    }
    let version = c.u32("the version")?;
    match version {
        2 | 3 => {}
        v if (1..=3).contains(&v.swap_bytes()) => return Err(FormatError::BigEndian { version: v }),
        v => return Err(FormatError::UnsupportedVersion { version: v }),
    }
    let n_tensors = c.u64("the tensor count")?;
    let n_kv = c.u64("the metadata count")?;
    let max_kv = c.left_in_file() / MIN_KV_BYTES;
    if n_kv > max_kv {
        return Err(FormatError::TooMany { what: "metadata", count: n_kv, max: max_kv });
    }
    let max_tensors = c.left_in_file() / MIN_TENSOR_INFO_BYTES;
    if n_tensors > max_tensors {
        return Err(FormatError::TooMany { what: "tensor", count: n_tensors, max: max_tensors });
    }

    let mut metadata = GgufMetadata::default();
    for _ in 0..n_kv {
        let key_at = c.pos;
        let key_len = c.u64("a metadata key")?;
        if key_len > MAX_KEY_BYTES || key_len > c.left_in_file() {
            return Err(FormatError::LengthPastEnd { what: "a metadata key", len: key_len, at: key_at });
        }
        let key_bytes = c.take(key_len, "a metadata key")?;
        let key = String::from_utf8_lossy(key_bytes).into_owned();
        if key.is_empty() {
            return Err(FormatError::BadKey { key, problem: "empty" });
        }
        if !key_bytes.iter().all(|b| b.is_ascii_graphic()) {
            return Err(FormatError::BadKey { key, problem: "not printable ASCII" });
        }
        let type_id = c.u32("a metadata value type")?;
        let ty = GgufType::from_id(type_id).ok_or_else(|| FormatError::UnknownValueType { key: key.clone(), type_id })?;
        let value = read_value(&mut c, &key, ty, 0)?;
        metadata.push(key, value).map_err(|key| FormatError::DuplicateKey { key })?;
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(GgufValue::U32(a)) if a.is_power_of_two() => u64::from(*a),
        Some(GgufValue::U32(a)) => return Err(FormatError::BadAlignment { problem: format!("{a} is not a power of two") }),
        Some(other) => {
            return Err(FormatError::BadAlignment { problem: format!("has type {:?}, must be u32", other.value_type()) });
        }
    };

    struct RawTensor {
        name: String,
        dtype: DType,
        shape: Vec<u64>,
        offset: u64,
        bytes: u64,
    }
    let mut raw = Vec::with_capacity(c.capacity(n_tensors, MIN_TENSOR_INFO_BYTES));
    let mut names = HashSet::new();
    for _ in 0..n_tensors {
        let name_bytes = c.bytes("a tensor name")?;
        let name = String::from_utf8(name_bytes.to_vec())
            .map_err(|_| FormatError::BadTensorName { problem: "not valid UTF-8".into() })?;
        if name.is_empty() {
            return Err(FormatError::BadTensorName { problem: "empty".into() });
        }
        if name.len() > MAX_NAME_BYTES {
            return Err(FormatError::BadTensorName { problem: format!("{} bytes long (ggml allows {MAX_NAME_BYTES})", name.len()) });
        }
        let bad = |problem: String| FormatError::BadTensor { name: name.clone(), problem };
        let n_dims = c.u32("a tensor's dimension count")?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(bad(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = c.u64("a tensor dimension")?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(bad(format!("dimension {d} (must be 1 to 2^63-1)")));
            }
            ne.push(d);
        }
        let type_id = c.u32("a tensor type")?;
        let dtype = DType::from_ggml(type_id).map_err(|known| match known {
            Some(type_name) => FormatError::UnsupportedType { name: name.clone(), type_name },
            None => FormatError::UnknownType { name: name.clone(), type_id },
        })?;
        let offset = c.u64("a tensor offset")?;
        let shape: Vec<u64> = ne.iter().rev().copied().collect();
        if ne[0] % dtype.block_elems() != 0 {
            return Err(bad(format!("rows of {} values are not whole {dtype} blocks of {}", ne[0], dtype.block_elems())));
        }
        let elems = ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d));
        let bytes = elems
            .and_then(|e| dtype.bytes_for(e))
            .ok_or_else(|| FormatError::Overflow { name: name.clone(), shape: shape.clone() })?;
        if !names.insert(name.clone()) {
            return Err(FormatError::DuplicateTensor { name });
        }
        raw.push(RawTensor { name, dtype, shape, offset, bytes });
    }

    let data_start = align_up(c.pos, alignment)
        .ok_or(FormatError::BadAlignment { problem: "padding overflows".into() })?;
    if data_start > file_len && !raw.is_empty() {
        return Err(FormatError::Truncated { what: "the tensor data section".into(), needed: data_start, file_len });
    }
    // Tensors lie in order, each at the running offset padded to the alignment (llama.cpp's rule).
    let mut expected = 0u64;
    let mut tensors = Vec::with_capacity(raw.len());
    for t in raw {
        if t.offset != expected {
            return Err(FormatError::BadTensor {
                name: t.name,
                problem: format!("offset {} is not the expected {expected} (misaligned, overlapping or out of order)", t.offset),
            });
        }
        let start = data_start.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.bytes));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(FormatError::Overflow { name: t.name, shape: t.shape });
        };
        if end > file_len {
            return Err(FormatError::Truncated { what: format!("tensor {:?}", t.name), needed: end, file_len });
        }
        expected = align_up(t.offset + t.bytes, alignment)
            .ok_or_else(|| FormatError::Overflow { name: t.name.clone(), shape: t.shape.clone() })?;
        tensors.push(TensorInfo { name: t.name, dtype: t.dtype, shape: t.shape, range: start..end });
    }
    Ok(TensorTable { metadata: Metadata::Gguf { version, alignment, metadata }, data_start, tensors })
}

fn align_up(x: u64, alignment: u64) -> Option<u64> {
    Some(x.checked_add(alignment - 1)? / alignment * alignment)
}

/// Writes a GGUF v3 file: the counterpart of the reader, for tests, fixtures and tools.
/// `tensors` are (name, dtype, shape outermost-first, data bytes).
pub fn write(metadata: &[(String, GgufValue)], tensors: &[(String, DType, Vec<u64>, Vec<u8>)], alignment: u64) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s);
    }
    fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
        match v {
            GgufValue::U8(x) => out.push(*x),
            GgufValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Bool(x) => out.push(u8::from(*x)),
            GgufValue::String(s) => put_str(out, s.as_bytes()),
            GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            GgufValue::Array(a) => {
                out.extend_from_slice(&(a.elem_type as u32).to_le_bytes());
                out.extend_from_slice(&(a.values.len() as u64).to_le_bytes());
                a.values.iter().for_each(|v| put_value(out, v));
            }
        }
    }
    let pad = |n: u64| n.div_ceil(alignment) * alignment;
    let mut out = Vec::new();
    out.extend_from_slice(GGUF_MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (key, value) in metadata {
        put_str(&mut out, key.as_bytes());
        out.extend_from_slice(&(value.value_type() as u32).to_le_bytes());
        put_value(&mut out, value);
    }
    let mut offset = 0u64;
    for (name, dtype, shape, data) in tensors {
        put_str(&mut out, name.as_bytes());
        out.extend_from_slice(&(shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out.extend_from_slice(&dtype.ggml_id().unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        offset = pad(offset + data.len() as u64);
    }
    out.resize(pad(out.len() as u64) as usize, 0);
    for (_, _, _, data) in tensors {
        out.extend_from_slice(data);
        out.resize(pad(out.len() as u64) as usize, 0);
    }
    out
}
