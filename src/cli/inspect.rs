//! `hugrt inspect FILE [--json] [--full]`

use std::fs::File;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::CliError;
use crate::formats::{GgufValue, Metadata, TensorTable, read_table_from};

#[derive(clap::Args)]
pub struct Args {
    /// A .safetensors or .gguf file.
    pub file: PathBuf,
    /// Print JSON: {format, dataStart, metadata, tensors: [{name, dtype, shape, start, end}]}.
    #[arg(long)]
    pub json: bool,
    /// Print arrays in metadata whole (default: the first 8 values and the length).
    #[arg(long)]
    pub full: bool,
}

const SHOWN: usize = 8;

fn value_json(v: &GgufValue, full: bool) -> Value {
    match v.as_array() {
        Some(values) if !full && values.len() > SHOWN => json!({
            "len": values.len(),
            "first": values[..SHOWN].iter().map(|v| value_json(v, full)).collect::<Vec<_>>(),
        }),
        Some(values) => Value::Array(values.iter().map(|v| value_json(v, full)).collect()),
        None => serde_json::to_value(v).unwrap_or(Value::Null),
    }
}

fn metadata_json(table: &TensorTable, full: bool) -> Value {
    match &table.metadata {
        Metadata::Safetensors { metadata } => json!(metadata),
        Metadata::Gguf { version, alignment, metadata } => json!({
            "version": version,
            "alignment": alignment,
            "kv": metadata.entries().iter().map(|(k, v)| (k.clone(), value_json(v, full))).collect::<serde_json::Map<_, _>>(),
        }),
    }
}

/// The report to print on stdout.
pub fn run(args: &Args) -> Result<String, CliError> {
    use std::fmt::Write as _;
    let name = args.file.display().to_string();
    let mut file = File::open(&args.file).map_err(|e| CliError { code: "NotFound", message: format!("{name}: {e}") })?;
    let table = read_table_from(&mut file, &name).map_err(|e| CliError { code: "BadModelFile", message: e.to_string() })?;
    let tensors: Vec<Value> = table
        .tensors
        .iter()
        .map(|t| json!({ "name": t.name, "dtype": t.dtype, "shape": t.shape, "start": t.range.start, "end": t.range.end }))
        .collect();
    if args.json {
        let out = json!({
            "file": name,
            "format": table.format(),
            "dataStart": table.data_start,
            "metadata": metadata_json(&table, args.full),
            "tensors": tensors,
        });
        return Ok(format!("{out}\n"));
    }
    let mut out = String::new();
    let _ = writeln!(out, "{name}: {} with {} tensors, data from byte {}", table.format(), table.tensors.len(), table.data_start);
    if let Value::Object(meta) = metadata_json(&table, args.full) {
        let kv = meta.get("kv").and_then(Value::as_object).unwrap_or(&meta);
        for (k, v) in kv {
            let text = v.to_string();
            let text = if !args.full && text.len() > 120 { format!("{}…", text.chars().take(120).collect::<String>()) } else { text };
            let _ = writeln!(out, "  {k} = {text}");
        }
    }
    let width = table.tensors.iter().map(|t| t.name.len()).max().unwrap_or(0).max(4);
    let _ = writeln!(out, "  {:width$}  {:6}  {:24}  byte range", "name", "dtype", "shape");
    for t in &table.tensors {
        let _ = writeln!(out, "  {:width$}  {:6}  {:24}  {}..{}", t.name, t.dtype.to_string(), format!("{:?}", t.shape), t.range.start, t.range.end);
    }
    Ok(out)
}
