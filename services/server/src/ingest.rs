//! `POST /v1/documents` (uploads or server-side paths) and the task endpoints.

use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use folio_indexer::collect_pdfs;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use crate::ApiError;
use crate::documents::{check_limit, default_limit};
use crate::error::blocking;
use crate::state::AppState;
use crate::tasks::{Ingest, Task};

/// A PDF starts with this within its first 1024 bytes.
const PDF_MAGIC: &[u8] = b"%PDF-";
/// Longest stored file name, in chars.
const MAX_NAME_CHARS: usize = 120;

/// Index server-side files or folders under the ingestion root.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PathIngest {
    /// Files or folders (searched for `*.pdf`), relative to the ingestion root or absolute
    /// inside it.
    paths: Vec<String>,
    /// Collection given to the documents.
    #[serde(default)]
    collection: Option<String>,
    /// Tags given to the documents.
    #[serde(default)]
    tags: Vec<String>,
}

/// An upload: one or more PDF files plus optional collection and tags.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Describes the multipart form in the OpenAPI document only.
struct UploadForm {
    /// PDF files (repeat the part for several).
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
    /// Collection given to the documents.
    collection: Option<String>,
    /// Comma-separated tags.
    tags: Option<String>,
}

/// The answer to an ingestion request.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The queued task; follow it at `/v1/tasks/{id}`.
    task: Task,
}

/// A page of tasks.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TaskList {
    /// Tasks, newest first.
    tasks: Vec<Task>,
    /// All tasks kept.
    total: usize,
}

/// Paging of the task list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskQuery {
    /// Entries skipped.
    #[serde(default)]
    offset: usize,
    /// Entries returned, 1..=1000 (default 50).
    #[serde(default = "default_limit")]
    limit: usize,
}

fn ingest_of(state: &AppState) -> Result<&std::sync::Arc<Ingest>, ApiError> {
    if state.config.read_only {
        return Err(crate::error::read_only());
    }
    state.ingest.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "this server was started without ingestion (no models to index with)".into(),
        )
    })
}

/// Queue PDFs for indexing.
#[utoipa::path(
    post, path = "/v1/documents", tag = "documents",
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (PathIngest = "application/json"),
    )),
    responses(
        (status = 202, description = "Queued", body = Accepted,
         headers(("location" = String, description = "The task's URL"))),
        (status = 400, description = "Not PDFs, a bad form, or no such path", body = crate::error::ErrorBody),
        (status = 403, description = "Needs an admin key, or a path outside the ingestion root", body = crate::error::ErrorBody),
        (status = 413, description = "Over the upload limit", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let ingest = ingest_of(&state)?.clone();
    let content_type = crate::error::content_type(&request);
    let task = if content_type.starts_with("multipart/form-data") {
        let form = Multipart::from_request(request, &()).await.map_err(|e| {
            ApiError::BadMultipart(format!("not a readable multipart body: {}", e.body_text()))
        })?;
        upload(&state, &ingest, form).await?
    } else if content_type.starts_with("application/json") {
        let Json(body) = Json::<PathIngest>::from_request(request, &()).await?;
        by_paths(&state, &ingest, body).await?
    } else {
        return Err(ApiError::UnsupportedMediaType(
            "send PDFs as multipart/form-data `file` parts, or JSON {\"paths\": [...]}".into(),
        ));
    };
    let location = HeaderValue::from_str(&format!("/v1/tasks/{}", task.id))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(Accepted { task }),
    )
        .into_response())
}

/// Saves every `file` part (checked to be a PDF) and queues them.
async fn upload(state: &AppState, ingest: &Ingest, mut form: Multipart) -> Result<Task, ApiError> {
    let id = ingest.new_id();
    let dir = ingest.upload_dir(&id);
    let saved = async {
        let mut files: Vec<(PathBuf, String)> = Vec::new();
        let mut collection = None;
        let mut tags = Vec::new();
        let mut total = 0usize;
        while let Some(field) = form.next_field().await? {
            match field.name().unwrap_or_default() {
                "file" => {
                    let name = field.file_name().unwrap_or("upload.pdf").to_string();
                    let path = dir.join(files.len().to_string()).join(stored_name(&name));
                    total += save_pdf(field, &path, &name, state.config.max_upload_bytes - total)
                        .await?;
                    files.push((path, name));
                }
                "collection" => {
                    let c = field.text().await?.trim().to_string();
                    collection = (!c.is_empty()).then_some(c);
                }
                "tags" => {
                    tags = field
                        .text()
                        .await?
                        .split(',')
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                        .collect();
                }
                other => {
                    return Err(ApiError::BadMultipart(format!(
                        "unknown part {other:?}; an upload has `file` parts and optional \
                         `collection` and `tags`"
                    )));
                }
            }
        }
        if files.is_empty() {
            return Err(ApiError::InvalidRequest(
                "no `file` part: upload at least one PDF".into(),
            ));
        }
        Ok((files, collection, tags))
    }
    .await;
    let (files, collection, tags) = match saved {
        Ok(s) => s,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
    };
    let (paths, names) = files.into_iter().unzip();
    ingest
        .enqueue(id, paths, names, collection, tags)
        .map_err(|e| ApiError::Internal(format!("queueing the task: {e}")))
}

/// Streams one uploaded file to `path`, refusing it unless it starts like a PDF or when it
/// passes `budget` bytes. Returns its size.
async fn save_pdf(
    mut field: Field<'_>,
    path: &Path,
    name: &str,
    budget: usize,
) -> Result<usize, ApiError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| ApiError::Internal(format!("creating the upload folder: {e}")))?;
    }
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(|e| ApiError::Internal(format!("saving an upload: {e}")))?;
    let mut size = 0usize;
    let mut head: Vec<u8> = Vec::new();
    let mut checked = false;
    while let Some(chunk) = field.chunk().await? {
        size += chunk.len();
        if size > budget {
            return Err(ApiError::PayloadTooLarge(format!(
                "{name:?} takes the upload past its limit"
            )));
        }
        if !checked {
            let want = 1024 - head.len();
            head.extend_from_slice(&chunk[..chunk.len().min(want)]);
            if head.len() >= 1024 {
                check_pdf_head(&head, name)?;
                checked = true;
            }
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| ApiError::Internal(format!("saving an upload: {e}")))?;
    }
    if !checked {
        check_pdf_head(&head, name)?;
    }
    file.sync_all()
        .await
        .map_err(|e| ApiError::Internal(format!("saving an upload: {e}")))?;
    Ok(size)
}

fn check_pdf_head(head: &[u8], name: &str) -> Result<(), ApiError> {
    if head.is_empty() {
        return Err(ApiError::InvalidRequest(format!("{name:?} is empty")));
    }
    if !head.windows(PDF_MAGIC.len()).any(|w| w == PDF_MAGIC) {
        return Err(ApiError::InvalidRequest(format!(
            "{name:?} is not a PDF (no %PDF- header in its first 1024 bytes)"
        )));
    }
    Ok(())
}

/// A safe file name for an upload: its last path component, with only letters, digits,
/// spaces, `.`, `-` and `_` kept, ending in `.pdf`.
fn stored_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME_CHARS)
        .collect();
    clean = clean.trim_matches(|c| c == '.' || c == ' ').to_string();
    if clean.is_empty() {
        clean = "upload".into();
    }
    if !clean.to_ascii_lowercase().ends_with(".pdf") {
        clean.push_str(".pdf");
    }
    clean
}

/// Resolves each path under the ingestion root, expands folders, and queues the PDFs.
async fn by_paths(state: &AppState, ingest: &Ingest, body: PathIngest) -> Result<Task, ApiError> {
    let root = state.config.ingest_root.clone().ok_or_else(|| {
        ApiError::Forbidden(
            "ingestion by server-side path is off; start the server with --ingest-root, or \
             upload the files"
                .into(),
        )
    })?;
    if body.paths.is_empty() {
        return Err(ApiError::InvalidRequest("paths is empty".into()));
    }
    let requested = body.paths.clone();
    let files = blocking("path check", move || resolve_paths(&root, &requested)).await??;
    let names = files.iter().map(|(_, name)| name.clone()).collect();
    let paths = files.into_iter().map(|(p, _)| p).collect();
    ingest
        .enqueue(ingest.new_id(), paths, names, body.collection, body.tags)
        .map_err(|e| ApiError::Internal(format!("queueing the task: {e}")))
}

/// The PDF files under the requested paths, each with its name relative to `root`.
fn resolve_paths(root: &Path, requested: &[String]) -> Result<Vec<(PathBuf, String)>, ApiError> {
    let root = std::fs::canonicalize(root)
        .map_err(|e| ApiError::Internal(format!("the ingestion root {}: {e}", root.display())))?;
    let mut inputs = Vec::new();
    for p in requested {
        let resolved = std::fs::canonicalize(root.join(p))
            .map_err(|_| ApiError::InvalidRequest(format!("no such file or folder: {p:?}")))?;
        if !resolved.starts_with(&root) {
            return Err(ApiError::Forbidden(format!(
                "{p:?} is outside the ingestion root"
            )));
        }
        inputs.push(resolved);
    }
    let (files, _missing) = collect_pdfs(&inputs);
    if files.is_empty() {
        return Err(ApiError::InvalidRequest(
            "no PDF file under the given paths".into(),
        ));
    }
    Ok(files
        .into_iter()
        .map(|f| {
            let name = f
                .strip_prefix(&root)
                .map_or_else(|_| f.display().to_string(), |r| r.display().to_string());
            (f, name)
        })
        .collect())
}

/// Show one task.
#[utoipa::path(
    get, path = "/v1/tasks/{task_id}", tag = "documents",
    params(("task_id" = String, Path, description = "Task id")),
    responses(
        (status = 200, description = "The task", body = Task),
        (status = 404, description = "No such task", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn task(
    State(state): State<AppState>,
    UrlPath(id): UrlPath<String>,
) -> Result<Json<Task>, ApiError> {
    ingest_of(&state)?
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no task {id:?}")))
}

/// List tasks, newest first.
#[utoipa::path(
    get, path = "/v1/tasks", tag = "documents",
    params(TaskQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskList),
        (status = 400, description = "Bad paging parameters", body = crate::error::ErrorBody),
    ),
    security((), ("api_key" = [])),
)]
pub(crate) async fn tasks(
    State(state): State<AppState>,
    query: Result<Query<TaskQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskList>, ApiError> {
    let Query(q) = query?;
    check_limit(q.limit)?;
    let (tasks, total) = ingest_of(&state)?.list(q.offset, q.limit);
    Ok(Json(TaskList { tasks, total }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_are_plain_file_names() {
        assert_eq!(stored_name("../../etc/passwd"), "passwd.pdf");
        assert_eq!(stored_name("C:\\x\\Report 2024.PDF"), "Report 2024.PDF");
        assert_eq!(stored_name("a;b$(c).pdf"), "a_b__c_.pdf");
        assert_eq!(stored_name(".."), "upload.pdf");
        assert_eq!(stored_name(""), "upload.pdf");
        assert!(stored_name(&"x".repeat(500)).chars().count() <= MAX_NAME_CHARS + 4);
    }

    #[test]
    fn pdf_heads_are_checked() {
        assert!(check_pdf_head(b"%PDF-1.7\n", "a").is_ok());
        assert!(check_pdf_head(b"\xef\xbb\xbf%PDF-1.4", "a").is_ok());
        let e = check_pdf_head(b"hello", "notes.txt")
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("notes.txt") && e.contains("not a PDF"))
        );
        assert!(check_pdf_head(b"", "a").is_err());
    }

    #[test]
    fn paths_must_stay_under_the_root() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("sub"))?;
        std::fs::write(root.join("sub/a.pdf"), b"%PDF-1.4")?;
        std::fs::write(tmp.path().join("outside.pdf"), b"%PDF-1.4")?;
        let ok = resolve_paths(&root, &["sub".into()])?;
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].1, "sub/a.pdf");
        for bad in ["../outside.pdf", "/etc"] {
            let e = resolve_paths(&root, &[bad.into()]).err();
            assert!(matches!(e, Some(ApiError::Forbidden(_))), "{bad}: {e:?}");
        }
        let e = resolve_paths(&root, &["missing.pdf".into()]).err();
        assert!(matches!(e, Some(ApiError::InvalidRequest(_))), "{e:?}");
        Ok(())
    }
}
