//! The BERT encoder of `models::bert` on the CPU: the same `config.json`, tokenization, input
//! checks and passes, and the same output (mean over the real tokens, L2-normalised).
//!
//! The dense layers are candle-core's f32 matmul (gemm: AVX/FMA natively, simd128 on wasm32);
//! weights are widened to f32 at load (F32, F16 or BF16 files), transposed once so that the
//! products read them row by row. Everything else (bias adds, residuals, LayerNorm, GELU,
//! attention) is plain Rust over packed rows, written so that LLVM vectorises it: the real tokens
//! of a pass's sentences are packed into one (tokens, hidden) matrix, so neither the matmuls nor
//! attention see padding, and no mask is needed (attention runs per sentence and head). Q, K and V
//! are one matmul (their weights concatenated at load).

use super::cpu_err;
use super::vec::{LayerNorm, add, axpy, bias_gelu, dot, layer_norm_rows, residual_layer_norm, softmax};
use crate::formats::TensorTable;
use crate::gpu::ops::elementwise::Elementwise;
use crate::models::bert::{BertConfig, Pass, check_input, max_seq_length, passes, position_type0, tokenize, values};
use crate::models::llama::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;
use candle_core::{Device, Tensor};

/// A dense layer `y = x·Wᵀ + b`, holding `Wᵀ` (cols, rows) contiguous.
struct Linear {
    wt: Tensor,
    b: Vec<f32>,
}

impl Linear {
    /// `x` (rows, cols) times `Wᵀ`, without the bias: (rows, out).
    fn matmul(&self, x: &[f32], rows: usize) -> candle_core::Result<Vec<f32>> {
        let cols = self.wt.dim(0)?;
        Tensor::from_slice(x, (rows, cols), &Device::Cpu)?.matmul(&self.wt)?.flatten_all()?.to_vec1::<f32>()
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
    word: Vec<f32>,
    /// Position embeddings plus token type 0's embedding: (max_positions, hidden).
    position_type0: Vec<f32>,
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
        let word = values(table, read, "embeddings.word_embeddings.weight", &[c.vocab, c.hidden]).await?;
        let position_type0 = position_type0(c, table, read).await?;
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
                qkv: Linear { wt: transposed(qkv_w, 3 * hidden, hidden)?, b: qkv_b },
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
            let seqs: Vec<&[u32]> = pass.members.iter().map(|&i| batch.get(i).map_or(&[][..], Vec::as_slice)).collect();
            let outs = self.forward(&seqs, &pass, output).map_err(cpu_err)?;
            for (&i, out) in pass.members.iter().zip(outs) {
                results[i] = out;
            }
        }
        Ok(results)
    }

    /// One pass over checked sequences, their real tokens packed: x is (tokens, hidden).
    fn forward(&self, seqs: &[&[u32]], pass: &Pass, output: Output) -> candle_core::Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let (hidden, heads, hd) = (c.hidden as usize, c.heads as usize, c.head_dim as usize);
        let eps = c.layer_norm_eps;
        let tokens: usize = seqs.iter().map(|s| s.len()).sum();
        debug_assert!(seqs.iter().all(|s| s.len() <= pass.len as usize));
        let missing = |what: &str| candle_core::Error::Msg(format!("{what} out of range"));

        let mut x = Vec::with_capacity(tokens * hidden);
        for seq in seqs {
            for (p, &id) in seq.iter().enumerate() {
                let w = self.word.get(id as usize * hidden..(id as usize + 1) * hidden).ok_or_else(|| missing("token id"))?;
                let pos = self.position_type0.get(p * hidden..(p + 1) * hidden).ok_or_else(|| missing("position"))?;
                x.extend(w.iter().zip(pos).map(|(a, b)| a + b));
            }
        }
        layer_norm_rows(&mut x, &self.emb_norm, eps);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut attn = vec![0f32; tokens * hidden];
        let mut scores = vec![0f32; pass.len as usize];
        for l in &self.layers {
            let mut qkv = l.qkv.matmul(&x, tokens)?;
            for row in qkv.chunks_exact_mut(3 * hidden) {
                add(row, &l.qkv.b);
            }
            // Per sentence and head: softmax(q·kᵀ / √d) · v over the sentence's own tokens.
            attn.fill(0.0);
            let mut start = 0;
            for seq in seqs {
                let n = seq.len();
                let rows = &qkv[start * 3 * hidden..(start + n) * 3 * hidden];
                let out = &mut attn[start * hidden..(start + n) * hidden];
                for h in 0..heads {
                    let (qo, ko, vo) = (h * hd, hidden + h * hd, 2 * hidden + h * hd);
                    for i in 0..n {
                        let q = &rows[i * 3 * hidden + qo..][..hd];
                        let s = &mut scores[..n];
                        for (j, sj) in s.iter_mut().enumerate() {
                            *sj = dot(q, &rows[j * 3 * hidden + ko..][..hd]) * scale;
                        }
                        softmax(s);
                        let o = &mut out[i * hidden + h * hd..][..hd];
                        for (j, &p) in s.iter().enumerate() {
                            axpy(o, p, &rows[j * 3 * hidden + vo..][..hd]);
                        }
                    }
                }
                start += n;
            }
            let o = l.attn_out.matmul(&attn, tokens)?;
            residual_layer_norm(&mut x, &o, &l.attn_out.b, &l.attn_norm, eps);
            let mut up = l.up.matmul(&x, tokens)?;
            let inter = l.up.b.len();
            for row in up.chunks_exact_mut(inter) {
                bias_gelu(row, &l.up.b, c.activation == Elementwise::GeluTanh);
            }
            let down = l.down.matmul(&up, tokens)?;
            residual_layer_norm(&mut x, &down, &l.down.b, &l.out_norm, eps);
        }
        let mut out = Vec::with_capacity(seqs.len());
        let mut rows = x.chunks_exact(hidden);
        for seq in seqs {
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

/// A (rows, cols) row-major matrix's transpose, contiguous: (cols, rows).
fn transposed(w: Vec<f32>, rows: usize, cols: usize) -> Result<Tensor, ModelError> {
    Tensor::from_vec(w, (rows, cols), &Device::Cpu).and_then(|t| t.t()?.contiguous()).map_err(cpu_err)
}

async fn linear(table: &TensorTable, read: &mut impl RangeReader, prefix: &str, rows: u32, cols: u32) -> Result<Linear, ModelError> {
    let w = values(table, read, &format!("{prefix}.weight"), &[rows, cols]).await?;
    let b = values(table, read, &format!("{prefix}.bias"), &[rows]).await?;
    Ok(Linear { wt: transposed(w, rows as usize, cols as usize)?, b })
}

async fn layer_norm(table: &TensorTable, read: &mut impl RangeReader, prefix: &str, len: u32) -> Result<LayerNorm, ModelError> {
    Ok(LayerNorm { g: values(table, read, &format!("{prefix}.weight"), &[len]).await?, b: values(table, read, &format!("{prefix}.bias"), &[len]).await? })
}

impl CpuBert {
    /// The f32 matmul products of one pass over `tokens` packed tokens, as (m, k, n): fused QKV,
    /// attention output, up and down, once per layer.
    pub fn dense_shapes(&self, tokens: usize) -> Vec<(usize, usize, usize)> {
        let (h, i) = (self.config.hidden as usize, self.config.intermediate as usize);
        let layer = [(tokens, h, 3 * h), (tokens, h, h), (tokens, h, i), (tokens, i, h)];
        (0..self.config.layers).flat_map(|_| layer).collect()
    }
}

/// Times candle's f32 matmul (bias-free) on `shapes` (m, k, n), `reps` times over, on random
/// operands: `(milliseconds for one run over all shapes, GFLOP/s)`. For benchmarks: which share
/// of an encoder pass the dense layers take on this machine.
pub fn time_matmuls(shapes: &[(usize, usize, usize)], reps: u32) -> Result<(f64, f64), ModelError> {
    let dev = &Device::Cpu;
    let operands: Vec<(Tensor, Tensor)> = shapes
        .iter()
        .map(|&(m, k, n)| Ok((Tensor::rand(-1f32, 1f32, (m, k), dev)?, Tensor::rand(-1f32, 1f32, (k, n), dev)?)))
        .collect::<candle_core::Result<_>>()
        .map_err(cpu_err)?;
    let flops: f64 = shapes.iter().map(|&(m, k, n)| 2.0 * (m * k * n) as f64).sum();
    let run = || -> candle_core::Result<()> {
        for (a, b) in &operands {
            std::hint::black_box(a.matmul(b)?);
        }
        Ok(())
    };
    run().map_err(cpu_err)?;
    let reps = reps.max(1);
    let t = crate::clock::now_ms();
    for _ in 0..reps {
        run().map_err(cpu_err)?;
    }
    let ms = (crate::clock::now_ms() - t) / f64::from(reps);
    Ok((ms, flops / (ms * 1e6)))
}
