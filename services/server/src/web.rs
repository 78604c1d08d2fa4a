//! The search page at `/` and the API explorer at `/api`: plain HTML, CSS and JavaScript
//! compiled into the binary, so serving them needs no files and no build step.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::ApiError;

/// Embedded files: name, content type, bytes.
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../assets/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../assets/style.css"),
    ),
    (
        "api.html",
        "text/html; charset=utf-8",
        include_str!("../assets/api.html"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../assets/api.js"),
    ),
];

fn asset(name: &str) -> Result<Response, ApiError> {
    let (_, content_type, body) = ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .ok_or_else(|| ApiError::NotFound(format!("no asset {name:?}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::HeaderName::from_static("x-content-type-options"),
                HeaderValue::from_static("nosniff"),
            ),
        ],
        *body,
    )
        .into_response())
}

/// `GET /`: the search page.
pub(crate) async fn index() -> Result<Response, ApiError> {
    asset("index.html")
}

/// `GET /api`: the API explorer.
pub(crate) async fn explorer() -> Result<Response, ApiError> {
    asset("api.html")
}

/// `GET /assets/{name}`.
pub(crate) async fn assets(Path(name): Path<String>) -> Result<Response, ApiError> {
    asset(&name)
}
