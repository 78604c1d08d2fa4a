//! Where a model's files come from.
//!
//! A model reference is either a local directory in HF layout (`config.json`,
//! `model.safetensors`, `tokenizer.json`, ...) or an HF model id (`org/name`). An id is looked
//! up in the local HF cache first (`$HF_HUB_CACHE`, `$HF_HOME/hub`, or
//! `~/.cache/huggingface/hub`), so machines without the hub can use models fetched elsewhere;
//! builds with the `hub` feature download missing ones through hf-hub.

use std::path::{Path, PathBuf};

use crate::ModelError;

/// A resolved model: the directory that holds its files and the id it is known by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// Directory with config.json and the weights.
    pub dir: PathBuf,
    /// Id recorded in indexes: the HF id when known, else the directory name.
    pub id: String,
}

/// Resolves a model reference (a local directory or an HF model id) to a local directory.
pub fn resolve_model(reference: &str) -> Result<ModelSource, ModelError> {
    let path = Path::new(reference);
    if path.is_dir() {
        let dir = path.canonicalize().map_err(|e| ModelError::BadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| reference.to_string());
        return Ok(ModelSource { dir, id });
    }
    if !looks_like_hub_id(reference) {
        return Err(ModelError::NotFound {
            reference: reference.to_string(),
            detail: "no such directory, and not an HF model id of the form org/name".into(),
        });
    }
    let cache = hf_cache_dir();
    if let Some(dir) = find_in_cache(&cache, reference) {
        return Ok(ModelSource {
            dir,
            id: reference.to_string(),
        });
    }
    download(reference, &cache)
}

fn looks_like_hub_id(reference: &str) -> bool {
    let mut parts = reference.split('/');
    let ok = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        })
    };
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

/// The HF hub cache directory, following the hub's environment variables.
pub fn hf_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("huggingface").join("hub")
}

/// Finds a complete snapshot of `id` in the HF cache layout
/// (`models--org--name/snapshots/<revision>/`), preferring the revision `refs/main` names.
fn find_in_cache(cache: &Path, id: &str) -> Option<PathBuf> {
    let repo = cache.join(format!("models--{}", id.replace('/', "--")));
    let snapshots = repo.join("snapshots");
    let complete = |dir: &Path| dir.join("config.json").is_file();
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if complete(&dir) {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| complete(p))
        .collect();
    dirs.sort();
    dirs.pop()
}

#[cfg(feature = "hub")]
fn download(id: &str, cache: &Path) -> Result<ModelSource, ModelError> {
    let not_found = |detail: String| ModelError::NotFound {
        reference: id.to_string(),
        detail,
    };
    let client = hf_hub::HFClient::builder()
        .cache_dir(cache)
        .build_sync()
        .map_err(|e| not_found(format!("cannot start the hub client: {e}")))?;
    let (owner, name) = hf_hub::split_id(id);
    let repo = client.model(owner, name);
    let fetch = |file: &str| repo.download_file().filename(file).send();
    let mut dir = None;
    for file in ["config.json", "tokenizer.json", "model.safetensors"] {
        let path = fetch(file).map_err(|e| {
            not_found(format!(
                "not in the HF cache at {} and the hub download of {file} failed: {e}",
                cache.display()
            ))
        })?;
        dir = path.parent().map(Path::to_path_buf);
    }
    // Optional sentence-transformers files; their absence is not an error.
    for file in ["1_Pooling/config.json", "sentence_bert_config.json"] {
        if let Err(e) = fetch(file) {
            tracing::debug!(file, error = %e, "optional model file not downloaded");
        }
    }
    let dir = dir.ok_or_else(|| not_found("the hub returned no files".into()))?;
    Ok(ModelSource {
        dir,
        id: id.to_string(),
    })
}

#[cfg(not(feature = "hub"))]
fn download(id: &str, cache: &Path) -> Result<ModelSource, ModelError> {
    Err(ModelError::NotFound {
        reference: id.to_string(),
        detail: format!(
            "not in the HF cache at {}, and this build cannot download (rebuild with \
             `--features hub`, or pass a local model directory)",
            cache.display()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_are_recognised() {
        assert!(looks_like_hub_id("sentence-transformers/all-MiniLM-L6-v2"));
        assert!(!looks_like_hub_id("all-MiniLM-L6-v2"));
        assert!(!looks_like_hub_id("a/b/c"));
        assert!(!looks_like_hub_id("/abs/path"));
    }

    #[test]
    fn local_dir_resolves_with_its_name_as_id() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("my-model");
        std::fs::create_dir_all(&dir)?;
        let src = resolve_model(&dir.to_string_lossy())?;
        assert_eq!(src.id, "my-model");
        Ok(())
    }

    #[test]
    fn cache_snapshot_is_found() -> anyhow::Result<()> {
        let tmp = tempfile::tempdir()?;
        let cache = tmp.path();
        let snap = cache.join("models--org--tiny/snapshots/abc123");
        std::fs::create_dir_all(&snap)?;
        std::fs::write(snap.join("config.json"), "{}")?;
        std::fs::create_dir_all(cache.join("models--org--tiny/refs"))?;
        std::fs::write(cache.join("models--org--tiny/refs/main"), "abc123\n")?;
        assert_eq!(find_in_cache(cache, "org/tiny"), Some(snap));
        assert_eq!(find_in_cache(cache, "org/other"), None);
        Ok(())
    }

    #[test]
    fn unknown_reference_is_a_clear_error() {
        let err = resolve_model("no/such-model-anywhere")
            .map(|_| ())
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("no/such-model-anywhere"), "{msg}");
        assert!(msg.contains("cache"), "{msg}");
        let err = resolve_model("./definitely/not/here")
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }
}
