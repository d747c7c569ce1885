// Y = X·Wᵀ with each invocation holding a block of outputs in registers, for adapters that emulate
// a GPU on the CPU (SwiftShader, lavapipe): 8 weight rows × 8 tokens (`tokens8`) or × 1 token
// (`token1`), the K dimension walked 4 values at a time, the 8 rows' 4 values decoded once per
// step and used by every token of the block. No workgroup memory and no barrier.
//
//   W: (rows, cols) in the repacked block layout of quant_decode.wgsl (appended to this module)
//   X: (tokens, cols) f32
//   Y: (tokens, out_stride) f32; this dispatch writes columns row_offset .. row_offset + rows
//
// Why a kernel of its own: a CPU runs a workgroup as one thread stepping through its invocations
// a few lanes at a time, so workgroup memory is ordinary memory that costs what a storage load
// does, a barrier is a switch between the invocations' stacks (SwiftShader's coroutines), and a
// reduction across invocations (matvec.wgsl) is pure overhead. What counts there is loads per
// multiply-add: here 16 vec4 loads feed 64 dot products. Measured in Chromium on SwiftShader
// (2 cores), F32 weights: 608 tokens × 1536 × 384 in 167 ms (4.3 GFLOP/s) against 1059 ms for
// matmul.wgsl's 64 × 64 workgroup tiles; one token × 4096 × 4096 in 29 ms against 921 ms for
// matvec.wgsl. On a real GPU the same kernel would leave most of the chip idle at decode time
// (576 rows are 72 invocations), so GPUs keep matvec and the tiled matmul.
//
// Grid: invocation (x + y·groups_x)·WG + local index owns rows 8i .. 8i + 7, z a block of 8 tokens
// (`tokens8`) or one token (`token1`). Rows and tokens past the end are read clamped to the last
// one and not stored. cols must be a multiple of 4 (the host checks). Each output is a sum over
// cols / 4 steps of a 4-term dot product.
// Error bound (tests, src/gpu/ops/matmul.rs): γ(cols + 3) · Σ|W[r,c]·X[t,c]|, as matmul.wgsl's.

struct MatmulParams {
    rows: u32,
    cols: u32,
    groups_x: u32,
    row_offset: u32,
    tokens: u32,
    out_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

override WG: u32 = 16u;
override KIND: u32 = 0u;

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

// Values c .. c + 3 of the row whose blocks start at word `row_word` (c a multiple of 4, so the
// four values lie in one block and, for the nibble and byte formats, in one word).
fn w4(row_word: u32, c: u32) -> vec4<f32> {
    let be = block_elems();
    let wb = row_word + (c / be) * block_words();
    let i = c % be;
    switch KIND {
        case 0u: {
            return bitcast<vec4<f32>>(vec4(W[wb], W[wb + 1u], W[wb + 2u], W[wb + 3u]));
        }
        case 1u: {
            return vec4(unpack2x16float(W[wb]), unpack2x16float(W[wb + 1u]));
        }
        case 2u: {
            let a = W[wb];
            let b = W[wb + 1u];
            return bitcast<vec4<f32>>(vec4(a << 16u, a & 0xFFFF0000u, b << 16u, b & 0xFFFF0000u));
        }
        case 3u, 4u: {
            // Q4_0 / Q4_1: values 0..15 are the low nibbles of the 16 bytes, 16..31 the high ones.
            let q = W[wb + 1u + (i % 16u) / 4u] >> (4u * (i / 16u));
            let n = vec4(f32(q & 0xFu), f32((q >> 8u) & 0xFu), f32((q >> 16u) & 0xFu), f32((q >> 24u) & 0xFu));
            let dm = unpack2x16float(W[wb]);
            if (KIND == 3u) {
                return dm.x * (n - 8.0);
            }
            return dm.x * n + dm.y;
        }
        case 7u: {
            let q = W[wb + 1u + i / 4u];
            return vec4(i8_of(q, 0u), i8_of(q, 1u), i8_of(q, 2u), i8_of(q, 3u)) * f16_lo(W[wb]);
        }
        case 10u: {
            // Q4_K: 64-value chunks of 32 bytes, low nibbles for the first 32 values, high for the rest.
            let dd = unpack2x16float(W[wb]);
            let sm = k_scale_min(wb, i / 32u);
            let q = W[wb + 4u + 8u * (i / 64u) + (i % 32u) / 4u] >> (4u * ((i % 64u) / 32u));
            let n = vec4(f32(q & 0xFu), f32((q >> 8u) & 0xFu), f32((q >> 16u) & 0xFu), f32((q >> 24u) & 0xFu));
            return (dd.x * sm.x) * n - dd.y * sm.y;
        }
        default: {
            return vec4(value_of(wb, i), value_of(wb, i + 1u), value_of(wb, i + 2u), value_of(wb, i + 3u));
        }
    }
}

fn x4(at: u32) -> vec4<f32> {
    return vec4(X[at], X[at + 1u], X[at + 2u], X[at + 3u]);
}

// The word where row r's blocks start, r clamped to the last row.
fn row_word(r: u32) -> u32 {
    return min(r, P.rows - 1u) * (P.cols / block_elems() * block_words());
}

// Y[t, r .. r + 7] = (lo, hi), the values that fall inside Y.
fn store8(t: u32, r: u32, lo: vec4<f32>, hi: vec4<f32>) {
    if (t >= P.tokens) {
        return;
    }
    let base = t * P.out_stride + P.row_offset + r;
    for (var j = 0u; j < 4u; j++) {
        if (r + j < P.rows) {
            Y[base + j] = lo[j];
        }
        if (r + 4u + j < P.rows) {
            Y[base + 4u + j] = hi[j];
        }
    }
}

// The 8 rows' products with one token's vec4: (rows 0..3, rows 4..7).
struct Dots {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn dots(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>, b4: vec4<f32>, b5: vec4<f32>, b6: vec4<f32>, b7: vec4<f32>) -> Dots {
    return Dots(vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)), vec4(dot(a, b4), dot(a, b5), dot(a, b6), dot(a, b7)));
}

@compute @workgroup_size(WG)
fn tokens8(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r0 = ((group.x + group.y * P.groups_x) * WG + lid) * 8u;
    let t0 = group.z * 8u;
    if (r0 >= P.rows) {
        return;
    }
    let w0 = row_word(r0);
    let w1 = row_word(r0 + 1u);
    let w2 = row_word(r0 + 2u);
    let w3 = row_word(r0 + 3u);
    let w4_ = row_word(r0 + 4u);
    let w5 = row_word(r0 + 5u);
    let w6 = row_word(r0 + 6u);
    let w7 = row_word(r0 + 7u);
    let last = P.tokens - 1u;
    let x0 = min(t0, last) * P.cols;
    let x1 = min(t0 + 1u, last) * P.cols;
    let x2 = min(t0 + 2u, last) * P.cols;
    let x3 = min(t0 + 3u, last) * P.cols;
    let x4_ = min(t0 + 4u, last) * P.cols;
    let x5 = min(t0 + 5u, last) * P.cols;
    let x6 = min(t0 + 6u, last) * P.cols;
    let x7 = min(t0 + 7u, last) * P.cols;
    var a0 = Dots(vec4(0.0), vec4(0.0));
    var a1 = a0;
    var a2 = a0;
    var a3 = a0;
    var a4 = a0;
    var a5 = a0;
    var a6 = a0;
    var a7 = a0;
    for (var c = 0u; c < P.cols; c += 4u) {
        let b0 = w4(w0, c);
        let b1 = w4(w1, c);
        let b2 = w4(w2, c);
        let b3 = w4(w3, c);
        let b4 = w4(w4_, c);
        let b5 = w4(w5, c);
        let b6 = w4(w6, c);
        let b7 = w4(w7, c);
        var d = dots(x4(x0 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a0.lo += d.lo;
        a0.hi += d.hi;
        d = dots(x4(x1 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a1.lo += d.lo;
        a1.hi += d.hi;
        d = dots(x4(x2 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a2.lo += d.lo;
        a2.hi += d.hi;
        d = dots(x4(x3 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a3.lo += d.lo;
        a3.hi += d.hi;
        d = dots(x4(x4_ + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a4.lo += d.lo;
        a4.hi += d.hi;
        d = dots(x4(x5 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a5.lo += d.lo;
        a5.hi += d.hi;
        d = dots(x4(x6 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a6.lo += d.lo;
        a6.hi += d.hi;
        d = dots(x4(x7 + c), b0, b1, b2, b3, b4, b5, b6, b7);
        a7.lo += d.lo;
        a7.hi += d.hi;
    }
    store8(t0, r0, a0.lo, a0.hi);
    store8(t0 + 1u, r0, a1.lo, a1.hi);
    store8(t0 + 2u, r0, a2.lo, a2.hi);
    store8(t0 + 3u, r0, a3.lo, a3.hi);
    store8(t0 + 4u, r0, a4.lo, a4.hi);
    store8(t0 + 5u, r0, a5.lo, a5.hi);
    store8(t0 + 6u, r0, a6.lo, a6.hi);
    store8(t0 + 7u, r0, a7.lo, a7.hi);
}

@compute @workgroup_size(WG)
fn token1(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r0 = ((group.x + group.y * P.groups_x) * WG + lid) * 8u;
    let t = group.z;
    if (r0 >= P.rows) {
        return;
    }
    let w0 = row_word(r0);
    let w1 = row_word(r0 + 1u);
    let w2 = row_word(r0 + 2u);
    let w3 = row_word(r0 + 3u);
    let w4_ = row_word(r0 + 4u);
    let w5 = row_word(r0 + 5u);
    let w6 = row_word(r0 + 6u);
    let w7 = row_word(r0 + 7u);
    let x0 = min(t, P.tokens - 1u) * P.cols;
    var a = Dots(vec4(0.0), vec4(0.0));
    for (var c = 0u; c < P.cols; c += 4u) {
        let d = dots(x4(x0 + c), w4(w0, c), w4(w1, c), w4(w2, c), w4(w3, c), w4(w4_, c), w4(w5, c), w4(w6, c), w4(w7, c));
        a.lo += d.lo;
        a.hi += d.hi;
    }
    store8(t, r0, a.lo, a.hi);
}
