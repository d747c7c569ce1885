//! The BERT encoder of `models::bert` on the CPU: the same `config.json`, tokenization, input
//! checks and passes, and the same outputs (mean over the real tokens, L2-normalised; the last
//! hidden state; the masked-LM and sequence-classification heads when the checkpoint has them).
//!
//! The encoder stack is `cpu::encoder`'s (post-LN): candle-core's f32 matmul for the dense layers
//! (gemm: AVX/FMA natively, simd128 on wasm32), plain vectorisable Rust for the rest, the real
//! tokens of a pass's sentences packed into one (tokens, hidden) matrix, so nothing sees padding.

use super::cpu_err;
use super::encoder::{CpuEncoder, Linear, layer_norm};
use super::vec::{Act, LayerNorm, bias_act, bias_tanh, dot, layer_norm_rows};
use crate::formats::TensorTable;
use crate::models::bert::{BertConfig, Pass, check_input, mask_positions, max_seq_length, passes, position_type0, tensors, tokenize, values};
use crate::models::encoder::LayerNames;
use crate::models::llama::{ModelError, RangeReader};
use crate::tokenizer::Tokenizer;
use candle_core::{Device, Tensor};

/// `BertForMaskedLM`'s head: dense, activation, LayerNorm, then the vocabulary projection.
struct MaskedLmHead {
    transform: Linear,
    norm: LayerNorm,
    /// `cls.predictions.decoder.weight` (vocab, hidden) when the file has it; otherwise the word
    /// embeddings (tied, as checkpoints usually are).
    decoder: Option<Vec<f32>>,
    /// (vocab)
    bias: Vec<f32>,
}

/// `BertForSequenceClassification`'s head: the pooler (dense + tanh on [CLS]) and the classifier.
struct ClassifierHead {
    pooler: Linear,
    classifier: Linear,
}

/// What a pass returns per sentence (as `models::bert`).
#[derive(Clone, PartialEq)]
enum Output {
    /// Mean over the tokens, L2-normalised (hidden values).
    Pooled,
    /// The last hidden state (length × hidden values).
    Hidden,
    /// The masked-LM logits at the given positions of each sequence (positions × vocab values).
    MaskedLm(Vec<Vec<u32>>),
    /// The classifier's logits (labels values).
    Classes,
}

/// A BERT encoder on the CPU, with the heads its checkpoint has.
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
    encoder: CpuEncoder,
    mlm: Option<MaskedLmHead>,
    classifier: Option<ClassifierHead>,
}

impl CpuBert {
    /// Loads a BERT encoder from the checkpoint's `config.json`, its safetensors header and its
    /// bytes by range (one tensor at a time), as `Bert::load` does: with a masked-LM head
    /// (`cls.predictions.*`) and a sequence-classification head (`classifier.*` with the pooler)
    /// when the file has them.
    pub async fn load(config_json: &[u8], table: &TensorTable, read: &mut impl RangeReader) -> Result<Self, ModelError> {
        let config = BertConfig::from_json(config_json)?;
        let c = &config;
        let t = tensors(table);
        let word = values(table, read, "embeddings.word_embeddings.weight", &[c.vocab, c.hidden]).await?;
        let position_type0 = position_type0(c, table, read).await?;
        let emb_norm = layer_norm(t, read, "embeddings.LayerNorm", c.hidden).await?;
        let encoder = CpuEncoder::load(c.shape(), t, read, LayerNames::bert).await?;
        let mlm = if t.has("cls.predictions.transform.dense.weight") {
            let decoder = if t.has("cls.predictions.decoder.weight") {
                Some(t.values(read, "cls.predictions.decoder.weight", &[c.vocab, c.hidden]).await?)
            } else {
                None
            };
            let bias = if t.has("cls.predictions.bias") { "cls.predictions.bias" } else { "cls.predictions.decoder.bias" };
            Some(MaskedLmHead {
                transform: Linear::load(t, read, "cls.predictions.transform.dense", c.hidden, c.hidden, true).await?,
                norm: layer_norm(t, read, "cls.predictions.transform.LayerNorm", c.hidden).await?,
                decoder,
                bias: t.values(read, bias, &[c.vocab]).await?,
            })
        } else {
            None
        };
        let classifier = if t.has("classifier.weight") {
            let labels = c.labels.len() as u32;
            Some(ClassifierHead {
                pooler: Linear::load(t, read, "pooler.dense", c.hidden, c.hidden, true).await?,
                classifier: Linear::load(t, read, "classifier", labels, c.hidden, true).await?,
            })
        } else {
            None
        };
        let max_seq_len = config.max_positions;
        Ok(Self { config, max_seq_len, word, position_type0, emb_norm, encoder, mlm, classifier })
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
        self.run(batch, &Output::Pooled)
    }

    /// The last hidden state of each sequence's tokens (length × hidden values, row-major).
    pub fn last_hidden_state(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        self.run(batch, &Output::Hidden)
    }

    /// Whether the checkpoint has a masked-LM head (`fill_mask` works).
    pub fn has_masked_lm(&self) -> bool {
        self.mlm.is_some()
    }

    /// Whether the checkpoint has a sequence-classification head (`classify` works).
    pub fn has_classifier(&self) -> bool {
        self.classifier.is_some()
    }

    /// The masked-LM logits (vocab values each) at every position of each sequence that holds
    /// `mask_id`, in order: one `Vec` of positions per sequence.
    pub fn fill_mask(&self, batch: &[Vec<u32>], mask_id: u32) -> Result<Vec<Vec<Vec<f32>>>, ModelError> {
        if self.mlm.is_none() {
            return Err(ModelError::Config("this checkpoint has no masked-LM head (cls.predictions.*)".into()));
        }
        let positions = mask_positions(batch, mask_id)?;
        let vocab = self.config.vocab as usize;
        let flat = self.run(batch, &Output::MaskedLm(positions))?;
        Ok(flat.into_iter().map(|logits| logits.chunks_exact(vocab).map(<[f32]>::to_vec).collect()).collect())
    }

    /// The sequence-classification logits (one per label of `config.labels`) of each sequence.
    pub fn classify(&self, batch: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.classifier.is_none() {
            return Err(ModelError::Config("this checkpoint has no classification head (classifier.*)".into()));
        }
        self.run(batch, &Output::Classes)
    }

    /// Bytes of weights one pass reads (every matrix of the encoder once, as f32).
    pub fn weight_bytes_per_pass(&self) -> u64 {
        self.encoder.weight_bytes()
    }

    /// The f32 matmul products of one pass over `tokens` packed tokens, as (m, k, n): fused QKV,
    /// attention output, up and down, once per layer.
    pub fn dense_shapes(&self, tokens: usize) -> Vec<(usize, usize, usize)> {
        self.encoder.dense_shapes(tokens)
    }

    fn run(&self, batch: &[Vec<u32>], output: &Output) -> Result<Vec<Vec<f32>>, ModelError> {
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

    /// One pass over checked sequences, their real tokens packed: x is (tokens, hidden).
    fn forward(&self, batch: &[Vec<u32>], pass: &Pass, output: &Output) -> candle_core::Result<Vec<Vec<f32>>> {
        let c = &self.config;
        let hidden = c.hidden as usize;
        let seqs: Vec<&[u32]> = pass.members.iter().map(|&i| batch.get(i).map_or(&[][..], Vec::as_slice)).collect();
        let lengths: Vec<usize> = seqs.iter().map(|s| s.len()).collect();
        let tokens: usize = lengths.iter().sum();
        let missing = |what: &str| candle_core::Error::Msg(format!("{what} out of range"));

        let mut x = Vec::with_capacity(tokens * hidden);
        for seq in &seqs {
            for (p, &id) in seq.iter().enumerate() {
                let w = self.word.get(id as usize * hidden..(id as usize + 1) * hidden).ok_or_else(|| missing("token id"))?;
                let pos = self.position_type0.get(p * hidden..(p + 1) * hidden).ok_or_else(|| missing("position"))?;
                x.extend(w.iter().zip(pos).map(|(a, b)| a + b));
            }
        }
        layer_norm_rows(&mut x, &self.emb_norm, c.layer_norm_eps);
        self.encoder.forward(&mut x, &lengths, false)?;
        // Each sequence's first row in x.
        let starts: Vec<usize> = lengths.iter().scan(0, |s, &n| Some(std::mem::replace(s, *s + n))).collect();
        match output {
            Output::Hidden => Ok(starts.iter().zip(&lengths).map(|(&s, &n)| x[s * hidden..(s + n) * hidden].to_vec()).collect()),
            Output::Pooled => Ok(starts.iter().zip(&lengths).map(|(&s, &n)| mean_normalized(&x[s * hidden..(s + n) * hidden], hidden)).collect()),
            Output::MaskedLm(positions) => {
                let head = self.mlm.as_ref().ok_or_else(|| missing("masked-LM head"))?;
                let per_seq: Vec<&[u32]> = pass.members.iter().map(|&i| positions.get(i).map_or(&[][..], Vec::as_slice)).collect();
                let mut rows = Vec::new();
                for (&s, ps) in starts.iter().zip(&per_seq) {
                    for &p in *ps {
                        rows.extend_from_slice(x.get((s + p as usize) * hidden..(s + p as usize + 1) * hidden).ok_or_else(|| missing("mask position"))?);
                    }
                }
                let m = rows.len() / hidden;
                let mut t = head.transform.matmul(&rows, m)?;
                let act = Act::of(c.activation).ok_or_else(|| missing("activation"))?;
                for row in t.chunks_exact_mut(hidden) {
                    bias_act(row, head.transform.b.as_deref().unwrap_or(&[]), act);
                }
                layer_norm_rows(&mut t, &head.norm, c.layer_norm_eps);
                let logits = decode(&t, head.decoder.as_deref().unwrap_or(&self.word), &head.bias, hidden);
                let vocab = head.bias.len();
                let mut chunks = logits.chunks_exact(vocab);
                Ok(per_seq.iter().map(|ps| chunks.by_ref().take(ps.len()).flatten().copied().collect()).collect())
            }
            Output::Classes => {
                let head = self.classifier.as_ref().ok_or_else(|| missing("classification head"))?;
                let cls: Vec<f32> = starts.iter().flat_map(|&s| x[s * hidden..(s + 1) * hidden].iter().copied()).collect();
                let n = starts.len();
                let mut pooled = head.pooler.matmul(&cls, n)?;
                for row in pooled.chunks_exact_mut(hidden) {
                    bias_tanh(row, head.pooler.b.as_deref().unwrap_or(&[]));
                }
                let logits = head.classifier.forward(&pooled, n)?;
                Ok(logits.chunks_exact(head.classifier.rows()).map(<[f32]>::to_vec).collect())
            }
        }
    }
}

/// `x` (m, hidden) times `Wᵀ` plus `bias` for W (vocab, hidden) as the checkpoint stores it: the
/// masked-LM decoder. Plain dot products rather than a candle matmul, which would want `Wᵀ` (the
/// tied word embeddings a second time, transposed) or a copy of W per call; m is a few masks, so
/// each row of W is read once for all of them.
fn decode(x: &[f32], w: &[f32], bias: &[f32], hidden: usize) -> Vec<f32> {
    let (m, vocab) = (x.len() / hidden, bias.len());
    let mut y = vec![0f32; m * vocab];
    for (v, (row, b)) in w.chunks_exact(hidden).zip(bias).enumerate() {
        for (r, xr) in x.chunks_exact(hidden).enumerate() {
            y[r * vocab + v] = dot(xr, row) + b;
        }
    }
    y
}

/// The mean of the `hidden`-value rows of `rows`, L2-normalised (as sentence-transformers'
/// `Normalize`: divided by max(‖mean‖, 1e-12)).
fn mean_normalized(rows: &[f32], hidden: usize) -> Vec<f32> {
    let mut sum = vec![0f32; hidden];
    for row in rows.chunks_exact(hidden) {
        for (s, v) in sum.iter_mut().zip(row) {
            *s += v;
        }
    }
    let count = (rows.len() / hidden).max(1) as f32;
    let mean: Vec<f32> = sum.into_iter().map(|s| s / count).collect();
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    mean.into_iter().map(|v| v / norm).collect()
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
