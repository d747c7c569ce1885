//! `PIL.Image.resize` for 8-bit RGB, bit for bit: the resampler transformers' PIL-backed ViT and
//! CLIP processors call (they turn the array into a PIL image, resize, and turn it back).
//!
//! Written by hand after Pillow's `libImaging/Resample.c` (the convolution filters) and
//! `Geometry.c` (`ImagingScaleAffine`, which `resize(NEAREST)` runs). A crate was the alternative:
//! `fast_image_resize` ports the same filters from Pillow-SIMD but stores coefficients as `i16`
//! with at most 15 fractional bits chosen per filter, where Pillow keeps 22 bits in `i32`, so
//! its output lands a level away from PIL's on some pixels; `image::imageops` uses float weights
//! and another support rule. A level of uint8 is 1/255/std ≈ 0.0157 after CLIP's normalisation,
//! larger than the float rounding we otherwise match, so we follow Pillow's arithmetic:
//!
//! - Separable: a horizontal pass into a uint8 image (only the rows the vertical pass reads),
//!   then a vertical pass, each rounding and clipping to uint8; since Pillow 13 the vertical pass
//!   comes first when the height shrinks by more than twice as many pixels as the width (Pillow
//!   12 and older always start horizontally, and differ from us by a level on some pixels of
//!   such resizes). A pass whose size is unchanged is skipped; an unchanged image is copied.
//! - Per output sample: centre `(i + 0.5) * scale`, support `filter support * max(scale, 1)`
//!   (antialiasing when downscaling), window `[trunc(centre - support + 0.5), trunc(centre +
//!   support + 0.5))` clipped to the image, weights `filter((j - centre + 0.5) / max(scale, 1))`
//!   normalised to sum 1 in f64, then to fixed point `trunc(w * 2^22 ± 0.5)`.
//! - Accumulator starts at `2^21` (round half up), result `acc >> 22` clamped to 0..=255.
//!   Pillow sums in `i32`; its two spare bits keep every filter from overflowing there, so the `i64`
//!   here gives the same numbers.
//! - NEAREST: source index `trunc(x)` for `x = scale / 2 + i * scale`, summed step by step in f64.

use super::RgbImage;
use crate::preprocess::PreprocessError;

/// Fixed-point fraction bits of the coefficients (Pillow's `PRECISION_BITS`, 32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// A resampling filter, numbered as PIL's `Image.Resampling` (the `resample` of
/// `preprocessor_config.json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Filter {
    Nearest,
    Box,
    Bilinear,
    Hamming,
    Bicubic,
    Lanczos,
    /// Magic Kernel Sharp 2013 (johncostella.com/magic), support 2.5.
    Mks2013,
    /// Magic Kernel Sharp 2021, support 4.5.
    Mks2021,
}

impl Filter {
    /// PIL's number for the filter: 0 NEAREST, 1 LANCZOS, 2 BILINEAR, 3 BICUBIC, 4 BOX, 5 HAMMING,
    /// 6 MKS2013, 7 MKS2021 (the last two in recent Pillows only).
    pub fn from_pil(n: i64) -> Option<Filter> {
        Some(match n {
            0 => Filter::Nearest,
            1 => Filter::Lanczos,
            2 => Filter::Bilinear,
            3 => Filter::Bicubic,
            4 => Filter::Box,
            5 => Filter::Hamming,
            6 => Filter::Mks2013,
            7 => Filter::Mks2021,
            _ => return None,
        })
    }

    fn support(self) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => 0.5,
            Filter::Bilinear | Filter::Hamming => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
            Filter::Mks2013 => 2.5,
            Filter::Mks2021 => 4.5,
        }
    }

    /// The kernel, as Pillow evaluates it (f64, its constants and its branch order).
    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Nearest | Filter::Box => {
                if x > -0.5 && x <= 0.5 {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    let x = x * std::f64::consts::PI;
                    // Pillow writes `0.54f + 0.46f * cos(x)`: f32 constants widened to f64.
                    x.sin() / x * (f64::from(0.54f32) + f64::from(0.46f32) * x.cos())
                }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
            // Pillow's pow(x, 2) is x * x: IEEE pow is exact for squares that are representable
            // and correctly rounded (glibc) otherwise, as the product is.
            Filter::Mks2013 => {
                let x = x.abs();
                if x < 0.5 {
                    17.0 / 16.0 - 7.0 / 4.0 * (x * x)
                } else if x < 1.5 {
                    (1.0 - x) * (7.0 / 4.0 - x)
                } else if x < 2.5 {
                    let d = x - 5.0 / 2.0;
                    -1.0 / 8.0 * (d * d)
                } else {
                    0.0
                }
            }
            Filter::Mks2021 => {
                let x = x.abs();
                if x < 0.5 {
                    577.0 / 576.0 - 239.0 / 144.0 * (x * x)
                } else if x < 1.5 {
                    35.0 / 36.0 * (x - 1.0) * (x - 239.0 / 140.0)
                } else if x < 2.5 {
                    1.0 / 6.0 * (x - 2.0) * (65.0 / 24.0 - x)
                } else if x < 3.5 {
                    1.0 / 36.0 * (x - 3.0) * (x - 15.0 / 4.0)
                } else if x < 4.5 {
                    let d = x - 9.0 / 2.0;
                    -1.0 / 288.0 * (d * d)
                } else {
                    0.0
                }
            }
        }
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        return 1.0;
    }
    let x = x * std::f64::consts::PI;
    x.sin() / x
}

/// One pass's fixed-point weights: output sample `i` reads input `first[i] .. first[i] + len[i]`
/// with `weights[i * ksize ..][.. len[i]]`.
struct Coefficients {
    ksize: usize,
    first: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i64>, // (out_size, ksize)
}

fn coefficients(in_size: usize, out_size: usize, filter: Filter) -> Result<Coefficients, PreprocessError> {
    let too_large = || PreprocessError::TooLarge { what: "resize", detail: format!("{in_size} -> {out_size} samples") };
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = (support.ceil() as usize).checked_mul(2).and_then(|k| k.checked_add(1)).ok_or_else(too_large)?;
    let total = out_size.checked_mul(ksize).ok_or_else(too_large)?;
    let mut weights = vec![0i64; total];
    let mut first = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut row = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero, as `as` does; a negative start becomes 0.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut sum = 0.0;
        for (j, w) in row[..n].iter_mut().enumerate() {
            *w = filter.weight(((j + xmin) as f64 - center + 0.5) * ss);
            sum += *w;
        }
        let out = &mut weights[i * ksize..][..n];
        for (k, &w) in out.iter_mut().zip(&row[..n]) {
            let w = if sum != 0.0 { w / sum } else { w };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            *k = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 } as i64;
        }
        first.push(xmin);
        len.push(n);
    }
    Ok(Coefficients { ksize, first, len, weights })
}

#[inline]
fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i64 = 1 << (PRECISION_BITS - 1);

/// Resizes `src` to `width` × `height` as `PIL.Image.resize((width, height), filter)` does for an
/// RGB image.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> Result<RgbImage, PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::Input(format!("resize to {width}x{height}")));
    }
    // Checked before any allocation: the output buffer and the horizontal pass's (at most as many
    // rows as the input).
    let out_bytes = super::rgb_len(width, height)?;
    super::rgb_len(width, src.height())?;
    if (width, height) == (src.width(), src.height()) {
        return Ok(src.clone());
    }
    if filter == Filter::Nearest {
        return Ok(nearest(src, width, height, out_bytes));
    }
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let (out_w, out_h) = (width as usize, height as usize);
    let vertical = coefficients(in_h, out_h, filter)?;
    if out_w == in_w {
        return Ok(vertical_pass(src.pixels(), in_w, &vertical, 0, out_h, width, height));
    }
    let horizontal = coefficients(in_w, out_w, filter)?;
    if out_h == in_h {
        let pixels = horizontal_pass(src.pixels(), in_w, 0..in_h, &horizontal, out_w);
        return Ok(RgbImage::from_parts(width, height, pixels));
    }
    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks
    // by more than twice as many pixels as the width; earlier Pillows always start horizontally.
    // The intermediate image is rounded to uint8, so the order changes some pixels by a level.
    let shrink_h = in_h as i64 - out_h as i64;
    let shrink_w = in_w as i64 - out_w as i64;
    if shrink_h > 0 && shrink_h > shrink_w.saturating_mul(2) {
        // (out_h, in_w, 3): no larger than the input
        let temp = vertical_pass(src.pixels(), in_w, &vertical, 0, out_h, src.width(), height);
        let pixels = horizontal_pass(temp.pixels(), in_w, 0..out_h, &horizontal, out_w);
        return Ok(RgbImage::from_parts(width, height, pixels));
    }
    // Horizontal first, over only the input rows some output row reads.
    let rows_from = vertical.first[0];
    let rows_to = vertical.first[out_h - 1] + vertical.len[out_h - 1];
    let temp = horizontal_pass(src.pixels(), in_w, rows_from..rows_to, &horizontal, out_w);
    Ok(vertical_pass(&temp, out_w, &vertical, rows_from, out_h, width, height))
}

/// (rows.len(), out_w, 3) from (.., in_w, 3).
fn horizontal_pass(src: &[u8], in_w: usize, rows: std::ops::Range<usize>, c: &Coefficients, out_w: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * out_w * 3);
    for y in rows {
        let row = &src[y * in_w * 3..][..in_w * 3];
        for x in 0..out_w {
            let k = &c.weights[x * c.ksize..][..c.len[x]];
            let window = &row[c.first[x] * 3..][..c.len[x] * 3];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (&k, p) in k.iter().zip(window.chunks_exact(3)) {
                r += i64::from(p[0]) * k;
                g += i64::from(p[1]) * k;
                b += i64::from(p[2]) * k;
            }
            out.extend_from_slice(&[clip8(r), clip8(g), clip8(b)]);
        }
    }
    out
}

/// (out_h, w, 3) from `src` (.., w, 3) whose row 0 is input row `row0`.
fn vertical_pass(src: &[u8], w: usize, c: &Coefficients, row0: usize, out_h: usize, width: u32, height: u32) -> RgbImage {
    let stride = w * 3;
    let mut out = Vec::with_capacity(out_h * stride);
    let mut acc = vec![0i64; stride];
    for y in 0..out_h {
        acc.fill(HALF);
        let k = &c.weights[y * c.ksize..][..c.len[y]];
        for (j, &k) in k.iter().enumerate() {
            let row = &src[(c.first[y] - row0 + j) * stride..][..stride];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += i64::from(p) * k;
            }
        }
        out.extend(acc.iter().map(|&a| clip8(a)));
    }
    RgbImage::from_parts(width, height, out)
}

/// `ImagingScaleAffine`: positions accumulated in f64 from half a step, truncated.
fn nearest(src: &RgbImage, width: u32, height: u32, out_bytes: usize) -> RgbImage {
    let (in_w, in_h) = (src.width() as usize, src.height() as usize);
    let positions = |in_size: usize, out_size: u32| -> Vec<Option<usize>> {
        let step = in_size as f64 / f64::from(out_size);
        let mut at = step * 0.5;
        (0..out_size)
            .map(|_| {
                let i = if at < 0.0 { None } else { Some(at as usize) };
                at += step;
                i.filter(|&i| i < in_size)
            })
            .collect()
    };
    let xs = positions(in_w, width);
    let ys = positions(in_h, height);
    let mut out = vec![0u8; out_bytes];
    let src = src.pixels();
    for (row, y) in out.chunks_exact_mut(width as usize * 3).zip(&ys) {
        let Some(y) = *y else { continue };
        for (px, x) in row.chunks_exact_mut(3).zip(&xs) {
            if let Some(x) = *x {
                px.copy_from_slice(&src[(y * in_w + x) * 3..][..3]);
            }
        }
    }
    RgbImage::from_parts(width, height, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Filter; 8] = [
        Filter::Nearest,
        Filter::Box,
        Filter::Bilinear,
        Filter::Hamming,
        Filter::Bicubic,
        Filter::Lanczos,
        Filter::Mks2013,
        Filter::Mks2021,
    ];

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for filter in ALL[1..].iter().copied() {
            for (i, o) in [(97, 32), (5, 224), (300, 7), (1, 3), (3, 1)] {
                let c = coefficients(i, o, filter).unwrap();
                for x in 0..o {
                    let s: i64 = c.weights[x * c.ksize..][..c.len[x]].iter().sum();
                    assert!((s - (1 << PRECISION_BITS)).abs() <= c.len[x] as i64, "{filter:?} {i}->{o} at {x}: {s}");
                    assert!(c.first[x] + c.len[x] <= i);
                }
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::new(7, 5, [10u8, 200, 255].repeat(35)).unwrap();
        for filter in ALL {
            for (w, h) in [(3, 2), (20, 11), (7, 9), (1, 1)] {
                let out = resize(&img, w, h, filter).unwrap();
                assert!(out.pixels().chunks_exact(3).all(|p| p == [10, 200, 255]), "{filter:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn zero_target_is_refused() {
        let img = RgbImage::new(2, 2, vec![0; 12]).unwrap();
        assert!(matches!(resize(&img, 0, 3, Filter::Bilinear), Err(PreprocessError::Input(_))));
    }
}
