//! Page images from PDF bytes, rendered in-process with hayro (pure Rust, no poppler).
//!
//! Rendering is separate from text extraction ([`crate::pdf`]): a page image is for thumbnails
//! and for models that read pages as pictures. Each page is drawn on a white background at
//! [`RenderSettings::dpi`], scaled down when that would exceed [`RenderSettings::max_pixels`].
//!
//! hayro draws whatever it can and reports nothing back, so the failures named here are the
//! ones that can be seen from outside: a file that does not open (not a PDF, damaged beyond
//! repair, encrypted with a password), a page whose size is nonsense, a page whose content
//! stream cannot be decoded. Annotations are drawn only from their appearance streams. Every
//! call into hayro runs behind a `catch_unwind`, the last net rather than the plan: a panic
//! fails that page with [`RenderError::Crashed`], and the document is opened afresh for the
//! pages after it, since a panic can leave hayro's internal locks poisoned.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hayro::hayro_interpret::util::TransformExt;
use hayro::hayro_interpret::{InterpreterSettings, InterpreterWarning};
use hayro::hayro_syntax::object::dict::keys::CONTENTS;
use hayro::hayro_syntax::page::Page;
use hayro::hayro_syntax::{DecryptionError, LoadPdfError, Pdf};
use hayro::kurbo::Affine;
use hayro::vello_cpu::color::palette::css::WHITE;
use hayro::vello_cpu::peniko::ImageAlphaType;
use hayro::vello_cpu::{Pixels, Pixmap, RasterizerSettings, RenderContext, Resources, TargetInit};
use hayro::{RenderCache, render_into};
use image::codecs::png::PngEncoder;
use image::imageops::FilterType;
use image::{ExtendedColorType, ImageEncoder, RgbImage};
use thiserror::Error;
use tracing::{debug, warn};

/// PDF user space has 72 units (points) per inch.
const POINTS_PER_INCH: f64 = 72.0;

/// The renderer works on pixmaps whose sides fit in a `u16`.
const MAX_SIDE: u32 = u16::MAX as u32;

/// How pages are rendered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderSettings {
    /// Resolution in dots per inch; 72 draws one pixel per PDF point. Must be finite and
    /// positive.
    pub dpi: f32,
    /// Largest image, in pixels (width × height): a page larger than this at `dpi` is scaled
    /// down, aspect kept, to fit. Must be at least 1.
    pub max_pixels: u64,
    /// Longer side of a thumbnail, in pixels (see [`thumbnail`]).
    pub thumbnail_max_side: u32,
}

impl Default for RenderSettings {
    fn default() -> Self {
        RenderSettings {
            dpi: 144.0,
            max_pixels: 4_000_000,
            thumbnail_max_side: 256,
        }
    }
}

/// Why a document or a page yields no image.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RenderError {
    /// The settings cannot produce an image (dpi not positive, no pixels allowed).
    #[error("invalid render settings: {0}")]
    Settings(String),
    /// The file is encrypted and does not open with an empty user password.
    #[error("encrypted: the PDF needs a password")]
    Encrypted,
    /// The file cannot be opened: empty, not a PDF, damaged beyond repair, or encrypted in a
    /// way the renderer does not support.
    #[error("unreadable PDF: {0}")]
    Unreadable(String),
    /// The document opened but has no pages.
    #[error("the PDF has no pages")]
    NoPages,
    /// A page index past the last page.
    #[error("page index {index} is out of range: the PDF has {pages} pages")]
    NoSuchPage {
        /// The index asked for (0-based).
        index: usize,
        /// How many pages the document has.
        pages: usize,
    },
    /// One page cannot be rendered; the others may be fine.
    #[error("page {} cannot be rendered: {message}", .index + 1)]
    Page {
        /// The page's index (0-based; the message counts from 1).
        index: usize,
        /// What is wrong with it.
        message: String,
    },
    /// The renderer panicked (caught); on a page when `index` is set, else while opening.
    #[error("{}", crashed_message(*.index, .message))]
    Crashed {
        /// The page's index (0-based), if the panic happened on a page.
        index: Option<usize>,
        /// The panic's message.
        message: String,
    },
    /// The image could not be encoded.
    #[error("PNG encoding failed: {0}")]
    Encode(String),
    /// An image given as a page (not rendered) cannot be decoded.
    #[error("image cannot be decoded: {0}")]
    Decode(String),
}

fn crashed_message(index: Option<usize>, message: &str) -> String {
    match index {
        Some(i) => format!("PDF renderer crashed on page {}: {message}", i + 1),
        None => format!("PDF renderer crashed while opening the file: {message}"),
    }
}

/// Renders every page of a PDF (bytes) to RGB (white background), in page order. A page that
/// fails gives its own `Err`; a document that cannot be opened gives the outer `Err`.
///
/// Every image is held in memory at once (up to `3 × max_pixels` bytes a page); for long
/// documents prefer [`PageRenderer`], which renders one page at a time.
pub fn render_pages(
    bytes: &[u8],
    settings: &RenderSettings,
) -> Result<Vec<Result<RgbImage, RenderError>>, RenderError> {
    check_settings(settings)?;
    let mut renderer = PageRenderer::open(bytes)?;
    let pages = renderer.page_count();
    Ok(renderer.render_range(0..pages, settings))
}

/// Renders one page (0-based index) of a PDF (bytes), so that a caller can render lazily. To
/// render several pages of the same file, [`PageRenderer`] parses the file once.
pub fn render_page(
    bytes: &[u8],
    index: usize,
    settings: &RenderSettings,
) -> Result<RgbImage, RenderError> {
    PageRenderer::open(bytes)?.render(index, settings)
}

/// An opened PDF whose pages can be rendered one at a time, in any order.
pub struct PageRenderer {
    pdf: Pdf,
    pages: usize,
}

impl std::fmt::Debug for PageRenderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageRenderer")
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl PageRenderer {
    /// Opens a PDF from its bytes (copied), with an empty password if it is encrypted.
    pub fn open(bytes: &[u8]) -> Result<Self, RenderError> {
        if bytes.is_empty() {
            return Err(RenderError::Unreadable("empty file (0 bytes)".into()));
        }
        // The header may follow some junk; readers accept it within the first KiB.
        let head = &bytes[..bytes.len().min(1024)];
        if !head.windows(5).any(|w| w == b"%PDF-") {
            return Err(RenderError::Unreadable(
                "not a PDF (no %PDF- header)".into(),
            ));
        }
        let data = bytes.to_vec();
        let (pdf, pages) = guarded(None, || open_pdf(data))??;
        Ok(PageRenderer { pdf, pages })
    }

    /// Number of pages, as hayro reads the page tree. On malformed trees this can differ from
    /// the text extractor's count: hayro skips a page object listed twice, and a few damaged
    /// files come out one page short or with none.
    pub fn page_count(&self) -> usize {
        self.pages
    }

    /// Renders page `index` (0-based).
    pub fn render(
        &mut self,
        index: usize,
        settings: &RenderSettings,
    ) -> Result<RgbImage, RenderError> {
        match self
            .render_range(index..index.saturating_add(1), settings)
            .pop()
        {
            Some(result) => result,
            None => Err(RenderError::NoSuchPage {
                index,
                pages: self.pages,
            }),
        }
    }

    /// Renders pages `range` (0-based, clamped to the document), sharing font and image
    /// caches between them.
    pub fn render_range(
        &mut self,
        range: std::ops::Range<usize>,
        settings: &RenderSettings,
    ) -> Vec<Result<RgbImage, RenderError>> {
        let mut out = Vec::with_capacity(range.len().min(self.pages));
        self.render_each(range, settings, |_, result| {
            out.push(result);
            true
        });
        out
    }

    /// Renders pages `range` (0-based, clamped to the document) in order, handing each to
    /// `take` as soon as it is drawn (its index and image or error), so that only one image
    /// is held at a time. Stops early when `take` returns false.
    pub fn render_each(
        &mut self,
        range: std::ops::Range<usize>,
        settings: &RenderSettings,
        mut take: impl FnMut(usize, Result<RgbImage, RenderError>) -> bool,
    ) {
        let end = range.end.min(self.pages);
        // Every page from `from` on fails with `e` (until `take` says stop).
        let fail_rest = |from: usize, e: RenderError, take: &mut dyn FnMut(_, _) -> bool| {
            let _ = (from..end).all(|index| take(index, Err(e.clone())));
        };
        if let Err(e) = check_settings(settings) {
            return fail_rest(range.start, e, &mut take);
        }
        let mut next = range.start;
        while next < end {
            match self.render_until_crash(next..end, settings, &mut take) {
                Progress::Done | Progress::Stopped => return,
                Progress::Crashed(after) => next = after,
            }
            if next < end {
                // A panic may have poisoned the parser's locks: start again from the bytes.
                match guarded(None, || open_pdf(self.pdf.data().clone())) {
                    Ok(Ok((pdf, _))) => self.pdf = pdf,
                    Ok(Err(e)) | Err(e) => return fail_rest(next, e, &mut take),
                }
            }
        }
    }

    /// Renders `range` into `take` until a page panics, or `take` says stop.
    fn render_until_crash(
        &self,
        range: std::ops::Range<usize>,
        settings: &RenderSettings,
        take: &mut impl FnMut(usize, Result<RgbImage, RenderError>) -> bool,
    ) -> Progress {
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&warnings);
        let interpreter = InterpreterSettings {
            warning_sink: Arc::new(move |w: InterpreterWarning| {
                if let Ok(mut list) = sink.lock() {
                    list.push(w);
                }
            }),
            ..InterpreterSettings::default()
        };
        let cache = RenderCache::new();
        for index in range {
            let started = Instant::now();
            let result = guarded(Some(index), || {
                let page = self.pdf.pages().get(index).ok_or(RenderError::NoSuchPage {
                    index,
                    pages: self.pages,
                })?;
                render_one(page, index, &cache, &interpreter, settings)
            })
            .and_then(|r| r);
            let crashed = matches!(result, Err(RenderError::Crashed { .. }));
            match &result {
                Ok(img) => debug!(
                    page = index + 1,
                    width = img.width(),
                    height = img.height(),
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "page rendered"
                ),
                Err(e) => warn!(page = index + 1, error = %e, "cannot render page"),
            }
            if let Ok(mut list) = warnings.lock()
                && !list.is_empty()
            {
                debug!(page = index + 1, warnings = ?list, "renderer warnings");
                list.clear();
            }
            if !take(index, result) {
                return Progress::Stopped;
            }
            if crashed {
                return Progress::Crashed(index + 1);
            }
        }
        Progress::Done
    }
}

/// How a run of pages ended.
enum Progress {
    Done,
    Stopped,
    /// A page panicked; rendering goes on from this index, with the document reopened.
    Crashed(usize),
}

/// How a document's rendering ended (see [`render_document`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderRun {
    /// Pages in the document as the renderer reads its page tree; `None` when it could not
    /// open the document.
    pub page_count: Option<usize>,
    /// When rendering stopped before the last page: the first page (0-based) left without an
    /// image, and why. The pages after it have no image either.
    pub stopped: Option<(usize, String)>,
}

/// What a document's pages are handed to, one at a time: the page index (0-based) and its
/// image or the reason it has none. An `Err` stops the rendering and comes back from it.
pub type TakePage<'a> = dyn FnMut(usize, Result<RgbImage, String>) -> Result<(), String> + 'a;

/// Renders the first `limit` pages of a PDF (bytes) in-process, in order, handing each to
/// `take` as soon as it is drawn. A document that cannot be opened is reported in the
/// [`RenderRun`], not as an error; the only `Err` is one `take` returned.
pub fn render_document(
    bytes: &[u8],
    settings: &RenderSettings,
    limit: usize,
    take: &mut TakePage<'_>,
) -> Result<RenderRun, String> {
    let mut renderer = match PageRenderer::open(bytes) {
        Ok(r) => r,
        Err(e) => {
            return Ok(RenderRun {
                page_count: None,
                stopped: Some((0, e.to_string())),
            });
        }
    };
    let mut refused = Ok(());
    renderer.render_each(0..limit, settings, |index, result| {
        refused = take(index, result.map_err(|e| e.to_string()));
        refused.is_ok()
    });
    refused.map(|()| RenderRun {
        page_count: Some(renderer.page_count()),
        stopped: None,
    })
}

/// Opens the document and counts its pages.
fn open_pdf(data: impl Into<hayro::hayro_syntax::PdfData>) -> Result<(Pdf, usize), RenderError> {
    let pdf = Pdf::new(data).map_err(|e| match e {
        LoadPdfError::Decryption(DecryptionError::PasswordProtected) => RenderError::Encrypted,
        LoadPdfError::Decryption(DecryptionError::UnsupportedAlgorithm) => {
            RenderError::Unreadable("encrypted with an unsupported algorithm".into())
        }
        LoadPdfError::Decryption(DecryptionError::InvalidEncryption) => {
            RenderError::Unreadable("damaged encryption dictionary".into())
        }
        LoadPdfError::Decryption(DecryptionError::MissingIDEntry) => RenderError::Unreadable(
            "encrypted, but the trailer has no /ID to derive the key from".into(),
        ),
        LoadPdfError::Invalid => {
            RenderError::Unreadable("damaged beyond repair (no usable xref or page tree)".into())
        }
    })?;
    let pages = pdf.pages().len();
    if pages == 0 {
        return Err(RenderError::NoPages);
    }
    Ok((pdf, pages))
}

fn check_settings(settings: &RenderSettings) -> Result<(), RenderError> {
    if !(settings.dpi.is_finite() && settings.dpi > 0.0) {
        return Err(RenderError::Settings(format!(
            "dpi must be finite and positive, not {}",
            settings.dpi
        )));
    }
    if settings.max_pixels == 0 {
        return Err(RenderError::Settings(
            "max_pixels must be at least 1".into(),
        ));
    }
    Ok(())
}

/// Pixel size of a page of `width` × `height` points: `dpi / 72` pixels per point, reduced so
/// that the image has at most `max_pixels` pixels and no side over 65,535; at least 1 × 1.
fn pixel_size(width: f64, height: f64, settings: &RenderSettings) -> Result<(u32, u32), String> {
    if !(width.is_finite() && height.is_finite() && width > 0.0 && height > 0.0) {
        return Err(format!("page size {width} × {height} points is not a size"));
    }
    let max_pixels = settings.max_pixels as f64;
    let mut scale = f64::from(settings.dpi) / POINTS_PER_INCH;
    if width * scale * height * scale > max_pixels {
        scale = (max_pixels / (width * height)).sqrt();
    }
    scale = scale
        .min(f64::from(MAX_SIDE) / width)
        .min(f64::from(MAX_SIDE) / height);
    // Round to the nearest pixel, unless that breaks the cap: then round down.
    let side =
        |points: f64, round: fn(f64) -> f64| (round(points * scale) as u32).clamp(1, MAX_SIDE);
    let (mut w, mut h) = (side(width, f64::round), side(height, f64::round));
    if u64::from(w) * u64::from(h) > settings.max_pixels {
        (w, h) = (side(width, f64::floor), side(height, f64::floor));
    }
    // Only a page thinner than one pixel at this scale can still be over the cap.
    while u64::from(w) * u64::from(h) > settings.max_pixels {
        if w >= h {
            w = (settings.max_pixels / u64::from(h)).max(1) as u32;
        } else {
            h = (settings.max_pixels / u64::from(w)).max(1) as u32;
        }
    }
    Ok((w, h))
}

fn render_one<'a>(
    page: &'a Page<'a>,
    index: usize,
    cache: &RenderCache<'a>,
    interpreter: &InterpreterSettings,
    settings: &RenderSettings,
) -> Result<RgbImage, RenderError> {
    let page_error = |message: String| RenderError::Page { index, message };
    // A page with no contents is legal (blank); contents that do not decode are not.
    if page.raw().contains_key(CONTENTS) && page.page_stream().is_none() {
        return Err(page_error("its content stream cannot be decoded".into()));
    }
    let (pt_w, pt_h) = page.render_dimensions();
    let (pt_w, pt_h) = (f64::from(pt_w), f64::from(pt_h));
    let (w, h) = pixel_size(pt_w, pt_h, settings).map_err(page_error)?;
    let (w16, h16) = (
        u16::try_from(w).map_err(|_| page_error(format!("width {w} px is too large")))?,
        u16::try_from(h).map_err(|_| page_error(format!("height {h} px is too large")))?,
    );
    // Scale each axis to fill whole pixels exactly; the two differ by under a pixel's worth.
    let transform = Affine::scale_non_uniform(f64::from(w) / pt_w, f64::from(h) / pt_h)
        * page.initial_transform(true).to_kurbo();
    let mut ctx = RenderContext::new(w16, h16);
    render_into(
        page,
        cache,
        interpreter,
        &hayro::RenderSettings::default(),
        &mut ctx,
        transform,
    );
    ctx.flush();
    let mut pixmap = Pixmap::new(w16, h16);
    ctx.render_with(
        &mut pixmap,
        &mut Resources::default(),
        RasterizerSettings {
            target_init: TargetInit::Clear(WHITE),
            ..RasterizerSettings::default()
        },
    );
    let rgb = match pixmap.try_take_rgb8(ImageAlphaType::AlphaPremultiplied) {
        Pixels::Rgb8(rgb) => rgb,
        // Not expected on an opaque background, but flatten onto white if it happens.
        Pixels::Rgba8(rgba) => rgba
            .chunks_exact(4)
            .flat_map(|p| {
                let clear = 255 - p[3];
                [
                    p[0].saturating_add(clear),
                    p[1].saturating_add(clear),
                    p[2].saturating_add(clear),
                ]
            })
            .collect(),
    };
    RgbImage::from_raw(w, h, rgb)
        .ok_or_else(|| page_error("the renderer returned a pixel buffer of the wrong size".into()))
}

/// Runs `f`, turning a panic into [`RenderError::Crashed`].
fn guarded<T>(index: Option<usize>, f: impl FnOnce() -> T) -> Result<T, RenderError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        RenderError::Crashed { index, message }
    })
}

/// Downscaled copy whose longer side is at most `max_side` pixels (aspect kept, each side at
/// least 1; never upscales: a smaller image comes back as it is). `max_side` 0 counts as 1.
pub fn thumbnail(img: &RgbImage, max_side: u32) -> RgbImage {
    let max_side = max_side.max(1);
    let (w, h) = img.dimensions();
    let longer = w.max(h);
    if longer <= max_side {
        return img.clone();
    }
    let fit = |side: u32| {
        let scaled =
            (u64::from(side) * u64::from(max_side) + u64::from(longer) / 2) / u64::from(longer);
        (scaled as u32).clamp(1, max_side)
    };
    image::imageops::resize(img, fit(w), fit(h), FilterType::Triangle)
}

/// PNG bytes of an image.
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            ExtendedColorType::Rgb8,
        )
        .map_err(|e| RenderError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes an image given as a page (PNG, JPEG), refusing sides over 65535 pixels and
/// decoders that would allocate more than 512 MiB (decompression bombs).
pub fn decode_image(bytes: &[u8]) -> Result<RgbImage, RenderError> {
    let decode = |e: image::ImageError| RenderError::Decode(e.to_string());
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| RenderError::Decode(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    Ok(reader.decode().map_err(decode)?.into_rgb8())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dpi: f32, max_pixels: u64) -> RenderSettings {
        RenderSettings {
            dpi,
            max_pixels,
            ..RenderSettings::default()
        }
    }

    #[test]
    fn pixel_size_follows_dpi() {
        assert_eq!(
            pixel_size(612.0, 792.0, &settings(72.0, u64::MAX)),
            Ok((612, 792))
        );
        assert_eq!(
            pixel_size(612.0, 792.0, &settings(144.0, u64::MAX)),
            Ok((1224, 1584))
        );
        assert_eq!(
            pixel_size(612.0, 792.0, &settings(150.0, u64::MAX)),
            Ok((1275, 1650))
        );
        // A4 at 300 dpi: 2480 × 3508, the usual figures.
        assert_eq!(
            pixel_size(595.28, 841.89, &settings(300.0, u64::MAX)),
            Ok((2480, 3508))
        );
    }

    #[test]
    fn pixel_size_honours_the_cap_and_keeps_the_aspect() {
        for (w, h, cap) in [
            (612.0, 792.0, 100_000),
            (612.0, 792.0, 4_000_000),
            (14_400.0, 14_400.0, 4_000_000),
            (595.0, 842.0, 999_999),
        ] {
            let (pw, ph) = pixel_size(w, h, &settings(600.0, cap)).expect("a size");
            assert!(u64::from(pw) * u64::from(ph) <= cap, "{pw}×{ph} over {cap}");
            // Near the cap, not far below it.
            assert!(
                (u64::from(pw) + 1) * (u64::from(ph) + 1) > cap,
                "{pw}×{ph} far under {cap}"
            );
            let aspect = f64::from(pw) / f64::from(ph);
            assert!(
                (aspect - w / h).abs() < 0.02 * w / h + 1.0 / f64::from(ph),
                "{pw}×{ph}"
            );
        }
    }

    #[test]
    fn pixel_size_survives_degenerate_pages() {
        // Thinner than a pixel: still at least 1 px, still under the cap.
        let (w, h) = pixel_size(0.001, 1e6, &settings(72.0, 1000)).expect("a size");
        assert!(w >= 1 && h >= 1 && u64::from(w) * u64::from(h) <= 1000);
        // A side over 65,535 px is capped whatever max_pixels says.
        let (w, h) = pixel_size(1e6, 10.0, &settings(72.0, u64::MAX)).expect("a size");
        assert_eq!(w, MAX_SIDE);
        assert!(h >= 1);
        assert!(pixel_size(f64::INFINITY, 10.0, &settings(72.0, 10)).is_err());
        assert!(pixel_size(f64::NAN, 10.0, &settings(72.0, 10)).is_err());
        assert!(pixel_size(0.0, 10.0, &settings(72.0, 10)).is_err());
    }

    #[test]
    fn bad_settings_and_non_pdf_bytes_are_named() {
        assert_eq!(
            render_page(b"", 0, &RenderSettings::default()),
            Err(RenderError::Unreadable("empty file (0 bytes)".into()))
        );
        assert_eq!(
            render_page(b"hello, I am a text file", 0, &RenderSettings::default()),
            Err(RenderError::Unreadable(
                "not a PDF (no %PDF- header)".into()
            ))
        );
        assert!(
            check_settings(&settings(0.0, 1)).is_err()
                && check_settings(&settings(f32::NAN, 1)).is_err()
                && check_settings(&settings(72.0, 0)).is_err()
        );
    }

    #[test]
    fn truncated_pdf_fails_without_panicking() {
        let r = render_pages(
            b"%PDF-1.7\n1 0 obj << /Type /Catalog",
            &RenderSettings::default(),
        );
        match r {
            Err(e) => assert!(!e.to_string().is_empty()),
            Ok(pages) => assert!(pages.iter().all(|p| p.is_err())),
        }
    }

    #[test]
    fn a_caught_panic_is_named_with_its_page() {
        let crashed = guarded(Some(2), || -> u8 { panic!("boom") });
        assert_eq!(
            crashed,
            Err(RenderError::Crashed {
                index: Some(2),
                message: "boom".into()
            })
        );
        assert_eq!(
            crashed.map_err(|e| e.to_string()),
            Err("PDF renderer crashed on page 3: boom".into())
        );
        let opening = RenderError::Crashed {
            index: None,
            message: "boom".into(),
        };
        assert_eq!(
            opening.to_string(),
            "PDF renderer crashed while opening the file: boom"
        );
    }

    #[test]
    fn renderer_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<PageRenderer>();
    }

    #[test]
    fn thumbnail_fits_the_longer_side_and_never_upscales() {
        let img = RgbImage::new(1224, 1584);
        let t = thumbnail(&img, 256);
        assert_eq!(t.dimensions(), (198, 256));
        let t = thumbnail(&RgbImage::new(1000, 10), 256);
        assert_eq!(t.dimensions(), (256, 3));
        let t = thumbnail(&RgbImage::new(100, 50), 256);
        assert_eq!(t.dimensions(), (100, 50));
        let t = thumbnail(&RgbImage::new(5000, 1), 100);
        assert_eq!(t.dimensions(), (100, 1));
        assert_eq!(thumbnail(&RgbImage::new(10, 10), 0).dimensions(), (1, 1));
    }

    #[test]
    fn png_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let mut img = RgbImage::new(3, 2);
        img.put_pixel(1, 1, image::Rgb([10, 20, 30]));
        let png = encode_png(&img)?;
        assert!(png.starts_with(b"\x89PNG"));
        let back = image::load_from_memory(&png)?.to_rgb8();
        assert_eq!(back, img);
        Ok(())
    }
}
