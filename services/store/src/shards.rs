//! One collection split across several shards by document id: [`Shards`] reads them all
//! (scatter-gather, each shard under a deadline) and [`ShardWriter`] sends each document to
//! the shard its id hashes to.
//!
//! A shard is any [`Collection`]: usually a PostgreSQL primary with its replicas, or an
//! embedded index. Every shard must hold the same models.
//!
//! - **Placement**: document `id` lives in shard [`shard_of`]`(id, n)`: FNV-1a (64-bit) of the
//!   id's bytes, modulo the number of shards. The function is part of the on-disk contract:
//!   changing it, or the number of shards, means re-indexing.
//! - **Searches** go to every shard (with a document filter, only to the shards that hold a
//!   kept document) on their own threads. Hits are merged by score. A shard that fails or
//!   gives no answer before the deadline is named in [`Found::missing`]; the answer is
//!   built from the others. A query that no shard can answer is an error; a query a shard
//!   refuses as invalid (a wrong vector width) is the caller's error, not a missing part.
//! - **Passage ids** are shard-qualified: the shard's number in the top [`SHARD_BITS`] bits,
//!   the shard's own id below.
//! - **Scores**: vector and late-interaction scores are the same functions in every shard;
//!   BM25 uses each shard's own term statistics, which differ little when documents are
//!   spread by hash.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use folio_core::{DocId, DocMeta, Document, Filter, Found, Hit, Page, PageKey, Passage, PassageId};
use tracing::warn;

use crate::{
    Collection, CollectionStats, CollectionWriter, CommitOutcome, DocSet, IndexModels,
    PageEmbeddings, PageImageKind, Selection, StoreError, StoredImage,
};

/// Bits of a passage id that name its shard.
pub const SHARD_BITS: u32 = 8;
/// Most shards a collection can have.
pub const MAX_SHARDS: usize = 1 << SHARD_BITS;
const LOCAL_BITS: u32 = u64::BITS - SHARD_BITS;

/// Calls to one shard still running (a shard that hangs keeps its callers' threads) beyond
/// which new calls skip it at once and count it missing.
const MAX_IN_FLIGHT: usize = 256;

/// The shard that holds document `id` among `shards`.
pub fn shard_of(id: &DocId, shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.0.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The models every one of the shards (location, models) holds; an error unless there are
/// between 1 and [`MAX_SHARDS`] of them and they all hold the same.
fn common_models(
    mut shards: impl ExactSizeIterator<Item = (String, IndexModels)>,
) -> Result<IndexModels, StoreError> {
    let n = shards.len();
    if n > MAX_SHARDS {
        return Err(StoreError::Invalid(format!(
            "{n} shards: at most {MAX_SHARDS} are supported"
        )));
    }
    let Some((first, models)) = shards.next() else {
        return Err(StoreError::Invalid(
            "a shard set needs at least one shard".into(),
        ));
    };
    for (location, other) in shards {
        if other != models {
            return Err(StoreError::Invalid(format!(
                "shard {location} was built with other models than shard {first}: every \
                 shard of a collection needs the same models"
            )));
        }
    }
    Ok(models)
}

/// A passage id of shard `shard`, qualified to be unique across the shards.
fn qualify(shard: usize, local: PassageId) -> Option<PassageId> {
    (local >> LOCAL_BITS == 0).then_some(((shard as u64) << LOCAL_BITS) | local)
}

/// The shard and the shard's own id of a qualified passage id.
fn unqualify(id: PassageId) -> (usize, PassageId) {
    ((id >> LOCAL_BITS) as usize, id & ((1 << LOCAL_BITS) - 1))
}

struct Shard {
    name: String,
    collection: Arc<dyn Collection>,
    in_flight: AtomicUsize,
}

/// Counts a call in flight until it ends (or its thread unwinds).
struct InFlight(Arc<Shard>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A collection made of shards, read in parallel under a per-shard deadline.
pub struct Shards {
    shards: Vec<Arc<Shard>>,
    models: IndexModels,
    timeout: Duration,
}

/// What the shards asked answered, and the `shard: reason` of each that did not.
struct Gathered<T> {
    answers: Vec<(usize, T)>,
    missing: Vec<String>,
}

impl Shards {
    /// A collection over `shards` (shard `i` holds the documents [`shard_of`] places in `i`),
    /// each of which must answer a call within `timeout`. The shards must hold the same
    /// models.
    pub fn new(shards: Vec<Arc<dyn Collection>>, timeout: Duration) -> Result<Self, StoreError> {
        let models = common_models(shards.iter().map(|s| (s.location(), s.models())))?;
        Ok(Shards {
            shards: shards
                .into_iter()
                .map(|collection| {
                    Arc::new(Shard {
                        name: collection.location(),
                        collection,
                        in_flight: AtomicUsize::new(0),
                    })
                })
                .collect(),
            models,
            timeout,
        })
    }

    /// Calls `call` on each shard in `targets` (with that shard's argument) on its own
    /// thread, and gathers what answers before the deadline. An invalid-request error from
    /// any shard is returned as the error.
    fn gather<A, T, F>(&self, targets: Vec<(usize, A)>, call: F) -> Result<Gathered<T>, StoreError>
    where
        A: Send + 'static,
        T: Send + 'static,
        F: Fn(&dyn Collection, A) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let call = Arc::new(call);
        let (tx, rx) = mpsc::channel();
        let mut missing = Vec::new();
        let mut pending: Vec<usize> = Vec::new();
        for (i, arg) in targets {
            let shard = &self.shards[i];
            if shard.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
                shard.in_flight.fetch_sub(1, Ordering::Relaxed);
                missing.push(format!(
                    "{}: {MAX_IN_FLIGHT} earlier calls have not returned",
                    shard.name
                ));
                continue;
            }
            let guard = InFlight(shard.clone());
            let (call, tx) = (call.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("folio-shard-{i}"))
                .spawn(move || {
                    let result = call(guard.0.collection.as_ref(), arg);
                    drop(guard);
                    let _ = tx.send((i, result));
                });
            match spawned {
                Ok(_) => pending.push(i),
                Err(e) => missing.push(format!("{}: no thread to ask it: {e}", shard.name)),
            }
        }
        drop(tx);
        let deadline = Instant::now() + self.timeout;
        let mut answers = Vec::new();
        // Whether every thread still pending ended without answering (it panicked).
        let mut vanished = false;
        while !pending.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok((i, result)) => {
                    pending.retain(|&p| p != i);
                    match result {
                        Ok(t) => answers.push((i, t)),
                        Err(e @ StoreError::Invalid(_)) => return Err(e),
                        Err(e) => missing.push(format!("{}: {e}", self.shards[i].name)),
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    vanished = true;
                    break;
                }
            }
        }
        for i in pending {
            let reason = if vanished {
                "the call failed without an answer".to_string()
            } else {
                format!("no answer within {} ms", self.timeout.as_millis())
            };
            missing.push(format!("{}: {reason}", self.shards[i].name));
        }
        for m in &missing {
            warn!(missing = %m, "a shard did not answer");
        }
        Ok(Gathered { answers, missing })
    }

    /// One call to the shard that holds `id`'s document; its failure is the call's.
    fn ask<T, F>(&self, shard: usize, call: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(&dyn Collection) -> Result<T, StoreError> + Send + Sync + 'static,
    {
        let mut g = self.gather(vec![(shard, ())], move |c, ()| call(c))?;
        match g.answers.pop() {
            Some((_, t)) => Ok(t),
            None => Err(StoreError::Backend(g.missing.join("; "))),
        }
    }

    /// The shards to search, each with its part of the filter; shards holding no kept
    /// document are left out.
    fn targets(&self, keep: Option<&DocSet>) -> Vec<(usize, Option<DocSet>)> {
        match keep {
            None => (0..self.shards.len()).map(|i| (i, None)).collect(),
            Some(keep) => {
                let mut parts: HashMap<usize, DocSet> = HashMap::new();
                for id in keep {
                    parts
                        .entry(shard_of(id, self.shards.len()))
                        .or_default()
                        .insert(id.clone());
                }
                let mut parts: Vec<(usize, Option<DocSet>)> =
                    parts.into_iter().map(|(i, p)| (i, Some(p))).collect();
                parts.sort_by_key(|(i, _)| *i);
                parts
            }
        }
    }

    /// A search on every shard concerned, merged: the best `k` hits by score (a tie goes to
    /// the lower shard), passage ids qualified. Fails only when no shard answered.
    fn search<F>(&self, k: usize, keep: Option<&DocSet>, call: F) -> Result<Found, StoreError>
    where
        F: Fn(&dyn Collection, Option<&DocSet>) -> Result<Found, StoreError>
            + Send
            + Sync
            + 'static,
    {
        let targets = self.targets(keep);
        if targets.is_empty() {
            return Ok(Found::default());
        }
        let asked = targets.len();
        let g = self.gather(targets, move |c, keep: Option<DocSet>| {
            call(c, keep.as_ref())
        })?;
        let mut missing = g.missing;
        if g.answers.is_empty() {
            return Err(StoreError::Backend(format!(
                "none of the {asked} shards asked answered: {}",
                missing.join("; ")
            )));
        }
        let mut answers = g.answers;
        answers.sort_by_key(|(i, _)| *i);
        let mut hits: Vec<Hit> = Vec::new();
        for (i, found) in answers {
            let name = &self.shards[i].name;
            missing.extend(found.missing.into_iter().map(|m| format!("{name}: {m}")));
            for mut hit in found.hits {
                if let Some(local) = hit.passage {
                    let Some(id) = qualify(i, local) else {
                        missing.push(format!("{name}: passage id {local} is too large"));
                        continue;
                    };
                    hit.passage = Some(id);
                }
                hits.push(hit);
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score));
        hits.truncate(k);
        Ok(Found { hits, missing })
    }

    fn owner(&self, id: &DocId) -> usize {
        shard_of(id, self.shards.len())
    }
}

impl Collection for Shards {
    fn location(&self) -> String {
        let names: Vec<&str> = self.shards.iter().map(|s| s.name.as_str()).collect();
        format!("{} shards ({})", self.shards.len(), names.join(", "))
    }

    fn models(&self) -> IndexModels {
        self.models.clone()
    }

    fn stats(&self) -> Result<CollectionStats, StoreError> {
        let all = (0..self.shards.len()).map(|i| (i, ())).collect();
        let g = self.gather(all, |c, ()| c.stats())?;
        if g.answers.is_empty() {
            return Err(StoreError::Backend(format!(
                "no shard answered: {}",
                g.missing.join("; ")
            )));
        }
        let mut total = CollectionStats {
            missing: g.missing,
            ..CollectionStats::default()
        };
        for (_, s) in g.answers {
            total.documents += s.documents;
            total.pages += s.pages;
            total.passages += s.passages;
            total.missing.extend(s.missing);
        }
        Ok(total)
    }

    fn documents(&self) -> Result<Vec<Document>, StoreError> {
        let all = (0..self.shards.len()).map(|i| (i, ())).collect();
        let g = self.gather(all, |c, ()| c.documents())?;
        if !g.missing.is_empty() {
            return Err(StoreError::Backend(format!(
                "the document list is incomplete: {}",
                g.missing.join("; ")
            )));
        }
        let mut docs: Vec<Document> = g.answers.into_iter().flat_map(|(_, d)| d).collect();
        docs.sort_by(|a, b| a.doc_id.cmp(&b.doc_id));
        Ok(docs)
    }

    fn select(&self, filter: &Filter) -> Result<Selection, StoreError> {
        let all = (0..self.shards.len())
            .map(|i| (i, filter.clone()))
            .collect();
        let g = self.gather(all, |c, f| c.select(&f))?;
        if g.answers.is_empty() {
            return Err(StoreError::Backend(format!(
                "no shard answered: {}",
                g.missing.join("; ")
            )));
        }
        let mut missing = g.missing;
        let mut docs = DocSet::new();
        for (_, part) in g.answers {
            docs.extend(part.docs);
            missing.extend(part.missing);
        }
        Ok(Selection { docs, missing })
    }

    fn document(&self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let id = id.clone();
        self.ask(self.owner(&id), move |c| c.document(&id))
    }

    fn passage(&self, id: PassageId) -> Result<Option<Passage>, StoreError> {
        let (shard, local) = unqualify(id);
        if shard >= self.shards.len() {
            return Ok(None);
        }
        let passage = self.ask(shard, move |c| c.passage(local))?;
        Ok(passage.map(|p| Passage { id, ..p }))
    }

    fn first_passage(&self, page: &PageKey) -> Result<Option<Passage>, StoreError> {
        let shard = self.owner(&page.doc_id);
        let key = page.clone();
        let passage = self.ask(shard, move |c| c.first_passage(&key))?;
        Ok(passage.and_then(|p| {
            Some(Passage {
                id: qualify(shard, p.id)?,
                ..p
            })
        }))
    }

    fn page_image(
        &self,
        key: &PageKey,
        kind: PageImageKind,
    ) -> Result<Option<StoredImage>, StoreError> {
        let key = key.clone();
        self.ask(self.owner(&key.doc_id), move |c| c.page_image(&key, kind))
    }

    fn pages_with_images(&self, keys: &[PageKey]) -> Result<HashSet<PageKey>, StoreError> {
        let mut parts: HashMap<usize, Vec<PageKey>> = HashMap::new();
        for key in keys {
            parts
                .entry(self.owner(&key.doc_id))
                .or_default()
                .push(key.clone());
        }
        // A shard that does not answer shows its pages without images.
        let g = self.gather(parts.into_iter().collect(), |c, keys: Vec<PageKey>| {
            c.pages_with_images(&keys)
        })?;
        Ok(g.answers.into_iter().flat_map(|(_, found)| found).collect())
    }

    fn set_ef_search(&self, ef: usize) {
        for s in &self.shards {
            s.collection.set_ef_search(ef);
        }
    }

    fn lexical(&self, query: &str, k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        let query = query.to_string();
        self.search(k, keep, move |c, keep| c.lexical(&query, k, keep))
    }

    fn dense(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        let vector = vector.to_vec();
        self.search(k, keep, move |c, keep| c.dense(&vector, k, keep))
    }

    fn pages(&self, vector: &[f32], k: usize, keep: Option<&DocSet>) -> Result<Found, StoreError> {
        let vector = vector.to_vec();
        self.search(k, keep, move |c, keep| c.pages(&vector, k, keep))
    }

    fn late(
        &self,
        tokens: &[Vec<f32>],
        k: usize,
        keep: Option<&DocSet>,
    ) -> Result<Found, StoreError> {
        let tokens = tokens.to_vec();
        self.search(k, keep, move |c, keep| c.late(&tokens, k, keep))
    }
}

/// Writes a sharded collection: each document goes to the shard its id hashes to. A
/// document replacing one of the same path in another shard is put first and the old one
/// removed after, so that a failure between the two leaves both rather than neither.
pub struct ShardWriter {
    writers: Vec<Box<dyn CollectionWriter>>,
    models: IndexModels,
}

impl ShardWriter {
    /// A writer over one writer per shard, in shard order (the order of the [`Shards`] that
    /// will read them). The writers must hold the same models.
    pub fn new(writers: Vec<Box<dyn CollectionWriter>>) -> Result<Self, StoreError> {
        let models = common_models(writers.iter().map(|w| (w.location(), w.models().clone())))?;
        Ok(ShardWriter { writers, models })
    }

    fn writer(&mut self, i: usize) -> &mut dyn CollectionWriter {
        self.writers[i].as_mut()
    }

    /// The first answer of `call` that finds something, asking the shards in order.
    fn find(
        &mut self,
        call: impl Fn(&mut dyn CollectionWriter) -> Result<Option<Document>, StoreError>,
    ) -> Result<Option<Document>, StoreError> {
        for w in &mut self.writers {
            if let Some(d) = call(w.as_mut())? {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }
}

impl CollectionWriter for ShardWriter {
    fn location(&self) -> String {
        let names: Vec<String> = self.writers.iter().map(|w| w.location()).collect();
        format!("{} shards ({})", names.len(), names.join(", "))
    }

    fn models(&self) -> &IndexModels {
        &self.models
    }

    fn document(&mut self, id: &DocId) -> Result<Option<Document>, StoreError> {
        let i = shard_of(id, self.writers.len());
        self.writer(i).document(id)
    }

    fn find_by_hash(&mut self, content_hash: &str) -> Result<Option<Document>, StoreError> {
        self.find(|w| w.find_by_hash(content_hash))
    }

    fn find_by_path(&mut self, path: &str) -> Result<Option<Document>, StoreError> {
        self.find(|w| w.find_by_path(path))
    }

    fn set_meta(&mut self, id: &DocId, meta: DocMeta) -> Result<(), StoreError> {
        let i = shard_of(id, self.writers.len());
        self.writer(i).set_meta(id, meta)
    }

    fn put_document(
        &mut self,
        doc: Document,
        pages: Vec<Page>,
        passages: Vec<Passage>,
        vectors: Vec<Vec<f32>>,
        page_embeddings: PageEmbeddings,
    ) -> Result<(), StoreError> {
        let n = self.writers.len();
        let home = shard_of(&doc.doc_id, n);
        let (id, path) = (doc.doc_id.clone(), doc.path.clone());
        self.writer(home)
            .put_document(doc, pages, passages, vectors, page_embeddings)?;
        for i in (0..n).filter(|&i| i != home) {
            let w = self.writer(i);
            if let Some(old) = w.find_by_path(&path)?
                && old.doc_id != id
            {
                w.remove(&old.doc_id)?;
            }
        }
        Ok(())
    }

    fn put_page_image(
        &mut self,
        key: &PageKey,
        kind: PageImageKind,
        png: &[u8],
    ) -> Result<(), StoreError> {
        let i = shard_of(&key.doc_id, self.writers.len());
        self.writer(i).put_page_image(key, kind, png)
    }

    fn remove(&mut self, id: &DocId) -> Result<bool, StoreError> {
        let i = shard_of(id, self.writers.len());
        self.writer(i).remove(id)
    }

    fn commit(self: Box<Self>) -> Result<CommitOutcome, StoreError> {
        let mut outcome = CommitOutcome::Unchanged;
        for w in self.writers {
            let location = w.location();
            match w.commit() {
                Ok(CommitOutcome::Unchanged) => {}
                Ok(published) => outcome = published,
                Err(e) => {
                    return Err(StoreError::Backend(format!(
                        "committing shard {location}: {e} (the shards before it are committed)"
                    )));
                }
            }
        }
        Ok(outcome)
    }
}
