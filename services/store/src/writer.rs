//! Writing generations.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use folio_core::{DocId, Document, EmbedderInfo, Page, Passage};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::{info, warn};

use crate::manifest::{self, Manifest};
use crate::{StoreError, ann, bm25, fsio, io_err};

const DOCUMENTS: &str = "documents.json";
const PAGES: &str = "pages.jsonl";
const PASSAGES: &str = "passages.jsonl";
const VECTORS: &str = "vectors.f32";
const LOCK: &str = "LOCK";

/// The canonical content of one generation.
pub(crate) struct GenerationData {
    pub(crate) documents: Vec<Document>,
    pub(crate) pages: Vec<Page>,
    pub(crate) passages: Vec<Passage>,
    /// Row-major, `passages.len() * dim`.
    pub(crate) vectors: Vec<f32>,
}

fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, StoreError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path))?;
        out.push(
            serde_json::from_str(&line).map_err(|e| StoreError::Corrupt {
                path: path.to_path_buf(),
                message: format!("line {}: {e}", i + 1),
            })?,
        );
    }
    Ok(out)
}

fn jsonl_bytes<T: Serialize>(items: &[T]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    for item in items {
        serde_json::to_writer(&mut out, item).map_err(|e| StoreError::Invalid(e.to_string()))?;
        out.push(b'\n');
    }
    Ok(out)
}

impl GenerationData {
    /// Reads a generation's canonical files; pages and vectors only when `full` (the writer
    /// needs them, readers do not).
    pub(crate) fn read(dir: &Path, dim: usize, full: bool) -> Result<Self, StoreError> {
        let docs_path = dir.join(DOCUMENTS);
        let documents: Vec<Document> = serde_json::from_reader(BufReader::new(
            File::open(&docs_path).map_err(io_err(&docs_path))?,
        ))
        .map_err(|e| StoreError::Corrupt {
            path: docs_path.clone(),
            message: e.to_string(),
        })?;
        let passages: Vec<Passage> = read_jsonl(&dir.join(PASSAGES))?;
        for (i, p) in passages.iter().enumerate() {
            if p.id != i as u64 {
                return Err(StoreError::Corrupt {
                    path: dir.join(PASSAGES),
                    message: format!("passage on line {} has id {}", i + 1, p.id),
                });
            }
        }
        let (pages, vectors) = if full {
            let vectors_path = dir.join(VECTORS);
            let mut bytes = Vec::new();
            File::open(&vectors_path)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .map_err(io_err(&vectors_path))?;
            if bytes.len() != passages.len() * dim * 4 {
                return Err(StoreError::Corrupt {
                    path: vectors_path,
                    message: format!(
                        "{} bytes for {} passages of width {dim}",
                        bytes.len(),
                        passages.len()
                    ),
                });
            }
            let vectors = bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (read_jsonl(&dir.join(PAGES))?, vectors)
        } else {
            (Vec::new(), Vec::new())
        };
        Ok(GenerationData {
            documents,
            pages,
            passages,
            vectors,
        })
    }

    /// Writes the canonical files and builds BM25 and ANN in the new directory `dir`.
    fn write(&self, dir: &Path, dim: usize) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let docs = serde_json::to_vec_pretty(&self.documents)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        fsio::write_synced(&dir.join(DOCUMENTS), &docs)?;
        fsio::write_synced(&dir.join(PAGES), &jsonl_bytes(&self.pages)?)?;
        fsio::write_synced(&dir.join(PASSAGES), &jsonl_bytes(&self.passages)?)?;
        let vectors_path = dir.join(VECTORS);
        {
            let file = File::create(&vectors_path).map_err(io_err(&vectors_path))?;
            let mut w = BufWriter::new(file);
            for x in &self.vectors {
                w.write_all(&x.to_le_bytes())
                    .map_err(io_err(&vectors_path))?;
            }
            w.flush().map_err(io_err(&vectors_path))?;
        }
        bm25::build(&dir.join(bm25::DIR), &self.passages)?;
        ann::build(&dir.join(ann::FILE), dim, &self.vectors)?;
        fsio::sync_tree(dir)
    }
}

/// One document's content as the writer holds it.
struct DocEntry {
    doc: Document,
    pages: Vec<Page>,
    /// Passage ids are reassigned at commit.
    passages: Vec<Passage>,
    /// One vector per passage.
    vectors: Vec<Vec<f32>>,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Nothing changed; no generation was written.
    Unchanged,
    /// A new generation was published.
    Published {
        /// Its number.
        generation: u64,
    },
}

/// Builds the next generation of an index from the current one plus changes, then publishes
/// it. Holds an exclusive lock on the index directory while it lives.
pub struct StoreWriter {
    dir: PathBuf,
    _lock: File,
    base: Option<Manifest>,
    embedder: EmbedderInfo,
    embedder_source: Option<String>,
    docs: BTreeMap<DocId, DocEntry>,
    dirty: bool,
}

impl StoreWriter {
    /// Opens (or creates) the index in `dir` for writing with the given passage embedder.
    /// Fails if another writer holds the index or if it was built with another embedder.
    pub fn open(
        dir: &Path,
        embedder: &EmbedderInfo,
        embedder_source: Option<String>,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StoreError::Locked(dir.into())),
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let base = Manifest::read(dir)?;
        let mut docs = BTreeMap::new();
        if let Some(m) = &base {
            if m.embedder.id != embedder.id || m.embedder.dim != embedder.dim {
                return Err(StoreError::EmbedderMismatch {
                    dir: dir.into(),
                    index: format!("{} ({}-d)", m.embedder.id, m.embedder.dim),
                    given: format!("{} ({}-d)", embedder.id, embedder.dim),
                });
            }
            let data = GenerationData::read(&m.generation_dir(dir), m.embedder.dim, true)?;
            docs = group_by_document(data, m.embedder.dim);
        }
        Ok(StoreWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            base,
            embedder: embedder.clone(),
            embedder_source,
            docs,
            dirty: false,
        })
    }

    /// The document with this content hash, if indexed.
    pub fn find_by_hash(&self, content_hash: &str) -> Option<&Document> {
        self.docs
            .values()
            .map(|e| &e.doc)
            .find(|d| d.content_hash == content_hash)
    }

    /// The document with this id, if indexed.
    pub fn document(&self, id: &DocId) -> Option<&Document> {
        self.docs.get(id).map(|e| &e.doc)
    }

    /// The document indexed from this path, if any.
    pub fn find_by_path(&self, path: &str) -> Option<&Document> {
        self.docs.values().map(|e| &e.doc).find(|d| d.path == path)
    }

    /// Adds a document, replacing any document with the same id or the same path. Passage ids
    /// are ignored (reassigned at commit); `vectors` holds one embedding per passage.
    pub fn put_document(
        &mut self,
        doc: Document,
        pages: Vec<Page>,
        passages: Vec<Passage>,
        vectors: Vec<Vec<f32>>,
    ) -> Result<(), StoreError> {
        if vectors.len() != passages.len() {
            return Err(StoreError::Invalid(format!(
                "{} vectors for {} passages",
                vectors.len(),
                passages.len()
            )));
        }
        if let Some(v) = vectors.iter().find(|v| v.len() != self.embedder.dim) {
            return Err(StoreError::Invalid(format!(
                "vector of width {} in an index of width {}",
                v.len(),
                self.embedder.dim
            )));
        }
        if let Some(old) = self.find_by_path(&doc.path).map(|d| d.doc_id.clone()) {
            self.remove(&old);
        }
        self.docs.insert(
            doc.doc_id.clone(),
            DocEntry {
                doc,
                pages,
                passages,
                vectors,
            },
        );
        self.dirty = true;
        Ok(())
    }

    /// Removes a document; returns whether it was there.
    pub fn remove(&mut self, id: &DocId) -> bool {
        let removed = self.docs.remove(id).is_some();
        self.dirty |= removed;
        removed
    }

    /// Number of documents in the next generation.
    pub fn document_count(&self) -> usize {
        self.docs.len()
    }

    /// Writes the next generation and publishes it, if anything changed.
    pub fn commit(self) -> Result<CommitOutcome, StoreError> {
        if !self.dirty {
            return Ok(CommitOutcome::Unchanged);
        }
        let generation = self.base.as_ref().map_or(1, |m| m.generation + 1);
        let gen_dir = manifest::generation_dir(&self.dir, generation);
        if gen_dir.exists() {
            // Left by a run that crashed before publishing: never part of a manifest.
            std::fs::remove_dir_all(&gen_dir).map_err(io_err(&gen_dir))?;
        }
        let dim = self.embedder.dim;
        let mut data = GenerationData {
            documents: Vec::with_capacity(self.docs.len()),
            pages: Vec::new(),
            passages: Vec::new(),
            vectors: Vec::new(),
        };
        for entry in self.docs.into_values() {
            data.documents.push(entry.doc);
            data.pages.extend(entry.pages);
            for (mut p, v) in entry.passages.into_iter().zip(entry.vectors) {
                p.id = data.passages.len() as u64;
                data.passages.push(p);
                data.vectors.extend(v);
            }
        }
        data.write(&gen_dir, dim)?;
        let manifest = Manifest {
            format_version: manifest::FORMAT_VERSION,
            generation,
            embedder: self.embedder,
            embedder_source: self.embedder_source,
            documents: data.documents.len(),
            pages: data.pages.len(),
            passages: data.passages.len(),
        };
        manifest.publish(&self.dir)?;
        info!(
            generation,
            documents = manifest.documents,
            passages = manifest.passages,
            "published generation"
        );
        collect_garbage(&self.dir, generation);
        Ok(CommitOutcome::Published { generation })
    }
}

fn group_by_document(data: GenerationData, dim: usize) -> BTreeMap<DocId, DocEntry> {
    let mut docs: BTreeMap<DocId, DocEntry> = data
        .documents
        .into_iter()
        .map(|doc| {
            (
                doc.doc_id.clone(),
                DocEntry {
                    doc,
                    pages: Vec::new(),
                    passages: Vec::new(),
                    vectors: Vec::new(),
                },
            )
        })
        .collect();
    for page in data.pages {
        if let Some(e) = docs.get_mut(&page.key.doc_id) {
            e.pages.push(page);
        }
    }
    for (p, v) in data
        .passages
        .into_iter()
        .zip(data.vectors.chunks_exact(dim))
    {
        if let Some(e) = docs.get_mut(&p.page.doc_id) {
            e.passages.push(p);
            e.vectors.push(v.to_vec());
        }
    }
    docs
}

/// Removes generations older than the previous one (readers that opened the previous one keep
/// working) and unpublished leftovers. Failures are logged, never fatal.
fn collect_garbage(dir: &Path, current: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(generation) = manifest::parse_generation(&name.to_string_lossy()) else {
            continue;
        };
        let stale = generation + 1 < current || generation > current;
        if stale && let Err(e) = std::fs::remove_dir_all(entry.path()) {
            warn!(path = %entry.path().display(), error = %e, "cannot remove old generation");
        }
    }
}
