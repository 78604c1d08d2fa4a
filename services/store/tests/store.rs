//! Store round trips: commit, reopen, replace, remove, and the errors users meet.

use folio_core::testing::HashEmbedder;
use folio_core::{BBox, DocId, Document, Embedder, Page, PageKey, Passage};
use folio_store::{CommitOutcome, Manifest, Store, StoreError, StoreWriter};

fn doc(
    id: &str,
    path: &str,
    texts: &[&str],
    e: &HashEmbedder,
) -> (Document, Vec<Page>, Vec<Passage>, Vec<Vec<f32>>) {
    let doc_id = DocId(id.to_string());
    let mut pages = Vec::new();
    let mut passages = Vec::new();
    let mut vectors = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let key = PageKey {
            doc_id: doc_id.clone(),
            page: i as u32 + 1,
        };
        pages.push(Page {
            key: key.clone(),
            text: t.to_string(),
        });
        passages.push(Passage {
            id: 999,
            page: key,
            char_start: 0,
            char_end: t.len() as u32,
            text: t.to_string(),
            boxes: Vec::new(),
        });
        vectors.push(e.embed(t));
    }
    let d = Document {
        doc_id,
        path: path.into(),
        content_hash: format!("{id}-hash"),
        pages: texts.len() as u32,
        bytes: 10,
        meta: Default::default(),
    };
    (d, pages, passages, vectors)
}

fn put(
    w: &mut StoreWriter,
    parts: (Document, Vec<Page>, Vec<Passage>, Vec<Vec<f32>>),
) -> Result<(), StoreError> {
    w.put_document(parts.0, parts.1, parts.2, parts.3)
}

fn generations(dir: &std::path::Path) -> Vec<String> {
    let mut g: Vec<String> = std::fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("gen-"))
                .collect()
        })
        .unwrap_or_default();
    g.sort();
    g
}

#[test]
fn commit_open_search_and_reopen() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), Some("/models/x".into()))?;
    put(
        &mut w,
        doc(
            "bbbb",
            "/b.pdf",
            &["zebra stripes pattern", "lion mane"],
            &e,
        ),
    )?;
    put(
        &mut w,
        doc("aaaa", "/a.pdf", &["torque wrench settings"], &e),
    )?;
    assert_eq!(w.commit()?, CommitOutcome::Published { generation: 1 });

    let store = Store::open(tmp.path())?;
    assert_eq!(store.documents().len(), 2);
    assert_eq!(store.passage_count(), 3);
    // Passage ids are reassigned in document-id order: aaaa's passage is 0.
    assert_eq!(
        store.passage(0).map(|p| p.page.doc_id.as_str()),
        Some("aaaa")
    );
    let bm25 = store.bm25_search("zebras", 5, None)?;
    assert_eq!(bm25.len(), 1, "stemming should match zebras to zebra");
    assert_eq!(store.passage(bm25[0].0).map(|p| p.page.page), Some(1));
    let ann = store.ann_search(&e.embed("lion mane"), 3, None)?;
    assert_eq!(ann.len(), 3);
    assert_eq!(
        store.passage(ann[0].0).map(|p| p.text.as_str()),
        Some("lion mane")
    );
    assert!((ann[0].1 - 1.0).abs() < 1e-5);
    assert!(
        store.ann_search(&[1.0; 3], 3, None).is_err(),
        "wrong width must be refused"
    );
    assert_eq!(
        store.manifest().embedder_source.as_deref(),
        Some("/models/x")
    );

    // Nothing changed: no new generation.
    let w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert!(w.find_by_hash("aaaa-hash").is_some());
    assert_eq!(w.commit()?, CommitOutcome::Unchanged);
    assert_eq!(generations(tmp.path()), ["gen-000001"]);
    Ok(())
}

#[test]
fn replace_by_path_remove_and_garbage_collection() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    for (generation, (id, text)) in [
        ("aaaa", "first version"),
        ("cccc", "second version"),
        ("dddd", "third version"),
    ]
    .iter()
    .enumerate()
    {
        let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
        put(&mut w, doc(id, "/same.pdf", &[text], &e))?;
        assert_eq!(
            w.commit()?,
            CommitOutcome::Published {
                generation: generation as u64 + 1
            }
        );
    }
    let store = Store::open(tmp.path())?;
    assert_eq!(
        store.documents().len(),
        1,
        "a changed file replaces its pages"
    );
    assert!(store.document(&DocId("dddd".into())).is_some());
    assert!(store.bm25_search("first", 5, None)?.is_empty());
    // The current and the previous generation are kept, older ones removed.
    assert_eq!(generations(tmp.path()), ["gen-000002", "gen-000003"]);

    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert!(w.remove(&DocId("dddd".into())));
    assert!(!w.remove(&DocId("nope".into())));
    w.commit()?;
    let store = Store::open(tmp.path())?;
    assert!(store.documents().is_empty());
    assert!(store.bm25_search("third", 5, None)?.is_empty());
    assert!(store.ann_search(&e.embed("third"), 5, None)?.is_empty());
    Ok(())
}

#[test]
fn a_reader_keeps_its_generation_while_a_writer_commits() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    put(&mut w, doc("aaaa", "/a.pdf", &["old text"], &e))?;
    w.commit()?;
    let reader = Store::open(tmp.path())?;
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    put(&mut w, doc("bbbb", "/b.pdf", &["new text"], &e))?;
    w.commit()?;
    assert_eq!(reader.manifest().generation, 1);
    assert_eq!(reader.bm25_search("text", 5, None)?.len(), 1);
    assert_eq!(
        Store::open(tmp.path())?.bm25_search("text", 5, None)?.len(),
        2
    );
    Ok(())
}

#[test]
fn errors_name_their_cause() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    match Store::open(tmp.path()) {
        Err(StoreError::NotAnIndex(_)) => {}
        other => panic!("expected NotAnIndex, got {:?}", other.map(|_| ())),
    }
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    put(&mut w, doc("aaaa", "/a.pdf", &["text"], &e))?;
    // A second writer is refused while the first holds the lock.
    match StoreWriter::open(tmp.path(), e.info(), None) {
        Err(StoreError::Locked(_)) => {}
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    // Vectors of the wrong width are refused.
    let mut bad = doc("bbbb", "/b.pdf", &["x"], &e);
    bad.3 = vec![vec![0.0; 3]];
    assert!(matches!(put(&mut w, bad), Err(StoreError::Invalid(_))));
    w.commit()?;

    // Another embedder.
    let other = HashEmbedder::new(8);
    let err = StoreWriter::open(tmp.path(), other.info(), None)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("test/hash-16") && err.contains("test/hash-8"),
        "{err}"
    );

    // A manifest from another format version.
    let manifest_path = tmp.path().join("MANIFEST.json");
    let text = std::fs::read_to_string(&manifest_path)?;
    std::fs::write(
        &manifest_path,
        text.replace("\"format_version\": 1", "\"format_version\": 99"),
    )?;
    match Store::open(tmp.path()) {
        Err(StoreError::Version {
            found: 99,
            expected: 1,
            ..
        }) => {}
        other => panic!("expected Version, got {:?}", other.map(|_| ())),
    }
    std::fs::write(&manifest_path, &text)?;

    // A damaged passages file.
    let m = Manifest::read(tmp.path())?.ok_or_else(|| anyhow::anyhow!("no manifest"))?;
    std::fs::write(
        m.generation_dir(tmp.path()).join("passages.jsonl"),
        "{not json\n",
    )?;
    let err = Store::open(tmp.path())
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("passages.jsonl") && err.contains("line 1"),
        "{err}"
    );
    Ok(())
}

#[test]
fn leftovers_of_a_crashed_commit_are_ignored_and_replaced() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    put(&mut w, doc("aaaa", "/a.pdf", &["kept text"], &e))?;
    w.commit()?;
    // A crash while writing generation 2: a half-written directory, no manifest swap.
    std::fs::create_dir_all(tmp.path().join("gen-000002/bm25"))?;
    std::fs::write(tmp.path().join("gen-000002/passages.jsonl"), "garbage")?;
    std::fs::write(tmp.path().join("MANIFEST.tmp"), "garbage")?;
    let store = Store::open(tmp.path())?;
    assert_eq!(store.manifest().generation, 1);
    assert_eq!(store.bm25_search("kept", 5, None)?.len(), 1);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    put(&mut w, doc("bbbb", "/b.pdf", &["more text"], &e))?;
    assert_eq!(w.commit()?, CommitOutcome::Published { generation: 2 });
    assert_eq!(
        Store::open(tmp.path())?.bm25_search("text", 5, None)?.len(),
        2
    );
    Ok(())
}

#[test]
fn a_new_index_opens_empty_after_its_first_commit() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(8);
    let w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert_eq!(w.commit()?, CommitOutcome::Published { generation: 1 });
    let store = Store::open(tmp.path())?;
    assert!(store.documents().is_empty());
    assert!(store.bm25_search("anything", 5, None)?.is_empty());
    assert!(store.ann_search(&e.embed("anything"), 5, None)?.is_empty());
    // Reopened with nothing to do, it stays at that generation.
    let w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert_eq!(w.commit()?, CommitOutcome::Unchanged);
    Ok(())
}

/// Two boxes, different for each page.
fn boxes(page: u32) -> Vec<BBox> {
    let top = 0.1 * page as f32;
    vec![
        BBox {
            x0: 0.1,
            y0: top,
            x1: 0.5,
            y1: top + 0.02,
        },
        BBox {
            x0: 0.55,
            y0: 0.05,
            x1: 0.9,
            y1: 0.3,
        },
    ]
}

#[test]
fn passage_boxes_round_trip_and_indexes_without_them_still_open() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    let (d, pages, mut passages, vectors) = doc("bbbb", "/b.pdf", &["zebra", "lion"], &e);
    for p in &mut passages {
        p.boxes = boxes(p.page.page);
    }
    w.put_document(d, pages, passages, vectors)?;
    put(&mut w, doc("aaaa", "/a.pdf", &["torque wrench"], &e))?;
    w.commit()?;

    let store = Store::open(tmp.path())?;
    let by_text = |t: &str| {
        (0..store.passage_count() as u64)
            .filter_map(|id| store.passage(id))
            .find(|p| p.text == t)
            .cloned()
    };
    assert_eq!(by_text("zebra").map(|p| p.boxes), Some(boxes(1)));
    assert_eq!(by_text("lion").map(|p| p.boxes), Some(boxes(2)));
    assert_eq!(by_text("torque wrench").map(|p| p.boxes), Some(Vec::new()));

    // A passage without boxes is written without the field, as indexes were before boxes.
    let gen_dir = store.manifest().generation_dir(tmp.path());
    let lines = std::fs::read_to_string(gen_dir.join("passages.jsonl"))?;
    let torque = lines
        .lines()
        .find(|l| l.contains("torque"))
        .unwrap_or_default();
    assert!(!torque.is_empty() && !torque.contains("boxes"), "{torque}");

    // An index written before passages had boxes: the field is missing everywhere.
    let old: Vec<String> = lines
        .lines()
        .map(|l| -> anyhow::Result<String> {
            let mut v: serde_json::Value = serde_json::from_str(l)?;
            if let Some(o) = v.as_object_mut() {
                o.remove("boxes");
            }
            Ok(serde_json::to_string(&v)?)
        })
        .collect::<anyhow::Result<_>>()?;
    std::fs::write(gen_dir.join("passages.jsonl"), old.join("\n") + "\n")?;
    let store = Store::open(tmp.path())?;
    assert_eq!(store.passage_count(), 3);
    assert!((0..3).all(|id| store.passage(id).is_some_and(|p| p.boxes.is_empty())));
    let old_line =
        r#"{"id":7,"page":{"doc_id":"aaaa","page":1},"char_start":0,"char_end":5,"text":"hello"}"#;
    let p: Passage = serde_json::from_str(old_line)?;
    assert!(p.boxes.is_empty() && p.text == "hello");
    Ok(())
}

#[test]
fn bm25_settings_are_kept_in_the_manifest_and_used_by_readers() -> anyhow::Result<()> {
    use folio_store::{Bm25Analyzer, Bm25Options};
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    put(
        &mut w,
        doc("aaaa", "/a.pdf", &["running shoes", "東京の地図"], &e),
    )?;
    w.commit()?;
    let store = Store::open(tmp.path())?;
    assert_eq!(store.manifest().bm25, Bm25Options::default());
    assert_eq!(store.bm25_search("run", 5, None)?.len(), 1, "stemmed");
    assert!(store.bm25_search("東京", 5, None)?.is_empty());

    // New settings alone publish a generation; the next writer starts from them.
    let multilingual = Bm25Options {
        analyzer: Bm25Analyzer::Multilingual,
        k1: 0.9,
        b: 0.4,
    };
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert!(
        w.set_bm25_options(Bm25Options {
            b: 1.5,
            ..multilingual
        })
        .is_err()
    );
    w.set_bm25_options(multilingual)?;
    assert_eq!(w.commit()?, CommitOutcome::Published { generation: 2 });
    let store = Store::open(tmp.path())?;
    assert_eq!(store.manifest().bm25, multilingual);
    assert!(store.bm25_search("run", 5, None)?.is_empty(), "not stemmed");
    assert_eq!(store.bm25_search("東京", 5, None)?.len(), 1);
    let w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert_eq!(*w.bm25_options(), multilingual);
    assert_eq!(w.commit()?, CommitOutcome::Unchanged);
    Ok(())
}

#[test]
fn path_and_hash_lookups_follow_puts_and_removals() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    let same_content = |id: &str, path: &str| {
        let mut d = doc(id, path, &["same words"], &e);
        d.0.content_hash = "h".into();
        d
    };
    put(&mut w, same_content("aaaa", "/a.pdf"))?;
    put(&mut w, same_content("bbbb", "/b.pdf"))?;
    let id = |d: Option<&folio_core::Document>| d.map(|d| d.doc_id.0.clone());
    assert_eq!(id(w.find_by_hash("h")), Some("aaaa".into()));
    assert!(w.remove(&DocId("aaaa".into())));
    assert_eq!(id(w.find_by_hash("h")), Some("bbbb".into()));
    assert_eq!(id(w.find_by_path("/a.pdf")), None);
    // The same id put again from another path: the old path no longer finds it.
    put(&mut w, same_content("bbbb", "/moved/b.pdf"))?;
    assert_eq!(id(w.find_by_path("/b.pdf")), None);
    assert_eq!(id(w.find_by_path("/moved/b.pdf")), Some("bbbb".into()));
    // Another id at a known path replaces the document there.
    put(&mut w, doc("cccc", "/moved/b.pdf", &["new"], &e))?;
    assert_eq!(id(w.find_by_hash("h")), None);
    assert_eq!(w.document_count(), 1);
    w.commit()?;
    // A writer reopened on the index finds documents by path and hash too.
    let w = StoreWriter::open(tmp.path(), e.info(), None)?;
    assert_eq!(id(w.find_by_path("/moved/b.pdf")), Some("cccc".into()));
    assert_eq!(id(w.find_by_hash("cccc-hash")), Some("cccc".into()));
    Ok(())
}

#[test]
fn a_quantized_index_rescores_with_the_exact_vectors() -> anyhow::Result<()> {
    use folio_store::{AnnOptions, AnnStorage};
    let tmp = tempfile::tempdir()?;
    let e = HashEmbedder::new(16);
    let mut w = StoreWriter::open(tmp.path(), e.info(), None)?;
    w.set_ann_options(AnnOptions {
        storage: AnnStorage::I8,
        ..AnnOptions::default()
    })?;
    let texts: Vec<String> = (0..40)
        .map(|i| format!("passage {i} about topic {}", i % 7))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    put(&mut w, doc("aaaa", "/a.pdf", &refs, &e))?;
    w.commit()?;
    let store = Store::open(tmp.path())?;
    assert!(store.manifest().ann.rescores());
    let q = e.embed("topic 3 passage");
    let hits = store.ann_search(&q, 5, None)?;
    assert_eq!(hits.len(), 5);
    for (id, score) in hits {
        let text = &store.passage(id).expect("a hit's passage").text;
        let exact: f32 = e.embed(text).iter().zip(&q).map(|(a, b)| a * b).sum();
        assert!((score - exact).abs() < 1e-5, "{score} against {exact}");
    }
    Ok(())
}
