//! The encoder tasks beyond embeddings in the browser: image classification (ViT), zero-shot
//! image classification (CLIP), audio classification (AST), fill-mask and text classification
//! (BERT), each from a checkpoint in the weight store, on WebGPU or on the CPU fallback. Inputs
//! are decoded and pre-processed here, in Rust, as natively (`preprocess`), so that a page and the
//! CLI give the same numbers; the JS pipelines (js/index.js) wrap it.

use std::cell::RefCell;
use std::rc::Rc;

use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::{js_error, model_error, stored_bytes, to_js};
use crate::models::vit::{softmax, top_k as best};
use crate::preprocess::PreprocessError;
use crate::preprocess::image::{Image, ImageProcessor};
use crate::store::idb::IdbStore;
use crate::tokenizer::Tokenizer;

use crate::models::tasks::{self, Engine};

/// A label and its probability.
#[derive(Serialize)]
struct LabelScore {
    label: String,
    score: f32,
}

/// One candidate for a mask, as transformers' fill-mask pipeline writes it.
#[derive(Serialize)]
struct FillMask {
    score: f32,
    token: u32,
    token_str: String,
    sequence: String,
}

struct Inner {
    engine: Engine,
    tokenizer: Option<Tokenizer>,
    images: Option<ImageProcessor>,
    audio: Option<crate::preprocess::audio::AstFeatureExtractor>,
}

/// An encoder checkpoint for one of the tasks above.
#[wasm_bindgen]
pub struct EncoderModel {
    inner: Rc<RefCell<Option<Inner>>>,
    info: serde_json::Value,
}

fn input_error(e: PreprocessError) -> JsValue {
    match e {
        PreprocessError::Config(_) => js_error("BadModelFile", &e.to_string()),
        _ => js_error("BadInput", &e.to_string()),
    }
}

fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    js_sys::Reflect::get(obj, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

/// `{ bytes }` (PNG or JPEG) or `{ rgba, width, height }`, as js/index.js makes them.
fn image_from_js(input: &JsValue) -> Result<Image, JsValue> {
    if let Some(bytes) = get(input, "bytes") {
        return Image::decode(&js_sys::Uint8Array::new(&bytes).to_vec()).map_err(input_error);
    }
    let (Some(rgba), Some(w), Some(h)) = (get(input, "rgba"), get(input, "width").and_then(|v| v.as_f64()), get(input, "height").and_then(|v| v.as_f64())) else {
        return Err(js_error("BadInput", "an image is { bytes } or { rgba, width, height }"));
    };
    Image::from_rgba(w as u32, h as u32, js_sys::Uint8Array::new(&rgba).to_vec()).map_err(input_error)
}

/// `{ bytes }` (WAV) or `{ samples, sampleRate, channels }` (channel after channel).
pub(crate) fn audio_from_js(input: &JsValue) -> Result<crate::preprocess::audio::Audio, JsValue> {
    use crate::preprocess::audio::{Audio, decode_wav};
    if let Some(bytes) = get(input, "bytes") {
        return decode_wav(&js_sys::Uint8Array::new(&bytes).to_vec()).map_err(input_error);
    }
    let (Some(samples), Some(rate)) = (get(input, "samples"), get(input, "sampleRate").and_then(|v| v.as_f64())) else {
        return Err(js_error("BadInput", "audio is { bytes } or { samples, sampleRate, channels }"));
    };
    let samples = js_sys::Float32Array::new(&samples).to_vec();
    let channels = get(input, "channels").and_then(|v| v.as_f64()).unwrap_or(1.0).max(1.0) as usize;
    if !samples.len().is_multiple_of(channels) {
        return Err(js_error("BadInput", &format!("{} samples are not whole channels of {channels}", samples.len())));
    }
    let per = samples.len() / channels;
    let parts: Vec<&[f32]> = samples.chunks(per.max(1)).collect();
    Audio::from_channels(&parts, rate as u32).map_err(input_error)
}

/// The `k` most probable labels of `logits` (softmax; sigmoids with `sigmoid`).
fn ranked(labels: &[String], logits: &[f32], k: u32, sigmoid: bool) -> Vec<LabelScore> {
    tasks::ranked(labels, logits, k as usize, sigmoid).into_iter().map(|(label, score)| LabelScore { label, score }).collect()
}

impl EncoderModel {
    /// Runs `job` on the model (one call at a time: the JS side queues them).
    async fn with_inner<T>(inner: &Rc<RefCell<Option<Inner>>>, job: impl AsyncFnOnce(&mut Inner) -> Result<T, JsValue>) -> Result<T, JsValue> {
        let taken = inner.borrow_mut().take();
        let mut s = taken.ok_or_else(|| js_error("Busy", "the model is running or disposed"))?;
        let result = job(&mut s).await;
        *inner.borrow_mut() = Some(s);
        result
    }
}

#[wasm_bindgen]
impl EncoderModel {
    /// Loads `repo@commit` from the weight store (database `db`) for `task`
    /// ("image-classification", "zero-shot-image-classification", "audio-classification",
    /// "fill-mask", "text-classification") onto `device` ("auto", "webgpu" or "cpu").
    #[wasm_bindgen(js_name = fromStore)]
    pub async fn from_store(db: Option<String>, repo: String, commit: String, task: String, device: Option<String>) -> Result<EncoderModel, JsValue> {
        let db = db.unwrap_or_else(|| "hugrt".into());
        let store = IdbStore::open(&db).await.map_err(|e| js_error(e.code(), &e.to_string()))?;
        let config = stored_bytes(&store, &repo, &commit, "config.json").await?;
        let wants_text = matches!(task.as_str(), "zero-shot-image-classification" | "image-feature-extraction" | "fill-mask" | "text-classification");
        let wants_image = matches!(task.as_str(), "image-classification" | "zero-shot-image-classification" | "image-feature-extraction");
        let tokenizer = if wants_text {
            let json = stored_bytes(&store, &repo, &commit, "tokenizer.json").await?;
            Some(Tokenizer::from_json(&json).map_err(|e| js_error("BadModelFile", &format!("{repo}/tokenizer.json: {e}")))?)
        } else {
            None
        };
        let images = if wants_image {
            Some(ImageProcessor::from_config(&stored_bytes(&store, &repo, &commit, "preprocessor_config.json").await?).map_err(input_error)?)
        } else {
            None
        };
        let audio = if task == "audio-classification" {
            let json = stored_bytes(&store, &repo, &commit, "preprocessor_config.json").await?;
            Some(crate::preprocess::audio::AstFeatureExtractor::from_json(&json).map_err(input_error)?)
        } else {
            None
        };
        let (gpu, fallback_reason) = super::choose_device(device.as_deref().unwrap_or("auto")).await?;
        let (table, mut weights) = super::stored_weights(&store, &repo, &commit).await?;
        let engine = Engine::load(gpu, &config, &table, &mut weights).await.map_err(model_error)?;
        engine.check_task(&task).map_err(model_error)?;
        let mut info = engine.info();
        info["fallbackReason"] = fallback_reason.into();
        Ok(EncoderModel { inner: Rc::new(RefCell::new(Some(Inner { engine, tokenizer, images, audio }))), info })
    }

    /// `{ architecture, layers, hidden, labels, adapter, device, fallbackReason }`.
    pub fn info(&self) -> Result<JsValue, JsValue> {
        to_js(&self.info)
    }

    /// The `top_k` most probable labels of an image (`{ bytes }` or `{ rgba, width, height }`).
    #[wasm_bindgen(js_name = classifyImage)]
    pub async fn classify_image(&self, input: JsValue, top_k: u32) -> Result<JsValue, JsValue> {
        let image = image_from_js(&input)?;
        let out = Self::with_inner(&self.inner, async |s: &mut Inner| {
            let processor = s.images.as_ref().ok_or_else(|| js_error("Usage", "this model was not loaded for images"))?;
            let pixels = processor.preprocess(&image).map_err(input_error)?;
            let logits = s.engine.classify_pixels(&pixels.data).await.map_err(model_error)?;
            let row = logits.first().ok_or_else(|| js_error("Internal", "no logits"))?;
            Ok(ranked(s.engine.labels(), row, top_k, false))
        })
        .await?;
        to_js(&out)
    }

    /// Every label scored against an image (CLIP): `hypothesis_template` with `{}` replaced by
    /// the label is the text embedded; softmax over the labels of the scaled cosines, best first.
    #[wasm_bindgen(js_name = zeroShotImage)]
    pub async fn zero_shot_image(&self, input: JsValue, labels: Vec<String>, hypothesis_template: String) -> Result<JsValue, JsValue> {
        if labels.is_empty() {
            return Err(js_error("Usage", "zero-shot classification needs at least one label"));
        }
        let image = image_from_js(&input)?;
        let out = Self::with_inner(&self.inner, async |s: &mut Inner| {
            let processor = s.images.as_ref().ok_or_else(|| js_error("Usage", "this model was not loaded for images"))?;
            let tokenizer = s.tokenizer.as_ref().ok_or_else(|| js_error("Usage", "this model has no tokenizer"))?;
            let pixels = processor.preprocess(&image).map_err(input_error)?;
            let texts: Vec<String> = labels.iter().map(|l| hypothesis_template.replace("{}", l)).collect();
            let logits = s.engine.zero_shot(tokenizer, &pixels.data, &texts).await.map_err(model_error)?;
            let row = logits.first().ok_or_else(|| js_error("Internal", "no logits"))?;
            Ok(ranked(&labels, row, labels.len() as u32, false))
        })
        .await?;
        to_js(&out)
    }

    /// An image's embedding (CLIP's `image_embeds`, L2-normalised): `Float32Array` of the
    /// projection's size.
    #[wasm_bindgen(js_name = embedImage)]
    pub async fn embed_image(&self, input: JsValue) -> Result<Vec<f32>, JsValue> {
        let image = image_from_js(&input)?;
        Self::with_inner(&self.inner, async |s: &mut Inner| {
            let processor = s.images.as_ref().ok_or_else(|| js_error("Usage", "this model was not loaded for images"))?;
            let pixels = processor.preprocess(&image).map_err(input_error)?;
            let mut rows = s.engine.image_embeddings(&pixels.data).await.map_err(model_error)?;
            rows.pop().ok_or_else(|| js_error("Internal", "no embedding"))
        })
        .await
    }

    /// Texts' embeddings by CLIP's text tower (`text_embeds`, L2-normalised), in the images'
    /// space: `{ data: Float32Array, dims: [texts, size] }`.
    #[wasm_bindgen(js_name = embedTexts)]
    pub async fn embed_texts(&self, texts: Vec<String>) -> Result<JsValue, JsValue> {
        if texts.is_empty() {
            return Err(js_error("Usage", "no texts to embed"));
        }
        let rows = Self::with_inner(&self.inner, async |s: &mut Inner| {
            let tokenizer = s.tokenizer.as_ref().ok_or_else(|| js_error("Usage", "this model has no tokenizer"))?;
            s.engine.text_embeddings(tokenizer, &texts).await.map_err(model_error)
        })
        .await?;
        let dims = [rows.len(), rows.first().map_or(0, Vec::len)];
        let data = js_sys::Float32Array::from(rows.concat().as_slice());
        let out = js_sys::Object::new();
        js_sys::Reflect::set(&out, &"data".into(), &data)?;
        js_sys::Reflect::set(&out, &"dims".into(), &to_js(&dims)?)?;
        Ok(out.into())
    }

    /// The `top_k` most probable labels of a sound (`{ bytes }` WAV or `{ samples, sampleRate,
    /// channels }`), resampled and turned into log-mel features as the checkpoint's extractor says.
    #[wasm_bindgen(js_name = classifyAudio)]
    pub async fn classify_audio(&self, input: JsValue, top_k: u32) -> Result<JsValue, JsValue> {
        let audio = audio_from_js(&input)?;
        let out = Self::with_inner(&self.inner, async |s: &mut Inner| {
            let extractor = s.audio.as_ref().ok_or_else(|| js_error("Usage", "this model was not loaded for audio"))?;
            let features = extractor.extract(&audio).map_err(input_error)?;
            let logits = s.engine.classify_features(&features).await.map_err(model_error)?;
            let row = logits.first().ok_or_else(|| js_error("Internal", "no logits"))?;
            Ok(ranked(s.engine.labels(), row, top_k, false))
        })
        .await?;
        to_js(&out)
    }

    /// The `top_k` fillers of each mask token of `text`: a list for one mask, a list per mask for
    /// several.
    #[wasm_bindgen(js_name = fillMask)]
    pub async fn fill_mask(&self, text: String, top_k: u32) -> Result<JsValue, JsValue> {
        let out = Self::with_inner(&self.inner, async |s: &mut Inner| {
            let tokenizer = s.tokenizer.as_ref().ok_or_else(|| js_error("Usage", "this model has no tokenizer"))?;
            let mask = tasks::mask_token(tokenizer).ok_or_else(|| js_error("BadModelFile", "the tokenizer has no [MASK] or <mask> token"))?;
            let ids = s.engine.tokenize(tokenizer, &text).map_err(model_error)?;
            if !ids.contains(&mask) {
                return Err(js_error("Usage", &format!("the text has no mask token ({})", tokenizer.id_to_token(mask).unwrap_or_default())));
            }
            let per_mask = s.engine.fill_mask(&ids, mask).await.map_err(model_error)?;
            let positions: Vec<usize> = (0..ids.len()).filter(|&p| ids[p] == mask).collect();
            let mut lists = Vec::with_capacity(per_mask.len());
            for (logits, &pos) in per_mask.iter().zip(&positions) {
                let mut list = Vec::new();
                for (id, score) in best(&softmax(logits), top_k.max(1) as usize) {
                    let id = id as u32;
                    let mut filled = ids.clone();
                    filled[pos] = id;
                    let decode = |ids: &[u32]| tokenizer.decode(ids, true).map_err(|e| js_error("Internal", &e.to_string()));
                    list.push(FillMask { score, token: id, token_str: decode(&[id])?, sequence: decode(&filled)? });
                }
                lists.push(list);
            }
            Ok(lists)
        })
        .await?;
        if out.len() == 1 { to_js(&out[0]) } else { to_js(&out) }
    }

    /// The `top_k` most probable labels of a text, or of the pair (`text`, `text_pair`) (a
    /// cross-encoder's query and passage): a softmax over the labels, or each label's sigmoid for
    /// a one-label (relevance) or multi-label model, as transformers' pipeline scores them.
    #[wasm_bindgen(js_name = classifyText)]
    pub async fn classify_text(&self, text: String, top_k: u32, text_pair: Option<String>) -> Result<JsValue, JsValue> {
        let out = Self::with_inner(&self.inner, async |s: &mut Inner| {
            let tokenizer = s.tokenizer.as_ref().ok_or_else(|| js_error("Usage", "this model has no tokenizer"))?;
            let logits = match &text_pair {
                Some(pair) => s.engine.classify_pair(tokenizer, &text, pair).await.map_err(model_error)?,
                None => {
                    let ids = s.engine.tokenize(tokenizer, &text).map_err(model_error)?;
                    s.engine.classify_ids(&ids).await.map_err(model_error)?
                }
            };
            Ok(ranked(s.engine.labels(), &logits, top_k, s.engine.sigmoid_scores()))
        })
        .await?;
        to_js(&out)
    }

    /// Frees the GPU buffers (or the CPU weights).
    pub fn dispose(&self) {
        self.inner.borrow_mut().take();
    }
}
