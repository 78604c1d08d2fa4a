//! The seam between search and storage. [`Collection`] is what the routes and the service
//! read; [`CollectionWriter`] is what the indexer writes. The embedded store ([`Store`],
//! [`StoreWriter`]) implements both here; folio-pg implements them over PostgreSQL, and
//! [`crate::Shards`] / [`crate::ShardWriter`] over several collections.

use std::collections::HashSet;
use std::path::Path;

use folio_core::{DocId, DocMeta, Document, Filter, Found, Hit, Page, PageKey, Passage, PassageId};

use crate::{
    CommitOutcome, DocSet, IndexModels, PageEmbeddings, PageImageKind, Store, StoreError,
    StoreWriter,
};

/// What a collection holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollectionStats {
    /// Documents.
    pub documents: usize,
    /// Pages.
    pub pages: usize,
    /// Passages.
    pub passages: usize,
    /// The generation being read, for a store that has generations (the embedded one).
    pub generation: Option<u64>,
    /// `shard: reason` for each part that did not answer (its documents are not counted).
    pub missing: Vec<String>,
}

/// A stored page image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    /// PNG bytes.
    pub png: Vec<u8>,
    /// Changes whenever the image does (an HTTP entity tag's content).
    pub tag: String,
}

/// The documents a metadata filter keeps, and the parts of the collection that did not
/// answer (their documents cannot be kept, or searched).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Selection {
    /// The kept documents.
    pub docs: DocSet,
    /// `shard: reason` for each part that did not answer.
    pub missing: Vec<String>,
}

/// A searchable collection of documents: one generation of the embedded index, a
/// PostgreSQL database (through its replicas), or a set of shards.
///
/// Search methods return passage hits (`lexical`, `dense`: `passage` set, several per page
/// possible) or page hits (`pages`, `late`), best first, restricted to the documents in `keep`
/// when it is given. A backend made of parts reports the parts that did not answer in
/// [`Found::missing`] instead of failing.
pub trait Collection: Send + Sync {
    /// Where the collection lives, for messages: an index directory, or a database URL
    /// without its password.
    fn location(&self) -> String;
    /// The directory of an embedded index, which publishes generations there; `None` for a
    /// database.
    fn index_dir(&self) -> Option<&Path> {
        None
    }
    /// The models the collection's routes were built with.
    fn models(&self) -> IndexModels;
    /// Counts.
    fn stats(&self) -> Result<CollectionStats, StoreError>;
    /// Every document, by id.
    fn documents(&self) -> Result<Vec<Document>, StoreError>;
    /// The documents `filter` keeps (a database answers it in SQL).
    fn select(&self, filter: &Filter) -> Result<Selection, StoreError> {
        Ok(Selection {
            docs: self
                .documents()?
                .into_iter()
                .filter(|d| filter.keeps(d))
                .map(|d| d.doc_id)
                .collect(),
            missing: Vec::new(),
        })
    }
    /// One document.
    fn document(&self, id: &DocId) -> Result<Option<Document>, StoreError>;
    /// One passage, by the id a search returned.
    fn passage(&self, id: PassageId) -> Result<Option<Passage>, StoreError>;
    /// The first passage of a page, if it has text.
    fn first_passage(&self, page: &PageKey) -> Result<Option<Passage>, StoreError>;
    /// The stored image of a page, if the collection keeps one.
    fn page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
    ) -> Result<Option<StoredImage>, StoreError>;
    /// Which of `keys` have stored images (a page's image and thumbnail are stored together).
    fn pages_with_images(&self, keys: &[PageKey]) -> Result<HashSet<PageKey>, StoreError>;
    /// How many candidates the approximate searches explore from now on (HNSW ef_search).
    fn set_ef_search(&self, ef: usize);
    /// Lexical search over passage text.
    fn lexical(&self, query: &str, k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError>;
    /// Passages nearest to an L2-normalised text-model vector, by cosine similarity.
    fn dense(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError>;
    /// Pages nearest to an L2-normalised page-model vector, by cosine similarity.
    fn pages(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError>;
    /// Pages by MaxSim against the query's token vectors (late interaction).
    fn late(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Found, StoreError>;
}

/// Writes documents into a collection. The embedded store makes what was put durable at
/// [`CollectionWriter::commit`]; a database makes each document durable when `put_document`
/// returns, and its commit does nothing.
pub trait CollectionWriter: Send {
    /// Where the collection lives, for messages.
    fn location(&self) -> String;
    /// The models this writer builds with.
    fn models(&self) -> &IndexModels;
    /// One document, as the writer sees it (what it put included).
    fn document(&mut self, id: &DocId) -> Result<Option<Document>, StoreError>;
    /// The document with this content hash, if indexed.
    fn find_by_hash(&mut self, content_hash: &str) -> Result<Option<Document>, StoreError>;
    /// The document indexed from this path, if any.
    fn find_by_path(&mut self, path: &str) -> Result<Option<Document>, StoreError>;
    /// Replaces a document's metadata.
    fn set_meta(&mut self, id: &DocId, meta: DocMeta) -> Result<(), StoreError>;
    /// Adds a document with one vector per passage and its page-image embeddings, replacing
    /// any document with the same id or path. Passage ids are assigned by the store. On
    /// error nothing of the document is stored (an older version stays).
    fn put_document(
        &mut self,
        doc: Document,
        pages: Vec<Page>,
        passages: Vec<Passage>,
        vectors: Vec<Vec<f32>>,
        page_embeddings: PageEmbeddings,
    ) -> Result<(), StoreError>;
    /// Stores one image of a page (PNG bytes); a backend without page images ignores it.
    fn put_page_image(
        &mut self,
        key: &PageKey,
        kind: PageImageKind,
        png: &[u8],
    ) -> Result<(), StoreError>;
    /// Removes a document; whether it was there.
    fn remove(&mut self, id: &DocId) -> Result<bool, StoreError>;
    /// Makes everything put so far durable and visible to new readers, and ends the writer.
    fn commit(self: Box<Self>) -> Result<CommitOutcome, StoreError>;
}

/// Passage hits of the embedded store, with each passage's page.
fn passage_hits(store: &Store, hits: Vec<(PassageId, f32)>) -> Found {
    Found::complete(
        hits.into_iter()
            .filter_map(|(id, score)| {
                store.passage(id).map(|p| Hit {
                    page: p.page.clone(),
                    score,
                    passage: Some(id),
                })
            })
            .collect(),
    )
}

fn page_hits(hits: Vec<(PageKey, f32)>) -> Found {
    Found::complete(
        hits.into_iter()
            .map(|(page, score)| Hit {
                page,
                score,
                passage: None,
            })
            .collect(),
    )
}

impl Collection for Store {
    fn location(&self) -> String {
        self.dir().display().to_string()
    }

    fn index_dir(&self) -> Option<&Path> {
        Some(self.dir())
    }

    fn models(&self) -> IndexModels {
        IndexModels::of(self.manifest())
    }

    fn stats(&self) -> Result<CollectionStats, StoreError> {
        Ok(CollectionStats {
            documents: Store::documents(self).len(),
            pages: self.manifest().pages,
            passages: self.passage_count(),
            generation: Some(self.manifest().generation),
            missing: Vec::new(),
        })
    }

    fn documents(&self) -> Result<Vec<Document>, StoreError> {
        Ok(Store::documents(self).values().cloned().collect())
    }

    fn select(&self, filter: &Filter) -> Result<Selection, StoreError> {
        Ok(Selection {
            docs: Store::documents(self)
                .values()
                .filter(|d| filter.keeps(d))
                .map(|d| d.doc_id.clone())
                .collect(),
            missing: Vec::new(),
        })
    }

    fn document(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        Ok(Store::document(self, id).cloned())
    }

    fn passage(&self, id: PassageId) -> Result<Option<Passage>, StoreError> {
        Ok(Store::passage(self, id).cloned())
    }

    fn first_passage(&self, page: &PageKey) -> Result<Option<Passage>, StoreError> {
        Ok(Store::first_passage(self, page).cloned())
    }

    fn page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
    ) -> Result<Option<StoredImage>, StoreError> {
        let Some(path) = Store::page_image(self, key, kind) else {
            return Ok(None);
        };
        let read = || -> std::io::Result<StoredImage> {
            let modified = std::fs::metadata(&path)?
                .modified()?
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let png = std::fs::read(&path)?;
            let tag = format!(
                "{}-{}-{kind:?}-{:x}-{modified:x}",
                key.doc_id,
                key.page,
                png.len()
            );
            Ok(StoredImage { png, tag })
        };
        match read() {
            Ok(image) => Ok(Some(image)),
            // Removed since the check by a commit that dropped the document.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    fn pages_with_images(&self, keys: &[PageKey]) -> Result<HashSet<PageKey>, StoreError> {
        Ok(keys
            .iter()
            .filter(|k| Store::page_image(self, k, PageImageKind::Page).is_some())
            .cloned()
            .collect())
    }

    fn set_ef_search(&self, ef: usize) {
        Store::set_ef_search(self, ef);
    }

    fn lexical(&self, query: &str, k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        Ok(passage_hits(self, self.bm25_search(query, k, keep)?))
    }

    fn dense(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        Ok(passage_hits(self, self.ann_search(vector, k, keep)?))
    }

    fn pages(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        Ok(page_hits(self.page_search(vector, k, keep)?))
    }

    fn late(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Found, StoreError> {
        Ok(page_hits(self.late_search(tokens, k, keep)?))
    }
}

impl CollectionWriter for StoreWriter {
    fn location(&self) -> String {
        self.dir().display().to_string()
    }

    fn models(&self) -> &IndexModels {
        StoreWriter::models(self)
    }

    fn document(&mut self, id: &DocId) -> Result<Option<Document>, StoreError> {
        Ok(StoreWriter::document(self, id).cloned())
    }

    fn find_by_hash(&mut self, content_hash: &str) -> Result<Option<Document>, StoreError> {
        Ok(StoreWriter::find_by_hash(self, content_hash).cloned())
    }

    fn find_by_path(&mut self, path: &str) -> Result<Option<Document>, StoreError> {
        Ok(StoreWriter::find_by_path(self, path).cloned())
    }

    fn set_meta(&mut self, id: &DocId, meta: DocMeta) -> Result<(), StoreError> {
        StoreWriter::set_meta(self, id, meta);
        Ok(())
    }

    fn put_document(
        &mut self,
        doc: Document,
        pages: Vec<Page>,
        passages: Vec<Passage>,
        vectors: Vec<Vec<f32>>,
        page_embeddings: PageEmbeddings,
    ) -> Result<(), StoreError> {
        let id = doc.doc_id.clone();
        // Checked before the document goes in, so that a refusal leaves the writer as it was.
        self.check_page_embeddings(doc.pages, &page_embeddings)?;
        StoreWriter::put_document(self, doc, pages, passages, vectors)?;
        self.set_page_embeddings(&id, page_embeddings)
    }

    fn put_page_image(
        &mut self,
        key: &PageKey,
        kind: PageImageKind,
        png: &[u8],
    ) -> Result<(), StoreError> {
        StoreWriter::put_page_image(self, key, kind, png)
    }

    fn remove(&mut self, id: &DocId) -> Result<bool, StoreError> {
        Ok(StoreWriter::remove(self, id))
    }

    fn commit(self: Box<Self>) -> Result<CommitOutcome, StoreError> {
        StoreWriter::commit(*self)
    }
}
