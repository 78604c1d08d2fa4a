//! Helpers shared by the indexer's integration tests (each test binary uses some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The qpdf test-suite directory of the shared data, or `None` (with a printed reason) on a
/// checkout without `shared/` beside it. In CI its absence is a failure: shared/ sits beside
/// the clone there.
pub fn qpdf_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/pdf-qpdf");
    if dir.is_dir() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing in CI",
        dir.display()
    );
    eprintln!("skipped: {} not found", dir.display());
    None
}

/// Every `*.pdf` of the qpdf directory, sorted (the suite has more than 600).
pub fn qpdf_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    files.sort();
    assert!(files.len() > 600, "{} files", files.len());
    Ok(files)
}

/// The bundled sample PDFs (`datasets/samples/*.pdf`), sorted.
pub fn samples() -> std::io::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/samples");
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pdf"))
        .collect();
    files.sort();
    Ok(files)
}
