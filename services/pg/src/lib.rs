//! Folio's PostgreSQL store backend (first part): documents, pages and passages in
//! PostgreSQL, passage embeddings as pgvector `halfvec` with an HNSW index, full-text search
//! over the passages, and versioned migrations that Folio applies itself.
//!
//! - [`PgStore::connect`] opens a connection and applies the migrations it has not seen
//!   (`migrations/NNNN_name.sql`, compiled in), each in its own transaction, under an advisory
//!   lock so that several processes starting at once apply each exactly once; the applied
//!   versions are kept in `folio_migrations`.
//! - [`PgStore::set_embedder`] records the collection's embedder and creates the embedding
//!   column and its HNSW index at that width; a different embedder later is an error that
//!   names both, as with the embedded store.
//! - [`PgStore::put_document`] replaces a document with its pages, passages and embeddings in
//!   one transaction: a reader sees the old document or the new one, never half of either,
//!   and an acknowledged write is durable (synchronous commit).
//! - [`PgStore::dense`] is approximate nearest-neighbour search (cosine, `hnsw.ef_search`
//!   settable per query) and [`PgStore::lexical`] PostgreSQL full-text search: any of the
//!   query's English lexemes, ranked by `ts_rank` with log-length normalisation. That is not
//!   BM25 (no IDF) and measures worse on SciFact (nDCG@10 0.607 against tantivy BM25's 0.686,
//!   `scripts/bench/pg-fts-scifact.sh`), so Folio's lexical route stays BM25 in tantivy; this
//!   one is there for a deployment that keeps everything in PostgreSQL.
//!
//! The same type reads a streaming replica (`connect_replica`: no migrations, read-only), and
//! [`PgCluster`] routes reads to healthy replicas (within a WAL lag bound, round-robin, with
//! failover to the primary) and writes to the primary.

mod cluster;
mod vector;

use std::sync::{Mutex, MutexGuard, PoisonError};

use folio_core::{BBox, DocId, DocMeta, Document, EmbedderInfo, Page, PageKey, Passage, PassageId};
use postgres::{Client, NoTls, Transaction};
use thiserror::Error;
use tracing::{debug, info};

pub use cluster::{PgCluster, ReadRouting, ReplicaHealth};
pub use vector::HalfVector;

/// The migrations, in order: (version, name, SQL).
const MIGRATIONS: [(i32, &str, &str); 1] = [(
    1,
    "documents",
    include_str!("../migrations/0001_documents.sql"),
)];

/// Key of the advisory lock migrations run under (any fixed number; "folio" in ASCII).
const MIGRATION_LOCK: i64 = 0x0066_6f6c_696f;

/// HNSW build parameters of the embedding index (as the embedded store's defaults).
const HNSW_M: u32 = 16;
const HNSW_EF_CONSTRUCTION: u32 = 128;

/// A PostgreSQL store operation failed.
#[derive(Debug, Error)]
pub enum PgError {
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect {
        /// The URL, without its password.
        url: String,
        /// The driver's error.
        source: postgres::Error,
    },
    /// A statement failed.
    #[error("{what}: {source}")]
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

fn sql(what: impl Into<String>) -> impl FnOnce(postgres::Error) -> PgError {
    let what = what.into();
    move |source| PgError::Sql { what, source }
}

/// One PostgreSQL database used as a Folio collection.
pub struct PgStore {
    client: Mutex<Client>,
    url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("url", &self.url).finish()
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

impl PgStore {
    /// Connects to the primary at `url` (`postgres://user[:password]@host:port/db`) and
    /// applies any migration the database has not had.
    pub fn connect(url: &str) -> Result<Self, PgError> {
        let store = Self::open(url)?;
        store.migrate()?;
        Ok(store)
    }

    /// Connects to a read replica: no migrations (a replica cannot take them), and every
    /// statement in read-only transactions.
    pub fn connect_replica(url: &str) -> Result<Self, PgError> {
        let store = Self::open(url)?;
        store
            .client()
            .batch_execute("SET default_transaction_read_only = on")
            .map_err(sql("making the replica connection read-only"))?;
        Ok(store)
    }

    fn open(url: &str) -> Result<Self, PgError> {
        let shown = redact(url);
        let client = Client::connect(url, NoTls).map_err(|source| PgError::Connect {
            url: shown.clone(),
            source,
        })?;
        debug!(url = %shown, "connected");
        Ok(PgStore {
            client: Mutex::new(client),
            url: shown,
        })
    }

    fn client(&self) -> MutexGuard<'_, Client> {
        self.client.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The versions of the migrations applied to this database, in order.
    pub fn applied_migrations(&self) -> Result<Vec<i32>, PgError> {
        let rows = self
            .client()
            .query("SELECT version FROM folio_migrations ORDER BY version", &[])
            .map_err(sql("reading folio_migrations"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Applies the migrations this database lacks; returns the versions applied now.
    fn migrate(&self) -> Result<Vec<i32>, PgError> {
        let mut client = self.client();
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
                self.url,
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
        tx.commit().map_err(sql("committing the migrations"))?;
        Ok(applied)
    }

    /// The embedder this collection was built with, if one is recorded.
    pub fn embedder(&self) -> Result<Option<EmbedderInfo>, PgError> {
        let row = self
            .client()
            .query_opt(
                "SELECT value FROM folio_settings WHERE key = 'embedder'",
                &[],
            )
            .map_err(sql("reading the collection's embedder"))?;
        row.map(|r| {
            let value: serde_json::Value = r.get(0);
            serde_json::from_value(value)
                .map_err(|e| PgError::Schema(format!("the recorded embedder is unreadable: {e}")))
        })
        .transpose()
    }

    /// Records `info` as the collection's embedder and creates the embedding column and its
    /// HNSW index at its width. The same embedder again does nothing; another one is an
    /// error naming both.
    pub fn set_embedder(&self, info: &EmbedderInfo) -> Result<(), PgError> {
        if let Some(recorded) = self.embedder()? {
            if recorded.id == info.id && recorded.dim == info.dim {
                return Ok(());
            }
            return Err(PgError::Schema(format!(
                "collection {} was built with embedder {} ({}-d) but {} ({}-d) was given",
                self.url, recorded.id, recorded.dim, info.id, info.dim
            )));
        }
        let value = serde_json::to_value(info)
            .map_err(|e| PgError::Invalid(format!("embedder info: {e}")))?;
        let mut client = self.client();
        let mut tx = client
            .transaction()
            .map_err(sql("recording the embedder"))?;
        tx.execute(
            "INSERT INTO folio_settings (key, value) VALUES ('embedder', $1)",
            &[&value],
        )
        .map_err(sql("recording the embedder"))?;
        // DDL cannot take parameters; the width is a number we format ourselves.
        tx.batch_execute(&format!(
            "ALTER TABLE passages ADD COLUMN embedding halfvec({dim}) NOT NULL;
             CREATE INDEX passages_embedding ON passages
                 USING hnsw (embedding halfvec_cosine_ops)
                 WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION});",
            dim = info.dim
        ))
        .map_err(sql("creating the embedding column"))?;
        tx.commit().map_err(sql("recording the embedder"))?;
        Ok(())
    }

    /// Replaces `doc` (by id) with these pages, passages and one embedding per passage, in
    /// one transaction. Passage ids are assigned by the database (the given ones are
    /// ignored); returns them in passage order.
    pub fn put_document(
        &self,
        doc: &Document,
        pages: &[Page],
        passages: &[Passage],
        embeddings: &[Vec<f32>],
    ) -> Result<Vec<PassageId>, PgError> {
        if passages.len() != embeddings.len() {
            return Err(PgError::Invalid(format!(
                "{} passages but {} embeddings",
                passages.len(),
                embeddings.len()
            )));
        }
        let meta = serde_json::to_value(&doc.meta)
            .map_err(|e| PgError::Invalid(format!("document metadata: {e}")))?;
        let pages_count = i32::try_from(doc.pages)
            .map_err(|_| PgError::Invalid(format!("{} pages", doc.pages)))?;
        let bytes = i64::try_from(doc.bytes)
            .map_err(|_| PgError::Invalid(format!("{} bytes", doc.bytes)))?;
        let mut client = self.client();
        let mut tx = client
            .transaction()
            .map_err(sql("starting a document write"))?;
        remove_in(&mut tx, &doc.doc_id)?;
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
        for (p, e) in passages.iter().zip(embeddings) {
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
                        &HalfVector(e.clone()),
                    ],
                )
                .map_err(sql(format!("inserting a passage of {}", doc.doc_id)))?;
            let id: i64 = row.get(0);
            ids.push(id as PassageId);
        }
        tx.commit()
            .map_err(sql(format!("committing document {}", doc.doc_id)))?;
        Ok(ids)
    }

    /// Removes a document with its pages and passages; whether it was there.
    pub fn remove(&self, doc_id: &DocId) -> Result<bool, PgError> {
        let mut client = self.client();
        let mut tx = client.transaction().map_err(sql("starting a delete"))?;
        let removed = remove_in(&mut tx, doc_id)?;
        tx.commit().map_err(sql(format!("deleting {doc_id}")))?;
        Ok(removed)
    }

    /// Every document, by id.
    pub fn documents(&self) -> Result<Vec<Document>, PgError> {
        let rows = self
            .client()
            .query(
                "SELECT doc_id, path, content_hash, pages, bytes, meta FROM documents
                 ORDER BY doc_id",
                &[],
            )
            .map_err(sql("listing documents"))?;
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

    /// A passage by id.
    pub fn passage(&self, id: PassageId) -> Result<Option<Passage>, PgError> {
        let row = self
            .client()
            .query_opt(
                "SELECT doc_id, page, char_start, char_end, text, boxes FROM passages
                 WHERE id = $1",
                &[&(id as i64)],
            )
            .map_err(sql(format!("reading passage {id}")))?;
        row.map(|r| {
            let boxes: serde_json::Value = r.get(5);
            Ok(Passage {
                id,
                page: PageKey {
                    doc_id: DocId(r.get(0)),
                    page: r.get::<_, i32>(1) as u32,
                },
                char_start: r.get::<_, i32>(2) as u32,
                char_end: r.get::<_, i32>(3) as u32,
                text: r.get(4),
                boxes: serde_json::from_value::<Vec<BBox>>(boxes)
                    .map_err(|e| PgError::Schema(format!("boxes of passage {id}: {e}")))?,
            })
        })
        .transpose()
    }

    /// The `k` passages nearest to `query` by cosine similarity (HNSW, `ef_search` candidates
    /// explored), best first, with their similarity.
    pub fn dense(
        &self,
        query: &[f32],
        k: usize,
        ef_search: usize,
    ) -> Result<Vec<(PassageId, f32)>, PgError> {
        let mut client = self.client();
        let mut tx = client
            .transaction()
            .map_err(sql("starting a dense search"))?;
        // SET cannot take parameters; the number is ours.
        tx.batch_execute(&format!(
            "SET LOCAL hnsw.ef_search = {}",
            ef_search.clamp(1, 1000)
        ))
        .map_err(sql("setting hnsw.ef_search"))?;
        let rows = tx
            .query(
                "SELECT id, 1 - (embedding <=> $1) FROM passages
                 ORDER BY embedding <=> $1 LIMIT $2",
                &[&HalfVector(query.to_vec()), &(k as i64)],
            )
            .map_err(sql("dense search"))?;
        tx.commit().map_err(sql("ending a dense search"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as PassageId, r.get::<_, f64>(1) as f32))
            .collect())
    }

    /// The `k` passages that best match any of the query's English lexemes (PostgreSQL
    /// full-text search, `ts_rank` normalised by log length: the best of the four rankings
    /// `scripts/bench/pg-fts-scifact.sh` compares), best first, with their rank value.
    pub fn lexical(&self, query: &str, k: usize) -> Result<Vec<(PassageId, f32)>, PgError> {
        let rows = self
            .client()
            .query(
                "WITH q AS (
                     SELECT to_tsquery('english', string_agg(quote_literal(lexeme), ' | ')) AS q
                     FROM unnest(to_tsvector('english', $1))
                 )
                 SELECT p.id, ts_rank(p.tsv, q.q, 1) AS rank
                 FROM passages p, q
                 WHERE q.q IS NOT NULL AND p.tsv @@ q.q
                 ORDER BY rank DESC, p.id
                 LIMIT $2",
                &[&query, &(k as i64)],
            )
            .map_err(sql("full-text search"))?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<_, i64>(0) as PassageId, r.get::<_, f32>(1)))
            .collect())
    }

    /// The primary's current WAL position (`pg_current_wal_lsn`), for waiting until a
    /// replica has replayed a write.
    pub fn wal_position(&self) -> Result<String, PgError> {
        let row = self
            .client()
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .map_err(sql("reading the WAL position"))?;
        Ok(row.get(0))
    }

    /// How many bytes of WAL this replica has still to replay to reach `lsn` (from
    /// [`PgStore::wal_position`] on its primary); 0 once it has.
    pub fn replay_lag_bytes(&self, lsn: &str) -> Result<u64, PgError> {
        let row = self
            .client()
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, pg_last_wal_replay_lsn())::float8",
                &[&lsn],
            )
            .map_err(sql("reading the replay position"))?;
        let lag: Option<f64> = row.get(0);
        let lag = lag.ok_or_else(|| PgError::Schema(format!("{} is not a replica", self.url)))?;
        Ok(lag.max(0.0) as u64)
    }

    /// Whether this server is a replica (in recovery).
    pub fn in_recovery(&self) -> Result<bool, PgError> {
        let row = self
            .client()
            .query_one("SELECT pg_is_in_recovery()", &[])
            .map_err(sql("asking whether the server is a replica"))?;
        Ok(row.get(0))
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
