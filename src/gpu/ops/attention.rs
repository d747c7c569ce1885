//! Attention with grouped-query heads and causal or padding masks (shaders/attention.wgsl): the
//! decode step over the KV cache (split over the keys past `SPLIT_KEYS`: flash-decoding),
//! prefill chunks, and non-causal encoders (BERT).

use crate::check::{Comparison, Tolerance};
use crate::gpu::context::GpuContext;
use crate::gpu::error::GpuError;
use crate::gpu::ops::{Dispatch, PER_INVOCATION_WG, Reduction, check_len, grid_2d, new_encoder, submit};
use crate::gpu::shaders::ShaderId;

const OP: &str = "attention";
const WORKGROUP: u32 = 64;
/// The largest head_dim `attention_queries` takes (a row of 16 vec4s in registers).
const QUERIES_MAX_HEAD_DIM: u32 = 64;

/// Uniforms of `struct AttnParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnParams {
    pub q_len: u32,
    pub kv_len: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub q_pos0: u32,
    pub causal: u32,
    pub groups_x: u32,
    pub scale: f32,
    /// Key splits of a split decode step (`attention_partial` / `attention_combine`).
    pub splits: u32,
    /// Sliding window: keys nearer than it to the query (before it when causal), 0 for all.
    pub window: u32,
    /// Scores soft-capped as c·tanh(s/c) when c > 0 (Gemma 2); 0 for none.
    pub softcap: f32,
    /// Relative position bias over sequences of at most this many tokens; 0 for none.
    pub rel_span: u32,
    pub pos_from_lengths: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// Keys per split of a split decode step (`SPLIT_KEYS` in the shader).
pub const SPLIT_KEYS: u32 = 256;

/// The shape of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention {
    pub batch: u32,
    /// Queries per sequence.
    pub q_len: u32,
    /// Key slots per sequence (the KV cache's capacity, or the padded length).
    pub kv_len: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    /// Position of query 0 (causal masking).
    pub q_pos0: u32,
    /// The kernel takes q_pos0 as lengths[0] − q_len (batch 1: a pass over a KV cache whose
    /// lengths buffer holds q_pos0 + q_len), so that its params stay the same from step to step.
    pub q_pos_from_lengths: bool,
    pub causal: bool,
    /// Sliding window: each query sees the keys nearer than `window` to it: its last `window`
    /// keys (itself included) when causal, those within `window` − 1 on either side when not
    /// (ModernBERT's local layers); 0 for all of them.
    pub window: u32,
    /// Usually 1/√head_dim.
    pub scale: f32,
    /// Each scaled score s becomes c·tanh(s/c) (Gemma 2's attention logit soft-capping); 0 for
    /// none.
    pub softcap: f32,
    /// A bias added to each score by head and relative position (MPNet), for sequences of at most
    /// `rel_span` tokens: `encode`'s `rel_bias` holds heads × (2·rel_span − 1) values, key p of
    /// query t reading [h][p − t + rel_span − 1]. 0 for none (not in decode steps).
    pub rel_span: u32,
}

impl Attention {
    fn guard(&self) -> Result<(), GpuError> {
        let bad = |detail: String| Err(GpuError::Shape { op: OP, detail });
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad(format!("{} heads over {} kv heads", self.heads, self.kv_heads));
        }
        if self.head_dim == 0 || self.q_len == 0 || self.kv_len == 0 || self.batch == 0 {
            return bad(format!("empty shape {self:?}"));
        }
        if !(self.softcap.is_finite() && self.softcap >= 0.0) {
            return bad(format!("soft cap {}", self.softcap));
        }
        if self.rel_span != 0 && (self.rel_span < self.q_len || self.rel_span < self.kv_len || self.q_pos0 != 0 || self.causal) {
            return bad(format!("a relative position bias of span {} over {} queries and {} keys at {}", self.rel_span, self.q_len, self.kv_len, self.q_pos0));
        }
        let scores = u64::from(self.batch) * u64::from(self.q_len) * u64::from(self.heads) * u64::from(self.kv_len);
        if scores > u64::from(u32::MAX) {
            return bad(format!("{scores} scores overflow u32 indexing: attend in smaller chunks"));
        }
        Ok(())
    }

    /// The number of key splits when this call is a decode step over more than `SPLIT_KEYS`
    /// keys (one query, batch 1, causal) whose partial results fit the scores scratch; `None`
    /// runs the one-workgroup-per-head kernel.
    pub fn decode_splits(&self) -> Option<u32> {
        let keys = self.kv_len.min(self.q_pos0.saturating_add(1)).saturating_sub(self.first_key(self.q_pos0));
        let splits = keys.div_ceil(SPLIT_KEYS);
        let fits = u64::from(splits) * (u64::from(self.head_dim) + 2) <= u64::from(self.kv_len);
        (self.q_len == 1 && self.batch == 1 && self.causal && keys > SPLIT_KEYS && fits).then_some(splits)
    }

    /// The first key a causal query at position `q` sees (`first_key` in the shader).
    pub fn first_key(&self, q: u32) -> u32 {
        if self.causal && self.window != 0 { (q + 1).saturating_sub(self.window) } else { 0 }
    }

    /// Bytes of the scores scratch buffer this call needs.
    pub fn scratch_bytes(&self) -> u64 {
        u64::from(self.batch) * u64::from(self.q_len) * u64::from(self.heads) * u64::from(self.kv_len) * 4
    }

    /// Records the attention, by the device's kind of reduction. `lengths` holds `batch` u32
    /// (valid keys per sequence); `rel_bias` the relative position bias when `rel_span` is set.
    #[allow(clippy::too_many_arguments)]
    pub async fn encode(
        &self,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        lengths: &wgpu::Buffer,
        scratch: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rel_bias: Option<&wgpu::Buffer>,
    ) -> Result<(), GpuError> {
        self.encode_with(Reduction::for_device(ctx), ctx, encoder, q, k, v, lengths, scratch, out, rel_bias).await
    }

    /// `encode` by the given kind of reduction (tests run both); a decode step split over the
    /// keys (`decode_splits`) takes the split kernels either way.
    #[allow(clippy::too_many_arguments)]
    pub async fn encode_with(
        &self,
        reduction: Reduction,
        ctx: &GpuContext,
        encoder: &mut wgpu::CommandEncoder,
        q: &wgpu::Buffer,
        k: &wgpu::Buffer,
        v: &wgpu::Buffer,
        lengths: &wgpu::Buffer,
        scratch: &wgpu::Buffer,
        out: &wgpu::Buffer,
        rel_bias: Option<&wgpu::Buffer>,
    ) -> Result<(), GpuError> {
        self.guard()?;
        let rel_bias = match (self.rel_span, rel_bias) {
            (0, None) => lengths, // bound, never read
            (span, Some(b)) if span > 0 => {
                check_len(OP, "relative position bias", b, u64::from(self.heads) * u64::from(2 * span - 1))?;
                b
            }
            _ => return Err(GpuError::Shape { op: OP, detail: format!("relative position span {} with{} a bias", self.rel_span, if rel_bias.is_some() { "" } else { "out" }) }),
        };
        let q_elems = u64::from(self.batch) * u64::from(self.q_len) * u64::from(self.heads) * u64::from(self.head_dim);
        let kv_elems = u64::from(self.batch) * u64::from(self.kv_len) * u64::from(self.kv_heads) * u64::from(self.head_dim);
        check_len(OP, "q", q, q_elems)?;
        check_len(OP, "out", out, q_elems)?;
        check_len(OP, "k", k, kv_elems)?;
        check_len(OP, "v", v, kv_elems)?;
        check_len(OP, "lengths", lengths, u64::from(self.batch))?;
        check_len(OP, "scores scratch", scratch, self.scratch_bytes() / 4)?;
        let max_dim = ctx.limits.max_compute_workgroups_per_dimension;
        // attention_rows walks head dimensions 16 at a time. (Its first version, one dimension at
        // a time, gave zeros on lavapipe for some outputs of long passes: 600 queries × 6 heads of
        // 72, and Whisper's encoder; the kernel test keeps that case.)
        let reduction = if self.head_dim.is_multiple_of(16) { reduction } else { Reduction::Workgroup };
        // attention_queries holds a query's 64 values in registers and gives a workgroup the
        // queries of one head: for more than one query and head_dim up to 64.
        let queries = reduction == Reduction::PerInvocation && self.q_len > 1 && self.head_dim <= QUERIES_MAX_HEAD_DIM;
        let (entry_point, workgroup_size, groups) = match reduction {
            Reduction::Workgroup => ("attention", WORKGROUP, self.q_len * self.heads),
            Reduction::PerInvocation if queries => ("attention_queries", PER_INVOCATION_WG, self.q_len.div_ceil(PER_INVOCATION_WG) * self.heads),
            Reduction::PerInvocation => ("attention_rows", PER_INVOCATION_WG, (self.q_len * self.heads).div_ceil(PER_INVOCATION_WG)),
        };
        let shader = if queries && ctx.subgroup_sharing() > 0 { ShaderId::AttentionSubgroups } else { ShaderId::Attention };
        let (gx, gy) = grid_2d(groups, max_dim)
            .filter(|_| self.batch <= max_dim)
            .ok_or_else(|| GpuError::Shape { op: OP, detail: "too many queries for the dispatch grid".into() })?;
        let params = AttnParams {
            q_len: self.q_len,
            kv_len: self.kv_len,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            // Not in the params when the kernel reads it from the lengths (they stay the same).
            q_pos0: if self.q_pos_from_lengths { 0 } else { self.q_pos0 },
            causal: u32::from(self.causal),
            groups_x: gx,
            scale: self.scale,
            splits: self.decode_splits().unwrap_or(0),
            window: self.window,
            softcap: self.softcap,
            rel_span: self.rel_span,
            pos_from_lengths: u32::from(self.q_pos_from_lengths),
            _pad1: 0,
            _pad2: 0,
        };
        // The vec4 views of Q, K and V (bindings 8–10), read only where head_dim is a multiple of 16.
        let [q4, k4, v4] = if self.head_dim.is_multiple_of(16) { [q, k, v] } else { [&ctx.placeholder; 3] };
        let buffers = [q, k, v, lengths, scratch, out, rel_bias, q4, k4, v4];
        if let Some(splits) = self.decode_splits() {
            let dispatch = |entry_point, groups| Dispatch { shader: ShaderId::Attention, entry_point, workgroup_size: WORKGROUP, kind: None, threads_per_row: None, fuse: None, params, buffers: &buffers, groups };
            dispatch("attention_partial", (splits, self.heads, 1)).encode(ctx, encoder).await?;
            return dispatch("attention_combine", (self.heads, 1, 1)).encode(ctx, encoder).await;
        }
        Dispatch {
            shader,
            entry_point,
            workgroup_size,
            kind: None,
            threads_per_row: None,
            fuse: None,
            params,
            buffers: &buffers,
            groups: (gx, gy, self.batch),
        }
        .encode(ctx, encoder)
        .await
    }

    /// CPU reference in f64.
    #[allow(clippy::needless_range_loop)]
    /// `rel_bias`: heads × (2·rel_span − 1) values when `rel_span` is set.
    pub fn reference(&self, q: &[f32], k: &[f32], v: &[f32], lengths: &[u32], rel_bias: &[f32]) -> Vec<f64> {
        let (hd, h, kvh) = (self.head_dim as usize, self.heads as usize, self.kv_heads as usize);
        let (ql, kl) = (self.q_len as usize, self.kv_len as usize);
        let mut out = vec![0.0; q.len()];
        for b in 0..self.batch as usize {
            for t in 0..ql {
                let mut n = (lengths[b] as usize).min(kl);
                if self.causal {
                    n = n.min(self.q_pos0 as usize + t + 1);
                }
                // Keys past the sliding window: q − p ≥ window.
                let q_pos = self.q_pos0 as usize + t;
                let lo = if self.window > 0 { (q_pos + 1).saturating_sub(self.window as usize).min(n) } else { 0 };
                if !self.causal && self.window > 0 {
                    n = n.min(q_pos + self.window as usize).max(lo);
                }
                for head in 0..h {
                    let g = head / (h / kvh);
                    let qo = ((b * ql + t) * h + head) * hd;
                    let kv = |p: usize| (b * kl + p) * kvh * hd + g * hd;
                    let scores: Vec<f64> = (lo..n)
                        .map(|p| (0..hd).map(|d| f64::from(q[qo + d]) * f64::from(k[kv(p) + d])).sum::<f64>() * f64::from(self.scale))
                        .map(|s| if self.softcap > 0.0 { f64::from(self.softcap) * (s / f64::from(self.softcap)).tanh() } else { s })
                        .zip(lo..n)
                        .map(|(s, p)| {
                            let span = self.rel_span as usize;
                            if span == 0 { s } else { s + f64::from(rel_bias[head * (2 * span - 1) + p + span - 1 - t]) }
                        })
                        .collect();
                    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for d in 0..hd {
                        out[qo + d] = if lo == n { 0.0 } else { (lo..n).map(|p| e[p - lo] * f64::from(v[kv(p) + d])).sum::<f64>() / sum };
                    }
                }
            }
        }
        out
    }
}

/// Outputs are convex combinations of V: an absolute tolerance against max|V| (= 1 here).
pub const ATTENTION: Tolerance = Tolerance { rel: 1e-5, abs: 1e-5 };

/// Runs `attn` by `reduction` on seeded random Q, K, V in [-1, 1) with the given valid lengths
/// and compares with the reference.
pub async fn check_against_reference(ctx: &GpuContext, reduction: Reduction, attn: Attention, lengths: &[u32], seed: u64) -> Result<Comparison, GpuError> {
    let mut rng = crate::rng::SeededRng::new(seed);
    let q_elems = (attn.batch * attn.q_len * attn.heads * attn.head_dim) as usize;
    let kv_elems = (attn.batch * attn.kv_len * attn.kv_heads * attn.head_dim) as usize;
    let (q, k, v) = (rng.signed_unit_vec(q_elems), rng.signed_unit_vec(kv_elems), rng.signed_unit_vec(kv_elems));
    let bufs = (ctx.storage_from(OP, "q", &q)?, ctx.storage_from(OP, "k", &k)?, ctx.storage_from(OP, "v", &v)?);
    let len_buf = ctx.storage_from(OP, "lengths", lengths)?;
    let scratch = ctx.storage_output(OP, "scores", attn.scratch_bytes())?;
    let out = ctx.storage_output(OP, "out", q_elems as u64 * 4)?;
    // A relative position bias of the size MPNet's buckets give (a few units).
    let rel_bias: Vec<f32> = rng.signed_unit_vec((attn.heads * (2 * attn.rel_span).saturating_sub(1)) as usize).iter().map(|b| 3.0 * b).collect();
    let bias_buf = if attn.rel_span > 0 { Some(ctx.storage_from(OP, "relative position bias", &rel_bias)?) } else { None };
    let mut encoder = new_encoder(ctx, OP);
    attn.encode_with(reduction, ctx, &mut encoder, &bufs.0, &bufs.1, &bufs.2, &len_buf, &scratch, &out, bias_buf.as_ref()).await?;
    submit(ctx, OP, encoder).await?;
    let y = ctx.read_f32(&out, q_elems).await?;
    Ok(Comparison::within(&y, &attn.reference(&q, &k, &v, lengths, &rel_bias), ATTENTION))
}
