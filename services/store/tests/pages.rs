//! The page-image routes in the store: page vectors (HNSW) and late-interaction token
//! vectors (MaxSim) written, reopened, carried through incremental commits, removed with
//! their document, and refused when they do not fit the index.

use folio_core::testing::HashEmbedder;
use folio_core::{DocId, Document, Embedder, EmbedderInfo, EmbeddingKind, Page, PageKey, Passage};
use folio_store::{
    IndexModels, PageEmbeddings, RouteModel, Store, StoreError, StoreWriter, TokenMatrix,
};

const DIM: usize = 8;

fn route(id: &str, kind: EmbeddingKind) -> RouteModel {
    RouteModel {
        embedder: EmbedderInfo {
            id: id.into(),
            dim: DIM,
            kind,
            max_batch: 4,
            max_tokens: 1024,
        },
        source: None,
    }
}

fn models(text: &HashEmbedder) -> IndexModels {
    IndexModels {
        page: Some(route("test/page", EmbeddingKind::Single)),
        late: Some(route("test/late", EmbeddingKind::Multi)),
        ..IndexModels::text(text.info(), None)
    }
}

/// The unit vector along axis `i`.
fn axis(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i % DIM] = 1.0;
    v
}

/// Puts a document of `pages` pages whose page `p` has the vector `axis(first + p)`, and
/// token vectors on every page but the last.
fn put(
    w: &mut StoreWriter,
    text: &HashEmbedder,
    id: &str,
    pages: u32,
    first: usize,
) -> anyhow::Result<DocId> {
    let doc_id = DocId(id.into());
    let mut page_list = Vec::new();
    let mut passages = Vec::new();
    let mut vectors = Vec::new();
    for p in 1..=pages {
        let key = PageKey {
            doc_id: doc_id.clone(),
            page: p,
        };
        let body = format!("document {id} page {p}");
        passages.push(Passage {
            id: 0,
            page: key.clone(),
            char_start: 0,
            char_end: body.len() as u32,
            text: body.clone(),
            boxes: Vec::new(),
        });
        vectors.push(text.embed(&body));
        page_list.push(Page { key, text: body });
    }
    let doc = Document {
        doc_id: doc_id.clone(),
        path: format!("/{id}.pdf"),
        content_hash: format!("{id}-hash"),
        pages,
        bytes: 1,
        meta: Default::default(),
    };
    w.put_document(doc, page_list, passages, vectors)?;
    let embeddings = PageEmbeddings {
        vectors: (1..=pages).map(|p| (p, axis(first + p as usize))).collect(),
        tokens: (1..pages)
            .map(|p| {
                let mut flat = axis(first + p as usize);
                flat.extend(axis(first + p as usize + 1));
                Ok((p, TokenMatrix::from_f32(DIM, &flat)?))
            })
            .collect::<Result<_, StoreError>>()?,
    };
    w.set_page_embeddings(&doc_id, embeddings)?;
    Ok(doc_id)
}

fn key(id: &str, page: u32) -> PageKey {
    PageKey {
        doc_id: DocId(id.into()),
        page,
    }
}

#[test]
fn page_routes_round_trip_through_incremental_commits_and_removal() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let text = HashEmbedder::new(16);
    let mut w = StoreWriter::open_with(tmp.path(), models(&text))?;
    put(&mut w, &text, "aaaa", 3, 0)?;
    w.commit()?;

    let store = Store::open(tmp.path())?;
    assert_eq!(store.manifest().page_vectors, 3);
    assert_eq!(store.manifest().late_pages, 2);
    let hits = store.page_search(&axis(2), 3, None)?;
    assert_eq!(hits[0].0, key("aaaa", 2));
    assert!((hits[0].1 - 1.0).abs() < 1e-5, "{hits:?}");
    // Page 1 has tokens along axes 1 and 2: MaxSim of a query on axes 1 and 2 is 2.
    let mut query = vec![axis(1), axis(2)];
    let late = store.late_search(&query, 5, None)?;
    assert_eq!(late[0].0, key("aaaa", 1));
    assert!((late[0].1 - 2.0).abs() < 1e-3, "{late:?}");
    // Page 3 has no tokens: the late route never returns it.
    assert!(late.iter().all(|(k, _)| k.page != 3));
    assert_eq!(
        store
            .first_passage(&key("aaaa", 3))
            .map(|p| p.text.as_str()),
        Some("document aaaa page 3")
    );

    // Another document in the next generation: the first one's page vectors are carried.
    let mut w = StoreWriter::open_with(tmp.path(), models(&text))?;
    put(&mut w, &text, "bbbb", 2, 4)?;
    w.commit()?;
    let store = Store::open(tmp.path())?;
    assert_eq!(store.manifest().page_vectors, 5);
    assert_eq!(store.page_search(&axis(2), 1, None)?[0].0, key("aaaa", 2));
    assert_eq!(store.page_search(&axis(5), 1, None)?[0].0, key("bbbb", 1));
    query = vec![axis(5), axis(6)];
    assert_eq!(store.late_search(&query, 1, None)?[0].0, key("bbbb", 1));

    // Removing a document removes its pages from both routes.
    let mut w = StoreWriter::open_existing(tmp.path())?;
    w.remove(&DocId("aaaa".into()));
    w.commit()?;
    let store = Store::open(tmp.path())?;
    assert_eq!(store.manifest().page_vectors, 2);
    assert_eq!(store.manifest().late_pages, 1);
    for (k, _) in store.page_search(&axis(2), 10, None)? {
        assert_eq!(k.doc_id.as_str(), "bbbb");
    }
    for (k, _) in store.late_search(&[axis(1)], 10, None)? {
        assert_eq!(k.doc_id.as_str(), "bbbb");
    }
    Ok(())
}

#[test]
fn page_embeddings_that_do_not_fit_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let text = HashEmbedder::new(16);
    let mut w = StoreWriter::open_with(tmp.path(), models(&text))?;
    let id = put(&mut w, &text, "aaaa", 2, 0)?;
    for (embeddings, needle) in [
        (
            PageEmbeddings {
                vectors: vec![(0, axis(0))],
                tokens: Vec::new(),
            },
            "page 0",
        ),
        (
            PageEmbeddings {
                vectors: vec![(3, axis(0))],
                tokens: Vec::new(),
            },
            "page 3",
        ),
        (
            PageEmbeddings {
                vectors: vec![(1, vec![1.0; 3])],
                tokens: Vec::new(),
            },
            "width 3",
        ),
        (
            PageEmbeddings {
                vectors: Vec::new(),
                tokens: vec![(1, TokenMatrix::from_f32(4, &[1.0, 0.0, 0.0, 0.0])?)],
            },
            "width 4",
        ),
    ] {
        let err = w
            .set_page_embeddings(&id, embeddings)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let missing = w.set_page_embeddings(&DocId("zzzz".into()), PageEmbeddings::default());
    assert!(matches!(missing, Err(StoreError::Invalid(_))));
    w.commit()?;

    // The index has page routes: writing without their models, or with others, is refused.
    let err = StoreWriter::open(tmp.path(), text.info(), None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("page route") && err.contains("test/page"),
        "{err}"
    );
    let mut other = models(&text);
    other.late = Some(route("test/other", EmbeddingKind::Multi));
    let err = StoreWriter::open_with(tmp.path(), other)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("late route") && err.contains("test/other"),
        "{err}"
    );
    let store = Store::open(tmp.path())?;
    assert!(store.page_search(&[1.0; 3], 1, None).is_err());
    assert!(store.late_search(&[vec![1.0; 3]], 1, None).is_err());

    // A text-only index with documents cannot gain a page route: its pages have no vectors.
    let plain = tempfile::tempdir()?;
    let mut w = StoreWriter::open(plain.path(), text.info(), None)?;
    let no_route = put(&mut w, &text, "cccc", 1, 0);
    assert!(
        no_route.is_err(),
        "page vectors on an index without the route"
    );
    w.commit()?;
    let err = StoreWriter::open_with(plain.path(), models(&text))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("has no page route"), "{err}");
    let store = Store::open(plain.path())?;
    assert!(store.page_search(&axis(0), 1, None).is_err());
    Ok(())
}

#[test]
fn page_images_are_kept_while_a_generation_holds_their_document() -> anyhow::Result<()> {
    use folio_store::PageImageKind::{Page as Full, Thumbnail};
    let tmp = tempfile::tempdir()?;
    let text = HashEmbedder::new(16);
    let mut w = StoreWriter::open_with(tmp.path(), models(&text))?;
    put(&mut w, &text, "aaaa", 2, 0)?;
    w.put_page_image(&key("aaaa", 1), Full, b"png-1")?;
    w.put_page_image(&key("aaaa", 1), Thumbnail, b"thumb-1")?;
    // An image of a document that never makes it into a generation.
    w.put_page_image(&key("zzzz", 1), Full, b"orphan")?;
    // A document id that cannot name a directory is refused.
    assert!(w.put_page_image(&key("../x", 1), Full, b"x").is_err());
    w.commit()?;
    let store = Store::open(tmp.path())?;
    let path = store.page_image(&key("aaaa", 1), Full);
    assert_eq!(
        path.map(std::fs::read).transpose()?,
        Some(b"png-1".to_vec())
    );
    let thumb = store.page_image(&key("aaaa", 1), Thumbnail);
    assert_eq!(
        thumb.map(std::fs::read).transpose()?,
        Some(b"thumb-1".to_vec())
    );
    assert!(store.page_image(&key("aaaa", 2), Full).is_none());
    assert!(
        store.page_image(&key("zzzz", 1), Full).is_none(),
        "orphans are removed"
    );

    // Removed: kept while the previous generation (which readers may hold) has the document,
    // gone after the next commit.
    let mut w = StoreWriter::open_existing(tmp.path())?;
    w.remove(&DocId("aaaa".into()));
    put(&mut w, &text, "bbbb", 1, 3)?;
    w.commit()?;
    assert!(store.page_image(&key("aaaa", 1), Full).is_some());
    let mut w = StoreWriter::open_existing(tmp.path())?;
    put(&mut w, &text, "cccc", 1, 5)?;
    w.commit()?;
    assert!(store.page_image(&key("aaaa", 1), Full).is_none());
    Ok(())
}
