//! Folio's HTTP service (axum): search, ingestion and documents API, the search page, OpenAPI,
//! metrics, API keys and limits. `docs/http-api.md` is the reference; `GET /openapi.json`
//! is generated from the handlers' types.
//!
//! - [`Server::new`] takes a [`Pipeline`] over an opened index, a [`ServerConfig`] and,
//!   optionally, the [`IngestModels`] that `POST /v1/documents` indexes with.
//! - Handlers never block the async runtime: searches, index writes and file reads run on
//!   tokio's blocking pool. Ingestion runs one task at a time in a worker ([`tasks`]); its
//!   queue is persisted, so tasks survive a restart.
//! - The served index is swapped, without a restart, when a newer generation is published
//!   (by an ingestion task, a delete, or `folio index` in another process).
//! - Every error is JSON, `{"error": {"code", "message"}}`, from one [`ApiError`].

mod auth;
mod documents;
mod error;
mod ingest;
mod limits;
mod metrics;
mod search;
mod state;
pub mod tasks;
mod web;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use folio_search::Pipeline;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::blocking;
use tracing::{info, warn};
use utoipa::OpenApi;

pub use auth::{Access, ApiKeys};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use metrics::ProcessMemory;
pub use state::{IndexHandle, ServerConfig};
pub use tasks::{IngestModels, OpenWriter, Task, TaskState};

use state::AppState;
use tasks::{Ingest, Worker};

/// Largest JSON request body: a query image at its limit, base64-encoded, plus the rest.
pub const MAX_BODY_BYTES: usize = folio_search::MAX_QUERY_IMAGE_BYTES / 3 * 4 + 64 * 1024;

/// The service over one index.
pub struct Server {
    state: AppState,
    worker: Option<Worker>,
}

impl Server {
    /// A server for `pipeline` (over an opened index). With `ingest`, `POST /v1/documents`
    /// indexes with those models (the index's own); its task queue is opened, and tasks
    /// left unfinished by an earlier run are queued again. A `read_only` config ignores
    /// `ingest`.
    pub fn new(
        pipeline: Pipeline,
        config: ServerConfig,
        ingest: Option<IngestModels>,
    ) -> std::io::Result<Self> {
        let embedded = pipeline.collection().index_dir().is_some();
        let (ingest, worker) = match ingest {
            // Ingestion writes an embedded index, or a collection the models can open.
            Some(models) if !config.read_only && (embedded || models.open_writer.is_some()) => {
                let (i, w) = Ingest::open(&config.data_dir, models)?;
                (Some(i), Some(w))
            }
            _ => (None, None),
        };
        let state = AppState {
            in_flight: Arc::new(Semaphore::new(config.max_concurrent)),
            search_turns: search_turns(config.search_threads, embedded),
            config: Arc::new(config),
            index: Arc::new(IndexHandle::new(pipeline)),
            ingest,
            metrics: Arc::default(),
            writer: Arc::default(),
            draining: Arc::new(AtomicBool::new(false)),
        };
        Ok(Server { state, worker })
    }

    /// The open index.
    pub fn index(&self) -> &Arc<IndexHandle> {
        &self.state.index
    }

    /// The router: the API, the page, and the service endpoints.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Starts the ingestion worker and the loop that picks up new index generations, on the
    /// current tokio runtime. Call once.
    pub fn start_background(&mut self) -> Vec<JoinHandle<()>> {
        let mut handles = Vec::new();
        if let (Some(ingest), Some(worker)) = (self.state.ingest.clone(), self.worker.take()) {
            handles.push(tokio::spawn(ingest.run_worker(
                worker,
                self.state.index.clone(),
                self.state.writer.clone(),
            )));
        }
        let index = self.state.index.clone();
        let every = self.state.config.reload_interval;
        handles.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let index = index.clone();
                let _ = tokio::task::spawn_blocking(move || index.reload_if_newer()).await;
            }
        }));
        handles
    }

    /// Serves on `addr` until Ctrl-C or SIGTERM; then `/readyz` turns 503 and requests in
    /// flight finish. An ingestion task cut short runs again at the next start.
    pub async fn serve(self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        self.serve_until(listener, shutdown_signal()).await
    }

    /// Serves on `listener` until `shutdown` resolves, then drains like [`Server::serve`].
    pub async fn serve_until(
        mut self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        if self.state.config.keys.is_open() && !addr.ip().is_loopback() {
            warn!(%addr, "no API key is configured and the server listens beyond loopback: anyone who reaches it can search, upload and delete");
        }
        info!(%addr, "listening");
        let background = self.start_background();
        let draining = self.state.draining.clone();
        let app = self.router();
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.store(true, Ordering::Relaxed);
            })
            .await;
        for h in background {
            h.abort();
        }
        result
    }
}

fn router(state: AppState) -> Router {
    let upload_limit = state.config.max_upload_bytes;
    let api = Router::new()
        .route(
            "/v1/search",
            post(search::search).layer(DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route(
            "/v1/documents",
            get(documents::list)
                .post(ingest::create)
                .layer(DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/v1/documents/{doc_id}",
            get(documents::show).delete(documents::delete),
        )
        .route(
            "/v1/documents/{doc_id}/pages/{page}/{kind}",
            get(documents::page_image),
        )
        .route("/v1/tasks", get(ingest::tasks))
        .route("/v1/tasks/{task_id}", get(ingest::task))
        .route_layer(from_fn_with_state(state.clone(), limits::limit))
        .route_layer(from_fn_with_state(state.clone(), auth::require_key));
    let mut app = Router::new()
        .route("/", get(web::index))
        .route("/api", get(web::explorer))
        .route("/assets/{name}", get(web::assets))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .merge(api)
        .route_layer(from_fn_with_state(state.clone(), metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    if let Some(cors) = cors(&state.config.cors_origins) {
        app = app.layer(cors);
    }
    app.with_state(state)
}

/// CORS for the configured origins (`*`: any); none configured: no CORS headers.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([
                header::HeaderName::from_static("server-timing"),
                header::LOCATION,
            ]),
    )
}

/// What `/healthz` answers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok` while the process serves.
    status: &'static str,
    /// Served index generation (embedded store only).
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    /// Documents in it (absent while the collection cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    documents: Option<usize>,
    /// Passages in it (absent while the collection cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    passages: Option<usize>,
    /// `shard: reason` for each shard that did not answer; their documents are not counted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    missing: Vec<String>,
    /// Where the collection lives: the index directory, or the database URL without its
    /// password.
    store: String,
    /// Routes a search may select.
    routes: Vec<String>,
    /// Re-rankers a search may select.
    rerankers: Vec<String>,
    /// Whether `POST /v1/documents` is available.
    ingest: bool,
    /// Whether this is a read-only query node (no uploads or deletes; it serves what another
    /// process writes).
    read_only: bool,
}

/// Liveness, with the served index's size and what searches may select.
#[utoipa::path(get, path = "/healthz", tag = "service", responses((status = 200, description = "Serving", body = Health)))]
async fn healthz(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    let pipeline = state.index.pipeline();
    // Liveness does not depend on the database: counts are left out while it is down.
    let stats = {
        let p = pipeline.clone();
        blocking("health", move || p.collection().stats().ok()).await?
    };
    let names = |v: Vec<&str>| v.into_iter().map(String::from).collect();
    Ok(Json(Health {
        status: "ok",
        generation: stats.as_ref().and_then(|s| s.generation),
        documents: stats.as_ref().map(|s| s.documents),
        passages: stats.as_ref().map(|s| s.passages),
        missing: stats.map(|s| s.missing).unwrap_or_default(),
        store: pipeline.collection().location(),
        routes: names(pipeline.route_names()),
        rerankers: names(pipeline.reranker_names()),
        ingest: state.ingest.is_some(),
        read_only: state.config.read_only,
    }))
}

/// What `/readyz` answers when ready.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Ready {
    /// `ready`.
    status: &'static str,
    /// Served index generation (embedded store only).
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
    /// Why the newest generation could not be opened (the previous one still serves), or
    /// which shards do not answer (searches still do, without their documents).
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// Readiness: the index is open (a database answers) and the models are loaded; 503 while
/// shutting down or while the database cannot be read.
#[utoipa::path(get, path = "/readyz", tag = "service", responses(
    (status = 200, description = "Ready", body = Ready),
    (status = 503, description = "Shutting down, or the database cannot be read", body = ErrorBody),
))]
async fn readyz(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::Unavailable("shutting down".into()));
    }
    let pipeline = state.index.pipeline();
    let stats = blocking("readiness", move || pipeline.collection().stats())
        .await?
        .map_err(|e| ApiError::Unavailable(format!("the collection cannot be read: {e}")))?;
    Ok(Json(Ready {
        status: "ready",
        generation: stats.generation,
        warning: state.index.reload_error().or_else(|| {
            (!stats.missing.is_empty())
                .then(|| format!("shards not answering: {}", stats.missing.join("; ")))
        }),
    }))
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "service", responses(
    (status = 200, description = "Prometheus text exposition", content_type = "text/plain; version=0.0.4", body = String),
))]
async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    // The collection's counts may come from a database.
    let body = blocking("metrics", move || state.metrics.render(&state)).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response())
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Folio",
        description = "Search visually rich PDFs: text and image queries over BM25, dense \
                       passage, page-image and late-interaction routes, fused and optionally \
                       re-ranked by an LLM."
    ),
    paths(
        search::search,
        documents::list,
        ingest::create,
        documents::show,
        documents::delete,
        documents::page_image,
        ingest::tasks,
        ingest::task,
        healthz,
        readyz,
        metrics_text,
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&BearerKeys),
    tags(
        (name = "search", description = "Text and image search"),
        (name = "documents", description = "Ingestion, documents and page images"),
        (name = "service", description = "Health, readiness and metrics"),
    )
)]
pub struct ApiDoc;

struct BearerKeys;

impl utoipa::Modify for BearerKeys {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A search key (reads) or an admin key (writes), when the server has keys",
                    ))
                    .build(),
            ),
        );
    }
}

async fn openapi_json() -> Response {
    match ApiDoc::openapi().to_json() {
        Ok(json) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            json,
        )
            .into_response(),
        Err(e) => {
            ApiError::Internal(format!("rendering the OpenAPI document: {e}")).into_response()
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    info!("shutting down");
}
/// The turns searches take ([`ServerConfig::search_threads`]). Measured on an embedded
/// index (2 cores, 16 closed-loop clients, cached query embeddings): unlimited, 696 answers/s
/// with p99 79 ms; two turns a CPU, 743/s with p99 35 ms, and half the peak memory at 64
/// clients, since 64 searches no longer run side by side.
fn search_turns(threads: Option<usize>, embedded: bool) -> Option<Arc<Semaphore>> {
    let turns = match threads {
        Some(n) => n,
        None if embedded => {
            2 * std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        }
        None => 0,
    };
    (turns > 0).then(|| Arc::new(Semaphore::new(turns)))
}

#[cfg(test)]
mod tests {
    use super::search_turns;

    #[test]
    fn search_turns_follow_the_setting_and_the_backend() {
        let permits =
            |t: Option<usize>, embedded| search_turns(t, embedded).map(|s| s.available_permits());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(permits(None, true), Some(2 * cpus));
        assert_eq!(permits(None, false), None);
        assert_eq!(permits(Some(0), true), None);
        assert_eq!(permits(Some(3), false), Some(3));
    }
}
