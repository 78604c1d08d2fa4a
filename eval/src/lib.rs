//! Retrieval evaluation: trec_eval-exact metrics ([`metrics`]) and the route-by-route
//! evaluation of a search pipeline over a query set.
//!
//! [`route_runs`] asks the pipeline each query and keeps one TREC-style run per system: every
//! route, each fusion of them (`rrf`, `weighted`), and the first fusion re-ranked and
//! defended as a search request would have it ([`Systems`]). [`metrics::evaluate`] scores a
//! run against qrels the way trec_eval does, so the same numbers come out of `folio eval
//! metrics` on the run files.
//! [`runner::run_retrieval`] does both on a BEIR-layout dataset and writes a report.

pub mod geo;
pub mod metrics;
pub mod plot;
mod remembered;
pub mod runner;

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use folio_core::{DocId, FusedHit, Fuser};
use folio_search::{Defense, Pipeline, SearchError, SearchRequest};

pub use metrics::{EvalOptions, Evaluation, Metric, MetricsError, Qrels, Run, evaluate};

/// A query to evaluate: text, an image, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalQuery {
    /// Id used by the qrels.
    pub id: String,
    /// The query text (may be empty when there is an image).
    pub text: String,
    /// An encoded query image (PNG or JPEG), for the page-image routes.
    pub image: Option<Vec<u8>>,
}

impl EvalQuery {
    /// A text query.
    pub fn text(id: impl Into<String>, text: impl Into<String>) -> Self {
        EvalQuery {
            id: id.into(),
            text: text.into(),
            image: None,
        }
    }
}

/// The systems [`route_runs`] evaluates besides the routes themselves.
#[derive(Clone, Copy)]
pub struct Systems<'a> {
    /// Fusions of the routes, by name.
    pub fusers: &'a [(&'a str, &'a dyn Fuser)],
    /// Re-rankers registered on the pipeline, by request name (`pointwise`, `listwise`), run
    /// over the first fusion's list; their systems are named `<fusion>+<name>`. A query
    /// whose re-ranking fails keeps the fused order.
    pub rerankers: &'a [&'a str],
    /// Defenses (`none`, `detect`, `harden`, `all`) each re-ranker runs under, as a search
    /// request with that `defense` runs it; the system of a defense other than `none` is
    /// `<fusion>+<re-ranker>+<defense>`. A defense that detects also runs without re-ranker,
    /// as `<fusion>+<defense>`. Empty: `none` only.
    pub defenses: &'a [&'a str],
    /// Fused pages each re-ranker reads.
    pub rerank_depth: usize,
    /// Time budget of one re-ranking.
    pub rerank_budget: Duration,
}

impl<'a> Systems<'a> {
    /// The (re-ranker, defense) pairs that make systems beyond the fusions: every re-ranker
    /// under every defense, and each detecting defense without a re-ranker.
    fn defended(&self) -> Vec<(&'a str, &'a str)> {
        let defenses: &[&str] = match self.defenses.is_empty() {
            true => &["none"],
            false => self.defenses,
        };
        let mut out = Vec::new();
        for &d in defenses {
            if Defense::parse(d).is_ok_and(|d| d.detect) {
                out.push(("none", d));
            }
        }
        for &r in self.rerankers {
            out.extend(defenses.iter().map(|&d| (r, d)));
        }
        out
    }

    /// The given fusions, no re-ranking.
    pub fn fusions(fusers: &'a [(&'a str, &'a dyn Fuser)]) -> Self {
        Systems {
            fusers,
            rerankers: &[],
            defenses: &[],
            rerank_depth: 20,
            rerank_budget: Duration::from_secs(60),
        }
    }
}

/// Runs each query through `pipeline`'s routes and returns one run per system:
/// each route's list, each fusion of them and each re-ranking of the first fusion (see
/// [`Systems`]), top `k`. A page's id in the run is `corpus_id(document path, page)`; its
/// score decreases with its rank, so trec_eval's ordering keeps the pipeline's. `on_query` is
/// called after each query (for progress). Queries without text keep the fused order in the
/// re-ranked systems (the re-rankers read the query text).
pub fn route_runs(
    pipeline: &Pipeline,
    queries: &[EvalQuery],
    k: usize,
    systems: Systems<'_>,
    corpus_id: impl Fn(&str, u32) -> String,
    mut on_query: impl FnMut(),
) -> Result<BTreeMap<String, Run>, SearchError> {
    let mut runs: BTreeMap<String, Run> = BTreeMap::new();
    let path_of = |doc_id: &DocId| {
        pipeline
            .collection()
            .document(doc_id)
            .ok()
            .flatten()
            .map(|d| d.path)
            .unwrap_or_default()
    };
    for query in queries {
        let (qid, text) = (&query.id, &query.text);
        let mut request = SearchRequest::new(text.clone(), k);
        request.image = query.image.clone();
        let retrieved = pipeline.retrieve(&request)?;
        let fused: Vec<(String, Vec<FusedHit>)> = systems
            .fusers
            .iter()
            .map(|(name, f)| (name.to_string(), f.fuse(&retrieved.lists, k)))
            .collect();
        let mut reranked: Vec<(String, Vec<FusedHit>)> = Vec::new();
        if let Some((fusion, hits)) = fused.first() {
            for (rerank, defense) in systems.defended() {
                let name = match (rerank, defense) {
                    ("none", d) => format!("{fusion}+{d}"),
                    (r, "none") => format!("{fusion}+{r}"),
                    (r, d) => format!("{fusion}+{r}+{d}"),
                };
                // The re-rankers read the query text; without it the fused order stands.
                let rerank = if text.trim().is_empty() {
                    "none"
                } else {
                    rerank
                };
                let d = pipeline.defend_and_rerank(
                    text,
                    hits.clone(),
                    rerank,
                    Defense::parse(defense)?,
                    systems.rerank_depth,
                    systems.rerank_budget,
                )?;
                let pages = d.outcome.order.iter().map(|&i| d.fused[i].clone());
                reranked.push((name, pages.collect()));
            }
        }
        let lists = retrieved
            .lists
            .iter()
            .map(|l| {
                (
                    l.route.as_str(),
                    l.hits.iter().map(|h| &h.page).take(k).collect(),
                )
            })
            .chain(fused.iter().map(|(name, hits)| {
                (
                    name.as_str(),
                    hits.iter().map(|h| &h.page).collect::<Vec<_>>(),
                )
            }))
            .chain(reranked.iter().map(|(name, hits)| {
                (
                    name.as_str(),
                    hits.iter().map(|h| &h.page).collect::<Vec<_>>(),
                )
            }));
        for (system, pages) in lists {
            let n = pages.len();
            let docs = pages
                .into_iter()
                .enumerate()
                .map(|(i, p)| (corpus_id(&path_of(&p.doc_id), p.page), (n - i) as f64))
                .collect();
            runs.entry(system.to_string())
                .or_default()
                .0
                .insert(qid.clone(), docs);
        }
        on_query();
    }
    Ok(runs)
}

/// Writes a run in TREC format (`qid Q0 docid rank score tag`), best first per query.
pub fn write_run(run: &Run, tag: &str, out: &mut impl Write) -> std::io::Result<()> {
    for (qid, docs) in &run.0 {
        let mut docs: Vec<&(String, f64)> = docs.iter().collect();
        docs.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        for (rank, (doc, score)) in docs.into_iter().enumerate() {
            writeln!(out, "{qid} Q0 {doc} {} {score} {tag}", rank + 1)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_runs_read_back_the_same() -> Result<(), Box<dyn std::error::Error>> {
        let mut run = Run::default();
        run.0.insert(
            "q1".into(),
            vec![("b".into(), 1.0), ("a".into(), 3.5), ("c".into(), 1.0)],
        );
        let mut bytes = Vec::new();
        write_run(&run, "t", &mut bytes)?;
        let text = String::from_utf8(bytes)?;
        assert_eq!(text, "q1 Q0 a 1 3.5 t\nq1 Q0 c 2 1 t\nq1 Q0 b 3 1 t\n");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("run.txt");
        std::fs::write(&path, &text)?;
        let mut back = metrics::read_run(&path)?;
        for docs in back.0.values_mut() {
            docs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        let mut expected = run.clone();
        for docs in expected.0.values_mut() {
            docs.sort_by(|a, b| a.0.cmp(&b.0));
        }
        assert_eq!(back, expected);
        Ok(())
    }
}
