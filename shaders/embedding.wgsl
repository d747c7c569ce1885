// Embedding lookup from a table in any weight type: O[t, :] = decode(W[ids[t], :]).
//
//   W: (rows, cols) in the repacked block layout of quant_decode.wgsl (appended to this module),
//      this dispatch's part holding table rows first_row .. first_row + rows
//   I: (tokens) u32 token ids, already checked < vocabulary size on the host
//   O: (tokens, cols) f32
// One invocation per output value; a token whose row lies in another part is left to that
// part's dispatch.

struct EmbedParams {
    rows: u32,
    cols: u32,
    first_row: u32,
    tokens: u32,
    groups_x: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256u;
override KIND: u32 = 0u;

@group(0) @binding(0) var<uniform> P: EmbedParams;
@group(0) @binding(1) var<storage, read> W: array<u32>;
@group(0) @binding(2) var<storage, read> I: array<u32>;
@group(0) @binding(3) var<storage, read_write> O: array<f32>;

@compute @workgroup_size(WG)
fn embed(@builtin(global_invocation_id) gid: vec3<u32>) {
    let k = gid.x + gid.y * P.groups_x * WG;
    if (k >= P.tokens * P.cols) { return; }
    let t = k / P.cols;
    let c = k % P.cols;
    let id = I[t];
    if (id < P.first_row || id >= P.first_row + P.rows) { return; }
    let be = block_elems();
    let wb = ((id - P.first_row) * (P.cols / be) + c / be) * block_words();
    O[k] = value_of(wb, c % be);
}
