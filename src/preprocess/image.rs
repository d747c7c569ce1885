//! Image input for ViT and CLIP: PNG/JPEG bytes or a page's RGBA pixels in, the model's
//! `pixel_values` out (f32, (3, height, width)), with the numbers of transformers' PIL-backed
//! image processors (`ViTImageProcessorPil`, `CLIPImageProcessorPil`: the "slow" processors of
//! transformers 4, which `use_fast=False` selects). Their torchvision twins resize differently
//! and are not reproduced; a config naming `…Fast` gets the PIL numbers too.
//!
//! The steps, as `PilBackend` runs them:
//! 1. RGB: with `do_convert_rgb` (CLIP), alpha is composited over white (`convert_to_rgb`:
//!    `round((c * a + 255 * (255 - a)) / 255)`); without it (ViT) alpha is dropped, as
//!    `Image.convert("RGB")` and transformers' pipelines (`load_image`) do.
//! 2. Resize in uint8 with PIL's resampler ([`resize`], bit-exact).
//! 3. Center crop in uint8, zero-padded when the crop is larger than the image.
//! 4. `f32(f64(v) * rescale_factor)`, then `(x - f32(mean)) / f32(std)` in f32, as NumPy does.
//! 5. Optional zero padding to `pad_size`, below and to the right.
//!
//! Decoding uses the `image` crate (PNG, and JPEG through zune-jpeg) under [`ImageLimits`]: the
//! header's dimensions and the decoded size are checked before any pixel buffer exists. JPEG
//! decoders differ: zune-jpeg lands within a few levels of PIL's libjpeg-turbo (see
//! tests/image.rs for the measured gap). EXIF orientation is applied, as browsers and
//! transformers' `load_image` do (a processor called on `Image.open(...)` directly would not).
//! 16-bit PNGs keep their high byte (PIL's reading of 16-bit RGB; PIL clips 16-bit grayscale
//! instead, which we do not copy).

mod config;
mod resample;

pub use config::{ImageProcessorConfig, ProcessorKind, SizeRule};
pub use resample::{Filter, resize};

use ::image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, Limits};

use super::PreprocessError;

/// What decoding (and resizing) may allocate. A header past these is `TooLarge` before its pixels
/// are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes of one decoded or resized image (all channels).
    pub max_bytes: u64,
}

impl Default for ImageLimits {
    /// 16384 × 16384 (about the largest canvas browsers draw) and 256 MiB (an RGB 48-megapixel
    /// photo is 144 MiB).
    fn default() -> Self {
        ImageLimits { max_width: 16384, max_height: 16384, max_bytes: 256 << 20 }
    }
}

impl ImageLimits {
    fn check(&self, what: &'static str, width: u32, height: u32, channels: u64) -> Result<(), PreprocessError> {
        let bytes = (u64::from(width) * u64::from(height)).saturating_mul(channels);
        if width > self.max_width || height > self.max_height || bytes > self.max_bytes {
            return Err(PreprocessError::TooLarge {
                what,
                detail: format!(
                    "{width}x{height} ({bytes} bytes); the limit is {}x{} and {} bytes",
                    self.max_width, self.max_height, self.max_bytes
                ),
            });
        }
        Ok(())
    }
}

/// `width * height * 3` as a checked `usize` (32 bits on wasm32).
fn rgb_len(width: u32, height: u32) -> Result<usize, PreprocessError> {
    (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3))
        .ok_or_else(|| PreprocessError::TooLarge { what: "image", detail: format!("{width}x{height} does not fit in memory") })
}

fn nonzero(width: u32, height: u32) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Input(format!("a {width}x{height} image has no pixels")));
    }
    Ok(())
}

/// 8-bit RGB pixels, row-major: (height, width, 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl RgbImage {
    /// Checks that `pixels` holds exactly `width * height * 3` bytes and that the image is not empty.
    pub fn new(width: u32, height: u32, pixels: Vec<u8>) -> Result<Self, PreprocessError> {
        nonzero(width, height)?;
        let want = rgb_len(width, height)?;
        if pixels.len() != want {
            return Err(PreprocessError::Input(format!("{width}x{height} RGB needs {want} bytes, got {}", pixels.len())));
        }
        Ok(RgbImage { width, height, pixels })
    }

    /// For buffers this module sized itself.
    fn from_parts(width: u32, height: u32, pixels: Vec<u8>) -> Self {
        debug_assert_eq!(pixels.len(), width as usize * height as usize * 3);
        RgbImage { width, height, pixels }
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// (height, width, 3)
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    pub fn into_pixels(self) -> Vec<u8> {
        self.pixels
    }
}

/// What happens to an alpha channel on the way to RGB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlphaMode {
    /// Keep the colour, ignore alpha (`PIL.Image.convert("RGB")`).
    Drop,
    /// Composite over opaque white (transformers' `convert_to_rgb`, PIL's `alpha_composite`).
    OverWhite,
}

/// A decoded image or a page's pixels, before any processor setting applies: RGB, or RGBA when
/// the source had alpha (what happens to it depends on the processor's `do_convert_rgb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    /// (height, width, channels), channels 3 or 4
    pixels: Vec<u8>,
    alpha: bool,
}

impl Image {
    /// Decodes PNG or JPEG bytes under the default [`ImageLimits`].
    pub fn decode(bytes: &[u8]) -> Result<Self, PreprocessError> {
        Self::decode_with_limits(bytes, &ImageLimits::default())
    }

    /// Decodes PNG or JPEG bytes. Errors: `Decode` (not PNG/JPEG, corrupt or cut short),
    /// `TooLarge` (the header's size is past `limits`; nothing was allocated for the pixels),
    /// `Input` (zero pixels).
    pub fn decode_with_limits(bytes: &[u8], limits: &ImageLimits) -> Result<Self, PreprocessError> {
        let format = match ::image::guess_format(bytes) {
            Ok(ImageFormat::Png) => "PNG",
            Ok(ImageFormat::Jpeg) => "JPEG",
            Ok(other) => {
                let detail = format!("{other:?} is not supported (PNG and JPEG are)");
                return Err(PreprocessError::Decode { format: "image", detail });
            }
            Err(_) => return Err(PreprocessError::Decode { format: "image", detail: "not a PNG or JPEG file".into() }),
        };
        let err = |e: ImageError| match e {
            ImageError::Limits(e) => PreprocessError::TooLarge { what: "image", detail: e.to_string() },
            e => PreprocessError::Decode { format, detail: e.to_string() },
        };
        let mut image_limits = Limits::default();
        image_limits.max_image_width = Some(limits.max_width);
        image_limits.max_image_height = Some(limits.max_height);
        image_limits.max_alloc = Some(limits.max_bytes);
        let mut reader = ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| err(e.into()))?;
        reader.limits(image_limits);
        // The decoder has read the header and checked its dimensions against the limits.
        let mut decoder = reader.into_decoder().map_err(err)?;
        let (width, height) = decoder.dimensions();
        nonzero(width, height)?;
        let bytes_per_pixel = u64::from(decoder.color_type().bytes_per_pixel());
        limits.check("image", width, height, bytes_per_pixel)?;
        let orientation = decoder.orientation().unwrap_or(::image::metadata::Orientation::NoTransforms);
        let mut decoded = DynamicImage::from_decoder(decoder).map_err(err)?;
        decoded.apply_orientation(orientation);
        Ok(Self::from_dynamic(decoded))
    }

    fn from_dynamic(img: DynamicImage) -> Self {
        let (width, height) = (img.width(), img.height());
        let alpha = img.color().has_alpha();
        let pixels = match img {
            DynamicImage::ImageRgb8(b) => b.into_raw(),
            DynamicImage::ImageRgba8(b) => b.into_raw(),
            // 16 bits: the high byte, as PIL reads 16-bit RGB(A) PNGs.
            DynamicImage::ImageRgb16(b) => b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
            DynamicImage::ImageRgba16(b) => b.into_raw().into_iter().map(|v| (v >> 8) as u8).collect(),
            DynamicImage::ImageLuma16(b) => b.into_raw().into_iter().flat_map(|v| [(v >> 8) as u8; 3]).collect(),
            DynamicImage::ImageLumaA16(b) => b
                .into_raw()
                .chunks_exact(2)
                .flat_map(|p| {
                    let l = (p[0] >> 8) as u8;
                    [l, l, l, (p[1] >> 8) as u8]
                })
                .collect(),
            other if alpha => other.to_rgba8().into_raw(),
            other => other.to_rgb8().into_raw(),
        };
        Image { width, height, pixels, alpha }
    }

    /// A page's `ImageData` (`width`, `height`, RGBA bytes, row-major). Errors: `Input` when the
    /// length is not `width * height * 4` or the image is empty, `TooLarge` past the default limits.
    pub fn from_rgba(width: u32, height: u32, rgba: Vec<u8>) -> Result<Self, PreprocessError> {
        Self::from_raw(width, height, rgba, true)
    }

    /// RGB bytes, row-major (`width * height * 3`).
    pub fn from_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Self, PreprocessError> {
        Self::from_raw(width, height, rgb, false)
    }

    fn from_raw(width: u32, height: u32, pixels: Vec<u8>, alpha: bool) -> Result<Self, PreprocessError> {
        nonzero(width, height)?;
        let channels = if alpha { 4 } else { 3 };
        ImageLimits::default().check("image", width, height, channels)?;
        let want = u64::from(width) * u64::from(height) * channels;
        if pixels.len() as u64 != want {
            return Err(PreprocessError::Input(format!(
                "{width}x{height} {} needs {want} bytes, got {}",
                if alpha { "RGBA" } else { "RGB" },
                pixels.len()
            )));
        }
        Ok(Image { width, height, pixels, alpha })
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn height(&self) -> u32 {
        self.height
    }

    /// (height, width, 4) when [`has_alpha`](Self::has_alpha), else (height, width, 3).
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Whether the pixels carry alpha (RGBA input, or a PNG with alpha or a transparent colour).
    pub fn has_alpha(&self) -> bool {
        self.alpha
    }

    /// The pixels as RGB, alpha dropped or composited over white.
    pub fn to_rgb(&self, mode: AlphaMode) -> RgbImage {
        if !self.alpha {
            return RgbImage::from_parts(self.width, self.height, self.pixels.clone());
        }
        let over_white = |c: u8, a: u8| -> u8 {
            // PIL's alpha_composite onto opaque white, which for these inputs is exactly
            // round(n / 255) (no ties: 255 is odd), as is transformers' NumPy path.
            let (c, a) = (u32::from(c), u32::from(a));
            ((c * a + 255 * (255 - a) + 127) / 255) as u8
        };
        let pixels = self
            .pixels
            .chunks_exact(4)
            .flat_map(|p| match mode {
                AlphaMode::Drop => [p[0], p[1], p[2]],
                AlphaMode::OverWhite => [over_white(p[0], p[3]), over_white(p[1], p[3]), over_white(p[2], p[3])],
            })
            .collect();
        RgbImage::from_parts(self.width, self.height, pixels)
    }
}

/// A model's input image: f32, (3, height, width), channel-major.
#[derive(Clone, Debug, PartialEq)]
pub struct PixelValues {
    /// (3, height, width)
    pub data: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// A ViT or CLIP image processor, from its `preprocessor_config.json`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageProcessor {
    pub config: ImageProcessorConfig,
    /// Bounds the resized image (a shortest-edge resize of a very thin image is huge).
    pub limits: ImageLimits,
}

impl ImageProcessor {
    /// Parses `preprocessor_config.json` (see [`ImageProcessorConfig::from_json`]).
    pub fn from_config(json: &[u8]) -> Result<Self, PreprocessError> {
        Ok(Self::new(ImageProcessorConfig::from_json(json)?))
    }

    pub fn new(config: ImageProcessorConfig) -> Self {
        ImageProcessor { config, limits: ImageLimits::default() }
    }

    /// `processor(images=image, return_tensors="np").pixel_values[0]`.
    pub fn preprocess(&self, image: &Image) -> Result<PixelValues, PreprocessError> {
        let mode = if self.config.do_convert_rgb { AlphaMode::OverWhite } else { AlphaMode::Drop };
        self.preprocess_rgb(&image.to_rgb(mode))
    }

    /// The steps after the RGB conversion.
    pub fn preprocess_rgb(&self, image: &RgbImage) -> Result<PixelValues, PreprocessError> {
        let c = &self.config;
        let resized;
        let mut img = image;
        if let Some((rule, filter)) = c.resize {
            let (h, w) = config::output_size(rule, img.height, img.width).ok_or_else(|| {
                PreprocessError::Input(format!("{rule:?} resizes a {}x{} image to zero pixels", img.width, img.height))
            })?;
            self.limits.check("resized image", w, h, 3)?;
            resized = resize(img, w, h, filter)?;
            img = &resized;
        }
        let (height, width) = c.center_crop.unwrap_or((img.height, img.width));
        self.limits.check("cropped image", width, height, 3)?;
        let (out_h, out_w) = c.pad.unwrap_or((height, width));
        if out_h < height || out_w < width {
            return Err(PreprocessError::Input(format!("pad_size {out_h}x{out_w} is smaller than the {height}x{width} image")));
        }
        self.limits.check("padded image", out_w, out_h, 3)?;

        // Center crop (or pad) offsets, as transformers' center_crop computes them: the source
        // pixel of output (y, x) is (y - dy, x - dx) when inside the image, else 0.
        let offset = |orig: u32, crop: u32| -> i64 {
            let (orig, crop) = (i64::from(orig), i64::from(crop));
            if crop > orig { (crop - orig + 1) / 2 } else { -((orig - crop) / 2) }
        };
        let (dy, dx) = (offset(img.height, height), offset(img.width, width));

        // Per channel affine map of a uint8 level, computed once: f32(f64(v) * factor), then
        // (x - mean) / std in f32. 256 entries per channel.
        let mut table = [[0f32; 256]; 3];
        for (ch, t) in table.iter_mut().enumerate() {
            for (v, out) in t.iter_mut().enumerate() {
                let x = match c.rescale_factor {
                    Some(f) => (v as f64 * f) as f32,
                    None => v as f32,
                };
                *out = match c.normalize {
                    Some((mean, std)) => (x - mean[ch] as f32) / std[ch] as f32,
                    None => x,
                };
            }
        }

        let values = rgb_len(out_w, out_h)?;
        let plane = values / 3;
        let mut data = vec![0f32; values];
        let (in_w, in_h) = (i64::from(img.width), i64::from(img.height));
        for (ch, t) in table.iter().enumerate() {
            let out = &mut data[ch * plane..][..plane];
            for y in 0..height as usize {
                let sy = y as i64 - dy;
                let row = &mut out[y * out_w as usize..][..width as usize];
                for (x, o) in row.iter_mut().enumerate() {
                    let sx = x as i64 - dx;
                    let v = if (0..in_h).contains(&sy) && (0..in_w).contains(&sx) {
                        img.pixels[(sy as usize * img.width as usize + sx as usize) * 3 + ch]
                    } else {
                        0
                    };
                    *o = t[v as usize];
                }
            }
        }
        Ok(PixelValues { data, height: out_h as usize, width: out_w as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_modes() {
        let img = Image::from_rgba(2, 1, vec![200, 100, 0, 0, 200, 100, 0, 128]).unwrap();
        assert_eq!(img.to_rgb(AlphaMode::Drop).pixels(), &[200, 100, 0, 200, 100, 0]);
        // a = 0: white; a = 128: round((c * 128 + 255 * 127) / 255)
        assert_eq!(img.to_rgb(AlphaMode::OverWhite).pixels(), &[255, 255, 255, 227, 177, 127]);
    }

    #[test]
    fn raw_lengths_and_sizes() {
        assert!(matches!(Image::from_rgba(2, 2, vec![0; 15]), Err(PreprocessError::Input(_))));
        assert!(matches!(Image::from_rgb(2, 2, vec![0; 16]), Err(PreprocessError::Input(_))));
        assert!(matches!(Image::from_rgba(0, 2, vec![]), Err(PreprocessError::Input(_))));
        assert!(matches!(Image::from_rgba(u32::MAX, u32::MAX, vec![]), Err(PreprocessError::TooLarge { .. })));
        assert!(matches!(RgbImage::new(3, 1, vec![0; 8]), Err(PreprocessError::Input(_))));
    }

    #[test]
    fn crop_pads_with_zero_levels() {
        let mut config = ImageProcessorConfig::defaults(ProcessorKind::Vit);
        config.resize = None;
        config.center_crop = Some((3, 4));
        config.rescale_factor = None;
        config.normalize = None;
        let p = ImageProcessor::new(config);
        // 2 wide, 5 tall: columns padded (1 left, 1 right), rows cropped from row 1
        let img = RgbImage::new(2, 5, (0..30).map(|v| v as u8 + 1).collect()).unwrap();
        let out = p.preprocess_rgb(&img).unwrap();
        assert_eq!((out.height, out.width), (3, 4));
        let red: Vec<f32> = out.data[..12].to_vec();
        assert_eq!(red, [0., 7., 10., 0., 0., 13., 16., 0., 0., 19., 22., 0.]);
    }

    #[test]
    fn a_thin_image_resized_by_shortest_edge_is_too_large() {
        let p = ImageProcessor::new(ImageProcessorConfig::defaults(ProcessorKind::Clip));
        let img = RgbImage::new(4000, 1, vec![0; 12000]).unwrap();
        assert!(matches!(p.preprocess_rgb(&img), Err(PreprocessError::TooLarge { .. })));
    }
}
