//! PDF files in, a new store generation out.
//!
//! For each file: hash its bytes (unchanged content is skipped), extract page text and layout
//! ([`pdf::extract_layout`]), cut passages with the boxes they cover ([`chunk::chunk_page`]),
//! embed them in batches with the
//! given [`Embedder`], and hand the document to the [`StoreWriter`]. When page embedders are
//! given ([`Embedders`]), every page is also rendered ([`render`]) and embedded as an image for
//! the page route and/or the late-interaction route, a few pages at a time. A file that fails
//! is reported with its reason and the batch goes on; the store publishes the new generation
//! only at the end, so nothing indexed before is ever lost.

pub mod chunk;
pub mod isolate;
pub mod layout;
pub mod pdf;
mod pictures;
pub mod render;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{
    ChunkSettings, DocId, DocInput, DocMeta, Document, Embedder, Page, PageEmbedder, PageKey,
    Passage,
};
use folio_store::{
    AnnOptions, Bm25Options, CollectionWriter, CommitOutcome, IndexModels, PageEmbeddings,
    RouteModel, StoreError, StoreWriter,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{info, instrument, warn};

use layout::ExtractedPage;
use pictures::Pictures;

/// Files larger than this are refused unless the settings say otherwise.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// The indexing run could not happen at all (per-file problems are in the report instead).
#[derive(Debug, Error)]
pub enum IndexError {
    /// The store refused (locked, other embedder, damaged, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Indexed (new or changed content).
    Indexed,
    /// Same content already indexed; nothing done.
    Unchanged,
    /// Not indexed; see the reason.
    Failed,
}

/// One file's line in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    /// The file, as found.
    pub path: String,
    /// What happened.
    pub status: FileStatus,
    /// The document's id, when it is in the index (indexed or unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc_id: Option<String>,
    /// Page count of the PDF, when it could be read.
    pub pages: Option<u32>,
    /// Why it failed; `None` unless failed.
    pub reason: Option<String>,
    /// What went wrong without failing the file (pages without a page image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
    /// Pages without a text layer (scans, pictures): indexed, found by the page routes only.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pages_without_text: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The report of one indexing run; `files` is the `--report` JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexReport {
    /// One entry per input file, in input order.
    pub files: Vec<FileReport>,
    /// The generation published, if anything changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Wall time of the run.
    pub seconds: f64,
    /// Pages extracted and embedded in this run.
    pub pages_indexed: u64,
    /// Passages embedded in this run.
    pub passages_indexed: u64,
    /// Page images rendered (then stored and/or embedded) in this run.
    #[serde(default)]
    pub page_images: u64,
    /// Seconds spent rendering, storing and embedding page images.
    #[serde(default)]
    pub page_image_seconds: f64,
}

impl IndexReport {
    /// Number of files with the given status.
    pub fn count(&self, status: FileStatus) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }
}

/// Indexing settings.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSettings {
    /// Passage cutting.
    pub chunk: ChunkSettings,
    /// Larger files fail with a reason.
    pub max_file_bytes: u64,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
    /// How pages are rendered for the page embedders.
    pub render: render::RenderSettings,
    /// HNSW settings to rebuild the index with; `None` keeps the index's own (defaults for a
    /// new index).
    pub ann: Option<AnnOptions>,
    /// BM25 analyser and parameters to rebuild the index with; `None` keeps the index's own.
    pub bm25: Option<Bm25Options>,
    /// Store each page's image and thumbnail next to the index (PDFs and page images).
    pub page_images: bool,
    /// Collection and tags given to every document of the run (searches can filter by
    /// them); files already indexed with the same content get them too, without
    /// re-embedding.
    pub collection: Option<String>,
    /// See `collection`.
    pub tags: Vec<String>,
    /// Extract each PDF's text in a worker process under a time limit and a memory cap;
    /// `None` extracts in-process (behind a panic net only).
    pub isolation: Option<isolate::Isolation>,
    /// Told about each input as soon as it is done, before the run commits.
    pub observer: Option<FileObserver>,
}

/// A callback told the position and report of each input as it is done: how a caller follows
/// a run's progress (an ingestion task, for example).
#[derive(Clone)]
pub struct FileObserver(pub Arc<ObserveFile>);

/// What a [`FileObserver`] calls: the input's position and its report.
pub type ObserveFile = dyn Fn(usize, &FileReport) + Send + Sync;

impl std::fmt::Debug for FileObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileObserver")
    }
}

impl PartialEq for FileObserver {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            chunk: ChunkSettings::default(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            progress: true,
            render: render::RenderSettings::default(),
            ann: None,
            bm25: None,
            page_images: true,
            collection: None,
            tags: Vec::new(),
            isolation: None,
            observer: None,
        }
    }
}

/// Pages rendered and embedded together: bounds the page images held in memory.
pub const PAGE_CHUNK: usize = 8;

/// The models an indexing run embeds with.
#[derive(Clone, Copy)]
pub struct Embedders<'a> {
    /// Passage text (the dense route).
    pub text: &'a dyn Embedder,
    /// Where the text embedder was loaded from, recorded in the index.
    pub text_source: Option<&'a str>,
    /// One vector per page image (the page route), with its source.
    pub page: Option<(&'a dyn PageEmbedder, Option<&'a str>)>,
    /// Token vectors per page image (the late-interaction route), with its source.
    pub late: Option<(&'a dyn PageEmbedder, Option<&'a str>)>,
}

impl<'a> Embedders<'a> {
    /// A text embedder only.
    pub fn text(text: &'a dyn Embedder, text_source: Option<&'a str>) -> Self {
        Embedders {
            text,
            text_source,
            page: None,
            late: None,
        }
    }

    /// What the store records for these models.
    pub fn models(&self) -> IndexModels {
        let record = |(e, source): (&dyn PageEmbedder, Option<&str>)| RouteModel {
            embedder: e.info().clone(),
            source: source.map(str::to_string),
        };
        IndexModels {
            text: RouteModel {
                embedder: self.text.info().clone(),
                source: self.text_source.map(str::to_string),
            },
            page: self.page.map(record),
            late: self.late.map(record),
        }
    }

    fn has_page_models(&self) -> bool {
        self.page.is_some() || self.late.is_some()
    }
}

/// Expands inputs into the PDF files to index: files as given, directories walked
/// recursively for `*.pdf` (any case), in sorted order. Inputs that do not exist come back
/// as failed reports.
pub fn collect_pdfs(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<FileReport>) {
    let mut files = Vec::new();
    let mut missing = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            walk(input, &mut found);
            found.sort();
            files.extend(found);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            missing.push(FileReport {
                path: input.display().to_string(),
                status: FileStatus::Failed,
                doc_id: None,
                pages: None,
                reason: Some("no such file or directory".into()),
                warning: None,
                pages_without_text: 0,
            });
        }
    }
    (files, missing)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        warn!(dir = %dir.display(), "cannot read directory");
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pdf"))
        {
            out.push(path);
        }
    }
}

/// Indexes `files` into the index at `index_dir` (created if missing) with a text embedder
/// only, and publishes a new generation if anything changed.
pub fn index_files(
    index_dir: &Path,
    files: &[PathBuf],
    embedder: &dyn Embedder,
    embedder_source: Option<String>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    let models = Embedders::text(embedder, embedder_source.as_deref());
    index_files_with(index_dir, files, &models, settings)
}

/// Indexes `files` into the index at `index_dir` (created if missing) with `models`, and
/// publishes a new generation if anything changed.
#[instrument(skip_all, fields(index = %index_dir.display(), files = files.len()))]
pub fn index_files_with(
    index_dir: &Path,
    files: &[PathBuf],
    models: &Embedders<'_>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    index_pdfs(Run::open(index_dir, *models, settings)?, files)
}

/// Indexes `files` with `models` into the collection `writer` writes (a database, shards),
/// then commits it. The writer must have been opened with `models.models()`.
#[instrument(skip_all, fields(collection = %writer.location(), files = files.len()))]
pub fn index_files_into(
    writer: Box<dyn CollectionWriter>,
    files: &[PathBuf],
    models: &Embedders<'_>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    check_writer(writer.as_ref(), models)?;
    index_pdfs(Run::new(writer, *models, settings), files)
}

fn check_writer(writer: &dyn CollectionWriter, models: &Embedders<'_>) -> Result<(), IndexError> {
    if *writer.models() != models.models() {
        return Err(IndexError::Store(StoreError::Invalid(format!(
            "the writer of {} was opened with other models than the run's",
            writer.location()
        ))));
    }
    Ok(())
}

fn index_pdfs(run: Run<'_>, files: &[PathBuf]) -> Result<IndexReport, IndexError> {
    let names: Vec<String> = files
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    run.each(
        files.len(),
        "files",
        |i| names[i].clone(),
        |ingest, i| index_pdf(ingest, &files[i]),
    )
}

/// A text document to index as a single page, e.g. one entry of a BEIR corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextDocument {
    /// The document's id in its collection; stored as the document's path.
    pub id: String,
    /// Its text.
    pub text: String,
}

/// Indexes text documents, each as a document of one page, with the same passage cutting,
/// embedding and incremental rules as PDFs (unchanged id and text: skipped).
#[instrument(skip_all, fields(index = %index_dir.display(), documents = docs.len()))]
pub fn index_texts(
    index_dir: &Path,
    docs: &[TextDocument],
    embedder: &dyn Embedder,
    embedder_source: Option<String>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    let models = Embedders::text(embedder, embedder_source.as_deref());
    texts(Run::open(index_dir, models, settings)?, docs)
}

/// [`index_texts`] into the collection `writer` writes (a database), then commits it. The
/// writer must have been opened with `models.models()`.
pub fn index_texts_into(
    writer: Box<dyn CollectionWriter>,
    docs: &[TextDocument],
    models: &Embedders<'_>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    check_writer(writer.as_ref(), models)?;
    texts(Run::new(writer, *models, settings), docs)
}

fn texts(run: Run<'_>, docs: &[TextDocument]) -> Result<IndexReport, IndexError> {
    run.each(
        docs.len(),
        "documents",
        |i| docs[i].id.clone(),
        |ingest, i| {
            let doc = &docs[i];
            let mut hasher = Sha256::new();
            for part in ["text", &doc.id, &doc.text] {
                hasher.update(part.as_bytes());
                hasher.update([0u8]);
            }
            let hash = hex(&hasher.finalize());
            let source = Source {
                label: &doc.id,
                stored_path: doc.id.clone(),
                content_hash: hash,
                bytes: doc.text.len() as u64,
                modified: None,
                pictures: None,
            };
            ingest.document(source, || {
                Ok(vec![ExtractedPage::text_only(doc.text.clone())])
            })
        },
    )
}

/// A page given as an image and/or text, to index as a document of one page, e.g. one corpus
/// entry of a ViDoRe-style dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusPage {
    /// The page's id in its collection; stored as the document's path.
    pub id: String,
    /// Text of the page (OCR, markdown, passage), for the text routes.
    pub text: Option<String>,
    /// The encoded page image (PNG or JPEG), for the page routes.
    pub image: Option<Vec<u8>>,
}

/// Indexes pages given as images and/or text, each as a document of one page: its text for
/// the text routes, its image for the page routes of `models`. Unchanged id, text and image:
/// skipped. An image that does not decode leaves the page without page embeddings, with a
/// warning.
#[instrument(skip_all, fields(index = %index_dir.display(), documents = docs.len()))]
pub fn index_pages(
    index_dir: &Path,
    docs: &[CorpusPage],
    models: &Embedders<'_>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    let run = Run::open(index_dir, *models, settings)?;
    run.each(
        docs.len(),
        "pages",
        |i| docs[i].id.clone(),
        |ingest, i| {
            let doc = &docs[i];
            let text = doc.text.clone().unwrap_or_default();
            let mut hasher = Sha256::new();
            for part in ["image", &doc.id, &text] {
                hasher.update(part.as_bytes());
                hasher.update([0u8]);
            }
            let image = doc.image.as_deref();
            hasher.update(image.unwrap_or_default());
            let source = Source {
                label: &doc.id,
                stored_path: doc.id.clone(),
                content_hash: hex(&hasher.finalize()),
                bytes: (text.len() + image.map_or(0, <[u8]>::len)) as u64,
                modified: None,
                pictures: image.map(Pictures::Image),
            };
            ingest.document(source, || Ok(vec![ExtractedPage::text_only(text)]))
        },
    )
}

/// One indexing run: the writer, the report being built, and what every input needs.
struct Run<'a> {
    writer: Box<dyn CollectionWriter>,
    /// Progress of the run; hidden until `each` starts.
    bar: ProgressBar,
    models: Embedders<'a>,
    settings: &'a IndexSettings,
    report: IndexReport,
    started: Instant,
}

impl<'a> Run<'a> {
    fn open(
        index_dir: &Path,
        models: Embedders<'a>,
        settings: &'a IndexSettings,
    ) -> Result<Self, IndexError> {
        let mut writer = StoreWriter::open_with(index_dir, models.models())?;
        if let Some(options) = settings.ann {
            writer.set_ann_options(options)?;
        }
        if let Some(options) = settings.bm25 {
            writer.set_bm25_options(options)?;
        }
        Ok(Self::new(Box::new(writer), models, settings))
    }

    fn new(
        writer: Box<dyn CollectionWriter>,
        models: Embedders<'a>,
        settings: &'a IndexSettings,
    ) -> Self {
        Run {
            writer,
            bar: ProgressBar::hidden(),
            models,
            settings,
            report: IndexReport {
                files: Vec::new(),
                generation: None,
                seconds: 0.0,
                pages_indexed: 0,
                passages_indexed: 0,
                page_images: 0,
                page_image_seconds: 0.0,
            },
            started: Instant::now(),
        }
    }

    /// Runs `one` on inputs `0..n` behind a progress bar counting `unit`, then commits.
    fn each(
        mut self,
        n: usize,
        unit: &str,
        name: impl Fn(usize) -> String,
        mut one: impl FnMut(&mut Self, usize) -> FileReport,
    ) -> Result<IndexReport, IndexError> {
        self.bar = progress_bar(n as u64, unit, self.settings.progress);
        let bar = self.bar.clone();
        for i in 0..n {
            bar.set_message(name(i));
            let file = one(&mut self, i);
            match &file.reason {
                Some(reason) => info!(path = %file.path, %reason, "input failed"),
                None => {
                    info!(path = %file.path, status = ?file.status, pages = ?file.pages, "input done")
                }
            }
            if let Some(observer) = &self.settings.observer {
                (observer.0)(i, &file);
            }
            self.report.files.push(file);
            bar.inc(1);
        }
        bar.finish_and_clear();
        if let CommitOutcome::Published { generation } = self.writer.commit()? {
            self.report.generation = Some(generation);
        }
        self.report.seconds = self.started.elapsed().as_secs_f64();
        Ok(self.report)
    }

    /// Indexes one document unless its content is already indexed: `pages` gives the text (and
    /// layout) of each page, or the reason it cannot.
    fn document(
        &mut self,
        source: Source<'_>,
        pages: impl FnOnce() -> Result<Vec<ExtractedPage>, String>,
    ) -> FileReport {
        let label = source.label;
        let report = |status, pages, reason| FileReport {
            path: label.to_string(),
            status,
            doc_id: None,
            pages,
            reason,
            warning: None,
            pages_without_text: 0,
        };
        let meta = DocMeta {
            collection: self.settings.collection.clone(),
            tags: self.settings.tags.clone(),
            modified: source.modified,
        };
        let known = match self.writer.find_by_hash(&source.content_hash) {
            Ok(known) => known,
            Err(e) => return report(FileStatus::Failed, None, Some(e.to_string())),
        };
        if let Some(doc) = known {
            let (id, pages) = (doc.doc_id.clone(), doc.pages);
            if doc.meta != meta
                && let Err(e) = self.writer.set_meta(&id, meta)
            {
                return report(FileStatus::Failed, Some(pages), Some(e.to_string()));
            }
            return FileReport {
                doc_id: Some(id.0),
                ..report(FileStatus::Unchanged, Some(pages), None)
            };
        }
        let page_texts = match pages() {
            Ok(p) => p,
            Err(reason) => return report(FileStatus::Failed, None, Some(reason)),
        };
        let doc_id = DocId::from_content_hash(&source.content_hash);
        let n_pages = u32::try_from(page_texts.len()).unwrap_or(u32::MAX);
        let pages_without_text = page_texts
            .iter()
            .filter(|p| p.text.trim().is_empty())
            .count() as u32;
        let mut pages = Vec::with_capacity(page_texts.len());
        let mut passages = Vec::new();
        for (i, page) in page_texts.into_iter().enumerate() {
            let key = PageKey {
                doc_id: doc_id.clone(),
                page: i as u32 + 1,
            };
            for c in chunk::chunk_page(&page, self.settings.chunk) {
                passages.push(Passage {
                    id: 0,
                    page: key.clone(),
                    char_start: c.char_start,
                    char_end: c.char_end,
                    text: c.text,
                    boxes: c.boxes,
                });
            }
            pages.push(Page {
                key,
                text: page.text,
            });
        }
        let short = Path::new(label)
            .file_name()
            .map_or_else(|| label.into(), |n| n.to_string_lossy());
        self.bar.set_message(format!(
            "{short}: {n_pages} pages, embedding {} passages",
            passages.len()
        ));
        let vectors = match embed_passages(self.models.text, &passages) {
            Ok(v) => v,
            Err(reason) => return report(FileStatus::Failed, Some(n_pages), Some(reason)),
        };
        let wants_pictures = self.models.has_page_models() || self.settings.page_images;
        let (page_embeddings, warning) = match source.pictures {
            Some(pictures) if wants_pictures => {
                match self.page_pictures(&doc_id, pictures, n_pages, &short) {
                    Ok(done) => done,
                    Err(reason) => return report(FileStatus::Failed, Some(n_pages), Some(reason)),
                }
            }
            _ => (PageEmbeddings::default(), None),
        };
        let doc = Document {
            doc_id: doc_id.clone(),
            path: source.stored_path,
            content_hash: source.content_hash,
            pages: n_pages,
            bytes: source.bytes,
            meta,
        };
        let n_passages = passages.len() as u64;
        // A refusal leaves the collection as it was (with any older version of this file).
        let stored = self
            .writer
            .put_document(doc, pages, passages, vectors, page_embeddings);
        if let Err(e) = stored {
            return report(FileStatus::Failed, Some(n_pages), Some(e.to_string()));
        }
        self.report.pages_indexed += u64::from(n_pages);
        self.report.passages_indexed += n_passages;
        if let Some(w) = &warning {
            warn!(path = %label, warning = %w, "indexed with a warning");
        }
        FileReport {
            warning,
            pages_without_text,
            doc_id: Some(doc_id.0),
            ..report(FileStatus::Indexed, Some(n_pages), None)
        }
    }
}

/// Where a document comes from, as the report and the store name it.
struct Source<'a> {
    /// The input as given (report).
    label: &'a str,
    /// The path (or id) stored with the document.
    stored_path: String,
    content_hash: String,
    bytes: u64,
    /// The file's modification time (seconds since the Unix epoch), when it is a file.
    modified: Option<u64>,
    /// Where page images come from; `None` for text documents.
    pictures: Option<Pictures<'a>>,
}

/// A progress bar on stderr counting `len` items of `unit`, with rate and ETA; hidden when
/// `enabled` is false (indicatif also hides it when stderr is not a terminal).
pub fn progress_bar(len: u64, unit: &str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}}) {{wide_msg}}"
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn index_pdf(run: &mut Run<'_>, path: &Path) -> FileReport {
    let label = path.display().to_string();
    let failed = |reason: String| FileReport {
        path: label.clone(),
        status: FileStatus::Failed,
        doc_id: None,
        pages: None,
        reason: Some(reason),
        warning: None,
        pages_without_text: 0,
    };
    let (size, modified) = match std::fs::metadata(path) {
        Ok(m) => (
            m.len(),
            m.modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs()),
        ),
        Err(e) => return failed(format!("cannot read: {e}")),
    };
    if size > run.settings.max_file_bytes {
        return failed(format!(
            "file is {size} bytes, over the limit of {} bytes",
            run.settings.max_file_bytes
        ));
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return failed(format!("cannot read: {e}")),
    };
    let stored_path = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let source = Source {
        label: &label,
        stored_path,
        content_hash: hex(&Sha256::digest(&bytes)),
        bytes: size,
        modified,
        pictures: Some(Pictures::Pdf(pictures::PdfFile {
            bytes: &bytes,
            path,
        })),
    };
    let isolation = run.settings.isolation.clone();
    run.document(source, || match &isolation {
        Some(iso) => isolate::extract_isolated(iso, path),
        None => pdf::extract_layout(bytes.clone()).map_err(|e| e.to_string()),
    })
}

fn embed_passages(embedder: &dyn Embedder, passages: &[Passage]) -> Result<Vec<Vec<f32>>, String> {
    let batch = embedder.info().max_batch.max(1);
    let mut out = Vec::with_capacity(passages.len());
    for chunk in passages.chunks(batch) {
        let inputs: Vec<DocInput> = chunk
            .iter()
            .map(|p| DocInput::Text(p.text.clone()))
            .collect();
        let embeddings = embedder
            .embed_documents(&inputs)
            .map_err(|e| format!("embedding failed: {e}"))?;
        for e in embeddings {
            match e.as_single() {
                Some(v) => out.push(v.to_vec()),
                None => {
                    return Err(
                        "embedding failed: the text embedder gave a multi-vector embedding".into(),
                    );
                }
            }
        }
    }
    Ok(out)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_walks_directories_sorted_and_reports_missing_inputs() -> std::io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path();
        std::fs::create_dir_all(root.join("sub/deeper"))?;
        for f in [
            "b.pdf",
            "a.PDF",
            "notes.txt",
            "sub/c.pdf",
            "sub/deeper/d.pdf",
        ] {
            std::fs::write(root.join(f), b"")?;
        }
        let single = root.join("notes.txt");
        let missing = root.join("gone.pdf");
        let (files, failed) = collect_pdfs(&[root.to_path_buf(), single.clone(), missing.clone()]);
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(root).unwrap_or(p).display().to_string())
            .collect();
        // Directories yield PDFs only, sorted; a file given by name is taken as it is.
        assert_eq!(
            names,
            [
                "a.PDF",
                "b.pdf",
                "sub/c.pdf",
                "sub/deeper/d.pdf",
                "notes.txt"
            ]
        );
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].path, missing.display().to_string());
        assert_eq!(failed[0].status, FileStatus::Failed);
        assert_eq!(
            failed[0].reason.as_deref(),
            Some("no such file or directory")
        );
        Ok(())
    }

    #[test]
    fn report_json_has_the_documented_shape() -> Result<(), serde_json::Error> {
        let report = IndexReport {
            files: vec![FileReport {
                path: "x.pdf".into(),
                status: FileStatus::Unchanged,
                doc_id: None,
                pages: Some(3),
                reason: None,
                warning: None,
                pages_without_text: 0,
            }],
            generation: None,
            seconds: 1.0,
            pages_indexed: 0,
            passages_indexed: 0,
            page_images: 0,
            page_image_seconds: 0.0,
        };
        let v = serde_json::to_value(&report)?;
        assert_eq!(
            v["files"][0],
            serde_json::json!({"path": "x.pdf", "status": "unchanged", "pages": 3, "reason": null})
        );
        assert!(v.get("generation").is_none());
        Ok(())
    }
}
