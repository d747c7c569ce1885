//! Speech recognition in the browser: a Whisper checkpoint from the weight store on WebGPU or the
//! CPU fallback (`models::speech::Transcriber`), audio decoded and resampled here as natively.
//! The JS pipeline `automatic-speech-recognition` (js/index.js) wraps it.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Deserialize;
use wasm_bindgen::prelude::*;

use super::encoder_model::audio_from_js;
use super::{js_error, model_error, stored_bytes, to_js};
use crate::generate::whisper::{DecodeOptions, Task};
use crate::gpu::ops::sample::Sampling;
use crate::models::speech::{SpeechFiles, TranscribeOptions, Transcriber};
use crate::store::idb::IdbStore;

/// A Whisper checkpoint.
#[wasm_bindgen]
pub struct SpeechModel {
    inner: Rc<RefCell<Option<Transcriber>>>,
    /// Set by `dispose`: a transcription running then drops the model when it ends.
    disposed: Rc<std::cell::Cell<bool>>,
    info: serde_json::Value,
}

/// `transcribe`'s options, as js/index.js passes them.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct Options {
    return_timestamps: bool,
    language: Option<String>,
    task: Option<Task>,
    chunk_length_s: Option<f64>,
    stride_length_s: Option<f64>,
    temperature: Option<f32>,
    seed: Option<u64>,
    max_new_tokens: Option<u32>,
}

#[wasm_bindgen]
impl SpeechModel {
    /// Loads `repo@commit` from the weight store (database `db`) onto `device` ("auto", "webgpu"
    /// or "cpu").
    #[wasm_bindgen(js_name = fromStore)]
    pub async fn from_store(db: Option<String>, repo: String, commit: String, device: Option<String>) -> Result<SpeechModel, JsValue> {
        let db = db.unwrap_or_else(|| "hugrt".into());
        let store = IdbStore::open(&db).await.map_err(|e| js_error(e.code(), &e.to_string()))?;
        let file = async |name: &str| stored_bytes(&store, &repo, &commit, name).await;
        let (config, generation_config, preprocessor_config, tokenizer) = (file("config.json").await?, file("generation_config.json").await?, file("preprocessor_config.json").await?, file("tokenizer.json").await?);
        let (gpu, fallback_reason) = super::choose_device(device.as_deref().unwrap_or("auto")).await?;
        let (table, mut weights) = super::stored_weights(&store, &repo, &commit).await?;
        let files = SpeechFiles { config: &config, generation_config: &generation_config, preprocessor_config: &preprocessor_config, tokenizer: &tokenizer };
        let model = Transcriber::load(gpu.map(Rc::new), files, &table, &mut weights).await.map_err(model_error)?;
        let info = serde_json::json!({
            "architecture": "whisper",
            "multilingual": model.rules.is_multilingual,
            "device": model.device(),
            "adapter": model.adapter(),
            "fallbackReason": fallback_reason,
        });
        Ok(SpeechModel { inner: Rc::new(RefCell::new(Some(model))), disposed: Rc::default(), info })
    }

    /// `{ architecture, multilingual, device, adapter, fallbackReason }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.info)
    }

    /// Transcribes `input` (`{ bytes }` WAV or `{ samples, sampleRate, channels }`). `options`:
    /// `{ returnTimestamps, language, task, chunkLengthS, strideLengthS, temperature, seed,
    /// maxNewTokens }`. `onText(text)` gets the transcript so far as it grows; `signal` aborts
    /// between tokens (rejecting with `Aborted`). Resolves to `{ text, chunks?, language, windows,
    /// timings }`.
    pub async fn transcribe(&self, input: JsValue, options: JsValue, on_text: Option<js_sys::Function>, signal: Option<web_sys::AbortSignal>) -> Result<JsValue, JsValue> {
        let audio = audio_from_js(&input)?;
        let o: Options = if options.is_undefined() || options.is_null() { Options::default() } else { serde_wasm_bindgen::from_value(options).map_err(|e| js_error("Usage", &format!("options: {e}")))? };
        let sampling = match o.temperature {
            Some(t) if t > 0.0 && t.is_finite() => Some(Sampling::at_temperature(t)),
            Some(0.0) | None => None,
            Some(t) => return Err(js_error("Usage", &format!("temperature {t}"))),
        };
        let opts = TranscribeOptions {
            decode: DecodeOptions { language: o.language, task: o.task, timestamps: o.return_timestamps, sampling, seed: o.seed.unwrap_or(0), max_new_tokens: o.max_new_tokens },
            chunk_length_s: o.chunk_length_s,
            stride_length_s: o.stride_length_s,
        };
        let taken = self.inner.borrow_mut().take();
        let mut model = taken.ok_or_else(|| js_error("Busy", "the model is transcribing, or was disposed"))?;
        let failed: RefCell<Option<JsValue>> = RefCell::new(None);
        let mut on_text = |text: &str| {
            if let Some(f) = &on_text
                && failed.borrow().is_none()
                && let Err(e) = f.call1(&JsValue::NULL, &JsValue::from_str(text))
            {
                *failed.borrow_mut() = Some(e); // a throwing callback stops with its error
            }
        };
        let aborted = || signal.as_ref().is_some_and(|s| s.aborted());
        let should_stop = || aborted() || failed.borrow().is_some();
        let result = model.transcribe(&audio, &opts, &mut on_text, &should_stop).await;
        if !self.disposed.get() {
            *self.inner.borrow_mut() = Some(model);
        }
        if let Some(e) = failed.into_inner() {
            return Err(e);
        }
        let out = result.map_err(model_error)?;
        if out.stopped && aborted() {
            return Err(js_error("Aborted", "transcription was aborted"));
        }
        let mut v = serde_json::to_value(&out).map_err(|e| js_error("Internal", &e.to_string()))?;
        if out.chunks.is_none() {
            v.as_object_mut().map(|m| m.remove("chunks"));
        }
        to_js(&v)
    }

    /// Frees the GPU buffers (or the CPU weights).
    pub fn dispose(&self) {
        self.disposed.set(true);
        self.inner.borrow_mut().take();
    }
}
