// Scaled dot-product attention with grouped-query heads, causal or padding masks:
//   O = softmax(Q·Kᵀ·scale + mask) · V, per (sequence, query, head).
//
//   Q: (batch, q_len, heads, head_dim)          K, V: (batch, kv_len, kv_heads, head_dim)
//   L: (batch) u32, keys valid per sequence (the rest is padding, or the unused KV cache)
//   S: (batch, q_len, heads, kv_len) f32 scratch for scores
//   O: (batch, q_len, heads, head_dim)
// Query t sits at position q = q_pos0 + t; when causal, it sees keys p ≤ q (decode: one
// query at the end of the cache; prefill: a chunk of queries; encoders: not causal, L masks
// the padding), and with a sliding window W > 0 only the last W of them: q − W < p ≤ q. A
// non-causal query with a window sees the keys nearer than W on both sides (ModernBERT's local
// layers): |p − q| < W.
// Head h reads kv head h / (heads / kv_heads). With `softcap` c > 0 (Gemma 2) each score is
// capped as c·tanh(s/c) after scaling. With `rel_span` R > 0 (MPNet's relative position buckets,
// `attention` only) key p of query t adds RB[h · (2R − 1) + p − t + R − 1]: a bias by head and
// relative position, for sequences of at most R tokens.
//
// `attention`: one workgroup per (query, head), z = sequence. Phase 1: scores into S and their
// maximum; phase 2: exp(s − max) into S and their sum; phase 3: each invocation owns head
// dimensions d = lid, lid + WG, … and sums S[p]·V[p, d] over the keys. Max-subtracted, so no
// overflow.
//
// A decode step over a long cache (one query, batch 1) is split over the keys instead (flash-
// decoding), so that it is not one workgroup per head: `attention_partial` runs one workgroup per
// (split of SPLIT_KEYS keys, head) and writes to S the split's max m, sum l = Σ exp(s − m) and
// unnormalised output o[d] = Σ exp(s − m)·V[p, d] (head_dim + 2 floats per (head, split));
// `attention_combine` rescales the splits to their common max and divides: one workgroup per
// head.
//
// `attention_rows` is `attention` with one invocation per (query, head) doing all three phases
// alone, for adapters that emulate a GPU on the CPU: there a barrier is a switch between the
// invocations' stacks (SwiftShader's coroutines) and a reduction across invocations only costs,
// so the 64-invocation workgroups with six reductions ran MiniLM's 19-key attention ~100x slower
// than the arithmetic needs. Same grid as `attention` with WG (query, head) pairs per workgroup;
// head_dim a multiple of 16 (the host takes `attention` for others).

struct AttnParams {
    q_len: u32,
    kv_len: u32,
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    q_pos0: u32,
    causal: u32,
    groups_x: u32,
    scale: f32,
    splits: u32,
    window: u32,
    softcap: f32,
    rel_span: u32,
    // 1: query 0 sits at L[0] − q_len (a pass over a KV cache: the position is the
    // buffer's, so a decode step's params do not change), else at q_pos0.
    pos_from_lengths: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 64u;
const MAX_WG: u32 = 256u;
const SPLIT_KEYS: u32 = 256u;

@group(0) @binding(0) var<uniform> P: AttnParams;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read> L: array<u32>;

// The position of query 0.
fn q_pos0() -> u32 {
    if (P.pos_from_lengths != 0u) {
        return L[0] - P.q_len;
    }
    return P.q_pos0;
}
@group(0) @binding(5) var<storage, read_write> S: array<f32>;
@group(0) @binding(6) var<storage, read_write> O: array<f32>;
@group(0) @binding(7) var<storage, read> RB: array<f32>;
// Q, K and V again as vec4s (bound where head_dim is a multiple of 16, else a placeholder): a
// CPU adapter loads a vec4 in one go where four scalar loads cost four times as much
// (lavapipe runs each load of an address that differs by invocation as a loop over its lanes).
@group(0) @binding(8) var<storage, read> Q4: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> K4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read> V4: array<vec4<f32>>;

var<workgroup> red: array<f32, MAX_WG>;

/// The first key a causal query at position `q` sees: past the sliding window, if any.
fn first_key(q: u32) -> u32 {
    return select(0u, q + 1u - P.window, P.window != 0u && q + 1u > P.window);
}

/// A scaled score, soft-capped when `softcap` is set (tanh through exp of a clamped argument:
/// some drivers return NaN for tanh of large values).
fn score(dot: f32) -> f32 {
    let s = dot * P.scale;
    if (P.softcap <= 0.0) {
        return s;
    }
    let e = exp(2.0 * clamp(s / P.softcap, -15.0, 15.0));
    return P.softcap * (e - 1.0) / (e + 1.0);
}

fn reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            red[lid] = select(red[lid] + red[lid + stride], max(red[lid], red[lid + stride]), is_max);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

// What query `qh` (query · heads + head) of sequence `b` attends to, and where its rows are.
struct Span {
    t: u32,
    h: u32,
    k_lo: u32,
    n_keys: u32,
    q_base: u32,
    s_base: u32,
    kv_base: u32,
    kv_row: u32,
}

fn span(qh: u32, b: u32) -> Span {
    let t = qh / P.heads;
    let h = qh % P.heads;
    let kvh = h / (P.heads / P.kv_heads);
    var n_keys = min(L[b], P.kv_len);
    var k_lo = 0u;
    if (P.causal != 0u) {
        n_keys = min(n_keys, q_pos0() + t + 1u);
        k_lo = first_key(q_pos0() + t);
    } else if (P.window != 0u) {
        n_keys = min(n_keys, t + P.window);
        k_lo = select(0u, t + 1u - P.window, t + 1u > P.window);
    }
    let kv_row = P.kv_heads * P.head_dim;
    return Span(t, h, k_lo, n_keys, ((b * P.q_len + t) * P.heads + h) * P.head_dim, ((b * P.q_len + t) * P.heads + h) * P.kv_len,
        b * P.kv_len * kv_row + kvh * P.head_dim, kv_row);
}

// Q[at .. at + 3] (at a multiple of 4), likewise K and V: only where head_dim is a multiple of 16.
fn q4(at: u32) -> vec4<f32> {
    return Q4[at / 4u];
}

fn k4(at: u32) -> vec4<f32> {
    return K4[at / 4u];
}

fn v4(at: u32) -> vec4<f32> {
    return V4[at / 4u];
}

// Q·K of the query of `q` and key p: 16 dimensions a step in four vec4 sums where head_dim
// allows (a CPU adapter then runs a sixteenth of the loop iterations), else one at a time.
fn key_dot(q: Span, p: u32) -> f32 {
    let kr = q.kv_base + p * q.kv_row;
    if (P.head_dim % 16u == 0u) {
        var s = vec4(0.0);
        for (var d = 0u; d < P.head_dim; d += 16u) {
            s += vec4(dot(q4(q.q_base + d), k4(kr + d)), dot(q4(q.q_base + d + 4u), k4(kr + d + 4u)),
                dot(q4(q.q_base + d + 8u), k4(kr + d + 8u)), dot(q4(q.q_base + d + 12u), k4(kr + d + 12u)));
        }
        return (s.x + s.y) + (s.z + s.w);
    }
    var s = 0.0;
    for (var d = 0u; d < P.head_dim; d++) {
        s += Q[q.q_base + d] * K[kr + d];
    }
    return s;
}

// Key p's score for the query of `q`: written to S and returned.
fn key_score(q: Span, p: u32) -> f32 {
    var s = score(key_dot(q, p));
    if (P.rel_span != 0u) {
        s += RB[q.h * (2u * P.rel_span - 1u) + p + P.rel_span - 1u - q.t];
    }
    S[q.s_base + p] = s;
    return s;
}

// exp(S[p] − m) written back to S and returned.
fn key_weight(q: Span, p: u32, m: f32) -> f32 {
    let e = exp(S[q.s_base + p] - m);
    S[q.s_base + p] = e;
    return e;
}

// Output dimension d of the query: Σ S[p]·V[p, d] / sum.
fn output(q: Span, d: u32, sum: f32) {
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    var acc = 0.0;
    for (var p = q.k_lo; p < q.n_keys; p++) {
        acc += S[q.s_base + p] * V[q.kv_base + p * q.kv_row + d];
    }
    O[q.q_base + d] = acc * inv;
}

@compute @workgroup_size(WG)
fn attention(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let qh = group.x + group.y * P.groups_x;       // query * heads + head
    let live = qh < P.q_len * P.heads;
    let q = span(qh, group.z);
    var m = bitcast<f32>(0xFF7FFFFFu); // -f32::MAX
    if (live) {
        for (var p = q.k_lo + lid; p < q.n_keys; p += WG) {
            m = max(m, key_score(q, p));
        }
    }
    m = reduce(lid, m, true);
    var sum = 0.0;
    if (live) {
        for (var p = q.k_lo + lid; p < q.n_keys; p += WG) {
            sum += key_weight(q, p, m);
        }
    }
    sum = reduce(lid, sum, false);
    storageBarrier();
    workgroupBarrier();
    if (live) {
        for (var d = lid; d < P.head_dim; d += WG) {
            output(q, d, sum);
        }
    }
}

@compute @workgroup_size(WG)
fn attention_rows(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let qh = (group.x + group.y * P.groups_x) * WG + lid;
    if (qh >= P.q_len * P.heads) {
        return;
    }
    let q = span(qh, group.z);
    var m = bitcast<f32>(0xFF7FFFFFu); // -f32::MAX
    for (var p = q.k_lo; p < q.n_keys; p++) {
        m = max(m, key_score(q, p));
    }
    var sum = 0.0;
    for (var p = q.k_lo; p < q.n_keys; p++) {
        sum += key_weight(q, p, m);
    }
    // 16 output dimensions at a time in registers: each weight S[p] read once per 16 (the host
    // takes `attention` where head_dim is not a multiple of 16).
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    for (var d = 0u; d < P.head_dim; d += 16u) {
        var a0 = vec4(0.0);
        var a1 = vec4(0.0);
        var a2 = vec4(0.0);
        var a3 = vec4(0.0);
        for (var p = q.k_lo; p < q.n_keys; p++) {
            let w = S[q.s_base + p];
            let vr = q.kv_base + p * q.kv_row + d;
            a0 += w * v4(vr);
            a1 += w * v4(vr + 4u);
            a2 += w * v4(vr + 8u);
            a3 += w * v4(vr + 12u);
        }
        let o = q.q_base + d;
        for (var j = 0u; j < 4u; j++) {
            O[o + j] = a0[j] * inv;
            O[o + 4u + j] = a1[j] * inv;
            O[o + 8u + j] = a2[j] * inv;
            O[o + 12u + j] = a3[j] * inv;
        }
    }
}

// `attention_queries` (CPU adapters, head_dim 16, 32, 48 or 64, more than one query): one
// invocation per query like `attention_rows`, but the WG invocations of a workgroup are
// consecutive queries of one head of one sequence, so that they read the same keys and values:
// the workgroup walks the keys any of its queries sees once, each invocation masking the keys
// outside its own span, in an online softmax (running max m and sum, the output rescaled by
// exp(m_old − m_new) when the max grows: no scores scratch) with the query and the output in
// registers. A key's or value's row comes from `kv_row`, appended: every invocation loading it
// (attention_loads.wgsl), or two loads an invocation shared through subgroups
// (attention_subgroups.wgsl). ViT-B/16 on lavapipe (197 queries, 12 heads of 64; `bench encoder
// --profile`, shared rows): 11 ms a layer where attention_rows took 71.

// A row of up to 64 values (a query, key, value or output of one head) as 16 vec4s in registers;
// values past head_dim are zero.
struct Row {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
    v8: vec4<f32>,
    v9: vec4<f32>,
    v10: vec4<f32>,
    v11: vec4<f32>,
    v12: vec4<f32>,
    v13: vec4<f32>,
    v14: vec4<f32>,
    v15: vec4<f32>,
}

fn zero_row() -> Row {
    let z = vec4(0.0);
    return Row(z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
}

// Σ a·b over the row.
fn row_dot(a: Row, b: Row) -> f32 {
    let s = vec4(dot(a.v0, b.v0), dot(a.v1, b.v1), dot(a.v2, b.v2), dot(a.v3, b.v3))
        + vec4(dot(a.v4, b.v4), dot(a.v5, b.v5), dot(a.v6, b.v6), dot(a.v7, b.v7))
        + vec4(dot(a.v8, b.v8), dot(a.v9, b.v9), dot(a.v10, b.v10), dot(a.v11, b.v11))
        + vec4(dot(a.v12, b.v12), dot(a.v13, b.v13), dot(a.v14, b.v14), dot(a.v15, b.v15));
    return (s.x + s.y) + (s.z + s.w);
}

// acc · c + w · v.
fn row_axpy(acc: Row, c: f32, w: f32, v: Row) -> Row {
    return Row(acc.v0 * c + w * v.v0, acc.v1 * c + w * v.v1, acc.v2 * c + w * v.v2, acc.v3 * c + w * v.v3,
        acc.v4 * c + w * v.v4, acc.v5 * c + w * v.v5, acc.v6 * c + w * v.v6, acc.v7 * c + w * v.v7,
        acc.v8 * c + w * v.v8, acc.v9 * c + w * v.v9, acc.v10 * c + w * v.v10, acc.v11 * c + w * v.v11,
        acc.v12 * c + w * v.v12, acc.v13 * c + w * v.v13, acc.v14 * c + w * v.v14, acc.v15 * c + w * v.v15);
}

// Values at .. at + 3 of Q (src 0), K (1) or V (2).
fn qkv4(src: u32, at: u32) -> vec4<f32> {
    switch src {
        case 0u: {
            return q4(at);
        }
        case 1u: {
            return k4(at);
        }
        default: {
            return v4(at);
        }
    }
}

// The row of Q, K or V (`qkv4`) starting at `at`, each vec4 loaded (values past head_dim zero).
fn loaded_row(src: u32, at: u32) -> Row {
    var r = zero_row();
    r.v0 = qkv4(src, at);
    r.v1 = qkv4(src, at + 4u);
    r.v2 = qkv4(src, at + 8u);
    r.v3 = qkv4(src, at + 12u);
    if (P.head_dim > 16u) {
        r.v4 = qkv4(src, at + 16u);
        r.v5 = qkv4(src, at + 20u);
        r.v6 = qkv4(src, at + 24u);
        r.v7 = qkv4(src, at + 28u);
    }
    if (P.head_dim > 32u) {
        r.v8 = qkv4(src, at + 32u);
        r.v9 = qkv4(src, at + 36u);
        r.v10 = qkv4(src, at + 40u);
        r.v11 = qkv4(src, at + 44u);
    }
    if (P.head_dim > 48u) {
        r.v12 = qkv4(src, at + 48u);
        r.v13 = qkv4(src, at + 52u);
        r.v14 = qkv4(src, at + 56u);
        r.v15 = qkv4(src, at + 60u);
    }
    return r;
}

// O[at + d] = r[d] · inv for d < head_dim.
fn store_row(at: u32, r: Row, inv: f32) {
    let n = P.head_dim;
    let vs = array<vec4<f32>, 16>(r.v0, r.v1, r.v2, r.v3, r.v4, r.v5, r.v6, r.v7, r.v8, r.v9, r.v10, r.v11, r.v12, r.v13, r.v14, r.v15);
    for (var i = 0u; i < n / 4u; i++) {
        let v = vs[i] * inv;
        O[at + 4u * i] = v.x;
        O[at + 4u * i + 1u] = v.y;
        O[at + 4u * i + 2u] = v.z;
        O[at + 4u * i + 3u] = v.w;
    }
}

// `attention_queries`' body (its entry point is appended): `lane` is the invocation's index in
// its subgroup where the module shares rows through subgroups, else 0. Every invocation of a
// workgroup that has a head runs the loop (past q_len a clamped query, not stored), so that
// the subgroup broadcasts are in uniform control flow.
fn attention_queries_block(group: vec3<u32>, lid: u32, lane: u32) {
    let blocks = (P.q_len + WG - 1u) / WG;
    let gi = group.x + group.y * P.groups_x;
    let h = gi / blocks;
    if (h >= P.heads) {
        return;
    }
    let first = (gi % blocks) * WG;
    let q = span(min(first + lid, P.q_len - 1u) * P.heads + h, group.z);
    // A later query's keys start and end no earlier (causal, windowed or not): the workgroup's
    // keys run from its first query's first to its last query's last.
    let k_begin = span(first * P.heads + h, group.z).k_lo;
    let k_end = span(min(first + WG, P.q_len) * P.heads - P.heads + h, group.z).n_keys;
    let qr = loaded_row(0u, q.q_base);
    var m = bitcast<f32>(0xFF7FFFFFu); // -f32::MAX
    var sum = 0.0;
    var acc = zero_row();
    for (var p = k_begin; p < k_end; p++) {
        let kr = q.kv_base + p * q.kv_row;
        var s = score(row_dot(qr, kv_row(1u, kr, lane)));
        if (P.rel_span != 0u) {
            s += RB[q.h * (2u * P.rel_span - 1u) + p + P.rel_span - 1u - q.t];
        }
        let valid = p >= q.k_lo && p < q.n_keys;
        let m_new = select(m, max(m, s), valid);
        let c = exp(m - m_new);
        let w = select(0.0, exp(s - m_new), valid);
        sum = sum * c + w;
        acc = row_axpy(acc, c, w, kv_row(2u, kr, lane));
        m = m_new;
    }
    if (first + lid < P.q_len) {
        store_row(q.q_base, acc, select(0.0, 1.0 / sum, sum > 0.0));
    }
}

var<workgroup> split_p: array<f32, SPLIT_KEYS>;

/// Keys a decode query sees: the valid ones, up to its own position.
fn decode_keys() -> u32 {
    return min(min(L[0], P.kv_len), q_pos0() + 1u);
}

@compute @workgroup_size(WG)
fn attention_partial(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = group.x;
    let h = group.y;
    let n_keys = decode_keys();
    let k0 = min(first_key(q_pos0()) + split * SPLIT_KEYS, n_keys);
    let k1 = min(k0 + SPLIT_KEYS, n_keys);
    let kvh = h / (P.heads / P.kv_heads);
    let q_base = h * P.head_dim;
    let kv_row = P.kv_heads * P.head_dim;
    let kv_base = kvh * P.head_dim;

    var m = bitcast<f32>(0xFF7FFFFFu); // -f32::MAX: an empty split weighs nothing
    for (var p = k0 + lid; p < k1; p += WG) {
        var s = 0.0;
        for (var d = 0u; d < P.head_dim; d++) {
            s += Q[q_base + d] * K[kv_base + p * kv_row + d];
        }
        s = score(s);
        split_p[p - k0] = s;
        m = max(m, s);
    }
    m = reduce(lid, m, true);
    var sum = 0.0;
    for (var p = k0 + lid; p < k1; p += WG) {
        let e = exp(split_p[p - k0] - m);
        split_p[p - k0] = e;
        sum += e;
    }
    sum = reduce(lid, sum, false);
    let base = (h * P.splits + split) * (P.head_dim + 2u);
    for (var d = lid; d < P.head_dim; d += WG) {
        var acc = 0.0;
        for (var p = k0; p < k1; p++) {
            acc += split_p[p - k0] * V[kv_base + p * kv_row + d];
        }
        S[base + 2u + d] = acc;
    }
    if (lid == 0u) {
        S[base] = m;
        S[base + 1u] = sum;
    }
}

@compute @workgroup_size(WG)
fn attention_combine(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = group.x;
    let stride = P.head_dim + 2u;
    let first = h * P.splits * stride;
    var m = bitcast<f32>(0xFF7FFFFFu);
    for (var s = 0u; s < P.splits; s++) {
        m = max(m, S[first + s * stride]);
    }
    var sum = 0.0;
    for (var s = 0u; s < P.splits; s++) {
        sum += S[first + s * stride + 1u] * exp(S[first + s * stride] - m);
    }
    let inv = select(0.0, 1.0 / sum, sum > 0.0);
    for (var d = lid; d < P.head_dim; d += WG) {
        var acc = 0.0;
        for (var s = 0u; s < P.splits; s++) {
            acc += S[first + s * stride + 2u + d] * exp(S[first + s * stride] - m);
        }
        O[h * P.head_dim + d] = acc * inv;
    }
}
