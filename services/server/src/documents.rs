//! Documents: list, show, delete, and their stored page images.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use folio_core::{DocId, Document, PageKey};
use folio_search::{TextLayer, title_of};
use folio_store::{
    Collection, CollectionWriter, PageImageKind, StoreError, StoreWriter, StoredImage,
};
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::error::blocking;
use crate::state::AppState;

/// How long a delete waits for an ingestion task to finish writing.
const WRITER_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Largest page of a listing.
pub const MAX_LIMIT: usize = 1000;

/// Paging of a listing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct DocumentQuery {
    /// Entries skipped.
    #[serde(default)]
    offset: usize,
    /// Entries returned, 1..=1000 (default 50).
    #[serde(default = "default_limit")]
    limit: usize,
    /// Only documents of this collection.
    collection: Option<String>,
}

pub(crate) fn default_limit() -> usize {
    50
}

pub(crate) fn check_limit(limit: usize) -> Result<(), ApiError> {
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::InvalidRequest(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(())
}

/// A document as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ApiDocument {
    /// Content-derived id.
    doc_id: String,
    /// File name without the extension.
    title: String,
    /// Where it was indexed from.
    path: String,
    /// Page count.
    pages: u32,
    /// File size.
    bytes: u64,
    /// Collection, when given at indexing.
    #[serde(skip_serializing_if = "Option::is_none")]
    collection: Option<String>,
    /// Tags given at indexing.
    tags: Vec<String>,
    /// File modification time (seconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    modified: Option<u64>,
}

impl From<&Document> for ApiDocument {
    fn from(d: &Document) -> Self {
        ApiDocument {
            doc_id: d.doc_id.to_string(),
            title: title_of(&d.path),
            path: d.path.clone(),
            pages: d.pages,
            bytes: d.bytes,
            collection: d.meta.collection.clone(),
            tags: d.meta.tags.clone(),
            modified: d.meta.modified,
        }
    }
}

/// A page of documents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentList {
    /// Documents, by path.
    documents: Vec<ApiDocument>,
    /// Documents that match, over all pages.
    total: usize,
    /// Entries skipped.
    offset: usize,
    /// Largest page asked for.
    limit: usize,
}

/// One page of a document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageInfo {
    /// 1-based page number.
    page: u32,
    /// Whether it has extractable text.
    text_layer: TextLayer,
    /// Whether its image is stored.
    image: bool,
}

/// A document with its pages.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentDetail {
    #[serde(flatten)]
    document: ApiDocument,
    /// Each page.
    page_info: Vec<PageInfo>,
}

/// The answer to a delete.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    /// The removed document.
    deleted: String,
    /// The generation published without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    generation: Option<u64>,
}

fn no_document(id: &str) -> ApiError {
    ApiError::NotFound(format!("no document {id:?} in this index"))
}

/// List documents.
#[utoipa::path(
    get, path = "/v1/documents", tag = "documents",
    params(DocumentQuery),
    responses(
        (status = 200, description = "A page of documents", body = DocumentList),
        (status = 400, description = "Bad paging parameters", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    query: Result<Query<DocumentQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DocumentList>, ApiError> {
    let Query(q) = query?;
    check_limit(q.limit)?;
    let pipeline = state.index.pipeline();
    let mut docs: Vec<Document> = blocking("list", move || pipeline.collection().documents())
        .await??
        .into_iter()
        .filter(|d| {
            q.collection
                .as_ref()
                .is_none_or(|c| d.meta.collection.as_ref() == Some(c))
        })
        .collect();
    docs.sort_by(|a, b| (&a.path, &a.doc_id).cmp(&(&b.path, &b.doc_id)));
    Ok(Json(DocumentList {
        total: docs.len(),
        documents: docs
            .into_iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|d| ApiDocument::from(&d))
            .collect(),
        offset: q.offset,
        limit: q.limit,
    }))
}

/// Show one document and its pages.
#[utoipa::path(
    get, path = "/v1/documents/{doc_id}", tag = "documents",
    params(("doc_id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "The document and its pages", body = DocumentDetail),
        (status = 404, description = "No such document", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(doc_id): Path<String>,
) -> Result<Json<DocumentDetail>, ApiError> {
    let pipeline = state.index.pipeline();
    let id = DocId(doc_id.clone());
    let detail = blocking("show", move || {
        let store = pipeline.collection();
        let Some(doc) = store.document(&id)? else {
            return Ok(None);
        };
        let keys: Vec<PageKey> = (1..=doc.pages)
            .map(|page| PageKey {
                doc_id: doc.doc_id.clone(),
                page,
            })
            .collect();
        let with_images = store.pages_with_images(&keys)?;
        let page_info = keys
            .into_iter()
            .map(|key| {
                Ok(PageInfo {
                    page: key.page,
                    text_layer: match store.first_passage(&key)? {
                        Some(_) => TextLayer::Text,
                        None => TextLayer::None,
                    },
                    image: with_images.contains(&key),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok::<_, StoreError>(Some(DocumentDetail {
            document: ApiDocument::from(&doc),
            page_info,
        }))
    })
    .await??;
    detail.map(Json).ok_or_else(|| no_document(&doc_id))
}

/// Remove a document from every route.
#[utoipa::path(
    delete, path = "/v1/documents/{doc_id}", tag = "documents",
    params(("doc_id" = String, Path, description = "Document id")),
    responses(
        (status = 200, description = "Removed", body = Deleted),
        (status = 403, description = "Needs an admin key", body = crate::error::ErrorBody),
        (status = 404, description = "No such document", body = crate::error::ErrorBody),
        (status = 409, description = "The index is being written", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(doc_id): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    if state.config.read_only {
        return Err(crate::error::read_only());
    }
    type OpenBoxed = Box<dyn FnOnce() -> Result<Box<dyn CollectionWriter>, StoreError> + Send>;
    let open_collection = state.ingest.as_ref().and_then(|i| i.open_writer().cloned());
    let open_writer: OpenBoxed = match (state.index.dir(), open_collection) {
        (Some(dir), _) => {
            let dir = dir.to_path_buf();
            Box::new(move || Ok(Box::new(StoreWriter::open_existing(&dir)?) as Box<_>))
        }
        (None, Some(open)) => {
            let models = state.index.pipeline().collection().models();
            Box::new(move || open(&models))
        }
        (None, None) => {
            return Err(ApiError::Forbidden(
                "this server reads a database without writing it; delete with `folio delete \
                 --store`, or start the server with --data-dir"
                    .into(),
            ));
        }
    };
    let id = DocId(doc_id.clone());
    let pipeline = state.index.pipeline();
    let known = {
        let id = id.clone();
        blocking("delete", move || pipeline.collection().document(&id)).await??
    };
    if known.is_none() {
        return Err(no_document(&doc_id));
    }
    // A running ingestion task holds the writer; wait a little for it, not for long.
    let Ok(guard) = tokio::time::timeout(WRITER_WAIT, state.writer.clone().lock_owned()).await
    else {
        return Err(ApiError::Conflict(
            "an ingestion task is writing the index; retry when it is done".into(),
        ));
    };
    let uploads = state.config.data_dir.join("uploads");
    let outcome = blocking("delete", move || {
        let _guard = guard;
        let mut writer = open_writer()?;
        let Some(doc) = writer.document(&id)? else {
            return Ok(None);
        };
        writer.remove(&id)?;
        let generation = match writer.commit()? {
            folio_store::CommitOutcome::Published { generation } => Some(generation),
            folio_store::CommitOutcome::Unchanged => None,
        };
        // An uploaded file goes with its document.
        let path = std::path::Path::new(&doc.path);
        if path.starts_with(&uploads)
            && let Some(folder) = path.parent()
        {
            let _ = std::fs::remove_dir_all(folder);
        }
        Ok::<_, StoreError>(Some(generation))
    })
    .await?;
    let generation = match outcome {
        Ok(Some(generation)) => generation,
        Ok(None) => return Err(no_document(&doc_id)),
        Err(StoreError::Locked(_)) => {
            return Err(ApiError::Conflict(
                "another process (folio index?) is writing the index; retry when it is done".into(),
            ));
        }
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    let handle = state.index.clone();
    blocking("reload", move || handle.reload_if_newer()).await?;
    Ok(Json(Deleted {
        deleted: doc_id,
        generation,
    }))
}

/// A stored page image (`image`) or thumbnail (`thumbnail`), as PNG, with an `etag`.
#[utoipa::path(
    get, path = "/v1/documents/{doc_id}/pages/{page}/{kind}", tag = "documents",
    params(
        ("doc_id" = String, Path, description = "Document id"),
        ("page" = u32, Path, description = "1-based page number"),
        ("kind" = String, Path, description = "`image` or `thumbnail`"),
    ),
    responses(
        (status = 200, description = "The PNG", content_type = "image/png", body = Vec<u8>),
        (status = 304, description = "Not modified (if-none-match)"),
        (status = 404, description = "No such document, page or stored image", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn page_image(
    State(state): State<AppState>,
    Path((doc_id, page, kind)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kind = match kind.as_str() {
        "image" => PageImageKind::Page,
        "thumbnail" => PageImageKind::Thumbnail,
        other => {
            return Err(ApiError::NotFound(format!(
                "no page resource {other:?}; use image or thumbnail"
            )));
        }
    };
    let page: u32 = page
        .parse()
        .map_err(|_| ApiError::NotFound(format!("page {page:?} is not a page number")))?;
    let pipeline = state.index.pipeline();
    let image = {
        let doc_id = doc_id.clone();
        blocking("page image", move || {
            stored_image(pipeline.collection(), &doc_id, page, kind)
        })
        .await??
    };
    let etag = format!("\"{}\"", image.tag);
    let etag_value = HeaderValue::from_str(&etag)
        .map_err(|e| ApiError::Internal(format!("etag {etag}: {e}")))?;
    let cache = HeaderValue::from_static("private, max-age=3600");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/png")),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
        ],
        image.png,
    )
        .into_response())
}

/// A stored page image; ids are looked up in the collection, never used as paths.
fn stored_image(
    store: &dyn Collection,
    doc_id: &str,
    page: u32,
    kind: PageImageKind,
) -> Result<StoredImage, ApiError> {
    let doc = store
        .document(&DocId(doc_id.to_string()))?
        .ok_or_else(|| no_document(doc_id))?;
    if page == 0 || page > doc.pages {
        return Err(ApiError::NotFound(format!(
            "document {doc_id} has pages 1 to {}, not {page}",
            doc.pages
        )));
    }
    let key = PageKey {
        doc_id: doc.doc_id.clone(),
        page,
    };
    store.page_image(&key, kind)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no stored image for page {page} of {doc_id} (indexed with --no-page-images, or \
             the page did not render)"
        ))
    })
}
