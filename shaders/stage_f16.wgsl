// Stages f32 activations for the f16 matvec module (quant_dot_f16.wgsl): the flat (tokens, cols)
// array is cut into groups of 32 values; each group is divided by s, the smallest power of two
// above its largest |x| (frexp: max|x| = f·2^e with f in [0.5, 1), s = 2^e; 1 for a group of
// zeros), which is exact, so every staged value lies in [-1, 1] and is then rounded to f16.
// With |ξ| ≤ 1 no f16 product or block sum of the f16 kernels can overflow (the largest, Q8_0's
// 32·128, is 4096), and f16's 11-bit precision is spent relative to the group's largest value
// rather than wasted on range. Rejected: converting x to f16 as it is (activations of a few
// hundred, common after SwiGLU, overflow Q8_0's block sums at 65504/4096 = 16 already).
// f32 WGSL: pack2x16float needs no shader-f16.
//
//   X:  (n) f32, n = tokens · cols, even
//   XH: (n / 2) f16 pairs (low half first): ξ = x / s, read as vec4<f16> by the f16 module
//   XS: (groups) f32: s of each group of 32, groups = ceil(n / 32)
// One invocation per group; grid: workgroup x + y·groups_x.

struct StageParams {
    n: u32,
    groups: u32,
    groups_x: u32,
    _pad: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> P: StageParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> XH: array<u32>;
@group(0) @binding(3) var<storage, read_write> XS: array<f32>;

@compute @workgroup_size(WG)
fn stage(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = (group.x + group.y * P.groups_x) * WG + lid;
    if (g >= P.groups) {
        return;
    }
    let first = 32u * g;
    let end = min(first + 32u, P.n);
    var m = 0.0;
    for (var i = first; i < end; i++) {
        m = max(m, abs(X[i]));
    }
    let e = frexp(m).exp;
    XS[g] = ldexp(1.0, e);
    for (var i = first; i < end; i += 2u) {
        XH[i / 2u] = pack2x16float(vec2(ldexp(X[i], -e), ldexp(X[i + 1u], -e)));
    }
}
