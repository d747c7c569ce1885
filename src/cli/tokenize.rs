//! `hugrt tokenize --tokenizer FILE [--text T]... [--no-special] [--json]`
//! FILE is a `tokenizer.json` or a GGUF file with an embedded vocabulary.

use std::path::PathBuf;

use serde_json::json;

use super::CliError;
use crate::formats::{Metadata, read_table_from};
use crate::tokenizer::Tokenizer;

#[derive(clap::Args)]
pub struct Args {
    /// tokenizer.json, or a .gguf file.
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// Text to encode (repeatable); read from stdin when absent.
    #[arg(long)]
    pub text: Vec<String>,
    /// Do not add BOS/EOS or [CLS]/[SEP].
    #[arg(long)]
    pub no_special: bool,
    /// Print JSON: [{text, ids, tokens, decoded}].
    #[arg(long)]
    pub json: bool,
}

pub fn load(path: &PathBuf) -> Result<Tokenizer, CliError> {
    let name = path.display().to_string();
    let bad = |e: String| CliError { code: "BadModelFile", message: format!("{name}: {e}") };
    let mut file = std::fs::File::open(path).map_err(|e| CliError { code: "NotFound", message: format!("{name}: {e}") })?;
    if name.ends_with(".json") {
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        return Tokenizer::from_json(&bytes).map_err(|e| bad(e.to_string()));
    }
    let table = read_table_from(&mut file, &name).map_err(|e| bad(e.error.to_string()))?;
    match &table.metadata {
        Metadata::Gguf { metadata, .. } => Tokenizer::from_gguf(metadata).map_err(|e| bad(e.to_string())),
        Metadata::Safetensors { .. } => Err(bad("a safetensors file has no vocabulary; pass its tokenizer.json".into())),
    }
}

pub fn run(args: &Args) -> Result<String, CliError> {
    let tok = load(&args.tokenizer)?;
    let texts = if args.text.is_empty() {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| CliError { code: "Io", message: e.to_string() })?;
        vec![s]
    } else {
        args.text.clone()
    };
    let enc_err = |e: crate::tokenizer::TokenizerError| CliError { code: "Tokenizer", message: e.to_string() };
    let mut rows = Vec::new();
    for text in &texts {
        let ids = tok.encode(text, !args.no_special).map_err(enc_err)?;
        let tokens: Vec<String> = ids.iter().map(|&i| tok.id_to_token(i).unwrap_or_default()).collect();
        let decoded = tok.decode(&ids, false).map_err(enc_err)?;
        rows.push(json!({ "text": text, "ids": ids, "tokens": tokens, "decoded": decoded }));
    }
    if args.json {
        return Ok(format!("{}\n", serde_json::Value::Array(rows)));
    }
    Ok(rows.iter().map(|r| format!("{} -> {} -> {}\n", r["text"], r["ids"], r["tokens"])).collect())
}
