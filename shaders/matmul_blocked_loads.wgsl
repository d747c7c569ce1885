// matmul_blocked.wgsl's entry points where every invocation loads the X columns it multiplies
// (`GpuContext::subgroup_sharing` 0: no subgroups of at least 4 invocations, or the browser).

// Tokens this invocation loads for the block: all 8 (Tokens), none of its own.
fn my_tokens(t0: u32, last: u32, lane: u32) -> vec2<u32> {
    return vec2(0u);
}

// The 8 tokens' columns c .. c + 3: eight vec4 loads.
fn block_columns(xs: Tokens, mine: vec2<u32>, c: u32) -> Columns {
    return Columns(x4(xs.x0 + c), x4(xs.x1 + c), x4(xs.x2 + c), x4(xs.x3 + c), x4(xs.x4 + c), x4(xs.x5 + c), x4(xs.x6 + c), x4(xs.x7 + c));
}

@compute @workgroup_size(WG)
fn tokens8(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    tokens8_block(group, lid, 0u);
}

@compute @workgroup_size(WG)
fn token1(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    token1_block(group, lid);
}
