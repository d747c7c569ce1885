//! Streaming detokenization: text for each new token, never splitting a UTF-8 character.
//!
//! Decoding one token at a time is wrong for byte-level BPE (a character may span tokens) and for
//! SentencePiece (a decoder strips the leading space of a sequence). As text-generation-inference
//! does, two windows of ids are decoded, the text already shown and the text with the new tokens;
//! the difference is shown once it no longer ends in an incomplete character (U+FFFD).

use crate::tokenizer::{Tokenizer, TokenizerError};

/// Turns a growing list of token ids into text increments.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the window decoded for context.
    prefix: usize,
    /// Ids before this have been shown as text.
    read: usize,
}

impl TextStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `id`; returns the text it completes (empty while a character is incomplete).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let shown = tokenizer.decode(&self.ids[self.prefix..self.read], true)?;
        let all = tokenizer.decode(&self.ids[self.prefix..], true)?;
        match all.get(shown.len()..) {
            Some(new) if all.len() > shown.len() && !new.ends_with('\u{FFFD}') => {
                let new = new.to_owned();
                self.prefix = self.read;
                self.read = self.ids.len();
                Ok(new)
            }
            _ => Ok(String::new()),
        }
    }

    /// Text of ids still held back (an incomplete character at the end), as the decoder gives it.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String, TokenizerError> {
        let shown = tokenizer.decode(&self.ids[self.prefix..self.read], true)?;
        let all = tokenizer.decode(&self.ids[self.prefix..], true)?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(all.get(shown.len()..).unwrap_or_default().to_owned())
    }
}
