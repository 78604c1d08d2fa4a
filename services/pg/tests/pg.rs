//! The PostgreSQL backend against a real PostgreSQL 18 with pgvector: a primary and a
//! streaming replica that `scripts/pg/cluster.sh` starts on loopback in a temporary
//! directory. Skipped, with the reason printed, where the script cannot install or start them.

mod common;

use std::time::{Duration, Instant};

use folio_core::testing::HashEmbedder;
use folio_core::{DocId, DocMeta, Document, Embedder, Hit, Page, PageKey, Passage};
use folio_pg::{PgCluster, PgError, PgStore, PgWriter, ReadRouting};
use folio_store::{IndexModels, PageEmbeddings};

use common::Cluster;

const TEXTS: [(&str, &[&str]); 3] = [
    (
        "nuts",
        &[
            "A self-locking nut holds tight under vibration.",
            "Torque wrenches tighten bolts to a specified torque.",
        ],
    ),
    (
        "rain",
        &["Monthly rainfall in the northern provinces peaks in November."],
    ),
    (
        "typewriter",
        &["The typewriter was patented in 1868 and sped up office work."],
    ),
];

fn document(name: &str, texts: &[&str]) -> (Document, Vec<Page>, Vec<Passage>) {
    let doc_id = DocId(format!("doc-{name}"));
    let key = PageKey {
        doc_id: doc_id.clone(),
        page: 1,
    };
    let doc = Document {
        doc_id,
        path: format!("/pdfs/{name}.pdf"),
        content_hash: format!("hash-{name}"),
        pages: 1,
        bytes: 1000,
        meta: DocMeta {
            collection: Some("tests".into()),
            ..Default::default()
        },
    };
    let page = Page {
        key: key.clone(),
        text: texts.join("\n"),
    };
    let passages = texts
        .iter()
        .map(|t| Passage {
            id: 0,
            page: key.clone(),
            char_start: 0,
            char_end: t.chars().count() as u32,
            text: t.to_string(),
            boxes: Vec::new(),
        })
        .collect();
    (doc, vec![page], passages)
}

fn load(store: &PgStore, embedder: &HashEmbedder) -> anyhow::Result<()> {
    for (name, texts) in TEXTS {
        let (doc, pages, passages) = document(name, texts);
        let vectors: Vec<Vec<f32>> = texts.iter().map(|t| embedder.embed(t)).collect();
        let ids = store.put_document(
            &doc,
            &pages,
            &passages,
            &vectors,
            &PageEmbeddings::default(),
        )?;
        assert_eq!(ids.len(), texts.len());
    }
    Ok(())
}

fn text_models(e: &HashEmbedder) -> IndexModels {
    IndexModels::text(e.info(), None)
}

fn text_of(store: &PgStore, hit: &Hit) -> anyhow::Result<String> {
    let id = hit
        .passage
        .ok_or_else(|| anyhow::anyhow!("{hit:?} has no passage"))?;
    Ok(store
        .passage(id)?
        .ok_or_else(|| anyhow::anyhow!("no passage {id}"))?
        .text)
}

#[test]
fn documents_round_trip_and_both_searches_find_them_on_primary_and_replica() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let store = PgStore::connect(&cluster.primary)?;
    assert_eq!(store.applied_migrations()?, [1, 2, 3, 4]);
    // folio_pg::TABLES names every table the migrations made, and drop_collection drops them.
    let mut client = postgres::Client::connect(&cluster.primary, postgres::NoTls)?;
    let tables = |c: &mut postgres::Client| -> anyhow::Result<std::collections::BTreeSet<String>> {
        Ok(c.query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
    };
    assert_eq!(
        tables(&mut client)?,
        folio_pg::TABLES.iter().map(|t| t.to_string()).collect()
    );
    folio_pg::drop_collection(&mut client)?;
    assert!(tables(&mut client)?.is_empty());
    let store = PgStore::connect(&cluster.primary)?;
    assert_eq!(store.applied_migrations()?, [1, 2, 3, 4]);
    // Migrations are applied once: a second connection finds nothing to do.
    assert_eq!(
        PgStore::connect(&cluster.primary)?.applied_migrations()?,
        [1, 2, 3, 4]
    );

    let embedder = HashEmbedder::new(32);
    assert_eq!(store.models()?, None);
    PgWriter::open(&cluster.primary, text_models(&embedder))?;
    PgWriter::open(&cluster.primary, text_models(&embedder))?;
    let err = PgWriter::open(&cluster.primary, text_models(&HashEmbedder::new(16)))
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(err, PgError::Schema(_)) && err.to_string().contains("16-d"),
        "{err}"
    );
    assert_eq!(store.models()?, Some(text_models(&embedder)));

    load(&store, &embedder)?;
    let docs = store.documents()?;
    assert_eq!(docs.len(), 3);
    assert_eq!(docs[0].meta.collection.as_deref(), Some("tests"));
    // Re-putting a document replaces it rather than adding to it.
    load(&store, &embedder)?;
    assert_eq!(store.documents()?.len(), 3);

    // Dense: a passage's own embedding finds it first, at similarity ~1 (f16 storage).
    let query = "The typewriter was patented in 1868 and sped up office work.";
    let hits = store.dense(&embedder.embed(query), 3, None)?;
    assert_eq!(hits.len(), 3);
    assert_eq!(text_of(&store, &hits[0])?, query);
    assert!(hits[0].score > 0.99, "{hits:?}");
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "{hits:?}"
    );
    // Limited to some documents.
    let keep = ["doc-rain".to_string()];
    let hits = store.dense(&embedder.embed(query), 3, Some(&keep))?;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].page.doc_id.0, "doc-rain");
    // Lexical: any of the query's lexemes, stemmed ("tightening" matches "tighten").
    let hits = store.lexical("tightening bolts", 5, None)?;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert!(text_of(&store, &hits[0])?.starts_with("Torque wrenches"));
    assert!(
        store.lexical("the of and", 5, None)?.is_empty(),
        "stop words alone match nothing"
    );

    // The replica serves the same answers once it has replayed the writes.
    let lsn = store.wal_position()?;
    let replica = PgStore::connect_replica(&cluster.replica)?;
    let started = Instant::now();
    while replica.replay_lag_bytes(&lsn)? > 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "replica lags");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(replica.documents()?, store.documents()?);
    assert_eq!(
        replica.dense(&embedder.embed(query), 3, None)?,
        store.dense(&embedder.embed(query), 3, None)?
    );
    // A replica takes no writes.
    let (doc, pages, passages) = document("extra", &["More text."]);
    let vectors = [embedder.embed("More text.")];
    let none = PageEmbeddings::default();
    assert!(
        replica
            .put_document(&doc, &pages, &passages, &vectors, &none)
            .is_err()
    );

    // Delete.
    assert!(store.remove(&DocId("doc-rain".into()))?);
    assert!(!store.remove(&DocId("doc-rain".into()))?);
    assert!(store.lexical("rainfall", 5, None)?.is_empty());
    assert_eq!(store.documents()?.len(), 2);
    Ok(())
}

#[test]
fn acknowledged_documents_survive_a_primary_crash() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let embedder = HashEmbedder::new(32);
    let writer = PgWriter::open(&cluster.primary, text_models(&embedder))?;
    let store = writer.store();
    load(store, &embedder)?;
    // Immediate shutdown: no checkpoint, as if the machine lost power.
    cluster.run("kill")?;
    assert!(store.documents().is_err(), "the primary is down");
    cluster.run("restart")?;
    let store = PgStore::connect(&cluster.primary)?;
    assert_eq!(store.documents()?.len(), TEXTS.len());
    let hits = store.lexical("rainfall", 5, None)?;
    assert_eq!(hits.len(), 1);
    Ok(())
}

#[test]
fn reads_go_to_healthy_replicas_and_fail_over_to_the_primary() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let strict = ReadRouting {
        max_lag_bytes: 0,
        recheck: Duration::ZERO,
    };
    // A second replica URL that nothing answers: it is skipped, never an error.
    let dead = "postgres://postgres@127.0.0.1:1/postgres".to_string();
    let embedder = HashEmbedder::new(32);
    PgWriter::open(&cluster.primary, text_models(&embedder))?;
    let pg = PgCluster::connect(&cluster.primary, &[cluster.replica.clone(), dead], strict)?;
    load(pg.primary(), &embedder)?;
    let on_replica = || pg.read(|s| s.in_recovery());
    // Caught up: reads land on the live replica (the dead one is passed over).
    let started = Instant::now();
    while !on_replica()? {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            pg.health()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let health = pg.health();
    assert!(health[0].healthy && !health[1].healthy, "{health:?}");
    assert!(
        health[1]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("127.0.0.1:1"))
    );

    // A replica that stops replaying falls behind the first write after it: with no lag
    // allowed, reads go to the primary and still answer, with the new document.
    pause_replay(&cluster.replica, true)?;
    let (doc, pages, passages) = document("late", &["A passage written while replay is paused."]);
    pg.primary().put_document(
        &doc,
        &pages,
        &passages,
        &[embedder.embed("paused")],
        &PageEmbeddings::default(),
    )?;
    assert!(!on_replica()?, "{:?}", pg.health());
    assert_eq!(pg.read(|s| s.documents())?.len(), TEXTS.len() + 1);
    assert!(
        pg.health()[0].lag_bytes.is_some_and(|l| l > 0),
        "{:?}",
        pg.health()
    );
    // With lag allowed, the lagging replica serves (stale) reads without failing.
    let lenient = PgCluster::connect(
        &cluster.primary,
        std::slice::from_ref(&cluster.replica),
        ReadRouting {
            max_lag_bytes: u64::MAX,
            recheck: Duration::ZERO,
        },
    )?;
    assert!(lenient.read(|s| s.in_recovery())?);
    assert_eq!(lenient.read(|s| s.documents())?.len(), TEXTS.len());
    pause_replay(&cluster.replica, false)?;

    // A stopped replica: reads fail over to the primary.
    cluster.run("stop-replica")?;
    assert!(!on_replica()?);
    assert_eq!(pg.read(|s| s.documents())?.len(), TEXTS.len() + 1);
    assert!(!pg.health()[0].healthy);
    Ok(())
}

/// Pauses or resumes WAL replay on the replica at `url`.
fn pause_replay(url: &str, pause: bool) -> anyhow::Result<()> {
    let mut client = postgres::Client::connect(url, postgres::NoTls)?;
    let f = if pause {
        "pg_wal_replay_pause"
    } else {
        "pg_wal_replay_resume"
    };
    client.batch_execute(&format!("SELECT {f}()"))?;
    Ok(())
}

#[test]
fn a_server_that_is_not_there_is_named() {
    let err = PgStore::connect("postgres://folio:pw@127.0.0.1:1/folio")
        .map(|_| ())
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1:1") && !text.contains("pw"),
        "{text}"
    );
}

/// BM25 in PostgreSQL scores what the formula gives on PostgreSQL's own lexemes (computed
/// here from `to_tsvector`'s counts), and a lexeme more than 1,000 passages and 10 % of them
/// hold brings no candidates of its own unless every query lexeme is that common.
#[test]
fn lexical_search_is_bm25_over_the_english_lexemes() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let embedder = HashEmbedder::new(16);
    PgWriter::open(&cluster.primary, text_models(&embedder))?;
    let store = PgStore::connect(&cluster.primary)?;
    // "report" is in every passage; "zebra" in some, repeated and at several lengths.
    let texts: [&[&str]; 4] = [
        &[
            "zebra report",
            "zebra zebra zebra report on the grassland herds",
        ],
        &["a long report about rivers, deltas, sediment and one zebra crossing"],
        &[
            "report",
            "the quarterly report lists revenue, costs and margins",
        ],
        &["zebras and giraffes report to the waterhole at dusk"],
    ];
    // And 1,200 filler passages that hold "report" too, which makes it a common lexeme.
    let filler: Vec<String> = (0..1200).map(|i| format!("report number{i}")).collect();
    let filler: Vec<&str> = filler.iter().map(String::as_str).collect();
    for (i, t) in texts.iter().chain([&filler[..]].iter()).enumerate() {
        let (doc, pages, passages) = document(&format!("d{i}"), t);
        let vectors: Vec<Vec<f32>> = t.iter().map(|x| embedder.embed(x)).collect();
        store.put_document(
            &doc,
            &pages,
            &passages,
            &vectors,
            &PageEmbeddings::default(),
        )?;
    }

    // The formula, on the lexeme counts PostgreSQL gives each passage.
    let mut client = postgres::Client::connect(&cluster.primary, postgres::NoTls)?;
    let rows = client.query(
        "SELECT p.id, u.lexeme, coalesce(array_length(u.positions, 1), 1)
         FROM passages p, unnest(to_tsvector('english', p.text)) u",
        &[],
    )?;
    let mut counts: std::collections::HashMap<i64, Vec<(String, f64)>> = Default::default();
    for r in rows {
        counts
            .entry(r.get(0))
            .or_default()
            .push((r.get(1), f64::from(r.get::<_, i32>(2))));
    }
    let n = counts.len() as f64;
    let length = |id: &i64| counts[id].iter().map(|c| c.1).sum::<f64>();
    let avgdl = counts.keys().map(length).sum::<f64>() / n;
    let df = |lexeme: &str| {
        counts
            .values()
            .filter(|c| c.iter().any(|(l, _)| l == lexeme))
            .count() as f64
    };
    let expected = |lexemes: &[&str]| -> Vec<(i64, f64)> {
        let mut scored: Vec<(i64, f64)> = counts
            .iter()
            .filter_map(|(id, c)| {
                let mut score = 0.0;
                let mut matched = false;
                for l in lexemes {
                    if let Some((_, tf)) = c.iter().find(|(x, _)| x == l) {
                        matched = true;
                        let idf = (1.0 + (n - df(l) + 0.5) / (df(l) + 0.5)).ln();
                        score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * length(id) / avgdl));
                    }
                }
                matched.then_some((*id, score))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored
    };
    let got = |query: &str| -> anyhow::Result<Vec<(i64, f64)>> {
        Ok(store
            .lexical(query, 10, None)?
            .iter()
            .map(|h| (h.passage.unwrap_or_default() as i64, f64::from(h.score)))
            .collect())
    };
    let same = |got: Vec<(i64, f64)>, want: Vec<(i64, f64)>| {
        assert_eq!(got.len(), want.len(), "{got:?}\n{want:?}");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.0, w.0, "{got:?}\n{want:?}");
            assert!((g.1 - w.1).abs() < 1e-4 * w.1.max(1.0), "{got:?}\n{want:?}");
        }
    };
    // "Zebras" stems to the same lexeme as "zebra".
    let zebra = expected(&["zebra"]);
    assert_eq!(zebra.len(), 4);
    same(got("zebras")?, zebra);
    // "report" (in every passage) scores but brings no candidates next to "zebra".
    let both: Vec<(i64, f64)> = expected(&["zebra", "report"]);
    assert_eq!(both.len(), 1206);
    let zebra_ids: Vec<i64> = expected(&["zebra"]).iter().map(|h| h.0).collect();
    let both: Vec<(i64, f64)> = both
        .into_iter()
        .filter(|h| zebra_ids.contains(&h.0))
        .collect();
    same(got("zebra reports")?, both);
    // Alone, the common lexeme finds every passage; no known lexeme finds nothing.
    let mut report = expected(&["report"]);
    report.truncate(10);
    same(got("reporting")?, report);
    assert!(got("the of and")?.is_empty());
    assert!(got("xylophone")?.is_empty());
    Ok(())
}

/// Page images put through the writer are stored with their document, in its transaction:
/// readable from the replica, gone with the document, and never stored for a document that
/// failed.
#[test]
fn page_images_are_stored_with_their_document() -> anyhow::Result<()> {
    use folio_store::{Collection, CollectionWriter, PageImageKind};
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let embedder = HashEmbedder::new(16);
    let mut writer = PgWriter::open(&cluster.primary, text_models(&embedder))?;
    let (doc, pages, passages) = document("pictured", &["a page with a picture"]);
    let key = pages[0].key.clone();
    let png = |n: u8| vec![0x89, b'P', b'N', b'G', n];
    writer.put_page_image(&key, PageImageKind::Page, &png(1))?;
    writer.put_page_image(&key, PageImageKind::Thumbnail, &png(2))?;
    // Put again: the later image replaces the earlier one.
    writer.put_page_image(&key, PageImageKind::Page, &png(3))?;
    let vectors = vec![embedder.embed(&passages[0].text)];
    writer.put_document(
        doc.clone(),
        pages,
        passages,
        vectors,
        PageEmbeddings::default(),
    )?;

    // A document that fails takes its images with it.
    let (bad, bad_pages, bad_passages) = document("broken", &["text"]);
    let bad_key = bad_pages[0].key.clone();
    writer.put_page_image(&bad_key, PageImageKind::Page, &png(9))?;
    assert!(
        writer
            .put_document(
                bad,
                bad_pages,
                bad_passages,
                Vec::new(),
                PageEmbeddings::default()
            )
            .is_err()
    );

    let wal = writer.store().wal_position()?;
    let replica = PgStore::connect_replica(&cluster.replica)?;
    let started = Instant::now();
    while replica.replay_lag_bytes(&wal)? > 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "replica lags");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cluster_reader = PgCluster::connect(
        &cluster.primary,
        std::slice::from_ref(&cluster.replica),
        ReadRouting::default(),
    )?;
    let image = cluster_reader
        .page_image(&key, PageImageKind::Page)?
        .expect("the page image");
    assert_eq!(image.png, png(3));
    let thumb = cluster_reader
        .page_image(&key, PageImageKind::Thumbnail)?
        .expect("the thumbnail");
    assert_eq!(thumb.png, png(2));
    assert_ne!(image.tag, thumb.tag);
    let other = PageKey {
        doc_id: key.doc_id.clone(),
        page: 2,
    };
    let found = cluster_reader.pages_with_images(&[key.clone(), other.clone(), bad_key.clone()])?;
    assert_eq!(found, [key.clone()].into());
    assert_eq!(
        cluster_reader.page_image(&bad_key, PageImageKind::Page)?,
        None
    );

    // Gone with the document.
    assert!(writer.remove(&doc.doc_id)?);
    assert_eq!(writer.store().page_image(&key, PageImageKind::Page)?, None);
    Ok(())
}

/// A load into an empty collection runs without HNSW indexes and builds them at commit;
/// searches are right in between (exact scans). A load cut short before its commit gets its
/// indexes from the next writer.
#[test]
fn an_empty_collection_is_loaded_then_indexed() -> anyhow::Result<()> {
    use folio_store::CollectionWriter;
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let embedder = HashEmbedder::new(32);
    let has_index = |store: &PgStore| -> anyhow::Result<bool> {
        let mut client = postgres::Client::connect(store.url(), postgres::NoTls)?;
        Ok(client
            .query_one("SELECT to_regclass('passages_embedding') IS NOT NULL", &[])?
            .get(0))
    };
    let writer = PgWriter::open(&cluster.primary, text_models(&embedder))?;
    load(writer.store(), &embedder)?;
    assert!(!has_index(writer.store())?, "no index while loading");
    let query = embedder.embed("rainfall in the northern provinces");
    let hits = writer.store().dense(&query, 1, None)?;
    assert_eq!(text_of(writer.store(), &hits[0])?, TEXTS[1].1[0]);
    // Cut short: no commit. The next writer finds documents and builds the index first.
    drop(writer);
    let writer = PgWriter::open(&cluster.primary, text_models(&embedder))?;
    assert!(has_index(writer.store())?);
    let hits = writer.store().dense(&query, 1, None)?;
    assert_eq!(text_of(writer.store(), &hits[0])?, TEXTS[1].1[0]);
    assert!(
        writer.store().build_vector_indexes()?.is_empty(),
        "nothing left to build"
    );

    // A load that commits builds the index at its commit.
    let mut client = postgres::Client::connect(&cluster.primary, postgres::NoTls)?;
    folio_pg::drop_collection(&mut client)?;
    let writer = PgWriter::open(&cluster.primary, text_models(&embedder))?;
    load(writer.store(), &embedder)?;
    let store = PgStore::connect(&cluster.primary)?;
    assert!(!has_index(&store)?);
    Box::new(writer).commit()?;
    assert!(has_index(&store)?);
    Ok(())
}
