//! Index the bundled samples with the real default embedder, answer the sample queries, and
//! survive bad files.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use folio_core::Embedder;
use folio_datasets::{SampleSet, page_corpus_id};
use folio_e2e::{default_embedder, test_data};
use folio_eval::{EvalOptions, Metric};
use folio_indexer::{FileStatus, IndexSettings, collect_pdfs, index_files};
use folio_search::{Pipeline, SearchRequest};
use folio_store::Store;

fn quiet() -> IndexSettings {
    IndexSettings {
        progress: false,
        ..IndexSettings::default()
    }
}

#[test]
fn samples_answer_every_query_in_the_top_3_and_bad_files_fail_alone() -> anyhow::Result<()> {
    let (embedder, source) = default_embedder()?;
    let samples = SampleSet::bundled()?;
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("index");

    // The samples plus three bad files, bad ones in the middle of the batch.
    let (mut files, missing) = collect_pdfs(std::slice::from_ref(&samples.dir));
    assert!(missing.is_empty());
    let n_samples = files.len();
    assert!(n_samples >= 5, "{n_samples} sample PDFs");
    let bad: Vec<PathBuf> = ["corrupt.pdf", "empty.pdf", "encrypted.pdf"]
        .iter()
        .map(|n| test_data(n))
        .collect();
    for (i, b) in bad.iter().enumerate() {
        files.insert(1 + i * 2, b.clone());
    }
    let report = index_files(
        &index,
        &files,
        embedder.as_ref(),
        Some(source.dir.display().to_string()),
        &quiet(),
    )?;
    assert_eq!(report.files.len(), files.len());
    assert_eq!(
        report.count(FileStatus::Indexed),
        n_samples,
        "{:#?}",
        report.files
    );
    let reason = |name: &str| {
        report
            .files
            .iter()
            .find(|f| f.path.ends_with(name))
            .and_then(|f| f.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("empty.pdf").contains("empty file"),
        "{}",
        reason("empty.pdf")
    );
    assert!(
        reason("encrypted.pdf").contains("encrypted"),
        "{}",
        reason("encrypted.pdf")
    );
    assert!(!reason("corrupt.pdf").is_empty());
    for f in &report.files {
        if f.status == FileStatus::Indexed {
            assert!(f.pages.unwrap_or(0) > 0 && f.reason.is_none(), "{f:?}");
        }
    }
    println!(
        "indexed {} pages, {} passages in {:.1} s ({:.1} pages/s)",
        report.pages_indexed,
        report.passages_indexed,
        report.seconds,
        report.pages_indexed as f64 / report.seconds
    );

    let embedder_dyn: Arc<dyn Embedder> = embedder.clone();
    let pipeline = Pipeline::new(Arc::new(Store::open(&index)?), Some(embedder_dyn))?;
    let queries: Vec<folio_eval::EvalQuery> = samples
        .queries
        .iter()
        .map(|q| folio_eval::EvalQuery::text(&q.id, &q.text))
        .collect();
    let rrf = folio_search::Rrf::default();
    let runs = folio_eval::route_runs(
        &pipeline,
        &queries,
        10,
        folio_eval::Systems::fusions(&[("rrf", &rrf)]),
        page_corpus_id,
        || (),
    )?;
    let metrics = [Metric::Ndcg(Some(10)), Metric::Success(3)];
    let mut scores = BTreeMap::new();
    println!("system  nDCG@10  success@3");
    for (system, run) in &runs {
        let e = folio_eval::evaluate(&samples.qrels, run, &metrics, EvalOptions::default());
        assert_eq!(e.queries, queries.len());
        println!("{system:<7} {:.3}    {:.2}", e.mean[0], e.mean[1]);
        scores.insert(system.clone(), e.mean);
    }
    for q in &samples.queries {
        let response = pipeline.search(&SearchRequest::new(q.text.clone(), 3))?;
        let relevant = &samples.qrels[&q.id];
        let top: Vec<String> = response
            .hits
            .iter()
            .map(|h| page_corpus_id(&h.path, h.page))
            .collect();
        assert!(
            top.iter()
                .any(|id| relevant.get(id).is_some_and(|&r| r > 0)),
            "query {} ({:?}): no relevant page in the top 3 {top:?}; relevant: {relevant:?}",
            q.id,
            q.text
        );
        // Every hit's passage comes with the boxes to highlight on the page image.
        for h in &response.hits {
            let Some(span) = &h.passage else { continue };
            assert!(
                !span.boxes.is_empty()
                    && span.boxes.iter().all(|b| {
                        [b.x0, b.y0, b.x1, b.y1]
                            .iter()
                            .all(|v| (0.0..=1.0).contains(v))
                            && b.x0 < b.x1
                            && b.y0 < b.y1
                    }),
                "query {}: {} page {} has boxes {:?}",
                q.id,
                h.path,
                h.page,
                span.boxes
            );
        }
    }
    assert_eq!(scores["rrf"][1], 1.0, "{scores:?}");
    assert!(
        scores["bm25"][0] > 0.5 && scores["dense"][0] > 0.5,
        "{scores:?}"
    );

    // Indexing the same files again changes nothing and keeps the failures failing.
    let generation = pipeline
        .collection()
        .stats()?
        .generation
        .unwrap_or_default();
    let again = index_files(&index, &files, embedder.as_ref(), None, &quiet())?;
    assert_eq!(again.count(FileStatus::Unchanged), n_samples);
    assert_eq!(again.count(FileStatus::Failed), 3);
    assert_eq!(again.generation, None);
    assert_eq!(Store::open(&index)?.manifest().generation, generation);
    Ok(())
}

#[test]
fn a_failing_batch_never_loses_what_was_indexed() -> anyhow::Result<()> {
    let (embedder, _) = default_embedder()?;
    let samples = SampleSet::bundled()?;
    let tmp = tempfile::tempdir()?;
    let index = tmp.path().join("index");
    let first = samples.dir.join("multicolumn.pdf");
    let report = index_files(
        &index,
        std::slice::from_ref(&first),
        embedder.as_ref(),
        None,
        &quiet(),
    )?;
    assert_eq!(report.count(FileStatus::Indexed), 1);
    let before = Store::open(&index)?.passage_count();

    // A batch of only bad files: reported, and the index is untouched.
    let bad = vec![
        test_data("corrupt.pdf"),
        test_data("empty.pdf"),
        tmp.path().join("missing.pdf"),
    ];
    let report = index_files(&index, &bad, embedder.as_ref(), None, &quiet())?;
    assert_eq!(report.count(FileStatus::Failed), 3);
    assert_eq!(report.generation, None);
    let store = Store::open(&index)?;
    assert_eq!(store.passage_count(), before);
    assert_eq!(store.documents().len(), 1);
    Ok(())
}
