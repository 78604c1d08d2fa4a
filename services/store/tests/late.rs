//! Late-interaction search: MaxSim against a naive reference, the candidate stage against the
//! exhaustive oracle, and recall@10 of the two-stage search on a structured synthetic set.

use std::time::{Duration, Instant};

use folio_store::{LateIndex, StoreError, TokenMatrix, maxsim};

/// Deterministic splitmix64 stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Roughly standard normal (sum of four uniforms, rescaled).
    fn normal(&mut self) -> f32 {
        let u: f32 = (0..4)
            .map(|_| (self.next() >> 40) as f32 / (1u64 << 24) as f32)
            .sum();
        (u - 2.0) * 3f32.sqrt()
    }

    /// `v` plus Gaussian noise of expected norm `noise`, L2-normalised (a random unit vector
    /// for an empty `v`).
    fn near(&mut self, v: &[f32], noise: f32, dim: usize) -> Vec<f32> {
        let sigma = noise / (dim as f32).sqrt();
        let mut out: Vec<f32> = (0..dim)
            .map(|i| v.get(i).copied().unwrap_or(0.0) + sigma * self.normal())
            .collect();
        let norm = out.iter().map(|x| x * x).sum::<f32>().sqrt();
        out.iter_mut().for_each(|x| *x /= norm);
        out
    }
}

fn f16_round(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

fn naive_maxsim(query: &[f32], page: &[f32], dim: usize) -> f32 {
    let mut total = 0.0;
    for q in query.chunks(dim) {
        let mut best = f32::NEG_INFINITY;
        for p in page.chunks(dim) {
            best = best.max(q.iter().zip(p).map(|(a, b)| a * b).sum());
        }
        total += best;
    }
    total
}

#[test]
fn small_sets_search_is_exhaustive_maxsim() -> Result<(), StoreError> {
    let (dim, mut rng) = (16, Rng(1));
    let raw: Vec<Vec<f32>> = (0..50)
        .map(|_| {
            (0..rng.below(40))
                .flat_map(|_| rng.near(&[], 1.0, dim))
                .collect()
        })
        .collect();
    let pages = raw
        .iter()
        .map(|v| TokenMatrix::from_f32(dim, v))
        .collect::<Result<Vec<_>, _>>()?;
    assert!(pages.iter().any(TokenMatrix::is_empty));
    let index = LateIndex::from_pages(dim, pages.clone())?;
    for n_q in [1, 3, 8] {
        let query: Vec<f32> = (0..n_q).flat_map(|_| rng.near(&[], 1.0, dim)).collect();
        let mut reference: Vec<(u32, f32)> = Vec::new();
        for (row, (page, values)) in pages.iter().zip(&raw).enumerate() {
            assert_eq!(page.to_f32(), f16_round(values));
            let want = naive_maxsim(&query, &f16_round(values), dim);
            if page.is_empty() {
                assert_eq!(maxsim(&query, page), 0.0);
                continue;
            }
            let got = maxsim(&query, page);
            assert!((got - want).abs() < 1e-5, "row {row}: {got} vs {want}");
            reference.push((row as u32, want));
        }
        reference.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for k in [1, 10, 60] {
            let exhaustive = index.search_exhaustive(&query, k)?;
            assert_eq!(exhaustive, index.search(&query, k)?);
            assert_eq!(exhaustive.len(), k.min(reference.len()));
            for (got, want) in exhaustive.iter().zip(&reference) {
                assert_eq!(got.0, want.0);
                assert!((got.1 - want.1).abs() < 1e-5);
            }
        }
    }
    Ok(())
}

/// Pages about a few of `topics` topics (each a handful of unit "concept" vectors), plus
/// tokens near background vectors shared by all pages and pure noise; about 2% of pages have
/// no tokens. Queries are noisy tokens sampled from a target page.
struct Synthetic {
    dim: usize,
    pages: Vec<Vec<f32>>,
    rng: Rng,
}

impl Synthetic {
    fn new(n_pages: usize, dim: usize, topics: usize) -> Self {
        let mut rng = Rng(42);
        let concepts: Vec<Vec<Vec<f32>>> = (0..topics)
            .map(|_| (0..6).map(|_| rng.near(&[], 1.0, dim)).collect())
            .collect();
        let background: Vec<Vec<f32>> = (0..8).map(|_| rng.near(&[], 1.0, dim)).collect();
        let pages = (0..n_pages)
            .map(|_| {
                if rng.below(50) == 0 {
                    return Vec::new();
                }
                let mine: Vec<usize> = (0..1 + rng.below(3)).map(|_| rng.below(topics)).collect();
                let n = 32 + rng.below(33);
                (0..n)
                    .flat_map(|_| match rng.below(10) {
                        0..6 => {
                            let topic = &concepts[mine[rng.below(mine.len())]];
                            let c = topic[rng.below(topic.len())].clone();
                            rng.near(&c, 0.6, dim)
                        }
                        6..9 => {
                            let b = background[rng.below(background.len())].clone();
                            rng.near(&b, 0.6, dim)
                        }
                        _ => rng.near(&[], 1.0, dim),
                    })
                    .collect()
            })
            .collect();
        Synthetic { dim, pages, rng }
    }

    fn index(&self) -> Result<LateIndex, StoreError> {
        let pages = self
            .pages
            .iter()
            .map(|v| TokenMatrix::from_f32(self.dim, v))
            .collect::<Result<Vec<_>, _>>()?;
        LateIndex::from_pages(self.dim, pages)
    }

    /// 16 noisy tokens of a random non-empty page.
    fn query(&mut self) -> Vec<f32> {
        let dim = self.dim;
        loop {
            let page = &self.pages[self.rng.below(self.pages.len())];
            if page.is_empty() {
                continue;
            }
            let rows: Vec<&[f32]> = page.chunks(dim).collect();
            return (0..16)
                .flat_map(|_| {
                    let row = rows[self.rng.below(rows.len())];
                    self.rng.near(row, 0.5, dim)
                })
                .collect();
        }
    }
}

/// recall@10 of `search` against `search_exhaustive` over `queries` queries.
fn recall_at_10(n_pages: usize, dim: usize, queries: usize) -> Result<f64, StoreError> {
    let started = Instant::now();
    let mut set = Synthetic::new(n_pages, dim, 200);
    let generated = started.elapsed();
    let index = set.index()?;
    eprintln!(
        "{n_pages} pages, dim {dim}: generated in {generated:?}, indexed in {:?}",
        started.elapsed() - generated
    );
    let (mut found, mut fast, mut slow) = (0, Duration::ZERO, Duration::ZERO);
    for _ in 0..queries {
        let query = set.query();
        let t = Instant::now();
        let got = index.search(&query, 10)?;
        fast += t.elapsed();
        let t = Instant::now();
        let truth = index.search_exhaustive(&query, 10)?;
        slow += t.elapsed();
        found += got
            .iter()
            .filter(|h| truth.iter().any(|t| t.0 == h.0))
            .count();
    }
    let recall = found as f64 / (10 * queries) as f64;
    eprintln!(
        "recall@10 {recall:.3}; per query: search {:?}, exhaustive {:?}",
        fast / queries as u32,
        slow / queries as u32
    );
    Ok(recall)
}

#[test]
fn two_stage_recall_at_10_on_2k_pages() -> Result<(), StoreError> {
    let recall = recall_at_10(2_000, 64, 20)?;
    assert!(recall >= 0.95, "recall@10 {recall}");
    Ok(())
}

/// Slow in the unoptimised dev profile; run with
/// `cargo test --release -p folio-store --test late -- --ignored --nocapture`.
#[test]
#[ignore]
fn two_stage_recall_at_10_on_10k_pages() -> Result<(), StoreError> {
    let recall = recall_at_10(10_000, 128, 50)?;
    assert!(recall >= 0.95, "recall@10 {recall}");
    Ok(())
}
