//! Tool calls (OpenAI's `tools` and `tool_choice`) for chat templates that render tools in the
//! Hermes/Qwen style: the model answers a call as
//! `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` (Qwen2.5, Qwen3, Hermes, SmolLM3…).
//! The call is constrained by a Lark grammar whose JSON is the tool's own parameter schema, so its
//! arguments validate by construction; `parse_calls` reads the calls back out of the text.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::grammar::{GrammarError, ResponseFormat};

/// A template renders calls in the Hermes/Qwen style when it writes this tag.
const CALL_OPEN: &str = "<tool_call>";
const CALL_CLOSE: &str = "</tool_call>";

/// OpenAI's `tool_choice` (left out: "auto").
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum ToolChoice {
    /// "none", "auto" or "required".
    Mode(String),
    /// `{ type: 'function', function: { name } }`: this tool must be called.
    Named { function: NamedFunction },
}

#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub struct NamedFunction {
    pub name: String,
}

/// A call read from the model's output.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ToolCall {
    pub name: String,
    pub arguments: Value,
}

/// The tools' names and parameter schemas, checked.
fn functions(tools: &[Value]) -> Result<Vec<(String, Value)>, GrammarError> {
    let bad = |m: String| GrammarError::Compile(format!("tools: {m}"));
    tools
        .iter()
        .map(|tool| {
            if tool["type"] != "function" {
                return Err(bad(format!("type {} (only \"function\")", tool["type"])));
            }
            let f = &tool["function"];
            let name = f["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| bad("a function without a name".into()))?;
            let parameters = match &f["parameters"] {
                Value::Null => json!({ "type": "object", "properties": {} }),
                p if p.is_object() => p.clone(),
                other => return Err(bad(format!("{name}: parameters {other} is not a schema"))),
            };
            Ok((name.to_owned(), parameters))
        })
        .collect()
}

/// Calls in one answer at most, with `parallel_tool_calls` (a model that keeps calling ends there).
pub const MAX_PARALLEL_CALLS: usize = 8;

/// The grammar that `tool_choice` asks for, over `tools` (`None`: no constraint, for "none").
/// "auto": plain text (not starting with '<') or calls; "required": calls of any of the tools; a
/// named function: calls of that one. `parallel`: up to `MAX_PARALLEL_CALLS` calls, else one.
pub fn grammar(tools: &[Value], choice: Option<&ToolChoice>, parallel: bool) -> Result<Option<ResponseFormat>, GrammarError> {
    let functions = functions(tools)?;
    let (only, free_text) = match choice {
        Some(ToolChoice::Mode(m)) if m == "none" => return Ok(None),
        None => (None, true),
        Some(ToolChoice::Mode(m)) if m == "auto" => (None, true),
        Some(ToolChoice::Mode(m)) if m == "required" => (None, false),
        Some(ToolChoice::Mode(other)) => return Err(GrammarError::Compile(format!("tool_choice {other:?} (none, auto, required or a function)"))),
        Some(ToolChoice::Named { function }) => {
            if !functions.iter().any(|(n, _)| *n == function.name) {
                return Err(GrammarError::Compile(format!("tool_choice names {:?}, which is not among the tools", function.name)));
            }
            (Some(function.name.as_str()), false)
        }
    };
    if functions.is_empty() {
        return Err(GrammarError::Compile("tool_choice without tools".into()));
    }
    let calls: Vec<Value> = functions
        .iter()
        .filter(|(name, _)| only.is_none_or(|o| o == name))
        .map(|(name, parameters)| {
            json!({ "type": "object", "properties": { "name": { "const": name }, "arguments": parameters },
                    "required": ["name", "arguments"], "additionalProperties": false })
        })
        .collect();
    let schema = json!({ "anyOf": calls, "x-guidance": { "whitespace_flexible": false, "item_separator": ", ", "key_separator": ": " } });
    let call = format!("call: {:?} %json {} {:?}", format!("{CALL_OPEN}\n"), schema, format!("\n{CALL_CLOSE}"));
    let start = if free_text { "start: calls | TEXT\nTEXT: /(?s:[^<].*)/" } else { "start: calls" };
    let more = if parallel { format!(" (\"\\n\" call)~0..{}", MAX_PARALLEL_CALLS - 1) } else { String::new() };
    Ok(Some(ResponseFormat::Grammar { grammar: format!("{start}\ncalls: call{more}\n{call}\n") }))
}

/// Whether a chat template writes tool calls in the style this module reads and constrains.
pub fn template_calls_as_hermes(template_source: &str) -> bool {
    template_source.contains(CALL_OPEN) && template_source.contains(CALL_CLOSE)
}

/// The calls in `text` (`<tool_call>` blocks holding `{"name", "arguments"}`), or `None` when it
/// holds none or one that does not parse (then the text is an ordinary answer).
pub fn parse_calls(text: &str) -> Option<Vec<ToolCall>> {
    let mut calls = Vec::new();
    let mut rest = text.trim_start();
    while let Some(after) = rest.strip_prefix(CALL_OPEN) {
        let end = after.find(CALL_CLOSE)?;
        let body: Value = serde_json::from_str(after[..end].trim()).ok()?;
        let name = body["name"].as_str()?.to_owned();
        let arguments = body.get("arguments").cloned().unwrap_or(json!({}));
        calls.push(ToolCall { name, arguments });
        rest = after[end + CALL_CLOSE.len()..].trim_start();
    }
    (!calls.is_empty() && rest.is_empty()).then_some(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_read_back() {
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>";
        let calls = parse_calls(text).expect("two calls");
        assert_eq!(calls, vec![ToolCall { name: "get_weather".into(), arguments: json!({ "city": "Paris" }) }, ToolCall { name: "f".into(), arguments: json!({}) }]);
        assert_eq!(parse_calls("The weather is fine."), None);
        assert_eq!(parse_calls("<tool_call>\n{\"name\": 3}\n</tool_call>"), None);
        assert_eq!(parse_calls("<tool_call>\n{\"name\": \"f\"}\n</tool_call> and text"), None);
    }

    #[test]
    fn choices_are_checked() {
        let tools = [json!({ "type": "function", "function": { "name": "f", "parameters": { "type": "object" } } })];
        assert_eq!(grammar(&tools, Some(&ToolChoice::Mode("none".into())), true), Ok(None));
        assert!(grammar(&tools, Some(&ToolChoice::Mode("sometimes".into())), true).is_err());
        assert!(grammar(&tools, Some(&ToolChoice::Named { function: NamedFunction { name: "g".into() } }), true).is_err());
        assert!(grammar(&[json!({ "type": "retrieval" })], None, true).is_err());
        assert!(grammar(&[], Some(&ToolChoice::Mode("required".into())), true).is_err());
        let Some(ResponseFormat::Grammar { grammar }) = grammar(&tools, Some(&ToolChoice::Mode("required".into())), true).expect("compiles") else { panic!("a grammar") };
        assert!(grammar.starts_with("start: calls\n") && grammar.contains("%json"), "{grammar}");
    }
}
