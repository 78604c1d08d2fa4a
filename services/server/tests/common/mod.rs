//! What the server's test files share: a small index and request helpers.
#![allow(dead_code)] // Each test file uses its own part.

use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use folio_core::testing::HashEmbedder;
use folio_core::{DocId, Document, Embedder, Page, PageKey, Passage};
use folio_search::Pipeline;
use folio_store::{PageImageKind, Store, StoreWriter};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The id of the one document of [`small_index`].
pub const DOC: &str = "00000000000000aa";

/// The pages of [`small_index`].
pub const PAGES: [&str; 3] = [
    "Quarterly revenue grew in every region; the table lists revenue by region.",
    "The bar chart compares rainfall across the northern provinces.",
    "Installation guide: tighten the self-locking nut with a torque wrench.",
];

/// The test text embedder.
pub fn embedder() -> Arc<HashEmbedder> {
    Arc::new(HashEmbedder::new(32))
}

/// A one-document index (`/data/Report 2024.pdf`, the three [`PAGES`]) with a stored image and
/// thumbnail of page 1, and the pipeline over it.
pub fn small_index(dir: &Path) -> anyhow::Result<Pipeline> {
    let e = embedder();
    let mut writer = StoreWriter::open(dir, e.info(), None)?;
    let doc_id = DocId(DOC.into());
    let mut pages = Vec::new();
    let mut passages = Vec::new();
    let mut vectors = Vec::new();
    for (i, text) in PAGES.iter().enumerate() {
        let key = PageKey {
            doc_id: doc_id.clone(),
            page: i as u32 + 1,
        };
        pages.push(Page {
            key: key.clone(),
            text: text.to_string(),
        });
        passages.push(Passage {
            id: 0,
            page: key,
            char_start: 0,
            char_end: text.chars().count() as u32,
            text: text.to_string(),
            boxes: Vec::new(),
        });
        vectors.push(e.embed(text));
    }
    let doc = Document {
        doc_id: doc_id.clone(),
        path: "/data/Report 2024.pdf".into(),
        content_hash: "aa".into(),
        pages: 3,
        bytes: 1,
        meta: Default::default(),
    };
    writer.put_document(doc, pages, passages, vectors)?;
    let first = PageKey { doc_id, page: 1 };
    writer.put_page_image(&first, PageImageKind::Page, b"\x89PNG page one")?;
    writer.put_page_image(&first, PageImageKind::Thumbnail, b"\x89PNG thumb")?;
    writer.commit()?;
    let text: Arc<dyn Embedder> = e;
    Ok(Pipeline::new(Arc::new(Store::open(dir)?), Some(text))?)
}

/// Sends a request; the status and the body as JSON (non-JSON bodies as `{"raw": ...}`).
pub async fn send(app: &axum::Router, req: Request<Body>) -> anyhow::Result<(StatusCode, Value)> {
    let response = app.clone().oneshot(req).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }))
    };
    Ok((status, value))
}

pub fn get(uri: &str) -> anyhow::Result<Request<Body>> {
    Ok(Request::get(uri).body(Body::empty())?)
}

pub fn json_post(uri: &str, body: impl Into<Body>) -> anyhow::Result<Request<Body>> {
    Ok(Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())?)
}

/// The `error.code` of an error body.
pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

/// The `error.message` of an error body.
pub fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}
