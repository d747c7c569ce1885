// Y = X·Wᵀ for many tokens (prefill, encoder passes): a shared-memory tiled matrix product.
//
//   W: (rows, cols) in the repacked block layout of quant_decode.wgsl (appended to this module;
//      `value_of` decodes one value, `block_elems`/`block_words` give the layout of KIND)
//   X: (tokens, cols) f32
//   Y: (tokens, out_stride) f32; this dispatch writes columns row_offset .. row_offset + rows
//      through product_epilogue.wgsl (appended: bias, residual, output segments)
//
// Grid: workgroup (x + y·groups_x) owns BN weight rows, z a tile of BM tokens: a BM × BN tile of
// Y. The K dimension (cols) goes in steps of BK = 32 values: one block of the 32-value formats, a
// sub-block of the 256-value K-quants. Each step the workgroup copies the BM × BK values of X and
// decodes the BN × BK values of W once into workgroup memory (zeros past the last token, row or
// column), and each invocation then adds BK products into its 4 × 4 outputs (4 tokens × 4 rows,
// one vec4 of rows per token: 2 vec4 loads per 16 multiply-adds, all in registers). A weight
// value is thus decoded once per BM tokens, against once per 8 in matvec.wgsl. Accumulation is
// in f32, one running sum per output, in column order.
//
// The tile (BM, BN: multiples of 4) is a pair of overrides chosen on the host
// (src/gpu/ops/matmul.rs, `Tile`), with WG = (BM / 4)·(BN / 4) invocations and (BM + BN)·BK·4
// bytes of workgroup memory (64 × 64: 256 invocations and 16 KiB, SwiftShader's limits being 256
// and 32 KiB). Why a fixed 4 × 4 per invocation rather than TM × TN overrides: the first version
// had them, with private arrays indexed in loops (acc[i·TN + j]), and ran up to 2x slower on
// lavapipe than these four vec4 sums.
// A weight larger than one storage binding is split by rows into parts, one dispatch each.
// Error bound (tests, src/gpu/ops/matmul.rs): γ(cols + 3) · Σ|W[r,c]·X[t,c]|.

override WG: u32 = 256u;
override KIND: u32 = 0u;
// Tokens and weight rows per workgroup tile, multiples of 4.
override BM: u32 = 64u;
override BN: u32 = 64u;
const BK: u32 = 32u;
// vec4s of tokens and of rows per tile.
override QM: u32 = BM / 4u;
override QN: u32 = BN / 4u;
override XS_LEN: u32 = QM * BK;
override WS_LEN: u32 = QN * BK;

@group(0) @binding(0) var<uniform> P: ProductParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

// (BK, BM / 4): the X tile, xs[k·QM + m] = tokens 4m .. 4m + 3 of column k.
var<workgroup> xs: array<vec4<f32>, XS_LEN>;
// (BK, BN / 4): the W tile decoded to f32, ws[k·QN + n] = rows 4n .. 4n + 3 of column k.
var<workgroup> ws: array<vec4<f32>, WS_LEN>;

// X[t, c], or 0 past the last token.
fn x_at(t: u32, c: u32) -> f32 {
    return select(0.0, X[min(t, P.tokens - 1u) * P.cols + c], t < P.tokens);
}

// W[r, c] decoded, or 0 past the last row.
fn w_at(r: u32, c: u32, row_words: u32, be: u32) -> f32 {
    if (r >= P.rows) {
        return 0.0;
    }
    return value_of(r * row_words + (c / be) * block_words(), c % be);
}

@compute @workgroup_size(WG)
fn matmul(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row0 = (group.x + group.y * P.groups_x) * BN;
    let tok0 = group.z * BM;
    // Invocation (tm, tn) of the QM × QN grid: tokens tok0 + 4tm + i, rows row0 + 4tn + j.
    let tn = lid % QN;
    let tm = lid / QN;
    let be = block_elems();
    let row_words = P.cols / be * block_words();
    var acc0 = vec4(0.0);
    var acc1 = vec4(0.0);
    var acc2 = vec4(0.0);
    var acc3 = vec4(0.0);
    // Uniform per workgroup: every barrier below is in uniform control flow.
    let steps = (P.cols + BK - 1u) / BK;
    for (var s = 0u; s < steps; s++) {
        let k0 = s * BK;
        // Neighbouring invocations take neighbouring columns: contiguous reads of X and of W.
        for (var idx = lid; idx < QM * BK; idx += WG) {
            let c = k0 + idx % BK;
            let t = tok0 + 4u * (idx / BK);
            var v = vec4(0.0);
            if (c < P.cols) {
                v = vec4(x_at(t, c), x_at(t + 1u, c), x_at(t + 2u, c), x_at(t + 3u, c));
            }
            xs[(idx % BK) * QM + idx / BK] = v;
        }
        for (var idx = lid; idx < QN * BK; idx += WG) {
            let c = k0 + idx % BK;
            let r = row0 + 4u * (idx / BK);
            var v = vec4(0.0);
            if (c < P.cols) {
                v = vec4(w_at(r, c, row_words, be), w_at(r + 1u, c, row_words, be), w_at(r + 2u, c, row_words, be), w_at(r + 3u, c, row_words, be));
            }
            ws[(idx % BK) * QN + idx / BK] = v;
        }
        workgroupBarrier();
        for (var k = 0u; k < BK; k++) {
            let a = xs[k * QM + tm];
            let b = ws[k * QN + tn];
            acc0 += a.x * b;
            acc1 += a.y * b;
            acc2 += a.z * b;
            acc3 += a.w * b;
        }
        workgroupBarrier();
    }
    store(tok0 + 4u * tm, row0 + 4u * tn, acc0);
    store(tok0 + 4u * tm + 1u, row0 + 4u * tn, acc1);
    store(tok0 + 4u * tm + 2u, row0 + 4u * tn, acc2);
    store(tok0 + 4u * tm + 3u, row0 + 4u * tn, acc3);
}

// Y[t, r .. r + 3] = v, the values that fall inside Y.
fn store(t: u32, r: u32, v: vec4<f32>) {
    if (t >= P.tokens) {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if (r + j < P.rows) {
            store_output(t, P.row_offset + r + j, v[j]);
        }
    }
}
