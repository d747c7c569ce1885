//! Token sampling on the GPU (shaders/sample.wgsl): temperature, min-p, top-k, top-p and an
//! inverse-CDF draw with a uniform number from the host's seeded generator, so that a decode
//! step reads back one u32. Temperature 0 is greedy decoding: use `reduce::encode_argmax`.

use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, check_len, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "sample";
const WORKGROUP: u32 = 256;

/// Uniforms of `struct SampleParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct SampleParams {
    pub vocab: u32,
    pub top_k: u32,
    pub inv_temp: f32,
    pub min_p: f32,
    pub top_p: f32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Sampling settings, as OpenAI-style APIs and llama.cpp name them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// > 0 (0 means greedy: use argmax).
    pub temperature: f32,
    /// Keep the k most likely tokens (0: off). Ties at the k-th value are all kept.
    pub top_k: u32,
    /// Keep the most likely tokens whose probabilities add up to at least top_p (1: off).
    pub top_p: f32,
    /// Keep tokens with probability ≥ min_p · the top probability (0: off).
    pub min_p: f32,
}

impl Sampling {
    /// A draw at `temperature` with no top-k, top-p or min-p filter.
    pub fn at_temperature(temperature: f32) -> Self {
        Self { temperature, top_k: 0, top_p: 1.0, min_p: 0.0 }
    }

    fn guard(&self) -> Result<(), GpuError> {
        let ok = self.temperature > 0.0 && self.temperature.is_finite() && (0.0..=1.0).contains(&self.top_p) && self.top_p > 0.0 && (0.0..1.0).contains(&self.min_p);
        if !ok {
            return Err(GpuError::Shape { op: OP, detail: format!("bad sampling settings {self:?}") });
        }
        Ok(())
    }

    /// Records the draw from `logits` (vocab f32) into `out` (1 u32), with the u ∈ [0, 1) (f32)
    /// that buffer `u` holds (copied into `out` first: the kernel reads it there).
    pub async fn encode(&self, ctx: &GpuContext, encoder: &mut wgpu::CommandEncoder, vocab: u32, logits: &wgpu::Buffer, out: &wgpu::Buffer, u: &wgpu::Buffer) -> Result<(), GpuError> {
        self.guard()?;
        if vocab == 0 {
            return Err(GpuError::Shape { op: OP, detail: "an empty vocabulary".into() });
        }
        check_len(OP, "logits", logits, u64::from(vocab))?;
        check_len(OP, "out", out, 1)?;
        check_len(OP, "u", u, 1)?;
        encoder.copy_buffer_to_buffer(u, 0, out, 0, 4);
        let params = SampleParams { vocab, top_k: self.top_k, inv_temp: 1.0 / self.temperature, min_p: self.min_p, top_p: self.top_p, _pad0: 0, _pad1: 0, _pad2: 0 };
        Dispatch { shader: ShaderId::Sample, entry_point: "sample", workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &[logits, out], groups: (1, 1, 1) }
            .encode(ctx, encoder)
            .await
    }

    /// CPU reference of what may be drawn: the kept set (exact thresholds, in f64) and the token
    /// that the inverse CDF gives for `u`, with the distance of `u·total` from the nearest CDF
    /// boundary (relative to the total) so tests can skip draws too close to call.
    pub fn reference(&self, logits: &[f32], u: f64) -> (Vec<bool>, usize, f64) {
        let z: Vec<f64> = logits.iter().map(|&x| f64::from(x) / f64::from(self.temperature)).collect();
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut keep: Vec<bool> = z.iter().map(|&zi| self.min_p <= 0.0 || zi >= m + f64::from(self.min_p).ln()).collect();
        let mut sorted: Vec<f64> = z.clone();
        sorted.sort_by(|a, b| b.total_cmp(a));
        if self.top_k > 0 && (self.top_k as usize) < z.len() {
            let kth = sorted[self.top_k as usize - 1];
            keep.iter_mut().zip(&z).for_each(|(k, &zi)| *k &= zi >= kth);
        }
        if self.top_p < 1.0 {
            let kept: Vec<f64> = sorted.iter().copied().filter(|&v| keep[z.iter().position(|&x| x == v).unwrap_or(0)]).collect();
            let total: f64 = kept.iter().map(|v| (v - m).exp()).sum();
            let mut acc = 0.0;
            let mut cut = f64::NEG_INFINITY;
            for v in kept {
                acc += (v - m).exp();
                cut = v;
                if acc >= f64::from(self.top_p) * total {
                    break;
                }
            }
            keep.iter_mut().zip(&z).for_each(|(k, &zi)| *k &= zi >= cut);
        }
        let w: Vec<f64> = z.iter().zip(&keep).map(|(&zi, &k)| if k { (zi - m).exp() } else { 0.0 }).collect();
        let total: f64 = w.iter().sum();
        let r = u * total;
        let (mut run, mut pick, mut margin) = (0.0, w.len() - 1, f64::INFINITY);
        for (i, &wi) in w.iter().enumerate() {
            if wi == 0.0 {
                continue;
            }
            margin = margin.min((r - run).abs()).min((r - run - wi).abs());
            if r < run + wi && pick == w.len() - 1 && r >= run {
                pick = i;
            }
            run += wi;
        }
        (keep, pick, margin / total)
    }
}

/// Refuses a u outside [0, 1).
pub fn check_u(u: f32) -> Result<(), GpuError> {
    if !(0.0..1.0).contains(&u) {
        return Err(GpuError::Shape { op: OP, detail: format!("u {u} outside [0, 1)") });
    }
    Ok(())
}

/// Draws one token on the GPU from `logits` (for tests and tools).
pub async fn sample(ctx: &GpuContext, logits: &[f32], sampling: Sampling, u: f32) -> Result<u32, GpuError> {
    check_u(u)?;
    let x = ctx.storage_from(OP, "logits", logits)?;
    let out = ctx.storage_output(OP, "token", 4)?;
    let u = ctx.storage_from(OP, "u", &[u])?;
    let mut encoder = new_encoder(ctx, OP);
    sampling.encode(ctx, &mut encoder, logits.len() as u32, &x, &out, &u).await?;
    submit(ctx, OP, encoder).await?;
    Ok(ctx.read_f32(&out, 1).await?[0].to_bits())
}
