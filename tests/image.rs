//! Image pre-processing against transformers' PIL-backed ViT and CLIP processors
//! (tests/fixtures/image/, made by scripts/fixtures/make_image_fixtures.py), and hostile inputs:
//! run natively and compiled to wasm32 in headless Chromium.
//!
//! Tolerances: from a PNG (or raw pixels) the output must be bit-identical to transformers'
//! float32 array (the resampler reproduces PIL's integer arithmetic, the normalisation NumPy's
//! float32 arithmetic). From a JPEG, our decoder (zune-jpeg) differs from PIL's libjpeg-turbo by a
//! few levels on some pixels, so those cases allow `JPEG_LEVELS` uint8 levels after resizing
//! (`JPEG_LEVELS / 255 / std` after normalising), and the same cases run exactly from PIL's own
//! decoded pixels.

use hugrt::preprocess::PreprocessError;
use hugrt::preprocess::image::{AlphaMode, Filter, Image, ImageLimits, ImageProcessor, RgbImage, resize};
use serde_json::Value;
use sha2::{Digest, Sha256};

mod common;
use common::log;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A test that runs natively and in the browser.
macro_rules! both {
    ($($(#[$meta:meta])* fn $name:ident() $body:block)*) => {$(
        $(#[$meta])*
        #[cfg_attr(not(target_arch = "wasm32"), test)]
        #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
        fn $name() $body
    )*};
}

/// Largest uint8 gap allowed between our JPEG decode and PIL's, before and after resizing.
const JPEG_LEVELS: f32 = 4.0;

const EXPECTED: &str = include_str!("fixtures/image/expected.json");
const GRAD: &[u8] = include_bytes!("fixtures/image/grad_97x61.png");
const JPEG: &[u8] = include_bytes!("fixtures/image/photo_300x200.jpg");
const JPEG_BY_PIL: &[u8] = include_bytes!("fixtures/image/photo_300x200.pil.png");

fn image_bytes(name: &str) -> &'static [u8] {
    match name {
        "grad_97x61.png" => GRAD,
        "photo_300x200.jpg" => JPEG,
        "photo_300x200.pil.png" => JPEG_BY_PIL,
        "alpha_33x47.png" => include_bytes!("fixtures/image/alpha_33x47.png"),
        "tiny_5x3.png" => include_bytes!("fixtures/image/tiny_5x3.png"),
        "gray_40x30.png" => include_bytes!("fixtures/image/gray_40x30.png"),
        "palette_24x20.png" => include_bytes!("fixtures/image/palette_24x20.png"),
        other => panic!("no fixture image {other}"),
    }
}

fn config_bytes(name: &str) -> &'static [u8] {
    match name {
        "vit_default" => include_bytes!("fixtures/image/configs/vit_default.json"),
        "clip_default" => include_bytes!("fixtures/image/configs/clip_default.json"),
        "clip_openai" => include_bytes!("fixtures/image/configs/clip_openai.json"),
        "vit_32" => include_bytes!("fixtures/image/configs/vit_32.json"),
        "clip_40_crop_32" => include_bytes!("fixtures/image/configs/clip_40_crop_32.json"),
        "clip_pad" => include_bytes!("fixtures/image/configs/clip_pad.json"),
        "lanczos_plain" => include_bytes!("fixtures/image/configs/lanczos_plain.json"),
        "nearest_imagenet" => include_bytes!("fixtures/image/configs/nearest_imagenet.json"),
        "hamming" => include_bytes!("fixtures/image/configs/hamming.json"),
        "box_no_rescale" => include_bytes!("fixtures/image/configs/box_no_rescale.json"),
        "mks2021_wide" => include_bytes!("fixtures/image/configs/mks2021_wide.json"),
        "mks2013_tall" => include_bytes!("fixtures/image/configs/mks2013_tall.json"),
        other => panic!("no fixture config {other}"),
    }
}

/// The whole expected output of a case stored in full (f32 LE).
fn output_bytes(name: &str) -> &'static [u8] {
    macro_rules! outputs {
        ($($config:literal),*) => {
            match name {
                $(
                    concat!($config, "__grad_97x61_png.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__grad_97x61_png.bin")),
                    concat!($config, "__photo_300x200_jpg.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__photo_300x200_jpg.bin")),
                    concat!($config, "__photo_300x200_pil_png.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__photo_300x200_pil_png.bin")),
                    concat!($config, "__alpha_33x47_png.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__alpha_33x47_png.bin")),
                    concat!($config, "__tiny_5x3_png.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__tiny_5x3_png.bin")),
                    concat!($config, "__gray_40x30_png.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__gray_40x30_png.bin")),
                    concat!($config, "__palette_24x20_png.bin") => include_bytes!(concat!("fixtures/image/out/", $config, "__palette_24x20_png.bin")),
                )*
                other => panic!("no fixture output {other}"),
            }
        };
    }
    outputs!("vit_32", "clip_40_crop_32", "clip_pad", "lanczos_plain", "nearest_imagenet", "hamming", "box_no_rescale", "mks2021_wide", "mks2013_tall")
}

struct Case {
    config: String,
    image: String,
    shape: [usize; 3],
    /// Full output, or (sha256, samples).
    expected: Expected,
}

enum Expected {
    Full(Vec<f32>),
    Hashed { sha256: String, samples: Vec<(usize, f32)> },
}

fn cases() -> Vec<Case> {
    let v: Value = serde_json::from_str(EXPECTED).expect("expected.json");
    let cases = v["cases"].as_array().expect("cases");
    cases
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().expect(k).to_string();
            let shape: Vec<usize> = c["shape"].as_array().expect("shape").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
            let expected = if let Some(bin) = c["bin"].as_str() {
                let bytes = output_bytes(bin);
                Expected::Full(bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
            } else {
                let samples = c["samples"]
                    .as_array()
                    .expect("samples")
                    .iter()
                    .map(|p| (p[0].as_u64().expect("index") as usize, p[1].as_f64().expect("value") as f32))
                    .collect();
                Expected::Hashed { sha256: s("sha256"), samples }
            };
            Case { config: s("config"), image: s("image"), shape: [shape[0], shape[1], shape[2]], expected }
        })
        .collect()
}

fn processor(config: &str) -> ImageProcessor {
    ImageProcessor::from_config(config_bytes(config)).unwrap_or_else(|e| panic!("{config}: {e}"))
}

/// The smallest std of a config: one uint8 level is 1/255/std after normalising.
fn level(p: &ImageProcessor) -> f32 {
    let scale = p.config.rescale_factor.unwrap_or(1.0) as f32;
    let std = p.config.normalize.map_or(1.0, |(_, s)| s.iter().cloned().fold(f64::INFINITY, f64::min) as f32);
    scale / std
}

/// Max |ours - expected| over the compared values, where, and whether the whole array is
/// bit-identical (the hash for hashed cases).
fn compare(case: &Case, ours: &[f32]) -> (f32, usize, bool) {
    let worst = |pairs: &mut dyn Iterator<Item = (usize, f32, f32)>| {
        pairs.fold((0f32, 0usize), |(m, at), (i, a, b)| if (a - b).abs() > m { ((a - b).abs(), i) } else { (m, at) })
    };
    match &case.expected {
        Expected::Full(want) => {
            assert_eq!(ours.len(), want.len());
            let (m, at) = worst(&mut ours.iter().zip(want).enumerate().map(|(i, (&a, &b))| (i, a, b)));
            let exact = ours.iter().zip(want).all(|(a, b)| a.to_bits() == b.to_bits());
            (m, at, exact)
        }
        Expected::Hashed { sha256, samples } => {
            let mut h = Sha256::new();
            for v in ours {
                h.update(v.to_le_bytes());
            }
            let exact = hex::encode(h.finalize()) == *sha256;
            let (m, at) = worst(&mut samples.iter().map(|&(i, b)| (i, ours[i], b)));
            (m, at, exact)
        }
    }
}

fn run(case: &Case, image: &Image) -> Vec<f32> {
    let p = processor(&case.config);
    let out = p.preprocess(image).unwrap_or_else(|e| panic!("{} on {}: {e}", case.config, case.image));
    assert_eq!([3, out.height, out.width], case.shape, "{} on {}", case.config, case.image);
    out.data
}

/// Decoded pixels: (width, height, RGB bytes).
fn rgb(bytes: &[u8]) -> RgbImage {
    Image::decode(bytes).expect("decodes").to_rgb(AlphaMode::Drop)
}

/// Max and mean uint8 gap between two images of the same size.
fn pixel_gap(a: &RgbImage, b: &RgbImage) -> (u8, f64) {
    assert_eq!((a.width(), a.height()), (b.width(), b.height()));
    let d: Vec<u8> = a.pixels().iter().zip(b.pixels()).map(|(x, y)| x.abs_diff(*y)).collect();
    (d.iter().copied().max().unwrap_or(0), d.iter().map(|&x| f64::from(x)).sum::<f64>() / d.len() as f64)
}

fn png_file(width: u32, height: u32, ihdr_tail: [u8; 5], idat: &[u8]) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&ihdr_tail);
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// 8-bit RGB, deflate, no filter method, no interlace.
const RGB8: [u8; 5] = [8, 2, 0, 0, 0];
/// A zlib stream of a few zero bytes (a real IDAT for a tiny image).
const ZLIB_ZEROS: [u8; 11] = [0x78, 0x9c, 0x63, 0x60, 0x40, 0x05, 0x00, 0x00, 0x0d, 0x00, 0x01];

both! {
fn png_fixtures_match_transformers_exactly() {
    let mut worst = 0f32;
    let mut n = 0;
    for case in cases().iter().filter(|c| c.image != "photo_300x200.jpg") {
        let image = Image::decode(image_bytes(&case.image)).unwrap_or_else(|e| panic!("{}: {e}", case.image));
        let ours = run(case, &image);
        let (m, at, exact) = compare(case, &ours);
        assert!(exact, "{} on {}: max |diff| {m} at {at}", case.config, case.image);
        worst = worst.max(m);
        n += 1;
    }
    log(&format!("{n} PNG cases bit-identical to transformers (max |diff| {worst})"));
}

fn jpeg_decoder_is_within_a_few_levels_of_pil() {
    let ours = rgb(JPEG);
    let pil = rgb(JPEG_BY_PIL);
    let (max, mean) = pixel_gap(&ours, &pil);
    log(&format!("JPEG 300x200 4:2:0, zune-jpeg vs PIL: max {max} levels, mean {mean:.3}"));
    assert!(f32::from(max) <= JPEG_LEVELS && mean < 0.5, "max {max}, mean {mean}");
}

fn jpeg_fixtures_within_tolerance() {
    let image = Image::decode(JPEG).expect("decodes");
    for case in cases().iter().filter(|c| c.image == "photo_300x200.jpg") {
        let p = processor(&case.config);
        let ours = run(case, &image);
        let (m, at, _) = compare(case, &ours);
        log(&format!("JPEG {}: max |diff| {m:.5} at {at} = {:.2} levels", case.config, m / level(&p)));
        assert!(m <= JPEG_LEVELS * level(&p) + 1e-6, "{}: max |diff| {m} at {at}", case.config);
    }
}

fn jpeg_cases_exact_from_pil_decoded_pixels() {
    // The same references, fed PIL's decode of the JPEG as raw RGB pixels.
    let pil = rgb(JPEG_BY_PIL);
    let image = Image::from_rgb(pil.width(), pil.height(), pil.into_pixels()).expect("raw RGB");
    for case in cases().iter().filter(|c| c.image == "photo_300x200.jpg") {
        let (m, at, exact) = compare(case, &run(case, &image));
        assert!(exact, "{}: max |diff| {m} at {at}", case.config);
    }
}

fn raw_rgba_gives_the_decoded_pngs_numbers() {
    // A page's ImageData of the RGBA fixture: the same output as decoding the PNG.
    let decoded = Image::decode(image_bytes("alpha_33x47.png")).expect("decodes");
    assert!(decoded.has_alpha());
    assert_ne!(decoded.to_rgb(AlphaMode::Drop), decoded.to_rgb(AlphaMode::OverWhite));
    let from_raw = Image::from_rgba(decoded.width(), decoded.height(), decoded.pixels().to_vec()).expect("raw RGBA");
    assert_eq!(from_raw, decoded);
    for config in ["vit_32", "clip_40_crop_32"] {
        let p = processor(config);
        assert_eq!(p.preprocess(&from_raw).expect("runs"), p.preprocess(&decoded).expect("runs"));
    }
}

fn exif_orientation_is_applied() {
    let ours = Image::decode(include_bytes!("fixtures/image/oriented_6.jpg")).expect("decodes").to_rgb(AlphaMode::Drop);
    let pil = rgb(include_bytes!("fixtures/image/oriented_6.transposed.png"));
    assert_eq!((ours.width(), ours.height()), (8, 16));
    let (max, _) = pixel_gap(&ours, &pil);
    assert!(f32::from(max) <= JPEG_LEVELS * 2.0, "max gap {max}");
    // the red quarter moved to the top right
    assert!(ours.pixels()[(7 * 3)..(7 * 3 + 3)][0] > 180);
}

fn resize_is_identity_at_the_same_size() {
    let img = rgb(GRAD);
    for filter in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
        assert_eq!(resize(&img, img.width(), img.height(), filter).expect("resizes"), img);
    }
}

fn truncated_png_is_a_decode_error() {
    for cut in [8, 20, 33, 60, GRAD.len() / 2, GRAD.len() - 13] {
        let err = Image::decode(&GRAD[..cut]).expect_err("truncated");
        assert!(matches!(err, PreprocessError::Decode { .. }), "cut at {cut}: {err:?}");
    }
    let err = Image::decode(&JPEG[..JPEG.len() / 2]);
    // zune-jpeg, like libjpeg, may fill a cut-short scan with grey; if it refuses, it must be Decode.
    if let Err(e) = err {
        assert!(matches!(e, PreprocessError::Decode { .. }), "{e:?}");
    }
}

fn huge_png_header_is_refused_before_allocating() {
    let png = png_file(30000, 30000, RGB8, &ZLIB_ZEROS);
    let err = Image::decode(&png).expect_err("too large");
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err:?}");
    // Within the side limits but past the byte limit: 16000 x 16000 RGB is 768 MB.
    let err = Image::decode(&png_file(16000, 16000, RGB8, &ZLIB_ZEROS)).expect_err("too large");
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err:?}");
    // Tighter limits of one's own.
    let limits = ImageLimits { max_width: 64, max_height: 64, max_bytes: 1 << 20 };
    let err = Image::decode_with_limits(GRAD, &limits).expect_err("97 wide");
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err:?}");
}

fn huge_jpeg_header_is_refused_before_allocating() {
    // Patch the SOF0 frame's height and width (FF C0, length, precision, then height, width).
    let mut jpeg = JPEG.to_vec();
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("SOF0");
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x75, 0x30, 0x75, 0x30]); // 30000 x 30000
    let err = Image::decode(&jpeg).expect_err("too large");
    assert!(matches!(err, PreprocessError::TooLarge { .. }), "{err:?}");
}

fn zero_size_images_are_refused() {
    let err = Image::decode(&png_file(0, 5, RGB8, &ZLIB_ZEROS)).expect_err("zero width");
    assert!(matches!(err, PreprocessError::Decode { .. } | PreprocessError::Input(_)), "{err:?}");
    assert!(matches!(Image::from_rgba(0, 0, vec![]), Err(PreprocessError::Input(_))));
    assert!(matches!(Image::from_rgba(3, 0, vec![]), Err(PreprocessError::Input(_))));
}

fn rgba_with_the_wrong_length_is_refused() {
    for len in [0, 23, 25, 4 * 6 * 3, 4 * 6 * 4 + 1] {
        assert!(matches!(Image::from_rgba(4, 6, vec![7; len]), Err(PreprocessError::Input(_))), "{len}");
    }
    assert!(Image::from_rgba(4, 6, vec![7; 96]).is_ok());
    // A length that would overflow a 32-bit usize on wasm32.
    assert!(matches!(Image::from_rgba(70000, 70000, vec![]), Err(PreprocessError::TooLarge { .. })));
}

fn garbage_is_a_decode_error() {
    for bytes in [&b""[..], b"hello, world", &[0u8; 64], b"\x89PNG\r\n\x1a\n", b"GIF89a\x01\x00\x01\x00", &[0xFF, 0xD8, 0xFF, 0xE0, 0, 16]] {
        let err = Image::decode(bytes).expect_err("garbage");
        assert!(matches!(err, PreprocessError::Decode { .. }), "{bytes:?}: {err:?}");
    }
    // A valid header and CRCs but an IDAT that is not zlib.
    let err = Image::decode(&png_file(4, 4, RGB8, b"not zlib at all")).expect_err("bad IDAT");
    assert!(matches!(err, PreprocessError::Decode { .. }), "{err:?}");
}

fn mutated_files_never_panic() {
    // Seeded byte flips, truncations and splices of the PNG and JPEG fixtures: every result is an
    // image or a typed error. (xorshift64: no rand dependency in this test.)
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut errors = 0;
    for source in [GRAD, JPEG, include_bytes!("fixtures/image/alpha_33x47.png").as_slice(), include_bytes!("fixtures/image/palette_24x20.png").as_slice()] {
        for _ in 0..100 {
            let mut bytes = source.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % bytes.len() as u64) as usize;
                match next() % 3 {
                    0 => bytes[at] ^= 1 << (next() % 8),
                    1 => bytes[at] = (next() % 256) as u8,
                    _ => bytes.truncate(at.max(1)),
                }
            }
            match Image::decode(&bytes) {
                Ok(img) => {
                    let p = processor("clip_40_crop_32");
                    p.preprocess(&img).expect("a decoded image preprocesses");
                }
                Err(PreprocessError::Decode { .. } | PreprocessError::TooLarge { .. } | PreprocessError::Input(_)) => errors += 1,
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
    }
    log(&format!("mutated files: {errors} of 400 refused, the rest decoded"));
}

fn unknown_processor_classes_are_config_errors() {
    for json in [&br#"{"image_processor_type": "SiglipImageProcessor"}"#[..], b"{}", b"not json", br#"{"image_processor_type": "ViTImageProcessor", "resample": 8}"#] {
        assert!(matches!(ImageProcessor::from_config(json), Err(PreprocessError::Config(_))));
    }
}
}

