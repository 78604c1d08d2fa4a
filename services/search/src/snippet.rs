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
        w.split(|c: char| !c.is_alphanumeric())
            .any(|part| matches(&part.to_lowercase(), &terms))
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

/// Words too common to centre a snippet on or to highlight.
const STOPWORDS: [&str; 32] = [
    "about", "after", "all", "and", "any", "are", "but", "can", "did", "does", "for", "from",
    "had", "has", "have", "how", "into", "its", "not", "our", "than", "that", "the", "their",
    "this", "was", "were", "what", "when", "which", "who", "with",
];

/// The query's lowercased words of 3+ chars, stopwords left out: what snippets centre on and
/// highlight.
fn terms(query: &str) -> Vec<String> {
    query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| t.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|t| !STOPWORDS.contains(&t.as_str()))
        .collect()
}

/// Whether a lowercased word matches a term: once a plural or verb ending is cut from both,
/// one starts with the other (`tables` for `table`, `patents` for `patented`), the shorter
/// keeping 3+ chars.
fn matches(word: &str, terms: &[String]) -> bool {
    let w = stem(word);
    w.chars().count() >= 3
        && terms.iter().any(|t| {
            let t = stem(t);
            w.starts_with(t) || (t.starts_with(w) && w.chars().count() >= 4)
        })
}

/// `word` without one of a few English endings, when 3+ chars remain.
fn stem(word: &str) -> &str {
    ["ing", "ed", "es", "s"]
        .iter()
        .find_map(|end| {
            word.strip_suffix(end)
                .filter(|rest| rest.chars().count() >= 3)
        })
        .unwrap_or(word)
}

/// `[start, end)` offsets in `snippet`, in chars (Unicode scalar values), of the words
/// (alphanumeric runs) that match a query term, in order, for highlighting.
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
            if matches(&word.to_lowercase(), &terms) {
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
        // Stopwords and words that merely contain a term are left alone; a shorter form of a
        // term is marked.
        assert_eq!(
            highlights("Other than the patent, the patents", "the patented"),
            vec![[15, 21], [27, 34]]
        );
    }

    #[test]
    fn empty_and_huge_words() {
        assert_eq!(snippet("", "x"), "");
        let s = snippet(&"x".repeat(1000), "x");
        assert_eq!(s.chars().count(), SNIPPET_CHARS + 1);
    }
}
