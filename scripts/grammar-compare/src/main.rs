//! llguidance and outlines-core on SmolLM2's vocabulary (token bytes from vocab.py): the time to
//! build the vocabulary, to compile each schema, and per token along the same seeded random walk
//! through the schema's language. Both engines get the same regular expression (outlines-core's
//! own translation of the schema), so they constrain the same language; llguidance also compiles
//! the schema itself.
use std::time::Instant;

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use toktrie::{TokRxInfo, TokTrie, TokenizerEnv};

struct Env(TokTrie);
impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.0
    }
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        self.0.greedy_tokenize(s)
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn stats(mut v: Vec<f64>) -> String {
    v.sort_by(f64::total_cmp);
    format!("median {:.3} ms, worst {:.3} ms ({} tokens)", v[v.len() / 2], v[v.len() - 1], v.len())
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: grammar-compare VOCAB.json");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).expect("reads")).expect("JSON");
    let eos = doc["eos"].as_u64().expect("eos") as u32;
    let words: Vec<Vec<u8>> = doc["tokens"].as_array().expect("tokens").iter().map(|t| hex::decode(t.as_str().expect("hex")).expect("hex")).collect();

    let t = Instant::now();
    let trie = TokTrie::from(&TokRxInfo::new(words.len() as u32, eos), &words);
    let env: toktrie::TokEnv = std::sync::Arc::new(Env(trie));
    let mut factory = ParserFactory::new_simple(&env).expect("factory");
    factory.quiet();
    println!("llguidance: vocabulary {:.0} ms", ms(t));
    let t = Instant::now();
    let mut vocab = outlines_core::vocabulary::Vocabulary::new(eos);
    for (id, w) in words.iter().enumerate() {
        if !w.is_empty() && id as u32 != eos {
            vocab.try_insert(w.clone(), id as u32).expect("inserts");
        }
    }
    println!("outlines-core: vocabulary {:.0} ms", ms(t));

    let schemas = [
        r#"{"type":"object","properties":{"name":{"type":"string","maxLength":20},"age":{"type":"integer","minimum":0,"maximum":120}},"required":["name","age"],"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"color":{"enum":["red","green","blue"]},"tags":{"type":"array","items":{"type":"string","pattern":"^[a-z]{2,6}$"},"maxItems":3},"score":{"type":"number"}},"required":["color","tags"],"additionalProperties":false}"#,
        r#"{"type":"object","properties":{"id":{"type":"string","pattern":"^[0-9]{3}-[0-9]{4}$"},"address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},"zip":{"type":"string","pattern":"^[0-9]{5}$"}},"required":["street","city","zip"],"additionalProperties":false},"active":{"type":"boolean"},"items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1}},"required":["sku","qty"],"additionalProperties":false}}},"required":["id","address","active","items"],"additionalProperties":false}"#,
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for (k, schema) in schemas.iter().enumerate() {
        let regex = outlines_core::json_schema::regex_from_str(schema, None, None).expect("outlines-core's regex");
        let t = Instant::now();
        let index = outlines_core::index::Index::new(&regex, &vocab);
        let oc_compile = ms(t);
        let Ok(index) = index else {
            println!("schema {k}: outlines-core could not build its index ({oc_compile:.0} ms)");
            continue;
        };
        let t = Instant::now();
        let schema_value: serde_json::Value = serde_json::from_str(schema).expect("JSON");
        let mut native = Matcher::new(factory.create_parser(TopLevelGrammar::from_json_schema(schema_value)));
        let llg_schema_compile = ms(t);
        let t = Instant::now();
        let mut llg = Matcher::new(factory.create_parser(TopLevelGrammar::from_regex(&regex)));
        let llg_compile = ms(t);
        assert!(!native.is_error() && !llg.is_error(), "{:?}", llg.get_error());
        let (mut llg_times, mut oc_times, mut native_times) = (Vec::new(), Vec::new(), Vec::new());
        let mut state = index.initial_state();
        let mut text = Vec::new();
        let mut differ = 0;
        for _ in 0..200 {
            if llg.is_stopped() {
                break;
            }
            let t = Instant::now();
            let mask = llg.compute_mask().expect("mask");
            llg_times.push(ms(t));
            let t = Instant::now();
            let allowed = index.allowed_tokens(&state).unwrap_or_default();
            oc_times.push(ms(t));
            // The schema's own grammar is timed while the walk stays in its language (its
            // separators' whitespace differs from outlines-core's regex).
            if !native.is_error() && !native.is_stopped() {
                let t = Instant::now();
                let _ = native.compute_mask();
                native_times.push(ms(t));
            }
            // The walk takes tokens both engines allow (their sets differ where llguidance keeps
            // to tokens that can still be followed by the rest of the language).
            let theirs: std::collections::HashSet<u32> = allowed.iter().copied().collect();
            let ours = mask.to_list();
            differ += usize::from(ours.len() != theirs.len());
            let choices: Vec<u32> = ours.into_iter().filter(|&i| i != eos && theirs.contains(&i)).collect();
            if choices.is_empty() {
                break;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let tok = choices[(seed % choices.len() as u64) as usize];
            text.extend_from_slice(&words[tok as usize]);
            llg.consume_token(tok).expect("consumes");
            if !native.is_error() && native.validate_tokens(&[tok]).unwrap_or(0) == 1 {
                let _ = native.consume_token(tok);
            } else if !native.is_error() {
                native.test_trigger_lexer_error().ok();
            }
            state = index.next_state(&state, &tok).expect("outlines-core follows");
        }
        println!("schema {k} ({} bytes walked: {:?}…; allowed sets of different sizes at {differ} steps)", text.len(), String::from_utf8_lossy(&text[..text.len().min(60)]));
        println!("  compile: outlines-core index {oc_compile:.0} ms; llguidance {llg_compile:.1} ms (same regex), {llg_schema_compile:.1} ms (the schema)");
        println!("  per token: outlines-core {}; llguidance {} (same regex), {} (the schema)", stats(oc_times), stats(llg_times), stats(native_times));
    }
}
