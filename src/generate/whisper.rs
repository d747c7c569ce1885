//! Whisper's decoding of one 30 s window, as transformers' `WhisperForConditionalGeneration.generate`
//! does it for one call (`force_unique_generate_call`; transformers 5.25,
//! `generation_whisper.py` and `logits_process.py`):
//!
//! - the prompt: `decoder_start_token_id`, then for a multilingual model the language (given, or
//!   detected from the first step: the argmax of the logits over the language tokens) and the task
//!   (given; `transcribe` when a language was given without one; none when the language was
//!   detected and no task given), then `<|notimestamps|>` unless timestamps are asked;
//! - per step, in transformers' order: `begin_suppress_tokens` at the first generated position,
//!   `suppress_tokens`, and with timestamps `WhisperTimeStampLogitsProcessor`'s rules (no
//!   `<|notimestamps|>`; timestamps in pairs except before the end; never decreasing; the first
//!   token a timestamp of at most `max_initial_timestamp_index`; a timestamp forced when the
//!   timestamps' total probability beats every text token's);
//! - greedy or sampled choice, until `eos_token_id` or `max_length` (counted as transformers
//!   does: max_length plus the prompt, at most `max_target_positions`).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::gpu::ops::sample::Sampling;
use crate::models::ModelError;

/// Whisper's languages by code, as transformers' `LANGUAGES` lists them.
const LANGUAGES: &[(&str, &str)] = &[("en", "english"), ("zh", "chinese"), ("de", "german"), ("es", "spanish"), ("ru", "russian"), ("ko", "korean"), ("fr", "french"), ("ja", "japanese"), ("pt", "portuguese"), ("tr", "turkish"), ("pl", "polish"), ("ca", "catalan"), ("nl", "dutch"), ("ar", "arabic"), ("sv", "swedish"), ("it", "italian"), ("id", "indonesian"), ("hi", "hindi"), ("fi", "finnish"), ("vi", "vietnamese"), ("he", "hebrew"), ("uk", "ukrainian"), ("el", "greek"), ("ms", "malay"), ("cs", "czech"), ("ro", "romanian"), ("da", "danish"), ("hu", "hungarian"), ("ta", "tamil"), ("no", "norwegian"), ("th", "thai"), ("ur", "urdu"), ("hr", "croatian"), ("bg", "bulgarian"), ("lt", "lithuanian"), ("la", "latin"), ("mi", "maori"), ("ml", "malayalam"), ("cy", "welsh"), ("sk", "slovak"), ("te", "telugu"), ("fa", "persian"), ("lv", "latvian"), ("bn", "bengali"), ("sr", "serbian"), ("az", "azerbaijani"), ("sl", "slovenian"), ("kn", "kannada"), ("et", "estonian"), ("mk", "macedonian"), ("br", "breton"), ("eu", "basque"), ("is", "icelandic"), ("hy", "armenian"), ("ne", "nepali"), ("mn", "mongolian"), ("bs", "bosnian"), ("kk", "kazakh"), ("sq", "albanian"), ("sw", "swahili"), ("gl", "galician"), ("mr", "marathi"), ("pa", "punjabi"), ("si", "sinhala"), ("km", "khmer"), ("sn", "shona"), ("yo", "yoruba"), ("so", "somali"), ("af", "afrikaans"), ("oc", "occitan"), ("ka", "georgian"), ("be", "belarusian"), ("tg", "tajik"), ("sd", "sindhi"), ("gu", "gujarati"), ("am", "amharic"), ("yi", "yiddish"), ("lo", "lao"), ("uz", "uzbek"), ("fo", "faroese"), ("ht", "haitian creole"), ("ps", "pashto"), ("tk", "turkmen"), ("nn", "nynorsk"), ("mt", "maltese"), ("sa", "sanskrit"), ("lb", "luxembourgish"), ("my", "myanmar"), ("bo", "tibetan"), ("tl", "tagalog"), ("mg", "malagasy"), ("as", "assamese"), ("tt", "tatar"), ("haw", "hawaiian"), ("ln", "lingala"), ("ha", "hausa"), ("ba", "bashkir"), ("jw", "javanese"), ("su", "sundanese"), ("yue", "cantonese")];

/// Other names transformers accepts (`TO_LANGUAGE_CODE`).
const ALIASES: &[(&str, &str)] = &[("burmese", "my"), ("valencian", "ca"), ("flemish", "nl"), ("haitian", "ht"), ("letzeburgesch", "lb"), ("pushto", "ps"), ("panjabi", "pa"), ("moldavian", "ro"), ("moldovan", "ro"), ("sinhalese", "si"), ("castilian", "es"), ("mandarin", "zh")];

/// The language code of a name, code or token (`"German"`, `"de"`, `"<|de|>"`).
pub fn language_code(language: &str) -> Option<&'static str> {
    let l = language.trim().to_lowercase();
    let l = l.strip_prefix("<|").and_then(|s| s.strip_suffix("|>")).unwrap_or(&l);
    LANGUAGES.iter().find(|(code, name)| *code == l || *name == l).map(|(code, _)| *code).or_else(|| ALIASES.iter().find(|(name, _)| *name == l).map(|(_, code)| *code))
}

/// The language's English name, for reports.
pub fn language_name(code: &str) -> Option<&'static str> {
    LANGUAGES.iter().find(|(c, _)| *c == code).map(|(_, name)| *name)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Transcribe,
    Translate,
}

/// `generation_config.json` of a Whisper checkpoint (the fields decoding reads).
#[derive(Clone, Debug, Deserialize)]
pub struct WhisperGeneration {
    pub decoder_start_token_id: u32,
    pub eos_token_id: u32,
    pub no_timestamps_token_id: u32,
    #[serde(default)]
    pub suppress_tokens: Vec<u32>,
    #[serde(default)]
    pub begin_suppress_tokens: Vec<u32>,
    #[serde(default)]
    pub is_multilingual: bool,
    /// "<|en|>" → id.
    #[serde(default)]
    pub lang_to_id: BTreeMap<String, u32>,
    /// "transcribe"/"translate" → id.
    #[serde(default)]
    pub task_to_id: BTreeMap<String, u32>,
    #[serde(default)]
    pub max_initial_timestamp_index: Option<u32>,
    #[serde(default = "default_max_length")]
    pub max_length: u32,
}

fn default_max_length() -> u32 {
    448
}

/// How to decode a window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodeOptions {
    /// A language name, code or token; `None` detects it (multilingual models).
    pub language: Option<String>,
    pub task: Option<Task>,
    pub timestamps: bool,
    /// `None`: greedy.
    pub sampling: Option<Sampling>,
    pub seed: u64,
    /// Generated tokens at most (below the model's own limit).
    pub max_new_tokens: Option<u32>,
}

impl WhisperGeneration {
    /// From `generation_config.json`; checks every id against the vocabulary.
    pub fn from_json(bytes: &[u8], vocab: u32) -> Result<Self, ModelError> {
        let g: WhisperGeneration = serde_json::from_slice(bytes).map_err(|e| ModelError::Config(format!("generation_config.json: {e}")))?;
        let ids = [g.decoder_start_token_id, g.eos_token_id, g.no_timestamps_token_id].into_iter().chain(g.suppress_tokens.iter().copied()).chain(g.begin_suppress_tokens.iter().copied()).chain(g.lang_to_id.values().copied()).chain(g.task_to_id.values().copied());
        if let Some(bad) = ids.into_iter().find(|&id| id >= vocab) {
            return Err(ModelError::Config(format!("generation_config.json: token id {bad} is outside the vocabulary of {vocab}")));
        }
        if g.no_timestamps_token_id + 1 >= vocab {
            return Err(ModelError::Config("generation_config.json: no timestamp tokens after <|notimestamps|>".into()));
        }
        if g.is_multilingual && g.lang_to_id.is_empty() {
            return Err(ModelError::Config("generation_config.json: a multilingual model without lang_to_id".into()));
        }
        Ok(g)
    }

    /// The first timestamp token (<|0.00|>).
    pub fn timestamp_begin(&self) -> u32 {
        self.no_timestamps_token_id + 1
    }

    /// The language token of `language` (name, code or token): a typed error when the model has
    /// none (English-only models, unknown languages).
    pub fn language_id(&self, language: &str) -> Result<u32, ModelError> {
        if !self.is_multilingual {
            return Err(ModelError::Input(format!("language {language:?}: this model is English-only (it takes no language)")));
        }
        let code = language_code(language).ok_or_else(|| ModelError::Input(format!("unknown language {language:?}")))?;
        self.lang_to_id.get(&format!("<|{code}|>")).copied().ok_or_else(|| ModelError::Input(format!("language {language:?} is not one of this model's {}", self.lang_to_id.len())))
    }

    /// The language code of a language token.
    pub fn language_of(&self, id: u32) -> Option<String> {
        self.lang_to_id.iter().find(|(_, v)| **v == id).map(|(k, _)| k.trim_start_matches("<|").trim_end_matches("|>").to_string())
    }

    /// Checks what `opts` asks of this model: a language and task only for multilingual models.
    pub fn check(&self, opts: &DecodeOptions) -> Result<(), ModelError> {
        if let Some(l) = &opts.language {
            self.language_id(l)?;
        }
        if let Some(t) = opts.task {
            if !self.is_multilingual {
                return Err(ModelError::Input(format!("task {t:?}: this model is English-only (it only transcribes)")));
            }
            self.task_id(t)?;
        }
        Ok(())
    }

    fn task_id(&self, task: Task) -> Result<u32, ModelError> {
        let name = match task {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        };
        self.task_to_id.get(name).copied().ok_or_else(|| ModelError::Config(format!("generation_config.json: no task_to_id for {name}")))
    }

    /// Whether the language must be detected before the prompt is known.
    pub fn detects_language(&self, opts: &DecodeOptions) -> bool {
        self.is_multilingual && opts.language.is_none()
    }

    /// The prompt after `decoder_start_token_id` once the language is known (`language`: its
    /// token, given or detected; `None` for English-only models).
    pub fn prompt(&self, language: Option<u32>, opts: &DecodeOptions) -> Result<Vec<u32>, ModelError> {
        let mut p = vec![self.decoder_start_token_id];
        if self.is_multilingual {
            p.extend(language);
            match opts.task {
                Some(t) => p.push(self.task_id(t)?),
                None if opts.language.is_some() => p.push(self.task_id(Task::Transcribe)?),
                None => {}
            }
        }
        if !opts.timestamps {
            p.push(self.no_timestamps_token_id);
        }
        Ok(p)
    }

    /// The language token detection picks from the first step's logits.
    pub fn detect(&self, logits: &[f32]) -> Option<u32> {
        self.lang_to_id.values().copied().filter(|&id| (id as usize) < logits.len()).fold(None, |best: Option<u32>, id| match best {
            Some(b) if logits[b as usize] >= logits[id as usize] => Some(b),
            _ => Some(id),
        })
    }

    /// Total decoder length (prompt included) where decoding stops.
    pub fn max_total(&self, prompt: usize, max_target_positions: u32, opts: &DecodeOptions) -> u32 {
        let initial = (prompt as u32).min((max_target_positions / 2).saturating_sub(1));
        let total = self.max_length.saturating_add(initial).min(max_target_positions);
        match opts.max_new_tokens {
            Some(n) => total.min((prompt as u32).saturating_add(n)),
            None => total,
        }
    }

    /// Applies the rules to one step's `logits`, given the tokens generated after the prompt.
    pub fn process(&self, logits: &mut [f32], generated: &[u32], timestamps: bool) {
        let off = |l: &mut [f32], id: u32| {
            if let Some(v) = l.get_mut(id as usize) {
                *v = f32::NEG_INFINITY;
            }
        };
        if generated.is_empty() {
            self.begin_suppress_tokens.iter().for_each(|&id| off(logits, id));
        }
        self.suppress_tokens.iter().for_each(|&id| off(logits, id));
        if timestamps {
            self.timestamp_rules(logits, generated);
        }
    }

    fn timestamp_rules(&self, logits: &mut [f32], seq: &[u32]) {
        let begin = self.timestamp_begin() as usize;
        let vocab = logits.len();
        if begin >= vocab {
            return;
        }
        logits[self.no_timestamps_token_id as usize] = f32::NEG_INFINITY;
        let is_ts = |t: u32| t as usize >= begin;
        let last_was_timestamp = seq.last().is_some_and(|&t| is_ts(t));
        let penultimate_was_timestamp = seq.len() < 2 || is_ts(seq[seq.len() - 2]);
        if last_was_timestamp {
            if penultimate_was_timestamp {
                logits[begin..].fill(f32::NEG_INFINITY); // has to be text
            } else {
                let eos = (self.eos_token_id as usize).min(vocab);
                logits[..eos].fill(f32::NEG_INFINITY); // cannot be text
            }
        }
        let mut last = begin;
        if let Some(&t) = seq.iter().rev().find(|&&t| is_ts(t)) {
            last = if last_was_timestamp && !penultimate_was_timestamp { t as usize } else { t as usize + 1 };
        }
        logits[begin..last.min(vocab)].fill(f32::NEG_INFINITY);
        if seq.is_empty() {
            logits[..begin].fill(f32::NEG_INFINITY);
            if let Some(i) = self.max_initial_timestamp_index {
                let allowed = begin + i as usize + 1;
                if allowed < vocab {
                    logits[allowed..].fill(f32::NEG_INFINITY);
                }
            }
        }
        // The timestamps' total probability against the best text token's (log-softmax in f64).
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if max == f32::NEG_INFINITY {
            return;
        }
        let sum = |range: &[f32]| range.iter().map(|&l| f64::from(l - max).exp()).sum::<f64>();
        let ts_mass = sum(&logits[begin..]);
        let text_max = logits[..begin].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if ts_mass > 0.0 && ts_mass.ln() > f64::from(text_max - max) {
            logits[..begin].fill(f32::NEG_INFINITY);
        }
    }
}

/// One timed piece of a transcript.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Segment {
    /// Seconds from the start of the audio.
    pub start: f64,
    /// `None` when the window ended inside the segment.
    pub end: Option<f64>,
    pub tokens: Vec<u32>,
}

/// The timed segments of a window's generated tokens (timestamps at 0.02 s, `offset` seconds
/// added), as transformers' `_decode_asr` groups them: text between a timestamp and the next.
pub fn segments(tokens: &[u32], timestamp_begin: u32, eos: u32, offset: f64) -> Vec<Segment> {
    let time = |t: u32| offset + f64::from(t - timestamp_begin) * 0.02;
    let mut out: Vec<Segment> = Vec::new();
    let mut open: Option<Segment> = None;
    for &t in tokens {
        if t == eos {
            break;
        }
        if t >= timestamp_begin {
            match open.take() {
                Some(mut s) if !s.tokens.is_empty() => {
                    s.end = Some(time(t));
                    out.push(s);
                }
                _ => open = Some(Segment { start: time(t), end: None, tokens: Vec::new() }),
            }
        } else if t < eos {
            open.get_or_insert_with(|| Segment { start: offset, end: None, tokens: Vec::new() }).tokens.push(t);
        }
    }
    out.extend(open.filter(|s| !s.tokens.is_empty()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_by_name_code_and_token() {
        assert_eq!(language_code("German"), Some("de"));
        assert_eq!(language_code("<|de|>"), Some("de"));
        assert_eq!(language_code("castilian"), Some("es"));
        assert_eq!(language_code("yue"), Some("yue"));
        assert_eq!(language_code("klingon"), None);
        assert_eq!(LANGUAGES.len(), 100);
    }

    #[test]
    fn segments_split_at_timestamp_pairs() {
        // <|0.00|> a b <|1.00|><|1.00|> c <|2.00|> <eos>, timestamps from 100, eos 50.
        let s = segments(&[100, 1, 2, 150, 150, 3, 200, 50], 100, 50, 30.0);
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].start, s[0].end, s[0].tokens.clone()), (30.0, Some(31.0), vec![1, 2]));
        assert_eq!((s[1].start, s[1].end, s[1].tokens.clone()), (31.0, Some(32.0), vec![3]));
        // An unfinished segment keeps no end.
        let s = segments(&[100, 1, 2], 100, 50, 0.0);
        assert_eq!(s[0].end, None);
    }
}
