// Y = X·Wᵀ with each invocation holding a block of outputs in registers, for adapters that emulate
// a GPU on the CPU (SwiftShader, lavapipe): 8 weight rows × 8 tokens (`tokens8`) or × 1 token
// (`token1`), the K dimension walked 4 values at a time, the 8 rows' 4 values decoded once per
// step and used by every token of the block. No workgroup memory and no barrier.
//
//   W: (rows, cols) in the repacked block layout of quant_decode.wgsl (appended to this module)
//   X: (tokens, cols) f32
//   Y: (tokens, out_stride) f32; this dispatch writes columns row_offset .. row_offset + rows
//      through product_epilogue.wgsl (appended: bias, residual, output segments, and the two
//      fusions only this kernel runs, chosen by the override FUSE so that each is its own
//      pipeline: RMSNorm of X, the gain taken as X is read and the token's 1/rms gathered in the
//      same loop; gate and up rows, an invocation then holding 4 gate rows and their 4 up rows)
//
// Why a kernel of its own: a CPU runs a workgroup as one thread stepping through its invocations
// a few lanes at a time, so workgroup memory is ordinary memory that costs what a storage load
// does, a barrier is a switch between the invocations' stacks (SwiftShader's coroutines), and a
// reduction across invocations (matvec.wgsl) is pure overhead. What counts there is loads per
// multiply-add: here 16 vec4 loads feed 64 dot products, and each is one vector load (X and
// F32/F16/BF16 weights through vec4 bindings, below). Measured in Chromium on SwiftShader
// (2 cores), F32 weights: 608 tokens × 1536 × 384 in 167 ms (4.3 GFLOP/s) against 1059 ms for
// matmul.wgsl's 64 × 64 workgroup tiles; one token × 4096 × 4096 in 29 ms against 921 ms for
// matvec.wgsl. On a real GPU the same kernel would leave most of the chip idle at decode time
// (576 rows are 72 invocations), so GPUs keep matvec and the tiled matmul.
//
// Grid: invocation (x + y·groups_x)·WG + local index owns rows 8i .. 8i + 7 (gated: outputs
// 4i .. 4i + 3, from 4 gate and 4 up rows), z a block of 8 tokens
// (`tokens8`) or one token (`token1`). Rows and tokens past the end are read clamped to the last
// one and not stored. cols must be a multiple of 4 (the host checks). Each output is a sum over
// cols / 4 steps of a 4-term dot product.
// Error bound (tests, src/gpu/ops/matmul.rs): γ(cols + 3) · Σ|W[r,c]·X[t,c]|, as matmul.wgsl's.

override WG: u32 = 16u;
override KIND: u32 = 0u;
// FUSE_RMS_NORM and FUSE_GATED_* bits of product_epilogue.wgsl (the rest come in P.flags).
override FUSE: u32 = 0u;

@group(0) @binding(0) var<uniform> P: ProductParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
// X as vec4s, and (binding 7) W again as vec4s of words, because a CPU adapter loads a vec4
// in one go where four scalar loads cost four times as much: lavapipe (Mesa 22) runs every
// load of an address that differs by invocation as a loop over the SIMD lanes, and
// `bench matmul` measured 1.5–2x for Q4_1 and Q8_0 from X alone.
@group(0) @binding(2) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
// The RMS norm's gain (cols values), read when FUSE has FUSE_RMS_NORM.
@group(0) @binding(6) var<storage, read> G: array<f32>;
// With P.flags' WEIGHT_VEC4 (F32/F16/BF16 weights whose size is whole vec4s, else a
// placeholder): an F32 row starts at a multiple of 4 words (cols is one), so values c .. c + 3
// are one vec4; an F16/BF16 row at a multiple of 2 words, so they are one half of a vec4 (and
// where cols is a multiple of 8 an F16 row starts at a vec4: `tokens8` reads 8 values a load,
// 2x on ViT-sized products on lavapipe).
@group(0) @binding(7) var<storage, read> WV: array<vec4<u32>>;

override NORMED: bool = (FUSE & FUSE_RMS_NORM) != 0u;
override GATED: bool = (FUSE & (FUSE_GATED_SILU | FUSE_GATED_GELU_TANH)) != 0u;

// Four F16 values from two words.
fn f16x4(ab: vec2<u32>) -> vec4<f32> {
    return vec4(unpack2x16float(ab.x), unpack2x16float(ab.y));
}

// Values c .. c + 3 of the row whose blocks start at word `row_word` (c a multiple of 4, so the
// four values lie in one block and, for the nibble and byte formats, in one word).
fn w4(row_word: u32, c: u32) -> vec4<f32> {
    let be = block_elems();
    let wb = row_word + (c / be) * block_words();
    let i = c % be;
    switch KIND {
        case 0u: {
            if ((P.flags & WEIGHT_VEC4) != 0u) {
                return bitcast<vec4<f32>>(WV[wb / 4u]);
            }
            return bitcast<vec4<f32>>(vec4(W[wb], W[wb + 1u], W[wb + 2u], W[wb + 3u]));
        }
        case 1u, 2u: {
            var ab: vec2<u32>;
            if ((P.flags & WEIGHT_VEC4) != 0u) {
                let v = WV[wb / 4u];
                ab = select(v.xy, v.zw, (wb & 2u) != 0u);
            } else {
                ab = vec2(W[wb], W[wb + 1u]);
            }
            if (KIND == 1u) {
                return f16x4(ab);
            }
            return bitcast<vec4<f32>>(vec4(ab.x << 16u, ab.x & 0xFFFF0000u, ab.y << 16u, ab.y & 0xFFFF0000u));
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

// X[at .. at + 3], `at` a multiple of 4 (cols is one).
fn x4(at: u32) -> vec4<f32> {
    return X[at / 4u];
}

// The norm's gain for columns c .. c + 3 (ones without the norm).
fn g4(c: u32) -> vec4<f32> {
    if (NORMED) {
        return vec4(G[c], G[c + 1u], G[c + 2u], G[c + 3u]);
    }
    return vec4(1.0);
}

// Outputs an invocation stores per token (8 rows, or 4 gated pairs), and of the dispatch.
override PER_INVOCATION: u32 = select(8u, 4u, GATED);
fn outputs() -> u32 {
    return select(P.rows, P.rows / 2u, GATED);
}

// The word where accumulator j's row starts for an invocation whose outputs begin at o0: row
// o0 + j, or when gated the gate row o0 + j (j < 4) and the up row F + o0 + j − 4 (F = rows / 2);
// rows past the end clamped to the last one.
fn row_word(o0: u32, j: u32) -> u32 {
    var r = min(o0 + j, P.rows - 1u);
    if (GATED) {
        let f = P.rows / 2u;
        r = min(o0 + j % 4u, f - 1u) + f * (j / 4u);
    }
    return r * (P.cols / block_elems() * block_words());
}

// 1/rms of a token from its Σx² (1 without the norm).
fn norm_scale(ss: f32) -> f32 {
    if (NORMED) {
        return inverseSqrt(ss / f32(P.cols) + P.eps);
    }
    return 1.0;
}

// Token t's outputs o0 .. o0 + 7 (or the 4 gated ones) from its sums (lo, hi) and 1/rms `s`,
// those that fall inside Y.
fn store8(t: u32, o0: u32, lo: vec4<f32>, hi: vec4<f32>, s: f32) {
    if (t >= P.tokens) {
        return;
    }
    let n = outputs();
    for (var j = 0u; j < 4u; j++) {
        if (GATED) {
            if (o0 + j < n) {
                store_gated(t, o0 + j, lo[j] * s, hi[j] * s);
            }
        } else {
            if (o0 + j < n) {
                store_output(t, P.row_offset + o0 + j, lo[j] * s);
            }
            if (o0 + 4u + j < n) {
                store_output(t, P.row_offset + o0 + 4u + j, hi[j] * s);
            }
        }
    }
}

// The 8 rows' products with one token's vec4: (rows 0..3, rows 4..7).
struct Dots {
    lo: vec4<f32>,
    hi: vec4<f32>,
}

fn plus(a: Dots, b: Dots) -> Dots {
    return Dots(a.lo + b.lo, a.hi + b.hi);
}

fn dots(a: vec4<f32>, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>, b4: vec4<f32>, b5: vec4<f32>, b6: vec4<f32>, b7: vec4<f32>) -> Dots {
    return Dots(vec4(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3)), vec4(dot(a, b4), dot(a, b5), dot(a, b6), dot(a, b7)));
}

// An invocation's sums in `tokens8`: 8 tokens × 8 rows, and each token's Σx² (the norm's).
struct Block {
    a0: Dots,
    a1: Dots,
    a2: Dots,
    a3: Dots,
    a4: Dots,
    a5: Dots,
    a6: Dots,
    a7: Dots,
    ss0: vec4<f32>,
    ss1: vec4<f32>,
}

// Where the 8 tokens' rows of X start (clamped to the last token).
struct Tokens {
    x0: u32,
    x1: u32,
    x2: u32,
    x3: u32,
    x4: u32,
    x5: u32,
    x6: u32,
    x7: u32,
}

// Columns c .. c + 3 of the 8 tokens of a block.
struct Columns {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
}

// Adds columns c .. c + 3 of the 8 rows (b0 .. b7) times the 8 tokens' to the block; `mine` is
// where the tokens of the block this invocation loads start (`my_tokens` and `block_columns`,
// appended).
fn accumulate(acc: ptr<function, Block>, xs: Tokens, mine: vec2<u32>, c: u32, b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>, b4: vec4<f32>, b5: vec4<f32>, b6: vec4<f32>, b7: vec4<f32>) {
    let g = g4(c);
    let x = block_columns(xs, mine, c);
    let v0 = x.v0;
    let v1 = x.v1;
    let v2 = x.v2;
    let v3 = x.v3;
    let v4 = x.v4;
    let v5 = x.v5;
    let v6 = x.v6;
    let v7 = x.v7;
    if (NORMED) {
        (*acc).ss0 += vec4(dot(v0, v0), dot(v1, v1), dot(v2, v2), dot(v3, v3));
        (*acc).ss1 += vec4(dot(v4, v4), dot(v5, v5), dot(v6, v6), dot(v7, v7));
    }
    (*acc).a0 = plus((*acc).a0, dots(v0 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a1 = plus((*acc).a1, dots(v1 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a2 = plus((*acc).a2, dots(v2 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a3 = plus((*acc).a3, dots(v3 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a4 = plus((*acc).a4, dots(v4 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a5 = plus((*acc).a5, dots(v5 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a6 = plus((*acc).a6, dots(v6 * g, b0, b1, b2, b3, b4, b5, b6, b7));
    (*acc).a7 = plus((*acc).a7, dots(v7 * g, b0, b1, b2, b3, b4, b5, b6, b7));
}

// `tokens8`'s body (its entry point is appended): `lane` is the invocation's index in its
// subgroup where the module shares X through subgroups, else 0. An invocation past the last
// output computes clamped rows and stores nothing, so that every invocation of a subgroup takes
// part in its broadcasts (uniform control flow).
fn tokens8_block(group: vec3<u32>, lid: u32, lane: u32) {
    let o0 = ((group.x + group.y * P.groups_x) * WG + lid) * PER_INVOCATION;
    let t0 = group.z * 8u;
    let w0 = row_word(o0, 0u);
    let w1 = row_word(o0, 1u);
    let w2 = row_word(o0, 2u);
    let w3 = row_word(o0, 3u);
    let w4_ = row_word(o0, 4u);
    let w5 = row_word(o0, 5u);
    let w6 = row_word(o0, 6u);
    let w7 = row_word(o0, 7u);
    let last = P.tokens - 1u;
    let xs = Tokens(min(t0, last) * P.cols, min(t0 + 1u, last) * P.cols, min(t0 + 2u, last) * P.cols, min(t0 + 3u, last) * P.cols,
        min(t0 + 4u, last) * P.cols, min(t0 + 5u, last) * P.cols, min(t0 + 6u, last) * P.cols, min(t0 + 7u, last) * P.cols);
    let mine = my_tokens(t0, last, lane);
    let zero = Dots(vec4(0.0), vec4(0.0));
    var acc = Block(zero, zero, zero, zero, zero, zero, zero, zero, vec4(0.0), vec4(0.0));
    if (KIND == 1u && (P.flags & WEIGHT_VEC4) != 0u && P.cols % 8u == 0u) {
        // F16 rows that start at a vec4 (8 values): one load for two steps.
        for (var c = 0u; c < P.cols; c += 8u) {
            let i = c / 8u;
            let r0 = WV[w0 / 4u + i];
            let r1 = WV[w1 / 4u + i];
            let r2 = WV[w2 / 4u + i];
            let r3 = WV[w3 / 4u + i];
            let r4 = WV[w4_ / 4u + i];
            let r5 = WV[w5 / 4u + i];
            let r6 = WV[w6 / 4u + i];
            let r7 = WV[w7 / 4u + i];
            accumulate(&acc, xs, mine, c, f16x4(r0.xy), f16x4(r1.xy), f16x4(r2.xy), f16x4(r3.xy), f16x4(r4.xy), f16x4(r5.xy), f16x4(r6.xy), f16x4(r7.xy));
            accumulate(&acc, xs, mine, c + 4u, f16x4(r0.zw), f16x4(r1.zw), f16x4(r2.zw), f16x4(r3.zw), f16x4(r4.zw), f16x4(r5.zw), f16x4(r6.zw), f16x4(r7.zw));
        }
    } else {
        for (var c = 0u; c < P.cols; c += 4u) {
            accumulate(&acc, xs, mine, c, w4(w0, c), w4(w1, c), w4(w2, c), w4(w3, c), w4(w4_, c), w4(w5, c), w4(w6, c), w4(w7, c));
        }
    }
    store8(t0, o0, acc.a0.lo, acc.a0.hi, norm_scale(acc.ss0[0]));
    store8(t0 + 1u, o0, acc.a1.lo, acc.a1.hi, norm_scale(acc.ss0[1]));
    store8(t0 + 2u, o0, acc.a2.lo, acc.a2.hi, norm_scale(acc.ss0[2]));
    store8(t0 + 3u, o0, acc.a3.lo, acc.a3.hi, norm_scale(acc.ss0[3]));
    store8(t0 + 4u, o0, acc.a4.lo, acc.a4.hi, norm_scale(acc.ss1[0]));
    store8(t0 + 5u, o0, acc.a5.lo, acc.a5.hi, norm_scale(acc.ss1[1]));
    store8(t0 + 6u, o0, acc.a6.lo, acc.a6.hi, norm_scale(acc.ss1[2]));
    store8(t0 + 7u, o0, acc.a7.lo, acc.a7.hi, norm_scale(acc.ss1[3]));
}

// `token1`'s body (its entry point is appended).
fn token1_block(group: vec3<u32>, lid: u32) {
    let o0 = ((group.x + group.y * P.groups_x) * WG + lid) * PER_INVOCATION;
    let t = group.z;
    if (o0 >= outputs()) {
        return;
    }
    let w0 = row_word(o0, 0u);
    let w1 = row_word(o0, 1u);
    let w2 = row_word(o0, 2u);
    let w3 = row_word(o0, 3u);
    let w4_ = row_word(o0, 4u);
    let w5 = row_word(o0, 5u);
    let w6 = row_word(o0, 6u);
    let w7 = row_word(o0, 7u);
    let x0 = min(t, P.tokens - 1u) * P.cols;
    var a = Dots(vec4(0.0), vec4(0.0));
    var ss = 0.0;
    for (var c = 0u; c < P.cols; c += 4u) {
        let v = x4(x0 + c);
        if (NORMED) {
            ss += dot(v, v);
        }
        a = plus(a, dots(v * g4(c), w4(w0, c), w4(w1, c), w4(w2, c), w4(w3, c), w4(w4_, c), w4(w5, c), w4(w6, c), w4(w7, c)));
    }
    store8(t, o0, a.lo, a.hi, norm_scale(ss));
}
