//! Qwen2-VL's image processor: "smart resize" to multiples of 28 pixels within a pixel budget,
//! bicubic resampling that reproduces Pillow's (the slow HF processor resizes with PIL),
//! rescaling, CLIP normalisation and patchification into rows of
//! `channels * temporal_patch * patch * patch` values ordered by 2x2 merge window.

use std::path::Path;

use image::RgbImage;
use serde_json::Value;

use crate::ModelError;

/// An image could not be prepared for the model.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImageError {
    /// The image has a zero side.
    #[error("image of {width}x{height} pixels is empty")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// Qwen2-VL refuses aspect ratios above 200.
    #[error("image of {width}x{height} pixels has an aspect ratio above 200")]
    AspectRatio {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The bytes are not an image this build decodes (PNG, JPEG).
    #[error("cannot decode image: {0}")]
    Decode(String),
}

/// The settings of `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Fewest pixels after resizing.
    pub min_pixels: usize,
    /// Most pixels after resizing.
    pub max_pixels: usize,
    /// Side of a patch (14).
    pub patch_size: usize,
    /// Frames per temporal patch (2).
    pub temporal_patch_size: usize,
    /// Patches merged per side (2).
    pub merge_size: usize,
    /// Per-channel mean after rescaling.
    pub mean: [f32; 3],
    /// Per-channel standard deviation after rescaling.
    pub std: [f32; 3],
    /// Factor from 0..255 to the normalised range (1/255).
    pub rescale: f32,
    /// A first resize within these pixel bounds before the processor's own, as GME's
    /// `fetch_image` does (qwen-vl-utils' rules: sides rounded to at least one factor).
    pub pre_resize: Option<PixelBounds>,
}

/// Lower and upper bounds on the pixels of a resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelBounds {
    /// Fewest pixels.
    pub min_pixels: usize,
    /// Most pixels.
    pub max_pixels: usize,
}

/// The largest aspect ratio Qwen2-VL accepts.
const MAX_RATIO: f64 = 200.0;

/// OpenAI CLIP's normalisation, which Qwen2-VL uses.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

impl Default for ImageProcessor {
    /// Qwen2-VL's defaults: 56*56 to 28*28*1280 pixels.
    fn default() -> Self {
        ImageProcessor {
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            mean: CLIP_MEAN,
            std: CLIP_STD,
            rescale: 1.0 / 255.0,
            pre_resize: None,
        }
    }
}

/// An image ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedImage {
    /// `grid_t * grid_h * grid_w` rows of `patch_dim` values, row-major.
    pub pixels: Vec<f32>,
    /// Patches along time, height and width.
    pub grid: [usize; 3],
}

impl ProcessedImage {
    /// Patches (rows of `pixels`).
    pub fn patches(&self) -> usize {
        self.grid.iter().product()
    }

    /// Language-model tokens this image becomes: patches / merge².
    pub fn tokens(&self, merge_size: usize) -> usize {
        self.patches() / (merge_size * merge_size)
    }
}

impl ImageProcessor {
    /// Reads `preprocessor_config.json` (missing keys take Qwen2-VL's defaults).
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let v: Value = crate::read_json(path)?;
        let bad = |message: String| ModelError::BadFile {
            path: path.to_path_buf(),
            message,
        };
        let mut p = ImageProcessor::default();
        let uint = |x: Option<&Value>| x.and_then(Value::as_u64).map(|x| x as usize);
        let size = v.get("size");
        if let Some(m) = uint(v.get("min_pixels"))
            .or_else(|| uint(size.and_then(|s| s.get("shortest_edge"))))
            .or_else(|| uint(size.and_then(|s| s.get("min_pixels"))))
        {
            p.min_pixels = m;
        }
        if let Some(m) = uint(v.get("max_pixels"))
            .or_else(|| uint(size.and_then(|s| s.get("longest_edge"))))
            .or_else(|| uint(size.and_then(|s| s.get("max_pixels"))))
        {
            p.max_pixels = m;
        }
        if let Some(x) = uint(v.get("patch_size")) {
            p.patch_size = x;
        }
        if let Some(x) = uint(v.get("temporal_patch_size")) {
            p.temporal_patch_size = x;
        }
        if let Some(x) = uint(v.get("merge_size")) {
            p.merge_size = x;
        }
        let triple = |key: &str| -> Result<Option<[f32; 3]>, ModelError> {
            match v.get(key).and_then(Value::as_array) {
                None => Ok(None),
                Some(a) => {
                    let xs: Vec<f32> = a
                        .iter()
                        .filter_map(|x| x.as_f64())
                        .map(|x| x as f32)
                        .collect();
                    xs.try_into()
                        .map(Some)
                        .map_err(|_| bad(format!("{key} is not three numbers")))
                }
            }
        };
        if let Some(m) = triple("image_mean")? {
            p.mean = m;
        }
        if let Some(s) = triple("image_std")? {
            p.std = s;
        }
        if let Some(r) = v.get("rescale_factor").and_then(Value::as_f64) {
            p.rescale = r as f32;
        }
        if let Some(r) = v.get("resample").and_then(Value::as_u64)
            && r != 3
        {
            return Err(bad(format!(
                "resample {r} (only 3, bicubic, is implemented)"
            )));
        }
        if p.patch_size == 0 || p.merge_size == 0 || p.temporal_patch_size == 0 {
            return Err(bad("zero patch, merge or temporal patch size".into()));
        }
        if p.min_pixels > p.max_pixels {
            return Err(bad(format!(
                "min_pixels {} exceeds max_pixels {}",
                p.min_pixels, p.max_pixels
            )));
        }
        Ok(p)
    }

    /// Side that resized images are multiples of (patch * merge = 28).
    pub fn factor(&self) -> usize {
        self.patch_size * self.merge_size
    }

    /// The size `(height, width)` an image is resized to: each side a multiple of
    /// [`factor`](Self::factor), the area within `min_pixels..=max_pixels`, the aspect ratio kept
    /// as closely as possible. Mirrors HF's `smart_resize`, including Python's round-half-even.
    pub fn target_size(&self, height: u32, width: u32) -> Result<(usize, usize), ImageError> {
        self.smart_resize(height, width, self.min_pixels, self.max_pixels, false)
    }

    /// `smart_resize` with explicit bounds; `at_least_factor` is qwen-vl-utils' variant, which
    /// rounds each side to at least one factor before checking the bounds.
    fn smart_resize(
        &self,
        height: u32,
        width: u32,
        min_pixels: usize,
        max_pixels: usize,
        at_least_factor: bool,
    ) -> Result<(usize, usize), ImageError> {
        if height == 0 || width == 0 {
            return Err(ImageError::Empty { width, height });
        }
        let (mut h, mut w) = (f64::from(height), f64::from(width));
        if h.max(w) / h.min(w) > MAX_RATIO {
            if !at_least_factor {
                return Err(ImageError::AspectRatio { width, height });
            }
            // qwen-vl-utils (as GME ships it) clamps the long side instead of refusing.
            if h > w {
                h = w * MAX_RATIO;
            } else {
                w = h * MAX_RATIO;
            }
        }
        let f = self.factor() as f64;
        let floor = if at_least_factor { f } else { 0.0 };
        let mut h_bar = floor.max((h / f).round_ties_even() * f);
        let mut w_bar = floor.max((w / f).round_ties_even() * f);
        if h_bar * w_bar > max_pixels as f64 {
            let beta = ((h * w) / max_pixels as f64).sqrt();
            let floor = if at_least_factor { 0.0 } else { f };
            h_bar = floor.max((h / beta / f).floor() * f);
            w_bar = floor.max((w / beta / f).floor() * f);
        } else if h_bar * w_bar < min_pixels as f64 {
            let beta = (min_pixels as f64 / (h * w)).sqrt();
            h_bar = (h * beta / f).ceil() * f;
            w_bar = (w * beta / f).ceil() * f;
        }
        Ok((h_bar as usize, w_bar as usize))
    }

    /// The size after the optional pre-resize (GME's `fetch_image`), `(height, width)`.
    pub fn pre_resize_size(&self, height: u32, width: u32) -> Result<(usize, usize), ImageError> {
        match self.pre_resize {
            None => Ok((height as usize, width as usize)),
            Some(b) => self.smart_resize(height, width, b.min_pixels, b.max_pixels, true),
        }
    }

    /// Decodes image bytes (PNG or JPEG) and prepares them.
    pub fn process_bytes(&self, bytes: &[u8]) -> Result<ProcessedImage, ImageError> {
        let img = image::load_from_memory(bytes).map_err(|e| ImageError::Decode(e.to_string()))?;
        self.process(&to_rgb(img))
    }

    /// Resizes, normalises and patchifies an RGB image.
    pub fn process(&self, img: &RgbImage) -> Result<ProcessedImage, ImageError> {
        Ok(self.patchify(&self.resize(img)?))
    }

    /// The image at the size the model sees, after the pre-resize (if any) and the
    /// processor's resize.
    pub fn resize(&self, img: &RgbImage) -> Result<RgbImage, ImageError> {
        let (ph, pw) = self.pre_resize_size(img.height(), img.width())?;
        let pre = resize_bicubic(img, pw as u32, ph as u32);
        let (th, tw) = self.target_size(pre.height(), pre.width())?;
        Ok(resize_bicubic(&pre, tw as u32, th as u32))
    }

    /// Normalises and patchifies an image already at its target size.
    pub fn patchify(&self, img: &RgbImage) -> ProcessedImage {
        let (p, m, tp) = (self.patch_size, self.merge_size, self.temporal_patch_size);
        let (w, h) = (img.width() as usize, img.height() as usize);
        let (gh, gw) = (h / p, w / p);
        let raw = img.as_raw();
        let patch_dim = 3 * tp * p * p;
        let mut pixels = Vec::with_capacity(gh * gw * patch_dim);
        // Patches are ordered by merge window, then row and column inside it; each patch holds
        // channel-major, then temporal (the frame repeated), then row-major pixels.
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for ih in 0..m {
                    for iw in 0..m {
                        let (py, px) = ((bh * m + ih) * p, (bw * m + iw) * p);
                        for c in 0..3 {
                            for _ in 0..tp {
                                for y in 0..p {
                                    let row = ((py + y) * w + px) * 3;
                                    for x in 0..p {
                                        // HF rescales then normalises: (v / 255 - mean) / std.
                                        let v = f32::from(raw[row + x * 3 + c]) * self.rescale;
                                        pixels.push((v - self.mean[c]) / self.std[c]);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        ProcessedImage {
            pixels,
            grid: [1, gh, gw],
        }
    }
}

/// Converts any decoded image to RGB; transparent pixels are composited onto white, as HF's
/// `convert_to_rgb` does.
pub fn to_rgb(img: image::DynamicImage) -> RgbImage {
    if !img.color().has_alpha() {
        return img.into_rgb8();
    }
    let rgba = img.into_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = u32::from(p.0[3]);
        for c in 0..3 {
            let v = u32::from(p.0[c]) * a + 255 * (255 - a);
            o.0[c] = ((v + 127) / 255) as u8;
        }
    }
    out
}

/// Pillow's fixed-point precision for 8-bit resampling.
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Pillow's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
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

/// Per output pixel: the first input pixel and fixed-point weights, as Pillow computes them
/// (the kernel widens by the scale when shrinking, i.e. it antialiases).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C's (int) cast truncates toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = (((center + support + 0.5) as i64) as usize).min(in_size);
            let weights: Vec<f64> = (xmin..xmax)
                .map(|x| bicubic((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { *w };
                    let v = w * f64::from(1u32 << PRECISION_BITS);
                    (if w < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes with Pillow's bicubic filter and 8-bit fixed-point arithmetic: a horizontal pass,
/// rounded to 8 bits, then a vertical pass; a pass is skipped when its side does not change.
pub fn resize_bicubic(img: &RgbImage, width: u32, height: u32) -> RgbImage {
    if (width, height) == img.dimensions() {
        return img.clone();
    }
    let (w0, h0) = (img.width() as usize, img.height() as usize);
    let (w1, h1) = (width as usize, height as usize);
    let mut cur = img.as_raw().clone();
    let mut cur_w = w0;
    let round = 1i64 << (PRECISION_BITS - 1);
    if w1 != w0 {
        let coeffs = coefficients(w0, w1);
        let mut out = vec![0u8; w1 * h0 * 3];
        for y in 0..h0 {
            let row = &cur[y * w0 * 3..(y + 1) * w0 * 3];
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..3 {
                    let mut acc = round;
                    for (i, &kw) in k.iter().enumerate() {
                        acc += i64::from(row[(xmin + i) * 3 + c]) * i64::from(kw);
                    }
                    out[(y * w1 + xx) * 3 + c] = clip8(acc);
                }
            }
        }
        cur = out;
        cur_w = w1;
    }
    if h1 != h0 {
        let coeffs = coefficients(h0, h1);
        let mut out = vec![0u8; cur_w * h1 * 3];
        for (yy, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..cur_w {
                for c in 0..3 {
                    let mut acc = round;
                    for (i, &kw) in k.iter().enumerate() {
                        acc += i64::from(cur[((ymin + i) * cur_w + x) * 3 + c]) * i64::from(kw);
                    }
                    out[(yy * cur_w + x) * 3 + c] = clip8(acc);
                }
            }
        }
        cur = out;
    }
    RgbImage::from_raw(width, height, cur).unwrap_or_else(|| RgbImage::new(width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_sizes_follow_smart_resize() {
        let p = ImageProcessor::default();
        // Multiples of 28, rounded half to even: 42 / 28 = 1.5 rounds to 2, 70 / 28 = 2.5 to 2.
        assert_eq!(p.target_size(42, 70).unwrap_or_default(), (56, 56));
        assert_eq!(p.target_size(1000, 800).unwrap_or_default(), (1008, 812));
        // Too small: scaled up to min_pixels.
        assert_eq!(p.target_size(10, 10).unwrap_or_default(), (56, 56));
        assert!(matches!(
            p.target_size(10, 2100),
            Err(ImageError::AspectRatio { .. })
        ));
        assert!(matches!(p.target_size(0, 5), Err(ImageError::Empty { .. })));
        let big = p.target_size(4000, 3000).unwrap_or_default();
        assert!(big.0 * big.1 <= p.max_pixels && big.0 % 28 == 0 && big.1 % 28 == 0);
    }

    #[test]
    fn resizing_to_the_same_size_is_the_identity() {
        let img = RgbImage::from_fn(9, 7, |x, y| image::Rgb([x as u8 * 20, y as u8 * 30, 7]));
        assert_eq!(resize_bicubic(&img, 9, 7), img);
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 99]));
        let out = resize_bicubic(&img, 56, 84);
        assert!(out.pixels().all(|p| p.0 == [200, 10, 99]));
    }
}
