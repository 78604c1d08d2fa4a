//! Every PDF of qpdf's test suite (shared data: about 60 of them deliberately broken) either
//! yields pages or fails with a named reason; the parser never panics (our `catch_unwind` net
//! stays unused), and the layouts that come with the pages are well formed.

use std::time::Instant;

use folio_indexer::pdf::{PdfError, extract_layout};

mod common;

#[test]
fn qpdf_corpus_never_crashes_the_extractor() -> std::io::Result<()> {
    let Some(dir) = common::qpdf_dir() else {
        return Ok(());
    };
    let files = common::qpdf_files(&dir)?;
    let started = Instant::now();
    let (mut ok, mut failed, mut crashed, mut lines) = (0, 0, Vec::new(), 0);
    for path in &files {
        match extract_layout(std::fs::read(path)?) {
            Ok(pages) => {
                assert!(!pages.is_empty(), "{}: Ok with no pages", path.display());
                for (i, page) in pages.iter().enumerate() {
                    let chars = page.text.chars().count() as u32;
                    let mut end = 0;
                    for l in &page.lines {
                        let b = l.bbox;
                        assert!(
                            l.start >= end
                                && l.start < l.end
                                && l.end <= chars
                                && [b.x0, b.y0, b.x1, b.y1]
                                    .iter()
                                    .all(|v| (0.0..=1.0).contains(v))
                                && b.x0 < b.x1
                                && b.y0 < b.y1,
                            "{} page {}: bad line {l:?}",
                            path.display(),
                            i + 1
                        );
                        end = l.end;
                        lines += 1;
                    }
                }
                ok += 1;
            }
            Err(PdfError::Crashed(message)) => {
                crashed.push(format!("{}: {message}", path.display()))
            }
            Err(_) => failed += 1,
        }
    }
    println!(
        "{} files: {ok} extracted ({lines} layout lines), {failed} failed with a reason, in {:.1} s",
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
