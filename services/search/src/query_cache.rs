//! [`CachedEmbedder`]: remembers the embeddings of recent text queries, so a repeated query
//! skips the model (on a CPU, embedding the query is most of a search's time).
//!
//! The cache keeps two generations of entries: lookups check the current one, then the
//! previous one (and promote a hit); when the current one is full it becomes the previous one
//! and the oldest is dropped. That bounds memory to twice the capacity and keeps recently used
//! entries, without the bookkeeping of an exact LRU list.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use folio_core::{DocInput, EmbedError, Embedder, EmbedderInfo, Embedding, QueryInput};

#[derive(Default)]
struct Generations {
    current: HashMap<String, Embedding>,
    previous: HashMap<String, Embedding>,
}

/// An [`Embedder`] that caches up to about `capacity` query embeddings of the embedder it
/// wraps. Documents are never cached.
pub struct CachedEmbedder {
    capacity: usize,
    cache: Mutex<Generations>,
    hits: AtomicU64,
    misses: AtomicU64,
    inner: Arc<dyn Embedder>,
}

impl CachedEmbedder {
    /// Wraps `inner`, keeping about `capacity` recent queries (at most twice that).
    pub fn new(inner: Arc<dyn Embedder>, capacity: usize) -> Self {
        CachedEmbedder {
            capacity: capacity.max(1),
            cache: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inner,
        }
    }

    /// Queries answered from the cache and by the model, since creation.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn lookup(&self, text: &str) -> Option<Embedding> {
        let mut c = self.cache.lock().ok()?;
        if let Some(e) = c.current.get(text) {
            return Some(e.clone());
        }
        let e = c.previous.remove(text)?;
        self.insert_locked(&mut c, text.to_string(), e.clone());
        Some(e)
    }

    fn insert_locked(&self, c: &mut Generations, text: String, e: Embedding) {
        if c.current.len() >= self.capacity {
            c.previous = std::mem::take(&mut c.current);
        }
        c.current.insert(text, e);
    }
}

impl Embedder for CachedEmbedder {
    fn info(&self) -> &EmbedderInfo {
        self.inner.info()
    }

    fn embed_queries(&self, queries: &[QueryInput]) -> Result<Vec<Embedding>, EmbedError> {
        let mut out: Vec<Option<Embedding>> = queries
            .iter()
            .map(|QueryInput::Text(t)| self.lookup(t))
            .collect();
        let missing: Vec<usize> = (0..queries.len()).filter(|&i| out[i].is_none()).collect();
        self.hits
            .fetch_add((queries.len() - missing.len()) as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            self.misses
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            let asked: Vec<QueryInput> = missing.iter().map(|&i| queries[i].clone()).collect();
            let fresh = self.inner.embed_queries(&asked)?;
            if fresh.len() != asked.len() {
                return Err(EmbedError::Model(format!(
                    "the embedder answered {} embeddings for {} queries",
                    fresh.len(),
                    asked.len()
                )));
            }
            let mut c = self.cache.lock().ok();
            for (&i, e) in missing.iter().zip(fresh) {
                if let (Some(c), QueryInput::Text(t)) = (c.as_deref_mut(), &queries[i]) {
                    self.insert_locked(c, t.clone(), e.clone());
                }
                out[i] = Some(e);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    fn embed_documents(&self, docs: &[DocInput]) -> Result<Vec<Embedding>, EmbedError> {
        self.inner.embed_documents(docs)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use folio_core::testing::HashEmbedder;

    use super::*;

    /// Counts the queries that reach the model.
    struct Counting {
        inner: HashEmbedder,
        calls: AtomicUsize,
    }

    impl Embedder for Counting {
        fn info(&self) -> &EmbedderInfo {
            self.inner.info()
        }
        fn embed_queries(&self, q: &[QueryInput]) -> Result<Vec<Embedding>, EmbedError> {
            self.calls.fetch_add(q.len(), Ordering::Relaxed);
            self.inner.embed_queries(q)
        }
        fn embed_documents(&self, d: &[DocInput]) -> Result<Vec<Embedding>, EmbedError> {
            self.inner.embed_documents(d)
        }
    }

    fn q(t: &str) -> QueryInput {
        QueryInput::Text(t.into())
    }

    #[test]
    fn repeated_queries_skip_the_model_with_the_same_answer() -> Result<(), EmbedError> {
        let model = Arc::new(Counting {
            inner: HashEmbedder::new(8),
            calls: AtomicUsize::new(0),
        });
        let cached = CachedEmbedder::new(model.clone(), 2);
        let first = cached.embed_queries(&[q("a"), q("b")])?;
        let again = cached.embed_queries(&[q("b"), q("c"), q("a")])?;
        assert_eq!(again[0], first[1]);
        assert_eq!(again[2], first[0]);
        assert_eq!(model.calls.load(Ordering::Relaxed), 3, "only c was new");
        assert_eq!(cached.stats(), (2, 3));
        // Capacity 2: after d and e, a and b (not used since) are gone; e stays.
        cached.embed_queries(&[q("d"), q("e")])?;
        cached.embed_queries(&[q("f")])?;
        cached.embed_queries(&[q("a"), q("e")])?;
        assert_eq!(model.calls.load(Ordering::Relaxed), 7);
        Ok(())
    }
}
