// Dot products of one weight block with f32 activations X, decoding in registers, all in f32:
// the f32 matvec module's inner loop (`dot_block`, called by matvec.wgsl). Layouts: see
// quant_decode.wgsl; the f16 twin is quant_dot_f16.wgsl.

@group(0) @binding(2) var<storage, read> X: array<f32>;  // (tokens, cols)

// Σ over block `wb` of w·x, x starting at X[xb].
fn dot_block(wb: u32, xb: u32) -> f32 {
    switch KIND {
        case 0u: { return bitcast<f32>(W[wb]) * X[xb]; }
        case 1u: { let w = unpack2x16float(W[wb]); return w.x * X[xb] + w.y * X[xb + 1u]; }
        case 2u: {
            let w = W[wb];
            return bitcast<f32>(w << 16u) * X[xb] + bitcast<f32>(w & 0xFFFF0000u) * X[xb + 1u];
        }
        case 3u: { return dot_q4_0(wb, xb); }
        case 4u: { return dot_q4_1(wb, xb); }
        case 5u: { return dot_q5_0(wb, xb); }
        case 6u: { return dot_q5_1(wb, xb); }
        case 7u: { return dot_q8_0(wb, xb); }
        case 8u: { return dot_q2_k(wb, xb); }
        case 9u: { return dot_q3_k(wb, xb); }
        case 10u: { return dot_q4_k(wb, xb); }
        case 11u: { return dot_q5_k(wb, xb); }
        default: { return dot_q6_k(wb, xb); }
    }
}

// Σ_{j<32} q_j·x_j of a Q4_0/Q4_1 nibble block whose 4 qs words start at `qw`: values 0..15 are
// the low nibbles of bytes 0..15, values 16..31 the high nibbles. `offset` is subtracted from q.
fn dot_nibbles(qw: u32, xb: u32, offset: f32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let w = W[qw + k];
        for (var b = 0u; b < 4u; b++) {
            let byte = (w >> (8u * b)) & 0xFFu;
            let j = 4u * k + b;
            s += (f32(byte & 0xFu) - offset) * X[xb + j] + (f32(byte >> 4u) - offset) * X[xb + j + 16u];
        }
    }
    return s;
}

// Q5: nibble as above plus bit j of qh as bit 4.
fn dot_q5(qh: u32, qw: u32, xb: u32, offset: f32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let w = W[qw + k];
        for (var b = 0u; b < 4u; b++) {
            let byte = (w >> (8u * b)) & 0xFFu;
            let j = 4u * k + b;
            let lo = (byte & 0xFu) | (((qh >> j) & 1u) << 4u);
            let hi = (byte >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u);
            s += (f32(lo) - offset) * X[xb + j] + (f32(hi) - offset) * X[xb + j + 16u];
        }
    }
    return s;
}

fn dot_q4_0(wb: u32, xb: u32) -> f32 {
    return f16_lo(W[wb]) * dot_nibbles(wb + 1u, xb, 8.0);
}

// x = d·q + m, element by element as the CPU reference does.
fn dot_q4_1(wb: u32, xb: u32) -> f32 {
    let d = f16_lo(W[wb]);
    let m = f16_hi(W[wb]);
    var s = 0.0;
    for (var k = 0u; k < 4u; k++) {
        let w = W[wb + 1u + k];
        for (var b = 0u; b < 4u; b++) {
            let byte = (w >> (8u * b)) & 0xFFu;
            let j = 4u * k + b;
            s += (d * f32(byte & 0xFu) + m) * X[xb + j] + (d * f32(byte >> 4u) + m) * X[xb + j + 16u];
        }
    }
    return s;
}

fn dot_q5_0(wb: u32, xb: u32) -> f32 {
    return f16_lo(W[wb]) * dot_q5(W[wb + 1u], wb + 2u, xb, 16.0);
}

fn dot_q5_1(wb: u32, xb: u32) -> f32 {
    let d = f16_lo(W[wb]);
    let m = f16_hi(W[wb]);
    let qh = W[wb + 1u];
    var s = 0.0;
    for (var j = 0u; j < 16u; j++) {
        let byte = byte_at(wb + 2u, j);
        let lo = (byte & 0xFu) | (((qh >> j) & 1u) << 4u);
        let hi = (byte >> 4u) | (((qh >> (j + 16u)) & 1u) << 4u);
        s += (d * f32(lo) + m) * X[xb + j] + (d * f32(hi) + m) * X[xb + j + 16u];
    }
    return s;
}

fn dot_q8_0(wb: u32, xb: u32) -> f32 {
    var s = 0.0;
    for (var k = 0u; k < 8u; k++) {
        let w = W[wb + 1u + k];
        let x = xb + 4u * k;
        s += i8_of(w, 0u) * X[x] + i8_of(w, 1u) * X[x + 1u] + i8_of(w, 2u) * X[x + 2u] + i8_of(w, 3u) * X[x + 3u];
    }
    return f16_lo(W[wb]) * s;
}

// Q2_K: value i = 128g + 32s + l is bits 2s of qs[32g + l]; sub-block i / 16 has scale byte sc:
// x = (d·(sc & 15))·q − dmin·(sc >> 4).
fn dot_q2_k(wb: u32, xb: u32) -> f32 {
    let dd = unpack2x16float(W[wb + 20u]);
    var s = 0.0;
    for (var i = 0u; i < 256u; i++) {
        let g = i / 128u;
        let sh = 2u * ((i % 128u) / 32u);
        let q = (byte_at(wb + 4u, 32u * g + i % 32u) >> sh) & 3u;
        let sc = byte_at(wb, i / 16u);
        s += (dd.x * f32(sc & 0xFu) * f32(q) - dd.y * f32(sc >> 4u)) * X[xb + i];
    }
    return s;
}

// Q3_K: 16 sub-blocks with 6-bit signed scales; q = low 2 bits − 4·(high bit clear).
fn dot_q3_k(wb: u32, xb: u32) -> f32 {
    let d = f16_lo(W[wb + 27u]);
    var s = 0.0;
    for (var sub = 0u; sub < 16u; sub++) {
        let low = (byte_at(wb + 24u, sub % 8u) >> (4u * (sub / 8u))) & 0xFu;
        let high = (byte_at(wb + 24u, 8u + sub % 4u) >> (2u * (sub / 4u))) & 3u;
        let dl = d * f32(i32(low | (high << 4u)) - 32);
        var ss = 0.0;
        for (var t = 0u; t < 16u; t++) {
            let i = 16u * sub + t;
            let g = i / 128u;
            let q = i32((byte_at(wb + 8u, 32u * g + i % 32u) >> (2u * ((i % 128u) / 32u))) & 3u);
            let hbit = (byte_at(wb, i % 32u) >> (i / 32u)) & 1u;
            ss += f32(q - select(4, 0, hbit == 1u)) * X[xb + i];
        }
        s += dl * ss;
    }
    return s;
}

// Q4_K: 8 sub-blocks of 32; x = (d·sc)·q − dmin·m; value i = 64g + 32h + l is nibble h of qs[32g + l].
fn dot_q4_k(wb: u32, xb: u32) -> f32 {
    let dd = unpack2x16float(W[wb]);
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let sm = k_scale_min(wb, j);
        let dl = dd.x * sm.x;
        let ml = dd.y * sm.y;
        let g = j / 2u;
        let h = j % 2u;
        for (var l = 0u; l < 32u; l++) {
            let q = (byte_at(wb + 4u, 32u * g + l) >> (4u * h)) & 0xFu;
            s += (dl * f32(q) - ml) * X[xb + 32u * j + l];
        }
    }
    return s;
}

// Q5_K: as Q4_K with a fifth bit: bit (i / 32) of qh[i % 32].
fn dot_q5_k(wb: u32, xb: u32) -> f32 {
    let dd = unpack2x16float(W[wb]);
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let sm = k_scale_min(wb, j);
        let dl = dd.x * sm.x;
        let ml = dd.y * sm.y;
        let g = j / 2u;
        let h = j % 2u;
        for (var l = 0u; l < 32u; l++) {
            let q = ((byte_at(wb + 12u, 32u * g + l) >> (4u * h)) & 0xFu) | (((byte_at(wb + 4u, l) >> j) & 1u) << 4u);
            s += (dl * f32(q) - ml) * X[xb + 32u * j + l];
        }
    }
    return s;
}

// Q6_K: 16 sub-blocks of 16; x = (d·sc)·(q − 32); value i = 128g + 32s + l: nibble (s / 2) of
// ql[64g + 32(s % 2) + l] and bits 2s of qh[32g + l].
fn dot_q6_k(wb: u32, xb: u32) -> f32 {
    let d = f16_lo(W[wb + 52u]);
    var s = 0.0;
    for (var sub = 0u; sub < 16u; sub++) {
        let sc = f32(bitcast<i32>(byte_at(wb + 48u, sub) << 24u) >> 24u);
        var ss = 0.0;
        for (var t = 0u; t < 16u; t++) {
            let i = 16u * sub + t;
            let g = i / 128u;
            let sq = (i % 128u) / 32u;
            let l = i % 32u;
            let low = (byte_at(wb, 64u * g + 32u * (sq % 2u) + l) >> (4u * (sq / 2u))) & 0xFu;
            let high = (byte_at(wb + 32u, 32u * g + l) >> (2u * sq)) & 3u;
            ss += f32(i32(low | (high << 4u)) - 32) * X[xb + i];
        }
        s += (d * sc) * ss;
    }
    return s;
}
