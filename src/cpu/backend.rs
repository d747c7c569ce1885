//! The op set on the CPU: candle-core tensors, run as they are called. Matrices stay in their
//! file's block types (`super::Matrix`: candle's quantized matmul, activations rounded to the
//! block type's 8-bit partner as llama.cpp does; Q4_1 our own); grouped-query attention runs the
//! query heads that share a KV head as rows of one matmul, without repeating K and V.

use candle_core::{DType, Device, Tensor};

use super::vec::{axpy, dot, softmax};
use super::{Matrix, cpu_err};
use crate::backend::{Activation, Backend, BatchAttention, CachedAttention, Layout, Norm, Patches, RopeLayout, relative_span};
use crate::formats::TensorInfo;
use crate::generate::{Next, Pick, sampling};
use crate::models::{ModelError, RangeReader};

/// One layer's K and V: (kv_heads, capacity, head_dim) each.
pub struct CpuKvCache {
    k: Tensor,
    v: Tensor,
    capacity: u32,
}

/// RoPE's cos and sin, (tokens, head_dim / 2) each.
pub struct CpuRope {
    cos: Tensor,
    sin: Tensor,
}

impl CpuRope {
    /// (rows, half) cos and sin tensors from a (cos, sin) table of `half` pairs per row.
    fn new(table: &[[f32; 2]], half: usize) -> Result<Self, ModelError> {
        let rows = table.len().checked_div(half).unwrap_or(0);
        let column = |i: usize| Tensor::from_iter(table.iter().map(|cs| cs[i]), &Device::Cpu).and_then(|t| t.reshape((rows, half))).map_err(cpu_err);
        Ok(Self { cos: column(0)?, sin: column(1)? })
    }
}

/// The sequences of a batched pass, packed: sequence `i` is rows `starts[i]..starts[i] + lengths[i]`.
pub struct CpuBatch {
    lengths: Vec<u32>,
    starts: Vec<usize>,
    rows: usize,
}

impl CpuBatch {
    fn check(&self, what: &str, x: &Tensor) -> Result<(usize, usize), ModelError> {
        let (rows, cols) = dims2(x)?;
        if rows != self.rows {
            return Err(shape(format!("{what} of {rows} rows over sequences of {:?}", self.lengths)));
        }
        Ok((rows, cols))
    }
}

/// `values` as a (rows, cols) tensor, checked.
fn rows_tensor(name: &str, values: &[f32], rows: u32, cols: u32) -> Result<Tensor, ModelError> {
    crate::backend::check_values(name, values, rows, cols)?;
    Tensor::from_slice(values, (rows as usize, cols as usize), &Device::Cpu).map_err(cpu_err)
}

fn values(x: &Tensor) -> Result<Vec<f32>, ModelError> {
    x.flatten_all().and_then(|x| x.to_vec1::<f32>()).map_err(cpu_err)
}

fn from_values(v: Vec<f32>, rows: usize, cols: usize) -> Result<Tensor, ModelError> {
    Tensor::from_vec(v, (rows, cols), &Device::Cpu).map_err(cpu_err)
}

/// The CPU.
#[derive(Default)]
pub struct Cpu;

fn shape(detail: String) -> ModelError {
    ModelError::Cpu(detail)
}

/// Sequences at least this long take candle's matmuls in `attention` (unmasked only).
const LONG_SEQUENCE: usize = 256;

/// softmax(q·kᵀ·scale)·v per head, every query over every key: q (n, heads · hd), k and v
/// (keys, heads · hd).
fn full_attention(q: &Tensor, k: &Tensor, v: &Tensor, heads: usize, hd: usize, scale: f32) -> candle_core::Result<Tensor> {
    // (rows, h · hd) → (h, rows, hd)
    let split = |t: &Tensor| t.reshape((t.dim(0)?, heads, hd))?.transpose(0, 1)?.contiguous();
    let n = q.dim(0)?;
    let scores = (split(q)?.matmul(&split(k)?.t()?)? * f64::from(scale))?;
    let p = candle_nn::ops::softmax_last_dim(&scores)?;
    p.matmul(&split(v)?)?.transpose(0, 1)?.reshape((n, heads * hd))
}

fn dims2(x: &Tensor) -> Result<(usize, usize), ModelError> {
    x.dims2().map_err(cpu_err)
}

impl Backend for Cpu {
    type Tensor = Tensor;
    type Matrix = Matrix;
    type Vector = Tensor;
    type KvCache = CpuKvCache;
    type Rope = CpuRope;
    type Batch = CpuBatch;

    fn device(&self) -> &'static str {
        "cpu"
    }

    fn adapter(&self) -> String {
        super::adapter_name()
    }

    fn another(&self) -> Self {
        Cpu
    }

    async fn matrix(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<Matrix, ModelError> {
        Matrix::read_tensor(t, read, rows, cols).await
    }

    fn matrix_from_values(&self, name: &str, values: &[f32], rows: u32, cols: u32) -> Result<Matrix, ModelError> {
        Matrix::transposed(rows_tensor(name, values, rows, cols)?)
    }

    async fn matrices(&self, ts: &[&TensorInfo], read: &mut impl RangeReader, rows: &[u32], cols: u32) -> Result<Vec<Matrix>, ModelError> {
        let mut parts = Vec::with_capacity(ts.len());
        for (t, &r) in ts.iter().zip(rows) {
            parts.push(Matrix::read_tensor(t, read, r, cols).await?);
        }
        // Float matrices become one Wᵀ: Q, K and V in one matmul (3 products of (n, h) × (h, h)
        // take 1.2x one of (n, h) × (h, 3h) at encoder sizes).
        let wts: Option<Vec<&Tensor>> = parts.iter().map(|m| if let Matrix::Transposed(t) = m { Some(t) } else { None }).collect();
        let Some(wts) = wts.filter(|w| w.len() > 1) else { return Ok(parts) };
        let wt = Tensor::cat(&wts, 1).map_err(cpu_err)?;
        let mut start = 0;
        Ok(rows
            .iter()
            .map(|&r| {
                let part = Matrix::Part { wt: wt.clone(), start, rows: r as usize };
                start += r as usize;
                part
            })
            .collect())
    }

    async fn table(&self, t: &TensorInfo, read: &mut impl RangeReader, rows: u32, cols: u32) -> Result<Matrix, ModelError> {
        Matrix::read_table(t, read, rows, cols).await
    }

    fn table_from_values(&self, name: &str, values: &[f32], rows: u32, cols: u32) -> Result<Matrix, ModelError> {
        Ok(Matrix::Candle(candle_core::quantized::QMatMul::Tensor(rows_tensor(name, values, rows, cols)?)))
    }

    fn vector(&self, values: &[f32]) -> Result<Tensor, ModelError> {
        Tensor::from_slice(values, values.len(), &Device::Cpu).map_err(cpu_err)
    }

    fn kv_caches(&self, layers: u32, kv_heads: u32, head_dim: u32, capacity: u32) -> Result<Vec<CpuKvCache>, ModelError> {
        // K and V of every layer in f32: refuse what this address space cannot hold (wasm32:
        // 4 GiB in all) rather than abort on the allocation.
        let bytes = [u64::from(layers), u64::from(kv_heads), u64::from(capacity), u64::from(head_dim)].iter().fold(8u64, |a, &b| a.saturating_mul(b));
        let limit = if cfg!(target_arch = "wasm32") { 3 << 30 } else { isize::MAX as u64 };
        if bytes > limit {
            return Err(ModelError::Config(format!("a KV cache of {capacity} tokens needs {bytes} bytes; ask for a smaller context")));
        }
        let zeros = || Tensor::zeros((kv_heads as usize, capacity as usize, head_dim as usize), DType::F32, &Device::Cpu).map_err(cpu_err);
        (0..layers).map(|_| Ok(CpuKvCache { k: zeros()?, v: zeros()?, capacity })).collect()
    }

    fn matrix_bytes(&self, m: &Matrix) -> u64 {
        m.bytes()
    }

    async fn embed(&mut self, table: &Matrix, ids: &[u32]) -> Result<Tensor, ModelError> {
        table.embedding(ids)
    }

    async fn linear(&mut self, x: &Tensor, w: &Matrix, bias: Option<&Tensor>) -> Result<Tensor, ModelError> {
        let y = w.forward(x)?;
        match bias {
            Some(b) => y.broadcast_add(b).map_err(cpu_err),
            None => Ok(y),
        }
    }

    async fn linear_many(&mut self, x: &Tensor, ws: &[(&Matrix, Option<&Tensor>)]) -> Result<Vec<Tensor>, ModelError> {
        // Parts of one joint matrix: one product, then each part's columns (and bias).
        let joint = match ws.first() {
            Some((Matrix::Part { wt, .. }, _)) => Some(wt),
            _ => None,
        };
        let Some(joint) = joint.filter(|wt| ws.iter().all(|(m, _)| matches!(m, Matrix::Part { wt: w, .. } if w.id() == wt.id()))) else {
            let mut out = Vec::with_capacity(ws.len());
            for &(w, b) in ws {
                out.push(self.linear(x, w, b).await?);
            }
            return Ok(out);
        };
        let y = x.matmul(joint).map_err(cpu_err)?;
        ws.iter()
            .map(|&(m, b)| {
                let Matrix::Part { start, rows, .. } = m else { return Err(shape("a joint product over a matrix that is not a part".into())) };
                let part = y.narrow(1, *start, *rows).map_err(cpu_err)?;
                match b {
                    Some(b) => part.broadcast_add(b).map_err(cpu_err),
                    None => part.contiguous().map_err(cpu_err),
                }
            })
            .collect()
    }

    async fn norm(&mut self, x: &Tensor, norm: Norm, g: &Tensor, b: Option<&Tensor>) -> Result<Tensor, ModelError> {
        match norm {
            Norm::Rms { eps } => candle_nn::ops::rms_norm(x, g, eps).map_err(cpu_err),
            Norm::Layer { eps } => {
                let (rows, cols) = dims2(x)?;
                let g = values(g)?;
                let b = b.map(values).transpose()?;
                if g.len() != cols || b.as_ref().is_some_and(|b| b.len() != cols) {
                    return Err(shape(format!("a LayerNorm of {} values over rows of {cols}", g.len())));
                }
                let mut v = values(x)?;
                super::vec::layer_norm_rows(&mut v, &g, b.as_deref(), eps);
                from_values(v, rows, cols)
            }
        }
    }

    async fn head_norm(&mut self, x: &Tensor, norm: Norm, g: &Tensor, heads: u32) -> Result<Tensor, ModelError> {
        let (rows, cols) = dims2(x)?;
        let Norm::Rms { eps } = norm else { return Err(shape("a per-head norm is an RMSNorm".into())) };
        if heads == 0 || g.dims1().map_err(cpu_err)? * heads as usize != cols {
            return Err(shape(format!("a per-head norm of {:?} over {heads} heads of rows of {cols}", g.dims())));
        }
        let per_head = x.reshape((rows * heads as usize, cols / heads as usize)).map_err(cpu_err)?;
        candle_nn::ops::rms_norm(&per_head, g, eps).and_then(|y| y.reshape((rows, cols))).map_err(cpu_err)
    }

    async fn add(&mut self, a: &Tensor, b: &Tensor) -> Result<Tensor, ModelError> {
        if a.dims() != b.dims() {
            return Err(shape(format!("adding {:?} and {:?}", a.dims(), b.dims())));
        }
        (a + b).map_err(cpu_err)
    }

    async fn scale(&mut self, x: &Tensor, s: f32) -> Result<Tensor, ModelError> {
        (x * f64::from(s)).map_err(cpu_err)
    }

    async fn activation(&mut self, x: &Tensor, act: Activation) -> Result<Tensor, ModelError> {
        match act {
            Activation::Silu => x.silu(),
            Activation::GeluTanh => x.gelu(),
            Activation::GeluErf => {
                let (rows, cols) = dims2(x)?;
                let mut v = values(x)?;
                super::vec::gelu_erf(&mut v);
                return from_values(v, rows, cols);
            }
            Activation::QuickGelu => (x * 1.702).and_then(|s| candle_nn::ops::sigmoid(&s)).and_then(|s| x * s),
            Activation::Tanh => x.tanh(),
            Activation::Relu => x.relu(),
        }
        .map_err(cpu_err)
    }

    async fn gated(&mut self, gate: &Tensor, up: &Tensor, act: Activation) -> Result<Tensor, ModelError> {
        let g = self.activation(gate, act).await?;
        if g.dims() != up.dims() {
            return Err(shape(format!("gating {:?} with {:?}", g.dims(), up.dims())));
        }
        (g * up).map_err(cpu_err)
    }

    fn rope_table(&mut self, inv_freq: &[f32], scale: f32, pos0: u32, n: u32) -> Result<CpuRope, ModelError> {
        CpuRope::new(&crate::gpu::ops::rope::cos_sin_table(inv_freq, scale, pos0, n), inv_freq.len())
    }

    fn batch_rope_table(&mut self, inv_freq: &[f32], batch: &CpuBatch) -> Result<CpuRope, ModelError> {
        // Packed rows: each sequence's real tokens, from position 0.
        let positions: Vec<u32> = batch.lengths.iter().flat_map(|&n| 0..n).collect();
        CpuRope::new(&crate::gpu::ops::rope::cos_sin_rows(inv_freq, 1.0, positions.into_iter()), inv_freq.len())
    }

    async fn rope(&mut self, x: Tensor, table: &CpuRope, layout: RopeLayout, heads: u32, head_dim: u32) -> Result<Tensor, ModelError> {
        let (n, cols) = dims2(&x)?;
        let (h, hd) = (heads as usize, head_dim as usize);
        let rot = 2 * table.cos.dims().get(1).copied().unwrap_or(0);
        if cols != h * hd || table.cos.dims() != [n, rot / 2] || rot == 0 || rot > hd {
            return Err(shape(format!("RoPE of {heads} heads of {head_dim} over ({n}, {cols})")));
        }
        // (n, heads · hd) → (1, heads, n, hd), its first `rot` dimensions rotated, and back.
        (|| {
            let t = x.reshape((1, n, h, hd))?.transpose(1, 2)?.contiguous()?;
            let rotate = |t: &Tensor| match layout {
                RopeLayout::Normal => candle_nn::rotary_emb::rope_i(t, &table.cos, &table.sin),
                RopeLayout::NeoX => candle_nn::rotary_emb::rope(t, &table.cos, &table.sin),
            };
            let t = if rot == hd { rotate(&t)? } else { Tensor::cat(&[rotate(&t.narrow(3, 0, rot)?.contiguous()?)?, t.narrow(3, rot, hd - rot)?], 3)? };
            t.transpose(1, 2)?.reshape((n, cols))
        })()
        .map_err(cpu_err)
    }

    async fn cached_attention(&mut self, q: &Tensor, k: &Tensor, v: &Tensor, cache: &mut CpuKvCache, a: CachedAttention) -> Result<Tensor, ModelError> {
        let (n, qd) = dims2(q)?;
        let (heads, kv_heads, hd) = (a.heads as usize, a.kv_heads as usize, a.head_dim as usize);
        let pos0 = a.pos0 as usize;
        let len = pos0 + n;
        let fits = qd == heads * hd && k.dims() == [n, kv_heads * hd] && v.dims() == [n, kv_heads * hd] && cache.k.dims() == [kv_heads, cache.capacity as usize, hd];
        if !fits || len > cache.capacity as usize || heads % kv_heads != 0 {
            return Err(shape(format!("attention of q {:?}, k {:?} at {pos0} over a cache of {:?}", q.dims(), k.dims(), cache.k.dims())));
        }
        let groups = heads / kv_heads;
        let scale = f64::from(a.scale);
        let dev = &Device::Cpu;
        (|| {
            // (n, h · hd) → (h, n, hd)
            let split = |t: &Tensor, h: usize| t.reshape((n, h, hd))?.transpose(0, 1)?.contiguous();
            cache.k.slice_set(&split(k, kv_heads)?, 1, pos0)?;
            cache.v.slice_set(&split(v, kv_heads)?, 1, pos0)?;
            // Causal mask (n, len): token t sees positions up to pos0 + t, and with a sliding
            // window only the last `window` of them.
            let window = a.window.map_or(usize::MAX, |w| w as usize);
            let seen = |t: usize, p: usize| p <= pos0 + t && pos0 + t - p < window;
            let mask: Vec<f32> = (0..n).flat_map(|t| (0..len).map(move |p| if seen(t, p) { 0.0 } else { f32::NEG_INFINITY })).collect();
            let mask = Tensor::from_vec(mask, (n, len), dev)?;
            // The `groups` query heads that share a KV head become rows of one matmul:
            // (kv_heads, groups · n, hd).
            let q = split(q, heads)?.reshape((kv_heads, groups * n, hd))?;
            let k = cache.k.narrow(1, 0, len)?;
            let v = cache.v.narrow(1, 0, len)?;
            let mut scores = (q.matmul(&k.t()?)? * scale)?;
            if let Some(cap) = a.softcap {
                scores = ((scores / f64::from(cap))?.tanh()? * f64::from(cap))?;
            }
            let scores = scores.reshape((kv_heads, groups, n, len))?.broadcast_add(&mask)?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?.reshape((kv_heads, groups * n, len))?;
            // (kv_heads, groups · n, hd) = (heads, n, hd) → (n, heads · hd)
            p.matmul(&v.contiguous()?)?.reshape((heads, n, hd))?.transpose(0, 1)?.reshape((n, heads * hd))
        })()
        .map_err(cpu_err)
    }

    async fn last_row(&mut self, x: &Tensor) -> Result<Tensor, ModelError> {
        let (n, _) = dims2(x)?;
        if n == 0 {
            return Err(shape("the last row of an empty tensor".into()));
        }
        x.narrow(0, n - 1, 1).map_err(cpu_err)
    }

    async fn pick(&mut self, logits: &Tensor, pick: Pick) -> Result<Next, ModelError> {
        let logits = logits.flatten_all().and_then(|l| l.to_vec1::<f32>()).map_err(cpu_err)?;
        Ok(match pick {
            Pick::Logits => Next::Logits(logits),
            Pick::Greedy => Next::Token(sampling::argmax(&logits)),
            Pick::Sample(s, u) => Next::Token(sampling::sample(&logits, Some(&s), u)),
        })
    }

    async fn finish(&mut self) -> Result<(), ModelError> {
        Ok(())
    }

    fn batch(&mut self, lengths: &[u32]) -> Result<CpuBatch, ModelError> {
        if lengths.is_empty() || lengths.contains(&0) {
            return Err(shape(format!("a batch of sequences of {lengths:?} tokens")));
        }
        let starts: Vec<usize> = lengths.iter().scan(0, |s, &n| Some(std::mem::replace(s, *s + n as usize))).collect();
        Ok(CpuBatch { lengths: lengths.to_vec(), rows: lengths.iter().map(|&n| n as usize).sum(), starts })
    }

    async fn embed_batch(&mut self, table: &Matrix, ids: &[u32], batch: &CpuBatch) -> Result<Tensor, ModelError> {
        if ids.len() != batch.rows {
            return Err(shape(format!("{} ids for sequences of {:?}", ids.len(), batch.lengths)));
        }
        table.embedding(ids)
    }

    async fn patches(&mut self, inputs: &[f32], n: u32, patches: Patches, layout: Layout) -> Result<Tensor, ModelError> {
        // The reference indexes `inputs` up to the last input's last element: check it holds them.
        let p = &patches;
        if n == 0 || (inputs.len() as u64) < p.input_len(n, layout) {
            return Err(shape(format!("{} values for {n} inputs of {p:?}", inputs.len())));
        }
        from_values(p.reference(n, layout, inputs), (n * p.rows()) as usize, p.cols() as usize)
    }

    async fn tensor_patches(&mut self, x: &Tensor, patches: Patches, layout: Layout) -> Result<Tensor, ModelError> {
        if patches.input_len(1, layout) > x.elem_count() as u64 {
            return Err(shape(format!("patches {patches:?} in {layout:?} over a tensor of {:?}", x.dims())));
        }
        from_values(patches.reference(1, layout, &values(x)?), patches.rows() as usize, patches.cols() as usize)
    }

    async fn cross_attention(&mut self, q: &Tensor, k: &Tensor, v: &Tensor, heads: u32, head_dim: u32, scale: f32) -> Result<Tensor, ModelError> {
        let (heads, hd) = (heads as usize, head_dim as usize);
        let ((_, qd), (_, kd)) = (dims2(q)?, dims2(k)?);
        if qd != heads * hd || kd != qd || v.dims() != k.dims() {
            return Err(shape(format!("cross-attention of {heads} heads of {hd}: q {:?}, k {:?}, v {:?}", q.dims(), k.dims(), v.dims())));
        }
        full_attention(q, k, v, heads, hd, scale).map_err(cpu_err)
    }

    async fn add_tiled(&mut self, x: &Tensor, t: &Tensor) -> Result<Tensor, ModelError> {
        let (rows, cols) = dims2(x)?;
        let len = t.elem_count();
        if len == 0 || !(rows * cols).is_multiple_of(len) {
            return Err(shape(format!("adding {len} values over ({rows}, {cols})")));
        }
        x.reshape((rows * cols / len, len)).and_then(|x| x.broadcast_add(t)).and_then(|y| y.reshape((rows, cols))).map_err(cpu_err)
    }

    async fn attention(&mut self, q: &Tensor, k: &Tensor, v: &Tensor, batch: &CpuBatch, a: BatchAttention, bias: Option<&Tensor>) -> Result<Tensor, ModelError> {
        let (heads, hd) = (a.heads as usize, a.head_dim as usize);
        let width = heads * hd;
        for (what, t) in [("q", q), ("k", k), ("v", v)] {
            if batch.check(what, t)?.1 != width {
                return Err(shape(format!("attention of {heads} heads of {hd} over {what} {:?}", t.dims())));
            }
        }
        let longest = batch.lengths.iter().copied().max().unwrap_or(0);
        let window = a.window.map_or(usize::MAX, |w| w as usize);
        let (bias, span) = match bias {
            Some(b) => {
                let values = b.flatten_all().and_then(|b| b.to_vec1::<f32>()).map_err(cpu_err)?;
                let span = u32::try_from(values.len()).ok().and_then(|n| relative_span(n, a.heads)).filter(|&s| s >= longest && !a.causal);
                let span = span.ok_or_else(|| shape(format!("a relative position bias of {} values over {heads} heads and sequences of {longest}", values.len())))?;
                (values, span as usize)
            }
            None => (Vec::new(), 0),
        };
        // Long unmasked sequences (Whisper's 1500 positions, AST's 1214): candle matmuls per
        // sequence, whose cost is all compute.
        if !a.causal && a.window.is_none() && span == 0 && longest as usize >= LONG_SEQUENCE {
            let parts = batch
                .starts
                .iter()
                .zip(&batch.lengths)
                .map(|(&start, &n)| full_attention(&q.narrow(0, start, n as usize)?, &k.narrow(0, start, n as usize)?, &v.narrow(0, start, n as usize)?, heads, hd, a.scale))
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(cpu_err)?;
            return Tensor::cat(&parts, 0).map_err(cpu_err);
        }
        // Plain Rust over each sequence's own rows: per head, scores, softmax and the weighted
        // sum of V, each vectorised (`cpu::vec`). Sequences are short and many; a candle matmul
        // per sequence and head costs more in dispatch than it computes.
        let (q, k, v) = (values(q)?, values(k)?, values(v)?);
        let mut out = vec![0f32; batch.rows * width];
        let longest = batch.lengths.iter().copied().max().unwrap_or(0) as usize;
        let mut scores = vec![0f32; longest];
        for (&start, &n) in batch.starts.iter().zip(&batch.lengths) {
            let n = n as usize;
            let row = |i: usize, h: usize| -> std::ops::Range<usize> { (start + i) * width + h * hd..(start + i) * width + (h + 1) * hd };
            for h in 0..heads {
                for i in 0..n {
                    let qi = &q[row(i, h)];
                    // Keys first..seen: up to itself when causal, within the window when it has one.
                    let first = (i + 1).saturating_sub(window);
                    let seen = if a.causal { i + 1 } else { n.min(i.saturating_add(window)) };
                    let s = &mut scores[first..seen];
                    for (j, sj) in (first..).zip(s.iter_mut()) {
                        *sj = dot(qi, &k[row(j, h)]) * a.scale;
                    }
                    if span > 0 {
                        // MPNet's relative position bias of key j for query i.
                        let at = h * (2 * span - 1) + span - 1 - i + first;
                        s.iter_mut().zip(&bias[at..]).for_each(|(sj, b)| *sj += b);
                    }
                    softmax(s);
                    let o = row(i, h);
                    for (j, &p) in (first..).zip(s.iter()) {
                        axpy(&mut out[o.clone()], p, &v[row(j, h)]);
                    }
                }
            }
        }
        from_values(out, batch.rows, width)
    }

    async fn rows(&mut self, x: &Tensor, batch: &CpuBatch, picks: &[(u32, u32)]) -> Result<Tensor, ModelError> {
        batch.check("rows", x)?;
        let mut index = Vec::with_capacity(picks.len());
        for &(s, p) in picks {
            match batch.lengths.get(s as usize) {
                Some(&n) if p < n => index.push((batch.starts[s as usize] + p as usize) as u32),
                _ => return Err(shape(format!("row {p} of sequence {s} of {:?}", batch.lengths))),
            }
        }
        Tensor::new(index.as_slice(), &Device::Cpu).and_then(|i| x.index_select(&i, 0)).map_err(cpu_err)
    }

    async fn mean_pool(&mut self, x: &Tensor, batch: &CpuBatch, normalize: bool) -> Result<Tensor, ModelError> {
        let (_, cols) = batch.check("a mean", x)?;
        let x = values(x)?;
        let mut out = Vec::with_capacity(batch.lengths.len() * cols);
        for (&start, &n) in batch.starts.iter().zip(&batch.lengths) {
            let mut sum = vec![0f32; cols];
            for row in x[start * cols..(start + n as usize) * cols].chunks_exact(cols) {
                super::vec::add(&mut sum, row);
            }
            let mean: Vec<f32> = sum.into_iter().map(|s| s / n as f32).collect();
            let norm = if normalize { mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12) } else { 1.0 };
            out.extend(mean.into_iter().map(|v| v / norm));
        }
        from_values(out, batch.lengths.len(), cols)
    }

    async fn read(&mut self, x: &Tensor) -> Result<Vec<f32>, ModelError> {
        values(x)
    }
}
