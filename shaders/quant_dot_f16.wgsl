// Dot products of one weight block with staged f16 activations: the f16 matvec module's inner
// loop (`dot_block`, called by matvec.wgsl), compiled with `enable f16;` (prefixed by
// src/gpu/shaders.rs, never written here: this file is only part of the f16 module).
//
// Activations come from stage_f16.wgsl: ξ = x / s in f16, |ξ| ≤ 1, s a power of two per 32
// values. Weights are decoded four at a time from whole words (unpack4xU8 / unpack4xI8) to
// vec4<f16> integers q, exact in f16; a (sub-)block of 16 or 32 values is summed as
// Σ q·ξ (and Σ ξ for formats with a min) in vec4<f16> multiply-adds. Then, in f32, the sums are
// multiplied by the block's scales (d, d·sc, m, dmin·m) and by s; matvec.wgsl adds blocks in
// f32. Bounds: |q| ≤ 128 and 32 values per sum keep every f16 sum under 4096 (f16 overflows at
// 65504); the error is γ_f16(chain) · Σ (|d·q| + |m|)·|x| plus f16 underflow terms
// (src/gpu/ops/matvec.rs, `error_bound_f16`).
// Only the block formats come here: F32, F16 and BF16 weights keep the f32 module (matvec.rs,
// `f16_pays`), so their KIND values are never dispatched to this one.
// Layouts: see quant_decode.wgsl; the f32 twin is quant_dot.wgsl.

@group(0) @binding(2) var<storage, read> XH: array<vec4<f16>>;  // (tokens · cols / 4) staged ξ
@group(0) @binding(6) var<storage, read> XS: array<f32>;        // (tokens · cols / 32) scales s

// The four staged values from element e (a multiple of 4) of the flat (tokens, cols) array.
fn xq(e: u32) -> vec4<f16> {
    return XH[e >> 2u];
}

// The scale of the group holding element e.
fn xs(e: u32) -> f32 {
    return XS[e >> 5u];
}

fn hsum(v: vec4<f16>) -> f32 {
    return f32((v.x + v.y) + (v.z + v.w));
}

// Bits 4h..4h+3 of each byte of w: nibble h of four consecutive bytes.
fn nibbles(w: u32, h: u32) -> vec4<u32> {
    return unpack4xU8((w >> (4u * h)) & 0x0F0F0F0Fu);
}

// Bits j, j+1, j+2, j+3 of qh, each as 16 or 0 (a Q5 fifth bit).
fn fifth_bits(qh: u32, j: u32) -> vec4<u32> {
    return ((vec4<u32>(qh) >> vec4<u32>(j, j + 1u, j + 2u, j + 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
}

// Σ over block `wb` of w·x, x starting at element xe of the flat activations.
fn dot_block(wb: u32, xe: u32) -> f32 {
    switch KIND {
        // F32, F16, BF16: never dispatched here (see above).
        case 0u, 1u, 2u: { return 0.0; }
        case 3u: { return dot16_q4_0(wb, xe); }
        case 4u: { return dot16_q4_1(wb, xe); }
        case 5u: { return dot16_q5_0(wb, xe); }
        case 6u: { return dot16_q5_1(wb, xe); }
        case 7u: { return dot16_q8_0(wb, xe); }
        case 8u: { return dot16_q2_k(wb, xe); }
        case 9u: { return dot16_q3_k(wb, xe); }
        case 10u: { return dot16_q4_k(wb, xe); }
        case 11u: { return dot16_q5_k(wb, xe); }
        default: { return dot16_q6_k(wb, xe); }
    }
}

// Q4_0: w = d·(q − 8); values 0..15 are the low nibbles of bytes 0..15, 16..31 the high ones.
fn dot16_q4_0(wb: u32, xe: u32) -> f32 {
    var s = vec4<f16>(0.0h);
    for (var k = 0u; k < 4u; k++) {
        let w = W[wb + 1u + k];
        s += (vec4<f16>(nibbles(w, 0u)) - 8.0h) * xq(xe + 4u * k) + (vec4<f16>(nibbles(w, 1u)) - 8.0h) * xq(xe + 16u + 4u * k);
    }
    return f16_lo(W[wb]) * hsum(s) * xs(xe);
}

// Q4_1: w = d·q + m: d·Σ q·ξ + m·Σ ξ.
fn dot16_q4_1(wb: u32, xe: u32) -> f32 {
    var sq = vec4<f16>(0.0h);
    var sx = vec4<f16>(0.0h);
    for (var k = 0u; k < 4u; k++) {
        let w = W[wb + 1u + k];
        let a = xq(xe + 4u * k);
        let b = xq(xe + 16u + 4u * k);
        sq += vec4<f16>(nibbles(w, 0u)) * a + vec4<f16>(nibbles(w, 1u)) * b;
        sx += a + b;
    }
    let dm = unpack2x16float(W[wb]);
    return (dm.x * hsum(sq) + dm.y * hsum(sx)) * xs(xe);
}

// Q5_0: w = d·(q − 16), q = nibble | bit j of qh << 4.
fn dot16_q5_0(wb: u32, xe: u32) -> f32 {
    let qh = W[wb + 1u];
    var s = vec4<f16>(0.0h);
    for (var k = 0u; k < 4u; k++) {
        let w = W[wb + 2u + k];
        let lo = vec4<f16>(nibbles(w, 0u) | fifth_bits(qh, 4u * k)) - 16.0h;
        let hi = vec4<f16>(nibbles(w, 1u) | fifth_bits(qh, 16u + 4u * k)) - 16.0h;
        s += lo * xq(xe + 4u * k) + hi * xq(xe + 16u + 4u * k);
    }
    return f16_lo(W[wb]) * hsum(s) * xs(xe);
}

// Q5_1: w = d·q + m with Q5_0's q.
fn dot16_q5_1(wb: u32, xe: u32) -> f32 {
    let qh = W[wb + 1u];
    var sq = vec4<f16>(0.0h);
    var sx = vec4<f16>(0.0h);
    for (var k = 0u; k < 4u; k++) {
        let w = W[wb + 2u + k];
        let a = xq(xe + 4u * k);
        let b = xq(xe + 16u + 4u * k);
        sq += vec4<f16>(nibbles(w, 0u) | fifth_bits(qh, 4u * k)) * a + vec4<f16>(nibbles(w, 1u) | fifth_bits(qh, 16u + 4u * k)) * b;
        sx += a + b;
    }
    let dm = unpack2x16float(W[wb]);
    return (dm.x * hsum(sq) + dm.y * hsum(sx)) * xs(xe);
}

// Q8_0: w = d·q, q a signed byte.
fn dot16_q8_0(wb: u32, xe: u32) -> f32 {
    var s = vec4<f16>(0.0h);
    for (var k = 0u; k < 8u; k++) {
        s += vec4<f16>(unpack4xI8(W[wb + 1u + k])) * xq(xe + 4u * k);
    }
    return f16_lo(W[wb]) * hsum(s) * xs(xe);
}

// Q2_K: 16 sub-blocks of 16; w = (d·(sc & 15))·q − dmin·(sc >> 4). Sub-block b holds values
// 128g + 32s + l for g = b / 8, s = (b % 8) / 2, l = 16(b % 2) .. + 15: bits 2s of qs[32g + l].
fn dot16_q2_k(wb: u32, xe: u32) -> f32 {
    let dd = unpack2x16float(W[wb + 20u]);
    var acc = 0.0;
    for (var b = 0u; b < 16u; b++) {
        let qw = wb + 4u + 8u * (b / 8u) + 4u * (b % 2u);
        let sh = 2u * ((b % 8u) / 2u);
        var sq = vec4<f16>(0.0h);
        var sx = vec4<f16>(0.0h);
        for (var t = 0u; t < 4u; t++) {
            let x = xq(xe + 16u * b + 4u * t);
            sq += vec4<f16>(unpack4xU8((W[qw + t] >> sh) & 0x03030303u)) * x;
            sx += x;
        }
        let sc = byte_at(wb, b);
        acc += ((dd.x * f32(sc & 0xFu)) * hsum(sq) - (dd.y * f32(sc >> 4u)) * hsum(sx)) * xs(xe + 16u * b);
    }
    return acc;
}

// Q3_K: 16 sub-blocks of 16 with 6-bit signed scales; q = (bits 2s of qs[32g + l]) − 4 unless
// bit (i / 32) of hmask[l] is set, values numbered as in Q2_K.
fn dot16_q3_k(wb: u32, xe: u32) -> f32 {
    let d = f16_lo(W[wb + 27u]);
    var acc = 0.0;
    for (var b = 0u; b < 16u; b++) {
        let l4 = 4u * (b % 2u);
        let qw = wb + 8u + 8u * (b / 8u) + l4;
        let sh = 2u * ((b % 8u) / 2u);
        var s = vec4<f16>(0.0h);
        for (var t = 0u; t < 4u; t++) {
            let hbit = (W[wb + l4 + t] >> (b / 2u)) & 0x01010101u;
            let q = vec4<f16>(unpack4xU8(((W[qw + t] >> sh) & 0x03030303u) | (hbit << 2u))) - 4.0h;
            s += q * xq(xe + 16u * b + 4u * t);
        }
        let low = (byte_at(wb + 24u, b % 8u) >> (4u * (b / 8u))) & 0xFu;
        let high = (byte_at(wb + 24u, 8u + b % 4u) >> (2u * (b / 4u))) & 3u;
        acc += (d * f32(i32(low | (high << 4u)) - 32)) * hsum(s) * xs(xe + 16u * b);
    }
    return acc;
}

// Q4_K: 8 sub-blocks of 32; w = (d·sc)·q − dmin·m; value 32j + l is nibble j % 2 of
// qs[32(j / 2) + l].
fn dot16_q4_k(wb: u32, xe: u32) -> f32 {
    let dd = unpack2x16float(W[wb]);
    var acc = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let sm = k_scale_min(wb, j);
        var sq = vec4<f16>(0.0h);
        var sx = vec4<f16>(0.0h);
        for (var t = 0u; t < 8u; t++) {
            let x = xq(xe + 32u * j + 4u * t);
            sq += vec4<f16>(nibbles(W[wb + 4u + 8u * (j / 2u) + t], j % 2u)) * x;
            sx += x;
        }
        acc += ((dd.x * sm.x) * hsum(sq) - (dd.y * sm.y) * hsum(sx)) * xs(xe + 32u * j);
    }
    return acc;
}

// Q5_K: as Q4_K with a fifth bit: bit j of qh[l].
fn dot16_q5_k(wb: u32, xe: u32) -> f32 {
    let dd = unpack2x16float(W[wb]);
    var acc = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let sm = k_scale_min(wb, j);
        var sq = vec4<f16>(0.0h);
        var sx = vec4<f16>(0.0h);
        for (var t = 0u; t < 8u; t++) {
            let x = xq(xe + 32u * j + 4u * t);
            let high = ((W[wb + 4u + t] >> j) & 0x01010101u) << 4u;
            sq += vec4<f16>(nibbles(W[wb + 12u + 8u * (j / 2u) + t], j % 2u) | unpack4xU8(high)) * x;
            sx += x;
        }
        acc += ((dd.x * sm.x) * hsum(sq) - (dd.y * sm.y) * hsum(sx)) * xs(xe + 32u * j);
    }
    return acc;
}

// Q6_K: 16 sub-blocks of 16; w = (d·sc)·(q − 32). Sub-block b: g = b / 8, s = (b % 8) / 2,
// l = 16(b % 2) .. + 15: nibble (s / 2) of ql[64g + 32(s % 2) + l], bits 2s of qh[32g + l].
fn dot16_q6_k(wb: u32, xe: u32) -> f32 {
    let d = f16_lo(W[wb + 52u]);
    var acc = 0.0;
    for (var b = 0u; b < 16u; b++) {
        let g = b / 8u;
        let s = (b % 8u) / 2u;
        let l4 = 4u * (b % 2u);
        let lw = wb + 16u * g + 8u * (s % 2u) + l4;
        let hw = wb + 32u + 8u * g + l4;
        var sum = vec4<f16>(0.0h);
        for (var t = 0u; t < 4u; t++) {
            let low = (W[lw + t] >> (4u * (s / 2u))) & 0x0F0F0F0Fu;
            let high = (W[hw + t] >> (2u * s)) & 0x03030303u;
            sum += (vec4<f16>(unpack4xU8(low | (high << 4u))) - 32.0h) * xq(xe + 16u * b + 4u * t);
        }
        let sc = f32(bitcast<i32>(byte_at(wb + 48u, b) << 24u) >> 24u);
        acc += (d * sc) * hsum(sum) * xs(xe + 16u * b);
    }
    return acc;
}
