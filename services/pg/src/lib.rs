//! Folio's PostgreSQL store backend: documents, pages and passages in PostgreSQL, passage and
//! page embeddings as pgvector `halfvec` with HNSW indexes, late-interaction token vectors
//! re-scored by MaxSim in Folio, full-text search over the passages, and versioned
//! migrations that Folio applies itself. [`PgCluster`] is a [`folio_store::Collection`] and
//! [`PgWriter`] a [`folio_store::CollectionWriter`].
//!
//! - [`PgStore::connect`] opens a connection and applies the migrations it has not seen
//!   (`migrations/NNNN_name.sql`, compiled in), each in its own transaction, under an advisory
//!   lock so that several processes starting at once apply each exactly once; the applied
//!   versions are kept in `folio_migrations`.
//! - [`PgStore::set_models`] records the models of the collection's routes and creates each
//!   route's vector column at its width; a different model later is an error that names
//!   both, as with the embedded store. [`PgStore::build_vector_indexes`] builds the HNSW
//!   indexes; [`PgWriter`] loads an empty collection first and builds them at commit.
//! - Where the Citus extension is installed, the tables become Citus distributed tables
//!   (see `distribute`).
//! - [`PgStore::put_document`] replaces a document with its pages, passages and embeddings in
//!   one transaction: a reader sees the old document or the new one, never half of either,
//!   and an acknowledged write is durable (synchronous commit).
//! - [`PgStore::dense`] and [`PgStore::pages`] are approximate nearest-neighbour searches
//!   (cosine); [`PgStore::late`] is MaxSim over stored token vectors; [`PgStore::lexical`] is
//!   BM25 over PostgreSQL's English full-text vectors, from collection statistics read at
//!   query time (see the `bm25` module).
//!
//! The same type reads a streaming replica (`connect_replica`: no migrations, read-only), and
//! [`PgCluster`] routes reads to healthy replicas (within a WAL lag bound, round-robin, with
//! failover to the primary) and writes to the primary.

mod bm25;
mod cluster;
mod collection;
mod pool;
mod vector;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use folio_core::{BBox, DocId, DocMeta, Document, Filter, Hit, Page, PageKey, Passage, PassageId};
use folio_store::{
    IndexModels, PageEmbeddings, PageImageKind, RouteModel, StoredImage, TokenMatrix, maxsim,
};
use postgres::Transaction;
use thiserror::Error;
use tracing::info;

pub use cluster::{PgCluster, ReadRouting, ReplicaHealth};
pub use collection::PgWriter;
pub use vector::HalfVector;

use pool::{Pool, Pooled};

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: [(i32, &str, &str); 4] = [
    (
        1,
        "documents",
        include_str!("../migrations/0001_documents.sql"),
    ),
    (
        2,
        "page_routes",
        include_str!("../migrations/0002_page_routes.sql"),
    ),
    (3, "bm25", include_str!("../migrations/0003_bm25.sql")),
    (
        4,
        "page_images",
        include_str!("../migrations/0004_page_images.sql"),
    ),
];

/// Every table the migrations create, dependents first: what [`drop_collection`]
/// drops. A migration that adds a table adds it here (a test checks).
pub const TABLES: [&str; 9] = [
    "page_images",
    "late_centroids",
    "late_pages",
    "page_vectors",
    "passages",
    "pages",
    "documents",
    "folio_settings",
    "folio_migrations",
];

/// Drops a whole collection through `client`: every Folio table and function of the
/// database. For benchmarks and tests that reuse a database; Folio itself never calls it.
pub fn drop_collection(client: &mut postgres::Client) -> Result<(), PgError> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {} CASCADE;
             DROP FUNCTION IF EXISTS folio_lexeme_count(tsvector);",
            TABLES.join(", ")
        ))
        .map_err(sql("dropping the collection"))
}

/// The tables Citus distributes by `doc_id`, co-located with the first: a document's rows all
/// live on one node. Every table of [`TABLES`] is here or in [`CITUS_LOCAL`] (a test checks).
pub const CITUS_DISTRIBUTED: [&str; 7] = [
    "documents",
    "pages",
    "passages",
    "page_vectors",
    "late_pages",
    "late_centroids",
    "page_images",
];

/// The tables that stay whole under Citus: settings as a reference table (a copy on every
/// node), the migration record on the coordinator.
pub const CITUS_LOCAL: [&str; 2] = ["folio_settings", "folio_migrations"];

/// Where the Citus extension is installed, makes Folio's tables Citus tables (those already
/// distributed are left alone, so this runs after every migration, in its transaction: a
/// table a migration adds is distributed while still empty). Citus needs the distribution
/// column in every unique key, so `passages` is keyed by `(doc_id, id)` there.
fn distribute(tx: &mut Transaction<'_>) -> Result<(), PgError> {
    let done: HashSet<String> = tx
        .query(
            "SELECT logicalrelid::regclass::text FROM pg_dist_partition",
            &[],
        )
        .map_err(sql("reading Citus's tables"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !done.contains("passages") {
        tx.batch_execute(
            "ALTER TABLE passages DROP CONSTRAINT passages_pkey, ADD PRIMARY KEY (doc_id, id)",
        )
        .map_err(sql("keying passages by (doc_id, id) for Citus"))?;
    }
    for (i, table) in CITUS_DISTRIBUTED.iter().enumerate() {
        if done.contains(*table) {
            continue;
        }
        let colocate = if i == 0 {
            "default"
        } else {
            CITUS_DISTRIBUTED[0]
        };
        tx.execute(
            "SELECT create_distributed_table($1::text::regclass, 'doc_id', colocate_with => $2)",
            &[table, &colocate],
        )
        .map_err(sql(format!("distributing {table} with Citus")))?;
        info!(table, "distributed with Citus");
    }
    if !done.contains("folio_settings") {
        tx.execute("SELECT create_reference_table('folio_settings')", &[])
            .map_err(sql("making folio_settings a Citus reference table"))?;
    }
    Ok(())
}

/// Key of the advisory lock migrations run under (any fixed number; "folio" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6f6c_696f;

/// `maintenance_work_mem` an HNSW index build gets at least (1 GiB, in kB): pgvector builds
/// far faster while the graph fits in it.
pub const INDEX_BUILD_MEMORY_KB: i64 = 1024 * 1024;

/// HNSW build parameters of the embedding index (as the embedded store's defaults).
const HNSW_M: u32 = 16;
const HNSW_EF_CONSTRUCTION: u32 = 128;
/// HNSW ef_search until [`PgStore::set_ef_search`], as the embedded store's (pgvector's
/// default is 40). A search for more rows explores at least as many (pgvector returns at
/// most ef_search rows), up to pgvector's limit of 1000.
const DEFAULT_EF_SEARCH: usize = 128;

/// A PostgreSQL store operation failed.
#[derive(Debug, Error)]
pub enum PgError {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {url}: {}", driver(source))]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// A statement failed.
    #[error("PostgreSQL: {what}: {}", driver(source))]
    Sql {
        /// What was being done.
        what: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// The database holds something Folio cannot use as it is.
    #[error("{0}")]
    Schema(String),
    /// Bad input from the caller.
    #[error("{0}")]
    Invalid(String),
}

/// The driver's error with the server's own message: the driver shows a server error as
/// just "db error".
fn driver(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

fn sql(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Sql { what, source }
}

/// One PostgreSQL database used as a Folio collection, through a small connection pool.
pub struct PgStore {
    pool: Pool,
    /// HNSW ef_search of the following searches.
    ef_search: AtomicUsize,
    /// The lexical route's collection statistics.
    term_stats: bm25::StatsCache,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("url", &self.pool.shown())
            .finish()
    }
}

/// `url` without the password of its user-info part.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

/// The settings key of a route's model.
fn model_key(route: &str) -> String {
    format!("model.{route}")
}

/// Per route: its name, the table its vectors go in, the vector column, and the HNSW
/// operator class (cosine for single vectors; inner product for the late route's
/// centroids, which MaxSim adds up).
const VECTOR_COLUMNS: [(&str, &str, &str, &str); 3] = [
    ("text", "passages", "embedding", "halfvec_cosine_ops"),
    ("page", "page_vectors", "embedding", "halfvec_cosine_ops"),
    ("late", "late_centroids", "centroid", "halfvec_ip_ops"),
];

/// A late-interaction query scores every page exactly when at most this many pages qualify,
/// and otherwise re-scores `max(LATE_CANDIDATE_FACTOR * k, LATE_MIN_CANDIDATES)` candidates
/// (as the embedded store does).
const LATE_MIN_CANDIDATES: usize = 256;
/// See [`LATE_MIN_CANDIDATES`].
const LATE_CANDIDATE_FACTOR: usize = 10;
/// Nearest centroids fetched per query token to find late-interaction candidates.
const LATE_CENTROIDS_PER_TOKEN: i64 = 64;

impl PgStore {
    /// Connects to the primary at `url` (`postgres://user[:password]@host:port/db`) and
    /// applies any migration the database has not had.
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let store = Self::open(url, false)?;
        store.migrate()?;
        Ok(store)
    }

    /// Connects to a read replica: no migrations (a replica cannot take them), and every
    /// statement in read-only transactions.
    pub fn connect_replica(url: &str) -> Result<Self, PgError> {
        Self::open(url, true)
    }

    fn open(url: &str, read_only: bool) -> Result<Self, PgError> {
        Ok(PgStore {
            pool: Pool::open(url, read_only)?,
            ef_search: AtomicUsize::new(DEFAULT_EF_SEARCH),
            term_stats: bm25::StatsCache::default(),
        })
    }

    /// The URL, without its password.
    pub fn url(&self) -> &str {
        self.pool.shown()
    }

    fn client(&self) -> Result<Pooled<'_>, PgError> {
        self.pool.get()
    }

    /// Sets HNSW ef_search for the following searches.
    pub fn set_ef_search(&self, ef: usize) {
        self.ef_search.store(ef.max(1), Ordering::Relaxed);
    }

    /// The versions of the migrations applied to this database, in order.
    pub fn applied_migrations(&self) -> Result<Vec<i32>, PgError> {
        let rows = self
            .client()?
            .query("SELECT version FROM folio_migrations ORDER BY version", &[])
            .map_err(sql("reading folio_migrations"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Applies the migrations this database lacks; returns the versions applied now.
    fn migrate(&self) -> Result<Vec<i32>, PgError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .map_err(sql("starting the migrations"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(sql("taking the migration lock"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS folio_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .map_err(sql("creating folio_migrations"))?;
        let done: Vec<i32> = tx
            .query("SELECT version FROM folio_migrations", &[])
            .map_err(sql("reading folio_migrations"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if let Some(newer) = done.iter().find(|v| **v > MIGRATIONS.len() as i32) {
            return Err(PgError::Schema(format!(
                "database {} has schema version {newer}, newer than this Folio's {}: upgrade \
                 Folio",
                self.url(),
                MIGRATIONS.len()
            )));
        }
        let mut applied = Vec::new();
        for (version, name, text) in MIGRATIONS {
            if done.contains(&version) {
                continue;
            }
            tx.batch_execute(text)
                .map_err(sql(format!("migration {version:04} {name}")))?;
            tx.execute(
                "INSERT INTO folio_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .map_err(sql("recording a migration"))?;
            info!(version, name, "applied migration");
            applied.push(version);
        }
        let citus: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
                &[],
            )
            .map_err(sql("looking for the Citus extension"))?
            .get(0);
        if citus {
            distribute(&mut tx)?;
        }
        tx.commit().map_err(sql("committing the migrations"))?;
        Ok(applied)
    }

    /// The vector columns the collection has (those of its routes), with their HNSW index
    /// name and operator class.
    fn vector_columns(
        &self,
        client: &mut postgres::Client,
    ) -> Result<Vec<(&'static str, &'static str, String, &'static str)>, PgError> {
        let mut out = Vec::new();
        for (_, table, column, ops) in VECTOR_COLUMNS {
            let exists: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                                     WHERE table_schema = current_schema()
                                       AND table_name = $1 AND column_name = $2)",
                    &[&table, &column],
                )
                .map_err(sql("reading the collection's vector columns"))?
                .get(0);
            if exists {
                out.push((table, column, format!("{table}_{column}"), ops));
            }
        }
        Ok(out)
    }

    /// Drops the HNSW indexes of the vector columns: before loading an empty collection,
    /// since building an index once over all rows is several times faster than updating it
    /// row by row. Searches stay right without them (exact scans), only slower.
    pub fn drop_vector_indexes(&self) -> Result<(), PgError> {
        let mut client = self.client()?;
        for (_, _, index, _) in self.vector_columns(&mut client)? {
            client
                .batch_execute(&format!("DROP INDEX IF EXISTS {index}"))
                .map_err(sql(format!("dropping index {index}")))?;
        }
        Ok(())
    }

    /// Builds the HNSW index of every vector column that lacks one (after a bulk load, or
    /// one a crash cut short), with `maintenance_work_mem` raised to at least
    /// [`INDEX_BUILD_MEMORY_KB`] for the build; returns the indexes built.
    pub fn build_vector_indexes(&self) -> Result<Vec<String>, PgError> {
        let mut client = self.client()?;
        let mut built = Vec::new();
        for (table, column, index, ops) in self.vector_columns(&mut client)? {
            let present: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&index])
                .map_err(sql("looking for an HNSW index"))?
                .get(0);
            if present {
                continue;
            }
            let started = std::time::Instant::now();
            let mut tx = client
                .transaction()
                .map_err(sql("starting an index build"))?;
            let memory_kb: i64 = tx
                .query_one(
                    "SELECT setting::bigint FROM pg_settings WHERE name = 'maintenance_work_mem'",
                    &[],
                )
                .map_err(sql("reading maintenance_work_mem"))?
                .get(0);
            if memory_kb < INDEX_BUILD_MEMORY_KB {
                tx.batch_execute(&format!(
                    "SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY_KB}kB'"
                ))
                .map_err(sql("raising maintenance_work_mem"))?;
            }
            tx.batch_execute(&format!(
                "CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw ({column} {ops})
                     WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})"
            ))
            .map_err(sql(format!("building index {index}")))?;
            tx.commit()
                .map_err(sql(format!("building index {index}")))?;
            info!(
                index,
                seconds = started.elapsed().as_secs_f64(),
                "built HNSW index"
            );
            built.push(index);
        }
        Ok(built)
    }

    /// The models this collection's routes were built with; `None` before any was set.
    pub fn models(&self) -> Result<Option<IndexModels>, PgError> {
        let rows = self
            .client()?
            .query(
                "SELECT key, value FROM folio_settings WHERE key LIKE 'model.%'",
                &[],
            )
            .map_err(sql("reading the collection's models"))?;
        let mut text = None;
        let (mut page, mut late) = (None, None);
        for row in rows {
            let key: String = row.get(0);
            let model: RouteModel = serde_json::from_value(row.get(1)).map_err(|e| {
                PgError::Schema(format!("the recorded model {key} is unreadable: {e}"))
            })?;
            match key.as_str() {
                "model.text" => text = Some(model),
                "model.page" => page = Some(model),
                "model.late" => late = Some(model),
                _ => {}
            }
        }
        Ok(text.map(|text| IndexModels { text, page, late }))
    }

    /// Records `models` as the collection's and creates each route's vector column and its
    /// HNSW index at the model's width. The same models again do nothing; a different model
    /// for a route is an error naming both, and a page route can be added only while the
    /// collection is empty (older documents would have no page vectors).
    pub fn set_models(&self, models: &IndexModels) -> Result<(), PgError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(sql("recording the models"))?;
        // One writer at a time decides the schema.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(sql("taking the schema lock"))?;
        let documents: i64 = tx
            .query_one("SELECT count(*) FROM documents", &[])
            .map_err(sql("counting documents"))?
            .get(0);
        for (route, table, column, _) in VECTOR_COLUMNS {
            let given = match route {
                "text" => Some(&models.text),
                "page" => models.page.as_ref(),
                _ => models.late.as_ref(),
            };
            let recorded: Option<RouteModel> = tx
                .query_opt(
                    "SELECT value FROM folio_settings WHERE key = $1",
                    &[&model_key(route)],
                )
                .map_err(sql("reading the collection's models"))?
                .map(|r| serde_json::from_value(r.get(0)))
                .transpose()
                .map_err(|e| PgError::Schema(format!("the recorded {route} model: {e}")))?;
            match (recorded, given) {
                (Some(r), Some(g)) if r.same_model(&g.embedder) => {}
                (Some(r), Some(g)) => {
                    return Err(PgError::Schema(format!(
                        "the {route} route of collection {} was built with {} but {} was given",
                        self.url(),
                        r.describe(),
                        g.describe()
                    )));
                }
                (Some(r), None) => {
                    return Err(PgError::Schema(format!(
                        "the {route} route of collection {} was built with {}, and no model \
                         was given for it",
                        self.url(),
                        r.describe()
                    )));
                }
                (None, None) => {}
                (None, Some(g)) => {
                    if route != "text" && documents > 0 {
                        return Err(PgError::Schema(format!(
                            "collection {} has no {route} route, and its {documents} documents \
                             have no page embeddings from {}: build a new collection with \
                             that model",
                            self.url(),
                            g.describe()
                        )));
                    }
                    let value = serde_json::to_value(g)
                        .map_err(|e| PgError::Invalid(format!("model info: {e}")))?;
                    tx.execute(
                        "INSERT INTO folio_settings (key, value) VALUES ($1, $2)",
                        &[&model_key(route), &value],
                    )
                    .map_err(sql("recording a model"))?;
                    // DDL takes no parameters; every part is ours. The HNSW index comes
                    // with the first commit (`build_vector_indexes`): a route is only added
                    // to an empty collection, which is loaded before it is indexed.
                    tx.batch_execute(&format!(
                        "ALTER TABLE {table} ADD COLUMN {column} halfvec({dim}) NOT NULL",
                        dim = g.embedder.dim
                    ))
                    .map_err(sql(format!("creating the {route} route's vectors")))?;
                }
            }
        }
        tx.commit().map_err(sql("recording the models"))
    }

    /// Replaces the document with this id, and any document with its path, by `doc` with
    /// these pages, passages (one vector each) and page-image embeddings, in one
    /// transaction: a reader sees the old document or the new one, never half of either,
    /// and the document is durable once this returns. Passage ids are assigned by the
    /// database; returns them in passage order.
    pub fn put_document(
        &self,
        doc: &Document,
        pages: &[Page],
        passages: &[Passage],
        vectors: &[Vec<f32>],
        page_embeddings: &PageEmbeddings,
    ) -> Result<Vec<PassageId>, PgError> {
        self.put_document_with_images(doc, pages, passages, vectors, page_embeddings, &[])
    }

    /// [`PgStore::put_document`] with the document's page images (PNG), in the same
    /// transaction.
    pub fn put_document_with_images(
        &self,
        doc: &Document,
        pages: &[Page],
        passages: &[Passage],
        vectors: &[Vec<f32>],
        page_embeddings: &PageEmbeddings,
        images: &[PageImageRow],
    ) -> Result<Vec<PassageId>, PgError> {
        if passages.len() != vectors.len() {
            return Err(PgError::Invalid(format!(
                "{} passages but {} vectors",
                passages.len(),
                vectors.len()
            )));
        }
        let meta = serde_json::to_value(&doc.meta)
            .map_err(|e| PgError::Invalid(format!("document metadata: {e}")))?;
        let pages_count = i32::try_from(doc.pages)
            .map_err(|_| PgError::Invalid(format!("{} pages", doc.pages)))?;
        let bytes = i64::try_from(doc.bytes)
            .map_err(|_| PgError::Invalid(format!("{} bytes", doc.bytes)))?;
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .map_err(sql("starting a document write"))?;
        remove_in(&mut tx, &doc.doc_id)?;
        tx.execute("DELETE FROM documents WHERE path = $1", &[&doc.path])
            .map_err(sql(format!("replacing the document at {}", doc.path)))?;
        tx.execute(
            "INSERT INTO documents (doc_id, path, content_hash, pages, bytes, meta)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &doc.doc_id.0,
                &doc.path,
                &doc.content_hash,
                &pages_count,
                &bytes,
                &meta,
            ],
        )
        .map_err(sql(format!("inserting document {}", doc.doc_id)))?;
        let page_insert = tx
            .prepare("INSERT INTO pages (doc_id, page, text) VALUES ($1, $2, $3)")
            .map_err(sql("preparing the page insert"))?;
        for p in pages {
            tx.execute(
                &page_insert,
                &[&doc.doc_id.0, &page_number(&p.key)?, &p.text],
            )
            .map_err(sql(format!(
                "inserting page {} of {}",
                p.key.page, doc.doc_id
            )))?;
        }
        let passage_insert = tx
            .prepare(
                "INSERT INTO passages (doc_id, page, char_start, char_end, text, boxes, embedding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .map_err(sql("preparing the passage insert"))?;
        let mut ids = Vec::with_capacity(passages.len());
        for (p, v) in passages.iter().zip(vectors) {
            let boxes = serde_json::to_value(&p.boxes)
                .map_err(|e| PgError::Invalid(format!("passage boxes: {e}")))?;
            let span =
                |x: u32| i32::try_from(x).map_err(|_| PgError::Invalid(format!("char offset {x}")));
            let row = tx
                .query_one(
                    &passage_insert,
                    &[
                        &doc.doc_id.0,
                        &page_number(&p.page)?,
                        &span(p.char_start)?,
                        &span(p.char_end)?,
                        &p.text,
                        &boxes,
                        &HalfVector(v.clone()),
                    ],
                )
                .map_err(sql(format!("inserting a passage of {}", doc.doc_id)))?;
            let id: i64 = row.get(0);
            ids.push(id as PassageId);
        }
        let page_of = |page: u32| {
            i32::try_from(page).map_err(|_| PgError::Invalid(format!("page number {page}")))
        };
        for (page, v) in &page_embeddings.vectors {
            tx.execute(
                "INSERT INTO page_vectors (doc_id, page, embedding) VALUES ($1, $2, $3)",
                &[&doc.doc_id.0, &page_of(*page)?, &HalfVector(v.clone())],
            )
            .map_err(sql(format!("inserting a page vector of {}", doc.doc_id)))?;
        }
        for (page, tokens) in page_embeddings.tokens.iter().filter(|(_, t)| !t.is_empty()) {
            let page = page_of(*page)?;
            let blob: Vec<u8> = tokens
                .f16_bits()
                .iter()
                .flat_map(|b| b.to_le_bytes())
                .collect();
            tx.execute(
                "INSERT INTO late_pages (doc_id, page, tokens) VALUES ($1, $2, $3)",
                &[&doc.doc_id.0, &page, &blob],
            )
            .map_err(sql(format!("inserting token vectors of {}", doc.doc_id)))?;
            for c in tokens.centroids().chunks_exact(tokens.dim()) {
                tx.execute(
                    "INSERT INTO late_centroids (doc_id, page, centroid) VALUES ($1, $2, $3)",
                    &[&doc.doc_id.0, &page, &HalfVector(c.to_vec())],
                )
                .map_err(sql(format!("inserting token centroids of {}", doc.doc_id)))?;
            }
        }
        for image in images {
            tx.execute(
                "INSERT INTO page_images (doc_id, page, kind, png) VALUES ($1, $2, $3, $4)",
                &[
                    &doc.doc_id.0,
                    &page_of(image.page)?,
                    &image_kind(image.kind),
                    &image.png,
                ],
            )
            .map_err(sql(format!("inserting a page image of {}", doc.doc_id)))?;
        }
        tx.commit()
            .map_err(sql(format!("committing document {}", doc.doc_id)))?;
        Ok(ids)
    }

    /// A stored page image.
    pub fn page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
    ) -> Result<Option<StoredImage>, PgError> {
        let row = self
            .client()?
            .query_opt(
                "SELECT png, left(md5(png), 16) FROM page_images
                 WHERE doc_id = $1 AND page = $2 AND kind = $3",
                &[&key.doc_id.0, &page_number(key)?, &image_kind(kind)],
            )
            .map_err(sql("reading a page image"))?;
        Ok(row.map(|r| StoredImage {
            png: r.get(0),
            tag: format!(
                "{}-{}-{}-{}",
                key.doc_id,
                key.page,
                image_kind(kind),
                r.get::<_, String>(1)
            ),
        }))
    }

    /// Which of `keys` have a stored page image.
    pub fn pages_with_images(&self, keys: &[PageKey]) -> Result<HashSet<PageKey>, PgError> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let docs: Vec<&str> = keys.iter().map(|k| k.doc_id.0.as_str()).collect();
        let pages = keys
            .iter()
            .map(page_number)
            .collect::<Result<Vec<i32>, _>>()?;
        let rows = self
            .client()?
            .query(
                "SELECT i.doc_id, i.page FROM page_images i
                 JOIN unnest($1::text[], $2::int[]) AS k(doc_id, page) USING (doc_id, page)
                 WHERE i.kind = 0",
                &[&docs, &pages],
            )
            .map_err(sql("finding page images"))?;
        Ok(rows
            .iter()
            .map(|r| PageKey {
                doc_id: DocId(r.get(0)),
                page: r.get::<_, i32>(1) as u32,
            })
            .collect())
    }

    /// Replaces a document's metadata; whether the document is there.
    pub fn set_meta(&self, id: &DocId, meta: &DocMeta) -> Result<bool, PgError> {
        let meta = serde_json::to_value(meta)
            .map_err(|e| PgError::Invalid(format!("document metadata: {e}")))?;
        let n = self
            .client()?
            .execute(
                "UPDATE documents SET meta = $2 WHERE doc_id = $1",
                &[&id.0, &meta],
            )
            .map_err(sql(format!("updating the metadata of {id}")))?;
        Ok(n > 0)
    }

    /// Removes a document with its pages, passages and page vectors; whether it was there.
    pub fn remove(&self, doc_id: &DocId) -> Result<bool, PgError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(sql("starting a delete"))?;
        let removed = remove_in(&mut tx, doc_id)?;
        tx.commit().map_err(sql(format!("deleting {doc_id}")))?;
        Ok(removed)
    }

    fn documents_where(
        &self,
        condition: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<Document>, PgError> {
        let rows = self
            .client()?
            .query(
                &format!(
                    "SELECT doc_id, path, content_hash, pages, bytes, meta FROM documents
                     {condition} ORDER BY doc_id"
                ),
                params,
            )
            .map_err(sql("reading documents"))?;
        rows.iter()
            .map(|r| {
                let meta: serde_json::Value = r.get(5);
                Ok(Document {
                    doc_id: DocId(r.get(0)),
                    path: r.get(1),
                    content_hash: r.get(2),
                    pages: r.get::<_, i32>(3) as u32,
                    bytes: r.get::<_, i64>(4) as u64,
                    meta: serde_json::from_value::<DocMeta>(meta).map_err(|e| {
                        PgError::Schema(format!("metadata of {}: {e}", r.get::<_, String>(0)))
                    })?,
                })
            })
            .collect()
    }

    /// The ids of the documents `filter` keeps, decided in SQL (as [`Filter::keeps`] does:
    /// a bound on `modified` drops documents without one).
    pub fn select(&self, filter: &Filter) -> Result<Vec<DocId>, PgError> {
        let ids: Vec<&str> = filter.doc_ids.iter().map(|d| d.0.as_str()).collect();
        let tags = serde_json::json!(filter.tags);
        let bound = |t: Option<u64>| t.map(|t| i64::try_from(t).unwrap_or(i64::MAX));
        let rows = self
            .client()?
            .query(
                "SELECT doc_id FROM documents
                  WHERE (cardinality($1::text[]) = 0 OR doc_id = ANY($1))
                    AND (cardinality($2::text[]) = 0 OR meta->>'collection' = ANY($2))
                    AND coalesce(meta->'tags', '[]'::jsonb) @> $3::jsonb
                    AND ($4::text IS NULL OR starts_with(path, $4))
                    AND ($5::bigint IS NULL OR (meta->>'modified')::bigint >= $5)
                    AND ($6::bigint IS NULL OR (meta->>'modified')::bigint < $6)",
                &[
                    &ids,
                    &filter.collections,
                    &tags,
                    &filter.path_prefix,
                    &bound(filter.modified_after),
                    &bound(filter.modified_before),
                ],
            )
            .map_err(sql("selecting documents"))?;
        Ok(rows.iter().map(|r| DocId(r.get(0))).collect())
    }

    /// Every document, by id.
    pub fn documents(&self) -> Result<Vec<Document>, PgError> {
        self.documents_where("", &[])
    }

    /// One document.
    pub fn document(&self, id: &DocId) -> Result<Option<Document>, PgError> {
        Ok(self.documents_where("WHERE doc_id = $1", &[&id.0])?.pop())
    }

    /// The document with this content hash, if any.
    pub fn find_by_hash(&self, content_hash: &str) -> Result<Option<Document>, PgError> {
        Ok(self
            .documents_where("WHERE content_hash = $1", &[&content_hash])?
            .pop())
    }

    /// The document indexed from `path`, if any.
    pub fn find_by_path(&self, path: &str) -> Result<Option<Document>, PgError> {
        Ok(self.documents_where("WHERE path = $1", &[&path])?.pop())
    }

    /// Documents, pages and passages.
    pub fn counts(&self) -> Result<(usize, usize, usize), PgError> {
        let row = self
            .client()?
            .query_one(
                "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM pages),
                        (SELECT count(*) FROM passages)",
                &[],
            )
            .map_err(sql("counting the collection"))?;
        let n = |i| row.get::<_, i64>(i) as usize;
        Ok((n(0), n(1), n(2)))
    }

    fn passage_where(
        &self,
        condition: &str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Option<Passage>, PgError> {
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "SELECT id, doc_id, page, char_start, char_end, text, boxes FROM passages
                     {condition} ORDER BY id LIMIT 1"
                ),
                params,
            )
            .map_err(sql("reading a passage"))?;
        row.map(|r| {
            let id = r.get::<_, i64>(0) as PassageId;
            let boxes: serde_json::Value = r.get(6);
            Ok(Passage {
                id,
                page: PageKey {
                    doc_id: DocId(r.get(1)),
                    page: r.get::<_, i32>(2) as u32,
                },
                char_start: r.get::<_, i32>(3) as u32,
                char_end: r.get::<_, i32>(4) as u32,
                text: r.get(5),
                boxes: serde_json::from_value::<Vec<BBox>>(boxes)
                    .map_err(|e| PgError::Schema(format!("boxes of passage {id}: {e}")))?,
            })
        })
        .transpose()
    }

    /// A passage by id.
    pub fn passage(&self, id: PassageId) -> Result<Option<Passage>, PgError> {
        self.passage_where("WHERE id = $1", &[&(id as i64)])
    }

    /// The first passage of a page.
    pub fn first_passage(&self, page: &PageKey) -> Result<Option<Passage>, PgError> {
        self.passage_where(
            "WHERE doc_id = $1 AND page = $2",
            &[&page.doc_id.0, &page_number(page)?],
        )
    }

    /// Runs `search` in a read transaction with this store's ef_search, and with HNSW's
    /// iterative scan when a filter may drop most of the nearest rows.
    fn vector_search<T>(
        &self,
        k: usize,
        filtered: bool,
        search: impl FnOnce(&mut Transaction<'_>) -> Result<T, PgError>,
    ) -> Result<T, PgError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().map_err(sql("starting a search"))?;
        // SET takes no parameters; the values are ours.
        let ef = self.ef_search.load(Ordering::Relaxed).max(k).min(1000);
        let scan = if filtered { "strict_order" } else { "off" };
        // Under Citus, SET LOCAL reaches the shards' queries only with
        // propagate_set_commands; without Citus the setting is an inert placeholder.
        tx.batch_execute(&format!(
            "SET LOCAL citus.propagate_set_commands = 'local';
             SET LOCAL hnsw.ef_search = {ef}; SET LOCAL hnsw.iterative_scan = {scan};"
        ))
        .map_err(sql("setting up an HNSW search"))?;
        let out = search(&mut tx)?;
        tx.commit().map_err(sql("ending a search"))?;
        Ok(out)
    }

    /// The `k` passages nearest to `query` by cosine similarity (HNSW), best first, with
    /// their similarity; with `keep`, only passages of those documents.
    pub fn dense(
        &self,
        query: &[f32],
        k: usize,
        keep: Option<&[String]>,
    ) -> Result<Vec<Hit>, PgError> {
        self.vector_search(k, keep.is_some(), |tx| {
            let rows = tx
                .query(
                    "SELECT id, doc_id, page, (1 - (embedding <=> $1))::real FROM passages
                     WHERE $3::text[] IS NULL OR doc_id = ANY($3)
                     ORDER BY embedding <=> $1 LIMIT $2",
                    &[&HalfVector(query.to_vec()), &(k as i64), &keep],
                )
                .map_err(sql("dense search"))?;
            Ok(rows.iter().map(passage_hit).collect())
        })
    }

    /// The `k` pages nearest to `query` by cosine similarity of their page vectors.
    pub fn pages(
        &self,
        query: &[f32],
        k: usize,
        keep: Option<&[String]>,
    ) -> Result<Vec<Hit>, PgError> {
        self.vector_search(k, keep.is_some(), |tx| {
            let rows = tx
                .query(
                    "SELECT doc_id, page, (1 - (embedding <=> $1))::real FROM page_vectors
                     WHERE $3::text[] IS NULL OR doc_id = ANY($3)
                     ORDER BY embedding <=> $1 LIMIT $2",
                    &[&HalfVector(query.to_vec()), &(k as i64), &keep],
                )
                .map_err(sql("page search"))?;
            Ok(rows.iter().map(page_hit).collect())
        })
    }

    /// The `k` pages by MaxSim between the query's token vectors and each page's (exact, in
    /// Folio, on the stored f16 tokens). Every qualifying page is scored when there are at
    /// most `max(10 k, 256)`; otherwise the pages owning the nearest centroids of each query
    /// token are the candidates.
    pub fn late(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&[String]>,
        dim: usize,
    ) -> Result<Vec<Hit>, PgError> {
        let depth = k
            .saturating_mul(LATE_CANDIDATE_FACTOR)
            .max(LATE_MIN_CANDIDATES);
        let flat: Vec<f32> = tokens.iter().flatten().copied().collect();
        let rows = self.vector_search(LATE_CENTROIDS_PER_TOKEN as usize, keep.is_some(), |tx| {
            let qualifying: i64 = tx
                .query_one(
                    "SELECT count(*) FROM late_pages WHERE $1::text[] IS NULL OR doc_id = ANY($1)",
                    &[&keep],
                )
                .map_err(sql("counting late-interaction pages"))?
                .get(0);
            if qualifying as usize <= depth {
                return tx
                    .query(
                        "SELECT doc_id, page, tokens FROM late_pages
                         WHERE $1::text[] IS NULL OR doc_id = ANY($1)",
                        &[&keep],
                    )
                    .map_err(sql("reading token vectors"));
            }
            let mut candidates: Vec<(String, i32)> = Vec::new();
            for q in tokens {
                let near = tx
                    .query(
                        "SELECT doc_id, page FROM late_centroids
                         WHERE $3::text[] IS NULL OR doc_id = ANY($3)
                         ORDER BY centroid <#> $1 LIMIT $2",
                        &[&HalfVector(q.clone()), &LATE_CENTROIDS_PER_TOKEN, &keep],
                    )
                    .map_err(sql("late-interaction candidates"))?;
                candidates.extend(near.iter().map(|r| (r.get(0), r.get(1))));
            }
            candidates.sort();
            candidates.dedup();
            let (docs, pages): (Vec<String>, Vec<i32>) = candidates.into_iter().unzip();
            tx.query(
                "SELECT l.doc_id, l.page, l.tokens
                 FROM unnest($1::text[], $2::int[]) AS c(doc_id, page)
                 JOIN late_pages l USING (doc_id, page)",
                &[&docs, &pages],
            )
            .map_err(sql("reading candidate token vectors"))
        })?;
        let mut scored = Vec::with_capacity(rows.len());
        for r in &rows {
            let blob: &[u8] = r.get(2);
            let bits: Vec<u16> = blob
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect();
            let page = TokenMatrix::from_f16_bits(dim, &bits)
                .map_err(|e| PgError::Schema(format!("stored token vectors: {e}")))?;
            scored.push(Hit {
                page: PageKey {
                    doc_id: DocId(r.get(0)),
                    page: r.get::<_, i32>(1) as u32,
                },
                score: maxsim(&flat, &page),
                passage: None,
            });
        }
        // Best first; ties by page, as the embedded store orders them by row.
        scored.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| a.page.cmp(&b.page))
        });
        scored.truncate(k);
        Ok(scored)
    }

    /// The primary's current WAL position (`pg_current_wal_lsn`), for waiting until a
    /// replica has replayed a write.
    pub fn wal_position(&self) -> Result<String, PgError> {
        let row = self
            .client()?
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map_err(sql("reading the WAL position"))?;
        Ok(row.get(0))
    }

    /// How many bytes of WAL this replica has still to replay to reach `lsn` (from
    /// [`PgStore::wal_position`] on its primary); 0 once it has.
    pub fn replay_lag_bytes(&self, lsn: &str) -> Result<u64, PgError> {
        let row = self
            .client()?
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::float8",
                &[&lsn],
            )
            .map_err(sql("reading the replay position"))?;
        let lag: Option<f64> = row.get(0);
        let lag = lag.ok_or_else(|| PgError::Schema(format!("{} is not a replica", self.url())))?;
        Ok(lag.max(0.0) as u64)
    }

    /// Whether this server is a replica (in recovery).
    pub fn in_recovery(&self) -> Result<bool, PgError> {
        let row = self
            .client()?
            .query_one("SELECT pg_is_in_recovery()", &[])
            .map_err(sql("asking whether the server is a replica"))?;
        Ok(row.get(0))
    }
}

/// A page image to store with its document.
#[derive(Debug, Clone)]
pub struct PageImageRow {
    /// The page number.
    pub page: u32,
    /// Which image.
    pub kind: PageImageKind,
    /// PNG bytes.
    pub png: Vec<u8>,
}

fn image_kind(kind: PageImageKind) -> i16 {
    match kind {
        PageImageKind::Page => 0,
        PageImageKind::Thumbnail => 1,
    }
}

/// A passage hit from a row (id, doc_id, page, score).
fn passage_hit(r: &postgres::Row) -> Hit {
    Hit {
        page: PageKey {
            doc_id: DocId(r.get(1)),
            page: r.get::<_, i32>(2) as u32,
        },
        score: r.get(3),
        passage: Some(r.get::<_, i64>(0) as PassageId),
    }
}

/// A page hit from a row (doc_id, page, score).
fn page_hit(r: &postgres::Row) -> Hit {
    Hit {
        page: PageKey {
            doc_id: DocId(r.get(0)),
            page: r.get::<_, i32>(1) as u32,
        },
        score: r.get(2),
        passage: None,
    }
}

fn remove_in(tx: &mut Transaction<'_>, doc_id: &DocId) -> Result<bool, PgError> {
    let n = tx
        .execute("DELETE FROM documents WHERE doc_id = $1", &[&doc_id.0])
        .map_err(sql(format!("deleting {doc_id}")))?;
    Ok(n > 0)
}

fn page_number(key: &PageKey) -> Result<i32, PgError> {
    i32::try_from(key.page).map_err(|_| PgError::Invalid(format!("page number {}", key.page)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_has_a_place_under_citus() {
        let mut placed: Vec<&str> = CITUS_DISTRIBUTED
            .iter()
            .chain(&CITUS_LOCAL)
            .copied()
            .collect();
        let mut tables = TABLES.to_vec();
        placed.sort_unstable();
        tables.sort_unstable();
        assert_eq!(placed, tables);
    }

    #[test]
    fn urls_are_shown_without_passwords() {
        assert_eq!(
            redact("postgres://folio:s3cret@db:5432/folio"),
            "postgres://folio:***@db:5432/folio"
        );
        assert_eq!(
            redact("postgres://folio@db/folio"),
            "postgres://folio@db/folio"
        );
        assert_eq!(redact("host=db user=folio"), "host=db user=folio");
    }
}
