//! Retrieval routes over a [`Collection`]. Every route ranks pages: text routes retrieve
//! passages and keep, for each page, its best passage; the page and late-interaction routes
//! rank page images directly.

use std::collections::HashSet;
use std::sync::Arc;

use folio_core::{Found, Hit, PreparedQuery, RetrieveError, Route};
use folio_store::{Collection, StoreError};
use tracing::instrument;

/// Most passages fetched per wanted page at first: pages with several matching passages would
/// otherwise leave fewer than `k` distinct pages.
const OVERFETCH: usize = 4;

/// Passages to fetch per wanted page at first: the collection's passages per page, rounded
/// up, from 1 to [`OVERFETCH`] ([`OVERFETCH`] when the collection cannot say). A collection
/// of one passage a page (a BEIR corpus) is then searched `k` deep, not four times that. The
/// text routes of a pipeline share one answer (a database or shards count over the network).
pub(crate) fn overfetch(collection: &dyn Collection) -> usize {
    match collection.stats() {
        Ok(s) if s.pages > 0 => s.passages.div_ceil(s.pages).clamp(1, OVERFETCH),
        _ => OVERFETCH,
    }
}

/// The best `k` pages of a passage search: `fetch(depth)` returns the top `depth` passages,
/// best first. Starts `k * per_page` deep and goes four times deeper while that leaves fewer
/// than `k` distinct pages and the search had more to give.
fn top_pages(
    k: usize,
    per_page: usize,
    fetch: impl Fn(usize) -> Result<Found, StoreError>,
) -> Result<Found, StoreError> {
    let mut depth = k.saturating_mul(per_page.max(1));
    loop {
        let found = fetch(depth)?;
        let exhausted = found.hits.len() < depth;
        let pages = collapse_to_pages(found, k);
        if pages.hits.len() >= k || exhausted || depth == usize::MAX {
            return Ok(pages);
        }
        depth = depth.saturating_mul(OVERFETCH);
    }
}

fn index_error(route: &str, e: StoreError) -> RetrieveError {
    let (route, message) = (route.to_string(), e.to_string());
    match e {
        StoreError::Backend(_) => RetrieveError::Unavailable { route, message },
        StoreError::Invalid(_) => RetrieveError::InvalidQuery { route, message },
        _ => RetrieveError::Index { route, message },
    }
}

/// Collapses passage hits (best first) to page hits (best first), keeping each page's best
/// passage, until `k` pages.
fn collapse_to_pages(found: Found, k: usize) -> Found {
    let mut seen = HashSet::new();
    let mut hits: Vec<Hit> = Vec::with_capacity(k);
    for hit in found.hits {
        if seen.insert(hit.page.clone()) {
            hits.push(hit);
            if hits.len() == k {
                break;
            }
        }
    }
    Found {
        hits,
        missing: found.missing,
    }
}

/// BM25 over passage text.
pub struct Bm25Route {
    collection: Arc<dyn Collection>,
    per_page: usize,
}

impl Bm25Route {
    /// Route name.
    pub const NAME: &'static str = "bm25";

    /// A BM25 route over `collection`, fetching `per_page` passages per wanted page at first
    /// (the collection's passages per page).
    pub fn new(collection: Arc<dyn Collection>, per_page: usize) -> Self {
        Bm25Route {
            collection,
            per_page,
        }
    }
}

impl Route for Bm25Route {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Found, RetrieveError> {
        top_pages(k, self.per_page, |depth| {
            self.collection
                .lexical(&query.text, depth, query.allowed.as_deref())
        })
        .map_err(|e| index_error(Self::NAME, e))
    }
}

/// Dense retrieval of passages by cosine similarity of their embeddings to the query's.
pub struct DenseRoute {
    collection: Arc<dyn Collection>,
    per_page: usize,
}

impl DenseRoute {
    /// Route name.
    pub const NAME: &'static str = "dense";

    /// A dense passage route over `collection`, fetching `per_page` passages per wanted page
    /// at first (the collection's passages per page).
    pub fn new(collection: Arc<dyn Collection>, per_page: usize) -> Self {
        DenseRoute {
            collection,
            per_page,
        }
    }
}

impl Route for DenseRoute {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Found, RetrieveError> {
        let vector = query
            .text_embedding
            .as_ref()
            .and_then(|e| e.as_single())
            .ok_or_else(|| RetrieveError::InvalidQuery {
                route: Self::NAME.to_string(),
                message: "the query has no single-vector text embedding".into(),
            })?;
        top_pages(k, self.per_page, |depth| {
            self.collection
                .dense(vector, depth, query.allowed.as_deref())
        })
        .map_err(|e| index_error(Self::NAME, e))
    }
}

/// Pages whose image embedding (one vector a page) is closest to the query's, by cosine
/// similarity.
pub struct PageRoute {
    collection: Arc<dyn Collection>,
}

impl PageRoute {
    /// Route name.
    pub const NAME: &'static str = "page";

    /// A page-image route over `collection`.
    pub fn new(collection: Arc<dyn Collection>) -> Self {
        PageRoute { collection }
    }
}

impl Route for PageRoute {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Found, RetrieveError> {
        let vector = query
            .page_embedding
            .as_ref()
            .and_then(|e| e.as_single())
            .ok_or_else(|| RetrieveError::InvalidQuery {
                route: Self::NAME.to_string(),
                message: "the query has no single-vector page embedding".into(),
            })?;
        self.collection
            .pages(vector, k, query.allowed.as_deref())
            .map_err(|e| index_error(Self::NAME, e))
    }

    fn accepts(&self, query: &PreparedQuery) -> bool {
        query.page_embedding.is_some()
    }
}

/// Late interaction: pages ranked by MaxSim between the query's token vectors and each page
/// image's token vectors.
pub struct LateRoute {
    collection: Arc<dyn Collection>,
}

impl LateRoute {
    /// Route name.
    pub const NAME: &'static str = "late";

    /// A late-interaction route over `collection`.
    pub fn new(collection: Arc<dyn Collection>) -> Self {
        LateRoute { collection }
    }
}

impl Route for LateRoute {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Found, RetrieveError> {
        let tokens = query
            .late_embedding
            .as_ref()
            .and_then(|e| e.as_multi())
            .ok_or_else(|| RetrieveError::InvalidQuery {
                route: Self::NAME.to_string(),
                message: "the query has no token vectors".into(),
            })?;
        self.collection
            .late(tokens, k, query.allowed.as_deref())
            .map_err(|e| index_error(Self::NAME, e))
    }

    fn accepts(&self, query: &PreparedQuery) -> bool {
        query.late_embedding.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use folio_core::{DocId, PageKey};

    use super::*;

    /// A passage search over `passages`, each naming its page, best first; records the
    /// depths it was asked for.
    fn search<'a>(
        passages: &'a [u32],
        asked: &'a RefCell<Vec<usize>>,
    ) -> impl Fn(usize) -> Result<Found, StoreError> + 'a {
        move |depth| {
            asked.borrow_mut().push(depth);
            Ok(Found::complete(
                passages
                    .iter()
                    .take(depth)
                    .enumerate()
                    .map(|(i, &page)| Hit {
                        page: PageKey {
                            doc_id: DocId("d".into()),
                            page,
                        },
                        score: -(i as f32),
                        passage: Some(i as u64),
                    })
                    .collect(),
            ))
        }
    }

    fn pages(found: &Found) -> Vec<u32> {
        found.hits.iter().map(|h| h.page.page).collect()
    }

    #[test]
    fn one_passage_a_page_is_searched_k_deep() -> Result<(), StoreError> {
        let passages: Vec<u32> = (1..=50).collect();
        let asked = RefCell::new(Vec::new());
        let found = top_pages(10, 1, search(&passages, &asked))?;
        assert_eq!(pages(&found), (1..=10).collect::<Vec<_>>());
        assert_eq!(*asked.borrow(), [10]);
        Ok(())
    }

    #[test]
    fn pages_with_many_passages_make_the_search_go_deeper() -> Result<(), StoreError> {
        // Five passages a page: 10 deep finds 2 pages, 40 deep 8, 160 deep all 10.
        let passages: Vec<u32> = (1..=40).flat_map(|p| [p; 5]).collect();
        let asked = RefCell::new(Vec::new());
        let found = top_pages(10, 1, search(&passages, &asked))?;
        assert_eq!(pages(&found), (1..=10).collect::<Vec<_>>());
        assert_eq!(*asked.borrow(), [10, 40, 160]);
        // Each page keeps its best passage.
        assert_eq!(found.hits[1].passage, Some(5));
        Ok(())
    }

    #[test]
    fn a_search_that_runs_out_stops() -> Result<(), StoreError> {
        let passages = [1, 1, 2, 2, 3];
        let asked = RefCell::new(Vec::new());
        let found = top_pages(10, 4, search(&passages, &asked))?;
        assert_eq!(pages(&found), [1, 2, 3]);
        assert_eq!(*asked.borrow(), [40]);
        Ok(())
    }
}
