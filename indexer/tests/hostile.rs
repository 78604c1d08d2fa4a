//! Every PDF of qpdf's test suite (shared data: about 60 of them deliberately broken) either
//! yields pages or fails with a named reason; the parser never panics (our `catch_unwind` net
//! stays unused).

use std::time::Instant;

use folio_indexer::pdf::{PdfError, extract_pages};

mod common;

#[test]
fn qpdf_corpus_never_crashes_the_extractor() -> std::io::Result<()> {
    let Some(dir) = common::qpdf_dir() else {
        return Ok(());
    };
    let files = common::qpdf_files(&dir)?;
    let started = Instant::now();
    let (mut ok, mut failed, mut crashed) = (0, 0, Vec::new());
    for path in &files {
        match extract_pages(std::fs::read(path)?) {
            Ok(pages) => {
                assert!(!pages.is_empty(), "{}: Ok with no pages", path.display());
                ok += 1;
            }
            Err(PdfError::Crashed(message)) => {
                crashed.push(format!("{}: {message}", path.display()))
            }
            Err(_) => failed += 1,
        }
    }
    println!(
        "{} files: {ok} extracted, {failed} failed with a reason, in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        crashed.is_empty(),
        "the parser panicked on:\n{}",
        crashed.join("\n")
    );
    assert!(ok > 500, "only {ok} files extracted");
    Ok(())
}
