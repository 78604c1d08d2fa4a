//! Page-text extraction on arbitrary bytes: `extract_layout` must answer (pages or a named
//! reason) without panicking, looping or exhausting memory, and what it answers must be well
//! formed: every layout line inside its page's text, in order, with a box inside the page;
//! passages cut from it must point into the text too.
//!
//! Any panic counts as a crash (the process aborts, as under libFuzzer's own panic hook), even
//! one the extractor's `catch_unwind` would catch, so the net never hides a root cause from the
//! fuzzer. The one exception is [`KNOWN`]: panics at those places in a dependency, found by
//! earlier runs and kept as regression files in `indexer/tests/fuzz-regressions/`, unwind into
//! the extractor's net (which names them) so that the fuzzer goes on looking for new ones.

#![no_main]

use std::panic::PanicHookInfo;
use std::sync::Once;

use folio_core::ChunkSettings;
use folio_indexer::chunk::chunk_page;
use folio_indexer::pdf::extract_layout;
use libfuzzer_sys::fuzz_target;

/// Known panics (source file suffix, line) in pdf_oxide 0.3.78, the newest release, each
/// with its regression file; see `indexer/tests/fuzz_regressions.rs`. Bump or empty this list
/// when pdf_oxide is upgraded.
const KNOWN: &[(&str, u32)] = &[
    // A line sliced inside a multi-byte character while looking for `obj`:
    // pdf-oxide-obj-char-boundary.pdf.
    ("pdf_oxide-0.3.78/src/document.rs", 25363),
    // A ToUnicode destination hex string sliced inside a multi-byte character:
    // pdf-oxide-cmap-char-boundary.pdf.
    ("pdf_oxide-0.3.78/src/fonts/cmap.rs", 817),
];

fn known(info: &PanicHookInfo<'_>) -> bool {
    info.location().is_some_and(|l| {
        KNOWN
            .iter()
            .any(|&(file, line)| l.line() == line && l.file().ends_with(file))
    })
}

/// Replaces libFuzzer's panic hook: known panics unwind quietly, any other aborts.
fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            if !known(info) {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    install_hook();
    let Ok(pages) = extract_layout(data.to_vec()) else {
        return;
    };
    assert!(!pages.is_empty(), "Ok with no pages");
    for page in &pages {
        let chars = page.text.chars().count() as u32;
        let mut end = 0;
        for line in &page.lines {
            let b = line.bbox;
            assert!(
                line.start >= end && line.start < line.end && line.end <= chars,
                "{line:?}"
            );
            assert!(
                [b.x0, b.y0, b.x1, b.y1]
                    .iter()
                    .all(|v| (0.0..=1.0).contains(v))
                    && b.x0 < b.x1
                    && b.y0 < b.y1,
                "{line:?}"
            );
            end = line.end;
        }
        for chunk in chunk_page(page, ChunkSettings::default()) {
            assert!(
                chunk.char_start < chunk.char_end && chunk.char_end <= chars,
                "{chunk:?}"
            );
        }
    }
});
