//! Page rendering: sizes follow the dpi and the pixel cap, the bundled samples render with the
//! page counts the text extractor sees and are not blank, encrypted files are named, and page
//! 1 of every PDF of qpdf's test suite (shared data) renders or fails with a message, never a
//! panic.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use folio_indexer::pdf::extract_layout;
use folio_indexer::render::{
    PageRenderer, RenderError, RenderSettings, encode_png, render_page, render_pages, thumbnail,
};
use image::RgbImage;

fn settings(dpi: f32, max_pixels: u64) -> RenderSettings {
    RenderSettings {
        dpi,
        max_pixels,
        ..RenderSettings::default()
    }
}

/// Share of pixels darker than mid-grey.
fn dark_share(img: &RgbImage) -> f64 {
    let dark = img
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            u32::from(r) + u32::from(g) + u32::from(b) < 3 * 128
        })
        .count();
    dark as f64 / (f64::from(img.width()) * f64::from(img.height()))
}

/// A one-page PDF with a correct xref: `media_box` in points, optional `/Rotate`, and a line of
/// 36-point Helvetica (a standard font, not embedded).
fn one_page_pdf(media_box: [u32; 4], rotate: Option<i32>) -> Vec<u8> {
    let content = "BT /F1 36 Tf 72 600 Td (Folio renders pages) Tj ET";
    let [x0, y0, x1, y1] = media_box;
    let rotate = rotate.map_or_else(String::new, |r| format!(" /Rotate {r}"));
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [{x0} {y0} {x1} {y1}]{rotate} \
             /Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>"
        ),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
        format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ),
    ];
    common::pdf(&objects)
}

#[test]
fn letter_page_size_follows_dpi_and_the_pixel_cap() -> Result<(), RenderError> {
    let pdf = one_page_pdf([0, 0, 612, 792], None);
    let img = render_page(&pdf, 0, &settings(72.0, u64::MAX))?;
    assert_eq!(img.dimensions(), (612, 792));
    // The standard font is drawn (hayro's embedded substitute) and the background is white.
    assert!(dark_share(&img) > 0.002, "{}", dark_share(&img));
    assert_eq!(img.get_pixel(5, 5).0, [255, 255, 255]);

    let img = render_page(&pdf, 0, &RenderSettings::default())?;
    assert_eq!(img.dimensions(), (1224, 1584));
    let img = render_page(&pdf, 0, &settings(150.0, u64::MAX))?;
    assert_eq!(img.dimensions(), (1275, 1650));

    // Capped: under the budget, aspect kept.
    let img = render_page(&pdf, 0, &settings(300.0, 100_000))?;
    let (w, h) = img.dimensions();
    assert!(u64::from(w) * u64::from(h) <= 100_000, "{w}×{h}");
    assert!(u64::from(w + 1) * u64::from(h + 1) > 100_000, "{w}×{h}");
    assert!((f64::from(w) / f64::from(h) - 612.0 / 792.0).abs() < 0.01);

    // A rotated page is drawn landscape; an offset media box changes nothing but the origin.
    let rotated = one_page_pdf([0, 0, 612, 792], Some(90));
    assert_eq!(
        render_page(&rotated, 0, &settings(72.0, u64::MAX))?.dimensions(),
        (792, 612)
    );
    let offset = one_page_pdf([100, 100, 712, 892], None);
    assert_eq!(
        render_page(&offset, 0, &settings(72.0, u64::MAX))?.dimensions(),
        (612, 792)
    );

    assert_eq!(
        render_page(&pdf, 1, &RenderSettings::default()),
        Err(RenderError::NoSuchPage { index: 1, pages: 1 })
    );
    assert!(matches!(
        render_page(&pdf, 0, &settings(0.0, 100)),
        Err(RenderError::Settings(_))
    ));
    Ok(())
}

fn is_dark(p: &image::Rgb<u8>) -> bool {
    let [r, g, b] = p.0;
    u32::from(r) + u32::from(g) + u32::from(b) < 3 * 128
}

/// Dark pixels of `img` inside the box `b` (fractions of the image) grown by `slack` pixels.
fn ink_inside(img: &RgbImage, b: &folio_core::BBox, slack: f32) -> usize {
    let (w, h) = (img.width() as f32, img.height() as f32);
    // The pixels whose centres are in `lo..=hi`.
    let range = |lo: f32, hi: f32, max: f32| {
        let first = (lo - 0.5).ceil().max(0.0);
        let last = (hi - 0.5).floor().min(max - 1.0);
        first as u32..(last + 1.0).max(first) as u32
    };
    let xs = range(b.x0 * w - slack, b.x1 * w + slack, w);
    let ys = range(b.y0 * h - slack, b.y1 * h + slack, h);
    ys.flat_map(|y| xs.clone().map(move |x| (x, y)))
        .filter(|&(x, y)| is_dark(img.get_pixel(x, y)))
        .count()
}

#[test]
fn layout_boxes_sit_on_the_ink_of_turned_and_offset_pages() -> Result<(), Box<dyn std::error::Error>>
{
    for (media_box, rotate) in [
        ([0, 0, 612, 792], None),
        ([0, 0, 612, 792], Some(90)),
        ([0, 0, 612, 792], Some(180)),
        ([0, 0, 612, 792], Some(270)),
        ([100, 100, 712, 892], None),
        ([100, 100, 712, 892], Some(90)),
    ] {
        let at = format!("{media_box:?} /Rotate {rotate:?}");
        let pdf = one_page_pdf(media_box, rotate);
        let pages = extract_layout(pdf.clone())?;
        assert_eq!(pages[0].text.trim(), "Folio renders pages", "{at}");
        let [line] = pages[0].lines.as_slice() else {
            return Err(format!("{at}: lines {:?}", pages[0].lines).into());
        };
        let img = render_page(&pdf, 0, &settings(72.0, u64::MAX))?;
        // All the ink is in the box (give or take a pixel)...
        let dark: Vec<(u32, u32)> = img
            .enumerate_pixels()
            .filter(|(_, _, p)| is_dark(p))
            .map(|(x, y, _)| (x, y))
            .collect();
        assert!(dark.len() > 500, "{at}: {} dark pixels", dark.len());
        let inside = ink_inside(&img, &line.bbox, 1.0);
        assert_eq!(inside, dark.len(), "{at}: ink outside {line:?}");
        // ... and the box is not much larger than the ink.
        let (w, h) = (img.width() as f32, img.height() as f32);
        let span = |v: &[u32]| {
            v.iter().max().copied().unwrap_or(0) as f32
                - v.iter().min().copied().unwrap_or(0) as f32
                + 1.0
        };
        let ink_w = span(&dark.iter().map(|d| d.0).collect::<Vec<_>>());
        let ink_h = span(&dark.iter().map(|d| d.1).collect::<Vec<_>>());
        let (box_w, box_h) = (
            (line.bbox.x1 - line.bbox.x0) * w,
            (line.bbox.y1 - line.bbox.y0) * h,
        );
        assert!(
            box_w < 1.3 * ink_w && box_h < 1.3 * ink_h,
            "{at}: box {box_w}×{box_h} px for ink {ink_w}×{ink_h} px"
        );
    }
    Ok(())
}

#[test]
fn samples_render_every_page_the_extractor_sees() -> Result<(), Box<dyn std::error::Error>> {
    let files = common::samples()?;
    assert!(files.len() >= 5, "{} sample PDFs", files.len());
    let defaults = RenderSettings::default();
    let mut page_ms = Vec::new();
    let mut png_ms = Vec::new();
    let mut total_pages = 0;
    for path in &files {
        let name = path.display();
        let bytes = std::fs::read(path)?;
        let layouts = extract_layout(bytes.clone())?;
        let texts: Vec<&str> = layouts.iter().map(|p| p.text.as_str()).collect();
        let pages = render_pages(&bytes, &defaults)?;
        assert_eq!(pages.len(), texts.len(), "{name}: page count");
        total_pages += pages.len();
        let (mut lines, mut inked) = (0, 0);
        for (i, (page, text)) in pages.iter().zip(&texts).enumerate() {
            let img = page
                .as_ref()
                .map_err(|e| format!("{name} page {}: {e}", i + 1))?;
            // The layout's line boxes fall on the page image where the ink is.
            for line in &layouts[i].lines {
                lines += 1;
                inked += usize::from(ink_inside(img, &line.bbox, 0.0) > 0);
            }
            let (w, h) = img.dimensions();
            assert!(u64::from(w) * u64::from(h) <= defaults.max_pixels);
            // Where there is text there is ink.
            let letters = text.chars().filter(|c| c.is_alphanumeric()).count();
            if letters >= 20 {
                let share = dark_share(img);
                assert!(
                    share > 0.001,
                    "{name} page {}: {letters} letters of text but only {:.4}% dark pixels",
                    i + 1,
                    share * 100.0
                );
            }
            let t = thumbnail(img, defaults.thumbnail_max_side);
            assert_eq!(t.width().max(t.height()), defaults.thumbnail_max_side);
            let aspect = |a: u32, b: u32| f64::from(a) / f64::from(b);
            assert!((aspect(t.width(), t.height()) - aspect(w, h)).abs() < 0.01);
        }

        assert!(
            inked as f64 >= 0.95 * lines as f64,
            "{name}: only {inked} of {lines} line boxes have ink"
        );

        // Sizes follow the dpi: twice the dpi, twice the sides (within a pixel of rounding).
        let mut renderer = PageRenderer::open(&bytes)?;
        assert_eq!(renderer.page_count(), texts.len());
        let small = renderer.render(0, &settings(72.0, u64::MAX))?;
        let large = renderer.render(0, &settings(144.0, u64::MAX))?;
        assert!(large.width().abs_diff(2 * small.width()) <= 1, "{name}");
        assert!(large.height().abs_diff(2 * small.height()) <= 1, "{name}");
        let capped = renderer.render(0, &settings(144.0, 50_000))?;
        assert!(u64::from(capped.width()) * u64::from(capped.height()) <= 50_000);

        // Timing, one page at a time with the document already parsed, as a lazy caller would.
        for i in 0..renderer.page_count() {
            let started = Instant::now();
            let img = renderer.render(i, &defaults)?;
            page_ms.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            let png = encode_png(&img)?;
            png_ms.push(started.elapsed().as_secs_f64() * 1e3);
            assert!(!png.is_empty());
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{} sample files, {total_pages} pages at {} dpi (cap {} px): median {:.1} ms/page to \
         render (max {:.1}), {:.1} ms/page more to encode PNG",
        files.len(),
        defaults.dpi,
        defaults.max_pixels,
        median(&mut page_ms),
        page_ms.last().copied().unwrap_or_default(),
        median(&mut png_ms),
    );
    Ok(())
}

#[test]
fn encrypted_files_open_with_an_empty_password_or_are_named() -> std::io::Result<()> {
    let Some(dir) = common::qpdf_dir() else {
        return Ok(());
    };
    // qpdf's names give the passwords: U= is the user password, none means empty.
    for (file, needs_password) in [
        ("enc-R2,V1,U=view,O=master.pdf", true),
        ("enc-R3,V2,U=view,O=master.pdf", true),
        ("enc-XI-R6,V5,U=view,O=master.pdf", true),
        ("enc-R2,V1,O=master.pdf", false),
        ("enc-R3,V2,O=master.pdf", false),
        ("enc-XI-R6,V5,O=master.pdf", false),
    ] {
        let bytes = std::fs::read(dir.join(file))?;
        let result = render_page(&bytes, 0, &RenderSettings::default());
        if needs_password {
            assert_eq!(result, Err(RenderError::Encrypted), "{file}");
        } else {
            let img = result.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(dark_share(&img) > 0.0, "{file}: blank");
        }
    }
    Ok(())
}

#[test]
fn qpdf_corpus_page_one_renders_or_fails_with_a_reason() -> std::io::Result<()> {
    let Some(dir) = common::qpdf_dir() else {
        return Ok(());
    };
    let files = common::qpdf_files(&dir)?;
    let started = Instant::now();
    let (mut ok, mut reasons, mut crashed) =
        (0, BTreeMap::<String, Vec<String>>::new(), Vec::new());
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path)?;
        match render_page(&bytes, 0, &RenderSettings::default()) {
            Ok(img) => {
                assert!(img.width() > 0 && img.height() > 0, "{name}");
                ok += 1;
            }
            Err(e) => {
                let message = e.to_string();
                assert!(
                    !message.trim().is_empty(),
                    "{name}: error without a message"
                );
                if let RenderError::Crashed { .. } = e {
                    crashed.push(format!("{name}: {message}"));
                }
                // Group by the kind of failure, not the page-specific detail.
                let kind = match &e {
                    RenderError::Page { message, .. } => format!("page: {message}"),
                    RenderError::Crashed { .. } => "renderer crashed".into(),
                    other => other.to_string(),
                };
                reasons.entry(kind).or_default().push(name);
            }
        }
    }
    let failed: usize = reasons.values().map(Vec::len).sum();
    println!(
        "{} files, page 1: {ok} rendered, {failed} failed, in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    for (reason, names) in &reasons {
        let shown: Vec<_> = names.iter().take(6).map(String::as_str).collect();
        let more = names.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        println!(
            "  {:>3} × {reason}: {}{more}",
            names.len(),
            shown.join(", ")
        );
    }
    if !crashed.is_empty() {
        println!("caught renderer panics:\n  {}", crashed.join("\n  "));
    }
    assert!(ok > 500, "only {ok} files rendered");
    Ok(())
}
