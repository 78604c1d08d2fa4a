//! Cutting page text into overlapping passages of whole words.
//!
//! With a page layout ([`ExtractedPage::lines`]), passages follow its blocks: the words of a
//! page are first split into sections at block boundaries, a block shorter than half a
//! passage joining the blocks after it (a heading goes with its paragraph; a short last block
//! joins the one before), and windows are cut within each section. So a passage does not run
//! from one column into the next, and each one carries the boxes of the lines it covers.
//! Without a layout the whole page is one section, as for text documents.

use folio_core::{BBox, ChunkSettings};

use crate::layout::{ExtractedPage, boxes_for};

/// A passage cut from a page: char offsets into the page text, and its text with whitespace
/// runs collapsed to single spaces.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    /// Start offset in chars.
    pub char_start: u32,
    /// End offset (exclusive) in chars.
    pub char_end: u32,
    /// The words of the span joined by single spaces.
    pub text: String,
    /// Where the passage is on the page (see [`crate::layout::boxes_for`]); empty without a
    /// layout.
    pub boxes: Vec<BBox>,
}

/// `(char_start, char_end, byte_start, byte_end)` of every word (whitespace-separated run).
fn words(text: &str) -> Vec<(u32, u32, usize, usize)> {
    let mut words = Vec::new();
    let mut current: Option<(u32, usize)> = None;
    let mut chars = 0u32;
    for (byte, c) in text.char_indices() {
        match (c.is_whitespace(), current) {
            (false, None) => current = Some((chars, byte)),
            (true, Some((cs, bs))) => {
                words.push((cs, chars, bs, byte));
                current = None;
            }
            _ => {}
        }
        chars += 1;
    }
    if let Some((cs, bs)) = current {
        words.push((cs, chars, bs, text.len()));
    }
    words
}

/// Splits `text` into windows of `settings.words` words, each starting
/// `words - overlap` words after the previous one; the last window ends at the last word.
pub fn chunk_text(text: &str, settings: ChunkSettings) -> Vec<Chunk> {
    let words = words(text);
    let mut out = Vec::new();
    windows(text, &words, settings, &[], &mut out);
    out
}

/// Cuts a page into passages: windows as [`chunk_text`] cuts them, within sections of whole
/// blocks of the page's layout, each passage with the boxes of the lines it covers.
pub fn chunk_page(page: &ExtractedPage, settings: ChunkSettings) -> Vec<Chunk> {
    let text = page.text.as_str();
    let words = words(text);
    let mut out = Vec::new();
    for section in sections(&words, page, settings) {
        windows(text, &words[section], settings, &page.lines, &mut out);
    }
    out
}

/// The ranges of `words` that passages are cut within: runs of whole blocks, each at least
/// half a passage long where the page allows.
fn sections(
    words: &[(u32, u32, usize, usize)],
    page: &ExtractedPage,
    settings: ChunkSettings,
) -> Vec<std::ops::Range<usize>> {
    if page.lines.is_empty() || words.is_empty() {
        let whole = 0..words.len();
        return vec![whole];
    }
    // A word belongs to the block of the last line starting at or before it (words the
    // layout could not place go with the text before them).
    let block_of = |char_start: u32| {
        let i = page.lines.partition_point(|l| l.start <= char_start);
        page.lines[i.saturating_sub(1)].block
    };
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    let mut last = None;
    for (i, w) in words.iter().enumerate() {
        let b = block_of(w.0);
        match runs.last_mut() {
            Some(r) if last == Some(b) => r.end = i + 1,
            _ => runs.push(i..i + 1),
        }
        last = Some(b);
    }
    let min = (settings.words / 2).max(1);
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut open: Option<std::ops::Range<usize>> = None;
    for r in runs {
        let cur = match open.take() {
            Some(o) => o.start..r.end,
            None => r,
        };
        if cur.len() >= min {
            out.push(cur);
        } else {
            open = Some(cur);
        }
    }
    if let Some(rest) = open {
        match out.last_mut() {
            Some(prev) => prev.end = rest.end,
            None => out.push(rest),
        }
    }
    out
}

/// Cuts `words` into windows of `settings.words` words, each starting `words - overlap` words
/// after the previous one, the last ending at the last word; pushes them to `out` with the
/// boxes of `lines` they cover.
fn windows(
    text: &str,
    words: &[(u32, u32, usize, usize)],
    settings: ChunkSettings,
    lines: &[crate::layout::TextLine],
    out: &mut Vec<Chunk>,
) {
    let size = settings.words.max(1);
    let stride = size.saturating_sub(settings.overlap).max(1);
    let mut start = 0;
    while start < words.len() {
        let end = start.saturating_add(size).min(words.len());
        let span = &words[start..end];
        let joined = span
            .iter()
            .map(|&(_, _, b0, b1)| &text[b0..b1])
            .collect::<Vec<_>>()
            .join(" ");
        let (char_start, char_end) = (span[0].0, span[span.len() - 1].1);
        out.push(Chunk {
            char_start,
            char_end,
            text: joined,
            boxes: boxes_for(lines, char_start, char_end),
        });
        if end == words.len() {
            break;
        }
        start += stride;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(words: usize, overlap: usize) -> ChunkSettings {
        ChunkSettings { words, overlap }
    }

    #[test]
    fn offsets_point_at_the_words_in_chars() {
        let text = "  héllo   wörld\nagain ";
        let chunks = chunk_text(text, settings(2, 0));
        assert_eq!(chunks.len(), 2);
        let chars: Vec<char> = text.chars().collect();
        let slice = |c: &Chunk| -> String {
            chars[c.char_start as usize..c.char_end as usize]
                .iter()
                .collect()
        };
        assert_eq!(chunks[0].text, "héllo wörld");
        assert_eq!(slice(&chunks[0]), "héllo   wörld");
        assert_eq!(chunks[1].text, "again");
        assert_eq!(slice(&chunks[1]), "again");
    }

    #[test]
    fn windows_overlap_and_cover_every_word() {
        let text = (0..10)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let chunks = chunk_text(&text, settings(4, 1));
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["w0 w1 w2 w3", "w3 w4 w5 w6", "w6 w7 w8 w9"]);
    }

    #[test]
    fn blank_text_has_no_chunks_and_bad_settings_do_not_loop() {
        assert!(chunk_text(" \n\t ", settings(4, 1)).is_empty());
        assert_eq!(chunk_text("a b c", settings(2, 5)).len(), 2);
        assert_eq!(chunk_text("a b c", settings(0, 0)).len(), 3);
    }

    /// A page whose text is `blocks` (lists of lines, each line a string), one block per
    /// column, with made-up line boxes: block `b` line `i` at x `0.1 + 0.45 b`, y `0.1 + 0.02 i`.
    fn page(blocks: &[&[&str]]) -> ExtractedPage {
        let mut text = String::new();
        let mut lines = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            for (i, line) in block.iter().enumerate() {
                let start = text.chars().count() as u32;
                text.push_str(line);
                let end = text.chars().count() as u32;
                text.push('\n');
                let (x0, y0) = (0.1 + 0.45 * b as f32, 0.1 + 0.02 * i as f32);
                lines.push(crate::layout::TextLine {
                    start,
                    end,
                    block: b as u32,
                    rtl: false,
                    bbox: BBox {
                        x0,
                        y0,
                        x1: x0 + 0.4,
                        y1: y0 + 0.015,
                    },
                });
            }
        }
        ExtractedPage { text, lines }
    }

    #[test]
    fn passages_stay_within_blocks_and_carry_their_boxes() {
        let left: &[&str] = &["a1 a2 a3", "a4 a5 a6", "a7 a8"];
        let right: &[&str] = &["b1 b2 b3", "b4 b5"];
        let p = page(&[left, right]);
        let chunks = chunk_page(&p, settings(4, 1));
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        // Without the layout the windows run on from one column into the other.
        let plain: Vec<String> = chunk_text(&p.text, settings(4, 1))
            .into_iter()
            .map(|c| c.text)
            .collect();
        assert!(
            plain.iter().any(|t| t.contains('a') && t.contains('b')),
            "{plain:?}"
        );
        assert_eq!(
            texts,
            [
                "a1 a2 a3 a4",
                "a4 a5 a6 a7",
                "a7 a8",
                "b1 b2 b3 b4",
                "b4 b5"
            ]
        );
        for c in &chunks {
            assert!(!c.boxes.is_empty(), "{c:?}");
            // Each passage's boxes are in its own column.
            let column = if c.text.starts_with('a') { 0.1 } else { 0.55 };
            assert!(
                c.boxes
                    .iter()
                    .all(|b| b.x0 >= column - 1e-6 && b.x1 <= column + 0.4 + 1e-6)
            );
        }
        // "a1 a2 a3 a4": line 0 whole, line 1 in part: two boxes.
        assert_eq!(chunks[0].boxes.len(), 2, "{:?}", chunks[0].boxes);
        assert_eq!(chunks[0].boxes[0], p.lines[0].bbox);
        assert!(chunks[0].boxes[1].x1 < p.lines[1].bbox.x1);
        // Same offsets as plain chunking within a column.
        assert_eq!(chunks[0].char_start, 0);
        assert_eq!(chunks[3].char_start, p.lines[3].start);
    }

    #[test]
    fn short_blocks_join_their_neighbours() {
        // A heading, a column, a page number: the heading goes with the column, the page
        // number with the column before it.
        let heading: &[&str] = &["Title"];
        let body: &[&str] = &["w1 w2 w3 w4 w5", "w6 w7 w8"];
        let number: &[&str] = &["7"];
        let p = page(&[heading, body, number]);
        let chunks = chunk_page(&p, settings(6, 2));
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, ["Title w1 w2 w3 w4 w5", "w4 w5 w6 w7 w8 7"]);
        // A page of one short block is one passage.
        let p = page(&[&["just a few words"]]);
        let chunks = chunk_page(&p, settings(120, 30));
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].boxes, [p.lines[0].bbox]);
        // Without a layout, chunk_page is chunk_text.
        let text = ExtractedPage::text_only("one two three four five".into());
        assert_eq!(
            chunk_page(&text, settings(2, 1)),
            chunk_text(&text.text, settings(2, 1))
        );
    }
}
