//! Retrieval metrics with trec_eval's semantics (version 9.0.8, the one pytrec_eval runs).
//!
//! - Ranking: the rank column of a run is ignored; documents are sorted by score descending,
//!   with scores compared as 32-bit floats (trec_eval 9.0.8 stores them as `float`), and ties
//!   broken by document id in descending byte order.
//! - Relevance: a judged label `>= relevance_level` (default 1) is relevant for the binary
//!   measures; a negative label means "in the pool but unjudged": never relevant, no gain, and
//!   not a judged non-relevant document for bpref.
//! - nDCG: gain is the label itself, discount `log2(rank + 1)`; the ideal ranking holds every
//!   judged document with a positive label, retrieved or not. 0 when the ideal DCG is 0.
//! - Queries: a query is evaluated when it is in both the run and the qrels. Queries only in
//!   the run are ignored. Queries only in the qrels are ignored too, unless `complete` is set
//!   (trec_eval's `-c`), which scores them 0 in the mean.
//! - A run that lists a document twice for one query is an error, as in trec_eval.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use folio_datasets::Qrels;
use thiserror::Error;

/// Reading a run or parsing a metric name failed.
#[derive(Debug, Error)]
pub enum MetricsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A line of a run file is malformed.
    #[error("{path}, line {line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A metric name is not known.
    #[error(
        "unknown metric {0:?}; known: ndcg, ndcg@k, map, map@k, recall@k, p@k, mrr, mrr@k, \
         r-prec, bpref, success@k"
    )]
    UnknownMetric(String),
}

/// A run: query id -> (document id, score), in any order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Run(pub BTreeMap<String, Vec<(String, f64)>>);

/// A metric, named as on the command line (`ndcg@10`, `map`, `p@5`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// nDCG, over the whole ranking (`ndcg`) or cut at k (`ndcg@k`; trec_eval `ndcg_cut_k`).
    Ndcg(Option<usize>),
    /// Average precision (`map`), or cut at k (`map@k`; trec_eval `map_cut_k`: still divided by
    /// the number of relevant documents).
    Map(Option<usize>),
    /// Fraction of the relevant documents in the top k (`recall@k`).
    Recall(usize),
    /// Relevant documents in the top k divided by k (`p@k`; trec_eval `P_k`).
    Precision(usize),
    /// Reciprocal rank of the first relevant document (`mrr`), 0 beyond k with `mrr@k`.
    Mrr(Option<usize>),
    /// Precision at rank R, R = number of relevant documents (`r-prec`; trec_eval `Rprec`).
    RPrec,
    /// Binary preference (`bpref`), Buckley and Voorhees 2004.
    Bpref,
    /// 1 if a relevant document is in the top k (`success@k`).
    Success(usize),
}

impl FromStr for Metric {
    type Err = MetricsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || MetricsError::UnknownMetric(s.to_string());
        let lower = s.trim().to_ascii_lowercase();
        let (name, k) = match lower.split_once('@') {
            Some((name, k)) => {
                let k: usize = k.parse().map_err(|_| unknown())?;
                if k == 0 {
                    return Err(unknown());
                }
                (name.to_string(), Some(k))
            }
            None => (lower.clone(), None),
        };
        Ok(match (name.as_str(), k) {
            ("ndcg", k) => Metric::Ndcg(k),
            ("map", k) => Metric::Map(k),
            ("mrr" | "recip_rank", k) => Metric::Mrr(k),
            ("recall", Some(k)) => Metric::Recall(k),
            ("p" | "precision", Some(k)) => Metric::Precision(k),
            ("success" | "hit_rate", Some(k)) => Metric::Success(k),
            ("r-prec" | "rprec" | "r-precision", None) => Metric::RPrec,
            ("bpref", None) => Metric::Bpref,
            _ => return Err(unknown()),
        })
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = |f: &mut fmt::Formatter<'_>, name: &str, k: &Option<usize>| match k {
            Some(k) => write!(f, "{name}@{k}"),
            None => f.write_str(name),
        };
        match self {
            Metric::Ndcg(k) => cut(f, "ndcg", k),
            Metric::Map(k) => cut(f, "map", k),
            Metric::Mrr(k) => cut(f, "mrr", k),
            Metric::Recall(k) => write!(f, "recall@{k}"),
            Metric::Precision(k) => write!(f, "p@{k}"),
            Metric::Success(k) => write!(f, "success@{k}"),
            Metric::RPrec => f.write_str("r-prec"),
            Metric::Bpref => f.write_str("bpref"),
        }
    }
}

/// Parses a comma-separated metric list, keeping the names as given.
pub fn parse_metrics(list: &str) -> Result<Vec<(String, Metric)>, MetricsError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Ok((s.to_string(), s.parse()?)))
        .collect()
}

/// How to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    /// Labels at or above this are relevant for the binary measures.
    pub relevance_level: i64,
    /// Count queries of the qrels that the run lacks, with every measure 0 (trec_eval `-c`).
    pub complete: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            relevance_level: 1,
            complete: false,
        }
    }
}

/// Per-query values and their means, in the order the metrics were given.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// query id -> one value per metric.
    pub per_query: BTreeMap<String, Vec<f64>>,
    /// One mean per metric over the evaluated queries (0 when none is).
    pub mean: Vec<f64>,
    /// Number of queries in the mean.
    pub queries: usize,
}

/// Evaluates `run` against `qrels` with trec_eval's semantics (see the module docs).
pub fn evaluate(qrels: &Qrels, run: &Run, metrics: &[Metric], options: EvalOptions) -> Evaluation {
    let empty = Vec::new();
    let mut per_query = BTreeMap::new();
    let mut sums = vec![0.0; metrics.len()];
    let mut queries = 0;
    for (qid, judged) in qrels {
        let docs = match run.0.get(qid) {
            Some(docs) => docs,
            None if options.complete => &empty,
            None => continue,
        };
        let query = QueryEval::new(judged, docs, options.relevance_level);
        let values: Vec<f64> = metrics.iter().map(|m| query.value(*m)).collect();
        for (s, v) in sums.iter_mut().zip(&values) {
            *s += v;
        }
        queries += 1;
        if run.0.contains_key(qid) {
            per_query.insert(qid.clone(), values);
        }
    }
    let mean = sums
        .into_iter()
        .map(|s| if queries > 0 { s / queries as f64 } else { 0.0 })
        .collect();
    Evaluation {
        per_query,
        mean,
        queries,
    }
}

/// One query's ranking, read against its judgements.
struct QueryEval {
    /// Label of each retrieved document in rank order; `None` when not in the qrels.
    labels: Vec<Option<i64>>,
    /// Whether each retrieved document is relevant.
    relevant: Vec<bool>,
    /// Number of relevant documents in the qrels (R).
    num_rel: usize,
    /// Number of judged non-relevant documents in the qrels (label 0 ..< level).
    num_nonrel: usize,
    /// Positive labels of the qrels, highest first: the ideal ranking's gains.
    ideal: Vec<i64>,
}

impl QueryEval {
    fn new(judged: &BTreeMap<String, i64>, docs: &[(String, f64)], level: i64) -> Self {
        let mut ranked: Vec<(f32, &str)> = docs
            .iter()
            // `+ 0.0` turns -0.0 into 0.0: trec_eval compares with `<`, where they tie.
            .map(|(d, s)| (*s as f32 + 0.0, d.as_str()))
            .collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| b.1.cmp(a.1)));
        let labels: Vec<Option<i64>> = ranked
            .iter()
            .map(|(_, d)| judged.get(*d).copied())
            .collect();
        let relevant = labels
            .iter()
            .map(|l| l.is_some_and(|l| l >= level))
            .collect();
        let mut ideal: Vec<i64> = judged.values().copied().filter(|&l| l > 0).collect();
        ideal.sort_unstable_by(|a, b| b.cmp(a));
        QueryEval {
            labels,
            relevant,
            num_rel: judged.values().filter(|&&l| l >= level).count(),
            num_nonrel: judged
                .values()
                .filter(|&&l| (0..level).contains(&l))
                .count(),
            ideal,
        }
    }

    fn value(&self, metric: Metric) -> f64 {
        let r = self.num_rel as f64;
        let hits = |k: usize| self.relevant.iter().take(k).filter(|&&x| x).count() as f64;
        match metric {
            Metric::Ndcg(k) => {
                let k = k.unwrap_or(usize::MAX);
                let idcg = dcg(self.ideal.iter().map(|&g| Some(g)), k);
                if idcg > 0.0 {
                    dcg(self.labels.iter().copied(), k) / idcg
                } else {
                    0.0
                }
            }
            Metric::Map(k) => {
                if self.num_rel == 0 {
                    return 0.0;
                }
                let mut found = 0.0;
                let mut sum = 0.0;
                for (i, &rel) in self
                    .relevant
                    .iter()
                    .take(k.unwrap_or(usize::MAX))
                    .enumerate()
                {
                    if rel {
                        found += 1.0;
                        sum += found / (i + 1) as f64;
                    }
                }
                sum / r
            }
            Metric::Recall(k) => {
                if self.num_rel == 0 {
                    0.0
                } else {
                    hits(k) / r
                }
            }
            Metric::Precision(k) => hits(k) / k as f64,
            Metric::Mrr(k) => match self.relevant.iter().position(|&x| x) {
                Some(i) if k.is_none_or(|k| i < k) => 1.0 / (i + 1) as f64,
                _ => 0.0,
            },
            Metric::RPrec => {
                if self.num_rel == 0 {
                    0.0
                } else {
                    hits(self.num_rel) / r
                }
            }
            Metric::Bpref => self.bpref(),
            Metric::Success(k) => {
                if hits(k) > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    fn bpref(&self) -> f64 {
        let mut nonrel_so_far = 0usize;
        let mut sum = 0.0;
        for (label, &rel) in self.labels.iter().zip(&self.relevant) {
            match label {
                None => {}
                Some(l) if *l < 0 => {}
                Some(_) if rel => {
                    sum += if nonrel_so_far > 0 {
                        1.0 - nonrel_so_far.min(self.num_rel) as f64
                            / self.num_nonrel.min(self.num_rel) as f64
                    } else {
                        1.0
                    };
                }
                Some(_) => nonrel_so_far += 1,
            }
        }
        if self.num_rel > 0 {
            sum / self.num_rel as f64
        } else {
            sum
        }
    }
}

/// DCG of a list of labels (positive labels are gains) down to rank `k`.
fn dcg(labels: impl Iterator<Item = Option<i64>>, k: usize) -> f64 {
    labels
        .take(k)
        .enumerate()
        .filter_map(|(i, l)| {
            l.filter(|&g| g > 0)
                .map(|g| g as f64 / ((i + 2) as f64).log2())
        })
        .sum()
}

/// Reads a TREC run (`qid Q0 docid rank score tag`). The rank column is read but not used:
/// ordering comes from the scores. A document listed twice for a query is an error.
pub fn read_run(path: &Path) -> Result<Run, MetricsError> {
    let text = std::fs::read_to_string(path).map_err(|source| MetricsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut run = Run::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let err = |message: String| MetricsError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message,
        };
        let (qid, doc, score) = match fields.as_slice() {
            [] => continue,
            [q, _, d, _, s, _] => (*q, *d, *s),
            _ => {
                return Err(err(format!(
                    "expected 6 fields (qid Q0 docid rank score tag), found {}",
                    fields.len()
                )));
            }
        };
        let score: f64 = score
            .parse()
            .ok()
            .filter(|s: &f64| s.is_finite())
            .ok_or_else(|| err(format!("score {score:?} is not a finite number")))?;
        if !seen.insert((qid.to_string(), doc.to_string())) {
            return Err(err(format!(
                "document {doc} is listed twice for query {qid}"
            )));
        }
        run.0
            .entry(qid.to_string())
            .or_default()
            .push((doc.to_string(), score));
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn qrels(pairs: &[(&str, i64)]) -> Qrels {
        let mut q = Qrels::default();
        q.insert(
            "q".into(),
            pairs.iter().map(|(d, l)| (d.to_string(), *l)).collect(),
        );
        q
    }

    fn run(docs: &[(&str, f64)]) -> Run {
        let mut r = Run::default();
        r.0.insert(
            "q".into(),
            docs.iter().map(|(d, s)| (d.to_string(), *s)).collect(),
        );
        r
    }

    fn one(q: &Qrels, r: &Run, m: &str) -> f64 {
        let m: Metric = m.parse().unwrap_or(Metric::Bpref);
        evaluate(q, r, &[m], EvalOptions::default()).mean[0]
    }

    #[test]
    fn names_round_trip_and_bad_names_are_refused() {
        for name in [
            "ndcg",
            "ndcg@10",
            "map",
            "map@10",
            "recall@100",
            "p@5",
            "mrr",
            "mrr@10",
            "r-prec",
            "bpref",
            "success@1",
        ] {
            let m: Metric = name.parse().unwrap_or(Metric::Bpref);
            assert_eq!(m.to_string(), name);
        }
        for bad in ["ndcg@0", "recall", "p", "foo@3", "map@x", "bpref@3"] {
            assert!(bad.parse::<Metric>().is_err(), "{bad}");
        }
        assert_eq!("P@5".parse::<Metric>().ok(), Some(Metric::Precision(5)));
    }

    #[test]
    fn ties_are_broken_by_docid_descending() {
        // d9 > d10 in byte order, so d9 ranks first among equal scores.
        let q = qrels(&[("d10", 1)]);
        let r = run(&[("d9", 1.0), ("d10", 1.0)]);
        assert_eq!(one(&q, &r, "mrr"), 0.5);
    }

    #[test]
    fn scores_are_compared_as_f32() {
        let q = qrels(&[("d1", 1)]);
        let r = run(&[("d1", 0.500_000_000_1), ("d2", 0.5)]);
        assert_eq!(one(&q, &r, "mrr"), 0.5);
        // 0.0 and -0.0 tie too; docid order decides.
        let r = run(&[("d1", -0.0), ("d2", 0.0)]);
        assert_eq!(one(&q, &r, "mrr"), 0.5);
    }

    #[test]
    fn hand_computed_values() {
        // Ranking: a (2), x (unjudged), b (0), c (1); also judged: d (3), never retrieved.
        let q = qrels(&[("a", 2), ("b", 0), ("c", 1), ("d", 3)]);
        let r = run(&[("a", 4.0), ("x", 3.0), ("b", 2.0), ("c", 1.0)]);
        let l2 = |x: f64| x.log2();
        let dcg = 2.0 + 1.0 / l2(5.0);
        let idcg = 3.0 + 2.0 / l2(3.0) + 1.0 / l2(4.0);
        assert!((one(&q, &r, "ndcg") - dcg / idcg).abs() < 1e-12);
        assert!((one(&q, &r, "ndcg@2") - 2.0 / (3.0 + 2.0 / l2(3.0))).abs() < 1e-12);
        assert!((one(&q, &r, "map") - (1.0 + 2.0 / 4.0) / 3.0).abs() < 1e-12);
        assert!((one(&q, &r, "map@2") - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(one(&q, &r, "p@5"), 2.0 / 5.0);
        assert_eq!(one(&q, &r, "recall@3"), 1.0 / 3.0);
        assert_eq!(one(&q, &r, "r-prec"), 1.0 / 3.0);
        assert_eq!(one(&q, &r, "success@1"), 1.0);
        // bpref: a (no nonrel above) 1; c (one nonrel above, min(1,R=3)/min(N=1,R=3) = 1) 0.
        assert!((one(&q, &r, "bpref") - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn missing_queries_follow_trec_eval() {
        let mut q = qrels(&[("a", 1)]);
        q.insert("only-in-qrels".into(), [("z".to_string(), 1)].into());
        let mut r = run(&[("a", 1.0)]);
        r.0.insert("only-in-run".into(), vec![("a".into(), 1.0)]);
        let m = [Metric::Mrr(None)];
        let plain = evaluate(&q, &r, &m, EvalOptions::default());
        assert_eq!(plain.queries, 1);
        assert_eq!(plain.mean, [1.0]);
        assert_eq!(plain.per_query.keys().collect::<Vec<_>>(), ["q"]);
        let complete = evaluate(
            &q,
            &r,
            &m,
            EvalOptions {
                complete: true,
                ..EvalOptions::default()
            },
        );
        assert_eq!(complete.queries, 2);
        assert_eq!(complete.mean, [0.5]);
    }

    proptest! {
        #[test]
        fn values_are_probabilities_and_order_of_lines_does_not_matter(
            labels in prop::collection::vec(-1i64..4, 1..30),
            scores in prop::collection::vec(0u8..5, 1..30),
        ) {
            let judged: Vec<(String, i64)> = labels.iter().enumerate().map(|(i, l)| (format!("d{i}"), *l)).collect();
            let docs: Vec<(String, f64)> = scores.iter().enumerate().map(|(i, s)| (format!("d{}", i * 2), f64::from(*s))).collect();
            let mut q = Qrels::default();
            q.insert("q".into(), judged.into_iter().collect());
            let mut r = Run::default();
            r.0.insert("q".into(), docs.clone());
            let metrics: Vec<Metric> = ["ndcg", "ndcg@5", "map", "map@5", "recall@5", "p@5", "mrr", "mrr@3", "r-prec", "bpref", "success@3"]
                .iter().filter_map(|m| m.parse().ok()).collect();
            let a = evaluate(&q, &r, &metrics, EvalOptions::default());
            let mut reversed = docs;
            reversed.reverse();
            r.0.insert("q".into(), reversed);
            let b = evaluate(&q, &r, &metrics, EvalOptions::default());
            prop_assert_eq!(&a, &b);
            for v in &a.mean {
                prop_assert!((0.0..=1.0 + 1e-12).contains(v), "{}", v);
            }
        }
    }
}
