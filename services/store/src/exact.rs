//! Exact nearest neighbours by brute force: the oracle the ANN index is tested against.

use folio_core::PassageId;

/// Every vector compared with the query; cosine similarity on L2-normalised rows (the dot
/// product), ties broken by the smaller key.
#[derive(Debug, Clone)]
pub struct ExactIndex {
    dim: usize,
    vectors: Vec<f32>,
}

impl ExactIndex {
    /// Rows of `vectors` (width `dim`) get keys 0, 1, 2, ...; a trailing partial row is
    /// ignored.
    pub fn new(dim: usize, vectors: Vec<f32>) -> Self {
        ExactIndex { dim, vectors }
    }

    /// Number of vectors.
    pub fn len(&self) -> usize {
        self.vectors.len().checked_div(self.dim).unwrap_or(0)
    }

    /// True when it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` most similar rows, best first, with their similarity.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<(PassageId, f32)> {
        if self.dim == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let mut scored: Vec<(PassageId, f32)> = self
            .vectors
            .chunks_exact(self.dim)
            .enumerate()
            .map(|(key, row)| {
                (
                    key as PassageId,
                    row.iter().zip(query).map(|(a, b)| a * b).sum(),
                )
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ann;

    /// Deterministic clustered unit vectors (real embeddings are clustered, not uniform).
    fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut state = seed | 1;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f32 / (1u64 << 53) as f32 - 0.5
        };
        let centres: Vec<Vec<f32>> = (0..32)
            .map(|_| (0..dim).map(|_| uniform()).collect())
            .collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[i % centres.len()];
            let v: Vec<f32> = c.iter().map(|x| x + 0.6 * uniform()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / norm));
        }
        out
    }

    #[test]
    fn exact_search_orders_by_similarity_then_key() {
        let index = ExactIndex::new(2, vec![1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let hits = index.search(&[1.0, 0.0], 3);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), vec![0, 2, 1]);
        assert!(index.search(&[1.0], 3).is_empty());
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn hnsw_recall_at_10_against_the_exact_oracle() -> Result<(), crate::StoreError> {
        use ann::{AnnMetric, AnnOptions, AnnStorage};
        let (n, dim) = (5_000, 64);
        let data = vectors(n, dim, 7);
        let tmp = tempfile::tempdir().map_err(|e| crate::StoreError::Invalid(e.to_string()))?;
        let exact = ExactIndex::new(dim, data.clone());
        let queries = vectors(100, dim, 99);
        // Every storage and metric, saved and reopened; i8 loses most, so it gets the lowest
        // bar, unless its candidates are re-scored with the exact rows.
        for (metric, storage, rescore, floor) in [
            (AnnMetric::Cosine, AnnStorage::F32, 1, 0.95),
            (AnnMetric::InnerProduct, AnnStorage::F32, 1, 0.95),
            (AnnMetric::Cosine, AnnStorage::F16, 1, 0.95),
            (AnnMetric::Cosine, AnnStorage::I8, 1, 0.9),
            (AnnMetric::Cosine, AnnStorage::F16, 2, 0.95),
            (AnnMetric::Cosine, AnnStorage::I8, 2, 0.95),
            (AnnMetric::InnerProduct, AnnStorage::I8, 3, 0.95),
        ] {
            let options = AnnOptions {
                metric,
                storage,
                rescore,
                ..AnnOptions::default()
            };
            let path = tmp.path().join(format!("{metric:?}-{storage:?}.usearch"));
            ann::build(&path, &options, dim, &data)?;
            let hnsw = ann::AnnIndex::open(&path, &options, dim)?
                .always_use_graph()
                .with_exact_rows(&options, data.clone())?;
            // Re-scored similarities are the exact ones; quantized ones are close.
            let tolerance = if options.rescores() { 1e-4 } else { 0.05 };
            assert_eq!(hnsw.len(), n);
            let mut found = 0;
            for q in queries.chunks_exact(dim) {
                let scored = exact.search(q, 10);
                let truth: Vec<PassageId> = scored.iter().map(|h| h.0).collect();
                let got = hnsw.search(q, 10)?;
                found += got.iter().filter(|h| truth.contains(&h.0)).count();
                // Similarities are on the exact scale, whatever the storage: compared on the
                // same vector (the graph, built on several threads, may miss the true first).
                for h in &got {
                    if let Some(t) = scored.iter().find(|t| t.0 == h.0) {
                        assert!((h.1 - t.1).abs() < tolerance, "{metric:?} {storage:?}");
                    }
                }
            }
            let recall = found as f64 / 1000.0;
            eprintln!("HNSW {metric:?} {storage:?} x{rescore} recall@10 vs exact: {recall}");
            assert!(
                recall >= floor,
                "{metric:?} {storage:?}: recall@10 {recall}"
            );
        }
        // A filter keeps only the rows it accepts.
        let options = AnnOptions::default();
        let hnsw = ann::AnnIndex::build(&options, dim, &data)?.always_use_graph();
        let even = hnsw.filtered_search(&queries[..dim], 10, |key| key % 2 == 0)?;
        assert_eq!(even.len(), 10);
        assert!(even.iter().all(|(key, _)| key % 2 == 0));
        for bad in [
            AnnOptions { m: 1, ..options },
            AnnOptions {
                ef_search: 0,
                ..options
            },
            AnnOptions {
                rescore: 0,
                ..options
            },
        ] {
            assert!(ann::AnnIndex::build(&bad, dim, &data).is_err());
        }
        Ok(())
    }

    /// An index small enough to scan answers exactly, filtered or not: the same rows as the
    /// oracle, in the same order, with the same similarities.
    #[test]
    fn small_indexes_answer_exactly() -> Result<(), crate::StoreError> {
        let (n, dim) = (3_000, 32);
        let data = vectors(n, dim, 11);
        let exact = ExactIndex::new(dim, data.clone());
        let options = ann::AnnOptions {
            metric: ann::AnnMetric::InnerProduct,
            // A graph this poor misses neighbours: only the scan can be exact.
            m: 2,
            ef_construction: 4,
            ef_search: 4,
            ..ann::AnnOptions::default()
        };
        let index = ann::AnnIndex::build(&options, dim, &data)?;
        for q in vectors(20, dim, 5).chunks_exact(dim) {
            let truth = exact.search(q, 10);
            let got = index.search(q, 10)?;
            assert_eq!(got.len(), 10);
            for (g, t) in got.iter().zip(&truth) {
                assert_eq!(g.0, t.0);
                assert!((g.1 - t.1).abs() < 1e-4, "{} against {}", g.1, t.1);
            }
            let even: Vec<PassageId> = exact
                .search(q, n)
                .into_iter()
                .filter(|h| h.0 % 2 == 0)
                .take(10)
                .map(|h| h.0)
                .collect();
            let got: Vec<PassageId> = index
                .filtered_search(q, 10, |key| key % 2 == 0)?
                .into_iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(got, even);
        }
        Ok(())
    }
}
