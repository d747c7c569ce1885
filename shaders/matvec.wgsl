// Matrix-vector product y = W·x, the decode-time workhorse, for every weight type.
//
//   W: (rows, cols) in the repacked block layout of quant.wgsl (appended to this module)
//   x: (cols) f32      y: (row_offset + rows) f32; this dispatch writes y[row_offset ..][..rows]
//
// One workgroup per row. Invocation `lid` takes elements (f32) or blocks (quantized) lid,
// lid + WG, … of the row and dots them with x, decoding in registers; the WG partial sums are
// then added in a log2(WG)-step tree in workgroup memory. Rows beyond 65535 fold into the grid's
// y dimension. A weight larger than one storage binding is split by rows into parts, one
// dispatch each (row_offset says where a part's rows land in y).
// Error bound (tests): γ(per-invocation terms + log2(WG) + 3) · Σ|W[r,c]·x[c]|.

struct MatvecParams {
    rows: u32,
    cols: u32,
    // Workgroups along x in the dispatch grid.
    groups_x: u32,
    row_offset: u32,
}

// Invocations per workgroup; a power of two ≤ MAX_WG, set from Rust.
override WG: u32 = 64u;
const MAX_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: MatvecParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;

var<workgroup> partial: array<f32, MAX_WG>;

fn row_of(group: vec3<u32>) -> u32 {
    return group.x + group.y * P.groups_x;
}

// Adds the workgroup's partial sums and writes row `row`. Called in uniform control flow.
fn finish(row: u32, lid: u32, acc: f32) {
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u && row < P.rows) {
        Y[P.row_offset + row] = partial[0];
    }
}

@compute @workgroup_size(WG)
fn matvec_f32(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let base = row * P.cols;
        for (var c = lid; c < P.cols; c += WG) {
            acc += bitcast<f32>(W[base + c]) * X[c];
        }
    }
    finish(row, lid, acc);
}

// F16 and BF16: two values per word; cols is even (checked on the host).
@compute @workgroup_size(WG)
fn matvec_f16(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let base = row * P.cols / 2u;
        for (var c = lid; c < P.cols / 2u; c += WG) {
            let w = unpack2x16float(W[base + c]);
            acc += w.x * X[2u * c] + w.y * X[2u * c + 1u];
        }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_bf16(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let base = row * P.cols / 2u;
        for (var c = lid; c < P.cols / 2u; c += WG) {
            let w = W[base + c];
            acc += bitcast<f32>(w << 16u) * X[2u * c] + bitcast<f32>(w & 0xFFFF0000u) * X[2u * c + 1u];
        }
    }
    finish(row, lid, acc);
}

// Quantized types: BLOCK values per block of WORDS words; one entry point per type, all alike.
fn blocks_per_row(block: u32) -> u32 {
    return P.cols / block;
}

@compute @workgroup_size(WG)
fn matvec_q4_0(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(32u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q4_0((row * nb + b) * 5u, b * 32u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q4_1(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(32u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q4_1((row * nb + b) * 5u, b * 32u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q5_0(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(32u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q5_0((row * nb + b) * 6u, b * 32u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q5_1(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(32u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q5_1((row * nb + b) * 6u, b * 32u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q8_0(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(32u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q8_0((row * nb + b) * 9u, b * 32u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q2_k(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(256u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q2_k((row * nb + b) * 21u, b * 256u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q3_k(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(256u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q3_k((row * nb + b) * 28u, b * 256u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q4_k(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(256u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q4_k((row * nb + b) * 36u, b * 256u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q5_k(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(256u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q5_k((row * nb + b) * 44u, b * 256u); }
    }
    finish(row, lid, acc);
}

@compute @workgroup_size(WG)
fn matvec_q6_k(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = row_of(group);
    var acc = 0.0;
    if (row < P.rows) {
        let nb = blocks_per_row(256u);
        for (var b = lid; b < nb; b += WG) { acc += dot_q6_k((row * nb + b) * 53u, b * 256u); }
    }
    finish(row, lid, acc);
}
