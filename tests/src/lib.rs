//! End-to-end tests across Folio's crates (see `tests/`), and the helpers they share.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use folio_models::{BertEmbedder, ModelSource};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Test data bundled with the e2e tests (corrupt, empty and encrypted PDFs).
pub fn test_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

/// Loads the default text embedder from `models/all-MiniLM-L6-v2`, or fails with the command
/// that fetches it.
pub fn default_embedder() -> anyhow::Result<(Arc<BertEmbedder>, ModelSource)> {
    let dir = repo_root().join("models/all-MiniLM-L6-v2");
    anyhow::ensure!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-default-model.sh first",
        dir.display()
    );
    let source = folio_models::resolve_model(&dir.to_string_lossy())?;
    let embedder = BertEmbedder::load(&source, &folio_models::default_device())?;
    Ok((Arc::new(embedder), source))
}
