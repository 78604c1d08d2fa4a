//! Snippets: a short window of a passage around the first query term it contains, and where
//! the query's terms sit in it.

/// Longest snippet, in chars (ellipses excluded).
pub const SNIPPET_CHARS: usize = 240;

/// A window of at most [`SNIPPET_CHARS`] chars of `text`, starting a little before the first
/// occurrence of a query word (case-insensitive, words of 3+ chars), or at the start. Cut on
/// word boundaries; `…` marks cuts. Whitespace runs are collapsed.
pub fn snippet(text: &str, query: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return String::new();
    }
    let terms = terms(query);
    let first_match = words.iter().position(|w| {
        let w = w.to_lowercase();
        terms.iter().any(|t| w.contains(t.as_str()))
    });
    // Start a few words before the match so it reads in context.
    let mut start = first_match.map_or(0, |i| i.saturating_sub(6));
    let mut len = 0;
    let mut end = start;
    while end < words.len() {
        let add = words[end].chars().count() + usize::from(end > start);
        if len + add > SNIPPET_CHARS && end > start {
            break;
        }
        len += add;
        end += 1;
    }
    // If the window stops short of the end of the text, the match may still sit late: shift
    // the window back to use the slack at the start.
    while end == words.len() && start > 0 {
        let add = words[start - 1].chars().count() + 1;
        if len + add > SNIPPET_CHARS {
            break;
        }
        len += add;
        start -= 1;
    }
    let mut out = String::with_capacity(len + 8);
    if start > 0 {
        out.push_str("… ");
    }
    out.push_str(&words[start..end].join(" "));
    if end < words.len() {
        out.push_str(" …");
    }
    if out.chars().count() > SNIPPET_CHARS + 4 {
        // A single word longer than the window.
        out = out.chars().take(SNIPPET_CHARS).collect::<String>() + "…";
    }
    out
}

/// The query's lowercased words of 3+ chars: what snippets centre on and highlight.
fn terms(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| t.chars().count() >= 3)
        .map(str::to_lowercase)
        .collect()
}

/// `[start, end)` char offsets in `snippet` of the words (alphanumeric runs) that contain a
/// query term, in order, for highlighting.
pub fn highlights(snippet: &str, query: &str) -> Vec<[u32; 2]> {
    let terms = terms(query);
    if terms.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut word = String::new();
    let mut start = 0u32;
    let mut flush = |word: &mut String, start: u32, end: u32| {
        if !word.is_empty() {
            let lower = word.to_lowercase();
            if terms.iter().any(|t| lower.contains(t.as_str())) {
                out.push([start, end]);
            }
            word.clear();
        }
    };
    let mut n = 0u32;
    for c in snippet.chars() {
        if c.is_alphanumeric() {
            if word.is_empty() {
                start = n;
            }
            word.push(c);
        } else {
            flush(&mut word, start, n);
        }
        n += 1;
    }
    flush(&mut word, start, n);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(snippet("  a  short\n text ", "text"), "a short text");
    }

    #[test]
    fn window_centres_on_the_first_match() {
        let text = (0..200)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
            + " Needle end";
        let s = snippet(&text, "needle");
        assert!(s.contains("Needle"), "{s}");
        assert!(s.starts_with("… "), "{s}");
        assert!(s.chars().count() <= SNIPPET_CHARS + 4);
    }

    #[test]
    fn no_match_starts_at_the_beginning() {
        let text = (0..200)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let s = snippet(&text, "absent");
        assert!(s.starts_with("w0 w1"), "{s}");
        assert!(s.ends_with(" …"), "{s}");
    }

    #[test]
    fn highlights_mark_words_containing_terms() {
        let s = "Tables: revenue-tables and TABLE of x";
        // chars: "Tables" 0..6, "tables" 16..22 (in "revenue-tables"), "TABLE" 27..32.
        assert_eq!(highlights(s, "table"), vec![[0, 6], [16, 22], [27, 32]]);
        assert_eq!(highlights(s, "of x"), Vec::<[u32; 2]>::new());
        assert_eq!(highlights("é café", "caf"), vec![[2, 6]]);
        assert_eq!(highlights("", "table"), Vec::<[u32; 2]>::new());
    }

    #[test]
    fn empty_and_huge_words() {
        assert_eq!(snippet("", "x"), "");
        let s = snippet(&"x".repeat(1000), "x");
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
    }
}
