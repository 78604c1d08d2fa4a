//! Where a command's collection lives: the embedded index in a directory (`--index`), a
//! PostgreSQL database (`--store postgres://…`, reads on `--read-url` replicas), or shards
//! of either (`--shard`, one per part).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_pg::{PgCluster, PgStore, PgWriter, ReadRouting};
use folio_store::{
    AnnOptions, Bm25Options, Collection, CollectionWriter, IndexModels, Manifest, ShardWriter,
    Shards, Store, StoreWriter,
};

/// Which collection a command works on.
#[derive(Args, Clone, Debug)]
pub(crate) struct StoreArgs {
    /// Index directory of the embedded store.
    #[arg(long)]
    pub index: Option<PathBuf>,
    /// Where the collection lives: `embedded` (the directory given by --index) or a
    /// PostgreSQL URL with pgvector, `postgres://user:password@host:5432/db` (the primary:
    /// Folio creates and migrates its schema there).
    #[arg(
        long,
        env = "FOLIO_STORE",
        default_value = "embedded",
        hide_env_values = true
    )]
    pub store: String,
    /// A streaming replica of the --store database that takes reads (repeatable, or
    /// comma-separated in the variable). Replicas are health-checked; a replica that is down
    /// or too far behind is passed over, and reads fall back to the primary.
    #[arg(
        long = "read-url",
        env = "FOLIO_READ_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub read_urls: Vec<String>,
    /// One shard of a collection split by document-id hash (repeatable; `;`-separated in the
    /// variable): a PostgreSQL primary URL, optionally followed by `,`-separated replica
    /// URLs, or an embedded index directory. Give every shard, always in the same order:
    /// the order decides where each document lives.
    #[arg(
        long = "shard",
        env = "FOLIO_SHARDS",
        value_delimiter = ';',
        hide_env_values = true,
        conflicts_with_all = ["index", "read_urls"]
    )]
    pub shards: Vec<String>,
    /// How long a search waits for each shard; a shard that has not answered by then is
    /// left out of the answer, which is marked degraded.
    #[arg(long, env = "FOLIO_SHARD_TIMEOUT_MS", default_value_t = 2000)]
    pub shard_timeout_ms: u64,
}

/// A command's collection, resolved from [`StoreArgs`].
#[derive(Clone)]
pub(crate) enum Target {
    /// The embedded index in this directory.
    Embedded(PathBuf),
    /// A PostgreSQL primary and its read replicas.
    Postgres {
        /// The primary's URL.
        url: String,
        /// The replicas' URLs.
        read_urls: Vec<String>,
    },
    /// A collection split across these parts by document-id hash, in shard order.
    Shards(Vec<Target>),
}

fn is_postgres(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl Target {
    /// Where it is, for messages (no passwords).
    pub fn describe(&self) -> String {
        match self {
            Target::Embedded(dir) => dir.display().to_string(),
            Target::Postgres { url, .. } => folio_pg::redact(url),
            Target::Shards(parts) => {
                let names: Vec<String> = parts.iter().map(Target::describe).collect();
                format!("{} shards ({})", parts.len(), names.join(", "))
            }
        }
    }

    /// The models the collection was built with; `None` for a new one (shards: those of
    /// the first shard that has any; the writers check the others).
    pub fn recorded_models(&self) -> Result<Option<IndexModels>> {
        Ok(match self {
            Target::Embedded(dir) => Manifest::read(dir)?.map(|m| IndexModels::of(&m)),
            Target::Postgres { url, .. } => PgStore::connect(url)?.models()?,
            Target::Shards(parts) => {
                for part in parts {
                    if let Some(models) = part.recorded_models()? {
                        return Ok(Some(models));
                    }
                }
                None
            }
        })
    }

    /// Opens the collection for searching.
    pub fn open(&self, shard_timeout: Duration) -> Result<Arc<dyn Collection>> {
        Ok(match self {
            Target::Embedded(dir) => Arc::new(Store::open(dir)?),
            Target::Postgres { url, read_urls } => {
                let cluster = PgCluster::connect(url, read_urls, ReadRouting::default())
                    .with_context(|| format!("opening collection {}", folio_pg::redact(url)))?;
                for r in cluster.health().iter().filter(|r| !r.healthy) {
                    eprintln!(
                        "warning: replica {} takes no reads for now: {}",
                        r.url,
                        r.reason.as_deref().unwrap_or("unknown reason")
                    );
                }
                Arc::new(cluster)
            }
            Target::Shards(parts) => {
                let opened = parts
                    .iter()
                    .map(|p| p.open(shard_timeout))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(Shards::new(opened, shard_timeout)?)
            }
        })
    }

    /// Opens the collection for writing with `models` (and, for embedded indexes, these
    /// HNSW and BM25 options).
    pub fn writer(
        &self,
        models: &IndexModels,
        ann: Option<AnnOptions>,
        bm25: Option<Bm25Options>,
    ) -> Result<Box<dyn CollectionWriter>> {
        Ok(match self {
            Target::Embedded(dir) => {
                let mut w = StoreWriter::open_with(dir, models.clone())?;
                if let Some(options) = ann {
                    w.set_ann_options(options)?;
                }
                if let Some(options) = bm25 {
                    w.set_bm25_options(options)?;
                }
                Box::new(w)
            }
            Target::Postgres { url, .. } => {
                Box::new(PgWriter::open(url, models.clone()).with_context(|| {
                    format!("opening collection {} for writing", folio_pg::redact(url))
                })?)
            }
            Target::Shards(parts) => Box::new(ShardWriter::new(
                parts
                    .iter()
                    .map(|p| p.writer(models, ann, bm25))
                    .collect::<Result<_>>()?,
            )?),
        })
    }

    /// Opens an existing collection for writing with the models it was built with (to
    /// remove documents without loading any model).
    pub fn existing_writer(&self) -> Result<Box<dyn CollectionWriter>> {
        Ok(match self {
            Target::Embedded(dir) => Box::new(StoreWriter::open_existing(dir)?),
            Target::Postgres { url, .. } => Box::new(PgWriter::open_existing(url)?),
            Target::Shards(parts) => Box::new(ShardWriter::new(
                parts
                    .iter()
                    .map(Target::existing_writer)
                    .collect::<Result<_>>()?,
            )?),
        })
    }

    /// Whether every part is a database (which readers see written at once; an embedded
    /// part is read as the generation it had when opened).
    pub fn only_databases(&self) -> bool {
        match self {
            Target::Embedded(_) => false,
            Target::Postgres { .. } => true,
            Target::Shards(parts) => parts.iter().all(Target::only_databases),
        }
    }

    /// Whether any part is a database (whose HNSW and BM25 options Folio does not set).
    pub fn has_database(&self) -> bool {
        match self {
            Target::Embedded(_) => false,
            Target::Postgres { .. } => true,
            Target::Shards(parts) => parts.iter().any(Target::has_database),
        }
    }
}

/// One `--shard` value: a PostgreSQL primary and its replicas, or an index directory.
fn shard_target(spec: &str) -> Result<Target> {
    let mut parts = spec.split(',').map(str::trim).filter(|p| !p.is_empty());
    let Some(primary) = parts.next() else {
        bail!("an empty --shard value");
    };
    let read_urls: Vec<String> = parts.map(String::from).collect();
    if is_postgres(primary) {
        if let Some(bad) = read_urls.iter().find(|u| !is_postgres(u)) {
            bail!(
                "--shard {}: replica {:?} is not a PostgreSQL URL",
                folio_pg::redact(primary),
                folio_pg::redact(bad)
            );
        }
        return Ok(Target::Postgres {
            url: primary.to_string(),
            read_urls,
        });
    }
    if !read_urls.is_empty() {
        bail!("--shard {primary}: an embedded index directory has no replicas");
    }
    Ok(Target::Embedded(PathBuf::from(primary)))
}

impl StoreArgs {
    /// The collection these arguments name.
    pub fn target(&self) -> Result<Target> {
        let store = self.store.trim();
        if !self.shards.is_empty() {
            if store != "embedded" {
                bail!(
                    "give either --store {} or --shard (once per shard), not both",
                    folio_pg::redact(store)
                );
            }
            if self.shards.len() > folio_store::MAX_SHARDS {
                bail!(
                    "{} shards given: at most {} are supported",
                    self.shards.len(),
                    folio_store::MAX_SHARDS
                );
            }
            let parts = self
                .shards
                .iter()
                .map(|s| shard_target(s))
                .collect::<Result<_>>()?;
            return Ok(Target::Shards(parts));
        }
        if is_postgres(store) {
            if let Some(index) = &self.index {
                bail!(
                    "give either --index {} (the embedded store) or --store {} (PostgreSQL), \
                     not both",
                    index.display(),
                    folio_pg::redact(store)
                );
            }
            return Ok(Target::Postgres {
                url: store.to_string(),
                read_urls: self.read_urls.clone(),
            });
        }
        if store != "embedded" {
            bail!(
                "--store {:?} is neither `embedded` nor a PostgreSQL URL (postgres://…)",
                folio_pg::redact(store)
            );
        }
        if !self.read_urls.is_empty() {
            bail!("--read-url needs --store postgres://…: the embedded store has no replicas");
        }
        match &self.index {
            Some(dir) => Ok(Target::Embedded(dir.clone())),
            None => bail!("give --index DIR (the embedded store), --store postgres://… or --shard"),
        }
    }

    /// How long a search waits for each shard.
    pub fn shard_timeout(&self) -> Duration {
        Duration::from_millis(self.shard_timeout_ms.max(1))
    }

    /// Opens the collection for searching.
    pub fn open(&self) -> Result<Arc<dyn Collection>> {
        self.target()?.open(self.shard_timeout())
    }
}
