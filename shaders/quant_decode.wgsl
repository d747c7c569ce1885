// Weight decoding shared by the kernels that read weights (matvec/matmul with quant_dot.wgsl,
// embedding lookup). The including module declares `W: array<u32>`.
//
// Weights live in `W: array<u32>` as blocks repacked at load so that every field starts on a
// 4-byte boundary (src/gpu/weights.rs, `GpuLayout`):
//   F32   1 word per value             F16/BF16  2 values per word (low half first)
//   Q4_0  5 words: [d|pad] qs[16]      Q4_1  5 words: [d|m] qs[16]
//   Q5_0  6 words: [d|pad] qh qs[16]   Q5_1  6 words: [d|m] qh qs[16]
//   Q8_0  9 words: [d|pad] qs[32]      Q2_K 21 words: scales[16] qs[64] [d|dmin]
//   Q3_K 28 words: hmask[32] qs[64] scales[12] [d|pad]
//   Q4_K 36 words: [d|dmin] scales[12] qs[128]     Q5_K 44 words: [d|dmin] scales[12] qh[32] qs[128]
//   Q6_K 53 words: ql[128] qh[64] scales[16] [d|pad]
// f16 scales are read with unpack2x16float, so no kernel needs the shader-f16 feature.
// `wb` is the word index of a block; byte j of the block is byte (j & 3) of word wb + j / 4.

fn byte_at(wb: u32, j: u32) -> u32 {
    return (W[wb + (j >> 2u)] >> ((j & 3u) * 8u)) & 0xFFu;
}

fn f16_lo(w: u32) -> f32 {
    return unpack2x16float(w).x;
}

fn f16_hi(w: u32) -> f32 {
    return unpack2x16float(w).y;
}

// The i-th signed byte of a word.
fn i8_of(w: u32, k: u32) -> f32 {
    return f32(bitcast<i32>(w << (24u - 8u * k)) >> 24u);
}

// The (scale, min) pair j of Q4_K/Q5_K from the 12 packed bytes at word wb + 1.
fn k_scale_min(wb: u32, j: u32) -> vec2<f32> {
    if (j < 4u) {
        return vec2(f32(byte_at(wb + 1u, j) & 63u), f32(byte_at(wb + 1u, j + 4u) & 63u));
    }
    let sc = (byte_at(wb + 1u, j + 4u) & 0xFu) | ((byte_at(wb + 1u, j - 4u) >> 6u) << 4u);
    let mn = (byte_at(wb + 1u, j + 4u) >> 4u) | ((byte_at(wb + 1u, j) >> 6u) << 4u);
    return vec2(f32(sc), f32(mn));
}

// Values per block and words per repacked block of KIND.
fn block_elems() -> u32 {
    switch KIND {
        case 0u: { return 1u; }
        case 1u, 2u: { return 2u; }
        case 8u, 9u, 10u, 11u, 12u: { return 256u; }
        default: { return 32u; }
    }
}

fn block_words() -> u32 {
    switch KIND {
        case 0u, 1u, 2u: { return 1u; }
        case 3u, 4u: { return 5u; }
        case 5u, 6u: { return 6u; }
        case 7u: { return 9u; }
        case 8u: { return 21u; }
        case 9u: { return 28u; }
        case 10u: { return 36u; }
        case 11u: { return 44u; }
        default: { return 53u; }
    }
}

// Value i of block `wb` of KIND (the including module's override), exactly as the CPU
// dequantizer computes it (src/formats/quant.rs), up to a fused multiply-add.
fn value_of(wb: u32, i: u32) -> f32 {
    switch KIND {
        case 0u: { return bitcast<f32>(W[wb]); }
        case 1u: { return select(f16_lo(W[wb]), f16_hi(W[wb]), i == 1u); }
        case 2u: { return select(bitcast<f32>(W[wb] << 16u), bitcast<f32>(W[wb] & 0xFFFF0000u), i == 1u); }
        case 3u: { return f16_lo(W[wb]) * (f32(nibble_at(wb + 1u, i)) - 8.0); }
        case 4u: { return f16_lo(W[wb]) * f32(nibble_at(wb + 1u, i)) + f16_hi(W[wb]); }
        case 5u: { return f16_lo(W[wb]) * (f32(nibble_at(wb + 2u, i) | (((W[wb + 1u] >> i) & 1u) << 4u)) - 16.0); }
        case 6u: { return f16_lo(W[wb]) * f32(nibble_at(wb + 2u, i) | (((W[wb + 1u] >> i) & 1u) << 4u)) + f16_hi(W[wb]); }
        case 7u: { return i8_of(W[wb + 1u + i / 4u], i % 4u) * f16_lo(W[wb]); }
        case 8u: {
            let dd = unpack2x16float(W[wb + 20u]);
            let q = (byte_at(wb + 4u, 32u * (i / 128u) + i % 32u) >> (2u * ((i % 128u) / 32u))) & 3u;
            let sc = byte_at(wb, i / 16u);
            return dd.x * f32(sc & 0xFu) * f32(q) - dd.y * f32(sc >> 4u);
        }
        case 9u: {
            let sub = i / 16u;
            let low = (byte_at(wb + 24u, sub % 8u) >> (4u * (sub / 8u))) & 0xFu;
            let high = (byte_at(wb + 24u, 8u + sub % 4u) >> (2u * (sub / 4u))) & 3u;
            let dl = f16_lo(W[wb + 27u]) * f32(i32(low | (high << 4u)) - 32);
            let q = i32((byte_at(wb + 8u, 32u * (i / 128u) + i % 32u) >> (2u * ((i % 128u) / 32u))) & 3u);
            let hbit = (byte_at(wb, i % 32u) >> (i / 32u)) & 1u;
            return dl * f32(q - select(4, 0, hbit == 1u));
        }
        case 10u: {
            let dd = unpack2x16float(W[wb]);
            let sm = k_scale_min(wb, i / 32u);
            let q = (byte_at(wb + 4u, 32u * (i / 64u) + i % 32u) >> (4u * ((i % 64u) / 32u))) & 0xFu;
            return dd.x * sm.x * f32(q) - dd.y * sm.y;
        }
        case 11u: {
            let dd = unpack2x16float(W[wb]);
            let sm = k_scale_min(wb, i / 32u);
            let q = ((byte_at(wb + 12u, 32u * (i / 64u) + i % 32u) >> (4u * ((i % 64u) / 32u))) & 0xFu)
                | (((byte_at(wb + 4u, i % 32u) >> (i / 32u)) & 1u) << 4u);
            return dd.x * sm.x * f32(q) - dd.y * sm.y;
        }
        default: {
            let sq = (i % 128u) / 32u;
            let low = (byte_at(wb, 64u * (i / 128u) + 32u * (sq % 2u) + i % 32u) >> (4u * (sq / 2u))) & 0xFu;
            let high = (byte_at(wb + 32u, 32u * (i / 128u) + i % 32u) >> (2u * sq)) & 3u;
            let sc = f32(bitcast<i32>(byte_at(wb + 48u, i / 16u) << 24u) >> 24u);
            return (f16_lo(W[wb + 52u]) * sc) * f32(i32(low | (high << 4u)) - 32);
        }
    }
}

// Nibble i (0..31) of the 16 bytes starting at word `qw`: low nibbles first, then high.
fn nibble_at(qw: u32, i: u32) -> u32 {
    return select(byte_at(qw, i - 16u) >> 4u, byte_at(qw, i) & 0xFu, i < 16u);
}
