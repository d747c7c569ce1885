
// What a product does with each sum X·Wᵀ[t, r] on its way to Y: shared by matvec.wgsl,
// matmul.wgsl and matmul_blocked.wgsl (appended to each, with activations.wgsl). The host's side
// is `Epilogue` in src/gpu/ops/matmul.rs.
//
//   bias (FUSE_BIAS):         + BIAS[r], r a row of the whole weight
//   residual (FUSE_RESIDUAL): + RES at Y's own index (a residual connection)
//   output segments:          the whole weight's rows (a joint matrix: Q, K and V stacked) split
//                             at rows split1 ≤ split2 into up to three matrices, each written as
//                             its own (tokens, rows) block, one after the other in Y: row r of
//                             segment [a, b) lands at tokens·a + t·(b − a) + (r − a). With
//                             split1 = split2 = out_stride there is one segment, Y[t·out_stride + r].
//   gated (FUSE_GATED_*, matmul_blocked.wgsl only): the weight is [gate; up] (2F rows) and Y
//                             (tokens, F) holds act(gate row o + bias) · (up row F + o + bias).
//   RMS norm (FUSE_RMS_NORM, matmul_blocked.wgsl only): X is taken as RMSNorm(X) with gain G
//                             (x·G / √(mean(x²) + eps)): the kernel multiplies X by G as it
//                             reads it and scales each sum by the token's 1/rms, gathered in the
//                             same loop, before anything above.

struct ProductParams {
    // Rows of this dispatch's part of W, and the part's first row in the whole weight.
    rows: u32,
    cols: u32,
    groups_x: u32,
    row_offset: u32,
    tokens: u32,
    // Output values per token (F when gated).
    out_stride: u32,
    split1: u32,
    split2: u32,
    flags: u32,
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

// `flags` bits (src/gpu/ops/matmul.rs, `Epilogue::flags`).
const FUSE_BIAS: u32 = 1u;
const FUSE_RESIDUAL: u32 = 2u;
const FUSE_RMS_NORM: u32 = 4u;
const FUSE_GATED_SILU: u32 = 8u;
const FUSE_GATED_GELU_TANH: u32 = 16u;
// The blocked kernel's binding 7 holds the weight (as vec4s of words), not a placeholder.
const WEIGHT_VEC4: u32 = 32u;

@group(0) @binding(4) var<storage, read> BIAS: array<f32>;
@group(0) @binding(5) var<storage, read> RES: array<f32>;

// Where row r (of the whole weight) of token t goes in Y.
fn out_index(t: u32, r: u32) -> u32 {
    if (r < P.split1) {
        return t * P.split1 + r;
    }
    if (r < P.split2) {
        return P.tokens * P.split1 + t * (P.split2 - P.split1) + (r - P.split1);
    }
    return P.tokens * P.split2 + t * (P.out_stride - P.split2) + (r - P.split2);
}

fn biased(r: u32, v: f32) -> f32 {
    if ((P.flags & FUSE_BIAS) != 0u) {
        return v + BIAS[r];
    }
    return v;
}

fn with_residual(i: u32, v: f32) -> f32 {
    if ((P.flags & FUSE_RESIDUAL) != 0u) {
        return v + RES[i];
    }
    return v;
}

// Stores the sum `v` of row r (of the whole weight) for token t.
fn store_output(t: u32, r: u32, v: f32) {
    let i = out_index(t, r);
    Y[i] = with_residual(i, biased(r, v));
}

// Stores output o of token t of a gated product from its gate sum g and up sum u.
fn store_gated(t: u32, o: u32, g: f32, u: f32) {
    let f = P.out_stride;
    let gb = biased(o, g);
    var a = gb * sigmoid(gb);
    if ((P.flags & FUSE_GATED_GELU_TANH) != 0u) {
        a = gelu_tanh_of(gb);
    }
    let i = t * f + o;
    Y[i] = with_residual(i, a * biased(f + o, u));
}
