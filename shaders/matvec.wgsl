// Y = X·Wᵀ for every weight type: matrix-vector products at decode time (one token) and small
// matrix products at prefill (tokens in tiles of TM), weights decoded in registers.
//
//   W: (rows, cols) in the repacked block layout of quant_decode.wgsl (appended to this module,
//      with the block dot products `dot_block` and the activations' binding: quant_dot.wgsl
//      for the f32 module, quant_dot_f16.wgsl for the f16 one)
//   X: (tokens, cols): f32 (quant_dot.wgsl), or staged as f16 with a scale per 32 values
//      (quant_dot_f16.wgsl, stage_f16.wgsl)
//   Y: (tokens, out_stride) f32; this dispatch writes columns row_offset .. row_offset + rows
//      through product_epilogue.wgsl (appended: bias, residual, output segments)
//
// Grid: workgroup (x + y·groups_x) holds WG / TPR weight rows, z a tile of TM tokens. The TPR
// invocations of a row take its blocks lane, lane + TPR, … (elements for F32, word pairs for
// F16/BF16), decode each once per token of the tile and accumulate one f32 sum per token (the f16
// module's block products come back as f32, so long rows add up in f32); each row's TPR partial
// sums are then added in a log2(TPR)-step tree. Weights are read from memory once per tile. TPR
// (threads per row) is chosen on the host from the row length, so that short rows (576 values:
// 18 blocks) do not leave most of a workgroup idle.
// A weight larger than one storage binding is split by rows into parts, one dispatch each.
// KIND (an override, so each weight type gets its own specialised pipeline) picks the decoder.
// Error bound (tests, src/gpu/ops/matvec.rs): f32 module γ(products per invocation + log2(TPR)
// + 3) · Σ|W[r,c]·x[c]|; the f16 module adds γ_f16 of a block's chain (error_bound_f16).

override WG: u32 = 64u;
override KIND: u32 = 0u;
// Threads per row: a power of two dividing WG.
override TPR: u32 = 64u;
const MAX_WG: u32 = 256u;
const TM: u32 = 8u;

// KIND values (src/gpu/ops/matvec.rs, `kind`).
const F32: u32 = 0u;
const F16: u32 = 1u;
const BF16: u32 = 2u;
const Q4_0: u32 = 3u;
const Q4_1: u32 = 4u;
const Q5_0: u32 = 5u;
const Q5_1: u32 = 6u;
const Q8_0: u32 = 7u;
const Q2_K: u32 = 8u;
const Q3_K: u32 = 9u;
const Q4_K: u32 = 10u;
const Q5_K: u32 = 11u;
const Q6_K: u32 = 12u;

@group(0) @binding(0) var<uniform> P: ProductParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
// Binding 2 (the activations) is declared with `dot_block`.
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

var<workgroup> partial: array<f32, MAX_WG * TM>;

@compute @workgroup_size(WG)
fn matvec(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let lane = lid % TPR;
    let row = (group.x + group.y * P.groups_x) * (WG / TPR) + lid / TPR;
    let tok0 = group.z * TM;
    // Uniform per workgroup: the loops and barriers below stay in uniform control flow.
    let nt = min(TM, P.tokens - min(tok0, P.tokens));
    var acc: array<f32, TM>;
    if (row < P.rows) {
        let nb = P.cols / block_elems();
        let bw = block_words();
        for (var b = lane; b < nb; b += TPR) {
            let wb = (row * nb + b) * bw;
            let xb = b * block_elems();
            for (var t = 0u; t < nt; t++) {
                acc[t] += dot_block(wb, (tok0 + t) * P.cols + xb);
            }
        }
    }
    for (var t = 0u; t < nt; t++) {
        partial[t * WG + lid] = acc[t];
    }
    workgroupBarrier();
    for (var stride = TPR / 2u; stride > 0u; stride /= 2u) {
        if (lane < stride) {
            for (var t = 0u; t < nt; t++) {
                partial[t * WG + lid] += partial[t * WG + lid + stride];
            }
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < P.rows) {
        for (var t = 0u; t < nt; t++) {
            store_output(tok0 + t, P.row_offset + row, partial[t * WG + lid]);
        }
    }
}
