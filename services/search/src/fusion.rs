//! Fusion of ranked lists.

use std::collections::{BTreeMap, HashMap};

use folio_core::{FusedHit, Fuser, PageKey, PassageId, RankedList};

/// Reciprocal rank fusion (Cormack et al., 2009): a page's score is the sum over routes of
/// `1 / (k + rank)`, with 1-based ranks. Ties are broken by page key, so the order is
/// deterministic. The page's passage comes from the route where it ranked best (the earlier
/// list on equal ranks).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rrf {
    /// The constant `k`; 60 in the original paper.
    pub k: f64,
}

impl Default for Rrf {
    fn default() -> Self {
        Rrf { k: 60.0 }
    }
}

/// Weighted fusion of normalised scores: each route's scores are min-max normalised over its
/// own list (best = 1, worst = 0; a list whose scores are all equal gives 1 to each), multiplied
/// by the route's weight (1 for routes without one), and summed over the routes that returned
/// the page. Ties are broken by page key; the passage comes from the best-ranked route, as in
/// [`Rrf`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Weighted {
    /// Weight per route name; routes not listed weigh 1.
    pub weights: BTreeMap<String, f64>,
}

/// What fusion knows about one page: its rank and normalised score in each route.
struct Acc {
    /// Route -> (1-based rank, min-max normalised score).
    routes: BTreeMap<String, (usize, f64)>,
    best_rank: usize,
    passage: Option<PassageId>,
}

/// Gathers every page of every list (a route that lists a page twice counts its best rank),
/// scores each with `score`, and sorts by score, then page key.
fn fuse_by(lists: &[RankedList], k: usize, score: impl Fn(&Acc) -> f64) -> Vec<FusedHit> {
    let mut acc: HashMap<&PageKey, Acc> = HashMap::new();
    for list in lists {
        let (lo, hi) = list
            .hits
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), h| {
                (lo.min(h.score), hi.max(h.score))
            });
        for (i, hit) in list.hits.iter().enumerate() {
            let rank = i + 1;
            let a = acc.entry(&hit.page).or_insert_with(|| Acc {
                routes: BTreeMap::new(),
                best_rank: usize::MAX,
                passage: None,
            });
            if a.routes.contains_key(&list.route) {
                continue;
            }
            let normalised = if hi > lo {
                f64::from((hit.score - lo) / (hi - lo))
            } else {
                1.0
            };
            a.routes.insert(list.route.clone(), (rank, normalised));
            // Page-image routes match no passage: the passage comes from the best-ranked
            // text route that matched one.
            if hit.passage.is_some() && rank < a.best_rank {
                a.best_rank = rank;
                a.passage = hit.passage;
            }
        }
    }
    let mut fused: Vec<FusedHit> = acc
        .into_iter()
        .map(|(page, a)| FusedHit {
            page: page.clone(),
            score: score(&a),
            ranks: a
                .routes
                .iter()
                .map(|(r, (rank, _))| (r.clone(), *rank))
                .collect(),
            passage: a.passage,
        })
        .collect();
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.page.cmp(&b.page))
    });
    fused.truncate(k);
    fused
}

impl Fuser for Rrf {
    fn fuse(&self, lists: &[RankedList], k: usize) -> Vec<FusedHit> {
        // Summing in ascending rank order gives pages with the same ranks bit-identical
        // scores whatever the order of the routes, so tie-breaking stays exact.
        fuse_by(lists, k, |a| {
            let mut ranks: Vec<usize> = a.routes.values().map(|(r, _)| *r).collect();
            ranks.sort_unstable();
            ranks.iter().map(|&r| 1.0 / (self.k + r as f64)).sum()
        })
    }
}

impl Fuser for Weighted {
    fn fuse(&self, lists: &[RankedList], k: usize) -> Vec<FusedHit> {
        // Summed in route-name order: independent of the order of the lists.
        fuse_by(lists, k, |a| {
            a.routes
                .iter()
                .map(|(route, (_, s))| self.weights.get(route).copied().unwrap_or(1.0) * s)
                .sum()
        })
    }
}

#[cfg(test)]
mod tests {
    use folio_core::{DocId, Hit};
    use proptest::prelude::*;

    use super::*;

    fn page(d: &str, p: u32) -> PageKey {
        PageKey {
            doc_id: DocId(d.to_string()),
            page: p,
        }
    }

    fn list(route: &str, pages: &[PageKey]) -> RankedList {
        RankedList {
            route: route.to_string(),
            hits: pages
                .iter()
                .enumerate()
                .map(|(i, p)| Hit {
                    page: p.clone(),
                    score: 100.0 - i as f32,
                    passage: Some(i as u64 + 1000 * route.len() as u64),
                })
                .collect(),
        }
    }

    #[test]
    fn scores_are_reciprocal_ranks() {
        let a = list("bm25", &[page("a", 1), page("b", 1)]);
        let b = list("dense", &[page("b", 1), page("c", 2)]);
        let fused = Rrf::default().fuse(&[a, b], 10);
        assert_eq!(fused.len(), 3);
        // b: 1/62 + 1/61 beats a: 1/61.
        assert_eq!(fused[0].page, page("b", 1));
        assert!((fused[0].score - (1.0 / 62.0 + 1.0 / 61.0)).abs() < 1e-12);
        assert_eq!(fused[0].ranks.get("bm25"), Some(&2));
        assert_eq!(fused[0].ranks.get("dense"), Some(&1));
        // The passage comes from the route where the page ranked best (dense, rank 1).
        assert_eq!(fused[0].passage, Some(1000 * 5));
        assert_eq!(fused[1].page, page("a", 1));
        assert_eq!(fused[1].ranks.get("dense"), None);
    }

    #[test]
    fn ties_are_broken_by_page_key() {
        let a = list("bm25", &[page("z", 1)]);
        let b = list("dense", &[page("a", 3)]);
        let fused = Rrf::default().fuse(&[a, b], 10);
        assert_eq!(fused[0].page, page("a", 3));
        assert_eq!(fused[1].page, page("z", 1));
        assert_eq!(fused[0].score, fused[1].score);
    }

    #[test]
    fn truncates_to_k_and_handles_empty_input() {
        assert!(Rrf::default().fuse(&[], 10).is_empty());
        let a = list("bm25", &[page("a", 1), page("b", 1), page("c", 1)]);
        assert_eq!(Rrf::default().fuse(&[a], 2).len(), 2);
    }

    #[test]
    fn weighted_normalises_each_route_and_applies_weights() {
        let mut a = list("bm25", &[page("a", 1), page("b", 1), page("c", 1)]);
        // bm25 scores 100, 99, 98 -> normalised 1, 0.5, 0.
        let b = list("dense", &[page("c", 1), page("a", 1)]);
        // dense scores 100, 99 -> 1, 0.
        let even = Weighted::default().fuse(&[a.clone(), b.clone()], 10);
        let scores: Vec<(PageKey, f64)> = even.iter().map(|h| (h.page.clone(), h.score)).collect();
        assert_eq!(
            scores,
            [
                (page("a", 1), 1.0),
                (page("c", 1), 1.0),
                (page("b", 1), 0.5)
            ]
        );
        let dense_heavy = Weighted {
            weights: [("dense".to_string(), 3.0)].into(),
        };
        let fused = dense_heavy.fuse(&[a.clone(), b], 10);
        assert_eq!(fused[0].page, page("c", 1));
        assert_eq!(fused[0].score, 3.0);
        assert_eq!(fused[0].ranks.get("bm25"), Some(&3));
        // Equal scores in a list all normalise to 1.
        for h in &mut a.hits {
            h.score = 5.0;
        }
        assert!(
            Weighted::default()
                .fuse(&[a], 10)
                .iter()
                .all(|h| h.score == 1.0)
        );
    }

    fn lists_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        // Up to 4 routes, each a list of distinct pages drawn from 0..30.
        prop::collection::vec(
            prop::collection::hash_set(0u8..30, 0..20).prop_map(|s| s.into_iter().collect()),
            1..5,
        )
    }

    fn to_lists(raw: &[Vec<u8>]) -> Vec<RankedList> {
        raw.iter()
            .enumerate()
            .map(|(r, pages)| {
                let pages: Vec<PageKey> = pages.iter().map(|&p| page("d", u32::from(p))).collect();
                list(&format!("route{r}"), &pages)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn first_everywhere_stays_first(raw in lists_strategy(), winner in 100u32..200) {
            let mut lists = to_lists(&raw);
            for l in &mut lists {
                l.hits.insert(0, Hit { page: page("d", winner), score: 1e9, passage: None });
            }
            let fusers: [&dyn Fuser; 2] = [&Rrf::default(), &Weighted::default()];
            for fuser in fusers {
                let fused = fuser.fuse(&lists, 50);
                prop_assert_eq!(&fused[0].page, &page("d", winner));
                prop_assert!(fused[0].ranks.values().all(|&r| r == 1));
                prop_assert_eq!(fused[0].ranks.len(), lists.len());
            }
        }

        #[test]
        fn weighted_is_deterministic_and_keeps_every_page(raw in lists_strategy()) {
            let lists = to_lists(&raw);
            let fused = Weighted::default().fuse(&lists, 1000);
            let mut reversed = lists.clone();
            reversed.reverse();
            // Same pages, scores and ranks whatever the order of the lists.
            let key = |v: &[FusedHit]| v.iter().map(|h| (h.page.clone(), h.score, h.ranks.clone())).collect::<Vec<_>>();
            prop_assert_eq!(key(&fused), key(&Weighted::default().fuse(&reversed, 1000)));
            let total: std::collections::HashSet<_> = lists.iter().flat_map(|l| l.hits.iter().map(|h| h.page.clone())).collect();
            prop_assert_eq!(fused.len(), total.len());
            for w in fused.windows(2) {
                prop_assert!(w[0].score > w[1].score || (w[0].score == w[1].score && w[0].page < w[1].page));
            }
        }

        #[test]
        fn fusion_is_deterministic_and_keeps_provenance(raw in lists_strategy()) {
            let lists = to_lists(&raw);
            let fused = Rrf::default().fuse(&lists, 1000);
            let mut reversed = lists.clone();
            reversed.reverse();
            let fused_rev = Rrf::default().fuse(&reversed, 1000);
            // Same pages in the same order whatever the order of the routes.
            let pages: Vec<_> = fused.iter().map(|h| h.page.clone()).collect();
            let pages_rev: Vec<_> = fused_rev.iter().map(|h| h.page.clone()).collect();
            prop_assert_eq!(&pages, &pages_rev);
            // Sorted by score, ties by page key.
            for w in fused.windows(2) {
                prop_assert!(w[0].score > w[1].score || (w[0].score == w[1].score && w[0].page < w[1].page));
            }
            // Every page of every list appears once, with its exact rank per route.
            let total: std::collections::HashSet<_> = lists.iter().flat_map(|l| l.hits.iter().map(|h| h.page.clone())).collect();
            prop_assert_eq!(fused.len(), total.len());
            for h in &fused {
                let mut expected = 0.0;
                for l in &lists {
                    if let Some(i) = l.hits.iter().position(|x| x.page == h.page) {
                        prop_assert_eq!(h.ranks.get(&l.route), Some(&(i + 1)));
                        expected += 1.0 / (60.0 + (i + 1) as f64);
                    } else {
                        prop_assert!(!h.ranks.contains_key(&l.route));
                    }
                }
                prop_assert!((h.score - expected).abs() < 1e-12);
            }
        }
    }
}
