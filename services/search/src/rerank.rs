//! The re-ranking stage: runs a [`Reranker`] over the top fused candidates within a time
//! budget and falls back to the fused order, flagged as degraded, when it fails.

use std::time::{Duration, Instant};

use folio_core::{Candidate, RerankBudget, Reranker};
use tracing::warn;

/// The order the re-ranking stage settled on.
#[derive(Debug, Clone, PartialEq)]
pub struct RerankOutcome {
    /// Indices into the fused list, best first; covers every fused hit.
    pub order: Vec<usize>,
    /// Re-ranker score per fused index (None when not re-ranked).
    pub scores: Vec<Option<f64>>,
    /// Why the fused order was kept, when the re-ranker failed.
    pub error: Option<String>,
}

impl RerankOutcome {
    /// The fused order, untouched.
    pub(crate) fn fused(n: usize, error: Option<String>) -> Self {
        RerankOutcome {
            order: (0..n).collect(),
            scores: vec![None; n],
            error,
        }
    }
}

/// Re-ranks `candidates`, the head of a fused list of `total` hits; the rest keep their fused
/// order below them. Any failure (error, timeout, an answer that is not a permutation of the
/// candidates) gives the fused order with the reason.
pub(crate) fn rerank(
    reranker: &dyn Reranker,
    query: &str,
    candidates: &[Candidate],
    total: usize,
    budget: Duration,
) -> RerankOutcome {
    let depth = candidates.len();
    let n = total.max(depth);
    let started = Instant::now();
    let result = reranker.rerank(
        query,
        candidates,
        RerankBudget {
            max_candidates: depth,
            time: budget,
        },
    );
    let fail = |reason: String| {
        warn!(reranker = reranker.name(), %reason, ms = started.elapsed().as_millis(), "re-ranking failed; fused order kept");
        RerankOutcome::fused(n, Some(reason))
    };
    let ranked = match result {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let mut seen = vec![false; depth];
    for r in &ranked {
        match seen.get_mut(r.index) {
            Some(s) if !*s => *s = true,
            _ => {
                return fail(format!(
                    "re-ranker {} returned index {} twice or out of 0..{depth}",
                    reranker.name(),
                    r.index
                ));
            }
        }
    }
    if ranked.len() != depth {
        return fail(format!(
            "re-ranker {} returned {} of {depth} candidates",
            reranker.name(),
            ranked.len()
        ));
    }
    let mut scores = vec![None; n];
    let mut order = Vec::with_capacity(n);
    for r in ranked {
        scores[r.index] = Some(r.score);
        order.push(r.index);
    }
    order.extend(depth..n);
    RerankOutcome {
        order,
        scores,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use folio_core::{DocId, FusedHit, PageKey, RerankError, Reranked};

    use super::*;

    /// Scores candidates by text length, or misbehaves as told.
    struct Fake(&'static str);

    impl Reranker for Fake {
        fn name(&self) -> &str {
            self.0
        }
        fn rerank(
            &self,
            _query: &str,
            c: &[Candidate],
            budget: RerankBudget,
        ) -> Result<Vec<Reranked>, RerankError> {
            match self.0 {
                "slow" => Err(RerankError::Timeout(budget.time)),
                "broken" => Err(RerankError::Model("weights on fire".into())),
                "duplicate" => Ok(vec![
                    Reranked {
                        index: 0,
                        score: 1.0
                    };
                    c.len()
                ]),
                "short" => Ok(vec![Reranked {
                    index: 0,
                    score: 1.0,
                }]),
                _ => {
                    let mut out: Vec<Reranked> = c
                        .iter()
                        .enumerate()
                        .map(|(index, c)| Reranked {
                            index,
                            score: c.text.len() as f64,
                        })
                        .collect();
                    out.sort_by(|a, b| b.score.total_cmp(&a.score));
                    Ok(out)
                }
            }
        }
    }

    fn candidates(texts: &[&str]) -> Vec<Candidate> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Candidate {
                hit: FusedHit {
                    page: PageKey {
                        doc_id: DocId("d".into()),
                        page: i as u32 + 1,
                    },
                    score: 1.0,
                    ranks: BTreeMap::new(),
                    passage: None,
                },
                text: t.to_string(),
            })
            .collect()
    }

    #[test]
    fn reranks_the_top_and_keeps_the_tail() {
        let c = candidates(&["a", "ccc", "bb", "dddd"]);
        let out = rerank(&Fake("len"), "q", &c[..3], c.len(), Duration::from_secs(1));
        assert_eq!(out.order, vec![1, 2, 0, 3]);
        assert_eq!(out.scores, vec![Some(1.0), Some(3.0), Some(2.0), None]);
        assert!(out.error.is_none());
    }

    #[test]
    fn failures_keep_the_fused_order_with_a_reason() {
        let c = candidates(&["a", "ccc", "bb"]);
        for (name, needle) in [
            ("slow", "out of time"),
            ("broken", "weights on fire"),
            ("duplicate", "twice or out of"),
            ("short", "returned 1 of 3"),
        ] {
            let out = rerank(&Fake(name), "q", &c, c.len(), Duration::from_millis(5));
            assert_eq!(out.order, vec![0, 1, 2], "{name}");
            assert_eq!(out.scores, vec![None; 3], "{name}");
            let err = out.error.unwrap_or_default();
            assert!(err.contains(needle), "{name}: {err}");
        }
    }
}
