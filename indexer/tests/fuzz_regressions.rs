//! Inputs the page-text fuzz target (`indexer/fuzz`, `scripts/fuzz.sh`) found crashing, kept in
//! `tests/fuzz-regressions/`: each must come back from `extract_layout` (pages, or a failure
//! with a named reason), never unwind out of it.
//!
//! `pdf-oxide-obj-char-boundary.pdf`: pdf_oxide 0.3.78 (the newest release) slices a line at
//! a byte offset inside a multi-byte character while looking for an `obj` keyword after a
//! damaged xref, and panics. The fault is in the dependency; until a release fixes it the
//! extractor's panic net turns it into "PDF parser crashed: ..." for that file alone.
//!
//! `pdf-oxide-cmap-char-boundary.pdf`: the same kind of fault in pdf_oxide's ToUnicode CMap
//! parser (`fonts/cmap.rs`): a destination hex string with a non-ASCII byte is sliced four
//! bytes at a time, inside a multi-byte character.

use std::panic::{AssertUnwindSafe, catch_unwind};

use folio_indexer::pdf::{PdfError, extract_layout};

#[test]
fn fuzz_regressions_fail_alone_with_a_reason() -> std::io::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions");
    let mut files: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for path in files {
        let bytes = std::fs::read(&path)?;
        let name = path.display();
        match catch_unwind(AssertUnwindSafe(|| extract_layout(bytes))) {
            Err(_) => panic!("{name}: extract_layout unwound"),
            Ok(Ok(pages)) => assert!(!pages.is_empty(), "{name}: Ok with no pages"),
            Ok(Err(e)) => {
                let reason = e.to_string();
                assert!(reason.len() > 20, "{name}: reason {reason:?}");
                if let PdfError::Crashed(message) = &e {
                    println!("{name}: caught: {message}");
                }
            }
        }
    }
    Ok(())
}
