// Rotary position embeddings, in place on q (tokens, heads, head_dim) and, in the same dispatch,
// on k (tokens, heads_k, head_dim) when heads_k > 0 (attention's q and k: one dispatch, not two).
// Pair i (i < rot_dim/2) of token t rotates by the angle whose (cos, sin) is CS[t·rot_dim/2 + i].
// The host computes the table for the positions of this pass, exactly as the reference does
// (angle = position · inv_freq in f32, then cos/sin): every scaling scheme (none, linear, llama3,
// YaRN) is a different table, not a different shader, and no GPU sin/cos runs on a large angle,
// where WGSL's precision is unspecified.
//   rope_normal (GPT-J / llama.cpp "normal"): pairs (2i, 2i+1)
//   rope_neox   (GPT-NeoX / HF Llama):         pairs (i, i + rot_dim/2)
// Dimensions ≥ rot_dim pass through. One invocation per (token, head, pair).

struct RopeParams {
    tokens: u32,
    heads: u32,
    head_dim: u32,
    rot_dim: u32,
    groups_x: u32,
    heads_k: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: RopeParams;
@group(0) @binding(1) var<storage, read> CS: array<vec2<f32>>;   // (tokens, rot_dim / 2) of (cos, sin)
@group(0) @binding(2) var<storage, read_write> Q: array<f32>;    // (tokens, heads, head_dim)
@group(0) @binding(3) var<storage, read_write> K: array<f32>;    // (tokens, heads_k, head_dim)

// Rotates dimensions a and b (offsets within a head) of head h of token t: a head of q for
// h < heads, of k after.
fn rotate(t: u32, h: u32, a: u32, b: u32, cs: vec2<f32>) {
    let c = cs.x;
    let s = cs.y;
    if (h < P.heads) {
        let base = (t * P.heads + h) * P.head_dim;
        let x0 = Q[base + a];
        let x1 = Q[base + b];
        Q[base + a] = x0 * c - x1 * s;
        Q[base + b] = x0 * s + x1 * c;
    } else {
        let base = (t * P.heads_k + h - P.heads) * P.head_dim;
        let x0 = K[base + a];
        let x1 = K[base + b];
        K[base + a] = x0 * c - x1 * s;
        K[base + b] = x0 * s + x1 * c;
    }
}

fn pair_index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * P.groups_x * WG;
}

@compute @workgroup_size(WG)
fn rope_normal(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = P.rot_dim / 2u;
    let all = P.heads + P.heads_k;
    let k = pair_index(gid);
    if (k >= P.tokens * all * half) { return; }
    let i = k % half;
    let th = k / half;                 // token * (heads + heads_k) + head
    let t = th / all;
    rotate(t, th % all, 2u * i, 2u * i + 1u, CS[t * half + i]);
}

@compute @workgroup_size(WG)
fn rope_neox(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = P.rot_dim / 2u;
    let all = P.heads + P.heads_k;
    let k = pair_index(gid);
    if (k >= P.tokens * all * half) { return; }
    let i = k % half;
    let th = k / half;
    let t = th / all;
    rotate(t, th % all, i, i + half, CS[t * half + i]);
}
