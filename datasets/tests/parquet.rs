//! The Parquet layouts, read from the tiny fixtures that `scripts/reference/parquet_fixtures.py`
//! writes with pyarrow in each dataset's real schema.

use std::path::{Path, PathBuf};

use folio_datasets::{DatasetError, PageDataset, ParquetLayout};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parquet")
        .join(name)
}

fn load(layout: &str, dir: &str) -> Result<PageDataset, DatasetError> {
    PageDataset::load(layout.parse()?, &fixture(dir), "test")
}

fn is_png(bytes: &Option<Vec<u8>>) -> bool {
    bytes.as_deref().is_some_and(|b| b.starts_with(b"\x89PNG"))
}

#[test]
fn vidore_v1_queries_point_at_their_own_page_and_distractors_are_pages() -> anyhow::Result<()> {
    let d = load("vidore", "vidore/test.parquet")?;
    assert_eq!(d.layout, ParquetLayout::Vidore);
    assert_eq!(d.corpus.len(), 4, "3 query pages and 1 distractor");
    assert!(d.corpus.iter().all(|p| is_png(&p.image)));
    assert_eq!(d.queries.len(), 3);
    for q in &d.queries {
        let relevant = &d.qrels[&q.id];
        assert_eq!(relevant.len(), 1);
        assert!(d.corpus.iter().any(|p| relevant.contains_key(&p.id)));
    }
    Ok(())
}

#[test]
fn vidore_beir_has_graded_qrels_and_unjudged_pages() -> anyhow::Result<()> {
    let d = load("vidore-beir", "vidore-beir")?;
    assert_eq!(d.corpus.len(), 4);
    assert!(d.corpus.iter().all(|p| is_png(&p.image)));
    assert_eq!(d.queries.len(), 3);
    let grades: Vec<i64> = d.qrels.values().flat_map(|r| r.values().copied()).collect();
    assert!(grades.contains(&2) && grades.contains(&1), "{grades:?}");
    assert!(d.qrels.values().any(|r| r.len() == 2));
    let judged: std::collections::HashSet<&String> =
        d.qrels.values().flat_map(|r| r.keys()).collect();
    assert!(
        d.corpus.iter().any(|p| !judged.contains(&p.id)),
        "a distractor page"
    );
    Ok(())
}

#[test]
fn mmdocir_maps_zero_based_pages_of_each_document() -> anyhow::Result<()> {
    let d = load("mmdocir", "mmdocir")?;
    assert_eq!(d.corpus.len(), 5);
    assert_eq!(d.queries.len(), 3);
    assert!(
        d.corpus
            .iter()
            .all(|p| p.image.is_some() && p.text.is_some())
    );
    // "Which pages list the authors?" -> pages 0 and 2 of report_alpha.pdf.
    let q = d
        .queries
        .iter()
        .find(|q| q.text.contains("authors"))
        .ok_or_else(|| anyhow::anyhow!("question missing"))?;
    let relevant: Vec<&String> = d.qrels[&q.id].keys().collect();
    assert_eq!(relevant, ["report_alpha.pdf#0", "report_alpha.pdf#2"]);
    for id in d.qrels.values().flat_map(|r| r.keys()) {
        assert!(
            d.corpus.iter().any(|p| &p.id == id),
            "qrels name a page that does not exist: {id}"
        );
    }
    Ok(())
}

#[test]
fn m2kr_reads_image_queries_and_text_passages() -> anyhow::Result<()> {
    let d = load("m2kr", "m2kr")?;
    assert_eq!(d.corpus.len(), 4);
    assert!(
        d.corpus
            .iter()
            .all(|p| p.text.is_some() && p.image.is_none())
    );
    assert_eq!(d.queries.len(), 2);
    assert!(
        d.queries
            .iter()
            .all(|q| is_png(&q.image) && !q.text.is_empty())
    );
    assert!(d.qrels.values().any(|r| r.len() == 2));
    Ok(())
}

#[test]
fn errors_name_the_file_and_the_column() -> anyhow::Result<()> {
    let err =
        |r: Result<PageDataset, DatasetError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    // A layout read as another: the missing column is named, with the columns found.
    let e = err(load("vidore", "vidore-beir/corpus.parquet"));
    assert!(
        e.contains("corpus.parquet")
            && e.contains("column \"image_filename\" missing")
            && e.contains("corpus-id"),
        "{e}"
    );
    let e = err(load("vidore-beir", "mmdocir"));
    assert!(e.contains("corpus"), "{e}");
    let e = err(load("m2kr", "vidore-beir"));
    assert!(e.contains("_data"), "{e}");
    let e = "pdfa"
        .parse::<ParquetLayout>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("unknown layout \"pdfa\""), "{e}");
    // Not a Parquet file at all.
    let tmp = tempfile::tempdir()?;
    std::fs::write(tmp.path().join("MMDocIR_pages.parquet"), b"not parquet")?;
    let e = err(PageDataset::load(
        ParquetLayout::MmDocIr,
        tmp.path(),
        "test",
    ));
    assert!(
        e.contains("MMDocIR_pages.parquet") && e.contains("Parquet"),
        "{e}"
    );
    Ok(())
}
