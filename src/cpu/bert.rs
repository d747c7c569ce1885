//! The BERT encoder of `models::bert` on candle-core: the same `config.json`, tokenization,
//! input checks and passes, and the same output (mean over the real tokens, L2-normalised).
//!
//! Weights are widened to f32 at load (F32, F16 or BF16 files; candle's f32 gemm is the fast
//! path on both targets, wasm32 with simd128 included). Each pass packs the real tokens of its
//! sentences into one (tokens, hidden) matrix for the dense layers, so padding costs nothing
//! there; only attention pads the sentences to the pass's length, with a mask over the padded
//! keys. Q, K and V are one matmul (their weights concatenated at load).

use super::cpu_err;
use crate::formats::TensorTable;
use crate::gpu::ops::elementwise::Elementwise;
use crate::models::bert::{BertConfig, Pass, check_input, max_seq_length, passes, position_type0, tokenize, values};
use crate::models::llama::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;
use candle_core::{Device, Tensor};

/// A LayerNorm's gain and bias, (hidden) each.
struct LayerNorm {
    g: Tensor,
    b: Tensor,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
        candle_nn::ops::layer_norm(x, &self.g, &self.b, eps)
    }
}

/// A dense layer `y = x·Wᵀ + b`, holding `Wᵀ` (cols, rows) contiguous.
struct Linear {
    wt: Tensor,
    b: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.wt)?.broadcast_add(&self.b)
    }
}

struct Layer {
    /// Q, K and V in one: (hidden, 3·hidden).
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// What a pass returns per sentence (as `models::bert`).
#[derive(Clone, Copy, PartialEq)]
enum Output {
    Pooled,
    Hidden,
}

/// A BERT encoder on the CPU.
pub struct CpuBert {
    pub config: BertConfig,
    /// Longest sequence `embed` takes (`max_position_embeddings`, or less when set); text is
    /// truncated to it.
    pub max_seq_len: u32,
    /// (vocab, hidden)
    word: Tensor,
    /// Position embeddings plus token type 0's embedding: (max_positions, hidden).
    position_type0: Tensor,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
}

impl CpuBert {
    /// Loads a BERT encoder from the checkpoint's `config.json`, its safetensors header and its
    /// bytes by range (one tensor at a time), as `Bert::load` does.
    pub async fn load(config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = BertConfig::from_json(config_json)?;
        if !matches!(config.activation, Elementwise::GeluErf | Elementwise::GeluTanh) {
            return Err(ModelError::Config("config.json: hidden_act is not a GELU".into()));
        }
        let c = &config;
        let hidden = c.hidden as usize;
        let word = tensor(values(table, read, "embeddings.word_embeddings.weight", &[c.vocab, c.hidden]).await?, (c.vocab as usize, hidden))?;
        let position_type0 = tensor(position_type0(c, table, read).await?, (c.max_positions as usize, hidden))?;
        let emb_norm = layer_norm(table, read, "embeddings.LayerNorm", c.hidden).await?;
        let mut layers = Vec::with_capacity(c.layers as usize);
        for l in 0..c.layers {
            let p = |s: &str| format!("encoder.layer.{l}.{s}");
            let mut qkv_w = Vec::with_capacity(3 * hidden * hidden);
            let mut qkv_b = Vec::with_capacity(3 * hidden);
            for part in ["query", "key", "value"] {
                let name = p(&format!("attention.self.{part}"));
                qkv_w.extend(values(table, read, &format!("{name}.weight"), &[c.hidden, c.hidden]).await?);
                qkv_b.extend(values(table, read, &format!("{name}.bias"), &[c.hidden]).await?);
            }
            layers.push(Layer {
                qkv: Linear { wt: transposed(qkv_w, 3 * hidden, hidden)?, b: tensor(qkv_b, 3 * hidden)? },
                attn_out: linear(table, read, &p("attention.output.dense"), c.hidden, c.hidden).await?,
                attn_norm: layer_norm(table, read, &p("attention.output.LayerNorm"), c.hidden).await?,
                up: linear(table, read, &p("intermediate.dense"), c.intermediate, c.hidden).await?,
                down: linear(table, read, &p("output.dense"), c.hidden, c.intermediate).await?,
                out_norm: layer_norm(table, read, &p("output.LayerNorm"), c.hidden).await?,
            });
        }
        let max_seq_len = config.max_positions;
        Ok(Self { config, max_seq_len, word, position_type0, emb_norm, layers })
    }

    /// Caps sequences at `max_seq_length` from a sentence-transformers `sentence_bert_config.json`
    /// (at most the model's positions).
    pub fn apply_sentence_bert_config(&mut self, json: &[u8]) -> Result<(), ModelError> {
        self.max_seq_len = max_seq_length(json)?.min(self.config.max_positions);
        Ok(())
    }

    /// Token ids of each text with `[CLS]`/`[SEP]`, truncated to `max_seq_len`.
    pub fn tokenize<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<u32>>, ModelError> {
        tokenize(tokenizer, texts, self.max_seq_len)
    }

    /// Sentence embeddings of `texts`.
    pub fn embed_texts<S: AsRef<str>>(&self, tokenizer: &Tokenizer, texts: &[S]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.embed(&self.tokenize(tokenizer, texts)?)
    }

    /// Mean-pooled, L2-normalised embeddings (`hidden` values each) of a batch of token-id
    /// sequences of any lengths from 1 to `max_seq_len`.
    pub fn embed(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(batch, Output::Pooled)
    }

    /// The last hidden state of each sequence's tokens (length × hidden values, row-major).
    pub fn last_hidden_state(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(batch, Output::Hidden)
    }

    /// Bytes of weights one pass reads (every matrix once, as f32).
    pub fn weight_bytes_per_pass(&self) -> u64 {
        let bytes = |l: &Linear| (l.wt.elem_count() * 4) as u64;
        self.layers.iter().map(|l| bytes(&l.qkv) + bytes(&l.attn_out) + bytes(&l.up) + bytes(&l.down)).sum()
    }

    fn run(&self, batch: &[Vec<u32>], output: Output) -> Result<Vec<Vec<f32>>, ModelError> {
        check_input(&self.config, self.max_seq_len, batch)?;
        let mut results = vec![Vec::new(); batch.len()];
        for pass in passes(batch) {
            let outs = self.forward(batch, &pass, output).map_err(cpu_err)?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    /// One pass over checked sequences: the real tokens packed, (tokens, hidden).
    fn forward(&self, batch: &[Vec<u32>], pass: &Pass, output: Output) -> candle_core::Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let dev = &Device::Cpu;
        let seqs: Vec<&[u32]> = pass.members.iter().map(|&i| batch.get(i).map_or(&[][..], Vec::as_slice)).collect();
        let (n, len) = (seqs.len(), pass.len as usize);
        let (hidden, heads, hd) = (c.hidden as usize, c.heads as usize, c.head_dim as usize);
        let ids: Vec<u32> = seqs.iter().flat_map(|s| s.iter().copied()).collect();
        let positions: Vec<u32> = seqs.iter().flat_map(|s| 0..s.len() as u32).collect();
        let tokens = ids.len();
        // Packed row of each padded slot (padding slots point at their sentence's first token;
        // masked as keys, dropped as queries), and the padded slot of each packed row.
        let mut to_padded = Vec::with_capacity(n * len);
        let mut to_packed = Vec::with_capacity(tokens);
        let mut mask = Vec::with_capacity(n * len);
        let mut offset = 0u32;
        for (s, seq) in seqs.iter().enumerate() {
            for p in 0..len {
                let real = p < seq.len();
                to_padded.push(if real { offset + p as u32 } else { offset });
                mask.push(if real { 0f32 } else { f32::NEG_INFINITY });
            }
            to_packed.extend((0..seq.len()).map(|p| (s * len + p) as u32));
            offset += seq.len() as u32;
        }
        let to_padded = Tensor::from_vec(to_padded, n * len, dev)?;
        let to_packed = Tensor::from_vec(to_packed, tokens, dev)?;
        let mask = Tensor::from_vec(mask, (n, 1, 1, len), dev)?;
        let scale = 1.0 / (hd as f64).sqrt();

        let word = self.word.embedding(&Tensor::from_vec(ids, tokens, dev)?)?;
        let pos = self.position_type0.embedding(&Tensor::from_vec(positions, tokens, dev)?)?;
        let mut x = self.emb_norm.forward(&(word + pos)?, c.layer_norm_eps)?;
        for l in &self.layers {
            // (tokens, 3·hidden) → padded (n, len, 3, heads, hd) → three (n, heads, len, hd).
            let qkv = l.qkv.forward(&x)?.index_select(&to_padded, 0)?.reshape((n, len, 3, heads, hd))?;
            let part = |i: usize| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous();
            let (q, k, v) = (part(0)?, part(1)?, part(2)?);
            let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&mask)?;
            let p = candle_nn::ops::softmax_last_dim(&scores)?;
            // (n, heads, len, hd) → (n·len, hidden) → packed (tokens, hidden).
            let attn = p.matmul(&v)?.transpose(1, 2)?.reshape((n * len, hidden))?.index_select(&to_packed, 0)?;
            x = l.attn_norm.forward(&(l.attn_out.forward(&attn)? + &x)?, c.layer_norm_eps)?;
            let up = l.up.forward(&x)?;
            let act = if c.activation == Elementwise::GeluTanh { up.gelu()? } else { up.gelu_erf()? };
            x = l.out_norm.forward(&(l.down.forward(&act)? + &x)?, c.layer_norm_eps)?;
        }
        let all = x.flatten_all()?.to_vec1::<f32>()?;
        let mut out = Vec::with_capacity(n);
        let mut rows = all.chunks_exact(hidden);
        for seq in &seqs {
            let rows: Vec<&[f32]> = rows.by_ref().take(seq.len()).collect();
            out.push(match output {
                Output::Hidden => rows.concat(),
                Output::Pooled => mean_normalized(&rows, hidden),
            });
        }
        Ok(out)
    }
}

/// The mean of `rows`, L2-normalised (as sentence-transformers' `Normalize`: divided by
/// max(‖mean‖, 1e-12)).
fn mean_normalized(rows: &[&[f32]], hidden: usize) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    for row in rows {
        for (s, v) in sum.iter_mut().zip(*row) {
            *s += v;
        }
    }
    let count = rows.len().max(1) as f32;
    let mean: Vec<f32> = sum.into_iter().map(|s| s / count).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    mean.into_iter().map(|v| v / norm).collect()
}

fn tensor(v: Vec<f32>, shape: impl Into<candle_core::Shape>) -> Result<Tensor, ModelError> {
    Tensor::from_vec(v, shape, &Device::Cpu).map_err(cpu_err)
}

/// A (rows, cols) row-major matrix's transpose, contiguous: (cols, rows).
fn transposed(w: Vec<f32>, rows: usize, cols: usize) -> Result<Tensor, ModelError> {
    Tensor::from_vec(w, (rows, cols), &Device::Cpu).and_then(|t| t.t()?.contiguous()).map_err(cpu_err)
}

async fn linear(table: &TensorTable, read: &mut impl RangeReader, prefix: &str, rows: u32, cols: u32) -> Result<Linear, ModelError> {
    let w = values(table, read, &format!("{prefix}.weight"), &[rows, cols]).await?;
    let b = values(table, read, &format!("{prefix}.bias"), &[rows]).await?;
    Ok(Linear { wt: transposed(w, rows as usize, cols as usize)?, b: tensor(b, rows as usize)? })
}

async fn layer_norm(table: &TensorTable, read: &mut impl RangeReader, prefix: &str, len: u32) -> Result<LayerNorm, ModelError> {
    let g = values(table, read, &format!("{prefix}.weight"), &[len]).await?;
    let b = values(table, read, &format!("{prefix}.bias"), &[len]).await?;
    Ok(LayerNorm { g: tensor(g, len as usize)?, b: tensor(b, len as usize)? })
}
