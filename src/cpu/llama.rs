//! The Llama decoder of `models::llama` on candle-core: the same configuration (GGUF or the hub's
//! `config.json`), grouped-query attention, Q/K/V biases (Qwen2), tied or separate output, RoPE in
//! the file's layout, RMSNorm, SwiGLU, and a KV cache of fixed capacity (`ModelError::ContextFull`
//! past it).
//!
//! Matrices stay quantized (`super::Matrix`: candle's `QMatMul` over the file's blocks, Q4_1 our
//! own); the token embedding too (rows are dequantized as they are looked up), and serves as the
//! LM head when the output is tied.

use super::{Matrix, cpu_err};
use crate::formats::TensorTable;
use crate::gpu::ops::rope::{self, RopeLayout};
use crate::models::llama::{LlamaConfig, ModelError, PREFILL_CHUNK, RangeReader};
use candle_core::{DType, Device, Tensor};

struct Layer {
    attn_norm: Tensor,
    wq: Matrix,
    wk: Matrix,
    wv: Matrix,
    /// Q, K and V biases (Qwen2), (1, rows) each.
    qkv_bias: Option<[Tensor; 3]>,
    wo: Matrix,
    ffn_norm: Tensor,
    w_gate: Matrix,
    w_up: Matrix,
    w_down: Matrix,
    /// (kv_heads, context, head_dim)
    k_cache: Tensor,
    /// (kv_heads, context, head_dim)
    v_cache: Tensor,
}

/// A Llama model on the CPU with its KV cache.
pub struct CpuLlama {
    pub config: LlamaConfig,
    /// KV-cache capacity in tokens.
    pub context: u32,
    /// Tokens in the KV cache.
    pub position: u32,
    /// (vocab, hidden), quantized.
    token_embd: Matrix,
    /// `output.weight` when the model has one (else the embedding is the LM head).
    output: Option<Matrix>,
    /// (hidden)
    output_norm: Tensor,
    layers: Vec<Layer>,
    inv_freq: Vec<f32>,
}

impl CpuLlama {
    /// Loads a GGUF Llama. `read` returns the bytes of a byte range of the file (the store, a
    /// file); tensors are read one at a time. `context` caps the KV cache (default: the
    /// model's, at most 4096).
    pub async fn load<R: RangeReader>(table: &TensorTable, context: Option<u32>, read: &mut R) -> Result<Self, ModelError> {
        let (config, context) = LlamaConfig::from_table(table, context)?;
        Self::from_config(config, context, table, read).await
    }

    /// Loads a Llama-family checkpoint in the hub's format (`config.json` and its safetensors).
    pub async fn load_hub<R: RangeReader>(config_json: &[u8], table: &TensorTable, context: Option<u32>, read: &mut R) -> Result<Self, ModelError> {
        let (config, context) = LlamaConfig::from_hub(config_json, context)?;
        Self::from_config(config, context, table, read).await
    }

    /// Loads the tensors `config` names with a KV cache of `context` tokens.
    pub async fn from_config<R: RangeReader>(config: LlamaConfig, context: u32, table: &TensorTable, read: &mut R) -> Result<Self, ModelError> {
        let c = &config;
        let (qd, kvd) = (c.heads * c.head_dim, c.kv_heads * c.head_dim);
        // K and V of every layer in f32: refuse what this address space cannot hold (wasm32:
        // 4 GiB in all) rather than abort on the allocation.
        let cache_bytes = [u64::from(c.n_layers), u64::from(context), u64::from(kvd)].iter().fold(8u64, |a, &b| a.saturating_mul(b));
        let limit = if cfg!(target_arch = "wasm32") { 3 << 30 } else { isize::MAX as u64 };
        if cache_bytes > limit {
            return Err(ModelError::Config(format!("a KV cache of {context} tokens needs {cache_bytes} bytes; ask for a smaller context")));
        }
        let matrix = async |read: &mut R, name: &str, rows: u32, cols: u32| Matrix::read(table, read, name, rows, cols).await;
        let token_embd = matrix(read, &c.model_name("token_embd.weight"), c.vocab, c.hidden).await?;
        let output_name = c.model_name("output.weight");
        let output = if table.get(&output_name).is_some() { Some(matrix(read, &output_name, c.vocab, c.hidden).await?) } else { None };
        let qkv_bias = c.qkv_bias(table)?;
        let cache = || Tensor::zeros((c.kv_heads as usize, context as usize, c.head_dim as usize), DType::F32, &Device::Cpu).map_err(cpu_err);
        let mut layers = Vec::with_capacity(c.n_layers as usize);
        for l in 0..c.n_layers {
            let p = |s: &str| c.name(l, &format!("{s}.weight"));
            let bias = async |read: &mut R, part: &str, len: u32| vector(table, read, &c.name(l, part), len).await?.unsqueeze(0).map_err(cpu_err);
            let qkv_bias = if qkv_bias { Some([bias(read, "attn_q.bias", qd).await?, bias(read, "attn_k.bias", kvd).await?, bias(read, "attn_v.bias", kvd).await?]) } else { None };
            layers.push(Layer {
                attn_norm: vector(table, read, &p("attn_norm"), c.hidden).await?,
                wq: matrix(read, &p("attn_q"), qd, c.hidden).await?,
                wk: matrix(read, &p("attn_k"), kvd, c.hidden).await?,
                wv: matrix(read, &p("attn_v"), kvd, c.hidden).await?,
                qkv_bias,
                wo: matrix(read, &p("attn_output"), c.hidden, qd).await?,
                ffn_norm: vector(table, read, &p("ffn_norm"), c.hidden).await?,
                w_gate: matrix(read, &p("ffn_gate"), c.ffn, c.hidden).await?,
                w_up: matrix(read, &p("ffn_up"), c.ffn, c.hidden).await?,
                w_down: matrix(read, &p("ffn_down"), c.hidden, c.ffn).await?,
                k_cache: cache()?,
                v_cache: cache()?,
            });
        }
        let output_norm = vector(table, read, &c.model_name("output_norm.weight"), c.hidden).await?;
        let inv_freq = config.inv_freq(table, read).await?;
        Ok(Self { config, context, position: 0, token_embd, output, output_norm, layers, inv_freq })
    }

    /// Bytes of weights a decode step reads (every matrix once, the embedding row aside), as
    /// held (`Matrix::bytes`).
    pub fn weight_bytes_per_token(&self) -> u64 {
        let bytes = Matrix::bytes;
        let layers: u64 = self.layers.iter().map(|l| [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down].into_iter().map(bytes).sum::<u64>()).sum();
        layers + bytes(self.output.as_ref().unwrap_or(&self.token_embd))
    }

    /// Forgets the sequence (the KV cache is overwritten from position 0).
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Feeds `tokens` at the current position and returns the last token's logits (vocab).
    /// Nothing is written to the cache when the tokens do not fit or an id is out of range.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let vocab = self.config.vocab;
        if let Some(&bad) = tokens.iter().find(|&&id| id >= vocab) {
            return Err(ModelError::Token { id: bad, vocab });
        }
        let end = u32::try_from(tokens.len()).ok().and_then(|n| self.position.checked_add(n));
        match end {
            _ if tokens.is_empty() => return Err(ModelError::Config("no tokens".into())),
            Some(end) if end <= self.context => {}
            _ => return Err(ModelError::ContextFull { ctx: self.context, pos: end.unwrap_or(u32::MAX) }),
        }
        let mut last = None;
        for chunk in tokens.chunks(PREFILL_CHUNK as usize) {
            last = Some(self.forward_chunk(chunk)?);
        }
        let hidden = last.ok_or_else(|| ModelError::Config("no tokens".into()))?;
        let h = candle_nn::ops::rms_norm(&hidden, &self.output_norm, self.config.rms_eps).map_err(cpu_err)?;
        let logits = self.output.as_ref().unwrap_or(&self.token_embd).forward(&h)?;
        logits.flatten_all().and_then(|l| l.to_vec1::<f32>()).map_err(cpu_err)
    }

    /// The greedy next token after `tokens` (the highest logit; the lowest id on a tie).
    pub fn next_token(&mut self, tokens: &[u32]) -> Result<u32, ModelError> {
        let logits = self.logits(tokens)?;
        Ok(logits.iter().enumerate().fold(0, |best, (i, &x)| if x > logits[best] { i } else { best }) as u32)
    }

    /// Runs `ids` through the layers at the current position, advancing it; returns the last
    /// token's hidden state (1, hidden) before the final norm.
    fn forward_chunk(&mut self, ids: &[u32]) -> Result<Tensor, ModelError> {
        let c = &self.config;
        let (n, pos0) = (ids.len(), self.position as usize);
        let (heads, kv_heads, hd) = (c.heads as usize, c.kv_heads as usize, c.head_dim as usize);
        let groups = heads / kv_heads;
        let len = pos0 + n;
        let dev = &Device::Cpu;
        let e = cpu_err;

        let table = rope::cos_sin_table(&self.inv_freq, self.position, n as u32);
        let cos = Tensor::from_iter(table.iter().map(|cs| cs[0]), dev).and_then(|t| t.reshape((n, hd / 2))).map_err(e)?;
        let sin = Tensor::from_iter(table.iter().map(|cs| cs[1]), dev).and_then(|t| t.reshape((n, hd / 2))).map_err(e)?;
        // Causal mask (n, len): token t sees positions up to pos0 + t.
        let mask: Vec<f32> = (0..n).flat_map(|t| (0..len).map(move |p| if p <= pos0 + t { 0.0 } else { f32::NEG_INFINITY })).collect();
        let mask = Tensor::from_vec(mask, (n, len), dev).map_err(e)?;
        let scale = 1.0 / (hd as f64).sqrt();

        let mut x = self.token_embd.embedding(ids)?; // (n, hidden)
        for layer in &self.layers {
            let h = candle_nn::ops::rms_norm(&x, &layer.attn_norm, c.rms_eps).map_err(e)?;
            // (n, heads * hd) → (1, heads, n, hd), rotated.
            let split = |t: Tensor, h: usize| t.reshape((1, n, h, hd))?.transpose(1, 2)?.contiguous();
            let rope = |t: Tensor| match c.rope_layout {
                RopeLayout::Normal => candle_nn::rotary_emb::rope_i(&t, &cos, &sin),
                RopeLayout::NeoX => candle_nn::rotary_emb::rope(&t, &cos, &sin),
            };
            let [q, k, v] = [&layer.wq, &layer.wk, &layer.wv].map(|w| w.forward(&h));
            let (mut q, mut k, mut v) = (q?, k?, v?);
            if let Some([bq, bk, bv]) = &layer.qkv_bias {
                (q, k, v) = (q.broadcast_add(bq).map_err(e)?, k.broadcast_add(bk).map_err(e)?, v.broadcast_add(bv).map_err(e)?);
            }
            let q = split(q, heads).and_then(rope).map_err(e)?;
            let k = split(k, kv_heads).and_then(rope).map_err(e)?;
            let v = split(v, kv_heads).map_err(e)?;
            layer.k_cache.slice_set(&k.squeeze(0).map_err(e)?, 1, pos0).map_err(e)?;
            layer.v_cache.slice_set(&v.squeeze(0).map_err(e)?, 1, pos0).map_err(e)?;
            // Grouped-query attention without repeating K and V: the `groups` query heads that
            // share a KV head become rows of one matmul, (kv_heads, groups * n, hd).
            let attn = (|| {
                let q = q.reshape((kv_heads, groups * n, hd))?;
                let k = layer.k_cache.narrow(1, 0, len)?;
                let v = layer.v_cache.narrow(1, 0, len)?;
                let scores = (q.matmul(&k.t()?)? * scale)?.reshape((kv_heads, groups, n, len))?.broadcast_add(&mask)?;
                let p = candle_nn::ops::softmax_last_dim(&scores)?.reshape((kv_heads, groups * n, len))?;
                // (kv_heads, groups * n, hd) = (1, heads, n, hd) → (n, heads * hd)
                p.matmul(&v.contiguous()?)?.reshape((heads, n, hd))?.transpose(0, 1)?.reshape((n, heads * hd))
            })()
            .map_err(e)?;
            x = (x + layer.wo.forward(&attn)?).map_err(e)?;
            let h = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, c.rms_eps).map_err(e)?;
            let gate = layer.w_gate.forward(&h)?.silu().map_err(e)?;
            let up = layer.w_up.forward(&h)?;
            x = (x + layer.w_down.forward(&(gate * up).map_err(e)?)?).map_err(e)?;
        }
        self.position = len as u32;
        x.narrow(0, n - 1, 1).map_err(e)
    }
}

/// A norm weight or bias (len) as an f32 tensor.
async fn vector(table: &TensorTable, read: &mut impl RangeReader, name: &str, len: u32) -> Result<Tensor, ModelError> {
    let values = crate::models::read_values(table, read, name, &[len]).await?;
    Tensor::from_vec(values, len as usize, &Device::Cpu).map_err(cpu_err)
}
