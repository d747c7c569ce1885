// matmul_blocked.wgsl's entry points for adapters with subgroups of at least 4 invocations
// (lavapipe's are its 8 SIMD lanes of 32 bits, SwiftShader's 4). Every invocation of a workgroup
// multiplies the same 8 tokens, so instead of each loading all 8 tokens' columns, the first SG
// lanes of a subgroup load 8 / SG tokens each and the subgroup broadcasts them: one or two loads
// where there were eight. On a CPU adapter a load whose address differs by invocation runs as a
// loop over the SIMD lanes, while a broadcast is a register extract. `bench matmul
// --matmul-tokens 128` on lavapipe, 8 lanes shared against none (same run): F32 8.5 / 7.4, F16
// 22.7 / 11.5, Q4_1 15.5 / 11.4, Q8_0 21.0 / 15.2 GFLOP/s. (`enable subgroups;` is prefixed for
// the browser's compiler, not for naga, which takes subgroup builtins from the device's
// capabilities: src/gpu/shaders.rs.)

// Lanes a load is shared between: 4 or 8, at most the adapter's smallest subgroup.
override SG: u32 = 8u;

// Where the block's tokens this invocation loads start: token lane % SG, and (SG 4) 4 past it.
fn my_tokens(t0: u32, last: u32, lane: u32) -> vec2<u32> {
    let i = lane % SG;
    return vec2(min(t0 + i, last), min(t0 + i + 4u, last)) * P.cols;
}

// The 8 tokens' columns c .. c + 3: this invocation's tokens', loaded, shared through the subgroup.
fn block_columns(xs: Tokens, mine: vec2<u32>, c: u32) -> Columns {
    let a = x4(mine.x + c);
    if (SG >= 8u) {
        return Columns(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
            subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u), subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u));
    }
    let b = x4(mine.y + c);
    return Columns(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
        subgroupBroadcast(b, 0u), subgroupBroadcast(b, 1u), subgroupBroadcast(b, 2u), subgroupBroadcast(b, 3u));
}

@compute @workgroup_size(WG)
fn tokens8(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    tokens8_block(group, lid, lane);
}

@compute @workgroup_size(WG)
fn token1(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    token1_block(group, lid);
}
