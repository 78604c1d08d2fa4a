//! PDF files in, a new store generation out.
//!
//! For each file: hash its bytes (unchanged content is skipped), extract page text
//! ([`pdf::extract_pages`]), cut passages ([`chunk::chunk_text`]), embed them in batches with the
//! given [`Embedder`], and hand the document to the [`StoreWriter`]. A file that fails is
//! reported with its reason and the batch goes on; the store publishes the new generation only
//! at the end, so nothing indexed before is ever lost.

pub mod chunk;
pub mod pdf;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use folio_core::{ChunkSettings, DocId, DocInput, Document, Embedder, Page, PageKey, Passage};
use folio_store::{CommitOutcome, StoreError, StoreWriter};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tracing::{info, instrument, warn};

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
    /// Page count of the PDF, when it could be read.
    pub pages: Option<u32>,
    /// Why it failed; `None` unless failed.
    pub reason: Option<String>,
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
}

impl IndexReport {
    /// Number of files with the given status.
    pub fn count(&self, status: FileStatus) -> usize {
        self.files.iter().filter(|f| f.status == status).count()
    }
}

/// Indexing settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexSettings {
    /// Passage cutting.
    pub chunk: ChunkSettings,
    /// Larger files fail with a reason.
    pub max_file_bytes: u64,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            chunk: ChunkSettings::default(),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            progress: true,
        }
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
                pages: None,
                reason: Some("no such file or directory".into()),
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

/// Indexes `files` into the index at `index_dir` (created if missing) and publishes a new
/// generation if anything changed.
#[instrument(skip_all, fields(index = %index_dir.display(), files = files.len()))]
pub fn index_files(
    index_dir: &Path,
    files: &[PathBuf],
    embedder: &dyn Embedder,
    embedder_source: Option<String>,
    settings: &IndexSettings,
) -> Result<IndexReport, IndexError> {
    let started = Instant::now();
    let mut writer = StoreWriter::open(index_dir, embedder.info(), embedder_source)?;
    let bar = progress_bar(files.len() as u64, settings.progress);
    let mut report = IndexReport {
        files: Vec::with_capacity(files.len()),
        generation: None,
        seconds: 0.0,
        pages_indexed: 0,
        passages_indexed: 0,
    };
    for path in files {
        bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let file = index_one(&mut writer, path, embedder, settings, &mut report);
        match &file.reason {
            Some(reason) => info!(path = %file.path, %reason, "file failed"),
            None => {
                info!(path = %file.path, status = ?file.status, pages = ?file.pages, "file done")
            }
        }
        report.files.push(file);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let CommitOutcome::Published { generation } = writer.commit()? {
        report.generation = Some(generation);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn progress_bar(len: u64, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files ({per_sec}) {wide_msg}",
    ) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn failed(path: &Path, pages: Option<u32>, reason: impl Into<String>) -> FileReport {
    FileReport {
        path: path.display().to_string(),
        status: FileStatus::Failed,
        pages,
        reason: Some(reason.into()),
    }
}

fn index_one(
    writer: &mut StoreWriter,
    path: &Path,
    embedder: &dyn Embedder,
    settings: &IndexSettings,
    report: &mut IndexReport,
) -> FileReport {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) => return failed(path, None, format!("cannot read: {e}")),
    };
    if size > settings.max_file_bytes {
        return failed(
            path,
            None,
            format!(
                "file is {size} bytes, over the limit of {} bytes",
                settings.max_file_bytes
            ),
        );
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return failed(path, None, format!("cannot read: {e}")),
    };
    let stored_path = std::fs::canonicalize(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string();
    let content_hash = hex(&Sha256::digest(&bytes));
    if let Some(doc) = writer.find_by_hash(&content_hash) {
        return FileReport {
            path: path.display().to_string(),
            status: FileStatus::Unchanged,
            pages: Some(doc.pages),
            reason: None,
        };
    }
    let page_texts = match pdf::extract_pages(bytes) {
        Ok(p) => p,
        Err(e) => return failed(path, None, e.to_string()),
    };
    let doc_id = DocId::from_content_hash(&content_hash);
    let n_pages = u32::try_from(page_texts.len()).unwrap_or(u32::MAX);
    let mut pages = Vec::with_capacity(page_texts.len());
    let mut passages = Vec::new();
    for (i, text) in page_texts.into_iter().enumerate() {
        let key = PageKey {
            doc_id: doc_id.clone(),
            page: i as u32 + 1,
        };
        for c in chunk::chunk_text(&text, settings.chunk) {
            passages.push(Passage {
                id: 0,
                page: key.clone(),
                char_start: c.char_start,
                char_end: c.char_end,
                text: c.text,
            });
        }
        pages.push(Page { key, text });
    }
    let vectors = match embed_passages(embedder, &passages) {
        Ok(v) => v,
        Err(reason) => return failed(path, Some(n_pages), reason),
    };
    let doc = Document {
        doc_id,
        path: stored_path,
        content_hash,
        pages: n_pages,
        bytes: size,
    };
    let n_passages = passages.len() as u64;
    if let Err(e) = writer.put_document(doc, pages, passages, vectors) {
        return failed(path, Some(n_pages), e.to_string());
    }
    report.pages_indexed += u64::from(n_pages);
    report.passages_indexed += n_passages;
    FileReport {
        path: path.display().to_string(),
        status: FileStatus::Indexed,
        pages: Some(n_pages),
        reason: None,
    }
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
                pages: Some(3),
                reason: None,
            }],
            generation: None,
            seconds: 1.0,
            pages_indexed: 0,
            passages_indexed: 0,
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
