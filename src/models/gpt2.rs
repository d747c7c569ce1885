//! GPT-2 (`GPT2LMHeadModel`) from its hub checkpoint: `config.json` + safetensors, no conversion
//! step. Learned positions, pre-LayerNorm blocks with biases, fused QKV (`c_attn`), GELU (tanh),
//! output tied to the token embedding.
//!
//! HF stores GPT-2's projections as `Conv1D` weights, `[in, out]`; the kernels take `[out, in]`
//! rows, so each is transposed on the host at load, one tensor at a time, and `c_attn` is split
//! into its query, key and value parts (three matvecs writing straight to their buffers).

use serde::Deserialize;

use super::decoder::{Architecture, Config};
use super::weights::Weights;
use super::{ModelError, RangeReader};
use crate::backend::{Activation, Backend, CachedAttention, Norm};
use crate::formats::DType;
use crate::generate::{Next, Pick};

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
    pub fn activation(&self) -> Activation {
        if self.activation_function == "gelu" { Activation::GeluErf } else { Activation::GeluTanh }
    }

}

/// A `Linear` layer on the backend: W as (out, in) rows and its bias.
struct Linear<B: Backend> {
    w: B::Matrix,
    b: B::Vector,
}

struct Block<B: Backend> {
    ln1: (B::Vector, B::Vector),
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    attn_proj: Linear<B>,
    ln2: (B::Vector, B::Vector),
    fc: Linear<B>,
    mlp_proj: Linear<B>,
    cache: B::KvCache,
}

/// GPT-2 on backend `B`, with its KV cache.
pub struct Gpt2<B: Backend> {
    pub config: Gpt2Config,
    pub context: u32,
    wte: B::Matrix,
    wpe: B::Matrix,
    blocks: Vec<Block<B>>,
    ln_f: (B::Vector, B::Vector),
}

/// HF checkpoints may prefix every tensor with `transformer.`.
const PREFIXES: [&str; 2] = ["", "transformer."];

/// Tensor `name` as f32 values, refused unless F32, F16 or BF16.
async fn values(w: &mut Weights<'_, impl RangeReader>, name: &str, shape: &[u32]) -> Result<Vec<f32>, ModelError> {
    w.float_values(name, shape).await.map_err(|e| match e {
        ModelError::Tensor { name, problem } if problem.starts_with("dtype") => ModelError::Tensor { name, problem: format!("{problem}: other weights are not supported for GPT-2") },
        other => other,
    })
}

/// Columns `cols` of a (inp, total) `Conv1D` weight with their bias, as a `Linear` of
/// (cols, inp) rows.
fn conv1d_part<B: Backend>(b: &B, name: &str, w: &[f32], bias: &[f32], (inp, total): (u32, u32), cols: std::ops::Range<u32>) -> Result<Linear<B>, ModelError> {
    let (inp, total, from, out) = (inp as usize, total as usize, cols.start as usize, cols.len());
    let rows: Vec<f32> = (from..from + out).flat_map(|o| (0..inp).map(move |i| w[i * total + o])).collect();
    Ok(Linear { w: b.matrix_from_values(name, &rows, out as u32, inp as u32)?, b: b.vector(&bias[from..from + out])? })
}

async fn conv1d<B: Backend>(b: &B, w: &mut Weights<'_, impl RangeReader>, prefix: &str, inp: u32, out: u32) -> Result<Linear<B>, ModelError> {
    let weight = values(w, &format!("{prefix}.weight"), &[inp, out]).await?;
    let bias = values(w, &format!("{prefix}.bias"), &[out]).await?;
    conv1d_part(b, &format!("{prefix}.weight"), &weight, &bias, (inp, out), 0..out)
}

async fn layer_norm<B: Backend>(b: &B, w: &mut Weights<'_, impl RangeReader>, prefix: &str, len: u32) -> Result<(B::Vector, B::Vector), ModelError> {
    Ok((b.vector(&values(w, &format!("{prefix}.weight"), &[len]).await?)?, b.vector(&values(w, &format!("{prefix}.bias"), &[len]).await?)?))
}

impl<B: Backend> Gpt2<B> {
    async fn linear(b: &mut B, x: &B::Tensor, l: &Linear<B>) -> Result<B::Tensor, ModelError> {
        b.linear(x, &l.w, Some(&l.b)).await
    }
}

impl<B: Backend> Architecture<B> for Gpt2<B> {
    /// GPT-2 from `config.json` and its safetensors; `context` caps the KV cache (default and
    /// maximum: `n_positions`). `Conv1D` weights are (in, out): transposed to rows at load, and
    /// `c_attn` split into its query, key and value parts.
    async fn load(b: &B, config: Config<'_>, context: Option<u32>, w: &mut Weights<'_, impl RangeReader>) -> Result<Self, ModelError> {
        let Config::Hub(json) = config else {
            return Err(ModelError::Config("GPT-2 loads from a hub checkpoint (config.json + safetensors)".into()));
        };
        let config = Gpt2Config::from_json(json)?;
        let c = &config;
        let context = c.context(context);
        let (d, ffn) = (c.n_embd, c.ffn());
        w.prefixes = &PREFIXES;
        let mut caches = b.kv_caches(c.n_layer, c.n_head, d / c.n_head, context)?.into_iter();
        for name in ["wte.weight", "wpe.weight"] {
            let t = w.find(name)?;
            if !matches!(t.dtype, DType::F32 | DType::F16 | DType::BF16) {
                return Err(ModelError::Tensor { name: name.into(), problem: format!("{} weights are not supported for GPT-2", t.dtype) });
            }
        }
        let wte = w.table(b, "wte.weight", c.vocab_size, d).await?;
        let wpe = w.table(b, "wpe.weight", c.n_positions, d).await?;
        let mut blocks = Vec::with_capacity(c.n_layer as usize);
        for l in 0..c.n_layer {
            let p = |s: &str| format!("h.{l}.{s}");
            let ln1 = layer_norm(b, w, &p("ln_1"), d).await?;
            let qkv = values(w, &p("attn.c_attn.weight"), &[d, 3 * d]).await?;
            let qkv_bias = values(w, &p("attn.c_attn.bias"), &[3 * d]).await?;
            let name = p("attn.c_attn.weight");
            let part = |i: u32| conv1d_part(b, &name, &qkv, &qkv_bias, (d, 3 * d), i * d..(i + 1) * d);
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            blocks.push(Block {
                ln1,
                q,
                k,
                v,
                attn_proj: conv1d(b, w, &p("attn.c_proj"), d, d).await?,
                ln2: layer_norm(b, w, &p("ln_2"), d).await?,
                fc: conv1d(b, w, &p("mlp.c_fc"), d, ffn).await?,
                mlp_proj: conv1d(b, w, &p("mlp.c_proj"), ffn, d).await?,
                cache: caches.next().ok_or_else(|| ModelError::Config("a block without a cache".into()))?,
            });
        }
        let ln_f = layer_norm(b, w, "ln_f", d).await?;
        Ok(Self { config, context, wte, wpe, blocks, ln_f })
    }

    fn vocab(&self) -> u32 {
        self.config.vocab_size
    }

    fn context(&self) -> u32 {
        self.context
    }

    fn info(&self, b: &B) -> serde_json::Value {
        let c = &self.config;
        let matrices: u64 = self.blocks.iter().map(|k| [&k.q, &k.k, &k.v, &k.attn_proj, &k.fc, &k.mlp_proj].iter().map(|l| b.matrix_bytes(&l.w)).sum::<u64>()).sum();
        serde_json::json!({
            "architecture": "gpt2", "layers": c.n_layer, "hidden": c.n_embd, "heads": c.n_head, "vocab": c.vocab_size,
            "context": self.context, "weightBytes": matrices + b.matrix_bytes(&self.wte),
        })
    }

    /// Token + learned position embeddings; per block LayerNorm → Q, K, V → attention over the
    /// cache → projection → residual, LayerNorm → MLP with GELU → residual; then the final
    /// LayerNorm and the tied LM head on the last token when `head` asks for an answer.
    async fn forward(&mut self, b: &mut B, pos0: u32, ids: &[u32], head: Option<Pick>) -> Result<Option<Next>, ModelError> {
        let c = &self.config;
        let n = ids.len() as u32;
        let norm = Norm::Layer { eps: c.layer_norm_epsilon };
        let hd = c.n_embd / c.n_head;
        let attention = CachedAttention { pos0, heads: c.n_head, kv_heads: c.n_head, head_dim: hd, scale: 1.0 / (hd as f32).sqrt(), window: None, softcap: None };
        let positions: Vec<u32> = (pos0..pos0 + n).collect();
        let tokens = b.embed(&self.wte, ids).await?;
        let pos = b.embed(&self.wpe, &positions).await?;
        let mut x = b.add(&tokens, &pos).await?;
        for blk in &mut self.blocks {
            let h = b.norm(&x, norm, &blk.ln1.0, Some(&blk.ln1.1)).await?;
            let q = Self::linear(b, &h, &blk.q).await?;
            let k = Self::linear(b, &h, &blk.k).await?;
            let v = Self::linear(b, &h, &blk.v).await?;
            let attn = b.cached_attention(&q, &k, &v, &mut blk.cache, attention).await?;
            x = b.linear_add(&attn, &blk.attn_proj.w, Some(&blk.attn_proj.b), &x).await?;
            let h = b.norm(&x, norm, &blk.ln2.0, Some(&blk.ln2.1)).await?;
            let f = Self::linear(b, &h, &blk.fc).await?;
            let f = b.activation(&f, c.activation()).await?;
            x = b.linear_add(&f, &blk.mlp_proj.w, Some(&blk.mlp_proj.b), &x).await?;
        }
        let Some(pick) = head else {
            b.finish().await?;
            return Ok(None);
        };
        let last = b.last_row(&x).await?;
        let h = b.norm(&last, norm, &self.ln_f.0, Some(&self.ln_f.1)).await?;
        let logits = b.linear(&h, &self.wte, None).await?;
        Ok(Some(b.pick(&logits, pick).await?))
    }
}
