//! The GPT-2 decoder of `models::gpt2` on the CPU: the same `config.json` and checkpoint reading
//! (`models::gpt2::values`), learned positions, pre-LayerNorm blocks with biases, fused QKV, GELU,
//! the LM head tied to the token embedding, and a KV cache of fixed capacity
//! (`ModelError::ContextFull` past it; at most `n_positions`).
//!
//! As `cpu::bert`: the dense layers are candle-core's f32 matmul, weights widened to f32 at load.
//! HF's `Conv1D` stores its weight as (in, out), which is the layout `x·W` reads row by row, so
//! nothing is transposed (the GPU path transposes to its matvec's rows); `c_attn` stays one
//! (hidden, 3·hidden) product. LayerNorm, GELU, the bias adds and attention are plain Rust over
//! packed rows (`cpu::vec`). Every input is checked before any work, so nothing is written to
//! the cache when a call is refused.

use super::cpu_err;
use super::vec::{LayerNorm, add, axpy, bias_gelu, dot, layer_norm_rows, softmax};
use crate::formats::TensorTable;
use crate::gpu::ops::elementwise::Elementwise;
use crate::models::gpt2::{Gpt2Config, PREFILL_CHUNK, values};
use crate::models::llama::{ModelError, RangeReader};
use candle_core::{Device, Tensor};

/// A `Conv1D` layer `y = x·W + b`, W as the checkpoint stores it: (in, out).
struct Conv1D {
    w: Tensor,
    b: Vec<f32>,
}

impl Conv1D {
    async fn read(table: &TensorTable, read: &mut impl RangeReader, prefix: &str, inp: u32, out: u32) -> Result<Self, ModelError> {
        let w = values(table, read, &format!("{prefix}.weight"), &[inp, out]).await?;
        let b = values(table, read, &format!("{prefix}.bias"), &[out]).await?;
        let w = Tensor::from_vec(w, (inp as usize, out as usize), &Device::Cpu).map_err(cpu_err)?;
        Ok(Self { w, b })
    }

    /// `x` (rows, in) times W, without the bias: (rows, out).
    fn matmul(&self, x: &[f32], rows: usize) -> candle_core::Result<Vec<f32>> {
        let inp = self.w.dim(0)?;
        Tensor::from_slice(x, (rows, inp), &Device::Cpu)?.matmul(&self.w)?.flatten_all()?.to_vec1::<f32>()
    }

    fn bytes(&self) -> u64 {
        (self.w.elem_count() * 4) as u64
    }
}

async fn layer_norm(table: &TensorTable, read: &mut impl RangeReader, prefix: &str, len: u32) -> Result<LayerNorm, ModelError> {
    Ok(LayerNorm { g: values(table, read, &format!("{prefix}.weight"), &[len]).await?, b: values(table, read, &format!("{prefix}.bias"), &[len]).await? })
}

struct Block {
    ln1: LayerNorm,
    /// Q, K and V in one: (hidden, 3·hidden).
    c_attn: Conv1D,
    attn_proj: Conv1D,
    ln2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
    /// (context, hidden): row p is position p's key, heads side by side.
    k_cache: Vec<f32>,
    /// (context, hidden)
    v_cache: Vec<f32>,
}

/// A GPT-2 model on the CPU with its KV cache.
pub struct CpuGpt2 {
    pub config: Gpt2Config,
    /// KV-cache capacity in tokens (at most `n_positions`).
    pub context: u32,
    /// Tokens in the KV cache.
    pub position: u32,
    /// (vocab, hidden): the token embedding and the (tied) LM head.
    wte: Tensor,
    /// (n_positions, hidden)
    wpe: Vec<f32>,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
}

impl CpuGpt2 {
    /// Loads GPT-2 from `config.json` and the safetensors file's `table`, reading tensors through
    /// `read` one at a time, as `Gpt2::load` does. `context` caps the KV cache (default and
    /// maximum: `n_positions`).
    pub async fn load(config_json: &[u8], table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = Gpt2Config::from_json(config_json)?;
        let c = &config;
        let context = c.context(context);
        let (d, ffn) = (c.n_embd, c.ffn());
        // K and V of every layer in f32: refuse what this address space cannot hold (wasm32:
        // 4 GiB in all) rather than abort on the allocation.
        let cache_bytes = [u64::from(c.n_layer), u64::from(context), u64::from(d)].iter().fold(8u64, |a, &b| a.saturating_mul(b));
        let limit = if cfg!(target_arch = "wasm32") { 3 << 30 } else { isize::MAX as u64 };
        if cache_bytes > limit {
            return Err(ModelError::Config(format!("a KV cache of {context} tokens needs {cache_bytes} bytes; ask for a smaller context")));
        }
        let wte = values(table, read, "wte.weight", &[c.vocab_size, d]).await?;
        let wte = Tensor::from_vec(wte, (c.vocab_size as usize, d as usize), &Device::Cpu).map_err(cpu_err)?;
        let wpe = values(table, read, "wpe.weight", &[c.n_positions, d]).await?;
        let cache = vec![0f32; context as usize * d as usize];
        let mut blocks = Vec::with_capacity(c.n_layer as usize);
        for l in 0..c.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            blocks.push(Block {
                ln1: layer_norm(table, read, &p("ln_1"), d).await?,
                c_attn: Conv1D::read(table, read, &p("attn.c_attn"), d, 3 * d).await?,
                attn_proj: Conv1D::read(table, read, &p("attn.c_proj"), d, d).await?,
                ln2: layer_norm(table, read, &p("ln_2"), d).await?,
                c_fc: Conv1D::read(table, read, &p("mlp.c_fc"), d, ffn).await?,
                mlp_proj: Conv1D::read(table, read, &p("mlp.c_proj"), ffn, d).await?,
                k_cache: cache.clone(),
                v_cache: cache.clone(),
            });
        }
        let ln_f = layer_norm(table, read, "ln_f", d).await?;
        Ok(Self { config, context, position: 0, wte, wpe, blocks, ln_f })
    }

    /// Bytes of weights a decode step reads (every matrix once, and the LM head), as f32.
    pub fn weight_bytes_per_token(&self) -> u64 {
        let layers: u64 = self.blocks.iter().map(|b| b.c_attn.bytes() + b.attn_proj.bytes() + b.c_fc.bytes() + b.mlp_proj.bytes()).sum();
        layers + (self.wte.elem_count() * 4) as u64
    }

    /// Forgets the sequence (the KV cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Feeds `tokens` at the current position and returns the last token's logits (vocab).
    /// Nothing is written to the cache when the tokens do not fit (`ContextFull`: the context is
    /// at most the `n_positions` learned positions) or an id is past the vocabulary (`Token`).
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        self.config.check_ids(tokens)?;
        let end = u32::try_from(tokens.len()).ok().and_then(|n| self.position.checked_add(n));
        match end {
            _ if tokens.is_empty() => return Err(ModelError::Input("no tokens".into())),
            Some(end) if end <= self.context => {}
            _ => return Err(ModelError::ContextFull { ctx: self.context, pos: end.unwrap_or(u32::MAX) }),
        }
        let mut last = Vec::new();
        for chunk in tokens.chunks(PREFILL_CHUNK as usize) {
            last = self.forward_chunk(chunk).map_err(cpu_err)?;
        }
        layer_norm_rows(&mut last, &self.ln_f, self.config.layer_norm_epsilon);
        let d = last.len();
        (|| Tensor::from_vec(last, (1, d), &Device::Cpu)?.matmul(&self.wte.t()?)?.flatten_all()?.to_vec1::<f32>())().map_err(cpu_err)
    }

    /// Runs checked `ids` through the blocks at the current position, advancing it; returns the
    /// last token's hidden state (hidden) before the final norm.
    fn forward_chunk(&mut self, ids: &[u32]) -> candle_core::Result<Vec<f32>> {
        let c = &self.config;
        let (d, heads) = (c.n_embd as usize, c.n_head as usize);
        let hd = d / heads;
        let (n, pos0) = (ids.len(), self.position as usize);
        let (eps, tanh) = (c.layer_norm_epsilon, c.activation() == Elementwise::GeluTanh);
        let missing = |what: &str| candle_core::Error::Msg(format!("{what} out of range"));

        let ids_t = Tensor::new(ids, &Device::Cpu)?;
        let mut x = self.wte.embedding(&ids_t)?.flatten_all()?.to_vec1::<f32>()?;
        let pos = self.wpe.get(pos0 * d..(pos0 + n) * d).ok_or_else(|| missing("position"))?;
        add(&mut x, pos);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut h = vec![0f32; n * d];
        let mut attn = vec![0f32; n * d];
        let mut scores = vec![0f32; pos0 + n];
        for blk in &mut self.blocks {
            h.copy_from_slice(&x);
            layer_norm_rows(&mut h, &blk.ln1, eps);
            let mut qkv = blk.c_attn.matmul(&h, n)?;
            for row in qkv.chunks_exact_mut(3 * d) {
                add(row, &blk.c_attn.b);
            }
            let (kc, vc) = (blk.k_cache.get_mut(pos0 * d..(pos0 + n) * d).ok_or_else(|| missing("cache"))?, blk.v_cache.get_mut(pos0 * d..(pos0 + n) * d).ok_or_else(|| missing("cache"))?);
            for ((row, k), v) in qkv.chunks_exact(3 * d).zip(kc.chunks_exact_mut(d)).zip(vc.chunks_exact_mut(d)) {
                k.copy_from_slice(&row[d..2 * d]);
                v.copy_from_slice(&row[2 * d..]);
            }
            // Per token and head: softmax(q·kᵀ / √d) · v over the positions up to its own.
            attn.fill(0.0);
            for i in 0..n {
                let len = pos0 + i + 1;
                for hh in 0..heads {
                    let q = &qkv[i * 3 * d + hh * hd..][..hd];
                    let s = &mut scores[..len];
                    for (j, sj) in s.iter_mut().enumerate() {
                        *sj = dot(q, &blk.k_cache[j * d + hh * hd..][..hd]) * scale;
                    }
                    softmax(s);
                    let o = &mut attn[i * d + hh * hd..][..hd];
                    for (j, &p) in s.iter().enumerate() {
                        axpy(o, p, &blk.v_cache[j * d + hh * hd..][..hd]);
                    }
                }
            }
            let o = blk.attn_proj.matmul(&attn, n)?;
            residual(&mut x, &o, &blk.attn_proj.b);
            h.copy_from_slice(&x);
            layer_norm_rows(&mut h, &blk.ln2, eps);
            let mut f = blk.c_fc.matmul(&h, n)?;
            for row in f.chunks_exact_mut(blk.c_fc.b.len()) {
                bias_gelu(row, &blk.c_fc.b, tanh);
            }
            let o = blk.mlp_proj.matmul(&f, n)?;
            residual(&mut x, &o, &blk.mlp_proj.b);
        }
        self.position = (pos0 + n) as u32;
        Ok(x.split_off((n - 1) * d))
    }
}

/// x += y + bias, row by row.
fn residual(x: &mut [f32], y: &[f32], bias: &[f32]) {
    let n = bias.len();
    for (xr, yr) in x.chunks_exact_mut(n).zip(y.chunks_exact(n)) {
        for ((x, y), b) in xr.iter_mut().zip(yr).zip(bias) {
            *x += y + b;
        }
    }
}
