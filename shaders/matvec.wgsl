// Matrix-vector product y = W·x with f32 weights.
//
//   W: (rows, cols) row-major f32      x: (cols) f32      y: (rows) f32
//
// One workgroup per row. Invocation `lid` accumulates the strided slice cols lid, lid+WG, …
// sequentially (coalesced: neighbouring invocations read neighbouring words), then the workgroup
// adds its WG partial sums in a log2(WG)-step tree in workgroup memory. Rows beyond 65535 fold
// into the grid's y dimension: row = workgroup_id.x + workgroup_id.y * groups_x.
// Error bound (used by the test): γ(ceil(cols/WG) + log2(WG) + 1) · Σ|W[r,c]·x[c]|.

struct MatvecParams {
    rows: u32,
    cols: u32,
    // Workgroups along x in the dispatch grid.
    groups_x: u32,
    _pad: u32,
}

// Invocations per workgroup; a power of two ≤ MAX_WG, set from Rust.
override WG: u32 = 256u;
const MAX_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> params: MatvecParams;
@group(0) @binding(1) var<storage, read> w: array<f32>;       // (rows, cols)
@group(0) @binding(2) var<storage, read> x: array<f32>;       // (cols)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (rows)

var<workgroup> partial: array<f32, MAX_WG>;

@compute @workgroup_size(WG)
fn matvec_f32(
    @builtin(workgroup_id) group: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = group.x + group.y * params.groups_x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if (row >= params.rows) {
        return;
    }
    let base = row * params.cols;
    var acc = 0.0;
    for (var c = lid; c < params.cols; c += WG) {
        acc += w[base + c] * x[c];
    }
    partial[lid] = acc;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[row] = partial[0];
    }
}
