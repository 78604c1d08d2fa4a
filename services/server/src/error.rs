//! [`ApiError`]: every failure the API answers, each with one status and one stable code.

use axum::Json;
use axum::extract::multipart::MultipartError;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use folio_core::RetrieveError;
use folio_search::SearchError;
use folio_store::StoreError;
use serde::Serialize;
use thiserror::Error;
use tracing::error;

/// An API error. The variant says whose fault it is; [`ApiError::status`] and
/// [`ApiError::code`] are exhaustive over the variants.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The body is not valid JSON, or not the expected shape (unknown or wrong-typed field).
    #[error("{0}")]
    BadJson(String),
    /// A multipart body is malformed or truncated, or misses a part.
    #[error("{0}")]
    BadMultipart(String),
    /// A query-string parameter is malformed.
    #[error("{0}")]
    BadQuery(String),
    /// The body's content type is not one this endpoint reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body, or an uploaded file, is over its size limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// The request is well-formed but invalid (empty query, k out of range, not a PDF, ...).
    #[error("{0}")]
    InvalidRequest(String),
    /// No API key, or an unknown one.
    #[error("{0}")]
    Unauthorized(String),
    /// The key is valid but may not do this (a search key on a write), or a path is outside
    /// the ingestion root.
    #[error("{0}")]
    Forbidden(String),
    /// No such endpoint, document, page or task.
    #[error("{0}")]
    NotFound(String),
    /// The endpoint exists, not with this method.
    #[error("method not allowed for this endpoint")]
    MethodNotAllowed,
    /// The index is being written by someone else (an ingestion task, `folio index`).
    #[error("{0}")]
    Conflict(String),
    /// The request took longer than the server's time limit.
    #[error("the request took longer than the server's limit of {0} s")]
    Timeout(u64),
    /// Too many requests in flight; retry after the given seconds.
    #[error("the server is at its limit of concurrent requests; retry in {0} s")]
    Busy(u64),
    /// The capability exists in the API but is not available on this server.
    #[error("{0}")]
    Unavailable(String),
    /// The service failed; the detail is logged, never returned.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadJson(_)
            | ApiError::BadMultipart(_)
            | ApiError::BadQuery(_)
            | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadJson(_) => "bad_json",
            ApiError::BadMultipart(_) => "bad_multipart",
            ApiError::BadQuery(_) => "bad_query_string",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::Timeout(_) => "timeout",
            ApiError::Busy(_) => "busy",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// The JSON body of every error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: `bad_json`, `invalid_request`, `unauthorized`, `not_found`, `busy`, ...
    pub code: String,
    /// What is wrong, naming the field or cause.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            error!(%detail, "request failed");
        }
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if let ApiError::Busy(seconds) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> Self {
        match e {
            SearchError::InvalidRequest(m) => ApiError::InvalidRequest(m),
            e @ SearchError::Retrieve(RetrieveError::Unavailable { .. }) => {
                ApiError::Unavailable(e.to_string())
            }
            e @ (SearchError::Setup(_) | SearchError::Embed(_) | SearchError::Retrieve(_)) => {
                ApiError::Internal(e.to_string())
            }
            SearchError::Store(e) => ApiError::from(e),
        }
    }
}

impl From<StoreError> for ApiError {
    /// A database that fails is unavailable for now (503); anything else is ours (500).
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Backend(m) => ApiError::Unavailable(m),
            e => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(r.body_text()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType(r.body_text()),
            _ => ApiError::BadJson(r.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::BadQuery(r.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(e: MultipartError) -> Self {
        match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(e.body_text()),
            _ => ApiError::BadMultipart(e.body_text()),
        }
    }
}

/// The refusal of a write on a read-only query node.
pub(crate) fn read_only() -> ApiError {
    ApiError::Forbidden(
        "this is a read-only query node: it serves the index another process writes; upload \
         and delete through a writable server or folio index"
            .into(),
    )
}

/// The request's content type, lowercased (empty when absent or not text).
pub(crate) fn content_type(request: &axum::extract::Request) -> String {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Runs blocking work (embedding, index reads and writes) on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(format!("{what} task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_answers_retry_after() {
        let r = ApiError::Busy(2).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            r.headers().get(header::RETRY_AFTER),
            Some(&HeaderValue::from(2u64))
        );
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let e = ApiError::Internal("disk /secret failed".into());
        assert_eq!(e.to_string(), "internal error");
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
