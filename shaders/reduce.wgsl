// Row reductions, one workgroup per row of `cols` values:
//   softmax  y = exp(x − max(x)) / Σ exp(x − max(x))   (max-subtracted: no overflow for large x)
//   argmax   out[row] = the first index of the largest value (NaN and -inf never win; a row
//            without a finite value gives 0), as a u32
//
//   X: (rows, cols)   Y: (rows, cols) for softmax   I: (rows) u32 for argmax

struct ReduceParams {
    rows: u32,
    cols: u32,
    groups_x: u32,
    _pad: u32,
}

override WG: u32 = 256u;
const MAX_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: ReduceParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@group(0) @binding(3) var<storage, read_write> I: array<u32>;

var<workgroup> values: array<f32, MAX_WG>;
var<workgroup> indices: array<u32, MAX_WG>;

fn reduce_max(lid: u32, v: f32) -> f32 {
    values[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) { values[lid] = max(values[lid], values[lid + stride]); }
        workgroupBarrier();
    }
    let m = values[0];
    workgroupBarrier();
    return m;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    values[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) { values[lid] += values[lid + stride]; }
        workgroupBarrier();
    }
    let s = values[0];
    workgroupBarrier();
    return s;
}

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group.x + group.y * P.groups_x;
    let live = row < P.rows;
    let base = row * P.cols;
    var m = bitcast<f32>(0xFF7FFFFFu); // -f32::MAX (Tint rejects the decimal literal as out of range)
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { m = max(m, X[base + c]); }
    }
    m = reduce_max(lid, m);
    var s = 0.0;
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { s += exp(X[base + c] - m); }
    }
    let inv = 1.0 / reduce_sum(lid, s);
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { Y[base + c] = exp(X[base + c] - m) * inv; }
    }
}

// (value, index) a beats b: larger value, or equal value and smaller index; NaN never beats.
fn beats(va: f32, ia: u32, vb: f32, ib: u32) -> bool {
    return va > vb || (va == vb && ia < ib);
}

@compute @workgroup_size(WG)
fn argmax(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group.x + group.y * P.groups_x;
    let base = row * P.cols;
    // -f32::MAX (WGSL rejects constant infinities): every finite value but -MAX beats it, and
    // -MAX itself wins through the index.
    var best = bitcast<f32>(0xFF7FFFFFu);
    var best_i = 0xFFFFFFFFu;
    if (row < P.rows) {
        for (var c = lid; c < P.cols; c += WG) {
            let v = X[base + c];
            if (beats(v, c, best, best_i)) { best = v; best_i = c; }
        }
    }
    values[lid] = best;
    indices[lid] = best_i;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride && beats(values[lid + stride], indices[lid + stride], values[lid], indices[lid])) {
            values[lid] = values[lid + stride];
            indices[lid] = indices[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u && row < P.rows) {
        // A row without a finite value: index 0.
        I[row] = select(indices[0], 0u, indices[0] == 0xFFFFFFFFu);
    }
}
