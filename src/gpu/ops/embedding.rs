//! Embedding lookup from a table in any weight type (shaders/embedding.wgsl): token ids in,
//! f32 rows out, decoded on the GPU so a quantized table is never expanded in memory.

use crate::check::{Comparison, F32_UNIT_ROUNDOFF};
use crate::formats::quant;
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, grid, matvec::kind, new_encoder, submit};
use crate::gpu::shaders::ShaderId;
use crate::gpu::weights::GpuWeight;

const OP: &str = "embedding";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct EmbedParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbedParams {
    pub rows: u32,
    pub cols: u32,
    pub first_row: u32,
    pub tokens: u32,
    pub groups_x: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Uploads `ids` after checking each is a row of `table`: an id past the vocabulary is a typed
/// error here, never an out-of-bounds read on the GPU.
pub fn upload_ids(ctx: &GpuContext, table: &GpuWeight, ids: &[u32]) -> Result<wgpu::Buffer, GpuError> {
    if let Some(&bad) = ids.iter().find(|&&id| id >= table.rows) {
        return Err(GpuError::Shape { op: OP, detail: format!("token id {bad} is not below the vocabulary size {}", table.rows) });
    }
    ctx.storage_from(OP, "token ids", ids)
}

/// Records `out[t] = table[ids[t]]` for `tokens` ids (uploaded with `upload_ids`).
pub async fn encode(ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, table: &GpuWeight, tokens: u32, ids: &wgpu::Buffer, out: &wgpu::Buffer) -> Result<(), GpuError> {
    let n = u64::from(tokens) * u64::from(table.cols);
    check_len(OP, "ids", ids, u64::from(tokens))?;
    check_len(OP, "out", out, n)?;
    if n > u64::from(u32::MAX) {
        return Err(GpuError::Shape { op: OP, detail: format!("{tokens} tokens of {} values", table.cols) });
    }
    let groups = grid(ctx, OP, n.div_ceil(u64::from(WORKGROUP)))?;
    for part in &table.parts {
        let params = EmbedParams { rows: part.rows, cols: table.cols, first_row: part.first_row, tokens, groups_x: groups.0, _pad0: 0, _pad1: 0, _pad2: 0 };
        Dispatch {
            shader: ShaderId::Embedding,
            entry_point: "embed",
            workgroup_size: WORKGROUP,
            kind: Some(kind(table.dtype)?),
            threads_per_row: None,
            fuse: None,
            params,
            buffers: &[&part.buffer, ids, out],
            groups,
        }
        .encode(ctx, encoder)
        .await?;
    }
    Ok(())
}

/// Looks up `ids` in a seeded random (rows, cols) table of `dtype` (split into parts of at most
/// `max_part_bytes`) and compares with the CPU dequantizer's rows.
pub async fn check_against_reference(ctx: &GpuContext, dtype: crate::formats::DType, rows: usize, cols: usize, ids: &[u32], seed: u64, max_part_bytes: Option<u64>) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let bytes = rng.tensor_bytes(dtype, rows * cols);
    let table = GpuWeight::new(ctx, "table", dtype, rows as u64, cols as u64, max_part_bytes)?;
    table.write_rows(ctx, 0, &bytes)?;
    let id_buf = upload_ids(ctx, &table, ids)?;
    let out = ctx.storage_output(OP, "out", (ids.len() * cols) as u64 * 4)?;
    let mut encoder = new_encoder(ctx, OP);
    encode(ctx, &mut encoder, &table, ids.len() as u32, &id_buf, &out).await?;
    submit(ctx, OP, encoder).await?;
    let got = ctx.read_f32(&out, ids.len() * cols).await?;
    let row_bytes = bytes.len() / rows;
    let mut expected = Vec::with_capacity(got.len());
    for &id in ids {
        let row = quant::dequantize(dtype, &bytes[id as usize * row_bytes..(id as usize + 1) * row_bytes])
            .map_err(|e| GpuError::Shape { op: OP, detail: e.to_string() })?;
        expected.extend(row.into_iter().map(f64::from));
    }
    // The same arithmetic as the CPU, up to one fused multiply-add: a rounding or two.
    Ok(Comparison::elementwise(&got, &expected, |i| 2.0 * F32_UNIT_ROUNDOFF * expected[i].abs() * 2.0 + 1e-37))
}
