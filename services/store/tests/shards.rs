//! A collection split across shards: written through [`ShardWriter`], read through
//! [`Shards`], it answers as one collection holding every document does; a shard that fails
//! or is too slow is reported missing while the others answer.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::testing::HashEmbedder;
use folio_core::{
    DocId, DocMeta, Document, Embedder, Filter, Found, Page, PageKey, Passage, PassageId,
};
use folio_store::{
    Collection, CollectionStats, CollectionWriter, DocSet, IndexModels, PageEmbeddings,
    PageImageKind, SHARD_BITS, ShardWriter, Shards, Store, StoreError, StoreWriter, StoredImage,
    shard_of,
};

const WORDS: [&str; 12] = [
    "turbine", "ledger", "harbour", "invoice", "glacier", "sensor", "orchard", "voltage",
    "mortgage", "canyon", "enzyme", "freight",
];
const DOCS: usize = 40;
const TIMEOUT: Duration = Duration::from_millis(500);

fn doc(i: usize, version: &str) -> (Document, Vec<Page>, Vec<Passage>) {
    let doc_id = DocId(format!("doc{i}{version}"));
    let key = PageKey {
        doc_id: doc_id.clone(),
        page: 1,
    };
    let texts: Vec<String> = (0..3)
        .map(|j| {
            let w = |n: usize| WORDS[(i * 7 + j * 5 + n) % WORDS.len()];
            format!("unique{i} {} {} {} part{j}", w(0), w(3), w(8))
        })
        .collect();
    let passages = texts
        .iter()
        .map(|t| Passage {
            id: 0,
            page: key.clone(),
            char_start: 0,
            char_end: t.len() as u32,
            text: t.clone(),
            boxes: Vec::new(),
        })
        .collect();
    let document = Document {
        doc_id,
        path: format!("/corpus/{i}.pdf"),
        content_hash: format!("hash{i}{version}"),
        pages: 1,
        bytes: 10,
        meta: DocMeta::default(),
    };
    let page = Page {
        key,
        text: texts.join("\n"),
    };
    (document, vec![page], passages)
}

fn put(w: &mut dyn CollectionWriter, text: &HashEmbedder, i: usize, version: &str) {
    let (d, pages, passages) = doc(i, version);
    let vectors = passages.iter().map(|p| text.embed(&p.text)).collect();
    w.put_document(d, pages, passages, vectors, PageEmbeddings::default())
        .expect("put");
}

/// A writer over embedded shards in `dirs`.
fn shard_writer(
    dirs: &[PathBuf],
    models: &IndexModels,
) -> anyhow::Result<Box<dyn CollectionWriter>> {
    let writers = dirs
        .iter()
        .map(|d| {
            StoreWriter::open_with(d, models.clone())
                .map(|w| Box::new(w) as Box<dyn CollectionWriter>)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Box::new(ShardWriter::new(writers)?))
}

/// The embedded shards in `dirs`, read together.
fn open_shards(dirs: &[PathBuf]) -> anyhow::Result<Shards> {
    let shards = dirs
        .iter()
        .map(|d| Store::open(d).map(|s| Arc::new(s) as Arc<dyn Collection>))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Shards::new(shards, TIMEOUT)?)
}

/// `n` embedded shards under `root` holding the corpus, written through a shard writer; and
/// one embedded index holding it all.
fn corpus(root: &Path, n: usize, text: &HashEmbedder) -> anyhow::Result<(Shards, Store)> {
    let models = IndexModels::text(text.info(), None);
    let dirs: Vec<_> = (0..n).map(|i| root.join(format!("shard{i}"))).collect();
    let mut sharded = shard_writer(&dirs, &models)?;
    let whole_dir = root.join("whole");
    let mut whole = StoreWriter::open_with(&whole_dir, models)?;
    for i in 0..DOCS {
        put(sharded.as_mut(), text, i, "");
        put(&mut whole, text, i, "");
    }
    sharded.commit()?;
    whole.commit()?;
    Ok((open_shards(&dirs)?, Store::open(&whole_dir)?))
}

/// The text and score of each passage hit.
fn passages(c: &dyn Collection, found: &Found) -> Vec<(String, f32)> {
    found
        .hits
        .iter()
        .map(|h| {
            let id = h.passage.expect("a passage hit");
            let p = c.passage(id).expect("read").expect("the hit's passage");
            assert_eq!(p.id, id);
            assert_eq!(p.page, h.page);
            (p.text, h.score)
        })
        .collect()
}

/// The same scores rank by rank, and the same passages above the last score (which several
/// passages may tie for, and each side may cut differently).
fn assert_same_answer(what: &str, a: &[(String, f32)], b: &[(String, f32)]) {
    let scores = |x: &[(String, f32)]| x.iter().map(|h| h.1).collect::<Vec<_>>();
    assert_eq!(scores(a), scores(b), "{what}");
    let last = b.last().map_or(0.0, |h| h.1);
    let above = |x: &[(String, f32)]| {
        x.iter()
            .filter(|h| h.1 > last)
            .map(|h| h.0.clone())
            .collect::<HashSet<_>>()
    };
    assert_eq!(above(a), above(b), "{what}");
}

#[test]
fn documents_spread_by_id_hash_and_answers_match_one_whole_collection() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let text = HashEmbedder::new(32);
    let (shards, whole) = corpus(tmp.path(), 3, &text)?;

    // Every shard holds exactly the documents its id hashes to, and every shard holds some.
    for i in 0..3 {
        let part = Store::open(&tmp.path().join(format!("shard{i}")))?;
        let ids: Vec<DocId> = part.documents().keys().cloned().collect();
        assert!(!ids.is_empty(), "shard {i} is empty");
        assert!(ids.iter().all(|id| shard_of(id, 3) == i));
    }
    let stats = shards.stats()?;
    assert_eq!(
        (stats.documents, stats.pages, stats.passages),
        (DOCS, DOCS, DOCS * 3)
    );
    assert!(stats.missing.is_empty());
    assert_eq!(Collection::documents(&shards)?.len(), DOCS);

    // Dense: the same passages with the same scores, the ids qualified by shard.
    let mut shard_numbers = HashSet::new();
    for q in ["turbine ledger", "glacier canyon enzyme", "unique5 voltage"] {
        let v = text.embed(q);
        let (a, b) = (shards.dense(&v, 8, None)?, whole.dense(&v, 8, None)?);
        assert!(a.missing.is_empty());
        assert_same_answer(q, &passages(&shards, &a), &passages(&whole, &b));
        shard_numbers.extend(a.hits.iter().filter_map(|h| h.passage.map(|p| p >> 56)));
    }
    assert!(shard_numbers.len() > 1, "hits from one shard only");
    assert_eq!(SHARD_BITS, 8);

    // Lexical: a word in one document only is found in its shard, alone.
    for i in [0, 13, 39] {
        let found = shards.lexical(&format!("unique{i}"), 5, None)?;
        let docs: HashSet<&DocId> = found.hits.iter().map(|h| &h.page.doc_id).collect();
        assert_eq!(docs.len(), 1);
        assert!(docs.contains(&DocId(format!("doc{i}"))));
    }

    // A filter goes to the shards that hold the kept documents and keeps to them.
    let keep: DocSet = [1, 2, 3].map(|i| DocId(format!("doc{i}"))).into();
    let found = shards.dense(&text.embed("ledger"), 10, Some(&keep))?;
    assert_eq!(found.hits.len(), 9);
    assert!(found.hits.iter().all(|h| keep.contains(&h.page.doc_id)));
    let seven = Filter {
        path_prefix: Some("/corpus/7.".into()),
        ..Filter::default()
    };
    let selected = shards.select(&seven)?;
    assert_eq!(selected.docs, [DocId("doc7".into())].into());

    // Point reads go to the owning shard.
    let id = DocId("doc21".into());
    assert_eq!(
        Collection::document(&shards, &id)?.map(|d| d.path),
        Some("/corpus/21.pdf".into())
    );
    let first = shards
        .first_passage(&PageKey {
            doc_id: id,
            page: 1,
        })?
        .expect("a first passage");
    assert_eq!(shards.passage(first.id)?, Some(first));
    assert_eq!(shards.passage(u64::MAX)?, None);
    Ok(())
}

#[test]
fn a_new_version_in_another_shard_replaces_the_old_one() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let text = HashEmbedder::new(16);
    let models = IndexModels::text(text.info(), None);
    let dirs: Vec<_> = (0..4).map(|i| tmp.path().join(format!("s{i}"))).collect();
    let open = || shard_writer(&dirs, &models);
    // A version of file 3 whose id lands in another shard than the first version's.
    let old = DocId("doc3".into());
    let version = (0..100)
        .map(|v| format!("v{v}"))
        .find(|v| shard_of(&DocId(format!("doc3{v}")), 4) != shard_of(&old, 4))
        .expect("some version moves");
    let mut w = open()?;
    put(w.as_mut(), &text, 3, "");
    put(w.as_mut(), &text, 4, "");
    w.commit()?;
    let mut w = open()?;
    assert_eq!(
        w.find_by_hash("hash3")?.map(|d| d.doc_id),
        Some(old.clone())
    );
    put(w.as_mut(), &text, 3, &version);
    assert_eq!(
        w.find_by_path("/corpus/3.pdf")?.map(|d| d.content_hash),
        Some(format!("hash3{version}"))
    );
    assert_eq!(w.find_by_hash("hash3")?, None);
    w.commit()?;
    let shards = open_shards(&dirs)?;
    let paths: Vec<String> = Collection::documents(&shards)?
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(paths.len(), 2, "{paths:?}");
    assert_eq!(Collection::document(&shards, &old)?, None);
    Ok(())
}

/// A shard that fails every call, or answers only after a delay.
struct Faulty {
    inner: Arc<dyn Collection>,
    delay: Duration,
    fail: bool,
}

impl Faulty {
    fn act(&self) -> Result<(), StoreError> {
        std::thread::sleep(self.delay);
        if self.fail {
            return Err(StoreError::Backend("connection refused".into()));
        }
        Ok(())
    }
}

impl Collection for Faulty {
    fn location(&self) -> String {
        format!("faulty {}", self.inner.location())
    }
    fn models(&self) -> IndexModels {
        self.inner.models()
    }
    fn stats(&self) -> Result<CollectionStats, StoreError> {
        self.act()?;
        self.inner.stats()
    }
    fn documents(&self) -> Result<Vec<Document>, StoreError> {
        self.act()?;
        self.inner.documents()
    }
    fn document(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        self.act()?;
        self.inner.document(id)
    }
    fn passage(&self, id: PassageId) -> Result<Option<Passage>, StoreError> {
        self.act()?;
        self.inner.passage(id)
    }
    fn first_passage(&self, page: &PageKey) -> Result<Option<Passage>, StoreError> {
        self.act()?;
        self.inner.first_passage(page)
    }
    fn page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
    ) -> Result<Option<StoredImage>, StoreError> {
        self.act()?;
        self.inner.page_image(key, kind)
    }
    fn pages_with_images(&self, keys: &[PageKey]) -> Result<HashSet<PageKey>, StoreError> {
        self.act()?;
        self.inner.pages_with_images(keys)
    }
    fn set_ef_search(&self, ef: usize) {
        self.inner.set_ef_search(ef);
    }
    fn lexical(&self, query: &str, k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        self.act()?;
        self.inner.lexical(query, k, keep)
    }
    fn dense(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        self.act()?;
        self.inner.dense(vector, k, keep)
    }
    fn pages(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        self.act()?;
        self.inner.pages(vector, k, keep)
    }
    fn late(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Found, StoreError> {
        self.act()?;
        self.inner.late(tokens, k, keep)
    }
}

#[test]
fn a_failing_or_slow_shard_is_missing_and_the_others_answer() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let text = HashEmbedder::new(32);
    corpus(tmp.path(), 3, &text)?;
    let open = |i: usize| -> anyhow::Result<Arc<dyn Collection>> {
        Ok(Arc::new(Store::open(
            &tmp.path().join(format!("shard{i}")),
        )?))
    };
    let faulty = |i: usize, delay: Duration, fail: bool| -> anyhow::Result<Arc<dyn Collection>> {
        Ok(Arc::new(Faulty {
            inner: open(i)?,
            delay,
            fail,
        }))
    };
    let v = text.embed("harbour invoice");

    // Shard 1 refuses; shard 2 answers after the deadline.
    let shards = Shards::new(
        vec![
            open(0)?,
            faulty(1, Duration::ZERO, true)?,
            faulty(2, Duration::from_secs(3), false)?,
        ],
        TIMEOUT,
    )?;
    let started = Instant::now();
    let found = shards.dense(&v, 10, None)?;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the slow shard"
    );
    assert_eq!(found.missing.len(), 2, "{:?}", found.missing);
    assert!(found.missing[0].contains("shard1") && found.missing[0].contains("connection refused"));
    assert!(
        found.missing[1].contains("shard2") && found.missing[1].contains("no answer within 500 ms")
    );
    assert!(!found.hits.is_empty());
    assert!(found.hits.iter().all(|h| shard_of(&h.page.doc_id, 3) == 0));
    let stats = shards.stats()?;
    assert_eq!(stats.missing.len(), 2);
    assert!(stats.documents > 0 && stats.documents < DOCS);
    // The list of documents is all or nothing; a filter resolves on the shards that answer.
    assert!(Collection::documents(&shards).is_err());
    let selected = shards.select(&Filter::default())?;
    assert_eq!(selected.docs.len(), stats.documents);
    assert_eq!(selected.missing.len(), 2);

    // A filter whose documents all live in the healthy shard does not ask the others.
    let keep: DocSet = (0..DOCS)
        .map(|i| DocId(format!("doc{i}")))
        .filter(|id| shard_of(id, 3) == 0)
        .collect();
    let found = shards.lexical(
        "unique1 unique2 unique3 unique4 unique5 unique6",
        10,
        Some(&keep),
    )?;
    assert!(found.missing.is_empty(), "{:?}", found.missing);
    assert!(!found.hits.is_empty());

    // A bad query is the caller's error, not a missing shard.
    assert!(matches!(
        shards.dense(&[1.0, 0.0], 10, None),
        Err(StoreError::Invalid(_))
    ));

    // No shard answering is an error.
    let down = Shards::new(
        vec![
            faulty(0, Duration::ZERO, true)?,
            faulty(1, Duration::ZERO, true)?,
        ],
        TIMEOUT,
    )?;
    let err = down.dense(&v, 10, None).expect_err("no shard answers");
    assert!(err.to_string().contains("none of the 2 shards"), "{err}");
    assert!(down.stats().is_err());
    Ok(())
}

#[test]
fn placement_is_a_fixed_function_of_the_id() {
    // The placement is part of the on-disk contract: these values must never change.
    let ids = ["a", "doc1", "0123456789abcdef"].map(|s| DocId(s.into()));
    let placed: Vec<usize> = ids.iter().map(|id| shard_of(id, 7)).collect();
    // FNV-1a 64 of the bytes, modulo 7 (computed independently).
    assert_eq!(placed, [5, 3, 1]);
    assert_eq!(shard_of(&ids[0], 1), 0);
    // Spread: 10k ids over 8 shards put 1250 ± 15% in each.
    let mut counts = [0usize; 8];
    for i in 0..10_000 {
        counts[shard_of(&DocId(format!("{i:016x}")), 8)] += 1;
    }
    assert!(
        counts.iter().all(|&c| (1060..=1440).contains(&c)),
        "{counts:?}"
    );
}

#[test]
fn shards_with_other_models_are_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (a, b) = (HashEmbedder::new(16), HashEmbedder::new(24));
    let mut shards: Vec<Arc<dyn Collection>> = Vec::new();
    for (i, e) in [(0, &a), (1, &b)] {
        let dir = tmp.path().join(format!("s{i}"));
        let mut w = StoreWriter::open_with(&dir, IndexModels::text(e.info(), None))?;
        put(&mut w, e, i, "");
        w.commit()?;
        shards.push(Arc::new(Store::open(&dir)?));
    }
    let err = Shards::new(shards, TIMEOUT).err().expect("refused");
    assert!(err.to_string().contains("other models"), "{err}");
    assert!(Shards::new(Vec::new(), TIMEOUT).is_err());
    Ok(())
}
