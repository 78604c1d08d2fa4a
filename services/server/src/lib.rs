//! Folio's HTTP API (axum).
//!
//! - `POST /v1/search` with `{"query": "...", "k": 10}` answers the same hits as
//!   `folio search --json`. An `"image"` field (a PNG or JPEG, base64) makes it an image
//!   query, alone or with text, for the page-image routes.
//! - `GET /v1/documents/{doc_id}/pages/{page}/image` and `.../thumbnail` answer the stored
//!   PNG of a page (`folio index` keeps them unless `--no-page-images`).
//! - `GET /healthz` answers `{"status": "ok"}` with the open index's size.
//!
//! Every error is JSON, `{"error": {"code", "message"}}`, with a status that says whose fault
//! it is ([`ApiError`]). Searches run on tokio's blocking pool: embedding is CPU-bound.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Json, Path, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use folio_core::{DocId, PageKey};
use folio_search::{Pipeline, SearchError, SearchRequest, SearchResponse};
use folio_store::PageImageKind;
use serde::Serialize;
use serde_json::json;
use thiserror::Error;
use tracing::{error, info};

/// An API error; each variant maps to one status code and one stable `code` string.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The request body was refused: not JSON, wrong shape, wrong content type, too large.
    #[error("{message}")]
    Rejected {
        /// 400, 413 or 415.
        status: StatusCode,
        /// What is wrong, naming the field where known.
        message: String,
    },
    /// No such endpoint, or the wrong method for it.
    #[error("{message}")]
    NoRoute {
        /// 404 or 405.
        status: StatusCode,
        /// What is wrong.
        message: String,
    },
    /// The request is well-formed but invalid (empty query, k out of range, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// The service failed; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Rejected { status, .. } => (
                *status,
                match *status {
                    StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "bad_json",
                },
            ),
            ApiError::NoRoute { status, .. } => (
                *status,
                if *status == StatusCode::METHOD_NOT_ALLOWED {
                    "method_not_allowed"
                } else {
                    "not_found"
                },
            ),
            ApiError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::InvalidRequest(m) => ApiError::InvalidRequest(m),
            e @ (SearchError::Setup(_) | SearchError::Embed(_) | SearchError::Retrieve(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        // Syntax and shape errors (axum says 400 and 422) are both a bad request here; a wrong
        // content type (415) and a body over the limit (413) keep their own status.
        let status = match r.status() {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::Rejected {
            status,
            message: r.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(detail) = &self {
            error!(%detail, "request failed");
        }
        let body = json!({"error": {"code": code, "message": self.to_string()}});
        (status, Json(body)).into_response()
    }
}

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
}

/// Largest request body: a query image at its limit, base64-encoded, plus the rest.
pub const MAX_BODY_BYTES: usize = folio_search::MAX_QUERY_IMAGE_BYTES / 3 * 4 + 64 * 1024;

/// The API router over one pipeline.
pub fn app(pipeline: Arc<Pipeline>) -> Router {
    Router::new()
        .route("/v1/search", post(search))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .route(
            "/v1/documents/{doc_id}/pages/{page}/{kind}",
            get(page_image),
        )
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState { pipeline })
}

async fn search(
    State(state): State<AppState>,
    body: Result<Json<SearchRequest>, JsonRejection>,
) -> Result<Json<SearchResponse>, ApiError> {
    let Json(request) = body?;
    let pipeline = state.pipeline.clone();
    let response = tokio::task::spawn_blocking(move || pipeline.search(&request))
        .await
        .map_err(|e| ApiError::Internal(format!("search task failed: {e}")))??;
    Ok(Json(response))
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    generation: u64,
    documents: usize,
    passages: usize,
    routes: Vec<String>,
    rerankers: Vec<String>,
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    let store = state.pipeline.store();
    Json(Health {
        status: "ok",
        generation: store.manifest().generation,
        documents: store.documents().len(),
        passages: store.passage_count(),
        routes: state
            .pipeline
            .route_names()
            .into_iter()
            .map(String::from)
            .collect(),
        rerankers: state
            .pipeline
            .reranker_names()
            .into_iter()
            .map(String::from)
            .collect(),
    })
}

/// A stored page image or thumbnail, as PNG.
async fn page_image(
    State(state): State<AppState>,
    Path((doc_id, page, kind)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let missing = |message: String| ApiError::NoRoute {
        status: StatusCode::NOT_FOUND,
        message,
    };
    let kind = match kind.as_str() {
        "image" => PageImageKind::Page,
        "thumbnail" => PageImageKind::Thumbnail,
        other => {
            return Err(missing(format!(
                "no page resource {other:?}; use image or thumbnail"
            )));
        }
    };
    let page: u32 = page
        .parse()
        .map_err(|_| missing(format!("page {page:?} is not a page number")))?;
    let store = state.pipeline.store();
    let doc = store
        .document(&DocId(doc_id.clone()))
        .ok_or_else(|| missing(format!("no document {doc_id} in this index")))?;
    if page == 0 || page > doc.pages {
        return Err(missing(format!(
            "document {doc_id} has pages 1 to {}, not {page}",
            doc.pages
        )));
    }
    let key = PageKey {
        doc_id: doc.doc_id.clone(),
        page,
    };
    let path = store.page_image(&key, kind).ok_or_else(|| {
        missing(format!(
            "no stored image for page {page} of {doc_id} (indexed with --no-page-images, or \
             the page did not render)"
        ))
    })?;
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await
        .map_err(|e| ApiError::Internal(format!("image read task failed: {e}")))?
        .map_err(|e| ApiError::Internal(format!("reading a page image: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "image/png")], bytes).into_response())
}

async fn not_found() -> ApiError {
    ApiError::NoRoute {
        status: StatusCode::NOT_FOUND,
        message: "no such endpoint".into(),
    }
}

async fn method_not_allowed() -> ApiError {
    ApiError::NoRoute {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed for this endpoint".into(),
    }
}

/// Serves the API on `addr` until Ctrl-C or SIGTERM.
pub async fn serve(pipeline: Arc<Pipeline>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(addr = %listener.local_addr()?, "listening");
    axum::serve(listener, app(pipeline))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

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
