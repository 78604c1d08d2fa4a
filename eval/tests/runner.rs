//! The retrieval runner end to end on a tiny BEIR-layout dataset, with a deterministic
//! hashing embedder (no model needed).

use std::path::Path;
use std::sync::Arc;

use folio_core::testing::{HashEmbedder, OrderReranker, PixelEmbedder};
use folio_core::{Detector, Embedder, EmbeddingKind, Suspicion};
use folio_datasets::BeirDataset;
use folio_eval::metrics::read_run;
use folio_eval::runner::{EvalDataset, NamedReranker, PageModel, RetrievalSettings, run_retrieval};
use folio_eval::{EvalOptions, evaluate};

fn settings() -> RetrievalSettings {
    RetrievalSettings {
        progress: false,
        permutations: 500,
        ..RetrievalSettings::default()
    }
}

/// The eight-document BEIR fixture.
fn beir_tiny() -> anyhow::Result<EvalDataset> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/beir-tiny");
    Ok(EvalDataset::from_beir(&BeirDataset::load(&dir, "test")?))
}

#[test]
fn writes_runs_and_reports_and_reuses_the_index() -> anyhow::Result<()> {
    let dataset = beir_tiny()?;
    assert_eq!(dataset.queries.len(), 4, "the unjudged query is left out");
    let out = tempfile::tempdir()?;
    let index = out.path().join("index");
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));

    let report = run_retrieval(
        &dataset,
        &index,
        out.path(),
        embedder.clone(),
        None,
        &settings(),
    )?;
    assert_eq!(report.documents, 8);
    assert_eq!(report.documents_indexed, 8);
    assert_eq!(report.queries, 4);
    let names: Vec<&str> = report.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bm25", "dense", "rrf"]);
    for s in &report.systems {
        for (metric, v) in &s.mean {
            assert!((0.0..=1.0).contains(v), "{} {metric} {v}", s.name);
        }
        // The run file scores the same as the report.
        let run = read_run(&out.path().join(&s.run_file))?;
        let metric = "ndcg@10".parse()?;
        let e = evaluate(&dataset.qrels, &run, &[metric], EvalOptions::default());
        assert!((e.mean[0] - s.mean["ndcg@10"]).abs() < 1e-12, "{}", s.name);
    }
    // BM25 finds the exact-wording queries.
    let bm25 = &report.systems[0];
    assert!(bm25.mean["mrr@10"] > 0.7, "{:?}", bm25.mean);
    assert_eq!(report.comparisons.len(), 2);
    assert!(
        report.published.is_empty(),
        "no published figures for a made-up dataset"
    );
    assert!(
        report
            .comparisons
            .iter()
            .all(|c| c.best == report.best && (0.0..=1.0).contains(&c.p_value))
    );
    let md = std::fs::read_to_string(out.path().join("report.md"))?;
    assert!(
        md.contains("| bm25") && md.contains("ndcg@10") && md.contains("p-value"),
        "{md}"
    );
    for plot in ["plots/ndcg_at_10.svg", "plots/map.svg"] {
        assert!(report.plots.iter().any(|p| p == plot), "{:?}", report.plots);
        assert!(std::fs::read_to_string(out.path().join(plot))?.starts_with("<svg"));
    }
    assert_eq!(
        report
            .plots
            .iter()
            .filter(|p| p.starts_with("plots/diff-ndcg_at_10-"))
            .count(),
        2
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("report.json"))?)?;
    assert_eq!(json["systems"][2]["name"], "rrf");

    // Second run: nothing to embed again.
    let again = run_retrieval(
        &dataset,
        &index,
        out.path(),
        embedder.clone(),
        None,
        &settings(),
    )?;
    assert_eq!(again.documents_indexed, 0);
    assert_eq!(again.systems, report.systems);

    // A single route and two fusions; unknown routes and fusions are refused with the list of
    // known ones.
    let bm25_only = RetrievalSettings {
        routes: vec!["bm25".into()],
        fusions: vec!["rrf".into(), "weighted".into()],
        ..settings()
    };
    let r = run_retrieval(
        &dataset,
        &index,
        out.path(),
        embedder.clone(),
        None,
        &bm25_only,
    )?;
    let names: Vec<&str> = r.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["bm25", "rrf", "weighted"]);
    // Fusing a single list keeps its order.
    assert_eq!(r.systems[0].mean, r.systems[1].mean);
    assert_eq!(r.systems[0].mean, r.systems[2].mean);
    let error = |settings: &RetrievalSettings| {
        run_retrieval(
            &dataset,
            &index,
            out.path(),
            embedder.clone(),
            None,
            settings,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
    };
    let err = error(&RetrievalSettings {
        routes: vec!["pages".into()],
        ..settings()
    });
    assert!(
        err.contains("unknown route \"pages\"") && err.contains("bm25, dense"),
        "{err}"
    );
    let err = error(&RetrievalSettings {
        fusions: vec!["borda".into()],
        ..settings()
    });
    assert!(
        err.contains("unknown fusion \"borda\"") && err.contains("rrf, weighted"),
        "{err}"
    );
    Ok(())
}

#[test]
fn runs_on_the_text_side_of_a_parquet_dataset_and_refuses_image_only_ones() -> anyhow::Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/parquet");
    let pages =
        folio_datasets::PageDataset::load("mmdocir".parse()?, &fixtures.join("mmdocir"), "test")?;
    let dataset = EvalDataset::from_pages(&pages, "mmdocir-tiny", "test", false)?;
    let out = tempfile::tempdir()?;
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));
    let report = run_retrieval(
        &dataset,
        &out.path().join("index"),
        out.path(),
        embedder.clone(),
        None,
        &settings(),
    )?;
    assert_eq!(report.documents, 5);
    assert_eq!(report.queries, 3);
    assert!(
        report.systems.iter().all(|s| s.mean["recall@100"] > 0.0),
        "{:?}",
        report.systems
    );

    let images_only = folio_datasets::PageDataset::load(
        "vidore".parse()?,
        &fixtures.join("vidore/test.parquet"),
        "test",
    )?;
    let err = EvalDataset::from_pages(&images_only, "vidore-tiny", "test", false)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("no corpus item has text"), "{err}");
    Ok(())
}

#[test]
fn runs_the_page_image_routes_on_a_parquet_dataset_of_page_images() -> anyhow::Result<()> {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../datasets/tests/fixtures/parquet");
    let pages = folio_datasets::PageDataset::load(
        "vidore".parse()?,
        &fixtures.join("vidore/test.parquet"),
        "test",
    )?;
    let dataset = EvalDataset::from_pages(&pages, "vidore-tiny", "test", true)?;
    let out = tempfile::tempdir()?;
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));
    let model = |kind| PageModel {
        embedder: Arc::new(PixelEmbedder::new(16, kind)),
        source: None,
    };
    let routes = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // The page route without its model is refused before anything is indexed.
    let err = run_retrieval(
        &dataset,
        &out.path().join("index"),
        out.path(),
        embedder.clone(),
        None,
        &RetrievalSettings {
            routes: routes(&["page"]),
            ..settings()
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(err.contains("route page needs"), "{err}");

    let report = run_retrieval(
        &dataset,
        &out.path().join("index"),
        out.path(),
        embedder,
        None,
        &RetrievalSettings {
            routes: routes(&["page", "late"]),
            page_models: vec![model(EmbeddingKind::Single), model(EmbeddingKind::Multi)],
            ..settings()
        },
    )?;
    assert_eq!(report.documents, pages.corpus.len());
    let names: Vec<&str> = report.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["late", "page", "rrf"]);
    let store = folio_store::Store::open(&out.path().join("index"))?;
    assert_eq!(store.manifest().page_vectors, pages.corpus.len());
    assert_eq!(store.manifest().late_pages, pages.corpus.len());
    // Every query ran: each system's run names every judged query.
    for s in &report.systems {
        assert_eq!(s.per_query.len(), report.queries, "{}", s.name);
    }
    Ok(())
}

#[test]
fn produces_the_report_on_the_bundled_pdf_samples() -> anyhow::Result<()> {
    let samples = folio_datasets::SampleSet::bundled()?;
    let dataset = EvalDataset::from_pdf_set(&samples);
    let out = tempfile::tempdir()?;
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(256));
    let report = run_retrieval(
        &dataset,
        &out.path().join("index"),
        out.path(),
        embedder,
        None,
        &settings(),
    )?;
    assert_eq!(report.documents, 6);
    assert_eq!(report.queries, samples.queries.len());
    // Page ids in the runs are `<file>#<page>`, so the qrels match: BM25 finds most pages.
    let bm25 = &report.systems[0];
    assert_eq!(bm25.name, "bm25");
    assert!(bm25.mean["ndcg@10"] > 0.7, "{:?}", bm25.mean);
    let run = std::fs::read_to_string(out.path().join("runs/bm25.trec"))?;
    assert!(
        run.lines().any(|l| l.contains("redp5110_sampled.pdf#")),
        "{run}"
    );
    assert!(out.path().join("report.md").is_file());
    Ok(())
}

/// Flags any text that mentions typewriters.
struct Typewriters;

impl Detector for Typewriters {
    fn name(&self) -> &str {
        "typewriters"
    }
    fn assess(&self, text: &str) -> (Option<Suspicion>, f64) {
        let flagged = text.to_lowercase().contains("typewriter");
        let suspicion = flagged.then(|| Suspicion {
            detector: "typewriters".into(),
            score: 1.0,
            reasons: vec![],
        });
        (suspicion, f64::from(u8::from(flagged)))
    }
}

#[test]
fn evaluates_each_reranker_under_each_defense() -> anyhow::Result<()> {
    let dataset = beir_tiny()?;
    let out = tempfile::tempdir()?;
    let index = out.path().join("index");
    let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(64));
    let defended = RetrievalSettings {
        rerankers: vec![NamedReranker {
            name: "reverse".into(),
            // Always wrong; its hardened twin keeps the fused order.
            reranker: Arc::new(OrderReranker::new("reverse", |_, c| {
                (0..c.len()).rev().collect()
            })),
            hardened: Some(Arc::new(OrderReranker::new("keep", |_, c| {
                (0..c.len()).collect()
            }))),
        }],
        defenses: ["none", "detect", "harden"].map(String::from).to_vec(),
        detectors: vec![Arc::new(Typewriters)],
        rerank_depth: 8,
        ..settings()
    };
    let report = run_retrieval(
        &dataset,
        &index,
        out.path(),
        embedder.clone(),
        None,
        &defended,
    )?;
    let names: Vec<&str> = report.systems.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "bm25",
            "dense",
            "rrf",
            "rrf+detect",
            "rrf+reverse",
            "rrf+reverse+detect",
            "rrf+reverse+harden"
        ]
    );
    let system = |name: &str| -> anyhow::Result<&folio_eval::runner::SystemReport> {
        report
            .systems
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow::anyhow!("no system {name}"))
    };
    let ndcg = |name: &str| -> anyhow::Result<f64> { Ok(system(name)?.mean["ndcg@10"]) };
    // The reversing re-ranker hurts; its hardened twin keeps the fused order, and damping a
    // re-ranker that agrees with the fusion changes nothing.
    assert!(ndcg("rrf+reverse")? < ndcg("rrf")?);
    assert_eq!(ndcg("rrf+reverse+harden")?, ndcg("rrf")?);
    // Detection demotes the typewriter page, q2's only relevant one, to the bottom.
    let run = read_run(&out.path().join(&system("rrf+detect")?.run_file))?;
    let q2 = &run.0["q2"];
    let lowest = q2
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(doc, _)| doc.as_str());
    assert_eq!(lowest, Some("d2"), "{q2:?}");
    assert!(
        system("rrf+detect")?.per_query["q2"]["ndcg@10"]
            < system("rrf")?.per_query["q2"]["ndcg@10"]
    );
    assert_eq!(
        system("rrf+detect")?.per_query["q1"],
        system("rrf")?.per_query["q1"],
        "queries without a flagged page are untouched"
    );

    let unknown = RetrievalSettings {
        defenses: vec!["shield".into()],
        ..settings()
    };
    let err = run_retrieval(&dataset, &index, out.path(), embedder, None, &unknown)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("unknown defense \"shield\""), "{err}");
    Ok(())
}
