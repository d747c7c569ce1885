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

/// One message of a conversation, as OpenAI-style APIs and HF templates name them: an assistant
/// turn may carry `tool_calls` (and no content), a `tool` turn answers one by `tool_call_id`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    #[serde(default)]
    pub content: Option<String>,
    /// OpenAI's `[{ id, type: 'function', function: { name, arguments } }]`; `arguments` as a
    /// JSON string is rendered as the object it holds (what HF templates expect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Self { role: role.into(), content: Some(content.into()), ..Self::default() }
    }

    /// A copy whose tool calls' `arguments` strings are parsed into the objects they hold.
    fn for_template(&self) -> Self {
        let mut m = self.clone();
        for call in m.tool_calls.iter_mut().flatten() {
            let arguments = &mut call["function"]["arguments"];
            if let Some(parsed) = arguments.as_str().and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok()) {
                *arguments = parsed;
            }
        }
        m
    }
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
        env.add_filter("tojson", python_tojson);
        env.add_template_owned("chat", source.to_owned()).map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        Ok(Self { env, bos_token: bos_token.into(), eos_token: eos_token.into() })
    }

    /// Renders `messages`; `add_generation_prompt` opens the assistant's turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        self.render_with_tools(messages, None, add_generation_prompt)
    }

    /// Whether the template reads a `tools` variable (renders tool definitions).
    pub fn supports_tools(&self) -> bool {
        self.env.get_template("chat").is_ok_and(|t| t.undeclared_variables(false).contains("tools"))
    }

    /// Renders `messages` with `tools` (OpenAI's tool objects) as transformers'
    /// `apply_chat_template(messages, tools=...)` does.
    pub fn render_with_tools(&self, messages: &[Message], tools: Option<&[serde_json::Value]>, add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        let template = self.env.get_template("chat").map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        let messages: Vec<Message> = messages.iter().map(Message::for_template).collect();
        let out = template
            .render(context! { messages, tools, add_generation_prompt, bos_token => self.bos_token, eos_token => self.eos_token })
            .map_err(|e| ChatTemplateError::Render(e.to_string()))?;
        if out.len() > MAX_OUTPUT {
            return Err(ChatTemplateError::OutputTooLarge);
        }
        Ok(out)
    }
}

/// Jinja's `tojson` as transformers defines it for templates: Python's `json.dumps(value,
/// ensure_ascii=False, indent=indent)` — ", " and ": " separators ("," and ": " with an indent),
/// keys in their order, no HTML escaping (minijinja's own `tojson` escapes `<`, `>`, `&` and `'`
/// for HTML and writes compact JSON, which would change the prompt a model was trained on).
fn python_tojson(value: Value, kwargs: minijinja::value::Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_python_json(&json, indent, 0, &mut out);
    Ok(Value::from_safe_string(out))
}

fn write_python_json(v: &serde_json::Value, indent: Option<usize>, level: usize, out: &mut String) {
    use serde_json::Value as J;
    let newline = |out: &mut String, level: usize| {
        if let Some(n) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    let separator = if indent.is_some() { "," } else { ", " };
    match v {
        J::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, level + 1);
                write_python_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push(']');
        }
        J::Object(map) if !map.is_empty() => {
            out.push('{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, level + 1);
                out.push_str(&J::String(key.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, indent, level + 1, out);
            }
            newline(out, level);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}
