//! The op set on the GPU: every op records its dispatches into the pass's one command encoder,
//! which `pick` or `finish` submits. Activations live in pooled buffers: a tensor's buffer goes
//! back to the pass's free list when the tensor drops, so a pass reuses its own buffers as it goes
//! and a decode loop creates none after its first step. Host data for a pass (token ids, the RoPE
//! table, valid lengths) is written only into buffers from the context's pool, which hold nothing
//! of a pass still being recorded (a `queue.write_buffer` lands before the pass runs).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::backend::{Activation, Backend, BatchAttention, CachedAttention, Layout, Norm, Patches, RopeLayout, relative_span};
use crate::formats::TensorInfo;
use crate::generate::{Next, Pick};
use crate::gpu::ops::attention::Attention;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::{embedding, matmul, new_encoder, pool, reduce, rope, submit};
use crate::gpu::weights::GpuWeight;
use crate::gpu::{GpuContext, GpuError};
use crate::models::{ModelError, RangeReader};

const OP: &str = "gpu backend";

/// Buffers released during the pass being recorded, by size.
type FreeList = Rc<RefCell<HashMap<u64, Vec<wgpu::Buffer>>>>;

/// A pooled buffer that returns to the free list when its last tensor drops.
struct Slot {
    buffer: Option<wgpu::Buffer>,
    free: FreeList,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(b) = self.buffer.take() {
            self.free.borrow_mut().entry(b.size()).or_default().push(b);
        }
    }
}

/// Activations on the GPU: (rows, cols) f32.
#[derive(Clone)]
pub struct GpuTensor {
    slot: Rc<Slot>,
    pub rows: u32,
    pub cols: u32,
}

impl GpuTensor {
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.slot.buffer.as_ref().expect("a live slot holds its buffer")
    }

    fn elems(&self) -> u64 {
        u64::from(self.rows) * u64::from(self.cols)
    }
}

/// A small f32 vector (a gain, a bias, a table added to each sequence).
pub struct GpuVector {
    buffer: wgpu::Buffer,
    len: u32,
}

/// The sequences of a batched pass, each padded to the longest (`len` rows per sequence).
pub struct GpuBatch {
    lengths: Vec<u32>,
    len: u32,
    /// `lengths` on the GPU: a pool buffer of the pass this batch was made for.
    buffer: wgpu::Buffer,
}

impl GpuBatch {
    fn rows(&self) -> u32 {
        self.lengths.len() as u32 * self.len
    }

    fn check(&self, what: &str, x: &GpuTensor) -> Result<(), ModelError> {
        if x.rows != self.rows() {
            return Err(shape(format!("{what} of {} rows over {} sequences of {}", x.rows, self.lengths.len(), self.len)));
        }
        Ok(())
    }
}

/// One layer's K and V: (capacity, kv_heads · head_dim) each.
pub struct GpuKvCache {
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    capacity: u32,
    width: u32,
}

/// The GPU: the context, and the pass being recorded.
pub struct Gpu {
    pub ctx: Rc<GpuContext>,
    encoder: Option<wgpu::CommandEncoder>,
    free: FreeList,
    /// Pool buffers written from the host in this pass, returned when it is submitted.
    uploads: Vec<wgpu::Buffer>,
    /// The context's dispatch count when the pass began.
    pass_start: u64,
    /// Dispatches of the last pass submitted.
    pub last_pass_dispatches: u64,
}

/// The size class of the pool (`BufferPool::take`'s): the next power of two, at least 256 bytes.
fn class(bytes: u64) -> u64 {
    bytes.max(256).next_power_of_two()
}

impl Gpu {
    pub fn new(ctx: Rc<GpuContext>) -> Self {
        Self { ctx, encoder: None, free: Rc::default(), uploads: Vec::new(), pass_start: 0, last_pass_dispatches: 0 }
    }

    /// The pass's encoder, begun on first use.
    fn encoder(&mut self) -> Result<&mut wgpu::CommandEncoder, ModelError> {
        if self.encoder.is_none() {
            self.ctx.check_alive()?;
            self.pass_start = self.ctx.dispatches();
            self.encoder = Some(new_encoder(&self.ctx, "forward pass"));
        }
        Ok(self.encoder.as_mut().expect("just set"))
    }

    /// A (rows, cols) tensor for an op's output: a buffer freed earlier in this pass, else one
    /// from the pool.
    fn output(&mut self, rows: u32, cols: u32) -> Result<GpuTensor, ModelError> {
        let bytes = class((u64::from(rows) * u64::from(cols)).max(1) * 4);
        let reused = self.free.borrow_mut().get_mut(&bytes).and_then(Vec::pop);
        let buffer = match reused {
            Some(b) => b,
            None => self.ctx.pool.take(&self.ctx, bytes)?,
        };
        Ok(GpuTensor { slot: Rc::new(Slot { buffer: Some(buffer), free: self.free.clone() }), rows, cols })
    }

    /// A pool buffer holding `data`, kept until the pass is submitted.
    fn upload<T: bytemuck::Pod>(&mut self, data: &[T]) -> Result<wgpu::Buffer, ModelError> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buffer = self.ctx.pool.take(&self.ctx, bytes.len() as u64)?;
        self.ctx.queue.write_buffer(&buffer, 0, bytes);
        self.uploads.push(buffer.clone());
        Ok(buffer)
    }

    /// A scratch buffer of at least `bytes` for this pass (contents undefined).
    fn scratch(&mut self, bytes: u64) -> Result<GpuTensor, ModelError> {
        self.output(1, u32::try_from(bytes.div_ceil(4)).map_err(|_| shape(format!("{bytes} bytes of scratch")))?)
    }

    /// Submits the pass and hands its buffers back to the pool.
    async fn submit(&mut self) -> Result<(), ModelError> {
        let Some(e) = self.encoder.take() else { return Ok(()) };
        let result = submit(&self.ctx, "forward pass", e).await;
        self.last_pass_dispatches = self.ctx.dispatches() - self.pass_start;
        for b in self.uploads.drain(..) {
            self.ctx.pool.give(b);
        }
        for (_, buffers) in self.free.borrow_mut().drain() {
            buffers.into_iter().for_each(|b| self.ctx.pool.give(b));
        }
        Ok(result?)
    }

    async fn elementwise(&mut self, op: Elementwise, a: &GpuTensor, b: Option<&GpuTensor>) -> Result<GpuTensor, ModelError> {
        if let Some(b) = b
            && (b.rows, b.cols) != (a.rows, a.cols) {
                return Err(shape(format!("{op:?} of ({}, {}) and ({}, {})", a.rows, a.cols, b.rows, b.cols)));
            }
        let y = self.output(a.rows, a.cols)?;
        let ctx = self.ctx.clone();
        let e = self.encoder()?;
        op.encode(&ctx, e, a.elems(), a.buffer(), b.unwrap_or(a).buffer(), y.buffer()).await?;
        Ok(y)
    }
}

/// RoPE's cos/sin table of a pass and the dimensions it rotates.
pub struct GpuRope {
    buffer: wgpu::Buffer,
    rot_dim: u32,
}

impl Gpu {
    /// `table` of `inv_freq`'s frequencies on the device.
    fn rope_upload(&mut self, inv_freq: &[f32], table: &[[f32; 2]]) -> Result<GpuRope, ModelError> {
        let rot_dim = u32::try_from(inv_freq.len() * 2).map_err(|_| shape(format!("{} RoPE frequencies", inv_freq.len())))?;
        Ok(GpuRope { buffer: self.upload(table)?, rot_dim })
    }
}

fn shape(detail: String) -> ModelError {
    GpuError::Shape { op: OP, detail }.into()
}

fn elementwise_of(act: Activation) -> Elementwise {
    match act {
        Activation::Silu => Elementwise::Silu,
        Activation::GeluTanh => Elementwise::GeluTanh,
        Activation::GeluErf => Elementwise::GeluErf,
        Activation::QuickGelu => Elementwise::QuickGelu,
        Activation::Tanh => Elementwise::Tanh,
        Activation::Relu => Elementwise::Relu,
    }
}

impl Backend for Gpu {
    type Tensor = GpuTensor;
    type Matrix = GpuWeight;
    type Vector = GpuVector;
    type KvCache = GpuKvCache;
    type Rope = GpuRope;
    type Batch = GpuBatch;

    fn device(&self) -> &'static str {
        "webgpu"
    }

    fn adapter(&self) -> String {
        self.ctx.report.label()
    }

    fn another(&self) -> Self {
        Gpu::new(self.ctx.clone())
    }

    fn take_uncaptured_errors(&self) -> Vec<String> {
        self.ctx.take_uncaptured_errors()
    }

    async fn matrix(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<GpuWeight, ModelError> {
        crate::models::upload_matrix(&self.ctx, t, read, rows, cols).await
    }

    fn matrix_from_values(&self, name: &str, values: &[f32], rows: u32, cols: u32) -> Result<GpuWeight, ModelError> {
        crate::backend::check_values(name, values, rows, cols)?;
        Ok(GpuWeight::upload(&self.ctx, name, crate::formats::DType::F32, u64::from(rows), u64::from(cols), bytemuck::cast_slice(values))?)
    }

    fn vector(&self, values: &[f32]) -> Result<GpuVector, ModelError> {
        let len = u32::try_from(values.len()).map_err(|_| shape(format!("a vector of {}", values.len())))?;
        Ok(GpuVector { buffer: self.ctx.storage_from("model", "vector", values)?, len })
    }

    fn kv_caches(&self, layers: u32, kv_heads: u32, head_dim: u32, capacity: u32) -> Result<Vec<GpuKvCache>, ModelError> {
        let width = kv_heads.checked_mul(head_dim).ok_or_else(|| shape(format!("{kv_heads} heads of {head_dim}")))?;
        let bytes = u64::from(capacity) * u64::from(width) * 4;
        // Each buffer within the binding limit, checked before any is created.
        self.ctx.check_binding("model", "a KV cache", bytes)?;
        (0..layers)
            .map(|_| Ok(GpuKvCache { k: self.ctx.storage_output("model", "k cache", bytes)?, v: self.ctx.storage_output("model", "v cache", bytes)?, capacity, width }))
            .collect()
    }

    fn matrix_bytes(&self, m: &GpuWeight) -> u64 {
        m.gpu_bytes()
    }

    async fn embed(&mut self, table: &GpuWeight, ids: &[u32]) -> Result<GpuTensor, ModelError> {
        let n = u32::try_from(ids.len()).map_err(|_| shape(format!("{} ids", ids.len())))?;
        let ids = self.upload(ids)?;
        let y = self.output(n, table.cols)?;
        let ctx = self.ctx.clone();
        embedding::encode(&ctx, self.encoder()?, table, n, &ids, y.buffer()).await?;
        Ok(y)
    }

    async fn linear(&mut self, x: &GpuTensor, w: &GpuWeight, bias: Option<&GpuVector>) -> Result<GpuTensor, ModelError> {
        if x.cols != w.cols {
            return Err(shape(format!("({}, {}) times {} ({}, {})ᵀ", x.rows, x.cols, w.name, w.rows, w.cols)));
        }
        let y = self.output(x.rows, w.rows)?;
        let ctx = self.ctx.clone();
        match bias {
            None => {
                matmul::encode_auto(&ctx, self.encoder()?, w, x.rows, x.buffer(), y.buffer()).await?;
                Ok(y)
            }
            Some(bias) => {
                if bias.len != w.rows {
                    return Err(shape(format!("a bias of {} for {} ({} rows)", bias.len, w.name, w.rows)));
                }
                matmul::encode_auto(&ctx, self.encoder()?, w, x.rows, x.buffer(), y.buffer()).await?;
                self.add_tiled(&y, bias).await
            }
        }
    }

    async fn norm(&mut self, x: &GpuTensor, norm: Norm, g: &GpuVector, b: Option<&GpuVector>) -> Result<GpuTensor, ModelError> {
        if g.len != x.cols || b.is_some_and(|b| b.len != x.cols) {
            return Err(shape(format!("a norm of {} values over rows of {}", g.len, x.cols)));
        }
        let y = self.output(x.rows, x.cols)?;
        let ctx = self.ctx.clone();
        norm.encode(&ctx, self.encoder()?, x.rows, x.cols, x.buffer(), &g.buffer, b.map(|b| &b.buffer), y.buffer()).await?;
        Ok(y)
    }

    async fn head_norm(&mut self, x: &GpuTensor, norm: Norm, g: &GpuVector, heads: u32) -> Result<GpuTensor, ModelError> {
        // The norm kernel over (tokens · heads) rows of head_dim: the same buffer, read per head.
        if heads == 0 || g.len.checked_mul(heads) != Some(x.cols) || !matches!(norm, Norm::Rms { .. }) {
            return Err(shape(format!("a per-head norm of {} values over {heads} heads of rows of {}", g.len, x.cols)));
        }
        let y = self.output(x.rows, x.cols)?;
        let ctx = self.ctx.clone();
        norm.encode(&ctx, self.encoder()?, x.rows * heads, g.len, x.buffer(), &g.buffer, None, y.buffer()).await?;
        Ok(y)
    }

    async fn add(&mut self, a: &GpuTensor, b: &GpuTensor) -> Result<GpuTensor, ModelError> {
        self.elementwise(Elementwise::Add, a, Some(b)).await
    }

    async fn scale(&mut self, x: &GpuTensor, s: f32) -> Result<GpuTensor, ModelError> {
        self.elementwise(Elementwise::Scale(s), x, None).await
    }

    async fn activation(&mut self, x: &GpuTensor, act: Activation) -> Result<GpuTensor, ModelError> {
        self.elementwise(elementwise_of(act), x, None).await
    }

    async fn gated(&mut self, gate: &GpuTensor, up: &GpuTensor, act: Activation) -> Result<GpuTensor, ModelError> {
        match act {
            Activation::Silu => self.elementwise(Elementwise::SwiGlu, gate, Some(up)).await,
            other => {
                let g = self.activation(gate, other).await?;
                self.elementwise(Elementwise::Mul, &g, Some(up)).await
            }
        }
    }

    fn rope_table(&mut self, inv_freq: &[f32], scale: f32, pos0: u32, n: u32) -> Result<GpuRope, ModelError> {
        self.rope_upload(inv_freq, &rope::cos_sin_table(inv_freq, scale, pos0, n))
    }

    fn batch_rope_table(&mut self, inv_freq: &[f32], batch: &GpuBatch) -> Result<GpuRope, ModelError> {
        // Padded rows: every sequence's slots 0..len, padding included.
        let (n, len) = (batch.lengths.len() as u32, batch.len);
        self.rope_upload(inv_freq, &rope::cos_sin_rows(inv_freq, 1.0, (0..n * len).map(|r| r % len)))
    }

    async fn rope(&mut self, x: GpuTensor, table: &GpuRope, layout: RopeLayout, heads: u32, head_dim: u32) -> Result<GpuTensor, ModelError> {
        if x.cols != heads * head_dim {
            return Err(shape(format!("RoPE of {heads} heads of {head_dim} over {} columns", x.cols)));
        }
        let ctx = self.ctx.clone();
        rope::encode(&ctx, self.encoder()?, layout, x.rows, heads, head_dim, table.rot_dim, &table.buffer, x.buffer()).await?;
        Ok(x)
    }

    async fn cached_attention(&mut self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, cache: &mut GpuKvCache, a: CachedAttention) -> Result<GpuTensor, ModelError> {
        let n = q.rows;
        let end = a.pos0.checked_add(n).filter(|&end| end <= cache.capacity);
        let fits = (k.rows, k.cols) == (n, cache.width) && (v.rows, v.cols) == (n, cache.width) && q.cols == a.heads * a.head_dim && a.kv_heads * a.head_dim == cache.width;
        let Some(end) = end.filter(|_| fits) else {
            return Err(shape(format!("attention of q ({n}, {}), k/v ({}, {}) at {} over a cache of {} × {}", q.cols, k.rows, k.cols, a.pos0, cache.capacity, cache.width)));
        };
        let attn = Attention { batch: 1, q_len: n, kv_len: cache.capacity, heads: a.heads, kv_heads: a.kv_heads, head_dim: a.head_dim, q_pos0: a.pos0, causal: true, window: a.window.unwrap_or(0), scale: a.scale, softcap: a.softcap.unwrap_or(0.0), rel_span: 0 };
        let lengths = self.upload(&[end])?;
        let scores = self.scratch(attn.scratch_bytes())?;
        let out = self.output(n, q.cols)?;
        let ctx = self.ctx.clone();
        let e = self.encoder()?;
        let at = u64::from(a.pos0) * u64::from(cache.width) * 4;
        let len = u64::from(n) * u64::from(cache.width) * 4;
        e.copy_buffer_to_buffer(k.buffer(), 0, &cache.k, at, len);
        e.copy_buffer_to_buffer(v.buffer(), 0, &cache.v, at, len);
        attn.encode(&ctx, e, q.buffer(), &cache.k, &cache.v, &lengths, scores.buffer(), out.buffer(), None).await?;
        Ok(out)
    }

    async fn last_row(&mut self, x: &GpuTensor) -> Result<GpuTensor, ModelError> {
        if x.rows == 0 {
            return Err(shape("the last row of an empty tensor".into()));
        }
        let y = self.output(1, x.cols)?;
        let row = u64::from(x.cols) * 4;
        self.encoder()?.copy_buffer_to_buffer(x.buffer(), u64::from(x.rows - 1) * row, y.buffer(), 0, row);
        Ok(y)
    }

    async fn pick(&mut self, logits: &GpuTensor, pick: Pick) -> Result<Next, ModelError> {
        let vocab = logits.cols;
        if logits.rows != 1 {
            return Err(shape(format!("a pick from {} rows of logits", logits.rows)));
        }
        let token = self.output(1, 1)?;
        let scratch = self.output(1, 1)?;
        let ctx = self.ctx.clone();
        let e = self.encoder()?;
        match pick {
            Pick::Greedy => reduce::encode_argmax(&ctx, e, 1, vocab, logits.buffer(), token.buffer(), scratch.buffer()).await?,
            Pick::Sample(sampling, u) => sampling.encode(&ctx, e, vocab, logits.buffer(), token.buffer(), u).await?,
            Pick::Logits => {}
        }
        self.submit().await?;
        Ok(match pick {
            Pick::Logits => Next::Logits(ctx.read_f32(logits.buffer(), vocab as usize).await?),
            _ => Next::Token(ctx.read_f32(token.buffer(), 1).await?[0].to_bits()),
        })
    }

    async fn finish(&mut self) -> Result<(), ModelError> {
        self.submit().await
    }

    fn batch(&mut self, lengths: &[u32]) -> Result<GpuBatch, ModelError> {
        let len = lengths.iter().copied().max().unwrap_or(0);
        if lengths.contains(&0) || len == 0 || u64::from(len) * lengths.len() as u64 > u64::from(u32::MAX) {
            return Err(shape(format!("a batch of sequences of {lengths:?} tokens")));
        }
        let buffer = self.upload(lengths)?;
        Ok(GpuBatch { lengths: lengths.to_vec(), len, buffer })
    }

    async fn embed_batch(&mut self, table: &GpuWeight, ids: &[u32], batch: &GpuBatch) -> Result<GpuTensor, ModelError> {
        if ids.len() as u64 != batch.lengths.iter().map(|&n| u64::from(n)).sum::<u64>() {
            return Err(shape(format!("{} ids for sequences of {:?}", ids.len(), batch.lengths)));
        }
        // Each sequence padded to the batch's length with id 0 (a row every table has).
        let mut padded = Vec::with_capacity(batch.rows() as usize);
        let mut rest = ids;
        for &n in &batch.lengths {
            let (seq, tail) = rest.split_at(n as usize);
            padded.extend_from_slice(seq);
            padded.resize(padded.len() + (batch.len - n) as usize, 0);
            rest = tail;
        }
        self.embed(table, &padded).await
    }

    async fn patches(&mut self, inputs: &[f32], n: u32, patches: Patches, layout: Layout) -> Result<GpuTensor, ModelError> {
        let x = self.upload(inputs)?;
        let y = self.output(n * patches.rows(), patches.cols())?;
        let ctx = self.ctx.clone();
        patches.encode(&ctx, self.encoder()?, n, layout, &x, y.buffer()).await?;
        Ok(y)
    }

    async fn tensor_patches(&mut self, x: &GpuTensor, patches: Patches, layout: Layout) -> Result<GpuTensor, ModelError> {
        if patches.input_len(1, layout) > x.elems() {
            return Err(shape(format!("patches {patches:?} in {layout:?} over a tensor of ({}, {})", x.rows, x.cols)));
        }
        let y = self.output(patches.rows(), patches.cols())?;
        let ctx = self.ctx.clone();
        patches.encode(&ctx, self.encoder()?, 1, layout, x.buffer(), y.buffer()).await?;
        Ok(y)
    }

    async fn cross_attention(&mut self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, heads: u32, head_dim: u32, scale: f32) -> Result<GpuTensor, ModelError> {
        let width = heads * head_dim;
        if q.cols != width || k.cols != width || (v.rows, v.cols) != (k.rows, k.cols) {
            return Err(shape(format!("cross-attention of {heads} heads of {head_dim}: q ({}, {}), k ({}, {}), v ({}, {})", q.rows, q.cols, k.rows, k.cols, v.rows, v.cols)));
        }
        let attn = Attention { batch: 1, q_len: q.rows, kv_len: k.rows, heads, kv_heads: heads, head_dim, q_pos0: 0, causal: false, window: 0, scale, softcap: 0.0, rel_span: 0 };
        let lengths = self.upload(&[k.rows])?;
        let scores = self.scratch(attn.scratch_bytes())?;
        let out = self.output(q.rows, width)?;
        let ctx = self.ctx.clone();
        attn.encode(&ctx, self.encoder()?, q.buffer(), k.buffer(), v.buffer(), &lengths, scores.buffer(), out.buffer(), None).await?;
        Ok(out)
    }

    async fn add_tiled(&mut self, x: &GpuTensor, t: &GpuVector) -> Result<GpuTensor, ModelError> {
        let y = self.output(x.rows, x.cols)?;
        let ctx = self.ctx.clone();
        Elementwise::AddRow { cols: t.len }.encode(&ctx, self.encoder()?, x.elems(), x.buffer(), &t.buffer, y.buffer()).await?;
        Ok(y)
    }

    async fn attention(&mut self, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, batch: &GpuBatch, a: BatchAttention, bias: Option<&GpuVector>) -> Result<GpuTensor, ModelError> {
        let width = a.heads * a.head_dim;
        for (what, t) in [("q", q), ("k", k), ("v", v)] {
            batch.check(what, t)?;
            if t.cols != width {
                return Err(shape(format!("attention of {} heads of {} over {what} of {} columns", a.heads, a.head_dim, t.cols)));
            }
        }
        let n = batch.lengths.len() as u32;
        let rel_span = match bias {
            Some(b) => relative_span(b.len, a.heads).ok_or_else(|| shape(format!("a relative position bias of {} values over {} heads", b.len, a.heads)))?,
            None => 0,
        };
        let attn = Attention { batch: n, q_len: batch.len, kv_len: batch.len, heads: a.heads, kv_heads: a.heads, head_dim: a.head_dim, q_pos0: 0, causal: a.causal, window: a.window.unwrap_or(0), scale: a.scale, softcap: 0.0, rel_span };
        let scores = self.scratch(attn.scratch_bytes())?;
        let out = self.output(q.rows, width)?;
        let ctx = self.ctx.clone();
        attn.encode(&ctx, self.encoder()?, q.buffer(), k.buffer(), v.buffer(), &batch.buffer, scores.buffer(), out.buffer(), bias.map(|b| &b.buffer)).await?;
        Ok(out)
    }

    async fn rows(&mut self, x: &GpuTensor, batch: &GpuBatch, picks: &[(u32, u32)]) -> Result<GpuTensor, ModelError> {
        batch.check("rows", x)?;
        let mut sources = Vec::with_capacity(picks.len());
        for &(s, p) in picks {
            match batch.lengths.get(s as usize) {
                Some(&n) if p < n => sources.push(u64::from(s * batch.len + p)),
                _ => return Err(shape(format!("row {p} of sequence {s} of {:?}", batch.lengths))),
            }
        }
        let y = self.output(picks.len() as u32, x.cols)?;
        let row = u64::from(x.cols) * 4;
        let e = self.encoder()?;
        // One copy per run of consecutive rows.
        let mut i = 0;
        while i < sources.len() {
            let mut end = i + 1;
            while end < sources.len() && sources[end] == sources[end - 1] + 1 {
                end += 1;
            }
            e.copy_buffer_to_buffer(x.buffer(), sources[i] * row, y.buffer(), i as u64 * row, (end - i) as u64 * row);
            i = end;
        }
        Ok(y)
    }

    async fn mean_pool(&mut self, x: &GpuTensor, batch: &GpuBatch, normalize: bool) -> Result<GpuTensor, ModelError> {
        batch.check("a mean", x)?;
        let n = batch.lengths.len() as u32;
        let y = self.output(n, x.cols)?;
        let ctx = self.ctx.clone();
        pool::encode(&ctx, self.encoder()?, n, batch.len, x.cols, normalize, x.buffer(), &batch.buffer, y.buffer()).await?;
        Ok(y)
    }

    async fn read(&mut self, x: &GpuTensor) -> Result<Vec<f32>, ModelError> {
        self.submit().await?;
        Ok(self.ctx.read_f32(x.buffer(), x.elems() as usize).await?)
    }
}
