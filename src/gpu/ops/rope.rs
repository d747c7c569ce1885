//! Rotary position embeddings (shaders/rope.wgsl), with the (cos, sin) table computed on the host.

use crate::check::{Comparison, gamma_f32};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, grid, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "rope";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct RopeParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct RopeParams {
    pub tokens: u32,
    pub heads: u32,
    pub head_dim: u32,
    pub rot_dim: u32,
    pub groups_x: u32,
    /// Heads of the second tensor (k), 0 for none.
    pub heads_k: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Which dimensions form the rotated pairs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeLayout {
    /// (2i, 2i+1): GPT-J, llama.cpp's "normal" (GGUF llama weights are permuted for it).
    Normal,
    /// (i, i + rot_dim/2): GPT-NeoX, HF Llama/Qwen2 safetensors.
    NeoX,
}

/// How positions are scaled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear { factor: f32 },
    /// Llama 3.1's frequency-dependent scaling.
    Llama3 { factor: f32, low_freq_factor: f32, high_freq_factor: f32, original_max_position: f32 },
}

/// The inverse frequencies for `rot_dim` rotated dimensions, computed in f32 as HF transformers
/// does (`1 / theta^(2i/rot_dim)`), with `scaling` applied.
pub fn inv_freq(rot_dim: u32, theta: f32, scaling: RopeScaling) -> Vec<f32> {
    (0..rot_dim / 2)
        .map(|i| {
            let f = 1.0 / theta.powf((2 * i) as f32 / rot_dim as f32);
            match scaling {
                RopeScaling::None => f,
                RopeScaling::Linear { factor } => f / factor,
                RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position } => {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let low_wavelen = original_max_position / low_freq_factor;
                    let high_wavelen = original_max_position / high_freq_factor;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (original_max_position / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                }
            }
        })
        .collect()
}

/// The (cos, sin) table for positions `pos0 .. pos0 + tokens`: (tokens, rot_dim/2) pairs, each
/// times `scale` (LongRoPE's attention factor; 1 otherwise). The angle is rounded to f32 as the
/// reference computes it; cos and sin are then exact (f64).
pub fn cos_sin_table(inv_freq: &[f32], scale: f32, pos0: u32, tokens: u32) -> Vec<[f32; 2]> {
    cos_sin_rows(inv_freq, scale, pos0..pos0 + tokens)
}

/// The same for one row per position of `positions` (an encoder batch's rows).
pub fn cos_sin_rows(inv_freq: &[f32], scale: f32, positions: impl ExactSizeIterator<Item = u32>) -> Vec<[f32; 2]> {
    let mut table = Vec::with_capacity(positions.len() * inv_freq.len());
    for p in positions {
        let pos = p as f32;
        for &f in inv_freq {
            let angle = f64::from(pos * f);
            let scale = f64::from(scale);
            table.push([(angle.cos() * scale) as f32, (angle.sin() * scale) as f32]);
        }
    }
    table
}

/// Records RoPE in place on `q` (tokens, heads, head_dim) with the (cos, sin) table `cs` of the
/// tokens' positions.
#[allow(clippy::too_many_arguments)]
pub async fn encode(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    layout: RopeLayout,
    tokens: u32,
    heads: u32,
    head_dim: u32,
    rot_dim: u32,
    cs: &wgpu::Buffer,
    q: &wgpu::Buffer,
) -> Result<(), GpuError> {
    encode_pair(ctx, encoder, layout, tokens, [heads, 0], head_dim, rot_dim, cs, [q, &ctx.placeholder]).await
}

/// Records RoPE in place on `q` (tokens, heads[0], head_dim) and `k` (tokens, heads[1],
/// head_dim) in one dispatch.
#[allow(clippy::too_many_arguments)]
pub async fn encode_pair(
    ctx: &GpuContext,
    encoder: &mut wgpu::CommandEncoder,
    layout: RopeLayout,
    tokens: u32,
    heads: [u32; 2],
    head_dim: u32,
    rot_dim: u32,
    cs: &wgpu::Buffer,
    [q, k]: [&wgpu::Buffer; 2],
) -> Result<(), GpuError> {
    if rot_dim == 0 || !rot_dim.is_multiple_of(2) || rot_dim > head_dim {
        return Err(GpuError::Shape { op: OP, detail: format!("rot_dim {rot_dim} with head_dim {head_dim}") });
    }
    let [heads, heads_k] = heads;
    check_len(OP, "q", q, u64::from(tokens) * u64::from(heads) * u64::from(head_dim))?;
    check_len(OP, "k", k, u64::from(tokens) * u64::from(heads_k) * u64::from(head_dim))?;
    check_len(OP, "cos/sin table", cs, u64::from(tokens) * u64::from(rot_dim))?;
    let pairs = u64::from(tokens) * (u64::from(heads) + u64::from(heads_k)) * u64::from(rot_dim / 2);
    let groups = grid(ctx, OP, pairs.div_ceil(u64::from(WORKGROUP)))?;
    let params = RopeParams { tokens, heads, head_dim, rot_dim, groups_x: groups.0, heads_k, _pad1: 0, _pad2: 0 };
    let entry_point = match layout {
        RopeLayout::Normal => "rope_normal",
        RopeLayout::NeoX => "rope_neox",
    };
    Dispatch { shader: ShaderId::Rope, entry_point, workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &[cs, q, k], groups }.encode(ctx, encoder).await
}

/// CPU reference: the rotation in f64 with the same table. Returns (y, per-element bound).
pub fn reference(layout: RopeLayout, q: &[f32], table: &[[f32; 2]], heads: usize, head_dim: usize, rot_dim: usize) -> (Vec<f64>, Vec<f64>) {
    let half = rot_dim / 2;
    let mut y: Vec<f64> = q.iter().map(|&v| f64::from(v)).collect();
    let mut bound = vec![0.0; q.len()];
    for (th, head) in q.chunks_exact(head_dim).enumerate() {
        let t = th / heads;
        for i in 0..half {
            let (a, b) = match layout {
                RopeLayout::Normal => (2 * i, 2 * i + 1),
                RopeLayout::NeoX => (i, i + half),
            };
            let [c, s] = table[t * half + i].map(f64::from);
            let (x0, x1) = (f64::from(head[a]), f64::from(head[b]));
            y[th * head_dim + a] = x0 * c - x1 * s;
            y[th * head_dim + b] = x0 * s + x1 * c;
            let mag = (x0 * c).abs() + (x1 * s).abs() + (x0 * s).abs() + (x1 * c).abs();
            bound[th * head_dim + a] = gamma_f32(3) * mag;
            bound[th * head_dim + b] = gamma_f32(3) * mag;
        }
    }
    (y, bound)
}

/// Rotates seeded random q at positions `pos0..` and compares with the reference.
#[allow(clippy::too_many_arguments)]
pub async fn check_against_reference(
    ctx: &GpuContext,
    layout: RopeLayout,
    tokens: u32,
    heads: u32,
    head_dim: u32,
    rot_dim: u32,
    pos0: u32,
    scaling: RopeScaling,
    seed: u64,
) -> Result<Comparison, GpuError> {
    check_pair_against_reference(ctx, layout, tokens, [heads, 0], head_dim, rot_dim, pos0, scaling, seed).await
}

/// `check_against_reference` for q of `heads[0]` heads and k of `heads[1]` rotated in one
/// dispatch (`encode_pair`; plain `encode` when there is no k): both compared, q then k.
#[allow(clippy::too_many_arguments)]
pub async fn check_pair_against_reference(
    ctx: &GpuContext,
    layout: RopeLayout,
    tokens: u32,
    heads: [u32; 2],
    head_dim: u32,
    rot_dim: u32,
    pos0: u32,
    scaling: RopeScaling,
    seed: u64,
) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let [q, k] = heads.map(|h| rng.signed_unit_vec((tokens * h * head_dim) as usize));
    let table = cos_sin_table(&inv_freq(rot_dim, 10_000.0, scaling), 1.0, pos0, tokens);
    let [q_buf, k_buf] = [&q, &k].map(|v| ctx.storage_output(OP, "q or k", v.len() as u64 * 4));
    let (q_buf, k_buf) = (q_buf?, k_buf?);
    ctx.queue.write_buffer(&q_buf, 0, bytemuck::cast_slice(&q));
    ctx.queue.write_buffer(&k_buf, 0, bytemuck::cast_slice(&k));
    let cs_buf = ctx.storage_from(OP, "cos/sin", &table)?;
    let mut encoder = new_encoder(ctx, OP);
    if heads[1] == 0 {
        encode(ctx, &mut encoder, layout, tokens, heads[0], head_dim, rot_dim, &cs_buf, &q_buf).await?;
    } else {
        encode_pair(ctx, &mut encoder, layout, tokens, heads, head_dim, rot_dim, &cs_buf, [&q_buf, &k_buf]).await?;
    }
    submit(ctx, OP, encoder).await?;
    let mut y = ctx.read_f32(&q_buf, q.len()).await?;
    y.extend(ctx.read_f32(&k_buf, k.len()).await?);
    let (mut expected, mut bound) = reference(layout, &q, &table, heads[0] as usize, head_dim as usize, rot_dim as usize);
    let (ek, bk) = reference(layout, &k, &table, heads[1] as usize, head_dim as usize, rot_dim as usize);
    expected.extend(ek);
    bound.extend(bk);
    Ok(Comparison::elementwise(&y, &expected, |i| bound[i] + 1e-37))
}
