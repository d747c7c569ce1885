//! Constrained decoding: which tokens may come next, from a JSON schema, "any JSON object", a
//! regular expression or a Lark grammar, through llguidance (MIT; Earley parser over lazily built
//! lexer automata, a token trie walk per step: tens of µs a token on 50k–150k vocabularies, and
//! nothing compiled ahead per grammar, which outlines-core's whole-vocabulary index needs; it also
//! takes Lark/EBNF grammars, which outlines-core does not).
//!
//! The vocabulary (each token's bytes) is read once per tokenizer, on first use, and shared by
//! every constraint made for it (`Vocabulary`). A `Constraint` is one generation's parser state:
//! `allowed` gives the mask for the next token, `accept` advances it by the chosen one.

use std::sync::{Arc, OnceLock};

use llguidance::api::{GrammarWithLexer, TopLevelGrammar};
use llguidance::{Matcher, ParserFactory};
use serde::{Deserialize, Serialize};
use toktrie::{SimpleVob, TokEnv, TokRxInfo, TokTrie, TokenizerEnv};

use crate::tokenizer::Tokenizer;

/// What the output must be (`responseFormat` in JS; OpenAI's `response_format` and WebLLM's
/// grammar forms).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// No constraint.
    Text,
    /// Any JSON object (`schema`, if given, as WebLLM takes it: the same as `json_schema`).
    JsonObject {
        #[serde(default)]
        schema: Option<serde_json::Value>,
    },
    /// OpenAI's `{ type: 'json_schema', json_schema: { name, schema, strict } }`.
    JsonSchema {
        #[serde(alias = "jsonSchema")]
        json_schema: JsonSchemaFormat,
    },
    /// A regular expression (Rust `regex` syntax) the whole output matches.
    Regex { pattern: String },
    /// A Lark grammar (llguidance's variant: `start: …`, `%json { … }`, regex terminals).
    #[serde(alias = "lark")]
    Grammar { grammar: String },
}

/// OpenAI's `json_schema` object.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// `true`: a keyword the compiler does not support is an error. Otherwise such keywords are
    /// ignored (the output still follows the rest of the schema).
    #[serde(default)]
    pub strict: Option<bool>,
}

#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum GrammarError {
    /// The schema, regex or grammar cannot be compiled (or uses what the compiler lacks).
    #[error("the response format cannot be compiled: {0}")]
    Compile(String),
    /// The vocabulary cannot be read as bytes (neither byte-level nor byte-fallback).
    #[error("constrained decoding is not available for this tokenizer: {0}")]
    Vocabulary(String),
    /// The grammar's parser failed during generation (its own limits, or an internal error).
    #[error("constrained decoding failed: {0}")]
    Parser(String),
    /// Asked of a model that cannot do it (tools with a template that has none).
    #[error("{0}")]
    Unsupported(String),
}

impl GrammarError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Compile(_) => "Usage",
            Self::Vocabulary(_) | Self::Unsupported(_) => "Unsupported",
            Self::Parser(_) => "Grammar",
        }
    }
}

impl ResponseFormat {
    /// The llguidance grammar, or `None` for plain text. JSON is written as `json.dumps` writes
    /// it (", " and ": ", no other whitespace), which also keeps the output from running on in
    /// whitespace, unless the schema's own `x-guidance` options say otherwise.
    fn grammar(&self) -> Option<TopLevelGrammar> {
        let json = |schema: Option<&serde_json::Value>, lenient: bool| {
            let mut schema = schema.cloned().unwrap_or_else(|| serde_json::json!({ "type": "object" }));
            if let Some(map) = schema.as_object_mut() {
                map.entry("x-guidance").or_insert_with(|| {
                    serde_json::json!({ "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": ", "lenient": lenient })
                });
            }
            TopLevelGrammar::from_json_schema(schema)
        };
        match self {
            Self::Text => None,
            Self::JsonObject { schema } => Some(json(schema.as_ref(), false)),
            Self::JsonSchema { json_schema } => Some(json(json_schema.schema.as_ref(), json_schema.strict != Some(true))),
            Self::Regex { pattern } => Some(TopLevelGrammar::from_regex(pattern)),
            Self::Grammar { grammar } => Some(TopLevelGrammar::from_grammar(GrammarWithLexer::from_lark(grammar.clone()))),
        }
    }
}

/// A tokenizer's vocabulary as llguidance reads it (token bytes in a trie), and its grammar
/// compiler. Made once per tokenizer (`Tokenizer::grammar_vocabulary`).
pub struct Vocabulary {
    factory: ParserFactory,
}

impl Vocabulary {
    /// Reads every token's bytes from `tokenizer`; `end_ids` are the tokens that end generation
    /// (allowed where the grammar may end).
    pub fn new(tokenizer: &Tokenizer, end_ids: &[u32]) -> Result<Self, GrammarError> {
        let words = token_bytes(tokenizer)?;
        let eos = end_ids.first().copied().ok_or_else(|| GrammarError::Vocabulary("the tokenizer has no end-of-generation token".into()))?;
        if end_ids.iter().any(|&id| id as usize >= words.len()) {
            return Err(GrammarError::Vocabulary("an end-of-generation id is past the vocabulary".into()));
        }
        let info = TokRxInfo::new(words.len() as u32, eos);
        let trie = TokTrie::from(&info, &words).with_eos_tokens(end_ids);
        let env: TokEnv = Arc::new(TokenizerVocab { trie, tokenizer: tokenizer.clone() });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| GrammarError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// The vocabulary's size (the mask's length).
    pub fn len(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of token `id` (empty past the vocabulary; special tokens without their marker).
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        let trie = self.factory.tok_env().tok_trie();
        if id as usize >= trie.vocab_size() {
            return &[];
        }
        let bytes = trie.token(id);
        bytes.strip_prefix(&[TokTrie::SPECIAL_TOKEN_MARKER]).unwrap_or(bytes)
    }

    /// A fresh constraint for `format` (`None` for plain text).
    pub fn constraint(&self, format: &ResponseFormat) -> Result<Option<Constraint>, GrammarError> {
        let Some(grammar) = format.grammar() else { return Ok(None) };
        let parser = self.factory.create_parser(grammar).map_err(|e| GrammarError::Compile(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(GrammarError::Compile(e));
        }
        Ok(Some(Constraint { matcher }))
    }
}

/// One generation's grammar state.
pub struct Constraint {
    matcher: Matcher,
}

impl Constraint {
    /// The tokens allowed next (end-of-generation tokens where the grammar may end; only those
    /// once it is complete).
    pub fn allowed(&mut self) -> Result<SimpleVob, GrammarError> {
        self.matcher.compute_mask_or_eos().map_err(|e| GrammarError::Parser(e.to_string()))
    }

    /// Advances past `id` (one the last mask allowed).
    pub fn accept(&mut self, id: u32) -> Result<(), GrammarError> {
        self.matcher.consume_token(id).map_err(|e| GrammarError::Parser(e.to_string()))
    }

    /// The grammar is complete: nothing but an end token may follow.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// Sets every logit that `allowed` leaves out (and any past its length) to −∞.
pub fn mask_logits(logits: &mut [f32], allowed: &SimpleVob) {
    for (id, l) in logits.iter_mut().enumerate() {
        if id >= allowed.len() || !allowed.is_allowed(id as u32) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// The vocabulary llguidance walks, with the real tokenizer for the text it must tokenize.
struct TokenizerVocab {
    trie: TokTrie,
    tokenizer: Tokenizer,
}

impl TokenizerEnv for TokenizerVocab {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        match std::str::from_utf8(s).ok().and_then(|text| self.tokenizer.encode(text, false).ok()) {
            Some(ids) => ids,
            None => self.trie.greedy_tokenize(s),
        }
    }
}

/// Every token's bytes, from the tokenizer's vocabulary: byte-level BPE (GPT-2's byte-to-char
/// table), SentencePiece with byte fallback (`<0xHH>` pieces, '▁' for a space) or a Metaspace
/// decoder's pieces (without byte pieces such a vocabulary spells only its own characters); special added
/// tokens get toktrie's marker byte (so no grammar produces them as text). Written here, not
/// taken from `llguidance::token_bytes_from_tokenizer_json`, because that one asserts and unwraps
/// on vocabularies it does not expect, and a panic ends the wasm instance; this one returns an
/// error instead, and reads GGUF vocabularies through the same `tokenizers::Tokenizer`.
fn token_bytes(tokenizer: &Tokenizer) -> Result<Vec<Vec<u8>>, GrammarError> {
    static BYTE_OF_CHAR: OnceLock<std::collections::HashMap<char, u8>> = OnceLock::new();
    let inner = tokenizer.inner();
    let decoder = serde_json::to_value(inner.get_decoder()).unwrap_or_default();
    let decoders: Vec<&serde_json::Value> = match decoder["type"].as_str() {
        Some("Sequence") => decoder["decoders"].as_array().map(|d| d.iter().collect()).unwrap_or_default(),
        _ => vec![&decoder],
    };
    let kind = |t: &str| decoders.iter().any(|d| d["type"] == t);
    let (byte_level, byte_fallback, metaspace) = (kind("ByteLevel"), kind("ByteFallback"), kind("Metaspace"));
    if !byte_level && !byte_fallback && !metaspace {
        return Err(GrammarError::Vocabulary(format!("decoder {} is neither byte-level, byte-fallback nor Metaspace", decoder["type"])));
    }
    let space = decoders
        .iter()
        .find_map(|d| match d["type"].as_str() {
            Some("Replace") if d["content"] == " " => d["pattern"]["String"].as_str(),
            Some("Metaspace") => d["replacement"].as_str(),
            _ => None,
        })
        .and_then(|p| p.chars().next())
        .unwrap_or('▁');
    let byte_of_char = BYTE_OF_CHAR.get_or_init(|| {
        // GPT-2's table: printable Latin-1 bytes stand for themselves, the others for U+0100….
        let mut next = 0x100u32;
        (0..=255u8)
            .map(|b| {
                let c = b as char;
                if matches!(c, '!'..='~' | '\u{A1}'..='\u{AC}' | '\u{AE}'..='\u{FF}') {
                    (c, b)
                } else {
                    next += 1;
                    (char::from_u32(next - 1).unwrap_or(c), b)
                }
            })
            .collect()
    });
    let vocab = inner.get_vocab(true);
    let size = vocab.values().map(|&id| id as usize + 1).max().unwrap_or(0);
    let mut words = vec![Vec::new(); size];
    let added = inner.get_added_tokens_decoder();
    for (piece, &id) in &vocab {
        let bytes = if let Some(token) = added.get(&id) {
            let mut b = token.content.as_bytes().to_vec();
            if token.special {
                b.insert(0, TokTrie::SPECIAL_TOKEN_MARKER);
            }
            b
        } else if byte_level {
            piece.chars().map(|c| byte_of_char.get(&c).copied()).collect::<Option<Vec<u8>>>().unwrap_or_default()
        } else if let Some(hex) = piece.strip_prefix("<0x").and_then(|p| p.strip_suffix('>')).filter(|h| h.len() == 2) {
            u8::from_str_radix(hex, 16).map(|b| vec![b]).unwrap_or_default()
        } else {
            piece.replace(space, " ").into_bytes()
        };
        words[id as usize] = bytes;
    }
    Ok(words)
}
