// attention.wgsl's `attention_queries` where every invocation loads the rows it reads (adapters
// without subgroups to share loads through: `GpuContext::subgroup_sharing` 0).

// The row of K (src 1) or V (2) starting at `at` (values past head_dim zero).
fn kv_row(src: u32, at: u32, lane: u32) -> Row {
    return loaded_row(src, at);
}

@compute @workgroup_size(WG)
fn attention_queries(@builtin(workgroup_id) group: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    attention_queries_block(group, lid, 0u);
}
