//! Tokenizers: a hub `tokenizer.json` through the `tokenizers` crate, or the vocabulary embedded
//! in a GGUF file (`tokenizer.ggml.*`) turned into the same `tokenizers::Tokenizer`.
//!
//! A GGUF vocabulary is converted into a `tokenizer.json` document (what `transformers` does when
//! it loads a GGUF), so that one well-tested engine encodes both kinds of checkpoints.

mod gguf_vocab;

use thiserror::Error;

use crate::formats::GgufMetadata;

#[derive(Clone, Debug, Error, PartialEq)]
pub enum TokenizerError {
    #[error("tokenizer.json could not be loaded: {0}")]
    BadJson(String),
    #[error("GGUF tokenizer: {key}: {problem}")]
    BadGguf { key: &'static str, problem: String },
    #[error("GGUF tokenizer: {what} {name:?} is not supported yet")]
    Unsupported { what: &'static str, name: String },
    #[error("encoding failed: {0}")]
    Encode(String),
    #[error("decoding failed: {0}")]
    Decode(String),
}

/// A tokenizer with the special-token facts generation needs.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// Beginning-of-sequence id, if the vocabulary has one.
    pub bos_id: Option<u32>,
    /// End-of-sequence id, if the vocabulary has one.
    pub eos_id: Option<u32>,
    /// A chat template (Jinja) shipped with the vocabulary (GGUF `tokenizer.chat_template`).
    pub chat_template: Option<String>,
    /// `eos_token_id` of the checkpoint's `generation_config.json` (one id or a list): when set,
    /// these (with `eos_id`) are the ids that end generation, as in transformers.
    pub generation_end_ids: Option<Vec<u32>>,
    /// The generation options the checkpoint recommends (`generation_config.json`'s sampling
    /// settings, GGUF `general.sampling.*`), for those a caller leaves out.
    pub generation_defaults: crate::generation_defaults::OptionDefaults,
    /// The vocabulary as constrained decoding reads it, made on first use and shared by clones.
    #[cfg(feature = "gpu")]
    grammar: GrammarCache,
}

#[cfg(feature = "gpu")]
type GrammarCache = std::sync::Arc<std::sync::OnceLock<Result<std::sync::Arc<crate::generate::grammar::Vocabulary>, crate::generate::grammar::GrammarError>>>;

impl Tokenizer {
    /// Loads a hub `tokenizer.json`. Padding and truncation settings in the file are dropped:
    /// callers pad a batch to its longest member and bound lengths by the model's context.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let mut inner = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::BadJson(e.to_string()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| TokenizerError::BadJson(e.to_string()))?;
        Ok(Self { inner, bos_id: None, eos_id: None, chat_template: None, generation_end_ids: None, generation_defaults: Default::default(), #[cfg(feature = "gpu")] grammar: Default::default() })
    }

    /// Takes the chat template and the BOS/EOS tokens of a hub `tokenizer_config.json` (the
    /// template as a string, or the `default` of a list of named ones; tokens as strings or as
    /// `{ "content": ... }`). Tokens the vocabulary lacks are ignored.
    pub fn with_config(mut self, tokenizer_config: &[u8]) -> Result<Self, TokenizerError> {
        let config: serde_json::Value = serde_json::from_slice(tokenizer_config).map_err(|e| TokenizerError::BadJson(format!("tokenizer_config.json: {e}")))?;
        let token = |key: &str| {
            let v = &config[key];
            v.as_str().or_else(|| v["content"].as_str()).and_then(|t| self.inner.token_to_id(t))
        };
        let (bos, eos) = (token("bos_token"), token("eos_token"));
        self.bos_id = bos.or(self.bos_id);
        self.eos_id = eos.or(self.eos_id);
        self.chat_template = match &config["chat_template"] {
            serde_json::Value::String(t) => Some(t.clone()),
            serde_json::Value::Array(named) => named.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(String::from),
            _ => self.chat_template,
        };
        Ok(self)
    }

    /// Takes `eos_token_id` (an id or a list of ids), `bos_token_id` and the sampling defaults of
    /// a hub `generation_config.json`. Ids past the vocabulary are an error, not ignored.
    pub fn with_generation_config(mut self, generation_config: &[u8]) -> Result<Self, TokenizerError> {
        let bad = |m: String| TokenizerError::BadJson(format!("generation_config.json: {m}"));
        let config: serde_json::Value = serde_json::from_slice(generation_config).map_err(|e| bad(e.to_string()))?;
        let vocab = self.vocab_size() as u64;
        let id = |v: &serde_json::Value, key: &str| -> Result<u32, TokenizerError> {
            v.as_u64().filter(|&i| i < vocab).map(|i| i as u32).ok_or_else(|| bad(format!("{key} {v} is not a token id below the vocabulary size {vocab}")))
        };
        self.generation_end_ids = match &config["eos_token_id"] {
            serde_json::Value::Null => self.generation_end_ids,
            serde_json::Value::Array(ids) => Some(ids.iter().map(|v| id(v, "eos_token_id")).collect::<Result<_, _>>()?),
            v => Some(vec![id(v, "eos_token_id")?]),
        };
        if !config["bos_token_id"].is_null() {
            self.bos_id = Some(id(&config["bos_token_id"], "bos_token_id")?);
        }
        self.generation_defaults = crate::generation_defaults::OptionDefaults::from_generation_config(&config).map_err(TokenizerError::BadJson)?;
        Ok(self)
    }

    /// Builds the tokenizer described by GGUF metadata (`tokenizer.ggml.model` "gpt2" byte-level
    /// BPE or "llama" SentencePiece BPE).
    pub fn from_gguf(meta: &GgufMetadata) -> Result<Self, TokenizerError> {
        let vocab = gguf_vocab::GgufVocab::read(meta)?;
        let json = vocab.to_tokenizer_json()?;
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes())
            .map_err(|e| TokenizerError::BadJson(e.to_string()))?;
        let generation_defaults = crate::generation_defaults::OptionDefaults::from_gguf(meta).map_err(TokenizerError::BadJson)?;
        Ok(Self { inner, bos_id: vocab.bos_id, eos_id: vocab.eos_id, chat_template: vocab.chat_template, generation_end_ids: None, generation_defaults, #[cfg(feature = "gpu")] grammar: Default::default() })
    }

    /// Token ids of `text`; `add_special` adds what the post-processor adds (BOS, `[CLS]`/`[SEP]`).
    /// Special tokens written in `text` (`<|im_start|>`) are recognised either way.
    pub fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self.inner.encode(text, add_special).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids and token type ids of the pair (`a`, `b`) with the special tokens of a pair
    /// (`[CLS] a [SEP] b [SEP]`, `<s> a </s></s> b </s>`), the two truncated longest first so
    /// that the whole fits in `max_len` (transformers' `truncation="longest_first"`).
    pub fn encode_pair(&self, a: &str, b: &str, max_len: usize) -> Result<(Vec<u32>, Vec<u32>), TokenizerError> {
        use tokenizers::PostProcessor;
        use tokenizers::utils::truncation::{TruncationDirection, TruncationParams, TruncationStrategy, truncate_encodings};
        let encode = |t: &str| self.inner.encode(t, false).map_err(|e| TokenizerError::Encode(e.to_string()));
        let (first, second) = (encode(a)?, encode(b)?);
        let added = self.inner.get_post_processor().map_or(0, |p| p.added_tokens(true));
        let params = TruncationParams { direction: TruncationDirection::Right, max_length: max_len.saturating_sub(added), strategy: TruncationStrategy::LongestFirst, stride: 0 };
        let (first, second) = truncate_encodings(first, Some(second), &params).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let pair = self.inner.post_process(first, second, true).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok((pair.get_ids().to_vec(), pair.get_type_ids().to_vec()))
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.inner.decode(ids, skip_special).map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Ids that end generation: those of `generation_config.json` with EOS where the checkpoint
    /// has one; else EOS and the end-of-turn tokens that llama.cpp also treats as such when the
    /// vocabulary has them (chat models end a turn with these, not with EOS).
    pub fn end_ids(&self) -> Vec<u32> {
        const END_OF_TURN: [&str; 7] = ["<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "<|end|>", "<end_of_turn>", "</s>"];
        let mut ids: Vec<u32> = match &self.generation_end_ids {
            Some(listed) => self.eos_id.into_iter().chain(listed.iter().copied()).collect(),
            None => self.eos_id.into_iter().chain(END_OF_TURN.iter().filter_map(|t| self.token_to_id(t))).collect(),
        };
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The vocabulary for constrained decoding (read on first use; its end tokens are
    /// `end_ids()` at that time).
    #[cfg(feature = "gpu")]
    pub fn grammar_vocabulary(&self) -> Result<std::sync::Arc<crate::generate::grammar::Vocabulary>, crate::generate::grammar::GrammarError> {
        self.grammar.get_or_init(|| crate::generate::grammar::Vocabulary::new(self, &self.end_ids()).map(std::sync::Arc::new)).clone()
    }

    /// The underlying `tokenizers` tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}
