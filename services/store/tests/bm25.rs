//! BM25: scores against a BM25 written out here from raw word counts, for several k1 and b,
//! and the analysers' matching.

use std::collections::HashMap;

use folio_store::{Bm25Analyzer, Bm25Index, Bm25Options};

const DOCS: [&str; 8] = [
    "apple banana apple cherry",
    "banana banana banana",
    "cherry date elderberry fig grape apple",
    "apple",
    "date date date date date date date date date date banana apple",
    "fig grape",
    "banana cherry apple date elderberry fig grape honeydew kiwi lemon mango nectarine",
    "kiwi lemon",
];

/// Lucene BM25 over lower-case, space-separated words, from the raw counts (a repeated query
/// word counts once, as in tantivy).
fn reference(query: &str, k1: f32, b: f32) -> Vec<(u64, f32)> {
    let docs: Vec<Vec<&str>> = DOCS.iter().map(|d| d.split(' ').collect()).collect();
    let n = docs.len() as f32;
    let avg = docs.iter().map(Vec::len).sum::<usize>() as f32 / n;
    let mut scores: HashMap<u64, f32> = HashMap::new();
    let mut terms: Vec<&str> = query.split(' ').collect();
    terms.dedup();
    for term in terms {
        let df = docs.iter().filter(|d| d.contains(&term)).count() as f32;
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for (i, d) in docs.iter().enumerate() {
            let tf = d.iter().filter(|w| **w == term).count() as f32;
            if tf > 0.0 {
                let norm = k1 * (1.0 - b + b * d.len() as f32 / avg);
                *scores.entry(i as u64).or_default() += idf * tf * (k1 + 1.0) / (tf + norm);
            }
        }
    }
    let mut out: Vec<(u64, f32)> = scores.into_iter().collect();
    out.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    out
}

fn build(analyzer: Bm25Analyzer, texts: &[&str]) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let options = Bm25Options {
        analyzer,
        ..Bm25Options::default()
    };
    Bm25Index::build(
        dir.path(),
        texts.iter().enumerate().map(|(i, t)| (i as u64, *t)),
        &options,
    )?;
    Ok(dir)
}

#[test]
fn scores_are_lucene_bm25_for_any_k1_and_b() -> anyhow::Result<()> {
    let dir = build(Bm25Analyzer::Plain, &DOCS)?;
    for (k1, b) in [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0), (1.5, 0.0), (0.0, 0.5)] {
        let index = Bm25Index::open(
            dir.path(),
            &Bm25Options {
                analyzer: Bm25Analyzer::Plain,
                k1,
                b,
            },
        )?;
        for query in [
            "apple",
            "banana date",
            "kiwi apple fig",
            "date",
            "apple apple",
        ] {
            let want = reference(query, k1, b);
            let got = index.search(query, 20)?;
            assert_eq!(got.len(), want.len(), "{query:?} k1 {k1} b {b}");
            for ((gid, gs), (wid, ws)) in got.iter().zip(&want) {
                assert!(
                    (gs - ws).abs() <= 1e-4 * ws.abs().max(1.0),
                    "{query:?} k1 {k1} b {b}: got {got:?}, want {want:?}"
                );
                // Ids may swap only between equal scores.
                if gid != wid {
                    let other = want.iter().find(|(id, _)| id == gid).map(|x| x.1);
                    assert!(other.is_some_and(|s| (s - ws).abs() < 1e-4), "{query:?}");
                }
            }
        }
    }
    Ok(())
}

#[test]
fn k1_and_b_change_the_ranking_as_documented() -> anyhow::Result<()> {
    // Doc 0: "fig" once in 2 words; doc 1: "fig" three times in 30 words.
    let long = format!("fig fig fig {}", vec!["pad"; 27].join(" "));
    let dir = build(Bm25Analyzer::Plain, &["fig tree", &long, "other words"])?;
    let open = |k1, b| {
        Bm25Index::open(
            dir.path(),
            &Bm25Options {
                analyzer: Bm25Analyzer::Plain,
                k1,
                b,
            },
        )
    };
    let first = |index: &Bm25Index| index.search("fig", 2).map(|h| h[0].0);
    // Full length normalisation favours the short document...
    assert_eq!(first(&open(1.2, 1.0)?)?, 0);
    // ...none favours the one with more occurrences...
    assert_eq!(first(&open(1.2, 0.0)?)?, 1);
    // ...and with k1 = 0 only presence counts: equal scores.
    let flat = open(0.0, 0.5)?.search("fig", 2)?;
    assert!((flat[0].1 - flat[1].1).abs() < 1e-6, "{flat:?}");
    Ok(())
}

#[test]
fn analysers_match_what_they_promise() -> anyhow::Result<()> {
    let texts = [
        "The runner was running quickly",
        "東京都に住んでいます",
        "Un café très noir",
        "한국어 텍스트 검색",
    ];
    let hits = |analyzer, query: &str| -> anyhow::Result<Vec<u64>> {
        let dir = build(analyzer, &texts)?;
        let index = Bm25Index::open(
            dir.path(),
            &Bm25Options {
                analyzer,
                ..Bm25Options::default()
            },
        )?;
        Ok(index.search(query, 5)?.into_iter().map(|h| h.0).collect())
    };
    // English stems: "runs" finds "running"; the others do not.
    assert_eq!(hits(Bm25Analyzer::English, "runs")?, [0]);
    assert!(hits(Bm25Analyzer::Plain, "runs")?.is_empty());
    assert_eq!(hits(Bm25Analyzer::Plain, "RUNNING")?, [0]);
    // Multilingual: a word inside an unspaced Japanese or Korean run, and accents folded.
    assert_eq!(hits(Bm25Analyzer::Multilingual, "東京")?, [1]);
    assert_eq!(hits(Bm25Analyzer::Multilingual, "텍스트")?, [3]);
    assert_eq!(hits(Bm25Analyzer::Multilingual, "cafe")?, [2]);
    assert!(hits(Bm25Analyzer::English, "東京")?.is_empty());
    assert!(hits(Bm25Analyzer::Plain, "cafe")?.is_empty());
    Ok(())
}

#[test]
fn bad_parameters_and_names_are_refused() {
    for (k1, b) in [(-0.1, 0.5), (1.2, 1.5), (f32::NAN, 0.5), (1.2, -0.01)] {
        let o = Bm25Options {
            k1,
            b,
            ..Bm25Options::default()
        };
        assert!(o.validate().is_err(), "k1 {k1} b {b}");
    }
    let e = Bm25Analyzer::parse("klingon").unwrap_err().to_string();
    assert!(e.contains("klingon") && e.contains("multilingual"), "{e}");
    assert_eq!(
        Bm25Analyzer::parse("multilingual").ok(),
        Some(Bm25Analyzer::Multilingual)
    );
}
