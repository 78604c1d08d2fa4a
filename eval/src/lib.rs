//! Retrieval metrics and benchmark runners.
//!
//! [`ndcg_at_k`] follows trec_eval's `ndcg_cut`: gain is the graded relevance, the discount
//! `log2(rank + 1)`, and the ideal ranking sorts every judged relevant document of the query.
//! [`evaluate_routes`] runs a pipeline over a query set and scores each route and the fusion.

use std::collections::BTreeMap;

use folio_search::{Pipeline, SearchError, SearchRequest};
use serde::Serialize;

/// Relevance of each judged document of one query (corpus id -> grade).
pub type Judgements = BTreeMap<String, u32>;

/// nDCG@k of one ranking (corpus ids, best first) against one query's judgements. A query
/// with no relevant document scores 0, as in trec_eval.
pub fn ndcg_at_k(ranking: &[String], judged: &Judgements, k: usize) -> f64 {
    let dcg: f64 = ranking
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, doc)| gain(judged.get(doc).copied().unwrap_or(0)) / discount(i))
        .sum();
    let mut ideal: Vec<u32> = judged.values().copied().filter(|&r| r > 0).collect();
    ideal.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, &r)| gain(r) / discount(i))
        .sum();
    if idcg > 0.0 { dcg / idcg } else { 0.0 }
}

fn gain(rel: u32) -> f64 {
    f64::from(rel)
}

fn discount(zero_based_rank: usize) -> f64 {
    ((zero_based_rank + 2) as f64).log2()
}

/// One system's mean score over a query set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemScore {
    /// Mean nDCG@10.
    pub ndcg_at_10: f64,
    /// Fraction of queries with a relevant page in the top 3.
    pub hit_at_3: f64,
}

/// Runs each query through `pipeline` and scores every route and the fused list (`fused`).
/// `corpus_id` maps a hit's (document path, page) to the qrels' corpus id.
pub fn evaluate_routes(
    pipeline: &Pipeline,
    queries: &[(String, String)],
    qrels: &BTreeMap<String, Judgements>,
    corpus_id: impl Fn(&str, u32) -> String,
) -> Result<BTreeMap<String, SystemScore>, SearchError> {
    let mut per_system: BTreeMap<String, Vec<(f64, bool)>> = BTreeMap::new();
    let empty = Judgements::new();
    for (qid, text) in queries {
        let judged = qrels.get(qid).unwrap_or(&empty);
        let retrieved = pipeline.retrieve(&SearchRequest {
            query: text.clone(),
            k: 10,
        })?;
        let path_of = |doc_id: &folio_core::DocId| {
            pipeline
                .store()
                .document(doc_id)
                .map(|d| d.path.clone())
                .unwrap_or_default()
        };
        let mut systems: Vec<(String, Vec<String>)> = retrieved
            .lists
            .iter()
            .map(|l| {
                let ids = l
                    .hits
                    .iter()
                    .map(|h| corpus_id(&path_of(&h.page.doc_id), h.page.page))
                    .collect();
                (l.route.clone(), ids)
            })
            .collect();
        systems.push((
            "fused".to_string(),
            retrieved
                .fused
                .iter()
                .map(|h| corpus_id(&path_of(&h.page.doc_id), h.page.page))
                .collect(),
        ));
        for (name, ranking) in systems {
            let hit3 = ranking
                .iter()
                .take(3)
                .any(|d| judged.get(d).is_some_and(|&r| r > 0));
            per_system
                .entry(name)
                .or_default()
                .push((ndcg_at_k(&ranking, judged, 10), hit3));
        }
    }
    Ok(per_system
        .into_iter()
        .map(|(name, scores)| {
            let n = scores.len().max(1) as f64;
            let ndcg = scores.iter().map(|s| s.0).sum::<f64>() / n;
            let hits = scores.iter().filter(|s| s.1).count() as f64 / n;
            (
                name,
                SystemScore {
                    ndcg_at_10: ndcg,
                    hit_at_3: hits,
                },
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn judged(pairs: &[(&str, u32)]) -> Judgements {
        pairs.iter().map(|(d, r)| (d.to_string(), *r)).collect()
    }

    fn ranking(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let j = judged(&[("a", 2), ("b", 1)]);
        assert!((ndcg_at_k(&ranking(&["a", "b", "c"]), &j, 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn hand_computed_value() {
        // Relevant a (2) at rank 2, b (1) missing: dcg = 2/log2(3); idcg = 2 + 1/log2(3).
        let j = judged(&[("a", 2), ("b", 1), ("z", 0)]);
        let got = ndcg_at_k(&ranking(&["x", "a", "z"]), &j, 10);
        let want = (2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((got - want).abs() < 1e-12, "{got} vs {want}");
    }

    #[test]
    fn cutoff_and_no_relevant_docs() {
        let j = judged(&[("a", 1)]);
        assert_eq!(ndcg_at_k(&ranking(&["x", "a"]), &j, 1), 0.0);
        assert_eq!(ndcg_at_k(&ranking(&["a"]), &judged(&[("a", 0)]), 10), 0.0);
        assert_eq!(ndcg_at_k(&[], &j, 10), 0.0);
    }

    proptest! {
        #[test]
        fn ndcg_is_between_zero_and_one(
            ids in prop::collection::vec(0u8..20, 0..15),
            rels in prop::collection::btree_map(0u8..20, 0u32..4, 0..10),
        ) {
            let mut seen = std::collections::HashSet::new();
            let r: Vec<String> = ids.into_iter().filter(|i| seen.insert(*i)).map(|i| i.to_string()).collect();
            let j: Judgements = rels.into_iter().map(|(d, g)| (d.to_string(), g)).collect();
            let v = ndcg_at_k(&r, &j, 10);
            prop_assert!((0.0..=1.0 + 1e-12).contains(&v));
        }
    }
}
