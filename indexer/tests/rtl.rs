//! Right-to-left text (`tests/data/rtl.pdf`, made by `scripts/reference/rtl_fixture.py`):
//! Hebrew and Arabic lines drawn in visual order, as producers draw them, come out in reading
//! order (what poppler's pdftotext gives), with a Latin word inside a Hebrew line the right
//! way round; their lines are marked right-to-left, and a passage's box sits where its words
//! are drawn: the start of a right-to-left line at its right end.

use folio_indexer::layout::{ExtractedPage, boxes_for};
use folio_indexer::pdf::extract_layout;

fn page() -> anyhow::Result<ExtractedPage> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rtl.pdf");
    let mut pages = extract_layout(std::fs::read(path)?)?;
    anyhow::ensure!(pages.len() == 1, "{} pages", pages.len());
    Ok(pages.remove(0))
}

/// Char offset of `needle` in `text`.
fn find(text: &str, needle: &str) -> u32 {
    let byte = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {text:?}"));
    text[..byte].chars().count() as u32
}

#[test]
fn rtl_lines_read_in_logical_order_with_latin_words_intact() -> anyhow::Result<()> {
    let page = page()?;
    let lines: Vec<&str> = page.text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines,
        [
            "Folio reads right-to-left text.",
            "שלום עולם ומסמכים",
            "גרסה Folio חדשה",
            "مرحبا بالعالم",
        ]
    );
    let rtl: Vec<bool> = page.lines.iter().map(|l| l.rtl).collect();
    assert_eq!(rtl, [false, true, true, true]);
    // The right-to-left lines are right-aligned at 523 pt of 595.
    for l in &page.lines[1..] {
        assert!((l.bbox.x1 - 523.0 / 595.0).abs() < 0.005, "{l:?}");
    }
    Ok(())
}

#[test]
fn boxes_of_rtl_words_sit_where_the_words_are_drawn() -> anyhow::Result<()> {
    let page = page()?;
    let line = |i: usize| page.lines[i].bbox;
    // "שלום", the first word read, is drawn at the right end of its line: its box covers
    // the right quarter or so, not the left.
    let start = find(&page.text, "שלום");
    let word = boxes_for(&page.lines, start, start + 4);
    assert_eq!(word.len(), 1);
    let (l, w) = (line(1), word[0]);
    assert!((w.x1 - l.x1).abs() < 1e-4, "{w:?} in {l:?}");
    assert!(w.x0 > l.x0 + 0.6 * (l.x1 - l.x0), "{w:?} in {l:?}");
    // "Folio" in the middle of a Hebrew line: the box is the middle third, where it is drawn.
    let start = find(&page.text, "Folio חדשה");
    let word = boxes_for(&page.lines, start, start + 5)[0];
    let l = line(2);
    let third = (l.x1 - l.x0) / 3.0;
    assert!(
        (word.x0 - (l.x0 + third)).abs() < 0.2 * third,
        "{word:?} in {l:?}"
    );
    assert!(
        (word.x1 - (l.x1 - third)).abs() < 0.2 * third,
        "{word:?} in {l:?}"
    );
    // A left-to-right line is still cut from the left.
    let word = boxes_for(&page.lines, 0, 5)[0];
    assert!((word.x0 - line(0).x0).abs() < 1e-4, "{word:?}");
    Ok(())
}
