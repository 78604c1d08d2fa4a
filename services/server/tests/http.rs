//! The HTTP API, driven in-process through the router (no sockets, no fixed ports).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use folio_core::{Candidate, RerankBudget, RerankError, Reranked, Reranker};
use folio_search::Pipeline;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

mod common;
use common::{code, json_post, send, small_index};

/// The router over `pipeline`, with default settings and no ingestion.
fn app(pipeline: Pipeline) -> anyhow::Result<axum::Router> {
    let config = folio_server::ServerConfig::new(
        pipeline
            .collection()
            .index_dir()
            .unwrap_or(std::path::Path::new(".")),
    );
    Ok(folio_server::Server::new(pipeline, config, None)?.router())
}

#[tokio::test]
async fn search_returns_fused_hits_with_provenance() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(small_index(tmp.path())?)?;
    let (status, body) = send(
        &app,
        json_post("/v1/search", r#"{"query": "rainfall chart", "k": 2}"#)?,
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let hits = body["hits"].as_array().cloned().unwrap_or_default();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0]["page"], 2);
    assert_eq!(hits[0]["path"], "/data/Report 2024.pdf");
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
    let app = app(small_index(tmp.path())?)?;
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
    for (body, want, needle) in cases {
        let (status, v) = send(&app, json_post("/v1/search", body)?).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(code(&v), want, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{body}: {message}");
    }
    // Without a JSON content type.
    let req = Request::post("/v1/search").body(Body::from(r#"{"query":"x"}"#))?;
    let (status, v) = send(&app, req).await?;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert_eq!(code(&v), "unsupported_media_type");
    // Over the body limit.
    let huge = format!(
        r#"{{"query": "{}"}}"#,
        "x".repeat(folio_server::MAX_BODY_BYTES + 1)
    );
    let (status, v) = send(&app, json_post("/v1/search", huge)?).await?;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    // Unknown endpoints are JSON 404s; wrong methods are rejected.
    let (status, v) = send(&app, Request::get("/nope").body(Body::empty())?).await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&v), "not_found");
    let (status, v) = send(&app, Request::get("/v1/search").body(Body::empty())?).await?;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&v), "method_not_allowed");
    Ok(())
}

#[tokio::test]
async fn healthz_reports_the_index() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(small_index(tmp.path())?)?;
    let (status, v) = send(&app, Request::get("/healthz").body(Body::empty())?).await?;
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
    let mut pipeline = small_index(tmp.path())?;
    pipeline.add_reranker("reverse", Arc::new(Fake("reverse")));
    pipeline.add_reranker("slow", Arc::new(Fake("slow")));
    pipeline.add_unavailable_reranker("vlm", "needs a vision model");
    let app = app(pipeline)?;

    let (status, fused) = send(
        &app,
        json_post(
            "/v1/search",
            r#"{"query": "revenue rainfall torque", "k": 3}"#,
        )?,
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
    let (status, reranked) = send(&app, json_post("/v1/search", body)?).await?;
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
    let (status, degraded) = send(&app, json_post("/v1/search", body)?).await?;
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
        let (status, err) = send(&app, json_post("/v1/search", body)?).await?;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{rerank}: {message}");
    }

    let (_, health) = send(&app, Request::get("/healthz").body(Body::empty())?).await?;
    assert_eq!(
        health["rerankers"],
        serde_json::json!(["none", "reverse", "slow"])
    );
    Ok(())
}

#[tokio::test]
async fn stored_page_images_are_served_and_missing_ones_are_json_404s() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let app = app(small_index(tmp.path())?)?;
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
        let (status, v) = send(&app, get(uri)?).await?;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {v}");
        assert_eq!(code(&v), "not_found");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(needle), "{uri}: {message}");
    }
    Ok(())
}
