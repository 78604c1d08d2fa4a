//! `folio eval retrieval`: index a dataset (BEIR texts, PDFs, or Parquet page images), run every
//! route (text, and with page embedders the page and late-interaction routes) and each fusion
//! over its queries, write one TREC run per system, score them, and compare the best system
//! with each other by a paired randomisation test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{ChunkSettings, Detector, Embedder, EmbeddingKind, Fuser, PageEmbedder, Reranker};
use folio_datasets::{
    BeirDataset, PageDataset, PublishedFigure, Qrels, SampleSet, page_corpus_id, published_figures,
};
use folio_indexer::{
    CorpusPage, Embedders, FileStatus, IndexSettings, TextDocument, index_files_with, index_pages,
    index_texts, progress_bar,
};
use folio_search::{Defense, DefensePolicy, Pipeline, SearchError, fuser_by_name};
use folio_store::Store;
use serde::Serialize;
use thiserror::Error;
use tracing::info;

use crate::metrics::{EvalOptions, Metric, evaluate};
use crate::remembered::Remembered;
use crate::{EvalQuery, Systems, plot, route_runs, write_run};

/// The runner failed.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// Indexing could not run.
    #[error(transparent)]
    Index(#[from] folio_indexer::IndexError),
    /// The index cannot be opened.
    #[error(transparent)]
    Store(#[from] folio_store::StoreError),
    /// A search failed.
    #[error(transparent)]
    Search(#[from] folio_search::SearchError),
    /// Writing the outputs failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The settings cannot work.
    #[error("{0}")]
    Invalid(String),
}

/// A re-ranker to evaluate, under the name its systems get (`rrf+<name>`).
#[derive(Clone)]
pub struct NamedReranker {
    /// System-name suffix, e.g. `pointwise`.
    pub name: String,
    /// The re-ranker.
    pub reranker: Arc<dyn Reranker>,
    /// The same model with its hardened prompt, for the `harden` and `all` defenses.
    pub hardened: Option<Arc<dyn Reranker>>,
}

impl std::fmt::Debug for NamedReranker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedReranker")
            .field("name", &self.name)
            .field("reranker", &self.reranker.name())
            .finish()
    }
}

/// A page-image model for the page (single-vector) or late (multi-vector) route.
#[derive(Clone)]
pub struct PageModel {
    /// The model.
    pub embedder: Arc<dyn PageEmbedder>,
    /// Where it was loaded from, recorded in the index.
    pub source: Option<String>,
}

impl PageModel {
    /// The model and its source, as the indexer takes them.
    pub fn as_route(&self) -> (&dyn PageEmbedder, Option<&str>) {
        (self.embedder.as_ref(), self.source.as_deref())
    }
}

impl std::fmt::Debug for PageModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageModel")
            .field("embedder", &self.embedder.info().id)
            .field("source", &self.source)
            .finish()
    }
}

/// What to run.
#[derive(Clone)]
pub struct RetrievalSettings {
    /// Routes to run (`bm25`, `dense`, `page`, `late`).
    pub routes: Vec<String>,
    /// Page-image models: at most one single-vector (the `page` route) and one multi-vector
    /// (the `late` route).
    pub page_models: Vec<PageModel>,
    /// Fusions of the routes to evaluate, by name (`rrf`, `weighted`).
    pub fusions: Vec<String>,
    /// Pages (documents) retrieved per query and system: the depth of the run files.
    pub depth: usize,
    /// Metrics, with the names to report them under; the first is the primary one, used to
    /// pick the best system and for the significance tests.
    pub metrics: Vec<(String, Metric)>,
    /// Passage cutting. By default text documents stay whole (the embedder truncates them, as
    /// BEIR's baselines read documents) and PDF pages are cut as `folio index` cuts them.
    pub chunk: Option<ChunkSettings>,
    /// Draw progress bars.
    pub progress: bool,
    /// Permutations of the randomisation test.
    pub permutations: usize,
    /// Re-rankers applied to the first fusion's list.
    pub rerankers: Vec<NamedReranker>,
    /// Fused pages each re-ranker reads.
    pub rerank_depth: usize,
    /// Defenses to evaluate (`none`, `detect`, `harden`, `all`): each re-ranker runs under
    /// each, and each detecting one also runs without re-ranker (see [`Systems`]). What
    /// they cost on clean data is the difference to the undefended systems.
    pub defenses: Vec<String>,
    /// Detectors of the `detect` defense besides the built-in injection patterns.
    pub detectors: Vec<Arc<dyn Detector>>,
    /// What the `detect` defense does to a flagged page.
    pub defense_policy: DefensePolicy,
}

impl Default for RetrievalSettings {
    fn default() -> Self {
        RetrievalSettings {
            routes: vec!["bm25".into(), "dense".into()],
            page_models: Vec::new(),
            fusions: vec!["rrf".into()],
            depth: 100,
            metrics: ["ndcg@10", "recall@100", "mrr@10", "map", "p@5"]
                .iter()
                .filter_map(|m| Some((m.to_string(), m.parse().ok()?)))
                .collect(),
            chunk: None,
            progress: true,
            permutations: 10_000,
            rerankers: Vec::new(),
            rerank_depth: 20,
            defenses: Vec::new(),
            detectors: Vec::new(),
            defense_policy: DefensePolicy::default(),
        }
    }
}

/// One system's scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemReport {
    /// `bm25`, `dense`, `rrf`, `weighted`, ...
    pub name: String,
    /// The run file, relative to the output directory.
    pub run_file: String,
    /// Mean of each metric.
    pub mean: BTreeMap<String, f64>,
    /// Per-query values of each metric.
    pub per_query: BTreeMap<String, BTreeMap<String, f64>>,
}

/// The best system against another on the primary metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The best system.
    pub best: String,
    /// The other system.
    pub other: String,
    /// The metric compared.
    pub metric: String,
    /// Mean of `best - other` over the queries.
    pub mean_difference: f64,
    /// Two-sided p-value of the paired randomisation test.
    pub p_value: f64,
}

/// Everything the runner measured; written as `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrievalReport {
    /// Dataset name.
    pub dataset: String,
    /// Split of the qrels.
    pub split: String,
    /// Corpus size.
    pub documents: usize,
    /// Queries evaluated.
    pub queries: usize,
    /// Embedder id.
    pub embedder: String,
    /// Seconds spent indexing (0 when the index was reused whole).
    pub index_seconds: f64,
    /// Documents indexed in this run (the rest were already in the index).
    pub documents_indexed: usize,
    /// Seconds spent running the queries through every route.
    pub query_seconds: f64,
    /// Systems, in name order.
    pub systems: Vec<SystemReport>,
    /// The system with the highest primary metric.
    pub best: String,
    /// The best system against each other one.
    pub comparisons: Vec<Comparison>,
    /// SVG charts, relative to the output directory.
    pub plots: Vec<String>,
    /// Published figures for this dataset and the value Folio measured for each.
    pub published: Vec<PublishedComparison>,
}

/// A published figure next to Folio's own.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedComparison {
    /// The published figure.
    #[serde(flatten)]
    pub figure: PublishedFigure,
    /// What Folio measured for the same system and metric.
    pub folio: f64,
}

/// A corpus for the runner to index.
#[derive(Debug, Clone)]
pub enum Corpus {
    /// Text documents, one page each; a document's corpus id is its id.
    Texts(Vec<TextDocument>),
    /// PDF files; a page's corpus id is `<file name>#<1-based page>`.
    Pdfs(Vec<PathBuf>),
    /// Pages given as images and/or text, one page each; a page's corpus id is its id.
    Pages(Vec<CorpusPage>),
}

/// What the runner evaluates: a corpus, queries and their judgements.
#[derive(Debug, Clone)]
pub struct EvalDataset {
    /// Dataset name, for the report.
    pub name: String,
    /// Split of the qrels.
    pub split: String,
    /// What to index.
    pub corpus: Corpus,
    /// The queries.
    pub queries: Vec<EvalQuery>,
    /// Judgements.
    pub qrels: Qrels,
}

impl EvalDataset {
    /// A BEIR-layout dataset: title and text of each corpus entry as one document.
    pub fn from_beir(d: &BeirDataset) -> Self {
        EvalDataset {
            name: d.name.clone(),
            split: d.split.clone(),
            corpus: Corpus::Texts(
                d.corpus
                    .iter()
                    .map(|c| TextDocument {
                        id: c.id.clone(),
                        text: c.full_text(),
                    })
                    .collect(),
            ),
            queries: d
                .queries
                .iter()
                .map(|q| EvalQuery::text(&q.id, &q.text))
                .collect(),
            qrels: d.qrels.clone(),
        }
    }

    /// A set of PDFs with page-level qrels, like Folio's bundled samples.
    pub fn from_pdf_set(set: &SampleSet) -> Self {
        let (pdfs, _) = folio_indexer::collect_pdfs(std::slice::from_ref(&set.dir));
        EvalDataset {
            name: set
                .dir
                .file_name()
                .map_or_else(|| "samples".into(), |n| n.to_string_lossy().into_owned()),
            split: "all".into(),
            corpus: Corpus::Pdfs(pdfs),
            queries: set
                .queries
                .iter()
                .map(|q| EvalQuery::text(&q.id, &q.text))
                .collect(),
            qrels: set.qrels.clone(),
        }
    }

    /// A page-image dataset. With `images`, every corpus item is a page (its image for the
    /// page routes, its text, if any, for the text routes) and queries keep their images;
    /// without, only the text side: items and queries with text. Fails when nothing is left
    /// to index.
    pub fn from_pages(
        d: &PageDataset,
        name: &str,
        split: &str,
        images: bool,
    ) -> Result<Self, RunnerError> {
        let has_text = |t: &Option<String>| t.as_deref().is_some_and(|t| !t.trim().is_empty());
        let pages: Vec<CorpusPage> = d
            .corpus
            .iter()
            .filter(|c| has_text(&c.text) || (images && c.image.is_some()))
            .map(|c| CorpusPage {
                id: c.id.clone(),
                text: c.text.as_deref().map(|t| t.trim().to_string()),
                image: if images { c.image.clone() } else { None },
            })
            .collect();
        if pages.is_empty() {
            return Err(RunnerError::Invalid(if images {
                format!("{name}: no corpus item has an image or text")
            } else {
                format!(
                    "{name}: no corpus item has text, so only the page-image routes could \
                     retrieve them: give a page embedder and --routes page (or late)"
                )
            }));
        }
        let queries = d
            .queries
            .iter()
            .map(|q| EvalQuery {
                id: q.id.clone(),
                text: q.text.clone(),
                image: if images { q.image.clone() } else { None },
            })
            .filter(|q| !q.text.trim().is_empty() || q.image.is_some())
            .collect();
        Ok(EvalDataset {
            name: name.to_string(),
            split: split.to_string(),
            corpus: if images {
                Corpus::Pages(pages)
            } else {
                Corpus::Texts(
                    pages
                        .into_iter()
                        .map(|p| TextDocument {
                            id: p.id,
                            text: p.text.unwrap_or_default(),
                        })
                        .collect(),
                )
            },
            queries,
            qrels: d.qrels.clone(),
        })
    }

    /// Number of documents (text documents or PDF files) in the corpus.
    pub fn documents(&self) -> usize {
        match &self.corpus {
            Corpus::Texts(d) => d.len(),
            Corpus::Pdfs(p) => p.len(),
            Corpus::Pages(p) => p.len(),
        }
    }
}

/// Runs the evaluation and writes `runs/<system>.trec`, `report.json` and `report.md` into
/// `out_dir`. The index in `index_dir` is reused: documents already in it are not embedded
/// again.
pub fn run_retrieval(
    dataset: &EvalDataset,
    index_dir: &Path,
    out_dir: &Path,
    embedder: Arc<dyn Embedder>,
    embedder_source: Option<String>,
    settings: &RetrievalSettings,
) -> Result<RetrievalReport, RunnerError> {
    let Some((primary, _)) = settings.metrics.first() else {
        return Err(RunnerError::Invalid("no metric to compute".into()));
    };
    let chunk = settings.chunk.unwrap_or(match dataset.corpus {
        Corpus::Texts(_) | Corpus::Pages(_) => ChunkSettings {
            words: usize::MAX,
            overlap: 0,
        },
        Corpus::Pdfs(_) => ChunkSettings::default(),
    });
    let index_settings = IndexSettings {
        chunk,
        progress: settings.progress,
        ..IndexSettings::default()
    };
    let model = |kind: EmbeddingKind| {
        settings
            .page_models
            .iter()
            .find(|m| m.embedder.info().kind == kind)
    };
    for (route, kind, what) in [
        ("page", EmbeddingKind::Single, "single-vector (GME-style)"),
        (
            "late",
            EmbeddingKind::Multi,
            "multi-vector (ColQwen2-style)",
        ),
    ] {
        if settings.routes.iter().any(|r| r == route) && model(kind).is_none() {
            return Err(RunnerError::Invalid(format!(
                "route {route} needs a {what} page embedder"
            )));
        }
    }
    let models = Embedders {
        text: embedder.as_ref(),
        text_source: embedder_source.as_deref(),
        page: model(EmbeddingKind::Single).map(PageModel::as_route),
        late: model(EmbeddingKind::Multi).map(PageModel::as_route),
    };
    info!(documents = dataset.documents(), "indexing the corpus");
    let index_report = match &dataset.corpus {
        Corpus::Texts(docs) => index_texts(
            index_dir,
            docs,
            embedder.as_ref(),
            embedder_source.clone(),
            &index_settings,
        )?,
        Corpus::Pdfs(files) => index_files_with(index_dir, files, &models, &index_settings)?,
        Corpus::Pages(pages) => index_pages(index_dir, pages, &models, &index_settings)?,
    };
    if let Some(f) = index_report
        .files
        .iter()
        .find(|f| f.status == FileStatus::Failed)
    {
        return Err(RunnerError::Invalid(format!(
            "corpus document {} failed to index: {}",
            f.path,
            f.reason.as_deref().unwrap_or("unknown reason")
        )));
    }

    let mut pipeline = Pipeline::new(Arc::new(Store::open(index_dir)?), Some(embedder.clone()))?;
    for m in [model(EmbeddingKind::Single), model(EmbeddingKind::Multi)]
        .into_iter()
        .flatten()
    {
        pipeline.add_page_embedder(m.embedder.clone())?;
    }
    let routes: Vec<&str> = settings.routes.iter().map(String::as_str).collect();
    pipeline.keep_routes(&routes)?;
    let queries = &dataset.queries;
    let fusers = settings
        .fusions
        .iter()
        .map(|name| Ok((name.as_str(), fuser_by_name(name)?)))
        .collect::<Result<Vec<_>, SearchError>>()?;
    let fusers: Vec<(&str, &dyn Fuser)> = fusers.iter().map(|(n, f)| (*n, f.as_ref())).collect();
    let bar = progress_bar(queries.len() as u64, "queries", settings.progress);
    let started = Instant::now();
    let pdfs = matches!(dataset.corpus, Corpus::Pdfs(_));
    for r in &settings.rerankers {
        pipeline.add_reranker(&r.name, r.reranker.clone());
        if let Some(h) = &r.hardened {
            pipeline.add_hardened_reranker(&r.name, h.clone());
        }
    }
    for d in &settings.detectors {
        // The defended systems inspect the same fused pages: answer each text once.
        pipeline.add_detector(Arc::new(Remembered::new(d.clone())));
    }
    pipeline.set_defense_policy(settings.defense_policy);
    let rerankers: Vec<&str> = settings.rerankers.iter().map(|r| r.name.as_str()).collect();
    let defenses: Vec<&str> = settings.defenses.iter().map(String::as_str).collect();
    for d in &defenses {
        Defense::parse(d)?;
    }
    if (!rerankers.is_empty() || !defenses.is_empty()) && fusers.is_empty() {
        return Err(RunnerError::Invalid(
            "re-ranking and defenses need a fusion to work on (--fusion)".into(),
        ));
    }
    let systems = Systems {
        fusers: &fusers,
        rerankers: &rerankers,
        defenses: &defenses,
        rerank_depth: settings.rerank_depth,
        rerank_budget: Duration::from_secs(600),
    };
    let runs = route_runs(
        &pipeline,
        queries,
        settings.depth,
        systems,
        |path, page| {
            if pdfs {
                page_corpus_id(path, page)
            } else {
                path.to_string()
            }
        },
        || bar.inc(1),
    )?;
    bar.finish_and_clear();
    let query_seconds = started.elapsed().as_secs_f64();

    let runs_dir = out_dir.join("runs");
    std::fs::create_dir_all(&runs_dir).map_err(io_err(&runs_dir))?;
    let kinds: Vec<Metric> = settings.metrics.iter().map(|(_, m)| *m).collect();
    let mut systems = Vec::new();
    for (name, run) in &runs {
        let file = format!("runs/{name}.trec");
        let path = out_dir.join(&file);
        let mut bytes = Vec::new();
        write_run(run, &format!("folio-{name}"), &mut bytes).map_err(io_err(&path))?;
        std::fs::write(&path, bytes).map_err(io_err(&path))?;
        let e = evaluate(&dataset.qrels, run, &kinds, EvalOptions::default());
        let named = |values: &[f64]| -> BTreeMap<String, f64> {
            settings
                .metrics
                .iter()
                .map(|(n, _)| n.clone())
                .zip(values.iter().copied())
                .collect()
        };
        systems.push(SystemReport {
            name: name.clone(),
            run_file: file,
            mean: named(&e.mean),
            per_query: e
                .per_query
                .iter()
                .map(|(q, v)| (q.clone(), named(v)))
                .collect(),
        });
    }
    let best = systems
        .iter()
        .max_by(|a, b| {
            a.mean[primary]
                .total_cmp(&b.mean[primary])
                .then_with(|| b.name.cmp(&a.name))
        })
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let comparisons = compare(&systems, &best, primary, settings.permutations);
    let plots = write_plots(out_dir, &dataset.name, &systems, &best, &settings.metrics)?;
    let embedder_id = embedder.info().id.clone();
    let published = published_figures(&dataset.name)
        .into_iter()
        .filter(|f| f.model.is_none_or(|m| embedder_id.contains(m)))
        .filter_map(|figure| {
            let folio = *systems
                .iter()
                .find(|s| s.name == figure.system)?
                .mean
                .get(figure.metric)?;
            Some(PublishedComparison { figure, folio })
        })
        .collect();
    let report = RetrievalReport {
        dataset: dataset.name.clone(),
        split: dataset.split.clone(),
        documents: dataset.documents(),
        queries: queries.len(),
        embedder: embedder_id,
        index_seconds: index_report.seconds,
        documents_indexed: index_report.count(FileStatus::Indexed),
        query_seconds,
        systems,
        best,
        comparisons,
        plots,
        published,
    };
    let json_path = out_dir.join("report.json");
    let json = serde_json::to_string_pretty(&report)
        .map_err(|e| RunnerError::Invalid(format!("report serialisation: {e}")))?;
    std::fs::write(&json_path, json + "\n").map_err(io_err(&json_path))?;
    let md_path = out_dir.join("report.md");
    std::fs::write(&md_path, markdown(&report, &settings.metrics)).map_err(io_err(&md_path))?;
    Ok(report)
}

/// Writes a bar chart per metric and, for the primary metric, a histogram of the per-query
/// differences between the best system and each other one.
fn write_plots(
    out_dir: &Path,
    dataset: &str,
    systems: &[SystemReport],
    best: &str,
    metrics: &[(String, Metric)],
) -> Result<Vec<String>, RunnerError> {
    let dir = out_dir.join("plots");
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut files = Vec::new();
    let mut write = |name: String, svg: String| -> Result<(), RunnerError> {
        let file = format!("plots/{name}.svg");
        let path = out_dir.join(&file);
        std::fs::write(&path, svg).map_err(io_err(&path))?;
        files.push(file);
        Ok(())
    };
    for (metric, _) in metrics {
        let values: Vec<(String, f64)> = systems
            .iter()
            .map(|s| (s.name.clone(), s.mean[metric]))
            .collect();
        let title = format!("{dataset}: mean {metric} per system");
        write(
            file_stem(metric),
            plot::bar_chart(&title, metric, &values, best),
        )?;
    }
    if let (Some((primary, _)), Some(b)) =
        (metrics.first(), systems.iter().find(|s| s.name == best))
    {
        for other in systems.iter().filter(|s| s.name != best) {
            let diffs = differences(b, other, primary);
            let title = format!(
                "{dataset}: per-query {primary}, {best} minus {}",
                other.name
            );
            let axis = format!("{primary} difference ({best} - {})", other.name);
            write(
                format!("diff-{}-{best}-vs-{}", file_stem(primary), other.name),
                plot::difference_histogram(&title, &axis, &diffs),
            )?;
        }
    }
    Ok(files)
}

/// A metric name as a file name: `ndcg@10` -> `ndcg_at_10`.
fn file_stem(metric: &str) -> String {
    metric
        .replace('@', "_at_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunnerError + '_ {
    move |source| RunnerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn compare(
    systems: &[SystemReport],
    best: &str,
    metric: &str,
    permutations: usize,
) -> Vec<Comparison> {
    let Some(b) = systems.iter().find(|s| s.name == best) else {
        return Vec::new();
    };
    systems
        .iter()
        .filter(|s| s.name != best)
        .map(|s| {
            let diffs = differences(b, s, metric);
            Comparison {
                best: best.to_string(),
                other: s.name.clone(),
                metric: metric.to_string(),
                mean_difference: mean(&diffs),
                p_value: randomisation_test(&diffs, permutations),
            }
        })
        .collect()
}

/// Per-query `best - other` on `metric`, over the best system's queries (a query the other
/// system lacks counts as 0 for it).
fn differences(best: &SystemReport, other: &SystemReport, metric: &str) -> Vec<f64> {
    best.per_query
        .iter()
        .map(|(q, v)| v[metric] - other.per_query.get(q).map_or(0.0, |o| o[metric]))
        .collect()
}

fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Two-sided paired randomisation (sign-flip) test of "the mean difference is 0": the share of
/// random sign assignments whose mean difference is at least as far from 0 as the observed one,
/// counting the observed assignment (so never 0). Seeded, so reports are reproducible.
pub fn randomisation_test(diffs: &[f64], permutations: usize) -> f64 {
    let observed = mean(diffs).abs();
    let mut rng = SplitMix64(0x5eed_f011_0000_0001);
    let mut at_least = 0usize;
    for _ in 0..permutations {
        let mut sum = 0.0;
        for d in diffs {
            sum += if rng.next() & 1 == 1 { *d } else { -*d };
        }
        // A small slack keeps exact ties (e.g. all-zero differences) counted as ties.
        if (sum / diffs.len().max(1) as f64).abs() >= observed - 1e-12 {
            at_least += 1;
        }
    }
    (at_least + 1) as f64 / (permutations + 1) as f64
}

/// SplitMix64 (Steele, Lea and Flood, 2014): a small, fast, seedable generator.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The report as Markdown: a table of systems by metric, then the significance tests.
pub fn markdown(report: &RetrievalReport, metrics: &[(String, Metric)]) -> String {
    let mut out = format!(
        "# Retrieval evaluation: {} ({} split)\n\n{} documents, {} queries, embedder `{}`.\n\
         Indexing: {:.1} s ({} documents embedded in this run); querying all routes: {:.1} s \
         ({:.1} queries/s).\n\n",
        report.dataset,
        report.split,
        report.documents,
        report.queries,
        report.embedder,
        report.index_seconds,
        report.documents_indexed,
        report.query_seconds,
        report.queries as f64 / report.query_seconds.max(1e-9),
    );
    out.push_str("| system |");
    for (name, _) in metrics {
        out.push_str(&format!(" {name} |"));
    }
    out.push_str("\n|---|");
    out.push_str(&"---:|".repeat(metrics.len()));
    out.push('\n');
    for s in &report.systems {
        let marker = if s.name == report.best { " (best)" } else { "" };
        out.push_str(&format!("| {}{marker} |", s.name));
        for (name, _) in metrics {
            out.push_str(&format!(" {:.4} |", s.mean[name]));
        }
        out.push('\n');
    }
    if !report.published.is_empty() {
        out.push_str(
            "\nPublished figures for this dataset, next to Folio's (as commonly cited; check the \
             primary source before quoting one):\n\n| system | metric | Folio \
             | published | source | setup difference |\n|---|---|---:|---:|---|---|\n",
        );
        for p in &report.published {
            out.push_str(&format!(
                "| {} | {} | {:.3} | {:.3} | {} | {} |\n",
                p.figure.system,
                p.figure.metric,
                p.folio,
                p.figure.value,
                p.figure.source,
                p.figure.setup_difference
            ));
        }
    }
    if !report.plots.is_empty() {
        out.push_str("\nCharts: ");
        let links: Vec<String> = report.plots.iter().map(|p| format!("[{p}]({p})")).collect();
        out.push_str(&links.join(", "));
        out.push('\n');
    }
    if !report.comparisons.is_empty() {
        out.push_str(
            "\nPaired randomisation test (sign flips, 10,000 by default, two-sided) of the best \
             system against each other on the primary metric:\n\n| best | other | metric | mean \
             difference | p-value |\n|---|---|---|---:|---:|\n",
        );
        for c in &report.comparisons {
            out.push_str(&format!(
                "| {} | {} | {} | {:+.4} | {:.4} |\n",
                c.best, c.other, c.metric, c.mean_difference, c.p_value
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomisation_test_separates_real_from_null_differences() {
        let strong: Vec<f64> = (0..50).map(|i| 0.2 + 0.01 * f64::from(i % 3)).collect();
        assert!(randomisation_test(&strong, 2000) < 0.01);
        let null: Vec<f64> = (0..50)
            .map(|i| if i % 2 == 0 { 0.3 } else { -0.3 })
            .collect();
        assert!(randomisation_test(&null, 2000) > 0.5);
        assert_eq!(randomisation_test(&[0.0; 10], 100), 1.0);
        // Deterministic.
        assert_eq!(
            randomisation_test(&strong[..5], 500),
            randomisation_test(&strong[..5], 500)
        );
    }
}
