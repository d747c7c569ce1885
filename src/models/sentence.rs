//! sentence-transformers' module pipeline on top of an encoder: which tokens to pool and how
//! (`Pooling`), the `Dense` projections and the `Normalize` that follow, the sequence length and the
//! prompts — read from the files a sentence-transformers repo carries, in both layouts found on the
//! hub:
//!
//! - the older one (sentence-transformers 2.x–5.x, most repos): module types
//!   `sentence_transformers.models.*`, pooling as `pooling_mode_*_tokens` flags, `max_seq_length`
//!   in `sentence_bert_config.json`;
//! - the one sentence-transformers 6.x writes: module types `sentence_transformers.base.modules.*` /
//!   `sentence_transformers.sentence_transformer.modules.*`, a `pooling_mode` string (or list), and no
//!   `max_seq_length` (the tokenizer's `model_max_length` applies, capped at the positions).
//!
//! What a configuration asks that this cannot honour (an unknown module, pooling mode or
//! activation; a pickled Dense) is a typed error naming the file: never a silent fallback.
//!
//! The pooling modes run where the encoder's activations are (`Bert::pool`: mean on the backend,
//! CLS and last token as row gathers, the others from the read hidden states with `pool_rows`); the
//! Dense layers and the normalisation are small (one vector per text through a matrix of at most
//! a few MB) and run here, in plain loops: the GPU-only build has no candle (the CPU backend's
//! optional dependency), and a product of a handful of vectors needs no kernel library.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ModelError;
use crate::formats::read_table;

/// How sentence-transformers' `Pooling` reduces a text's token vectors to one; several modes are
/// concatenated in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    /// The first (non-prompt) token.
    Cls,
    /// The elementwise maximum over the tokens.
    Max,
    /// The mean over the tokens.
    Mean,
    /// The sum over the tokens divided by √(token count).
    MeanSqrtLen,
    /// The mean weighted by position (1 for the first token, 2 for the next, …).
    WeightedMean,
    /// The last token.
    LastToken,
}

impl PoolMode {
    fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "cls" => PoolMode::Cls,
            "max" => PoolMode::Max,
            "mean" => PoolMode::Mean,
            "mean_sqrt_len_tokens" => PoolMode::MeanSqrtLen,
            "weightedmean" => PoolMode::WeightedMean,
            "lasttoken" => PoolMode::LastToken,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            PoolMode::Cls => "cls",
            PoolMode::Max => "max",
            PoolMode::Mean => "mean",
            PoolMode::MeanSqrtLen => "mean_sqrt_len_tokens",
            PoolMode::WeightedMean => "weightedmean",
            PoolMode::LastToken => "lasttoken",
        }
    }
}

/// The older layout's flags, in the order sentence-transformers concatenates their outputs.
const LEGACY_FLAGS: [(&str, PoolMode); 6] = [
    ("pooling_mode_cls_token", PoolMode::Cls),
    ("pooling_mode_max_tokens", PoolMode::Max),
    ("pooling_mode_mean_tokens", PoolMode::Mean),
    ("pooling_mode_mean_sqrt_len_tokens", PoolMode::MeanSqrtLen),
    ("pooling_mode_weightedmean_tokens", PoolMode::WeightedMean),
    ("pooling_mode_lasttoken", PoolMode::LastToken),
];

/// A `Pooling` module.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooling {
    pub modes: Vec<PoolMode>,
    /// False: the prompt's tokens (all but its trailing special token) are left out of the pool.
    pub include_prompt: bool,
}

impl Pooling {
    /// Mean over every token (what a folder without `modules.json` gets).
    pub fn mean() -> Self {
        Self { modes: vec![PoolMode::Mean], include_prompt: true }
    }

    /// Parses a pooling `config.json` (`file` names it in errors), for token vectors of `hidden`.
    pub fn from_json(bytes: &[u8], file: &str, hidden: u32) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::Config(format!("{file}: {m}"));
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let obj = v.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        let dim = obj.get("embedding_dimension").or_else(|| obj.get("word_embedding_dimension"));
        if let Some(d) = dim
            && d.as_u64() != Some(u64::from(hidden))
        {
            return Err(bad(format!("embedding dimension {d} is not the encoder's hidden size {hidden}")));
        }
        let mode_of = |m: &serde_json::Value| {
            let name = m.as_str().ok_or_else(|| bad(format!("pooling mode {m} is not a string")))?;
            PoolMode::from_name(name).ok_or_else(|| bad(format!("pooling mode {name:?} is not one of cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken")))
        };
        let modes = match obj.get("pooling_mode") {
            Some(serde_json::Value::Array(list)) => list.iter().map(mode_of).collect::<Result<Vec<_>, _>>()?,
            Some(m) => vec![mode_of(m)?],
            None => {
                let mut modes = Vec::new();
                for (key, mode) in LEGACY_FLAGS {
                    match obj.get(key) {
                        None | Some(serde_json::Value::Bool(false)) => {}
                        Some(serde_json::Value::Bool(true)) => modes.push(mode),
                        Some(other) => return Err(bad(format!("{key} = {other} is not a boolean"))),
                    }
                }
                // As sentence-transformers: no flag set means mean pooling.
                if modes.is_empty() { vec![PoolMode::Mean] } else { modes }
            }
        };
        if modes.is_empty() {
            return Err(bad("pooling_mode lists no mode".into()));
        }
        let include_prompt = match obj.get("include_prompt") {
            None => true,
            Some(b) => b.as_bool().ok_or_else(|| bad(format!("include_prompt = {b} is not a boolean")))?,
        };
        Ok(Self { modes, include_prompt })
    }

    /// Values per pooled text: one hidden vector per mode.
    pub fn dims(&self, hidden: u32) -> u32 {
        self.modes.len() as u32 * hidden
    }

    /// Whether every mode can be had from the backend's own ops (a mean-pool, row gathers)
    /// without reading back all token vectors.
    pub fn on_backend(&self, skip: u32) -> bool {
        self.modes.iter().all(|m| matches!(m, PoolMode::Cls | PoolMode::LastToken) || (*m == PoolMode::Mean && skip == 0))
    }

    /// The position `mode` (Cls or LastToken) takes from a text of `len` tokens whose first `skip`
    /// are a prompt left out of the pool.
    pub fn row_of(mode: PoolMode, len: u32, skip: u32) -> u32 {
        match mode {
            PoolMode::LastToken => len.saturating_sub(1),
            _ if skip < len => skip,
            _ => 0,
        }
    }
}

/// Pools one text's token vectors (`rows`: len × hidden, row-major) as sentence-transformers'
/// `Pooling` does over its attention mask, the first `skip` tokens (a prompt) masked out; the
/// modes' outputs concatenated.
pub fn pool_rows(rows: &[f32], hidden: usize, pooling: &Pooling, skip: usize) -> Vec<f32> {
    let len = rows.len() / hidden.max(1);
    let token = |p: usize| &rows[p * hidden..(p + 1) * hidden];
    let kept = skip.min(len)..len;
    let mut out = Vec::with_capacity(pooling.modes.len() * hidden);
    for &mode in &pooling.modes {
        match mode {
            PoolMode::Cls | PoolMode::LastToken => out.extend_from_slice(token(Pooling::row_of(mode, len as u32, skip as u32) as usize)),
            PoolMode::Max => out.extend((0..hidden).map(|d| kept.clone().map(|p| token(p)[d]).fold(f32::NEG_INFINITY, f32::max))),
            PoolMode::Mean | PoolMode::MeanSqrtLen | PoolMode::WeightedMean => {
                let weight = |p: usize| if mode == PoolMode::WeightedMean { (p + 1) as f64 } else { 1.0 };
                let total: f64 = kept.clone().map(weight).sum();
                let denominator = match mode {
                    PoolMode::MeanSqrtLen => total.max(1e-9).sqrt(),
                    _ => total.max(1e-9),
                };
                out.extend((0..hidden).map(|d| (kept.clone().map(|p| weight(p) * f64::from(token(p)[d])).sum::<f64>() / denominator) as f32));
            }
        }
    }
    out
}

/// The activation after a `Dense` layer's product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenseActivation {
    Identity,
    Tanh,
    Relu,
    /// torch's `GELU()` (erf).
    Gelu,
    Sigmoid,
}

impl DenseActivation {
    /// From the class name sentence-transformers writes (`torch.nn.modules.activation.Tanh`).
    fn from_name(name: &str) -> Option<Self> {
        Some(match name.rsplit('.').next()? {
            "Identity" => DenseActivation::Identity,
            "Tanh" => DenseActivation::Tanh,
            "ReLU" => DenseActivation::Relu,
            "GELU" => DenseActivation::Gelu,
            "Sigmoid" => DenseActivation::Sigmoid,
            _ => return None,
        })
    }
}

/// A `Dense` module: y = act(W·x + b), plus x (or R·x) with `use_residual`.
pub struct Dense {
    pub in_features: u32,
    pub out_features: u32,
    /// (out, in), row-major.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    activation: DenseActivation,
    /// With `use_residual`: None adds x itself (in = out); Some(R) adds R·x.
    residual: Option<Option<Vec<f32>>>,
}

#[derive(Deserialize)]
struct DenseConfig {
    in_features: u64,
    out_features: u64,
    #[serde(default = "yes")]
    bias: bool,
    activation_function: Option<String>,
    module_input_name: Option<String>,
    #[serde(default)]
    use_residual: bool,
}

fn yes() -> bool {
    true
}

impl Dense {
    /// Parses `{dir}/config.json` and the weights of `{dir}/model.safetensors` (small: one matrix),
    /// for an input of `input` values.
    pub fn load(dir: &str, config: &[u8], weights: &[u8], input: u32) -> Result<Self, ModelError> {
        let file = format!("{dir}/config.json");
        let bad = |m: String| ModelError::Config(format!("{file}: {m}"));
        let c: DenseConfig = serde_json::from_slice(config).map_err(|e| bad(e.to_string()))?;
        if let Some(name) = c.module_input_name.as_deref().filter(|n| *n != "sentence_embedding") {
            return Err(bad(format!("module_input_name {name:?}: only a Dense over the sentence embedding is supported")));
        }
        let size = |name: &str, v: u64| u32::try_from(v).ok().filter(|&n| (1..=1 << 16).contains(&n)).ok_or_else(|| bad(format!("{name} = {v} is not in 1..=65536")));
        let (in_features, out_features) = (size("in_features", c.in_features)?, size("out_features", c.out_features)?);
        if in_features != input {
            return Err(bad(format!("in_features {in_features} is not the {input} values the module before it gives")));
        }
        let activation = match c.activation_function.as_deref() {
            None => DenseActivation::Tanh,
            Some(name) => DenseActivation::from_name(name).ok_or_else(|| bad(format!("activation_function {name:?} is not supported (Identity, Tanh, ReLU, GELU, Sigmoid)")))?,
        };
        let file = format!("{dir}/model.safetensors");
        let table = read_table(weights, weights.len() as u64, &file).map_err(|e| ModelError::Config(format!("{file}: {e}")))?;
        let tensor = |name: &str, shape: &[u32]| -> Result<Vec<f32>, ModelError> {
            let t = table.get(name).ok_or_else(|| ModelError::Tensor { name: format!("{file}: {name}"), problem: "missing".into() })?;
            read_values(t, weights, &shape.iter().map(|&d| u64::from(d)).collect::<Vec<_>>(), &file)
        };
        let weight = tensor("linear.weight", &[out_features, in_features])?;
        let bias = if c.bias { Some(tensor("linear.bias", &[out_features])?) } else { None };
        let residual = if !c.use_residual {
            None
        } else if in_features == out_features {
            Some(None)
        } else {
            Some(Some(tensor("residual.weight", &[out_features, in_features])?))
        };
        Ok(Self { in_features, out_features, weight, bias, activation, residual })
    }

    /// y for one input x of `in_features` values.
    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let product = |w: &[f32]| -> Vec<f64> { w.chunks_exact(x.len()).map(|row| row.iter().zip(x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()).collect() };
        let mut y = product(&self.weight);
        if let Some(b) = &self.bias {
            y.iter_mut().zip(b).for_each(|(y, b)| *y += f64::from(*b));
        }
        for v in &mut y {
            *v = match self.activation {
                DenseActivation::Identity => *v,
                DenseActivation::Tanh => v.tanh(),
                DenseActivation::Relu => v.max(0.0),
                DenseActivation::Gelu => 0.5 * *v * (1.0 + libm::erf(*v / std::f64::consts::SQRT_2)),
                DenseActivation::Sigmoid => 1.0 / (1.0 + (-*v).exp()),
            };
        }
        match &self.residual {
            None => {}
            Some(None) => y.iter_mut().zip(x).for_each(|(y, x)| *y += f64::from(*x)),
            Some(Some(r)) => y.iter_mut().zip(product(r)).for_each(|(y, r)| *y += r),
        }
        y.into_iter().map(|v| v as f32).collect()
    }
}

/// Tensor `t` of `file` (held whole in `bytes`), which must have `shape`, as f32 values.
fn read_values(t: &crate::formats::TensorInfo, bytes: &[u8], shape: &[u64], file: &str) -> Result<Vec<f32>, ModelError> {
    let problem = |problem: String| ModelError::Tensor { name: format!("{file}: {}", t.name), problem };
    if t.shape != shape {
        return Err(problem(format!("shape {:?}, expected {shape:?}", t.shape)));
    }
    let raw = bytes.get(t.range.start as usize..t.range.end as usize).ok_or_else(|| problem("past the end of the file".into()))?;
    if !matches!(t.dtype, crate::formats::DType::F32 | crate::formats::DType::F16 | crate::formats::DType::BF16) {
        return Err(problem(format!("dtype {} (F32, F16 or BF16 expected)", t.dtype)));
    }
    crate::formats::quant::dequantize(t.dtype, raw).map_err(|e| problem(e.to_string()))
}

/// What follows the pooling, in `modules.json`'s order.
enum Step {
    Dense(Dense),
    Normalize,
}

/// A folder's files by name (relative to the repo root), as the loaders read them: `Ok(None)` when
/// the folder has no such file.
#[allow(async_fn_in_trait)]
pub trait Folder {
    async fn file(&mut self, name: &str) -> Result<Option<Vec<u8>>, ModelError>;
}

/// Files held in memory (tests; a caller that fetched them already).
impl Folder for BTreeMap<String, Vec<u8>> {
    async fn file(&mut self, name: &str) -> Result<Option<Vec<u8>>, ModelError> {
        Ok(self.get(name).cloned())
    }
}

/// A checkpoint folder on disk (the CLI).
#[cfg(not(target_arch = "wasm32"))]
pub struct Dir<'a>(pub &'a std::path::Path);

#[cfg(not(target_arch = "wasm32"))]
impl Folder for Dir<'_> {
    async fn file(&mut self, name: &str) -> Result<Option<Vec<u8>>, ModelError> {
        let path = self.0.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ModelError::Read(super::ReadError::new("StorageError", format!("{}: {e}", path.display())))),
        }
    }
}

/// The files `SentenceModules::load` may read besides `modules.json`, given its module paths: what
/// a downloader fetches (the JS package asks for these among the repo's files).
pub fn module_files(path: &str) -> [String; 2] {
    [format!("{path}/config.json"), format!("{path}/model.safetensors")]
}

/// The sentence-transformers files at the repo root.
pub const ROOT_FILES: [&str; 4] = ["modules.json", "sentence_bert_config.json", "config_sentence_transformers.json", "tokenizer_config.json"];

#[derive(Deserialize)]
struct ModuleEntry {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A sentence-embedding pipeline over an encoder of `hidden` values per token.
pub struct SentenceModules {
    pub pooling: Pooling,
    steps: Vec<Step>,
    /// Tokens per text (None: the model's positions).
    pub max_seq_length: Option<u32>,
    /// `prompts` of `config_sentence_transformers.json` (name → text put before each input).
    pub prompts: BTreeMap<String, String>,
    /// The prompt used when the caller names none.
    pub default_prompt_name: Option<String>,
    /// Values per embedding.
    pub dims: u32,
}

impl SentenceModules {
    /// Mean pooling and L2 normalisation: hugrt's `feature-extraction` for a checkpoint without
    /// `modules.json` (what all-MiniLM-L6-v2 and its kin list).
    pub fn mean_normalized(hidden: u32) -> Self {
        Self { pooling: Pooling::mean(), steps: vec![Step::Normalize], max_seq_length: None, prompts: BTreeMap::new(), default_prompt_name: None, dims: hidden }
    }

    /// Reads the pipeline from a repo folder: `modules.json` and what it names, or the defaults
    /// (`mean_normalized`) without one; `max_seq_length` from `sentence_bert_config.json`, else
    /// `tokenizer_config.json`'s `model_max_length`; prompts from
    /// `config_sentence_transformers.json`.
    pub async fn load(folder: &mut impl Folder, hidden: u32) -> Result<Self, ModelError> {
        let mut me = match folder.file("modules.json").await? {
            None => Self::mean_normalized(hidden),
            Some(bytes) => Self::from_modules(folder, &bytes, hidden).await?,
        };
        me.max_seq_length = match folder.file("sentence_bert_config.json").await? {
            Some(bytes) => max_seq_length(&bytes)?,
            None => None,
        };
        if me.max_seq_length.is_none()
            && let Some(bytes) = folder.file("tokenizer_config.json").await?
        {
            me.max_seq_length = model_max_length(&bytes)?;
        }
        if let Some(bytes) = folder.file("config_sentence_transformers.json").await? {
            me.read_prompts(&bytes)?;
        }
        Ok(me)
    }

    async fn from_modules(folder: &mut impl Folder, bytes: &[u8], hidden: u32) -> Result<Self, ModelError> {
        let bad = |m: String| ModelError::Config(format!("modules.json: {m}"));
        let entries: Vec<ModuleEntry> = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        let mut pooling = None;
        let mut steps = Vec::new();
        let mut dims = hidden;
        for (i, m) in entries.iter().enumerate() {
            let class = m.kind.strip_prefix("sentence_transformers.").and_then(|k| k.rsplit('.').next()).unwrap_or("");
            if !is_safe_path(&m.path) {
                return Err(bad(format!("module {i} has path {:?}", m.path)));
            }
            match class {
                "Transformer" if i == 0 && m.path.is_empty() => {}
                "Transformer" => return Err(bad(format!("module {i}: a Transformer at {:?} (only the repo root's, first, is supported)", m.path))),
                "Pooling" if i == 1 => {
                    let file = format!("{}/config.json", m.path);
                    let config = folder.file(&file).await?.ok_or_else(|| ModelError::Config(format!("{file}: missing (modules.json names it)")))?;
                    let p = Pooling::from_json(&config, &file, hidden)?;
                    dims = p.dims(hidden);
                    pooling = Some(p);
                }
                "Dense" if pooling.is_some() => {
                    let [config, weights] = module_files(&m.path);
                    let config = folder.file(&config).await?.ok_or_else(|| ModelError::Config(format!("{config}: missing (modules.json names it)")))?;
                    let Some(weights) = folder.file(&weights).await? else {
                        return Err(ModelError::Config(format!("{weights}: missing; hugrt reads a Dense module's weights from safetensors only (not pytorch_model.bin)")));
                    };
                    let dense = Dense::load(&m.path, &config, &weights, dims)?;
                    dims = dense.out_features;
                    steps.push(Step::Dense(dense));
                }
                "Normalize" if pooling.is_some() => steps.push(Step::Normalize),
                _ => return Err(bad(format!("module {i} ({}) is not supported here: hugrt runs a Transformer, then Pooling, then Dense and Normalize modules", m.kind))),
            }
        }
        let pooling = pooling.ok_or_else(|| bad("no Pooling module after the Transformer".into()))?;
        Ok(Self { pooling, steps, max_seq_length: None, prompts: BTreeMap::new(), default_prompt_name: None, dims })
    }

    fn read_prompts(&mut self, bytes: &[u8]) -> Result<(), ModelError> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            prompts: BTreeMap<String, String>,
            default_prompt_name: Option<String>,
        }
        let c: Config = serde_json::from_slice(bytes).map_err(|e| ModelError::Config(format!("config_sentence_transformers.json: {e}")))?;
        if let Some(name) = &c.default_prompt_name
            && !c.prompts.contains_key(name)
        {
            return Err(ModelError::Config(format!("config_sentence_transformers.json: default_prompt_name {name:?} is not among the prompts")));
        }
        self.prompts = c.prompts;
        self.default_prompt_name = c.default_prompt_name;
        Ok(())
    }

    /// Whether the last step is a `Normalize` (embeddings of unit length).
    pub fn normalized(&self) -> bool {
        matches!(self.steps.last(), Some(Step::Normalize))
    }

    /// The prompt text for a call: `prompt` itself when given, else the named one, else the
    /// default (an unknown name is an input error).
    pub fn prompt<'a>(&'a self, name: Option<&str>, prompt: Option<&'a str>) -> Result<&'a str, ModelError> {
        if let Some(p) = prompt {
            return Ok(p);
        }
        match name.or(self.default_prompt_name.as_deref()) {
            None => Ok(""),
            Some(n) => self.prompts.get(n).map(String::as_str).ok_or_else(|| {
                let known: Vec<&str> = self.prompts.keys().map(String::as_str).collect();
                ModelError::Input(format!("no prompt named {n:?} (this model has: {})", known.join(", ")))
            }),
        }
    }

    /// The embeddings from the pooled vectors (`pooling.dims(hidden)` values each): the Dense
    /// layers and normalisations in order.
    pub fn finish(&self, mut pooled: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
        for step in &self.steps {
            for x in &mut pooled {
                match step {
                    Step::Dense(dense) => *x = dense.forward(x),
                    Step::Normalize => normalize(x),
                }
            }
        }
        pooled
    }
}

/// torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
fn normalize(x: &mut [f32]) {
    let norm = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt().max(1e-12);
    x.iter_mut().for_each(|v| *v = (f64::from(*v) / norm) as f32);
}

/// A module path of `modules.json`: relative, no `..`, no odd characters.
fn is_safe_path(path: &str) -> bool {
    path.is_empty() || (path.split('/').all(|c| !c.is_empty() && c != "." && c != "..") && path.chars().all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c)))
}

/// `max_seq_length` of a sentence-transformers `sentence_bert_config.json` (None where it has
/// none, as 6.x writes it).
pub fn max_seq_length(sentence_bert_config: &[u8]) -> Result<Option<u32>, ModelError> {
    let v: serde_json::Value = serde_json::from_slice(sentence_bert_config).map_err(|e| ModelError::Config(format!("sentence_bert_config.json: {e}")))?;
    let Some(obj) = v.as_object() else { return Err(ModelError::Config("sentence_bert_config.json: not a JSON object".into())) };
    match obj.get("max_seq_length") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n >= 2)
            .map(Some)
            .ok_or_else(|| ModelError::Config(format!("sentence_bert_config.json: max_seq_length = {n} is not in 2..2^32"))),
    }
}

/// `model_max_length` of a `tokenizer_config.json` when it is a real bound (transformers writes
/// 1e30 for "none").
fn model_max_length(tokenizer_config: &[u8]) -> Result<Option<u32>, ModelError> {
    let v: serde_json::Value = serde_json::from_slice(tokenizer_config).map_err(|e| ModelError::Config(format!("tokenizer_config.json: {e}")))?;
    Ok(v.get("model_max_length").and_then(serde_json::Value::as_f64).filter(|&n| (2.0..=1e7).contains(&n)).map(|n| n as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_pooling_layouts() {
        let legacy = br#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false}"#;
        assert_eq!(Pooling::from_json(legacy, "p", 8).unwrap().modes, vec![PoolMode::Cls, PoolMode::Mean]);
        let none = br#"{"word_embedding_dimension": 8, "pooling_mode_cls_token": false}"#;
        assert_eq!(Pooling::from_json(none, "p", 8).unwrap().modes, vec![PoolMode::Mean]);
        let st6 = br#"{"embedding_dimension": 8, "pooling_mode": "lasttoken", "include_prompt": false}"#;
        assert_eq!(Pooling::from_json(st6, "p", 8).unwrap(), Pooling { modes: vec![PoolMode::LastToken], include_prompt: false });
        let list = br#"{"pooling_mode": ["max", "weightedmean"]}"#;
        assert_eq!(Pooling::from_json(list, "p", 8).unwrap().modes, vec![PoolMode::Max, PoolMode::WeightedMean]);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for (json, needle) in [
            (&br#"{"pooling_mode": "median"}"#[..], "median"),
            (br#"{"pooling_mode": []}"#, "no mode"),
            (br#"{"embedding_dimension": 9}"#, "hidden size 8"),
            (br#"{"pooling_mode_cls_token": "yes"}"#, "not a boolean"),
            (br#"[1]"#, "object"),
        ] {
            let e = Pooling::from_json(json, "1_Pooling/config.json", 8).unwrap_err();
            assert!(matches!(&e, ModelError::Config(m) if m.starts_with("1_Pooling/config.json") && m.contains(needle)), "{e}");
        }
    }

    #[test]
    fn pools_rows_as_sentence_transformers_defines_it() {
        // Three tokens of two values.
        let rows = [1.0, -2.0, 3.0, 4.0, -5.0, 0.5];
        let pool = |modes: Vec<PoolMode>, skip| pool_rows(&rows, 2, &Pooling { modes, include_prompt: skip == 0 }, skip);
        assert_eq!(pool(vec![PoolMode::Cls, PoolMode::LastToken], 0), vec![1.0, -2.0, -5.0, 0.5]);
        assert_eq!(pool(vec![PoolMode::Max], 0), vec![3.0, 4.0]);
        assert_eq!(pool(vec![PoolMode::Mean], 0), vec![-1.0 / 3.0, 2.5 / 3.0]);
        assert_eq!(pool(vec![PoolMode::MeanSqrtLen], 0), vec![(-1.0 / 3f64.sqrt()) as f32, (2.5 / 3f64.sqrt()) as f32]);
        // Weights 1, 2, 3: (1 + 6 − 15) / 6 and (−2 + 8 + 1.5) / 6.
        assert_eq!(pool(vec![PoolMode::WeightedMean], 0), vec![-8.0 / 6.0, 7.5 / 6.0]);
        // The first token is a prompt: CLS moves to the next, weights keep their positions (2, 3).
        assert_eq!(pool(vec![PoolMode::Cls, PoolMode::Mean, PoolMode::WeightedMean], 1), vec![3.0, 4.0, -1.0, 2.25, -9.0 / 5.0, 9.5 / 5.0]);
    }

    #[test]
    fn sentence_bert_config_max_seq_length_is_optional() {
        assert_eq!(max_seq_length(br#"{"max_seq_length": 256, "do_lower_case": false}"#).unwrap(), Some(256));
        assert_eq!(max_seq_length(br#"{"transformer_task": "feature-extraction"}"#).unwrap(), None);
        assert!(matches!(max_seq_length(br#"{"max_seq_length": -1}"#), Err(ModelError::Config(_))));
        assert!(matches!(max_seq_length(b"[]"), Err(ModelError::Config(_))));
        assert_eq!(model_max_length(br#"{"model_max_length": 1000000000000000019884624838656}"#).unwrap(), None);
        assert_eq!(model_max_length(br#"{"model_max_length": 512}"#).unwrap(), Some(512));
    }

    #[test]
    fn module_paths_stay_inside_the_repo() {
        assert!(is_safe_path("") && is_safe_path("1_Pooling") && is_safe_path("modules/2_Dense"));
        assert!(!is_safe_path("../x") && !is_safe_path("/etc") && !is_safe_path("a//b") && !is_safe_path("a b"));
    }
}
