//! Page-image retrieval end to end with a real (tiny, random-weight) Qwen2-VL: the sample PDFs
//! are rendered and embedded by the GME head (page route) and the ColQwen2 head with its LoRA
//! adapter (late-interaction route), then searched with image, text and text+image queries.
//!
//! The tiny model's weights are random, so these tests check plumbing and exactness (stored
//! vectors are the model's vectors, an image query embeds what the index holds, routes are
//! chosen by what the query carries), not retrieval quality.

use std::path::PathBuf;
use std::sync::Arc;

use folio_core::testing::HashEmbedder;
use folio_core::{Embedder, Embedding, PageEmbedder, PageImage};
use folio_e2e::repo_root;
use folio_indexer::render::{self, RenderSettings};
use folio_indexer::{Embedders, FileStatus, IndexSettings, collect_pdfs, index_files_with};
use folio_models::qwen2_vl::embed::{VlEmbedder, VlHead, VlOptions};
use folio_models::qwen2_vl::image::PixelBounds;
use folio_search::{Pipeline, SearchRequest};
use folio_store::{PageImageKind, Store, TokenMatrix, maxsim};

fn fixture(name: &str) -> PathBuf {
    repo_root()
        .join("services/models/tests/fixtures/qwen2vl")
        .join(name)
}

/// Pages are embedded at 16 to 64 visual tokens: enough to exercise real page images while
/// keeping the test fast on a CPU.
fn load(dir: &str, head: VlHead) -> anyhow::Result<Arc<VlEmbedder>> {
    let options = VlOptions {
        head: Some(head),
        pixels: Some(PixelBounds {
            min_pixels: 16 * 28 * 28,
            max_pixels: 64 * 28 * 28,
        }),
        ..VlOptions::default()
    };
    Ok(Arc::new(VlEmbedder::load(
        &fixture(dir),
        options,
        &folio_models::default_device(),
    )?))
}

fn quiet() -> IndexSettings {
    IndexSettings {
        progress: false,
        ..IndexSettings::default()
    }
}

fn page_image(pdf: &str, page: usize) -> anyhow::Result<(PageImage, Vec<u8>)> {
    let bytes = std::fs::read(repo_root().join("datasets/samples").join(pdf))?;
    let img = render::render_page(&bytes, page, &RenderSettings::default())?;
    let png = render::encode_png(&img)?;
    let image = PageImage {
        width: img.width(),
        height: img.height(),
        rgb: img.into_raw(),
    };
    Ok((image, png))
}

#[test]
fn sample_pages_are_searchable_by_image_and_text_through_both_page_routes() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("index");
    let text = Arc::new(HashEmbedder::new(64));
    let gme = load("tiny-qwen2vl", VlHead::Gme)?;
    let colqwen = load("tiny-colqwen2-lora", VlHead::ColQwen)?;
    let models = Embedders {
        text: text.as_ref(),
        text_source: None,
        page: Some((gme.as_ref() as &dyn PageEmbedder, None)),
        late: Some((colqwen.as_ref() as &dyn PageEmbedder, None)),
    };
    let (files, _) = collect_pdfs(&[repo_root().join("datasets/samples")]);
    let report = index_files_with(&index, &files, &models, &quiet())?;
    assert_eq!(report.count(FileStatus::Indexed), files.len(), "{report:?}");
    assert!(
        report.files.iter().all(|f| f.warning.is_none()),
        "{report:?}"
    );
    assert_eq!(report.page_images, report.pages_indexed);

    let store = Arc::new(Store::open(&index)?);
    let pages = store.manifest().pages;
    assert_eq!(store.manifest().page_vectors, pages);
    assert_eq!(store.manifest().late_pages, pages);

    // Every page's image and thumbnail are stored next to the index.
    for doc in store.documents().values() {
        for page in 1..=doc.pages {
            let key = folio_core::PageKey {
                doc_id: doc.doc_id.clone(),
                page,
            };
            let read = |kind| -> anyhow::Result<image::RgbImage> {
                let path = store
                    .page_image(&key, kind)
                    .ok_or_else(|| anyhow::anyhow!("no {kind:?} image for {key}"))?;
                Ok(render::decode_image(&std::fs::read(path)?)?)
            };
            let full = read(PageImageKind::Page)?;
            let thumb = read(PageImageKind::Thumbnail)?;
            assert!(full.width().max(full.height()) > 256, "{key}");
            assert_eq!(thumb.width().max(thumb.height()), 256, "{key}");
        }
    }

    // The stored page vector is the model's vector of the rendered page: searching with it
    // finds that page with cosine 1.
    let (image, png) = page_image("multi_page.pdf", 2)?;
    let direct = gme.embed_pages(std::slice::from_ref(&image))?;
    let vector = direct[0].as_single().unwrap_or_default();
    let hits = store.page_search(vector, 3, None)?;
    let doc = |path: &str| {
        store
            .documents()
            .values()
            .find(|d| d.path.ends_with(path))
            .map(|d| d.doc_id.clone())
    };
    let multi_page = doc("multi_page.pdf");
    assert_eq!(Some(&hits[0].0.doc_id), multi_page.as_ref(), "{hits:?}");
    assert_eq!(hits[0].0.page, 3);
    assert!((hits[0].1 - 1.0).abs() < 1e-4, "{hits:?}");

    let text_embedder: Arc<dyn Embedder> = text.clone();
    let mut pipeline = Pipeline::new(store.clone(), Some(text_embedder))?;
    pipeline.add_page_embedder(gme.clone())?;
    pipeline.add_page_embedder(colqwen.clone())?;
    assert_eq!(pipeline.route_names(), ["bm25", "dense", "page", "late"]);

    // An image-only query runs the page route alone (ColQwen2 takes text queries only).
    let mut request = SearchRequest::new("", 5);
    request.image = Some(png.clone());
    let response = pipeline.search(&request)?;
    assert_eq!(response.hits.len(), 5);
    for h in &response.hits {
        assert_eq!(h.routes.keys().collect::<Vec<_>>(), ["page"], "{h:?}");
    }
    // The page route's scores are cosines between the query's GME vector and the pages'.
    let retrieved = pipeline.retrieve(&request)?;
    let page_list = &retrieved.lists[0];
    let query = gme.embed_visual_queries(&[folio_core::VisualQuery {
        text: None,
        image: Some(image.clone()),
    }])?;
    let q = query[0].as_single().unwrap_or_default();
    let best = store.page_search(q, 1, None)?;
    assert_eq!(page_list.hits[0].page, best[0].0);
    assert!((page_list.hits[0].score - best[0].1).abs() < 1e-5);

    // A text query runs every route; the late route's scores are MaxSim over the f16 token
    // vectors of the model's own page embeddings.
    let request = SearchRequest::new("word processor history", 30);
    let retrieved = pipeline.retrieve(&request)?;
    let names: Vec<&str> = retrieved.lists.iter().map(|l| l.route.as_str()).collect();
    assert_eq!(names, ["bm25", "dense", "page", "late"]);
    let late = &retrieved.lists[3];
    assert_eq!(late.hits.len(), pages, "every page has token vectors");
    let query = colqwen.embed_visual_queries(&[folio_core::VisualQuery {
        text: Some("word processor history".into()),
        image: None,
    }])?;
    let Some(Embedding::Multi(q_tokens)) = query.into_iter().next() else {
        anyhow::bail!("ColQwen2 gave no token vectors");
    };
    let q_flat: Vec<f32> = q_tokens.iter().flatten().copied().collect();
    let (image, _) = page_image("multi_page.pdf", 2)?;
    let page_tokens = colqwen.embed_pages(&[image])?;
    let Some(Embedding::Multi(p_tokens)) = page_tokens.into_iter().next() else {
        anyhow::bail!("ColQwen2 gave no page token vectors");
    };
    let flat: Vec<f32> = p_tokens.iter().flatten().copied().collect();
    let expected = maxsim(&q_flat, &TokenMatrix::from_f32(128, &flat)?);
    let got = late
        .hits
        .iter()
        .find(|h| Some(&h.page.doc_id) == multi_page.as_ref() && h.page.page == 3)
        .map(|h| h.score);
    assert_eq!(got, Some(expected));

    // Text and image: the text routes and the page route answer.
    let mut request = SearchRequest::new("word processor", 5);
    request.image = Some(png);
    let retrieved = pipeline.retrieve(&request)?;
    let names: Vec<&str> = retrieved.lists.iter().map(|l| l.route.as_str()).collect();
    assert_eq!(names, ["bm25", "dense", "page"]);

    // Unchanged files are skipped: no page is rendered or embedded again.
    let again = index_files_with(&index, &files, &models, &quiet())?;
    assert_eq!(again.count(FileStatus::Unchanged), files.len());
    assert_eq!(again.page_images, 0);
    Ok(())
}
