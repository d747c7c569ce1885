//! `preprocessor_config.json` for the ViT and CLIP image processors, resolved as transformers 5
//! resolves it: a key that is missing or `null` takes the class default, an int `size` becomes a
//! square (ViT) or a shortest edge (CLIP, `default_to_square = False`), an int `crop_size` a square,
//! a `[h, w]` list a height and width. Keys that other processors use are ignored.

use serde::Deserialize;
use serde_json::Value;

use super::resample::Filter;
use crate::preprocess::PreprocessError;

/// The processor classes we reproduce (their PIL backend, see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessorKind {
    /// `ViTImageProcessor` (also `…Pil`, `…Fast`, `ViTFeatureExtractor`).
    Vit,
    /// `CLIPImageProcessor` (also `…Pil`, `…Fast`, `CLIPFeatureExtractor`).
    Clip,
}

/// How the resize step chooses the output size from the input's `(height, width)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeRule {
    /// `{"height", "width"}`: exactly that.
    Exact { height: u32, width: u32 },
    /// `{"shortest_edge"}`: the shorter side to this, the longer `int(edge * long / short)`
    /// (`get_resize_output_image_size(default_to_square=False)`).
    ShortestEdge(u32),
    /// `{"shortest_edge", "longest_edge"}`: `get_size_with_aspect_ratio`.
    ShortestLongest { shortest: u32, longest: u32 },
    /// `{"max_height", "max_width"}`: `get_image_size_for_max_height_width`.
    MaxHeightWidth { max_height: u32, max_width: u32 },
}

/// `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD` in transformers' `image_utils.py`.
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];
/// `IMAGENET_STANDARD_MEAN` / `_STD` (ViT's defaults).
const HALF: [f64; 3] = [0.5, 0.5, 0.5];
/// Sides above this in a config are refused (real ones are at most a few thousand).
const MAX_CONFIG_SIDE: u64 = 16384;

/// The keys the two processors read. `Value` where the JSON type varies (int, list or dict).
#[derive(Deserialize)]
struct Raw {
    image_processor_type: Option<String>,
    feature_extractor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<Value>,
    default_to_square: Option<bool>,
    resample: Option<i64>,
    do_center_crop: Option<bool>,
    crop_size: Option<Value>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Value>,
    image_std: Option<Value>,
    do_convert_rgb: Option<bool>,
    do_pad: Option<bool>,
    pad_size: Option<Value>,
}

/// The resolved steps, in the order the processor runs them (`PilBackend._preprocess`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessorConfig {
    pub kind: ProcessorKind,
    /// Composite alpha over white (`convert_to_rgb`) rather than drop it.
    pub do_convert_rgb: bool,
    pub resize: Option<(SizeRule, Filter)>,
    /// `(height, width)`; zero-padded when larger than the image.
    pub center_crop: Option<(u32, u32)>,
    pub rescale_factor: Option<f64>,
    /// Per channel mean and std, as the f64 the JSON holds (the arithmetic rounds them to f32).
    pub normalize: Option<([f64; 3], [f64; 3])>,
    /// `(height, width)`: zeros appended below and to the right, after normalising.
    pub pad: Option<(u32, u32)>,
}

fn bad(msg: impl Into<String>) -> PreprocessError {
    PreprocessError::Config(msg.into())
}

fn kind_of(name: &str) -> Option<ProcessorKind> {
    let base = name.strip_suffix("Pil").or_else(|| name.strip_suffix("Fast")).unwrap_or(name);
    match base {
        "ViTImageProcessor" | "ViTFeatureExtractor" => Some(ProcessorKind::Vit),
        "CLIPImageProcessor" | "CLIPFeatureExtractor" => Some(ProcessorKind::Clip),
        _ => None,
    }
}

fn side(v: &Value, what: &str) -> Result<u32, PreprocessError> {
    match v.as_u64() {
        Some(n) if (1..=MAX_CONFIG_SIDE).contains(&n) => Ok(n as u32),
        _ => Err(bad(format!("{what} must be an integer from 1 to {MAX_CONFIG_SIDE}, got {v}"))),
    }
}

/// `get_size_dict`: an int, a `[height, width]` list or one of the dicts transformers accepts.
fn size_dict(v: &Value, default_to_square: bool, what: &str) -> Result<SizeRule, PreprocessError> {
    match v {
        Value::Number(_) if default_to_square => {
            let n = side(v, what)?;
            Ok(SizeRule::Exact { height: n, width: n })
        }
        Value::Number(_) => Ok(SizeRule::ShortestEdge(side(v, what)?)),
        Value::Array(a) if a.len() == 2 => Ok(SizeRule::Exact { height: side(&a[0], what)?, width: side(&a[1], what)? }),
        Value::Object(m) => {
            let mut keys: Vec<&str> = m.keys().map(String::as_str).collect();
            keys.sort_unstable();
            let get = |k: &str| side(&m[k], &format!("{what}.{k}"));
            match keys.as_slice() {
                ["height", "width"] => Ok(SizeRule::Exact { height: get("height")?, width: get("width")? }),
                ["shortest_edge"] => Ok(SizeRule::ShortestEdge(get("shortest_edge")?)),
                ["longest_edge", "shortest_edge"] => {
                    Ok(SizeRule::ShortestLongest { shortest: get("shortest_edge")?, longest: get("longest_edge")? })
                }
                ["max_height", "max_width"] => {
                    Ok(SizeRule::MaxHeightWidth { max_height: get("max_height")?, max_width: get("max_width")? })
                }
                _ => Err(bad(format!("{what}: unsupported keys {keys:?}"))),
            }
        }
        _ => Err(bad(format!("{what}: expected an int, [height, width] or a dict, got {v}"))),
    }
}

/// A crop or pad size: always a square for an int (`get_size_dict` with its default).
fn height_width(v: &Value, what: &str) -> Result<(u32, u32), PreprocessError> {
    match size_dict(v, true, what)? {
        SizeRule::Exact { height, width } => Ok((height, width)),
        other => Err(bad(format!("{what} must have height and width, got {other:?}"))),
    }
}

/// A float for all three channels or a list of three.
fn per_channel(v: &Value, what: &str) -> Result<[f64; 3], PreprocessError> {
    let num = |v: &Value| v.as_f64().filter(|x| x.is_finite());
    let out = match v {
        Value::Array(a) if a.len() == 3 => [num(&a[0]), num(&a[1]), num(&a[2])],
        Value::Number(_) => [num(v); 3],
        _ => [None; 3],
    };
    match out {
        [Some(a), Some(b), Some(c)] => Ok([a, b, c]),
        _ => Err(bad(format!("{what} must be a number or a list of 3 numbers, got {v}"))),
    }
}

impl ImageProcessorConfig {
    /// The class defaults of `kind` (an empty config).
    pub fn defaults(kind: ProcessorKind) -> Self {
        match kind {
            ProcessorKind::Vit => ImageProcessorConfig {
                kind,
                do_convert_rgb: false,
                resize: Some((SizeRule::Exact { height: 224, width: 224 }, Filter::Bilinear)),
                center_crop: None,
                rescale_factor: Some(1.0 / 255.0),
                normalize: Some((HALF, HALF)),
                pad: None,
            },
            ProcessorKind::Clip => ImageProcessorConfig {
                kind,
                do_convert_rgb: true,
                resize: Some((SizeRule::ShortestEdge(224), Filter::Bicubic)),
                center_crop: Some((224, 224)),
                rescale_factor: Some(1.0 / 255.0),
                normalize: Some((CLIP_MEAN, CLIP_STD)),
                pad: None,
            },
        }
    }

    /// Parses `preprocessor_config.json`. The class comes from `image_processor_type` (or the
    /// older `feature_extractor_type`); any other class is a `Config` error, as is a setting we do
    /// not implement (an unknown size dict, a resample filter past 7, a mean of 4 values).
    pub fn from_json(json: &[u8]) -> Result<Self, PreprocessError> {
        let raw: Raw = serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
        let class = raw
            .image_processor_type
            .as_deref()
            .or(raw.feature_extractor_type.as_deref())
            .ok_or_else(|| bad("no image_processor_type or feature_extractor_type"))?;
        let kind = kind_of(class).ok_or_else(|| bad(format!("unsupported image processor {class:?} (ViT and CLIP only)")))?;
        let d = Self::defaults(kind);
        let default_to_square = raw.default_to_square.unwrap_or(kind == ProcessorKind::Vit);

        let (default_size, default_filter) = d.resize.ok_or_else(|| bad("class without a size"))?;
        let resize = if raw.do_resize.unwrap_or(d.resize.is_some()) {
            let size = match &raw.size {
                Some(v) => size_dict(v, default_to_square, "size")?,
                None => default_size,
            };
            let filter = match raw.resample {
                Some(n) => Filter::from_pil(n).ok_or_else(|| bad(format!("resample {n} is not a PIL filter (0 to 7 are)")))?,
                None => default_filter,
            };
            Some((size, filter))
        } else {
            None
        };
        let center_crop = if raw.do_center_crop.unwrap_or(d.center_crop.is_some()) {
            match &raw.crop_size {
                Some(v) => Some(height_width(v, "crop_size")?),
                None => Some(d.center_crop.ok_or_else(|| bad("do_center_crop without crop_size"))?),
            }
        } else {
            None
        };
        let rescale_factor = if raw.do_rescale.unwrap_or(true) {
            let f = raw.rescale_factor.unwrap_or(1.0 / 255.0);
            if !f.is_finite() {
                return Err(bad(format!("rescale_factor {f}")));
            }
            Some(f)
        } else {
            None
        };
        let normalize = if raw.do_normalize.unwrap_or(true) {
            let (dm, ds) = d.normalize.unwrap_or((HALF, HALF));
            let mean = raw.image_mean.as_ref().map(|v| per_channel(v, "image_mean")).transpose()?.unwrap_or(dm);
            let std = raw.image_std.as_ref().map(|v| per_channel(v, "image_std")).transpose()?.unwrap_or(ds);
            Some((mean, std))
        } else {
            None
        };
        let pad = if raw.do_pad.unwrap_or(false) {
            let v = raw.pad_size.as_ref().ok_or_else(|| bad("do_pad without pad_size"))?;
            Some(height_width(v, "pad_size")?)
        } else {
            None
        };
        Ok(ImageProcessorConfig {
            kind,
            do_convert_rgb: raw.do_convert_rgb.unwrap_or(d.do_convert_rgb),
            resize,
            center_crop,
            rescale_factor,
            normalize,
            pad,
        })
    }
}

/// The resize target for an input of `(height, width)`, with transformers' int rounding. `None`
/// when a side would round to zero (PIL refuses that size).
pub(super) fn output_size(rule: SizeRule, height: u32, width: u32) -> Option<(u32, u32)> {
    let (h, w) = (u64::from(height), u64::from(width));
    let (oh, ow) = match rule {
        SizeRule::Exact { height, width } => (u64::from(height), u64::from(width)),
        SizeRule::ShortestEdge(size) => {
            // new_long = int(size * long / short): an exact integer product, then a correctly
            // rounded division (Python's int / int), then truncation.
            let (short, long) = if w <= h { (w, h) } else { (h, w) };
            let size = u64::from(size);
            let new_long = ((size * long) as f64 / short as f64) as u64;
            if w <= h { (new_long, size) } else { (size, new_long) }
        }
        SizeRule::ShortestLongest { shortest, longest } => {
            let (mut size, max_size) = (u64::from(shortest), longest as f64);
            let (min_side, max_side) = (h.min(w) as f64, h.max(w) as f64);
            let mut raw_size = None;
            if max_side / min_side * size as f64 > max_size {
                let r = max_size * min_side / max_side;
                raw_size = Some(r);
                size = r.round_ties_even() as u64; // Python's round()
            }
            if (h <= w && h == size) || (w <= h && w == size) {
                (h, w)
            } else if w < h {
                let oh = match raw_size {
                    Some(r) => (r * h as f64 / w as f64) as u64,
                    None => ((size * h) as f64 / w as f64) as u64,
                };
                (oh, size)
            } else {
                let ow = match raw_size {
                    Some(r) => (r * w as f64 / h as f64) as u64,
                    None => ((size * w) as f64 / h as f64) as u64,
                };
                (size, ow)
            }
        }
        SizeRule::MaxHeightWidth { max_height, max_width } => {
            let scale = (f64::from(max_height) / h as f64).min(f64::from(max_width) / w as f64);
            ((h as f64 * scale) as u64, (w as f64 * scale) as u64)
        }
    };
    let oh = u32::try_from(oh).ok().filter(|&v| v > 0)?;
    let ow = u32::try_from(ow).ok().filter(|&v| v > 0)?;
    Some((oh, ow))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<ImageProcessorConfig, PreprocessError> {
        ImageProcessorConfig::from_json(json.as_bytes())
    }

    #[test]
    fn class_defaults() {
        let vit = cfg(r#"{"image_processor_type": "ViTImageProcessor"}"#).unwrap();
        assert_eq!(vit, ImageProcessorConfig::defaults(ProcessorKind::Vit));
        let clip = cfg(r#"{"image_processor_type": "CLIPImageProcessor"}"#).unwrap();
        assert_eq!(clip, ImageProcessorConfig::defaults(ProcessorKind::Clip));
    }

    #[test]
    fn old_style_configs() {
        // google/vit-base-patch16-224 and openai/clip-vit-base-patch32, as published
        let vit = cfg(r#"{"do_normalize": true, "do_resize": true, "feature_extractor_type": "ViTFeatureExtractor",
            "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224}"#)
        .unwrap();
        assert_eq!(vit, ImageProcessorConfig::defaults(ProcessorKind::Vit));
        let clip = cfg(r#"{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}"#)
        .unwrap();
        assert_eq!(clip, ImageProcessorConfig::defaults(ProcessorKind::Clip));
    }

    #[test]
    fn nulls_take_defaults_and_flags_turn_steps_off() {
        let c = cfg(r#"{"image_processor_type": "CLIPImageProcessorFast", "size": null, "do_center_crop": false,
            "do_rescale": false, "do_normalize": false, "do_convert_rgb": null}"#)
        .unwrap();
        assert_eq!(c.resize, Some((SizeRule::ShortestEdge(224), Filter::Bicubic)));
        assert_eq!((c.center_crop, c.rescale_factor, c.normalize, c.do_convert_rgb), (None, None, None, true));
        let v = cfg(r#"{"image_processor_type": "ViTImageProcessor", "size": {"shortest_edge": 20, "longest_edge": 50},
            "do_pad": true, "pad_size": 64, "image_mean": 0.25, "default_to_square": false}"#)
        .unwrap();
        assert_eq!(v.resize, Some((SizeRule::ShortestLongest { shortest: 20, longest: 50 }, Filter::Bilinear)));
        assert_eq!((v.pad, v.normalize.map(|n| n.0)), (Some((64, 64)), Some([0.25; 3])));
    }

    #[test]
    fn config_errors() {
        for json in [
            r#"{"image_processor_type": "SiglipImageProcessor"}"#,
            r#"{"size": 224}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "resample": 8}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "size": {"longest_edge": 3}}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "size": 0}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "size": 1e9}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "size": [1, 2, 3]}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "image_mean": [1, 2, 3, 4]}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "do_center_crop": true}"#,
            r#"{"image_processor_type": "ViTImageProcessor", "do_pad": true}"#,
            r#"{"image_processor_type": "CLIPImageProcessor", "crop_size": {"shortest_edge": 3}}"#,
            r#"[1, 2]"#,
            r#"{"image_processor_type": 5}"#,
        ] {
            assert!(matches!(cfg(json), Err(PreprocessError::Config(_))), "{json}");
        }
    }

    #[test]
    fn output_sizes_round_as_transformers() {
        // get_resize_output_image_size(default_to_square=False): int(224 * long / short)
        assert_eq!(output_size(SizeRule::ShortestEdge(224), 3, 5), Some((224, 373)));
        assert_eq!(output_size(SizeRule::ShortestEdge(224), 200, 300), Some((224, 336)));
        assert_eq!(output_size(SizeRule::ShortestEdge(224), 61, 97), Some((224, 356)));
        assert_eq!(output_size(SizeRule::ShortestEdge(224), 47, 33), Some((319, 224)));
        assert_eq!(output_size(SizeRule::ShortestEdge(224), 100, 100), Some((224, 224)));
        // get_size_with_aspect_ratio: (100, 400) with 20/50 -> raw 12.5 rounds to 12 (ties to even)
        assert_eq!(output_size(SizeRule::ShortestLongest { shortest: 20, longest: 50 }, 100, 400), Some((12, 50)));
        assert_eq!(output_size(SizeRule::ShortestLongest { shortest: 20, longest: 500 }, 100, 400), Some((20, 80)));
        assert_eq!(output_size(SizeRule::MaxHeightWidth { max_height: 50, max_width: 50 }, 100, 200), Some((25, 50)));
        assert_eq!(output_size(SizeRule::MaxHeightWidth { max_height: 1, max_width: 1 }, 1, 3000), None);
    }
}
