//! Retrieval routes, fusion and the query pipeline: a validated request goes in, fused pages
//! with snippets and per-route provenance come out.
//!
//! The pipeline: validate the request, embed the query once per model a route needs (text
//! for the dense route; text and/or image for the page and late-interaction routes), run each
//! route that can answer it for the top pages, fuse with [`Rrf`] (k = 60), and build the hits
//! from the store (document path, page, snippet of the best passage, rank in every route).

mod defense;
mod fusion;
mod query_cache;
mod query_image;
mod rerank;
mod routes;
mod snippet;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{
    BBox, Candidate, EmbedError, Embedder, Embedding, EmbeddingKind, Filter, FusedHit, Fuser,
    MAX_K, PageEmbedder, PageImage, PreparedQuery, QueryInput, RankedList, Reranker, RetrieveError,
    Route, VisualQuery,
};
use folio_store::{Collection, StoreError};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::{debug, instrument, warn};

pub use defense::{DEFENSES, Defense, DefensePolicy, InjectionPatterns, apply_policy, damp};
pub use folio_core::{Detector, Suspicion};
pub use fusion::{Rrf, Weighted};
pub use query_cache::CachedEmbedder;
pub use query_image::{MAX_QUERY_IMAGE_BYTES, MAX_QUERY_IMAGE_SIDE, decode_query_image};
pub use rerank::RerankOutcome;
pub use routes::{Bm25Route, DenseRoute, LateRoute, PageRoute};
pub use snippet::{SNIPPET_CHARS, highlights, snippet};

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
    /// Reading the collection failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A search request, as the CLI and the HTTP API take it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// Free-text query; may be empty when `image` is given.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(example = "revenue by region in the third quarter")
    )]
    pub query: String,
    /// A query image (PNG or JPEG; base64 in JSON), searched by the page-image routes.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "query_image::base64_bytes"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub image: Option<Vec<u8>>,
    /// Only documents that pass this filter (collection, tags, path prefix, ids, dates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// Number of pages to return, 1..=1000.
    #[serde(default = "default_k")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000, example = 10))]
    pub k: usize,
    /// Pages skipped before the `k` returned (paging); `offset + k` is at most 1000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(maximum = 999))]
    pub offset: usize,
    /// Routes to run, a subset of the pipeline's (`bm25`, `dense`, `page`, `late`); all of
    /// them when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<String>>,
    /// How the routes' lists are fused: `rrf` (default) or `weighted`.
    #[serde(default = "default_fusion")]
    pub fusion: String,
    /// Ranking-manipulation defense: `none`, `detect` (flag instruction-like candidates and
    /// apply the server's policy), `harden` (hardened re-ranker prompt, damped re-ranking) or
    /// `all`.
    #[serde(default = "default_defense")]
    pub defense: String,
    /// Re-ranking stage: `none` (default), `pointwise`, `listwise` or `vlm`.
    #[serde(default = "default_rerank")]
    pub rerank: String,
    /// How many fused pages the re-ranker reads, 1..=100.
    #[serde(default = "default_rerank_depth")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 100))]
    pub rerank_depth: usize,
    /// Time budget of the re-ranker in milliseconds; past it the fused order is returned with
    /// `degraded: true`.
    #[serde(default = "default_rerank_budget_ms")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 600_000))]
    pub rerank_budget_ms: u64,
}

fn default_k() -> usize {
    10
}
fn default_rerank() -> String {
    NO_RERANK.into()
}
fn default_fusion() -> String {
    FUSERS[0].into()
}
fn default_defense() -> String {
    DEFENSES[0].into()
}
fn default_rerank_depth() -> usize {
    20
}
fn default_rerank_budget_ms() -> u64 {
    30_000
}

/// The re-ranking stage name that means "fused order".
pub const NO_RERANK: &str = "none";
/// Largest accepted `rerank_depth`.
pub const MAX_RERANK_DEPTH: usize = 100;
/// Largest accepted `rerank_budget_ms` (10 minutes).
pub const MAX_RERANK_BUDGET_MS: u64 = 600_000;

impl SearchRequest {
    /// A request for the top `k` pages, without re-ranking.
    pub fn new(query: impl Into<String>, k: usize) -> Self {
        SearchRequest {
            query: query.into(),
            image: None,
            filter: None,
            k,
            offset: 0,
            routes: None,
            fusion: default_fusion(),
            defense: default_defense(),
            rerank: default_rerank(),
            rerank_depth: default_rerank_depth(),
            rerank_budget_ms: default_rerank_budget_ms(),
        }
    }

    /// True when a re-ranking stage is requested.
    pub fn reranks(&self) -> bool {
        self.rerank != NO_RERANK
    }

    /// True when the request has query text.
    pub fn has_text(&self) -> bool {
        !self.query.trim().is_empty()
    }

    /// Checks the request; the error message names the field at fault.
    pub fn validate(&self) -> Result<(), SearchError> {
        if !self.has_text() && self.image.is_none() {
            return Err(SearchError::InvalidRequest(
                "query must not be empty (give query text, an image, or both)".into(),
            ));
        }
        if let Some(image) = &self.image
            && image.len() > MAX_QUERY_IMAGE_BYTES
        {
            return Err(SearchError::InvalidRequest(format!(
                "image is {} bytes; the limit is {MAX_QUERY_IMAGE_BYTES}",
                image.len()
            )));
        }
        if self.reranks() && !self.has_text() {
            return Err(SearchError::InvalidRequest(
                "re-ranking reads the query text: give query text, or rerank \"none\"".into(),
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
        if self.offset > MAX_K - self.k {
            return Err(SearchError::InvalidRequest(format!(
                "offset + k must be at most {MAX_K}, got {} + {}",
                self.offset, self.k
            )));
        }
        if !FUSERS.contains(&self.fusion.as_str()) {
            return Err(SearchError::InvalidRequest(format!(
                "unknown fusion {:?}; available: {}",
                self.fusion,
                FUSERS.join(", ")
            )));
        }
        Defense::parse(&self.defense)?;
        if let Some(routes) = &self.routes
            && routes.is_empty()
        {
            return Err(SearchError::InvalidRequest(
                "routes must name at least one route (or be left out for all)".into(),
            ));
        }
        if self.rerank_depth == 0 || self.rerank_depth > MAX_RERANK_DEPTH {
            return Err(SearchError::InvalidRequest(format!(
                "rerank_depth must be between 1 and {MAX_RERANK_DEPTH}, got {}",
                self.rerank_depth
            )));
        }
        if self.rerank_budget_ms == 0 || self.rerank_budget_ms > MAX_RERANK_BUDGET_MS {
            return Err(SearchError::InvalidRequest(format!(
                "rerank_budget_ms must be between 1 and {MAX_RERANK_BUDGET_MS}, got {}",
                self.rerank_budget_ms
            )));
        }
        Ok(())
    }
}

/// Where the hit's passage sits in its page's text and on the page.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassageSpan {
    /// Store-local passage id.
    pub id: u64,
    /// Start offset in the page text, in chars.
    pub char_start: u32,
    /// End offset (exclusive), in chars.
    pub char_end: u32,
    /// The regions of the page the passage covers, for highlighting on the page image; empty
    /// when the index has no layout for the page.
    #[serde(default)]
    pub boxes: Vec<BBox>,
}

/// Whether a page has extractable text.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextLayer {
    /// The page has text: the text routes can find it, and it has a snippet.
    Text,
    /// No text (a scan, a picture): only the page-image routes can find it.
    None,
}

/// One result page.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// Document id (content hash prefix).
    pub doc_id: String,
    /// The document's title (its file name without the extension).
    pub title: String,
    /// Path the document was indexed from.
    pub path: String,
    /// 1-based page number.
    pub page: u32,
    /// A window of the best passage around the query terms.
    pub snippet: String,
    /// `[start, end)` char offsets in `snippet` of the words that match the query's terms.
    #[serde(default)]
    pub highlights: Vec<[u32; 2]>,
    /// Whether the page has text (`none`: a scanned page, found by its image).
    pub text_layer: TextLayer,
    /// Fused score.
    pub score: f64,
    /// 1-based rank of this page in each route that returned it.
    pub routes: BTreeMap<String, usize>,
    /// The best passage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passage: Option<PassageSpan>,
    /// 1-based rank after fusion, before re-ranking.
    pub fused_rank: usize,
    /// Re-ranker score, when this page was re-ranked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_score: Option<f64>,
    /// Why a detector flagged this page's text (with `defense` detect or all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspicion: Option<Suspicion>,
}

/// Time spent in each stage, in milliseconds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Embedding the query.
    pub embed_ms: f64,
    /// Each route.
    pub routes_ms: BTreeMap<String, f64>,
    /// Fusion and building hits.
    pub fuse_ms: f64,
    /// The re-ranking stage.
    #[serde(default)]
    pub rerank_ms: f64,
    /// The detectors of the `detect` defense.
    #[serde(default)]
    pub defense_ms: f64,
}

/// The answer to a search.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResponse {
    /// Pages, best first, from rank `offset + 1`.
    pub hits: Vec<SearchHit>,
    /// The request's `offset`.
    #[serde(default)]
    pub offset: usize,
    /// The request's `k`.
    #[serde(default)]
    pub k: usize,
    /// The re-ranker that ordered the hits (`none` when none ran).
    pub reranker: String,
    /// True when the requested re-ranker failed or ran out of time and the fused order was
    /// returned instead, or when part of the collection (a shard) did not answer.
    pub degraded: bool,
    /// The parts of the collection that did not answer (`shard: reason`), when any did not:
    /// the hits come from the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Why the re-ranker failed, when `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_error: Option<String>,
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
    /// The parts of the collection that did not answer some route (`shard: reason`).
    pub missing: Vec<String>,
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

/// What [`Pipeline::defend_and_rerank`] made of a fused list.
#[derive(Debug, Clone)]
pub struct Defended {
    /// The fused list after the defense policy (flagged pages demoted or dropped).
    pub fused: Vec<FusedHit>,
    /// Each page's suspicion, if a detector flagged it (parallel to `fused`).
    pub suspicions: Vec<Option<Suspicion>>,
    /// The final order over `fused`, with re-ranker scores and any re-ranking error.
    pub outcome: RerankOutcome,
    /// The re-ranker that ran (`none` when none did).
    pub reranker: String,
    /// Time in the detectors.
    pub defense_ms: f64,
    /// Time in the re-ranker.
    pub rerank_ms: f64,
}

/// Runs searches over one collection (an opened index generation, a database, shards).
pub struct Pipeline {
    collection: Arc<dyn Collection>,
    embedder: Option<Arc<dyn Embedder>>,
    /// The page route's model.
    page_embedder: Option<Arc<dyn PageEmbedder>>,
    /// The late-interaction route's model.
    late_embedder: Option<Arc<dyn PageEmbedder>>,
    routes: Vec<Box<dyn Route>>,
    /// Re-rankers by request name, or why one cannot run.
    rerankers: BTreeMap<String, Result<Arc<dyn Reranker>, String>>,
    /// Hardened-prompt re-rankers by request name, for `defense` harden and all.
    hardened: BTreeMap<String, Arc<dyn Reranker>>,
    /// Detectors of the `detect` defense.
    detectors: Vec<Arc<dyn Detector>>,
    /// What happens to flagged candidates.
    defense_policy: DefensePolicy,
}

impl Pipeline {
    /// The default pipeline: BM25, plus the dense route when an embedder is given, fused by
    /// RRF. The embedder must be the one the index was built with.
    pub fn new(
        collection: Arc<dyn Collection>,
        embedder: Option<Arc<dyn Embedder>>,
    ) -> Result<Self, SearchError> {
        let per_page = routes::overfetch(collection.as_ref());
        let mut routes: Vec<Box<dyn Route>> =
            vec![Box::new(Bm25Route::new(collection.clone(), per_page))];
        if let Some(e) = &embedder {
            let built = collection.models().text;
            let given = e.info();
            if !built.same_model(given) {
                return Err(SearchError::Setup(format!(
                    "index {} was built with embedder {} but {} ({}-d) was loaded",
                    collection.location(),
                    built.describe(),
                    given.id,
                    given.dim
                )));
            }
            routes.push(Box::new(DenseRoute::new(collection.clone(), per_page)));
        }
        Ok(Pipeline {
            collection,
            embedder,
            page_embedder: None,
            late_embedder: None,
            routes,
            rerankers: BTreeMap::new(),
            hardened: BTreeMap::new(),
            detectors: vec![Arc::new(InjectionPatterns)],
            defense_policy: DefensePolicy::default(),
        })
    }

    /// The same pipeline (routes, models, re-rankers) over another generation of the index,
    /// checked against it like a new one.
    pub fn reopened(&self, collection: Arc<dyn Collection>) -> Result<Pipeline, SearchError> {
        let mut p = Pipeline::new(collection, self.embedder.clone())?;
        for e in [&self.page_embedder, &self.late_embedder]
            .into_iter()
            .flatten()
        {
            p.add_page_embedder(e.clone())?;
        }
        p.rerankers = self.rerankers.clone();
        p.hardened = self.hardened.clone();
        p.detectors = self.detectors.clone();
        p.defense_policy = self.defense_policy;
        p.keep_routes(&self.route_names())?;
        Ok(p)
    }

    /// Adds the page route (a single-vector model) or the late-interaction route (a
    /// multi-vector model) with the model that embeds its queries, which must be the one the
    /// index's route was built with.
    pub fn add_page_embedder(
        &mut self,
        embedder: Arc<dyn PageEmbedder>,
    ) -> Result<(), SearchError> {
        let models = self.collection.models();
        let (built, name) = match embedder.info().kind {
            EmbeddingKind::Single => (&models.page, PageRoute::NAME),
            EmbeddingKind::Multi => (&models.late, LateRoute::NAME),
        };
        let given = embedder.info();
        match built {
            None => {
                return Err(SearchError::Setup(format!(
                    "index {} has no {name} route for model {} ({}-d); index with it first",
                    self.collection.location(),
                    given.id,
                    given.dim
                )));
            }
            Some(b) if !b.same_model(given) => {
                return Err(SearchError::Setup(format!(
                    "the {name} route of index {} was built with {} but {} ({}-d) was loaded",
                    self.collection.location(),
                    b.describe(),
                    given.id,
                    given.dim
                )));
            }
            Some(_) => {}
        }
        self.routes.retain(|r| r.name() != name);
        if name == PageRoute::NAME {
            self.page_embedder = Some(embedder);
            self.routes
                .push(Box::new(PageRoute::new(self.collection.clone())));
        } else {
            self.late_embedder = Some(embedder);
            self.routes
                .push(Box::new(LateRoute::new(self.collection.clone())));
        }
        Ok(())
    }

    /// Makes `reranker` available to requests under `name` (`pointwise`, `listwise`, ...).
    pub fn add_reranker(&mut self, name: &str, reranker: Arc<dyn Reranker>) {
        self.rerankers.insert(name.to_string(), Ok(reranker));
    }

    /// Makes `reranker` (the same model with its hardened prompt) the one requests for `name`
    /// get under the `harden` and `all` defenses.
    pub fn add_hardened_reranker(&mut self, name: &str, reranker: Arc<dyn Reranker>) {
        self.hardened.insert(name.to_string(), reranker);
    }

    /// Adds a detector to the `detect` defense (the injection-pattern detector is built in).
    pub fn add_detector(&mut self, detector: Arc<dyn Detector>) {
        self.detectors.push(detector);
    }

    /// Sets what happens to flagged candidates (default: demote).
    pub fn set_defense_policy(&mut self, policy: DefensePolicy) {
        self.defense_policy = policy;
    }

    /// Records why the re-ranker `name` cannot run, so requests for it get that reason.
    pub fn add_unavailable_reranker(&mut self, name: &str, reason: &str) {
        self.rerankers
            .insert(name.to_string(), Err(reason.to_string()));
    }

    /// Names a request may put in `rerank`.
    pub fn reranker_names(&self) -> Vec<&str> {
        std::iter::once(NO_RERANK)
            .chain(
                self.rerankers
                    .iter()
                    .filter(|(_, r)| r.is_ok())
                    .map(|(n, _)| n.as_str()),
            )
            .collect()
    }

    /// The re-ranker a request names; with `harden`, its hardened-prompt twin.
    fn reranker(
        &self,
        name: &str,
        harden: bool,
    ) -> Result<Option<&Arc<dyn Reranker>>, SearchError> {
        if name == NO_RERANK {
            return Ok(None);
        }
        if harden && self.rerankers.get(name).is_some_and(|r| r.is_ok()) {
            return self.hardened.get(name).map(Some).ok_or_else(|| {
                SearchError::InvalidRequest(format!(
                    "re-ranker {name:?} has no hardened prompt loaded, so defense harden \
                     cannot run with it"
                ))
            });
        }
        match self.rerankers.get(name) {
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(reason)) => Err(SearchError::InvalidRequest(format!(
                "re-ranker {name:?} is unavailable: {reason}"
            ))),
            None => Err(SearchError::InvalidRequest(format!(
                "re-ranker {name:?} is not loaded here; available: {}",
                self.reranker_names().join(", ")
            ))),
        }
    }

    /// The collection this pipeline reads.
    pub fn collection(&self) -> &dyn Collection {
        self.collection.as_ref()
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
        if !names.contains(&PageRoute::NAME) {
            self.page_embedder = None;
        }
        if !names.contains(&LateRoute::NAME) {
            self.late_embedder = None;
        }
        Ok(())
    }

    /// The routes a request selects (all by default), in pipeline order.
    fn selected_routes(&self, request: &SearchRequest) -> Result<Vec<&dyn Route>, SearchError> {
        let Some(names) = &request.routes else {
            return Ok(self.routes.iter().map(|r| r.as_ref()).collect());
        };
        if let Some(unknown) = names
            .iter()
            .find(|n| !self.routes.iter().any(|r| r.name() == n.as_str()))
        {
            return Err(SearchError::InvalidRequest(format!(
                "route {unknown:?} is not served here; available: {}",
                self.route_names().join(", ")
            )));
        }
        Ok(self
            .routes
            .iter()
            .map(|r| r.as_ref())
            .filter(|r| names.iter().any(|n| n == r.name()))
            .collect())
    }

    /// Runs the selected routes, `offset + k` pages deep, and fuses with the requested fuser;
    /// no hit building.
    #[instrument(skip_all, fields(k = request.k))]
    pub fn retrieve(&self, request: &SearchRequest) -> Result<Retrieved, SearchError> {
        request.validate()?;
        let fuser = fuser_by_name(&request.fusion)?;
        let selected = self.selected_routes(request)?;
        let mut timings = Timings::default();
        let started = Instant::now();
        let (query, mut missing) = self.prepare(request, &selected)?;
        timings.embed_ms = ms(started);
        let wanted = request.offset + request.k;
        let depth = wanted.max(MIN_ROUTE_DEPTH);
        let mut lists = Vec::with_capacity(selected.len());
        let answering: Vec<&dyn Route> = selected
            .iter()
            .copied()
            .filter(|r| r.accepts(&query))
            .collect();
        if answering.is_empty() {
            let names: Vec<&str> = selected.iter().map(|r| r.name()).collect();
            return Err(SearchError::InvalidRequest(format!(
                "no selected route ({}) can answer {}",
                names.join(", "),
                match (request.has_text(), request.image.is_some()) {
                    (false, _) =>
                        "an image-only query: it needs the page route (GME-style page embedder)",
                    (true, true) => "this query",
                    (true, false) => "a text query",
                }
            )));
        }
        for route in answering {
            let started = Instant::now();
            let found = route.retrieve(&query, depth)?;
            timings
                .routes_ms
                .insert(route.name().to_string(), ms(started));
            debug!(route = route.name(), hits = found.hits.len(), "route done");
            for m in found.missing {
                warn!(route = route.name(), missing = %m, "part of the collection did not answer");
                if !missing.contains(&m) {
                    missing.push(m);
                }
            }
            lists.push(RankedList {
                route: route.name().to_string(),
                hits: found.hits,
            });
        }
        let started = Instant::now();
        let fused = fuser.fuse(&lists, wanted);
        timings.fuse_ms = ms(started);
        Ok(Retrieved {
            lists,
            fused,
            missing,
            timings,
        })
    }

    /// Embeds the query once for each model a selected route needs: text for the dense
    /// route; text and/or image for the page-image routes (the late route's model skips image
    /// queries when it takes text only). Resolves the request's filter to documents; the
    /// parts of the collection that could not say which they hold come back with the query.
    fn prepare(
        &self,
        request: &SearchRequest,
        selected: &[&dyn Route],
    ) -> Result<(PreparedQuery, Vec<String>), SearchError> {
        let runs = |name: &str| selected.iter().any(|r| r.name() == name);
        let image: Option<PageImage> = request
            .image
            .as_deref()
            .map(decode_query_image)
            .transpose()
            .map_err(SearchError::InvalidRequest)?;
        let text = request.has_text().then(|| request.query.clone());
        let text_embedding = match (&self.embedder, &text) {
            (Some(e), Some(t)) if runs(DenseRoute::NAME) => {
                e.embed_queries(&[QueryInput::Text(t.clone())])?.pop()
            }
            _ => None,
        };
        let visual = VisualQuery {
            text: text.clone(),
            image,
        };
        let embed_visual = |model: &Option<Arc<dyn PageEmbedder>>,
                            route: &str|
         -> Result<Option<Embedding>, EmbedError> {
            match model {
                Some(m) if runs(route) && (visual.image.is_none() || m.accepts_image_queries()) => {
                    Ok(m.embed_visual_queries(std::slice::from_ref(&visual))?.pop())
                }
                _ => Ok(None),
            }
        };
        let mut missing = Vec::new();
        let allowed = match request.filter.as_ref().filter(|f| !f.is_empty()) {
            Some(f) => {
                let selection = self.collection.select(f)?;
                missing = selection.missing;
                Some(Arc::new(selection.docs))
            }
            None => None,
        };
        let query = PreparedQuery {
            text: request.query.clone(),
            text_embedding,
            page_embedding: embed_visual(&self.page_embedder, PageRoute::NAME)?,
            late_embedding: embed_visual(&self.late_embedder, LateRoute::NAME)?,
            allowed,
        };
        Ok((query, missing))
    }

    /// Runs a search: retrieval, fusion, the request's defense and re-ranker over the top
    /// `rerank_depth` fused pages (fused order and `degraded` if it fails), and the hits.
    pub fn search(&self, request: &SearchRequest) -> Result<SearchResponse, SearchError> {
        request.validate()?;
        let defense = Defense::parse(&request.defense)?;
        let reranks = self.reranker(&request.rerank, defense.harden)?.is_some();
        let mut fused_request = request.clone();
        if reranks {
            // Fuse deep enough for the re-ranker, then page over its order.
            fused_request.offset = 0;
            fused_request.k = (request.offset + request.k).max(request.rerank_depth);
        }
        let retrieved = self.retrieve(&fused_request)?;
        let mut timings = retrieved.timings;
        let mut d = self.defend_and_rerank(
            &request.query,
            retrieved.fused,
            &request.rerank,
            defense,
            request.rerank_depth,
            Duration::from_millis(request.rerank_budget_ms),
        )?;
        timings.defense_ms = d.defense_ms;
        timings.rerank_ms = d.rerank_ms;

        let started = Instant::now();
        let hits = d
            .outcome
            .order
            .iter()
            .skip(request.offset)
            .take(request.k)
            .map(|&i| {
                let mut hit = self.hit(&d.fused[i], i + 1, d.outcome.scores[i], &request.query);
                hit.suspicion = d.suspicions[i].take();
                hit
            })
            .collect();
        timings.fuse_ms += ms(started);
        Ok(SearchResponse {
            hits,
            offset: request.offset,
            k: request.k,
            reranker: d.reranker,
            degraded: d.outcome.error.is_some() || !retrieved.missing.is_empty(),
            missing: retrieved.missing,
            rerank_error: d.outcome.error,
            timings,
        })
    }

    /// The stages after fusion, as [`Pipeline::search`] runs them: with `defense.detect`, the
    /// detectors over every fused page's passage and the defense policy; then the re-ranker
    /// `rerank` (a name as in requests; its hardened twin under `defense.harden`) over the top
    /// `depth` (only unflagged pages when flagged ones are demoted), within `budget`; and with
    /// `defense.harden`, the damping of its order. The retrieval evaluation calls it to
    /// measure what a defense costs on clean data.
    pub fn defend_and_rerank(
        &self,
        query: &str,
        mut fused: Vec<FusedHit>,
        rerank: &str,
        defense: Defense,
        mut depth: usize,
        budget: Duration,
    ) -> Result<Defended, SearchError> {
        let reranker = self.reranker(rerank, defense.harden)?;
        let started = Instant::now();
        let mut suspicions = vec![None; fused.len()];
        if defense.detect {
            suspicions = fused.iter().map(|h| self.inspect(h)).collect();
            (fused, suspicions) = defense::apply_policy(self.defense_policy, fused, suspicions);
        }
        let defense_ms = ms(started);
        // Demoted candidates stay below the rest: the re-ranker sees only the unflagged head.
        if self.defense_policy == DefensePolicy::Demote {
            depth = depth.min(suspicions.iter().filter(|s| s.is_none()).count());
        }

        let started = Instant::now();
        let mut outcome = match reranker {
            Some(r) if depth > 0 => self.rerank_fused(r.as_ref(), query, &fused, depth, budget),
            _ => RerankOutcome::fused(fused.len(), None),
        };
        if defense.harden && reranker.is_some() && outcome.error.is_none() {
            let head = depth.min(outcome.order.len());
            defense::damp(&mut outcome.order[..head]);
        }
        Ok(Defended {
            fused,
            suspicions,
            outcome,
            reranker: reranker.map_or(NO_RERANK, |r| r.name()).to_string(),
            defense_ms,
            rerank_ms: ms(started),
        })
    }

    /// Re-ranks the top `depth` of `fused` with `reranker` over their best passages' text,
    /// within `budget`; on failure the fused order, with the reason.
    pub fn rerank_fused(
        &self,
        reranker: &dyn Reranker,
        query: &str,
        fused: &[FusedHit],
        depth: usize,
        budget: Duration,
    ) -> RerankOutcome {
        // Only the re-ranked head needs its passage text.
        let candidates: Vec<Candidate> = fused
            .iter()
            .take(depth)
            .map(|h| Candidate {
                hit: h.clone(),
                text: self.passage_of(h).map(|p| p.text).unwrap_or_default(),
            })
            .collect();
        rerank::rerank(reranker, query, &candidates, fused.len(), budget)
    }

    /// The first detector's suspicion of a hit's passage text, if any flags it.
    fn inspect(&self, h: &FusedHit) -> Option<Suspicion> {
        let text = self.passage_of(h)?.text;
        self.detectors.iter().find_map(|d| d.inspect(&text))
    }

    /// The passage that stands for a hit: the one a text route matched, else the page's
    /// first (page-image routes match no passage). A collection that fails to answer leaves
    /// the hit without text (logged).
    fn passage_of(&self, h: &FusedHit) -> Option<folio_core::Passage> {
        let found = match h.passage {
            Some(id) => self.collection.passage(id),
            None => self.collection.first_passage(&h.page),
        };
        found
            .inspect_err(|e| warn!(page = %h.page, error = %e, "cannot read a hit's passage"))
            .ok()
            .flatten()
    }

    fn hit(
        &self,
        h: &FusedHit,
        fused_rank: usize,
        rerank_score: Option<f64>,
        query: &str,
    ) -> SearchHit {
        let passage = self.passage_of(h);
        let path = self
            .collection
            .document(&h.page.doc_id)
            .inspect_err(
                |e| warn!(doc = %h.page.doc_id, error = %e, "cannot read a hit's document"),
            )
            .ok()
            .flatten()
            .map(|d| d.path)
            .unwrap_or_default();
        let snippet = passage
            .as_ref()
            .map(|p| snippet(&p.text, query))
            .unwrap_or_default();
        SearchHit {
            fused_rank,
            rerank_score,
            doc_id: h.page.doc_id.to_string(),
            title: title_of(&path),
            path,
            page: h.page.page,
            highlights: highlights(&snippet, query),
            snippet,
            // A page without text has no passage to stand for it.
            text_layer: match passage {
                Some(_) => TextLayer::Text,
                None => TextLayer::None,
            },
            score: h.score,
            suspicion: None,
            routes: h.ranks.clone(),
            passage: passage.map(|p| PassageSpan {
                id: p.id,
                char_start: p.char_start,
                char_end: p.char_end,
                boxes: p.boxes,
            }),
        }
    }
}

/// A document's title as shown: its file name without the `.pdf` extension.
pub fn title_of(path: &str) -> String {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    match name.len().checked_sub(4) {
        Some(cut) if name.is_char_boundary(cut) && name[cut..].eq_ignore_ascii_case(".pdf") => {
            name[..cut].to_string()
        }
        _ => name.to_string(),
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
        let ok = SearchRequest::new("tables", 10);
        assert!(ok.validate().is_ok());
        for (query, k, needle) in [
            ("  ", 10, "empty"),
            ("x", 0, "k must be"),
            ("x", MAX_K + 1, "k must be"),
        ] {
            let err = SearchRequest::new(query, k)
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(needle), "{query:?} {k}: {err}");
        }
        let long = SearchRequest::new("x".repeat(MAX_QUERY_CHARS + 1), 1);
        assert!(long.validate().is_err());
        let mut deep = SearchRequest::new("x", 1);
        deep.rerank_depth = MAX_RERANK_DEPTH + 1;
        assert!(deep.validate().is_err());
        deep.rerank_depth = 5;
        deep.rerank_budget_ms = 0;
        assert!(deep.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<SearchRequest, _> = serde_json::from_str(r#"{"query":"a","kk":3}"#);
        assert!(r.is_err());
        let r: SearchRequest =
            serde_json::from_str(r#"{"query":"a"}"#).unwrap_or_else(|_| SearchRequest::new("", 0));
        assert_eq!(r, SearchRequest::new("a", 10));
        assert!(!r.reranks());
    }
}
