// Draws one token from logits on the GPU so that a decode step reads back 4 bytes, not the
// vocabulary: temperature, then min-p, top-k and top-p filters, then inverse-CDF sampling with a
// uniform number `u` from the host's seeded generator.
//
//   X: (vocab) f32 logits      O: (1) u32 the token
// One workgroup. z = x / T; m = max z. Kept: z ≥ m + ln(min_p) (min-p), z ≥ the k-th largest
// value (top-k, found by bisection on the value: ties at the threshold are all kept), and, among
// those, z ≥ the largest threshold whose kept mass is still ≥ top_p of the total (top-p, also by
// bisection). Then r = u·Σ kept exp(z − m), and the token is the first index, in vocabulary order,
// where the running sum of kept weights passes r (chunk sums, a prefix scan, a walk of one chunk).

struct SampleParams {
    vocab: u32,
    top_k: u32,
    inv_temp: f32,
    min_p: f32,
    top_p: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
const MAX_WG: u32 = 256u;
const BISECT: u32 = 32u;

@group(0) @binding(0) var<uniform> P: SampleParams;
@group(0) @binding(1) var<storage, read> X: array<f32>;
// O[0] holds the draw's u ∈ [0, 1) (f32 bits) when the kernel starts (a buffer, not a uniform: the
// params stay the same from one step to the next), and the token when it ends.
@group(0) @binding(2) var<storage, read_write> O: array<u32>;

var<workgroup> red: array<f32, MAX_WG>;
var<workgroup> prefix: array<f32, MAX_WG>;
var<workgroup> found: atomic<u32>;

fn reduce(lid: u32, v: f32, op: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            let a = red[lid];
            let b = red[lid + stride];
            red[lid] = select(select(a + b, max(a, b), op == 1u), min(a, b), op == 2u);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn z(i: u32) -> f32 {
    return X[i] * P.inv_temp;
}

// Count (as f32) of values ≥ t, over the whole vocabulary.
fn count_at_least(lid: u32, t: f32) -> f32 {
    var c = 0.0;
    for (var i = lid; i < P.vocab; i += WG) { c += select(0.0, 1.0, z(i) >= t); }
    return reduce(lid, c, 0u);
}

// Σ exp(z − m) over values ≥ t.
fn mass_at_least(lid: u32, t: f32, m: f32) -> f32 {
    var s = 0.0;
    for (var i = lid; i < P.vocab; i += WG) {
        let zi = z(i);
        s += select(0.0, exp(zi - m), zi >= t);
    }
    return reduce(lid, s, 0u);
}

@compute @workgroup_size(WG)
fn sample(@builtin(local_invocation_index) lid: u32) {
    // Every invocation reads u before invocation 0 can write the token over it.
    let u = bitcast<f32>(O[0]);
    storageBarrier();
    var hi = bitcast<f32>(0xFF7FFFFFu);
    var lo = bitcast<f32>(0x7F7FFFFFu);
    for (var i = lid; i < P.vocab; i += WG) {
        hi = max(hi, z(i));
        lo = min(lo, z(i));
    }
    let m = reduce(lid, hi, 1u);
    let zmin = reduce(lid, lo, 2u);

    var t = zmin;
    if (P.min_p > 0.0) {
        t = max(t, m + log(P.min_p));
    }
    if (P.top_k > 0u && P.top_k < P.vocab) {
        // Largest threshold keeping at least top_k values: invariant count(≥ a) ≥ k > count(≥ b).
        var a = zmin;
        var b = m + 1.0 + abs(m) * 1e-6;
        for (var it = 0u; it < BISECT; it++) {
            let mid = 0.5 * (a + b);
            if (count_at_least(lid, mid) >= f32(P.top_k)) { a = mid; } else { b = mid; }
        }
        t = max(t, a);
    }
    if (P.top_p < 1.0) {
        // Largest threshold whose kept mass is still ≥ top_p of the mass kept so far.
        let total = mass_at_least(lid, t, m);
        var a = t;
        var b = m + 1.0 + abs(m) * 1e-6;
        for (var it = 0u; it < BISECT; it++) {
            let mid = 0.5 * (a + b);
            if (mass_at_least(lid, mid, m) >= P.top_p * total) { a = mid; } else { b = mid; }
        }
        t = max(t, a);
    }

    // Inverse CDF over contiguous chunks, in vocabulary order.
    let chunk = (P.vocab + WG - 1u) / WG;
    let start = min(lid * chunk, P.vocab);
    let end = min(start + chunk, P.vocab);
    var s = 0.0;
    var last = 0u;
    for (var i = start; i < end; i++) {
        let zi = z(i);
        if (zi >= t) {
            s += exp(zi - m);
            last = i + 1u;
        }
    }
    prefix[lid] = s;
    atomicStore(&found, 0xFFFFFFFFu);
    workgroupBarrier();
    if (lid == 0u) {
        var run = 0.0;
        for (var j = 0u; j < WG; j++) {
            let v = prefix[j];
            prefix[j] = run;
            run += v;
        }
        red[0] = run;
    }
    workgroupBarrier();
    let total = red[0];
    workgroupBarrier(); // everyone has read red[0] before the next reduction reuses it
    let r = u * total;
    var run = prefix[lid];
    if (s > 0.0 && r >= run && r < run + s) {
        var pick = last - 1u;
        for (var i = start; i < end; i++) {
            let zi = z(i);
            if (zi >= t) {
                run += exp(zi - m);
                if (run > r) { pick = i; break; }
            }
        }
        atomicMin(&found, pick);
    }
    // r at or past the total (rounding): the last kept token.
    let last_kept = reduce(lid, f32(last), 1u);
    if (lid == 0u) {
        let f = atomicLoad(&found);
        O[0] = select(f, u32(last_kept) - 1u, f == 0xFFFFFFFFu);
    }
}
