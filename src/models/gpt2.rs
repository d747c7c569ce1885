//! GPT-2 (`GPT2LMHeadModel`) from its hub checkpoint: `config.json` + safetensors, no conversion
//! step. Learned positions, pre-LayerNorm blocks with biases, fused QKV (`c_attn`), GELU (tanh),
//! output tied to the token embedding.
//!
//! HF stores GPT-2's projections as `Conv1D` weights, `[in, out]`; the kernels take `[out, in]`
//! rows, so each is transposed on the host at load, one tensor at a time, and `c_attn` is split
//! into its query, key and value parts (three matvecs writing straight to their buffers).

use serde::Deserialize;

use super::{PickBuffers, RangeReader};
use super::llama::ModelError;
use crate::formats::{DType, TensorTable};
use crate::generate::{LanguageModel, Next, Pick};
use crate::gpu::GpuContext;
use crate::gpu::ops::attention::Attention;
use crate::gpu::ops::elementwise::Elementwise;
use crate::gpu::ops::norm::Norm;
use crate::gpu::ops::{embedding, matvec, new_encoder, submit};
use crate::gpu::weights::GpuWeight;

/// Prompt tokens per forward pass (bounds the activation and score buffers).
pub const PREFILL_CHUNK: u32 = 64;

/// `config.json` of a GPT-2 checkpoint.
#[derive(Clone, Debug, Deserialize)]
pub struct Gpt2Config {
    pub vocab_size: u32,
    pub n_positions: u32,
    pub n_embd: u32,
    pub n_layer: u32,
    pub n_head: u32,
    #[serde(default)]
    pub n_inner: Option<u32>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f32,
    #[serde(default = "default_act")]
    pub activation_function: String,
}

fn default_eps() -> f32 {
    1e-5
}

fn default_act() -> String {
    "gelu_new".into()
}

impl Gpt2Config {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ModelError> {
        let c: Self = serde_json::from_slice(bytes).map_err(|e| ModelError::Config(format!("config.json: {e}")))?;
        let ok = c.vocab_size > 0 && c.n_positions > 0 && c.n_layer > 0 && c.n_layer <= 256 && c.n_head > 0 && c.n_embd.is_multiple_of(c.n_head) && c.n_embd > 0;
        if !ok {
            return Err(ModelError::Config(format!("config.json: inconsistent sizes {c:?}")));
        }
        if !["gelu_new", "gelu_pytorch_tanh", "gelu"].contains(&c.activation_function.as_str()) {
            return Err(ModelError::Config(format!("activation {:?} is not supported", c.activation_function)));
        }
        Ok(c)
    }

    /// The MLP's inner width (`n_inner`, default 4·n_embd).
    pub fn ffn(&self) -> u32 {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// The KV-cache capacity for a requested `context`: default and maximum `n_positions` (the
    /// learned positions), at least 1.
    pub fn context(&self, context: Option<u32>) -> u32 {
        context.unwrap_or(self.n_positions).clamp(1, self.n_positions)
    }

    /// The MLP's activation: GELU with the tanh approximation (`gelu_new`,
    /// `gelu_pytorch_tanh`), or the exact erf form (`gelu`).
    pub fn activation(&self) -> Elementwise {
        if self.activation_function == "gelu" { Elementwise::GeluErf } else { Elementwise::GeluTanh }
    }

    /// A token id past the vocabulary, as the typed error both devices give.
    pub fn check_ids(&self, ids: &[u32]) -> Result<(), ModelError> {
        match ids.iter().find(|&&id| id >= self.vocab_size) {
            Some(&id) => Err(ModelError::Token { id, vocab: self.vocab_size }),
            None => Ok(()),
        }
    }
}

struct Block {
    ln1: (wgpu::Buffer, wgpu::Buffer),
    wq: GpuWeight,
    wk: GpuWeight,
    wv: GpuWeight,
    bq: wgpu::Buffer,
    bk: wgpu::Buffer,
    bv: wgpu::Buffer,
    wo: GpuWeight,
    bo: wgpu::Buffer,
    ln2: (wgpu::Buffer, wgpu::Buffer),
    w_fc: GpuWeight,
    b_fc: wgpu::Buffer,
    w_proj: GpuWeight,
    b_proj: wgpu::Buffer,
    k_cache: wgpu::Buffer,
    v_cache: wgpu::Buffer,
}

/// A GPT-2 model on the GPU with its KV cache.
pub struct Gpt2 {
    pub config: Gpt2Config,
    pub context: u32,
    wte: GpuWeight,
    wpe: GpuWeight,
    blocks: Vec<Block>,
    ln_f: (wgpu::Buffer, wgpu::Buffer),
    buf: Buffers,
    tokens: Vec<u32>,
}

struct Buffers {
    x: wgpu::Buffer,
    x2: wgpu::Buffer,
    h: wgpu::Buffer,
    pre: wgpu::Buffer,
    q: wgpu::Buffer,
    k: wgpu::Buffer,
    v: wgpu::Buffer,
    attn: wgpu::Buffer,
    f: wgpu::Buffer,
    f2: wgpu::Buffer,
    pos: wgpu::Buffer,
    ids: wgpu::Buffer,
    pos_ids: wgpu::Buffer,
    last: wgpu::Buffer,
    last_norm: wgpu::Buffer,
    logits: wgpu::Buffer,
    token: wgpu::Buffer,
    scores: wgpu::Buffer,
    lengths: wgpu::Buffer,
    scratch: wgpu::Buffer,
}

/// Tensor `name` (with or without the `transformer.` prefix HF checkpoints may have), refused
/// unless F32, F16 or BF16.
fn find<'t>(table: &'t TensorTable, name: &str) -> Result<&'t crate::formats::TensorInfo, ModelError> {
    let t = table
        .get(name)
        .or_else(|| table.get(&format!("transformer.{name}")))
        .ok_or_else(|| ModelError::Tensor { name: name.into(), problem: "missing".into() })?;
    if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(ModelError::Tensor { name: name.into(), problem: format!("{} weights are not supported for GPT-2", t.dtype) });
    }
    Ok(t)
}

/// Tensor `name` of `shape` as f32 values, in the file's row-major order. The GPU and CPU
/// loaders both read through it.
pub(crate) async fn values(table: &TensorTable, read: &mut impl RangeReader, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
    super::tensor_values(find(table, name)?, read, shape).await
}

/// Reads the GPU model's tensors.
struct Tensors<'a, R> {
    table: &'a TensorTable,
    read: &'a mut R,
}

impl<R: RangeReader> Tensors<'_, R> {
    /// A vector as f32.
    async fn vector(&mut self, ctx: &GpuContext, name: &str, len: u32) -> Result<wgpu::Buffer, ModelError> {
        Ok(ctx.storage_from("gpt2", "vector", &values(self.table, self.read, name, &[len]).await?)?)
    }

    /// Part `[.., cols_from..cols_from + out]` of a `[inp, total]` Conv1D weight, as `[out, inp]` rows.
    async fn conv1d(&mut self, ctx: &GpuContext, name: &str, inp: u32, total: u32, parts: &[(u32, u32)]) -> Result<Vec<GpuWeight>, ModelError> {
        let w = values(self.table, self.read, name, &[inp, total]).await?;
        let (inp, total) = (inp as usize, total as usize);
        let mut out = Vec::with_capacity(parts.len());
        for &(from, len) in parts {
            let (from, len) = (from as usize, len as usize);
            let mut rows = Vec::with_capacity(len * inp * 4);
            for o in from..from + len {
                for i in 0..inp {
                    rows.extend_from_slice(&w[i * total + o].to_le_bytes());
                }
            }
            out.push(GpuWeight::upload(ctx, name, DType::F32, len as u64, inp as u64, &rows)?);
        }
        Ok(out)
    }

    /// A `[rows, cols]` table (embeddings) as it is.
    async fn table(&mut self, ctx: &GpuContext, name: &str, rows: u32, cols: u32) -> Result<GpuWeight, ModelError> {
        super::upload_matrix(ctx, find(self.table, name)?, self.read, rows, cols).await
    }
}

impl Gpt2 {
    /// Loads GPT-2 from `config.json` and the safetensors file's `table`, reading tensors through
    /// `read`. `context` caps the KV cache (default and maximum: `n_positions`).
    pub async fn load(ctx: &GpuContext, config_json: &[u8], table: &TensorTable, context: Option<u32>, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = Gpt2Config::from_json(config_json)?;
        let c = &config;
        let context = c.context(context);
        let (d, ffn) = (c.n_embd, c.ffn());
        let mut t = Tensors { table, read };
        let wte = t.table(ctx, "wte.weight", c.vocab_size, d).await?;
        let wpe = t.table(ctx, "wpe.weight", c.n_positions, d).await?;
        let cache_bytes = u64::from(context) * u64::from(d) * 4;
        let mut blocks = Vec::with_capacity(c.n_layer as usize);
        for l in 0..c.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            let ln1 = (t.vector(ctx, &p("ln_1.weight"), d).await?, t.vector(ctx, &p("ln_1.bias"), d).await?);
            let mut qkv = t.conv1d(ctx, &p("attn.c_attn.weight"), d, 3 * d, &[(0, d), (d, d), (2 * d, d)]).await?.into_iter();
            let b = values(t.table, t.read, &p("attn.c_attn.bias"), &[3 * d]).await?;
            let du = d as usize;
            let bias = |i: usize| ctx.storage_from("gpt2", "qkv bias", &b[i * du..(i + 1) * du]);
            let (bq, bk, bv) = (bias(0)?, bias(1)?, bias(2)?);
            let missing = || ModelError::Tensor { name: p("attn.c_attn.weight"), problem: "split".into() };
            let (wq, wk, wv) = (qkv.next().ok_or_else(missing)?, qkv.next().ok_or_else(missing)?, qkv.next().ok_or_else(missing)?);
            let wo = t.conv1d(ctx, &p("attn.c_proj.weight"), d, d, &[(0, d)]).await?.pop().ok_or_else(missing)?;
            let bo = t.vector(ctx, &p("attn.c_proj.bias"), d).await?;
            let ln2 = (t.vector(ctx, &p("ln_2.weight"), d).await?, t.vector(ctx, &p("ln_2.bias"), d).await?);
            let w_fc = t.conv1d(ctx, &p("mlp.c_fc.weight"), d, ffn, &[(0, ffn)]).await?.pop().ok_or_else(missing)?;
            let b_fc = t.vector(ctx, &p("mlp.c_fc.bias"), ffn).await?;
            let w_proj = t.conv1d(ctx, &p("mlp.c_proj.weight"), ffn, d, &[(0, d)]).await?.pop().ok_or_else(missing)?;
            let b_proj = t.vector(ctx, &p("mlp.c_proj.bias"), d).await?;
            let k_cache = ctx.storage_output("gpt2", "k cache", cache_bytes)?;
            let v_cache = ctx.storage_output("gpt2", "v cache", cache_bytes)?;
            blocks.push(Block { ln1, wq, wk, wv, bq, bk, bv, wo, bo, ln2, w_fc, b_fc, w_proj, b_proj, k_cache, v_cache });
        }
        let ln_f = (t.vector(ctx, "ln_f.weight", d).await?, t.vector(ctx, "ln_f.bias", d).await?);
        let n = u64::from(PREFILL_CHUNK);
        let b = |what: &'static str, elems: u64| ctx.storage_output("gpt2", what, elems.max(1) * 4);
        let (d64, f64_) = (u64::from(d), u64::from(ffn));
        let buf = Buffers {
            x: b("x", n * d64)?,
            x2: b("x2", n * d64)?,
            h: b("h", n * d64)?,
            pre: b("pre-bias", n * d64.max(f64_))?,
            q: b("q", n * d64)?,
            k: b("k", n * d64)?,
            v: b("v", n * d64)?,
            attn: b("attn", n * d64)?,
            f: b("ffn", n * f64_)?,
            f2: b("ffn act", n * f64_)?,
            pos: b("positions", n * d64)?,
            ids: b("ids", n)?,
            pos_ids: b("position ids", n)?,
            last: b("last", d64)?,
            last_norm: b("last norm", d64)?,
            logits: b("logits", u64::from(c.vocab_size))?,
            token: b("token", 1)?,
            scores: b("scores", n * u64::from(c.n_head) * u64::from(context))?,
            lengths: b("lengths", 1)?,
            scratch: b("scratch", 1)?,
        };
        Ok(Self { config, context, wte, wpe, blocks, ln_f, buf, tokens: Vec::new() })
    }

    /// Tokens in the KV cache.
    pub fn position(&self) -> u32 {
        self.tokens.len() as u32
    }

    pub fn reset(&mut self) {
        self.tokens.clear();
    }

    /// Feeds `tokens` after the cached ones (in chunks) and answers `pick` for the next position.
    pub async fn forward(&mut self, ctx: &GpuContext, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        // Refused before anything reaches the cache.
        self.config.check_ids(tokens)?;
        let end = u32::try_from(tokens.len()).ok().and_then(|n| self.position().checked_add(n));
        if end.is_none_or(|end| end > self.context) {
            return Err(ModelError::ContextFull { ctx: self.context, pos: end.unwrap_or(u32::MAX) });
        }
        let mut chunks = tokens.chunks(PREFILL_CHUNK as usize).peekable();
        while let Some(chunk) = chunks.next() {
            let head = chunks.peek().is_none().then_some(pick);
            if let Some(next) = self.forward_chunk(ctx, chunk, head).await? {
                return Ok(next);
            }
        }
        Err(ModelError::Config("no tokens".into()))
    }

    /// The logits after `tokens` (tests), leaving the cache advanced.
    pub async fn logits(&mut self, ctx: &GpuContext, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        match self.forward(ctx, tokens, Pick::Logits).await? {
            Next::Logits(l) => Ok(l),
            Next::Token(_) => Err(ModelError::Config("a token where logits were asked".into())),
        }
    }

    /// This model with its device, as a `LanguageModel` for the generation loop.
    pub fn on<'a>(&'a mut self, ctx: &'a GpuContext) -> OnGpu<'a> {
        OnGpu { ctx, model: self }
    }

    async fn forward_chunk(&mut self, ctx: &GpuContext, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError> {
        let c = self.config.clone();
        let n = ids.len() as u32;
        let pos0 = self.position();
        if pos0 + n > self.context {
            return Err(ModelError::ContextFull { ctx: self.context, pos: pos0 + n });
        }
        c.check_ids(ids)?;
        let b = &self.buf;
        let positions: Vec<u32> = (pos0..pos0 + n).collect();
        ctx.queue.write_buffer(&b.ids, 0, bytemuck::cast_slice(ids));
        ctx.queue.write_buffer(&b.pos_ids, 0, bytemuck::cast_slice(&positions));
        ctx.queue.write_buffer(&b.lengths, 0, bytemuck::bytes_of(&(pos0 + n)));
        let (d, ffn) = (c.n_embd, c.ffn());
        let (nd, nf) = (u64::from(n) * u64::from(d), u64::from(n) * u64::from(ffn));
        let norm = Norm::Layer { eps: c.layer_norm_epsilon };
        let hd = d / c.n_head;
        let attn = Attention { batch: 1, q_len: n, kv_len: self.context, heads: c.n_head, kv_heads: c.n_head, head_dim: hd, q_pos0: pos0, causal: true, scale: 1.0 / (hd as f32).sqrt() };
        let mut e = new_encoder(ctx, "gpt2 forward");
        embedding::encode(ctx, &mut e, &self.wte, n, &b.ids, &b.h).await?;
        embedding::encode(ctx, &mut e, &self.wpe, n, &b.pos_ids, &b.pos).await?;
        Elementwise::Add.encode(ctx, &mut e, nd, &b.h, &b.pos, &b.x).await?;
        let (mut x, mut x_next) = (&b.x, &b.x2);
        // y = W·x + bias, through the pre-bias scratch buffer.
        macro_rules! linear {
            ($w:expr, $bias:expr, $input:expr, $out:expr, $cols:expr) => {{
                matvec::encode(ctx, &mut e, $w, n, $input, &b.pre).await?;
                Elementwise::AddRow { cols: $cols }.encode(ctx, &mut e, u64::from(n) * u64::from($cols), &b.pre, $bias, $out).await?;
            }};
        }
        for blk in &self.blocks {
            norm.encode(ctx, &mut e, n, d, x, &blk.ln1.0, &blk.ln1.1, &b.h).await?;
            linear!(&blk.wq, &blk.bq, &b.h, &b.q, d);
            linear!(&blk.wk, &blk.bk, &b.h, &b.k, d);
            linear!(&blk.wv, &blk.bv, &b.h, &b.v, d);
            let at = u64::from(pos0) * u64::from(d) * 4;
            e.copy_buffer_to_buffer(&b.k, 0, &blk.k_cache, at, nd * 4);
            e.copy_buffer_to_buffer(&b.v, 0, &blk.v_cache, at, nd * 4);
            attn.encode(ctx, &mut e, &b.q, &blk.k_cache, &blk.v_cache, &b.lengths, &b.scores, &b.attn).await?;
            linear!(&blk.wo, &blk.bo, &b.attn, &b.h, d);
            Elementwise::Add.encode(ctx, &mut e, nd, x, &b.h, x_next).await?;
            std::mem::swap(&mut x, &mut x_next);
            norm.encode(ctx, &mut e, n, d, x, &blk.ln2.0, &blk.ln2.1, &b.h).await?;
            linear!(&blk.w_fc, &blk.b_fc, &b.h, &b.f, ffn);
            c.activation().encode(ctx, &mut e, nf, &b.f, &b.f, &b.f2).await?;
            linear!(&blk.w_proj, &blk.b_proj, &b.f2, &b.h, d);
            Elementwise::Add.encode(ctx, &mut e, nd, x, &b.h, x_next).await?;
            std::mem::swap(&mut x, &mut x_next);
        }
        let Some(pick) = head else {
            submit(ctx, "gpt2 forward", e).await?;
            self.tokens.extend_from_slice(ids);
            return Ok(None);
        };
        let row = u64::from(d) * 4;
        e.copy_buffer_to_buffer(x, u64::from(n - 1) * row, &b.last, 0, row);
        norm.encode(ctx, &mut e, 1, d, &b.last, &self.ln_f.0, &self.ln_f.1, &b.last_norm).await?;
        matvec::encode(ctx, &mut e, &self.wte, 1, &b.last_norm, &b.logits).await?;
        let answer = PickBuffers { vocab: c.vocab_size, logits: &b.logits, token: &b.token, scratch: &b.scratch };
        answer.encode(ctx, &mut e, pick).await?;
        submit(ctx, "gpt2 forward", e).await?;
        let next = answer.read(ctx, pick).await?;
        self.tokens.extend_from_slice(ids);
        Ok(Some(next))
    }
}

/// A `Gpt2` with its device: the generation loop's view of it.
pub struct OnGpu<'a> {
    pub ctx: &'a GpuContext,
    pub model: &'a mut Gpt2,
}

impl LanguageModel for OnGpu<'_> {
    fn context(&self) -> u32 {
        self.model.context
    }

    fn cached(&self) -> &[u32] {
        &self.model.tokens
    }

    fn truncate(&mut self, len: usize) {
        self.model.tokens.truncate(len);
    }

    async fn forward(&mut self, tokens: &[u32], pick: Pick) -> Result<Next, ModelError> {
        self.model.forward(self.ctx, tokens, pick).await
    }
}
