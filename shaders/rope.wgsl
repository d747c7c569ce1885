// Rotary position embeddings, in place on q or k laid out (tokens, heads, head_dim).
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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> P: RopeParams;
@group(0) @binding(1) var<storage, read> CS: array<vec2<f32>>;   // (tokens, rot_dim / 2) of (cos, sin)
@group(0) @binding(2) var<storage, read_write> Q: array<f32>;    // (tokens, heads, head_dim)

fn rotate(a: u32, b: u32, cs: vec2<f32>) {
    let c = cs.x;
    let s = cs.y;
    let x0 = Q[a];
    let x1 = Q[b];
    Q[a] = x0 * c - x1 * s;
    Q[b] = x0 * s + x1 * c;
}

fn pair_index(gid: vec3<u32>) -> u32 {
    return gid.x + gid.y * P.groups_x * WG;
}

@compute @workgroup_size(WG)
fn rope_normal(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = P.rot_dim / 2u;
    let k = pair_index(gid);
    if (k >= P.tokens * P.heads * half) { return; }
    let i = k % half;
    let th = k / half;                 // token * heads + head
    let base = th * P.head_dim;
    rotate(base + 2u * i, base + 2u * i + 1u, CS[(th / P.heads) * half + i]);
}

@compute @workgroup_size(WG)
fn rope_neox(@builtin(global_invocation_id) gid: vec3<u32>) {
    let half = P.rot_dim / 2u;
    let k = pair_index(gid);
    if (k >= P.tokens * P.heads * half) { return; }
    let i = k % half;
    let th = k / half;
    let base = th * P.head_dim;
    rotate(base + i, base + i + half, CS[(th / P.heads) * half + i]);
}
