//! `tokenizer.ggml.*` metadata → a `tokenizer.json` document.
//!
//! - `gpt2` (byte-level BPE: GPT-2, Llama 3, Qwen2, SmolLM): vocab + merges, the pre-tokenizer
//!   regex chosen by `tokenizer.ggml.pre` as llama.cpp chooses it, ByteLevel decoding.
//! - `llama` (SentencePiece BPE: Llama 2, TinyLlama, Mistral): GGUF stores no merges, only piece
//!   scores; merges are derived from them as `transformers` does (`generate_merges`), with byte
//!   fallback and the `▁` space convention.

use serde_json::{Value, json};

use super::TokenizerError;
use crate::formats::GgufMetadata;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;
const TOKEN_TYPE_BYTE: i64 = 6;

/// llama.cpp's regexes for BPE pre-tokenizers that are not plain GPT-2.
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub(crate) struct GgufVocab<'a> {
    model: &'a str,
    pre: &'a str,
    tokens: Vec<&'a str>,
    scores: Option<Vec<f64>>,
    types: Option<Vec<i64>>,
    merges: Vec<&'a str>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    unk_id: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    pub chat_template: Option<String>,
}

fn bad(key: &'static str, problem: impl Into<String>) -> TokenizerError {
    TokenizerError::BadGguf { key, problem: problem.into() }
}

impl<'a> GgufVocab<'a> {
    pub fn read(meta: &'a GgufMetadata) -> Result<Self, TokenizerError> {
        let model = meta.get_str("tokenizer.ggml.model").ok_or_else(|| bad("tokenizer.ggml.model", "missing"))?;
        let tokens = meta
            .get_str_array("tokenizer.ggml.tokens")
            .ok_or_else(|| bad("tokenizer.ggml.tokens", "missing or not an array of strings"))?;
        if tokens.is_empty() || tokens.len() > u32::MAX as usize {
            return Err(bad("tokenizer.ggml.tokens", format!("{} tokens", tokens.len())));
        }
        let n = tokens.len();
        let numbers = |key: &'static str| -> Result<Option<Vec<f64>>, TokenizerError> {
            let Some(values) = meta.get_array(key) else { return Ok(None) };
            if values.len() != n {
                return Err(bad(key, format!("{} entries for {n} tokens", values.len())));
            }
            values.iter().map(|v| v.as_f64().ok_or_else(|| bad(key, "not numeric"))).collect::<Result<_, _>>().map(Some)
        };
        let scores = numbers("tokenizer.ggml.scores")?;
        let types = numbers("tokenizer.ggml.token_type")?.map(|t| t.into_iter().map(|x| x as i64).collect());
        let merges = match meta.get_array("tokenizer.ggml.merges") {
            None => Vec::new(),
            Some(_) => meta.get_str_array("tokenizer.ggml.merges").ok_or_else(|| bad("tokenizer.ggml.merges", "not strings"))?,
        };
        let id = |key: &'static str| -> Result<Option<u32>, TokenizerError> {
            match meta.get(key) {
                None => Ok(None),
                Some(v) => match v.as_u64() {
                    Some(id) if (id as usize) < n => Ok(Some(id as u32)),
                    _ => Err(bad(key, format!("{v:?} is not a token id below {n}"))),
                },
            }
        };
        let is_spm = model == "llama";
        let vocab = Self {
            model,
            pre: meta.get_str("tokenizer.ggml.pre").unwrap_or("default"),
            tokens,
            scores,
            types,
            merges,
            bos_id: id("tokenizer.ggml.bos_token_id")?,
            eos_id: id("tokenizer.ggml.eos_token_id")?,
            unk_id: id("tokenizer.ggml.unknown_token_id")?,
            // Absent flags: SentencePiece models add BOS and a space prefix, byte-level BPE neither.
            add_bos: meta.get_bool("tokenizer.ggml.add_bos_token").unwrap_or(is_spm),
            add_eos: meta.get_bool("tokenizer.ggml.add_eos_token").unwrap_or(false),
            add_space_prefix: meta.get_bool("tokenizer.ggml.add_space_prefix").unwrap_or(is_spm),
            chat_template: meta.get_str("tokenizer.chat_template").map(str::to_owned),
        };
        if let Some(types) = &vocab.types {
            for (token, &ty) in vocab.tokens.iter().zip(types) {
                if ty == TOKEN_TYPE_BYTE && parse_byte_token(token).is_none() {
                    return Err(bad("tokenizer.ggml.tokens", format!("byte token {token:?} is not <0xHH>")));
                }
            }
        }
        Ok(vocab)
    }

    fn token_type(&self, id: usize) -> i64 {
        self.types.as_ref().map_or(1, |t| t[id])
    }

    fn added_tokens(&self) -> Vec<Value> {
        (0..self.tokens.len())
            .filter(|&i| matches!(self.token_type(i), TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|i| {
                json!({
                    "id": i, "content": self.tokens[i], "single_word": false, "lstrip": false, "rstrip": false,
                    "normalized": false, "special": self.token_type(i) == TOKEN_TYPE_CONTROL,
                })
            })
            .collect()
    }

    fn vocab_map(&self) -> serde_json::Map<String, Value> {
        // A repeated token keeps its last id, as llama.cpp's and transformers' maps do.
        self.tokens.iter().enumerate().map(|(i, t)| ((*t).to_owned(), json!(i))).collect()
    }

    fn post_processor(&self) -> Value {
        let special = |id: Option<u32>| id.map(|id| (self.tokens[id as usize], id));
        let bos = special(self.bos_id).filter(|_| self.add_bos);
        let eos = special(self.eos_id).filter(|_| self.add_eos);
        if bos.is_none() && eos.is_none() {
            return Value::Null;
        }
        let piece = |(token, _): (&str, u32)| json!({ "SpecialToken": { "id": token, "type_id": 0 } });
        let seq = |name: &str| json!({ "Sequence": { "id": name, "type_id": 0 } });
        let mut single = Vec::new();
        let mut pair = Vec::new();
        single.extend(bos.map(piece));
        single.push(seq("A"));
        single.extend(eos.map(piece));
        pair.extend(single.iter().cloned());
        pair.extend(bos.map(piece));
        pair.push(seq("B"));
        pair.extend(eos.map(piece));
        let specials: serde_json::Map<String, Value> = bos
            .into_iter()
            .chain(eos)
            .map(|(t, id)| (t.to_owned(), json!({ "id": t, "ids": [id], "tokens": [t] })))
            .collect();
        json!({ "type": "TemplateProcessing", "single": single, "pair": pair, "special_tokens": specials })
    }

    pub fn to_tokenizer_json(&self) -> Result<Value, TokenizerError> {
        let (normalizer, pre_tokenizer, decoder, model) = match self.model {
            "gpt2" => self.byte_level_bpe()?,
            "llama" => self.sentencepiece_bpe()?,
            other => return Err(TokenizerError::Unsupported { what: "tokenizer model", name: other.to_owned() }),
        };
        Ok(json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": self.added_tokens(),
            "normalizer": normalizer,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": self.post_processor(),
            "decoder": decoder,
            "model": model,
        }))
    }

    fn byte_level_bpe(&self) -> Result<(Value, Value, Value, Value), TokenizerError> {
        let byte_level = |use_regex: bool| json!({ "type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex });
        let split = |regex: &str| json!({ "type": "Split", "pattern": { "Regex": regex }, "behavior": "Isolated", "invert": false });
        let (normalizer, pre_tokenizer) = match self.pre {
            "default" | "gpt-2" | "gpt2" => (Value::Null, byte_level(true)),
            // llama.cpp: "\p{N}" then the GPT-2 regex, i.e. digits one by one.
            "smollm" | "starcoder" | "refact" => (
                Value::Null,
                json!({ "type": "Sequence", "pretokenizers": [ { "type": "Digits", "individual_digits": true }, byte_level(true) ] }),
            ),
            "llama-bpe" | "llama3" | "dbrx" | "smaug-bpe" => (
                Value::Null,
                json!({ "type": "Sequence", "pretokenizers": [ split(LLAMA3_REGEX), byte_level(false) ] }),
            ),
            "qwen2" | "deepseek-r1-qwen" => (
                json!({ "type": "NFC" }),
                json!({ "type": "Sequence", "pretokenizers": [ split(QWEN2_REGEX), byte_level(false) ] }),
            ),
            other => return Err(TokenizerError::Unsupported { what: "pre-tokenizer", name: other.to_owned() }),
        };
        let mut merges = Vec::with_capacity(self.merges.len());
        for m in &self.merges {
            let (a, b) = m.split_once(' ').ok_or_else(|| bad("tokenizer.ggml.merges", format!("merge {m:?} has no space")))?;
            merges.push(json!([a, b]));
        }
        let model = json!({
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": matches!(self.pre, "llama-bpe" | "llama3"),
            "vocab": self.vocab_map(), "merges": merges,
        });
        let decoder = json!({ "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true });
        Ok((normalizer, pre_tokenizer, decoder, model))
    }

    fn sentencepiece_bpe(&self) -> Result<(Value, Value, Value, Value), TokenizerError> {
        let scores = self.scores.as_ref().ok_or_else(|| bad("tokenizer.ggml.scores", "missing (a SentencePiece vocabulary needs scores)"))?;
        let merges = derive_merges(&self.tokens, scores);
        let mut normalizers = Vec::new();
        if self.add_space_prefix {
            normalizers.push(json!({ "type": "Prepend", "prepend": "▁" }));
        }
        normalizers.push(json!({ "type": "Replace", "pattern": { "String": " " }, "content": "▁" }));
        let unk = self.unk_id.map(|id| self.tokens[id as usize]);
        let model = json!({
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": self.vocab_map(), "merges": merges,
        });
        let mut decoders = vec![
            json!({ "type": "Replace", "pattern": { "String": "▁" }, "content": " " }),
            json!({ "type": "ByteFallback" }),
            json!({ "type": "Fuse" }),
        ];
        if self.add_space_prefix {
            decoders.push(json!({ "type": "Strip", "content": " ", "start": 1, "stop": 0 }));
        }
        Ok((
            json!({ "type": "Sequence", "normalizers": normalizers }),
            Value::Null,
            json!({ "type": "Sequence", "decoders": decoders }),
            model,
        ))
    }
}

/// `<0xHH>` → the byte.
fn parse_byte_token(token: &str) -> Option<u8> {
    let hex = token.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Merges of a SentencePiece BPE vocabulary from its scores, as `transformers`'
/// `generate_merges` derives them: every split of every piece into two pieces of the vocabulary,
/// ordered by the piece's score (highest first), then by the lengths of the two halves; ties keep
/// vocabulary order (both sorts are stable).
fn derive_merges(tokens: &[&str], scores: &[f64]) -> Vec<Value> {
    use std::collections::HashMap;
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    struct Merge<'t> {
        left: &'t str,
        right: &'t str,
        score: f64,
        left_chars: usize,
        right_chars: usize,
    }
    let mut merges = Vec::new();
    for (piece, &score) in tokens.iter().zip(scores) {
        let mut local = Vec::new();
        for (split, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(split);
            if let (Some(&l), Some(&r)) = (ids.get(left), ids.get(right)) {
                local.push((l, r, Merge { left, right, score, left_chars: left.chars().count(), right_chars: right.chars().count() }));
            }
        }
        local.sort_by_key(|&(l, r, _)| (l, r));
        merges.extend(local.into_iter().map(|(_, _, m)| m));
    }
    merges.sort_by(|a, b| {
        (b.score, b.left_chars, b.right_chars)
            .partial_cmp(&(a.score, a.left_chars, a.right_chars))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    merges.into_iter().map(|m| json!([m.left, m.right])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_tokens() {
        assert_eq!(parse_byte_token("<0x0A>"), Some(10));
        assert_eq!(parse_byte_token("<0xZZ>"), None);
        assert_eq!(parse_byte_token("<0x-1>"), None);
        assert_eq!(parse_byte_token("<0x100>"), None);
    }

    #[test]
    fn merges_follow_scores() {
        // "ab" (score -1) outranks "bc" (-2); "abc" splits as ab+c and a+bc.
        let tokens = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -2.0, -3.0];
        let m: Vec<Value> = derive_merges(&tokens, &scores);
        assert_eq!(m, vec![json!(["a", "b"]), json!(["b", "c"]), json!(["ab", "c"]), json!(["a", "bc"])]);
    }
}
