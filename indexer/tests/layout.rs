//! Page layouts of the bundled samples: line boxes on the page, in reading order, columns one
//! after the other, and passages that carry the boxes of their words.

mod common;

use folio_core::{BBox, ChunkSettings};
use folio_indexer::chunk::chunk_page;
use folio_indexer::layout::ExtractedPage;
use folio_indexer::pdf::{extract_layout, extract_pages};

fn name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn multicolumn() -> anyhow::Result<Vec<ExtractedPage>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../datasets/samples/multicolumn.pdf");
    Ok(extract_layout(std::fs::read(path)?)?)
}

fn valid(b: &BBox) -> bool {
    [b.x0, b.y0, b.x1, b.y1]
        .iter()
        .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
        && b.x1 > b.x0
        && b.y1 > b.y0
}

#[test]
fn sample_lines_are_on_the_page_in_reading_order() -> anyhow::Result<()> {
    let files = common::samples()?;
    assert!(files.len() >= 5, "{} sample PDFs", files.len());
    for path in &files {
        let file = name(path);
        let bytes = std::fs::read(path)?;
        let pages = extract_layout(bytes.clone())?;
        // The text is the text-only extraction's, char for char.
        let texts: Vec<&str> = pages.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, extract_pages(bytes)?, "{file}");
        let (mut chars, mut placed) = (0usize, 0usize);
        for (i, page) in pages.iter().enumerate() {
            let at = format!("{file} page {}", i + 1);
            let n = page.text.chars().count() as u32;
            let mut in_line = vec![false; n as usize];
            for (k, l) in page.lines.iter().enumerate() {
                assert!(valid(&l.bbox), "{at}: line {k} {l:?}");
                assert!(l.start < l.end && l.end <= n, "{at}: line {k} {l:?}");
                for c in &mut in_line[l.start as usize..l.end as usize] {
                    *c = true;
                }
                let Some(prev) = k.checked_sub(1).map(|p| &page.lines[p]) else {
                    continue;
                };
                // Lines follow the text, blocks are numbered in order.
                assert!(prev.end <= l.start, "{at}: lines {} and {k} overlap", k - 1);
                assert!(l.block == prev.block || l.block == prev.block + 1, "{at}");
                // Within a block, lines go down the page (or on along the same row).
                if l.block == prev.block {
                    assert!(
                        l.bbox.y0 >= prev.bbox.y0 - 0.5 * (prev.bbox.y1 - prev.bbox.y0),
                        "{at}: line {k} {l:?} is above line {} {prev:?} of its block",
                        k - 1
                    );
                }
            }
            for (c, inside) in page.text.chars().zip(&in_line) {
                if !c.is_whitespace() {
                    chars += 1;
                    placed += usize::from(*inside);
                }
            }
        }
        // Nearly every char of the text has its place on the page.
        let share = placed as f64 / chars.max(1) as f64;
        assert!(
            share > 0.95,
            "{file}: only {placed} of {chars} chars placed"
        );
    }
    Ok(())
}

#[test]
fn multicolumn_reads_the_left_column_then_the_right() -> anyhow::Result<()> {
    let pages = multicolumn()?;
    assert_eq!(pages.len(), 3);
    // Pages 1 and 2 are set in two columns (page 3 holds a table).
    for (i, page) in pages.iter().enumerate().take(2) {
        // Body lines sit in one column or the other; the first right-column line comes after
        // the last left-column line.
        let column = |b: &BBox| match (b.x1 <= 0.51, b.x0 >= 0.51) {
            (true, false) => Some(0),
            (false, true) => Some(1),
            _ => None,
        };
        let columns: Vec<u8> = page.lines.iter().filter_map(|l| column(&l.bbox)).collect();
        let last_left = columns.iter().rposition(|&c| c == 0);
        let first_right = columns.iter().position(|&c| c == 1);
        assert!(
            matches!((last_left, first_right), (Some(l), Some(r)) if l < r),
            "page {}: columns in the order {columns:?}",
            i + 1
        );
        // No block runs across both columns.
        for b in page.blocks() {
            assert!(
                !(b.bbox.x0 < 0.45 && b.bbox.x1 > 0.55 && b.bbox.y1 - b.bbox.y0 > 0.1),
                "page {}: block {b:?} spans the columns",
                i + 1
            );
        }
    }
    // Page 1: the right column starts at the top of the right half.
    let first = &pages[0];
    let chars: Vec<char> = first.text.chars().collect();
    let line_text = |l: &folio_indexer::layout::TextLine| -> String {
        chars[l.start as usize..l.end as usize].iter().collect()
    };
    let right = first
        .lines
        .iter()
        .find(|l| line_text(l).starts_with("pellentesque ante."))
        .ok_or_else(|| anyhow::anyhow!("no right-column line"))?;
    assert!(right.bbox.x0 > 0.5 && right.bbox.y0 < 0.35, "{right:?}");
    // Page 3: a table, read row by row, in one block.
    let table = &pages[2];
    let blocks = table.blocks();
    let text: Vec<char> = table.text.chars().collect();
    let rows: String = blocks
        .iter()
        .map(|b| {
            text[b.start as usize..b.end as usize]
                .iter()
                .collect::<String>()
        })
        .find(|t| t.contains("Austria"))
        .unwrap_or_default();
    let austria = rows.find("Austria 8.9 83,879 Vienna German");
    let belgium = rows.find("Belgium 11.5 30,689 Brussels");
    assert!(
        matches!((austria, belgium), (Some(a), Some(b)) if a < b),
        "{rows:?}"
    );
    Ok(())
}

#[test]
fn passages_carry_the_boxes_of_their_words_and_keep_to_their_column() -> anyhow::Result<()> {
    let pages = multicolumn()?;
    let settings = ChunkSettings::default();
    let mut passages = 0;
    for (i, page) in pages.iter().enumerate() {
        let chars: Vec<char> = page.text.chars().collect();
        for c in chunk_page(page, settings) {
            passages += 1;
            let at = format!("page {} passage {:?}", i + 1, c.text);
            assert!(!c.boxes.is_empty() && c.boxes.iter().all(valid), "{at}");
            // The first and the last word are inside the boxes: their lines' rows are among
            // them, and the boxes reach the word horizontally.
            for offset in [c.char_start, c.char_end - 1] {
                let line = page
                    .lines
                    .iter()
                    .find(|l| l.start <= offset && offset < l.end)
                    .ok_or_else(|| anyhow::anyhow!("{at}: char {offset} is in no line"))?;
                let holds = c.boxes.iter().any(|b| {
                    b.y0 <= line.bbox.y0 + 1e-6
                        && b.y1 >= line.bbox.y1 - 1e-6
                        && b.x0 < line.bbox.x1
                        && b.x1 > line.bbox.x0
                });
                let word: String = chars[offset as usize..]
                    .iter()
                    .take_while(|c| !c.is_whitespace())
                    .collect();
                assert!(holds, "{at}: {word:?} in {line:?} is outside {:?}", c.boxes);
            }
            // A passage of body text stays in one column.
            let left = c.boxes.iter().any(|b| b.x1 <= 0.51);
            let right = c.boxes.iter().any(|b| b.x0 >= 0.51);
            assert!(
                !(left && right),
                "{at}: boxes in both columns {:?}",
                c.boxes
            );
        }
    }
    assert!(passages >= 10, "{passages} passages");
    Ok(())
}
