//! Text generation over any `LanguageModel` (the GPU Llama, the CPU fallback): prefill with
//! reuse of the cached prefix, greedy or sampled decoding with a seed, stop tokens and stop
//! strings, streamed text that never splits a character, and a context policy.
//!
//! Context policy: a prompt longer than the KV cache is an error (`PromptTooLong`), never
//! silently cut; when the cache fills during generation, generation ends with
//! `FinishReason::Length`, as when `max_tokens` is reached.

pub mod chat;
pub mod grammar;
pub mod sampling;
pub mod stop;
pub mod stream;
pub mod tools;
pub mod whisper;

pub use crate::generation_defaults::OptionDefaults;

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::gpu::ops::sample::Sampling;
use crate::models::llama::ModelError;
use crate::rng::SeededRng;
use crate::tokenizer::{Tokenizer, TokenizerError};
use grammar::{Constraint, GrammarError, ResponseFormat};
use stop::{StopCheck, StopStrings};
use stream::TextStream;

/// What the model is asked for after the tokens it is fed.
#[derive(Clone, Copy, Debug)]
pub enum Pick {
    /// The most likely token (chosen where the logits are).
    Greedy,
    /// A draw with these settings at `u` ∈ [0, 1) (chosen where the logits are).
    Sample(Sampling, f32),
    /// The logits themselves.
    Logits,
}

/// What the model answers for a `Pick`.
#[derive(Debug)]
pub enum Next {
    Token(u32),
    Logits(Vec<f32>),
}

/// A causal language model with a KV cache.
#[allow(async_fn_in_trait)] // futures run on one thread (the browser's); no Send bound wanted
pub trait LanguageModel {
    /// KV-cache capacity in tokens.
    fn context(&self) -> u32;
    /// The tokens in the KV cache, in order.
    fn cached(&self) -> &[u32];
    /// Keeps the first `len` cached tokens (later ones are overwritten when fed again).
    fn truncate(&mut self, len: usize);
    /// Feeds `tokens` after the cached ones, then answers `pick` for the position after them.
    async fn forward(&mut self, tokens: &[u32], pick: Pick) -> Result<Next, ModelError>;
}

/// Generation settings (names as in JS: `{ maxTokens, temperature, topK, … }`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateOptions {
    pub max_tokens: u32,
    /// 0 is greedy decoding.
    pub temperature: f32,
    /// 0: off.
    pub top_k: u32,
    /// 1: off.
    pub top_p: f32,
    /// 0: off.
    pub min_p: f32,
    /// HF's repetition penalty over the prompt and the output (1: off).
    pub repetition_penalty: f32,
    pub seed: u64,
    /// Generation ends before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// OpenAI's frequency penalty in [-2, 2]: each output token's logit less this times the
    /// number of times it was generated before.
    pub frequency_penalty: f32,
    /// OpenAI's presence penalty in [-2, 2]: less this once a token was generated at all.
    pub presence_penalty: f32,
    /// Report each output token's log-probability (`Generation::logprobs`).
    pub logprobs: bool,
    /// With `logprobs`, also the most likely alternatives at each position (at most 20).
    pub top_logprobs: u32,
    /// What the output must be (a JSON schema, any JSON object, a regex, a Lark grammar).
    pub response_format: Option<ResponseFormat>,
    /// OpenAI's tool objects (`{ type: 'function', function: { name, description, parameters } }`):
    /// a call the model makes is constrained to its tool's parameter schema.
    pub tools: Vec<serde_json::Value>,
    /// OpenAI's `tool_choice` ("none", "auto" (the default), "required", or a named function).
    pub tool_choice: Option<tools::ToolChoice>,
    /// Several calls in one answer (up to `tools::MAX_PARALLEL_CALLS`), else one.
    pub parallel_tool_calls: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 256, temperature: 0.0, top_k: 0, top_p: 1.0, min_p: 0.0,
            repetition_penalty: 1.0,
            seed: 0,
            stop: Vec::new(),
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            logprobs: false,
            top_logprobs: 0,
            response_format: None,
            tools: Vec::new(),
            tool_choice: None,
            parallel_tool_calls: true,
        }
    }
}

impl GenerateOptions {
    pub(crate) fn check(&self) -> Result<Option<Sampling>, GenerateError> {
        let bad = |what: &str| Err(GenerateError::BadOption(what.into()));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature must be a finite number ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("topP must be in (0, 1]");
        }
        if !(0.0..1.0).contains(&self.min_p) {
            return bad("minP must be in [0, 1)");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetitionPenalty must be a finite number > 0");
        }
        for (name, v) in [("frequencyPenalty", self.frequency_penalty), ("presencePenalty", self.presence_penalty)] {
            if !(-2.0..=2.0).contains(&v) {
                return bad(&format!("{name} must be in [-2, 2]"));
            }
        }
        if self.top_logprobs > 20 || self.top_logprobs > 0 && !self.logprobs {
            return bad("topLogprobs must be at most 20, and needs logprobs");
        }
        if self.stop.len() > 16 || self.stop.iter().any(|s| s.len() > 256) {
            return bad("at most 16 stop strings of at most 256 bytes");
        }
        Ok((self.temperature > 0.0).then_some(Sampling { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p, min_p: self.min_p }))
    }
}

/// Why generation ended (OpenAI's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token or a stop string.
    Stop,
    /// `max_tokens`, or the KV cache is full.
    Length,
}

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("bad generation option: {0}")]
    BadOption(String),
    #[error("the prompt is {tokens} tokens; the context holds {context}")]
    PromptTooLong { tokens: usize, context: u32 },
    #[error("the prompt encodes to no tokens")]
    EmptyPrompt,
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] TokenizerError),
    #[error(transparent)]
    Grammar(#[from] GrammarError),
}

impl GenerateError {
    /// The stable error code JS sees.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadOption(_) | Self::EmptyPrompt => "Usage",
            Self::PromptTooLong { .. } => "ContextFull",
            Self::Model(e) => e.code(),
            Self::Tokenizer(_) => "Tokenizer",
            Self::Grammar(e) => e.code(),
        }
    }
}

/// Counts and times of one generation.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens found in the KV cache from the previous turn (not computed again).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Time spent computing grammar masks (included in the two above).
    pub mask_ms: f64,
}

/// One output token's log-probability (OpenAI's `logprobs.content[]` entry): `logprob` is the
/// log-softmax, at temperature 1, of the logits the engine chose from (after penalties and the
/// grammar's mask).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    /// The most likely tokens at this position, most likely first (`top_logprobs` of them, fewer
    /// where the grammar allows fewer).
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// One generation in progress: call `step` until it returns `None`.
pub struct Generation {
    prompt: Vec<u32>,
    out: Vec<u32>,
    opts: GenerateOptions,
    sampling: Option<Sampling>,
    rng: SeededRng,
    end_ids: Vec<u32>,
    /// The token picked last step, to feed next step.
    pending: Option<u32>,
    stream: TextStream,
    stops: StopStrings,
    finish: Option<FinishReason>,
    constraint: Option<Constraint>,
    /// Token bytes for logprobs (the grammar's vocabulary).
    vocabulary: Option<std::sync::Arc<grammar::Vocabulary>>,
    logprobs: Vec<TokenLogprob>,
    /// Milliseconds of each grammar mask, in order.
    mask_times: Vec<f64>,
    pub usage: Usage,
}

impl Generation {
    /// `end_ids` end generation (the tokenizer's end-of-generation ids).
    pub fn new(prompt: Vec<u32>, opts: GenerateOptions, end_ids: Vec<u32>) -> Result<Self, GenerateError> {
        let sampling = opts.check()?;
        if opts.response_format.as_ref().is_some_and(|f| *f != ResponseFormat::Text) || opts.logprobs || !opts.tools.is_empty() {
            return Err(GenerateError::BadOption("responseFormat, logprobs and tools need the tokenizer (Generation::with_tokenizer)".into()));
        }
        Self::unchecked(prompt, opts, sampling, end_ids)
    }

    /// A generation with every option, `response_format` and `logprobs` included: the end ids
    /// and token bytes come from `tokenizer`.
    pub fn with_tokenizer(prompt: Vec<u32>, opts: GenerateOptions, tokenizer: &Tokenizer) -> Result<Self, GenerateError> {
        let sampling = opts.check()?;
        let mut format = opts.response_format.clone().unwrap_or(ResponseFormat::Text);
        if !opts.tools.is_empty() || opts.tool_choice.is_some() {
            if format != ResponseFormat::Text {
                return Err(GenerateError::BadOption("tools and a responseFormat together".into()));
            }
            if !tokenizer.chat_template.as_deref().is_some_and(tools::template_calls_as_hermes) {
                return Err(GrammarError::Unsupported("tool calls: the model's chat template does not write <tool_call> blocks (the format supported)".into()).into());
            }
            format = tools::grammar(&opts.tools, opts.tool_choice.as_ref(), opts.parallel_tool_calls)?.unwrap_or(ResponseFormat::Text);
        }
        let vocabulary = (format != ResponseFormat::Text || opts.logprobs).then(|| tokenizer.grammar_vocabulary()).transpose()?;
        let constraint = match &vocabulary {
            Some(v) => v.constraint(&format)?,
            None => None,
        };
        let mut g = Self::unchecked(prompt, opts, sampling, tokenizer.end_ids())?;
        g.constraint = constraint;
        g.vocabulary = vocabulary;
        Ok(g)
    }

    fn unchecked(prompt: Vec<u32>, opts: GenerateOptions, sampling: Option<Sampling>, end_ids: Vec<u32>) -> Result<Self, GenerateError> {
        if prompt.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        let usage = Usage { prompt_tokens: prompt.len(), ..Usage::default() };
        Ok(Self {
            rng: SeededRng::new(opts.seed),
            stops: StopStrings::new(&opts.stop),
            prompt,
            out: Vec::new(),
            sampling,
            opts,
            end_ids,
            pending: None,
            stream: TextStream::new(),
            finish: None,
            constraint: None,
            vocabulary: None,
            logprobs: Vec::new(),
            mask_times: Vec::new(),
            usage,
        })
    }

    /// The generated token ids so far (end tokens excluded).
    pub fn tokens(&self) -> &[u32] {
        &self.out
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    /// Each output token's log-probability (with `logprobs`; end tokens excluded).
    pub fn logprobs(&self) -> &[TokenLogprob] {
        &self.logprobs
    }

    /// Milliseconds of each grammar mask computed so far.
    pub fn mask_times(&self) -> &[f64] {
        &self.mask_times
    }

    /// `{ median, worst, count }` of the grammar masks' milliseconds (null without a grammar).
    pub fn mask_summary(&self) -> serde_json::Value {
        if self.mask_times.is_empty() {
            return serde_json::Value::Null;
        }
        let mut t = self.mask_times.clone();
        t.sort_by(f64::total_cmp);
        serde_json::json!({ "median": t[t.len() / 2], "worst": t[t.len() - 1], "count": t.len() })
    }

    /// Runs the model once (the prompt the first time, then one token) and returns the new text
    /// (possibly empty), or `None` once generation has ended.
    pub async fn step(&mut self, model: &mut impl LanguageModel, tokenizer: &Tokenizer) -> Result<Option<String>, GenerateError> {
        if self.finish.is_some() {
            return Ok(None);
        }
        if self.opts.max_tokens == 0 {
            self.finish = Some(FinishReason::Length);
            return Ok(None);
        }
        let context = model.context() as usize;
        let t0 = now_ms();
        let feed = match self.pending {
            None => {
                if self.prompt.len() > context {
                    return Err(GenerateError::PromptTooLong { tokens: self.prompt.len(), context: model.context() });
                }
                // Reuse the cached prefix (a chat's earlier turns); at least one token is fed.
                let same = model.cached().iter().zip(&self.prompt).take_while(|(a, b)| a == b).count().min(self.prompt.len() - 1);
                model.truncate(same);
                self.usage.cached_tokens = same;
                self.prompt[same..].to_vec()
            }
            Some(_) if model.cached().len() >= context => return Ok(Some(self.end(FinishReason::Length, String::new(), tokenizer)?)),
            Some(id) => vec![id],
        };
        let on_cpu = self.opts.repetition_penalty != 1.0
            || self.opts.frequency_penalty != 0.0
            || self.opts.presence_penalty != 0.0
            || self.opts.logprobs
            || self.constraint.is_some();
        let pick = match (self.sampling, on_cpu) {
            (_, true) => Pick::Logits,
            (Some(s), false) => Pick::Sample(s, self.rng.next_unit()),
            (None, false) => Pick::Greedy,
        };
        // The grammar's mask is computed while the model runs (the GPU works on its own after
        // the pass is submitted; a CPU pass is synchronous and simply comes first).
        let constraint = &mut self.constraint;
        let (next, allowed) = futures_util::future::join(model.forward(&feed, pick), async {
            constraint.as_mut().map(|c| {
                let t = now_ms();
                (c.allowed(), now_ms() - t)
            })
        })
        .await;
        let id = match next? {
            Next::Token(id) => id,
            Next::Logits(logits) => self.choose(logits, allowed)?,
        };        let ms = now_ms() - t0;
        if self.pending.is_none() {
            self.usage.prefill_ms += ms;
        } else {
            self.usage.decode_ms += ms;
        }
        if self.end_ids.contains(&id) {
            return Ok(Some(self.end(FinishReason::Stop, String::new(), tokenizer)?));
        }
        let complete = match &mut self.constraint {
            Some(c) => {
                c.accept(id)?;
                c.is_complete()
            }
            None => false,
        };
        self.out.push(id);
        self.usage.completion_tokens = self.out.len();
        self.pending = Some(id);
        let text = self.stream.push(tokenizer, id)?;
        match self.stops.push(&text) {
            StopCheck::Stopped(before) => {
                self.finish = Some(FinishReason::Stop);
                Ok(Some(before))
            }
            // The grammar is complete: only an end token could follow.
            StopCheck::Continue(text) if complete => Ok(Some(self.end(FinishReason::Stop, text, tokenizer)?)),
            StopCheck::Continue(text) if self.out.len() >= self.opts.max_tokens as usize => Ok(Some(self.end(FinishReason::Length, text, tokenizer)?)),
            StopCheck::Continue(text) => Ok(Some(text)),
        }
    }

    /// Chooses from the logits on the CPU: penalties, the grammar's mask (`allowed`, with its
    /// time), then the draw; records the logprobs when asked.
    fn choose(&mut self, mut logits: Vec<f32>, allowed: Option<(Result<toktrie::SimpleVob, GrammarError>, f64)>) -> Result<u32, GenerateError> {
        if self.opts.repetition_penalty != 1.0 {
            // Only then: a grammar or logprobs also bring every step here.
            let seen: Vec<u32> = self.prompt.iter().chain(&self.out).copied().collect();
            sampling::apply_repetition_penalty(&mut logits, &seen, self.opts.repetition_penalty);
        }
        sampling::apply_frequency_penalties(&mut logits, &self.out, self.opts.frequency_penalty, self.opts.presence_penalty);
        if let Some((allowed, ms)) = allowed {
            let allowed = allowed?;
            self.mask_times.push(ms);
            self.usage.mask_ms += ms;
            grammar::mask_logits(&mut logits, &allowed);
            if logits.iter().all(|l| *l == f32::NEG_INFINITY) {
                return Err(GrammarError::Parser("the grammar allows no token of this vocabulary here".into()).into());
            }
        }
        let id = sampling::sample(&logits, self.sampling.as_ref(), self.rng.next_unit());
        if self.opts.logprobs && !self.end_ids.contains(&id) {
            self.logprobs.push(self.logprob_entry(&logits, id));
        }
        Ok(id)
    }

    fn logprob_entry(&self, logits: &[f32], id: u32) -> TokenLogprob {
        let log_z = sampling::log_sum_exp(logits);
        let entry = |id: u32| {
            let bytes = self.vocabulary.as_ref().map(|v| v.token_bytes(id).to_vec()).unwrap_or_default();
            (String::from_utf8_lossy(&bytes).into_owned(), logits.get(id as usize).map_or(f32::NEG_INFINITY, |l| l - log_z), bytes)
        };
        let top_logprobs = sampling::top_k(logits, self.opts.top_logprobs as usize)
            .into_iter()
            .map(|i| {
                let (token, logprob, bytes) = entry(i);
                TopLogprob { token, logprob, bytes }
            })
            .collect();
        let (token, logprob, bytes) = entry(id);
        TokenLogprob { token, logprob, bytes, top_logprobs }
    }

    /// Ends with `reason`: `text` plus what the stream and the stop check held back.
    fn end(&mut self, reason: FinishReason, mut text: String, tokenizer: &Tokenizer) -> Result<String, GenerateError> {
        self.finish = Some(reason);
        let rest = self.stream.flush(tokenizer)?;
        match self.stops.push(&rest) {
            StopCheck::Stopped(before) => text.push_str(&before),
            StopCheck::Continue(shown) => {
                text.push_str(&shown);
                text.push_str(&self.stops.finish());
            }
        }
        Ok(text)
    }

    /// Runs to the end; returns the whole text.
    pub async fn run(&mut self, model: &mut impl LanguageModel, tokenizer: &Tokenizer) -> Result<String, GenerateError> {
        let mut text = String::new();
        while let Some(piece) = self.step(model, tokenizer).await? {
            text.push_str(&piece);
        }
        Ok(text)
    }
}
