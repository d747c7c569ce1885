//! Element types of both formats and their block layouts.
//!
//! One enum covers safetensors dtypes and ggml types: a quantized type is a block of
//! `block_elems()` values stored in `block_bytes()` bytes, a plain type is a block of one.

use serde::Serialize;

/// An element type. ggml quantizations keep ggml's names (`Q4_K`, …).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum DType {
    Bool,
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    U64,
    I64,
    F16,
    BF16,
    F32,
    F64,
    F8_E4M3,
    F8_E5M2,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
}

/// Elements in a k-quant super-block.
pub const QK_K: u64 = 256;

impl DType {
    /// Values per block (1 for plain types).
    pub fn block_elems(self) -> u64 {
        use DType::*;
        match self {
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 => 32,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => QK_K,
            _ => 1,
        }
    }

    /// Bytes per block (ggml's `type_size`).
    pub fn block_bytes(self) -> u64 {
        use DType::*;
        match self {
            Bool | U8 | I8 | F8_E4M3 | F8_E5M2 => 1,
            U16 | I16 | F16 | BF16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// Bytes of `elems` values, or `None` when `elems` is not a whole number of blocks or the
    /// size overflows u64.
    pub fn bytes_for(self, elems: u64) -> Option<u64> {
        if !elems.is_multiple_of(self.block_elems()) {
            return None;
        }
        (elems / self.block_elems()).checked_mul(self.block_bytes())
    }

    /// The safetensors spelling ("F32", "BF16", "F8_E4M3", …), for plain types.
    pub fn from_safetensors(name: &str) -> Option<Self> {
        use DType::*;
        Some(match name {
            "BOOL" => Bool,
            "U8" => U8,
            "I8" => I8,
            "U16" => U16,
            "I16" => I16,
            "U32" => U32,
            "I32" => I32,
            "U64" => U64,
            "I64" => I64,
            "F16" => F16,
            "BF16" => BF16,
            "F32" => F32,
            "F64" => F64,
            "F8_E4M3" => F8_E4M3,
            "F8_E5M2" => F8_E5M2,
            _ => return None,
        })
    }

    /// The type named as `Display` writes it ("F32", "Q4_K", …).
    pub fn from_name(name: &str) -> Option<Self> {
        use DType::*;
        const ALL: [DType; 26] = [
            Bool, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64, F8_E4M3, F8_E5M2, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
            Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
        ];
        ALL.into_iter().find(|d| d.to_string() == name)
    }

    /// The type for ggml's type id, `Err(Some(name))` for a known ggml type we do not read
    /// (the IQ and ternary families, MXFP4, Q8_1 which only ggml's activations use, …), `Err(None)` for an unknown id.
    pub fn from_ggml(id: u32) -> Result<Self, Option<&'static str>> {
        use DType::*;
        Ok(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => return Err(Some("Q8_1")),
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            16 => return Err(Some("IQ2_XXS")),
            17 => return Err(Some("IQ2_XS")),
            18 => return Err(Some("IQ3_XXS")),
            19 => return Err(Some("IQ1_S")),
            20 => return Err(Some("IQ4_NL")),
            21 => return Err(Some("IQ3_S")),
            22 => return Err(Some("IQ2_S")),
            23 => return Err(Some("IQ4_XS")),
            29 => return Err(Some("IQ1_M")),
            34 => return Err(Some("TQ1_0")),
            35 => return Err(Some("TQ2_0")),
            39 => return Err(Some("MXFP4")),
            _ => return Err(None),
        })
    }

    /// ggml's type id, for types that GGUF can hold.
    pub fn ggml_id(self) -> Option<u32> {
        use DType::*;
        Some(match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
            Bool | U8 | U16 | U32 | U64 | F8_E4M3 | F8_E5M2 => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip() {
        for id in 0..64 {
            if let Ok(t) = DType::from_ggml(id) {
                assert_eq!(t.ggml_id(), Some(id), "{t}");
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(DType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(DType::Q4_0.bytes_for(33), None);
        assert_eq!(DType::F32.bytes_for(u64::MAX), None);
        assert_eq!(DType::BF16.bytes_for(3), Some(6));
    }
}
