//! The page-image routes in the pipeline, with a deterministic pixel embedder: image queries,
//! route selection by what the query carries, fusion with the text routes, and the checks
//! that keep a model from searching an index built with another.

use std::sync::Arc;

use folio_core::testing::{HashEmbedder, PixelEmbedder};
use folio_core::{
    BBox, DocId, DocMeta, Document, Embedder, EmbeddingKind, Filter, Page, PageEmbedder, PageImage,
    PageKey, Passage,
};
use folio_search::{Pipeline, SearchError, SearchRequest, TextLayer};
use folio_store::{IndexModels, PageEmbeddings, RouteModel, Store, StoreWriter, TokenMatrix};
use image::{ImageEncoder, codecs::png::PngEncoder};

/// The box the passage of page `page` covers.
fn line_box(page: u32) -> BBox {
    let top = 0.1 * page as f32;
    BBox {
        x0: 0.1,
        y0: top,
        x1: 0.9,
        y1: top + 0.05,
    }
}

/// A page image whose brightness grows with `shade`, with a darker top half on odd shades.
fn picture(shade: u8) -> PageImage {
    let (width, height) = (40u32, 60u32);
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        let v = if shade % 2 == 1 && y < height / 2 {
            shade / 2
        } else {
            shade
        };
        for _ in 0..width {
            rgb.extend([v, v.saturating_add(10), v]);
        }
    }
    PageImage { width, height, rgb }
}

fn png(image: &PageImage) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(
        &image.rgb,
        image.width,
        image.height,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Arc<Store>,
    text: Arc<HashEmbedder>,
    single: Arc<PixelEmbedder>,
    multi: Arc<PixelEmbedder>,
}

/// Two documents of three pages, each page with its own picture (shades 0, 40, ..., 200);
/// page 3 of the second document has no text (a scan).
fn fixture() -> anyhow::Result<Fixture> {
    let tmp = tempfile::tempdir()?;
    let text = Arc::new(HashEmbedder::new(16));
    let single = Arc::new(PixelEmbedder::new(24, EmbeddingKind::Single));
    let multi = Arc::new(PixelEmbedder::new(24, EmbeddingKind::Multi));
    let record = |e: &PixelEmbedder| RouteModel {
        embedder: e.info().clone(),
        source: None,
    };
    let models = IndexModels {
        page: Some(record(&single)),
        late: Some(record(&multi)),
        ..IndexModels::text(text.info(), None)
    };
    let mut w = StoreWriter::open_with(tmp.path(), models)?;
    for d in 0..2u8 {
        let doc_id = DocId(format!("doc{d}"));
        let mut pages = Vec::new();
        let mut passages = Vec::new();
        let mut vectors = Vec::new();
        let mut images = Vec::new();
        for p in 1..=3u32 {
            let key = PageKey {
                doc_id: doc_id.clone(),
                page: p,
            };
            let scan = d == 1 && p == 3;
            let body = if scan {
                String::new()
            } else {
                format!("report {d} section {p} about rainfall and harvests")
            };
            if !scan {
                passages.push(Passage {
                    id: 0,
                    page: key.clone(),
                    char_start: 0,
                    char_end: body.len() as u32,
                    text: body.clone(),
                    boxes: vec![line_box(p)],
                });
                vectors.push(text.embed(&body));
            }
            pages.push(Page { key, text: body });
            images.push(picture(d * 120 + (p as u8 - 1) * 40));
        }
        let doc = Document {
            doc_id: doc_id.clone(),
            path: format!("/reports/{d}.pdf"),
            content_hash: format!("hash{d}"),
            pages: 3,
            bytes: 1,
            meta: DocMeta {
                collection: Some(["alpha", "beta"][usize::from(d)].into()),
                tags: vec![format!("t{d}"), "all".into()],
                modified: Some(1000 * u64::from(d)),
            },
        };
        w.put_document(doc, pages, passages, vectors)?;
        let mut embeddings = PageEmbeddings::default();
        for (i, e) in single.embed_pages(&images)?.into_iter().enumerate() {
            let v = e.as_single().unwrap_or_default().to_vec();
            embeddings.vectors.push((i as u32 + 1, v));
        }
        for (i, e) in multi.embed_pages(&images)?.into_iter().enumerate() {
            let flat: Vec<f32> = e.as_multi().unwrap_or_default().concat();
            embeddings
                .tokens
                .push((i as u32 + 1, TokenMatrix::from_f32(24, &flat)?));
        }
        w.set_page_embeddings(&doc_id, embeddings)?;
    }
    w.commit()?;
    Ok(Fixture {
        store: Arc::new(Store::open(tmp.path())?),
        _tmp: tmp,
        text,
        single,
        multi,
    })
}

fn pipeline(f: &Fixture) -> anyhow::Result<Pipeline> {
    let text: Arc<dyn Embedder> = f.text.clone();
    let mut p = Pipeline::new(f.store.clone(), Some(text))?;
    p.add_page_embedder(f.single.clone())?;
    p.add_page_embedder(f.multi.clone())?;
    Ok(p)
}

#[test]
fn an_image_query_finds_its_page_through_both_page_routes() -> anyhow::Result<()> {
    let f = fixture()?;
    let p = pipeline(&f)?;
    assert_eq!(p.route_names(), ["bm25", "dense", "page", "late"]);
    // doc1 page 2 has shade 160.
    let mut request = SearchRequest::new("", 3);
    request.image = Some(png(&picture(160))?);
    let response = p.search(&request)?;
    let top = &response.hits[0];
    assert_eq!((top.doc_id.as_str(), top.page), ("doc1", 2), "{response:?}");
    assert_eq!(top.routes.get("page"), Some(&1));
    assert_eq!(top.routes.get("late"), Some(&1));
    assert!(!top.routes.contains_key("bm25"));
    // Page routes match no passage: the snippet is the page's first passage.
    assert_eq!(
        top.snippet,
        "report 1 section 2 about rainfall and harvests"
    );
    assert_eq!(top.passage.as_ref().map(|s| s.char_start), Some(0));
    // The passage's boxes come with it, for highlighting on the page image.
    assert_eq!(
        top.passage.as_ref().map(|s| s.boxes.clone()),
        Some(vec![line_box(2)])
    );
    assert_eq!(top.text_layer, TextLayer::Text);

    // The scanned page (shade 200) is found by its image alone, flagged as such.
    request.image = Some(png(&picture(200))?);
    let response = p.search(&request)?;
    let top = &response.hits[0];
    assert_eq!((top.doc_id.as_str(), top.page), ("doc1", 3), "{response:?}");
    assert_eq!(top.text_layer, TextLayer::None);
    assert_eq!(top.snippet, "");
    assert!(top.passage.is_none());
    Ok(())
}

#[test]
fn routes_run_when_the_query_carries_what_they_need() -> anyhow::Result<()> {
    let f = fixture()?;
    let mut p = pipeline(&f)?;
    let route_names = |request: &SearchRequest, p: &Pipeline| -> anyhow::Result<Vec<String>> {
        Ok(p.retrieve(request)?
            .lists
            .into_iter()
            .map(|l| l.route)
            .collect())
    };
    let text = SearchRequest::new("rainfall section", 3);
    assert_eq!(route_names(&text, &p)?, ["bm25", "dense", "page", "late"]);
    let mut both = text.clone();
    both.image = Some(png(&picture(40))?);
    assert_eq!(route_names(&both, &p)?, ["bm25", "dense", "page", "late"]);

    // Without the page-image routes, an image-only query has nothing to answer it.
    p.keep_routes(&["bm25", "dense"])?;
    let mut image_only = SearchRequest::new("", 3);
    image_only.image = both.image.clone();
    let err = p.search(&image_only).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("image-only query")),
        "{err:?}"
    );
    assert_eq!(route_names(&both, &p)?, ["bm25", "dense"]);

    // A broken image is the caller's fault, and says so.
    let mut broken = SearchRequest::new("", 3);
    broken.image = Some(b"\x89PNG\r\n\x1a\nnot really".to_vec());
    let err = pipeline(&f)?.search(&broken).err();
    assert!(
        matches!(&err, Some(SearchError::InvalidRequest(m)) if m.contains("image")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn a_page_model_other_than_the_index_one_is_refused() -> anyhow::Result<()> {
    let f = fixture()?;
    let text: Arc<dyn Embedder> = f.text.clone();
    let mut p = Pipeline::new(f.store.clone(), Some(text))?;
    let other = Arc::new(PixelEmbedder::new(12, EmbeddingKind::Single));
    let err = p.add_page_embedder(other).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("page route") && e.contains("test/pixels-single-12")),
        "{err:?}"
    );
    assert_eq!(p.route_names(), ["bm25", "dense"]);
    Ok(())
}

#[test]
fn filters_limit_every_route_to_the_documents_they_keep() -> anyhow::Result<()> {
    let f = fixture()?;
    let p = pipeline(&f)?;
    let docs = |request: &SearchRequest| -> anyhow::Result<Vec<String>> {
        let mut seen: Vec<String> = p
            .retrieve(request)?
            .lists
            .iter()
            .flat_map(|l| l.hits.iter().map(|h| h.page.doc_id.0.clone()))
            .collect();
        seen.sort();
        seen.dedup();
        Ok(seen)
    };
    let mut request = SearchRequest::new("rainfall section", 10);
    request.image = Some(png(&picture(160))?);
    assert_eq!(docs(&request)?, ["doc0", "doc1"]);
    for (filter, expected) in [
        (
            Filter {
                collections: vec!["alpha".into()],
                ..Filter::default()
            },
            vec!["doc0"],
        ),
        (
            Filter {
                tags: vec!["all".into(), "t1".into()],
                ..Filter::default()
            },
            vec!["doc1"],
        ),
        (
            Filter {
                path_prefix: Some("/reports/1".into()),
                ..Filter::default()
            },
            vec!["doc1"],
        ),
        (
            Filter {
                modified_before: Some(500),
                ..Filter::default()
            },
            vec!["doc0"],
        ),
        (
            Filter {
                doc_ids: vec![DocId("doc1".into())],
                collections: vec!["alpha".into()],
                ..Filter::default()
            },
            vec![],
        ),
    ] {
        request.filter = Some(filter.clone());
        assert_eq!(docs(&request)?, expected, "{filter:?}");
    }
    // The image of a doc1 page, limited to doc0: the best page comes from doc0.
    request.filter = Some(Filter {
        collections: vec!["alpha".into()],
        ..Filter::default()
    });
    let response = p.search(&request)?;
    assert!(response.hits.iter().all(|h| h.doc_id == "doc0"));
    assert_eq!(response.hits.len(), 3);
    Ok(())
}

#[test]
fn a_request_picks_its_routes_fusion_and_page() -> anyhow::Result<()> {
    let f = fixture()?;
    let p = pipeline(&f)?;
    let routes = |request: &SearchRequest| -> anyhow::Result<Vec<String>> {
        Ok(p.retrieve(request)?
            .lists
            .into_iter()
            .map(|l| l.route)
            .collect())
    };
    let mut request = SearchRequest::new("rainfall section", 4);
    request.routes = Some(vec!["late".into(), "bm25".into()]);
    // Pipeline order, whatever the request's order.
    assert_eq!(routes(&request)?, ["bm25", "late"]);
    request.routes = Some(vec!["colbert".into()]);
    let err = p.search(&request).err().map(|e| e.to_string());
    assert!(
        err.as_deref()
            .is_some_and(|e| e.contains("\"colbert\"") && e.contains("bm25, dense, page, late")),
        "{err:?}"
    );

    // Paging: offset 2, k 2 is ranks 3 and 4 of the same ranking.
    let all = p.search(&SearchRequest::new("rainfall section", 4))?;
    let mut second = SearchRequest::new("rainfall section", 2);
    second.offset = 2;
    let page2 = p.search(&second)?;
    let key = |h: &folio_search::SearchHit| (h.doc_id.clone(), h.page);
    assert_eq!(
        page2.hits.iter().map(key).collect::<Vec<_>>(),
        all.hits[2..4].iter().map(key).collect::<Vec<_>>()
    );
    assert_eq!(page2.hits[0].fused_rank, 3);
    assert_eq!((page2.offset, page2.k), (2, 2));

    // Weighted fusion is a different scoring of the same lists.
    let mut weighted = SearchRequest::new("rainfall section", 4);
    weighted.fusion = "weighted".into();
    let w = p.search(&weighted)?;
    assert_eq!(w.hits.len(), 4);
    assert_ne!(w.hits[0].score, all.hits[0].score);
    weighted.fusion = "borda".into();
    assert!(p.search(&weighted).is_err());

    // Hits name their document and mark the query's words in the snippet.
    let top = &all.hits[0];
    assert_eq!(
        top.title,
        top.path
            .trim_start_matches("/reports/")
            .trim_end_matches(".pdf")
    );
    let marked: Vec<String> = top
        .highlights
        .iter()
        .map(|[a, b]| {
            top.snippet
                .chars()
                .skip(*a as usize)
                .take((b - a) as usize)
                .collect()
        })
        .collect();
    assert_eq!(marked, ["section", "rainfall"], "{top:?}");
    Ok(())
}

#[test]
fn a_reopened_pipeline_keeps_its_routes_and_checks_the_new_generation() -> anyhow::Result<()> {
    let f = fixture()?;
    let mut p = pipeline(&f)?;
    p.keep_routes(&["bm25", "page"])?;
    let again = p.reopened(Arc::new(Store::open(f.store.dir())?))?;
    assert_eq!(again.route_names(), ["bm25", "page"]);
    let request = SearchRequest::new("rainfall section", 3);
    assert_eq!(p.search(&request)?.hits, again.search(&request)?.hits);

    // An index rebuilt with another text model cannot be swapped in.
    let tmp = tempfile::tempdir()?;
    let other = HashEmbedder::new(8);
    let mut w = StoreWriter::open(tmp.path(), other.info(), None)?;
    w.put_document(
        Document {
            doc_id: DocId("x".into()),
            path: "/x.pdf".into(),
            content_hash: "h".into(),
            pages: 1,
            bytes: 1,
            meta: DocMeta::default(),
        },
        vec![],
        vec![],
        vec![],
    )?;
    w.commit()?;
    let full = pipeline(&f)?;
    let err = full
        .reopened(Arc::new(Store::open(tmp.path())?))
        .err()
        .map(|e| e.to_string());
    assert!(
        err.as_deref().is_some_and(|e| e.contains("embedder")),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn titles_drop_the_folder_and_the_pdf_extension() {
    assert_eq!(
        folio_search::title_of("/a/b/Annual Report.PDF"),
        "Annual Report"
    );
    assert_eq!(folio_search::title_of("notes.txt"), "notes.txt");
    assert_eq!(folio_search::title_of("C:\\x\\é.pdf"), "é");
    assert_eq!(folio_search::title_of(".pdf"), "");
}
