//! The PostgreSQL backend behind Folio's store seam: [`PgCluster`] is a
//! [`Collection`] (reads on the replicas, failing over to the primary) and [`PgWriter`] a
//! [`CollectionWriter`] (each document durable in the primary when it is put).

use std::collections::HashSet;

use folio_core::{DocId, DocMeta, Document, Filter, Found, Page, PageKey, Passage, PassageId};
use folio_store::{
    Collection, CollectionStats, CollectionWriter, CommitOutcome, DocSet, IndexModels,
    PageEmbeddings, PageImageKind, Selection, StoreError, StoredImage,
};

use crate::{PageImageRow, PgCluster, PgError, PgStore};

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Invalid(m) => StoreError::Invalid(m),
            e => StoreError::Backend(e.to_string()),
        }
    }
}

fn keep_list(keep: Option<&DocSet>) -> Option<Vec<String>> {
    keep.map(|k| k.iter().map(|d| d.0.clone()).collect())
}

fn check_width(route: &str, model_dim: usize, given: usize) -> Result<(), StoreError> {
    if model_dim != given {
        return Err(StoreError::Invalid(format!(
            "query vector has {given} dimensions, the {route} route has {model_dim}"
        )));
    }
    Ok(())
}

impl PgCluster {
    fn model_dim(&self, route: &str) -> Result<usize, StoreError> {
        let models = self.models();
        let model = match route {
            "page" => models.page.as_ref(),
            _ => models.late.as_ref(),
        };
        model.map(|m| m.embedder.dim).ok_or_else(|| {
            StoreError::Invalid(format!(
                "collection {} has no {route} route; build it with a page embedder",
                self.primary().url()
            ))
        })
    }
}

impl Collection for PgCluster {
    fn location(&self) -> String {
        self.primary().url().to_string()
    }

    fn models(&self) -> IndexModels {
        PgCluster::models(self).clone()
    }

    fn stats(&self) -> Result<CollectionStats, StoreError> {
        let (documents, pages, passages) = self.read(PgStore::counts)?;
        Ok(CollectionStats {
            documents,
            pages,
            passages,
            generation: None,
            missing: Vec::new(),
        })
    }

    fn documents(&self) -> Result<Vec<Document>, StoreError> {
        Ok(self.read(PgStore::documents)?)
    }

    fn select(&self, filter: &Filter) -> Result<Selection, StoreError> {
        Ok(Selection {
            docs: self.read(|s| s.select(filter))?.into_iter().collect(),
            missing: Vec::new(),
        })
    }

    fn document(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        Ok(self.read(|s| s.document(id))?)
    }

    fn passage(&self, id: PassageId) -> Result<Option<Passage>, StoreError> {
        Ok(self.read(|s| s.passage(id))?)
    }

    fn first_passage(&self, page: &PageKey) -> Result<Option<Passage>, StoreError> {
        Ok(self.read(|s| s.first_passage(page))?)
    }

    fn page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
    ) -> Result<Option<StoredImage>, StoreError> {
        Ok(self.read(|s| s.page_image(key, kind))?)
    }

    fn pages_with_images(&self, keys: &[PageKey]) -> Result<HashSet<PageKey>, StoreError> {
        Ok(self.read(|s| s.pages_with_images(keys))?)
    }

    fn set_ef_search(&self, ef: usize) {
        PgCluster::set_ef_search(self, ef);
    }

    fn lexical(&self, query: &str, k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        let keep = keep_list(keep);
        let hits = self.read(|s| s.lexical(query, k, keep.as_deref()))?;
        Ok(Found::complete(hits))
    }

    fn dense(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        check_width("dense", self.models().text.embedder.dim, vector.len())?;
        let keep = keep_list(keep);
        let hits = self.read(|s| s.dense(vector, k, keep.as_deref()))?;
        Ok(Found::complete(hits))
    }

    fn pages(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        check_width("page", self.model_dim("page")?, vector.len())?;
        let keep = keep_list(keep);
        let hits = self.read(|s| s.pages(vector, k, keep.as_deref()))?;
        Ok(Found::complete(hits))
    }

    fn late(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Found, StoreError> {
        let dim = self.model_dim("late")?;
        if tokens.is_empty() {
            return Err(StoreError::Invalid("a query with no token vectors".into()));
        }
        for t in tokens {
            check_width("late", dim, t.len())?;
            if t.iter().any(|x| !x.is_finite()) {
                return Err(StoreError::Invalid("non-finite query value".into()));
            }
        }
        let keep = keep_list(keep);
        let hits = self.read(|s| s.late(tokens, k, keep.as_deref(), dim))?;
        Ok(Found::complete(hits))
    }
}

/// Writes documents into a PostgreSQL collection (its primary). Each document is durable
/// when [`CollectionWriter::put_document`] returns; several writers may run at once. Page
/// images put before their document are held until it is put, and written with it.
pub struct PgWriter {
    store: PgStore,
    models: IndexModels,
    /// Page images waiting for their document.
    images: Vec<(DocId, PageImageRow)>,
    /// Loading an empty collection: its HNSW indexes are built at commit.
    bulk: bool,
}

impl std::fmt::Debug for PgWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgWriter")
            .field("url", &self.store.url())
            .finish()
    }
}

impl PgWriter {
    /// Connects to the primary at `url`, applies the migrations, and records `models` as
    /// the collection's (or checks them against those it was built with).
    ///
    /// An empty collection is loaded first and indexed at [`CollectionWriter::commit`]: its
    /// HNSW indexes are dropped until then (searches meanwhile scan exactly). A collection
    /// with documents gets any index it lacks (after a load that crashed) before writing.
    pub fn open(url: &str, models: IndexModels) -> Result<Self, PgError> {
        let store = PgStore::connect(url)?;
        store.set_models(&models)?;
        let bulk = store.counts()?.0 == 0;
        if bulk {
            store.drop_vector_indexes()?;
        } else {
            store.build_vector_indexes()?;
        }
        Ok(PgWriter {
            store,
            models,
            images: Vec::new(),
            bulk,
        })
    }

    /// Connects to an existing collection with the models it was built with (to remove
    /// documents without loading any model).
    pub fn open_existing(url: &str) -> Result<Self, PgError> {
        let store = PgStore::connect(url)?;
        let models = store.models()?.ok_or_else(|| {
            PgError::Schema(format!(
                "{} holds no Folio collection yet; index into it first",
                store.url()
            ))
        })?;
        Ok(PgWriter {
            store,
            models,
            images: Vec::new(),
            bulk: false,
        })
    }

    /// The primary.
    pub fn store(&self) -> &PgStore {
        &self.store
    }
}

impl CollectionWriter for PgWriter {
    fn location(&self) -> String {
        self.store.url().to_string()
    }

    fn models(&self) -> &IndexModels {
        &self.models
    }

    fn document(&mut self, id: &DocId) -> Result<Option<Document>, StoreError> {
        Ok(self.store.document(id)?)
    }

    fn find_by_hash(&mut self, content_hash: &str) -> Result<Option<Document>, StoreError> {
        Ok(self.store.find_by_hash(content_hash)?)
    }

    fn find_by_path(&mut self, path: &str) -> Result<Option<Document>, StoreError> {
        Ok(self.store.find_by_path(path)?)
    }

    fn set_meta(&mut self, id: &DocId, meta: DocMeta) -> Result<(), StoreError> {
        self.store.set_meta(id, &meta)?;
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
        // The document's images go in with it (or, if it fails, nowhere); any others wait for
        // their own document.
        let (images, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.images)
            .into_iter()
            .partition(|(id, _)| *id == doc.doc_id);
        self.images = others;
        let images: Vec<PageImageRow> = images.into_iter().map(|(_, row)| row).collect();
        self.models
            .check_passage_vectors(passages.len(), &vectors)?;
        self.models
            .check_page_embeddings(doc.pages, &page_embeddings)?;
        self.store.put_document_with_images(
            &doc,
            &pages,
            &passages,
            &vectors,
            &page_embeddings,
            &images,
        )?;
        Ok(())
    }

    fn put_page_image(
        &mut self,
        key: &PageKey,
        kind: PageImageKind,
        png: &[u8],
    ) -> Result<(), StoreError> {
        self.images
            .retain(|(id, row)| !(*id == key.doc_id && row.page == key.page && row.kind == kind));
        self.images.push((
            key.doc_id.clone(),
            PageImageRow {
                page: key.page,
                kind,
                png: png.to_vec(),
            },
        ));
        Ok(())
    }

    fn remove(&mut self, id: &DocId) -> Result<bool, StoreError> {
        Ok(self.store.remove(id)?)
    }

    /// Each document is durable once put; a load into an empty collection builds its HNSW
    /// indexes here.
    fn commit(self: Box<Self>) -> Result<CommitOutcome, StoreError> {
        if self.bulk {
            self.store.build_vector_indexes()?;
        }
        Ok(CommitOutcome::Unchanged)
    }
}
