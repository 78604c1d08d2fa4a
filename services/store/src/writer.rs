//! Writing generations.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use folio_core::{DocId, DocMeta, Document, EmbedderInfo, Page, PageKey, Passage};
use tracing::{info, warn};

use crate::ann::{self, AnnOptions};
use crate::bm25::{self, Bm25Index, Bm25Options};
use crate::images::{self, PageImageKind};
use crate::late::{self, TokenMatrix};
use crate::manifest::{self, Manifest, RouteModel};
use crate::{LateRoute, StoreError, fsio, io_err, page};

const DOCUMENTS: &str = "documents.json";
const PAGES: &str = "pages.jsonl";
const PASSAGES: &str = "passages.jsonl";
pub(crate) const VECTORS: &str = "vectors.f32";
pub(crate) const LATE_KEYS: &str = "keys.jsonl";
const LOCK: &str = "LOCK";

/// The canonical content of one generation.
#[derive(Default)]
pub(crate) struct GenerationData {
    pub(crate) documents: Vec<Document>,
    pub(crate) pages: Vec<Page>,
    pub(crate) passages: Vec<Passage>,
    /// Row-major, `passages.len() * dim`.
    pub(crate) vectors: Vec<f32>,
    /// The page route's rows: pages and their vectors (row-major).
    pub(crate) page_keys: Vec<PageKey>,
    pub(crate) page_vectors: Vec<f32>,
    /// The late-interaction route's rows: pages and their token vectors.
    pub(crate) late_keys: Vec<PageKey>,
    pub(crate) late_tokens: Vec<TokenMatrix>,
}

impl GenerationData {
    /// Reads a generation's canonical files; pages and all vectors only when `full` (the
    /// writer needs them, readers do not).
    pub(crate) fn read(dir: &Path, manifest: &Manifest, full: bool) -> Result<Self, StoreError> {
        let docs_path = dir.join(DOCUMENTS);
        let documents: Vec<Document> = serde_json::from_reader(BufReader::new(
            File::open(&docs_path).map_err(io_err(&docs_path))?,
        ))
        .map_err(|e| StoreError::Corrupt {
            path: docs_path.clone(),
            message: e.to_string(),
        })?;
        let passages: Vec<Passage> = fsio::read_jsonl(&dir.join(PASSAGES))?;
        for (i, p) in passages.iter().enumerate() {
            if p.id != i as u64 {
                return Err(StoreError::Corrupt {
                    path: dir.join(PASSAGES),
                    message: format!("passage on line {} has id {}", i + 1, p.id),
                });
            }
        }
        let mut data = GenerationData {
            documents,
            passages,
            ..GenerationData::default()
        };
        if !full {
            return Ok(data);
        }
        data.pages = fsio::read_jsonl(&dir.join(PAGES))?;
        data.vectors = fsio::read_f32(
            &dir.join(VECTORS),
            data.passages.len() * manifest.embedder.dim,
        )?;
        if let Some(m) = &manifest.page {
            (data.page_keys, data.page_vectors) =
                page::read_rows(&dir.join(page::DIR), m.embedder.dim)?;
        }
        if let Some(route) = LateRoute::open(dir, manifest)? {
            data.late_tokens = (0..route.keys.len())
                .map(|row| route.index.page(row).unwrap_or_default())
                .collect();
            data.late_keys = route.keys;
        }
        Ok(data)
    }

    /// Writes the canonical files and builds BM25 and the ANN indexes in the new directory
    /// `dir`.
    fn write(
        &self,
        dir: &Path,
        models: &IndexModels,
        options: &AnnOptions,
        bm25: &Bm25Options,
    ) -> Result<(), StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let docs = serde_json::to_vec_pretty(&self.documents)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        fsio::write_synced(&dir.join(DOCUMENTS), &docs)?;
        fsio::write_jsonl(&dir.join(PAGES), &self.pages)?;
        fsio::write_jsonl(&dir.join(PASSAGES), &self.passages)?;
        fsio::write_f32(&dir.join(VECTORS), &self.vectors)?;
        Bm25Index::build(
            &dir.join(bm25::DIR),
            self.passages.iter().map(|p| (p.id, p.text.as_str())),
            bm25,
        )?;
        ann::build(
            &dir.join(ann::FILE),
            options,
            models.text.embedder.dim,
            &self.vectors,
        )?;
        if let Some(m) = &models.page {
            page::build(
                &dir.join(page::DIR),
                options,
                m.embedder.dim,
                &self.page_keys,
                &self.page_vectors,
            )?;
        }
        if let Some(m) = &models.late {
            let late_dir = dir.join(late::DIR);
            late::build(&late_dir, m.embedder.dim, &self.late_tokens)?;
            fsio::write_jsonl(&late_dir.join(LATE_KEYS), &self.late_keys)?;
        }
        fsio::sync_tree(dir)
    }
}

/// The models an index's routes are built with: the text embedder always, the page-image
/// embedders when the index has those routes.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexModels {
    /// Passage embeddings (the dense route).
    pub text: RouteModel,
    /// One vector per page image (the page route).
    pub page: Option<RouteModel>,
    /// Token vectors per page image (the late-interaction route).
    pub late: Option<RouteModel>,
}

impl IndexModels {
    /// A text embedder and no page routes.
    pub fn text(embedder: &EmbedderInfo, source: Option<String>) -> Self {
        IndexModels {
            text: RouteModel {
                embedder: embedder.clone(),
                source,
            },
            page: None,
            late: None,
        }
    }

    /// The models an index was built with.
    pub fn of(manifest: &Manifest) -> Self {
        IndexModels {
            text: RouteModel {
                embedder: manifest.embedder.clone(),
                source: manifest.embedder_source.clone(),
            },
            page: manifest.page.clone(),
            late: manifest.late.clone(),
        }
    }

    /// Checks passage vectors: one per passage, each of the text model's width.
    pub fn check_passage_vectors(
        &self,
        passages: usize,
        vectors: &[Vec<f32>],
    ) -> Result<(), StoreError> {
        if vectors.len() != passages {
            return Err(StoreError::Invalid(format!(
                "{} vectors for {passages} passages",
                vectors.len()
            )));
        }
        let dim = self.text.embedder.dim;
        if let Some(v) = vectors.iter().find(|v| v.len() != dim) {
            return Err(StoreError::Invalid(format!(
                "vector of width {} in a collection of width {dim}",
                v.len()
            )));
        }
        Ok(())
    }

    /// Checks page-image embeddings for a document of `pages` pages: the collection must
    /// have the route, widths must match, page numbers must lie in `1..=pages`.
    pub fn check_page_embeddings(
        &self,
        pages: u32,
        embeddings: &PageEmbeddings,
    ) -> Result<(), StoreError> {
        let check = |route: &str, model: &Option<RouteModel>, page: u32, width: usize| {
            let m = model.as_ref().ok_or_else(|| {
                StoreError::Invalid(format!("the collection has no {route} route"))
            })?;
            if page == 0 || page > pages {
                return Err(StoreError::Invalid(format!(
                    "page {page} of a document of {pages} pages"
                )));
            }
            if width != m.embedder.dim {
                return Err(StoreError::Invalid(format!(
                    "{route} vector of width {width}, the route has width {}",
                    m.embedder.dim
                )));
            }
            Ok(())
        };
        for (page, v) in &embeddings.vectors {
            check("page", &self.page, *page, v.len())?;
        }
        for (page, t) in &embeddings.tokens {
            check("late", &self.late, *page, t.dim())?;
        }
        Ok(())
    }

    /// Checks that these models can write into an index built with `built` (a page route
    /// can be added to an empty index only).
    fn check_against(&self, dir: &Path, built: &Manifest) -> Result<(), StoreError> {
        let mismatch = |route: &str, index: String, given: String| StoreError::EmbedderMismatch {
            dir: dir.into(),
            route: route.into(),
            index,
            given,
        };
        let built_text = IndexModels::of(built).text;
        if !built_text.same_model(&self.text.embedder) {
            return Err(mismatch(
                "dense",
                built_text.describe(),
                self.text.describe(),
            ));
        }
        for (route, built_model, given) in [
            ("page", &built.page, &self.page),
            ("late", &built.late, &self.late),
        ] {
            match (built_model, given) {
                (Some(b), Some(g)) if !b.same_model(&g.embedder) => {
                    return Err(mismatch(route, b.describe(), g.describe()));
                }
                (Some(b), None) => {
                    return Err(mismatch(route, b.describe(), "no model".into()));
                }
                (None, Some(g)) if built.documents > 0 => {
                    return Err(StoreError::Invalid(format!(
                        "index {} has no {route} route, and its {} documents have no page \
                         embeddings from {}: build a new index with that model",
                        dir.display(),
                        built.documents,
                        g.describe()
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A document's page-image embeddings, by 1-based page number. Pages without an image (not
/// rendered) are simply absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PageEmbeddings {
    /// Page-route vectors, of the page model's width.
    pub vectors: Vec<(u32, Vec<f32>)>,
    /// Late-interaction token vectors, of the late model's width.
    pub tokens: Vec<(u32, TokenMatrix)>,
}

/// One document's content as the writer holds it.
struct DocEntry {
    doc: Document,
    pages: Vec<Page>,
    /// Passage ids are reassigned at commit.
    passages: Vec<Passage>,
    /// One vector per passage.
    vectors: Vec<Vec<f32>>,
    /// Page-route vectors by page number.
    page_vectors: BTreeMap<u32, Vec<f32>>,
    /// Late-interaction token vectors by page number.
    page_tokens: BTreeMap<u32, TokenMatrix>,
}

/// The writer's documents by id, with lookups by path and content hash that stay O(1) as
/// the collection grows.
#[derive(Default)]
struct DocTable {
    entries: BTreeMap<DocId, DocEntry>,
    by_path: HashMap<String, DocId>,
    by_hash: HashMap<String, BTreeSet<DocId>>,
}

impl DocTable {
    fn get(&self, id: &DocId) -> Option<&DocEntry> {
        self.entries.get(id)
    }

    fn get_mut(&mut self, id: &DocId) -> Option<&mut DocEntry> {
        self.entries.get_mut(id)
    }

    fn by_path(&self, path: &str) -> Option<&DocEntry> {
        self.by_path.get(path).and_then(|id| self.entries.get(id))
    }

    /// The document with this content hash and the smallest id.
    fn by_hash(&self, hash: &str) -> Option<&DocEntry> {
        let id = self.by_hash.get(hash)?.first()?;
        self.entries.get(id)
    }

    /// Adds `entry`, replacing the document with the same id.
    fn insert(&mut self, entry: DocEntry) {
        let id = entry.doc.doc_id.clone();
        self.remove(&id);
        self.by_path.insert(entry.doc.path.clone(), id.clone());
        self.by_hash
            .entry(entry.doc.content_hash.clone())
            .or_default()
            .insert(id.clone());
        self.entries.insert(id, entry);
    }

    fn remove(&mut self, id: &DocId) -> Option<DocEntry> {
        let entry = self.entries.remove(id)?;
        if self.by_path.get(&entry.doc.path) == Some(id) {
            self.by_path.remove(&entry.doc.path);
        }
        if let Some(ids) = self.by_hash.get_mut(&entry.doc.content_hash) {
            ids.remove(id);
            if ids.is_empty() {
                self.by_hash.remove(&entry.doc.content_hash);
            }
        }
        Some(entry)
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn ids(&self) -> BTreeSet<DocId> {
        self.entries.keys().cloned().collect()
    }

    fn into_entries(self) -> impl Iterator<Item = DocEntry> {
        self.entries.into_values()
    }
}

impl DocEntry {
    /// A document with no content yet.
    fn new(doc: Document) -> Self {
        DocEntry {
            doc,
            pages: Vec::new(),
            passages: Vec::new(),
            vectors: Vec::new(),
            page_vectors: BTreeMap::new(),
            page_tokens: BTreeMap::new(),
        }
    }
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
    models: IndexModels,
    ann: AnnOptions,
    bm25: Bm25Options,
    docs: DocTable,
    /// Documents of the generation this writer started from (their page images stay).
    base_docs: BTreeSet<DocId>,
    dirty: bool,
}

impl StoreWriter {
    /// Opens (or creates) a text-only index in `dir` for writing with the given passage
    /// embedder. See [`StoreWriter::open_with`].
    pub fn open(
        dir: &Path,
        embedder: &EmbedderInfo,
        embedder_source: Option<String>,
    ) -> Result<Self, StoreError> {
        Self::open_with(dir, IndexModels::text(embedder, embedder_source))
    }

    /// Opens the existing index in `dir` with the models it was built with (to remove
    /// documents without loading any model).
    pub fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        let manifest = Manifest::read(dir)?.ok_or_else(|| StoreError::NotAnIndex(dir.into()))?;
        Self::open_with(dir, IndexModels::of(&manifest))
    }

    /// Opens (or creates) the index in `dir` for writing with `models`. Fails if another
    /// writer holds the index, or if it was built with other models (a route's model
    /// differs, or is missing).
    pub fn open_with(dir: &Path, models: IndexModels) -> Result<Self, StoreError> {
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
        let base_missing = base.is_none();
        let mut docs = DocTable::default();
        if let Some(m) = &base {
            models.check_against(dir, m)?;
            let data = GenerationData::read(&m.generation_dir(dir), m, true)?;
            for entry in group_by_document(data, m).into_values() {
                docs.insert(entry);
            }
        }
        Ok(StoreWriter {
            dir: dir.to_path_buf(),
            _lock: lock,
            ann: base.as_ref().map(|m| m.ann).unwrap_or_default(),
            bm25: base.as_ref().map(|m| m.bm25).unwrap_or_default(),
            base,
            models,
            base_docs: docs.ids(),
            docs,
            // A new index is published on its first commit, even empty.
            dirty: base_missing,
        })
    }

    /// The HNSW settings the next generation is built with (the index's own, by default).
    pub fn ann_options(&self) -> &AnnOptions {
        &self.ann
    }

    /// Builds the next generation's HNSW indexes with `options`; a change alone is enough
    /// for the commit to publish a new generation.
    pub fn set_ann_options(&mut self, options: AnnOptions) -> Result<(), StoreError> {
        options.validate()?;
        if options != self.ann {
            self.ann = options;
            self.dirty = true;
        }
        Ok(())
    }

    /// The BM25 settings the next generation is built with (the index's own, by default).
    pub fn bm25_options(&self) -> &Bm25Options {
        &self.bm25
    }

    /// Builds the next generation's BM25 index with `options`; a change alone is enough for
    /// the commit to publish a new generation.
    pub fn set_bm25_options(&mut self, options: Bm25Options) -> Result<(), StoreError> {
        options.validate()?;
        if options != self.bm25 {
            self.bm25 = options;
            self.dirty = true;
        }
        Ok(())
    }

    /// The index directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The models this writer builds with.
    pub fn models(&self) -> &IndexModels {
        &self.models
    }

    /// The document with this content hash, if indexed.
    pub fn find_by_hash(&self, content_hash: &str) -> Option<&Document> {
        self.docs.by_hash(content_hash).map(|e| &e.doc)
    }

    /// The document with this id, if indexed.
    pub fn document(&self, id: &DocId) -> Option<&Document> {
        self.docs.get(id).map(|e| &e.doc)
    }

    /// The document indexed from this path, if any.
    pub fn find_by_path(&self, path: &str) -> Option<&Document> {
        self.docs.by_path(path).map(|e| &e.doc)
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
        self.models
            .check_passage_vectors(passages.len(), &vectors)?;
        if let Some(old) = self.find_by_path(&doc.path).map(|d| d.doc_id.clone()) {
            self.remove(&old);
        }
        self.docs.insert(DocEntry {
            pages,
            passages,
            vectors,
            ..DocEntry::new(doc)
        });
        self.dirty = true;
        Ok(())
    }

    /// Checks page-image embeddings for a document of `pages` pages: the index must have
    /// the route, widths must match, page numbers must lie in `1..=pages`.
    pub fn check_page_embeddings(
        &self,
        pages: u32,
        embeddings: &PageEmbeddings,
    ) -> Result<(), StoreError> {
        self.models.check_page_embeddings(pages, embeddings)
    }

    /// Sets the page-image embeddings of a document already put, replacing those it had.
    /// Fails, changing nothing, when [`StoreWriter::check_page_embeddings`] does.
    pub fn set_page_embeddings(
        &mut self,
        id: &DocId,
        embeddings: PageEmbeddings,
    ) -> Result<(), StoreError> {
        let pages = self
            .document(id)
            .ok_or_else(|| StoreError::Invalid(format!("no document {id} to add pages to")))?
            .pages;
        self.check_page_embeddings(pages, &embeddings)?;
        let Some(entry) = self.docs.get_mut(id) else {
            return Ok(());
        };
        entry.page_vectors = embeddings.vectors.into_iter().collect();
        entry.page_tokens = embeddings
            .tokens
            .into_iter()
            .filter(|(_, t)| !t.is_empty())
            .collect();
        self.dirty = true;
        Ok(())
    }

    /// Stores one image of a page (PNG bytes) next to the index, at once: images are shared
    /// by generations (see [`crate::page_image_path`]). Images of documents that do not make
    /// it into a generation are removed by a later commit.
    pub fn put_page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
        png: &[u8],
    ) -> Result<(), StoreError> {
        images::write(&self.dir, key, kind, png)
    }

    /// Replaces a document's collection, tags and date; returns whether it was there.
    pub fn set_meta(&mut self, id: &DocId, meta: DocMeta) -> bool {
        match self.docs.get_mut(id) {
            Some(e) if e.doc.meta != meta => {
                e.doc.meta = meta;
                self.dirty = true;
                true
            }
            Some(_) => true,
            None => false,
        }
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

    /// Writes the next generation and publishes it, if anything changed (a new index is
    /// always published, so that it can be opened while still empty).
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
        let mut data = GenerationData {
            documents: Vec::with_capacity(self.docs.len()),
            ..GenerationData::default()
        };
        for entry in self.docs.into_entries() {
            let key = |page| PageKey {
                doc_id: entry.doc.doc_id.clone(),
                page,
            };
            for (page, v) in entry.page_vectors {
                data.page_keys.push(key(page));
                data.page_vectors.extend(v);
            }
            for (page, t) in entry.page_tokens {
                data.late_keys.push(key(page));
                data.late_tokens.push(t);
            }
            data.documents.push(entry.doc);
            data.pages.extend(entry.pages);
            for (mut p, v) in entry.passages.into_iter().zip(entry.vectors) {
                p.id = data.passages.len() as u64;
                data.passages.push(p);
                data.vectors.extend(v);
            }
        }
        data.write(&gen_dir, &self.models, &self.ann, &self.bm25)?;
        let keep: BTreeSet<&DocId> = data
            .documents
            .iter()
            .map(|d| &d.doc_id)
            .chain(&self.base_docs)
            .collect();
        let manifest = Manifest {
            format_version: manifest::FORMAT_VERSION,
            generation,
            embedder: self.models.text.embedder,
            embedder_source: self.models.text.source,
            documents: data.documents.len(),
            pages: data.pages.len(),
            passages: data.passages.len(),
            page: self.models.page,
            late: self.models.late,
            page_vectors: data.page_keys.len(),
            late_pages: data.late_keys.len(),
            ann: self.ann,
            bm25: self.bm25,
        };
        manifest.publish(&self.dir)?;
        info!(
            generation,
            documents = manifest.documents,
            passages = manifest.passages,
            page_vectors = manifest.page_vectors,
            late_pages = manifest.late_pages,
            "published generation"
        );
        collect_garbage(&self.dir, generation);
        images::collect_garbage(&self.dir, &keep);
        Ok(CommitOutcome::Published { generation })
    }
}

fn group_by_document(data: GenerationData, manifest: &Manifest) -> BTreeMap<DocId, DocEntry> {
    let mut docs: BTreeMap<DocId, DocEntry> = data
        .documents
        .into_iter()
        .map(|doc| (doc.doc_id.clone(), DocEntry::new(doc)))
        .collect();
    for page in data.pages {
        if let Some(e) = docs.get_mut(&page.key.doc_id) {
            e.pages.push(page);
        }
    }
    for (p, v) in data
        .passages
        .into_iter()
        .zip(data.vectors.chunks_exact(manifest.embedder.dim.max(1)))
    {
        if let Some(e) = docs.get_mut(&p.page.doc_id) {
            e.passages.push(p);
            e.vectors.push(v.to_vec());
        }
    }
    if let Some(m) = &manifest.page {
        let rows = data.page_vectors.chunks_exact(m.embedder.dim.max(1));
        for (key, v) in data.page_keys.into_iter().zip(rows) {
            if let Some(e) = docs.get_mut(&key.doc_id) {
                e.page_vectors.insert(key.page, v.to_vec());
            }
        }
    }
    for (key, t) in data.late_keys.into_iter().zip(data.late_tokens) {
        if let Some(e) = docs.get_mut(&key.doc_id) {
            e.page_tokens.insert(key.page, t);
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
