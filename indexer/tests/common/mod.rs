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

/// A PDF of `objects` (object `i + 1` is `objects[i]`: a dictionary, or a dictionary and its
/// stream), the catalog first, with a correct cross-reference table.
pub fn pdf<B: AsRef<[u8]>>(objects: &[B]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend_from_slice(body.as_ref());
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for o in offsets {
        out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}
