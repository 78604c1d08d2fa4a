//! Cutting page text into overlapping passages of whole words.

use folio_core::ChunkSettings;

/// A passage cut from a page: char offsets into the page text, and its text with whitespace
/// runs collapsed to single spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Start offset in chars.
    pub char_start: u32,
    /// End offset (exclusive) in chars.
    pub char_end: u32,
    /// The words of the span joined by single spaces.
    pub text: String,
}

/// Splits `text` into windows of `settings.words` words, each starting
/// `words - overlap` words after the previous one; the last window ends at the last word.
pub fn chunk_text(text: &str, settings: ChunkSettings) -> Vec<Chunk> {
    // (char_start, char_end, byte_start, byte_end) of every word.
    let mut words: Vec<(u32, u32, usize, usize)> = Vec::new();
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
    let size = settings.words.max(1);
    let stride = size.saturating_sub(settings.overlap).max(1);
    let mut out = Vec::new();
    let mut start = 0;
    while start < words.len() {
        let end = start.saturating_add(size).min(words.len());
        let span = &words[start..end];
        let text = span
            .iter()
            .map(|&(_, _, b0, b1)| &text[b0..b1])
            .collect::<Vec<_>>()
            .join(" ");
        out.push(Chunk {
            char_start: span[0].0,
            char_end: span[span.len() - 1].1,
            text,
        });
        if end == words.len() {
            break;
        }
        start += stride;
    }
    out
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
}
