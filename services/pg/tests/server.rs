//! The service on a PostgreSQL collection that it writes: an upload is indexed into the
//! database by an ingestion task, found by a search, and deleted, all through the API.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use folio_core::Embedder;
use folio_core::testing::HashEmbedder;
use folio_pg::{PgCluster, PgStore, PgWriter, ReadRouting};
use folio_search::Pipeline;
use folio_server::{IngestModels, OpenWriter, Server, ServerConfig};
use folio_store::{CollectionWriter, IndexModels, RouteModel};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use common::Cluster;

const BOUNDARY: &str = "folio-pg-test";

async fn send(app: &axum::Router, request: Request<Body>) -> anyhow::Result<(StatusCode, Value)> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = response.into_body().collect().await?.to_bytes();
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

fn upload(name: &str, pdf: &[u8]) -> anyhow::Result<Request<Body>> {
    let mut body = format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         content-type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(pdf);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    Ok(Request::post("/v1/documents")
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(Body::from(body))?)
}

/// Documents in the collection, read off the async runtime (the client is blocking).
async fn documents(url: &str) -> anyhow::Result<usize> {
    let url = url.to_string();
    Ok(
        tokio::task::spawn_blocking(move || PgStore::connect(&url)?.documents())
            .await??
            .len(),
    )
}

#[test]
fn uploads_through_a_server_are_indexed_into_the_database() -> anyhow::Result<()> {
    let Some(cluster) = Cluster::start()? else {
        return Ok(());
    };
    let embedder = Arc::new(HashEmbedder::new(32));
    let models = IndexModels {
        text: RouteModel {
            embedder: embedder.info().clone(),
            source: None,
        },
        page: None,
        late: None,
    };
    // An empty collection, as `folio index --store` leaves one.
    Box::new(PgWriter::open(&cluster.primary, models.clone())?).commit()?;
    let text: Arc<dyn Embedder> = embedder.clone();
    let pipeline = Pipeline::new(
        Arc::new(PgCluster::connect(
            &cluster.primary,
            &[],
            ReadRouting::default(),
        )?),
        Some(text.clone()),
    )?;
    let url = cluster.primary.clone();
    let open: OpenWriter = Arc::new(move |m: &IndexModels| {
        Ok(Box::new(PgWriter::open(&url, m.clone())?) as Box<dyn CollectionWriter>)
    });
    let data = tempfile::tempdir()?;
    let ingest = IngestModels {
        text,
        text_source: None,
        page: None,
        late: None,
        settings: folio_indexer::IndexSettings {
            progress: false,
            ..Default::default()
        },
        open_writer: Some(open),
    };
    let mut server = Server::new(pipeline, ServerConfig::new(data.path()), Some(ingest))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let _background = server.start_background();
        let app = server.router();

        let pdf = std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../datasets/samples/multi_page.pdf"),
        )?;
        let (status, accepted) = send(&app, upload("multi_page.pdf", &pdf)?).await?;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let id = accepted["task"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut task = Value::Null;
        for _ in 0..600 {
            let request = Request::get(format!("/v1/tasks/{id}")).body(Body::empty())?;
            task = send(&app, request).await?.1;
            if task["state"] == "succeeded" || task["state"] == "failed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(task["state"], "succeeded", "{task}");
        assert_eq!(task["files"][0]["status"], "indexed", "{task}");
        let doc_id = task["files"][0]["doc_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();

        // In the database at once: searchable through the same server, no reload needed.
        assert_eq!(documents(&cluster.primary).await?, 1);
        let query = json!({"query": "typewriter patented", "k": 3, "routes": ["bm25", "dense"]});
        let request = Request::post("/v1/search")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(query.to_string()))?;
        let (status, found) = send(&app, request).await?;
        assert_eq!(status, StatusCode::OK, "{found}");
        assert_eq!(found["hits"][0]["doc_id"], doc_id.as_str(), "{found}");

        // Deleted through the API: gone from the database.
        let request = Request::delete(format!("/v1/documents/{doc_id}")).body(Body::empty())?;
        let (status, deleted) = send(&app, request).await?;
        assert_eq!(status, StatusCode::OK, "{deleted}");
        assert_eq!(documents(&cluster.primary).await?, 0);
        Ok(())
    })
}
