//! `POST /v1/search`: a JSON request, or a multipart one with the image as a file part.

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header::HeaderValue;
use axum::response::{IntoResponse, Response};
use folio_core::{DocId, PageKey};
use folio_search::{SearchError, SearchHit, SearchRequest, Timings};
use serde::Serialize;
use tracing::warn;

use crate::ApiError;
use crate::error::blocking;
use crate::state::AppState;

/// One hit as the API answers it: the pipeline's hit plus where its page images are.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiHit {
    #[serde(flatten)]
    hit: SearchHit,
    /// The page image, when the index keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    image_url: Option<String>,
    /// The page thumbnail, when the index keeps it.
    #[serde(skip_serializing_if = "Option::is_none")]
    thumbnail_url: Option<String>,
}

/// The answer to a search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiSearchResponse {
    /// Pages, best first, from rank `offset + 1`.
    hits: Vec<ApiHit>,
    #[serde(flatten)]
    rest: SearchSummary,
}

/// The rest of a search answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SearchSummary {
    /// The request's `offset`.
    offset: usize,
    /// The request's `k`.
    k: usize,
    /// The re-ranker that ordered the hits (`none` when none ran).
    reranker: String,
    /// True when the re-ranker failed or ran out of time and the fused order was returned.
    degraded: bool,
    /// Why the re-ranker failed, when `degraded`.
    #[serde(skip_serializing_if = "Option::is_none")]
    rerank_error: Option<String>,
    /// Stage timings, in milliseconds.
    timings: Timings,
}

/// Search the index.
#[utoipa::path(
    post,
    path = "/v1/search",
    tag = "search",
    request_body(
        content(
            (SearchRequest = "application/json"),
            (SearchForm = "multipart/form-data"),
        ),
    ),
    responses(
        (status = 200, description = "Pages, best first", body = ApiSearchResponse,
         headers(("server-timing" = String, description = "Stage timings"))),
        (status = 400, description = "Invalid request", body = crate::error::ErrorBody),
        (status = 413, description = "Body too large", body = crate::error::ErrorBody),
        (status = 429, description = "Busy", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn search(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let request = read_request(request).await?;
    // Tokio's semaphore queues waiters in order: with a turn limit, searches run first come
    // first served instead of all sharing the cores at once.
    let _turn = match &state.search_turns {
        Some(turns) => Some(
            turns
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| ApiError::Internal(format!("search turns: {e}")))?,
        ),
        None => None,
    };
    let pipeline = state.index.pipeline();
    let (response, with_images) = blocking("search", move || {
        let response = pipeline.search(&request)?;
        let keys: Vec<PageKey> = response
            .hits
            .iter()
            .map(|h| PageKey {
                doc_id: DocId(h.doc_id.clone()),
                page: h.page,
            })
            .collect();
        // Image links are a convenience: a collection that cannot say leaves them out.
        let with_images = pipeline
            .collection()
            .pages_with_images(&keys)
            .unwrap_or_else(|e| {
                warn!(error = %e, "page images could not be looked up");
                Default::default()
            });
        Ok::<_, SearchError>((response, with_images))
    })
    .await??;
    state.metrics.record_search(&response.timings);
    let timing = server_timing(&response.timings);
    let hits = response
        .hits
        .into_iter()
        .map(|hit| {
            let key = PageKey {
                doc_id: DocId(hit.doc_id.clone()),
                page: hit.page,
            };
            let url = |name: &str| {
                with_images
                    .contains(&key)
                    .then(|| format!("/v1/documents/{}/pages/{}/{name}", hit.doc_id, hit.page))
            };
            ApiHit {
                image_url: url("image"),
                thumbnail_url: url("thumbnail"),
                hit,
            }
        })
        .collect();
    let body = ApiSearchResponse {
        hits,
        rest: SearchSummary {
            offset: response.offset,
            k: response.k,
            reranker: response.reranker,
            degraded: response.degraded,
            rerank_error: response.rerank_error,
            timings: response.timings,
        },
    };
    let mut out = Json(body).into_response();
    if let Ok(v) = HeaderValue::from_str(&timing) {
        out.headers_mut().insert("server-timing", v);
    }
    Ok(out)
}

/// A multipart search: the JSON request without `image`, and the image as a file.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the multipart form in the OpenAPI document only.
struct SearchForm {
    /// The search request as JSON (as for `application/json`, without `image`).
    request: String,
    /// The query image (PNG or JPEG).
    #[schema(value_type = Option<String>, format = Binary)]
    image: Option<Vec<u8>>,
}

/// Reads a JSON or multipart search request.
async fn read_request(request: Request) -> Result<SearchRequest, ApiError> {
    let content_type = crate::error::content_type(&request);
    if !content_type.starts_with("multipart/form-data") {
        let Json(r) = Json::<SearchRequest>::from_request(request, &()).await?;
        return Ok(r);
    }
    let mut form = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::BadMultipart(format!("not a readable multipart body: {}", e.body_text()))
    })?;
    let mut parsed: Option<SearchRequest> = None;
    let mut image: Option<Vec<u8>> = None;
    while let Some(field) = form.next_field().await? {
        match field.name().unwrap_or_default() {
            "request" => {
                let bytes = field.bytes().await?;
                parsed = Some(serde_json::from_slice(&bytes).map_err(|e| {
                    ApiError::BadJson(format!("the `request` part is not a search request: {e}"))
                })?);
            }
            "image" => image = Some(field.bytes().await?.to_vec()),
            other => {
                return Err(ApiError::BadMultipart(format!(
                    "unknown part {other:?}; a multipart search has `request` and `image`"
                )));
            }
        }
    }
    let mut r = match parsed {
        Some(r) => r,
        None if image.is_some() => SearchRequest::new("", 10),
        None => {
            return Err(ApiError::BadMultipart(
                "a multipart search needs a `request` part, an `image` part, or both".into(),
            ));
        }
    };
    if let Some(bytes) = image {
        if r.image.is_some() {
            return Err(ApiError::InvalidRequest(
                "the image is given twice: in the `request` JSON and as the `image` part".into(),
            ));
        }
        r.image = Some(bytes);
    }
    Ok(r)
}

/// The `server-timing` header for a search's timings.
fn server_timing(t: &Timings) -> String {
    let mut parts = vec![format!("embed;dur={:.2}", t.embed_ms)];
    parts.extend(
        t.routes_ms
            .iter()
            .map(|(route, ms)| format!("{route};dur={ms:.2}")),
    );
    parts.push(format!("fuse;dur={:.2}", t.fuse_ms));
    parts.push(format!("rerank;dur={:.2}", t.rerank_ms));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_lists_every_stage() {
        let mut t = Timings {
            embed_ms: 1.234,
            fuse_ms: 0.5,
            ..Timings::default()
        };
        t.routes_ms.insert("bm25".into(), 2.0);
        assert_eq!(
            server_timing(&t),
            "embed;dur=1.23, bm25;dur=2.00, fuse;dur=0.50, rerank;dur=0.00"
        );
    }
}
