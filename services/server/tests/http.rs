//! The HTTP API, driven in-process through the router (no sockets, no fixed ports).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use folio_core::testing::HashEmbedder;
use folio_core::{
    Candidate, DocId, Document, Embedder, Page, PageKey, Passage, RerankBudget, RerankError,
    Reranked, Reranker,
};
use folio_search::Pipeline;
use folio_store::{PageImageKind, Store, StoreWriter};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

const PAGES: [&str; 3] = [
    "Quarterly revenue grew in every region; the table lists revenue by region.",
    "The bar chart compares rainfall across the northern provinces.",
    "Installation guide: tighten the self-locking nut with a torque wrench.",
];

fn build_index(dir: &std::path::Path) -> anyhow::Result<Pipeline> {
    let embedder = HashEmbedder::new(32);
    let mut writer = StoreWriter::open(dir, embedder.info(), None)?;
    let doc_id = DocId("00000000000000aa".into());
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
        });
        vectors.push(embedder.embed(text));
    }
    let doc = Document {
        doc_id,
        path: "/data/report.pdf".into(),
        content_hash: "aa".into(),
        pages: 3,
        bytes: 1,
        meta: Default::default(),
    };
    writer.put_document(doc, pages, passages, vectors)?;
    let first = PageKey {
        doc_id: DocId("00000000000000aa".into()),
        page: 1,
    };
    writer.put_page_image(&first, PageImageKind::Page, b"\x89PNG page one")?;
    writer.put_page_image(&first, PageImageKind::Thumbnail, b"\x89PNG thumb")?;
    writer.commit()?;
    let embedder: Arc<dyn Embedder> = Arc::new(embedder);
    Ok(Pipeline::new(Arc::new(Store::open(dir)?), Some(embedder))?)
}

/// The router over `pipeline`, with default settings and no ingestion.
fn app(pipeline: Pipeline) -> anyhow::Result<axum::Router> {
    let config = folio_server::ServerConfig::new(pipeline.store().dir());
    Ok(folio_server::Server::new(pipeline, config, None)?.router())
}

async fn call(app: axum::Router, req: Request<Body>) -> anyhow::Result<(StatusCode, Value)> {
    let response = app.oneshot(req).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((status, serde_json::from_slice(&bytes)?))
}

fn post(body: impl Into<Body>) -> anyhow::Result<Request<Body>> {
    Ok(Request::post("/v1/search")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())?)
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn search_returns_fused_hits_with_provenance() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(build_index(tmp.path())?)?;
    let (status, body) = call(app, post(r#"{"query": "rainfall chart", "k": 2}"#)?).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hits = body["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["page"], 2);
    assert_eq!(hits[0]["path"], "/data/report.pdf");
    assert_eq!(hits[0]["doc_id"], "00000000000000aa");
    assert_eq!(hits[0]["routes"]["bm25"], 1);
    assert_eq!(hits[0]["routes"]["dense"], 1);
    assert!(
        hits[0]["snippet"]
            .as_str()
            .unwrap_or_default()
            .contains("rainfall")
    );
    assert!(hits[0]["score"].as_f64().unwrap_or_default() > 0.0);
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_json_400s() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(build_index(tmp.path())?)?;
    let cases = [
        (r#"{"query": "x", "k": 0}"#, "invalid_request", "k must be"),
        (
            r#"{"query": "x", "k": 1001}"#,
            "invalid_request",
            "k must be",
        ),
        (r#"{"query": "   "}"#, "invalid_request", "empty"),
        (r#"{"query": "x", "#, "bad_json", ""),
        (r#"{"k": 3}"#, "invalid_request", "query must not be empty"),
        (r#"{"image": "not base64!"}"#, "bad_json", "base64"),
        (
            r#"{"image": "aGVsbG8="}"#,
            "invalid_request",
            "not a PNG or JPEG",
        ),
        (
            r#"{"image": "aGVsbG8=", "rerank": "pointwise"}"#,
            "invalid_request",
            "re-ranking reads the query text",
        ),
        // A valid 1x1 PNG, but this index has no page-image route.
        (
            r#"{"image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"}"#,
            "invalid_request",
            "image-only query",
        ),
        (r#"{"query": "x", "kk": 3}"#, "bad_json", "kk"),
        (r#"{"query": 5}"#, "bad_json", ""),
    ];
    for (body, code, needle) in cases {
        let (status, v) = call(app.clone(), post(body)?).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(error_code(&v), code, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // Without a JSON content type.
    let req = Request::post("/v1/search").body(Body::from(r#"{"query":"x"}"#))?;
    let (status, v) = call(app.clone(), req).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert_eq!(error_code(&v), "unsupported_media_type");
    // Over the body limit.
    let huge = format!(
        r#"{{"query": "{}"}}"#,
        "x".repeat(folio_server::MAX_BODY_BYTES + 1)
    );
    let (status, v) = call(app.clone(), post(huge)?).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Unknown endpoints are JSON 404s; wrong methods are rejected.
    let (status, v) = call(app.clone(), Request::get("/nope").body(Body::empty())?).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "not_found");
    let (status, v) = call(app, Request::get("/v1/search").body(Body::empty())?).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_code(&v), "method_not_allowed");
    Ok(())
}

#[tokio::test]
async fn healthz_reports_the_index() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(build_index(tmp.path())?)?;
    let (status, v) = call(app, Request::get("/healthz").body(Body::empty())?).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["documents"], 1);
    assert_eq!(v["passages"], 3);
    assert_eq!(v["routes"], serde_json::json!(["bm25", "dense"]));
    Ok(())
}

/// Puts the fused list upside down, or runs out of time.
struct Fake(&'static str);

impl Reranker for Fake {
    fn name(&self) -> &str {
        self.0
    }
    fn rerank(
        &self,
        _query: &str,
        candidates: &[Candidate],
        budget: RerankBudget,
    ) -> Result<Vec<Reranked>, RerankError> {
        if self.0 == "slow" {
            return Err(RerankError::Timeout(budget.time));
        }
        Ok((0..candidates.len())
            .rev()
            .map(|index| Reranked {
                index,
                score: index as f64,
            })
            .collect())
    }
}

#[tokio::test]
async fn rerank_stage_reorders_reports_and_degrades() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut pipeline = build_index(tmp.path())?;
    pipeline.add_reranker("reverse", Arc::new(Fake("reverse")));
    pipeline.add_reranker("slow", Arc::new(Fake("slow")));
    pipeline.add_unavailable_reranker("vlm", "needs a vision model");
    let app = app(pipeline)?;

    let (status, fused) = call(
        app.clone(),
        post(r#"{"query": "revenue rainfall torque", "k": 3}"#)?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{fused}");
    assert_eq!(fused["reranker"], "none");
    let fused_pages: Vec<&Value> = fused["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| &h["page"])
        .collect();
    assert_eq!(fused_pages.len(), 3);

    let body =
        r#"{"query": "revenue rainfall torque", "k": 3, "rerank": "reverse", "rerank_depth": 3}"#;
    let (status, reranked) = call(app.clone(), post(body)?).await?;
    assert_eq!(status, StatusCode::OK, "{reranked}");
    assert_eq!(reranked["reranker"], "reverse");
    assert_eq!(reranked["degraded"], false);
    let hits = reranked["hits"].as_array().cloned().unwrap_or_default();
    let pages: Vec<&Value> = hits.iter().map(|h| &h["page"]).collect();
    let mut reversed = fused_pages.clone();
    reversed.reverse();
    assert_eq!(pages, reversed);
    assert_eq!(hits[0]["fused_rank"], 3);
    assert_eq!(hits[0]["rerank_score"], 2.0);

    let body =
        r#"{"query": "revenue rainfall torque", "k": 3, "rerank": "slow", "rerank_budget_ms": 5}"#;
    let (status, degraded) = call(app.clone(), post(body)?).await?;
    assert_eq!(status, StatusCode::OK, "{degraded}");
    assert_eq!(degraded["degraded"], true);
    assert!(
        degraded["rerank_error"]
            .as_str()
            .unwrap_or_default()
            .contains("out of time")
    );
    let pages: Vec<&Value> = degraded["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| &h["page"])
        .collect();
    assert_eq!(pages, fused_pages);
    assert!(degraded["hits"][0].get("rerank_score").is_none());

    for (rerank, needle) in [
        ("vlm", "needs a vision model"),
        ("rankgpt", "available: none, reverse, slow"),
    ] {
        let body = format!(r#"{{"query": "revenue", "rerank": "{rerank}"}}"#);
        let (status, err) = call(app.clone(), post(body)?).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{rerank}: {message}");
    }

    let (_, health) = call(app, Request::get("/healthz").body(Body::empty())?).await?;
    assert_eq!(
        health["rerankers"],
        serde_json::json!(["none", "reverse", "slow"])
    );
    Ok(())
}

#[tokio::test]
async fn stored_page_images_are_served_and_missing_ones_are_json_404s() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(build_index(tmp.path())?)?;
    let get = |uri: &str| Request::get(uri).body(Body::empty());
    for (uri, body) in [
        (
            "/v1/documents/00000000000000aa/pages/1/image",
            &b"\x89PNG page one"[..],
        ),
        (
            "/v1/documents/00000000000000aa/pages/1/thumbnail",
            &b"\x89PNG thumb"[..],
        ),
    ] {
        let response = app.clone().oneshot(get(uri)?).await?;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"image/png"[..])
        );
        assert_eq!(&response.into_body().collect().await?.to_bytes()[..], body);
    }
    for (uri, needle) in [
        (
            "/v1/documents/00000000000000aa/pages/2/image",
            "no stored image",
        ),
        (
            "/v1/documents/00000000000000aa/pages/4/image",
            "pages 1 to 3",
        ),
        (
            "/v1/documents/00000000000000aa/pages/x/image",
            "not a page number",
        ),
        (
            "/v1/documents/00000000000000aa/pages/1/pdf",
            "image or thumbnail",
        ),
        ("/v1/documents/ffff/pages/1/image", "no document \"ffff\""),
    ] {
        let (status, v) = call(app.clone(), get(uri)?).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {v}");
        assert_eq!(error_code(&v), "not_found");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{uri}: {message}");
    }
    Ok(())
}
