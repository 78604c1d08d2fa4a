//! The two store backends side by side: the same documents written through
//! [`CollectionWriter`] into the embedded store and into PostgreSQL answer the same queries
//! the same way, and an ingestion run whose primary is killed loses no acknowledged document.

mod common;

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use folio_core::testing::HashEmbedder;
use folio_core::{
    DocId, DocMeta, Document, Embedder, EmbedderInfo, EmbeddingKind, Filter, Hit, Page, PageKey,
    Passage,
};
use folio_indexer::{Embedders, FileObserver, FileStatus, IndexSettings, TextDocument};
use folio_pg::{PgCluster, PgWriter, ReadRouting};
use folio_search::{Pipeline, SearchRequest};
use folio_store::{
    Collection, CollectionWriter, IndexModels, PageEmbeddings, RouteModel, ShardWriter, Shards,
    Store, StoreWriter, TokenMatrix,
};

use common::{Citus, Cluster};

const WORDS: [&str; 24] = [
    "turbine",
    "ledger",
    "harbour",
    "invoice",
    "glacier",
    "sensor",
    "orchard",
    "voltage",
    "mortgage",
    "canyon",
    "enzyme",
    "freight",
    "quarry",
    "satellite",
    "tariff",
    "vineyard",
    "copper",
    "monsoon",
    "pension",
    "reactor",
    "saffron",
    "tunnel",
    "walnut",
    "yield",
];
const DOCS: usize = 30;
const PAGE_DIM: usize = 16;
const LATE_DIM: usize = 8;

/// A reproducible stream of numbers in [0, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 40) as f32 / (1u64 << 24) as f32
    }

    fn unit(&mut self, dim: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..dim).map(|_| self.next() - 0.5).collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
        v
    }

    fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| WORDS[(self.next() * WORDS.len() as f32) as usize % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn route_model(id: &str, dim: usize, kind: EmbeddingKind) -> RouteModel {
    RouteModel {
        embedder: EmbedderInfo {
            id: id.into(),
            dim,
            kind,
            max_batch: 8,
            max_tokens: 512,
        },
        source: None,
    }
}

fn models(text: &HashEmbedder) -> IndexModels {
    IndexModels {
        page: Some(route_model("test/page", PAGE_DIM, EmbeddingKind::Single)),
        late: Some(route_model("test/late", LATE_DIM, EmbeddingKind::Multi)),
        ..IndexModels::text(text.info(), None)
    }
}

/// What [`write_corpus`] wrote, for the exact answers: each page's vector and each passage's
/// page and text.
#[derive(Default)]
struct Corpus {
    page_vectors: HashMap<PageKey, Vec<f32>>,
    passages: Vec<(PageKey, String)>,
}

/// Writes the same `DOCS` documents (two pages each, page vectors and token vectors) with
/// `writer`. Document `i`'s first passage holds the word `unique{i}`.
fn write_corpus(writer: &mut dyn CollectionWriter, text: &HashEmbedder) -> anyhow::Result<Corpus> {
    let mut corpus = Corpus::default();
    let mut rng = Rng(7);
    for i in 0..DOCS {
        let doc_id = DocId(format!("{i:016x}"));
        let key = |page| PageKey {
            doc_id: doc_id.clone(),
            page,
        };
        let mut pages = Vec::new();
        let mut passages = Vec::new();
        let mut embeddings = PageEmbeddings::default();
        for page in 1..=2u32 {
            let mut texts = vec![rng.words(12), rng.words(12)];
            if page == 1 {
                texts[0] = format!("unique{i} {}", texts[0]);
            }
            for t in &texts {
                corpus.passages.push((key(page), t.clone()));
                passages.push(Passage {
                    id: 0,
                    page: key(page),
                    char_start: 0,
                    char_end: t.len() as u32,
                    text: t.clone(),
                    boxes: Vec::new(),
                });
            }
            pages.push(Page {
                key: key(page),
                text: texts.join("\n"),
            });
            let vector = rng.unit(PAGE_DIM);
            corpus.page_vectors.insert(key(page), vector.clone());
            embeddings.vectors.push((page, vector));
            let tokens: Vec<f32> = (0..6).flat_map(|_| rng.unit(LATE_DIM)).collect();
            embeddings
                .tokens
                .push((page, TokenMatrix::from_f32(LATE_DIM, &tokens)?));
        }
        let vectors = passages.iter().map(|p| text.embed(&p.text)).collect();
        let doc = Document {
            doc_id: doc_id.clone(),
            path: format!("/corpus/{i}.pdf"),
            content_hash: format!("hash{i}"),
            pages: 2,
            bytes: 100,
            meta: DocMeta {
                collection: Some(if i % 2 == 0 { "even" } else { "odd" }.into()),
                tags: [(i % 3 == 0, "three"), (i % 5 == 0, "five")]
                    .into_iter()
                    .filter(|(on, _)| *on)
                    .map(|(_, t)| t.to_string())
                    .collect(),
                // Every fourth document has no date.
                modified: (i % 4 != 0).then_some(1_000 + i as u64),
            },
        };
        writer.put_document(doc, pages, passages, vectors, embeddings)?;
    }
    Ok(corpus)
}

/// Both rankings agree: scores match within `tol` rank by rank, and pages match except where
/// the scores tie within `tol` (the order of a tie is the backend's own).
fn assert_same_ranking(what: &str, a: &[Hit], b: &[Hit], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: {a:?}\n{b:?}");
    for i in 0..a.len() {
        assert!(
            (a[i].score - b[i].score).abs() <= tol,
            "{what} rank {}: {} against {}",
            i + 1,
            a[i].score,
            b[i].score
        );
        let tied = |j: usize| {
            a.get(j)
                .is_some_and(|h| (h.score - a[i].score).abs() <= tol)
        };
        let tie = (i > 0 && tied(i - 1)) || tied(i + 1);
        assert!(
            a[i].page == b[i].page || tie,
            "{what} rank {}: {} against {}",
            i + 1,
            a[i].page,
            b[i].page
        );
    }
}

/// The share of the exact top 10 an approximate (HNSW) answer may miss, summed over all the
/// queries of one route: the ANN miss budget of the equivalence test.
const MISS_BUDGET: f64 = 0.05;

/// Checks an approximate answer against the exact one and returns how many of the exact top
/// `k` it missed. `found` is the answer (key and score, best first); `exact` gives every
/// candidate its exact score. Every hit must carry its exact score within `tol`, the hits must
/// be best first and as many as asked; a candidate that ties the k-th score within `tol` may
/// be left out at no cost.
fn exact_misses<K: Eq + Hash + Debug>(
    what: &str,
    found: &[(K, f32)],
    exact: &HashMap<K, f32>,
    k: usize,
    tol: f32,
) -> usize {
    assert_eq!(found.len(), k.min(exact.len()), "{what}: {found:?}");
    for (i, (key, score)) in found.iter().enumerate() {
        let truth = exact
            .get(key)
            .unwrap_or_else(|| panic!("{what}: {key:?} is not a candidate"));
        assert!(
            (score - truth).abs() <= tol,
            "{what} rank {}: {key:?} scored {score}, exactly {truth}",
            i + 1
        );
        if i > 0 {
            assert!(found[i - 1].1 >= score - tol, "{what}: not best first");
        }
    }
    let mut scores: Vec<f32> = exact.values().copied().collect();
    scores.sort_by(|a, b| b.total_cmp(a));
    let Some(&cut) = scores.get(k.saturating_sub(1)) else {
        return 0;
    };
    let got: HashSet<&K> = found.iter().map(|(key, _)| key).collect();
    exact
        .iter()
        .filter(|(key, score)| **score > cut + tol && !got.contains(key))
        .count()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[test]
fn both_backends_answer_the_same_queries_alike() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    same_answers_as_the_embedded_store(&cluster.primary)
}

/// Where Citus is installed, Folio's tables become distributed tables, and the collection
/// answers the equivalence test as a single PostgreSQL does.
#[test]
fn citus_distributed_tables_answer_as_the_embedded_store_does() -> anyhow::Result<()> {
    let Some(citus) = Citus::start()? else {
        return Ok(());
    };
    same_answers_as_the_embedded_store(&citus.url)?;
    let mut client = postgres::Client::connect(&citus.url, postgres::NoTls)?;
    let rows = client.query(
        "SELECT logicalrelid::regclass::text, partmethod::text, colocationid
           FROM pg_dist_partition",
        &[],
    )?;
    let tables: HashMap<String, (String, i32)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    let colocation = tables.get("documents").map(|t| t.1);
    for table in folio_pg::CITUS_DISTRIBUTED {
        let (method, group) = tables.get(table).expect("every Folio table is distributed");
        assert_eq!(method, "h", "{table} is hash-distributed");
        assert_eq!(
            Some(*group),
            colocation,
            "{table} is co-located with documents"
        );
    }
    assert_eq!(
        tables.get("folio_settings").map(|t| t.0.as_str()),
        Some("n")
    );
    // The rows are spread over both workers' shards.
    let nodes: i64 = client
        .query_one(
            "SELECT count(DISTINCT nodeport) FROM citus_shards
              WHERE table_name = 'passages'::regclass AND shard_size > 16384",
            &[],
        )?
        .get(0);
    assert!(nodes >= 2, "passages live on {nodes} node(s)");
    // A second start (a new Folio version, say) finds everything distributed and changes
    // nothing.
    drop(PgCluster::connect(&citus.url, &[], ReadRouting::default())?);
    Ok(())
}

fn same_answers_as_the_embedded_store(url: &str) -> anyhow::Result<()> {
    let text = HashEmbedder::new(32);
    let dir = tempfile::tempdir()?;
    let mut embedded = StoreWriter::open_with(dir.path(), models(&text))?;
    let corpus = write_corpus(&mut embedded, &text)?;
    embedded.commit()?;
    let mut pg_writer = PgWriter::open(url, models(&text))?;
    write_corpus(&mut pg_writer, &text)?;
    // The load into the empty collection builds its HNSW indexes at commit.
    Box::new(pg_writer).commit()?;
    let embedded: Arc<dyn Collection> = Arc::new(Store::open(dir.path())?);
    let pg: Arc<dyn Collection> = Arc::new(PgCluster::connect(url, &[], ReadRouting::default())?);
    let backends = [("embedded", &embedded), ("postgres", &pg)];
    assert_eq!(embedded.models(), pg.models());
    let (se, sp) = (embedded.stats()?, pg.stats()?);
    assert_eq!(
        (se.documents, se.pages, se.passages),
        (sp.documents, sp.pages, sp.passages)
    );

    // Metadata filters resolve to the same documents as `Filter::keeps` says.
    let all = embedded.documents()?;
    let filters = [
        Filter::default(),
        Filter {
            collections: vec!["odd".into()],
            tags: vec!["three".into()],
            ..Filter::default()
        },
        Filter {
            tags: vec!["three".into(), "five".into()],
            ..Filter::default()
        },
        Filter {
            doc_ids: vec![DocId(format!("{:016x}", 3)), DocId("missing".into())],
            path_prefix: Some("/corpus/".into()),
            ..Filter::default()
        },
        Filter {
            path_prefix: Some("/corpus/1".into()),
            modified_after: Some(1_005),
            modified_before: Some(1_020),
            ..Filter::default()
        },
        Filter {
            modified_before: Some(u64::MAX),
            ..Filter::default()
        },
    ];
    for f in &filters {
        let want: HashSet<DocId> = all
            .iter()
            .filter(|d| f.keeps(d))
            .map(|d| d.doc_id.clone())
            .collect();
        assert_eq!(embedded.select(f)?.docs, want, "{f:?}");
        assert_eq!(pg.select(f)?.docs, want, "{f:?} on PostgreSQL");
    }

    let mut rng = Rng(99);
    let odd: HashSet<DocId> = (0..DOCS)
        .filter(|i| i % 2 == 1)
        .map(|i| DocId(format!("{i:016x}")))
        .collect();
    let kept = |page: &PageKey, keep: Option<&HashSet<DocId>>| {
        keep.is_none_or(|keep| keep.contains(&page.doc_id))
    };
    // Misses of the exact top 10 per backend and route, and how many were asked for.
    let mut misses: HashMap<String, usize> = HashMap::new();
    let mut asked = 0;
    for q in 0..8 {
        let v = rng.unit(PAGE_DIM);
        let tokens: Vec<Vec<f32>> = (0..3).map(|_| rng.unit(LATE_DIM)).collect();
        let words = rng.words(3);
        let wv = text.embed(&words);
        for keep in [None, Some(&odd)] {
            let what = |route, backend| {
                format!(
                    "query {q} {route} on {backend} (filtered: {})",
                    keep.is_some()
                )
            };
            asked += 10;
            // Page vectors and dense passages: HNSW in both, each checked against the exact
            // answer (scores within f16 rounding).
            let exact_pages: HashMap<PageKey, f32> = corpus
                .page_vectors
                .iter()
                .filter(|(page, _)| kept(page, keep))
                .map(|(page, pv)| (page.clone(), dot(&v, pv)))
                .collect();
            let exact_passages: HashMap<(PageKey, String), f32> = corpus
                .passages
                .iter()
                .filter(|(page, _)| kept(page, keep))
                .map(|(page, t)| ((page.clone(), t.clone()), dot(&wv, &text.embed(t))))
                .collect();
            for (backend, collection) in backends {
                let found = collection.pages(&v, 10, keep)?;
                assert!(found.missing.is_empty());
                let found: Vec<(PageKey, f32)> =
                    found.hits.into_iter().map(|h| (h.page, h.score)).collect();
                *misses.entry(format!("page on {backend}")).or_default() +=
                    exact_misses(&what("page", backend), &found, &exact_pages, 10, 2e-3);

                let mut hits = Vec::new();
                for hit in collection.dense(&wv, 10, keep)?.hits {
                    let id = hit.passage.expect("a dense hit names its passage");
                    let passage = collection.passage(id)?.expect("a hit's passage exists");
                    assert_eq!(passage.page, hit.page);
                    hits.push(((hit.page, passage.text), hit.score));
                }
                *misses.entry(format!("dense on {backend}")).or_default() +=
                    exact_misses(&what("dense", backend), &hits, &exact_passages, 10, 2e-3);
            }
            // Late interaction: exhaustive MaxSim on the same f16 tokens in both.
            let (a, b) = (
                embedded.late(&tokens, 10, keep)?,
                pg.late(&tokens, 10, keep)?,
            );
            assert_same_ranking(&what("late", "both"), &a.hits, &b.hits, 1e-5);
            if let Some(keep) = keep {
                assert!(b.hits.iter().all(|h| keep.contains(&h.page.doc_id)));
            }
        }
    }
    for (route, missed) in &misses {
        eprintln!("{route}: missed {missed} of the exact top 10 in {asked}");
        assert!(
            *missed as f64 <= MISS_BUDGET * asked as f64,
            "{route} missed {missed} of {asked}: over the ANN miss budget"
        );
    }

    // Dense passages through the whole pipeline: where both put the same page first, they
    // show the same snippet from the same file.
    let embedder: Arc<dyn Embedder> = Arc::new(text.clone());
    let pipelines = [
        Pipeline::new(embedded.clone(), Some(embedder.clone()))?,
        Pipeline::new(pg.clone(), Some(embedder))?,
    ];
    let mut agreed = 0;
    for _ in 0..8 {
        let mut request = SearchRequest::new(rng.words(3), 10);
        request.routes = Some(vec!["dense".into()]);
        let [a, b] = [&pipelines[0], &pipelines[1]].map(|p| p.search(&request));
        let (a, b) = (a?, b?);
        assert!(!a.degraded && !b.degraded);
        if (&a.hits[0].doc_id, a.hits[0].page) == (&b.hits[0].doc_id, b.hits[0].page) {
            agreed += 1;
            assert_eq!(a.hits[0].snippet, b.hits[0].snippet);
            assert_eq!(a.hits[0].path, b.hits[0].path);
        }
    }
    assert!(
        agreed >= 6,
        "the backends put the same page first in {agreed} of 8 queries"
    );

    // Lexical: BM25 in the embedded store, PostgreSQL full-text ranking in the database
    // (ARCHITECTURE.md says how they differ). A word found in one passage only is that
    // passage's page first in both, and both match only pages holding a query word.
    for i in [0, 7, 19, 29] {
        let mut request = SearchRequest::new(format!("unique{i}"), 5);
        request.routes = Some(vec!["bm25".into()]);
        for p in &pipelines {
            let hits = p.search(&request)?.hits;
            assert_eq!(hits.len(), 1, "{:?}", p.collection().location());
            assert_eq!(hits[0].doc_id, format!("{i:016x}"));
            assert_eq!(hits[0].page, 1);
        }
    }
    Ok(())
}

#[test]
fn killing_the_primary_mid_ingest_loses_no_acknowledged_document() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let text = HashEmbedder::new(32);
    let docs: Vec<TextDocument> = (0..400)
        .map(|i| TextDocument {
            id: format!("doc{i}"),
            text: format!("document{i} {}", Rng(i).words(200)),
        })
        .collect();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = acknowledged.clone();
    let settings = IndexSettings {
        progress: false,
        observer: Some(FileObserver(Arc::new(move |_, report| {
            if report.status == FileStatus::Indexed
                && let Ok(mut seen) = seen.lock()
            {
                seen.push(report.path.clone());
            }
        }))),
        ..IndexSettings::default()
    };
    let url = cluster.primary.clone();
    let run = std::thread::spawn(move || {
        let models = Embedders::text(&text, None);
        let writer = PgWriter::open(&url, models.models())?;
        folio_indexer::index_texts_into(Box::new(writer), &docs, &models, &settings)
            .map_err(anyhow::Error::from)
    });
    // Kill the primary (immediate shutdown: a crash) once some documents are acknowledged.
    let started = std::time::Instant::now();
    while acknowledged.lock().map_or(0, |a| a.len()) < 20 {
        anyhow::ensure!(!run.is_finished(), "the run ended before the kill");
        anyhow::ensure!(started.elapsed().as_secs() < 120, "too slow");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    cluster.run("kill")?;
    let outcome = run
        .join()
        .map_err(|_| anyhow::anyhow!("the indexing thread panicked"))?;
    // The documents after the kill fail alone; then the commit, which builds the HNSW
    // index of the load, cannot reach the server either and fails the run, naming it.
    match outcome {
        Ok(report) => anyhow::bail!(
            "the run ended well although the primary was killed: {} indexed",
            report.count(FileStatus::Indexed)
        ),
        Err(e) => assert!(format!("{e:#}").contains("PostgreSQL"), "{e:#}"),
    }

    cluster.run("restart")?;
    let pg = PgCluster::connect(&cluster.primary, &[], ReadRouting::default())?;
    let stored: HashSet<String> = pg.documents()?.into_iter().map(|d| d.path).collect();
    let acknowledged = acknowledged.lock().map(|a| a.clone()).unwrap_or_default();
    assert!(acknowledged.len() < 400, "the kill came after the run");
    for path in &acknowledged {
        assert!(stored.contains(path), "{path} was acknowledged but is gone");
    }
    // Every stored document is whole: its passages are searchable.
    let probe = &acknowledged[acknowledged.len() - 1];
    let hits = pg.lexical(&format!("document{}", &probe[3..]), 5, None)?;
    assert_eq!(hits.hits.len(), 1, "{probe}: {hits:?}");
    Ok(())
}

#[test]
fn a_collection_sharded_over_two_databases_answers_degraded_when_one_is_down() -> anyhow::Result<()>
{
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let mut admin = postgres::Client::connect(&cluster.primary, postgres::NoTls)?;
    let base = cluster
        .primary
        .rsplit_once('/')
        .map(|(base, _)| base.to_string())
        .ok_or_else(|| anyhow::anyhow!("no database in {}", cluster.primary))?;
    let urls: Vec<String> = ["shard0", "shard1"]
        .iter()
        .map(|db| -> anyhow::Result<String> {
            admin.batch_execute(&format!("CREATE DATABASE {db}"))?;
            Ok(format!("{base}/{db}"))
        })
        .collect::<anyhow::Result<_>>()?;

    let text = HashEmbedder::new(32);
    let models = Embedders::text(&text, None);
    let writers = urls
        .iter()
        .map(|u| {
            PgWriter::open(u, models.models()).map(|w| Box::new(w) as Box<dyn CollectionWriter>)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let docs: Vec<TextDocument> = (0..40)
        .map(|i| TextDocument {
            id: format!("doc{i}"),
            text: format!("document{i} {}", Rng(i).words(40)),
        })
        .collect();
    let settings = IndexSettings {
        progress: false,
        ..IndexSettings::default()
    };
    let writer = Box::new(ShardWriter::new(writers)?);
    let report = folio_indexer::index_texts_into(writer, &docs, &models, &settings)?;
    assert_eq!(report.count(FileStatus::Indexed), 40);

    let parts = urls
        .iter()
        .map(|u| {
            PgCluster::connect(u, &[], ReadRouting::default())
                .map(|c| Arc::new(c) as Arc<dyn Collection>)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shards: Arc<dyn Collection> =
        Arc::new(Shards::new(parts, std::time::Duration::from_secs(2))?);
    assert_eq!(shards.stats()?.documents, 40);
    let embedder: Arc<dyn Embedder> = Arc::new(text.clone());
    let pipeline = Pipeline::new(shards.clone(), Some(embedder))?;
    // The document ids the indexer gave, and the shard each landed in.
    let ids: Vec<(String, usize)> = shards
        .documents()?
        .into_iter()
        .map(|d| {
            let shard = folio_store::shard_of(&d.doc_id, 2);
            (d.path, shard)
        })
        .collect();
    let in_shard = |i: usize| {
        ids.iter()
            .filter(|(_, s)| *s == i)
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>()
    };
    let (first, second) = (in_shard(0), in_shard(1));
    assert!(!first.is_empty() && !second.is_empty());
    let search = |path: &str| {
        let mut request = SearchRequest::new(format!("document{}", &path[3..]), 5);
        request.routes = Some(vec!["bm25".into(), "dense".into()]);
        pipeline.search(&request)
    };
    for path in [&first[0], &second[0]] {
        let found = search(path)?;
        assert!(!found.degraded, "{:?}", found.missing);
        assert_eq!(&found.hits[0].path, path);
    }

    // Shard 1 goes away: its connections are cut and new ones refused.
    admin.batch_execute(
        "ALTER DATABASE shard1 ALLOW_CONNECTIONS false;
         SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'shard1';",
    )?;
    let found = search(&first[0])?;
    assert!(found.degraded);
    assert!(!found.missing.is_empty());
    assert!(
        found.missing.iter().all(|m| m.contains("/shard1")),
        "{:?}",
        found.missing
    );
    assert_eq!(&found.hits[0].path, &first[0]);
    let found = search(&second[0])?;
    assert!(found.degraded);
    assert!(
        found
            .missing
            .iter()
            .any(|m| m.contains("not currently accepting connections")),
        "{:?}",
        found.missing
    );
    assert!(found.hits.iter().all(|h| !second.contains(&h.path)));
    let stats = shards.stats()?;
    assert_eq!(stats.documents, first.len());
    assert_eq!(stats.missing.len(), 1);

    // Back: complete answers again.
    admin.batch_execute("ALTER DATABASE shard1 ALLOW_CONNECTIONS true")?;
    let found = search(&second[0])?;
    assert!(!found.degraded, "{:?}", found.missing);
    assert_eq!(&found.hits[0].path, &second[0]);
    Ok(())
}
