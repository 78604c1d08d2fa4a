//! Re-ranking the bundled samples end to end: retrieval and fusion, then the pointwise and
//! listwise LLM rankers with the tiny Llama-3.1-style fixture model and with the real
//! SmolLM2 GGUF (`scripts/fetch-ranker-model.sh`), and the fallback to the fused order.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;

use folio_core::Embedder;
use folio_core::testing::HashEmbedder;
use folio_datasets::SampleSet;
use folio_e2e::repo_root;
use folio_indexer::{IndexSettings, collect_pdfs, index_files};
use folio_models::llm::{Llm, LoadOptions};
use folio_rerank::{ListwiseRanker, ListwiseSettings, RerankMode, build_reranker};
use folio_search::{Pipeline, SearchRequest, SearchResponse};
use folio_store::Store;

/// The sample PDFs indexed with a hashing embedder (fast; re-ranking is what is tested).
fn samples_pipeline(dir: &std::path::Path) -> anyhow::Result<(Pipeline, SampleSet)> {
    let samples = SampleSet::bundled()?;
    let embedder = HashEmbedder::new(64);
    let (files, _) = collect_pdfs(std::slice::from_ref(&samples.dir));
    let settings = IndexSettings {
        progress: false,
        ..IndexSettings::default()
    };
    index_files(dir, &files, &embedder, None, &settings)?;
    let embedder: Arc<dyn Embedder> = Arc::new(embedder);
    let pipeline = Pipeline::new(Arc::new(Store::open(dir)?), Some(embedder))?;
    Ok((pipeline, samples))
}

fn tiny_model() -> PathBuf {
    repo_root().join("services/models/tests/fixtures/llama/tiny-llama31")
}

fn smollm2_dir() -> PathBuf {
    let dir = repo_root().join("models/SmolLM2-135M-Instruct-GGUF");
    assert!(
        dir.is_dir(),
        "{} is missing: run scripts/fetch-ranker-model.sh",
        dir.display()
    );
    dir
}

fn attach(pipeline: &mut Pipeline, model: &std::path::Path) -> anyhow::Result<()> {
    let llm = Arc::new(Llm::load(
        &model.display().to_string(),
        LoadOptions::default(),
        &folio_models::default_device(),
    )?);
    for (name, mode) in [
        ("pointwise", RerankMode::Pointwise),
        ("listwise", RerankMode::Listwise),
    ] {
        let reranker = build_reranker(mode, llm.clone(), None)?
            .ok_or_else(|| anyhow::anyhow!("no {name} re-ranker"))?;
        pipeline.add_reranker(name, reranker);
    }
    Ok(())
}

fn request(query: &str, rerank: &str, depth: usize) -> SearchRequest {
    let mut r = SearchRequest::new(query, depth);
    r.rerank = rerank.into();
    r.rerank_depth = depth;
    r
}

fn pages(r: &SearchResponse) -> Vec<(String, u32)> {
    r.hits.iter().map(|h| (h.doc_id.clone(), h.page)).collect()
}

/// The re-ranked hits are the fused top `depth` in a new order, each with its score and fused
/// rank, sorted by score.
fn check_reranked(fused: &SearchResponse, reranked: &SearchResponse, name: &str) {
    assert!(!reranked.degraded, "{name}: {:?}", reranked.rerank_error);
    assert!(reranked.reranker.starts_with(name), "{}", reranked.reranker);
    let a: BTreeSet<_> = pages(fused).into_iter().collect();
    let b: BTreeSet<_> = pages(reranked).into_iter().collect();
    assert_eq!(a, b, "{name}: re-ranking changed the candidate set");
    let mut fused_ranks: Vec<usize> = reranked.hits.iter().map(|h| h.fused_rank).collect();
    fused_ranks.sort_unstable();
    assert_eq!(fused_ranks, (1..=fused.hits.len()).collect::<Vec<_>>());
    let scores: Vec<f64> = reranked
        .hits
        .iter()
        .map(|h| h.rerank_score.unwrap_or(f64::NAN))
        .collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "{name}: scores not sorted: {scores:?}"
    );
}

#[test]
fn tiny_llama_reranks_the_samples_pointwise_and_listwise() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut pipeline, samples) = samples_pipeline(tmp.path())?;
    attach(&mut pipeline, &tiny_model())?;
    for q in samples.queries.iter().take(3) {
        let fused = pipeline.search(&SearchRequest::new(q.text.clone(), 8))?;
        assert_eq!(fused.reranker, "none");
        for mode in ["pointwise", "listwise"] {
            let reranked = pipeline.search(&request(&q.text, mode, 8))?;
            check_reranked(&fused, &reranked, mode);
        }
        // Pointwise scores are expectations over yes (1) / no (0).
        let pointwise = pipeline.search(&request(&q.text, "pointwise", 8))?;
        for h in &pointwise.hits {
            let s = h.rerank_score.unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&s), "{s}");
        }
    }
    Ok(())
}

#[test]
fn listwise_answers_are_counted() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (pipeline, samples) = samples_pipeline(tmp.path())?;
    let llm = Arc::new(Llm::load(
        &tiny_model().display().to_string(),
        LoadOptions::default(),
        &folio_models::default_device(),
    )?);
    let ranker = ListwiseRanker::new(
        llm,
        ListwiseSettings {
            window: 4,
            step: 2,
            ..ListwiseSettings::default()
        },
    )?;
    let retrieved = pipeline.retrieve(&SearchRequest::new(samples.queries[0].text.clone(), 8))?;
    let outcome = pipeline.rerank_fused(
        &ranker,
        &samples.queries[0].text,
        &retrieved.fused,
        8,
        std::time::Duration::from_secs(600),
    );
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    // Windows of 4 moving by 2 over 8 candidates: (4, 8), (2, 6), (0, 4).
    let (answers, repaired) = ranker.answer_counts();
    assert_eq!(answers, 3);
    assert!(repaired <= answers);
    Ok(())
}

#[test]
fn a_gguf_model_dir_reranks_the_samples() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut pipeline, samples) = samples_pipeline(tmp.path())?;
    attach(&mut pipeline, &smollm2_dir())?;
    let q = &samples.queries[0];
    let fused = pipeline.search(&SearchRequest::new(q.text.clone(), 4))?;
    let reranked = pipeline.search(&request(&q.text, "pointwise", 4))?;
    check_reranked(&fused, &reranked, "pointwise");
    Ok(())
}

#[test]
fn an_exhausted_budget_returns_the_fused_order_marked_degraded() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut pipeline, samples) = samples_pipeline(tmp.path())?;
    attach(&mut pipeline, &tiny_model())?;
    let q = &samples.queries[0];
    let fused = pipeline.search(&SearchRequest::new(q.text.clone(), 20))?;
    // Pointwise checks the budget between batches of 4; the first batch alone outlasts 1 ms.
    let mut r = request(&q.text, "pointwise", 20);
    r.rerank_budget_ms = 1;
    let degraded = pipeline.search(&r)?;
    assert!(degraded.degraded);
    assert!(
        degraded
            .rerank_error
            .as_deref()
            .unwrap_or_default()
            .contains("out of time"),
        "{:?}",
        degraded.rerank_error
    );
    assert_eq!(pages(&degraded), pages(&fused));
    assert!(degraded.hits.iter().all(|h| h.rerank_score.is_none()));
    Ok(())
}
