//! The generation options a checkpoint recommends (`generation_config.json`, GGUF
//! `general.sampling.*`), kept with its tokenizer; outside `generate` so that the tokenizer
//! builds without the GPU feature (the fuzzers' build), where they are read but not applied.

/// The options a checkpoint recommends, for those a caller leaves out (names as in JS): from a
/// hub `generation_config.json` as transformers' `generate` reads it, or from GGUF
/// `general.sampling.*` as llama.cpp reads them. Empty: hugrt's own defaults (greedy).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptionDefaults(serde_json::Map<String, serde_json::Value>);

impl OptionDefaults {
    /// transformers' reading: `do_sample` false (its default) is greedy decoding whatever the
    /// temperature says; true samples at `temperature` (default 1), `top_k` (default 50: 0 is
    /// off), `top_p` (default 1), `min_p`. `repetition_penalty` and `max_new_tokens` apply either
    /// way. Values of the wrong kind or range are an error naming the file.
    pub fn from_generation_config(config: &serde_json::Value) -> Result<Self, String> {
        let mut m = serde_json::Map::new();
        let given = |key: &str| Some(&config[key]).filter(|v| !v.is_null());
        let do_sample = match given("do_sample") {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| format!("generation_config.json: do_sample {v} is not a boolean"))?,
        };
        if do_sample {
            m.insert("temperature".into(), given("temperature").cloned().unwrap_or(1.0.into()));
            m.insert("topK".into(), given("top_k").cloned().unwrap_or(50.into()));
            m.insert("topP".into(), given("top_p").cloned().unwrap_or(1.0.into()));
            if let Some(v) = given("min_p") {
                m.insert("minP".into(), v.clone());
            }
        } else {
            m.insert("temperature".into(), 0.0.into());
        }
        for (file_key, key) in [("repetition_penalty", "repetitionPenalty"), ("max_new_tokens", "maxTokens")] {
            if let Some(v) = given(file_key) {
                m.insert(key.into(), v.clone());
            }
        }
        Self(m).checked("generation_config.json")
    }

    /// llama.cpp's reading of GGUF `general.sampling.{temp,top_k,top_p,min_p,penalty_repeat}`
    /// (each only where present). Out-of-range values are an error.
    pub fn from_gguf(meta: &crate::formats::GgufMetadata) -> Result<Self, String> {
        let mut m = serde_json::Map::new();
        for (file_key, key) in [("temp", "temperature"), ("top_p", "topP"), ("min_p", "minP"), ("penalty_repeat", "repetitionPenalty")] {
            if let Some(v) = meta.get_f64(&format!("general.sampling.{file_key}")) {
                m.insert(key.into(), serde_json::Number::from_f64(v).map(Into::into).ok_or_else(|| format!("general.sampling.{file_key} {v} is not finite"))?);
            }
        }
        if let Some(v) = meta.get_u64("general.sampling.top_k") {
            m.insert("topK".into(), v.into());
        }
        Self(m).checked("GGUF general.sampling")
    }

    /// These defaults if they make valid options on their own (`source` names them in the error).
    fn checked(self, source: &str) -> Result<Self, String> {
        #[cfg(feature = "gpu")]
        self.options(serde_json::Value::Object(Default::default())).map_err(|e| format!("{source}: {e}"))?;
        #[cfg(not(feature = "gpu"))]
        let _ = source;
        Ok(self)
    }

    /// `given` (a JS-style options object) with each option it leaves out taken from these
    /// defaults, checked as `Generation::new` checks them.
    #[cfg(feature = "gpu")]
    pub fn options(&self, given: serde_json::Value) -> Result<crate::generate::GenerateOptions, crate::generate::GenerateError> {
        use crate::generate::{GenerateError, GenerateOptions};
        let mut given = match given {
            serde_json::Value::Object(m) => m,
            serde_json::Value::Null => serde_json::Map::new(),
            other => return Err(GenerateError::BadOption(format!("options must be an object, not {other}"))),
        };
        for (key, value) in &self.0 {
            given.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let options: GenerateOptions = serde_json::from_value(serde_json::Value::Object(given)).map_err(|e| GenerateError::BadOption(e.to_string()))?;
        options.check()?;
        Ok(options)
    }

    /// The defaults as a JS-style options object (the model's `info.generationDefaults`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.clone())
    }
}

