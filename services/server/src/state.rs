//! What every handler shares: the configuration, the open index (swapped when a new
//! generation is published), the ingestion queue and the metrics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use folio_search::Pipeline;
use folio_store::{Manifest, Store};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::auth::ApiKeys;
use crate::metrics::Metrics;
use crate::tasks::Ingest;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Accepted API keys; none: the API is open.
    pub keys: ApiKeys,
    /// Largest upload request (`POST /v1/documents`), in bytes.
    pub max_upload_bytes: usize,
    /// Time limit of one request.
    pub request_timeout: Duration,
    /// Requests in flight on `/v1/*` beyond which the answer is 429.
    pub max_concurrent: usize,
    /// Searches run at once; the others wait their turn, first come first served. `None`:
    /// twice the CPUs on an embedded index (its searches are CPU work), no limit on a
    /// database or shards (theirs mostly wait on the network); `Some(0)`: no limit.
    pub search_threads: Option<usize>,
    /// Origins allowed by CORS: none (no CORS headers), or `*` for any.
    pub cors_origins: Vec<String>,
    /// Server-side folders that `POST /v1/documents` may index by path; `None` refuses
    /// path ingestion.
    pub ingest_root: Option<PathBuf>,
    /// Where tasks and uploaded files are kept.
    pub data_dir: PathBuf,
    /// How often the index directory is checked for a newer generation.
    pub reload_interval: Duration,
    /// A query node: serves the index another process writes (an indexer job, or a writable
    /// server on the same volume) and writes nothing itself: no ingestion, no deletes, no
    /// data directory. New generations are picked up every `reload_interval`.
    pub read_only: bool,
}

impl ServerConfig {
    /// Defaults for an index at `index`: open API, data kept in `<index>/service`.
    pub fn new(index: &Path) -> Self {
        ServerConfig {
            keys: ApiKeys::default(),
            max_upload_bytes: 512 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
            max_concurrent: 256,
            search_threads: None,
            cors_origins: Vec::new(),
            ingest_root: None,
            data_dir: index.join("service"),
            reload_interval: Duration::from_secs(2),
            read_only: false,
        }
    }
}

/// The open collection: the pipeline over it. For an embedded index, the pipeline over its
/// current generation, replaced when a newer one is published (by an ingestion task, a
/// delete, or `folio index` in another process); a database is always current.
pub struct IndexHandle {
    /// The embedded index's directory; `None` for a database.
    dir: Option<PathBuf>,
    current: RwLock<Arc<Pipeline>>,
    /// Why the last reload failed, while the previous generation keeps serving.
    reload_error: Mutex<Option<String>>,
}

impl IndexHandle {
    /// Serves `pipeline`.
    pub fn new(pipeline: Pipeline) -> Self {
        IndexHandle {
            dir: pipeline.collection().index_dir().map(Path::to_path_buf),
            current: RwLock::new(Arc::new(pipeline)),
            reload_error: Mutex::new(None),
        }
    }

    /// The embedded index's directory; `None` when a database is served.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The pipeline over the current generation.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        match self.current.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Why the last reload failed, if it did.
    pub fn reload_error(&self) -> Option<String> {
        self.reload_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default()
    }

    /// Opens the published generation if it is newer than the one served; returns the new
    /// generation. A failure keeps the old one serving and is recorded for `/readyz`.
    pub fn reload_if_newer(&self) -> Option<u64> {
        let dir = self.dir.as_deref()?;
        let served = self.pipeline().collection().stats().ok()?.generation?;
        let published = match Manifest::read(dir) {
            Ok(Some(m)) => m.generation,
            Ok(None) => return None,
            Err(e) => {
                self.record_error(Some(e.to_string()));
                return None;
            }
        };
        if published <= served {
            return None;
        }
        let reopened = Store::open(dir)
            .map_err(|e| e.to_string())
            .and_then(|store| {
                self.pipeline()
                    .reopened(Arc::new(store))
                    .map_err(|e| e.to_string())
            });
        match reopened {
            Ok(p) => {
                let generation = p
                    .collection()
                    .stats()
                    .ok()
                    .and_then(|s| s.generation)
                    .unwrap_or(published);
                match self.current.write() {
                    Ok(mut current) => *current = Arc::new(p),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(p),
                }
                self.record_error(None);
                info!(generation, "serving a new index generation");
                Some(generation)
            }
            Err(e) => {
                warn!(published, error = %e, "cannot open the new index generation; still serving the previous one");
                self.record_error(Some(e));
                None
            }
        }
    }

    fn record_error(&self, e: Option<String>) {
        if let Ok(mut slot) = self.reload_error.lock() {
            *slot = e;
        }
    }
}

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) index: Arc<IndexHandle>,
    pub(crate) ingest: Option<Arc<Ingest>>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) in_flight: Arc<Semaphore>,
    /// Turns to run a search, when `search_threads` limits them.
    pub(crate) search_turns: Option<Arc<Semaphore>>,
    /// Held by whoever writes the index from this server (an ingestion task, a delete).
    pub(crate) writer: Arc<tokio::sync::Mutex<()>>,
    /// Set when shutdown begins: `/readyz` answers 503 so balancers drain the server.
    pub(crate) draining: Arc<AtomicBool>,
}

impl AppState {
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
