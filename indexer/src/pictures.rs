//! A document's pictures: its pages rendered (or its one image decoded), stored next to the
//! index as PNG and thumbnail, and embedded by the page models for the page and late routes.

use std::time::Instant;

use folio_core::{DocId, Embedding, PageEmbedder, PageImage, PageKey};
use folio_store::{PageEmbeddings, PageImageKind, TokenMatrix};

use crate::{PAGE_CHUNK, Run, isolate, render};

impl Run<'_> {
    /// Handles a document's pictures (the rendered pages of a PDF, or one image): stores
    /// each page's image and thumbnail when the settings ask for them, and embeds them with
    /// the page models. Pages that yield no image are named in the warning; a model error
    /// fails the document.
    pub(crate) fn page_pictures(
        &mut self,
        doc_id: &DocId,
        pictures: Pictures<'_>,
        n_pages: u32,
        short: &str,
    ) -> Result<(PageEmbeddings, Option<String>), String> {
        let mut out = PageEmbeddings::default();
        // Pages without an image: how many, and the reason (one entry may name a range).
        let mut failed: Vec<(usize, String)> = Vec::new();
        match pictures {
            Pictures::Pdf(pdf) => {
                self.rendered_pages(doc_id, pdf, n_pages, short, &mut out, &mut failed)?;
            }
            Pictures::Image(bytes) => match render::decode_image(bytes) {
                Ok(img) => self.take_pictures(doc_id, vec![(1, img)], &mut out, &mut failed)?,
                Err(e) => failed.push((1, format!("page 1: {e}"))),
            },
        }
        let warning = no_image_warning(&failed);
        Ok((out, warning))
    }

    /// Renders the pages of a PDF (in a worker process when the settings isolate files) and
    /// takes them [`PAGE_CHUNK`] at a time.
    fn rendered_pages(
        &mut self,
        doc_id: &DocId,
        pdf: PdfFile<'_>,
        n_pages: u32,
        short: &str,
        out: &mut PageEmbeddings,
        failed: &mut Vec<(usize, String)>,
    ) -> Result<(), String> {
        let settings = self.settings.render;
        let isolation = self.settings.isolation.clone();
        let wanted = n_pages as usize;
        let mut chunk = Vec::with_capacity(PAGE_CHUNK);
        let mut flush = |run: &mut Self,
                         chunk: &mut Vec<(u32, image::RgbImage)>,
                         failed: &mut Vec<(usize, String)>,
                         done: usize| {
            run.take_pictures(doc_id, std::mem::take(chunk), out, failed)?;
            let rate = run.report.page_images as f64 / run.report.page_image_seconds.max(1e-9);
            run.bar.set_message(format!(
                "{short}: page images {done}/{wanted} ({rate:.2} pages/s)"
            ));
            Ok::<(), String>(())
        };
        let mut take = |index: usize, result: Result<image::RgbImage, String>| {
            let page = index as u32 + 1;
            match result {
                Ok(img) => chunk.push((page, img)),
                Err(e) => failed.push((1, format!("page {page}: {e}"))),
            }
            if chunk.len() == PAGE_CHUNK {
                flush(self, &mut chunk, failed, index + 1)?;
            }
            Ok(())
        };
        let run = match &isolation {
            Some(iso) => isolate::render_isolated(iso, pdf.path, &settings, wanted, &mut take)?,
            None => render::render_document(pdf.bytes, &settings, wanted, &mut take)?,
        };
        flush(self, &mut chunk, failed, wanted)?;
        let end = match run.page_count {
            Some(count) if count < wanted => {
                failed.push((
                    wanted - count,
                    format!(
                        "pages {}-{wanted}: the renderer finds only {count} pages",
                        count + 1
                    ),
                ));
                count
            }
            _ => wanted,
        };
        if let Some((first, reason)) = run.stopped
            && first < end
        {
            failed.push((
                end - first,
                if first + 1 == end {
                    format!("page {end}: {reason}")
                } else {
                    format!("pages {}-{end}: {reason}", first + 1)
                },
            ));
        }
        Ok(())
    }

    /// Stores (when asked) and embeds (with each page model) the images of `pages`.
    fn take_pictures(
        &mut self,
        doc_id: &DocId,
        pages: Vec<(u32, image::RgbImage)>,
        out: &mut PageEmbeddings,
        failed: &mut Vec<(usize, String)>,
    ) -> Result<(), String> {
        let started = Instant::now();
        let taken = pages.len() as u64;
        if self.settings.page_images {
            for (page, img) in &pages {
                let key = PageKey {
                    doc_id: doc_id.clone(),
                    page: *page,
                };
                if let Err(e) = self.store_page_image(&key, img) {
                    failed.push((1, format!("page {page}: not stored: {e}")));
                }
            }
        }
        if self.models.has_page_models() {
            let (numbers, images): (Vec<u32>, Vec<PageImage>) = pages
                .into_iter()
                .map(|(page, img)| (page, page_image(img)))
                .unzip();
            self.embed_chunk(&numbers, &images, out)?;
        }
        self.report.page_images += taken;
        self.report.page_image_seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Writes a page's PNG and thumbnail next to the index.
    fn store_page_image(&mut self, key: &PageKey, img: &image::RgbImage) -> Result<(), String> {
        let thumb = render::thumbnail(img, self.settings.render.thumbnail_max_side);
        for (kind, img) in [
            (PageImageKind::Page, img),
            (PageImageKind::Thumbnail, &thumb),
        ] {
            let png = render::encode_png(img).map_err(|e| e.to_string())?;
            self.writer
                .put_page_image(key, kind, &png)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
    /// Embeds `images` (pages `numbers`) with each page model into `out`.
    fn embed_chunk(
        &mut self,
        numbers: &[u32],
        images: &[PageImage],
        out: &mut PageEmbeddings,
    ) -> Result<(), String> {
        if let Some((model, _)) = self.models.page {
            for (page, e) in numbers.iter().zip(embed_images(model, images)?) {
                match e {
                    Embedding::Single(v) => out.vectors.push((*page, v)),
                    Embedding::Multi(_) => {
                        return Err("the page embedder gave token vectors; \
                                    give it as the late-interaction model"
                            .into());
                    }
                }
            }
        }
        if let Some((model, _)) = self.models.late {
            let dim = model.info().dim;
            for (page, e) in numbers.iter().zip(embed_images(model, images)?) {
                let Embedding::Multi(tokens) = e else {
                    return Err("the late-interaction embedder gave one vector a page; \
                                give it as the page model"
                        .into());
                };
                let flat: Vec<f32> = tokens.into_iter().flatten().collect();
                let matrix =
                    TokenMatrix::from_f32(dim, &flat).map_err(|e| format!("page {page}: {e}"))?;
                out.tokens.push((*page, matrix));
            }
        }
        Ok(())
    }
}

fn page_image(img: image::RgbImage) -> PageImage {
    PageImage {
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    }
}

/// What a document's page images come from.
#[derive(Clone, Copy)]
pub(crate) enum Pictures<'a> {
    /// A PDF: its pages are rendered.
    Pdf(PdfFile<'a>),
    /// An encoded image (PNG, JPEG) that is the document's only page.
    Image(&'a [u8]),
}

/// A PDF file: its bytes, and where they were read from (for a worker process to read).
#[derive(Clone, Copy)]
pub(crate) struct PdfFile<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) path: &'a std::path::Path,
}

fn embed_images(model: &dyn PageEmbedder, images: &[PageImage]) -> Result<Vec<Embedding>, String> {
    let embeddings = model
        .embed_pages(images)
        .map_err(|e| format!("page embedding with {} failed: {e}", model.info().id))?;
    if embeddings.len() != images.len() {
        return Err(format!(
            "page embedder {} gave {} embeddings for {} pages",
            model.info().id,
            embeddings.len(),
            images.len()
        ));
    }
    Ok(embeddings)
}

/// The file's warning for pages left without an image: `failed` holds, per reason, how many
/// pages it covers (a range counts every page in it) and the reason.
fn no_image_warning(failed: &[(usize, String)]) -> Option<String> {
    let pages: usize = failed.iter().map(|(n, _)| n).sum();
    match failed {
        [] => None,
        [(1, only)] => Some(format!("1 page has no page image: {only}")),
        [(_, only)] => Some(format!("{pages} pages have no page image: {only}")),
        [(_, first), ..] => Some(format!("{pages} pages have no page image; first: {first}")),
    }
}

#[cfg(test)]
mod warning_tests {
    use super::no_image_warning;

    #[test]
    fn the_warning_counts_every_page_of_a_range() {
        assert_eq!(no_image_warning(&[]), None);
        let one = (1, "page 2: cannot be decoded".to_string());
        let range = (773, "pages 9228-10000: over the time limit".to_string());
        assert_eq!(
            no_image_warning(std::slice::from_ref(&one)).as_deref(),
            Some("1 page has no page image: page 2: cannot be decoded")
        );
        assert_eq!(
            no_image_warning(std::slice::from_ref(&range)).as_deref(),
            Some("773 pages have no page image: pages 9228-10000: over the time limit")
        );
        assert_eq!(
            no_image_warning(&[one, range]).as_deref(),
            Some("774 pages have no page image; first: page 2: cannot be decoded")
        );
    }
}
