//! Retrieval routes over a [`Store`]. Every route ranks pages: text routes retrieve passages
//! and keep, for each page, its best passage; the page and late-interaction routes rank page
//! images directly.

use std::collections::HashSet;
use std::sync::Arc;

use folio_core::{Hit, PassageId, PreparedQuery, RetrieveError, Route};
use folio_store::{Store, StoreError};
use tracing::instrument;

/// Passages fetched per wanted page: pages with several matching passages would otherwise leave
/// fewer than `k` distinct pages.
const OVERFETCH: usize = 4;

fn index_error(route: &str, e: StoreError) -> RetrieveError {
    RetrieveError::Index {
        route: route.to_string(),
        message: e.to_string(),
    }
}

/// Collapses passage hits (best first) to page hits (best first), keeping each page's best
/// passage, until `k` pages.
fn collapse_to_pages(store: &Store, passages: Vec<(PassageId, f32)>, k: usize) -> Vec<Hit> {
    let mut seen = HashSet::new();
    let mut hits = Vec::with_capacity(k);
    for (id, score) in passages {
        let Some(p) = store.passage(id) else {
            continue;
        };
        if seen.insert(p.page.clone()) {
            hits.push(Hit {
                page: p.page.clone(),
                score,
                passage: Some(id),
            });
            if hits.len() == k {
                break;
            }
        }
    }
    hits
}

/// BM25 over passage text.
pub struct Bm25Route {
    store: Arc<Store>,
}

impl Bm25Route {
    /// Route name.
    pub const NAME: &'static str = "bm25";

    /// A BM25 route over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        Bm25Route { store }
    }
}

impl Route for Bm25Route {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Vec<Hit>, RetrieveError> {
        let passages = self
            .store
            .bm25_search(
                &query.text,
                k.saturating_mul(OVERFETCH),
                query.allowed.as_deref(),
            )
            .map_err(|e| index_error(Self::NAME, e))?;
        Ok(collapse_to_pages(&self.store, passages, k))
    }
}

/// Dense retrieval of passages by cosine similarity of their embeddings to the query's.
pub struct DenseRoute {
    store: Arc<Store>,
}

impl DenseRoute {
    /// Route name.
    pub const NAME: &'static str = "dense";

    /// A dense passage route over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        DenseRoute { store }
    }
}

impl Route for DenseRoute {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Vec<Hit>, RetrieveError> {
        let vector = query
            .text_embedding
            .as_ref()
            .and_then(|e| e.as_single())
            .ok_or_else(|| RetrieveError::InvalidQuery {
                route: Self::NAME.to_string(),
                message: "the query has no single-vector text embedding".into(),
            })?;
        let passages = self
            .store
            .ann_search(
                vector,
                k.saturating_mul(OVERFETCH),
                query.allowed.as_deref(),
            )
            .map_err(|e| index_error(Self::NAME, e))?;
        Ok(collapse_to_pages(&self.store, passages, k))
    }
}

fn page_hits(pages: Vec<(folio_core::PageKey, f32)>) -> Vec<Hit> {
    pages
        .into_iter()
        .map(|(page, score)| Hit {
            page,
            score,
            passage: None,
        })
        .collect()
}

/// Pages whose image embedding (one vector a page) is closest to the query's, by cosine
/// similarity.
pub struct PageRoute {
    store: Arc<Store>,
}

impl PageRoute {
    /// Route name.
    pub const NAME: &'static str = "page";

    /// A page-image route over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        PageRoute { store }
    }
}

impl Route for PageRoute {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Vec<Hit>, RetrieveError> {
        let vector = query
            .page_embedding
            .as_ref()
            .and_then(|e| e.as_single())
            .ok_or_else(|| RetrieveError::InvalidQuery {
                route: Self::NAME.to_string(),
                message: "the query has no single-vector page embedding".into(),
            })?;
        let pages = self
            .store
            .page_search(vector, k, query.allowed.as_deref())
            .map_err(|e| index_error(Self::NAME, e))?;
        Ok(page_hits(pages))
    }

    fn accepts(&self, query: &PreparedQuery) -> bool {
        query.page_embedding.is_some()
    }
}

/// Late interaction: pages ranked by MaxSim between the query's token vectors and each page
/// image's token vectors.
pub struct LateRoute {
    store: Arc<Store>,
}

impl LateRoute {
    /// Route name.
    pub const NAME: &'static str = "late";

    /// A late-interaction route over `store`.
    pub fn new(store: Arc<Store>) -> Self {
        LateRoute { store }
    }
}

impl Route for LateRoute {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Vec<Hit>, RetrieveError> {
        let tokens = query
            .late_embedding
            .as_ref()
            .and_then(|e| e.as_multi())
            .ok_or_else(|| RetrieveError::InvalidQuery {
                route: Self::NAME.to_string(),
                message: "the query has no token vectors".into(),
            })?;
        let pages = self
            .store
            .late_search(tokens, k, query.allowed.as_deref())
            .map_err(|e| index_error(Self::NAME, e))?;
        Ok(page_hits(pages))
    }

    fn accepts(&self, query: &PreparedQuery) -> bool {
        query.late_embedding.is_some()
    }
}
