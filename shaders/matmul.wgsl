// Y = X·Wᵀ for many tokens (prefill, encoder passes): a shared-memory tiled matrix product.
//
//   W: (rows, cols) in the repacked block layout of quant_decode.wgsl (appended to this module;
//      `value_of` decodes one value, `block_elems`/`block_words` give the layout of KIND)
//   X: (tokens, cols) f32
//   Y: (tokens, out_stride) f32; this dispatch writes columns row_offset .. row_offset + rows
//
// Grid: workgroup (x + y·groups_x) owns BN weight rows, z a tile of BM tokens: a BM × BN tile of
// Y. The K dimension (cols) goes in steps of BK = 32 values: one block of the 32-value formats, a
// sub-block of the 256-value K-quants. Each step the workgroup copies the BM × BK values of X and
// decodes the BN × BK values of W once into workgroup memory (zeros past the last token, row or
// column), and each invocation then adds BK products into its TM × TN outputs (tokens
// tm, tm + BM/TM, …; rows tn, tn + BN/TN, …: neighbouring invocations touch neighbouring words
// of Y and of the W tile). A weight value is thus decoded once per BM tokens, against once per 8
// in matvec.wgsl. Accumulation is in f32, one running sum per output, in column order.
//
// The tile (BM, BN, TM, TN) is a set of overrides chosen on the host (src/gpu/ops/matmul.rs,
// `Tile`), with WG = (BM / TM)·(BN / TN) invocations and (BM + BN)·BK·4 bytes of workgroup memory
// (64 × 64: 16 KiB, within SwiftShader's 32 KiB and 256 invocations).
// A weight larger than one storage binding is split by rows into parts, one dispatch each.
// Error bound (tests, src/gpu/ops/matmul.rs): γ(cols + 3) · Σ|W[r,c]·X[t,c]|.

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

override WG: u32 = 256u;
override KIND: u32 = 0u;
// Tokens and weight rows per workgroup tile; tokens and rows per invocation (TM, TN ≤ 8).
override BM: u32 = 64u;
override BN: u32 = 64u;
override TM: u32 = 4u;
override TN: u32 = 4u;
const BK: u32 = 32u;
const MAX_T: u32 = 8u;
override XS_LEN: u32 = BM * BK;
override WS_LEN: u32 = BN * BK;

@group(0) @binding(0) var<uniform> P: MatmulParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

// (BK, BM): X tile, column-major, so a column's BM tokens are contiguous.
var<workgroup> xs: array<f32, XS_LEN>;
// (BK, BN): W tile decoded to f32.
var<workgroup> ws: array<f32, WS_LEN>;

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = (group.x + group.y * P.groups_x) * BN;
    let tok0 = group.z * BM;
    // Invocation (tm, tn) of the (BM / TM) × (BN / TN) grid.
    let gn = BN / TN;
    let gm = BM / TM;
    let tn = lid % gn;
    let tm = lid / gn;
    let be = block_elems();
    let row_words = P.cols / be * block_words();
    var acc: array<f32, 64>;  // MAX_T · MAX_T; [i · TN + j]: token tm + i·gm, row tn + j·gn
    // Uniform per workgroup: every barrier below is in uniform control flow.
    let steps = (P.cols + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let k0 = s * BK;
        for (var idx = lid; idx < BM * BK; idx += WG) {
            let k = idx % BK;
            let m = idx / BK;
            let t = tok0 + m;
            let c = k0 + k;
            var v = 0.0;
            if (t < P.tokens && c < P.cols) {
                v = X[t * P.cols + c];
            }
            xs[k * BM + m] = v;
        }
        for (var idx = lid; idx < BN * BK; idx += WG) {
            let k = idx % BK;
            let n = idx / BK;
            let r = row0 + n;
            let c = k0 + k;
            var v = 0.0;
            if (r < P.rows && c < P.cols) {
                v = value_of(r * row_words + (c / be) * block_words(), c % be);
            }
            ws[k * BN + n] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            var a: array<f32, MAX_T>;
            var b: array<f32, MAX_T>;
            for (var i = 0u; i < TM; i++) {
                a[i] = xs[k * BM + tm + i * gm];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = ws[k * BN + tn + j * gn];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * TN + j] += a[i] * b[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < TM; i++) {
        let t = tok0 + tm + i * gm;
        for (var j = 0u; j < TN; j++) {
            let r = row0 + tn + j * gn;
            if (t < P.tokens && r < P.rows) {
                Y[t * P.out_stride + P.row_offset + r] = acc[i * TN + j];
            }
        }
    }
}
