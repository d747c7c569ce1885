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
use crate::gpu::ops::product::{Epilogue, Gate};
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

/// A weight on the GPU: rows `rows` of a `GpuWeight` that may hold several matrices stacked (Q,
/// K and V; gate and up: `Backend::matrices`), so that one product serves them all.
#[derive(Clone)]
pub struct GpuMatrix {
    pub weight: Rc<GpuWeight>,
    pub rows: std::ops::Range<u32>,
}

impl GpuMatrix {
    fn whole(weight: GpuWeight) -> Self {
        let rows = 0..weight.rows;
        Self { weight: Rc::new(weight), rows }
    }

    /// The whole weight, when this matrix is all of it.
    fn alone(&self) -> Option<&GpuWeight> {
        (self.rows == (0..self.weight.rows)).then_some(&*self.weight)
    }

    fn len(&self) -> u32 {
        self.rows.end - self.rows.start
    }
}

/// The weight that `ms` are all the rows of, in order (one whole matrix, or the two or three
/// that `matrices` stacked), else None.
fn joint<'m>(ms: impl IntoIterator<Item = &'m GpuMatrix>) -> Option<&'m GpuWeight> {
    let mut ms = ms.into_iter();
    let first = ms.next()?;
    let (mut end, mut count) = (first.rows.end, 1);
    for m in ms {
        if !Rc::ptr_eq(&m.weight, &first.weight) || m.rows.start != end {
            return None;
        }
        end = m.rows.end;
        count += 1;
    }
    (first.rows.start == 0 && end == first.weight.rows && count <= 3).then_some(&*first.weight)
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

impl Drop for Gpu {
    /// The dispatch cache's bind groups hold this backend's buffers (a model's weights, its KV
    /// cache): let them go with it.
    fn drop(&mut self) {
        self.ctx.clear_dispatch_cache();
    }
}

/// The most tokens for which a product fuses the norm of its input (`Gpu::fuses_norm`).
const NORM_FUSED_MAX_TOKENS: u32 = 8;

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
            // Buffers freed since the last pass (its outputs, read after it ran) go back to the
            // pool first, so that every pass starts from the pool's one order (`BufferPool::give`).
            self.give_back_freed();
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
        self.give_back_freed();
        Ok(result?)
    }

    /// Hands the buffers on this backend's free list back to the context's pool.
    fn give_back_freed(&self) {
        for (_, buffers) in self.free.borrow_mut().drain() {
            buffers.into_iter().for_each(|b| self.ctx.pool.give(b));
        }
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

impl Gpu {
    fn check_product(&self, x: &GpuTensor, w: &GpuWeight) -> Result<(), ModelError> {
        if x.cols != w.cols {
            return Err(shape(format!("({}, {}) times {} ({}, {})ᵀ", x.rows, x.cols, w.name, w.rows, w.cols)));
        }
        Ok(())
    }

    /// Whether the product kernel for `tokens` rows times `w` fuses gating.
    fn fuses_loop(&self, w: &GpuWeight, tokens: u32) -> bool {
        matmul::pick(&self.ctx, w.dtype, w.cols, tokens).fuses_loop()
    }

    /// Whether it fuses a norm too: only for a few tokens (a decode step), where the product
    /// reads each weight once whatever it computes and a dispatch saved counts. Over many tokens
    /// every invocation would gather each token's Σx² again and scale its x by the gain, an
    /// eighth more multiply-adds for its 8 × 8 block (SmolLM2's 128-token prefill on lavapipe:
    /// 33 tok/s against 40 with the norm its own dispatch), where the norm kernel does it once.
    fn fuses_norm(&self, w: &GpuWeight, tokens: u32) -> bool {
        tokens <= NORM_FUSED_MAX_TOKENS && self.fuses_loop(w, tokens)
    }

    /// x·Wᵀ through `epi` (no output segments) into a new tensor.
    async fn product(&mut self, x: &GpuTensor, w: &GpuWeight, epi: Epilogue<'_>) -> Result<GpuTensor, ModelError> {
        self.check_product(x, w)?;
        let y = self.output(x.rows, epi.out_cols(w))?;
        let ctx = self.ctx.clone();
        matmul::encode_fused(&ctx, self.encoder()?, w, x.rows, x.buffer(), y.buffer(), &epi).await?;
        Ok(y)
    }

    /// The biases of `ws` as one vector over their rows (zeros where a matrix has none), or None
    /// when none has one.
    fn joint_bias(&mut self, ws: &[(&GpuMatrix, Option<&GpuVector>)]) -> Result<Option<GpuTensor>, ModelError> {
        if ws.iter().all(|(_, b)| b.is_none()) {
            return Ok(None);
        }
        let total: u32 = ws.iter().map(|(m, _)| m.len()).sum();
        let joint = self.output(1, total)?;
        let e = self.encoder()?;
        if ws.iter().any(|(_, b)| b.is_none()) {
            e.clear_buffer(joint.buffer(), 0, None);
        }
        let mut at = 0u64;
        for (m, b) in ws {
            if let Some(b) = b {
                e.copy_buffer_to_buffer(&b.buffer, 0, joint.buffer(), at * 4, u64::from(b.len) * 4);
            }
            at += u64::from(m.len());
        }
        Ok(Some(joint))
    }

    /// `x·Wᵀ` for each of `ws`, which are all the rows of `w` in order, as one product: their
    /// biases and (with `norm`: gain, epsilon) a fused RMSNorm of x in its epilogue, each
    /// matrix's outputs then copied out of their segment.
    async fn joint_product(&mut self, x: &GpuTensor, w: &GpuWeight, ws: &[(&GpuMatrix, Option<&GpuVector>)], norm: Option<(&GpuVector, f32)>) -> Result<Vec<GpuTensor>, ModelError> {
        self.check_product(x, w)?;
        for &(m, b) in ws {
            check_bias(m, b)?;
        }
        if let Some((g, _)) = norm {
            check_norm(x, g, None)?;
        }
        let splits = match ws {
            [_] => None,
            [a, _] => Some([a.0.rows.end, w.rows]),
            [a, b, _] => Some([a.0.rows.end, b.0.rows.end]),
            _ => return Err(shape(format!("a joint product of {} matrices", ws.len()))),
        };
        let bias = self.joint_bias(ws)?;
        let n = x.rows;
        let y = self.output(n, w.rows)?;
        let epi = Epilogue { bias: bias.as_ref().map(GpuTensor::buffer), splits, rms_norm: norm.map(|(g, eps)| (&g.buffer, eps)), ..Default::default() };
        let ctx = self.ctx.clone();
        matmul::encode_fused(&ctx, self.encoder()?, w, n, x.buffer(), y.buffer(), &epi).await?;
        if ws.len() == 1 {
            return Ok(vec![y]);
        }
        let mut out = Vec::with_capacity(ws.len());
        for (m, _) in ws {
            let t = self.output(n, m.len())?;
            let at = u64::from(n) * u64::from(m.rows.start) * 4;
            self.encoder()?.copy_buffer_to_buffer(y.buffer(), at, t.buffer(), 0, u64::from(n) * u64::from(m.len()) * 4);
            out.push(t);
        }
        Ok(out)
    }
}

/// A norm's gain (and bias) must have a value per column of its input.
fn check_norm(x: &GpuTensor, g: &GpuVector, b: Option<&GpuVector>) -> Result<(), ModelError> {
    if g.len != x.cols || b.is_some_and(|b| b.len != x.cols) {
        return Err(shape(format!("a norm of {} values over rows of {}", g.len, x.cols)));
    }
    Ok(())
}

/// A bias must have a value per row of its matrix.
fn check_bias(w: &GpuMatrix, bias: Option<&GpuVector>) -> Result<(), ModelError> {
    match bias {
        Some(b) if b.len != w.len() => Err(shape(format!("a bias of {} for {} ({} rows)", b.len, w.weight.name, w.len()))),
        _ => Ok(()),
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
    type Matrix = GpuMatrix;
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

    async fn matrix(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<GpuMatrix, ModelError> {
        Ok(GpuMatrix::whole(crate::models::upload_matrix(&self.ctx, t, read, rows, cols).await?))
    }

    fn matrix_from_values(&self, name: &str, values: &[f32], rows: u32, cols: u32) -> Result<GpuMatrix, ModelError> {
        crate::backend::check_values(name, values, rows, cols)?;
        Ok(GpuMatrix::whole(GpuWeight::upload(&self.ctx, name, crate::formats::DType::F32, u64::from(rows), u64::from(cols), bytemuck::cast_slice(values))?))
    }

    async fn matrices(&self, ts: &[&TensorInfo], read: &mut impl RangeReader, rows: &[u32], cols: u32) -> Result<Vec<GpuMatrix>, ModelError> {
        // Stacked in one weight when they share a type (GGUF mixes: a V of Q6_K beside Q and K of
        // Q4_K stays apart) and there are two or three of them (the epilogue's segments).
        let dtype = ts.first().map(|t| crate::models::gpu_dtype(t.dtype, cols));
        let stack = (2..=3).contains(&ts.len()) && ts.len() == rows.len() && ts.iter().all(|t| Some(crate::models::gpu_dtype(t.dtype, cols)) == dtype);
        let Some(dtype) = dtype.filter(|_| stack) else {
            let mut out = Vec::with_capacity(ts.len());
            for (t, &r) in ts.iter().zip(rows) {
                out.push(self.matrix(t, read, r, cols).await?);
            }
            return Ok(out);
        };
        for (t, &r) in ts.iter().zip(rows) {
            crate::models::check_matrix_shape(t, r, cols)?;
        }
        let total: u64 = rows.iter().map(|&r| u64::from(r)).sum();
        let name = ts.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(" + ");
        let weight = Rc::new(GpuWeight::new(&self.ctx, &name, dtype, total, u64::from(cols), None)?);
        let mut out = Vec::with_capacity(ts.len());
        let mut first = 0u32;
        for (t, &r) in ts.iter().zip(rows) {
            crate::models::write_tensor_rows(&self.ctx, t, read, &weight, u64::from(first), r).await?;
            out.push(GpuMatrix { weight: weight.clone(), rows: first..first + r });
            first += r;
        }
        Ok(out)
    }

    async fn table(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<GpuMatrix, ModelError> {
        self.matrix(t, read, rows, cols).await
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

    fn matrix_bytes(&self, m: &GpuMatrix) -> u64 {
        m.weight.gpu_bytes() / u64::from(m.weight.rows) * u64::from(m.len())
    }

    async fn embed(&mut self, table: &GpuMatrix, ids: &[u32]) -> Result<GpuTensor, ModelError> {
        let table = table.alone().ok_or_else(|| shape("row lookups in a part of a joint matrix".into()))?;
        let n = u32::try_from(ids.len()).map_err(|_| shape(format!("{} ids", ids.len())))?;
        let ids = self.upload(ids)?;
        let y = self.output(n, table.cols)?;
        let ctx = self.ctx.clone();
        embedding::encode(&ctx, self.encoder()?, table, n, &ids, y.buffer()).await?;
        Ok(y)
    }

    async fn linear(&mut self, x: &GpuTensor, w: &GpuMatrix, bias: Option<&GpuVector>) -> Result<GpuTensor, ModelError> {
        check_bias(w, bias)?;
        let Some(weight) = w.alone() else {
            // A part of a joint weight on its own: the joint product, this part's segment (the
            // rows before and after it standing in as matrices of their own).
            let before = GpuMatrix { weight: w.weight.clone(), rows: 0..w.rows.start };
            let after = GpuMatrix { weight: w.weight.clone(), rows: w.rows.end..w.weight.rows };
            let ws: Vec<(&GpuMatrix, Option<&GpuVector>)> = [&before, w, &after].into_iter().filter(|m| m.len() > 0).map(|m| (m, None)).collect();
            let ys = self.joint_product(x, &w.weight, &ws, None).await?;
            let y = ys.into_iter().nth(usize::from(w.rows.start > 0)).ok_or_else(|| shape("a part's segment".into()))?;
            return match bias {
                Some(b) => self.add_tiled(&y, b).await,
                None => Ok(y),
            };
        };
        self.product(x, weight, Epilogue { bias: bias.map(|b| &b.buffer), ..Default::default() }).await
    }

    async fn linear_many(&mut self, x: &GpuTensor, ws: &[(&GpuMatrix, Option<&GpuVector>)]) -> Result<Vec<GpuTensor>, ModelError> {
        match joint(ws.iter().map(|(m, _)| *m)) {
            Some(w) if ws.len() > 1 => self.joint_product(x, w, ws, None).await,
            _ => {
                let mut out = Vec::with_capacity(ws.len());
                for &(w, b) in ws {
                    out.push(self.linear(x, w, b).await?);
                }
                Ok(out)
            }
        }
    }

    async fn norm_linear_many(&mut self, x: &GpuTensor, norm: Norm, g: &GpuVector, ws: &[(&GpuMatrix, Option<&GpuVector>)]) -> Result<Vec<GpuTensor>, ModelError> {
        if let (Norm::Rms { eps }, Some(w)) = (norm, joint(ws.iter().map(|(m, _)| *m)))
            && self.fuses_norm(w, x.rows)
        {
            return self.joint_product(x, w, ws, Some((g, eps))).await;
        }
        crate::backend::compose::norm_linear_many(self, x, norm, g, ws).await
    }

    async fn gated_linear(&mut self, x: &GpuTensor, norm: Option<(Norm, &GpuVector)>, gate: &GpuMatrix, up: &GpuMatrix, act: Activation) -> Result<GpuTensor, ModelError> {
        let kind = match act {
            Activation::Silu => Some(Gate::Silu),
            Activation::GeluTanh => Some(Gate::GeluTanh),
            _ => None,
        };
        if let (Some(kind), Some(w)) = (kind, joint([gate, up]))
            && gate.len() == up.len()
            && w.parts.len() == 1
            && self.fuses_loop(w, x.rows)
        {
            // The norm in the product's loop where it pays (`fuses_norm`), else its own kernel.
            let normed;
            let (x, rms_norm) = match norm {
                None => (x, None),
                Some((Norm::Rms { eps }, g)) if self.fuses_norm(w, x.rows) => {
                    check_norm(x, g, None)?;
                    (x, Some((&g.buffer, eps)))
                }
                Some((n, g)) => {
                    normed = self.norm(x, n, g, None).await?;
                    (&normed, None)
                }
            };
            return self.product(x, w, Epilogue { gated: Some(kind), rms_norm, ..Default::default() }).await;
        }
        crate::backend::compose::gated_linear(self, x, norm, gate, up, act).await
    }

    async fn linear_add(&mut self, x: &GpuTensor, w: &GpuMatrix, bias: Option<&GpuVector>, residual: &GpuTensor) -> Result<GpuTensor, ModelError> {
        check_bias(w, bias)?;
        let Some(weight) = w.alone() else { return crate::backend::compose::linear_add(self, x, w, bias, residual).await };
        if (residual.rows, residual.cols) != (x.rows, weight.rows) {
            return Err(shape(format!("a residual of ({}, {}) for ({}, {}) outputs", residual.rows, residual.cols, x.rows, weight.rows)));
        }
        self.product(x, weight, Epilogue { bias: bias.map(|b| &b.buffer), residual: Some(residual.buffer()), ..Default::default() }).await
    }

    async fn rope_qk(&mut self, q: GpuTensor, k: GpuTensor, table: &GpuRope, layout: RopeLayout, heads: u32, kv_heads: u32, head_dim: u32) -> Result<(GpuTensor, GpuTensor), ModelError> {
        if q.cols != heads * head_dim || k.cols != kv_heads * head_dim || q.rows != k.rows {
            return Err(shape(format!("RoPE of {heads} and {kv_heads} heads of {head_dim} over ({}, {}) and ({}, {})", q.rows, q.cols, k.rows, k.cols)));
        }
        let ctx = self.ctx.clone();
        rope::encode_pair(&ctx, self.encoder()?, layout, q.rows, [heads, kv_heads], head_dim, table.rot_dim, &table.buffer, [q.buffer(), k.buffer()]).await?;
        Ok((q, k))
    }

    async fn norm(&mut self, x: &GpuTensor, norm: Norm, g: &GpuVector, b: Option<&GpuVector>) -> Result<GpuTensor, ModelError> {
        check_norm(x, g, b)?;
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
        let attn = Attention { batch: 1, q_len: n, kv_len: cache.capacity, heads: a.heads, kv_heads: a.kv_heads, head_dim: a.head_dim, q_pos0: a.pos0, q_pos_from_lengths: true, causal: true, window: a.window.unwrap_or(0), scale: a.scale, softcap: a.softcap.unwrap_or(0.0), rel_span: 0 };
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
        let u = match pick {
            Pick::Sample(_, u) => {
                crate::gpu::ops::sample::check_u(u)?;
                Some(self.upload(&[u])?)
            }
            _ => None,
        };
        let ctx = self.ctx.clone();
        let e = self.encoder()?;
        match (pick, &u) {
            (Pick::Greedy, _) => reduce::encode_argmax(&ctx, e, 1, vocab, logits.buffer(), token.buffer(), scratch.buffer()).await?,
            (Pick::Sample(sampling, _), Some(u)) => sampling.encode(&ctx, e, vocab, logits.buffer(), token.buffer(), u).await?,
            (Pick::Sample(..), None) | (Pick::Logits, _) => {}
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

    async fn embed_batch(&mut self, table: &GpuMatrix, ids: &[u32], batch: &GpuBatch) -> Result<GpuTensor, ModelError> {
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
        let attn = Attention { batch: 1, q_len: q.rows, kv_len: k.rows, heads, kv_heads: heads, head_dim, q_pos0: 0, q_pos_from_lengths: false, causal: false, window: 0, scale, softcap: 0.0, rel_span: 0 };
        let lengths = self.upload(&[k.rows])?;
        let scores = self.scratch(attn.scratch_bytes())?;
        let out = self.output(q.rows, width)?;
        let ctx = self.ctx.clone();
        attn.encode(&ctx, self.encoder()?, q.buffer(), k.buffer(), v.buffer(), &lengths, scores.buffer(), out.buffer(), None).await?;
        Ok(out)
    }

    async fn add_tiled(&mut self, x: &GpuTensor, t: &GpuVector) -> Result<GpuTensor, ModelError> {
        if t.len == 0 || x.cols == 0 || !t.len.is_multiple_of(x.cols) || !x.elems().is_multiple_of(u64::from(t.len)) {
            return Err(shape(format!("{} values tiled over ({}, {})", t.len, x.rows, x.cols)));
        }
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
        let attn = Attention { batch: n, q_len: batch.len, kv_len: batch.len, heads: a.heads, kv_heads: a.heads, head_dim: a.head_dim, q_pos0: 0, q_pos_from_lengths: false, causal: a.causal, window: a.window.unwrap_or(0), scale: a.scale, softcap: 0.0, rel_span };
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
