//! Folio's on-disk index.
//!
//! An index directory holds numbered generations and one `MANIFEST.json` that names the current
//! one:
//!
//! ```text
//! <index>/MANIFEST.json         {"format_version", "generation", models, counts}
//! <index>/gen-000007/documents.json
//!                    pages.jsonl      page texts
//!                    passages.jsonl   passages with page and char offsets
//!                    vectors.f32      passage embeddings, little-endian, row = passage id
//!                    bm25/            tantivy index over passage text (analyser: manifest)
//!                    ann.usearch      HNSW over the passage embeddings
//!                    page/            page-image vectors and their HNSW (page route)
//!                    late/            page-image token vectors, f16 (late interaction)
//! <index>/images/<doc_id>/<page>.png, <page>.thumb.png   page images, shared by generations
//! ```
//!
//! The canonical data are the JSON files and the vector files; BM25 and the HNSW indexes are
//! built from them. `page/` and `late/` exist when the index was built with page embedders
//! ([`IndexModels`]).
//! A [`StoreWriter`] builds a complete new generation next to the current one and publishes it
//! by an atomic manifest swap (write, fsync, rename, fsync the directory), so a crash at any
//! moment leaves the last committed generation intact. A [`Store`] reads the generation that
//! was current when it opened.
//!
//! The crate also holds the seam every backend implements ([`Collection`],
//! [`CollectionWriter`]) and [`Shards`] / [`ShardWriter`], which split one collection
//! across several of any backend by document-id hash.

mod ann;
mod bm25;
mod collection;
mod exact;
mod fsio;
mod images;
mod late;
mod manifest;
mod page;
mod shards;
mod writer;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use folio_core::{DocId, Document, PageKey, Passage, PassageId};
use thiserror::Error;
use tracing::info;

pub use ann::{AnnIndex, AnnMetric, AnnOptions, AnnStorage};
pub use bm25::{Bm25Analyzer, Bm25Index, Bm25Options};
pub use collection::{Collection, CollectionStats, CollectionWriter, Selection, StoredImage};
pub use exact::ExactIndex;
pub use images::{PageImageKind, page_image_path};
pub use late::{LateIndex, TokenMatrix, maxsim};
pub use manifest::{FORMAT_VERSION, Manifest, RouteModel, generation_dir};
pub use shards::{MAX_SHARDS, SHARD_BITS, ShardWriter, Shards, shard_of};
pub use writer::{CommitOutcome, IndexModels, PageEmbeddings, StoreWriter};

use page::PageIndex;

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
    /// A route of the index was built with another model than the one given.
    #[error("the {route} route of index {dir} was built with {index} but {given} was given")]
    EmbedderMismatch {
        /// The index directory.
        dir: PathBuf,
        /// The route: `dense`, `page` or `late`.
        route: String,
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
    /// A database backend failed (the message names the database and the operation).
    #[error("{0}")]
    Backend(String),
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A set of documents a search is limited to.
pub type DocSet = std::collections::HashSet<DocId>;

/// A read-only view of one generation of an index.
pub struct Store {
    dir: PathBuf,
    manifest: Manifest,
    documents: BTreeMap<DocId, Document>,
    passages: Vec<Passage>,
    /// Each page's first passage.
    first_passage: HashMap<PageKey, PassageId>,
    bm25: Bm25Index,
    ann: AnnIndex,
    page: Option<PageIndex>,
    late: Option<LateRoute>,
}

/// The late-interaction route: the page of each row, and the token index.
pub(crate) struct LateRoute {
    pub(crate) keys: Vec<PageKey>,
    pub(crate) index: LateIndex,
}

impl LateRoute {
    /// Opens the route of the generation in `gen_dir`, checking it against the manifest;
    /// `None` when the index has no late route.
    pub(crate) fn open(gen_dir: &Path, manifest: &Manifest) -> Result<Option<Self>, StoreError> {
        let Some(m) = &manifest.late else {
            return Ok(None);
        };
        let dir = gen_dir.join(late::DIR);
        let keys_path = dir.join(writer::LATE_KEYS);
        let keys: Vec<PageKey> = fsio::read_jsonl(&keys_path)?;
        if keys.len() != manifest.late_pages {
            return Err(StoreError::Corrupt {
                path: keys_path,
                message: format!(
                    "{} pages, the manifest says {}",
                    keys.len(),
                    manifest.late_pages
                ),
            });
        }
        let index = LateIndex::open(&dir, m.embedder.dim, keys.len())?;
        Ok(Some(LateRoute { keys, index }))
    }
}

impl Store {
    /// Opens the current generation of the index in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| StoreError::NotAnIndex(dir.into()))?;
        let gen_dir = manifest.generation_dir(dir);
        let data = writer::GenerationData::read(&gen_dir, &manifest, false)?;
        let bm25 = Bm25Index::open(&gen_dir.join(bm25::DIR), &manifest.bm25)?;
        let ann = AnnIndex::open(
            &gen_dir.join(ann::FILE),
            &manifest.ann,
            manifest.embedder.dim,
        )?;
        if ann.len() != data.passages.len() {
            return Err(StoreError::Corrupt {
                path: gen_dir.join(ann::FILE),
                message: format!("{} vectors for {} passages", ann.len(), data.passages.len()),
            });
        }
        // A quantized graph re-scores its candidates with the exact vectors.
        let ann = if manifest.ann.rescores() {
            let rows = fsio::read_f32(
                &gen_dir.join(writer::VECTORS),
                data.passages.len() * manifest.embedder.dim,
            )?;
            ann.with_exact_rows(&manifest.ann, rows)?
        } else {
            ann
        };
        let page = match &manifest.page {
            Some(m) => Some(PageIndex::open(
                &gen_dir.join(page::DIR),
                &manifest.ann,
                m.embedder.dim,
                manifest.page_vectors,
            )?),
            None => None,
        };
        let late = LateRoute::open(&gen_dir, &manifest)?;
        let mut first_passage = HashMap::new();
        for p in &data.passages {
            first_passage.entry(p.page.clone()).or_insert(p.id);
        }
        info!(
            dir = %dir.display(),
            generation = manifest.generation,
            documents = data.documents.len(),
            passages = data.passages.len(),
            page_vectors = manifest.page_vectors,
            late_pages = manifest.late_pages,
            "opened index"
        );
        Ok(Store {
            first_passage,
            page,
            late,
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

    /// The stored image of a page, if the index has one (see [`page_image_path`]).
    pub fn page_image(&self, key: &PageKey, kind: PageImageKind) -> Option<PathBuf> {
        page_image_path(&self.dir, key, kind).filter(|p| p.is_file())
    }

    /// The first passage of a page, if it has text.
    pub fn first_passage(&self, page: &PageKey) -> Option<&Passage> {
        self.first_passage
            .get(page)
            .and_then(|&id| self.passage(id))
    }

    /// Number of passages.
    pub fn passage_count(&self) -> usize {
        self.passages.len()
    }

    /// BM25 over passage text: the top `k` passages with their scores, best first; with
    /// `keep`, only passages of those documents.
    pub fn bm25_search(
        &self,
        query: &str,
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Vec<(PassageId, f32)>, StoreError> {
        let Some(keep) = keep else {
            return self.bm25.search(query, k);
        };
        // BM25 cannot filter inside tantivy's collector here: fetch deeper until `k` kept
        // passages are found or the matches run out.
        let mut depth = k.saturating_mul(4).max(64);
        loop {
            let hits = self.bm25.search(query, depth)?;
            let exhausted = hits.len() < depth || depth >= self.passages.len();
            let kept: Vec<(PassageId, f32)> = hits
                .into_iter()
                .filter(|(id, _)| self.passage_in(*id, keep))
                .take(k)
                .collect();
            if kept.len() == k || exhausted {
                return Ok(kept);
            }
            depth = depth.saturating_mul(4);
        }
    }

    /// Changes ef_search of the passage and page HNSW indexes for the following searches
    /// (the manifest's value applies until then).
    pub fn set_ef_search(&self, ef: usize) {
        self.ann.set_ef_search(ef);
        if let Some(p) = &self.page {
            p.ann().set_ef_search(ef);
        }
    }

    fn passage_in(&self, id: PassageId, keep: &DocSet) -> bool {
        self.passage(id)
            .is_some_and(|p| keep.contains(&p.page.doc_id))
    }

    /// Nearest passages to an L2-normalised vector by cosine similarity, best first; with
    /// `keep`, only passages of those documents.
    pub fn ann_search(
        &self,
        vector: &[f32],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Vec<(PassageId, f32)>, StoreError> {
        if vector.len() != self.manifest.embedder.dim {
            return Err(StoreError::Invalid(format!(
                "query vector has {} dimensions, the index has {}",
                vector.len(),
                self.manifest.embedder.dim
            )));
        }
        match keep {
            None => self.ann.search(vector, k),
            Some(keep) => self
                .ann
                .filtered_search(vector, k, |id| self.passage_in(id, keep)),
        }
    }

    /// Nearest pages to an L2-normalised query vector of the page model, by cosine
    /// similarity, best first; with `keep`, only pages of those documents.
    pub fn page_search(
        &self,
        vector: &[f32],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Vec<(PageKey, f32)>, StoreError> {
        let (Some(index), Some(m)) = (&self.page, &self.manifest.page) else {
            return Err(StoreError::Invalid(format!(
                "index {} has no page route; build it with a page embedder",
                self.dir.display()
            )));
        };
        if vector.len() != m.embedder.dim {
            return Err(StoreError::Invalid(format!(
                "query vector has {} dimensions, the page route has {}",
                vector.len(),
                m.embedder.dim
            )));
        }
        index.search(vector, k, keep)
    }

    /// The top `k` pages by MaxSim against the query's token vectors (late interaction),
    /// best first; with `keep`, only pages of those documents.
    pub fn late_search(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Vec<(PageKey, f32)>, StoreError> {
        let Some(late) = &self.late else {
            return Err(StoreError::Invalid(format!(
                "index {} has no late-interaction route; build it with a multi-vector page \
                 embedder",
                self.dir.display()
            )));
        };
        let dim = late.index.dim();
        if let Some(t) = tokens.iter().find(|t| t.len() != dim) {
            return Err(StoreError::Invalid(format!(
                "query token vector has {} dimensions, the late route has {dim}",
                t.len()
            )));
        }
        let flat: Vec<f32> = tokens.iter().flatten().copied().collect();
        let hits = match keep {
            None => late.index.search(&flat, k)?,
            Some(keep) => late.index.search_filtered(&flat, k, |row| {
                late.keys
                    .get(row)
                    .is_some_and(|key| keep.contains(&key.doc_id))
            })?,
        };
        Ok(page::keyed(&late.keys, hits))
    }
}
