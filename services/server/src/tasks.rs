//! Ingestion tasks: a persisted queue of indexing runs and the worker that runs them one at a
//! time.
//!
//! A task is one JSON file under `<data>/tasks/`, rewritten (atomically) at every change, so
//! that a restart finds every task as it last was. Tasks that were queued or running when the
//! server stopped run again at start: files already committed come back `unchanged` (content
//! hashes), and the store never publishes a half-written generation (a database commits each
//! document on its own), so nothing committed is lost. A server on a database writes it
//! through [`IngestModels::open_writer`]. Uploaded files are kept under `<data>/uploads/<task>/<n>/<name>.pdf`, which becomes the
//! document's path.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use folio_core::{Embedder, PageEmbedder};
use folio_indexer::{
    Embedders, FileObserver, FileReport, FileStatus, IndexSettings, index_files_into,
    index_files_with,
};
use folio_store::{CollectionWriter, IndexModels, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::state::IndexHandle;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for the worker.
    Queued,
    /// Being indexed.
    Running,
    /// The run finished and was committed (single files may still have failed).
    Succeeded,
    /// The run could not happen (see `error`).
    Failed,
}

/// What happened to one file of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskFileStatus {
    /// Not reached yet.
    Pending,
    /// Indexed.
    Indexed,
    /// Same content already indexed.
    Unchanged,
    /// Not indexed; see `reason`.
    Failed,
}

/// One file of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TaskFile {
    /// The file's name (uploads) or its path under the ingestion root.
    pub name: String,
    /// What happened.
    pub status: TaskFileStatus,
    /// The document's id once indexed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// Page count, when the PDF could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages: Option<u32>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What went wrong without failing it (pages without an image, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Files done out of all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Progress {
    /// Files done (any outcome).
    pub done: usize,
    /// Files in the task.
    pub total: usize,
}

/// An ingestion task, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// Where it stands.
    pub state: TaskState,
    /// When it was queued (seconds since the Unix epoch).
    pub created: u64,
    /// When it last started running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<u64>,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// Files done out of all.
    pub progress: Progress,
    /// Each file, in order.
    pub files: Vec<TaskFile>,
    /// Collection given to the documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Tags given to the documents.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The index generation the task published, if it changed anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Why the task failed as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A task as persisted: what the API shows plus the server-side paths of its files.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredTask {
    task: Task,
    inputs: Vec<PathBuf>,
}

/// The models and settings ingestion indexes with (the ones the served index was built with).
pub struct IngestModels {
    /// Passage text embedder.
    pub text: Arc<dyn Embedder>,
    /// Where it was loaded from, recorded in the index.
    pub text_source: Option<String>,
    /// The page route's model and its source.
    pub page: Option<(Arc<dyn PageEmbedder>, Option<String>)>,
    /// The late-interaction route's model and its source.
    pub late: Option<(Arc<dyn PageEmbedder>, Option<String>)>,
    /// Passage cutting, rendering, isolation, ... (collection, tags and progress are set per
    /// task).
    pub settings: IndexSettings,
    /// How tasks and deletes open a collection that is not an embedded index (a database,
    /// shards); `None` where only an embedded index is written.
    pub open_writer: Option<OpenWriter>,
}

/// Opens a collection for writing with the given models (a database, shards).
pub type OpenWriter =
    Arc<dyn Fn(&IndexModels) -> Result<Box<dyn CollectionWriter>, StoreError> + Send + Sync>;

/// The queue: tasks by id, persisted, and the channel to the worker.
pub struct Ingest {
    dir: PathBuf,
    open_writer: Option<OpenWriter>,
    tasks: Mutex<BTreeMap<String, StoredTask>>,
    queue: mpsc::UnboundedSender<String>,
    seq: AtomicU64,
}

/// The worker's end of the queue, handed to [`Ingest::run_worker`].
pub struct Worker {
    queue: mpsc::UnboundedReceiver<String>,
    models: IngestModels,
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Ingest {
    /// Opens the queue under `data_dir` (created if missing). Tasks left queued or running by
    /// an earlier process are queued again, oldest first.
    pub fn open(data_dir: &Path, models: IngestModels) -> std::io::Result<(Arc<Self>, Worker)> {
        let dir = data_dir.join("tasks");
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(data_dir.join("uploads"))?;
        let mut tasks = BTreeMap::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let stored: Option<StoredTask> = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            match stored {
                Some(t) => {
                    tasks.insert(t.task.id.clone(), t);
                }
                None => warn!(path = %path.display(), "skipping an unreadable task file"),
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pending: Vec<&StoredTask> = tasks
            .values()
            .filter(|t| matches!(t.task.state, TaskState::Queued | TaskState::Running))
            .collect();
        pending.sort_by_key(|t| (t.task.created, t.task.id.clone()));
        for t in pending {
            info!(task = %t.task.id, "queued again after a restart");
            let _ = tx.send(t.task.id.clone());
        }
        let ingest = Arc::new(Ingest {
            dir,
            open_writer: models.open_writer.clone(),
            tasks: Mutex::new(tasks),
            queue: tx,
            seq: AtomicU64::new(0),
        });
        Ok((ingest, Worker { queue: rx, models }))
    }

    /// How this server writes a collection that is not an embedded index, if it does.
    pub(crate) fn open_writer(&self) -> Option<&OpenWriter> {
        self.open_writer.as_ref()
    }

    /// A fresh task id: time-ordered and unique within this server.
    pub(crate) fn new_id(&self) -> String {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        format!("t-{millis}-{seq:04}")
    }

    /// Where the uploads of task `id` go.
    pub(crate) fn upload_dir(&self, id: &str) -> PathBuf {
        self.dir.with_file_name("uploads").join(id)
    }

    /// Queues a task over `inputs` (PDF files, named `names` in the API); returns it.
    pub(crate) fn enqueue(
        &self,
        id: String,
        inputs: Vec<PathBuf>,
        names: Vec<String>,
        collection: Option<String>,
        tags: Vec<String>,
    ) -> std::io::Result<Task> {
        let task = Task {
            id: id.clone(),
            state: TaskState::Queued,
            created: now(),
            started: None,
            finished: None,
            progress: Progress {
                done: 0,
                total: inputs.len(),
            },
            files: names
                .into_iter()
                .map(|name| TaskFile {
                    name,
                    status: TaskFileStatus::Pending,
                    doc_id: None,
                    pages: None,
                    reason: None,
                    warning: None,
                })
                .collect(),
            collection,
            tags,
            generation: None,
            error: None,
        };
        let stored = StoredTask {
            task: task.clone(),
            inputs,
        };
        self.persist(&stored)?;
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.insert(id.clone(), stored);
        }
        self.queue
            .send(id)
            .map_err(|_| std::io::Error::other("the ingestion worker has stopped"))?;
        Ok(task)
    }

    /// One task.
    pub fn get(&self, id: &str) -> Option<Task> {
        self.tasks.lock().ok()?.get(id).map(|t| t.task.clone())
    }

    /// Tasks, newest first: `offset` skipped, at most `limit`; and how many there are.
    pub fn list(&self, offset: usize, limit: usize) -> (Vec<Task>, usize) {
        let Ok(tasks) = self.tasks.lock() else {
            return (Vec::new(), 0);
        };
        let mut all: Vec<&StoredTask> = tasks.values().collect();
        all.sort_by(|a, b| (b.task.created, &b.task.id).cmp(&(a.task.created, &a.task.id)));
        let page = all
            .into_iter()
            .skip(offset)
            .take(limit)
            .map(|t| t.task.clone())
            .collect();
        (page, tasks.len())
    }

    /// Tasks waiting to run.
    pub fn queued(&self) -> usize {
        self.tasks.lock().map_or(0, |t| {
            t.values()
                .filter(|t| t.task.state == TaskState::Queued)
                .count()
        })
    }

    /// Writes a task file atomically (temporary file, fsync, rename).
    fn persist(&self, stored: &StoredTask) -> std::io::Result<()> {
        let path = self.dir.join(format!("{}.json", stored.task.id));
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(stored).map_err(std::io::Error::other)?;
        {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
    }

    /// Changes a task and persists it; returns its inputs.
    fn update(&self, id: &str, change: impl FnOnce(&mut Task)) -> Option<Vec<PathBuf>> {
        let mut tasks = self.tasks.lock().ok()?;
        let stored = tasks.get_mut(id)?;
        change(&mut stored.task);
        if let Err(e) = self.persist(stored) {
            error!(task = id, error = %e, "cannot persist the task");
        }
        Some(stored.inputs.clone())
    }

    /// Runs queued tasks one at a time until the queue closes. `writer` is held while a task
    /// writes the index, so that deletes wait their turn.
    pub async fn run_worker(
        self: Arc<Self>,
        worker: Worker,
        index: Arc<IndexHandle>,
        writer: Arc<tokio::sync::Mutex<()>>,
    ) {
        let Worker { mut queue, models } = worker;
        let models = Arc::new(models);
        let destination = match (index.dir(), &models.open_writer) {
            (Some(dir), _) => Destination::Index(dir.to_path_buf()),
            (None, Some(open)) => Destination::Collection(open.clone()),
            (None, None) => {
                warn!("ingestion needs a collection to write; the worker does not run");
                return;
            }
        };
        while let Some(id) = queue.recv().await {
            let guard = writer.lock().await;
            let Some(inputs) = self.update(&id, |t| {
                t.state = TaskState::Running;
                t.started = Some(now());
                t.progress.done = 0;
                t.error = None;
            }) else {
                continue;
            };
            info!(task = %id, files = inputs.len(), "ingestion task started");
            let (collection, tags) = self
                .get(&id)
                .map(|t| (t.collection, t.tags))
                .unwrap_or_default();
            let observer = {
                let ingest = self.clone();
                let id = id.clone();
                FileObserver(Arc::new(move |i, report: &FileReport| {
                    ingest.update(&id, |t| {
                        if let Some(f) = t.files.get_mut(i) {
                            apply(f, report);
                        }
                        t.progress.done = i + 1;
                    });
                }))
            };
            let settings = IndexSettings {
                progress: false,
                collection,
                tags,
                observer: Some(observer),
                ..models.settings.clone()
            };
            let destination = destination.clone();
            let run_models = models.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let m = &run_models;
                let embedders = Embedders {
                    text: m.text.as_ref(),
                    text_source: m.text_source.as_deref(),
                    page: m.page.as_ref().map(|(e, s)| (e.as_ref(), s.as_deref())),
                    late: m.late.as_ref().map(|(e, s)| (e.as_ref(), s.as_deref())),
                };
                match destination {
                    Destination::Index(dir) => {
                        index_files_with(&dir, &inputs, &embedders, &settings)
                    }
                    Destination::Collection(open) => {
                        let writer = open(&embedders.models())?;
                        index_files_into(writer, &inputs, &embedders, &settings)
                    }
                }
            })
            .await;
            let outcome = match outcome {
                Ok(Ok(report)) => Ok(report),
                Ok(Err(e)) => Err(e.to_string()),
                Err(e) => Err(format!("the indexing run crashed: {e}")),
            };
            // Serve the new generation before the task says it is done, so that a client
            // that sees `succeeded` finds its documents.
            let handle = index.clone();
            let _ = tokio::task::spawn_blocking(move || handle.reload_if_newer()).await;
            drop(guard);
            self.update(&id, |t| {
                t.finished = Some(now());
                match &outcome {
                    Ok(report) => {
                        t.state = TaskState::Succeeded;
                        t.generation = report.generation;
                        for (f, r) in t.files.iter_mut().zip(&report.files) {
                            apply(f, r);
                        }
                        t.progress.done = t.progress.total;
                    }
                    Err(e) => {
                        t.state = TaskState::Failed;
                        t.error = Some(e.clone());
                    }
                }
            });
            match &outcome {
                Ok(report) => info!(
                    task = %id,
                    indexed = report.count(FileStatus::Indexed),
                    unchanged = report.count(FileStatus::Unchanged),
                    failed = report.count(FileStatus::Failed),
                    generation = ?report.generation,
                    "ingestion task done"
                ),
                Err(e) => warn!(task = %id, error = %e, "ingestion task failed"),
            }
        }
    }
}

/// What the worker writes: an embedded index, or a collection it opens.
#[derive(Clone)]
enum Destination {
    Index(PathBuf),
    Collection(OpenWriter),
}

fn apply(f: &mut TaskFile, r: &FileReport) {
    f.status = match r.status {
        FileStatus::Indexed => TaskFileStatus::Indexed,
        FileStatus::Unchanged => TaskFileStatus::Unchanged,
        FileStatus::Failed => TaskFileStatus::Failed,
    };
    f.doc_id.clone_from(&r.doc_id);
    f.pages = r.pages;
    f.reason.clone_from(&r.reason);
    f.warning.clone_from(&r.warning);
}
