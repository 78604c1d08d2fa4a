//! Folio's on-disk index.
//!
//! An index directory holds numbered generations and one `MANIFEST.json` that names the current
//! one:
//!
//! ```text
//! <index>/MANIFEST.json         {"format_version", "generation", "embedder", counts}
//! <index>/gen-000007/documents.json
//!                    pages.jsonl      page texts
//!                    passages.jsonl   passages with page and char offsets
//!                    vectors.f32      passage embeddings, little-endian, row = passage id
//!                    bm25/            tantivy index over passage text
//!                    ann.usearch      HNSW over the passage embeddings
//! ```
//!
//! The canonical data are the JSON files and `vectors.f32`; BM25 and ANN are built from them.
//! A [`StoreWriter`] builds a complete new generation next to the current one and publishes it
//! by an atomic manifest swap (write, fsync, rename, fsync the directory), so a crash at any
//! moment leaves the last committed generation intact. A [`Store`] reads the generation that
//! was current when it opened.

mod ann;
mod bm25;
mod exact;
mod fsio;
mod manifest;
mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use folio_core::{DocId, Document, Passage, PassageId};
use thiserror::Error;
use tracing::info;

pub use exact::ExactIndex;
pub use manifest::{FORMAT_VERSION, Manifest};
pub use writer::{CommitOutcome, StoreWriter};

use ann::AnnIndex;
use bm25::Bm25Index;

/// A store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The directory holds no Folio index.
    #[error("{0} is not a Folio index (no MANIFEST.json); build one with `folio index`")]
    NotAnIndex(PathBuf),
    /// The index was written by another, incompatible version of Folio.
    #[error(
        "index {dir} has format version {found}, this Folio reads version {expected}: re-index"
    )]
    Version {
        /// The index directory.
        dir: PathBuf,
        /// Version in the manifest.
        found: u32,
        /// Version this build reads.
        expected: u32,
    },
    /// The index was built with another embedder than the one given.
    #[error("index {dir} was built with embedder {index} but {given} was given")]
    EmbedderMismatch {
        /// The index directory.
        dir: PathBuf,
        /// Embedder recorded in the index (id, dim).
        index: String,
        /// Embedder given now.
        given: String,
    },
    /// Another writer holds the index.
    #[error("index {0} is locked by another indexing run")]
    Locked(PathBuf),
    /// A file cannot be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A file of the index is damaged.
    #[error("index file {path} is damaged: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The BM25 index failed.
    #[error("BM25 index: {0}")]
    Bm25(String),
    /// The ANN index failed.
    #[error("ANN index: {0}")]
    Ann(String),
    /// Input does not fit the index (wrong vector width, ...).
    #[error("invalid input: {0}")]
    Invalid(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A read-only view of one generation of an index.
pub struct Store {
    dir: PathBuf,
    manifest: Manifest,
    documents: BTreeMap<DocId, Document>,
    passages: Vec<Passage>,
    bm25: Bm25Index,
    ann: AnnIndex,
}

impl Store {
    /// Opens the current generation of the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| StoreError::NotAnIndex(dir.into()))?;
        let gen_dir = manifest.generation_dir(dir);
        let data = writer::GenerationData::read(&gen_dir, manifest.embedder.dim, false)?;
        let bm25 = Bm25Index::open(&gen_dir.join(bm25::DIR))?;
        let ann = AnnIndex::open(&gen_dir.join(ann::FILE), manifest.embedder.dim)?;
        if ann.len() != data.passages.len() {
            return Err(StoreError::Corrupt {
                path: gen_dir.join(ann::FILE),
                message: format!("{} vectors for {} passages", ann.len(), data.passages.len()),
            });
        }
        info!(
            dir = %dir.display(),
            generation = manifest.generation,
            documents = data.documents.len(),
            passages = data.passages.len(),
            "opened index"
        );
        Ok(Store {
            dir: dir.to_path_buf(),
            manifest,
            documents: data
                .documents
                .into_iter()
                .map(|d| (d.doc_id.clone(), d))
                .collect(),
            passages: data.passages,
            bm25,
            ann,
        })
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The manifest of the open generation.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// All documents, by id.
    pub fn documents(&self) -> &BTreeMap<DocId, Document> {
        &self.documents
    }

    /// One document.
    pub fn document(&self, id: &DocId) -> Option<&Document> {
        self.documents.get(id)
    }

    /// One passage.
    pub fn passage(&self, id: PassageId) -> Option<&Passage> {
        usize::try_from(id).ok().and_then(|i| self.passages.get(i))
    }

    /// Number of passages.
    pub fn passage_count(&self) -> usize {
        self.passages.len()
    }

    /// BM25 over passage text: the top `k` passages with their scores, best first.
    pub fn bm25_search(&self, query: &str, k: usize) -> Result<Vec<(PassageId, f32)>, StoreError> {
        self.bm25.search(query, k)
    }

    /// Nearest passages to an L2-normalised vector by cosine similarity, best first.
    pub fn ann_search(
        &self,
        vector: &[f32],
        k: usize,
    ) -> Result<Vec<(PassageId, f32)>, StoreError> {
        if vector.len() != self.manifest.embedder.dim {
            return Err(StoreError::Invalid(format!(
                "query vector has {} dimensions, the index has {}",
                vector.len(),
                self.manifest.embedder.dim
            )));
        }
        self.ann.search(vector, k)
    }
}
