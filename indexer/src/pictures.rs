//! A document's pictures: its pages rendered (or its one image decoded), stored next to the
//! index as PNG and thumbnail, and embedded by the page models for the page and late routes.

use std::time::Instant;

use folio_core::{DocId, Embedding, PageEmbedder, PageImage, PageKey};
use folio_store::{PageEmbeddings, PageImageKind, TokenMatrix};

use crate::{PAGE_CHUNK, Run, render};

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
        let mut failed: Vec<String> = Vec::new();
        match pictures {
            Pictures::Pdf(pdf) => {
                self.rendered_pages(doc_id, pdf, n_pages, short, &mut out, &mut failed)?;
            }
            Pictures::Image(bytes) => match render::decode_image(bytes) {
                Ok(img) => self.take_pictures(doc_id, vec![(1, img)], &mut out, &mut failed)?,
                Err(e) => failed.push(format!("page 1: {e}")),
            },
        }
        let warning = match failed.as_slice() {
            [] => None,
            [only] => Some(format!("1 page has no page image: {only}")),
            [first, ..] => Some(format!(
                "{} pages have no page image; first: {first}",
                failed.len()
            )),
        };
        Ok((out, warning))
    }

    /// Renders the pages of a PDF, [`PAGE_CHUNK`] at a time, and takes them.
    fn rendered_pages(
        &mut self,
        doc_id: &DocId,
        pdf: &[u8],
        n_pages: u32,
        short: &str,
        out: &mut PageEmbeddings,
        failed: &mut Vec<String>,
    ) -> Result<(), String> {
        let mut renderer = match render::PageRenderer::open(pdf) {
            Ok(r) => r,
            Err(e) => {
                failed.push(format!("pages 1-{n_pages}: {e}"));
                return Ok(());
            }
        };
        let wanted = (n_pages as usize).min(renderer.page_count());
        if renderer.page_count() < n_pages as usize {
            failed.push(format!(
                "pages {}-{n_pages}: the renderer finds only {} pages",
                renderer.page_count() + 1,
                renderer.page_count()
            ));
        }
        let mut start = 0;
        while start < wanted {
            let end = (start + PAGE_CHUNK).min(wanted);
            let mut pages = Vec::with_capacity(end - start);
            let rendered = renderer.render_range(start..end, &self.settings.render);
            for (i, result) in rendered.into_iter().enumerate() {
                let page = (start + i + 1) as u32;
                match result {
                    Ok(img) => pages.push((page, img)),
                    Err(e) => failed.push(format!("page {page}: {e}")),
                }
            }
            self.take_pictures(doc_id, pages, out, failed)?;
            let rate = self.report.page_images as f64 / self.report.page_image_seconds.max(1e-9);
            self.bar.set_message(format!(
                "{short}: page images {end}/{wanted} ({rate:.2} pages/s)"
            ));
            start = end;
        }
        Ok(())
    }

    /// Stores (when asked) and embeds (with each page model) the images of `pages`.
    fn take_pictures(
        &mut self,
        doc_id: &DocId,
        pages: Vec<(u32, image::RgbImage)>,
        out: &mut PageEmbeddings,
        failed: &mut Vec<String>,
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
                    failed.push(format!("page {page}: not stored: {e}"));
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
    /// A PDF's bytes: its pages are rendered.
    Pdf(&'a [u8]),
    /// An encoded image (PNG, JPEG) that is the document's only page.
    Image(&'a [u8]),
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
