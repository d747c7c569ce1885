//! Chat templates: the Jinja template a checkpoint ships (`tokenizer_config.json`'s
//! `chat_template`, or GGUF `tokenizer.chat_template`) rendered with minijinja, the engine
//! HF transformers' templates are written for (with its Python-compatibility methods:
//! `.strip()`, `.startswith()`, … are used by real templates).
//!
//! The template comes from a downloaded file, so it is treated as untrusted: minijinja has no
//! filesystem or network access, the render runs on a fuel budget (a loop cannot spin forever)
//! and its output is bounded.

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};

/// Instructions a template may execute before it is stopped.
const FUEL: u64 = 5_000_000;
/// Longest rendered prompt (bytes).
const MAX_OUTPUT: usize = 4 << 20;
/// Longest template source (bytes).
const MAX_TEMPLATE: usize = 256 << 10;

/// One message of a conversation, as OpenAI-style APIs and HF templates name them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ChatTemplateError {
    #[error("the model has no chat template")]
    Missing,
    #[error("chat template is {0} bytes (at most {MAX_TEMPLATE})")]
    TooLarge(usize),
    #[error("chat template does not parse: {0}")]
    Syntax(String),
    #[error("chat template failed: {0}")]
    Render(String),
    #[error("the rendered chat prompt exceeds {MAX_OUTPUT} bytes")]
    OutputTooLarge,
}

/// A parsed chat template with the special tokens it may refer to.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
}

impl ChatTemplate {
    /// Parses `source`. `bos_token`/`eos_token` are the strings templates read as variables.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatTemplateError> {
        if source.len() > MAX_TEMPLATE {
            return Err(ChatTemplateError::TooLarge(source.len()));
        }
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<Value, Error> { Err(Error::new(ErrorKind::InvalidOperation, message)) });
        env.add_template_owned("chat", source.to_owned()).map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        Ok(Self { env, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// Renders `messages`; `add_generation_prompt` opens the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        let template = self.env.get_template("chat").map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        let out = template
            .render(context! { messages, add_generation_prompt, bos_token => self.bos_token, eos_token => self.eos_token })
            .map_err(|e| ChatTemplateError::Render(e.to_string()))?;
        if out.len() > MAX_OUTPUT {
            return Err(ChatTemplateError::OutputTooLarge);
        }
        Ok(out)
    }
}
