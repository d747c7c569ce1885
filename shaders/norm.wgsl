// Row normalisations, one workgroup per row of `cols` values:
//   rms_norm    y = x / sqrt(mean(x²) + eps) · g
//   layer_norm  y = (x − mean(x)) / sqrt(var(x) + eps) · g + b      (two-pass: mean, then variance)
// Each invocation sums a strided slice, then a tree reduction in workgroup memory. The `…_rows`
// entry points take a row per invocation instead, with no barrier (CPU adapters: see
// `Reduction` in src/gpu/ops/mod.rs); they sum in four interleaved partial sums.
//   X: (rows, cols)   G: (cols)   B: (cols), ignored by rms_norm   Y: (rows, cols)

struct NormParams {
    rows: u32,
    cols: u32,
    groups_x: u32,
    eps: f32,
}

override WG: u32 = 256u;
const MAX_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: NormParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read> B: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;

var<workgroup> partial: array<f32, MAX_WG>;

// The sum over the workgroup of each invocation's `value`; every invocation gets the total.
fn workgroup_sum(lid: u32, value: f32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG)
fn rms_norm(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = group.x + group.y * P.groups_x;
    let live = row < P.rows;
    let base = row * P.cols;
    var ss = 0.0;
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { ss += X[base + c] * X[base + c]; }
    }
    let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(P.cols) + P.eps);
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { Y[base + c] = X[base + c] * inv * G[c]; }
    }
}

// LayerNorm of one row per workgroup, with its bias B or without one (ModernBERT's norms).
fn layer_norm_row(group: vec3<u32>, lid: u32, biased: bool) {
    let row = group.x + group.y * P.groups_x;
    let live = row < P.rows;
    let base = row * P.cols;
    var s = 0.0;
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { s += X[base + c]; }
    }
    let mean = workgroup_sum(lid, s) / f32(P.cols);
    var ss = 0.0;
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { let d = X[base + c] - mean; ss += d * d; }
    }
    let inv = inverseSqrt(workgroup_sum(lid, ss) / f32(P.cols) + P.eps);
    if (live) {
        for (var c = lid; c < P.cols; c += WG) { Y[base + c] = (X[base + c] - mean) * inv * G[c] + select(0.0, B[c], biased); }
    }
}

// Σ (x − shift) over the row at `base`, or Σ (x − shift)² with `square`.
fn row_sum(base: u32, shift: f32, square: bool) -> f32 {
    var acc = vec4(0.0);
    let n4 = P.cols / 4u * 4u;
    for (var c = 0u; c < n4; c += 4u) {
        let d = vec4(X[base + c], X[base + c + 1u], X[base + c + 2u], X[base + c + 3u]) - shift;
        acc += select(d, d * d, square);
    }
    var tail = 0.0;
    for (var c = n4; c < P.cols; c++) {
        let d = X[base + c] - shift;
        tail += select(d, d * d, square);
    }
    return ((acc.x + acc.y) + (acc.z + acc.w)) + tail;
}

// One row by one invocation: RMSNorm (`layer` false) or LayerNorm with or without its bias.
fn norm_row(group: vec3<u32>, lid: u32, layer: bool, biased: bool) {
    let row = (group.x + group.y * P.groups_x) * WG + lid;
    if (row >= P.rows) {
        return;
    }
    let base = row * P.cols;
    let mean = select(0.0, row_sum(base, 0.0, false) / f32(P.cols), layer);
    let inv = inverseSqrt(row_sum(base, mean, true) / f32(P.cols) + P.eps);
    for (var c = 0u; c < P.cols; c++) {
        Y[base + c] = (X[base + c] - mean) * inv * G[c] + select(0.0, B[c], biased);
    }
}

@compute @workgroup_size(WG)
fn rms_norm_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    norm_row(group, lid, false, false);
}

@compute @workgroup_size(WG)
fn layer_norm_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    norm_row(group, lid, true, true);
}

@compute @workgroup_size(WG)
fn layer_norm_unbiased_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    norm_row(group, lid, true, false);
}

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    layer_norm_row(group, lid, true);
}

@compute @workgroup_size(WG)
fn layer_norm_unbiased(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    layer_norm_row(group, lid, false);
}
