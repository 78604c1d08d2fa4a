//! Retrieval routes over a [`Collection`]. Every route ranks pages: text routes retrieve
//! passages and keep, for each page, its best passage; the page and late-interaction routes
//! rank page images directly.

use std::collections::HashSet;
use std::sync::Arc;

use folio_core::{Found, Hit, PreparedQuery, RetrieveError, Route};
use folio_store::{Collection, StoreError};
use tracing::instrument;

/// Passages fetched per wanted page: pages with several matching passages would otherwise leave
/// fewer than `k` distinct pages.
const OVERFETCH: usize = 4;

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
}

impl Bm25Route {
    /// Route name.
    pub const NAME: &'static str = "bm25";

    /// A BM25 route over `collection`.
    pub fn new(collection: Arc<dyn Collection>) -> Self {
        Bm25Route { collection }
    }
}

impl Route for Bm25Route {
    fn name(&self) -> &str {
        Self::NAME
    }

    #[instrument(skip_all, fields(route = Self::NAME, k))]
    fn retrieve(&self, query: &PreparedQuery, k: usize) -> Result<Found, RetrieveError> {
        let passages = self
            .collection
            .lexical(
                &query.text,
                k.saturating_mul(OVERFETCH),
                query.allowed.as_deref(),
            )
            .map_err(|e| index_error(Self::NAME, e))?;
        Ok(collapse_to_pages(passages, k))
    }
}

/// Dense retrieval of passages by cosine similarity of their embeddings to the query's.
pub struct DenseRoute {
    collection: Arc<dyn Collection>,
}

impl DenseRoute {
    /// Route name.
    pub const NAME: &'static str = "dense";

    /// A dense passage route over `collection`.
    pub fn new(collection: Arc<dyn Collection>) -> Self {
        DenseRoute { collection }
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
        let passages = self
            .collection
            .dense(
                vector,
                k.saturating_mul(OVERFETCH),
                query.allowed.as_deref(),
            )
            .map_err(|e| index_error(Self::NAME, e))?;
        Ok(collapse_to_pages(passages, k))
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
