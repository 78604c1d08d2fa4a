//! Page-text extraction on arbitrary bytes: `extract_layout` must answer (pages or a named
//! reason) without panicking, looping or exhausting memory, and what it answers must be well
//! formed: every layout line inside its page's text, in order, with a box inside the page;
//! passages cut from it must point into the text too.
//!
//! Any panic counts, even one the extractor's own `catch_unwind` would catch: libFuzzer's
//! panic hook aborts first, so the net never hides a root cause from the fuzzer.

#![no_main]

use folio_core::ChunkSettings;
use folio_indexer::chunk::chunk_page;
use folio_indexer::pdf::extract_layout;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
