// Sentence embeddings: mean over each sequence's valid tokens, then L2 normalisation.
//   X: (batch, seq_len, hidden)   L: (batch) u32 valid tokens   O: (batch, hidden)
// One workgroup per sequence: invocations own dimensions d = lid, lid + WG, …, sum them over the
// valid tokens, then the workgroup reduces Σ mean² for the norm (floored at 1e-12, as
// sentence-transformers' F.normalize does).

struct PoolParams {
    seq_len: u32,
    hidden: u32,
    normalize: u32,
    _pad: u32,
}

override WG: u32 = 256u;
const MAX_WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: PoolParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> L: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;

var<workgroup> red: array<f32, MAX_WG>;

@compute @workgroup_size(WG)
fn mean_pool(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let b = group.x;
    let n = max(min(L[b], P.seq_len), 1u);
    var ss = 0.0;
    for (var d = lid; d < P.hidden; d += WG) {
        var s = 0.0;
        for (var t = 0u; t < n; t++) {
            s += X[(b * P.seq_len + t) * P.hidden + d];
        }
        let mean = s / f32(n);
        O[b * P.hidden + d] = mean;
        ss += mean * mean;
    }
    red[lid] = ss;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) { red[lid] += red[lid + stride]; }
        workgroupBarrier();
    }
    if (P.normalize != 0u) {
        let inv = 1.0 / max(sqrt(red[0]), 1e-12);
        for (var d = lid; d < P.hidden; d += WG) {
            O[b * P.hidden + d] *= inv;
        }
    }
}
