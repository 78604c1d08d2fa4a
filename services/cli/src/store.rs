//! Where a command's collection lives: the embedded index in a directory (`--index`), or a
//! PostgreSQL database (`--store postgres://…`, reads on `--read-url` replicas).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use folio_pg::{PgCluster, PgStore, PgWriter, ReadRouting};
use folio_store::{Collection, IndexModels, Manifest, Store};

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
}

/// A command's collection, resolved from [`StoreArgs`].
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
}

impl StoreArgs {
    /// The collection these arguments name.
    pub fn target(&self) -> Result<Target> {
        let store = self.store.trim();
        if store.starts_with("postgres://") || store.starts_with("postgresql://") {
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
            None => bail!("give --index DIR (the embedded store) or --store postgres://…"),
        }
    }

    /// The models the collection was built with; `None` for a new one.
    pub fn recorded_models(&self) -> Result<Option<IndexModels>> {
        Ok(match self.target()? {
            Target::Embedded(dir) => Manifest::read(&dir)?.map(|m| IndexModels::of(&m)),
            Target::Postgres { url, .. } => PgStore::connect(&url)?.models()?,
        })
    }

    /// Opens the collection for searching.
    pub fn open(&self) -> Result<Arc<dyn Collection>> {
        Ok(match self.target()? {
            Target::Embedded(dir) => Arc::new(Store::open(&dir)?),
            Target::Postgres { url, read_urls } => {
                let cluster = PgCluster::connect(&url, &read_urls, ReadRouting::default())
                    .with_context(|| format!("opening collection {}", folio_pg::redact(&url)))?;
                for r in cluster.health().iter().filter(|r| !r.healthy) {
                    eprintln!(
                        "warning: replica {} takes no reads for now: {}",
                        r.url,
                        r.reason.as_deref().unwrap_or("unknown reason")
                    );
                }
                Arc::new(cluster)
            }
        })
    }

    /// Opens a PostgreSQL collection for writing with `models`.
    pub fn pg_writer(url: &str, models: IndexModels) -> Result<PgWriter> {
        PgWriter::open(url, models)
            .with_context(|| format!("opening collection {} for writing", folio_pg::redact(url)))
    }
}
