// attention.wgsl's `attention_queries` for adapters with subgroups of at least 4 invocations
// (lavapipe's 8 SIMD lanes, SwiftShader's 4): the invocations of a workgroup read the same key
// and value rows, so the first SG lanes of a subgroup load 16 / SG vec4s of a row each and the
// subgroup broadcasts them: 2 or 4 loads where there were 16, a broadcast being a register
// extract on a CPU adapter. (`enable subgroups;` is prefixed for the browser's compiler:
// src/gpu/shaders.rs.)

// Lanes a load is shared between: 4 or 8, at most the adapter's smallest subgroup.
override SG: u32 = 8u;

// vec4 j (values 4j .. 4j + 3) of the row at `at`, zero past head_dim.
fn row_part(src: u32, at: u32, j: u32) -> vec4<f32> {
    if (4u * j < P.head_dim) {
        return qkv4(src, at + 4u * j);
    }
    return vec4(0.0);
}

// The row of K (src 1) or V (2) starting at `at` (values past head_dim zero).
fn kv_row(src: u32, at: u32, lane: u32) -> Row {
    let i = lane % SG;
    let a = row_part(src, at, i);
    let b = row_part(src, at, i + SG);
    if (SG >= 8u) {
        return Row(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
            subgroupBroadcast(a, 4u), subgroupBroadcast(a, 5u), subgroupBroadcast(a, 6u), subgroupBroadcast(a, 7u),
            subgroupBroadcast(b, 0u), subgroupBroadcast(b, 1u), subgroupBroadcast(b, 2u), subgroupBroadcast(b, 3u),
            subgroupBroadcast(b, 4u), subgroupBroadcast(b, 5u), subgroupBroadcast(b, 6u), subgroupBroadcast(b, 7u));
    }
    let c = row_part(src, at, i + 8u);
    let d = row_part(src, at, i + 12u);
    return Row(subgroupBroadcast(a, 0u), subgroupBroadcast(a, 1u), subgroupBroadcast(a, 2u), subgroupBroadcast(a, 3u),
        subgroupBroadcast(b, 0u), subgroupBroadcast(b, 1u), subgroupBroadcast(b, 2u), subgroupBroadcast(b, 3u),
        subgroupBroadcast(c, 0u), subgroupBroadcast(c, 1u), subgroupBroadcast(c, 2u), subgroupBroadcast(c, 3u),
        subgroupBroadcast(d, 0u), subgroupBroadcast(d, 1u), subgroupBroadcast(d, 2u), subgroupBroadcast(d, 3u));
}

@compute @workgroup_size(WG)
fn attention_queries(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(subgroup_invocation_id) lane: u32) {
    attention_queries_block(group, lid, lane);
}
