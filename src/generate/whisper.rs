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

    /// The language token detection picks from the first step's logits: their argmax with every
    /// other token masked, as transformers' `detect_language` (ties to the lowest id).
    pub fn detect(&self, logits: &[f32]) -> Option<u32> {
        let mut masked = vec![f32::NEG_INFINITY; logits.len()];
        for &id in self.lang_to_id.values() {
            let score = *logits.get(id as usize)?;
            masked[id as usize] = score;
        }
        (!self.lang_to_id.is_empty()).then(|| super::sampling::argmax(&masked))
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

/// One window's output for `merge_windows`: its generated tokens (after the prompt) and, for a
/// window cut from longer audio, (window, left stride, right stride) in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowOutput {
    pub tokens: Vec<u32>,
    pub stride: Option<(f64, f64, f64)>,
}

/// A piece of the merged transcript: its text tokens and, with timestamps, its time span.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TextChunk {
    pub tokens: Vec<u32>,
    pub timestamp: (Option<f64>, Option<f64>),
}

/// Rounds to 0.01 s as transformers' `round(time, 2)` does.
fn round2(t: f64) -> f64 {
    (t * 100.0).round() / 100.0
}

/// The windows of a long recording merged into text chunks, as transformers' ASR pipeline does it
/// (`tokenization_whisper._decode_asr` without word timestamps or languages): the windows' text
/// tokens joined where they overlap (`longest_common_sequence`), and with timestamps the segments
/// placed in time (each window's offset, strides dropped). `special` tells the tokens that are
/// neither text nor timestamps (the end token, language and task tokens).
pub fn merge_windows(windows: &[WindowOutput], timestamp_begin: u32, special: impl Fn(u32) -> bool, timestamps: bool) -> Vec<TextChunk> {
    const TIME_PRECISION: f64 = 0.02;
    const SEGMENT_SIZE: f64 = 1500.0;
    let new_chunk = || TextChunk { tokens: Vec::new(), timestamp: (None, None) };
    let mut chunks = Vec::new();
    let mut chunk = new_chunk();
    let mut time_offset = 0.0;
    let mut previous: Vec<Vec<u32>> = Vec::new();
    let mut skip = false;
    for w in windows {
        let ids = &w.tokens;
        let mut last_timestamp: Option<u32> = None;
        let mut first_timestamp = f64::from(timestamp_begin);
        let (mut cur_max, mut prev_segments_len, mut penultimate) = (0.0f64, 0.0f64, 0.0f64);
        if let Some((len, left, right)) = w.stride {
            time_offset -= left;
            let right_stride_start = len - right;
            if left > 0.0 {
                first_timestamp = left / TIME_PRECISION + f64::from(timestamp_begin);
            }
            if right > 0.0 {
                for &t in ids.iter().rev() {
                    if t >= timestamp_begin {
                        if last_timestamp.is_some() && f64::from(t - timestamp_begin) * TIME_PRECISION < right_stride_start {
                            break;
                        }
                        last_timestamp = Some(t);
                    }
                }
            }
        }
        let mut current: Vec<u32> = Vec::new();
        for (i, &t) in ids.iter().enumerate() {
            if special(t) {
                continue;
            }
            if t >= timestamp_begin {
                let ts = f64::from(t - timestamp_begin) * TIME_PRECISION;
                if ts < cur_max {
                    let last_was_single_ending = i >= 2 && !(ids[i - 1] >= timestamp_begin && ids[i - 2] >= timestamp_begin);
                    if last_was_single_ending {
                        prev_segments_len += TIME_PRECISION * SEGMENT_SIZE;
                    } else {
                        cur_max = penultimate;
                        prev_segments_len += penultimate;
                    }
                }
                penultimate = cur_max;
                cur_max = ts;
                let time = round2(ts + time_offset + prev_segments_len);
                if last_timestamp.is_some_and(|last| t >= last) {
                    skip = true;
                } else if skip || (!previous.is_empty() && f64::from(t) < first_timestamp) {
                    skip = false;
                } else if chunk.timestamp.0.is_none() {
                    chunk.timestamp.0 = Some(time);
                } else if Some(time) != chunk.timestamp.0 {
                    chunk.timestamp.1 = Some(time);
                    previous.push(std::mem::take(&mut current));
                    chunk.tokens = longest_common_sequence(&previous);
                    chunks.push(std::mem::replace(&mut chunk, new_chunk()));
                    previous.clear();
                }
            } else {
                current.push(t);
            }
        }
        if let Some((len, _, right)) = w.stride {
            time_offset += len - right;
        }
        if !current.is_empty() {
            previous.push(current);
        } else if !previous.iter().any(|p| !p.is_empty()) {
            chunk = new_chunk();
            previous.clear();
        }
    }
    if !previous.is_empty() {
        chunk.tokens = longest_common_sequence(&previous);
        chunks.push(chunk);
    }
    if !timestamps {
        chunks.iter_mut().for_each(|c| c.timestamp = (None, None));
    }
    chunks
}

/// Token sequences of overlapping windows joined into one (transformers'
/// `_find_longest_common_sequence`): each next sequence slid along the joined one's end to the
/// offset with the largest share of equal tokens (ties to longer overlaps), the overlap split in
/// the middle — the left window's tokens for its first half, the right's for the second.
pub fn longest_common_sequence(sequences: &[Vec<u32>]) -> Vec<u32> {
    let Some((first, rest)) = sequences.split_first() else { return Vec::new() };
    let mut left: Vec<u32> = first.clone();
    let mut total = Vec::new();
    for right in rest {
        let (ll, rl) = (left.len(), right.len());
        let mut best = 0.0f64;
        let mut best_at = (ll, ll, 0, 0);
        for i in 1..ll + rl {
            let eps = i as f64 / 10000.0;
            let (l0, l1) = (ll.saturating_sub(i), ll.min(ll + rl - i));
            let (r0, r1) = (i.saturating_sub(ll), rl.min(i));
            let matches = left[l0..l1].iter().zip(&right[r0..r1]).filter(|(a, b)| a == b).count();
            let matching = matches as f64 / i as f64 + eps;
            if matches > 1 && matching > best {
                best = matching;
                best_at = (l0, l1, r0, r1);
            }
        }
        let (l0, l1, r0, r1) = best_at;
        total.extend_from_slice(&left[..(l0 + l1) / 2]);
        left = right[(r0 + r1) / 2..].to_vec();
    }
    total.extend(left);
    total
}

/// transformers' `chunk_iter`: windows of `chunk` samples every `chunk − left − right`, each
/// with (samples, left stride, right stride) — no left stride on the first, no right stride on
/// the last; a window no longer than its left stride is dropped.
pub fn chunk_windows(len: usize, chunk: usize, left: usize, right: usize) -> Vec<(usize, usize, usize, usize)> {
    let step = chunk.saturating_sub(left + right).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < len.max(1) {
        let end = (start + chunk).min(len);
        let is_last = start + chunk >= len;
        let l = if start == 0 { 0 } else { left };
        let r = if is_last { 0 } else { right };
        if end - start > l {
            out.push((start, end - start, l, r));
        }
        if is_last {
            break;
        }
        start += step;
    }
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
    fn overlapping_windows_join_once() {
        // transformers' docstring example: [a b c d] + [c d f] → [a b c d f].
        assert_eq!(longest_common_sequence(&[vec![1, 2, 3, 4], vec![3, 4, 6]]), vec![1, 2, 3, 4, 6]);
        // No overlap of two or more tokens: concatenated.
        assert_eq!(longest_common_sequence(&[vec![1, 2], vec![5, 6]]), vec![1, 2, 5, 6]);
        assert_eq!(longest_common_sequence(&[vec![7]]), vec![7]);
    }

    #[test]
    fn windows_as_chunk_iter_cuts_them() {
        // 70 s at 16 kHz, 30 s windows with 5 s strides: starts 0, 20, 40 s; the last reaches the end.
        let w = chunk_windows(70 * 16000, 480000, 80000, 80000);
        assert_eq!(w, vec![(0, 480000, 0, 80000), (320000, 480000, 80000, 80000), (640000, 480000, 80000, 0)]);
        assert_eq!(chunk_windows(1000, 480000, 80000, 80000), vec![(0, 1000, 0, 0)]);
    }
}
