//! Retrieval routes, fusion and the query pipeline: a validated request goes in, fused pages
//! with snippets and per-route provenance come out.
//!
//! The pipeline: validate the request, embed the query once (when a dense route runs), run
//! each route for the top pages, fuse with [`Rrf`] (k = 60), and build the hits from the store
//! (document path, page, snippet of the best passage, rank in every route).

mod fusion;
mod routes;
mod snippet;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use folio_core::{
    EmbedError, Embedder, FusedHit, Fuser, MAX_K, PreparedQuery, QueryInput, RankedList,
    RetrieveError, Route,
};
use folio_store::Store;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, instrument};

pub use fusion::{Rrf, Weighted};
pub use routes::{Bm25Route, DenseRoute};
pub use snippet::{SNIPPET_CHARS, snippet};

/// Longest accepted query, in chars.
pub const MAX_QUERY_CHARS: usize = 4096;
/// Each route returns at least this many pages to the fuser, so that fusion sees beyond `k`.
pub const MIN_ROUTE_DEPTH: usize = 100;

/// A search failed.
#[derive(Debug, Error)]
pub enum SearchError {
    /// The request is invalid (the caller's fault).
    #[error("{0}")]
    InvalidRequest(String),
    /// The pipeline cannot be built for this index (the operator's fault).
    #[error("{0}")]
    Setup(String),
    /// Embedding the query failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A route failed.
    #[error(transparent)]
    Retrieve(#[from] RetrieveError),
}

/// A search request, as the CLI and the HTTP API take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Free-text query.
    pub query: String,
    /// Number of pages to return, 1..=1000.
    #[serde(default = "default_k")]
    pub k: usize,
}

fn default_k() -> usize {
    10
}

impl SearchRequest {
    /// Checks the request; the error message names the field at fault.
    pub fn validate(&self) -> Result<(), SearchError> {
        if self.query.trim().is_empty() {
            return Err(SearchError::InvalidRequest(
                "query must not be empty".into(),
            ));
        }
        let chars = self.query.chars().count();
        if chars > MAX_QUERY_CHARS {
            return Err(SearchError::InvalidRequest(format!(
                "query is {chars} chars long; the limit is {MAX_QUERY_CHARS}"
            )));
        }
        if self.k == 0 || self.k > MAX_K {
            return Err(SearchError::InvalidRequest(format!(
                "k must be between 1 and {MAX_K}, got {}",
                self.k
            )));
        }
        Ok(())
    }
}

/// Where the hit's passage sits in its page's text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassageSpan {
    /// Store-local passage id.
    pub id: u64,
    /// Start offset in the page text, in chars.
    pub char_start: u32,
    /// End offset (exclusive), in chars.
    pub char_end: u32,
}

/// One result page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Document id (content hash prefix).
    pub doc_id: String,
    /// Path the document was indexed from.
    pub path: String,
    /// 1-based page number.
    pub page: u32,
    /// A window of the best passage around the query terms.
    pub snippet: String,
    /// Fused score.
    pub score: f64,
    /// 1-based rank of this page in each route that returned it.
    pub routes: BTreeMap<String, usize>,
    /// The best passage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passage: Option<PassageSpan>,
}

/// Time spent in each stage, in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Embedding the query.
    pub embed_ms: f64,
    /// Each route.
    pub routes_ms: BTreeMap<String, f64>,
    /// Fusion and building hits.
    pub fuse_ms: f64,
}

/// The answer to a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Pages, best first.
    pub hits: Vec<SearchHit>,
    /// Stage timings.
    pub timings: Timings,
}

/// Each route's list and the fused list, before hits are built: what evaluation reads.
#[derive(Debug, Clone)]
pub struct Retrieved {
    /// Each route's pages, best first.
    pub lists: Vec<RankedList>,
    /// The fused pages, best first, at most `k`.
    pub fused: Vec<FusedHit>,
    /// Stage timings.
    pub timings: Timings,
}

/// Names accepted by [`fuser_by_name`].
pub const FUSERS: [&str; 2] = ["rrf", "weighted"];

/// Builds a fuser from its name: `rrf` (k = 60) or `weighted` (equal weights, min-max
/// normalised scores).
pub fn fuser_by_name(name: &str) -> Result<Box<dyn Fuser>, SearchError> {
    match name {
        "rrf" => Ok(Box::new(Rrf::default())),
        "weighted" => Ok(Box::new(Weighted::default())),
        other => Err(SearchError::InvalidRequest(format!(
            "unknown fusion {other:?}; available: {}",
            FUSERS.join(", ")
        ))),
    }
}

/// Runs searches over one opened index.
pub struct Pipeline {
    store: Arc<Store>,
    embedder: Option<Arc<dyn Embedder>>,
    routes: Vec<Box<dyn Route>>,
    fuser: Box<dyn Fuser>,
}

impl Pipeline {
    /// The default pipeline: BM25, plus the dense route when an embedder is given, fused by
    /// RRF. The embedder must be the one the index was built with.
    pub fn new(
        store: Arc<Store>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, SearchError> {
        let mut routes: Vec<Box<dyn Route>> = vec![Box::new(Bm25Route::new(store.clone()))];
        if let Some(e) = &embedder {
            let built = &store.manifest().embedder;
            let given = e.info();
            if built.id != given.id || built.dim != given.dim {
                return Err(SearchError::Setup(format!(
                    "index {} was built with embedder {} ({}-d) but {} ({}-d) was loaded",
                    store.dir().display(),
                    built.id,
                    built.dim,
                    given.id,
                    given.dim
                )));
            }
            routes.push(Box::new(DenseRoute::new(store.clone())));
        }
        Ok(Pipeline {
            store,
            embedder,
            routes,
            fuser: Box::new(Rrf::default()),
        })
    }

    /// The index this pipeline reads.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Names of the routes that run.
    pub fn route_names(&self) -> Vec<&str> {
        self.routes.iter().map(|r| r.name()).collect()
    }

    /// Keeps only the named routes, in the order given. Unknown names are an error that lists
    /// the available ones. Queries are embedded only while the dense route runs.
    pub fn keep_routes(&mut self, names: &[&str]) -> Result<(), SearchError> {
        if names.is_empty() {
            return Err(SearchError::InvalidRequest("no route selected".into()));
        }
        let available = self.route_names().join(", ");
        let mut kept = Vec::with_capacity(names.len());
        for name in names {
            let i = self
                .routes
                .iter()
                .position(|r| r.name() == *name)
                .ok_or_else(|| {
                    SearchError::InvalidRequest(format!(
                        "unknown route {name:?}; available: {available}"
                    ))
                })?;
            kept.push(self.routes.remove(i));
        }
        self.routes = kept;
        if !names.contains(&DenseRoute::NAME) {
            self.embedder = None;
        }
        Ok(())
    }

    /// Runs every route and fuses; no hit building.
    #[instrument(skip_all, fields(k = request.k))]
    pub fn retrieve(&self, request: &SearchRequest) -> Result<Retrieved, SearchError> {
        request.validate()?;
        let mut timings = Timings::default();
        let started = Instant::now();
        let text_embedding = match &self.embedder {
            Some(e) => e
                .embed_queries(&[QueryInput::Text(request.query.clone())])?
                .pop(),
            None => None,
        };
        timings.embed_ms = ms(started);
        let query = PreparedQuery {
            text: request.query.clone(),
            text_embedding,
        };
        let depth = request.k.max(MIN_ROUTE_DEPTH);
        let mut lists = Vec::with_capacity(self.routes.len());
        for route in &self.routes {
            let started = Instant::now();
            let hits = route.retrieve(&query, depth)?;
            timings
                .routes_ms
                .insert(route.name().to_string(), ms(started));
            debug!(route = route.name(), hits = hits.len(), "route done");
            lists.push(RankedList {
                route: route.name().to_string(),
                hits,
            });
        }
        let started = Instant::now();
        let fused = self.fuser.fuse(&lists, request.k);
        timings.fuse_ms = ms(started);
        Ok(Retrieved {
            lists,
            fused,
            timings,
        })
    }

    /// Runs a search and builds the hits.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        let retrieved = self.retrieve(request)?;
        let started = Instant::now();
        let hits = retrieved
            .fused
            .iter()
            .map(|h| self.hit(h, &request.query))
            .collect();
        let mut timings = retrieved.timings;
        timings.fuse_ms += ms(started);
        Ok(SearchResponse { hits, timings })
    }

    fn hit(&self, h: &FusedHit, query: &str) -> SearchHit {
        let passage = h.passage.and_then(|id| self.store.passage(id));
        SearchHit {
            doc_id: h.page.doc_id.to_string(),
            path: self
                .store
                .document(&h.page.doc_id)
                .map(|d| d.path.clone())
                .unwrap_or_default(),
            page: h.page.page,
            snippet: passage.map(|p| snippet(&p.text, query)).unwrap_or_default(),
            score: h.score,
            routes: h.ranks.clone(),
            passage: passage.map(|p| PassageSpan {
                id: p.id,
                char_start: p.char_start,
                char_end: p.char_end,
            }),
        }
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated() {
        let ok = SearchRequest {
            query: "tables".into(),
            k: 10,
        };
        assert!(ok.validate().is_ok());
        for (query, k, needle) in [
            ("  ", 10, "empty"),
            ("x", 0, "k must be"),
            ("x", MAX_K + 1, "k must be"),
        ] {
            let err = SearchRequest {
                query: query.into(),
                k,
            }
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
            assert!(err.contains(needle), "{query:?} {k}: {err}");
        }
        let long = SearchRequest {
            query: "x".repeat(MAX_QUERY_CHARS + 1),
            k: 1,
        };
        assert!(long.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<SearchRequest, _> = serde_json::from_str(r#"{"query":"a","kk":3}"#);
        assert!(r.is_err());
        let r: SearchRequest = serde_json::from_str(r#"{"query":"a"}"#).unwrap_or(SearchRequest {
            query: String::new(),
            k: 0,
        });
        assert_eq!(r.k, 10);
    }
}
